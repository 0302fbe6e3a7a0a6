#include "client/proxy.hpp"

#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "client/client.hpp"
#include "config/tree.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace knock::client {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

socklen_t to_sockaddr(const IpAddress& a, std::uint16_t port, sockaddr_storage& ss) {
  ss = {};
  if (a.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, a.bytes(), 4);
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  std::memcpy(&sin6->sin6_addr, a.bytes(), 16);
  return sizeof(sockaddr_in6);
}

// "10 s", "0.25 s".
std::string seconds_text(milliseconds ms) {
  const auto n = ms.count();
  std::string s = std::to_string(n / 1000);
  if (n % 1000 != 0) {
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03d", static_cast<int>(n % 1000));
    std::string f = frac;
    while (f.back() == '0') f.pop_back();
    s += f;
  }
  return s + " s";
}

// An abandoned attempt: closed without a FIN and, if the handshake was under way, without the
// kernel retransmitting anything.
void drop(UniqueFd& fd) {
  const linger lg{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  fd.reset();
}

struct Attempt {
  UniqueFd fd;
  Clock::time_point expires;
  milliseconds timeout;
  int number = 0;
};

std::string outcome_of(int err) {
  if (err == ECONNREFUSED) return "refused";
  return errno_message(err);
}

std::uint16_t parse_port(const std::string& text, const Location& where) {
  unsigned n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || n == 0 || n > 65535)
    throw ConfigError(where, "the port must be a number from 1 to 65535, not '" + text + "'");
  return static_cast<std::uint16_t>(n);
}

// SECONDS: "10", "2.5", "0.25"; more than 0, at most 3600, milliseconds at most.
milliseconds parse_seconds(const std::string& text, const Location& where) {
  const auto bad = [&] {
    return ConfigError(where, "waittime must be seconds from 0.001 to 3600 (e.g. 10 or 2.5), not '" + text + "'");
  };
  const auto dot = text.find('.');
  const std::string whole = text.substr(0, dot);
  const std::string frac = dot == std::string::npos ? "" : text.substr(dot + 1);
  if (whole.empty() || whole.size() > 4 || frac.size() > 3 || (dot != std::string::npos && frac.empty())) throw bad();
  long long ms = 0;
  for (char c : whole) {
    if (c < '0' || c > '9') throw bad();
    ms = ms * 10 + (c - '0');
  }
  ms *= 1000;
  long long scale = 100;
  for (char c : frac) {
    if (c < '0' || c > '9') throw bad();
    ms += (c - '0') * scale;
    scale /= 10;
  }
  if (ms <= 0 || ms > 3600 * 1000) throw bad();
  return milliseconds(ms);
}

class IgnoreSigpipe {
 public:
  IgnoreSigpipe() {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    saved_ok_ = ::sigaction(SIGPIPE, &ign, &saved_) == 0;
  }
  ~IgnoreSigpipe() {
    if (saved_ok_) ::sigaction(SIGPIPE, &saved_, nullptr);
  }
  IgnoreSigpipe(const IgnoreSigpipe&) = delete;
  IgnoreSigpipe& operator=(const IgnoreSigpipe&) = delete;

 private:
  struct sigaction saved_ {};
  bool saved_ok_ = false;
};

// One direction of the relay: bytes read but not yet written.
struct Pending {
  std::array<char, 65536> data;
  std::size_t off = 0;
  std::size_t len = 0;
  bool empty() const { return len == 0; }
  void consumed(std::size_t n) {
    off += n;
    len -= n;
    if (len == 0) off = 0;
  }
};

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

}  // namespace

