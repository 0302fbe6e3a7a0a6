// Packet sources (offline capture files written by PcapWriter, live open errors), the BPF
// pre-filter and the <ethfilter> block.
#include "capture/ethfilter.hpp"
#include "capture/pcap_source.hpp"
#include "capture/pcap_writer.hpp"
#include "config/tree.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace knock;
using namespace knock::capture;
namespace fs = std::filesystem;

namespace {

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/pcap_source_test.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

PacketSpec spec(const char* src, const char* dst, std::uint16_t dport, std::uint8_t flags = kTcpSyn) {
  PacketSpec s;
  s.source = ip(src);
  s.destination = ip(dst);
  s.source_port = 40000;
  s.dest_port = dport;
  s.tcp_flags = flags;
  s.tcp_seq = 1000 + dport;
  return s;
}

std::vector<Observation> read_all(PacketSource& src, int batch = 0) {
  std::vector<Observation> out;
  for (int guard = 0; !src.exhausted() && guard < 100000; ++guard)
    src.dispatch([&](const Observation& o) { out.push_back(o); }, batch);
  return out;
}

config::Value block(const std::string& text, const std::string& kind, const std::string& name,
                    config::Value& root) {
  root = config::parse_string(text, "test.conf");
  const config::Value* kinds = root.find(kind);
  if (kinds == nullptr) throw std::runtime_error("no block " + kind);
  const config::Value* b = kinds->find(name);
  if (b == nullptr) throw std::runtime_error("no block " + name);
  return *b;
}

EthFilter filter_from(const std::string& body) {
  config::Value root;
  return EthFilter(block("<ethfilter f>\n" + body + "</ethfilter>\n", "ethfilter", "f", root));
}

// pcap_offline_filter over one frame of link type dlt.
bool bpf_passes(int dlt, const std::string& expr, const std::vector<std::uint8_t>& frame) {
  PcapHandle dead(pcap_open_dead(dlt, 65535));
  bpf_program prog{};
  EXPECT_EQ(pcap_compile(dead.get(), &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN), 0)
      << pcap_geterr(dead.get()) << " in " << expr;
  pcap_pkthdr h{};
  h.caplen = h.len = static_cast<bpf_u_int32>(frame.size());
  const bool pass = pcap_offline_filter(&prog, &h, frame.data()) != 0;
  pcap_freecode(&prog);
  return pass;
}

}  // namespace

TEST(OfflinePcapSource, ReadsEveryLinkTypeWithTimestamps) {
  TempDir dir;
  for (int dlt : {kDltEn10mb, kDltLinuxSll, kDltLinuxSll2, kDltRaw, kDltIpv4, kDltNull, kDltLoop}) {
    SCOPED_TRACE(dlt);
    const std::string path = dir.file("t" + std::to_string(dlt) + ".pcap");
    {
      PcapWriter w(path, dlt);
      w.add_tcp_syn(ip("198.18.0.2"), ip("198.18.0.1"), 40000, 2000, 77, 1700000000.25);
      w.add_udp(ip("198.18.0.3"), ip("198.18.0.1"), 5000, 2001, {1, 2, 3}, 1700000001.5);
      if (dlt != kDltIpv4) w.add_tcp_syn(ip("2001:db8::2"), ip("2001:db8::1"), 40001, 2002, 78, 1700000002.0);
      PacketSpec tagged = spec("198.18.0.4", "198.18.0.1", 2003);
      if (dlt == kDltEn10mb || dlt == kDltLinuxSll || dlt == kDltLinuxSll2) tagged.vlan_tags = {42};
      tagged.ipv4_options = {0x94, 0x04, 0, 0};
      w.add(tagged, 1700000003.0);
      w.add(spec("198.18.0.5", "198.18.0.1", 2004), 1700000004.0, 12);  // record cut by snaplen
      EXPECT_EQ(w.count(), dlt == kDltIpv4 ? 4u : 5u);
    }
    OfflinePcapSource src(path, "");
    EXPECT_EQ(src.selectable_fd(), -1);
    EXPECT_EQ(src.datalink(), dlt == kLinktypeRaw ? kDltRaw : dlt);
    const std::vector<Observation> obs = read_all(src);
    EXPECT_TRUE(src.exhausted());
    EXPECT_TRUE(src.last_error().empty());
    ASSERT_EQ(obs.size(), dlt == kDltIpv4 ? 3u : 4u);
    EXPECT_EQ(obs[0].source.str(), "198.18.0.2");
    EXPECT_EQ(obs[0].dest_port, 2000);
    EXPECT_EQ(obs[0].tcp_seq, 77u);
    EXPECT_NEAR(obs[0].time, 1700000000.25, 1e-6);
    EXPECT_EQ(obs[1].protocol, kProtoUdp);
    EXPECT_EQ(obs[1].dest_port, 2001);
    EXPECT_NEAR(obs[1].time, 1700000001.5, 1e-6);
    EXPECT_EQ(obs.back().dest_port, 2003);
    if (dlt != kDltIpv4) {
      EXPECT_EQ(obs[2].source.str(), "2001:db8::2");
    }
    const CaptureStats st = src.stats();
    EXPECT_EQ(st.packets, dlt == kDltIpv4 ? 4u : 5u);
    EXPECT_EQ(st.observations, obs.size());
    EXPECT_EQ(st.by_status[static_cast<std::size_t>(ParseStatus::Truncated)], 1u);
  }
}

