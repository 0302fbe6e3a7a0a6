#include "client/net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <ctime>
#include <random>
#include <thread>

#include "util/error.hpp"

namespace knock::client {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

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

void send_syn(const IpAddress& remote, std::uint16_t port) {
  sockaddr_storage ss;
  const socklen_t len = to_sockaddr(remote, port, ss);
  Fd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw RuntimeError("cannot create a TCP socket: " + errno_message(errno));
  const linger lg{1, 0};  // close() drops the half-open connection: no retransmission
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
    throw RuntimeError("cannot set SO_LINGER: " + errno_message(errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    // A local refusal (e.g. a firewall REJECT on the output path) still means the SYN left or
    // was refused locally; only errors that stop it from being sent are fatal.
    if (errno != ECONNREFUSED)
      throw RuntimeError("cannot send a SYN to " + remote.str() + " port " + std::to_string(port) + ": " +
                         errno_message(errno));
  }
}

}  // namespace

IpAddress resolve_host(const std::string& host, int family) {
  if (auto literal = IpAddress::parse(host)) {
    if ((family == 4 && !literal->is_v4()) || (family == 6 && literal->is_v4()))
      throw ConfigError("-" + std::to_string(family) + " asks for IPv" + std::to_string(family) + " but " + host +
                        " is an IPv" + (literal->is_v4() ? "4" : "6") + " address");
    return *literal;
  }
  addrinfo hints{};
  hints.ai_family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) throw RuntimeError("cannot resolve " + host + ": " + gai_strerror(rc));
  std::optional<IpAddress> v4, v6;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET && !v4)
      v4 = IpAddress::v4_bytes(reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr));
    if (ai->ai_family == AF_INET6 && !v6)
      v6 = IpAddress::v6_bytes(reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr));
  }
  ::freeaddrinfo(res);
  if (v4 && family != 6) return *v4;
  if (v6 && family != 4) return *v6;
  throw RuntimeError("cannot resolve " + host + ": no " +
                     (family == 4 ? "IPv4" : family == 6 ? "IPv6" : "IPv4 or IPv6") + " address");
}

IpAddress route_source(const IpAddress& remote) {
  sockaddr_storage ss;
  const socklen_t len = to_sockaddr(remote, 9, ss);
  Fd fd(::socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw RuntimeError("cannot create a UDP socket: " + errno_message(errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) != 0)
    throw RuntimeError("no route to " + remote.str() + ": " + errno_message(errno));
  sockaddr_storage local{};
  socklen_t local_len = sizeof local;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &local_len) != 0)
    throw RuntimeError("cannot read the local address: " + errno_message(errno));
  if (local.ss_family == AF_INET)
    return IpAddress::v4_bytes(reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr));
  return IpAddress::v6_bytes(reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr));
}

