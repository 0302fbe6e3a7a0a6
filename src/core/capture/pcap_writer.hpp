#pragma once
// Builds frames and writes pcap files: for tests, benchmarks and fixtures. Not on the packet
// path; throws RuntimeError on I/O errors.
#include <cstdint>
#include <string>
#include <vector>

#include "capture/observation.hpp"
#include "capture/packet.hpp"
#include "util/address.hpp"

typedef struct pcap pcap_t;
typedef struct pcap_dumper pcap_dumper_t;

namespace knock::capture {

struct PacketSpec {
  IpAddress source;        // v4 or v6 (both must be the same family)
  IpAddress destination;
  std::uint16_t source_port = 40000;
  std::uint16_t dest_port = 0;
  std::uint8_t protocol = kProtoTcp;   // any value; only TCP/UDP get an L4 header
  std::uint8_t tcp_flags = kTcpSyn;
  std::uint32_t tcp_seq = 0;
  std::vector<std::uint16_t> vlan_tags;          // Ethernet/SLL: 802.1Q TCIs, outermost first
  bool qinq = false;                             // outer tag(s) as 802.1ad (0x88A8)
  std::vector<std::uint8_t> ipv4_options;        // padded to a multiple of 4 (max 40 bytes)
  std::vector<std::uint8_t> ipv6_ext_headers;    // next-header numbers (0, 43, 60, 44), in order
  std::vector<std::uint8_t> payload;
};

// The frame of link type dlt (EN10MB, LINUX_SLL, LINUX_SLL2, RAW, IPV4/IPV6, NULL, LOOP)
// carrying spec, with correct IPv4/TCP/UDP checksums.
std::vector<std::uint8_t> build_frame(int dlt, const PacketSpec& spec);

class PcapWriter {
 public:
  // Throws RuntimeError when the file cannot be created.
  PcapWriter(const std::string& path, int dlt, int snaplen = 65535);
  ~PcapWriter();
  PcapWriter(const PcapWriter&) = delete;
  PcapWriter& operator=(const PcapWriter&) = delete;

  int dlt() const { return dlt_; }
  // caplen < frame size writes a truncated record (as a short snaplen would); 0 = whole frame.
  void add(const PacketSpec& spec, double ts, std::size_t caplen = 0);
  void add_tcp_syn(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
                   std::uint16_t dport, std::uint32_t seq, double ts);
  void add_udp(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
               std::uint16_t dport, const std::vector<std::uint8_t>& payload, double ts);
  // A frame given as bytes (already in this file's link type).
  void add_raw(const std::vector<std::uint8_t>& frame, double ts, std::size_t caplen = 0);
  void flush();
  void close();  // also done by the destructor
  std::uint64_t count() const { return count_; }

 private:
  int dlt_;
  int snaplen_;
  pcap_t* dead_ = nullptr;
  pcap_dumper_t* dumper_ = nullptr;
  std::uint64_t count_ = 0;
};

}  // namespace knock::capture