Connected connect_when_open(const IpAddress& remote, std::uint16_t port, const RetryPolicy& policy) {
  sockaddr_storage ss;
  const socklen_t len = to_sockaddr(remote, port, ss);
  const auto start = Clock::now();
  const auto deadline = start + policy.deadline;
  auto next_launch = start;
  std::vector<Attempt> live;
  int attempts = 0;
  std::vector<Clock::time_point> launched;
  std::string last = "none started";

  const auto won = [&](Attempt& a) {
    Connected c;
    c.fd = a.fd.release();
    c.attempts = attempts;
    c.winner = a.number;
    c.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    c.launched = std::move(launched);
    for (auto& other : live)
      if (other.fd.get() >= 0) drop(other.fd);
    return c;
  };

  for (;;) {
    auto now = Clock::now();
    // Unanswered attempts expire: those of the fast phase before the kernel would retransmit
    // their SYN, the later ones after slow_attempt_timeout.
    for (auto& a : live)
      if (now >= a.expires) {
        drop(a.fd);
        last = "unanswered after " + seconds_text(a.timeout);
      }
    std::erase_if(live, [](const Attempt& a) { return a.fd.get() < 0; });
    if (now >= deadline) break;

    if (now >= next_launch) {
      ++attempts;
      const bool fast = now - start < policy.fast_for;
      const milliseconds timeout = fast ? policy.attempt_timeout : policy.slow_attempt_timeout;
      Attempt a{UniqueFd(::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)), now + timeout,
                timeout, attempts};
      const int rc = a.fd.get() < 0 ? -1 : ::connect(a.fd.get(), reinterpret_cast<const sockaddr*>(&ss), len);
      const int err = errno;
      launched.push_back(Clock::now());
      if (a.fd.get() < 0) {
        last = "cannot create a socket: " + errno_message(err);
      } else if (rc == 0) {
        return won(a);
      } else if (err == EINPROGRESS || err == EINTR) {
        live.push_back(std::move(a));
      } else {
        // Refused (a REJECT rule or nothing listening yet), unreachable, a local firewall: the
        // door may still open; the deadline bounds the retries.
        last = outcome_of(err);
        drop(a.fd);
      }
      const auto step = fast ? policy.interval : policy.slow_interval;
      next_launch += step;
      if (next_launch <= now) next_launch = now + step;
    }

    // Sleep until an attempt completes, the next launch, the first expiry or the deadline.
    auto wake = std::min(next_launch, deadline);
    for (const auto& a : live) wake = std::min(wake, a.expires);
    now = Clock::now();
    const auto wait = wake > now ? std::chrono::duration_cast<std::chrono::nanoseconds>(wake - now)
                                 : std::chrono::nanoseconds(0);
    timespec ts{static_cast<time_t>(wait.count() / 1000000000), static_cast<long>(wait.count() % 1000000000)};
    std::vector<pollfd> fds;
    fds.reserve(live.size());
    for (const auto& a : live) fds.push_back(pollfd{a.fd.get(), POLLOUT, 0});
    const int n = ::ppoll(fds.data(), fds.size(), &ts, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw RuntimeError("poll: " + errno_message(errno));
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      int err = 0;
      socklen_t err_len = sizeof err;
      if (::getsockopt(live[i].fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_len) != 0) err = errno;
      if (err == 0) return won(live[i]);
      last = outcome_of(err);
      drop(live[i].fd);
    }
  }
  throw RuntimeError(remote.str() + " port " + std::to_string(port) + " accepted no connection within " +
                     seconds_text(policy.deadline) + " (" + std::to_string(attempts) + " attempts, the last " + last +
                     ")");
}

int relay(int sock, int in_fd, int out_fd) {
  const IgnoreSigpipe no_sigpipe;
  // Standard input and output stay as they are (blocking): they are shared with the shell that
  // started us, which must not find its terminal non-blocking after a ^C. poll() says when each
  // is ready; a read then returns what is there, and a write of at most PIPE_BUF to a pipe
  // poll() calls writable does not block.
  auto up = std::make_unique<Pending>();    // in_fd -> socket
  auto down = std::make_unique<Pending>();  // socket -> out_fd
  bool in_open = true;
  bool sock_open = true;
  bool shut = false;
  for (;;) {
    if (!in_open && up->empty() && !shut) {
      // End of input: the peer sees end of file; its answer still comes back.
      if (::shutdown(sock, SHUT_WR) != 0 && errno != ENOTCONN) {
        log::error("cannot shut down the connection's sending side: " + errno_message(errno));
        return kExitRuntime;
      }
      shut = true;
    }
    if (!sock_open && down->empty()) return kExitOk;

    std::array<pollfd, 3> fds{};
    fds[0] = {in_open && up->empty() ? in_fd : -1, POLLIN, 0};
    fds[1] = {sock, static_cast<short>((sock_open && down->empty() ? POLLIN : 0) | (up->empty() ? 0 : POLLOUT)), 0};
    if (fds[1].events == 0) fds[1].fd = -1;
    fds[2] = {down->empty() ? -1 : out_fd, POLLOUT, 0};
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      log::error("poll: " + errno_message(errno));
      return kExitRuntime;
    }
    if (fds[0].revents != 0) {
      const ssize_t n = ::read(in_fd, up->data.data(), up->data.size());
      if (n > 0) {
        up->len = static_cast<std::size_t>(n);
      } else if (n == 0) {
        in_open = false;
      } else if (!would_block(errno)) {
        log::error("cannot read standard input: " + errno_message(errno));
        return kExitRuntime;
      }
    }
    if (fds[1].revents != 0 && !up->empty()) {
      const ssize_t n = ::send(sock, up->data.data() + up->off, up->len, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) {
        up->consumed(static_cast<std::size_t>(n));
      } else if (!would_block(errno)) {
        log::error("cannot send to the connection: " + errno_message(errno));
        return kExitRuntime;
      }
    }
    if (fds[1].revents != 0 && sock_open && down->empty()) {
      const ssize_t n = ::recv(sock, down->data.data(), down->data.size(), MSG_DONTWAIT);
      if (n > 0) {
        down->len = static_cast<std::size_t>(n);
      } else if (n == 0) {
        sock_open = false;
      } else if (!would_block(errno)) {
        log::error("connection lost: " + errno_message(errno));
        return kExitRuntime;
      }
    }
    if (fds[2].revents != 0) {
      const ssize_t n = ::write(out_fd, down->data.data() + down->off, std::min<std::size_t>(down->len, PIPE_BUF));
      if (n >= 0) {
        down->consumed(static_cast<std::size_t>(n));
      } else if (!would_block(errno)) {
        log::error("cannot write standard output: " + errno_message(errno));
        return kExitRuntime;
      }
    }
  }
}

