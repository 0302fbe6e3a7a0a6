#include "codec/spa.hpp"

#include <sodium.h>

#include <charconv>
#include <limits>
#include <stdexcept>
#include <string>

#include "config/tree.hpp"
#include "util/secure.hpp"

namespace knock::spa {
namespace {

void put_be(std::uint8_t* out, std::uint64_t v, std::size_t bytes) noexcept {
  for (std::size_t i = bytes; i-- > 0;) {
    out[i] = static_cast<std::uint8_t>(v & 0xFFu);
    v >>= 8;
  }
}

std::uint64_t get_be(const std::uint8_t* in, std::size_t bytes) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < bytes; ++i) v = (v << 8) | in[i];
  return v;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != b[i]) return false;
  }
  return true;
}

std::int64_t saturating_offset(std::uint64_t send_time, std::int64_t now) noexcept {
  __extension__ using Wide = __int128;
  const Wide d = static_cast<Wide>(send_time) - static_cast<Wide>(now);
  if (d > std::numeric_limits<std::int64_t>::max()) return std::numeric_limits<std::int64_t>::max();
  if (d < std::numeric_limits<std::int64_t>::min()) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(d);
}

}  // namespace

std::optional<Cipher> cipher_from_name(std::string_view name) noexcept {
  if (iequals(name, "xchacha20poly1305") || iequals(name, "xchacha20-poly1305")) return Cipher::XChaCha20Poly1305;
  if (iequals(name, "aes256gcm") || iequals(name, "aes-256-gcm")) return Cipher::Aes256Gcm;
  return std::nullopt;
}

std::string_view cipher_name(Cipher cipher) noexcept {
  return cipher == Cipher::Aes256Gcm ? "aes256gcm" : "xchacha20poly1305";
}

bool cipher_available(Cipher cipher) noexcept {
  if (sodium_init() < 0) return false;
  return cipher == Cipher::XChaCha20Poly1305 || crypto_aead_aes256gcm_is_available() == 1;
}

std::size_t nonce_bytes(Cipher cipher) noexcept {
  return cipher == Cipher::Aes256Gcm ? crypto_aead_aes256gcm_NPUBBYTES : crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
}

std::uint8_t magic(Cipher cipher) noexcept { return cipher == Cipher::Aes256Gcm ? 0xA2 : 0xA1; }

std::size_t header_bytes(Cipher cipher) noexcept { return kNonceOffset + nonce_bytes(cipher); }

std::size_t message_bytes(Cipher cipher, const codec::KnockFormat& format) noexcept {
  return header_bytes(cipher) + format.byte_length() + kTagBytes;
}

static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == kMaxNonceBytes);
static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == kTagBytes);
static_assert(crypto_aead_aes256gcm_ABYTES == kTagBytes);
static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == kKeyBytes);
static_assert(crypto_aead_aes256gcm_KEYBYTES == kKeyBytes);

std::vector<std::uint8_t> seal(Cipher cipher, const codec::KnockFormat& format, const codec::KnockValues& values,
                               const Key& key, std::uint64_t send_time, std::span<const std::uint8_t> nonce) {
  init_sodium();
  if (!cipher_available(cipher))
    throw ConfigError("spacipher = aes256gcm needs a CPU with AES-NI and PCLMUL; use xchacha20poly1305");
  const std::size_t nlen = nonce_bytes(cipher);
  if (!nonce.empty() && nonce.size() != nlen)
    throw std::invalid_argument("the nonce of " + std::string(cipher_name(cipher)) + " is " + std::to_string(nlen) +
                                " bytes");
  std::vector<std::uint8_t> plain = format.pack(values);
  const std::size_t head = header_bytes(cipher);
  std::vector<std::uint8_t> out(head + plain.size() + kTagBytes);
  out[0] = magic(cipher);
  put_be(&out[kKeyIdOffset], key.id(), kKeyIdBytes);
  put_be(&out[kTimeOffset], send_time, kTimeBytes);
  if (nonce.empty()) randombytes_buf(&out[kNonceOffset], nlen);
  else std::copy(nonce.begin(), nonce.end(), out.begin() + kNonceOffset);
  unsigned long long clen = 0;
  const int rc = cipher == Cipher::Aes256Gcm
                     ? crypto_aead_aes256gcm_encrypt(&out[head], &clen, plain.data(), plain.size(), out.data(), head,
                                                     nullptr, &out[kNonceOffset], key.bytes().data())
                     : crypto_aead_xchacha20poly1305_ietf_encrypt(&out[head], &clen, plain.data(), plain.size(),
                                                                  out.data(), head, nullptr, &out[kNonceOffset],
                                                                  key.bytes().data());
  sodium_memzero(plain.data(), plain.size());
  if (rc != 0 || clen != out.size() - head) throw std::runtime_error("AEAD encryption failed");
  return out;
}

std::string_view to_string(Reason reason) noexcept {
  switch (reason) {
    case Reason::Ok: return "ok";
    case Reason::Size: return "wrong size";
    case Reason::UnknownKey: return "unknown key id";
    case Reason::Tag: return "authentication failed";
    case Reason::Version: return "wrong version or cipher";
    case Reason::TooOld: return "too old";
    case Reason::TooNew: return "too new (sender's clock ahead)";
    case Reason::Fields: return "checksum mismatch in an authentic message";
  }
  return "unknown";
}