TEST(OfflinePcapSource, SnaplenShorterThanHeadersAndNonIp) {
  TempDir dir;
  const std::string path = dir.file("short.pcap");
  {
    PcapWriter w(path, kDltEn10mb, 40);  // Ethernet + IPv4 = 34: the TCP header is cut
    for (int i = 0; i < 10; ++i) w.add(spec("198.18.0.2", "198.18.0.1", static_cast<std::uint16_t>(2000 + i)), i);
    std::vector<std::uint8_t> arp(42, 0);
    arp[12] = 0x08;
    arp[13] = 0x06;
    w.add_raw(arp, 11);
  }
  OfflinePcapSource src(path, "");
  EXPECT_TRUE(read_all(src, 3).empty());
  const CaptureStats st = src.stats();
  EXPECT_EQ(st.packets, 11u);
  EXPECT_EQ(st.by_status[static_cast<std::size_t>(ParseStatus::Truncated)], 10u);
  EXPECT_EQ(st.by_status[static_cast<std::size_t>(ParseStatus::NonIp)], 1u);
}

TEST(OfflinePcapSource, BatchesFilterAndCutFile) {
  TempDir dir;
  const std::string path = dir.file("batch.pcap");
  {
    PcapWriter w(path, kDltEn10mb);
    for (int i = 0; i < 100; ++i)
      w.add(spec("198.18.0.2", "198.18.0.1", static_cast<std::uint16_t>(1990 + i)), i);
  }
  {
    OfflinePcapSource src(path, "");
    int calls = 0;
    std::size_t n = 0;
    while (!src.exhausted()) {
      const int got = src.dispatch([&](const Observation&) { ++n; }, 7);
      EXPECT_LE(got, 7);
      ++calls;
    }
    EXPECT_EQ(n, 100u);
    EXPECT_GE(calls, 15);
  }
  {  // a BPF filter given to the source applies
    OfflinePcapSource src(path, "tcp dst portrange 2000-2009");
    const auto obs = read_all(src);
    ASSERT_EQ(obs.size(), 10u);
    EXPECT_EQ(obs.front().dest_port, 2000);
  }
  {  // a file cut inside its last record ends the source without throwing
    const std::string cut = dir.file("cut.pcap");
    fs::copy_file(path, cut);
    fs::resize_file(cut, fs::file_size(path) - 10);
    OfflinePcapSource src(cut, "");
    EXPECT_EQ(read_all(src).size(), 99u);
    EXPECT_TRUE(src.exhausted());
    EXPECT_FALSE(src.last_error().empty());
  }
  {  // an exception from the callback stops the batch and reaches the caller
    OfflinePcapSource src(path, "");
    int seen = 0;
    EXPECT_THROW(src.dispatch([&](const Observation&) {
                   if (++seen == 5) throw std::logic_error("stop");
                 }, 0),
                 std::logic_error);
    EXPECT_EQ(seen, 5);
  }
}

