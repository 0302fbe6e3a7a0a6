#pragma once
// Keys of the authenticated single-packet knock (SPA, doc/PROTOCOL.md section 6): 256-bit keys
// held in libsodium's guarded heap, their key ids, Argon2id passphrase keys, and the daemon's
// KeyRing of clients (`<client NAME>` blocks) found by key id in O(1).
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "codec/codec.hpp"
#include "util/error.hpp"

namespace knock::config {
class Value;
}

namespace knock::spa {

inline constexpr std::size_t kKeyBytes = 32;
inline constexpr std::size_t kSaltBytes = 16;  // crypto_pwhash_SALTBYTES
// Argon2id (v1.3) parameters of a passphrase key: fixed by the protocol, not configurable.
inline constexpr unsigned long long kArgon2OpsLimit = 3;
inline constexpr std::size_t kArgon2MemLimit = 64u * 1024u * 1024u;  // bytes (65536 KiB), parallelism 1
// Key id = the first 4 bytes (big-endian) of BLAKE2b-256 keyed with the key over this text.
inline constexpr std::string_view kKeyIdContext = "portknock spa key id v1";

// sodium_init(), once; throws RuntimeError when libsodium cannot start.
void init_sodium();

// Bytes in libsodium's guarded heap (sodium_malloc: guard pages, mlock where allowed, canary);
// sodium_free wipes them. Move-only.
class GuardedBytes {
 public:
  GuardedBytes() = default;
  explicit GuardedBytes(std::size_t size);  // zero-filled; throws std::bad_alloc
  ~GuardedBytes();
  GuardedBytes(GuardedBytes&& other) noexcept;
  GuardedBytes& operator=(GuardedBytes&& other) noexcept;
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;

  std::uint8_t* data() noexcept { return data_; }
  const std::uint8_t* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  void make_readonly();  // sodium_mprotect_readonly: a stray write faults

 private:
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// The key id of a 32-byte key (see kKeyIdContext).
std::uint32_t key_id(std::span<const std::uint8_t, kKeyBytes> key) noexcept;

// A 256-bit SPA key and its id.
class Key {
 public:
  static Key random();
  // Exactly kKeyBytes bytes, else std::invalid_argument.
  static Key from_bytes(std::span<const std::uint8_t> bytes);
  // Standard base64 (with or without '=' padding, blanks around ignored) of exactly 32 bytes.
  // Throws ConfigError at `where` (the message never contains the text).
  static Key from_base64(std::string_view text, const Location& where);
  // Argon2id v1.3, kArgon2OpsLimit / kArgon2MemLimit, 32-byte output, over the passphrase with
  // a kSaltBytes salt. Throws ConfigError at `where` for an empty passphrase or a bad salt size.
  static Key from_passphrase(std::span<const std::uint8_t> passphrase, std::span<const std::uint8_t> salt,
                             const Location& where);

  std::span<const std::uint8_t, kKeyBytes> bytes() const noexcept {
    return std::span<const std::uint8_t, kKeyBytes>(bytes_.data(), kKeyBytes);
  }
  std::uint32_t id() const noexcept { return id_; }
  // Base64 with padding (44 characters), one line without "\n": the -keygen file's content.
  std::string base64() const;

 private:
  Key() = default;
  GuardedBytes bytes_;
  std::uint32_t id_ = 0;
};

// Standard base64 of exactly kSaltBytes bytes (the `salt` setting). Throws ConfigError at `where`.
std::vector<std::uint8_t> decode_salt(std::string_view text, const Location& where);

// The key of one party from its settings: exactly one of `key = BASE64`, `keyfile = PATH` (one
// line of base64, read with read_key_file) or `passphrase = TEXT` with `salt = BASE64`.
// `block` names the place for a missing key (the config file, or the <client> block).
// Throws ConfigError at the offending setting.
Key key_from_settings(const codec::SettingLookup& lookup, const Location& block);

// Writes a new random key as one line of base64 to `path`: created with mode 0600, O_EXCL (an
// existing file is never overwritten), O_NOFOLLOW, O_CLOEXEC. Throws RuntimeError. Returns the key.
Key write_new_key_file(const std::string& path);

struct ClientInfo {
  std::string name;   // the NAME of <client NAME>
  Location where;     // the block
  std::uint32_t id = 0;
};

// The clients of the daemon: N keys in one guarded, read-only block, found by key id in O(1).
class KeyRing {
 public:
  struct Entry {
    std::string name;
    Location where;
    Key key;
  };
  KeyRing() = default;
  // Throws ConfigError when two entries share a key id (which includes sharing a key), naming
  // both with their FILE:LINE, or share a name.
  explicit KeyRing(std::vector<Entry> entries);
  // Every `<client NAME> ... </client>` block of the daemon config. A block holds the key settings
  // of key_from_settings plus any key in `other_keys` (read by the caller); any other key is a
  // ConfigError at its line. No <client> block gives an empty ring.
  static KeyRing from_config(const config::Value& root, std::span<const std::string_view> other_keys = {});

  std::size_t size() const noexcept { return clients_.size(); }
  bool empty() const noexcept { return clients_.empty(); }
  const ClientInfo& client(std::size_t index) const { return clients_.at(index); }
  // The name of client `index` (< size()). Never throws.
  std::string_view name(std::size_t index) const noexcept { return clients_[index].name; }
  // The index of the client with this key id, or -1. Never throws, never allocates.
  int find(std::uint32_t id) const noexcept;
  // The key of client `index` (< size()), kKeyBytes bytes.
  const std::uint8_t* key(std::size_t index) const noexcept { return keys_.data() + index * kKeyBytes; }

 private:
  std::vector<ClientInfo> clients_;
  GuardedBytes keys_;  // size() * kKeyBytes, read-only once built
  std::unordered_map<std::uint32_t, std::uint32_t> by_id_;
};

}  // namespace knock::spa
