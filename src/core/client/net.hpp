#pragma once
// What knockclient does on the network: resolve the remote host, find the local address of the
// route to it, send the knock (one TCP SYN or one UDP datagram per port) or write it as
// iptables LOG lines.
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/address.hpp"

namespace knock::client {

enum class Proto { Tcp, Udp };

// getaddrinfo: an address literal or a host name. family 0: IPv4 preferred, else IPv6 (AAAA);
// 4 or 6 (-4, -6): that family only. Throws RuntimeError (ConfigError for a literal of the
// other family).
IpAddress resolve_host(const std::string& host, int family = 0);

// The local address the kernel would use to reach `remote` (a connected UDP socket; nothing is
// sent). Throws RuntimeError when there is no route.
IpAddress route_source(const IpAddress& remote);

// Sends one SYN (TCP: a non-blocking connect abandoned at once with SO_LINGER {1,0}, so the
// kernel never retransmits it) or one 1-byte datagram (UDP) per port, in order, sleeping `delay`
// between them. Throws RuntimeError.
void send_knock(const IpAddress& remote, std::span<const std::uint16_t> ports, Proto proto,
                std::chrono::milliseconds delay);

// Sends `payload` as one UDP datagram to remote:port (the SPA message). Throws RuntimeError.
void send_datagram(const IpAddress& remote, std::uint16_t port, std::span<const std::uint8_t> payload);

// One line as the kernel's iptables LOG target writes it through syslog, with prefix
// "portknock", for a packet from `src` to `dst` port `dport`. `now_*` are passed in for tests.
std::string iptables_log_line(const IpAddress& src, const IpAddress& dst, std::uint16_t sport, std::uint16_t dport,
                              Proto proto, std::string_view hostname, std::time_t wall_clock, double uptime_seconds);

// Appends one line per port to `path`. Throws RuntimeError.
void write_knock_log(const std::string& path, const IpAddress& src, const IpAddress& dst,
                     std::span<const std::uint16_t> ports, Proto proto);

}  // namespace knock::client
