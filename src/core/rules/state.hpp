#pragma once
// The state hash of state(k1,k2,...) and its cache file (statecache = PATH, usecache = yes).
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
    double mtime = 0;  // wall time of the last write (for stateexpire)
  };
  // Every key that holds a value, in key order.
  std::vector<Entry> entries() const;
  std::size_t size() const { return count_; }  // keys of all levels
  // The time stamped on values written from now on (wall clock, seconds since the epoch).
  void set_time(double now) { now_ = now; }
  // set() with an explicit time stamp (loading a cache).
  bool set_at(const std::vector<std::string>& keys, const Scalar& value, double mtime, std::string* error);
  // Checks keys and value against the limits except the number of keys; false with *error.
  bool check(const std::vector<std::string>& keys, const Scalar& value, std::string* error) const;
  // Keys that set(keys, ...) would create.
  std::size_t missing_nodes(const std::vector<std::string>& keys) const;
  // Drops every value last written before `before` (and keys left with neither value nor
  // children); returns how many values were dropped.
  std::size_t expire(double before);
  bool empty() const { return count_ == 0; }
  // Changes with every successful set() (to know whether to save).
  std::uint64_t generation() const { return generation_; }
  void clear();
  const StateLimits& limits() const { return limits_; }

 private:
  struct Node {
    Scalar value;
    bool has_value = false;
    double mtime = 0;
    std::map<std::string, std::unique_ptr<Node>, std::less<>> children;
  };
  static std::unique_ptr<Node> copy(const Node& n);
  StateLimits limits_;
  std::unique_ptr<Node> root_ = std::make_unique<Node>();
  std::size_t count_ = 0;
  std::uint64_t generation_ = 0;
  double now_ = 0;
};

// Where an overlay reads what it has not written when the state lives elsewhere (a store that
// a fleet of gateways shares, rules/store.hpp).
class StateReader {
 public:
  virtual ~StateReader() = default;
  // The stored form of the value at keys (encode_state_value; "" when there is none), or
  // nullopt with *error when it cannot be read now (the store is unreachable or too slow).
  virtual std::optional<std::string> read(const std::vector<std::string>& keys, std::string* error) = 0;
};

// The changes of one knock, staged: reads fall through to the tree (or to `remote`, each key
// read once and remembered with the form it had), writes stay here (checked against the tree's
// limits) until the engine commits them all or drops them all (-test, or a knock refused
// because something could not be recorded).
class OverlayState final : public StateStore {
 public:
  explicit OverlayState(const StateTree& base, StateReader* remote = nullptr) : base_(base), remote_(remote) {}
  Scalar get(const std::vector<std::string>& keys) const override;
  bool set(const std::vector<std::string>& keys, const Scalar& value, std::string* error) override;
  const std::map<std::vector<std::string>, Scalar>& writes() const { return writes_; }
  // Keys the tree would have to create for these writes (an upper bound).
  std::size_t missing_nodes() const;
  // With a remote reader: every key read and the stored form it had ("" for none), to check
  // that nothing changed them before the writes are applied.
  const std::map<std::vector<std::string>, std::string>& reads() const { return reads_; }
  // Why a remote read failed ("" when none did); `unavailable`: the store could not be reached
  // (else it held a value that is not one).
  const std::string& remote_error() const { return remote_error_; }
  bool remote_unavailable() const { return remote_unavailable_; }

 private:
  const StateTree& base_;
  StateReader* remote_ = nullptr;
  std::map<std::vector<std::string>, Scalar> writes_;
  mutable std::map<std::vector<std::string>, std::string> reads_;
  mutable std::string remote_error_;
  mutable bool remote_unavailable_ = false;
};

// A state value's stored form (as in the cache's S records: u, i42, n0.5, sTEXT with %XX
// escapes), and back (nullopt when malformed).
std::string encode_state_value(const Scalar& value);
std::optional<Scalar> decode_state_value(std::string_view stored);
// One key of a state path as the cache writes it: %XX for blanks, controls, non-ASCII and '%'.
std::string escape_state_key(std::string_view key);

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
  std::size_t journal_records = 0;  // records applied from PATH.journal
  std::string replay;               // replay identities: "HEX EXPIRY" lines (spa::ReplayCache::load)
};

