#pragma once
// Per-source knock tracking: the ports each remote address has sent into the span, newest last,
// and the decode attempt on the last L of them. Fixed memory, O(1) work per packet, and an
// eviction policy that keeps real clients under a flood of spoofed sources (doc/TRACKER.md).
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "capture/observation.hpp"
#include "tracker/siphash.hpp"
#include "util/address.hpp"

namespace knock::tracker {

namespace detail {
struct Slot;
}

inline constexpr std::size_t kMaxKnockLength = 4096;
inline constexpr std::size_t kMaxSources = std::size_t{1} << 24;
inline constexpr std::size_t kDefaultMaxSourcesCap = 65536;
inline constexpr std::size_t kDefaultMemoryBudget = std::size_t{64} << 20;  // for the default only
inline constexpr std::size_t kMaxMemory = std::size_t{1} << 30;  // any configuration
inline constexpr double kMaxKnockTimeout = 1e6;                  // seconds (~11.5 days)

struct TrackerOptions {
  std::size_t knock_length = 1;  // L: ports in a complete knock, 1..kMaxKnockLength
  // Config key `maxsources`; 0 = default_max_sources(knock_length).
  std::size_t max_sources = 0;
  double knock_timeout = 30;      // config key `knocktimeout`, seconds, (0, kMaxKnockTimeout]
  double summary_interval = 60;   // seconds between summary lines, >= 0
  double protected_share = 0.5;   // most of the table sources with >= 2 ports may hold, [0, 1]
  std::optional<SipKey> hash_key;  // tests only; normally drawn from the system's random source
};

// 65536, or fewer when L is so long that 65536 sources would pass kDefaultMemoryBudget.
std::size_t default_max_sources(std::size_t knock_length) noexcept;
// Bytes the tracker allocates for these options (the whole bound: no growth after construction).
std::size_t memory_bytes(const TrackerOptions& options) noexcept;
// nullopt when the options are usable, else a message naming the offending key
// ("maxsources ...", "knocktimeout ...") for the caller to turn into a ConfigError.
std::optional<std::string> validate(const TrackerOptions& options);

// A non-owning reference to the decoder: bool(std::span<const std::uint16_t> last_L_ports).
// It must not throw and must outlive the Tracker. Returns true for a valid knock (the caller keeps
// the decoded result in its own state, e.g. captured by the lambda).
class DecodeFn {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, DecodeFn> &&
             std::is_invocable_r_v<bool, F&, std::span<const std::uint16_t>>)
  DecodeFn(F& f) noexcept  // NOLINT(google-explicit-constructor)
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, std::span<const std::uint16_t> w) noexcept -> bool {
          return (*static_cast<F*>(o))(w);
        }) {}
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, DecodeFn> && !std::is_lvalue_reference_v<F>)
  DecodeFn(F&&) = delete;  // would dangle

  bool operator()(std::span<const std::uint16_t> window) const noexcept { return call_(object_, window); }

 private:
  void* object_;
  bool (*call_)(void*, std::span<const std::uint16_t>) noexcept;
};

enum class Outcome : std::uint8_t {
  Queued,        // port appended; fewer than L ports queued
  Retransmit,    // same source, source port and TCP sequence number as a port already seen
  DecodeFailed,  // L ports queued, the last L are not a knock; the queue is kept
  Knock,         // the last L ports were a valid knock; the queue was cleared
};

enum class Segment : std::uint8_t { None, Probation, Protected };

struct Counters {
  std::uint64_t ports_queued = 0;
  std::uint64_t decode_attempts = 0;
  std::uint64_t decode_failures = 0;
  std::uint64_t knocks = 0;
  std::uint64_t retransmits_dropped = 0;
  std::uint64_t new_sources = 0;
  std::uint64_t evicted_probation = 0;  // live sources pushed out for a new one
  std::uint64_t evicted_protected = 0;
  std::uint64_t demoted = 0;            // protected -> probation (protected share exceeded)
  std::uint64_t expired_ports = 0;      // ports dropped for being older than knock_timeout
  std::uint64_t expired_sources = 0;    // sources whose last port timed out, slot reclaimed
};

