// Packet decoding from raw bytes: every link type, VLAN tags, IPv4 options, IPv6 extension
// headers, fragments, truncation at every length, non-IP frames.
#include "capture/packet.hpp"
#include "capture/pcap_writer.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace knock;
using namespace knock::capture;

namespace {

IpAddress a4(const char* s) { return *IpAddress::parse(s); }

PacketSpec syn4() {
  PacketSpec s;
  s.source = a4("198.18.0.2");
  s.destination = a4("198.18.0.1");
  s.source_port = 40000;
  s.dest_port = 2000;
  s.tcp_seq = 0x01020304;
  return s;
}

PacketSpec syn6() {
  PacketSpec s = syn4();
  s.source = a4("2001:db8::2");
  s.destination = a4("2001:db8::1");
  return s;
}

ParseResult parse(int dlt, const std::vector<std::uint8_t>& f, double ts = 1.5) {
  return parse_packet_result(dlt, f.data(), f.size(), ts);
}

void expect_matches(const ParseResult& r, const PacketSpec& s) {
  ASSERT_EQ(r.status, ParseStatus::Ok) << to_string(r.status);
  const Observation& o = r.observation;
  EXPECT_EQ(o.source, s.source);
  EXPECT_EQ(o.destination, s.destination);
  EXPECT_EQ(o.source_port, s.source_port);
  EXPECT_EQ(o.dest_port, s.dest_port);
  EXPECT_EQ(o.protocol, s.protocol);
  if (s.protocol == kProtoTcp) {
    EXPECT_TRUE(o.has_tcp_seq);
    EXPECT_EQ(o.tcp_seq, s.tcp_seq);
    EXPECT_EQ(o.tcp_flags, s.tcp_flags);
  } else {
    EXPECT_FALSE(o.has_tcp_seq);
  }
}

const int kAllLinks[] = {kDltEn10mb, kDltLinuxSll, kDltLinuxSll2, kDltRaw, kLinktypeRaw,
                         kDltNull,   kDltLoop};

}  // namespace

TEST(Packet, HandWrittenEthernetSyn) {
  const std::vector<std::uint8_t> f = {
      0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00,                 // Ethernet
      0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1,  // IPv4
      0x9c, 0x40, 0x07, 0xd0, 1, 2, 3, 4, 0, 0, 0, 0, 0x50, 0x12, 0xfa, 0xf0, 0, 0, 0, 0,
      0, 0, 0, 0, 0, 0};  // Ethernet padding to 60 bytes
  const ParseResult r = parse(kDltEn10mb, f, 12.25);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.observation.source.str(), "198.18.0.2");
  EXPECT_EQ(r.observation.destination.str(), "198.18.0.1");
  EXPECT_EQ(r.observation.source_port, 40000);
  EXPECT_EQ(r.observation.dest_port, 2000);
  EXPECT_EQ(r.observation.tcp_seq, 0x01020304u);
  EXPECT_EQ(r.observation.tcp_flags, kTcpSyn | kTcpAck);
  EXPECT_DOUBLE_EQ(r.observation.time, 12.25);
}

TEST(Packet, HandWrittenRawIpv6Udp) {
  std::vector<std::uint8_t> f = {0x60, 0, 0, 0, 0, 8, 17, 64};
  const std::uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  const std::uint8_t dst[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  f.insert(f.end(), src, src + 16);
  f.insert(f.end(), dst, dst + 16);
  for (std::uint8_t b : {0x13, 0x88, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00}) f.push_back(b);
  const ParseResult r = parse(kDltRaw, f);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.observation.source.str(), "2001:db8::2");
  EXPECT_EQ(r.observation.source_port, 5000);
  EXPECT_EQ(r.observation.dest_port, 53);
  EXPECT_EQ(r.observation.protocol, kProtoUdp);
}

// A single-packet knock rides in a UDP payload: the observation points at exactly the bytes the
// UDP length names, cut at the end of the capture (and of the IP packet: Ethernet padding after
// it is not payload).
TEST(Packet, UdpPayloadIsBoundedByUdpLengthIpLengthAndCapture) {
  std::vector<std::uint8_t> f = {
      0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00,                 // Ethernet
      0x45, 0, 0, 33, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1,  // IPv4, 33 bytes
      0x9c, 0x40, 0xf3, 0x1a, 0x00, 13, 0, 0,                             // UDP to 62234, length 13
      'h', 'e', 'l', 'l', 'o',
      0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee};  // padding
  ParseResult r = parse(kDltEn10mb, f);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.observation.dest_port, 62234);
  ASSERT_EQ(r.observation.payload_size, 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.observation.payload), 5), "hello");
  // A UDP length beyond the packet: only what the packet holds.
  f[14 + 20 + 5] = 200;
  r = parse(kDltEn10mb, f);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.observation.payload_size, 5u);
  // A capture cut inside the payload: only what was captured.
  r = parse(kDltEn10mb, std::vector<std::uint8_t>(f.begin(), f.begin() + 14 + 20 + 8 + 2));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.observation.payload_size, 2u);
  // A UDP length under 8 (no payload) and TCP: none.
  f[14 + 20 + 5] = 4;
  r = parse(kDltEn10mb, f);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.observation.payload_size, 0u);
  EXPECT_EQ(r.observation.payload, nullptr);
}

