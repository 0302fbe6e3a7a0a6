// Attacks on the <store redis> client (rules/redis_store.cpp): its replies are hostile input (a
// malicious or compromised Redis, or a man in the middle). A fake server on a Unix socket, run
// by a thread of this test, answers what each test wants, when it wants.
#include <gtest/gtest.h>

#include <malloc.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <new>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "rules/store.hpp"

using namespace knock;
using namespace knock::rules;

// Freed heap blocks that still hold the watched secret (a password that was not wiped).
namespace {
std::atomic<bool> g_watching{false};
std::atomic<int> g_unwiped{0};
constexpr std::string_view kSecret = "R5-secret-password-0123456789-abcdef";
void check_freed(void* p) {
  if (p == nullptr || !g_watching) return;
  const auto* b = static_cast<const char*>(p);
  if (std::search(b, b + malloc_usable_size(p), kSecret.begin(), kSecret.end()) != b + malloc_usable_size(p)) ++g_unwiped;
}
}  // namespace
// Replaced as a pair (malloc and free), so that sanitizers see matching calls.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  check_freed(p);
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  check_freed(p);
  std::free(p);
}

namespace {

double mono() {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

void nap(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// One accepted connection, seen from the server.
struct Conn {
  int fd = -1;
  std::string buf;
  const std::atomic<bool>* stop = nullptr;

  // One command of the client (an array of bulk strings); nullopt on EOF, stop or after 5 s.
  std::optional<std::vector<std::string>> command() {
    const double deadline = mono() + 5;
    for (;;) {
      if (auto c = parse()) return c;
      if (*stop || mono() > deadline) return std::nullopt;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      char b[4096];
      const ssize_t n = ::recv(fd, b, sizeof b, 0);
      if (n <= 0) return std::nullopt;
      buf.append(b, static_cast<std::size_t>(n));
    }
  }
  std::optional<std::vector<std::string>> parse() {
    std::size_t at = 0;
    auto line = [&]() -> std::optional<std::string> {
      const std::size_t e = buf.find("\r\n", at);
      if (e == std::string::npos) return std::nullopt;
      std::string l = buf.substr(at, e - at);
      at = e + 2;
      return l;
    };
    auto head = line();
    if (!head || head->empty() || (*head)[0] != '*') return std::nullopt;
    const long n = std::stol(head->substr(1));
    std::vector<std::string> out;
    for (long i = 0; i < n; ++i) {
      auto len = line();
      if (!len) return std::nullopt;
      const std::size_t l = std::stoul(len->substr(1));
      if (buf.size() < at + l + 2) return std::nullopt;
      out.push_back(buf.substr(at, l));
      at += l + 2;
    }
    buf.erase(0, at);
    return out;
  }
  bool send(std::string_view s) { return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()); }
  // The connection's first round trip (AUTH, SELECT, SCRIPT LOAD): answered after `delay_ms`.
  bool hello(int delay_ms = 0) {
    for (;;) {
      auto c = command();
      if (!c) return false;
      if ((*c)[0] == "SCRIPT") {
        nap(delay_ms);
        return send("$40\r\n" + std::string(40, 'a') + "\r\n");
      }
      if (!send("+OK\r\n")) return false;
    }
  }
};

// A server on a Unix socket; `session(conn, index)` runs for each accepted connection in turn.
class FakeRedis {
 public:
  using Session = std::function<void(Conn&, int)>;
  explicit FakeRedis(Session session) : session_(std::move(session)) {
    dir_ = std::filesystem::temp_directory_path() / ("pk-r5-" + std::to_string(::getpid()) + "-" + std::to_string(++serial_));
    std::filesystem::create_directories(dir_);
    path = dir_ + "/redis.sock";
    listen_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
    if (::bind(listen_, reinterpret_cast<sockaddr*>(&un), sizeof un) != 0 || ::listen(listen_, 8) != 0) std::abort();
    thread_ = std::thread([this] { run(); });
  }
  ~FakeRedis() {
    stop_ = true;
    thread_.join();
    ::close(listen_);
    std::filesystem::remove_all(dir_);
  }
  FakeRedis(const FakeRedis&) = delete;
  FakeRedis& operator=(const FakeRedis&) = delete;

  StoreSettings settings(int timeout_ms) const {
    StoreSettings s;
    s.unix_path = path;
    s.timeout_ms = timeout_ms;
    s.name = "gw-test";
    return s;
  }

  std::string path;
  std::atomic<int> connections{0};

 private:
  void run() {
    while (!stop_) {
      pollfd p{listen_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      Conn c;
      c.fd = fd;
      c.stop = &stop_;
      const int index = connections++;
      session_(c, index);
      ::close(fd);
    }
  }
  Session session_;
  std::string dir_;
  int listen_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  static inline int serial_ = 0;
};

StoreCommit a_commit() {
  StoreCommit c;
  c.ids = {"00112233445566778899aabbccddeeff"};
  c.replay_ms = 86461000;
  c.reads = {{{"198.18.0.1", "n"}, "i1"}};
  c.writes = {{{"198.18.0.1", "n"}, "i2"}};
  c.stamp = "gw-test 1709632800";
  return c;
}

// Waits (bounded) until the store's back-off has passed.
void until_retry(SharedStore& store) {
  const double deadline = mono() + 10;
  while (store.next_tick_in() > 0 && mono() < deadline) nap(10);
}

}  // namespace

// A server that trickles its answer, one byte every 40 ms against a 50 ms timeout: the request
// ends by its deadline, not by the gaps between bytes.
TEST(Review5Attack, TrickledReplyIsBoundedInTotal) {
  FakeRedis server([](Conn& c, int) {
    if (!c.hello() || !c.command()) return;
    const std::string reply = "$4000\r\n" + std::string(4000, 'x') + "\r\n";
    for (char ch : reply) {
      if (!c.send(std::string_view(&ch, 1))) return;
      nap(40);
    }
  });
  auto store = make_redis_store(server.settings(50));
  std::string error;
  EXPECT_FALSE(store->read({"k"}, &error));
  EXPECT_NE(error.find("no answer within 50 ms"), std::string::npos) << error;
}

// The server closes the connection just before the timeout, then answers the reconnection's
// round trip and the request again just before the timeout: one request must not take three
// timeouts (doc/FLEET.md: "never blocked beyond the timeout per request").
// A server that answers every request just inside the timeout (35 of 50 ms): a knock makes one
// request per state key it reads and a commit, judged again on conflicts, so per-request
// deadlines alone would hold the loop for many timeouts per knock. One knock's requests share
// one budget: the second request of the same knock is not waited for past it.
TEST(Review5Attack, OneKnocksRequestsShareOneBudget) {
  FakeRedis server([](Conn& c, int) {
    if (!c.hello()) return;
    for (;;) {
      if (!c.command()) return;
      nap(35);
      if (!c.send("$2\r\ni7\r\n")) return;
    }
  });
  auto store = make_redis_store(server.settings(50));
  ASSERT_TRUE(store->usable(nullptr));
  std::string error;
  store->begin_knock();
  EXPECT_TRUE(store->read({"k"}, &error)) << error;
  EXPECT_FALSE(store->read({"k2"}, &error)) << "a second request of one knock waited past its budget";
  store->end_knock();
}

TEST(Review5Attack, ReconnectInsideARequestKeepsItsDeadline) {
  FakeRedis server([](Conn& c, int index) {
    if (index == 0) {
      if (!c.hello() || !c.command()) return;
      nap(250);  // then closed
      return;
    }
    if (!c.hello(250) || !c.command()) return;
    nap(250);
    c.send("$2\r\ni7\r\n");
    c.command();
  });
  auto store = make_redis_store(server.settings(300));
  ASSERT_TRUE(store->usable(nullptr));
  std::string error;
  const auto value = store->read({"k"}, &error);
  EXPECT_FALSE(value) << "an answer 750 ms after the request was taken with timeout = 300";
}

// The server restarted while the connection was idle: the request reconnects, and the new
// connection's round trip and the request's answer each come just before the timeout. The
// request, reconnection included, is bounded by one timeout.
TEST(Review5Attack, ReconnectBeforeARequestKeepsItsDeadline) {
  FakeRedis server([](Conn& c, int index) {
    if (index == 0) {
      if (c.hello() && c.command()) c.send("$2\r\ni1\r\n");
      return;  // closed while idle
    }
    if (!c.hello(250) || !c.command()) return;
    nap(250);
    c.send("$2\r\ni7\r\n");
    c.command();
  });
  auto store = make_redis_store(server.settings(300));
  ASSERT_EQ(store->read({"k"}, nullptr), std::optional<std::string>("i1"));
  nap(100);
  EXPECT_FALSE(store->read({"k"}, nullptr)) << "an answer 500 ms after the request was taken with timeout = 300";
}

// The first connection: socket connect and its round trip are one attempt, bounded by one
// timeout; a round trip answered after 250 ms of a 300 ms timeout leaves the request 50 ms.
TEST(Review5Attack, FirstConnectionAndRequestShareTheDeadline) {
  FakeRedis server([](Conn& c, int) {
    if (!c.hello(250) || !c.command()) return;
    nap(200);
    c.send("$2\r\ni7\r\n");
    c.command();
  });
  auto store = make_redis_store(server.settings(300));
  EXPECT_FALSE(store->read({"k"}, nullptr)) << "an answer 450 ms after the request was taken with timeout = 300";
}

// A reply the client did not ask for, sent with the answer to a GET: the next request (the
// commit) must not take it for its own answer ("nothing runs locally unless Redis accepted it").
TEST(Review5Attack, ExtraReplyIsNotTakenForTheNextRequest) {
  FakeRedis server([](Conn& c, int) {
    if (!c.hello()) return;
    for (;;) {
      auto cmd = c.command();
      if (!cmd) return;
      if ((*cmd)[0] == "GET") c.send("$2\r\ni1\r\n*2\r\n:0\r\n$0\r\n\r\n");  // the answer, and an "accepted"
      else c.send("*2\r\n:1\r\n$8\r\ngw-x 100\r\n");                     // the script's own answer: replay
    }
  });
  auto store = make_redis_store(server.settings(200));
  (void)store->read({"198.18.0.1", "n"}, nullptr);
  EXPECT_NE(store->commit(a_commit()).outcome, SharedStore::Outcome::Ok);
}

// The same, the unsolicited reply arriving on the idle connection between two requests.
TEST(Review5Attack, UnsolicitedReplyBetweenRequestsIsNotAnAnswer) {
  FakeRedis server([](Conn& c, int) {
    if (!c.hello()) return;
    for (;;) {
      auto cmd = c.command();
      if (!cmd) return;
      if ((*cmd)[0] == "GET") {
        c.send("$2\r\ni1\r\n");
        nap(30);
        c.send("*2\r\n:0\r\n$0\r\n\r\n");
      } else {
        c.send("*2\r\n:1\r\n$8\r\ngw-x 100\r\n");
      }
    }
  });
  auto store = make_redis_store(server.settings(200));
  ASSERT_EQ(store->read({"198.18.0.1", "n"}, nullptr), std::optional<std::string>("i1"));
  nap(200);  // the unsolicited reply is in the socket now
  const auto result = store->commit(a_commit());
  EXPECT_EQ(result.outcome, SharedStore::Outcome::Replay) << result.detail;
}

// A GET answered with another type (a desynchronised or hostile server): the connection is not
// trusted with the next request.
TEST(Review5Attack, WrongTypeDropsTheConnection) {
  FakeRedis server([](Conn& c, int index) {
    if (!c.hello()) return;
    if (index == 0) {
      if (!c.command()) return;
      c.send(":5\r\n");
      if (c.command()) c.send("$2\r\ni1\r\n");  // the same connection used again
      c.command();
      return;
    }
    if (c.command()) c.send("$2\r\ni2\r\n");
    c.command();
  });
  auto store = make_redis_store(server.settings(200));
  EXPECT_FALSE(store->read({"k"}, nullptr));
  const double deadline = mono() + 5;
  while (!store->usable(nullptr) && mono() < deadline) nap(10);
  EXPECT_EQ(store->read({"k"}, nullptr), std::optional<std::string>("i2"));
}

// The connection closes after the commit was sent (the script may have run): the commit is not
// sent again (a knock without identities would count its state change twice).
TEST(Review5Attack, CommitIsNotSentTwice) {
  std::atomic<int> evals{0};
  FakeRedis server([&evals](Conn& c, int) {
    if (!c.hello()) return;
    auto cmd = c.command();
    if (!cmd) return;
    if ((*cmd)[0] == "EVALSHA" && evals++ == 0) return;  // ran, then the connection broke
    c.send("*2\r\n:0\r\n$0\r\n\r\n");
    c.command();
  });
  auto store = make_redis_store(server.settings(200));
  ASSERT_TRUE(store->usable(nullptr));
  const auto result = store->commit(a_commit());
  EXPECT_EQ(evals.load(), 1);
  EXPECT_EQ(result.outcome, SharedStore::Outcome::Unavailable);
}

// After a failover the address may still lead to the old primary, now a replica: it answers
// the commit script with READONLY (or LOADING while it loads its data, MASTERDOWN, BUSY). That
// is no verdict on the knock but an outage: the connection is dropped (the next one reaches the
// new primary), `fallback = local` applies, and the next commit goes through. Before, the knock
// was refused as an error and the connection kept, so every knock failed until a restart.
TEST(RedisFailover, ReadOnlyReplicaIsAnOutageAndTheNextConnectionIsUsed) {
  for (const char* error : {"-READONLY You can't write against a read only replica.\r\n",
                            "-LOADING Redis is loading the dataset in memory\r\n",
                            "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
                            "-BUSY Redis is busy running a script.\r\n"}) {
    SCOPED_TRACE(error);
    FakeRedis server([error](Conn& c, int index) {
      if (!c.hello()) return;
      auto cmd = c.command();
      if (!cmd) return;
      c.send(index == 0 ? std::string(error) : std::string("*2\r\n:0\r\n$0\r\n\r\n"));
      c.command();
    });
    auto store = make_redis_store(server.settings(200));
    ASSERT_TRUE(store->usable(nullptr));
    const auto first = store->commit(a_commit());
    EXPECT_EQ(first.outcome, SharedStore::Outcome::Unavailable) << first.detail;
    const double deadline = mono() + 5;
    while (!store->usable(nullptr) && mono() < deadline) nap(10);
    const auto second = store->commit(a_commit());
    EXPECT_EQ(second.outcome, SharedStore::Outcome::Ok) << second.detail;
    EXPECT_EQ(server.connections.load(), 2);
  }
}

// Review 7: a server stuck answering READONLY (the address still leads to the old primary) or a
// hostile one that answers every commit so: each answer reset the back-off to 0 before the
// outage set it again, so the store reconnected every 0.1 s forever, with every knock that
// needs it, instead of less and less often like a server that fails every request otherwise.
TEST(Review7Attack, ServerThatNeverServesIsRetriedLessAndLessOften) {
  FakeRedis server([](Conn& c, int) {
    if (!c.hello()) return;
    while (c.command()) c.send("-READONLY You can't write against a read only replica.\r\n");
  });
  auto store = make_redis_store(server.settings(200));
  std::string why;
  for (int i = 0; i < 5; ++i) {
    const double deadline = mono() + 10;
    while (!store->usable(nullptr) && mono() < deadline) nap(10);
    ASSERT_EQ(store->commit(a_commit()).outcome, SharedStore::Outcome::Unavailable);
  }
  ASSERT_FALSE(store->usable(&why));
  // 0.1, 0.2, 0.4, 0.8, then 1.6 s.
  const auto at = why.find("next attempt in ");
  ASSERT_NE(at, std::string::npos) << why;
  EXPECT_GT(std::stoi(why.substr(at + 16)), 800) << why;
}

// A server that restarted (its end closed while idle): the next request reconnects at once and
// is answered (doc/FLEET.md).
TEST(Review5Attack, RestartedServerIsReconnectedAtOnce) {
  FakeRedis server([](Conn& c, int) {
    if (!c.hello() || !c.command()) return;
    c.send("$2\r\ni1\r\n");
  });
  auto store = make_redis_store(server.settings(200));
  EXPECT_EQ(store->read({"k"}, nullptr), std::optional<std::string>("i1"));
  nap(100);
  EXPECT_EQ(store->read({"k"}, nullptr), std::optional<std::string>("i1"));
  EXPECT_EQ(server.connections.load(), 2);
}

// A server that accepts, answers the connection's round trip, then fails every request: the
// back-off grows (0.1, 0.2, 0.4, 0.8 s) instead of starting again at 0.1 s at each connection.
TEST(Review5Attack, BackoffGrowsWhenEveryRequestFails) {
  FakeRedis server([](Conn& c, int) {
    if (!c.hello()) return;
    c.command();  // then closed, unanswered
  });
  auto store = make_redis_store(server.settings(100));
  for (int i = 0; i < 4; ++i) {
    until_retry(*store);
    EXPECT_FALSE(store->read({"k"}, nullptr));
  }
  EXPECT_GT(store->next_tick_in(), 0.3) << "after 4 failures in a row";
}

// An array header with a huge count: the client must neither allocate nor scan for it.
TEST(Review5Attack, HugeArrayCountIsRefusedQuickly) {
  FakeRedis server([](Conn& c, int) {
    if (!c.hello() || !c.command()) return;
    c.send("*2147483647\r\n");
    c.command();
  });
  auto store = make_redis_store(server.settings(50));
  const double start = mono();
  std::string error;
  EXPECT_FALSE(store->read({"k"}, &error));
  EXPECT_LT(mono() - start, 2.0) << "one hostile reply stalled the loop; " << error;
}

// The password is wiped from every buffer it went through (the request's bytes, the command's
// arguments) before that is freed.
TEST(Review5Attack, PasswordIsWipedFromFreedBuffers) {
  std::atomic<bool> authed{false};
  FakeRedis server([&authed](Conn& c, int) {
    auto cmd = c.command();
    if (!cmd || (*cmd)[0] != "AUTH" || cmd->back() != kSecret) return;
    authed = true;
    c.send("+OK\r\n");
    c.hello();
    c.command();
  });
  StoreSettings s = server.settings(500);
  s.user = "portknock";
  s.has_password = true;
  s.password = SecureBytes(reinterpret_cast<const std::uint8_t*>(kSecret.data()), kSecret.size());
  auto store = make_redis_store(std::move(s));
  g_watching = true;
  const bool ok = store->usable(nullptr);
  g_watching = false;
  EXPECT_TRUE(ok);
  EXPECT_TRUE(authed.load());
  EXPECT_EQ(g_unwiped.load(), 0) << "freed buffers that still held the password";
}
