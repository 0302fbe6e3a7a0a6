// Cost of the SPA verifier per datagram: refused (noise of the right length carrying a known key
// id -> tag failure; an unknown key id; a wrong size) and accepted, for both ciphers and a ring of
// 1 or 10,000 clients; and the replay cache's insert.
#include <benchmark/benchmark.h>
#include <sodium.h>

#include <vector>

#include "codec/keys.hpp"
#include "codec/replay.hpp"
#include "codec/spa.hpp"

using namespace knock;
using namespace knock::spa;

namespace {

const codec::KnockFormat& format() {
  static const codec::KnockFormat f = codec::KnockFormat::parse("IP,PORT,FLAG0,CHECKSUM", Location{});
  return f;
}

codec::KnockValues values() {
  codec::KnockValues v;
  v.set(codec::Field::Ip, 0xC6120002);
  v.set(codec::Field::Port, 22);
  v.set(codec::Field::Flag0, 1);
  return v;
}

struct Setup {
  std::vector<std::uint8_t> key0;  // the first client's key bytes (to seal with)
  KeyRing ring;
  explicit Setup(std::size_t clients) : ring(make(clients, key0)) {}
  static KeyRing make(std::size_t clients, std::vector<std::uint8_t>& key0) {
    std::vector<KeyRing::Entry> e;
    for (std::size_t i = 0; i < clients; ++i) {
      Key k = Key::random();
      if (i == 0) key0.assign(k.bytes().begin(), k.bytes().end());
      e.push_back({"client" + std::to_string(i), Location{}, std::move(k)});
    }
    return KeyRing(std::move(e));
  }
};

constexpr std::int64_t kNow = 1700000000;
Cipher cipher_of(const benchmark::State& state) { return state.range(1) ? Cipher::Aes256Gcm : Cipher::XChaCha20Poly1305; }

// Accepted: a valid message (no replay cache here).
void BM_VerifyAccepted(benchmark::State& state) {
  const Cipher c = cipher_of(state);
  if (!cipher_available(c)) return state.SkipWithError("aes256gcm unavailable");
  Setup s(static_cast<std::size_t>(state.range(0)));
  const Verifier v(s.ring, c, format(), 120);
  const auto m = seal(c, format(), values(), Key::from_bytes(s.key0), kNow);
  for (auto _ : state) benchmark::DoNotOptimize(v.verify(m, kNow));
  if (!v.verify(m, kNow).ok()) state.SkipWithError("not accepted");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_VerifyAccepted)->Args({1, 0})->Args({10000, 0})->Args({1, 1});

// Refused at the tag: random bytes of the right length that carry a configured key id.
void BM_RefusedTag(benchmark::State& state) {
  const Cipher c = cipher_of(state);
  if (!cipher_available(c)) return state.SkipWithError("aes256gcm unavailable");
  Setup s(static_cast<std::size_t>(state.range(0)));
  const Verifier v(s.ring, c, format(), 120);
  const auto good = seal(c, format(), values(), Key::from_bytes(s.key0), kNow);
  std::vector<std::vector<std::uint8_t>> noise(256, std::vector<std::uint8_t>(good.size()));
  for (auto& n : noise) {
    randombytes_buf(n.data(), n.size());
    std::copy(good.begin(), good.begin() + 5, n.begin());
  }
  std::size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(v.verify(noise[i++ & 255], kNow));
  if (v.verify(noise[0], kNow).reason != Reason::Tag) state.SkipWithError("not a tag failure");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RefusedTag)->Args({1, 0})->Args({10000, 0})->Args({1, 1});

// Refused by the key lookup: random bytes of the right length (the id matches no client).
void BM_RefusedUnknownKey(benchmark::State& state) {
  Setup s(static_cast<std::size_t>(state.range(0)));
  const Verifier v(s.ring, Cipher::XChaCha20Poly1305, format(), 120);
  std::vector<std::vector<std::uint8_t>> noise(256, std::vector<std::uint8_t>(v.message_bytes()));
  for (auto& n : noise) randombytes_buf(n.data(), n.size());
  std::size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(v.verify(noise[i++ & 255], kNow));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RefusedUnknownKey)->Args({1, 0})->Args({10000, 0});

// Refused by size (e.g. a DNS answer to the SPA port).
void BM_RefusedSize(benchmark::State& state) {
  Setup s(1);
  const Verifier v(s.ring, Cipher::XChaCha20Poly1305, format(), 120);
  std::vector<std::uint8_t> junk(v.message_bytes() + 1);
  for (auto _ : state) benchmark::DoNotOptimize(v.verify(junk, kNow));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RefusedSize);

// ReplayCache::insert of fresh identities into a cache kept at about half full by expiry.
void BM_ReplayInsert(benchmark::State& state) {
  ReplayCache cache(65536);
  std::vector<Identity> ids(1 << 16);
  for (auto& id : ids) randombytes_buf(id.data(), id.size());
  std::int64_t t = kNow;
  std::size_t i = 0;
  for (auto _ : state) {
    if ((i & 32767) == 0) {
      state.PauseTiming();
      cache.clear();
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(cache.insert(ids[i & 65535], t + 120, t));
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReplayInsert);

}  // namespace
