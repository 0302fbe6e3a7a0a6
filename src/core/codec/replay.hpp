#pragma once
// A bounded replay cache: 16-byte identities of accepted messages, each kept until its expiry.
// Used for the SPA message (identity = its tag, expiry = send time + window) and for the original
// knock with `iv = yes` (identity = a hash of the ciphertext after the IV: a knock whose body was
// already accepted is a replay or an IV-bit-flip forgery).
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/spa.hpp"

namespace knock::spa {

class ReplayCache {
 public:
  enum class Result : std::uint8_t {
    Fresh,   // remembered now: accept the message
    Replay,  // already present: refuse
    Full,    // capacity entries that are all still live: refuse (fail closed, nothing evicted)
  };

  // Room for `capacity` live entries (>= 1): an open-addressing table of at least 2 * capacity
  // slots, allocated once here.
  explicit ReplayCache(std::size_t capacity = kDefaultReplayCapacity);

  // The identity of any bytes: the bytes themselves when exactly 16, else their 16-byte BLAKE2b
  // (crypto_generichash). Never throws, never allocates.
  static Identity identity_of(std::span<const std::uint8_t> bytes) noexcept;

  // Remembers `id` until `expiry` (inclusive; Unix seconds) unless present. When the cache is
  // full, expired entries (expiry < now) are dropped first. O(1) on average; never allocates.
  Result insert(const Identity& id, std::int64_t expiry, std::int64_t now) noexcept;
  bool contains(const Identity& id) const noexcept;
  // Drops the entries with expiry < now. O(capacity); returns how many were dropped.
  std::size_t expire(std::int64_t now) noexcept;
  void clear() noexcept;

  std::size_t size() const noexcept { return count_; }
  std::size_t capacity() const noexcept { return capacity_; }

  // Text form, one entry a line: 32 lower-case hex digits, a space, the expiry in decimal.
  std::string save() const;
  struct LoadCounts {
    std::size_t loaded = 0;   // added
    std::size_t expired = 0;  // skipped: expiry < now
    std::size_t bad = 0;      // skipped: not a valid line
    std::size_t refused = 0;  // skipped: duplicate or cache full
  };
  // Adds the entries of `text` (hostile input: every line is checked; never throws on content).
  LoadCounts load(std::string_view text, std::int64_t now);

 private:
  struct Slot {
    Identity id;
    std::int64_t expiry;  // kEmpty = free slot
  };
  static constexpr std::int64_t kEmpty = INT64_MIN;

  std::size_t home(const Identity& id) const noexcept;
  void place(const Slot& slot) noexcept;  // into the first free slot of its probe sequence

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t capacity_ = 0;
  std::size_t count_ = 0;
  std::array<std::uint8_t, 16> hash_key_{};  // random SipHash key: slot positions are unpredictable
};

}  // namespace knock::spa