// Large enough for maxpending (at most 1,000,000) closes of ordinary length; a bound, not a goal.
inline constexpr std::size_t kMaxCacheBytes = 1024u * 1024 * 1024;

// PATH's journal: PATH.journal.
std::string journal_path(const std::string& path);

// Reads the cache: the snapshot PATH and the records appended to PATH.journal since it was
// written (a journal that belongs to another snapshot is ignored; a torn last line, from a crash
// in the middle of a write, is dropped). nullopt when neither exists. Throws RuntimeError naming
// the file (and line) when it is unreadable, corrupt or truncated (CorruptCacheError), or not
// safe: a symlink, not a regular file, owned by a user other than root, the daemon or
// `also_owner`, writable by group or others, or in a directory others may write to without the
// sticky bit. Reads format 1 (before pending ids and time stamps) and 2.
std::optional<CacheContents> load_cache(const std::string& path, const StateLimits& limits = {},
                                        std::size_t max_pending = 10'000, long also_owner = -1);

// Replaces the snapshot atomically: temp file in the same directory (O_EXCL|O_NOFOLLOW, 0600),
// fsync, rename over PATH, fsync the directory. `journal` names the journal that belongs to it.
// Returns an error message, or nullopt on success.
std::optional<std::string> save_cache(const std::string& path, const StateTree& state,
                                      const std::vector<PendingCommand>& pending, std::uint64_t journal = 0,
                                      std::string_view replay = {}) noexcept;

// The snapshot text (also what save_cache writes).
// `replay`: spa::ReplayCache::save() lines ("HEX EXPIRY"), written as R records.
std::string serialize_cache(const StateTree& state, const std::vector<PendingCommand>& pending,
                            std::uint64_t journal = 0, std::string_view replay = {});

// Journal records (one line each, format in doc/RULES.md).
std::string state_record(const std::vector<std::string>& keys, const Scalar& value, double mtime);
std::string pending_record(const PendingCommand& command);
std::string done_record(std::uint64_t id);
std::string replay_record(std::string_view hex_identity, std::int64_t expiry);

// Keeps the cache on disk while the daemon runs: a snapshot now and then, and in between an
// append-only journal of what changed. An append is one write(2) (no fsync): once it returns,
// the change survives the daemon being killed; sync() (at most once per interval, and before
// exit) adds power-loss safety. An append that fails is undone (the journal is cut back), so a
// caller that gets an error knows nothing of it was recorded.
class CacheWriter {
 public:
  explicit CacheWriter(std::string path) : path_(std::move(path)) {}
  ~CacheWriter();
  CacheWriter(const CacheWriter&) = delete;
  CacheWriter& operator=(const CacheWriter&) = delete;

  // Writes a new snapshot of everything and starts an empty journal for it (both fsynced).
  std::optional<std::string> snapshot(const StateTree& state, const std::vector<PendingCommand>& pending,
                                      std::string_view replay = {}) noexcept;
  // Appends records; an error when there is no journal (no snapshot yet, or the last failed).
  std::optional<std::string> append(std::string_view records) noexcept;
  // fdatasync of the journal when something was appended since the last sync.
  std::optional<std::string> sync() noexcept;
  // Takes PATH.lock (flock, exclusive, without waiting): one daemon per cache. An error when
  // another process holds it.
  std::optional<std::string> lock() noexcept;
  // Lets go of the journal and the lock without a sync or a snapshot: what a crash leaves (tests).
  void abandon() noexcept;
  bool dirty() const { return dirty_; }
  bool ready() const { return fd_ >= 0; }
  std::size_t journal_bytes() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  int lock_fd_ = -1;
  std::size_t size_ = 0;
  bool dirty_ = false;
};

// Renames PATH to PATH.corrupt-<YYYYmmdd-HHMMSS> (adding -N if taken) to start afresh.
// Returns the new name; throws RuntimeError when the rename fails.
std::string move_cache_aside(const std::string& path, double now);

}  // namespace knock::rules
