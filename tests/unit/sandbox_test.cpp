// The worker's confinement (daemon/sandbox.hpp), in a forked child each: what its status says,
// and that a forbidden call kills it. Run as root (as CI does) the child also changes user.
#include "daemon/sandbox.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>

#include <gtest/gtest.h>

namespace knock::daemon {
namespace {

// Runs `body` in a confined child; returns its wait status.
int in_confined_child(const std::function<int()>& body, int channel = -1) {
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

std::string status_field(const std::string& status, const std::string& key) {
  const auto at = status.find("\n" + key + ":");
  if (at == std::string::npos) return "";
  const auto start = status.find_first_not_of(" \t", at + key.size() + 2);
  return status.substr(start, status.find('\n', start) - start);
}

TEST(Sandbox, WorkerHoldsNothing) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const WorkerAccount account = worker_account(std::nullopt);
  const pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    try {
      demote_worker(account);
      const int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
      install_worker_filter(pipe_fds[1]);
      char buf[8192];
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n > 0) (void)!write(pipe_fds[1], buf, static_cast<std::size_t>(n));
    } catch (...) {
      _exit(100);
    }
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string text = "\n";
  char buf[8192];
  ssize_t n;
  while ((n = read(pipe_fds[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
  close(pipe_fds[0]);
  int child = 0;
  waitpid(pid, &child, 0);
  ASSERT_TRUE(WIFEXITED(child) && WEXITSTATUS(child) == 0) << child;
  EXPECT_EQ(status_field(text, "CapEff"), "0000000000000000");
  EXPECT_EQ(status_field(text, "CapPrm"), "0000000000000000");
  EXPECT_EQ(status_field(text, "CapInh"), "0000000000000000");
  EXPECT_EQ(status_field(text, "CapAmb"), "0000000000000000");
  if (geteuid() == 0) {
    EXPECT_EQ(status_field(text, "CapBnd"), "0000000000000000");
    EXPECT_NE(status_field(text, "Uid").rfind("0\t", 0), 0u) << status_field(text, "Uid");
  }
  EXPECT_EQ(status_field(text, "NoNewPrivs"), "1");
  EXPECT_EQ(status_field(text, "Seccomp"), "2");
}

TEST(Sandbox, AForbiddenCallKillsTheWorker) {
  // A socket of its own (to phone home), a program to run, executable memory: each kills.
  int status = in_confined_child([] { return socket(AF_INET, SOCK_DGRAM, 0) >= 0 ? 0 : 1; });
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
  status = in_confined_child([] {
    char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
    execv("/bin/true", argv);
    return 1;
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
  status = in_confined_child([] {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? 1 : 0;
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
  status = in_confined_child([] { return fork() >= 0 ? 0 : 1; });
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
}

TEST(Sandbox, WritesGoOnlyToStderrAndTheChannel) {
  // A capture or UDP socket the worker reads from must not become a way to send packets.
  const int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(udp, 0);
  int status = in_confined_child([udp] {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(9);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char m[] = "leak";
    return sendto(udp, m, sizeof m, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) >= 0 ? 0 : 1;
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  status = in_confined_child([&] { return write(pipe_fds[1], "x", 1) == 1 ? 0 : 1; });
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
  // ...while the channel and stderr work.
  status = in_confined_child([&] { return write(pipe_fds[1], "x", 1) == 1 && write(2, "", 0) == 0 ? 0 : 1; },
                             pipe_fds[1]);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  close(udp);
}

TEST(Sandbox, PathsAreRefusedNotFatal) {
  // Library code may try a file (a locale, /proc): it gets EACCES and goes on.
  const int status = in_confined_child([] {
    const int fd = open("/etc/hostname", O_RDONLY);
    return fd < 0 && errno == EACCES ? 0 : 1;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Sandbox, WhatTheWorkerDoesStillWorks) {
  // Reading, writing to its channel, time, memory: allowed.
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  const int status = in_confined_child([&] {
    const char m[] = "knock";
    if (send(pair[1], m, sizeof m, 0) != static_cast<ssize_t>(sizeof m)) return 1;
    void* p = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 2;
    std::memset(p, 1, 1 << 20);
    munmap(p, 1 << 20);
    timespec ts{};
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 3;
    return 0;
  }, pair[1]);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  char got[16] = {};
  EXPECT_EQ(recv(pair[0], got, sizeof got, MSG_DONTWAIT), 6);
  close(pair[0]);
  close(pair[1]);
}

TEST(Sandbox, RootIsNeverTheWorkersAccount) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  EXPECT_THROW(worker_account(std::string("root")), std::exception);
  EXPECT_THROW(worker_account(std::string("no-such-user-here")), std::exception);
  EXPECT_NE(worker_account(std::nullopt).uid, 0u);
}

}  // namespace
}  // namespace knock::daemon
