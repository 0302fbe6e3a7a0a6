// The SPA message (codec/spa, codec/keys, codec/replay): the documented examples, round trips,
// every refusal (each attack written first and seen refused), keys, the KeyRing's config, the
// replay cache, and no allocation on the verify path.
#include <gtest/gtest.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "codec/codec.hpp"
#include "codec/keys.hpp"
#include "codec/replay.hpp"
#include "codec/spa.hpp"
#include "config/tree.hpp"

// Counts heap allocations while enabled, to show that verify() and insert() do not allocate.
namespace {
std::atomic<bool> g_count_allocs{false};
std::atomic<long> g_allocs{0};
}  // namespace
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  if (g_count_allocs.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace knock::spa {
namespace {

using Bytes = std::vector<std::uint8_t>;
using codec::Field;
using codec::KnockFormat;
using codec::KnockValues;
const Location kHere{"test.conf", 7};
constexpr std::int64_t kNow = 1700000000;

std::string hex(std::span<const std::uint8_t> b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (auto c : b) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}
Bytes unhex(const std::string& s) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < s.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(s.substr(i, 2), nullptr, 16)));
  return out;
}
Bytes counting(std::uint8_t from, std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(from + i);
  return b;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

const KnockFormat& example_format() {
  static const KnockFormat f = KnockFormat::parse("IP,PORT,FLAG0,CHECKSUM", kHere);
  return f;
}
KnockValues example_values() {
  KnockValues v;
  v.set(Field::Ip, 0xC6120002);  // 198.18.0.2
  v.set(Field::Port, 22);
  v.set(Field::Flag0, 1);
  return v;
}
Key example_key() { return Key::from_bytes(counting(0, 32)); }

// A ring of two clients (alice = the example key, bob = random) and a verifier over it.
struct Fixture {
  KeyRing ring;
  Verifier verifier;
  explicit Fixture(Cipher cipher = Cipher::XChaCha20Poly1305, std::uint32_t window = 60)
      : ring(make_ring()), verifier(ring, cipher, example_format(), window) {}
  static KeyRing make_ring() {
    std::vector<KeyRing::Entry> e;
    e.push_back({"alice", kHere, example_key()});
    e.push_back({"bob", Location{"test.conf", 9}, Key::random()});
    return KeyRing(std::move(e));
  }
};

// An authentic message with any header and plaintext, sealed by hand (for Version and Fields).
Bytes hand_sealed(std::uint8_t magic_byte, const Key& key, std::uint64_t t, const Bytes& plain) {
  Bytes m(kNonceOffset + 24);
  m[0] = magic_byte;
  for (int i = 0; i < 4; ++i) m[1 + i] = static_cast<std::uint8_t>(key.id() >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) m[5 + i] = static_cast<std::uint8_t>(t >> (56 - 8 * i));
  randombytes_buf(&m[kNonceOffset], 24);
  const std::size_t head = m.size();
  m.resize(head + plain.size() + kTagBytes);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(&m[head], &clen, plain.data(), plain.size(), m.data(), head, nullptr,
                                             &m[kNonceOffset], key.bytes().data());
  return m;
}

// ---------------------------------------------------------------- the documented examples

TEST(Spa, ProtocolDocExamples) {
  const Key key = example_key();
  EXPECT_EQ(key.base64(), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
  EXPECT_EQ(key.id(), 0xef5ed5a9u);
  EXPECT_EQ(hex(example_format().pack(example_values())), "c6120002001601f1");
  const auto a = seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), key, kNow, counting(0x40, 24));
  const std::string a_hex =
      "a1ef5ed5a9000000006553f100404142434445464748494a4b4c4d4e4f5051525354555657122b0572d0f678e75156bcec4f77ad57eca7c9"
      "4aa22fb2b0";
  EXPECT_EQ(hex(a), a_hex);
  const std::string b_hex =
      "a2ef5ed5a9000000006553f100404142434445464748494a4b24abae21262a86f2028413387ebefd1522b8adf511e93430";
  if (cipher_available(Cipher::Aes256Gcm)) {
    EXPECT_EQ(hex(seal(Cipher::Aes256Gcm, example_format(), example_values(), key, kNow, counting(0x40, 12))), b_hex);
  }
  const Bytes salt = counting(0xF0, 16);
  EXPECT_EQ(decode_salt("8PHy8/T19vf4+fr7/P3+/w==", kHere), salt);
  const std::string pass = "correct horse battery staple";
  const Key pk = Key::from_passphrase(Bytes(pass.begin(), pass.end()), salt, kHere);
  EXPECT_EQ(hex(pk.bytes()), "da1fe23ea05cfd9e9d3d83fe89bfc3418f0e80d8ab8a345b89b43e9d41213433");
  EXPECT_EQ(pk.id(), 0xd109d124u);
  KnockValues port443;
  port443.set(Field::Port, 443);
  const std::string c_hex =
      "a1d109d124000000006553f100404142434445464748494a4b4c4d4e4f505152535455565796645dc91f35bbc3109b46799b539843b7e2"
      "35";
  EXPECT_EQ(hex(seal(Cipher::XChaCha20Poly1305, KnockFormat::parse("PORT,CHECKSUM", kHere), port443, pk, kNow,
                     counting(0x40, 24))),
            c_hex);
  const auto span = codec::PortSpan::parse("1024-5000,6000-25000,26000-35789", kHere);
  const auto ports = codec::bytes_to_ports(span, a);
  std::string d;
  for (auto p : ports) d += (d.empty() ? "" : ",") + std::to_string(p);
  const std::string d_text =
      "22750,24476,15623,1024,1027,7478,28110,18472,10504,22776,12463,32850,21049,13592,8835,22327,12432,7356,3754,"
      "28991,6463,7602,10707,33973,12434,14114,3566,34467,18252,9996,7467,14233,24551";
  EXPECT_EQ(d, d_text);

  // The document says the same (so neither can drift).
  std::ifstream in(std::string(SOURCE_DIR) + "/doc/PROTOCOL.md");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string doc;
  for (char c : ss.str())
    if (c != ' ' && c != '\n') doc += c;
  for (const std::string& s : {a_hex, b_hex, c_hex, d_text, std::string("ef5ed5a9"), std::string("d109d124"),
                               hex(pk.bytes()), std::string("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")})
    EXPECT_NE(doc.find(s), std::string::npos) << s;
}

