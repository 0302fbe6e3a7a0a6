#include "daemon/privsep.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "util/error.hpp"

namespace knock::daemon::privsep {
namespace {

// Appends to a fixed buffer; `ok` turns false for good once something does not fit.
class Writer {
 public:
  explicit Writer(Buffer& out) noexcept : out_(out) {}
  void u8(std::uint8_t v) noexcept { put(&v, 1); }
  void u32(std::uint32_t v) noexcept {
    const std::uint8_t b[4] = {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
                               static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
    put(b, 4);
  }
  void u64(std::uint64_t v) noexcept {
    u32(static_cast<std::uint32_t>(v >> 32));
    u32(static_cast<std::uint32_t>(v));
  }
  void f64(double v) noexcept {
    std::uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    u64(bits);
  }
  void text(std::string_view s, std::size_t max) noexcept {
    if (s.size() > max) {
      ok_ = false;
      return;
    }
    u8(static_cast<std::uint8_t>(s.size()));
    put(s.data(), s.size());
  }
  void put(const void* p, std::size_t n) noexcept {
    if (n == 0) return;  // (an empty view's data() may be null: no memcpy from it)
    if (!ok_ || n > out_.size() - size_) {
      ok_ = false;
      return;
    }
    std::memcpy(out_.data() + size_, p, n);
    size_ += n;
  }
  std::size_t finish() const noexcept { return ok_ ? size_ : 0; }

 private:
  Buffer& out_;
  std::size_t size_ = 0;
  bool ok_ = true;
};

// Reads from a message; every read checks the length; `ok` turns false for good on a short one.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) noexcept : in_(in) {}
  std::uint8_t u8() noexcept {
    std::uint8_t v = 0;
    get(&v, 1);
    return v;
  }
  std::uint32_t u32() noexcept {
    std::uint8_t b[4] = {};
    get(b, 4);
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
  }
  std::uint64_t u64() noexcept {
    const std::uint64_t high = u32();
    return (high << 32) | u32();
  }
  double f64() noexcept {
    const std::uint64_t bits = u64();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
  bool text(std::string& out, std::size_t max) noexcept {
    const std::size_t n = u8();
    if (n > max || n > in_.size() - at_) {
      ok_ = false;
      return false;
    }
    out.assign(reinterpret_cast<const char*>(in_.data() + at_), n);
    at_ += n;
    return true;
  }
  void get(void* p, std::size_t n) noexcept {
    if (!ok_ || n > in_.size() - at_) {
      ok_ = false;
      std::memset(p, 0, n);
      return;
    }
    std::memcpy(p, in_.data() + at_, n);
    at_ += n;
  }
  bool ok() const noexcept { return ok_; }
  bool at_end() const noexcept { return at_ == in_.size(); }

 private:
  std::span<const std::uint8_t> in_;
  std::size_t at_ = 0;
  bool ok_ = true;
};

// What a name an authenticated knock carries may hold (the engine checks it again before a
// command sees it).
bool printable(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) return false;
  return true;
}

std::size_t field_limit(codec::Field f) {
  switch (codec::field_width(f)) {
    case 1: return 0xff;
    case 2: return 0xffff;
    default: return 0xffffffffu;
  }
}

}  // namespace

std::string_view to_string(KnockKind kind) noexcept {
  switch (kind) {
    case KnockKind::Original: return "port knock";
    case KnockKind::Spa: return "single-packet knock";
    case KnockKind::Fwknop: return "fwknop packet";
  }
  return "?";
}

std::uint8_t type_of(std::span<const std::uint8_t> message) noexcept { return message.empty() ? 0 : message[0]; }

std::size_t encode_knock(KnockKind kind, bool by_ports, const rules::KnockEvent& e, Buffer& out) noexcept {
  Writer w(out);
  w.u8(static_cast<std::uint8_t>(Type::Knock));
  w.u8(kVersion);
  w.u8(static_cast<std::uint8_t>(kind));
  w.u8(by_ports ? 1 : 0);
  w.u8(e.logip.is_v4() ? 4 : 6);
  std::uint8_t address[16] = {};
  std::memcpy(address, e.logip.bytes(), e.logip.size());
  w.put(address, sizeof address);
  w.f64(e.time);
  std::uint16_t present = 0;
  for (std::size_t i = 0; i < codec::kFieldCount; ++i)
    if (e.values.value[i]) present = static_cast<std::uint16_t>(present | (1u << i));
  w.u8(static_cast<std::uint8_t>(present >> 8));
  w.u8(static_cast<std::uint8_t>(present));
  for (std::size_t i = 0; i < codec::kFieldCount; ++i)
    if (e.values.value[i]) w.u32(*e.values.value[i]);
  w.u8(e.values.ip6 ? 1 : 0);
  if (e.values.ip6) w.put(e.values.ip6->data(), e.values.ip6->size());
  w.text(e.extras.client, kMaxName);
  w.text(e.extras.proto, kMaxProto);
  w.text(e.extras.user, kMaxName);
  w.u8(e.extras.client_timeout ? 1 : 0);
  w.u32(e.extras.client_timeout.value_or(0));
  w.u8(static_cast<std::uint8_t>(e.replay_count));
  for (std::size_t i = 0; i < e.replay_count && i < e.replay.size(); ++i) w.put(e.replay[i].data(), e.replay[i].size());
  w.u64(static_cast<std::uint64_t>(e.replay_expiry));
  return w.finish();
}

bool decode_knock(std::span<const std::uint8_t> message, KnockReport& report, std::string& why) {
  Reader r(message);
  if (r.u8() != static_cast<std::uint8_t>(Type::Knock) || r.u8() != kVersion) {
    why = "not a KNOCK of this version";
    return false;
  }
  const std::uint8_t kind = r.u8();
  if (kind > static_cast<std::uint8_t>(KnockKind::Fwknop)) {
    why = "unknown knock kind " + std::to_string(kind);
    return false;
  }
  report.kind = static_cast<KnockKind>(kind);
  const std::uint8_t flags = r.u8();
  if (flags > 1) {
    why = "unknown flags";
    return false;
  }
  report.by_ports = flags == 1;
  const std::uint8_t family = r.u8();
  std::uint8_t address[16];
  r.get(address, sizeof address);
  if (family == 4) {
    report.event.logip = IpAddress::v4_bytes(address);
  } else if (family == 6) {
    report.event.logip = IpAddress::v6_bytes(address);
  } else {
    why = "bad address family " + std::to_string(family);
    return false;
  }
  report.event.time = r.f64();
  if (!std::isfinite(report.event.time) || report.event.time < 0) {
    why = "bad time";
    return false;
  }
  const std::uint16_t present = static_cast<std::uint16_t>((r.u8() << 8) | r.u8());
  if (present >> codec::kFieldCount != 0) {
    why = "unknown fields";
    return false;
  }
  for (std::size_t i = 0; i < codec::kFieldCount; ++i) {
    if ((present & (1u << i)) == 0) continue;
    const std::uint32_t v = r.u32();
    if (v > field_limit(static_cast<codec::Field>(i))) {
      why = std::string("field ") + std::string(codec::field_name(static_cast<codec::Field>(i))) + " out of range";
      return false;
    }
    report.event.values.value[i] = v;
  }
  // IP6 travels apart from the 32-bit fields, as 16 bytes after a presence byte.
  if ((present & (1u << static_cast<std::size_t>(codec::Field::Ip6))) != 0) {
    why = "IP6 among the 32-bit fields";
    return false;
  }
  const std::uint8_t has_ip6 = r.u8();
  if (has_ip6 > 1) {
    why = "bad IP6 flag";
    return false;
  }
  if (has_ip6 == 1) {
    codec::KnockValues::Ip6Bytes ip6{};
    r.get(ip6.data(), ip6.size());
    report.event.values.set_ip6(ip6);
  }
  if (!r.text(report.client, kMaxName) || !r.text(report.proto, kMaxProto) || !r.text(report.user, kMaxName)) {
    why = "a name is too long or cut short";
    return false;
  }
  if (!printable(report.client) || !printable(report.proto) || !printable(report.user)) {
    why = "a name holds bytes outside printable ASCII";
    return false;
  }
  const std::uint8_t has_timeout = r.u8();
  const std::uint32_t timeout = r.u32();
  if (has_timeout > 1) {
    why = "bad client timeout flag";
    return false;
  }
  report.event.extras.client = report.client;
  report.event.extras.proto = report.proto;
  report.event.extras.user = report.user;
  if (has_timeout == 1) report.event.extras.client_timeout = timeout;
  const std::uint8_t replays = r.u8();
  if (replays > report.event.replay.size()) {
    why = "too many replay identities";
    return false;
  }
  for (std::size_t i = 0; i < replays; ++i) {
    spa::Identity id{};
    r.get(id.data(), id.size());
    report.event.add_replay(id);
  }
  report.event.replay_expiry = static_cast<std::int64_t>(r.u64());
  if (!r.ok() || !r.at_end()) {
    why = r.ok() ? "trailing bytes" : "cut short";
    return false;
  }
  return true;
}

std::size_t encode_log_check(dev_t dev, ino_t ino, Buffer& out) noexcept {
  Writer w(out);
  w.u8(static_cast<std::uint8_t>(Type::LogCheck));
  w.u8(kVersion);
  w.u64(static_cast<std::uint64_t>(dev));
  w.u64(static_cast<std::uint64_t>(ino));
  return w.finish();
}

std::optional<LogCheck> decode_log_check(std::span<const std::uint8_t> message, std::string& why) {
  Reader r(message);
  if (r.u8() != static_cast<std::uint8_t>(Type::LogCheck) || r.u8() != kVersion) {
    why = "not a LOG_CHECK of this version";
    return std::nullopt;
  }
  LogCheck c;
  c.dev = r.u64();
  c.ino = r.u64();
  if (!r.ok() || !r.at_end()) {
    why = r.ok() ? "trailing bytes" : "cut short";
    return std::nullopt;
  }
  return c;
}

std::size_t encode_counters(const Counters& c, Buffer& out) noexcept {
  Writer w(out);
  w.u8(static_cast<std::uint8_t>(Type::Counters));
  w.u8(kVersion);
  for (const Counters::Kind* k : {&c.spa, &c.fwknop}) {
    for (auto n : k->by_reason) w.u64(n);
    w.u64(static_cast<std::uint64_t>(k->earliest));
    w.u64(static_cast<std::uint64_t>(k->latest));
  }
  for (std::uint64_t n : {c.packets, c.dropped, c.ports_queued, c.tracked, c.knocks}) w.u64(n);
  return w.finish();
}

std::optional<Counters> decode_counters(std::span<const std::uint8_t> message, std::string& why) {
  Reader r(message);
  if (r.u8() != static_cast<std::uint8_t>(Type::Counters) || r.u8() != kVersion) {
    why = "not COUNTERS of this version";
    return std::nullopt;
  }
  Counters c;
  for (Counters::Kind* k : {&c.spa, &c.fwknop}) {
    for (auto& n : k->by_reason) n = r.u64();
    k->earliest = static_cast<std::int64_t>(r.u64());
    k->latest = static_cast<std::int64_t>(r.u64());
    if (k->earliest > 0 || k->latest < 0) {
      why = "clock offsets out of order";
      return std::nullopt;
    }
  }
  for (std::uint64_t* n : {&c.packets, &c.dropped, &c.ports_queued, &c.tracked, &c.knocks}) *n = r.u64();
  if (!r.ok() || !r.at_end()) {
    why = r.ok() ? "trailing bytes" : "cut short";
    return std::nullopt;
  }
  return c;
}

std::array<int, 2> make_channel() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    throw RuntimeError("socketpair: " + errno_message(errno));
  return {sv[0], sv[1]};
}

