#include "util/secure.hpp"

#include <cryptopp/misc.h>

namespace knock {

bool constant_time_equal(const std::uint8_t* a, std::size_t a_len, const std::uint8_t* b, std::size_t b_len) {
  if (a_len != b_len) return false;
  return CryptoPP::VerifyBufsEqual(a, b, a_len);
}

void secure_wipe(void* data, std::size_t len) {
  CryptoPP::SecureWipeBuffer(static_cast<std::uint8_t*>(data), len);
}

}  // namespace knock
