// The existing sources behind capture::Source: a capture file through PcapSource (budget,
// closed(), stats converted), a followed log through LogSource (parser, skipped lines,
// next_timeout never -1); format_stats.
#include "capture/source.hpp"
#include "capture/pcap_writer.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

using namespace knock;
using namespace knock::capture;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/portknock-source-test.XXXXXX";
    path = mkdtemp(tmpl);
    chmod(path.c_str(), 0700);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST(SourceStats, Format) {
  SourceStats s;
  s.received = 10;
  s.delivered = 7;
  s.dropped = 2;
  s.malformed = 1;
  s.unparsed[static_cast<std::size_t>(ParseStatus::Truncated)] = 1;
  s.unparsed[static_cast<std::size_t>(ParseStatus::NotTcpUdp)] = 1;
  EXPECT_EQ(s.unparsed_total(), 2u);
  EXPECT_EQ(format_stats(s),
            "received 10, delivered 7, dropped 2, malformed 1, unparsed 2 (truncated 1, not-tcp-udp 1)");
  EXPECT_EQ(format_stats(SourceStats{}), "received 0, delivered 0, dropped 0, malformed 0, unparsed 0");
}

TEST(PcapAdapter, OfflineFileThroughTheInterface) {
  TempDir dir;
  const std::string file = dir.path + "/knocks.pcap";
  {
    PcapWriter w(file, kDltEn10mb);
    const IpAddress c = *IpAddress::parse("198.18.1.2"), srv = *IpAddress::parse("198.18.1.1");
    for (int i = 0; i < 7; ++i) w.add_tcp_syn(c, srv, 40000, static_cast<std::uint16_t>(2000 + i), 1, 100.0 + i);
    w.add_udp(c, srv, 40000, 62202, {1, 2, 3}, 108.0);
    w.add_raw(std::vector<std::uint8_t>(14, 0), 109.0);  // an Ethernet header alone
  }
  PcapSource src(std::make_unique<OfflinePcapSource>(file, ""));
  EXPECT_EQ(src.fd(), -1);
  EXPECT_EQ(src.next_timeout(0), 0);
  EXPECT_EQ(src.key(), "pcap file " + file);
  int total = 0, calls = 0;
  std::size_t udp_payload = 0;
  while (!src.closed() && calls < 100) {
    ++calls;
    total += src.dispatch([&](const Observation& o) { if (o.protocol == kProtoUdp) udp_payload = o.payload_size; }, 3);
  }
  EXPECT_TRUE(src.closed());
  EXPECT_GE(calls, 3);  // the budget bounds each call
  EXPECT_EQ(total, 9);
  EXPECT_EQ(udp_payload, 3u);
  const SourceStats st = src.stats();
  EXPECT_EQ(st.received, 9u);
  EXPECT_EQ(st.delivered, 8u);
  EXPECT_EQ(st.unparsed_total(), 1u);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_NE(src.describe().find("received 9, delivered 8"), std::string::npos) << src.describe();
  PcapSource keyed(std::make_unique<OfflinePcapSource>(file, ""), "network any 1500 tcp");
  EXPECT_EQ(keyed.key(), "network any 1500 tcp");
}

TEST(LogSourceAdapter, LinesThroughTheParser) {
  TempDir dir;
  const std::string log = dir.path + "/fw.log";
  { std::ofstream(log) << "old line before the start\n"; }
  chmod(log.c_str(), 0600);
  LogFollower::Options options;
  options.interval = 0.05;
  auto parser = [](std::string_view line, double now) -> std::optional<Observation> {
    if (line.rfind("KNOCK ", 0) != 0) return std::nullopt;
    Observation o;
    o.source = *IpAddress::parse("198.18.1.2");
    o.dest_port = static_cast<std::uint16_t>(std::stoi(std::string(line.substr(6))));
    o.time = now;
    return o;
  };
  LogSource src(std::make_unique<LogFollower>(log, options), parser);
  EXPECT_EQ(src.key(), "file " + log);
  EXPECT_GE(src.next_timeout(0), 0);  // checked on the interval even with inotify
  { std::ofstream(log, std::ios::app) << "KNOCK 2001\nsomething else\nKNOCK 2002\n"; }
  std::vector<std::uint16_t> ports;
  for (int i = 0; i < 100 && ports.size() < 2; ++i) {
    usleep(10000);
    src.dispatch([&](const Observation& o) { ports.push_back(o.dest_port); }, 0);
  }
  ASSERT_EQ(ports, (std::vector<std::uint16_t>{2001, 2002}));
  EXPECT_EQ(src.stats().received, 3u);
  EXPECT_EQ(src.stats().delivered, 2u);
  EXPECT_EQ(src.skipped(), 1u);
  src.set_parser([](std::string_view, double) -> std::optional<Observation> { return std::nullopt; });
  { std::ofstream(log, std::ios::app) << "KNOCK 2003\n"; }
  for (int i = 0; i < 100 && src.stats().received < 4; ++i) {
    usleep(10000);
    src.dispatch([&](const Observation& o) { ports.push_back(o.dest_port); }, 0);
  }
  EXPECT_EQ(ports.size(), 2u);
  EXPECT_EQ(src.skipped(), 2u);
  EXPECT_NE(src.describe().find("skipped 2"), std::string::npos) << src.describe();
}
