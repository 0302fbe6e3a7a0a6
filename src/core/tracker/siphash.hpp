#pragma once
// SipHash-2-4 (Aumasson and Bernstein): a keyed hash, so that sources an attacker picks do not
// collide in the tracker's table unless the attacker knows the random key.
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace knock::tracker {

using SipKey = std::array<std::uint64_t, 2>;

namespace detail {
inline void sip_round(std::uint64_t& v0, std::uint64_t& v1, std::uint64_t& v2, std::uint64_t& v3) noexcept {
  v0 += v1; v1 = std::rotl(v1, 13); v1 ^= v0; v0 = std::rotl(v0, 32);
  v2 += v3; v3 = std::rotl(v3, 16); v3 ^= v2;
  v0 += v3; v3 = std::rotl(v3, 21); v3 ^= v0;
  v2 += v1; v1 = std::rotl(v1, 17); v1 ^= v2; v2 = std::rotl(v2, 32);
}

inline std::uint64_t load_le64(const std::uint8_t* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
}  // namespace detail

// SipHash-2-4 of data[0..len) under key (k0, k1) = the 16 key bytes read little-endian.
inline std::uint64_t siphash24(const SipKey& key, const std::uint8_t* data, std::size_t len) noexcept {
  using detail::sip_round;
  std::uint64_t v0 = 0x736f6d6570736575ull ^ key[0];
  std::uint64_t v1 = 0x646f72616e646f6dull ^ key[1];
  std::uint64_t v2 = 0x6c7967656e657261ull ^ key[0];
  std::uint64_t v3 = 0x7465646279746573ull ^ key[1];
  const std::size_t full = len & ~std::size_t{7};
  for (std::size_t i = 0; i < full; i += 8) {
    const std::uint64_t m = detail::load_le64(data + i);
    v3 ^= m;
    sip_round(v0, v1, v2, v3);
    sip_round(v0, v1, v2, v3);
    v0 ^= m;
  }
  std::uint64_t b = static_cast<std::uint64_t>(len & 0xff) << 56;
  for (std::size_t i = 0; i < (len & 7); ++i) b |= static_cast<std::uint64_t>(data[full + i]) << (8 * i);
  v3 ^= b;
  sip_round(v0, v1, v2, v3);
  sip_round(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) sip_round(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

}  // namespace knock::tracker
