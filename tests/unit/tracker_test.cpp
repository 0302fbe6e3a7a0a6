#include "tracker/tracker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include "util/log.hpp"

using knock::IpAddress;
using knock::capture::Observation;
using namespace knock::tracker;

namespace {

// Valid when the window equals `target`; records every window it was shown.
struct FakeDecoder {
  std::vector<std::uint16_t> target;
  std::vector<std::vector<std::uint16_t>> windows;
  bool operator()(std::span<const std::uint16_t> w) {
    windows.emplace_back(w.begin(), w.end());
    return std::equal(w.begin(), w.end(), target.begin(), target.end());
  }
};

IpAddress ip(const char* text) { return *IpAddress::parse(text); }

Observation obs(const IpAddress& source, std::uint16_t port, double time) {
  Observation o;
  o.source = source;
  o.destination = ip("198.18.255.1");
  o.dest_port = port;
  o.source_port = 40000;
  o.time = time;
  return o;
}

Observation syn(const IpAddress& source, std::uint16_t port, double time, std::uint16_t sport, std::uint32_t seq) {
  Observation o = obs(source, port, time);
  o.source_port = sport;
  o.tcp_seq = seq;
  o.has_tcp_seq = true;
  o.tcp_flags = knock::capture::kTcpSyn;
  return o;
}

// Distinct spoofed sources in 2001:db8::/32, spread over the space by a mixing function.
IpAddress spoofed(std::uint64_t n) {
  std::uint64_t x = n + 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  std::uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8};
  for (int i = 0; i < 4; ++i) b[4 + i] = static_cast<std::uint8_t>(n >> (8 * i));  // keeps them distinct
  for (int i = 0; i < 8; ++i) b[8 + i] = static_cast<std::uint8_t>(x >> (8 * i));
  return IpAddress::v6_bytes(b);
}

TrackerOptions opts(std::size_t length, std::size_t max_sources = 1024, double timeout = 30) {
  TrackerOptions o;
  o.knock_length = length;
  o.max_sources = max_sources;
  o.knock_timeout = timeout;
  return o;
}

}  // namespace

