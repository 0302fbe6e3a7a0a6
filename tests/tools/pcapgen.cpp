// pcapgen: writes capture files for the end-to-end tests and benchmarks.
//
//   pcapgen OUT [--dlt en10mb|sll|sll2|raw] [--server ADDR] [--proto tcp|udp]
//               [--knock SRC@T0:STEP:P1,P2,...]...  [--flood N@T0:RATE] [--noise N@T0:RATE]
//               [--vlan TCI] [--ipopts yes] [--junk N]
//
// --knock: a client SRC sends the ports P1.. (as knockclient -test prints them) starting at
//          capture time T0 seconds, STEP seconds apart. Repeatable (several knocks, any times).
// --flood: N SYNs into the span ports of the knocks, each from a different spoofed source
//          (198.18.0.0/15 first, then 2001:db8::/32), at RATE packets per second from T0.
// --noise: N SYNs to ports outside 1024-65535 from random sources (traffic a BPF filter drops).
// --datagram SRC@T:PORT:HEX: one UDP datagram carrying HEX (review2).
// --vlan:  knock frames carry this 802.1Q tag (Ethernet and cooked captures).
// --ipopts: knock packets carry IPv4 options (a record-route option).
// --junk:  N malformed frames (truncated headers, ARP, bad IP versions) before each knock port.
// Packets are written in time order. Addresses used: 198.18.0.0/15 and 2001:db8::/32 only.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "capture/pcap_writer.hpp"
#include "util/error.hpp"

using namespace knock;

namespace {

struct Event {
  double time;
  capture::PacketSpec spec;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "pcapgen: %s\n", why.c_str());
  std::exit(2);
}

IpAddress address(const std::string& text) {
  auto a = IpAddress::parse(text);
  if (!a) usage("bad address " + text);
  return *a;
}

std::vector<std::uint16_t> ports_of(const std::string& list) {
  std::vector<std::uint16_t> out;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(static_cast<std::uint16_t>(std::stoul(item)));
  return out;
}

