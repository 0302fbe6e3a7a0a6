// The UDP socket source on 127.0.0.1 and ::1: datagrams from the test's own sendto() arrive as
// Observations with the right sender, ports, payload and size; oversize ones are counted and
// dropped; the descriptor is close-on-exec and non-blocking; the budget bounds a batch; the
// listen syntax.
#include "capture/source.hpp"
#include "capture/udp_source.hpp"
#include "util/error.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace knock;
using namespace knock::capture;

namespace {

// The address with port 0: the kernel picks a free one (config syntax refuses port 0).
ListenAddress listen_on(const char* address, std::uint16_t port = 0) {
  return ListenAddress{*IpAddress::parse(address), port};
}

// A sender socket bound to an ephemeral port; returns (fd, port).
struct Sender {
  int fd = -1;
  std::uint16_t port = 0;
  bool v6 = false;
  explicit Sender(bool v6_) : v6(v6_) {
    fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_storage ss{};
    socklen_t len;
    if (v6) {
      auto& a = reinterpret_cast<sockaddr_in6&>(ss);
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      len = sizeof a;
    } else {
      auto& a = reinterpret_cast<sockaddr_in&>(ss);
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof a;
    }
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&ss), len), 0);
    len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    port = ntohs(v6 ? reinterpret_cast<sockaddr_in6&>(ss).sin6_port : reinterpret_cast<sockaddr_in&>(ss).sin_port);
  }
  ~Sender() { ::close(fd); }
  void send(std::uint16_t to, const std::vector<std::uint8_t>& data) const {
    sockaddr_storage ss{};
    socklen_t len;
    if (v6) {
      auto& a = reinterpret_cast<sockaddr_in6&>(ss);
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      a.sin6_port = htons(to);
      len = sizeof a;
    } else {
      auto& a = reinterpret_cast<sockaddr_in&>(ss);
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(to);
      len = sizeof a;
    }
    ASSERT_EQ(::sendto(fd, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&ss), len),
              static_cast<ssize_t>(data.size()));
  }
};

bool readable(int fd, int ms = 2000) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

struct Seen {
  Observation o;
  std::vector<std::uint8_t> payload;
};

// Dispatches until n observations arrived (or 2 s of silence).
std::vector<Seen> collect(UdpSocketSource& src, std::size_t n, int budget = 0) {
  std::vector<Seen> out;
  while (out.size() < n && (src.next_timeout(0) == 0 || readable(src.fd()))) {
    src.dispatch([&](const Observation& o) {
      out.push_back({o, std::vector<std::uint8_t>(o.payload, o.payload + o.payload_size)});
    }, budget);
  }
  return out;
}

void round_trip(const char* listen, bool v6) {
  UdpSocketSource::Options opt;
  opt.max_datagram = 512;
  UdpSocketSource src(listen_on(listen), opt);
  ASSERT_NE(src.local().port, 0);
  Sender s(v6);
  const std::vector<std::uint8_t> a{'s', 'p', 'a', 0, 1, 2}, b(512, 0x5a), big(513, 0x77), empty;
  s.send(src.local().port, a);
  s.send(src.local().port, big);
  s.send(src.local().port, b);
  s.send(src.local().port, empty);
  const auto seen = collect(src, 3);
  ASSERT_EQ(seen.size(), 3u);
  const IpAddress loop = *IpAddress::parse(v6 ? "::1" : "127.0.0.1");
  for (const Seen& x : seen) {
    EXPECT_EQ(x.o.protocol, kProtoUdp);
    EXPECT_EQ(x.o.source, loop);
    EXPECT_EQ(x.o.source_port, s.port);
    EXPECT_EQ(x.o.destination, loop);  // from the packet info, not the wildcard bound
    EXPECT_EQ(x.o.dest_port, src.local().port);
    EXPECT_FALSE(x.o.has_tcp_seq);
    EXPECT_GT(x.o.time, 1e9);
  }
  EXPECT_EQ(seen[0].payload, a);
  EXPECT_EQ(seen[1].payload, b);
  EXPECT_EQ(seen[2].payload.size(), 0u);
  const SourceStats st = src.stats();
  EXPECT_EQ(st.received, 4u);
  EXPECT_EQ(st.delivered, 3u);
  EXPECT_EQ(st.malformed, 1u);
  EXPECT_EQ(src.counters().oversize, 1u);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_NE(src.describe().find("oversize 1"), std::string::npos) << src.describe();
}

}  // namespace

