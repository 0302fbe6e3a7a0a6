// The monitor/worker protocol (daemon/privsep.hpp) from raw bytes: what a compromised worker
// can send. Every malformed message is refused, none crashes the decoder, descriptors pass
// only where asked.
#include "daemon/privsep.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace knock::daemon::privsep {
namespace {

rules::KnockEvent sample_event() {
  rules::KnockEvent e;
  e.values.set(codec::Field::Ip, 0xC6120102);
  e.values.set(codec::Field::Port, 22);
  e.values.set(codec::Field::Flag0, 255);
  e.logip = *IpAddress::parse("198.18.1.2");
  e.time = 1764450000.25;
  e.extras.client = "alice";
  spa::Identity id{};
  id.fill(0xab);
  e.add_replay(id);
  e.replay_expiry = 1764450120;
  return e;
}

std::vector<std::uint8_t> encoded(KnockKind kind, const rules::KnockEvent& e, bool by_ports = false) {
  Buffer out;
  const std::size_t n = encode_knock(kind, by_ports, e, out);
  EXPECT_GT(n, 0u);
  return {out.begin(), out.begin() + static_cast<long>(n)};
}

TEST(Privsep, KnockRoundTrip) {
  const auto message = encoded(KnockKind::Spa, sample_event(), true);
  KnockReport r;
  std::string why;
  ASSERT_TRUE(decode_knock(message, r, why)) << why;
  EXPECT_EQ(r.kind, KnockKind::Spa);
  EXPECT_TRUE(r.by_ports);
  EXPECT_EQ(r.event.values, sample_event().values);
  EXPECT_EQ(r.event.logip.str(), "198.18.1.2");
  EXPECT_EQ(r.event.time, 1764450000.25);
  EXPECT_EQ(r.event.extras.client, "alice");
  EXPECT_EQ(r.event.extras.proto, "");
  EXPECT_FALSE(r.event.extras.client_timeout);
  ASSERT_EQ(r.event.replay_count, 1u);
  EXPECT_EQ(r.event.replay[0][0], 0xab);
  EXPECT_EQ(r.event.replay_expiry, 1764450120);
}

TEST(Privsep, FwknopNamesAndV6RoundTrip) {
  auto e = sample_event();
  e.logip = *IpAddress::parse("2001:db8::7");
  e.extras.client = "stanza1";
  e.extras.user = "bob";
  e.extras.proto = "tcp";
  e.extras.client_timeout = 30;
  codec::KnockValues::Ip6Bytes ip6{};
  ip6[0] = 0x20;
  ip6[1] = 0x01;
  ip6[15] = 7;
  e.values.set_ip6(ip6);
  KnockReport r;
  std::string why;
  ASSERT_TRUE(decode_knock(encoded(KnockKind::Fwknop, e), r, why)) << why;
  EXPECT_EQ(r.event.logip.str(), "2001:db8::7");
  EXPECT_EQ(r.event.values, e.values);  // IP6 too
  EXPECT_EQ(r.event.extras.user, "bob");
  EXPECT_EQ(r.event.extras.proto, "tcp");
  EXPECT_EQ(r.event.extras.client_timeout, 30u);
}

TEST(Privsep, EveryCutShortMessageIsRefused) {
  const auto message = encoded(KnockKind::Spa, sample_event());
  for (std::size_t n = 0; n < message.size(); ++n) {
    KnockReport r;
    std::string why;
    EXPECT_FALSE(decode_knock(std::span(message.data(), n), r, why)) << n;
    EXPECT_FALSE(why.empty());
  }
}

TEST(Privsep, TrailingBytesAreRefused) {
  auto message = encoded(KnockKind::Spa, sample_event());
  message.push_back(0);
  KnockReport r;
  std::string why;
  EXPECT_FALSE(decode_knock(message, r, why));
  EXPECT_EQ(why, "trailing bytes");
}

// Offsets in the layout: type, version, kind, flags, family, 16 address bytes, 8 time bytes,
// 2 bytes of field mask, then the fields.
constexpr std::size_t kKindAt = 2, kFlagsAt = 3, kFamilyAt = 4, kTimeAt = 21, kMaskAt = 29, kFieldsAt = 31;

TEST(Privsep, HostileHeadersAreRefused) {
  const auto good = encoded(KnockKind::Spa, sample_event());
  struct Case {
    std::size_t at;
    std::uint8_t value;
    const char* why;
  } cases[] = {
      {0, 9, "not a KNOCK of this version"},  {1, 2, "not a KNOCK of this version"},
      {kKindAt, 3, "unknown knock kind 3"},     {kFlagsAt, 2, "unknown flags"},
      {kFamilyAt, 5, "bad address family 5"}, {kMaskAt, 0x80, "unknown fields"},
      {kMaskAt, 0x20, "IP6 among the 32-bit fields"},
  };
  for (const auto& c : cases) {
    auto message = good;
    message[c.at] = c.value;
    KnockReport r;
    std::string why;
    EXPECT_FALSE(decode_knock(message, r, why)) << c.why;
    EXPECT_EQ(why, c.why);
  }
}

TEST(Privsep, TimeMustBeFinite) {
  auto message = encoded(KnockKind::Spa, sample_event());
  const double nan = std::nan("");
  std::uint64_t bits;
  std::memcpy(&bits, &nan, sizeof bits);
  for (int i = 0; i < 8; ++i) message[kTimeAt + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(bits >> (56 - 8 * i));
  KnockReport r;
  std::string why;
  EXPECT_FALSE(decode_knock(message, r, why));
  EXPECT_EQ(why, "bad time");
}

TEST(Privsep, FieldOutOfItsWidthIsRefused) {
  // Fields in order: IP (4 bytes), PORT (2), FLAG0 (1): each sent as 4 bytes.
  auto message = encoded(KnockKind::Spa, sample_event());
  message[kFieldsAt + 4 + 1] = 1;  // PORT = 0x01000016
  KnockReport r;
  std::string why;
  EXPECT_FALSE(decode_knock(message, r, why));
  EXPECT_EQ(why, "field PORT out of range");
  message = encoded(KnockKind::Spa, sample_event());
  message[kFieldsAt + 8 + 2] = 1;  // FLAG0 = 0x1ff
  EXPECT_FALSE(decode_knock(message, r, why));
  EXPECT_EQ(why, "field FLAG0 out of range");
}

TEST(Privsep, NamesAreBoundedAndPrintable) {
  auto e = sample_event();
  const std::string long_name(kMaxName + 1, 'a');
  e.extras.client = long_name;
  Buffer out;
  EXPECT_EQ(encode_knock(KnockKind::Spa, false, e, out), 0u);  // the worker cannot even say it

  auto message = encoded(KnockKind::Spa, sample_event());
  const std::size_t name_at = kFieldsAt + 3 * 4 + 1;  // after the IP6 presence byte
  ASSERT_EQ(message[name_at], 5);  // "alice"
  message[name_at + 1] = '\n';
  KnockReport r;
  std::string why;
  EXPECT_FALSE(decode_knock(message, r, why));
  EXPECT_EQ(why, "a name holds bytes outside printable ASCII");
  message = encoded(KnockKind::Spa, sample_event());
  message[name_at] = 200;  // longer than allowed, and than the message
  EXPECT_FALSE(decode_knock(message, r, why));
  EXPECT_EQ(why, "a name is too long or cut short");
}

TEST(Privsep, AtMostFourReplayIdentities) {
  auto message = encoded(KnockKind::Spa, sample_event());
  // replay count sits before the 16-byte identity and the 8-byte expiry
  const std::size_t count_at = message.size() - 8 - 16 - 1;
  ASSERT_EQ(message[count_at], 1);
  message[count_at] = 5;
  message.insert(message.end() - 8, 64, 0);
  KnockReport r;
  std::string why;
  EXPECT_FALSE(decode_knock(message, r, why));
  EXPECT_EQ(why, "too many replay identities");
}

TEST(Privsep, RandomBytesNeverCrashTheDecoders) {
  std::mt19937 rng(42);
  const auto good = encoded(KnockKind::Fwknop, sample_event());
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<std::uint8_t> m = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) m[rng() % m.size()] = static_cast<std::uint8_t>(rng());
    if (rng() % 3 == 0) m.resize(rng() % (m.size() + 1));
    KnockReport r;
    std::string why;
    if (decode_knock(m, r, why)) {
      ++accepted;
      EXPECT_TRUE(why.empty());
    }
    EXPECT_FALSE(decode_log_check(m, why));
    EXPECT_FALSE(decode_counters(m, why));
  }
  EXPECT_LT(accepted, 20000);
}

