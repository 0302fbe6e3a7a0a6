// The Redis client of <store redis>: hiredis encodes the requests and parses the replies; the
// socket is our own (close-on-exec, non-blocking, MSG_NOSIGNAL), so that every request has a hard
// deadline and a server that went away neither blocks the loop nor raises SIGPIPE.
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "rules/store.hpp"
#include "util/clock.hpp"
#include "util/log.hpp"
#include "util/secure.hpp"

namespace knock::rules {

namespace {

double mono_now() { return mono_seconds(); }

struct Reply {
  int type = 0;  // REDIS_REPLY_*
  std::string str;
  long long integer = 0;
  std::vector<Reply> elements;
};

Reply convert(const redisReply* r) {
  Reply out;
  out.type = r->type;
  out.integer = r->integer;
  if (r->str != nullptr) out.str.assign(r->str, r->len);
  for (std::size_t i = 0; i < r->elements && i < 64; ++i) out.elements.push_back(convert(r->element[i]));
  return out;
}

constexpr std::size_t kMaxReplyBytes = 1 << 20;  // our replies are a few bytes; a bound all the same

// Our replies have at most a few elements. hiredis (0.14) allocates an array's element table
// from its header alone ("*2147483647\r\n": 16 GiB, then scanned when freed, seconds of a
// blocked loop): refused here before any allocation, as a protocol error.
constexpr int kMaxReplyElements = 64;
const redisReplyObjectFunctions* g_hiredis_functions = nullptr;

void* create_bounded_array(const redisReadTask* task, int elements) {
  if (elements < 0 || elements > kMaxReplyElements) return nullptr;  // hiredis: "Out of memory", an error
  return g_hiredis_functions->createArray(task, elements);
}

// Errors of a server that cannot serve now, whatever the request: a replica (READONLY), one
// loading its data (LOADING), one cut from its primary (MASTERDOWN), one running a long script
// (BUSY).
bool not_serving(std::string_view error) {
  for (std::string_view prefix : {"READONLY ", "LOADING ", "MASTERDOWN ", "BUSY "})
    if (error.substr(0, prefix.size()) == prefix) return true;
  return false;
}

// A reader whose arrays are bounded (nullptr when out of memory).
redisReader* make_reader() {
  redisReader* r = redisReaderCreate();
  if (r == nullptr) return nullptr;
  static const redisReplyObjectFunctions defaults = *r->fn;
  static redisReplyObjectFunctions bounded = [] {
    g_hiredis_functions = &defaults;
    redisReplyObjectFunctions f = defaults;
    f.createArray = create_bounded_array;
    return f;
  }();
  r->fn = &bounded;
  return r;
}

class RedisStore final : public SharedStore {
 public:
  explicit RedisStore(StoreSettings s) : s_(std::move(s)), name_(s_.address()) {}
  ~RedisStore() override { disconnect(); }
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  std::optional<std::string> read(const std::vector<std::string>& keys, std::string* error) override {
    std::vector<Reply> replies;
    const double backoff = backoff_;  // an answer that is an outage does not reset it (below)
    if (!request({{"GET", redis_state_key(s_.prefix, keys)}}, replies, error)) return std::nullopt;
    const Reply& r = replies.front();
    if (r.type == REDIS_REPLY_NIL) return std::string();
    if (r.type == REDIS_REPLY_STRING) {
      if (r.str.empty()) {  // never written by us: a value is at least one character
        if (error != nullptr) *error = name_ + ": an empty value at a state key";
        return std::nullopt;
      }
      return r.str;
    }
    // Another type: the connection is out of step (or the server hostile); not used again.
    const std::string why = "GET answered " + describe_reply(r);
    if (r.type == REDIS_REPLY_ERROR && not_serving(r.str)) backoff_ = backoff;
    if (r.type != REDIS_REPLY_ERROR || not_serving(r.str)) down(why);
    if (error != nullptr) *error = name_ + ": " + why;
    return std::nullopt;
  }

