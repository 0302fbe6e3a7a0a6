#include "util/address.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace knock {

IpAddress IpAddress::v4(std::uint32_t host_order) {
  IpAddress a;
  a.bytes_[0] = static_cast<std::uint8_t>(host_order >> 24);
  a.bytes_[1] = static_cast<std::uint8_t>(host_order >> 16);
  a.bytes_[2] = static_cast<std::uint8_t>(host_order >> 8);
  a.bytes_[3] = static_cast<std::uint8_t>(host_order);
  return a;
}

IpAddress IpAddress::v4_bytes(const std::uint8_t* network_order) {
  IpAddress a;
  std::memcpy(a.bytes_.data(), network_order, 4);
  return a;
}

IpAddress IpAddress::v6_bytes(const std::uint8_t* network_order) {
  IpAddress a;
  a.family_ = Family::V6;
  std::memcpy(a.bytes_.data(), network_order, 16);
  return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  const std::string s(text);
  std::uint8_t buffer[16];
  if (inet_pton(AF_INET, s.c_str(), buffer) == 1) return v4_bytes(buffer);
  if (inet_pton(AF_INET6, s.c_str(), buffer) == 1) return v6_bytes(buffer);
  return std::nullopt;
}

std::uint32_t IpAddress::v4_host_order() const {
  return (std::uint32_t{bytes_[0]} << 24) | (std::uint32_t{bytes_[1]} << 16) |
         (std::uint32_t{bytes_[2]} << 8) | std::uint32_t{bytes_[3]};
}

std::string IpAddress::str() const {
  char buffer[INET6_ADDRSTRLEN];
  const int af = is_v4() ? AF_INET : AF_INET6;
  if (inet_ntop(af, bytes_.data(), buffer, sizeof buffer) == nullptr) return "?";
  return buffer;
}

std::size_t IpAddress::hash() const {
  // FNV-1a over the family and the bytes; the tracker adds a secret seed of its own.
  std::uint64_t h = 1469598103934665603ull ^ static_cast<std::uint8_t>(family_);
  for (std::size_t i = 0; i < size(); ++i) {
    h ^= bytes_[i];
    h *= 1099511628211ull;
  }
  return static_cast<std::size_t>(h);
}

}  // namespace knock
