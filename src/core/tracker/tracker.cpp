#include "tracker/tracker.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>

#include "util/log.hpp"

namespace knock::tracker {

namespace detail {
// The fixed part of one tracked source; its ports, times and fingerprints live in the
// tracker's arrays at the same index.
struct Slot {
  IpAddress key;
  double base = 0;       // the time that times[] == 0 stands for
  double last_seen = 0;  // newest port's observation time
  std::uint32_t prev = 0xffffffffu, next = 0xffffffffu;  // LRU list of its segment, or free list
  std::uint32_t hash = 0;
  std::uint32_t newest_ms = 0;  // times[] of the newest port (the ring is kept in time order)
  std::uint32_t shown = 0;      // ports shown since the slot was taken (saturating)
  std::uint16_t head = 0, count = 0;           // port ring: oldest index, ports queued
  std::uint16_t seen_pos = 0, seen_count = 0;  // fingerprint ring
  Segment segment = Segment::None;
};
}  // namespace detail

namespace {

// Past this many ms since a slot's base time, times are rebased on the oldest live port.
constexpr std::uint32_t kRebaseAtMs = 0xF0000000u;

std::size_t effective_sources(const TrackerOptions& o) noexcept {
  return o.max_sources != 0 ? o.max_sources : default_max_sources(o.knock_length);
}

std::size_t index_capacity(std::size_t sources) noexcept {
  return std::bit_ceil(std::max<std::size_t>(4, 2 * sources));  // load factor <= 1/2
}

std::size_t per_source_bytes(std::size_t length) noexcept {
  // mirrored port ring (2L x 2 bytes) + times (L x 4) + fingerprints (L x 4)
  return sizeof(detail::Slot) + 12 * length;
}

// 32 bits of a 64-bit bijective mix (murmur3 fmix64) of (source port, seq): two different SYNs
// of one source collide with probability 2^-32, whatever the pattern of their numbers.
std::uint32_t fingerprint(std::uint16_t sport, std::uint32_t seq) noexcept {
  std::uint64_t x = (static_cast<std::uint64_t>(sport) << 32) | seq;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<std::uint32_t>(x);
}

SipKey random_key() {
  std::random_device rd;
  SipKey k{};
  for (auto& w : k) w = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  return k;
}

}  // namespace

std::size_t default_max_sources(std::size_t knock_length) noexcept {
  const std::size_t length = std::clamp<std::size_t>(knock_length, 1, kMaxKnockLength);
  const std::size_t per = per_source_bytes(length) + 2 * sizeof(std::uint32_t) * 2;
  return std::clamp<std::size_t>(kDefaultMemoryBudget / per, 1024, kDefaultMaxSourcesCap);
}

std::size_t memory_bytes(const TrackerOptions& o) noexcept {
  const std::size_t n = effective_sources(o);
  const std::size_t length = std::clamp<std::size_t>(o.knock_length, 1, kMaxKnockLength);
  if (n > kMaxSources) return SIZE_MAX;
  return n * per_source_bytes(length) + index_capacity(n) * 2 * sizeof(std::uint32_t);
}

std::optional<std::string> validate(const TrackerOptions& o) {
  if (o.knock_length < 1 || o.knock_length > kMaxKnockLength)
    return "knock length " + std::to_string(o.knock_length) + " is outside 1.." +
           std::to_string(kMaxKnockLength);
  const std::size_t n = effective_sources(o);
  if (n > kMaxSources)
    return "maxsources " + std::to_string(n) + " is above the limit of " + std::to_string(kMaxSources);
  if (!std::isfinite(o.knock_timeout) || o.knock_timeout <= 0 || o.knock_timeout > kMaxKnockTimeout)
    return "knocktimeout must be a number of seconds above 0 and at most " +
           std::to_string(static_cast<long>(kMaxKnockTimeout));
  if (!std::isfinite(o.summary_interval) || o.summary_interval < 0)
    return "summary interval must be a number of seconds, 0 or more";
  if (!(o.protected_share >= 0 && o.protected_share <= 1))
    return "protected share must be between 0 and 1";
  const std::size_t bytes = memory_bytes(o);
  if (bytes > kMaxMemory)
    return "maxsources " + std::to_string(n) + " with knocks of " + std::to_string(o.knock_length) +
           " ports needs " + std::to_string(bytes >> 20) + " MiB, above the limit of " +
           std::to_string(kMaxMemory >> 20) + " MiB; lower maxsources";
  return std::nullopt;
}

Tracker::Tracker(const TrackerOptions& options, DecodeFn decode) : decode_(decode) {
  if (auto problem = validate(options)) throw std::invalid_argument(*problem);
  length_ = options.knock_length;
  max_sources_ = effective_sources(options);
  timeout_ = options.knock_timeout;
  summary_interval_ = options.summary_interval;
  protected_cap_ = static_cast<std::size_t>(std::floor(options.protected_share * static_cast<double>(max_sources_)));
  if (max_sources_ > 1) protected_cap_ = std::min(protected_cap_, max_sources_ - 1);
  key_ = options.hash_key ? *options.hash_key : random_key();

  slots_ = std::make_unique<Slot[]>(max_sources_);
  // Not zeroed: pages are touched only as sources use them.
  ports_ = std::make_unique_for_overwrite<std::uint16_t[]>(max_sources_ * 2 * length_);
  times_ = std::make_unique_for_overwrite<std::uint32_t[]>(max_sources_ * length_);
  seen_ = std::make_unique_for_overwrite<std::uint32_t[]>(max_sources_ * length_);
  const std::size_t capacity = index_capacity(max_sources_);
  index_ = std::make_unique_for_overwrite<Bucket[]>(capacity);
  for (std::size_t b = 0; b < capacity; ++b) index_[b] = Bucket{0, kNil};
  index_mask_ = capacity - 1;
  allocated_bytes_ = memory_bytes(options);

  for (std::size_t i = max_sources_; i-- > 0;) {
    slots_[i].next = free_head_;
    free_head_ = static_cast<std::uint32_t>(i);
  }
}

Tracker::~Tracker() = default;

std::uint32_t Tracker::hash_of(const IpAddress& a) const noexcept {
  std::uint8_t buffer[17];
  std::memcpy(buffer, a.bytes(), 16);
  buffer[16] = a.is_v4() ? 4 : 6;
  return static_cast<std::uint32_t>(siphash24(key_, buffer, sizeof buffer));
}

std::uint32_t Tracker::find(const IpAddress& a, std::uint32_t h) const noexcept {
  for (std::size_t b = h & index_mask_;; b = (b + 1) & index_mask_) {
    const Bucket& e = index_[b];
    if (e.slot == kNil) return kNil;
    if (e.hash == h && slots_[e.slot].key == a) return e.slot;
  }
}

void Tracker::index_insert(std::uint32_t h, std::uint32_t slot) noexcept {
  std::size_t b = h & index_mask_;
  while (index_[b].slot != kNil) b = (b + 1) & index_mask_;
  index_[b] = Bucket{h, slot};
}

void Tracker::index_erase(std::uint32_t slot) noexcept {
  std::size_t i = slots_[slot].hash & index_mask_;
  while (index_[i].slot != slot) i = (i + 1) & index_mask_;
  // Backward-shift deletion: linear probing without tombstones.
  for (std::size_t j = (i + 1) & index_mask_;; j = (j + 1) & index_mask_) {
    if (index_[j].slot == kNil) break;
    const std::size_t home = index_[j].hash & index_mask_;
    // The entry at j may move to i unless its home lies cyclically in (i, j].
    const bool stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      index_[i] = index_[j];
      i = j;
    }
  }
  index_[i] = Bucket{0, kNil};
}