TEST(SipHash, ReferenceVectors) {
  // From the SipHash paper's test vectors: key 00..0f.
  SipKey key{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
  std::uint8_t msg[64];
  for (int i = 0; i < 64; ++i) msg[i] = static_cast<std::uint8_t>(i);
  EXPECT_EQ(siphash24(key, msg, 0), 0x726fdb47dd0e0e31ull);
  EXPECT_EQ(siphash24(key, msg, 15), 0xa129ca6149be45e5ull);
  EXPECT_EQ(siphash24(key, msg, 8), 0x93f5f5799a932462ull);
}

TEST(Tracker, QueueOrderAndSlidingWindow) {
  FakeDecoder dec{{9, 9, 9, 9}, {}};
  Tracker t(opts(4), dec);
  const IpAddress a = ip("198.18.0.1");
  EXPECT_EQ(t.observe(obs(a, 1, 100)), Outcome::Queued);
  EXPECT_EQ(t.observe(obs(a, 2, 101)), Outcome::Queued);
  EXPECT_EQ(t.observe(obs(a, 3, 102)), Outcome::Queued);
  EXPECT_EQ(t.queue_of(a), (std::vector<std::uint16_t>{1, 2, 3}));
  EXPECT_TRUE(dec.windows.empty());
  EXPECT_EQ(t.observe(obs(a, 4, 103)), Outcome::DecodeFailed);
  EXPECT_EQ(t.observe(obs(a, 5, 104)), Outcome::DecodeFailed);
  EXPECT_EQ(t.observe(obs(a, 6, 105)), Outcome::DecodeFailed);
  ASSERT_EQ(dec.windows.size(), 3u);
  EXPECT_EQ(dec.windows[0], (std::vector<std::uint16_t>{1, 2, 3, 4}));
  EXPECT_EQ(dec.windows[1], (std::vector<std::uint16_t>{2, 3, 4, 5}));
  EXPECT_EQ(dec.windows[2], (std::vector<std::uint16_t>{3, 4, 5, 6}));
  EXPECT_EQ(t.queue_of(a), (std::vector<std::uint16_t>{3, 4, 5, 6}));  // kept after a failure
  EXPECT_EQ(t.counters().decode_attempts, 3u);
  EXPECT_EQ(t.counters().decode_failures, 3u);
  EXPECT_EQ(t.counters().ports_queued, 6u);
  // The mirrored ring wraps many times and still gives the right window.
  for (std::uint16_t p = 7; p < 100; ++p) t.observe(obs(a, p, 106));
  EXPECT_EQ(dec.windows.back(), (std::vector<std::uint16_t>{96, 97, 98, 99}));
}

TEST(Tracker, KnockCompletesAtExactlyL) {
  FakeDecoder dec{{10, 20, 30}, {}};
  Tracker t(opts(3), dec);
  const IpAddress a = ip("198.18.0.2");
  EXPECT_EQ(t.observe(obs(a, 10, 1)), Outcome::Queued);
  EXPECT_EQ(t.observe(obs(a, 20, 1)), Outcome::Queued);
  EXPECT_EQ(t.counters().decode_attempts, 0u);
  EXPECT_EQ(t.observe(obs(a, 30, 1)), Outcome::Knock);
  EXPECT_EQ(t.counters().decode_attempts, 1u);
  EXPECT_EQ(t.counters().knocks, 1u);
  EXPECT_TRUE(t.queue_of(a).empty());
}

TEST(Tracker, LengthOne) {
  FakeDecoder dec{{7}, {}};
  Tracker t(opts(1), dec);
  const IpAddress a = ip("198.18.0.2");
  EXPECT_EQ(t.observe(obs(a, 6, 1)), Outcome::DecodeFailed);
  EXPECT_EQ(t.observe(obs(a, 7, 1)), Outcome::Knock);
  EXPECT_EQ(t.observe(obs(a, 7, 1)), Outcome::Knock);
}

TEST(Tracker, GarbagePrefixThenValidKnock) {
  FakeDecoder dec{{10, 20, 30}, {}};
  Tracker t(opts(3), dec);
  const IpAddress a = ip("198.18.0.3");
  for (std::uint16_t p : {7, 8, 9, 10, 20}) EXPECT_NE(t.observe(obs(a, p, 5)), Outcome::Knock);
  EXPECT_EQ(t.observe(obs(a, 30, 5)), Outcome::Knock);
  EXPECT_EQ(t.counters().decode_attempts, 4u);
  EXPECT_EQ(t.counters().decode_failures, 3u);
}

TEST(Tracker, QueueClearedAfterValidKnock) {
  FakeDecoder dec{{10, 20, 30}, {}};
  Tracker t(opts(3), dec);
  const IpAddress a = ip("198.18.0.4");
  for (std::uint16_t p : {10, 20}) t.observe(obs(a, p, 1));
  ASSERT_EQ(t.observe(obs(a, 30, 1)), Outcome::Knock);
  // Without the clear, 20,30,10 and 30,10,20 would be decoded; now nothing until L new ports.
  EXPECT_EQ(t.observe(obs(a, 10, 2)), Outcome::Queued);
  EXPECT_EQ(t.observe(obs(a, 20, 2)), Outcome::Queued);
  EXPECT_EQ(t.counters().decode_attempts, 1u);
  EXPECT_EQ(t.observe(obs(a, 30, 2)), Outcome::Knock);
  EXPECT_EQ(t.counters().knocks, 2u);
}

TEST(Tracker, PortsOlderThanTimeoutDropOut) {
  FakeDecoder dec{{20, 30, 40}, {}};
  Tracker t(opts(3, 16, 30), dec);
  const IpAddress a = ip("198.18.0.5");
  const double t0 = 1.7e9;  // packet timestamps, far from the wall clock of the test run
  t.observe(obs(a, 10, t0));
  t.observe(obs(a, 20, t0 + 10));
  EXPECT_EQ(t.observe(obs(a, 30, t0 + 35)), Outcome::Queued);  // 10 is 35 s old: gone
  EXPECT_EQ(t.queue_of(a), (std::vector<std::uint16_t>{20, 30}));
  EXPECT_EQ(t.counters().expired_ports, 1u);
  EXPECT_EQ(t.observe(obs(a, 40, t0 + 39.9)), Outcome::Knock);  // 20 is 29.9 s old: still in

  // All ports old: the whole queue goes, and the source's slot is reclaimed.
  const IpAddress b = ip("198.18.0.6");
  t.observe(obs(b, 1, t0 + 40));
  t.observe(obs(b, 2, t0 + 41));
  EXPECT_EQ(t.observe(obs(b, 3, t0 + 80)), Outcome::Queued);
  EXPECT_EQ(t.queue_of(b), (std::vector<std::uint16_t>{3}));
  const std::size_t before = t.size();
  t.expire(t0 + 200);
  EXPECT_LT(t.size(), before);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.segment_of(b), Segment::None);
}