void send_knock(const IpAddress& remote, std::span<const std::uint16_t> ports, Proto proto,
                std::chrono::milliseconds delay) {
  if (proto == Proto::Tcp) {
    for (std::size_t i = 0; i < ports.size(); ++i) {
      if (i > 0 && delay.count() > 0) std::this_thread::sleep_for(delay);
      send_syn(remote, ports[i]);
    }
    return;
  }
  sockaddr_storage ss;
  to_sockaddr(remote, 0, ss);
  Fd fd(::socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw RuntimeError("cannot create a UDP socket: " + errno_message(errno));
  const std::uint8_t payload = 0;
  for (std::size_t i = 0; i < ports.size(); ++i) {
    if (i > 0 && delay.count() > 0) std::this_thread::sleep_for(delay);
    const socklen_t len = to_sockaddr(remote, ports[i], ss);
    if (::sendto(fd.get(), &payload, 1, 0, reinterpret_cast<const sockaddr*>(&ss), len) != 1)
      throw RuntimeError("cannot send a datagram to " + remote.str() + " port " + std::to_string(ports[i]) + ": " +
                         errno_message(errno));
  }
}

void send_datagram(const IpAddress& remote, std::uint16_t port, std::span<const std::uint8_t> payload) {
  sockaddr_storage ss;
  const socklen_t len = to_sockaddr(remote, port, ss);
  Fd fd(::socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw RuntimeError("cannot create a UDP socket: " + errno_message(errno));
  if (::sendto(fd.get(), payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&ss), len) !=
      static_cast<ssize_t>(payload.size()))
    throw RuntimeError("cannot send a datagram to " + remote.str() + " port " + std::to_string(port) + ": " +
                       errno_message(errno));
}

std::string iptables_log_line(const IpAddress& src, const IpAddress& dst, std::uint16_t sport, std::uint16_t dport,
                              Proto proto, std::string_view hostname, std::time_t wall_clock, double uptime_seconds) {
  char date[32];
  std::tm tm{};
  ::localtime_r(&wall_clock, &tm);
  std::strftime(date, sizeof date, "%b %e %H:%M:%S", &tm);
  char uptime[32];
  std::snprintf(uptime, sizeof uptime, "[%12.6f]", uptime_seconds);
  const bool v4 = src.is_v4();
  const bool tcp = proto == Proto::Tcp;
  // IP length: header 20 (v4) or 40 (v6) + TCP SYN with options 40 / UDP 8 + 1 byte.
  const unsigned ip_len = v4 ? (tcp ? 60 : 29) : (tcp ? 80 : 49);
  // The kernel prints IPv6 addresses in full (%pI6): 2001:0db8:0000:...:0001.
  auto text = [](const IpAddress& a) {
    if (a.is_v4()) return a.str();
    std::string out;
    char group[5];
    for (std::size_t i = 0; i < 16; i += 2) {
      std::snprintf(group, sizeof group, "%02x%02x", a.bytes()[i], a.bytes()[i + 1]);
      out += (i == 0 ? "" : ":") + std::string(group);
    }
    return out;
  };
  std::string line = std::string(date) + " " + std::string(hostname) + " kernel: " + uptime +
                     " portknock IN=eth0 OUT= MAC=00:00:00:00:00:00:00:00:00:00:00:00:" + (v4 ? "08:00" : "86:dd") +
                     " SRC=" + text(src) + " DST=" + text(dst) + " LEN=" + std::to_string(ip_len);
  line += v4 ? " TOS=0x00 PREC=0x00 TTL=64 ID=0 DF" : " TC=0 HOPLIMIT=64 FLOWLBL=0";
  line += std::string(" PROTO=") + (tcp ? "TCP" : "UDP") + " SPT=" + std::to_string(sport) +
          " DPT=" + std::to_string(dport);
  line += tcp ? " WINDOW=64240 RES=0x00 SYN URGP=0" : " LEN=9";
  return line;
}

void write_knock_log(const std::string& path, const IpAddress& src, const IpAddress& dst,
                     std::span<const std::uint16_t> ports, Proto proto) {
  char host[256] = "localhost";
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  timespec boot{};
  ::clock_gettime(CLOCK_BOOTTIME, &boot);
  std::mt19937 rng(std::random_device{}());
  std::uint16_t sport = static_cast<std::uint16_t>(32768 + rng() % 28000);
  std::string text;
  for (std::size_t i = 0; i < ports.size(); ++i) {
    const double uptime = static_cast<double>(boot.tv_sec) + static_cast<double>(boot.tv_nsec) / 1e9 +
                          static_cast<double>(i) * 1e-3;
    text += iptables_log_line(src, dst, proto == Proto::Tcp ? static_cast<std::uint16_t>(sport + i) : sport,
                              ports[i], proto, host, std::time(nullptr), uptime);
    text += '\n';
  }
  Fd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  if (fd.get() < 0) throw RuntimeError("cannot open " + path + ": " + errno_message(errno));
  // O_APPEND: one write keeps the knock's lines together when several writers share the file.
  const ssize_t n = ::write(fd.get(), text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size())) throw RuntimeError("cannot write " + path + ": " + errno_message(errno));
}

}  // namespace knock::client