// IP6 in the authenticated message (doc/PROTOCOL.md 6.7 e, from tests/oracle/spa_nacl.py): sealed,
// verified, its address intact; a bit of the address flipped in transit fails the tag.
TEST(Spa, Ip6ExampleAndRoundTrip) {
  const auto fmt = KnockFormat::parse("IP6,PORT,FLAG0,CHECKSUM", kHere);
  KnockValues v;
  v.set_ip6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2});
  v.set(Field::Port, 22);
  v.set(Field::Flag0, 1);
  EXPECT_EQ(hex(fmt.pack(v)), "20010db8000000000000000000000002001601ff");
  const auto e = seal(Cipher::XChaCha20Poly1305, fmt, v, example_key(), kNow, counting(0x40, 24));
  const std::string e_hex =
      "a1ef5ed5a9000000006553f100404142434445464748494a4b4c4d4e4f5051525354555657f43808c8d0e079168ff487beaf9c6590"
      "92acac3b0ecc9f08b35833d8c7189aad4363ca31";
  EXPECT_EQ(hex(e), e_hex);
  EXPECT_EQ(e.size(), 53u + 20);
  std::ifstream in(std::string(SOURCE_DIR) + "/doc/PROTOCOL.md");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string doc;
  for (char c : ss.str())
    if (c != ' ' && c != '\n') doc += c;
  EXPECT_NE(doc.find(e_hex), std::string::npos);

  KeyRing ring = Fixture::make_ring();
  const Verifier verifier(ring, Cipher::XChaCha20Poly1305, fmt, 60);
  const Verified ok = verifier.verify(e, kNow);
  ASSERT_TRUE(ok.ok()) << to_string(ok.reason);
  EXPECT_EQ(value_text(ok.values, Field::Ip6), "2001:db8::2");
  EXPECT_EQ(ok.values.get(Field::Port), 22u);
  auto flipped = e;
  flipped[header_bytes(Cipher::XChaCha20Poly1305) + 15] ^= 1;  // the last byte of the address
  EXPECT_EQ(verifier.verify(flipped, kNow).reason, Reason::Tag);
}

