// knockclient -proxy / -wait (client/proxy.hpp) on 127.0.0.1:
//  - connect_when_open: a port that starts listening later is reached by a later, fresh attempt;
//    SYNs dropped by a full accept queue (as a still-closed firewall drops them) are not waited
//    for: a fresh attempt after the queue is drained wins, not the first socket's retransmission;
//    a port that stays refused or silent ends in one RuntimeError after the deadline, naming the
//    address, the wait, the attempts and the last outcome, with every attempt's socket closed;
//  - relay: 1 MiB each way through pipes (partial writes), the half-close at end of input (the
//    peer answers only after it), the end when the peer closes while input is still open, an
//    unwritable output (EPIPE, not SIGPIPE) as exit 1, the descriptors' flags restored;
//  - take_follow_up: -proxy HOST PORT becomes -remote HOST, -wait, -waittime and its errors.
#include "client/proxy.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "config/tree.hpp"
#include "util/error.hpp"

using namespace knock;
using namespace knock::client;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

const IpAddress kLoopback = *IpAddress::parse("127.0.0.1");

int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

// A TCP socket bound to 127.0.0.1 on a free port, not yet listening (connects are refused).
struct Bound {
  int fd = -1;
  std::uint16_t port = 0;
  Bound() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) ADD_FAILURE() << "bind";
    socklen_t len = sizeof sin;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
    port = ntohs(sin.sin_port);
  }
  ~Bound() { ::close(fd); }
};

