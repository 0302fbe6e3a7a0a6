#pragma once
// One connection attempt seen on the wire (network mode) or in the firewall log (file mode):
// what the tracker consumes. A plain value: no allocation, cheap to copy.
#include <cstdint>

#include "util/address.hpp"

namespace knock::capture {

inline constexpr std::uint8_t kProtoTcp = 6;
inline constexpr std::uint8_t kProtoUdp = 17;

// TCP flag bits as in the TCP header.
inline constexpr std::uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpPsh = 0x08,
                              kTcpAck = 0x10, kTcpUrg = 0x20;

struct Observation {
  IpAddress source;        // the remote address (LOGIP)
  IpAddress destination;   // the server address it was sent to
  std::uint16_t source_port = 0;
  std::uint16_t dest_port = 0;     // the knocked port
  std::uint8_t protocol = kProtoTcp;
  std::uint8_t tcp_flags = 0;
  std::uint32_t tcp_seq = 0;
  bool has_tcp_seq = false;        // false for UDP and for log lines (no sequence number)
  double time = 0;                 // seconds since the epoch: packet timestamp or time read
  // A UDP datagram's payload (a single-packet knock): valid only during the callback that
  // delivers the observation; null for TCP and log lines.
  const std::uint8_t* payload = nullptr;
  std::uint16_t payload_size = 0;
};

}  // namespace knock::capture