TEST(UdpSource, Ipv4Loopback) { round_trip("127.0.0.1", false); }
TEST(UdpSource, Ipv4Wildcard) { round_trip("0.0.0.0", false); }
TEST(UdpSource, Ipv6Loopback) { round_trip("::1", true); }
TEST(UdpSource, Ipv6Wildcard) { round_trip("::", true); }

TEST(UdpSource, CloseOnExecNonBlockingNothingPending) {
  UdpSocketSource src(listen_on("127.0.0.1"));
  const int fd = src.fd();
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  EXPECT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
  EXPECT_EQ(src.next_timeout(0), -1);
  EXPECT_EQ(src.dispatch([](const Observation&) { FAIL(); }, 10), 0);  // does not block
  EXPECT_EQ(src.key(), "udp 127.0.0.1:" + std::to_string(src.local().port) + " max 1500");
}

TEST(UdpSource, V6OnlyByDefault) {
  UdpSocketSource src(listen_on("::"));
  int v = 0;
  socklen_t len = sizeof v;
  ASSERT_EQ(getsockopt(src.fd(), IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), 0);
  EXPECT_EQ(v, 1);
}

TEST(UdpSource, DualStackMapsIpv4Senders) {
  UdpSocketSource::Options opt;
  opt.v6only = false;
  UdpSocketSource src(listen_on("::"), opt);
  Sender s(false);
  s.send(src.local().port, {1, 2, 3});
  const auto seen = collect(src, 1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].o.source, *IpAddress::parse("127.0.0.1"));
  EXPECT_TRUE(seen[0].o.source.is_v4());
}

TEST(UdpSource, BudgetBoundsABatchAndTheRestWaits) {
  UdpSocketSource::Options opt;
  opt.batch = 8;
  UdpSocketSource src(listen_on("127.0.0.1"), opt);
  Sender s(false);
  for (int i = 0; i < 20; ++i) s.send(src.local().port, {static_cast<std::uint8_t>(i)});
  ASSERT_TRUE(readable(src.fd()));
  std::vector<int> order;
  auto cb = [&](const Observation& o) { order.push_back(o.payload[0]); };
  EXPECT_EQ(src.dispatch(cb, 5), 5);
  EXPECT_EQ(src.next_timeout(0), -1);  // only what the budget allows was read
  // an exception stops the batch; the datagram it was given is consumed, the rest wait
  EXPECT_THROW(src.dispatch([&](const Observation& o) { order.push_back(o.payload[0]); throw 1; }, 5), int);
  EXPECT_EQ(src.next_timeout(0), 0);  // 4 left of that batch: ready now
  for (int round = 0; round < 10 && order.size() < 20; ++round) {
    if (src.next_timeout(0) != 0 && !readable(src.fd(), 500)) break;
    src.dispatch(cb, 4);
  }
  ASSERT_EQ(order.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(order[i], i);
}

TEST(UdpSource, BindFailureIsARuntimeError) {
  UdpSocketSource a(listen_on("127.0.0.1"));
  EXPECT_THROW(UdpSocketSource b(listen_on("127.0.0.1", a.local().port)), RuntimeError);
}

TEST(UdpSource, ListenSyntax) {
  auto l = parse_listen("0.0.0.0:62202", 1);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->str(), "0.0.0.0:62202");
  l = parse_listen("[::]:62202", 1);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->str(), "[::]:62202");
  EXPECT_FALSE(l->address.is_v4());
  l = parse_listen("198.18.0.1", 62202);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->port, 62202);
  l = parse_listen("2001:db8::1", 62202);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->str(), "[2001:db8::1]:62202");
  l = parse_listen("[2001:db8::1]", 62202);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->port, 62202);
  l = parse_listen("*:9", 62202);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->str(), "0.0.0.0:9");
  for (const char* bad : {"", ":", "0.0.0.0:", "0.0.0.0:0", "0.0.0.0:65536", "0.0.0.0:12x", "[::]:",
                          "[::", "[198.18.0.1]:5", "host:5", "[::]x5", "1.2.3.4:-1", "1.2.3.4:+5"})
    EXPECT_FALSE(parse_listen(bad, 62202)) << bad;
}
