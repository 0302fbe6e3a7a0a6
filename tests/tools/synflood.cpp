// synflood: sends TCP SYNs from spoofed sources through a raw socket (IP_HDRINCL), in
// sendmmsg() batches, for the flood tests. Needs CAP_NET_RAW; run it inside a test namespace.
//
//   synflood --dst ADDR --ports LO-HI --count N [--rate PPS] [--max-seconds S] [--v6]
//            [--batch B] [--progress SECONDS] [--udp BYTES [--prefix HEX]]
//
// --udp BYTES: UDP datagrams with BYTES of pseudo-random payload instead of SYNs (a flood of
// forged single-packet knocks); --prefix HEX fixes the payload's first bytes (e.g. the SPA magic
// and a real key id, so every datagram costs the daemon a full tag check).
//
// Sources: IPv4 from 198.18.0.0/15 without 198.18.0.0/24, 198.18.1.0/24 and 198.18.2.0/24
// (the test hosts), 130,304 addresses, reused in turn when N is larger; with --v6 (ADDR must
// then be IPv6) every packet comes from its own address in 2001:db8:ff00::/40. Ports cycle
// through LO-HI. --rate 0 (default) sends as fast as the machine allows. Stops after N packets,
// after --max-seconds (default 120) or on SIGINT/SIGTERM, whichever comes first, then prints
//   sent N packets in T s (R packets/s), E send errors
// --progress S prints "progress SENT" every S seconds while sending (for scripts).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "util/address.hpp"

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "synflood: %s\nusage: synflood --dst ADDR --ports LO-HI --count N [--rate PPS] "
               "[--max-seconds S] [--v6] [--batch B] [--progress S]\n",
               why.c_str());
  std::exit(2);
}

std::uint64_t number(const std::string& opt, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || text[0] == '-') usage("bad number for " + opt + ": " + text);
  return v;
}

double seconds_of(const std::string& opt, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v >= 0)) usage("bad number for " + opt + ": " + text);
  return v;
}

// 198.18.3.0 .. 198.19.255.255: the /15 minus the three /24s the test hosts use.
constexpr std::uint32_t kPoolBase = 0xC6120300u;
constexpr std::uint32_t kPoolSize = 131072u - 3 * 256;

std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t acc = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) acc += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (n & 1) acc += static_cast<std::uint32_t>(p[n - 1] << 8);
  return acc;
}

std::uint16_t fold(std::uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xFFFF) + (acc >> 16);
  return static_cast<std::uint16_t>(~acc & 0xFFFF);
}

void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

void put32(std::uint8_t* p, std::uint32_t v) {
  put16(p, static_cast<std::uint16_t>(v >> 16));
  put16(p + 2, static_cast<std::uint16_t>(v));
}

// A 20-byte TCP SYN header at p (checksum zero; filled by the caller).
void tcp_syn(std::uint8_t* p, std::uint16_t sport, std::uint16_t dport, std::uint32_t seq) {
  std::memset(p, 0, 20);
  put16(p, sport);
  put16(p + 2, dport);
  put32(p + 4, seq);
  p[12] = 5 << 4;  // data offset: 5 words
  p[13] = 0x02;    // SYN
  put16(p + 14, 64240);
}

constexpr std::size_t kV4Len = 40;
constexpr std::size_t kV6Len = 60;

struct UdpMode {
  std::size_t payload = 0;  // 0: SYNs
  std::vector<std::uint8_t> prefix;
};

// An 8-byte UDP header and its payload at p for packet i; returns the UDP length. The checksum
// covers the pseudo-header whose partial sum is `acc`.
std::size_t udp_datagram(std::uint8_t* p, std::uint64_t i, std::uint16_t sport, std::uint16_t dport,
                         const UdpMode& udp, std::uint32_t acc) {
  const std::size_t len = 8 + udp.payload;
  put16(p, sport);
  put16(p + 2, dport);
  put16(p + 4, static_cast<std::uint16_t>(len));
  put16(p + 6, 0);
  std::uint64_t x = (i + 7) * 0xD1B54A32D192ED03ull;
  for (std::size_t k = 0; k < udp.payload; ++k) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[8 + k] = k < udp.prefix.size() ? udp.prefix[k] : static_cast<std::uint8_t>(x);
  }
  acc += IPPROTO_UDP + static_cast<std::uint32_t>(len);
  std::uint16_t sum = fold(sum16(p, len, acc));
  put16(p + 6, sum == 0 ? 0xFFFF : sum);
  return len;
}

