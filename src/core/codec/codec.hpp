#pragma once
// The knock codec: values -> bytes (KnockFormat) -> optional encryption (KnockCipher) ->
// N-bit symbols -> ports of the span (PortSpan), and back. See doc/PROTOCOL.md.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/cipher.hpp"
#include "codec/fields.hpp"
#include "codec/format.hpp"
#include "codec/portspan.hpp"
#include "util/error.hpp"
#include "util/secure.hpp"
#include "util/text.hpp"

namespace knock::config {
class Value;
}

namespace knock::codec {

enum class DecodeError : std::uint8_t {
  None,
  Length,         // wrong number of ports
  NotInSpan,      // a port outside the span
  SymbolPadding,  // the bits after the last byte are not zero
  Header,         // "RandomIV" header missing
  CipherPadding,  // PKCS#5 padding wrong (wrong key, cipher or corrupted knock)
  Checksum,       // CHECKSUM does not match
};
std::string_view to_string(DecodeError error) noexcept;

struct DecodeResult {
  DecodeError error = DecodeError::None;
  KnockValues values;  // valid when ok()
  bool ok() const noexcept { return error == DecodeError::None; }
};

// Any bytes <-> ports of a span (doc/PROTOCOL.md section 3), for every message that is spelled as
// a port knock (the original knock and the SPA message's port form).
// ceil(8 * bytes / N) ports.
std::size_t ports_for_bytes(const PortSpan& span, std::size_t bytes) noexcept;
std::vector<std::uint16_t> bytes_to_ports(const PortSpan& span, std::span<const std::uint8_t> bytes);
// Exactly ports_for_bytes(span, out.size()) ports -> out.size() bytes. Never throws, never
// allocates. Length, NotInSpan or SymbolPadding on failure.
DecodeError ports_to_bytes(const PortSpan& span, std::span<const std::uint16_t> ports,
                           std::span<std::uint8_t> out) noexcept;

// Largest number of bytes a knock can take on the wire (33 plain bytes padded to 8-byte blocks,
// 40, after the 16 bytes of "RandomIV" and the IV; 16-byte blocks take 48 and have no IV).
inline constexpr std::size_t kMaxWireBytes = 16 + 40;
static_assert(kMaxWireBytes >= (kMaxKnockBytes / 8 + 1) * 8 + 16 && kMaxWireBytes >= (kMaxKnockBytes / 16 + 1) * 16);

// The codec settings as written (config keys knock, portspan, encrypt, key, cipher, iv).
struct CodecSettings {
  std::string knock;
  Location knock_where;
  std::string portspan;
  Location portspan_where;
  bool encrypt = false;
  Location encrypt_where;
  SecureBytes key;  // the passphrase
  Location key_where;
  std::string cipher = "Blowfish";
  Location cipher_where;
  bool iv = false;
  Location iv_where;
};

using knock::parse_yes_no;

// A setting's text and where it was given; the lookup returns nullopt for an absent key.
struct SettingText {
  std::string text;
  Location where;
};
using SettingLookup = std::function<std::optional<SettingText>(std::string_view key)>;

// Reads the codec keys through `lookup`. Throws ConfigError (with the key's location) for a
// missing knock/portspan or a bad yes/no value.
CodecSettings codec_settings(const SettingLookup& lookup);
// The same from the top level of a parsed config (keys given twice are an error).
CodecSettings codec_settings_from_config(const config::Value& root);

class KnockCodec {
 public:
  // Throws ConfigError (at the offending setting) for any bad setting, including encrypt = yes
  // without a key.
  explicit KnockCodec(const CodecSettings& settings);

  const KnockFormat& format() const { return format_; }
  const PortSpan& span() const { return span_; }
  const KnockCipher* cipher() const { return cipher_.get(); }  // nullptr without encryption
  std::size_t wire_bytes() const { return wire_bytes_; }  // bytes mapped to ports, header included
  std::size_t ports_per_knock() const { return ports_; }  // L = ceil(8 * wire_bytes / N)

  // The bytes sent: the packed fields, encrypted if configured. Throws ConfigError for missing
  // or out-of-range values.
  std::vector<std::uint8_t> wire(const KnockValues& values) const;
  std::vector<std::uint16_t> encode(const KnockValues& values) const;
  // Deterministic form with a given IV (iv = yes only); for test vectors and documentation.
  std::vector<std::uint16_t> encode(const KnockValues& values, std::span<const std::uint8_t> iv) const;
  // Maps wire bytes to ports.
  std::vector<std::uint16_t> to_ports(std::span<const std::uint8_t> bytes) const;

  // Never throws, never allocates.
  DecodeResult decode(std::span<const std::uint16_t> ports) const noexcept;
  // Ports -> wire bytes (exactly wire_bytes() of them into out); the span, length and symbol
  // padding checks of decode().
  DecodeError to_bytes(std::span<const std::uint16_t> ports, std::span<std::uint8_t> out) const noexcept;

 private:
  KnockFormat format_;
  PortSpan span_;
  std::unique_ptr<KnockCipher> cipher_;
  std::size_t wire_bytes_ = 0;
  std::size_t ports_ = 0;
};

}  // namespace knock::codec
