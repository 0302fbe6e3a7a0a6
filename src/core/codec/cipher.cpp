#include "codec/cipher.hpp"

#define CRYPTOPP_ENABLE_NAMESPACE_WEAK 1
#include <cryptopp/aes.h>
#include <cryptopp/blowfish.h>
#include <cryptopp/cast.h>
#include <cryptopp/des.h>
#include <cryptopp/idea.h>
#include <cryptopp/md5.h>
#include <cryptopp/osrng.h>
#include <cryptopp/twofish.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>
#include <string>

namespace knock::codec {
namespace {

struct CipherInfo {
  BlockCipherId id;
  std::string_view name;
  std::size_t block;
  std::size_t key;
};

constexpr std::array<CipherInfo, 7> kCiphers = {{
    {BlockCipherId::Blowfish, "Blowfish", 8, 56},
    {BlockCipherId::DES, "DES", 8, 8},
    {BlockCipherId::DES_EDE3, "DES_EDE3", 8, 24},
    {BlockCipherId::CAST5, "CAST5", 8, 16},
    {BlockCipherId::IDEA, "IDEA", 8, 16},
    {BlockCipherId::Rijndael, "Rijndael", 16, 32},
    {BlockCipherId::Twofish, "Twofish", 16, 16},
}};

const CipherInfo& info(BlockCipherId id) { return kCiphers[static_cast<std::size_t>(id)]; }

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

template <class Cipher>
std::pair<std::unique_ptr<CryptoPP::BlockCipher>, std::unique_ptr<CryptoPP::BlockCipher>> make_pair_of(
    const SecureBytes& key) {
  return {std::make_unique<typename Cipher::Encryption>(key.data(), key.size()),
          std::make_unique<typename Cipher::Decryption>(key.data(), key.size())};
}

class CbcCipher final : public KnockCipher {
 public:
  // `key` is the derived key (block_cipher_key_size bytes).
  CbcCipher(BlockCipherId id, const SecureBytes& key, bool send_iv)
      : id_(id), block_(info(id).block), send_iv_(send_iv) {
    switch (id) {
      case BlockCipherId::Blowfish: std::tie(enc_, dec_) = make_pair_of<CryptoPP::Blowfish>(key); break;
      case BlockCipherId::DES: std::tie(enc_, dec_) = make_pair_of<CryptoPP::DES>(key); break;
      case BlockCipherId::DES_EDE3: std::tie(enc_, dec_) = make_pair_of<CryptoPP::DES_EDE3>(key); break;
      case BlockCipherId::CAST5: std::tie(enc_, dec_) = make_pair_of<CryptoPP::CAST128>(key); break;
      case BlockCipherId::IDEA: std::tie(enc_, dec_) = make_pair_of<CryptoPP::IDEA>(key); break;
      case BlockCipherId::Rijndael: std::tie(enc_, dec_) = make_pair_of<CryptoPP::AES>(key); break;
      case BlockCipherId::Twofish: std::tie(enc_, dec_) = make_pair_of<CryptoPP::Twofish>(key); break;
    }
  }

  std::string_view name() const noexcept override { return info(id_).name; }

  std::size_t encrypted_size(std::size_t plain_len) const noexcept override {
    return header_size() + (plain_len / block_ + 1) * block_;
  }

  std::vector<std::uint8_t> encrypt(std::span<const std::uint8_t> plain) const override {
    std::array<std::uint8_t, 16> iv{};
    if (send_iv_) CryptoPP::OS_GenerateRandomBlock(false, iv.data(), block_);
    return encrypt_cbc(plain, std::span<const std::uint8_t>(iv.data(), block_));
  }

  std::vector<std::uint8_t> encrypt(std::span<const std::uint8_t> plain,
                                    std::span<const std::uint8_t> iv) const override {
    if (!send_iv_) throw std::invalid_argument("an explicit IV needs iv = yes");
    if (iv.size() != block_) throw std::invalid_argument("IV must be one block long");
    return encrypt_cbc(plain, iv);
  }

  CipherStatus decrypt(std::span<const std::uint8_t> in, std::span<std::uint8_t> out,
                       std::size_t& plain_len) const noexcept override {
    plain_len = 0;
    std::array<std::uint8_t, 16> zero{};
    const std::uint8_t* prev = zero.data();
    if (send_iv_) {
      if (in.size() < header_size()) return CipherStatus::Length;
      if (std::memcmp(in.data(), kRandomIvHeader.data(), kRandomIvHeader.size()) != 0) return CipherStatus::Header;
      prev = in.data() + kRandomIvHeader.size();
      in = in.subspan(header_size());
    }
    if (in.empty() || in.size() % block_ != 0 || out.size() < in.size()) return CipherStatus::Length;
    for (std::size_t pos = 0; pos < in.size(); pos += block_) {
      dec_->ProcessAndXorBlock(in.data() + pos, prev, out.data() + pos);
      prev = in.data() + pos;
    }
    const std::uint8_t pad = out[in.size() - 1];
    if (pad == 0 || pad > block_) return CipherStatus::Padding;
    for (std::size_t i = in.size() - pad; i < in.size(); ++i)
      if (out[i] != pad) return CipherStatus::Padding;
    plain_len = in.size() - pad;
    return CipherStatus::Ok;
  }

