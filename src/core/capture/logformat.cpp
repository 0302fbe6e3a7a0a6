#include "capture/logformat.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "capture/regex.hpp"

namespace knock::capture {

namespace {

enum Key { kRequired, kInterface, kProtocol, kIpServer, kIpClient, kPort, kSourcePort, kSequence,
           kKeyCount };
constexpr std::array<std::string_view, kKeyCount> kKeys = {
    "required", "interface", "protocol", "ipserver", "ipclient", "port", "sourceport", "sequence"};

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 32);
    if (x != y) return false;
  }
  return true;
}

std::optional<std::uint64_t> parse_decimal(std::string_view t, std::uint64_t max) noexcept {
  if (t.empty() || t.size() > 20) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
    if (v > max) return std::nullopt;
  }
  return v;
}

}  // namespace

std::optional<std::uint16_t> parse_port_text(std::string_view text) noexcept {
  const auto v = parse_decimal(text, 65535);
  if (!v) return std::nullopt;
  return static_cast<std::uint16_t>(*v);
}

std::optional<std::uint8_t> parse_protocol_text(std::string_view text) noexcept {
  if (iequals(text, "TCP")) return kProtoTcp;
  if (iequals(text, "UDP")) return kProtoUdp;
  const auto v = parse_decimal(text, 255);
  if (v && (*v == kProtoTcp || *v == kProtoUdp)) return static_cast<std::uint8_t>(*v);
  return std::nullopt;
}

std::optional<IpAddress> parse_address_text(std::string_view text) noexcept {
  char buffer[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buffer) return std::nullopt;
  if (std::memchr(text.data(), '\0', text.size()) != nullptr) return std::nullopt;
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  std::uint8_t bytes[16];
  if (inet_pton(AF_INET, buffer, bytes) == 1) return IpAddress::v4_bytes(bytes);
  if (inet_pton(AF_INET6, buffer, bytes) == 1) return IpAddress::v6_bytes(bytes);
  return std::nullopt;
}

struct LogFormat::Impl {
  std::array<std::optional<Regex>, kKeyCount> regex;
  std::unique_ptr<MatchData> md;
  mutable std::string_view interface;
};

LogFormat::LogFormat(const config::Value& block) : impl_(std::make_unique<Impl>()) {
  if (!block.is_object()) throw ConfigError(block.where(), "logformat must be a block");
  std::uint32_t pairs = 1;
  for (const auto& [key, value] : block.members()) {
    const auto it = std::find(kKeys.begin(), kKeys.end(), key);
    if (it == kKeys.end()) throw ConfigError(value.where(), "unknown logformat key '" + key + "'");
    const std::optional<std::string> text = block.scalar(key);
    if (!text || text->empty()) continue;
    auto& slot = impl_->regex[static_cast<std::size_t>(it - kKeys.begin())];
    slot.emplace(*text, value.where());
    pairs = std::max(pairs, slot->capture_count() + 1);
  }
  if (!impl_->regex[kIpClient])
    throw ConfigError(block.where(), "logformat needs an 'ipclient' regex");
  if (!impl_->regex[kPort]) throw ConfigError(block.where(), "logformat needs a 'port' regex");
  impl_->md = std::make_unique<MatchData>(pairs);
}

LogFormat::~LogFormat() = default;
LogFormat::LogFormat(LogFormat&&) noexcept = default;
LogFormat& LogFormat::operator=(LogFormat&&) noexcept = default;

std::string_view LogFormat::last_interface() const noexcept {
  return impl_ ? impl_->interface : std::string_view{};
}

std::optional<Observation> LogFormat::parse_line(std::string_view line, double now) const noexcept {
  if (!impl_ || !impl_->md) return std::nullopt;
  auto* md = impl_->md->get();
  const auto& re = impl_->regex;
  if (re[kRequired] && !re[kRequired]->search(line, md)) return std::nullopt;

  Observation o;
  o.time = now;
  const auto client = re[kIpClient]->first_group(line, md);
  if (!client) return std::nullopt;
  const auto source = parse_address_text(*client);
  if (!source) return std::nullopt;
  o.source = *source;

  const auto port_text = re[kPort]->first_group(line, md);
  if (!port_text) return std::nullopt;
  const auto port = parse_port_text(*port_text);
  if (!port) return std::nullopt;
  o.dest_port = *port;

  if (re[kProtocol]) {
    const auto t = re[kProtocol]->first_group(line, md);
    if (!t) return std::nullopt;
    const auto p = parse_protocol_text(*t);
    if (!p) return std::nullopt;
    o.protocol = *p;
  }
  o.tcp_flags = 0;  // a log line does not say (iptables prints flag names; not parsed)

  o.destination = source->is_v4() ? IpAddress() : IpAddress::v6_bytes(std::array<std::uint8_t, 16>{}.data());
  if (re[kIpServer]) {
    if (const auto t = re[kIpServer]->first_group(line, md)) {
      const auto a = parse_address_text(*t);
      if (!a) return std::nullopt;
      o.destination = *a;
    }
  }
  if (re[kSourcePort]) {
    if (const auto t = re[kSourcePort]->first_group(line, md)) {
      const auto p = parse_port_text(*t);
      if (!p) return std::nullopt;
      o.source_port = *p;
    }
  }
  if (re[kSequence] && o.protocol == kProtoTcp) {
    if (const auto t = re[kSequence]->first_group(line, md)) {
      const auto s = parse_decimal(*t, 0xFFFFFFFFull);
      if (!s) return std::nullopt;
      o.tcp_seq = static_cast<std::uint32_t>(*s);
      o.has_tcp_seq = true;
    }
  }
  std::string_view iface;
  if (re[kInterface]) {
    if (const auto t = re[kInterface]->first_group(line, md)) iface = *t;
  }
  impl_->interface = iface;
  return o;
}

}  // namespace knock::capture