TEST(Packet, EveryLinkTypeTcpAndUdpV4V6) {
  for (int dlt : kAllLinks) {
    for (bool v6 : {false, true}) {
      for (std::uint8_t proto : {kProtoTcp, kProtoUdp}) {
        PacketSpec s = v6 ? syn6() : syn4();
        s.protocol = proto;
        if (proto == kProtoUdp) s.tcp_flags = 0;
        SCOPED_TRACE(::testing::Message() << "dlt " << dlt << " v6 " << v6 << " proto " << int(proto));
        expect_matches(parse(dlt, build_frame(dlt, s)), s);
      }
    }
  }
  PacketSpec s4 = syn4();
  expect_matches(parse(kDltIpv4, build_frame(kDltIpv4, s4)), s4);
  PacketSpec s6 = syn6();
  expect_matches(parse(kDltIpv6, build_frame(kDltIpv6, s6)), s6);
  // the IPv4-only link type does not take an IPv6 packet
  EXPECT_FALSE(parse(kDltIpv4, build_frame(kDltIpv6, s6)).ok());
}

TEST(Packet, NullLinkInEitherByteOrder) {
  PacketSpec s = syn6();
  std::vector<std::uint8_t> f = build_frame(kDltLoop, s);  // big-endian AF
  expect_matches(parse(kDltNull, f), s);
  f[0] = 0; f[1] = 0; f[2] = 0; f[3] = 30;                 // Darwin AF_INET6
  expect_matches(parse(kDltNull, f), s);
  f[3] = 99;
  EXPECT_EQ(parse(kDltNull, f).status, ParseStatus::NonIp);
}

TEST(Packet, VlanTagsSingleAndStacked) {
  for (int dlt : {kDltEn10mb, kDltLinuxSll, kDltLinuxSll2}) {
    for (bool v6 : {false, true}) {
      PacketSpec s = v6 ? syn6() : syn4();
      s.vlan_tags = {100};
      expect_matches(parse(dlt, build_frame(dlt, s)), s);
      s.vlan_tags = {10, 20};
      s.qinq = true;
      expect_matches(parse(dlt, build_frame(dlt, s)), s);
      s.vlan_tags = {1, 2, 3};
      s.qinq = false;
      expect_matches(parse(dlt, build_frame(dlt, s)), s);
    }
  }
  PacketSpec s = syn4();
  s.vlan_tags.assign(9, 5);  // more tags than anyone stacks
  EXPECT_EQ(parse(kDltEn10mb, build_frame(kDltEn10mb, s)).status, ParseStatus::BadHeader);
}

TEST(Packet, Ipv4Options) {
  PacketSpec s = syn4();
  s.ipv4_options = {0x94, 0x04, 0x00, 0x00};  // router alert
  std::vector<std::uint8_t> f = build_frame(kDltRaw, s);
  EXPECT_EQ(f[0], 0x46);
  expect_matches(parse(kDltRaw, f), s);
  s.ipv4_options.assign(40, 0x01);  // IHL 15, all NOPs
  f = build_frame(kDltEn10mb, s);
  EXPECT_EQ(f[14], 0x4F);
  expect_matches(parse(kDltEn10mb, f), s);
}

TEST(Packet, Ipv6ExtensionHeaders) {
  PacketSpec s = syn6();
  s.ipv6_ext_headers = {0, 43, 60};
  expect_matches(parse(kDltRaw, build_frame(kDltRaw, s)), s);
  s.ipv6_ext_headers = {0, 44};  // atomic fragment (offset 0, M = 0)
  s.protocol = kProtoUdp;
  s.tcp_flags = 0;
  expect_matches(parse(kDltRaw, build_frame(kDltRaw, s)), s);
  s.ipv6_ext_headers = {59};  // no next header
  s.protocol = 59;
  EXPECT_EQ(parse(kDltRaw, build_frame(kDltRaw, s)).status, ParseStatus::NotTcpUdp);
}

