// NFLOG messages from raw bytes: IPv4/IPv6 SYNs and a UDP datagram with its payload, every
// truncation length, hostile attribute lengths, duplicates, nested known attributes, and the
// reader's framing, sequence gaps and budget. (The kernel path: tests/e2e/netns_nflog_source.sh.)
#include "capture/nflog.hpp"
#include "capture/pcap_writer.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

using namespace knock;
using namespace knock::capture;

namespace {

using Bytes = std::vector<std::uint8_t>;

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

PacketSpec syn4() {
  PacketSpec s;
  s.source = ip("198.18.1.2");
  s.destination = ip("198.18.1.1");
  s.source_port = 40000;
  s.dest_port = 2001;
  s.tcp_seq = 0xA1B2C3D4;
  return s;
}
PacketSpec syn6() {
  PacketSpec s = syn4();
  s.source = ip("2001:db8::2");
  s.destination = ip("2001:db8::1");
  s.dest_port = 2255;
  return s;
}
PacketSpec udp4() {
  PacketSpec s = syn4();
  s.protocol = kProtoUdp;
  s.dest_port = 62202;
  s.payload = {'k', 'n', 'o', 'c', 'k', 0, 0xff};
  return s;
}

void put16(Bytes& b, std::uint16_t v) { b.insert(b.end(), {std::uint8_t(v >> 8), std::uint8_t(v)}); }
void put_h16(Bytes& b, std::uint16_t v) {
  std::uint8_t x[2];
  std::memcpy(x, &v, 2);
  b.insert(b.end(), x, x + 2);
}
void put_h32(Bytes& b, std::uint32_t v) {
  std::uint8_t x[4];
  std::memcpy(x, &v, 4);
  b.insert(b.end(), x, x + 4);
}
void put_be64(Bytes& b, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) b.push_back(std::uint8_t(v >> (8 * i)));
}

struct Attr {
  std::uint16_t type;
  Bytes value;
};

Bytes attr_bytes(const Attr& a) {
  Bytes b;
  put_h16(b, static_cast<std::uint16_t>(4 + a.value.size()));
  put_h16(b, a.type);
  b.insert(b.end(), a.value.begin(), a.value.end());
  while (b.size() % 4) b.push_back(0);
  return b;
}

// A whole netlink message: nlmsghdr + nfgenmsg + attributes, nlmsg_len fixed up.
Bytes message(const std::vector<Attr>& attrs, std::uint8_t family = 2, std::uint16_t group = 5,
              std::uint16_t type = kNflogPacketType) {
  Bytes b;
  put_h32(b, 0);
  put_h16(b, type);
  put_h16(b, 0);
  put_h32(b, 0);
  put_h32(b, 0);
  b.push_back(family);
  b.push_back(0);
  put16(b, group);
  for (const Attr& a : attrs) {
    const Bytes x = attr_bytes(a);
    b.insert(b.end(), x.begin(), x.end());
  }
  const std::uint32_t len = static_cast<std::uint32_t>(b.size());
  std::memcpy(b.data(), &len, 4);
  return b;
}

Attr hdr(std::uint16_t proto, std::uint8_t hook = 1) {
  Bytes v;
  put16(v, proto);
  v.push_back(hook);
  v.push_back(0);
  return {kNfulaPacketHdr, v};
}
Attr payload(const Bytes& p) { return {kNfulaPayload, p}; }
Attr prefix(const std::string& s) {
  Bytes v(s.begin(), s.end());
  v.push_back(0);
  return {kNfulaPrefix, v};
}
Attr timestamp(std::uint64_t sec, std::uint64_t usec) {
  Bytes v;
  put_be64(v, sec);
  put_be64(v, usec);
  return {kNfulaTimestamp, v};
}
Attr seq(std::uint32_t n) {
  Bytes v{std::uint8_t(n >> 24), std::uint8_t(n >> 16), std::uint8_t(n >> 8), std::uint8_t(n)};
  return {kNfulaSeq, v};
}

// What the kernel sends for a packet logged in INPUT.
Bytes kernel_like(const PacketSpec& spec, bool v6 = false) {
  return message({hdr(v6 ? 0x86DD : 0x0800), {kNfulaMark, {0, 0, 0, 0}}, timestamp(1700000000, 250000),
                  {4 /* indev */, {0, 0, 0, 2}}, prefix("portknock "), payload(build_frame(v6 ? kDltIpv6 : kDltIpv4, spec))},
                 v6 ? 10 : 2);
}

NflogMessage parse(const Bytes& b, double now = 42.0) { return parse_nflog_message(b.data(), b.size(), now); }