TEST(Tracker, ClockSteppingBackKeepsOrder) {
  FakeDecoder dec{{1, 2, 3}, {}};
  Tracker t(opts(3, 16, 30), dec);
  const IpAddress a = ip("198.18.0.7");
  t.observe(obs(a, 1, 1000));
  t.observe(obs(a, 2, 990));  // out-of-order timestamp
  EXPECT_EQ(t.observe(obs(a, 3, std::numeric_limits<double>::quiet_NaN())), Outcome::Knock);
}

TEST(Tracker, LongRunningSourceRebasesTimes) {
  // One port every 20 s for ~60 days: offsets pass 2^32 ms and must be rebased, not wrap.
  FakeDecoder dec{{}, {}};
  Tracker t(opts(2, 4, 30), dec);
  const IpAddress a = ip("198.18.0.8");
  double now = 1e9;
  for (int k = 0; k < 60 * 86400 / 20; ++k, now += 20) t.observe(obs(a, static_cast<std::uint16_t>(k), now));
  EXPECT_EQ(t.queue_of(a).size(), 2u);  // 20 s apart: both alive
  EXPECT_EQ(t.observe(obs(a, 1, now + 31)), Outcome::Queued);
  EXPECT_EQ(t.queue_of(a), (std::vector<std::uint16_t>{1}));
}

TEST(Tracker, RetransmittedSynCountsOnce) {
  FakeDecoder dec{{10, 20, 30}, {}};
  Tracker t(opts(3), dec);
  const IpAddress a = ip("198.18.0.9");
  EXPECT_EQ(t.observe(syn(a, 10, 1, 50001, 111)), Outcome::Queued);
  EXPECT_EQ(t.observe(syn(a, 10, 2, 50001, 111)), Outcome::Retransmit);
  EXPECT_EQ(t.observe(syn(a, 20, 2, 50002, 222)), Outcome::Queued);
  EXPECT_EQ(t.observe(syn(a, 10, 3, 50001, 111)), Outcome::Retransmit);
  EXPECT_EQ(t.queue_of(a), (std::vector<std::uint16_t>{10, 20}));
  EXPECT_EQ(t.observe(syn(a, 30, 3, 50003, 333)), Outcome::Knock);
  // The kernel retransmits the whole knock: it must not count as a second one.
  EXPECT_EQ(t.observe(syn(a, 10, 4, 50001, 111)), Outcome::Retransmit);
  EXPECT_EQ(t.observe(syn(a, 20, 4, 50002, 222)), Outcome::Retransmit);
  EXPECT_EQ(t.observe(syn(a, 30, 4, 50003, 333)), Outcome::Retransmit);
  EXPECT_EQ(t.counters().knocks, 1u);
  EXPECT_EQ(t.counters().retransmits_dropped, 5u);
  // Same sequence number from another source port, or another source, is a new SYN.
  EXPECT_EQ(t.observe(syn(a, 10, 5, 50009, 111)), Outcome::Queued);
  EXPECT_EQ(t.observe(syn(ip("198.18.0.10"), 10, 5, 50001, 111)), Outcome::Queued);
  // Without a sequence number (UDP, log lines) nothing is deduplicated.
  EXPECT_EQ(t.observe(obs(a, 20, 6)), Outcome::Queued);
  EXPECT_EQ(t.observe(obs(a, 20, 6)), Outcome::DecodeFailed);
}

