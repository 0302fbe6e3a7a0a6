// Packets per second through Tracker::observe with a trivial decoder (no codec): one client
// knocking over and over, and a flood of single SYNs from random spoofed sources.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "tracker/tracker.hpp"

using knock::IpAddress;
using knock::capture::Observation;
using namespace knock::tracker;

namespace {

struct Decoder {
  std::vector<std::uint16_t> target;
  bool operator()(std::span<const std::uint16_t> w) const {
    return w.size() == target.size() && std::equal(w.begin(), w.end(), target.begin());
  }
};

std::vector<std::uint16_t> knock(std::size_t length) {
  std::vector<std::uint16_t> k;
  for (std::size_t i = 0; i < length; ++i) k.push_back(static_cast<std::uint16_t>(20000 + (i * 37) % 256));
  return k;
}

// L ports from one source, repeated: every L-th packet completes a knock.
void BM_OneSourceKnocking(benchmark::State& state) {
  const auto length = static_cast<std::size_t>(state.range(0));
  Decoder dec{knock(length)};
  TrackerOptions o;
  o.knock_length = length;
  Tracker t(o, dec);
  Observation obs;
  obs.source = *IpAddress::parse("198.18.0.1");
  obs.has_tcp_seq = true;
  std::uint64_t n = 0;
  for (auto _ : state) {
    obs.dest_port = dec.target[n % length];
    obs.source_port = static_cast<std::uint16_t>(n);
    obs.tcp_seq = static_cast<std::uint32_t>(n * 2654435761u);  // correlated with the port on purpose
    obs.time = 1e9 + static_cast<double>(n) * 1e-6;
    benchmark::DoNotOptimize(t.observe(obs));
    ++n;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
  state.counters["knocks"] = static_cast<double>(t.counters().knocks);
}
BENCHMARK(BM_OneSourceKnocking)->Arg(8)->Arg(32);

// Each packet from a new random IPv6 source (2001:db8::/32): the table stays full and every
// packet evicts the oldest probation source.
void BM_SpoofedFlood(benchmark::State& state) {
  const auto length = static_cast<std::size_t>(state.range(0));
  Decoder dec{knock(length)};
  TrackerOptions o;
  o.knock_length = length;
  o.max_sources = static_cast<std::size_t>(state.range(1));
  Tracker t(o, dec);
  Observation obs;
  obs.has_tcp_seq = true;
  std::uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8};
  std::uint64_t x = 0x243F6A8885A308D3ull, n = 0;
  for (auto _ : state) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;  // xorshift64
    for (int i = 0; i < 8; ++i) b[8 + i] = static_cast<std::uint8_t>(x >> (8 * i));
    obs.source = IpAddress::v6_bytes(b);
    obs.dest_port = static_cast<std::uint16_t>(20000 + (x >> 56));
    obs.source_port = static_cast<std::uint16_t>(x >> 40);
    obs.tcp_seq = static_cast<std::uint32_t>(x);
    obs.time = 1e9 + static_cast<double>(n) * 1e-6;
    benchmark::DoNotOptimize(t.observe(obs));
    ++n;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
  state.counters["evicted"] = static_cast<double>(t.counters().evicted_probation);
}
BENCHMARK(BM_SpoofedFlood)->Args({32, 1024})->Args({32, 65536});

}  // namespace