void expect_syn(const NflogMessage& m, const PacketSpec& s) {
  ASSERT_EQ(m.status, NflogStatus::Ok) << to_string(m.status) << " / " << to_string(m.packet_status);
  EXPECT_EQ(m.observation.source, s.source);
  EXPECT_EQ(m.observation.destination, s.destination);
  EXPECT_EQ(m.observation.source_port, s.source_port);
  EXPECT_EQ(m.observation.dest_port, s.dest_port);
  EXPECT_EQ(m.observation.protocol, kProtoTcp);
  EXPECT_EQ(m.observation.tcp_flags, kTcpSyn);
  EXPECT_TRUE(m.observation.has_tcp_seq);
  EXPECT_EQ(m.observation.tcp_seq, s.tcp_seq);
}

}  // namespace

TEST(Nflog, Ipv4Syn) {
  const Bytes b = kernel_like(syn4());  // the prefix views it
  const NflogMessage m = parse(b);
  expect_syn(m, syn4());
  EXPECT_EQ(m.group, 5);
  EXPECT_EQ(m.family, 2);
  EXPECT_EQ(m.hw_protocol, 0x0800);
  EXPECT_EQ(m.prefix, "portknock ");
  EXPECT_TRUE(m.has_timestamp);
  EXPECT_DOUBLE_EQ(m.observation.time, 1700000000.25);
}

TEST(Nflog, Ipv6Syn) {
  const NflogMessage m = parse(kernel_like(syn6(), true));
  expect_syn(m, syn6());
  EXPECT_EQ(m.family, 10);
}

TEST(Nflog, UdpWithPayload) {
  const Bytes b = kernel_like(udp4());
  const NflogMessage m = parse(b);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m.observation.protocol, kProtoUdp);
  EXPECT_EQ(m.observation.dest_port, 62202);
  ASSERT_EQ(m.observation.payload_size, udp4().payload.size());
  EXPECT_EQ(0, std::memcmp(m.observation.payload, udp4().payload.data(), udp4().payload.size()));
  EXPECT_GE(m.observation.payload, b.data());  // views the message
  EXPECT_LE(m.observation.payload + m.observation.payload_size, b.data() + b.size());
}

// An IPv6 datagram with extension headers (hop-by-hop, destination options) and an SPA-sized
// payload, as NFLOG hands it for an ip6tables/nft inet rule: family AF_INET6, hw_protocol 0x86dd.
TEST(Nflog, Ipv6UdpWithExtensionHeadersAndPayload) {
  PacketSpec s = udp4();
  s.source = ip("2001:db8:1::2");
  s.destination = ip("2001:db8::1");
  s.ipv6_ext_headers = {0, 60};
  s.payload.assign(73, 0xA1);
  const Bytes b = kernel_like(s, true);
  const NflogMessage m = parse(b);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m.family, 10);
  EXPECT_EQ(m.observation.source.str(), "2001:db8:1::2");
  EXPECT_EQ(m.observation.destination.str(), "2001:db8::1");
  EXPECT_EQ(m.observation.protocol, kProtoUdp);
  EXPECT_EQ(m.observation.dest_port, 62202);
  ASSERT_EQ(m.observation.payload_size, 73u);
  EXPECT_LE(m.observation.payload + m.observation.payload_size, b.data() + b.size());
  // Cut anywhere inside the IPv6 packet: refused, never read past the message.
  for (std::size_t cut = 1; cut < 40 + 8 + 8 + 8; ++cut) {
    PacketSpec t = s;
    Bytes frame = build_frame(kDltIpv6, t);
    frame.resize(cut);
    EXPECT_FALSE(parse(message({hdr(0x86DD), payload(frame)}, 10)).ok()) << cut;
  }
}

TEST(Nflog, NoTimestampMeansNow) {
  const NflogMessage m = parse(message({hdr(0x0800), payload(build_frame(kDltIpv4, syn4()))}), 1234.5);
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(m.has_timestamp);
  EXPECT_DOUBLE_EQ(m.observation.time, 1234.5);
  EXPECT_TRUE(m.prefix.empty());
}

TEST(Nflog, OutputHookWithoutHwProtocolGoesByVersion) {
  expect_syn(parse(message({hdr(0), payload(build_frame(kDltIpv6, syn6()))}, 10)), syn6());
  expect_syn(parse(message({payload(build_frame(kDltIpv4, syn4()))})), syn4());  // no header at all
  const NflogMessage junk = parse(message({payload({0x00, 1, 2, 3})}));
  EXPECT_EQ(junk.status, NflogStatus::Packet);
  EXPECT_EQ(junk.packet_status, ParseStatus::NonIp);
}