// A blocking connect to 127.0.0.1:port; the descriptor, or -1.
int plain_connect(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A listener (backlog 0) whose accept queue holds one unaccepted connection: further SYNs are
// dropped by the kernel, as a firewall's DROP rule drops them, until the queue is drained.
struct FullQueue {
  Bound listener;
  int filler = -1;
  FullQueue() {
    ::listen(listener.fd, 0);
    filler = plain_connect(listener.port);
    EXPECT_GE(filler, 0);
  }
  ~FullQueue() {
    if (filler >= 0) ::close(filler);
  }
};

RetryPolicy quick(milliseconds deadline) {
  RetryPolicy p;
  p.deadline = deadline;
  return p;
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST(ConnectWhenOpen, ReachesAPortThatStartsListeningLater) {
  Bound b;
  const int before = open_fds();
  // Causal, not timed: the listener says when it starts listening; the connection that wins
  // must come after that.
  std::atomic<bool> listening{false};
  std::thread opener([&] {
    std::this_thread::sleep_for(milliseconds(200));
    listening = true;
    ::listen(b.fd, 16);
  });
  Connected c;
  // EXPECT, not a throw through the test: the thread is joined either way.
  EXPECT_NO_THROW(c = connect_when_open(kLoopback, b.port, quick(milliseconds(10000))));
  const bool listened_first = listening.load();
  opener.join();
  ASSERT_GE(c.fd, 0);
  EXPECT_GT(c.winner, 1) << "the first attempt was refused; a later one must have won";
  EXPECT_LE(c.winner, c.attempts);
  EXPECT_TRUE(listened_first) << "connected before the port listened";
  EXPECT_NE(::fcntl(c.fd, F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(open_fds(), before + 1) << "attempts that lost were not all closed";
  ::close(c.fd);
}

TEST(ConnectWhenOpen, ADroppedSynIsNotWaitedForAFreshAttemptWins) {
  FullQueue q;
  const int before = open_fds();
  Clock::time_point drain_at{};
  std::thread drainer([&] {
    std::this_thread::sleep_for(milliseconds(300));
    drain_at = Clock::now();
    const int a = ::accept(q.listener.fd, nullptr, nullptr);  // the queue has room again
    if (a >= 0) ::close(a);
  });
  Connected c;
  // EXPECT, not a throw through the test: the thread is joined either way.
  EXPECT_NO_THROW(c = connect_when_open(kLoopback, q.listener.port, quick(milliseconds(10000))));
  drainer.join();
  ASSERT_GE(c.fd, 0);
  ASSERT_EQ(c.launched.size(), static_cast<std::size_t>(c.attempts));
  ASSERT_GE(c.winner, 1);
  // A blocking connect (or one socket kept until it connects) would win with attempt 1, whose
  // SYN the kernel resends after 1 s. Here fresh attempts went on while SYNs were dropped, and
  // the winner is one whose SYN left after the queue was drained: not a retransmission.
  const auto before_drain = std::count_if(c.launched.begin(), c.launched.end(),
                                          [&](Clock::time_point t) { return t < drain_at; });
  EXPECT_GE(before_drain, 3) << "no retries while the SYNs were dropped";
  EXPECT_GT(c.winner, 1);
  EXPECT_GE(c.launched[static_cast<std::size_t>(c.winner - 1)], drain_at) << "the winner is an attempt from before the drain";
  EXPECT_EQ(open_fds(), before + 1);
  ::close(c.fd);
}

TEST(ConnectWhenOpen, AfterTheFastPhaseAnAttemptLivesThroughARetransmission) {
  // A slow path (a round trip longer than attempt_timeout) must still connect: past fast_for
  // an attempt lives slow_attempt_timeout, and the kernel's retransmission of its dropped SYN,
  // one second later, is what gets through here.
  FullQueue q;
  std::atomic<bool> drained{false};  // causal, not timed: set before the queue has room again
  std::thread drainer([&] {
    std::this_thread::sleep_for(milliseconds(300));
    drained = true;
    const int a = ::accept(q.listener.fd, nullptr, nullptr);
    if (a >= 0) ::close(a);
  });
  RetryPolicy p = quick(milliseconds(8000));
  p.fast_for = milliseconds(0);
  p.slow_interval = milliseconds(10000);  // one attempt only
  p.slow_attempt_timeout = milliseconds(5000);
  Connected c;
  // EXPECT, not a throw through the test: the thread is joined either way.
  EXPECT_NO_THROW(c = connect_when_open(kLoopback, q.listener.port, p));
  drainer.join();
  ASSERT_GE(c.fd, 0);
  EXPECT_EQ(c.attempts, 1);
  EXPECT_EQ(c.winner, 1);
  EXPECT_TRUE(drained.load()) << "connected while the queue was still full";
  ::close(c.fd);
}

TEST(ConnectWhenOpen, ARefusedPortFailsAtTheDeadlineWithOneLine) {
  Bound b;
  const int before = open_fds();
  const auto start = Clock::now();
  const std::string msg =
      what_of([&] { connect_when_open(kLoopback, b.port, quick(milliseconds(300))); });
  const auto took = Clock::now() - start;
  EXPECT_NE(msg.find("127.0.0.1 port " + std::to_string(b.port) + " accepted no connection within 0.3 s ("),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find(" attempts, the last refused)"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  EXPECT_GE(took, milliseconds(300));
  EXPECT_LT(took, milliseconds(5000)) << "the deadline did not bound the wait";
  EXPECT_EQ(open_fds(), before);
}

TEST(ConnectWhenOpen, ASilentPortFailsAtTheDeadlineAndClosesEveryAttempt) {
  FullQueue q;
  const int before = open_fds();
  RetryPolicy p = quick(milliseconds(1500));
  p.fast_for = milliseconds(500);
  p.slow_attempt_timeout = milliseconds(700);
  const std::string msg = what_of([&] { connect_when_open(kLoopback, q.listener.port, p); });
  EXPECT_NE(msg.find("accepted no connection within 1.5 s"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the last unanswered after 0.7 s"), std::string::npos) << msg;
  EXPECT_EQ(open_fds(), before);
}

TEST(ConnectWhenOpen, AttemptsSlowDownAfterTheFastPhase) {
  Bound b;  // refused at once: each attempt ends immediately, so attempts count launches
  RetryPolicy p = quick(milliseconds(1000));
  p.interval = milliseconds(10);
  p.fast_for = milliseconds(200);
  p.slow_interval = milliseconds(200);
  const std::string msg = what_of([&] { connect_when_open(kLoopback, b.port, p); });
  const auto pos = msg.find(" (");
  ASSERT_NE(pos, std::string::npos) << msg;
  const int attempts = std::stoi(msg.substr(pos + 2));
  // About 20 in the first 200 ms, then about 4: far fewer than 100 at a constant 10 ms.
  EXPECT_GE(attempts, 5) << msg;
  EXPECT_LE(attempts, 40) << msg;
}

namespace {

// A server for the relay tests: accepts one connection on 127.0.0.1 and runs `serve` on it.
struct Server {
  Bound b;
  std::thread t;
  template <class F>
  explicit Server(F serve) {
    ::listen(b.fd, 4);
    t = std::thread([this, serve] {
      const int c = ::accept(b.fd, nullptr, nullptr);
      if (c < 0) return;
      serve(c);
      ::close(c);
    });
  }
  ~Server() {
    if (t.joinable()) t.join();
  }
};

std::string read_all(int fd) {
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) out.append(buf, static_cast<std::size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  return out;
}

// To a pipe or (without SIGPIPE) a socket.
bool write_all(int fd, const std::string& s) {
  struct stat st {};
  const bool socket = ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = socket ? ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL)
                             : ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    seed = seed * 1103515245u + 12345u;
    s[i] = static_cast<char>(seed >> 16);
  }
  return s;
}

// A watchdog: a relay that hangs kills the test process (the default SIGALRM action).
struct Watchdog {
  Watchdog() { ::alarm(30); }
  ~Watchdog() { ::alarm(0); }
};

}  // namespace

TEST(Relay, CopiesBothWaysHalfClosesAtEndOfInputAndEndsWhenThePeerCloses) {
  const Watchdog dog;
  const std::string input = pattern(1 << 20, 1);
  std::string received;
  // The peer answers only once it has seen end of file: without the half-close nothing comes back.
  Server server([&](int c) {
    received = read_all(c);
    write_all(c, "got " + std::to_string(received.size()) + "\n" + pattern(1 << 20, 2));
  });
  const int sock = plain_connect(server.b.port);
  ASSERT_GE(sock, 0);
  int in[2], out[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  std::thread writer([&] {
    write_all(in[1], input);
    ::close(in[1]);
  });
  std::string output;
  std::thread reader([&] { output = read_all(out[0]); });
  const int in_flags = ::fcntl(in[0], F_GETFL);
  const int out_flags = ::fcntl(out[1], F_GETFL);
  const int rc = relay(sock, in[0], out[1]);
  EXPECT_EQ(::fcntl(in[0], F_GETFL), in_flags) << "standard input left non-blocking";
  EXPECT_EQ(::fcntl(out[1], F_GETFL), out_flags) << "standard output left non-blocking";
  ::close(out[1]);
  writer.join();
  reader.join();
  ::close(in[0]);
  ::close(out[0]);
  ::close(sock);
  EXPECT_EQ(rc, 0);
  EXPECT_TRUE(received == input) << "the peer got " << received.size() << " of " << input.size() << " bytes";
  EXPECT_TRUE(output == "got 1048576\n" + pattern(1 << 20, 2)) << "output of " << output.size() << " bytes";
}

TEST(Relay, EndsWhenThePeerClosesWhileInputIsStillOpen) {
  const Watchdog dog;
  Server server([](int c) { write_all(c, "bye\n"); });
  const int sock = plain_connect(server.b.port);
  ASSERT_GE(sock, 0);
  int in[2], out[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  const int rc = relay(sock, in[0], out[1]);  // in[1] stays open: no end of input
  ::close(out[1]);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(read_all(out[0]), "bye\n");
  for (int fd : {in[0], in[1], out[0], sock}) ::close(fd);
}

TEST(Relay, AnUnwritableOutputEndsWithAnErrorNotSigpipe) {
  const Watchdog dog;
  std::atomic<bool> stop{false};
  Server server([&](int c) {
    const std::string chunk(65536, 'x');
    while (!stop && write_all(c, chunk)) {
    }
  });
  const int sock = plain_connect(server.b.port);
  ASSERT_GE(sock, 0);
  int in[2], out[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  ::close(out[0]);  // nobody reads the output
  const int rc = relay(sock, in[0], out[1]);
  EXPECT_EQ(rc, 1);
  stop = true;
  ::shutdown(sock, SHUT_RDWR);
  for (int fd : {in[0], in[1], out[1], sock}) ::close(fd);
}

namespace {

cli::ParsedArgs args_of(std::vector<const char*> argv) {
  argv.insert(argv.begin(), "knockclient");
  std::vector<cli::OptionSpec> specs = {{"proxy", true}, {"wait", true}, {"waittime", true}, {"key", true},
                                        {"remote", true}, {"port", true}, {"debug", false}, {"quiet", false}};
  return cli::parse(static_cast<int>(argv.size()), argv.data(), specs);
}

}  // namespace

TEST(FollowUp, ProxyHostPortBecomesTheRemote) {
  auto a = args_of({"-remote", "other", "-proxy", "server.example", "22", "-quiet"});
  const auto f = take_follow_up(a, nullptr);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->mode, FollowUp::Mode::Proxy);
  EXPECT_EQ(f->port, 22);
  EXPECT_EQ(a.get("remote"), "server.example");
  EXPECT_EQ(a.get("port"), "22") << "PORT is the knock's PORT field by default";
  EXPECT_TRUE(a.positional.empty());
  EXPECT_EQ(f->retry.deadline, kDefaultWaitTime);
}

TEST(FollowUp, WaitAndWaittime) {
  auto a = args_of({"-wait", "2222", "-waittime", "2.5"});
  const auto f = take_follow_up(a, nullptr);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->mode, FollowUp::Mode::Wait);
  EXPECT_EQ(f->port, 2222);
  EXPECT_EQ(f->retry.deadline, milliseconds(2500));
  const auto root = config::parse_string("waittime = 0.25\n", "c.conf");
  auto b = args_of({"-wait", "22"});
  EXPECT_EQ(take_follow_up(b, &root)->retry.deadline, milliseconds(250));
  auto c = args_of({"-wait", "22", "-waittime", "3"});
  EXPECT_EQ(take_follow_up(c, &root)->retry.deadline, milliseconds(3000)) << "the option beats the file";
  EXPECT_EQ(b.get("port"), "22");
  const auto with_port = config::parse_string("port = 443\n", "c.conf");
  auto d = args_of({"-wait", "8443"});
  take_follow_up(d, &with_port);
  EXPECT_EQ(d.get("port"), std::nullopt) << "the file's port = is the knock's PORT";
  auto e = args_of({"-wait", "8443", "-port", "443"});
  take_follow_up(e, nullptr);
  EXPECT_EQ(e.get("port"), "443");
  auto g = args_of({"-wait", "8443"});
  take_follow_up(g, nullptr);
  EXPECT_EQ(g.get("port"), "8443");
  auto none = args_of({"-remote", "h"});
  EXPECT_FALSE(take_follow_up(none, &root));
}

TEST(FollowUp, Errors) {
  const auto error_of = [](std::vector<const char*> argv, const config::Value* root = nullptr) {
    auto a = args_of(std::move(argv));
    try {
      take_follow_up(a, root);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(error_of({"-proxy", "h"}).find("give the port after the host"), std::string::npos);
  EXPECT_NE(error_of({"-proxy", "h", "22", "23"}).find("give the port after the host"), std::string::npos);
  EXPECT_NE(error_of({"-proxy", "h", "0"}).find("from 1 to 65535, not '0'"), std::string::npos);
  EXPECT_NE(error_of({"-proxy", "h", "65536"}).find("not '65536'"), std::string::npos);
  EXPECT_NE(error_of({"-wait", "ssh"}).find("option -wait: the port must be"), std::string::npos);
  EXPECT_NE(error_of({"-wait", "22", "-proxy", "h", "22"}).find("not both"), std::string::npos);
  EXPECT_NE(error_of({"-waittime", "3"}).find("-waittime needs -proxy"), std::string::npos);
  EXPECT_NE(error_of({"-proxy", "h", "22", "-key", "-"}).find("-key - reads standard input, which -proxy relays"),
            std::string::npos);
  EXPECT_EQ(error_of({"-wait", "22", "-key", "-"}), "(accepted)");
  for (const char* bad : {"0", "0.0", "-1", "1.", ".5", "1.2345", "3601", "10s", "", "99999"})
    EXPECT_NE(error_of({"-wait", "22", "-waittime", bad}).find("waittime must be seconds"), std::string::npos) << bad;
  const auto root = config::parse_string("remote = h\nwaittime = soon\n", "c.conf");
  EXPECT_NE(error_of({"-wait", "22"}, &root).find("c.conf:2: waittime must be seconds"), std::string::npos)
      << error_of({"-wait", "22"}, &root);
}
