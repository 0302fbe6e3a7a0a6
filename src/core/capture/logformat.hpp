#pragma once
// The <logformat NAME> block of file mode: regexes that pull a connection attempt out of one
// firewall log line.
#include <memory>
#include <optional>
#include <string_view>

#include "capture/observation.hpp"
#include "config/tree.hpp"

namespace knock::capture {

class LogFormat {
 public:
  // Keys: required, interface, protocol, ipserver, ipclient, port (the manual's), plus
  // sourceport and sequence (this project's; optional). Each is a PCRE2 regex (JIT, compiled
  // once) whose first capture group gives the field. Throws ConfigError(where, ...) on an
  // unknown key, a bad regex, or a block without ipclient or port.
  explicit LogFormat(const config::Value& block);
  ~LogFormat();
  LogFormat(LogFormat&&) noexcept;
  LogFormat& operator=(LogFormat&&) noexcept;

  // nullopt when `required` does not match, ipclient or port is missing or bad, protocol is
  // given but not TCP/UDP (text or number), or ipserver/sourceport/sequence match but are bad.
  // Without a protocol regex the protocol is TCP; without ipserver the destination is the
  // unspecified address of the client's family. time = now. Not thread-safe (the match
  // buffer is allocated once per LogFormat and reused).
  std::optional<Observation> parse_line(std::string_view line, double now) const noexcept;
  // The interface captured from the last line parse_line accepted ("" when none); a view into
  // that line, valid while the line is.
  std::string_view last_interface() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Small noexcept text helpers shared with file mode (exposed for tests).
std::optional<std::uint16_t> parse_port_text(std::string_view text) noexcept;
std::optional<std::uint8_t> parse_protocol_text(std::string_view text) noexcept;
std::optional<IpAddress> parse_address_text(std::string_view text) noexcept;

}  // namespace knock::capture