TEST(Nflog, UnknownAndNestedUnknownAttributesAreSkipped) {
  Bytes nested_garbage{0xff, 0xff, 0xff, 0xff, 1, 2, 3};
  expect_syn(parse(message({{0x8000 | 18 /* NFULA_CT, nested */, nested_garbage}, {0x3fff, {}}, {77, {1}},
                            hdr(0x0800), payload(build_frame(kDltIpv4, syn4()))})),
             syn4());
}

TEST(Nflog, PayloadThatIsNotAKnock) {
  PacketSpec icmp = syn4();
  icmp.protocol = 1;
  NflogMessage m = parse(message({hdr(0x0800), payload(build_frame(kDltIpv4, icmp))}));
  EXPECT_EQ(m.status, NflogStatus::Packet);
  EXPECT_EQ(m.packet_status, ParseStatus::NotTcpUdp);
  // hw_protocol says IPv6, the bytes are IPv4
  m = parse(message({hdr(0x86DD), payload(build_frame(kDltIpv4, syn4()))}));
  EXPECT_EQ(m.status, NflogStatus::Packet);
  // ARP in a bridge family message
  m = parse(message({hdr(0x0806), payload(Bytes(28, 0x11))}, 7));
  EXPECT_EQ(m.status, NflogStatus::Packet);
  EXPECT_EQ(m.packet_status, ParseStatus::NonIp);
}

TEST(Nflog, RefusedByReason) {
  const Bytes good = kernel_like(syn4());
  EXPECT_EQ(parse(message({hdr(0x0800)})).status, NflogStatus::NoPayload);
  EXPECT_EQ(parse(message({hdr(0x0800), payload({})})).status, NflogStatus::NoPayload);
  EXPECT_EQ(parse(message({payload({0x45})}, 2, 5, (4 << 8) | 1 /* config */)).status, NflogStatus::NotPacket);
  EXPECT_EQ(parse(message({payload({0x45})}, 2, 5, 3 /* NLMSG_DONE */)).status, NflogStatus::NotPacket);
  Bytes v1 = good;
  v1[17] = 1;  // nfgenmsg version
  EXPECT_EQ(parse(v1).status, NflogStatus::NotPacket);
  // duplicates of what we use
  EXPECT_EQ(parse(message({hdr(0x0800), payload(build_frame(kDltIpv4, syn4())), payload({0x45})})).status,
            NflogStatus::BadAttribute);
  EXPECT_EQ(parse(message({prefix("a"), prefix("b"), payload(build_frame(kDltIpv4, syn4()))})).status,
            NflogStatus::BadAttribute);
  // wrong sizes, nested flag on a known attribute, unterminated prefix, absurd timestamp
  EXPECT_EQ(parse(message({{kNfulaPacketHdr, {8, 0}}, payload({0x45})})).status, NflogStatus::BadAttribute);
  EXPECT_EQ(parse(message({{kNfulaTimestamp, Bytes(15, 0)}, payload({0x45})})).status, NflogStatus::BadAttribute);
  EXPECT_EQ(parse(message({timestamp(1, 1000000), payload({0x45})})).status, NflogStatus::BadAttribute);
  EXPECT_EQ(parse(message({timestamp(~0ull, 0), payload({0x45})})).status, NflogStatus::BadAttribute);
  EXPECT_EQ(parse(message({{kNfulaSeq, {0, 0, 1}}, payload({0x45})})).status, NflogStatus::BadAttribute);
  EXPECT_EQ(parse(message({{std::uint16_t(0x8000 | kNfulaPayload), build_frame(kDltIpv4, syn4())}})).status,
            NflogStatus::BadAttribute);
  EXPECT_EQ(parse(message({{kNfulaPrefix, {'a', 'b'}}, payload(build_frame(kDltIpv4, syn4()))})).status,
            NflogStatus::BadAttribute);
  EXPECT_EQ(parse(message({{kNfulaPrefix, {}}, payload(build_frame(kDltIpv4, syn4()))})).status,
            NflogStatus::BadAttribute);
}

