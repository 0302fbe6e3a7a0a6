#include "codec/replay.hpp"

#include <sodium.h>

#include <charconv>
#include <limits>

namespace knock::spa {
namespace {

constexpr char kHex[] = "0123456789abcdef";

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

ReplayCache::ReplayCache(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {
  init_sodium();
  std::size_t table = 16;
  while (table < 2 * capacity_) table *= 2;
  slots_.assign(table, Slot{Identity{}, kEmpty});
  mask_ = table - 1;
  crypto_shorthash_keygen(hash_key_.data());
}

Identity ReplayCache::identity_of(std::span<const std::uint8_t> bytes) noexcept {
  Identity id{};
  if (bytes.size() == id.size()) {
    std::copy(bytes.begin(), bytes.end(), id.begin());
  } else {
    crypto_generichash(id.data(), id.size(), bytes.data(), bytes.size(), nullptr, 0);
  }
  return id;
}

std::size_t ReplayCache::home(const Identity& id) const noexcept {
  std::array<std::uint8_t, crypto_shorthash_BYTES> h{};
  crypto_shorthash(h.data(), id.data(), id.size(), hash_key_.data());
  std::uint64_t v = 0;
  for (auto b : h) v = (v << 8) | b;
  return static_cast<std::size_t>(v) & mask_;
}

void ReplayCache::place(const Slot& slot) noexcept {
  std::size_t i = home(slot.id);
  while (slots_[i].expiry != kEmpty) i = (i + 1) & mask_;
  slots_[i] = slot;
}

bool ReplayCache::contains(const Identity& id) const noexcept {
  for (std::size_t i = home(id);; i = (i + 1) & mask_) {
    if (slots_[i].expiry == kEmpty) return false;
    // Identities are public (tags, ciphertexts): no need for a constant-time comparison.
    if (slots_[i].id == id) return true;
  }
}

ReplayCache::Result ReplayCache::insert(const Identity& id, std::int64_t expiry, std::int64_t now) noexcept {
  if (expiry == kEmpty) expiry = kEmpty + 1;
  std::size_t i = home(id);
  for (;; i = (i + 1) & mask_) {
    if (slots_[i].expiry == kEmpty) break;
    if (slots_[i].id == id) return Result::Replay;  // even if expired: fail closed
  }
  if (count_ >= capacity_) {
    if (expire(now) == 0) return Result::Full;
    place(Slot{id, expiry});  // positions moved: probe again
  } else {
    slots_[i] = Slot{id, expiry};
  }
  ++count_;
  return Result::Fresh;
}

std::size_t ReplayCache::expire(std::int64_t now) noexcept {
  std::size_t dropped = 0;
  for (auto& s : slots_)
    if (s.expiry != kEmpty && s.expiry < now) {
      s.expiry = kEmpty;
      ++dropped;
    }
  if (dropped == 0) return 0;
  count_ -= dropped;
  // Linear probing needs unbroken runs: re-place every entry, starting after a free slot so that
  // each run is handled from its start. Each entry moves only to an earlier slot of its own run.
  std::size_t start = 0;
  while (slots_[start].expiry != kEmpty) ++start;  // exists: count_ < capacity_ <= slots / 2
  for (std::size_t k = 1; k <= slots_.size(); ++k) {
    const std::size_t i = (start + k) & mask_;
    if (slots_[i].expiry == kEmpty) continue;
    const Slot s = slots_[i];
    slots_[i].expiry = kEmpty;
    place(s);
  }
  return dropped;
}

void ReplayCache::clear() noexcept {
  for (auto& s : slots_) s.expiry = kEmpty;
  count_ = 0;
}

std::string ReplayCache::save() const {
  std::string out;
  out.reserve(count_ * 54);
  for (const auto& s : slots_) {
    if (s.expiry == kEmpty) continue;
    for (auto b : s.id) {
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
    out += ' ';
    out += std::to_string(s.expiry);
    out += '\n';
  }
  return out;
}

ReplayCache::LoadCounts ReplayCache::load(std::string_view text, std::int64_t now) {
  LoadCounts c;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    Identity id{};
    bool good = line.size() > 33 && line[32] == ' ';
    for (std::size_t i = 0; good && i < 16; ++i) {
      const int hi = hex_digit(line[2 * i]);
      const int lo = hex_digit(line[2 * i + 1]);
      if (hi < 0 || lo < 0) good = false;
      else id[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    std::int64_t expiry = 0;
    if (good) {
      const char* b = line.data() + 33;
      const char* e = line.data() + line.size();
      const auto [p, ec] = std::from_chars(b, e, expiry);
      good = ec == std::errc{} && p == e && expiry != kEmpty;
    }
    if (!good) {
      ++c.bad;
      continue;
    }
    if (expiry < now) {
      ++c.expired;
      continue;
    }
    if (insert(id, expiry, now) == Result::Fresh) ++c.loaded;
    else ++c.refused;
  }
  return c;
}

}  // namespace knock::spa