// Fills buf with packet number i (IPv4 or IPv6 + TCP SYN). Returns its length.
std::size_t build(std::uint8_t* buf, std::uint64_t i, bool v6, const std::uint8_t* dst, std::uint16_t lo,
                  std::uint32_t nports, const UdpMode& udp) {
  // A cheap mix so source ports and sequence numbers differ from packet to packet.
  std::uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  const auto sport = static_cast<std::uint16_t>(1024 + (x % 64000));
  const auto dport = static_cast<std::uint16_t>(lo + (i % nports));
  const auto seq = static_cast<std::uint32_t>(x >> 32);
  if (!v6) {
    std::uint8_t* ip = buf;
    std::memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, kV4Len);
    put16(ip + 4, static_cast<std::uint16_t>(i));
    ip[8] = 64;
    ip[9] = IPPROTO_TCP;
    put32(ip + 12, kPoolBase + static_cast<std::uint32_t>(i % kPoolSize));
    std::memcpy(ip + 16, dst, 4);
    if (udp.payload != 0) {
      ip[9] = IPPROTO_UDP;
      const std::size_t len = udp_datagram(ip + 20, i, sport, dport, udp, sum16(ip + 12, 8));
      put16(ip + 2, static_cast<std::uint16_t>(20 + len));
      put16(ip + 10, fold(sum16(ip, 20)));
      return 20 + len;
    }
    put16(ip + 10, fold(sum16(ip, 20)));
    std::uint8_t* tcp = ip + 20;
    tcp_syn(tcp, sport, dport, seq);
    std::uint32_t acc = sum16(ip + 12, 8);  // pseudo-header: addresses, protocol, length
    acc += IPPROTO_TCP + 20;
    put16(tcp + 16, fold(sum16(tcp, 20, acc)));
    return kV4Len;
  }
  std::uint8_t* ip = buf;
  std::memset(ip, 0, 40);
  ip[0] = 0x60;
  put16(ip + 4, 20);
  ip[6] = IPPROTO_TCP;
  ip[7] = 64;
  const std::uint8_t prefix[5] = {0x20, 0x01, 0x0d, 0xb8, 0xff};  // 2001:db8:ff00::/40
  std::memcpy(ip + 8, prefix, 5);
  for (int k = 0; k < 8; ++k) ip[8 + 15 - k] = static_cast<std::uint8_t>(i >> (8 * k));
  std::memcpy(ip + 24, dst, 16);
  if (udp.payload != 0) {
    ip[6] = IPPROTO_UDP;
    const std::size_t len = udp_datagram(ip + 40, i, sport, dport, udp, sum16(ip + 8, 32));
    put16(ip + 4, static_cast<std::uint16_t>(len));
    return 40 + len;
  }
  std::uint8_t* tcp = ip + 40;
  tcp_syn(tcp, sport, dport, seq);
  std::uint32_t acc = sum16(ip + 8, 32);
  acc += IPPROTO_TCP + 20;
  put16(tcp + 16, fold(sum16(tcp, 20, acc)));
  return kV6Len;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dst_text, ports_text;
  std::uint64_t count = 0, batch = 256;
  double rate = 0, max_seconds = 120, progress = 0;
  bool v6 = false;
  UdpMode udp;
  for (int i = 1; i < argc; ++i) {
    const std::string opt = argv[i];
    if (opt == "--v6") {
      v6 = true;
      continue;
    }
    if (i + 1 >= argc) usage(opt + " needs a value");
    const std::string value = argv[++i];
    if (opt == "--dst") dst_text = value;
    else if (opt == "--ports") ports_text = value;
    else if (opt == "--count") count = number(opt, value);
    else if (opt == "--rate") rate = seconds_of(opt, value);
    else if (opt == "--max-seconds") max_seconds = seconds_of(opt, value);
    else if (opt == "--batch") batch = number(opt, value);
    else if (opt == "--progress") progress = seconds_of(opt, value);
    else if (opt == "--udp") udp.payload = number(opt, value);
    else if (opt == "--prefix") {
      if (value.size() % 2 != 0) usage("--prefix needs hex digit pairs");
      for (std::size_t k = 0; k < value.size(); k += 2) udp.prefix.push_back(static_cast<std::uint8_t>(std::stoul(value.substr(k, 2), nullptr, 16)));
    }
    else usage("unknown option " + opt);
  }
  if (dst_text.empty() || ports_text.empty() || count == 0) usage("--dst, --ports and --count are required");
  if (batch == 0 || batch > 1024) usage("--batch must be 1..1024");
  if (udp.payload > 1400) usage("--udp: at most 1400 bytes");
  if (udp.prefix.size() > udp.payload) usage("--prefix longer than the payload");
  const auto dst = knock::IpAddress::parse(dst_text);
  if (!dst) usage("bad address " + dst_text);
  if (dst->is_v4() == v6) usage(v6 ? "--v6 needs an IPv6 --dst" : "an IPv6 --dst needs --v6");
  const auto dash = ports_text.find('-');
  const std::uint64_t lo = number("--ports", ports_text.substr(0, dash));
  const std::uint64_t hi = dash == std::string::npos ? lo : number("--ports", ports_text.substr(dash + 1));
  if (lo == 0 || hi > 65535 || lo > hi) usage("bad port range " + ports_text);
  const auto nports = static_cast<std::uint32_t>(hi - lo + 1);

  const int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) {
    std::fprintf(stderr, "synflood: raw socket: %s (needs CAP_NET_RAW)\n", std::strerror(errno));
    return 1;
  }
  if (!v6) {
    const int on = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &on, sizeof on) != 0) {
      std::fprintf(stderr, "synflood: IP_HDRINCL: %s\n", std::strerror(errno));
      return 1;
    }
  }
  const int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

  sockaddr_storage to{};
  socklen_t to_len;
  if (v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&to);
    s6->sin6_family = AF_INET6;
    std::memcpy(&s6->sin6_addr, dst->bytes(), 16);
    to_len = sizeof(sockaddr_in6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&to);
    s4->sin_family = AF_INET;
    std::memcpy(&s4->sin_addr, dst->bytes(), 4);
    to_len = sizeof(sockaddr_in);
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const std::size_t plen = (v6 ? kV6Len : kV4Len) + udp.payload;
  std::vector<std::uint8_t> bufs(batch * plen);
  std::vector<iovec> iov(batch);
  std::vector<mmsghdr> msgs(batch);

  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(clock::now() - start).count(); };
  double next_progress = progress;
  std::uint64_t sent = 0, errors = 0;
  while (sent < count && !g_stop) {
    const double t = elapsed();
    if (t >= max_seconds) break;
    if (progress > 0 && t >= next_progress) {
      std::printf("progress %llu\n", static_cast<unsigned long long>(sent));
      std::fflush(stdout);
      next_progress = t + progress;
    }
    std::uint64_t n = std::min<std::uint64_t>(batch, count - sent);
    if (rate > 0) {  // pace: never ahead of rate * elapsed
      const double allowed = rate * t - static_cast<double>(sent);
      if (allowed < 1) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      n = std::min<std::uint64_t>(n, static_cast<std::uint64_t>(allowed));
    }
    for (std::uint64_t k = 0; k < n; ++k) {
      std::uint8_t* p = bufs.data() + k * plen;
      iov[k] = {p, build(p, sent + k, v6, dst->bytes(), static_cast<std::uint16_t>(lo), nports, udp)};
      msgs[k] = {};
      msgs[k].msg_hdr.msg_name = &to;
      msgs[k].msg_hdr.msg_namelen = to_len;
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    std::uint64_t done = 0;
    while (done < n && !g_stop) {
      const int r = sendmmsg(fd, msgs.data() + done, static_cast<unsigned>(n - done), 0);
      if (r > 0) {
        done += static_cast<std::uint64_t>(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      ++errors;  // ENOBUFS and the like: back off briefly, try the rest of the batch again
      if (errors > 1000000) {
        std::fprintf(stderr, "synflood: sendmmsg keeps failing: %s\n", std::strerror(errno));
        sent += done;
        goto out;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      if (elapsed() >= max_seconds) break;
    }
    sent += done;
  }
out:
  const double t = elapsed();
  std::printf("sent %llu packets in %.2f s (%.0f packets/s), %llu send errors\n",
              static_cast<unsigned long long>(sent), t, t > 0 ? static_cast<double>(sent) / t : 0.0,
              static_cast<unsigned long long>(errors));
  close(fd);
  return 0;
}
