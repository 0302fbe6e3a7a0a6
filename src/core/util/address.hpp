#pragma once
// An IP address, v4 or v6, as a small value type: the key of every per-source table.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace knock {

class IpAddress {
 public:
  enum class Family : std::uint8_t { V4, V6 };

  IpAddress() = default;  // 0.0.0.0
  static IpAddress v4(std::uint32_t host_order);
  static IpAddress v4_bytes(const std::uint8_t* network_order);  // 4 bytes
  static IpAddress v6_bytes(const std::uint8_t* network_order);  // 16 bytes
  // Parses dotted-quad IPv4 or RFC 4291 IPv6 text; nullopt on anything else.
  static std::optional<IpAddress> parse(std::string_view text);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::V4; }
  std::uint32_t v4_host_order() const;  // only for V4
  // Network-order bytes: 4 for V4, 16 for V6.
  const std::uint8_t* bytes() const { return bytes_.data(); }
  std::size_t size() const { return is_v4() ? 4 : 16; }

  std::string str() const;  // dotted quad or RFC 5952 text

  bool operator==(const IpAddress& other) const = default;
  std::size_t hash() const;

 private:
  Family family_ = Family::V4;
  std::array<std::uint8_t, 16> bytes_{};  // V4 uses the first 4
};

}  // namespace knock

template <>
struct std::hash<knock::IpAddress> {
  std::size_t operator()(const knock::IpAddress& a) const noexcept { return a.hash(); }
};
