#include "capture/nflog.hpp"

#include <fcntl.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern "C" {
#include <libnetfilter_log/libnetfilter_log.h>
}

#include "util/error.hpp"
#include "util/log.hpp"

namespace knock::capture {

std::string_view to_string(NflogStatus status) noexcept {
  switch (status) {
    case NflogStatus::Ok: return "ok";
    case NflogStatus::Truncated: return "truncated";
    case NflogStatus::BadLength: return "bad-length";
    case NflogStatus::NotPacket: return "not-packet";
    case NflogStatus::BadAttribute: return "bad-attribute";
    case NflogStatus::NoPayload: return "no-payload";
    case NflogStatus::Packet: return "packet";
  }
  return "?";
}

namespace {

// Netlink headers are in host byte order; nfnetlink attribute values in network order.
std::uint16_t h16(const std::uint8_t* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
std::uint32_t h32(const std::uint8_t* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
std::uint16_t be16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
std::uint32_t be32(const std::uint8_t* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}
std::uint64_t be64(const std::uint8_t* p) noexcept {
  return (std::uint64_t{be32(p)} << 32) | be32(p + 4);
}

constexpr std::size_t align4(std::size_t n) noexcept { return (n + 3) & ~std::size_t{3}; }

constexpr std::uint16_t kNlaNested = 0x8000;
constexpr std::uint16_t kNlaTypeMask = 0x3fff;  // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86DD;

NflogMessage refuse(NflogMessage m, NflogStatus s) noexcept {
  m.status = s;
  return m;
}

double wall_now() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

NflogMessage parse_nflog_message(const std::uint8_t* data, std::size_t size, double now) noexcept {
  NflogMessage m;
  if (data == nullptr || size < kNlmsgHeaderBytes) return refuse(m, NflogStatus::Truncated);
  const std::uint32_t len = h32(data);
  if (len < kNlmsgHeaderBytes) return refuse(m, NflogStatus::BadLength);
  if (len > size) return refuse(m, NflogStatus::Truncated);
  if (h16(data + 4) != kNflogPacketType) return refuse(m, NflogStatus::NotPacket);
  if (len < kNlmsgHeaderBytes + kNfgenmsgBytes) return refuse(m, NflogStatus::Truncated);
  const std::uint8_t* gen = data + kNlmsgHeaderBytes;
  m.family = gen[0];
  if (gen[1] != 0) return refuse(m, NflogStatus::NotPacket);  // NFNETLINK_V0
  m.group = be16(gen + 2);

  bool seen_hdr = false, seen_ts = false, seen_payload = false, seen_prefix = false;
  std::uint64_t ts_sec = 0, ts_usec = 0;
  std::size_t pos = kNlmsgHeaderBytes + kNfgenmsgBytes;
  while (pos < len) {
    const std::size_t left = len - pos;
    if (left < 4) return refuse(m, NflogStatus::BadAttribute);  // a stub that is no attribute
    const std::uint16_t alen = h16(data + pos);
    const std::uint16_t raw_type = h16(data + pos + 2);
    if (alen < 4 || alen > left) return refuse(m, NflogStatus::BadAttribute);
    const std::uint8_t* value = data + pos + 4;
    const std::size_t vlen = alen - 4u;
    const std::uint16_t type = raw_type & kNlaTypeMask;
    const bool nested = (raw_type & kNlaNested) != 0;
    switch (type) {
      case kNfulaPacketHdr:
        if (nested || seen_hdr || vlen < 4) return refuse(m, NflogStatus::BadAttribute);
        seen_hdr = true;
        m.hw_protocol = be16(value);
        m.hook = value[2];
        break;
      case kNfulaTimestamp:
        if (nested || seen_ts || vlen != 16) return refuse(m, NflogStatus::BadAttribute);
        seen_ts = true;
        ts_sec = be64(value);
        ts_usec = be64(value + 8);
        if (ts_usec >= 1000000 || ts_sec > (std::uint64_t{1} << 40))
          return refuse(m, NflogStatus::BadAttribute);
        break;
      case kNfulaPayload:
        if (nested || seen_payload) return refuse(m, NflogStatus::BadAttribute);
        seen_payload = true;
        m.payload = vlen != 0 ? value : nullptr;
        m.payload_size = vlen;
        break;
      case kNfulaPrefix: {
        if (nested || seen_prefix || vlen == 0) return refuse(m, NflogStatus::BadAttribute);
        seen_prefix = true;
        std::size_t n = 0;
        while (n < vlen && value[n] != 0) ++n;
        if (n == vlen) return refuse(m, NflogStatus::BadAttribute);  // no NUL inside
        m.prefix = std::string_view(reinterpret_cast<const char*>(value), n);
        break;
      }
      case kNfulaSeq:
        if (nested || m.has_seq || vlen != 4) return refuse(m, NflogStatus::BadAttribute);
        m.has_seq = true;
        m.seq = be32(value);
        break;
      default:
        break;  // other attributes (mark, interfaces, uid, conntrack, ...) are skipped unread
    }
    const std::size_t step = align4(alen);
    pos += step < left ? step : left;
  }
  if (m.payload == nullptr) return refuse(m, NflogStatus::NoPayload);

  m.has_timestamp = seen_ts;
  const double time = seen_ts ? static_cast<double>(ts_sec) + static_cast<double>(ts_usec) * 1e-6 : now;
  int dlt;
  if (m.hw_protocol == kEtherIpv4) {
    dlt = kDltIpv4;
  } else if (m.hw_protocol == kEtherIpv6) {
    dlt = kDltIpv6;
  } else {
    // OUTPUT hook packets carry hw_protocol 0: go by the IP version.
    const int version = m.payload[0] >> 4;
    if (version == 4) dlt = kDltIpv4;
    else if (version == 6) dlt = kDltIpv6;
    else {
      m.packet_status = ParseStatus::NonIp;
      return refuse(m, NflogStatus::Packet);
    }
  }
  const ParseResult r = parse_packet_result(dlt, m.payload, m.payload_size, time);
  m.packet_status = r.status;
  if (!r.ok()) return refuse(m, NflogStatus::Packet);
  m.observation = r.observation;
  m.status = NflogStatus::Ok;
  return m;
}

// ---------------------------------------------------------------------------------------------

NflogReader::NflogReader(std::size_t buffer_bytes) : buffer_(buffer_bytes < 4096 ? 4096 : buffer_bytes) {}

void NflogReader::loaded(std::size_t n, double now, bool truncated) noexcept {
  ++counters_.datagrams;
  if (n > buffer_.size()) n = buffer_.size();
  if (truncated) {
    // The tail is gone; the messages that fit are still whole (the last one is refused as
    // truncated) but the datagram is counted.
    ++counters_.cut;
  }
  offset_ = 0;
  end_ = n;
  now_ = now;
}

void NflogReader::note_overrun() noexcept {
  ++counters_.overruns;
  // Without sequence numbers the number lost is unknown: count one per overflow.
  if (!seq_known_) ++stats_.dropped;
}

int NflogReader::deliver(const ObservationCallback& callback, int budget) {
  int handled = 0;
  while (offset_ < end_ && handled < budget) {
    const std::uint8_t* p = buffer_.data() + offset_;
    const std::size_t left = end_ - offset_;
    if (left < kNlmsgHeaderBytes) {
      ++counters_.framing;  // trailing bytes that cannot hold a message
      offset_ = end_;
      break;
    }
    const std::uint32_t len = h32(p);
    if (len < kNlmsgHeaderBytes || len > left) {
      // No way to find the next message: the rest of the datagram is skipped.
      ++counters_.framing;
      ++stats_.received;
      ++stats_.malformed;
      ++counters_.by_status[static_cast<std::size_t>(len < kNlmsgHeaderBytes ? NflogStatus::BadLength
                                                                              : NflogStatus::Truncated)];
      offset_ = end_;
      ++handled;
      break;
    }
    const std::size_t step = align4(len);
    offset_ += step < left ? step : left;
    const std::uint16_t type = h16(p + 4);
    if (type == NLMSG_NOOP || type == NLMSG_DONE || type == NLMSG_ERROR) continue;
    if (type == NLMSG_OVERRUN) {
      note_overrun();
      continue;
    }
    ++handled;
    ++stats_.received;
    const NflogMessage m = parse_nflog_message(p, len, now_);
    ++counters_.by_status[static_cast<std::size_t>(m.status)];
    if (m.has_seq) {
      if (seq_known_) {
        const std::uint32_t gap = m.seq - seq_next_;
        if (gap != 0 && gap < 0x80000000u) {  // backwards: the instance was rebound; resync
          counters_.seq_lost += gap;
          stats_.dropped += gap;
        }
      }
      seq_known_ = true;
      seq_next_ = m.seq + 1;
    }
    if (m.status == NflogStatus::Packet) {
      ++stats_.unparsed[static_cast<std::size_t>(m.packet_status)];
      continue;
    }
    if (!m.ok()) {
      ++stats_.malformed;
      continue;
    }
    ++stats_.delivered;
    callback(m.observation);
  }
  return handled;
}

// ---------------------------------------------------------------------------------------------

NflogSource::NflogSource(Options options)
    : options_(options),
      key_("nflog group " + std::to_string(options.group) + " range " + std::to_string(options.copy_range)),
      reader_(options.read_buffer) {
  const std::string what = "NFLOG group " + std::to_string(options.group);
  handle_ = nflog_open();
  if (handle_ == nullptr) throw RuntimeError("cannot open " + what + ": nflog_open: " + errno_message(errno));
  // From here on the destructor does not run: close by hand on failure.
  try {
    fd_ = nflog_fd(handle_);
    // libnfnetlink opens its socket without SOCK_CLOEXEC: commands must not inherit it.
    const int fdflags = fcntl(fd_, F_GETFD);
    if (fdflags < 0 || fcntl(fd_, F_SETFD, fdflags | FD_CLOEXEC) != 0)
      throw RuntimeError("cannot open " + what + ": fcntl FD_CLOEXEC: " + errno_message(errno));
    // Kernels before 3.8 want the families bound; later ones ignore this. Unbinding first (as
    // the libnetfilter-log example does) would take the families from another logger there.
    nflog_bind_pf(handle_, AF_INET);
    nflog_bind_pf(handle_, AF_INET6);
    group_ = nflog_bind_group(handle_, options.group);
    if (group_ == nullptr) {
      const int e = errno;
      std::string hint;
      if (e == EBUSY) hint = " (another program, ulogd perhaps, holds the group)";
      if (e == EPERM) hint = " (needs CAP_NET_ADMIN)";
      throw RuntimeError("cannot bind " + what + ": " + errno_message(e) + hint);
    }
    if (nflog_set_mode(group_, NFULNL_COPY_PACKET, options.copy_range) < 0)
      throw RuntimeError("cannot set the copy mode of " + what + ": " + errno_message(errno));
    // Sequence numbers: messages the kernel could not deliver show up as gaps.
    // The instance is new (binding a group someone holds fails), so its numbers start at 0.
    if (nflog_set_flags(group_, NFULNL_CFG_F_SEQ) < 0)
      log::debug(what + ": no sequence numbers: " + errno_message(errno));
    else
      reader_.expect_seq(0);
    if (options.queue_threshold > 0) nflog_set_qthresh(group_, options.queue_threshold);
    nflog_set_timeout(group_, options.flush_timeout);
    // A large queue for bursts: SO_RCVBUFFORCE passes rmem_max with CAP_NET_ADMIN.
    int size = options.receive_buffer;
    if (size > 0 && setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    socklen_t sl = sizeof rcvbuf_;
    getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf_, &sl);
    const int flflags = fcntl(fd_, F_GETFL);
    if (flflags < 0 || fcntl(fd_, F_SETFL, flflags | O_NONBLOCK) != 0)
      throw RuntimeError("cannot open " + what + ": fcntl O_NONBLOCK: " + errno_message(errno));
  } catch (...) {
    if (group_ != nullptr) nflog_unbind_group(group_);
    nflog_close(handle_);
    throw;
  }
}

NflogSource::~NflogSource() {
  if (group_ != nullptr) nflog_unbind_group(group_);
  if (handle_ != nullptr) nflog_close(handle_);
}

int NflogSource::dispatch(const ObservationCallback& callback, int budget) {
  if (budget <= 0) budget = kDefaultBudget;
  int handled = 0;
  int reads = 0;
  while (handled < budget) {
    if (reader_.pending()) {
      handled += reader_.deliver(callback, budget - handled);
      continue;
    }
    if (reads++ >= budget) break;  // datagrams without packets (DONE, foreign) are bounded too
    sockaddr_nl from{};
    iovec iov{reader_.buffer(), reader_.capacity()};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t n = recvmsg(fd_, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {  // the kernel dropped messages: the socket's queue overflowed
        reader_.note_overrun();
        continue;
      }
      throw RuntimeError("NFLOG group " + std::to_string(options_.group) + ": recv: " + errno_message(errno));
    }
    // Only the kernel speaks for the firewall. Other senders need CAP_NET_ADMIN to reach our
    // port id (a root process, a container's root in this namespace): ignored all the same.
    if (msg.msg_namelen < sizeof from || from.nl_family != AF_NETLINK || from.nl_pid != 0) {
      reader_.note_foreign();
      continue;
    }
    reader_.loaded(static_cast<std::size_t>(n), wall_now(), (msg.msg_flags & MSG_TRUNC) != 0);
  }
  return handled;
}

std::string NflogSource::describe() {
  const auto& c = reader_.counters();
  std::string s = "NFLOG group " + std::to_string(options_.group) + ": " + format_stats(reader_.stats());
  s += "; kernel overruns " + std::to_string(c.overruns) + ", lost by sequence " + std::to_string(c.seq_lost);
  if (c.foreign != 0) s += ", foreign " + std::to_string(c.foreign);
  if (c.cut != 0) s += ", cut " + std::to_string(c.cut);
  return s;
}

}  // namespace knock::capture