TEST(Nflog, HostileLengths) {
  const Bytes good = kernel_like(syn4());
  auto with_len = [&](std::uint32_t len) {
    Bytes b = good;
    std::memcpy(b.data(), &len, 4);
    return parse(b).status;
  };
  EXPECT_EQ(with_len(0), NflogStatus::BadLength);
  EXPECT_EQ(with_len(15), NflogStatus::BadLength);
  EXPECT_EQ(with_len(16), NflogStatus::Truncated);     // header only: no nfgenmsg
  EXPECT_EQ(with_len(18), NflogStatus::Truncated);
  EXPECT_EQ(with_len(std::uint32_t(good.size() + 1)), NflogStatus::Truncated);  // past the end
  EXPECT_EQ(with_len(0xffffffffu), NflogStatus::Truncated);
  EXPECT_EQ(with_len(22), NflogStatus::BadAttribute);  // a 2-byte stub where an attribute starts

  // Every attribute length in the first attribute (the 8-byte packet header): the true one
  // parses, impossible ones are refused, the rest never reach outside the message.
  const std::size_t first = kNlmsgHeaderBytes + kNfgenmsgBytes;
  for (std::uint32_t alen = 0; alen <= 0xffff; alen += (alen < 300 ? 1 : 251)) {
    Bytes b = good;
    const std::uint16_t v = static_cast<std::uint16_t>(alen);
    std::memcpy(b.data() + first, &v, 2);
    const NflogMessage m = parse(b);
    if (alen == 8) {
      EXPECT_TRUE(m.ok());
    }
    if (alen < 8 || alen > b.size() - first) {
      EXPECT_EQ(m.status, NflogStatus::BadAttribute) << alen;
    }
    if (m.payload != nullptr) {
      EXPECT_GE(m.payload, b.data());
      EXPECT_LE(m.payload + m.payload_size, b.data() + b.size());
    }
  }
  // A payload attribute whose length reaches past the message (but inside the buffer).
  Bytes b = message({hdr(0x0800), payload(build_frame(kDltIpv4, syn4()))});
  Bytes tail = b;
  tail.resize(b.size() + 64, 0xAA);
  std::uint32_t short_len = static_cast<std::uint32_t>(b.size() - 8);
  std::memcpy(tail.data(), &short_len, 4);
  EXPECT_EQ(parse(tail).status, NflogStatus::BadAttribute);
}

TEST(Nflog, EveryTruncation) {
  for (const Bytes& full : {kernel_like(syn4()), kernel_like(syn6(), true), kernel_like(udp4())}) {
    ASSERT_TRUE(parse(full).ok());
    for (std::size_t n = 0; n < full.size(); ++n) {
      // the buffer cut at n: nlmsg_len now points past the end
      Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
      EXPECT_FALSE(parse_nflog_message(cut.data(), cut.size(), 0).ok()) << n;
      // a consistent message cut at n: nlmsg_len = n
      if (n >= 4) {
        const std::uint32_t len = static_cast<std::uint32_t>(n);
        std::memcpy(cut.data(), &len, 4);
        const NflogMessage m = parse(cut);
        if (n + 3 < full.size()) {  // (the last 3 may be padding)
          EXPECT_FALSE(m.ok()) << n;
        }
      }
    }
  }
  EXPECT_EQ(parse_nflog_message(nullptr, 100, 0).status, NflogStatus::Truncated);
}

TEST(Nflog, EveryByteFlippedNeverCrashes) {
  const Bytes full = kernel_like(udp4());
  for (std::size_t i = 0; i < full.size(); ++i) {
    for (std::uint8_t x : {std::uint8_t(0x00), std::uint8_t(0xff), std::uint8_t(0x80), std::uint8_t(0x01)}) {
      Bytes b = full;
      b[i] = x;
      const NflogMessage m = parse(b);
      if (m.ok() && m.observation.payload != nullptr) {
        EXPECT_GE(m.observation.payload, b.data());
        EXPECT_LE(m.observation.payload + m.observation.payload_size, b.data() + b.size());
      }
    }
  }
}

// ---- the reader: datagrams of several messages ----

namespace {

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

void load(NflogReader& r, const Bytes& b, bool truncated = false) {
  ASSERT_LE(b.size(), r.capacity());
  std::memcpy(r.buffer(), b.data(), b.size());
  r.loaded(b.size(), 99.0, truncated);
}

Bytes with_seq(const PacketSpec& s, std::uint32_t n) {
  return message({hdr(0x0800), seq(n), payload(build_frame(kDltIpv4, s))});
}

}  // namespace