class Tracker {
 public:
  // Throws std::invalid_argument when validate(options) fails, std::bad_alloc.
  Tracker(const TrackerOptions& options, DecodeFn decode);
  ~Tracker();
  Tracker(const Tracker&) = delete;
  Tracker& operator=(const Tracker&) = delete;

  // One port from one source at observation.time (never the wall clock). The caller has checked
  // that dest_port is in the span (ports are passed to the decoder as they are).
  Outcome observe(const capture::Observation& observation) noexcept;

  // Reclaims up to `budget` sources whose every port is older than knock_timeout at `now`.
  void expire(double now, std::size_t budget = 64) noexcept;

  // One line of counts since the previous line, when anything happened and at least
  // summary_interval seconds passed since the previous line (or the first call/observation).
  std::optional<std::string> summary_due(double now);

  const Counters& counters() const noexcept { return counters_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t protected_size() const noexcept { return protected_.count; }
  std::size_t max_sources() const noexcept { return max_sources_; }
  std::size_t protected_cap() const noexcept { return protected_cap_; }
  std::size_t knock_length() const noexcept { return length_; }
  std::size_t allocated_bytes() const noexcept { return allocated_bytes_; }

  // Inspection (tests, debug): the ports queued for a source, oldest first, and its segment.
  std::vector<std::uint16_t> queue_of(const IpAddress& source) const;
  Segment segment_of(const IpAddress& source) const noexcept;

 private:
  using Slot = detail::Slot;
  static constexpr std::uint32_t kNil = 0xffffffffu;
  struct Bucket {
    std::uint32_t hash;
    std::uint32_t slot;  // kNil: empty
  };
  struct List {
    std::uint32_t head = kNil;  // least recently used
    std::uint32_t tail = kNil;
    std::size_t count = 0;
  };

  std::uint32_t hash_of(const IpAddress& a) const noexcept;
  std::uint32_t find(const IpAddress& a, std::uint32_t h) const noexcept;
  void index_insert(std::uint32_t h, std::uint32_t slot) noexcept;
  void index_erase(std::uint32_t slot) noexcept;
  List& list_of(Segment s) noexcept;
  void unlink(std::uint32_t i) noexcept;
  void link_tail(std::uint32_t i, Segment s) noexcept;
  void release(std::uint32_t i) noexcept;  // unindex, unlink, onto the free list
  bool expired(std::uint32_t i, double now) const noexcept;
  std::uint32_t allocate(double now) noexcept;
  void promote(std::uint32_t i) noexcept;
  void drop_expired_ports(Slot& s, std::uint32_t i, double now) noexcept;
  void push_port(Slot& s, std::uint32_t i, std::uint16_t port, double now) noexcept;
  std::uint16_t advance(std::uint16_t ring_index) const noexcept {
    return static_cast<std::uint16_t>(std::size_t{ring_index} + 1 == length_ ? 0 : ring_index + 1);
  }
  std::uint16_t* ports(std::uint32_t i) noexcept { return ports_.get() + std::size_t{i} * 2 * length_; }
  std::uint32_t* times(std::uint32_t i) noexcept { return times_.get() + std::size_t{i} * length_; }
  std::uint32_t* seen(std::uint32_t i) noexcept { return seen_.get() + std::size_t{i} * length_; }

  std::size_t length_;
  std::size_t max_sources_;
  double timeout_;
  double summary_interval_;
  std::size_t protected_cap_;
  SipKey key_{};
  DecodeFn decode_;

  std::unique_ptr<Slot[]> slots_;
  std::unique_ptr<std::uint16_t[]> ports_;  // 2L per slot: a mirrored ring, so the window is contiguous
  std::unique_ptr<std::uint32_t[]> times_;  // L per slot: ms since the slot's base time
  std::unique_ptr<std::uint32_t[]> seen_;   // L per slot: fingerprints of (source port, TCP seq)
  std::unique_ptr<Bucket[]> index_;
  std::size_t index_mask_ = 0;
  std::size_t allocated_bytes_ = 0;

  std::uint32_t free_head_ = kNil;
  List probation_, protected_;
  std::size_t size_ = 0;

  Counters counters_{};
  Counters reported_{};
  std::optional<double> last_summary_;
  double last_now_ = 0;  // stands in for a non-finite observation time
};

}  // namespace knock::tracker