TEST(Tracker, CorrelatedSequenceNumbersAreNotTakenForRetransmits) {
  FakeDecoder dec{{}, {}};
  Tracker t(opts(64), dec);
  const IpAddress a = ip("198.18.0.11");
  for (std::uint32_t n = 0; n < 20000; ++n)
    t.observe(syn(a, 1, 1, static_cast<std::uint16_t>(n), n * 0x9E3779B1u));
  EXPECT_EQ(t.counters().retransmits_dropped, 0u);
  EXPECT_EQ(t.counters().ports_queued, 20000u);
}

TEST(Tracker, Ipv4AndIpv6SourcesKeptApart) {
  FakeDecoder dec{{1, 2, 3}, {}};
  Tracker t(opts(3), dec);
  const IpAddress v4 = ip("198.18.0.1");
  const IpAddress v6 = ip("2001:db8::1");
  const IpAddress mapped = ip("::ffff:198.18.0.1");
  t.observe(obs(v4, 1, 1));
  t.observe(obs(v6, 1, 1));
  t.observe(obs(mapped, 9, 1));
  t.observe(obs(v6, 2, 1));
  t.observe(obs(v4, 2, 1));
  EXPECT_EQ(t.queue_of(v4), (std::vector<std::uint16_t>{1, 2}));
  EXPECT_EQ(t.queue_of(v6), (std::vector<std::uint16_t>{1, 2}));
  EXPECT_EQ(t.queue_of(mapped), (std::vector<std::uint16_t>{9}));
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.observe(obs(v6, 3, 1)), Outcome::Knock);
  EXPECT_EQ(t.queue_of(v4), (std::vector<std::uint16_t>{1, 2}));
}