TEST(OfflinePcapSource, Errors) {
  TempDir dir;
  EXPECT_THROW(OfflinePcapSource(dir.file("missing.pcap"), ""), RuntimeError);
  std::ofstream(dir.file("junk.pcap")) << "this is not a capture file at all";
  EXPECT_THROW(OfflinePcapSource(dir.file("junk.pcap"), ""), RuntimeError);
  {
    PcapWriter w(dir.file("ok.pcap"), kDltEn10mb);
  }
  EXPECT_THROW(OfflinePcapSource(dir.file("ok.pcap"), "tcp and and"), RuntimeError);
  {
    PcapWriter w(dir.file("wifi.pcap"), 105);
  }
  EXPECT_THROW(OfflinePcapSource(dir.file("wifi.pcap"), ""), RuntimeError);
  EXPECT_THROW(PcapWriter(dir.file("no/such/dir.pcap"), kDltEn10mb), RuntimeError);
}

TEST(PcapWriter, TcpdumpAgreesWithWrittenFrames) {
  if (access("/usr/bin/tcpdump", X_OK) != 0) GTEST_SKIP() << "no tcpdump";
  TempDir dir;
  const std::string path = dir.file("dump.pcap");
  {
    PcapWriter w(path, kDltEn10mb);
    PacketSpec s = spec("198.18.0.2", "198.18.0.1", 2000);
    s.vlan_tags = {5};
    s.ipv4_options = {0x94, 0x04, 0, 0};
    w.add(s, 1);
    w.add_udp(ip("2001:db8::2"), ip("2001:db8::1"), 5000, 2001, {9, 9}, 2);
  }
  const std::string cmd = "/usr/bin/tcpdump -e -nn -vv -r " + path + " 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  ASSERT_TRUE(p);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p.get())) out += buf;
  EXPECT_NE(out.find("vlan 5"), std::string::npos) << out;
  EXPECT_NE(out.find("198.18.0.2.40000 > 198.18.0.1.2000: Flags [S]"), std::string::npos) << out;
  EXPECT_NE(out.find("2001:db8::2.5000 > 2001:db8::1.2001"), std::string::npos) << out;
  EXPECT_EQ(out.find("incorrect"), std::string::npos) << out;  // checksums
  EXPECT_EQ(out.find("bad"), std::string::npos) << out;
}

TEST(LivePcapSource, OpenErrorsCarryPcapMessage) {
  try {
    LivePcapSource src("nosuchif0", "");
    FAIL() << "opened a missing interface";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("nosuchif0"), std::string::npos);
  }
}

TEST(LivePcapSource, LoopbackIsNonBlocking) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a live capture";
  std::unique_ptr<LivePcapSource> src;
  try {
    // the generic filter, which the source extends with a VLAN branch for Ethernet
    src = std::make_unique<LivePcapSource>(
        "lo", bpf_filter(filter_from("proto = TCP\nflags = SYN\ndest_ip = ^198\\.18\\.0\\.1$\n"), {9}));
  } catch (const RuntimeError& e) {
    GTEST_SKIP() << e.what();
  }
  EXPECT_GE(src->selectable_fd(), 0);
  EXPECT_FALSE(src->exhausted());
  EXPECT_EQ(src->datalink(), kDltEn10mb);
  EXPECT_EQ(src->dispatch([](const Observation&) {}, 10), 0);  // nothing matches; must not block
  EXPECT_EQ(src->stats().observations, 0u);
  EXPECT_THROW(LivePcapSource("lo", "tcp and and"), RuntimeError);
}

TEST(EthFilter, ParsesBlockAndMatches) {
  const EthFilter f = filter_from(
      "proto = IP_PROTO_TCP\nflags = SYN|ACK\ndest_ip = ^198\\.18\\.0\\.1$\nsrc_port =\n"
      "dest_port = ^20[0-9][0-9]$\n");
  EXPECT_EQ(f.protocol(), kProtoTcp);
  EXPECT_EQ(f.flags_mask(), kTcpSyn | kTcpAck);
  Observation o;
  o.source = ip("198.18.0.2");
  o.destination = ip("198.18.0.1");
  o.dest_port = 2000;
  o.protocol = kProtoTcp;
  o.tcp_flags = kTcpSyn;
  EXPECT_TRUE(f.matches(o));
  o.tcp_flags = kTcpAck;
  EXPECT_TRUE(f.matches(o));
  o.tcp_flags = kTcpFin | kTcpPsh;
  EXPECT_FALSE(f.matches(o));
  o.tcp_flags = kTcpSyn;
  o.dest_port = 3000;
  EXPECT_FALSE(f.matches(o));
  o.dest_port = 2000;
  o.destination = ip("198.18.0.10");
  EXPECT_FALSE(f.matches(o));
  o.destination = ip("198.18.0.1");
  o.protocol = kProtoUdp;
  EXPECT_FALSE(f.matches(o));
}

