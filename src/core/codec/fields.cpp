#include "codec/fields.hpp"

#include "util/address.hpp"

namespace knock::codec {
namespace {
constexpr std::array<std::string_view, kFieldCount> kNames = {
    "IP", "PORT", "FLAG0", "FLAG1", "FLAG2", "FLAG3", "FLAG4",
    "FLAG5", "FLAG6", "FLAG7", "FLAG8", "FLAG9", "CHECKSUM", "IP6"};
}

std::string_view field_name(Field field) { return kNames[static_cast<std::size_t>(field)]; }

std::optional<Field> field_from_name(std::string_view name) {
  if (name == "CLIENT") return Field::Ip;
  for (std::size_t i = 0; i < kFieldCount; ++i)
    if (kNames[i] == name) return static_cast<Field>(i);
  return std::nullopt;
}

std::size_t field_width(Field field) {
  switch (field) {
    case Field::Ip6: return kIp6Bytes;
    case Field::Ip: return 4;
    case Field::Port: return 2;
    default: return 1;
  }
}

std::string value_text(const KnockValues& values, Field f) {
  if (f == Field::Ip6) return values.ip6 ? IpAddress::v6_bytes(values.ip6->data()).str() : std::string();
  const auto v = values.get(f);
  if (!v) return {};
  return f == Field::Ip ? IpAddress::v4(*v).str() : std::to_string(*v);
}

}  // namespace knock::codec