std::optional<FollowUp> take_follow_up(cli::ParsedArgs& args, const config::Value* root) {
  const bool proxy = args.has("proxy");
  const bool wait = args.has("wait");
  if (proxy && wait) throw ConfigError("give either -proxy HOST PORT or -wait PORT, not both");
  if (!proxy && !wait) {
    if (args.has("waittime")) throw ConfigError("-waittime needs -proxy HOST PORT or -wait PORT");
    return std::nullopt;
  }
  FollowUp f;
  if (proxy) {
    const Location where{"option -proxy", 0};
    const std::string host = *args.get("proxy");
    if (host.empty()) throw ConfigError(where, "-proxy needs a host name or address");
    if (args.positional.size() != 1)
      throw ConfigError(where, "give the port after the host: -proxy HOST PORT (ProxyCommand knockclient -proxy %h %p)");
    if (args.get("key") == "-")
      throw ConfigError(Location{"option -key", 0},
                        "-key - reads standard input, which -proxy relays: use -keyfile FILE");
    f.mode = FollowUp::Mode::Proxy;
    f.port = parse_port(args.positional.front(), where);
    args.positional.clear();
    args.values["remote"] = host;
    // ssh prints the proxy's standard error on the terminal: only warnings and errors.
    if (!args.has("debug") && !args.has("quiet")) log::set_level(log::Level::Warning);
  } else {
    f.mode = FollowUp::Mode::Wait;
    f.port = parse_port(*args.get("wait"), Location{"option -wait", 0});
  }
  // The knock's PORT field: the port connected to, unless -port or port = says otherwise.
  if (!args.has("port") && (root == nullptr || !root->scalar("port"))) args.values["port"] = std::to_string(f.port);
  if (auto v = args.get("waittime")) {
    f.retry.deadline = parse_seconds(*v, Location{"option -waittime", 0});
  } else if (root != nullptr) {
    if (auto t = root->scalar("waittime")) f.retry.deadline = parse_seconds(*t, root->where_of("waittime"));
  }
  return f;
}

void check_follow_up(const FollowUp& follow, const ClientPlan& plan) {
  const char* what = follow.mode == FollowUp::Mode::Proxy ? "-proxy" : "-wait";
  if (plan.test) throw ConfigError(std::string(what) + " sends the knock and connects: it cannot be used with -test");
  if (plan.logfile)
    throw ConfigError(std::string(what) + " sends the knock and connects: it cannot be used with -logfile");
  if (!plan.remote) throw ConfigError(std::string(what) + " needs a remote host");
}

int run_follow_up(const FollowUp& follow, const ClientPlan& plan) {
  const std::string name = plan.remote_name && *plan.remote_name != plan.remote->str()
                               ? *plan.remote_name + " (" + plan.remote->str() + ")"
                               : plan.remote->str();
  Connected c;
  try {
    c = connect_when_open(*plan.remote, follow.port, follow.retry);
  } catch (const RuntimeError& e) {
    const bool named = plan.remote_name && *plan.remote_name != plan.remote->str();
    throw RuntimeError("still closed after the knock" + (named ? " to " + *plan.remote_name : std::string()) + ": " +
                       e.what());
  }
  UniqueFd fd(c.fd);
  const std::string how = name + " port " + std::to_string(follow.port) + " accepted a connection after " +
                          std::to_string(c.elapsed.count()) + " ms (attempt " + std::to_string(c.winner) + " of " +
                          std::to_string(c.attempts) + ")";
  if (follow.mode == FollowUp::Mode::Wait) {
    log::info(how);
    return kExitOk;
  }
  log::debug(how);
  const int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return relay(fd.get(), STDIN_FILENO, STDOUT_FILENO);
}

}  // namespace knock::client
