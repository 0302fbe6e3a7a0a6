#pragma once
// Builds fwknop SPA packets for the tests, fuzzers and benchmarks, from the protocol description
// (shared/reference/facts.md), with Crypto++'s own CBC mode, HMAC and base64 encoder: a second
// implementation beside src/core/codec/fwknop.cpp, not a copy of it. Header-only (test code).
#define CRYPTOPP_ENABLE_NAMESPACE_WEAK 1
#include <cryptopp/aes.h>
#include <cryptopp/base64.h>
#include <cryptopp/filters.h>
#include <cryptopp/hmac.h>
#include <cryptopp/md5.h>
#include <cryptopp/modes.h>
#include <cryptopp/osrng.h>
#include <cryptopp/sha.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fwknop_test {

inline std::string b64(const std::string& bytes) {
  std::string out;
  CryptoPP::StringSource(bytes, true, new CryptoPP::Base64Encoder(new CryptoPP::StringSink(out), false));
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

inline std::string sha256_b64(const std::string& text) {
  std::string d(32, '\0');
  CryptoPP::SHA256().CalculateDigest(reinterpret_cast<CryptoPP::byte*>(d.data()),
                                     reinterpret_cast<const CryptoPP::byte*>(text.data()), text.size());
  return b64(d);
}

struct Packet {
  std::string random = "1234567890123456";
  std::string user = "alice";
  std::int64_t timestamp = 1700000000;
  std::string version = "3.0.0";
  int type = 1;
  std::string message = "198.18.1.2,tcp/22";
  std::optional<std::string> nat;
  std::optional<std::string> server_auth;
  std::optional<std::uint32_t> client_timeout;
  // Raw overrides (tests of malformed plaintext): when set, used instead of the fields above.
  std::optional<std::string> plaintext_before_digest;
  std::optional<std::string> digest;  // the digest field text, instead of the right one
  std::optional<std::string> plaintext;  // the whole plaintext, digest included

  std::string encoded() const {
    if (plaintext_before_digest) return *plaintext_before_digest;
    std::string s = random + ":" + b64(user) + ":" + std::to_string(timestamp) + ":" + version + ":" +
                    std::to_string(type) + ":" + b64(message);
    if (nat) s += ":" + b64(*nat);
    if (server_auth) s += ":" + b64(*server_auth);
    if (client_timeout) s += ":" + std::to_string(*client_timeout);
    return s;
  }
  std::string full_plaintext() const {
    if (plaintext) return *plaintext;
    const std::string e = encoded();
    return e + ":" + (digest ? *digest : sha256_b64(e));
  }
};

// The encrypted text with the "U2FsdGVkX1" prefix (no HMAC yet).
inline std::string encrypt(const std::string& plaintext, const std::string& passphrase,
                           const std::string& salt_in = {}) {
  std::string salt = salt_in;
  if (salt.empty()) {
    salt.resize(8);
    CryptoPP::AutoSeededRandomPool rng;
    rng.GenerateBlock(reinterpret_cast<CryptoPP::byte*>(salt.data()), salt.size());
  }
  // EVP_BytesToKey(MD5, 1 iteration): D_i = MD5(D_{i-1} || pass || salt), key = D1 D2, iv = D3.
  std::string d, prev;
  while (d.size() < 48) {
    CryptoPP::Weak::MD5 md5;
    std::string in = prev + passphrase + salt;
    prev.assign(16, '\0');
    md5.CalculateDigest(reinterpret_cast<CryptoPP::byte*>(prev.data()), reinterpret_cast<const CryptoPP::byte*>(in.data()),
                        in.size());
    d += prev;
  }
  CryptoPP::CBC_Mode<CryptoPP::AES>::Encryption enc(reinterpret_cast<const CryptoPP::byte*>(d.data()), 32,
                                                    reinterpret_cast<const CryptoPP::byte*>(d.data() + 32));
  std::string cipher;
  CryptoPP::StringSource(plaintext, true, new CryptoPP::StreamTransformationFilter(enc, new CryptoPP::StringSink(cipher)));
  return b64("Salted__" + salt + cipher);
}

inline std::string hmac_b64(const std::string& text, const std::string& hmac_key) {
  CryptoPP::HMAC<CryptoPP::SHA256> h(reinterpret_cast<const CryptoPP::byte*>(hmac_key.data()), hmac_key.size());
  std::string mac(32, '\0');
  h.CalculateDigest(reinterpret_cast<CryptoPP::byte*>(mac.data()), reinterpret_cast<const CryptoPP::byte*>(text.data()),
                    text.size());
  return b64(mac);
}

// The wire string: prefix cut, HMAC appended (none when hmac_key is empty).
inline std::string wire(const std::string& encrypted_with_prefix, const std::string& hmac_key) {
  std::string w = encrypted_with_prefix.substr(10);
  if (!hmac_key.empty()) w += hmac_b64(encrypted_with_prefix, hmac_key);
  return w;
}

inline std::string build(const Packet& p, const std::string& key, const std::string& hmac_key) {
  return wire(encrypt(p.full_plaintext(), key), hmac_key);
}

}  // namespace fwknop_test
