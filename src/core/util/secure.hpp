#pragma once
// Secrets: keys and passphrases live in memory that is wiped when freed and are compared in
// constant time.
#include <cryptopp/secblock.h>

#include <cstdint>
#include <string_view>

namespace knock {

using SecureBytes = CryptoPP::SecByteBlock;

inline SecureBytes secure_copy(std::string_view text) {
  return SecureBytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

// True when a and b hold the same bytes; the time taken depends only on the lengths.
bool constant_time_equal(const std::uint8_t* a, std::size_t a_len, const std::uint8_t* b, std::size_t b_len);

// Overwrites a buffer in a way the compiler may not remove.
void secure_wipe(void* data, std::size_t len);

}  // namespace knock