TEST(Tracker, EvictionPolicy) {
  FakeDecoder dec{{}, {}};
  TrackerOptions o = opts(8, 4, 30);
  o.protected_share = 0.5;
  Tracker t(o, dec);
  ASSERT_EQ(t.protected_cap(), 2u);
  const IpAddress a = ip("198.18.1.1"), b = ip("198.18.1.2"), c = ip("198.18.1.3"), d = ip("198.18.1.4"),
                  e = ip("198.18.1.5"), f = ip("198.18.1.6"), g = ip("198.18.1.7");
  t.observe(obs(a, 1, 0));
  t.observe(obs(a, 2, 0));  // protected
  t.observe(obs(b, 1, 1));
  t.observe(obs(b, 2, 1));  // protected
  t.observe(obs(c, 1, 2));  // probation, oldest
  t.observe(obs(d, 1, 3));  // probation
  EXPECT_EQ(t.segment_of(a), Segment::Protected);
  EXPECT_EQ(t.segment_of(c), Segment::Probation);
  EXPECT_EQ(t.size(), 4u);

  t.observe(obs(e, 1, 4));  // full: the oldest probation source goes, not the older protected ones
  EXPECT_EQ(t.segment_of(c), Segment::None);
  EXPECT_EQ(t.segment_of(a), Segment::Protected);
  EXPECT_EQ(t.counters().evicted_probation, 1u);
  t.observe(obs(d, 2, 5));  // d promoted: over the protected cap, a (least recent) is demoted
  EXPECT_EQ(t.segment_of(d), Segment::Protected);
  EXPECT_EQ(t.segment_of(a), Segment::Probation);
  EXPECT_EQ(t.queue_of(a), (std::vector<std::uint16_t>{1, 2}));  // demoted, not forgotten
  EXPECT_EQ(t.counters().demoted, 1u);
  EXPECT_EQ(t.protected_size(), 2u);

  t.observe(obs(f, 1, 6));  // probation is e (4), a (demoted at 5): e is least recent
  EXPECT_EQ(t.segment_of(e), Segment::None);
  EXPECT_EQ(t.segment_of(a), Segment::Probation);

  // Expired sources are reclaimed before any live one is evicted: b (last seen at 1) times out.
  t.observe(obs(a, 3, 20));
  t.observe(obs(d, 3, 20));
  t.observe(obs(f, 2, 20));
  const auto evicted = t.counters().evicted_probation + t.counters().evicted_protected;
  t.observe(obs(g, 1, 31.5));
  EXPECT_EQ(t.segment_of(b), Segment::None);
  EXPECT_EQ(t.counters().expired_sources, 1u);
  EXPECT_EQ(t.counters().evicted_probation + t.counters().evicted_protected, evicted);
  EXPECT_NE(t.segment_of(a), Segment::None);
  EXPECT_NE(t.segment_of(d), Segment::None);
  EXPECT_NE(t.segment_of(f), Segment::None);
  EXPECT_EQ(t.size(), 4u);
}

TEST(Tracker, IndexStaysConsistentUnderChurn) {
  FakeDecoder dec{{}, {}};
  Tracker t(opts(4, 64, 30), dec);
  for (std::uint64_t n = 0; n < 100000; ++n) {
    t.observe(obs(spoofed(n % 5000), static_cast<std::uint16_t>(n), static_cast<double>(n) * 1e-4));
    ASSERT_LE(t.size(), 64u);
  }
  // The last 64 distinct sources, one port each, must all be found with their own port.
  for (std::uint64_t n = 0; n < 64; ++n) t.observe(obs(spoofed(1000000 + n), static_cast<std::uint16_t>(n), 11));
  EXPECT_EQ(t.size(), 64u);
  for (std::uint64_t n = 0; n < 64; ++n)
    EXPECT_EQ(t.queue_of(spoofed(1000000 + n)), (std::vector<std::uint16_t>{static_cast<std::uint16_t>(n)}));
}

namespace {

// 1,000,000 single-SYN spoofed sources over 20 s; the client's L ports at the given flood
// positions. Returns the number of knocks found; checks the table bound on every packet.
std::uint64_t run_flood(Tracker& t, const IpAddress& client, const std::vector<std::uint16_t>& knock,
                        const std::vector<std::size_t>& at) {
  constexpr std::size_t kFlood = 1000000;
  std::size_t next = 0;
  for (std::size_t n = 0; n < kFlood; ++n) {
    const double now = 1e9 + static_cast<double>(n) * 2e-5;
    while (next < at.size() && at[next] == n) {
      t.observe(syn(client, knock[next], now, static_cast<std::uint16_t>(33000 + next), 7777 + next));
      ++next;
    }
    t.observe(syn(spoofed(n), static_cast<std::uint16_t>(2000 + n % 256), now, 1234, static_cast<std::uint32_t>(n)));
    if (t.size() > t.max_sources()) ADD_FAILURE() << "table grew past max_sources";
  }
  return t.counters().knocks;
}

std::vector<std::uint16_t> knock_ports(std::size_t length) {
  std::vector<std::uint16_t> k;
  for (std::size_t i = 0; i < length; ++i) k.push_back(static_cast<std::uint16_t>(2000 + (i * 37) % 256));
  return k;
}

// The client's first two ports 300 flood packets apart (a burst), the rest spread to the end.
std::vector<std::size_t> burst_then_spread(std::size_t length, std::size_t start) {
  std::vector<std::size_t> at{start, start + 300};
  for (std::size_t i = 2; i < length; ++i) at.push_back(start + 300 + (999000 - start) * (i - 1) / (length - 1));
  return at;
}

}  // namespace