Tracker::List& Tracker::list_of(Segment s) noexcept { return s == Segment::Protected ? protected_ : probation_; }

void Tracker::unlink(std::uint32_t i) noexcept {
  Slot& s = slots_[i];
  List& l = list_of(s.segment);
  if (s.prev != kNil) slots_[s.prev].next = s.next; else l.head = s.next;
  if (s.next != kNil) slots_[s.next].prev = s.prev; else l.tail = s.prev;
  s.prev = s.next = kNil;
  --l.count;
}

void Tracker::link_tail(std::uint32_t i, Segment segment) noexcept {
  Slot& s = slots_[i];
  List& l = list_of(segment);
  s.segment = segment;
  s.prev = l.tail;
  s.next = kNil;
  if (l.tail != kNil) slots_[l.tail].next = i; else l.head = i;
  l.tail = i;
  ++l.count;
}

void Tracker::release(std::uint32_t i) noexcept {
  index_erase(i);
  unlink(i);
  Slot& s = slots_[i];
  s.segment = Segment::None;
  s.next = free_head_;
  free_head_ = i;
  --size_;
}

bool Tracker::expired(std::uint32_t i, double now) const noexcept { return slots_[i].last_seen < now - timeout_; }

void Tracker::expire(double now, std::size_t budget) noexcept {
  while (budget-- > 0) {
    std::uint32_t victim = kNil;
    if (probation_.head != kNil && expired(probation_.head, now)) victim = probation_.head;
    else if (protected_.head != kNil && expired(protected_.head, now)) victim = protected_.head;
    if (victim == kNil) return;
    ++counters_.expired_sources;
    counters_.expired_ports += slots_[victim].count;
    release(victim);
  }
}

