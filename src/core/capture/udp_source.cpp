#include "capture/udp_source.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "util/error.hpp"

namespace knock::capture {

namespace {

// Per datagram: a receive timestamp, the packet info (the larger, IPv6 one) and the queue's
// drop counter, each with its header and padding.
constexpr std::size_t kControlBytes =
    CMSG_SPACE(sizeof(timespec)) + CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(std::uint32_t)) + 64;

double wall_now() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::optional<std::uint16_t> parse_port(std::string_view s) {
  unsigned value = 0;
  if (s.empty() || s.size() > 5) return std::nullopt;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || value == 0 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

IpAddress from_sockaddr(const sockaddr_storage& ss, std::uint16_t& port) {
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    port = ntohs(sin.sin_port);
    return IpAddress::v4_bytes(reinterpret_cast<const std::uint8_t*>(&sin.sin_addr));
  }
  const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
  port = ntohs(sin6.sin6_port);
  const auto* b = reinterpret_cast<const std::uint8_t*>(&sin6.sin6_addr);
  if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) return IpAddress::v4_bytes(b + 12);
  return IpAddress::v6_bytes(b);
}

}  // namespace

std::string ListenAddress::str() const {
  const std::string a = address.str();
  return (address.is_v4() ? a : "[" + a + "]") + ":" + std::to_string(port);
}

std::optional<ListenAddress> parse_listen(std::string_view text, std::uint16_t default_port) {
  std::string_view host = text;
  std::optional<std::uint16_t> port = default_port;
  bool bracketed = false;
  if (!text.empty() && text.front() == '[') {  // [v6] or [v6]:port
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = parse_port(rest.substr(1));
    }
    bracketed = true;
  } else if (const std::size_t colon = text.find(':');
             colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
    host = text.substr(0, colon);  // v4:port (a bare v6 address has two colons at least)
    port = parse_port(text.substr(colon + 1));
  }
  if (host == "*") host = "0.0.0.0";
  const auto address = IpAddress::parse(host);
  if (!address || !port || *port == 0) return std::nullopt;
  if (bracketed && address->is_v4()) return std::nullopt;
  return ListenAddress{*address, *port};
}

