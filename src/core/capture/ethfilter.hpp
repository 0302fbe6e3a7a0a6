#pragma once
// The <ethfilter NAME> block: which packets count as knocks in network mode. What the kernel
// can test goes into a BPF pre-filter (bpf_filter); matches() tests the whole filter in the
// process.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "capture/observation.hpp"
#include "capture/regex.hpp"
#include "config/tree.hpp"

namespace knock::capture {

class EthFilter {
 public:
  // Everything passes.
  EthFilter();
  // From the block's Object. Keys: proto, flags, src_ip, dest_ip, src_port, dest_port.
  // Throws ConfigError(where, ...) on an unknown key, a bad value or a bad regex.
  explicit EthFilter(const config::Value& block);
  ~EthFilter();
  EthFilter(EthFilter&&) noexcept;
  EthFilter& operator=(EthFilter&&) noexcept;

  std::optional<std::uint8_t> protocol() const { return protocol_; }  // nullopt = any
  std::uint8_t flags_mask() const { return flags_; }                  // 0 = no flag test
  bool has_regexes() const;

  // proto equal (if given); for TCP packets flags & mask != 0 (if a mask is given; UDP has no
  // flags and is not tested); each non-empty regex found in the field's text.
  // Not thread-safe (one match buffer per filter).
  bool matches(const Observation& o) const noexcept;

 private:
  struct Impl;
  std::optional<std::uint8_t> protocol_;
  std::uint8_t flags_ = 0;
  std::unique_ptr<Impl> impl_;
};

// Parses "SYN|ACK" (names FIN SYN RST PSH ACK URG ECE CWR, case-insensitive, or numbers).
std::optional<std::uint8_t> parse_tcp_flags(const std::string& text);
// Parses IP_PROTO_TCP / IP_PROTO_UDP / IP_PROTO_ICMP / tcp / udp / a number 0..255.
std::optional<std::uint8_t> parse_ip_proto(const std::string& text);

// A libpcap filter expression passing the filter's protocol, its TCP flags (IPv4 only: tcp[]
// offsets do not follow IPv6 headers) and destination ports in the span, compressed into
// portranges. More than max_ranges runs are merged over the smallest gaps (a superset: the
// tracker ignores ports outside the span). Empty string = no filter. With dlt >= 0 the result
// is link_filter(expr, dlt) (see pcap_source.hpp; the sources apply it themselves, so give them
// the dlt = -1 form). IPv6 packets with extension headers before TCP/UDP do not pass a port or
// protocol test in BPF (libpcap does not chase the header chain).
std::string bpf_filter(const EthFilter& filter, const std::vector<std::uint16_t>& span_ports,
                       int dlt = -1, std::size_t max_ranges = 64);

}  // namespace knock::capture