TEST(EthFilter, EmptyMeansAnyAndIpv6Text) {
  const EthFilter any;
  Observation o;
  o.protocol = kProtoUdp;
  EXPECT_TRUE(any.matches(o));
  const EthFilter f = filter_from("proto = 17\nsrc_ip = ^2001:db8::\ndest_ip =\n");
  EXPECT_EQ(f.protocol(), kProtoUdp);
  EXPECT_EQ(f.flags_mask(), 0);
  o.source = ip("2001:db8::7");
  EXPECT_TRUE(f.matches(o));
  o.source = ip("198.18.0.7");
  EXPECT_FALSE(f.matches(o));
  // a flags mask does not reject UDP (it has no flags)
  const EthFilter g = filter_from("flags = syn | 0x10\n");
  EXPECT_EQ(g.flags_mask(), kTcpSyn | kTcpAck);
  EXPECT_TRUE(g.matches(o));
}

TEST(EthFilter, ConfigErrorsPointAtTheLine) {
  auto expect_error_at = [](const std::string& body, int line, const char* what) {
    try {
      filter_from(body);
      ADD_FAILURE() << "accepted: " << body;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.where().line, line) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error_at("proto = IP_PROTO_TCP\ncolour = blue\n", 3, "colour");
  expect_error_at("proto = TCP\n\ndest_ip = ([0-9\n", 4, "regular expression");
  expect_error_at("flags = SYN|BOGUS\n", 2, "flags");
  expect_error_at("proto = IP_PROTO_NOPE\n", 2, "proto");
  expect_error_at("proto = 300\n", 2, "proto");
}

TEST(BpfFilter, CompilesForEveryLinkTypeAndFilters) {
  const EthFilter f = filter_from("proto = IP_PROTO_TCP\nflags = SYN\n");
  std::vector<std::uint16_t> span;
  for (int p = 2000; p < 2016; ++p) span.push_back(static_cast<std::uint16_t>(p));
  span.push_back(3000);
  EXPECT_EQ(bpf_filter(f, span, kDltNull), "");
  EXPECT_EQ(bpf_filter(f, span, kDltLoop), "");
  for (int dlt : {kDltEn10mb, kDltLinuxSll, kDltLinuxSll2, kDltRaw, kDltIpv4}) {
    SCOPED_TRACE(dlt);
    const std::string expr = bpf_filter(f, span, dlt);
    std::string err;
    ASSERT_TRUE(bpf_compiles(dlt, expr, &err)) << err << ": " << expr;
    EXPECT_TRUE(bpf_passes(dlt, expr, build_frame(dlt, spec("198.18.0.2", "198.18.0.1", 2005))));
    EXPECT_TRUE(bpf_passes(dlt, expr, build_frame(dlt, spec("198.18.0.2", "198.18.0.1", 3000))));
    EXPECT_FALSE(bpf_passes(dlt, expr, build_frame(dlt, spec("198.18.0.2", "198.18.0.1", 2016))));
    EXPECT_FALSE(bpf_passes(dlt, expr, build_frame(dlt, spec("198.18.0.2", "198.18.0.1", 1999))));
    EXPECT_FALSE(bpf_passes(dlt, expr, build_frame(dlt, spec("198.18.0.2", "198.18.0.1", 2005, kTcpAck))));
    if (dlt != kDltIpv4) {
      EXPECT_TRUE(bpf_passes(dlt, expr, build_frame(dlt, spec("2001:db8::2", "2001:db8::1", 2005))));
      EXPECT_FALSE(bpf_passes(dlt, expr, build_frame(dlt, spec("2001:db8::2", "2001:db8::1", 2999))));
      // IPv6 extension headers hide the TCP header from pcap's tests: such packets pass whole.
      PacketSpec ext = spec("2001:db8::2", "2001:db8::1", 2005);
      for (std::vector<std::uint8_t> chain : {std::vector<std::uint8_t>{0}, {60}, {43, 60}, {44}, {0, 44}}) {
        ext.ipv6_ext_headers = chain;
        EXPECT_TRUE(bpf_passes(dlt, expr, build_frame(dlt, ext))) << int(chain[0]);
      }
      PacketSpec v6udp = spec("2001:db8::2", "2001:db8::1", 2005);
      v6udp.protocol = kProtoUdp;
      EXPECT_FALSE(bpf_passes(dlt, expr, build_frame(dlt, v6udp)));
    }
    PacketSpec opts = spec("198.18.0.2", "198.18.0.1", 2001);
    opts.ipv4_options = {1, 1, 1, 1, 1, 1, 1, 0};
    EXPECT_TRUE(bpf_passes(dlt, expr, build_frame(dlt, opts)));
    PacketSpec udp = spec("198.18.0.2", "198.18.0.1", 2001);
    udp.protocol = kProtoUdp;
    EXPECT_FALSE(bpf_passes(dlt, expr, build_frame(dlt, udp)));
  }
  // Ethernet: VLAN-tagged frames pass too.
  const std::string eth = bpf_filter(f, span, kDltEn10mb);
  PacketSpec tagged = spec("198.18.0.2", "198.18.0.1", 2003);
  tagged.vlan_tags = {12};
  EXPECT_TRUE(bpf_passes(kDltEn10mb, eth, build_frame(kDltEn10mb, tagged)));
  tagged.dest_port = 80;
  EXPECT_FALSE(bpf_passes(kDltEn10mb, eth, build_frame(kDltEn10mb, tagged)));
}

TEST(BpfFilter, ExpressionShapes) {
  const std::vector<std::uint16_t> span = {2003, 2001, 2002, 2000, 2010, 4000, 4001};
  EXPECT_EQ(bpf_filter(filter_from("proto = UDP\n"), span),
            "(udp and (dst portrange 2000-2003 or dst port 2010 or dst portrange 4000-4001))"
            " or (ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 60 or ip6[6] == 51))");
  EXPECT_EQ(bpf_filter(filter_from("proto = IP_PROTO_TCP\n"), {}), "(tcp) or (ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 60 or ip6[6] == 51))");
  EXPECT_EQ(bpf_filter(filter_from("proto = TCP\nflags = SYN\n"), {22}),
            "(((ip and tcp[tcpflags] & 2 != 0) or (ip6 and tcp)) and dst port 22) or (ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 60 or ip6[6] == 51))");
  const std::string any = bpf_filter(EthFilter(), {22});
  EXPECT_TRUE(bpf_compiles(kDltRaw, any)) << any;
  EXPECT_TRUE(bpf_passes(kDltRaw, any, build_frame(kDltRaw, spec("198.18.0.2", "198.18.0.1", 22))));
  const std::string icmp = bpf_filter(filter_from("proto = IP_PROTO_ICMP\n"), {});
  EXPECT_TRUE(bpf_compiles(kDltEn10mb, icmp)) << icmp;
}

TEST(BpfFilter, LargeFragmentedSpanStaysSmallAndASuperset) {
  // 32768 ports in 16384 runs (every other port): merged into at most 64 ranges.
  std::vector<std::uint16_t> span;
  for (int p = 0; p < 65536; p += 2) span.push_back(static_cast<std::uint16_t>(p));
  const EthFilter f = filter_from("proto = TCP\nflags = SYN\n");
  for (int dlt : {kDltEn10mb, kDltLinuxSll2, kDltRaw}) {
    const std::string expr = bpf_filter(f, span, dlt);
    PcapHandle dead(pcap_open_dead(dlt, 65535));
    bpf_program prog{};
    ASSERT_EQ(pcap_compile(dead.get(), &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN), 0)
        << pcap_geterr(dead.get());
    EXPECT_LT(prog.bf_len, 4096u);  // the kernel's BPF_MAXINSNS
    pcap_freecode(&prog);
    for (int p : {0, 2, 1000, 32768, 65534})
      EXPECT_TRUE(bpf_passes(dlt, expr, build_frame(dlt, spec("198.18.0.2", "198.18.0.1", static_cast<std::uint16_t>(p)))));
  }
  // A few scattered ranges stay exact.
  std::vector<std::uint16_t> scattered;
  for (int r = 0; r < 10; ++r)
    for (int p = 0; p < 100; ++p) scattered.push_back(static_cast<std::uint16_t>(10000 + r * 1000 + p));
  const std::string expr = bpf_filter(f, scattered, kDltRaw);
  EXPECT_TRUE(bpf_passes(kDltRaw, expr, build_frame(kDltRaw, spec("198.18.0.2", "198.18.0.1", 15050))));
  EXPECT_FALSE(bpf_passes(kDltRaw, expr, build_frame(kDltRaw, spec("198.18.0.2", "198.18.0.1", 15100))));
}

TEST(BpfFilter, SourcesAdaptTheGenericFilterToTheirLink) {
  EXPECT_EQ(link_filter("", kDltEn10mb), "");
  EXPECT_EQ(link_filter("tcp", kDltEn10mb), "(tcp) or (vlan and (tcp))");
  EXPECT_EQ(link_filter("vlan and tcp", kDltEn10mb), "vlan and tcp");
  EXPECT_EQ(link_filter("tcp", kDltLinuxSll), "(tcp) or ether proto 0x8100 or ether proto 0x88a8");
  EXPECT_EQ(link_filter("tcp", kDltRaw), "tcp");
  EXPECT_EQ(link_filter("tcp", kDltNull), "");
  EXPECT_EQ(link_filter("tcp", kDltLoop), "");

  TempDir dir;
  const EthFilter f = filter_from("proto = IP_PROTO_TCP\nflags = SYN\n");
  const std::string generic = bpf_filter(f, {2000, 2001, 2002});
  for (int dlt : {kDltEn10mb, kDltLinuxSll, kDltLinuxSll2, kDltRaw, kDltNull, kDltLoop}) {
    SCOPED_TRACE(dlt);
    const std::string path = dir.file("adapt" + std::to_string(dlt) + ".pcap");
    {
      PcapWriter w(path, dlt);
      PacketSpec tagged = spec("198.18.0.2", "198.18.0.1", 2000);
      if (dlt != kDltRaw && dlt != kDltNull && dlt != kDltLoop) tagged.vlan_tags = {3};
      w.add(tagged, 1);
      w.add(spec("2001:db8::2", "2001:db8::1", 2001), 2);
      w.add(spec("198.18.0.2", "198.18.0.1", 2002, kTcpAck), 3);  // not SYN: the kernel drops it
      w.add(spec("198.18.0.2", "198.18.0.1", 80), 4);             // outside the span
    }
    OfflinePcapSource src(path, generic);
    const auto obs = read_all(src);
    const bool filtered = dlt != kDltNull && dlt != kDltLoop;
    ASSERT_EQ(obs.size(), filtered ? 2u : 4u);
    EXPECT_EQ(obs[0].dest_port, 2000);
    EXPECT_EQ(obs[1].source.str(), "2001:db8::2");
  }
}

// issue 11: libpcap opens its packet socket without SOCK_CLOEXEC; the commands the daemon
// starts must not inherit it.
TEST(LivePcapSource, CaptureSocketIsCloseOnExec) {
  std::unique_ptr<knock::capture::LivePcapSource> live;
  try {
    live = std::make_unique<knock::capture::LivePcapSource>("lo", "tcp");
  } catch (const std::exception& e) {
    GTEST_SKIP() << "cannot capture on lo here (needs CAP_NET_RAW): " << e.what();
  }
  const int fd = live->selectable_fd();
  ASSERT_GE(fd, 0);
  const int flags = fcntl(fd, F_GETFD);
  ASSERT_GE(flags, 0);
  EXPECT_NE(flags & FD_CLOEXEC, 0) << "the capture socket would be inherited by every command";
}

// The file -pcap replays is opened close-on-exec too (pcap_open_offline's fopen is not).
TEST(OfflinePcapSource, FileIsCloseOnExec) {
  const std::string path = ::testing::TempDir() + "/cloexec.pcap";
  {
    knock::capture::PcapWriter w(path, 1);
  }
  const int before = dup(0);
  ASSERT_GE(before, 0);
  close(before);  // the next descriptor the process opens gets this number
  knock::capture::OfflinePcapSource source(path, "");
  const int flags = fcntl(before, F_GETFD);
  ASSERT_GE(flags, 0) << "the capture file was not opened at the lowest free descriptor";
  EXPECT_NE(flags & FD_CLOEXEC, 0);
  std::remove(path.c_str());
}