TEST(Spa, SizesAndNames) {
  EXPECT_EQ(message_bytes(Cipher::XChaCha20Poly1305, example_format()), 61u);
  EXPECT_EQ(message_bytes(Cipher::Aes256Gcm, example_format()), 49u);
  EXPECT_EQ(kMaxMessageBytes, 86u);  // 37 + 33 (every field, IP6 included) + 16
  EXPECT_EQ(cipher_from_name("XChaCha20Poly1305"), Cipher::XChaCha20Poly1305);
  EXPECT_EQ(cipher_from_name("aes256gcm"), Cipher::Aes256Gcm);
  EXPECT_FALSE(cipher_from_name("blowfish"));
  // Never an ASCII byte (fwknop's packets are base64 text).
  EXPECT_GE(magic(Cipher::XChaCha20Poly1305), 0x80);
  EXPECT_GE(magic(Cipher::Aes256Gcm), 0x80);
  EXPECT_NE(to_string(Reason::TooOld), to_string(Reason::TooNew));
}

// ---------------------------------------------------------------- verification

TEST(Spa, RoundTripBothCiphers) {
  for (Cipher c : {Cipher::XChaCha20Poly1305, Cipher::Aes256Gcm}) {
    if (!cipher_available(c)) continue;
    Fixture fx(c);
    const auto m = seal(c, example_format(), example_values(), example_key(), kNow - 5);
    ASSERT_EQ(m.size(), fx.verifier.message_bytes());
    const Verified v = fx.verifier.verify(m, kNow);
    ASSERT_TRUE(v.ok()) << to_string(v.reason);
    EXPECT_EQ(v.client, 0);
    EXPECT_EQ(v.client_name, "alice");
    EXPECT_EQ(v.values.get(Field::Ip), 0xC6120002u);
    EXPECT_EQ(v.values.get(Field::Port), 22u);
    EXPECT_EQ(v.values.get(Field::Flag0), 1u);
    EXPECT_EQ(v.send_time, static_cast<std::uint64_t>(kNow - 5));
    EXPECT_EQ(v.offset, -5);
    EXPECT_TRUE(std::equal(v.identity.begin(), v.identity.end(), m.end() - 16));
    // Two seals of the same values differ (fresh nonce), so do their identities.
    const auto m2 = seal(c, example_format(), example_values(), example_key(), kNow - 5);
    EXPECT_NE(m, m2);
    EXPECT_NE(fx.verifier.verify(m2, kNow).identity, v.identity);
  }
}

TEST(Spa, EveryBitFlipIsRefused) {
  Fixture fx;
  const auto m = seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), example_key(), kNow);
  ASSERT_TRUE(fx.verifier.verify(m, kNow).ok());
  for (std::size_t bit = 0; bit < 8 * m.size(); ++bit) {
    auto b = m;
    b[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    const Verified v = fx.verifier.verify(b, kNow);
    const bool in_key_id = bit / 8 >= kKeyIdOffset && bit / 8 < kKeyIdOffset + kKeyIdBytes;
    // A flipped key id names no client (or, 1 in 2^32, bob: then bob's key fails the tag).
    const Reason want = in_key_id && v.client < 0 ? Reason::UnknownKey : Reason::Tag;
    EXPECT_EQ(v.reason, want) << "bit " << bit;
  }
}

