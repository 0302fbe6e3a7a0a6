// Outside review (review2): attacks on "a knock that cannot be forged or replayed".
// Each test here FAILS while the problem it shows is present.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <unistd.h>

#include <filesystem>
#include <memory>

#include "codec/codec.hpp"
#include "codec/keys.hpp"
#include "codec/spa.hpp"
#include "config/tree.hpp"
#include "rules/engine.hpp"
#include "rules/runner.hpp"
#include "codec/format.hpp"
#include "codec/replay.hpp"
#include "util/address.hpp"

namespace knock::codec {
namespace {

using Bytes = std::vector<std::uint8_t>;
const Location kHere{"review2.conf", 1};

CodecSettings settings(std::string knock) {
  CodecSettings s;
  s.knock = std::move(knock);
  s.knock_where = kHere;
  s.portspan = "20000-20255";
  s.portspan_where = kHere;
  s.encrypt = true;
  s.key = secure_copy(std::string("correct horse battery staple"));
  s.key_where = kHere;
  s.cipher = "Blowfish";
  s.cipher_where = kHere;
  s.iv = true;
  s.iv_where = kHere;
  return s;
}

// The daemon's replay identities of an original iv = yes knock: one per 8-byte ciphertext block
// after the 16-byte "RandomIV" + IV header (daemon.cpp, on_knock).
std::vector<spa::Identity> block_identities(const Bytes& wire) {
  std::vector<spa::Identity> out;
  for (std::size_t at = 16; at + 8 <= wire.size(); at += 8)
    out.push_back(spa::ReplayCache::identity_of(std::span<const std::uint8_t>(wire.data() + at, 8)));
  return out;
}

// CBC cut-and-paste, not just IV flipping. With a knock of 16 or 17 bytes (3 cipher blocks with
// Blowfish), the last two ciphertext blocks (C2, C3) keep decrypting to the same padding, and any
// ciphertext block whose decryption is known can stand in for C1: C3 itself, since
// D(C3) = C2 ^ padding. The forged body C3 | C2 | C3 was never sent, so the body-identity replay
// check does not see it; the IV then sets the whole first block (IP, PORT, FLAG0) and FLAG1
// fixes the checksum. One captured knock suffices; no key.
TEST(Review2Attack, OriginalIvYesThreeBlockKnockForgedFromOneCapture) {
  const KnockCodec codec(settings("IP,PORT,FLAG0,FLAG1,FLAG2,FLAG3,FLAG4,FLAG5,FLAG6,FLAG7,FLAG8,CHECKSUM"));
  ASSERT_EQ(codec.format().byte_length(), 16u);
  ASSERT_EQ(codec.wire_bytes(), 40u);  // "RandomIV" | IV | C1 | C2 | C3

  // The honest knock the attacker sees: 198.18.0.2 asks for port 22.
  KnockValues honest;
  honest.set(Field::Ip, 0xC6120002);
  honest.set(Field::Port, 22);
  for (int f = 0; f <= 8; ++f) honest.set(static_cast<Field>(static_cast<int>(Field::Flag0) + f), 0);
  const Bytes iv = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
  const auto ports = codec.encode(honest, iv);
  Bytes wire(codec.wire_bytes());
  ASSERT_EQ(codec.to_bytes(ports, wire), DecodeError::None);
  ASSERT_TRUE(codec.decode(ports).ok());

  // What the attacker knows or guesses: the honest plaintext (address, port, zero flags).
  const Bytes plain = codec.format().pack(honest);
  const std::uint8_t* c1 = &wire[16];
  const std::uint8_t* c2 = &wire[24];
  const std::uint8_t* c3 = &wire[32];
  std::array<std::uint8_t, 8> p2x{};  // the forged second block: D(C2) ^ C3 = P2 ^ C1 ^ C3
  for (int i = 0; i < 8; ++i) p2x[i] = static_cast<std::uint8_t>(plain[8 + i] ^ c1[i] ^ c3[i]);
  // The wanted first block: 198.18.0.66 (the attacker), port 22, FLAG0 0, FLAG1 = checksum fix.
  std::array<std::uint8_t, 8> p1x = {198, 18, 0, 66, 0, 22, 0, 0};
  unsigned sum = 0;
  for (int i = 0; i < 7; ++i) sum += p1x[i] + p2x[i];
  p1x[7] = static_cast<std::uint8_t>(p2x[7] - sum);
  Bytes forged(wire.begin(), wire.begin() + 8);  // "RandomIV"
  for (int i = 0; i < 8; ++i) forged.push_back(static_cast<std::uint8_t>(p1x[i] ^ 0x08 ^ c2[i]));  // IV'
  forged.insert(forged.end(), c3, c3 + 8);
  forged.insert(forged.end(), c2, c2 + 8);
  forged.insert(forged.end(), c3, c3 + 8);

  // The forgery works on the format: it decodes as 198.18.0.66's knock (the attack is real)...
  const DecodeResult r = codec.decode(codec.to_ports(forged));
  ASSERT_TRUE(r.ok() && r.values.get(Field::Ip) == 0xC6120042u);
  // ...but it is made of blocks already seen: the daemon, which keeps every ciphertext block of
  // an accepted iv = yes knock, refuses it once the honest knock was accepted.
  const auto seen = block_identities(wire);
  bool shares = false;
  for (const auto& id : block_identities(forged))
    for (const auto& old : seen) shares = shares || id == old;
  EXPECT_TRUE(shares) << "a knock for 198.18.0.66 forged from one knock of 198.18.0.2 shares no block with it";
}

}  // namespace
}  // namespace knock::codec