std::uint32_t Tracker::allocate(double now) noexcept {
  if (free_head_ == kNil) {
    // Full: expired sources first, then the least recently seen probation source; protected
    // sources only when there is no probation source at all.
    expire(now, 1);
    if (free_head_ == kNil) {
      if (probation_.head != kNil) {
        ++counters_.evicted_probation;
        release(probation_.head);
      } else {
        ++counters_.evicted_protected;
        release(protected_.head);
      }
    }
  }
  const std::uint32_t i = free_head_;
  free_head_ = slots_[i].next;
  return i;
}

void Tracker::promote(std::uint32_t i) noexcept {
  unlink(i);
  if (protected_cap_ == 0) {
    link_tail(i, Segment::Probation);
    return;
  }
  if (protected_.count >= protected_cap_) {
    // Over its share: the least recently seen protected source gets a second chance in probation.
    const std::uint32_t j = protected_.head;
    unlink(j);
    link_tail(j, Segment::Probation);
    ++counters_.demoted;
  }
  link_tail(i, Segment::Protected);
}

void Tracker::drop_expired_ports(Slot& s, std::uint32_t i, double now) noexcept {
  if (s.count == 0) return;
  const double cutoff_ms = (now - timeout_ - s.base) * 1000.0;
  if (!(cutoff_ms > 0)) return;
  const std::uint32_t* t = times(i);
  while (s.count > 0 && static_cast<double>(t[s.head]) < cutoff_ms) {
    s.head = advance(s.head);
    --s.count;
    ++counters_.expired_ports;
  }
}

void Tracker::push_port(Slot& s, std::uint32_t i, std::uint16_t port, double now) noexcept {
  std::uint32_t* t = times(i);
  if (s.count == 0) {
    s.base = now;
    s.newest_ms = 0;
    s.head = 0;
  }
  double offset = (now - s.base) * 1000.0;
  if (offset >= kRebaseAtMs && s.count > 0) {
    // Rare (one knock_timeout bounds the live span): shift every live time by the oldest.
    const std::uint32_t shift = t[s.head];
    for (std::size_t k = 0, p = s.head; k < s.count; ++k, p = (p + 1 == length_ ? 0 : p + 1)) t[p] -= shift;
    s.base += shift / 1000.0;
    s.newest_ms -= shift;
    offset = (now - s.base) * 1000.0;
  }
  // Clamped to the newest time so the ring stays in time order when the clock steps back.
  std::uint32_t ms = s.newest_ms;
  if (offset > static_cast<double>(ms))
    ms = offset >= 4294967295.0 ? 0xffffffffu : static_cast<std::uint32_t>(offset);
  if (s.count == length_) {  // keep only the last L
    s.head = advance(s.head);
    --s.count;
  }
  std::size_t pos = s.head + s.count;
  if (pos >= length_) pos -= length_;
  std::uint16_t* p = ports(i);
  p[pos] = port;
  p[pos + length_] = port;
  t[pos] = ms;
  s.newest_ms = ms;
  ++s.count;
}