TEST(Packet, Fragments) {
  // IPv4: a non-first fragment is skipped, a first one with the whole TCP header is parsed.
  PacketSpec s = syn4();
  std::vector<std::uint8_t> f = build_frame(kDltRaw, s);
  f[6] = 0x00; f[7] = 0x10;  // offset 16*8
  EXPECT_EQ(parse(kDltRaw, f).status, ParseStatus::Fragment);
  f[6] = 0x20; f[7] = 0x00;  // MF, offset 0
  expect_matches(parse(kDltRaw, f), s);
  // A first fragment that ends inside the TCP header.
  std::vector<std::uint8_t> g(f.begin(), f.begin() + 28);
  g[2] = 0; g[3] = 28;
  EXPECT_EQ(parse(kDltRaw, g).status, ParseStatus::Fragment);

  // IPv6: fragment header with a non-zero offset.
  PacketSpec v = syn6();
  v.ipv6_ext_headers = {44};
  f = build_frame(kDltRaw, v);
  f[40 + 2] = 0x01; f[40 + 3] = 0x00;  // offset 32
  EXPECT_EQ(parse(kDltRaw, f).status, ParseStatus::Fragment);
  f[40 + 2] = 0x00; f[40 + 3] = 0x01;  // offset 0, more fragments
  expect_matches(parse(kDltRaw, f), v);
}

TEST(Packet, TruncatedAtEveryLengthNeverParses) {
  std::vector<PacketSpec> specs;
  PacketSpec s = syn4();
  s.ipv4_options = {0x01, 0x01, 0x01, 0x00};
  s.vlan_tags = {7, 8};
  specs.push_back(s);
  PacketSpec v = syn6();
  v.ipv6_ext_headers = {0, 43, 60, 44};
  v.vlan_tags = {9};
  specs.push_back(v);
  PacketSpec u = syn4();
  u.protocol = kProtoUdp;
  u.tcp_flags = 0;
  specs.push_back(u);
  for (int dlt : kAllLinks) {
    for (const PacketSpec& spec : specs) {
      const std::vector<std::uint8_t> f = build_frame(dlt, spec);
      ASSERT_TRUE(parse(dlt, f).ok()) << dlt;
      for (std::size_t len = 0; len < f.size(); ++len) {
        // a copy of exactly len bytes, so ASan catches any read past the capture
        std::vector<std::uint8_t> cut(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(len));
        const ParseResult r = parse_packet_result(dlt, cut.empty() ? nullptr : cut.data(), len, 0);
        EXPECT_FALSE(r.ok()) << "dlt " << dlt << " len " << len;
        EXPECT_NE(r.status, ParseStatus::Ok);
        EXPECT_FALSE(parse_packet(dlt, cut.data(), len, 0).has_value());
      }
    }
  }
  EXPECT_FALSE(parse_packet(kDltEn10mb, nullptr, 100, 0).has_value());
}

TEST(Packet, TruncationReasons) {
  const std::vector<std::uint8_t> f = build_frame(kDltEn10mb, syn4());
  EXPECT_EQ(parse_packet_result(kDltEn10mb, f.data(), 10, 0).status, ParseStatus::Truncated);
  EXPECT_EQ(parse_packet_result(kDltEn10mb, f.data(), 14 + 19, 0).status, ParseStatus::Truncated);
  EXPECT_EQ(parse_packet_result(kDltEn10mb, f.data(), 14 + 20 + 19, 0).status, ParseStatus::Truncated);
  EXPECT_TRUE(parse_packet_result(kDltEn10mb, f.data(), 14 + 20 + 20, 0).ok());
}

TEST(Packet, NonIpAndOtherProtocols) {
  std::vector<std::uint8_t> f = build_frame(kDltEn10mb, syn4());
  f[12] = 0x08; f[13] = 0x06;  // ARP
  EXPECT_EQ(parse(kDltEn10mb, f).status, ParseStatus::NonIp);
  f[12] = 0x00; f[13] = 0x40;  // 802.3 length field
  EXPECT_EQ(parse(kDltEn10mb, f).status, ParseStatus::NonIp);
  std::vector<std::uint8_t> sll = build_frame(kDltLinuxSll, syn4());
  sll[14] = 0x00; sll[15] = 0x04;  // 802.2 LLC
  EXPECT_EQ(parse(kDltLinuxSll, sll).status, ParseStatus::NonIp);
  PacketSpec icmp = syn4();
  icmp.protocol = 1;
  icmp.payload = {8, 0, 0, 0, 0, 1, 0, 1};
  EXPECT_EQ(parse(kDltEn10mb, build_frame(kDltEn10mb, icmp)).status, ParseStatus::NotTcpUdp);
  std::vector<std::uint8_t> raw = build_frame(kDltRaw, syn4());
  raw[0] = 0x55;  // version 5
  EXPECT_EQ(parse(kDltRaw, raw).status, ParseStatus::NonIp);
  EXPECT_EQ(parse(105 /* 802.11 */, raw).status, ParseStatus::UnsupportedLink);
  EXPECT_FALSE(link_type_supported(105));
  EXPECT_TRUE(link_type_supported(kDltLinuxSll2));
}

