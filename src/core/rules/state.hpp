#pragma once
// The state hash of state(k1,k2,...) and its cache file (statecache = PATH, usecache = yes).
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rules/expr.hpp"
#include "rules/scheduler.hpp"

namespace knock::rules {

struct StateLimits {
  std::size_t max_entries = 100'000;  // keys of all levels together
  std::size_t max_depth = 16;         // keys in one state(...)
  std::size_t max_key = 256;          // bytes of one key
  std::size_t max_value = 1024;       // bytes of one stored string
};

// A tree of keys; every key may hold a scalar and deeper keys. Reads never create keys.
class StateTree final : public StateStore {
 public:
  explicit StateTree(StateLimits limits = {}) : limits_(limits) {}
  StateTree(const StateTree& other);
  StateTree& operator=(const StateTree& other);
  StateTree(StateTree&&) noexcept = default;
  StateTree& operator=(StateTree&&) noexcept = default;

  Scalar get(const std::vector<std::string>& keys) const override;
  bool set(const std::vector<std::string>& keys, const Scalar& value, std::string* error) override;

  struct Entry {
    std::vector<std::string> keys;
    Scalar value;
  };
  // Every key that holds a value, in key order.
  std::vector<Entry> entries() const;
  std::size_t size() const { return count_; }  // keys of all levels
  bool empty() const { return count_ == 0; }
  // Changes with every successful set() (to know whether to save).
  std::uint64_t generation() const { return generation_; }
  void clear();
  const StateLimits& limits() const { return limits_; }

 private:
  struct Node {
    Scalar value;
    bool has_value = false;
    std::map<std::string, std::unique_ptr<Node>, std::less<>> children;
  };
  static std::unique_ptr<Node> copy(const Node& n);
  StateLimits limits_;
  std::unique_ptr<Node> root_ = std::make_unique<Node>();
  std::size_t count_ = 0;
  std::uint64_t generation_ = 0;
};

// For -test: reads fall through to a tree, writes stay here and are dropped with the overlay.
class OverlayState final : public StateStore {
 public:
  explicit OverlayState(const StateStore& base) : base_(base) {}
  Scalar get(const std::vector<std::string>& keys) const override;
  bool set(const std::vector<std::string>& keys, const Scalar& value, std::string* error) override;

 private:
  const StateStore& base_;
  std::map<std::vector<std::string>, Scalar> writes_;
};

// ---- the cache file (format in doc/RULES.md) ----

// A state cache whose contents cannot be read back (truncated, damaged, too large): the one
// kind of cache error that -fresh may resolve by moving the file aside. Unsafe permissions, a
// symlink or an open directory are plain RuntimeErrors: chmod, not -fresh, is their fix.
class CorruptCacheError : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

struct CacheContents {
  StateTree state;
  std::vector<PendingCommand> pending;
};

inline constexpr std::size_t kMaxCacheBytes = 64 * 1024 * 1024;

// Reads the cache. nullopt when the file does not exist. Throws RuntimeError naming the file
// (and line) when it is unreadable, corrupt or truncated, or not safe: a symlink, not a regular
// file, owned by another user, writable by group or others, or in a directory others may write
// to without the sticky bit.
std::optional<CacheContents> load_cache(const std::string& path, const StateLimits& limits = {},
                                        std::size_t max_pending = 10'000);

// Replaces the cache atomically: temp file in the same directory (O_EXCL|O_NOFOLLOW, 0600),
// fsync, rename over PATH, fsync the directory. Returns an error message, or nullopt on success.
// With sync = false the two fsyncs are left to sync_cache(): the rename alone already survives
// the daemon being killed (the kernel has the data); the fsyncs add power-loss safety, and the
// engine does them after starting a knock's commands rather than before.
std::optional<std::string> save_cache(const std::string& path, const StateTree& state,
                                      const std::vector<PendingCommand>& pending, bool sync = true) noexcept;
// fsync of the cache file and its directory (the second half of save_cache with sync = false).
std::optional<std::string> sync_cache(const std::string& path) noexcept;

// The cache text (also what save_cache writes).
std::string serialize_cache(const StateTree& state, const std::vector<PendingCommand>& pending);

// Renames PATH to PATH.corrupt-<YYYYmmdd-HHMMSS> (adding -N if taken) to start afresh.
// Returns the new name; throws RuntimeError when the rename fails.
std::string move_cache_aside(const std::string& path, double now);

}  // namespace knock::rules