Verifier::Verifier(const KeyRing& ring, Cipher cipher, codec::KnockFormat format, std::uint32_t window_seconds,
                   const Location& cipher_where)
    : ring_(ring), cipher_(cipher), format_(std::move(format)), window_(window_seconds) {
  init_sodium();
  if (!cipher_available(cipher))
    throw ConfigError(cipher_where, "spacipher = aes256gcm needs a CPU with AES-NI and PCLMUL; use xchacha20poly1305");
  size_ = spa::message_bytes(cipher_, format_);
}

Verified Verifier::verify(std::span<const std::uint8_t> message, std::int64_t now) const noexcept {
  Verified r;
  // 1. Size: exactly the configured length.
  if (message.size() != size_) {
    r.reason = Reason::Size;
    return r;
  }
  // 2. Key lookup by id.
  const auto id = static_cast<std::uint32_t>(get_be(&message[kKeyIdOffset], kKeyIdBytes));
  r.client = ring_.find(id);
  if (r.client < 0) {
    r.reason = Reason::UnknownKey;
    return r;
  }
  r.client_name = ring_.name(static_cast<std::size_t>(r.client));
  // 3. Tag: decrypt into a stack buffer; libsodium checks the tag in constant time first.
  const std::size_t head = header_bytes(cipher_);
  const std::uint8_t* key = ring_.key(static_cast<std::size_t>(r.client));
  std::array<std::uint8_t, codec::kMaxKnockBytes> plain{};
  unsigned long long plain_len = 0;
  const std::uint8_t* cipher_text = message.data() + head;
  const std::size_t cipher_len = size_ - head;
  const int rc = cipher_ == Cipher::Aes256Gcm
                     ? crypto_aead_aes256gcm_decrypt(plain.data(), &plain_len, nullptr, cipher_text, cipher_len,
                                                     message.data(), head, &message[kNonceOffset], key)
                     : crypto_aead_xchacha20poly1305_ietf_decrypt(plain.data(), &plain_len, nullptr, cipher_text,
                                                                  cipher_len, message.data(), head,
                                                                  &message[kNonceOffset], key);
  if (rc != 0 || plain_len != format_.byte_length()) {
    sodium_memzero(plain.data(), plain.size());
    r.reason = Reason::Tag;
    return r;
  }
  std::copy(message.end() - kTagBytes, message.end(), r.identity.begin());
  r.send_time = get_be(&message[kTimeOffset], kTimeBytes);
  r.offset = saturating_offset(r.send_time, now);
  // 4. Version (authentic from here on).
  if (message[0] != magic(cipher_)) {
    r.reason = Reason::Version;
  } else if (r.offset < -static_cast<std::int64_t>(window_)) {  // 5. Window.
    r.reason = Reason::TooOld;
  } else if (r.offset > static_cast<std::int64_t>(window_)) {
    r.reason = Reason::TooNew;
  } else {
    // 6. The fields (CHECKSUM).
    const bool ok = format_.unpack(std::span<const std::uint8_t>(plain.data(), format_.byte_length()), r.values);
    r.reason = ok ? Reason::Ok : Reason::Fields;
  }
  sodium_memzero(plain.data(), plain.size());
  return r;
}

Settings settings(const codec::SettingLookup& lookup) {
  Settings s;
  auto number = [&](std::string_view key, std::uint64_t min, std::uint64_t max) -> std::optional<std::uint64_t> {
    auto v = lookup(key);
    if (!v) return std::nullopt;
    std::uint64_t n = 0;
    const char* b = v->text.data();
    const char* e = b + v->text.size();
    const auto [end, ec] = std::from_chars(b, e, n);
    if (v->text.empty() || ec != std::errc{} || end != e || n < min || n > max)
      throw ConfigError(v->where, std::string(key) + " must be a number from " + std::to_string(min) + " to " +
                                      std::to_string(max) + ", not '" + v->text + "'");
    return n;
  };
  if (auto v = lookup("spacipher")) {
    s.cipher_where = v->where;
    const auto c = cipher_from_name(v->text);
    if (!c) throw ConfigError(v->where, "spacipher must be xchacha20poly1305 or aes256gcm, not '" + v->text + "'");
    if (!cipher_available(*c))
      throw ConfigError(v->where, "spacipher = aes256gcm needs a CPU with AES-NI and PCLMUL; use xchacha20poly1305");
    s.cipher = *c;
  }
  if (auto n = number("spaport", 1, 65535)) s.port = static_cast<std::uint16_t>(*n);
  if (auto n = number("spawindow", 1, 86400)) s.window = static_cast<std::uint32_t>(*n);
  if (auto n = number("spareplaycache", 16, 16u * 1024u * 1024u)) s.replay_capacity = static_cast<std::size_t>(*n);
  return s;
}

Settings settings_from_config(const config::Value& root) {
  return settings([&root](std::string_view key) -> std::optional<codec::SettingText> {
    auto text = root.scalar(key);
    if (!text) return std::nullopt;
    return codec::SettingText{std::move(*text), root.where_of(key)};
  });
}

}  // namespace knock::spa
