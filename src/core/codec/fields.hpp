#pragma once
// The fields a knock can carry (`knock = IP,PORT,FLAG0,CHECKSUM`) and their decoded values.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace knock::codec {

enum class Field : std::uint8_t {
  Ip,  // 4 bytes, IPv4 (also spelled CLIENT)
  Port,  // 2 bytes, big-endian
  Flag0, Flag1, Flag2, Flag3, Flag4, Flag5, Flag6, Flag7, Flag8, Flag9,  // 1 byte each
  Checksum,  // 1 byte: sum of all bytes before it, mod 256
  Ip6,       // 16 bytes, IPv6, network order (this project's extension; after CHECKSUM in the enum
             // only, so that the others keep their numbers: its place in a knock is where it is listed)
};
inline constexpr std::size_t kFieldCount = 14;
inline constexpr std::size_t kIp6Bytes = 16;

// Upper-case name as written in configs and templates ("IP", "PORT", "FLAG0", "CHECKSUM").
std::string_view field_name(Field field);
// Accepts the names above and CLIENT (as IP), case-sensitive as in the original; nullopt otherwise.
std::optional<Field> field_from_name(std::string_view name);
// Bytes the field takes in a knock: 16, 4, 2 or 1.
std::size_t field_width(Field field);

// The values of one knock, indexed by Field; a field absent from the format is nullopt.
// IP is held in host order (198.18.0.1 == 0xC6120001). IP6 (16 bytes) is held apart, in network
// order: value[Ip6] is always nullopt. A plain value: no allocation.
struct KnockValues {
  using Ip6Bytes = std::array<std::uint8_t, kIp6Bytes>;
  std::array<std::optional<std::uint32_t>, kFieldCount> value{};
  std::optional<Ip6Bytes> ip6;

  // The integer fields (IP, PORT, FLAGn, CHECKSUM); nullopt for IP6.
  std::optional<std::uint32_t> get(Field f) const { return value[static_cast<std::size_t>(f)]; }
  void set(Field f, std::uint32_t v) { value[static_cast<std::size_t>(f)] = v; }
  void set_ip6(const Ip6Bytes& bytes) { ip6 = bytes; }
  // Whether the knock carries the field (IP6 included).
  bool has(Field f) const { return f == Field::Ip6 ? ip6.has_value() : get(f).has_value(); }
  void clear(Field f) {
    if (f == Field::Ip6) ip6.reset();
    else value[static_cast<std::size_t>(f)].reset();
  }
  bool operator==(const KnockValues&) const = default;
};

// The value as logs and -test print it: IP dotted quad, IP6 RFC 5952 text, others decimal;
// "" when absent.
std::string value_text(const KnockValues& values, Field f);

}  // namespace knock::codec
