// fwknop's SPA packets (codec/fwknop): packets built here with Crypto++ from the protocol
// description (tests/tools/fwknop_builder.hpp), every refusal reason, bit flips, truncations,
// hostile base64, the <fwknop NAME> configuration, and no allocation on the verify path.
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/stat.h>

#include <cstdio>

#include <atomic>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../tools/fwknop_builder.hpp"
#include "codec/fwknop.hpp"
#include "codec/replay.hpp"
#include "config/tree.hpp"

// Counts every heap allocation (malloc and its relatives, so also Crypto++'s aligned blocks)
// while enabled, to show that verify() does not allocate. Not under AddressSanitizer, which
// owns malloc (PORTKNOCK_SANITIZE): there the test is skipped.
#if defined(__SANITIZE_ADDRESS__)
#define FWKNOP_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FWKNOP_TEST_ASAN 1
#endif
#endif
namespace {
std::atomic<bool> g_count_allocs{false};
std::atomic<long> g_allocs{0};
}  // namespace
#ifndef FWKNOP_TEST_ASAN
static void count() {
  if (g_count_allocs.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
}
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* malloc(std::size_t n) noexcept {
  count();
  return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) noexcept {
  count();
  return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) noexcept {
  count();
  return __libc_realloc(p, n);
}
void* memalign(std::size_t a, std::size_t n) noexcept {
  count();
  return __libc_memalign(a, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) noexcept {
  count();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) noexcept {
  count();
  void* p = __libc_memalign(a, n);
  if (p == nullptr) return 12;  // ENOMEM
  *out = p;
  return 0;
}
}
#endif

namespace knock::fwknop {
namespace {

using fwknop_test::Packet;
constexpr std::int64_t kNow = 1700000000;
const std::string kKey = "0123456789abcdef0123456789abcdef";  // 32 bytes, as --key-gen makes
const std::string kHmac(64, 'h');

std::string b64s(const std::string& s) { return base64_encode({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}); }

std::string stanza_text(const std::string& name, const std::string& extra = "", const std::string& key = kKey,
                        const std::string& hmac = kHmac) {
  return "<fwknop " + name + ">\n  key_base64 = " + b64s(key) + "\n  hmac_key_base64 = " + b64s(hmac) +
         "\n  open_ports = tcp/22, udp/53\n" + extra + "</fwknop>\n";
}

Stanzas load(const std::string& text) { return Stanzas::from_config(config::parse_string(text, "test.conf")); }

IpAddress src(const char* a = "198.18.1.2") { return *IpAddress::parse(a); }

struct Fixture {
  Stanzas stanzas;
  Verifier verifier;
  explicit Fixture(const std::string& text, std::uint32_t window = 120) : stanzas(load(text)), verifier(stanzas, window) {}
  Verified check(const std::string& wire, const IpAddress& source = src(), std::int64_t now = kNow) const {
    return verifier.verify({reinterpret_cast<const std::uint8_t*>(wire.data()), wire.size()}, source, now);
  }
};

std::string good(const Packet& p = Packet{}) { return fwknop_test::build(p, kKey, kHmac); }

TEST(Fwknop, Base64IsStrict) {
  std::uint8_t out[8];
  std::size_t len = 0;
  EXPECT_TRUE(base64_decode("YWxpY2U", out, sizeof out, len));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(out), len), "alice");
  EXPECT_FALSE(base64_decode("YWxpY2V", out, sizeof out, len));   // stray bits
  EXPECT_FALSE(base64_decode("YWxpY2U=", out, sizeof out, len));  // '=' is not written by fwknop
  EXPECT_FALSE(base64_decode("YWxpY", out, sizeof out, len));     // impossible length
  EXPECT_FALSE(base64_decode("YW-pY2U", out, sizeof out, len));
  EXPECT_FALSE(base64_decode("YWxpY2VhbGljZQ", out, 4, len));     // does not fit
  EXPECT_EQ(b64s("alice"), "YWxpY2U");
  EXPECT_EQ(b64s("Salted__"), "U2FsdGVkX18");
}

TEST(Fwknop, AcceptsAValidPacket) {
  Fixture f(stanza_text("alice"));
  Packet p;
  p.message = "198.18.1.2,tcp/22,udp/53";
  const std::string w = good(p);
  EXPECT_GE(w.size(), kMinPacketBytes);
  const Verified v = f.check(w);
  ASSERT_EQ(v.reason, Reason::Ok) << to_string(v.reason);
  EXPECT_EQ(v.stanza, 0);
  EXPECT_EQ(v.stanza_name, "alice");
  EXPECT_EQ(v.user(), "alice");
  EXPECT_EQ(v.timestamp, kNow);
  EXPECT_EQ(v.offset, 0);
  EXPECT_EQ(v.message_type, 1);
  EXPECT_EQ(v.requested_ip, 0xC6120102u);
  EXPECT_EQ(v.ip, 0xC6120102u);
  ASSERT_EQ(v.port_count, 2);
  EXPECT_EQ(v.ports[0], (PortRequest{Proto::Tcp, 22}));
  EXPECT_EQ(v.ports[1], (PortRequest{Proto::Udp, 53}));
  EXPECT_FALSE(v.has_client_timeout);
  EXPECT_EQ(v.fw_access_timeout, kDefaultFwAccessTimeout);
  const auto kv = v.knock_values();
  EXPECT_EQ(kv.get(codec::Field::Ip), 0xC6120102u);
  EXPECT_EQ(kv.get(codec::Field::Port), 22u);
  // The identity is the first 16 bytes of SHA-256 of the wire text; a ReplayCache refuses it twice.
  std::uint8_t d[32];
  CryptoPP::SHA256().CalculateDigest(d, reinterpret_cast<const std::uint8_t*>(w.data()), w.size());
  EXPECT_TRUE(std::equal(v.identity.begin(), v.identity.end(), d));
  spa::ReplayCache cache(16);
  EXPECT_EQ(cache.insert(v.identity, v.timestamp + 120, kNow), spa::ReplayCache::Result::Fresh);
  EXPECT_EQ(cache.insert(f.check(w).identity, v.timestamp + 120, kNow), spa::ReplayCache::Result::Replay);
}

TEST(Fwknop, PassphraseKeysAndLongHmacKeys) {
  const std::string hmac(100, 'z');  // longer than a SHA-256 block: hashed first, as HMAC does
  Fixture f("<fwknop bob>\n key = my pass phrase\n hmac_key = " + hmac + "\n open_ports = tcp/22\n</fwknop>\n");
  EXPECT_EQ(f.check(fwknop_test::build(Packet{}, "my pass phrase", hmac)).reason, Reason::Ok);
}

TEST(Fwknop, SeveralStanzasAreTriedInOrder) {
  Fixture f(stanza_text("a", "", std::string(32, 'a'), std::string(64, 'A')) +
            stanza_text("b", "", std::string(32, 'b'), std::string(64, 'B')) +
            stanza_text("c", "  source = 198.19.0.0/16\n", std::string(32, 'c'), std::string(64, 'C')));
  const Verified v = f.check(fwknop_test::build(Packet{}, std::string(32, 'b'), std::string(64, 'B')));
  EXPECT_EQ(v.reason, Reason::Ok);
  EXPECT_EQ(v.stanza, 1);
  EXPECT_EQ(v.stanza_name, "b");
  const std::string c = fwknop_test::build(Packet{}, std::string(32, 'c'), std::string(64, 'C'));
  EXPECT_EQ(f.check(c).reason, Reason::Hmac);  // c's source does not hold 198.18.1.2
  EXPECT_EQ(f.check(c, src("198.19.7.7")).stanza_name, "c");
}

TEST(Fwknop, RefusesBySize) {
  Fixture f(stanza_text("alice"));
  EXPECT_EQ(f.check(std::string(kMinPacketBytes - 1, 'A')).reason, Reason::Size);
  EXPECT_EQ(f.check(std::string(kMaxPacketBytes + 1, 'A')).reason, Reason::Size);
  EXPECT_EQ(f.check("").reason, Reason::Size);
}

TEST(Fwknop, RefusesHostileBase64) {
  Fixture f(stanza_text("alice"));
  std::string w = good();
  for (char bad : {'=', '\n', ' ', '\0', '-', '_', ':', '\xff'}) {
    std::string x = w;
    x[x.size() / 2] = bad;
    EXPECT_EQ(f.check(x).reason, Reason::Base64) << int(bad);
  }
  // Stray bits in the HMAC's last character: a second spelling of the same HMAC is refused.
  std::string x = w;
  char& last = x.back();
  last = last == 'A' ? 'B' : static_cast<char>(last + 1);
  EXPECT_EQ(f.check(x).reason, Reason::Base64);
  // Lengths that no base64 text has, and a 1500-byte wall of 'A'.
  EXPECT_EQ(f.check(std::string(kMaxPacketBytes, 'A')).reason, Reason::Hmac);
  EXPECT_EQ(f.check(std::string(kMaxPacketBytes, '/')).reason, Reason::Base64);
  std::string odd(200, 'A');
  odd.resize(43 + 115);  // body + prefix = 125 = 4k + 1 characters
  EXPECT_EQ(f.check(odd).reason, Reason::Base64);
}

TEST(Fwknop, RefusesNoHmacWrongKeysAndSources) {
  Fixture f(stanza_text("alice", "  source = 198.18.0.0/15, 2001:db8::/32\n"));
  // No HMAC: what the client sends without --use-hmac.
  Packet big;
  big.message = "198.18.1.2,tcp/22,udp/53,tcp/23,tcp/24";  // long enough to be >= 140 bytes without the HMAC
  const std::string no_hmac = fwknop_test::wire(fwknop_test::encrypt(big.full_plaintext(), kKey), "");
  ASSERT_GE(no_hmac.size(), kMinPacketBytes);
  EXPECT_NE(f.check(no_hmac).reason, Reason::Ok);
  EXPECT_TRUE(f.check(no_hmac).reason == Reason::Hmac || f.check(no_hmac).reason == Reason::Base64);
  EXPECT_EQ(f.check(fwknop_test::build(Packet{}, kKey, std::string(64, 'x'))).reason, Reason::Hmac);
  // Right HMAC key, wrong encryption key: authentic, does not decrypt (or decrypts to noise).
  const Verified wrong_key = f.check(fwknop_test::build(Packet{}, std::string(32, 'k'), kHmac));
  EXPECT_TRUE(wrong_key.reason == Reason::Decrypt || wrong_key.reason == Reason::Fields) << to_string(wrong_key.reason);
  EXPECT_EQ(f.check(good(), src("203.0.113.1")).reason, Reason::Source);
  EXPECT_EQ(f.check(good(), src("2001:db8::1")).reason, Reason::Ok);
  EXPECT_EQ(f.check(good(), src("2001:db9::1")).reason, Reason::Source);
}

TEST(Fwknop, EveryBitFlipAndTruncationIsRefused) {
  Fixture f(stanza_text("alice"));
  const std::string w = good();
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (std::size_t i = 0; i < w.size(); ++i) {
    for (int bit = 0; bit < 6; ++bit) {
      std::string x = w;
      const int v = static_cast<int>(std::string_view(alphabet).find(x[i]));
      x[i] = alphabet[v ^ (1 << bit)];
      EXPECT_NE(f.check(x).reason, Reason::Ok) << i << " " << bit;
    }
    for (int bit = 0; bit < 8; ++bit) {
      std::string x = w;
      x[i] = static_cast<char>(x[i] ^ (1 << bit));
      EXPECT_NE(f.check(x).reason, Reason::Ok);
    }
  }
  for (std::size_t n = 0; n < w.size(); ++n) EXPECT_NE(f.check(w.substr(0, n)).reason, Reason::Ok) << n;
  EXPECT_NE(f.check(w + "A").reason, Reason::Ok);
  EXPECT_NE(f.check("A" + w).reason, Reason::Ok);
}

TEST(Fwknop, RefusesBadPlaintext) {
  Fixture f(stanza_text("alice"));
  auto reason = [&](const Packet& p) { return f.check(good(p)).reason; };
  Packet p;
  p.random = "123456789012345";  // 15 digits
  EXPECT_EQ(reason(p), Reason::Fields);
  p = Packet{};
  p.random = "12345678901234x6";
  EXPECT_EQ(reason(p), Reason::Fields);
  p = Packet{};
  p.user = std::string(kMaxUser + 1, 'u');
  EXPECT_EQ(reason(p), Reason::Fields);
  p.user = std::string(kMaxUser, 'u');
  EXPECT_EQ(reason(p), Reason::Ok);
  p.user = "bob;rm -rf";
  EXPECT_EQ(reason(p), Reason::Fields);
  p = Packet{};
  p.message = "198.18.1.2,tcp/22" + std::string(",tcp/22") + std::string(250, ' ');
  EXPECT_EQ(reason(p), Reason::Fields);  // > 256 characters
  p.message = "198.18.1.2,tcp/22,tcp/22,tcp/22,tcp/22,tcp/22,tcp/22,tcp/22,tcp/22";
  EXPECT_EQ(reason(p), Reason::Ok);  // 8 requests
  p.message += ",tcp/22";
  EXPECT_EQ(reason(p), Reason::Fields);  // 9
  for (const char* m : {"198.18.1.2", "198.18.1.2,", "198.18.1,tcp/22", "198.18.1.256,tcp/22", "198.18.01.2,tcp/22",
                        "198.18.1.2,icmp/0", "198.18.1.2,tcp/0", "198.18.1.2,tcp/65536", "198.18.1.2,tcp/22,",
                        "2001:db8::1,tcp/22", "198.18.1.2,tcp22", " 198.18.1.2,tcp/22"}) {
    p.message = m;
    EXPECT_EQ(reason(p), Reason::Fields) << m;
  }
  p = Packet{};
  p.type = 7;
  EXPECT_EQ(reason(p), Reason::Fields);
  p = Packet{};
  p.plaintext_before_digest = Packet{}.encoded() + ":x:y:z:w";  // 11 fields
  EXPECT_EQ(reason(p), Reason::Fields);
  p = Packet{};
  p.plaintext = std::string("1234567890123456:YWxpY2U:1700000000:3.0.0:1:") + '\x01' + ":abc";
  EXPECT_EQ(reason(p), Reason::Fields);
  p = Packet{};
  p.timestamp = -5;
  EXPECT_EQ(reason(p), Reason::Fields);
}

TEST(Fwknop, RefusesBadDigestAndVersion) {
  Fixture f(stanza_text("alice"));
  Packet p;
  p.digest = fwknop_test::sha256_b64("something else");
  EXPECT_EQ(f.check(good(p)).reason, Reason::Digest);
  p.digest = "1B2M2Y8AsgTpgAmY7PhCfg";  // an MD5 digest: only SHA-256 is accepted
  EXPECT_EQ(f.check(good(p)).reason, Reason::Digest);
  p = Packet{};
  p.version = "2.0.4";
  EXPECT_EQ(f.check(good(p)).reason, Reason::Version);
}

TEST(Fwknop, TimeWindow) {
  Fixture f(stanza_text("alice"));
  Packet p;
  p.timestamp = kNow - 120;
  EXPECT_EQ(f.check(good(p)).reason, Reason::Ok);
  p.timestamp = kNow - 121;
  Verified v = f.check(good(p));
  EXPECT_EQ(v.reason, Reason::TooOld);
  EXPECT_EQ(v.offset, -121);
  p.timestamp = kNow + 121;
  v = f.check(good(p));
  EXPECT_EQ(v.reason, Reason::TooNew);
  EXPECT_EQ(v.offset, 121);
  p.timestamp = 999999999999999999;
  EXPECT_EQ(f.check(good(p)).reason, Reason::TooNew);
  Fixture narrow(stanza_text("alice"), 10);
  p.timestamp = kNow + 11;
  EXPECT_EQ(narrow.check(good(p)).reason, Reason::TooNew);
}

TEST(Fwknop, RefusesWhatIsNotAllowed) {
  Fixture f(stanza_text("alice"));
  Packet p;
  p.type = 0;
  p.message = "198.18.1.2,echo hi";
  EXPECT_EQ(f.check(good(p)).reason, Reason::MessageType);
  for (int type : {2, 4, 5, 6}) {
    p = Packet{};
    p.type = type;
    p.nat = "198.18.0.9,22";
    if (type == 4 || type == 6) p.client_timeout = 30;
    EXPECT_EQ(f.check(good(p)).reason, Reason::Nat) << type;
  }
  p = Packet{};
  p.type = 2;  // NAT type without the NAT field
  EXPECT_EQ(f.check(good(p)).reason, Reason::Fields);
  p = Packet{};
  p.server_auth = "secret";
  EXPECT_EQ(f.check(good(p)).reason, Reason::ServerAuth);
  p = Packet{};
  p.message = "0.0.0.0,tcp/22";
  EXPECT_EQ(f.check(good(p)).reason, Reason::SourceAddress);
  p.message = "198.18.1.2,tcp/23";
  EXPECT_EQ(f.check(good(p)).reason, Reason::Access);
  p.message = "198.18.1.2,tcp/22,udp/22";
  EXPECT_EQ(f.check(good(p)).reason, Reason::Access);
  p = Packet{};
  p.type = 3;
  p.client_timeout = 30;
  EXPECT_EQ(f.check(good(p)).reason, Reason::ClientTimeout);
  p.type = 1;  // a timeout field where the type has none: read as server auth, "30" is not its base64
  EXPECT_EQ(f.check(good(p)).reason, Reason::Fields);
  p = Packet{};
  p.type = 3;  // type 3 without its timeout
  EXPECT_EQ(f.check(good(p)).reason, Reason::Fields);
}

TEST(Fwknop, StanzaOptionsAllow) {
  Fixture f(stanza_text("alice", "  require_source_address = no\n  max_client_timeout = 60\n  require_user = alice\n"
                                 "  fw_access_timeout = 45\n"));
  Packet p;
  p.message = "0.0.0.0,tcp/22";
  p.type = 3;
  p.client_timeout = 60;
  Verified v = f.check(good(p), src("198.18.5.5"));
  ASSERT_EQ(v.reason, Reason::Ok) << to_string(v.reason);
  EXPECT_EQ(v.requested_ip, 0u);
  EXPECT_EQ(v.ip, 0xC6120505u);
  EXPECT_TRUE(v.has_client_timeout);
  EXPECT_EQ(v.client_timeout, 60u);
  EXPECT_EQ(v.fw_access_timeout, 45u);
  EXPECT_EQ(f.check(good(p), src("2001:db8::5")).reason, Reason::SourceAddress);  // 0.0.0.0 from IPv6
  p.client_timeout = 61;
  EXPECT_EQ(f.check(good(p)).reason, Reason::ClientTimeout);
  p = Packet{};
  p.user = "mallory";
  EXPECT_EQ(f.check(good(p)).reason, Reason::User);
}

TEST(Fwknop, EveryReasonHasText) {
  for (int r = 0; r <= static_cast<int>(Reason::ClientTimeout); ++r)
    EXPECT_NE(to_string(static_cast<Reason>(r)), "unknown");
}

TEST(Fwknop, ConfigKeyFilesAndDefaults) {
  const std::string dir = ::testing::TempDir();
  const std::string kf = dir + "/fwknop_test_key", hf = dir + "/fwknop_test_hmac";
  for (const auto& [path, text] : {std::pair{kf, b64s(kKey) + "=\n"}, std::pair{hf, b64s(kHmac) + "==\n"}}) {
    std::remove(path.c_str());
    FILE* out = std::fopen(path.c_str(), "w");
    ASSERT_NE(out, nullptr);
    std::fputs(text.c_str(), out);
    std::fclose(out);
    ::chmod(path.c_str(), 0600);
  }
  Fixture f("<fwknop alice>\n keyfile = " + kf + "\n hmac_keyfile = " + hf + "\n open_ports = tcp/22\n source = ANY\n</fwknop>\n");
  EXPECT_EQ(f.check(good()).reason, Reason::Ok);
  const Stanza& s = f.stanzas.stanza(0);
  EXPECT_TRUE(s.sources.empty());
  EXPECT_TRUE(s.require_source_address);
  EXPECT_TRUE(s.require_user.empty());
  EXPECT_EQ(s.fw_access_timeout, 30u);
  EXPECT_EQ(s.max_client_timeout, 0u);
  EXPECT_TRUE(load("").empty());
}

TEST(Fwknop, ConfigErrors) {
  auto error = [](const std::string& text) -> std::string {
    try {
      load(text);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error("<fwknop a>\n key = x\n open_ports = tcp/22\n</fwknop>\n").find("hmac_key"), std::string::npos);
  EXPECT_NE(error("<fwknop a>\n hmac_key = x\n open_ports = tcp/22\n</fwknop>\n").find("needs one of key"), std::string::npos);
  EXPECT_NE(error("<fwknop a>\n key = x\n hmac_key = x\n open_ports = tcp/22\n</fwknop>\n").find("must differ"),
            std::string::npos);
  EXPECT_NE(error("<fwknop a>\n key = x\n key_base64 = eA\n hmac_key = y\n open_ports = tcp/22\n</fwknop>\n")
                .find("only one"),
            std::string::npos);
  EXPECT_NE(error("<fwknop a>\n key = x\n hmac_key = y\n</fwknop>\n").find("open_ports"), std::string::npos);
  EXPECT_NE(error("<fwknop a>\n key = x\n hmac_key = y\n open_ports = icmp/1\n</fwknop>\n").find("open_ports"),
            std::string::npos);
  EXPECT_NE(error("<fwknop a>\n key = x\n hmac_key = y\n open_ports = tcp/22\n bogus = 1\n</fwknop>\n").find("bogus"),
            std::string::npos);
  EXPECT_NE(error("<fwknop a>\n key = x\n hmac_key = y\n open_ports = tcp/22\n source = 198.18.0.0/33\n</fwknop>\n")
                .find("prefix"),
            std::string::npos);
  EXPECT_NE(error("<fwknop a>\n key = " + std::string(33, 'k') + "\n hmac_key = y\n open_ports = tcp/22\n</fwknop>\n")
                .find("1 to 32"),
            std::string::npos);
  EXPECT_NE(error("<fwknop a>\n key_base64 = !!\n hmac_key = y\n open_ports = tcp/22\n</fwknop>\n").find("base64"),
            std::string::npos);
  EXPECT_NE(error("<fwknop a b>\n key = x\n hmac_key = y\n open_ports = tcp/22\n</fwknop>\n").find("name"),
            std::string::npos);
  EXPECT_NE(error("<fwknop a>\n key = x\n hmac_key = y\n open_ports = tcp/22\n require_source_address = maybe\n</fwknop>\n")
                .find("yes or no"),
            std::string::npos);
  const std::string where = error("\n\n<fwknop a>\n key = x\n hmac_key = y\n open_ports = tcp/22\n fw_access_timeout = 0\n</fwknop>\n");
  EXPECT_NE(where.find("test.conf:7"), std::string::npos) << where;
}

TEST(Fwknop, Settings) {
  const Settings d = settings_from_config(config::parse_string("", "t"));
  EXPECT_EQ(d.port, 62201);
  EXPECT_EQ(d.window, 120u);
  const Settings s = settings_from_config(config::parse_string("fwknopport = 5000\nfwknopwindow = 30\n", "t"));
  EXPECT_EQ(s.port, 5000);
  EXPECT_EQ(s.window, 30u);
  EXPECT_THROW(settings_from_config(config::parse_string("fwknopport = 0\n", "t")), ConfigError);
  EXPECT_THROW(settings_from_config(config::parse_string("fwknopwindow = 86401\n", "t")), ConfigError);
  EXPECT_EQ(kDaemonKeys[0], "fwknop");
}

TEST(Fwknop, RandomDatagramsAreRefused) {
  Fixture f(stanza_text("alice"));
  std::mt19937 rng(7);
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 2000; ++i) {
    std::string x(kMinPacketBytes + rng() % 400, 'A');
    for (auto& c : x) c = (i & 1) ? alphabet[rng() % 64] : static_cast<char>(rng());
    EXPECT_NE(f.check(x).reason, Reason::Ok);
  }
}

TEST(Fwknop, VerifyDoesNotAllocate) {
#ifdef FWKNOP_TEST_ASAN
  GTEST_SKIP() << "AddressSanitizer owns malloc";
#endif
  Fixture f(stanza_text("a", "", std::string(32, 'a'), std::string(64, 'A')) + stanza_text("alice"));
  Packet p;
  p.message = "198.18.1.2,tcp/22,udp/53";
  const std::string w = good(p);
  Packet old;
  old.timestamp = kNow - 1000;
  const std::vector<std::string> inputs = {w, good(old), std::string(200, 'A'), std::string(10, 'A'),
                                           fwknop_test::build(Packet{}, std::string(32, 'k'), kHmac)};
  const IpAddress source = src();
  (void)f.check(w);
  g_allocs = 0;
  g_count_allocs = true;
  int ok = 0;
  for (int round = 0; round < 10; ++round)
    for (const auto& in : inputs)
      ok += f.verifier.verify({reinterpret_cast<const std::uint8_t*>(in.data()), in.size()}, source, kNow).ok();
  g_count_allocs = false;
  EXPECT_EQ(ok, 10);
  EXPECT_EQ(g_allocs.load(), 0);
  // And the counter works.
  g_count_allocs = true;
  void* leak = std::malloc(8);
  g_count_allocs = false;
  std::free(leak);
  EXPECT_EQ(g_allocs.load(), 1);
}

}  // namespace
}  // namespace knock::fwknop