UdpSocketSource::UdpSocketSource(const ListenAddress& listen, Options options)
    : options_(options), local_(listen) {
  if (options_.max_datagram == 0 || options_.max_datagram > 65535) options_.max_datagram = 65535;
  if (options_.batch < 1) options_.batch = 1;
  if (options_.batch > 1024) options_.batch = 1024;
  const std::string what = "UDP " + listen.str();
  const bool v4 = listen.address.is_v4();
  fd_ = ::socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP);
  if (fd_ < 0) throw RuntimeError("cannot listen on " + what + ": socket: " + errno_message(errno));
  try {
    const int one = 1;
    const int v6only = options_.v6only ? 1 : 0;
    if (!v4) setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    if (options_.receive_buffer > 0)
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &options_.receive_buffer, sizeof options_.receive_buffer);
    setsockopt(fd_, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    setsockopt(fd_, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
    if (options_.pktinfo) {
      if (v4) setsockopt(fd_, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
      else setsockopt(fd_, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
    }
    sockaddr_storage ss{};
    socklen_t len;
    if (v4) {
      auto& sin = reinterpret_cast<sockaddr_in&>(ss);
      sin.sin_family = AF_INET;
      sin.sin_port = htons(listen.port);
      std::memcpy(&sin.sin_addr, listen.address.bytes(), 4);
      len = sizeof sin;
    } else {
      auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
      sin6.sin6_family = AF_INET6;
      sin6.sin6_port = htons(listen.port);
      std::memcpy(&sin6.sin6_addr, listen.address.bytes(), 16);
      len = sizeof sin6;
    }
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0)
      throw RuntimeError("cannot listen on " + what + ": bind: " + errno_message(errno));
    socklen_t got = sizeof ss;
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &got) == 0) {
      std::uint16_t port = 0;
      from_sockaddr(ss, port);
      local_.port = port;
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
  key_ = "udp " + local_.str() + " max " + std::to_string(options_.max_datagram) +
         (options_.v6only ? "" : " dual");

  const std::size_t n = static_cast<std::size_t>(options_.batch);
  data_.assign(n * options_.max_datagram, 0);
  control_.assign(n * kControlBytes, 0);
  from_.assign(n, sockaddr_storage{});
  iov_.assign(n, iovec{});
  headers_.assign(n, mmsghdr{});
  for (std::size_t i = 0; i < n; ++i) {
    iov_[i].iov_base = data_.data() + i * options_.max_datagram;
    iov_[i].iov_len = options_.max_datagram;
  }
}

UdpSocketSource::~UdpSocketSource() {
  if (fd_ >= 0) ::close(fd_);
}

int UdpSocketSource::dispatch(const ObservationCallback& callback, int budget) {
  if (budget <= 0) budget = kDefaultBudget;
  int handled = 0;
  while (handled < budget) {
    if (next_ >= count_) {
      // The kernel's header fields are in/out: lay the batch out again before each call.
      const std::size_t want = std::min<std::size_t>(headers_.size(), static_cast<std::size_t>(budget - handled));
      for (std::size_t i = 0; i < want; ++i) {
        msghdr& h = headers_[i].msg_hdr;
        h = msghdr{};
        h.msg_name = &from_[i];
        h.msg_namelen = sizeof from_[i];
        h.msg_iov = &iov_[i];
        h.msg_iovlen = 1;
        h.msg_control = control_.data() + i * kControlBytes;
        h.msg_controllen = kControlBytes;
        headers_[i].msg_len = 0;
      }
      const int n = recvmmsg(fd_, headers_.data(), static_cast<unsigned>(want), MSG_DONTWAIT, nullptr);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        // An ICMP error queued on the socket (reported once; we never send, so hardly).
        if (errno == ECONNREFUSED) continue;
        if (errno == ENOBUFS || errno == ENOMEM) break;  // short of memory: try next round
        throw RuntimeError("UDP " + local_.str() + ": recvmmsg: " + errno_message(errno));
      }
      if (n == 0) break;
      ++counters_.batches;
      next_ = 0;
      count_ = static_cast<std::size_t>(n);
      batch_time_ = wall_now();
    }
    const std::size_t i = next_++;
    ++handled;
    ++stats_.received;
    const msghdr& h = headers_[i].msg_hdr;
    Observation o;
    o.protocol = kProtoUdp;
    o.time = batch_time_;
    o.destination = local_.address;
    o.dest_port = local_.port;
    for (cmsghdr* c = CMSG_FIRSTHDR(const_cast<msghdr*>(&h)); c != nullptr;
         c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS &&
          c->cmsg_len >= CMSG_LEN(sizeof(timespec))) {
        timespec ts;
        std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
        o.time = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
      } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL &&
                 c->cmsg_len >= CMSG_LEN(sizeof(std::uint32_t))) {
        std::uint32_t dropped;
        std::memcpy(&dropped, CMSG_DATA(c), sizeof dropped);
        if (dropped > stats_.dropped) stats_.dropped = dropped;  // cumulative since bind
      } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
                 c->cmsg_len >= CMSG_LEN(sizeof(in_pktinfo))) {
        in_pktinfo pi;
        std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
        o.destination = IpAddress::v4_bytes(reinterpret_cast<const std::uint8_t*>(&pi.ipi_addr));
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
                 c->cmsg_len >= CMSG_LEN(sizeof(in6_pktinfo))) {
        in6_pktinfo pi;
        std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
        const auto* b = reinterpret_cast<const std::uint8_t*>(&pi.ipi6_addr);
        o.destination = IN6_IS_ADDR_V4MAPPED(&pi.ipi6_addr) ? IpAddress::v4_bytes(b + 12) : IpAddress::v6_bytes(b);
      }
    }
    if ((h.msg_flags & MSG_TRUNC) != 0) {
      // Longer than any knock: counted, never handed on cut.
      ++counters_.oversize;
      ++stats_.malformed;
      continue;
    }
    if (h.msg_namelen < sizeof(sockaddr_in) ||
        (from_[i].ss_family != AF_INET && from_[i].ss_family != AF_INET6)) {
      ++stats_.malformed;
      continue;
    }
    o.source = from_sockaddr(from_[i], o.source_port);
    o.payload = static_cast<const std::uint8_t*>(h.msg_iov->iov_base);
    o.payload_size = static_cast<std::uint16_t>(headers_[i].msg_len);
    ++stats_.delivered;
    callback(o);
  }
  return handled;
}

std::string UdpSocketSource::describe() {
  std::string s = "UDP " + local_.str() + ": " + format_stats(stats_);
  if (counters_.oversize != 0) s += "; oversize " + std::to_string(counters_.oversize);
  return s;
}

}  // namespace knock::capture
