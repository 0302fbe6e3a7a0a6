#pragma once
// Knock encryption behind a small interface (so that e.g. AEAD ciphers can be added later), and
// the Crypt::CBC-compatible block ciphers the original used: MD5-chain key derivation, CBC,
// PKCS#5 padding, optionally "RandomIV" + IV in front of the ciphertext.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "util/error.hpp"
#include "util/secure.hpp"

namespace knock::codec {

enum class CipherStatus : std::uint8_t {
  Ok,
  Length,   // ciphertext length impossible for this cipher
  Header,   // "RandomIV" header missing
  Padding,  // PKCS#5 padding bytes wrong
};

class KnockCipher {
 public:
  virtual ~KnockCipher() = default;
  virtual std::string_view name() const noexcept = 0;
  // Bytes the encryption of `plain_len` bytes takes, header and IV included.
  virtual std::size_t encrypted_size(std::size_t plain_len) const noexcept = 0;
  // Encrypts with a fresh IV from the OS CSPRNG when the IV is sent (all-zero IV otherwise).
  virtual std::vector<std::uint8_t> encrypt(std::span<const std::uint8_t> plain) const = 0;
  // Encrypts with the given IV (exactly the IV size). Only for ciphers that send their IV; throws
  // std::invalid_argument otherwise. For test vectors and documentation.
  virtual std::vector<std::uint8_t> encrypt(std::span<const std::uint8_t> plain, std::span<const std::uint8_t> iv) const = 0;
  // Decrypts `in` into `out` (which must hold at least in.size() bytes) and sets plain_len.
  // Never throws, never allocates.
  virtual CipherStatus decrypt(std::span<const std::uint8_t> in, std::span<std::uint8_t> out,
                               std::size_t& plain_len) const noexcept = 0;
};

// The Crypt::* block ciphers understood, by their Perl names.
enum class BlockCipherId : std::uint8_t { Blowfish, DES, DES_EDE3, CAST5, IDEA, Rijndael, Twofish };

// "Blowfish", "crypt::blowfish", "AES" (= Rijndael) ...; nullopt when unknown.
std::optional<BlockCipherId> block_cipher_from_name(std::string_view name);
std::string_view block_cipher_name(BlockCipherId id);   // Perl module name without Crypt::
std::size_t block_cipher_block_size(BlockCipherId id);  // 8 or 16
// The key length Crypt::CBC uses with the Perl module: its keysize(), or 56 for Blowfish (whose
// keysize() is 0 and max_keysize() 56).
std::size_t block_cipher_key_size(BlockCipherId id);

// Crypt::CBC's legacy key derivation: m = MD5(pass); while |m| < keysize: m = m || MD5(m);
// the first keysize bytes.
SecureBytes derive_key_md5_chain(const std::uint8_t* passphrase, std::size_t len, std::size_t keysize);

inline constexpr std::string_view kRandomIvHeader = "RandomIV";

// A Crypt::CBC-compatible cipher. `send_iv` = the `iv = yes` setting. Throws ConfigError at
// `where` (the `cipher` setting) for an unknown cipher or `iv = yes` with a 16-byte block cipher.
std::unique_ptr<KnockCipher> make_cbc_cipher(std::string_view name, const SecureBytes& passphrase, bool send_iv,
                                             const Location& where);

// The same cipher keyed with `key` as is (block_cipher_key_size bytes), no derivation: for
// known-answer tests of the primitives.
std::unique_ptr<KnockCipher> make_cbc_cipher_raw_key(BlockCipherId id, const SecureBytes& key, bool send_iv);

}  // namespace knock::codec
