#pragma once
// The fields a knock can carry (`knock = IP,PORT,FLAG0,CHECKSUM`) and their decoded values.
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace knock::codec {

enum class Field : std::uint8_t {
  Ip,  // 4 bytes, IPv4 (also spelled CLIENT)
  Port,  // 2 bytes, big-endian
  Flag0, Flag1, Flag2, Flag3, Flag4, Flag5, Flag6, Flag7, Flag8, Flag9,  // 1 byte each
  Checksum,  // 1 byte: sum of all bytes before it, mod 256
};
inline constexpr std::size_t kFieldCount = 13;

// Upper-case name as written in configs and templates ("IP", "PORT", "FLAG0", "CHECKSUM").
std::string_view field_name(Field field);
// Accepts the names above and CLIENT (as IP), case-sensitive as in the original; nullopt otherwise.
std::optional<Field> field_from_name(std::string_view name);
// Bytes the field takes in a knock: 4, 2 or 1.
std::size_t field_width(Field field);

// The values of one knock, indexed by Field; a field absent from the format is nullopt.
// IP is held in host order (198.18.0.1 == 0xC6120001).
struct KnockValues {
  std::array<std::optional<std::uint32_t>, kFieldCount> value{};

  std::optional<std::uint32_t> get(Field f) const { return value[static_cast<std::size_t>(f)]; }
  void set(Field f, std::uint32_t v) { value[static_cast<std::size_t>(f)] = v; }
  bool operator==(const KnockValues&) const = default;
};

}  // namespace knock::codec