  Result commit(const StoreCommit& c) override {
    std::vector<std::string> args = redis_commit_args(s_.prefix, c);
    std::vector<std::string> cmd;
    cmd.reserve(args.size() + 2);
    cmd.push_back("EVALSHA");
    cmd.push_back(sha_);
    cmd.insert(cmd.end(), args.begin(), args.end());
    std::vector<Reply> replies;
    std::string error;
    // A server that answers but never serves backs off like one that fails every request: the
    // answer reset backoff_, the outage below puts it back before doubling it.
    const double backoff = backoff_;
    if (!request({cmd}, replies, &error)) return {Outcome::Unavailable, error};
    if (replies.front().type == REDIS_REPLY_ERROR && replies.front().str.rfind("NOSCRIPT", 0) == 0) {
      // The server restarted or its scripts were flushed: send the script itself (it is cached again).
      cmd[0] = "EVAL";
      cmd[1] = std::string(kRedisCommitScript);
      replies.clear();
      if (!request({cmd}, replies, &error)) return {Outcome::Unavailable, error};
    }
    const Reply& r = replies.front();
    if (r.type == REDIS_REPLY_ERROR && not_serving(r.str)) {
      // No verdict on this knock: a replica after a failover, a server loading its data. Its
      // connection is dropped (the next one may reach the new primary): an outage, so
      // `fallback = local` applies.
      backoff_ = backoff;
      down("it cannot take the commit now (" + r.str.substr(0, 120) + ")");
      return {Outcome::Unavailable, name_ + ": " + r.str.substr(0, 200)};
    }
    if (r.type == REDIS_REPLY_ERROR) return {Outcome::Error, name_ + ": " + r.str.substr(0, 200)};
    if (r.type != REDIS_REPLY_ARRAY || r.elements.size() != 2 || r.elements[0].type != REDIS_REPLY_INTEGER) {
      const std::string why = "the commit script answered " + describe_reply(r);
      down(why);  // out of step, or not our script: not used again
      return {Outcome::Error, name_ + ": " + why};
    }
    std::string detail = r.elements[1].str.substr(0, 200);
    switch (r.elements[0].integer) {
      case 0: return {Outcome::Ok, {}};
      case 1: return {Outcome::Replay, detail};
      case 2: return {Outcome::Conflict, detail};
      default: return {Outcome::Error, name_ + ": the commit script answered " + describe_reply(r)};
    }
  }

  bool usable(std::string* why) override { return usable_by(why, mono_now() + s_.timeout_ms / 1000.0); }
  void begin_knock() override { knock_deadline_ = mono_now() + s_.timeout_ms / 1000.0; }
  void end_knock() override { knock_deadline_ = 0; }

  void tick() override {
    if (fd_ < 0 && mono_now() >= next_try_) {
      std::string error;
      connect(&error, mono_now() + s_.timeout_ms / 1000.0);
    }
  }

  double next_tick_in() const override {
    if (fd_ >= 0) return 3600;
    return std::max(0.0, next_try_ - mono_now());
  }

  std::string describe() const override { return name_; }
  bool fallback_local() const override { return s_.fallback_local; }
  const std::string& gateway() const override { return s_.name; }

  // Fleet sharing (doc/FLEET.md): the stream read after the cursor by one bounded script.
  const std::string& fleet() const override { return s_.fleet; }
  std::span<const std::uint8_t> fleet_key() const override { return {s_.fleet_key.data(), s_.fleet_key.size()}; }
  long fleet_length() const override { return s_.fleet_length; }
  bool fetch(std::size_t max, std::vector<StreamEntry>& out, std::string* error) override {
    if (s_.fleet.empty()) return true;
    max = std::clamp<std::size_t>(max, 1, 31);  // 1 + 2 * max replies within convert()'s 64
    std::vector<Reply> replies;
    if (!request({{"EVAL", std::string(kRedisFetchScript), "2", redis_fleet_key(s_.prefix, s_.fleet),
                   redis_cursor_key(s_.prefix, s_.fleet, s_.name), cursor_, std::to_string(max),
                   std::to_string(kMaxSharedKnockBytes)}},
                 replies, error))
      return false;
    const Reply& r = replies.front();
    if (r.type != REDIS_REPLY_ARRAY || r.elements.empty() || r.elements.size() % 2 != 1 ||
        !valid_stream_id(r.elements[0].str)) {
      if (error != nullptr) *error = name_ + ": the fleet's stream read answered " + describe_reply(r);
      return false;
    }
    cursor_ = r.elements[0].str;
    for (std::size_t i = 1; i + 1 < r.elements.size(); i += 2) {
      if (!valid_stream_id(r.elements[i].str)) break;
      out.push_back({r.elements[i].str, r.elements[i + 1].type == REDIS_REPLY_STRING ? r.elements[i + 1].str : std::string()});
    }
    return true;
  }
  bool handled(const std::string& id, std::string* error) override {
    if (s_.fleet.empty() || !valid_stream_id(id)) return true;
    cursor_ = id;  // this process goes on after it even if the store does not hear it now
    std::vector<Reply> replies;
    if (!request({{"SET", redis_cursor_key(s_.prefix, s_.fleet, s_.name), id}}, replies, error)) return false;
    if (replies.front().type == REDIS_REPLY_ERROR) {
      if (error != nullptr) *error = name_ + ": " + replies.front().str.substr(0, 200);
      return false;
    }
    return true;
  }