namespace knock::rules {
namespace {

const char* kClientConf =
    "knock = IP,PORT,CHECKSUM\n<client alice>\n  key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n</client>\n";

std::string engine_conf(const std::filesystem::path& dir) {
  return "usecache = yes\nstatecache = " + (dir / "cache").string() +
         "\n<template open>\n system = \"echo open IP\"\n</template>\n"
         "<actions>\n <action a>\n  condition = PORT == 22\n  template = open\n </action>\n</actions>\n";
}

std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::path(BINARY_DIR) / ("review2_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
  return dir;
}

// What the daemon does with a verified SPA message (daemon.cpp, on_spa): replayed(), then
// handle() with replay_expiry = send_time + spa::kReplayKeep.
bool daemon_accepts(Engine& engine, const spa::Verified& v, std::uint32_t window, double now) {
  if (!v.ok() || engine.replayed(v.identity)) return false;
  KnockEvent e;
  e.values = v.values;
  e.logip = IpAddress::v4(*v.values.get(codec::Field::Ip));
  e.time = now;
  (void)window;  // the daemon keeps identities for spa::kReplayKeep, whatever the window
  e.add_replay(v.identity);
  e.replay_expiry = static_cast<std::int64_t>(v.send_time) + spa::kReplayKeep;
  return engine.handle(e);
}

// The replay identity is kept until send_time + the window in force when the message was
// accepted; a restart (or SIGHUP) drops the entries past that. When the new configuration has a
// wider spawindow, a message accepted before still verifies, and is accepted a second time.
TEST(Review2Attack, SpaReplayedAfterRestartWithWiderWindow) {
  const auto dir = temp_dir("widen");
  const config::Value keys_root = config::parse_string(kClientConf, "k.conf");
  const spa::KeyRing ring = spa::KeyRing::from_config(keys_root);
  const codec::KnockFormat format = codec::KnockFormat::parse("IP,PORT,CHECKSUM", Location{"k.conf", 1});
  const std::int64_t t0 = 1795507260;
  codec::KnockValues values;
  values.set(codec::Field::Ip, 0xC6120002);
  values.set(codec::Field::Port, 22);
  const spa::Key key = spa::Key::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", Location{});
  const auto message = spa::seal(spa::Cipher::XChaCha20Poly1305, format, values, key, static_cast<std::uint64_t>(t0));

  RecordingRunner runner;
  ManualClock clock;
  EngineOptions options;
  options.runner = &runner;
  options.clock = &clock;
  const config::Value root = config::parse_string(engine_conf(dir), "e.conf");
  {  // spawindow = 60: accepted once, then refused as a replay.
    clock.set(static_cast<double>(t0));
    Engine engine(root, options);
    const spa::Verifier narrow(ring, spa::Cipher::XChaCha20Poly1305, format, 60);
    ASSERT_TRUE(daemon_accepts(engine, narrow.verify(message, t0), 60, static_cast<double>(t0)));
    ASSERT_FALSE(daemon_accepts(engine, narrow.verify(message, t0 + 1), 60, static_cast<double>(t0 + 1)));
    engine.save();
  }
  // Restart two minutes later with spawindow = 3600 (the operator fixing clock-skew refusals).
  clock.set(static_cast<double>(t0 + 120));
  Engine restarted(root, options);
  const spa::Verifier wide(ring, spa::Cipher::XChaCha20Poly1305, format, 3600);
  const spa::Verified v = wide.verify(message, t0 + 120);
  ASSERT_TRUE(v.ok());  // still inside the new window
  EXPECT_FALSE(daemon_accepts(restarted, v, 3600, static_cast<double>(t0 + 120)))
      << "the same message was accepted a second time after the restart";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace knock::rules
