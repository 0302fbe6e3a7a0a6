#include "codec/format.hpp"

#include <string>

#include "util/secure.hpp"
#include "util/text.hpp"

namespace knock::codec {
namespace {

std::uint32_t max_value(Field f) {
  switch (f) {
    case Field::Ip: return 0xFFFFFFFFu;
    case Field::Port: return 0xFFFFu;
    default: return 0xFFu;
  }
}
}  // namespace

KnockFormat KnockFormat::parse(std::string_view text, const Location& where) {
  KnockFormat out;
  if (trim_blanks(text).empty()) throw ConfigError(where, "knock format is empty (expected e.g. knock = IP,PORT,FLAG0,CHECKSUM)");
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::size_t end = comma == std::string_view::npos ? text.size() : comma;
    const std::string_view name = trim_blanks(text.substr(start, end - start));
    if (name.empty()) throw ConfigError(where, "knock format has an empty field name");
    const auto field = field_from_name(name);
    if (!field)
      throw ConfigError(where, "unknown knock field '" + std::string(name) +
                                   "' (known: IP, CLIENT, IP6, PORT, FLAG0 to FLAG9, CHECKSUM)");
    if (out.has(*field)) throw ConfigError(where, "knock field " + std::string(field_name(*field)) + " is listed twice");
    out.fields_.push_back(*field);
    out.bytes_ += field_width(*field);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

bool KnockFormat::has(Field f) const {
  for (Field g : fields_)
    if (g == f) return true;
  return false;
}

std::string KnockFormat::str() const {
  std::string out;
  for (Field f : fields_) {
    if (!out.empty()) out += ',';
    out += field_name(f);
  }
  return out;
}

std::vector<std::uint8_t> KnockFormat::pack(const KnockValues& values) const {
  std::vector<std::uint8_t> out;
  out.reserve(bytes_);
  unsigned sum = 0;
  for (Field f : fields_) {
    if (f == Field::Ip6) {
      if (!values.ip6) throw ConfigError("knock field IP6 has no value");
      for (std::uint8_t b : *values.ip6) {
        out.push_back(b);
        sum += b;
      }
      continue;
    }
    std::uint32_t v = 0;
    if (f == Field::Checksum) {
      v = sum & 0xFFu;
    } else {
      const auto given = values.get(f);
      if (!given) throw ConfigError("knock field " + std::string(field_name(f)) + " has no value");
      if (*given > max_value(f))
        throw ConfigError("value " + std::to_string(*given) + " of knock field " + std::string(field_name(f)) +
                          " is out of range (0.." + std::to_string(max_value(f)) + ")");
      v = *given;
    }
    for (std::size_t i = field_width(f); i-- > 0;) {
      const auto b = static_cast<std::uint8_t>((v >> (8 * i)) & 0xFFu);
      out.push_back(b);
      sum += b;
    }
  }
  return out;
}

bool KnockFormat::unpack(std::span<const std::uint8_t> bytes, KnockValues& values, bool* checksum_failed) const noexcept {
  if (checksum_failed != nullptr) *checksum_failed = false;
  if (bytes.size() != bytes_) return false;
  KnockValues out;
  unsigned sum = 0;
  std::size_t pos = 0;
  for (Field f : fields_) {
    if (f == Field::Ip6) {
      KnockValues::Ip6Bytes a{};
      for (std::size_t i = 0; i < kIp6Bytes; ++i) {
        a[i] = bytes[pos + i];
        sum += bytes[pos + i];
      }
      pos += kIp6Bytes;
      out.set_ip6(a);
      continue;
    }
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < field_width(f); ++i) v = (v << 8) | bytes[pos + i];
    // Decrypted bytes are secret-derived: compare without a data-dependent branch on them.
    const std::uint8_t expected = static_cast<std::uint8_t>(sum & 0xFFu);
    if (f == Field::Checksum && !constant_time_equal(&bytes[pos], 1, &expected, 1)) {
      if (checksum_failed != nullptr) *checksum_failed = true;
      return false;
    }
    for (std::size_t i = 0; i < field_width(f); ++i) sum += bytes[pos + i];
    pos += field_width(f);
    out.set(f, v);
  }
  values = out;
  return true;
}

}  // namespace knock::codec
