// Review 3 of the privilege separation: attacks a compromised worker can make from inside its
// seccomp filter (daemon/sandbox.hpp). Each test plays the worker after the attacker owns it:
// it may run any allowed system call with any arguments. Run as root (as CI does) the child
// also changes user, and a second process of the same account plays "another process".
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <functional>

#include <gtest/gtest.h>

#include "daemon/sandbox.hpp"

namespace knock::daemon {
namespace {

// Runs `body` in a confined child (the worker's confinement, `channel` its channel); returns
// its wait status.
int in_confined_child(const std::function<int()>& body, int channel) {
  const WorkerAccount account = worker_account(std::nullopt);
  const pid_t pid = fork();
  if (pid == 0) {
    try {
      demote_worker(account);
      install_worker_filter(channel);
    } catch (...) {
      _exit(100);
    }
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// Another process of the worker's account (as root: demoted, not filtered), waiting for a
// signal; returned once it has changed user. SIGTERM ends it.
pid_t same_account_process() {
  const WorkerAccount account = worker_account(std::nullopt);
  int ready[2];
  if (pipe(ready) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(ready[0]);
    try {
      demote_worker(account);
    } catch (...) {
      _exit(100);
    }
    close(ready[1]);
    for (;;) pause();
  }
  close(ready[1]);
  char c;
  while (read(ready[0], &c, 1) < 0 && errno == EINTR) {
  }
  close(ready[0]);
  return pid;
}

// A loopback UDP socket that plays "the network": what reaches it left the worker as a packet.
struct Listener {
  int fd = -1;
  sockaddr_in address{};
  Listener() {
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof address;
    if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len) != 0) {
      close(fd);
      fd = -1;
    }
  }
  ~Listener() {
    if (fd >= 0) close(fd);
  }
  // Loopback delivers in sendto() itself: after the child ended, the datagram is here or never.
  bool got_something() const {
    char buf[64];
    return recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0;
  }
};

// FAILS on 2e46783: fcntl(F_DUPFD) is allowed, and the write/sendto rule checks the channel's
// descriptor number only. The worker closes its channel, duplicates a UDP (or capture) socket
// into that number and sends a packet anywhere.
TEST(Review3Attack, DuplicatingASocketOntoTheChannelsNumberSendsNoPacket) {
  Listener net;
  ASSERT_GE(net.fd, 0);
  const int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);  // a source the worker reads
  ASSERT_GE(udp, 0);
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  const sockaddr_in to = net.address;
  const int status = in_confined_child(
      [&] {
        close(pair[1]);
        if (fcntl(udp, F_DUPFD_CLOEXEC, pair[1]) != pair[1]) return 2;
        const char m[] = "leak";
        return sendto(pair[1], m, sizeof m, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) >= 0 ? 0 : 1;
      },
      pair[1]);
  EXPECT_FALSE(net.got_something()) << "the confined worker put a packet on the network";
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(pair[0]);
  close(pair[1]);
  close(udp);
}

// The same through stderr's number (write(2) is allowed on any descriptor numbered 2).
TEST(Review3Attack, DuplicatingASocketOntoStderrSendsNoPacket) {
  Listener net;
  ASSERT_GE(net.fd, 0);
  const int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(udp, 0);
  ASSERT_EQ(connect(udp, reinterpret_cast<const sockaddr*>(&net.address), sizeof net.address), 0);
  const int status = in_confined_child(
      [&] {
        close(2);
        if (fcntl(udp, F_DUPFD, 2) != 2) return 2;
        return write(2, "leak", 4) == 4 ? 0 : 1;
      },
      -1);
  EXPECT_FALSE(net.got_something()) << "the confined worker put a packet on the network";
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(udp);
}

// FAILS on 2e46783: prlimit64 is allowed with any pid and a new limit. The worker shares its
// account (nobody when there is no portknock user) with other processes: it can take their
// descriptors or CPU time away.
TEST(Review3Attack, NoLimitOfAnotherProcessCanBeChanged) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a second process of the worker's account)";
  const pid_t victim = same_account_process();
  ASSERT_GT(victim, 0);
  const int status = in_confined_child(
      [victim] {
        const rlimit none{0, 0};
        return syscall(SYS_prlimit64, victim, RLIMIT_NOFILE, &none, nullptr) == 0 ? 0 : 1;
      },
      -1);
  // /proc/PID/limits: readable without CAP_SYS_RESOURCE (prlimit of another uid needs it).
  std::string limits;
  if (FILE* f = std::fopen(("/proc/" + std::to_string(victim) + "/limits").c_str(), "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr)
      if (std::strncmp(line, "Max open files", 14) == 0) limits = line;
    std::fclose(f);
  }
  kill(victim, SIGKILL);
  waitpid(victim, nullptr, 0);
  ASSERT_FALSE(limits.empty());
  EXPECT_EQ(limits.find(" 0 "), std::string::npos) << "the worker lowered another process's limit: " << limits;
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// FAILS on 2e46783: fcntl(F_SETOWN, F_SETSIG) and O_ASYNC are allowed: the worker makes the
// kernel signal a process of its account whenever its channel is readable.
TEST(Review3Attack, NoSignalReachesAnotherProcess) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a second process of the worker's account)";
  const pid_t victim = same_account_process();
  ASSERT_GT(victim, 0);
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  const int status = in_confined_child(
      [&] {
        if (fcntl(pair[1], F_SETOWN, victim) != 0) return 1;
        if (fcntl(pair[1], F_SETSIG, SIGKILL) != 0) return 2;
        if (fcntl(pair[1], F_SETFL, fcntl(pair[1], F_GETFL) | O_ASYNC) != 0) return 3;
        return 0;
      },
      pair[1]);
  // The worker is gone; the owner stays on the socket (the monitor's end keeps it open).
  ASSERT_EQ(send(pair[0], "x", 1, 0), 1);
  int victim_status = 0;
  const pid_t ended = waitpid(victim, &victim_status, WNOHANG);
  if (ended == 0) {
    kill(victim, SIGTERM);
    waitpid(victim, &victim_status, 0);
  }
  close(pair[0]);
  close(pair[1]);
  EXPECT_FALSE(WIFSIGNALED(victim_status) && WTERMSIG(victim_status) == SIGKILL)
      << "the worker killed another process";
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// FAILS on 2e46783: the kernel clears the parent-death signal when the euid changes, and the
// worker sets it before it changes user. A worker that is stopped or busy outlives a monitor
// killed with SIGKILL (holding the keys and the capture sockets).
TEST(Review3Attack, DemotionKeepsTheParentDeathSignal) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (the uid change clears it)";
  const WorkerAccount account = worker_account(std::nullopt);
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    try {
      demote_worker(account);
    } catch (...) {
      _exit(100);
    }
    int signal = 0;
    prctl(PR_GET_PDEATHSIG, &signal);
    _exit(signal == SIGKILL ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "demote_worker() lost PR_SET_PDEATHSIG";
}

// What the fix must keep: the worker's own uses of fcntl and prlimit (libpcap, glibc).
TEST(Review3Attack, OwnDescriptorFlagsAndLimitsStillWork) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  const int status = in_confined_child(
      [&] {
        const int flags = fcntl(pair[1], F_GETFL);
        if (flags < 0 || fcntl(pair[1], F_SETFL, flags | O_NONBLOCK) != 0) return 1;
        if (fcntl(pair[1], F_GETFD) < 0 || fcntl(pair[1], F_SETFD, FD_CLOEXEC) != 0) return 2;
        rlimit r{};
        if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 3;
        if (syscall(SYS_prlimit64, 0, RLIMIT_STACK, nullptr, &r) != 0) return 4;
        return 0;
      },
      pair[1]);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  close(pair[0]);
  close(pair[1]);
}

}  // namespace
}  // namespace knock::daemon
