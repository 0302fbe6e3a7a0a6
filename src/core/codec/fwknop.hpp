#pragma once
// fwknop's single-packet authorization (SPA), protocol 3.0.0 as the fwknop 2.6 client sends it,
// Rijndael mode with HMAC-SHA256 (doc/PROTOCOL.md "fwknop packets", doc/FWKNOP.md). Written from
// the protocol description in shared/reference/facts.md; no fwknop code.
//
// Wire (one UDP datagram, default port 62201): base64 text without '=' of
//   "Salted__" | salt(8) | AES-256-CBC(PKCS#7) of the plaintext
// with its constant first 10 characters "U2FsdGVkX1" removed, then 43 characters of base64
// HMAC-SHA256 (keyed with the HMAC key) over the text with "U2FsdGVkX1" put back. Key and IV:
// OpenSSL EVP_BytesToKey(MD5, 1 iteration) over passphrase || salt. The plaintext:
//   random(16 digits):b64(user):timestamp:3.0.0:type:b64(message)[:b64(nat)][:b64(auth)]
//   [:client timeout]:b64(SHA-256 of everything before this ':')
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/codec.hpp"
#include "codec/fields.hpp"
#include "codec/spa.hpp"
#include "util/address.hpp"
#include "util/error.hpp"
#include "util/secure.hpp"

namespace knock::config {
class Value;
}

namespace knock::fwknop {

inline constexpr std::size_t kMinPacketBytes = 140;   // fwknop's smallest SPA payload
inline constexpr std::size_t kMaxPacketBytes = 1500;  // and its largest
inline constexpr std::size_t kHmacChars = 43;         // base64 of 32 bytes, no '='
inline constexpr std::string_view kSaltedPrefix = "U2FsdGVkX1";  // base64 of "Salted__"..., cut on the wire
inline constexpr std::string_view kVersion = "3.0.0";
inline constexpr std::size_t kMaxUser = 64;        // characters, decoded (fwknop's library limit)
inline constexpr std::size_t kMaxMessage = 256;    // characters, decoded
inline constexpr std::size_t kMaxNat = 128;        // characters, decoded
inline constexpr std::size_t kMaxServerAuth = 128; // characters, decoded
inline constexpr std::size_t kMaxPorts = 8;        // proto/port pairs in one access message
inline constexpr std::size_t kMaxKeyBytes = 32;    // Rijndael passphrase (fwknop's RIJNDAEL_MAX_KEYSIZE)
inline constexpr std::size_t kMaxHmacKeyBytes = 128;
inline constexpr std::size_t kMaxStanzas = 1024;   // the verifier tries every stanza's HMAC key: O(N)
inline constexpr std::uint16_t kDefaultPort = 62201;
inline constexpr std::uint32_t kDefaultWindow = 120;          // seconds either side, like fwknopd
inline constexpr std::uint32_t kDefaultFwAccessTimeout = 30;  // fwknopd's FW_ACCESS_TIMEOUT default

enum class Proto : std::uint8_t { Tcp = 6, Udp = 17 };  // values are the IP protocol numbers
std::string_view proto_name(Proto proto) noexcept;       // "tcp" or "udp"

struct PortRequest {
  Proto proto = Proto::Tcp;
  std::uint16_t port = 0;
  bool operator==(const PortRequest&) const = default;
};

// A source network of a stanza: IPv4 or IPv6 address and prefix length.
struct Network {
  IpAddress address;
  int prefix = 0;  // 0..32 (v4) or 0..128 (v6)
  bool contains(const IpAddress& a) const noexcept;
};

// One `<fwknop NAME>` block (an access.conf stanza): everything but the keys.
struct Stanza {
  std::string name;
  Location where;
  std::vector<Network> sources;               // empty = ANY
  std::vector<PortRequest> open_ports;        // the requests allowed (required, non-empty)
  bool require_source_address = true;         // refuse the IP 0.0.0.0 ("use my source")
  std::string require_user;                   // empty = any user
  std::uint32_t fw_access_timeout = kDefaultFwAccessTimeout;
  std::uint32_t max_client_timeout = 0;       // 0 = a packet carrying a client timeout is refused
  bool source_allowed(const IpAddress& source) const noexcept;
  bool port_allowed(const PortRequest& request) const noexcept;
};

// The keys of one stanza, wiped when freed.
struct StanzaKeys {
  SecureBytes key;       // Rijndael passphrase, 1..kMaxKeyBytes
  SecureBytes hmac_key;  // HMAC-SHA256 key, 1..kMaxHmacKeyBytes
};

// Every `<fwknop NAME> ... </fwknop>` block of the daemon config, in file order (at most
// kMaxStanzas). The HMAC keys are kept as HMAC-SHA256 pads (64-byte blocks) in wiped memory.
class Stanzas {
 public:
  Stanzas() = default;
  // Throws ConfigError at the offending line: a bad or missing setting, an unknown key, a name
  // given twice, the same key for encryption and HMAC, too many stanzas.
  Stanzas(std::vector<Stanza> stanzas, std::vector<StanzaKeys> keys);
  static Stanzas from_config(const config::Value& root);

  std::size_t size() const noexcept { return stanzas_.size(); }
  bool empty() const noexcept { return stanzas_.empty(); }
  const Stanza& stanza(std::size_t index) const noexcept { return stanzas_[index]; }
  std::string_view name(std::size_t index) const noexcept { return stanzas_[index].name; }

  // For the verifier (index < size()).
  const std::uint8_t* key(std::size_t index) const noexcept { return keys_[index].key.data(); }
  std::size_t key_size(std::size_t index) const noexcept { return keys_[index].key.size(); }
  const std::uint8_t* hmac_block(std::size_t index) const noexcept { return hmac_blocks_.data() + index * 64; }

