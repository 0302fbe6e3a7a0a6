#pragma once
// Decoding one captured frame into an Observation: bounds-checked, no allocation, noexcept.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "capture/observation.hpp"

namespace knock::capture {

// Link types (the values pcap_datalink() returns on Linux).
inline constexpr int kDltNull = 0;          // BSD loopback: 4-byte AF in the capturer's byte order
inline constexpr int kDltEn10mb = 1;        // Ethernet, also Linux loopback
inline constexpr int kDltRaw = 12;          // raw IP (DLT_RAW on Linux)
inline constexpr int kLinktypeRaw = 101;    // raw IP as written in savefile headers
inline constexpr int kDltLoop = 108;        // OpenBSD loopback: 4-byte AF, network order
inline constexpr int kDltLinuxSll = 113;    // Linux cooked capture v1
inline constexpr int kDltIpv4 = 228;
inline constexpr int kDltIpv6 = 229;
inline constexpr int kDltLinuxSll2 = 276;   // Linux cooked capture v2 (`any` with libpcap >= 1.10)

bool link_type_supported(int dlt) noexcept;

enum class ParseStatus : std::uint8_t {
  Ok,
  UnsupportedLink,  // link type not handled
  NonIp,            // ARP, LLC, ... anything that is not IPv4/IPv6
  Truncated,        // the capture ends before the headers we need
  BadHeader,        // malformed IP/TCP header (bad version, IHL, data offset, ...)
  Fragment,         // a non-first fragment, or a first one without the full L4 header
  NotTcpUdp,        // IP but neither TCP nor UDP (ICMP, ESP, no next header, ...)
};
inline constexpr std::size_t kParseStatusCount = 7;
std::string_view to_string(ParseStatus status) noexcept;

struct ParseResult {
  ParseStatus status = ParseStatus::Ok;
  Observation observation;  // meaningful only when status == Ok
  bool ok() const noexcept { return status == ParseStatus::Ok; }
};

// Decodes one frame of link type dlt; caplen is the number of captured bytes at data.
ParseResult parse_packet_result(int dlt, const std::uint8_t* data, std::size_t caplen,
                                double timestamp) noexcept;

inline std::optional<Observation> parse_packet(int dlt, const std::uint8_t* data,
                                               std::size_t caplen, double timestamp) noexcept {
  ParseResult r = parse_packet_result(dlt, data, caplen, timestamp);
  if (!r.ok()) return std::nullopt;
  return r.observation;
}

}  // namespace knock::capture
