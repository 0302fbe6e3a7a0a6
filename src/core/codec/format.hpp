#pragma once
// The knock format (`knock = IP,PORT,FLAG0,CHECKSUM`): which fields a knock carries, in which
// order, and their packing to bytes.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "codec/fields.hpp"
#include "util/error.hpp"

namespace knock::codec {

// Largest knock: every field once (4 + 16 + 2 + 10 + 1 bytes).
inline constexpr std::size_t kMaxKnockBytes = 33;

class KnockFormat {
 public:
  // Parses "F1,F2,..." (spaces around names allowed). An unknown, repeated or missing field name
  // throws ConfigError at `where`.
  static KnockFormat parse(std::string_view text, const Location& where);

  const std::vector<Field>& fields() const { return fields_; }
  bool has(Field f) const;
  std::size_t byte_length() const { return bytes_; }
  std::string str() const;  // "IP,PORT,FLAG0,CHECKSUM"

  // Throws ConfigError when a field of the format (other than CHECKSUM) has no value or a value
  // out of range (PORT > 65535, FLAGn > 255). CHECKSUM is computed.
  std::vector<std::uint8_t> pack(const KnockValues& values) const;

  // Unpacks exactly byte_length() bytes. Returns false (values untouched) when the length is wrong
  // or a CHECKSUM byte does not match; sets *checksum_failed in the latter case.
  bool unpack(std::span<const std::uint8_t> bytes, KnockValues& values, bool* checksum_failed = nullptr) const noexcept;

 private:
  std::vector<Field> fields_;
  std::size_t bytes_ = 0;
};

}  // namespace knock::codec