 private:
  std::vector<Stanza> stanzas_;
  std::vector<StanzaKeys> keys_;
  SecureBytes hmac_blocks_;  // per stanza: the HMAC key as one 64-byte SHA-256 block (hashed when longer)
};

enum class Reason : std::uint8_t {
  Ok,
  Size,           // payload not 140..1500 bytes
  Base64,         // not canonical base64 text (a byte outside the alphabet, an impossible length, stray bits)
  Source,         // no stanza allows the packet's source address
  Hmac,           // no stanza's HMAC key authenticates it (forged, corrupted, another key, or no HMAC at all)
  Decrypt,        // authentic but does not decrypt: no "Salted__" header, bad length or padding (wrong key)
  Fields,         // authentic, but the plaintext is not 7..10 well-formed fields
  Digest,         // authentic, but the SHA-256 digest field is missing, of another type, or wrong
  Version,        // authentic, but not protocol 3.0.0
  TooOld,         // authentic, timestamp more than `window` seconds before now (see offset)
  TooNew,         // authentic, timestamp more than `window` seconds after now (see offset)
  MessageType,    // authentic, a command message (type 0): never executed
  Nat,            // authentic, a NAT access message (types 2, 4, 5, 6): not supported
  ServerAuth,     // authentic, carries a server-auth field: not supported
  User,           // authentic, but not the stanza's require_user
  SourceAddress,  // authentic, asks for 0.0.0.0 (the packet's source) where the stanza refuses it
  Access,         // authentic, asks for a proto/port the stanza does not open
  ClientTimeout,  // authentic, carries a client timeout the stanza does not allow
};
std::string_view to_string(Reason reason) noexcept;

// The result of one packet. Fixed size: no allocation. Fields are valid "from" the check that
// fills them on, as noted.
struct Verified {
  Reason reason = Reason::Size;
  spa::Identity identity{};           // first 16 bytes of SHA-256(wire payload), from Base64 on
  int stanza = -1;                    // index into Stanzas, from the HMAC check on
  std::string_view stanza_name;       // points into the Stanzas
  std::int64_t timestamp = 0;         // the packet's Unix time, from Fields on
  std::int64_t offset = 0;            // timestamp - now, seconds (saturated)
  std::uint8_t message_type = 0;      // 0..6, from Fields on
  std::uint32_t requested_ip = 0;     // IPv4 in the message, host order (0 = "my source")
  std::uint32_t ip = 0;               // the address to open, host order: requested_ip, or the source for 0.0.0.0 (when ok())
  std::array<PortRequest, kMaxPorts> ports{};
  std::uint8_t port_count = 0;
  bool has_client_timeout = false;
  std::uint32_t client_timeout = 0;   // seconds, when has_client_timeout
  std::uint32_t fw_access_timeout = 0;  // the stanza's fw_access_timeout (when ok())
  std::array<char, kMaxUser> user_chars{};
  std::uint8_t user_length = 0;

  bool ok() const noexcept { return reason == Reason::Ok; }
  std::string_view user() const noexcept { return {user_chars.data(), user_length}; }
  std::span<const PortRequest> requests() const noexcept { return {ports.data(), port_count}; }
  // The knock fields the rules see: IP (host order) and PORT (the first requested port).
  codec::KnockValues knock_values() const noexcept;
};

// The daemon's check of one fwknop datagram. Holds a reference to the Stanzas, which must
// outlive it. verify() keeps an AES key schedule between calls (no allocation per packet), so
// one Verifier must not be used by two threads at once.
class Verifier {
 public:
  Verifier(const Stanzas& stanzas, std::uint32_t window_seconds);
  ~Verifier();
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;

  std::uint32_t window() const noexcept { return window_; }
  const Stanzas& stanzas() const noexcept { return stanzas_; }

  // Checks, in this order, stopping at the first failure: size (140..1500), base64 syntax (the
  // replay identity is set from here on), then for each stanza whose `source` holds `source`, in
  // file order, its HMAC (constant time; the first that matches wins), decryption and padding,
  // the field count and the digest, the fields, version, the time window (|timestamp - now| <=
  // window), message type (command, NAT, server auth refused), require_user, 0.0.0.0 and
  // require_source_address, the requested proto/ports against open_ports, the client timeout.
  // `now` is Unix seconds (the capture's clock under -pcap). Never throws, never allocates;
  // O(stanzas whose source matches) HMACs of at most 1510 bytes, then constant work.
  Verified verify(std::span<const std::uint8_t> payload, const IpAddress& source, std::int64_t now) const noexcept;

 private:
  struct Scratch;
  const Stanzas& stanzas_;
  std::uint32_t window_;
  Scratch* scratch_;  // the reused AES decryption object
};

// The daemon's fwknop settings (top-level keys): fwknopport, fwknopwindow.
struct Settings {
  std::uint16_t port = kDefaultPort;
  std::uint32_t window = kDefaultWindow;
};
inline constexpr std::array<std::string_view, 3> kDaemonKeys = {"fwknop", "fwknopport", "fwknopwindow"};
// Throws ConfigError at the setting for a bad value (port 1..65535, window 1..86400).
Settings settings(const codec::SettingLookup& lookup);
Settings settings_from_config(const config::Value& root);

// Strict base64 (standard alphabet, no '=', zero stray bits) as fwknop writes it; exposed for
// the tests and tools. decode: false when `text` is not canonical or does not fit `out`.
bool base64_decode(std::string_view text, std::uint8_t* out, std::size_t capacity, std::size_t& length) noexcept;
std::string base64_encode(std::span<const std::uint8_t> bytes);

}  // namespace knock::fwknop