IpAddress spoofed(std::uint64_t i) {
  // 198.18.0.0/15 holds 131072 addresses; skip .0.0-.0.255 (the test hosts live there).
  if (i < 131072 - 256) return IpAddress::v4(0xC6120000u + 256 + static_cast<std::uint32_t>(i));
  std::uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8};
  const std::uint64_t n = i;
  for (int k = 0; k < 8; ++k) b[15 - k] = static_cast<std::uint8_t>(n >> (8 * k));
  return IpAddress::v6_bytes(b);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage("usage: pcapgen OUT [options] (see the source)");
  const std::string out = argv[1];
  int dlt = capture::kDltEn10mb;
  IpAddress server = IpAddress::v4(0xC6120001u);  // 198.18.0.1
  IpAddress server6 = address("2001:db8::1");
  std::uint8_t proto = capture::kProtoTcp;
  std::vector<Event> events;
  std::vector<std::uint16_t> span_ports;
  struct Flood { std::uint64_t count; double t0, rate; bool noise; };
  std::vector<Flood> floods;
  std::mt19937_64 rng(12345);
  std::vector<std::uint16_t> vlan;
  bool ip_options = false;
  int junk = 0;

  for (int i = 2; i < argc; ++i) {
    const std::string opt = argv[i];
    if (i + 1 >= argc) usage(opt + " needs a value");
    const std::string value = argv[++i];
    if (opt == "--dlt") {
      if (value == "en10mb") dlt = capture::kDltEn10mb;
      else if (value == "sll") dlt = capture::kDltLinuxSll;
      else if (value == "sll2") dlt = capture::kDltLinuxSll2;
      else if (value == "raw") dlt = capture::kDltRaw;
      else usage("unknown --dlt " + value);
    } else if (opt == "--vlan") {
      vlan.push_back(static_cast<std::uint16_t>(std::stoul(value)));
    } else if (opt == "--ipopts") {
      ip_options = value == "yes";
    } else if (opt == "--junk") {
      junk = std::stoi(value);
    } else if (opt == "--server") {
      server = address(value);
    } else if (opt == "--proto") {
      proto = value == "udp" ? capture::kProtoUdp : capture::kProtoTcp;
    } else if (opt == "--knock") {
      const auto at = value.find('@');
      const auto c1 = value.find(':', at);
      const auto c2 = value.find(':', c1 + 1);
      if (at == std::string::npos || c1 == std::string::npos || c2 == std::string::npos) usage("bad --knock " + value);
      const IpAddress src = address(value.substr(0, at));
      const double t0 = std::stod(value.substr(at + 1, c1 - at - 1));
      const double step = std::stod(value.substr(c1 + 1, c2 - c1 - 1));
      const auto ports = ports_of(value.substr(c2 + 1));
      const auto sport = static_cast<std::uint16_t>(30000 + rng() % 30000);
      for (std::size_t k = 0; k < ports.size(); ++k) {
        capture::PacketSpec spec;
        spec.source = src;
        spec.destination = src.is_v4() ? server : server6;
        spec.source_port = static_cast<std::uint16_t>(sport + k);
        spec.dest_port = ports[k];
        spec.protocol = proto;
        spec.tcp_seq = static_cast<std::uint32_t>(rng());
        if (proto == capture::kProtoUdp) spec.payload = {0};
        spec.vlan_tags = vlan;
        if (ip_options && src.is_v4()) spec.ipv4_options = {7, 7, 4, 0, 0, 0, 0, 1};  // record route
        events.push_back({t0 + step * static_cast<double>(k), spec});
        span_ports.push_back(ports[k]);
      }
    } else if (opt == "--datagram") {
      // SRC@T:PORT:HEX: one UDP datagram with this payload (an SPA or fwknop message).
      const auto at = value.find('@');
      const auto c1 = value.find(':', at);
      const auto c2 = value.find(':', c1 + 1);
      if (at == std::string::npos || c1 == std::string::npos || c2 == std::string::npos) usage("bad --datagram " + value);
      const IpAddress src = address(value.substr(0, at));
      capture::PacketSpec spec;
      spec.source = src;
      spec.destination = src.is_v4() ? server : server6;
      spec.source_port = static_cast<std::uint16_t>(30000 + rng() % 30000);
      spec.dest_port = static_cast<std::uint16_t>(std::stoul(value.substr(c1 + 1, c2 - c1 - 1)));
      spec.protocol = capture::kProtoUdp;
      const std::string hex = value.substr(c2 + 1);
      for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        spec.payload.push_back(static_cast<std::uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
      events.push_back({std::stod(value.substr(at + 1, c1 - at - 1)), spec});
    } else if (opt == "--flood" || opt == "--noise") {
      const auto at = value.find('@');
      const auto c1 = value.find(':', at);
      if (at == std::string::npos || c1 == std::string::npos) usage("bad " + opt + " " + value);
      floods.push_back({std::stoull(value.substr(0, at)), std::stod(value.substr(at + 1, c1 - at - 1)),
                        std::stod(value.substr(c1 + 1)), opt == "--noise"});
    } else {
      usage("unknown option " + opt);
    }
  }
  std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) { return a.time < b.time; });
  if (span_ports.empty()) span_ports = {2000};

  try {
    capture::PcapWriter writer(out, dlt);
    // Malformed frames before each knock port: a frame cut inside the IP header, an ARP frame,
    // an IP version 5 header, and a frame of one byte. The daemon must skip them all.
    auto write_junk = [&](const Event& e) {
      for (int j = 0; j < junk; ++j) {
        auto frame = capture::build_frame(dlt, e.spec);
        writer.add_raw(frame, e.time - 1e-6, frame.size() / 2);
        auto bad_version = frame;
        const std::size_t ip_at = frame.size() - 20 - (e.spec.protocol == capture::kProtoUdp ? 8 + e.spec.payload.size() : 20) -
                                  e.spec.ipv4_options.size();
        if (ip_at < bad_version.size()) bad_version[ip_at] = 0x55;
        writer.add_raw(bad_version, e.time - 1e-6);
        writer.add_raw({0x00}, e.time - 1e-6);
      }
    };
    std::size_t next_event = 0;
    // Merge the floods (generated on the fly: a million packets need not sit in memory).
    for (const Flood& f : floods) {
      for (std::uint64_t n = 0; n < f.count; ++n) {
        const double t = f.t0 + static_cast<double>(n) / f.rate;
        while (next_event < events.size() && events[next_event].time <= t) {
          write_junk(events[next_event]);
          writer.add(events[next_event].spec, events[next_event].time);
          ++next_event;
        }
        const IpAddress src = f.noise ? IpAddress::v4(0xC6120000u + 256 + static_cast<std::uint32_t>(rng() % 130000))
                                      : spoofed(n);
        const std::uint16_t port = f.noise ? static_cast<std::uint16_t>(1 + rng() % 1000)
                                           : span_ports[rng() % span_ports.size()];
        writer.add_tcp_syn(src, src.is_v4() ? server : server6, static_cast<std::uint16_t>(1024 + rng() % 60000),
                           port, static_cast<std::uint32_t>(rng()), t);
      }
    }
    for (; next_event < events.size(); ++next_event) {
      write_junk(events[next_event]);
      writer.add(events[next_event].spec, events[next_event].time);
    }
    writer.close();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pcapgen: %s\n", e.what());
    return 1;
  }
  return 0;
}