TEST(Spa, IvFlipForgeryOfTheOriginalDoesNotWorkHere) {
  // The original's attack: XOR the plaintext difference into the bytes before the ciphertext.
  // Here those are the header (authenticated) and the ciphertext (stream cipher: the XOR lands on
  // the plaintext, but the tag catches it).
  Fixture fx;
  const auto m = seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), example_key(), kNow);
  auto forged = m;
  const std::size_t head = header_bytes(Cipher::XChaCha20Poly1305);
  const std::uint32_t from = 0xC6120002, to = 0xC6120042;  // 198.18.0.2 -> 198.18.0.66
  for (int i = 0; i < 4; ++i) forged[head + i] ^= static_cast<std::uint8_t>((from ^ to) >> (24 - 8 * i));
  forged[head + 7] ^= static_cast<std::uint8_t>(0x02 ^ 0x42);  // fix the checksum too
  EXPECT_EQ(fx.verifier.verify(forged, kNow).reason, Reason::Tag);
}

TEST(Spa, SizeIsChecked) {
  Fixture fx;
  const auto m = seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), example_key(), kNow);
  const Bytes shorter(m.begin(), m.end() - 1);
  auto longer = m;
  longer.push_back(0);
  EXPECT_EQ(fx.verifier.verify(shorter, kNow).reason, Reason::Size);
  EXPECT_EQ(fx.verifier.verify(longer, kNow).reason, Reason::Size);
  EXPECT_EQ(fx.verifier.verify({}, kNow).reason, Reason::Size);
  EXPECT_EQ(fx.verifier.verify(std::span<const std::uint8_t>(m.data(), kNonceOffset), kNow).reason, Reason::Size);
  // An AES-GCM message (12 bytes shorter) to an XChaCha verifier.
  if (cipher_available(Cipher::Aes256Gcm)) {
    EXPECT_EQ(fx.verifier.verify(seal(Cipher::Aes256Gcm, example_format(), example_values(), example_key(), kNow), kNow)
                  .reason,
              Reason::Size);
  }
}

TEST(Spa, WrongAndUnknownKeys) {
  Fixture fx;
  const Key stranger = Key::random();
  const auto m = seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), stranger, kNow);
  EXPECT_EQ(fx.verifier.verify(m, kNow).reason, Reason::UnknownKey);
  // The stranger claims alice's key id: the tag fails under alice's key.
  auto claimed = m;
  for (int i = 0; i < 4; ++i) claimed[1 + i] = static_cast<std::uint8_t>(example_key().id() >> (24 - 8 * i));
  const Verified v = fx.verifier.verify(claimed, kNow);
  EXPECT_EQ(v.reason, Reason::Tag);
  EXPECT_EQ(v.client_name, "alice");
  // Random bytes of the right length with alice's id: Tag.
  Bytes noise(m.size());
  randombytes_buf(noise.data(), noise.size());
  std::copy(claimed.begin() + 1, claimed.begin() + 5, noise.begin() + 1);
  EXPECT_EQ(fx.verifier.verify(noise, kNow).reason, Reason::Tag);
}

TEST(Spa, VersionIsCheckedAfterTheTag) {
  Fixture fx;
  const Bytes plain = example_format().pack(example_values());
  EXPECT_EQ(fx.verifier.verify(hand_sealed(0xA1, example_key(), kNow, plain), kNow).reason, Reason::Ok);
  EXPECT_EQ(fx.verifier.verify(hand_sealed(0xA2, example_key(), kNow, plain), kNow).reason, Reason::Version);
  EXPECT_EQ(fx.verifier.verify(hand_sealed(0xB1, example_key(), kNow, plain), kNow).reason, Reason::Version);
  // Unauthentic with a wrong magic: Tag, not Version (nothing learnt without the key).
  auto m = hand_sealed(0xA1, example_key(), kNow, plain);
  m[0] = 0xA2;
  EXPECT_EQ(fx.verifier.verify(m, kNow).reason, Reason::Tag);
}