TEST(NflogReader, MultipartDatagram) {
  NflogReader r;
  Bytes done = message({}, 0, 0, 3 /* NLMSG_DONE */);
  load(r, concat({kernel_like(syn4()), kernel_like(syn6(), true), message({hdr(0x0800)}), kernel_like(udp4()), done}));
  std::vector<Observation> seen;
  std::size_t udp_size = 0;
  const int n = r.deliver([&](const Observation& o) {
    seen.push_back(o);
    if (o.protocol == kProtoUdp) udp_size = o.payload_size;
  }, 100);
  EXPECT_EQ(n, 4);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].source, syn4().source);
  EXPECT_EQ(seen[1].source, syn6().source);
  EXPECT_EQ(udp_size, udp4().payload.size());
  EXPECT_EQ(r.stats().received, 4u);
  EXPECT_EQ(r.stats().delivered, 3u);
  EXPECT_EQ(r.stats().malformed, 1u);
  EXPECT_EQ(r.counters().by_status[static_cast<std::size_t>(NflogStatus::NoPayload)], 1u);
  EXPECT_FALSE(r.pending());
}

TEST(NflogReader, BudgetAndExceptionResume) {
  NflogReader r;
  load(r, concat({kernel_like(syn4()), kernel_like(syn4()), kernel_like(syn4())}));
  int calls = 0;
  EXPECT_EQ(r.deliver([&](const Observation&) { ++calls; }, 1), 1);
  EXPECT_TRUE(r.pending());
  EXPECT_THROW(r.deliver([&](const Observation&) { ++calls; throw std::runtime_error("x"); }, 5),
               std::runtime_error);
  EXPECT_TRUE(r.pending());
  EXPECT_EQ(r.deliver([&](const Observation&) { ++calls; }, 5), 1);
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(r.pending());
}

TEST(NflogReader, SequenceGapsAreDrops) {
  NflogReader r;
  load(r, concat({with_seq(syn4(), 7), with_seq(syn4(), 8), with_seq(syn4(), 12)}));
  r.deliver([](const Observation&) {}, 10);
  EXPECT_EQ(r.stats().dropped, 3u);
  EXPECT_EQ(r.counters().seq_lost, 3u);
  load(r, with_seq(syn4(), 2));  // rebound instance: resync, no drop
  r.deliver([](const Observation&) {}, 10);
  EXPECT_EQ(r.stats().dropped, 3u);
  r.note_overrun();  // counted by the gaps that follow once sequence numbers are known
  EXPECT_EQ(r.stats().dropped, 3u);
  EXPECT_EQ(r.counters().overruns, 1u);

  NflogReader plain;
  plain.note_overrun();
  EXPECT_EQ(plain.stats().dropped, 1u);
}

TEST(NflogReader, BrokenFramingSkipsTheRest) {
  NflogReader r;
  Bytes bad = kernel_like(syn4());
  const std::uint32_t huge = 100000;
  std::memcpy(bad.data(), &huge, 4);
  load(r, concat({kernel_like(syn4()), bad, kernel_like(syn4())}));
  int calls = 0;
  r.deliver([&](const Observation&) { ++calls; }, 10);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(r.counters().framing, 1u);
  EXPECT_EQ(r.stats().malformed, 1u);

  // a datagram cut by the socket: what fits is read, the cut message refused
  const Bytes two = concat({kernel_like(syn4()), kernel_like(syn4())});
  load(r, Bytes(two.begin(), two.end() - 10), true);
  calls = 0;
  r.deliver([&](const Observation&) { ++calls; }, 10);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(r.counters().cut, 1u);

  // trailing bytes too short for a header, and zero-length messages
  load(r, concat({kernel_like(syn4()), Bytes{1, 2, 3, 4, 5, 6, 7, 8}}));
  calls = 0;
  r.deliver([&](const Observation&) { ++calls; }, 10);
  EXPECT_EQ(calls, 1);
  load(r, Bytes(64, 0));
  EXPECT_EQ(r.deliver([&](const Observation&) { ++calls; }, 10), 1);
  EXPECT_FALSE(r.pending());
}

TEST(NflogReader, RandomDatagramsNeverCrash) {
  NflogReader r(4096);
  std::uint32_t x = 12345;
  auto rnd = [&] { x = x * 1103515245u + 12345u; return x >> 8; };
  const Bytes seed = concat({kernel_like(syn4()), kernel_like(udp4())});
  for (int i = 0; i < 20000; ++i) {
    Bytes b = seed;
    const int flips = 1 + static_cast<int>(rnd() % 8);
    for (int f = 0; f < flips; ++f) b[rnd() % b.size()] = static_cast<std::uint8_t>(rnd());
    b.resize(rnd() % (b.size() + 1));
    load(r, b);
    while (r.pending()) r.deliver([](const Observation&) {}, 3);
  }
  EXPECT_EQ(r.counters().datagrams, 20000u);
}