Outcome Tracker::observe(const capture::Observation& o) noexcept {
  double now = o.time;
  if (!std::isfinite(now)) now = last_now_;
  last_now_ = now;
  if (!last_summary_) last_summary_ = now;
  expire(now, 2);

  const std::uint32_t h = hash_of(o.source);
  std::uint32_t i = find(o.source, h);
  const bool fresh = i == kNil;
  if (fresh) {
    i = allocate(now);
    Slot& s = slots_[i];
    s.key = o.source;
    s.hash = h;
    s.base = now;
    s.last_seen = now;
    s.newest_ms = 0;
    s.shown = 0;
    s.head = s.count = 0;
    s.seen_pos = s.seen_count = 0;
    index_insert(h, i);
    link_tail(i, Segment::Probation);
    ++size_;
    ++counters_.new_sources;
  }
  Slot& s = slots_[i];

  if (o.has_tcp_seq) {
    const std::uint32_t fp = fingerprint(o.source_port, o.tcp_seq);
    std::uint32_t* seen = this->seen(i);
    if (!fresh && std::find(seen, seen + s.seen_count, fp) != seen + s.seen_count) {
      ++counters_.retransmits_dropped;
      if (log::enabled(log::Level::Debug))
        log::debug("retransmitted SYN from " + o.source.str() + " port " + std::to_string(o.dest_port) +
                   " (source port " + std::to_string(o.source_port) + ") ignored");
      return Outcome::Retransmit;
    }
    seen[s.seen_pos] = fp;
    s.seen_pos = advance(s.seen_pos);
    if (s.seen_count < length_) ++s.seen_count;
  }

  drop_expired_ports(s, i, now);
  push_port(s, i, o.dest_port, now);
  ++counters_.ports_queued;
  s.last_seen = std::max(s.last_seen, now);
  if (s.shown < 0xffffffffu) ++s.shown;
  if (s.segment == Segment::Probation && s.shown >= 2) {
    promote(i);
  } else {
    const Segment segment = s.segment;
    unlink(i);
    link_tail(i, segment);
  }

  const bool debug = log::enabled(log::Level::Debug);
  if (debug)
    log::debug("port " + std::to_string(o.dest_port) + " queued for " + o.source.str() + " (" +
               std::to_string(s.count) + "/" + std::to_string(length_) + ")");
  if (s.count < length_) return Outcome::Queued;

  ++counters_.decode_attempts;
  const std::span<const std::uint16_t> window(ports(i) + s.head, length_);
  if (decode_(window)) {
    ++counters_.knocks;
    s.count = 0;
    s.head = 0;
    if (debug) log::debug("decode attempt for " + o.source.str() + ": valid knock, queue cleared");
    return Outcome::Knock;
  }
  ++counters_.decode_failures;
  if (debug) log::debug("decode attempt for " + o.source.str() + ": not a knock");
  return Outcome::DecodeFailed;
}

std::optional<std::string> Tracker::summary_due(double now) {
  if (!last_summary_) {
    last_summary_ = now;
    return std::nullopt;
  }
  if (now - *last_summary_ < summary_interval_) return std::nullopt;
  const Counters& c = counters_;
  const Counters& r = reported_;
  const auto d = [](std::uint64_t a, std::uint64_t b) { return std::to_string(a - b); };
  if (c.ports_queued == r.ports_queued && c.retransmits_dropped == r.retransmits_dropped &&
      c.expired_sources == r.expired_sources && c.expired_ports == r.expired_ports)
    return std::nullopt;  // nothing happened (every other counter moves only with these)
  std::string line = "tracker: " + std::to_string(static_cast<long long>(std::llround(now - *last_summary_))) +
                     "s: " + d(c.ports_queued, r.ports_queued) + " ports queued from " +
                     d(c.new_sources, r.new_sources) + " new sources, " + d(c.decode_attempts, r.decode_attempts) +
                     " decode attempts (" + d(c.decode_failures, r.decode_failures) + " rejected), " +
                     d(c.knocks, r.knocks) + " knocks, " + d(c.retransmits_dropped, r.retransmits_dropped) +
                     " retransmits ignored, " + d(c.expired_ports, r.expired_ports) + " ports timed out, " +
                     d(c.expired_sources, r.expired_sources) + " sources timed out, evicted " +
                     d(c.evicted_probation, r.evicted_probation) + " probation + " +
                     d(c.evicted_protected, r.evicted_protected) + " protected, " + d(c.demoted, r.demoted) +
                     " demoted; tracking " + std::to_string(size_) + "/" + std::to_string(max_sources_) +
                     " sources (" + std::to_string(protected_.count) + " protected)";
  reported_ = counters_;
  last_summary_ = now;
  return line;
}

std::vector<std::uint16_t> Tracker::queue_of(const IpAddress& source) const {
  std::vector<std::uint16_t> out;
  const std::uint32_t i = find(source, hash_of(source));
  if (i == kNil) return out;
  const Slot& s = slots_[i];
  const std::uint16_t* p = ports_.get() + std::size_t{i} * 2 * length_;
  out.assign(p + s.head, p + s.head + s.count);
  return out;
}

Segment Tracker::segment_of(const IpAddress& source) const noexcept {
  const std::uint32_t i = find(source, hash_of(source));
  return i == kNil ? Segment::None : slots_[i].segment;
}

}  // namespace knock::tracker
