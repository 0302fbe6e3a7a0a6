#pragma once
// The authenticated single-packet knock (SPA, doc/PROTOCOL.md section 6):
//
//   magic(1) | key id(4, BE) | send time(8, BE Unix seconds) | nonce(24 or 12)   <- header = AEAD AD
//   AEAD ciphertext of the packed `knock =` fields (KnockFormat::pack) | tag(16)
//
// with XChaCha20-Poly1305-IETF (default) or AES-256-GCM (libsodium). Its length is fixed for a
// given cipher and `knock =` format, so it can be sent as one UDP datagram or spelled as a port
// knock over the port span (codec::bytes_to_ports).
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "codec/codec.hpp"
#include "codec/fields.hpp"
#include "codec/format.hpp"
#include "codec/keys.hpp"
#include "util/error.hpp"

namespace knock::spa {

enum class Cipher : std::uint8_t { XChaCha20Poly1305, Aes256Gcm };

// "xchacha20poly1305" or "aes256gcm" (case-insensitive); nullopt otherwise.
std::optional<Cipher> cipher_from_name(std::string_view name) noexcept;
std::string_view cipher_name(Cipher cipher) noexcept;
// AES-256-GCM needs the CPU's AES and carry-less multiplication instructions.
bool cipher_available(Cipher cipher) noexcept;
std::size_t nonce_bytes(Cipher cipher) noexcept;  // 24 or 12
// The first byte of a message: 0xA1 (version 1, XChaCha20-Poly1305) or 0xA2 (version 1,
// AES-256-GCM). Never an ASCII byte, so never the start of fwknop's base64 text.
std::uint8_t magic(Cipher cipher) noexcept;

inline constexpr std::size_t kMagicBytes = 1;
inline constexpr std::size_t kKeyIdBytes = 4;
inline constexpr std::size_t kTimeBytes = 8;
inline constexpr std::size_t kTagBytes = 16;
inline constexpr std::size_t kKeyIdOffset = 1;
inline constexpr std::size_t kTimeOffset = 5;
inline constexpr std::size_t kNonceOffset = 13;
inline constexpr std::size_t kMaxNonceBytes = 24;
inline constexpr std::size_t kMaxMessageBytes = kNonceOffset + kMaxNonceBytes + codec::kMaxKnockBytes + kTagBytes;  // 86
inline constexpr std::uint16_t kDefaultPort = 62202;    // UDP; fwknop uses 62201
inline constexpr std::uint32_t kDefaultWindow = 60;     // seconds either side of the receiver's clock
inline constexpr std::size_t kDefaultReplayCapacity = 65536;
// How long an accepted message's identity is kept: the widest window any configuration may set
// (spawindow and fwknopwindow are at most a day), so that widening the window in a reload or a
// restart never lets a message that was accepted before verify and pass again.
inline constexpr std::int64_t kReplayKeep = 86400;

std::size_t header_bytes(Cipher cipher) noexcept;  // 37 or 25
// header + packed fields + tag: 53 + P or 41 + P bytes for a format of P bytes.
std::size_t message_bytes(Cipher cipher, const codec::KnockFormat& format) noexcept;

// Builds a message. `nonce` empty = a fresh random nonce (randombytes_buf); otherwise exactly
// nonce_bytes(cipher) bytes (test vectors only: a nonce must never be used twice with a key).
// Throws ConfigError for a missing or out-of-range field value (KnockFormat::pack),
// std::invalid_argument for a bad nonce length, ConfigError when the cipher is unavailable.
std::vector<std::uint8_t> seal(Cipher cipher, const codec::KnockFormat& format, const codec::KnockValues& values,
                               const Key& key, std::uint64_t send_time, std::span<const std::uint8_t> nonce = {});

enum class Reason : std::uint8_t {
  Ok,
  Size,        // not exactly message_bytes() long
  UnknownKey,  // no client has the key id
  Tag,         // authentication failed: forged, corrupted, or another key/cipher
  Version,     // authentic, but a magic byte of another version or cipher
  TooOld,      // authentic, sent more than `window` seconds before now (see offset)
  TooNew,      // authentic, sent more than `window` seconds after now (see offset)
  Fields,      // authentic, but the CHECKSUM field does not match (a broken client)
};
std::string_view to_string(Reason reason) noexcept;

using Identity = std::array<std::uint8_t, 16>;

struct Verified {
  Reason reason = Reason::Size;
  int client = -1;                // KeyRing index, from the key lookup on
  std::string_view client_name;   // points into the KeyRing, from the key lookup on
  std::uint64_t send_time = 0;    // from the tag check on
  std::int64_t offset = 0;        // send_time - now, seconds (saturated), from the tag check on
  Identity identity{};            // the tag: the replay identity, from the tag check on
  codec::KnockValues values;      // valid when ok()
  bool ok() const noexcept { return reason == Reason::Ok; }
};

// The daemon's check of one message. Holds a reference to the KeyRing, which must outlive it.
class Verifier {
 public:
  // Throws ConfigError at `cipher_where` when the cipher is unavailable on this CPU.
  Verifier(const KeyRing& ring, Cipher cipher, codec::KnockFormat format, std::uint32_t window_seconds,
           const Location& cipher_where = {});

  Cipher cipher() const noexcept { return cipher_; }
  const codec::KnockFormat& format() const noexcept { return format_; }
  std::uint32_t window() const noexcept { return window_; }
  std::size_t message_bytes() const noexcept { return size_; }

  // Checks, in this order, stopping at the first failure: size (exactly message_bytes()), key id
  // lookup, tag (AEAD decryption into a stack buffer; libsodium compares in constant time),
  // magic, |send time - now| <= window, CHECKSUM. `now` is Unix seconds (the capture's clock
  // under -pcap). Constant work per call; never throws, never allocates.
  Verified verify(std::span<const std::uint8_t> message, std::int64_t now) const noexcept;

 private:
  const KeyRing& ring_;
  Cipher cipher_;
  codec::KnockFormat format_;
  std::uint32_t window_;
  std::size_t size_;
};

// The daemon's SPA settings (top-level keys): spacipher, spaport, spawindow, spareplaycache.
struct Settings {
  Cipher cipher = Cipher::XChaCha20Poly1305;
  Location cipher_where;
  std::uint16_t port = kDefaultPort;
  std::uint32_t window = kDefaultWindow;
  std::size_t replay_capacity = kDefaultReplayCapacity;
};
inline constexpr std::array<std::string_view, 5> kDaemonKeys = {"client", "spacipher", "spaport", "spawindow",
                                                                "spareplaycache"};
// Throws ConfigError at the setting for a bad value (unknown or unavailable cipher, port 0 or
// > 65535, window 1..86400, capacity 16..16777216).
Settings settings(const codec::SettingLookup& lookup);
Settings settings_from_config(const config::Value& root);

}  // namespace knock::spa
