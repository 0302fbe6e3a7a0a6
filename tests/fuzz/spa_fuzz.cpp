// libFuzzer target: the SPA verifier and the replay cache's text form on arbitrary input.
//  - input[0] % 3 == 0: the rest as a message to verifiers of both ciphers: never crash, and
//    never accept (no one without the key can make an authentic message);
//  - == 1: a valid message sealed for the ring, with the rest XOR-ed into it: accepted if and only
//    if the message is unchanged, then with the values sealed;
//  - == 2: the rest as a saved replay cache (hostile state file): load never crashes, and what it
//    loaded is found and saves again.
#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "codec/keys.hpp"
#include "codec/replay.hpp"
#include "codec/spa.hpp"

namespace {
using namespace knock;
using namespace knock::spa;

struct World {
  std::vector<std::uint8_t> key_bytes = std::vector<std::uint8_t>(32, 7);
  KeyRing ring;
  codec::KnockFormat format = codec::KnockFormat::parse("IP,PORT,FLAG0,CHECKSUM", Location{});
  codec::KnockFormat format6 = codec::KnockFormat::parse("IP6,PORT,FLAG0,CHECKSUM", Location{});
  std::vector<Verifier> verifiers;
  std::vector<Verifier> verifiers6;  // IPv6 knocks (mode 0 only)
  World() : ring(make(key_bytes)) {
    verifiers.emplace_back(ring, Cipher::XChaCha20Poly1305, format, 120);
    if (cipher_available(Cipher::Aes256Gcm)) verifiers.emplace_back(ring, Cipher::Aes256Gcm, format, 120);
    verifiers6.emplace_back(ring, Cipher::XChaCha20Poly1305, format6, 120);
  }
  static KeyRing make(const std::vector<std::uint8_t>& k) {
    std::vector<KeyRing::Entry> e;
    e.push_back({"fuzz", Location{}, Key::from_bytes(k)});
    return KeyRing(std::move(e));
  }
};
constexpr std::int64_t kNow = 1700000000;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;
  if (size == 0) return 0;
  const std::uint8_t mode = data[0] % 3;
  const std::span<const std::uint8_t> rest(data + 1, size - 1);
  if (mode == 0) {
    for (const auto& v : w.verifiers)
      if (v.verify(rest, kNow).ok()) __builtin_trap();
    for (const auto& v : w.verifiers6)
      if (v.verify(rest, kNow).ok()) __builtin_trap();
  } else if (mode == 1) {
    codec::KnockValues values;
    const auto byte = [&](std::size_t i) -> std::uint32_t { return i < rest.size() ? rest[i] : 0; };
    values.set(codec::Field::Ip, 0xC6120000u | byte(0));
    values.set(codec::Field::Port, byte(1) << 8 | byte(2));
    values.set(codec::Field::Flag0, byte(3));
    const Key key = Key::from_bytes(w.key_bytes);
    for (const auto& v : w.verifiers) {
      const auto sealed = seal(v.cipher(), w.format, values, key, static_cast<std::uint64_t>(kNow));
      auto m = sealed;
      for (std::size_t i = 4; i < rest.size(); ++i) m[(i - 4) % m.size()] ^= rest[i];
      const Verified r = v.verify(m, kNow);
      // Any change at all is refused; the unchanged message is accepted with its values.
      // sodium_memcmp, not ==: libFuzzer hooks memcmp and would learn the sealed (genuine)
      // message, then replay it in mode 0, where an acceptance counts as a forgery.
      const bool unchanged = sodium_memcmp(m.data(), sealed.data(), m.size()) == 0;
      if (r.ok() != unchanged) __builtin_trap();
      for (auto f : {codec::Field::Ip, codec::Field::Port, codec::Field::Flag0})
        if (r.ok() && r.values.get(f) != values.get(f)) __builtin_trap();
    }
  } else {
    ReplayCache cache(64);
    const std::string_view text(reinterpret_cast<const char*>(rest.data()), rest.size());
    const auto counts = cache.load(text, kNow);
    if (counts.loaded != cache.size()) __builtin_trap();
    ReplayCache again(64);
    if (again.load(cache.save(), kNow).loaded != cache.size()) __builtin_trap();
  }
  return 0;
}