TEST(TrackerFlood, SmallTableKnockSurvivesMillionSpoofedSources) {
  const std::size_t L = 8;
  FakeDecoder dec{knock_ports(L), {}};
  Tracker t(opts(L, 1024, 30), dec);
  EXPECT_EQ(run_flood(t, ip("198.18.7.7"), dec.target, burst_then_spread(L, 1000)), 1u);
  EXPECT_EQ(t.size(), 1024u);
  EXPECT_GT(t.counters().evicted_probation, 990000u);
  EXPECT_EQ(t.counters().evicted_protected, 0u);
}

TEST(TrackerFlood, SmallTableIpv6ClientMidFlood) {
  const std::size_t L = 16;
  FakeDecoder dec{knock_ports(L), {}};
  Tracker t(opts(L, 1024, 30), dec);
  EXPECT_EQ(run_flood(t, ip("2001:db8:ffff::7"), dec.target, burst_then_spread(L, 500000)), 1u);
}

TEST(TrackerFlood, WithoutProtectedSegmentTheKnockIsLost) {
  // Control: the same flood with no protected share loses the client, so the tests above
  // really exercise the protected segment.
  const std::size_t L = 8;
  FakeDecoder dec{knock_ports(L), {}};
  TrackerOptions o = opts(L, 1024, 30);
  o.protected_share = 0;
  Tracker t(o, dec);
  EXPECT_EQ(run_flood(t, ip("198.18.7.7"), dec.target, burst_then_spread(L, 1000)), 0u);
}

TEST(TrackerFlood, DefaultTableKnockSpreadEvenlyAcrossFlood) {
  // Default maxsources (65536), table already full: every gap between the client's ports is
  // 900,000/L = 56,250 new spoofed sources, the first one included.
  const std::size_t L = 16;
  FakeDecoder dec{knock_ports(L), {}};
  TrackerOptions o = opts(L, 0, 30);
  Tracker t(o, dec);
  ASSERT_EQ(t.max_sources(), 65536u);
  std::vector<std::size_t> at;
  for (std::size_t i = 0; i < L; ++i) at.push_back(100000 + i * (900000 / L));
  EXPECT_EQ(run_flood(t, ip("198.18.9.9"), dec.target, at), 1u);
  EXPECT_EQ(t.size(), 65536u);
}

TEST(Tracker, MaxSourcesBound) {
  FakeDecoder dec{{}, {}};
  TrackerOptions o = opts(32, 100, 30);
  Tracker t(o, dec);
  EXPECT_EQ(t.allocated_bytes(), memory_bytes(o));
  for (std::uint64_t n = 0; n < 20000; ++n) {
    t.observe(obs(spoofed(n), 1, 1));
    if (n % 3 == 0) t.observe(obs(spoofed(n), 2, 1));  // some get protected
    ASSERT_LE(t.size(), 100u);
    ASSERT_LE(t.protected_size(), t.protected_cap());
  }
  EXPECT_EQ(t.size(), 100u);
  EXPECT_EQ(t.counters().new_sources, 20000u);
  EXPECT_EQ(t.counters().evicted_probation + t.counters().evicted_protected, 20000u - 100u);
}

TEST(Tracker, MemoryBoundFormula) {
  TrackerOptions o = opts(32, 0, 30);
  EXPECT_EQ(default_max_sources(32), 65536u);
  const std::size_t bytes = memory_bytes(o);
  // Documented in doc/TRACKER.md: 65536 sources x (fixed + 12 L) + 1 MiB of index.
  EXPECT_GT(bytes, 65536u * 12 * 32);
  EXPECT_LT(bytes, 65536u * (12 * 32 + 128) + (1u << 20));
  // Very long knocks lower the default instead of breaking the memory limit.
  EXPECT_LT(default_max_sources(4096), 65536u);
  EXPECT_LE(memory_bytes(opts(4096, 0, 30)), kDefaultMemoryBudget + (1u << 20));
  EXPECT_FALSE(validate(opts(4096, 0, 30)).has_value());
}

