#include "codec/portspan.hpp"

#include <charconv>

#include "util/text.hpp"

namespace knock::codec {
namespace {
std::uint16_t parse_port(std::string_view text, std::string_view item, const Location& where) {
  text = trim_blanks(text);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value > 65535)
    throw ConfigError(where, "bad port '" + std::string(text) + "' in portspan item '" + std::string(item) +
                                 "' (ports are 0..65535)");
  return static_cast<std::uint16_t>(value);
}
}  // namespace

PortSpan PortSpan::parse(std::string_view text, const Location& where) {
  PortSpan span;
  span.index_.assign(65536, -1);
  std::vector<bool> seen(65536, false);
  if (trim_blanks(text).empty()) throw ConfigError(where, "portspan is empty (expected e.g. portspan = 1024-1279)");
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::size_t end = comma == std::string_view::npos ? text.size() : comma;
    const std::string_view item = trim_blanks(text.substr(start, end - start));
    if (item.empty()) throw ConfigError(where, "portspan has an empty item");
    std::uint16_t lo = 0, hi = 0;
    if (const auto dash = item.find('-'); dash != std::string_view::npos) {
      lo = parse_port(item.substr(0, dash), item, where);
      hi = parse_port(item.substr(dash + 1), item, where);
      if (lo > hi) throw ConfigError(where, "portspan range '" + std::string(item) + "' runs backwards");
    } else {
      lo = hi = parse_port(item, item, where);
    }
    for (unsigned p = lo; p <= hi; ++p) {
      if (seen[p]) throw ConfigError(where, "port " + std::to_string(p) + " is listed twice in portspan");
      seen[p] = true;
      span.ports_.push_back(static_cast<std::uint16_t>(p));
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  const std::size_t n = span.ports_.size();
  int bits = 0;
  while ((std::size_t{1} << bits) < n) ++bits;
  if ((std::size_t{1} << bits) != n || bits < 1 || bits > kMaxBits) {
    std::string nearest;
    if (n < 2) {
      nearest = "2";
    } else if (n > (std::size_t{1} << kMaxBits)) {
      nearest = std::to_string(std::size_t{1} << kMaxBits);
    } else {
      nearest = std::to_string(std::size_t{1} << (bits - 1)) + " or " + std::to_string(std::size_t{1} << bits);
    }
    throw ConfigError(where, "portspan has " + std::to_string(n) +
                                 " ports; the count must be a power of two from 2 to 32768 (nearest: " + nearest + ")");
  }
  span.bits_ = bits;
  for (std::size_t i = 0; i < n; ++i) span.index_[span.ports_[i]] = static_cast<std::int16_t>(i);
  return span;
}

std::string PortSpan::str() const {
  std::string out;
  std::size_t i = 0;
  while (i < ports_.size()) {
    std::size_t j = i;
    while (j + 1 < ports_.size() && ports_[j + 1] == ports_[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(ports_[i]);
    if (j > i) out += "-" + std::to_string(ports_[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace knock::codec