 private:
  // usable(), a connection attempt (if any) finished by `deadline`.
  bool usable_by(std::string* why, double deadline) {
    if (fd_ >= 0) return true;
    if (mono_now() < next_try_) {
      if (why != nullptr) *why = name_ + " unreachable (" + last_error_ + "); next attempt in " +
                                 std::to_string(static_cast<int>(std::ceil((next_try_ - mono_now()) * 1000))) + " ms";
      return false;
    }
    std::string error;
    if (connect(&error, deadline)) return true;
    if (why != nullptr) *why = error;
    return false;
  }

  static std::string describe_reply(const Reply& r) {
    switch (r.type) {
      case REDIS_REPLY_ERROR: return "an error: " + r.str.substr(0, 200);
      case REDIS_REPLY_STRING: return "a string";
      case REDIS_REPLY_INTEGER: return "an integer";
      case REDIS_REPLY_ARRAY: return "an array of " + std::to_string(r.elements.size());
      case REDIS_REPLY_NIL: return "nil";
      case REDIS_REPLY_STATUS: return "status " + r.str.substr(0, 200);
      default: return "reply type " + std::to_string(r.type);
    }
  }

  void disconnect() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (reader_ != nullptr) redisReaderFree(reader_);
    reader_ = nullptr;
  }

  // Marks the store down: the connection is dropped (a late answer must never be taken for the
  // next request's) and the next attempt backs off.
  void down(const std::string& why) {
    disconnect();
    last_error_ = why;
    backoff_ = backoff_ == 0 ? 0.1 : std::min(5.0, backoff_ * 2);
    next_try_ = mono_now() + backoff_;
    if (!reported_down_) log::error(name_ + ": " + why + "; knocks that need the store are " +
                                    (s_.fallback_local ? "judged by this gateway alone" : "refused") + " until it is back");
    reported_down_ = true;
  }

  bool wait(short events, double deadline, std::string* error) {
    for (;;) {
      const double left = deadline - mono_now();
      if (left <= 0) {
        *error = "no answer within " + std::to_string(s_.timeout_ms) + " ms";
        return false;
      }
      pollfd p{fd_, events, 0};
      const int n = ::poll(&p, 1, std::max(1, static_cast<int>(std::ceil(left * 1000))));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        *error = std::string("poll: ") + std::strerror(errno);
        return false;
      }
      if (n > 0) return true;
    }
  }