 private:
  std::size_t header_size() const noexcept { return send_iv_ ? kRandomIvHeader.size() + block_ : 0; }

  std::vector<std::uint8_t> encrypt_cbc(std::span<const std::uint8_t> plain, std::span<const std::uint8_t> iv) const {
    const std::size_t padded = (plain.size() / block_ + 1) * block_;
    const std::size_t body = header_size();
    std::vector<std::uint8_t> out(body + padded, static_cast<std::uint8_t>(padded - plain.size()));
    if (send_iv_) {
      std::copy(kRandomIvHeader.begin(), kRandomIvHeader.end(), out.begin());
      std::copy(iv.begin(), iv.end(), out.begin() + static_cast<std::ptrdiff_t>(kRandomIvHeader.size()));
    }
    std::copy(plain.begin(), plain.end(), out.begin() + static_cast<std::ptrdiff_t>(body));
    std::array<std::uint8_t, 16> chain{};
    std::copy(iv.begin(), iv.end(), chain.begin());
    for (std::size_t pos = body; pos < out.size(); pos += block_) {
      for (std::size_t i = 0; i < block_; ++i) chain[i] ^= out[pos + i];
      enc_->ProcessBlock(chain.data(), out.data() + pos);
      std::copy_n(out.data() + pos, block_, chain.begin());
    }
    return out;
  }

  BlockCipherId id_;
  std::size_t block_;
  bool send_iv_;
  std::unique_ptr<CryptoPP::BlockCipher> enc_, dec_;
};

}  // namespace

std::optional<BlockCipherId> block_cipher_from_name(std::string_view name) {
  if (name.size() > 7 && iequal(name.substr(0, 7), "Crypt::")) name.remove_prefix(7);
  if (iequal(name, "AES")) return BlockCipherId::Rijndael;
  for (const auto& c : kCiphers)
    if (iequal(name, c.name)) return c.id;
  return std::nullopt;
}

std::string_view block_cipher_name(BlockCipherId id) { return info(id).name; }
std::size_t block_cipher_block_size(BlockCipherId id) { return info(id).block; }
std::size_t block_cipher_key_size(BlockCipherId id) { return info(id).key; }

SecureBytes derive_key_md5_chain(const std::uint8_t* passphrase, std::size_t len, std::size_t keysize) {
  constexpr std::size_t kMd5 = CryptoPP::Weak::MD5::DIGESTSIZE;
  SecureBytes material(((keysize + kMd5 - 1) / kMd5 + 1) * kMd5);
  CryptoPP::Weak::MD5 md5;
  md5.CalculateDigest(material.data(), passphrase, len);
  std::size_t have = kMd5;
  while (have < keysize) {
    md5.CalculateDigest(material.data() + have, material.data(), have);
    have += kMd5;
  }
  return SecureBytes(material.data(), keysize);
}

std::unique_ptr<KnockCipher> make_cbc_cipher(std::string_view name, const SecureBytes& passphrase, bool send_iv,
                                             const Location& where) {
  const auto id = block_cipher_from_name(name);
  if (!id)
    throw ConfigError(where, "unknown cipher '" + std::string(name) +
                                 "' (known: Blowfish, DES, DES_EDE3, CAST5, IDEA, Rijndael (AES), Twofish)");
  if (send_iv && info(*id).block != 8)
    throw ConfigError(where, "cipher " + std::string(info(*id).name) +
                                 " has 16-byte blocks, for which Crypt::CBC has no RandomIV form: set iv = no");
  return std::make_unique<CbcCipher>(
      *id, derive_key_md5_chain(passphrase.data(), passphrase.size(), info(*id).key), send_iv);
}

std::unique_ptr<KnockCipher> make_cbc_cipher_raw_key(BlockCipherId id, const SecureBytes& key, bool send_iv) {
  if (key.size() != info(id).key) throw std::invalid_argument("wrong key length");
  if (send_iv && info(id).block != 8) throw std::invalid_argument("RandomIV needs 8-byte blocks");
  return std::make_unique<CbcCipher>(id, key, send_iv);
}

}  // namespace knock::codec