TEST(Packet, BadHeaders) {
  std::vector<std::uint8_t> f = build_frame(kDltRaw, syn4());
  std::vector<std::uint8_t> g = f;
  g[0] = 0x44;  // IHL 4
  EXPECT_EQ(parse(kDltRaw, g).status, ParseStatus::BadHeader);
  g = f;
  g[2] = 0; g[3] = 10;  // total length below the header
  EXPECT_EQ(parse(kDltRaw, g).status, ParseStatus::BadHeader);
  g = f;
  g[20 + 12] = 0x40;  // TCP data offset 4
  EXPECT_EQ(parse(kDltRaw, g).status, ParseStatus::BadHeader);
  g = f;
  g[2] = 0; g[3] = 30;  // total length cuts the TCP header: trimmed, so truncated
  EXPECT_FALSE(parse(kDltIpv4, g).ok());
  std::vector<std::uint8_t> e = build_frame(kDltEn10mb, syn6());
  e[14] = 0x40;  // ethertype says IPv6, version says 4
  EXPECT_EQ(parse(kDltEn10mb, e).status, ParseStatus::BadHeader);
  // an endless chain of IPv6 options headers stops at a limit
  PacketSpec v = syn6();
  v.ipv6_ext_headers.assign(20, 60);
  EXPECT_EQ(parse(kDltRaw, build_frame(kDltRaw, v)).status, ParseStatus::BadHeader);
}

namespace {
// Raw IPv6 bytes written out by hand (not by build_frame): hop-by-hop, AH and destination options
// before a TCP SYN; every prefix of it is refused without reading past the capture.
std::vector<std::uint8_t> v6_syn_with_ah() {
  std::vector<std::uint8_t> f = {0x60, 0, 0, 0, 0, 8 + 24 + 8 + 20, 0 /* hop-by-hop */, 64};
  const std::uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  const std::uint8_t dst[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  f.insert(f.end(), src, src + 16);
  f.insert(f.end(), dst, dst + 16);
  for (std::uint8_t b : {51, 0, 1, 4, 0, 0, 0, 0}) f.push_back(b);  // hop-by-hop -> AH, PadN
  // AH -> destination options, payload length 4 (= (4 + 2) * 4 = 24 bytes): SPI, sequence, ICV
  for (std::uint8_t b : {60, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 7}) f.push_back(b);
  for (int i = 0; i < 12; ++i) f.push_back(0xAA);
  for (std::uint8_t b : {6, 0, 1, 4, 0, 0, 0, 0}) f.push_back(b);  // destination options -> TCP
  for (std::uint8_t b : {0x9c, 0x41, 0x07, 0xd1, 0, 0, 0, 42, 0, 0, 0, 0, 0x50, 0x02, 0xfd, 0x20, 0, 0, 0, 0})
    f.push_back(b);  // 40001 -> 2001, seq 42, SYN
  return f;
}
}  // namespace

TEST(Packet, HandWrittenIpv6HopByHopAhDestinationOptions) {
  const auto f = v6_syn_with_ah();
  const ParseResult r = parse_packet_result(kDltRaw, f.data(), f.size(), 5);
  ASSERT_TRUE(r.ok()) << to_string(r.status);
  EXPECT_EQ(r.observation.source.str(), "2001:db8:1::2");
  EXPECT_EQ(r.observation.destination.str(), "2001:db8::1");
  EXPECT_EQ(r.observation.source_port, 40001);
  EXPECT_EQ(r.observation.dest_port, 2001);
  EXPECT_EQ(r.observation.tcp_seq, 42u);
  EXPECT_EQ(r.observation.tcp_flags, kTcpSyn);
  for (std::size_t len = 0; len < f.size(); ++len) {
    const std::vector<std::uint8_t> cut(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(len));
    const ParseResult c = parse_packet_result(kDltRaw, cut.data(), cut.size(), 5);
    EXPECT_FALSE(c.ok()) << len;
    EXPECT_EQ(c.status, ParseStatus::Truncated) << len;
  }
  // An AH length that runs past the packet is truncated, not read.
  auto bad = f;
  bad[40 + 8 + 1] = 200;
  EXPECT_EQ(parse_packet_result(kDltRaw, bad.data(), bad.size(), 5).status, ParseStatus::Truncated);
  // A first fragment (M = 1) cut inside the TCP header is a fragment, not a knock.
  std::vector<std::uint8_t> frag(f.begin(), f.begin() + 40);
  frag[6] = 44;
  frag[4] = 0;
  frag[5] = 8 + 10;
  for (std::uint8_t b : {6, 0, 0, 1, 0, 0, 0, 9}) frag.push_back(b);
  for (int i = 0; i < 10; ++i) frag.push_back(f[f.size() - 20 + static_cast<std::size_t>(i)]);
  EXPECT_EQ(parse_packet_result(kDltRaw, frag.data(), frag.size(), 5).status, ParseStatus::Fragment);
}