TEST(Privsep, CountersRoundTripAndOrder) {
  Counters c;
  c.spa.by_reason[3] = 7;
  c.spa.earliest = -300;
  c.fwknop.latest = 12;
  Buffer out;
  const std::size_t n = encode_counters(c, out);
  ASSERT_GT(n, 0u);
  std::string why;
  auto back = decode_counters(std::span(out.data(), n), why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(back->spa.by_reason[3], 7u);
  EXPECT_EQ(back->spa.earliest, -300);
  EXPECT_EQ(back->fwknop.latest, 12);
  c.spa.earliest = 5;  // an "earliest" offset after zero cannot be
  const std::size_t m = encode_counters(c, out);
  EXPECT_FALSE(decode_counters(std::span(out.data(), m), why));
}

TEST(Privsep, ChannelCarriesMessagesAndDescriptors) {
  auto channel = make_channel();
  const std::uint8_t hello[3] = {1, 2, 3};
  const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_message(channel[0], hello, fd));
  close(fd);
  Buffer in;
  int got = -1;
  ASSERT_EQ(receive_message(channel[1], in, &got), 3);
  EXPECT_GE(got, 0);
  EXPECT_EQ(fcntl(got, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  close(got);
  // A descriptor where none is asked for is closed, not leaked.
  const int other = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_TRUE(send_message(channel[0], hello, other));
  close(other);
  EXPECT_EQ(receive_message(channel[1], in, nullptr), 3);
  // Nothing there: -1 at once, never a block.
  EXPECT_EQ(receive_message(channel[1], in, nullptr), -1);
  // Oversized: flagged as such.
  std::vector<std::uint8_t> big(kMaxMessage + 100, 7);
  ASSERT_EQ(send(channel[0], big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  EXPECT_EQ(receive_message(channel[1], in, nullptr), static_cast<long>(kMaxMessage) + 1);
  // The peer gone: 0.
  close(channel[0]);
  EXPECT_EQ(receive_message(channel[1], in, nullptr), 0);
  close(channel[1]);
}

TEST(Privsep, LogCheckWithoutAnswerGivesUp) {
  auto channel = make_channel();
  EXPECT_EQ(ask_for_log(channel[1], 1, 2, 50), -1);
  Buffer in;
  const long n = receive_message(channel[0], in, nullptr);
  ASSERT_GT(n, 0);
  std::string why;
  auto check = decode_log_check(std::span(in.data(), static_cast<std::size_t>(n)), why);
  ASSERT_TRUE(check) << why;
  EXPECT_EQ(check->dev, 1u);
  EXPECT_EQ(check->ino, 2u);
  close(channel[0]);
  close(channel[1]);
}

}  // namespace
}  // namespace knock::daemon::privsep