bool send_message(int sock, std::span<const std::uint8_t> message, int fd, int flags) noexcept {
  iovec iov{const_cast<std::uint8_t*>(message.data()), message.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    const ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
    if (n < 0 && errno == EINTR) continue;
    return n == static_cast<ssize_t>(message.size());
  }
}

long receive_message(int sock, Buffer& buffer, int* fd) noexcept {
  if (fd != nullptr) *fd = -1;
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof received);
      if (fd != nullptr && *fd < 0) {
        *fd = received;
      } else {
        ::close(received);
      }
    }
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    if (fd != nullptr && *fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
    return static_cast<long>(kMaxMessage) + 1;
  }
  return static_cast<long>(n);
}

int ask_for_log(int sock, dev_t dev, ino_t ino, int timeout_ms) noexcept {
  Buffer out;
  const std::size_t size = encode_log_check(dev, ino, out);
  if (size == 0 || !send_message(sock, std::span(out.data(), size))) return -1;
  pollfd p{sock, POLLIN, 0};
  for (;;) {
    const int ready = ::poll(&p, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return -1;
    break;
  }
  Buffer in;
  int fd = -1;
  const long n = receive_message(sock, in, &fd);
  if (n != 3 || in[0] != static_cast<std::uint8_t>(Type::LogReply) || in[1] != kVersion || in[2] != (fd >= 0 ? 1 : 0)) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace knock::daemon::privsep