TEST(Spa, WindowWithOffsetReported) {
  Fixture fx(Cipher::XChaCha20Poly1305, 60);
  auto at = [&](std::int64_t offset) {
    return fx.verifier.verify(seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), example_key(),
                                   static_cast<std::uint64_t>(kNow + offset)),
                              kNow);
  };
  EXPECT_EQ(at(-60).reason, Reason::Ok);
  EXPECT_EQ(at(60).reason, Reason::Ok);
  Verified v = at(-61);
  EXPECT_EQ(v.reason, Reason::TooOld);
  EXPECT_EQ(v.offset, -61);
  v = at(61);
  EXPECT_EQ(v.reason, Reason::TooNew);
  EXPECT_EQ(v.offset, 61);
  v = at(-kNow);  // sent at 0
  EXPECT_EQ(v.reason, Reason::TooOld);
  EXPECT_EQ(v.offset, -kNow);
  // The largest time: saturated offset, TooNew.
  v = fx.verifier.verify(
      seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), example_key(), ~std::uint64_t{0}), kNow);
  EXPECT_EQ(v.reason, Reason::TooNew);
  EXPECT_EQ(v.offset, std::numeric_limits<std::int64_t>::max());
  // The receiver's clock is a parameter (the capture's time under -pcap).
  const auto m = seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), example_key(), 1000);
  EXPECT_EQ(fx.verifier.verify(m, 1000).reason, Reason::Ok);
  EXPECT_EQ(fx.verifier.verify(m, kNow).reason, Reason::TooOld);
}

TEST(Spa, ChecksumOfAnAuthenticMessage) {
  Fixture fx;
  Bytes plain = example_format().pack(example_values());
  plain.back() ^= 1;
  EXPECT_EQ(fx.verifier.verify(hand_sealed(0xA1, example_key(), kNow, plain), kNow).reason, Reason::Fields);
}

TEST(Spa, PortFormRoundTrip) {
  Fixture fx;
  const auto m = seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), example_key(), kNow);
  for (const char* text : {"1000-1255", "1000-1031", "40000-40001", "1024-5000,6000-25000,26000-35789"}) {
    const auto span = codec::PortSpan::parse(text, kHere);
    const auto ports = codec::bytes_to_ports(span, m);
    EXPECT_EQ(ports.size(), codec::ports_for_bytes(span, m.size()));
    Bytes back(fx.verifier.message_bytes());
    ASSERT_EQ(codec::ports_to_bytes(span, ports, back), codec::DecodeError::None) << text;
    EXPECT_TRUE(fx.verifier.verify(back, kNow).ok());
    const std::vector<std::uint16_t> fewer(ports.begin(), ports.end() - 1);
    EXPECT_EQ(codec::ports_to_bytes(span, fewer, back), codec::DecodeError::Length);
  }
}

TEST(Spa, SealRefusesBadInput) {
  KnockValues v = example_values();
  v.set(Field::Port, 70000);
  EXPECT_THROW(seal(Cipher::XChaCha20Poly1305, example_format(), v, example_key(), kNow), ConfigError);
  EXPECT_THROW(seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), example_key(), kNow, counting(0, 12)),
               std::invalid_argument);
}

TEST(Spa, VerifyDoesNotAllocate) {
  Fixture fx;
  const auto good = seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), example_key(), kNow);
  auto bad = good;
  bad[40] ^= 4;
  auto unknown = good;
  unknown[2] ^= 1;
  ReplayCache cache(1024);
  g_allocs = 0;
  g_count_allocs = true;
  const Verified v1 = fx.verifier.verify(good, kNow);
  const Verified v2 = fx.verifier.verify(bad, kNow);
  const Verified v3 = fx.verifier.verify(unknown, kNow);
  const auto r1 = cache.insert(v1.identity, kNow + 60, kNow);
  const auto r2 = cache.insert(v1.identity, kNow + 60, kNow);
  const auto id = ReplayCache::identity_of(good);
  const auto r3 = cache.insert(id, kNow + 60, kNow);
  cache.expire(kNow + 61);
  g_count_allocs = false;
  EXPECT_EQ(g_allocs.load(), 0);
  EXPECT_TRUE(v1.ok());
  EXPECT_EQ(v2.reason, Reason::Tag);
  EXPECT_EQ(v3.reason, Reason::UnknownKey);
  EXPECT_EQ(r1, ReplayCache::Result::Fresh);
  EXPECT_EQ(r2, ReplayCache::Result::Replay);
  EXPECT_EQ(r3, ReplayCache::Result::Fresh);
  EXPECT_EQ(cache.size(), 0u);
}