  // Sends the commands and reads one reply each, all before the deadline.
  bool exchange(const std::vector<std::vector<std::string>>& cmds, std::vector<Reply>& out, std::string* error,
                double deadline) {
    // The bytes of a request may hold the password (AUTH): wiped before they are freed, and
    // built without reallocation (a moved buffer would be freed unwiped).
    std::string wire;
    struct Wipe {
      std::string& s;
      ~Wipe() { secure_wipe(s.data(), s.size()); }
    } wipe_wire{wire};
    std::vector<std::pair<char*, std::size_t>> texts;
    struct WipeTexts {
      std::vector<std::pair<char*, std::size_t>>& t;
      ~WipeTexts() {
        for (auto& [p, n] : t) {
          secure_wipe(p, n);
          redisFreeCommand(p);
        }
      }
    } wipe_texts{texts};
    texts.reserve(cmds.size());
    std::size_t total = 0;
    for (const auto& cmd : cmds) {
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      for (const auto& a : cmd) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      char* text = nullptr;
      const long long n = redisFormatCommandArgv(&text, static_cast<int>(argv.size()), argv.data(), lens.data());
      if (n < 0 || text == nullptr) {
        *error = "cannot format a request";
        return false;
      }
      texts.emplace_back(text, static_cast<std::size_t>(n));
      total += static_cast<std::size_t>(n);
    }
    wire.reserve(total);
    for (const auto& [p, n] : texts) wire.append(p, n);
    std::size_t sent = 0;
    while (sent < wire.size()) {
      const ssize_t n = ::send(fd_, wire.data() + sent, wire.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait(POLLOUT, deadline, error)) return false;
        continue;
      }
      *error = std::string("send: ") + std::strerror(errno);
      return false;
    }
    std::size_t received = 0;
    char buf[4096];
    while (out.size() < cmds.size()) {
      void* reply = nullptr;
      if (redisReaderGetReply(reader_, &reply) != REDIS_OK) {
        *error = std::string("protocol error: ") + reader_->errstr;
        return false;
      }
      if (reply != nullptr) {
        out.push_back(convert(static_cast<redisReply*>(reply)));
        freeReplyObject(reply);
        continue;
      }
      if (!wait(POLLIN, deadline, error)) return false;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (n < 0) {
        *error = std::string("recv: ") + std::strerror(errno);
        return false;
      }
      if (n == 0) {
        *error = "the server closed the connection";
        return false;
      }
      received += static_cast<std::size_t>(n);
      if (received > kMaxReplyBytes) {
        *error = "a reply longer than 1 MiB";
        return false;
      }
      if (redisReaderFeed(reader_, buf, static_cast<std::size_t>(n)) != REDIS_OK) {
        *error = "protocol error";
        return false;
      }
    }
    // More than the replies asked for: a late or forged reply that the next request would take
    // for its own.
    if (reader_->pos < reader_->len) {
      *error = "more data than the replies to the request";
      return false;
    }
    return true;
  }

  // Whether the open connection is idle as it should be: the server has neither closed it (it
  // restarted) nor sent anything nobody asked for (a late or forged reply). Checked before a
  // request is sent, so that a request is never sent twice and never answered by another's reply.
  bool idle_clean() {
    if (reader_->pos < reader_->len) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) == 0) return true;
    char c = 0;
    if (::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
      log::warning(name_ + ": data nobody asked for on the idle connection; it is replaced");
    return false;
  }

  // One request on the open connection (connecting first when allowed); a connection that
  // was open before and is found closed (the server restarted) before the request is sent is
  // reopened at once.
  // The whole request, a connection attempt included, is bounded by one timeout.
  bool request(const std::vector<std::vector<std::string>>& cmds, std::vector<Reply>& out, std::string* error) {
    double deadline = mono_now() + s_.timeout_ms / 1000.0;
    if (knock_deadline_ > 0) deadline = std::min(deadline, knock_deadline_);
    std::string why;
    const bool fresh = fd_ < 0;
    if (!usable_by(&why, deadline)) {
      if (error != nullptr) *error = why;
      return false;
    }
    if (!fresh && !idle_clean() && !connect(error, deadline)) return false;  // connect() said why and backs off
    // Once sent, a request is never sent again: the server may have run it (a commit twice).
    if (exchange(cmds, out, &why, deadline)) {
      backoff_ = 0;  // answered: the next failure backs off from 0.1 s again
      return true;
    }
    down(why);
    if (error != nullptr) *error = name_ + ": " + why;
    return false;
  }

  // A connection attempt, the socket's connect and the first round trip both by `deadline`.
  bool connect(std::string* error, double deadline) {
    disconnect();
    std::string why;
    sockaddr_storage addr{};
    socklen_t len = 0;
    int family = AF_UNIX;
    if (!s_.unix_path.empty()) {
      auto* un = reinterpret_cast<sockaddr_un*>(&addr);
      un->sun_family = AF_UNIX;
      std::memcpy(un->sun_path, s_.unix_path.c_str(), s_.unix_path.size() + 1);
      len = static_cast<socklen_t>(sizeof(sockaddr_un));
    } else if (s_.host.find(':') != std::string::npos) {
      family = AF_INET6;
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(static_cast<uint16_t>(s_.port));
      inet_pton(AF_INET6, s_.host.c_str(), &in6->sin6_addr);
      len = sizeof(sockaddr_in6);
    } else {
      family = AF_INET;
      auto* in4 = reinterpret_cast<sockaddr_in*>(&addr);
      in4->sin_family = AF_INET;
      in4->sin_port = htons(static_cast<uint16_t>(s_.port));
      inet_pton(AF_INET, s_.host.c_str(), &in4->sin_addr);
      len = sizeof(sockaddr_in);
    }
    fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) {
      down(std::string("socket: ") + std::strerror(errno));
      if (error != nullptr) *error = name_ + ": " + last_error_;
      return false;
    }
    reader_ = make_reader();
    if (reader_ == nullptr) {
      down("out of memory");
      if (error != nullptr) *error = name_ + ": " + last_error_;
      return false;
    }
    if (family != AF_UNIX) {
      int one = 1;
      ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    bool ok = true;
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
      if (errno == EINPROGRESS || errno == EAGAIN) {
        ok = wait(POLLOUT, deadline, &why);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (ok && (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0)) {
          why = std::string("connect: ") + std::strerror(soerr != 0 ? soerr : errno);
          ok = false;
        }
      } else {
        why = std::string("connect: ") + std::strerror(errno);
        ok = false;
      }
    }
    // One round trip: AUTH, SELECT and loading the commit script.
    // The password is copied once, into its argument (no temporary copy, no reallocation), and
    // wiped below with the rest.
    std::vector<std::vector<std::string>> hello;
    hello.reserve(3);
    if (ok && s_.has_password) {
      std::vector<std::string>& auth = hello.emplace_back();
      auth.reserve(3);
      auth.emplace_back("AUTH");
      if (!s_.user.empty()) auth.emplace_back(s_.user);
      auth.emplace_back(reinterpret_cast<const char*>(s_.password.data()), s_.password.size());
    }
    if (ok && s_.database != 0) hello.push_back({"SELECT", std::to_string(s_.database)});
    if (ok) hello.push_back({"SCRIPT", "LOAD", std::string(kRedisCommitScript)});
    std::vector<Reply> replies;
    if (ok) ok = exchange(hello, replies, &why, deadline);
    for (auto& h : hello)
      for (auto& a : h) secure_wipe(a.data(), a.size());
    if (ok) {
      for (const Reply& r : replies)
        if (r.type == REDIS_REPLY_ERROR) {
          why = "the server refused: " + r.str.substr(0, 200);
          ok = false;
          break;
        }
    }
    if (ok) {
      sha_ = replies.back().str;
      if (sha_.size() != 40) {
        why = "SCRIPT LOAD answered " + describe_reply(replies.back());
        ok = false;
      }
    }
    if (!ok) {
      down(why);
      if (error != nullptr) *error = name_ + ": " + why;
      return false;
    }
    if (reported_down_) log::info(name_ + ": connected again; the fleet's memory is shared again");
    else log::info(name_ + ": connected (gateway " + s_.name + ")");
    reported_down_ = false;
    // backoff_ is reset by the first request answered, not here: a server that accepts
    // connections and then fails every request is retried less and less often.
    return true;
  }

  StoreSettings s_;
  std::string name_;
  int fd_ = -1;
  double knock_deadline_ = 0;  // begin_knock(): every request of this knock ends by then (0: none)
  redisReader* reader_ = nullptr;
  std::string sha_;
  double next_try_ = 0;  // monotonic
  double backoff_ = 0;
  std::string last_error_;
  bool reported_down_ = false;
  std::string cursor_;  // the fleet's stream: the last entry handled ("" until read from the store)
};

}  // namespace

std::unique_ptr<SharedStore> make_redis_store(StoreSettings settings) {
  return std::make_unique<RedisStore>(std::move(settings));
}

}  // namespace knock::rules