TEST(Tracker, ValidateRejectsBadOptions) {
  EXPECT_TRUE(validate(opts(0)).has_value());
  EXPECT_TRUE(validate(opts(4097)).has_value());
  EXPECT_TRUE(validate(opts(8, 1024, 0)).has_value());
  EXPECT_TRUE(validate(opts(8, 1024, -1)).has_value());
  EXPECT_TRUE(validate(opts(8, 1024, std::numeric_limits<double>::quiet_NaN())).has_value());
  EXPECT_TRUE(validate(opts(8, 1024, 2e6)).has_value());
  auto big = validate(opts(4096, 1u << 20, 30));
  ASSERT_TRUE(big.has_value());
  EXPECT_NE(big->find("maxsources"), std::string::npos);
  TrackerOptions share = opts(8);
  share.protected_share = 1.5;
  EXPECT_TRUE(validate(share).has_value());
  EXPECT_FALSE(validate(opts(8)).has_value());
  FakeDecoder dec{{}, {}};
  EXPECT_THROW(Tracker(opts(0), dec), std::invalid_argument);
}

TEST(Tracker, SummariesAreRateLimited) {
  FakeDecoder dec{{}, {}};
  Tracker t(opts(4, 256, 30), dec);
  const double t0 = 5e8;
  std::vector<std::string> lines;
  const std::regex queued("(\\d+) ports queued");
  std::uint64_t total = 0;
  for (std::uint64_t n = 0; n < 300000; ++n) {
    const double now = t0 + static_cast<double>(n) * 1e-3;  // 300 s of flood
    t.observe(obs(spoofed(n), 1000, now));
    if (auto line = t.summary_due(now)) {
      std::smatch m;
      ASSERT_TRUE(std::regex_search(*line, m, queued)) << *line;
      total += std::stoull(m[1]);
      lines.push_back(*line);
    }
  }
  EXPECT_GE(lines.size(), 4u);
  EXPECT_LE(lines.size(), 5u);  // one per 60 s, not one per packet
  EXPECT_NE(lines[0].find("evicted"), std::string::npos);
  // Nothing is lost: the rest is in the next line.
  auto last = t.summary_due(t0 + 1000);
  ASSERT_TRUE(last.has_value());
  std::smatch m;
  ASSERT_TRUE(std::regex_search(*last, m, queued));
  total += std::stoull(m[1]);
  EXPECT_EQ(total, 300000u);
  // Quiet: no line at all.
  EXPECT_FALSE(t.summary_due(t0 + 2000).has_value());
  EXPECT_FALSE(t.summary_due(t0 + 1010).has_value());
}

TEST(Tracker, DebugOutputDoesNotChangeBehaviour) {
  FakeDecoder dec{{1, 2}, {}};
  Tracker t(opts(2), dec);
  const auto old = knock::log::level();
  knock::log::set_level(knock::log::Level::Debug);
  const IpAddress a = ip("2001:db8::42");
  EXPECT_EQ(t.observe(syn(a, 1, 1, 1, 1)), Outcome::Queued);
  EXPECT_EQ(t.observe(syn(a, 1, 1, 1, 1)), Outcome::Retransmit);
  EXPECT_EQ(t.observe(syn(a, 3, 1, 2, 2)), Outcome::DecodeFailed);
  EXPECT_EQ(t.observe(syn(a, 1, 1, 3, 3)), Outcome::DecodeFailed);
  EXPECT_EQ(t.observe(syn(a, 2, 1, 4, 4)), Outcome::Knock);
  knock::log::set_level(old);
}