// ---------------------------------------------------------------- replay cache

TEST(ReplayCache, ReplayOfAnAcceptedMessageIsRefused) {
  Fixture fx;
  ReplayCache cache;
  const auto m = seal(Cipher::XChaCha20Poly1305, example_format(), example_values(), example_key(), kNow);
  const Verified first = fx.verifier.verify(m, kNow);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(cache.insert(first.identity, static_cast<std::int64_t>(first.send_time) + 60, kNow),
            ReplayCache::Result::Fresh);
  const Verified again = fx.verifier.verify(m, kNow + 30);  // still authentic and in the window...
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(cache.insert(again.identity, static_cast<std::int64_t>(again.send_time) + 60, kNow + 30),
            ReplayCache::Result::Replay);  // ...but refused here
}

TEST(ReplayCache, FullRefusesAndNeverEvictsALiveEntry) {
  ReplayCache cache(16);
  std::vector<Identity> ids;
  for (int i = 0; i < 16; ++i) {
    const std::string s = "knock " + std::to_string(i);
    ids.push_back(ReplayCache::identity_of(std::span(reinterpret_cast<const std::uint8_t*>(s.data()), s.size())));
    ASSERT_EQ(cache.insert(ids.back(), kNow + 100 + i, kNow), ReplayCache::Result::Fresh);
  }
  const Identity extra = ReplayCache::identity_of(counting(1, 40));
  EXPECT_EQ(cache.insert(extra, kNow + 100, kNow), ReplayCache::Result::Full);
  for (const auto& id : ids) EXPECT_TRUE(cache.contains(id));
  EXPECT_EQ(cache.insert(ids[3], kNow + 100, kNow), ReplayCache::Result::Replay);
  // Once the first entry expires (kNow + 100 < now), the insert frees it by itself.
  EXPECT_EQ(cache.insert(extra, kNow + 200, kNow + 101), ReplayCache::Result::Fresh);
  EXPECT_FALSE(cache.contains(ids[0]));
  EXPECT_TRUE(cache.contains(ids[1]));
  EXPECT_EQ(cache.size(), 16u);
}

TEST(ReplayCache, ExpiryFreesAndKeepsTheRest) {
  // Against a model, with many expiries (probe runs broken and re-placed).
  ReplayCache cache(4096);
  std::map<Identity, std::int64_t> model;
  std::mt19937_64 rng(7);
  std::int64_t now = kNow;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 100; ++i) {
      Identity id;
      for (auto& b : id) b = static_cast<std::uint8_t>(rng());
      const std::int64_t exp = now + static_cast<std::int64_t>(rng() % 200);
      ASSERT_EQ(cache.insert(id, exp, now), ReplayCache::Result::Fresh);
      model[id] = exp;
    }
    now += 7;
    cache.expire(now);
    for (auto it = model.begin(); it != model.end();) it = it->second < now ? model.erase(it) : std::next(it);
    ASSERT_EQ(cache.size(), model.size());
    for (const auto& [id, exp] : model) ASSERT_TRUE(cache.contains(id));
  }
}

TEST(ReplayCache, IdentityOfAnyBytes) {
  const Bytes sixteen = counting(5, 16);
  const Identity a = ReplayCache::identity_of(sixteen);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), sixteen.begin()));
  // The original format with iv = yes: the ciphertext after "RandomIV" + IV. Same body, other IV
  // (the IV-flip forgery or a replay): the same identity.
  const Bytes body = counting(0x30, 16 + 8);
  EXPECT_EQ(ReplayCache::identity_of(body), ReplayCache::identity_of(Bytes(body)));
  EXPECT_NE(ReplayCache::identity_of(body), ReplayCache::identity_of(counting(0x31, 24)));
  EXPECT_NE(ReplayCache::identity_of(counting(0, 8)), ReplayCache::identity_of(counting(0, 9)));
}

