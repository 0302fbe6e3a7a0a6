// Cost of the fwknop SPA verifier per datagram: a random 200-byte base64 datagram refused (every
// stanza's HMAC is tried), and a valid packet accepted, with 1 and 100 stanzas (the valid packet
// is for the last stanza: the worst case of the O(N) HMAC search).
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "../tests/tools/fwknop_builder.hpp"
#include "codec/fwknop.hpp"
#include "config/tree.hpp"

using namespace knock;
using namespace knock::fwknop;

namespace {

constexpr std::int64_t kNow = 1700000000;

std::string key_of(std::size_t i) { return "encryption key " + std::to_string(i); }
std::string hmac_of(std::size_t i) { return "hmac key number " + std::to_string(i) + std::string(48, 'h'); }

struct Setup {
  Stanzas stanzas;
  Verifier verifier;
  IpAddress source = *IpAddress::parse("198.18.1.2");
  explicit Setup(std::size_t n) : stanzas(make(n)), verifier(stanzas, 120) {}
  static Stanzas make(std::size_t n) {
    std::string text;
    for (std::size_t i = 0; i < n; ++i)
      text += "<fwknop s" + std::to_string(i) + ">\n key = " + key_of(i) + "\n hmac_key = " + hmac_of(i) +
              "\n open_ports = tcp/22\n</fwknop>\n";
    return Stanzas::from_config(config::parse_string(text, "bench.conf"));
  }
  Verified check(const std::string& w) const {
    return verifier.verify({reinterpret_cast<const std::uint8_t*>(w.data()), w.size()}, source, kNow);
  }
};

// range(1) == 0: random base64 characters as drawn (most are refused at the base64 check: stray
// bits in the last character of the body or the HMAC); == 1: made canonical, so that every
// stanza's HMAC is computed (the worst case for noise).
void BM_FwknopRefusedRandom(benchmark::State& state) {
  Setup s(static_cast<std::size_t>(state.range(0)));
  const bool canonical = state.range(1) != 0;
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::mt19937 rng(1);
  std::vector<std::string> noise(256, std::string(200, 'A'));
  for (auto& n : noise) {
    for (auto& c : n) c = alphabet[rng() % 64];
    if (canonical) {
      n.back() = 'A';                   // the HMAC's 2 unused bits
      n[200 - kHmacChars - 1] = 'A';    // the body's (157 + 10 characters: 2 unused bits)
    }
  }
  std::size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(s.check(noise[i++ & 255]));
  if (canonical && s.check(noise[0]).reason != Reason::Hmac) state.SkipWithError("not an HMAC failure");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FwknopRefusedRandom)->Args({1, 0})->Args({100, 0})->Args({1, 1})->Args({100, 1});

void BM_FwknopAccepted(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  Setup s(n);
  fwknop_test::Packet p;
  p.timestamp = kNow;
  const std::string w = fwknop_test::build(p, key_of(n - 1), hmac_of(n - 1));
  for (auto _ : state) benchmark::DoNotOptimize(s.check(w));
  if (!s.check(w).ok()) state.SkipWithError("not accepted");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FwknopAccepted)->Arg(1)->Arg(100);

// Refused by size (e.g. a DNS answer to the fwknop port): the floor.
void BM_FwknopRefusedSize(benchmark::State& state) {
  Setup s(1);
  const std::string junk(100, 'A');
  for (auto _ : state) benchmark::DoNotOptimize(s.check(junk));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FwknopRefusedSize);

}  // namespace