TEST(ReplayCache, SaveAndLoadHostileText) {
  ReplayCache a(64);
  const Identity x = ReplayCache::identity_of(counting(1, 20));
  const Identity y = ReplayCache::identity_of(counting(2, 20));
  a.insert(x, kNow + 10, kNow);
  a.insert(y, kNow - 10 + 20, kNow);
  const std::string text = a.save();
  ReplayCache b(64);
  const auto c = b.load(text + "zz\n" + std::string(32, 'a') + " 12x\n" + hex(x) + " 5\r\n\n" +
                            std::string(32, 'G') + " 1\n" + hex(x) + " " + std::to_string(kNow + 5) + "\n",
                        kNow);
  EXPECT_EQ(c.loaded, 2u);
  EXPECT_EQ(c.bad, 3u);
  EXPECT_EQ(c.expired, 1u);
  EXPECT_EQ(c.refused, 1u);
  EXPECT_TRUE(b.contains(x));
  EXPECT_TRUE(b.contains(y));
  const auto later = ReplayCache(64).load(text, kNow + 11);
  EXPECT_EQ(later.loaded, 0u);
  EXPECT_EQ(later.expired, 2u);
}

// ---------------------------------------------------------------- keys and the key ring

TEST(SpaKeys, Base64) {
  const Key k = Key::random();
  EXPECT_EQ(k.base64().size(), 44u);
  const Key back = Key::from_base64(k.base64(), kHere);
  EXPECT_EQ(back.id(), k.id());
  EXPECT_TRUE(std::equal(back.bytes().begin(), back.bytes().end(), k.bytes().begin()));
  EXPECT_EQ(Key::from_base64("  " + k.base64().substr(0, 43) + " ", kHere).id(), k.id());  // no padding
  EXPECT_NE(error_of([] { Key::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==", kHere); }).find("test.conf:7"),
            std::string::npos);  // 31 bytes
  EXPECT_NE(error_of([] { Key::from_base64("password", kHere); }).find("32 bytes"), std::string::npos);
  EXPECT_NE(error_of([] { Key::from_base64("", kHere); }), "(no error)");
  // The message never repeats the key text.
  EXPECT_EQ(error_of([] { Key::from_base64("secretsecretsecret", kHere); }).find("secretsecret"), std::string::npos);
}

TEST(SpaKeys, KeyRingFromConfig) {
  const std::string dir = ::testing::TempDir() + "spa_keys_" + std::to_string(::getpid());
  ::mkdir(dir.c_str(), 0700);
  const std::string bob_file = dir + "/bob.key";
  ::unlink(bob_file.c_str());
  const Key bob = write_new_key_file(bob_file);
  struct stat st {};
  ASSERT_EQ(::stat(bob_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_THROW(write_new_key_file(bob_file), RuntimeError);  // never overwritten
  const std::string link = dir + "/link.key";
  ::unlink(link.c_str());
  ASSERT_EQ(::symlink(bob_file.c_str(), link.c_str()), 0);
  EXPECT_THROW(write_new_key_file(link), RuntimeError);  // nor through a link

  const std::string conf = "knock = PORT\n<client alice>\n  key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n</client>\n"
                           "<client bob>\n  keyfile = " + bob_file + "\n</client>\n"
                           "<client carol>\n  passphrase = correct horse battery staple\n  salt = 8PHy8/T19vf4+fr7/P3+/w==\n"
                           "</client>\n";
  const KeyRing ring = KeyRing::from_config(config::parse_string(conf, "d.conf"));
  ASSERT_EQ(ring.size(), 3u);
  EXPECT_EQ(ring.find(0xef5ed5a9u), 0);
  EXPECT_EQ(ring.client(static_cast<std::size_t>(ring.find(bob.id()))).name, "bob");
  EXPECT_EQ(ring.find(0xd109d124u), 2);
  EXPECT_EQ(ring.find(0x12345678u == bob.id() ? 0x12345679u : 0x12345678u), -1);
  EXPECT_TRUE(std::equal(bob.bytes().begin(), bob.bytes().end(), ring.key(1)));

  // The key file through a link is refused (read_key_file, O_NOFOLLOW).
  EXPECT_NE(error_of([&] {
              KeyRing::from_config(config::parse_string("<client x>\n keyfile = " + link + "\n</client>\n", "d.conf"));
            }).find("d.conf:2"),
            std::string::npos);
  // Two clients with one key: refused, naming both places.
  const std::string dup = error_of([] {
    KeyRing::from_config(config::parse_string(
        "<client a>\n key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n</client>\n"
        "<client b>\n key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n</client>\n",
        "d.conf"));
  });
  EXPECT_NE(dup.find("d.conf:4"), std::string::npos) << dup;
  EXPECT_NE(dup.find("d.conf:1"), std::string::npos) << dup;
  EXPECT_NE(dup.find("ef5ed5a9"), std::string::npos) << dup;
  // Bad blocks, each with its line.
  EXPECT_NE(error_of([] { KeyRing::from_config(config::parse_string("<client a>\n port = 22\n</client>\n", "d.conf")); })
                .find("d.conf:2: unknown key 'port'"),
            std::string::npos);
  EXPECT_NE(error_of([] { KeyRing::from_config(config::parse_string("<client a>\n</client>\n", "d.conf")); })
                .find("no SPA key"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              KeyRing::from_config(config::parse_string("<client a>\n passphrase = x y z\n</client>\n", "d.conf"));
            }).find("d.conf:2: passphrase needs salt"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              KeyRing::from_config(
                  config::parse_string("<client a>\n passphrase = x\n salt = AAAA\n</client>\n", "d.conf"));
            }).find("d.conf:3: salt must be"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              KeyRing::from_config(config::parse_string(
                  "<client a>\n key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n keyfile = " + bob_file + "\n</client>\n",
                  "d.conf"));
            }).find("only one of"),
            std::string::npos);
  EXPECT_NE(error_of([] { KeyRing::from_config(config::parse_string("<client>\n key = x\n</client>\n", "d.conf")); }),
            "(no error)");
  // Keys the caller reads are allowed through.
  const std::array<std::string_view, 1> extra = {"port"};
  EXPECT_EQ(KeyRing::from_config(config::parse_string("<client a>\n port = 22\n key = "
                                                      "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n</client>\n",
                                                      "d.conf"),
                                 extra)
                .size(),
            1u);
  ::unlink(link.c_str());
  ::unlink(bob_file.c_str());
  ::rmdir(dir.c_str());
}

TEST(SpaKeys, DaemonSettings) {
  const auto s = settings_from_config(config::parse_string("knock = PORT\n", "d.conf"));
  EXPECT_EQ(s.cipher, Cipher::XChaCha20Poly1305);
  EXPECT_EQ(s.port, 62202);
  EXPECT_EQ(s.window, 60u);
  EXPECT_EQ(s.replay_capacity, 65536u);
  const auto t = settings_from_config(
      config::parse_string("spaport = 5000\nspawindow = 30\nspareplaycache = 1000\n", "d.conf"));
  EXPECT_EQ(t.port, 5000);
  EXPECT_EQ(t.window, 30u);
  EXPECT_EQ(t.replay_capacity, 1000u);
  EXPECT_NE(error_of([] { settings_from_config(config::parse_string("x = 1\nspacipher = blowfish\n", "d.conf")); })
                .find("d.conf:2: spacipher must be"),
            std::string::npos);
  EXPECT_NE(error_of([] { settings_from_config(config::parse_string("spawindow = 0\n", "d.conf")); }).find("d.conf:1"),
            std::string::npos);
  EXPECT_NE(error_of([] { settings_from_config(config::parse_string("spaport = 65536\n", "d.conf")); }), "(no error)");
  EXPECT_NE(error_of([] { settings_from_config(config::parse_string("spareplaycache = 1e9\n", "d.conf")); }),
            "(no error)");
}

}  // namespace
}  // namespace knock::spa
