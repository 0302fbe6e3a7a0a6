// <store redis> (rules/store.hpp): its settings with FILE:LINE errors, the keys and the commit
// script's arguments, and the engine's use of a shared store, with an in-memory store that does
// what the script does (the script itself runs against a real redis-server in
// tests/e2e/netns_fleet.sh).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "config/tree.hpp"
#include "rules/engine.hpp"
#include "rules/store.hpp"

using namespace knock;
using namespace knock::rules;

namespace {

// The fleet key every in-memory gateway of a test holds (fleetkeyfile), and an entry sealed with it.
std::span<const std::uint8_t> test_fleet_key() {
  static const std::array<std::uint8_t, 32> key = {7, 1, 7, 2, 7, 3, 7, 4, 7, 5, 7, 6, 7, 7, 7, 8,
                                                   7, 9, 7, 10, 7, 11, 7, 12, 7, 13, 7, 14, 7, 15, 7, 16};
  return key;
}
std::string sealed(const std::string& encoded) { return seal_shared_knock(encoded, test_fleet_key()); }

config::Value conf(const std::string& text) { return config::parse_string(text, "fleet.conf"); }

std::string config_error(const std::string& text) {
  try {
    parse_store_settings(conf(text));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(StoreSettings, AbsentIsNone) { EXPECT_FALSE(parse_store_settings(conf("a = 1\n"))); }

TEST(StoreSettings, UnixSocketAndDefaults) {
  auto s = parse_store_settings(conf("<store redis>\n  address = /run/redis/redis.sock\n</store>\n"));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->unix_path, "/run/redis/redis.sock");
  EXPECT_EQ(s->prefix, "portknock:");
  EXPECT_EQ(s->timeout_ms, 50);
  EXPECT_FALSE(s->fallback_local);
  EXPECT_FALSE(s->has_password);
  EXPECT_FALSE(s->name.empty());  // the host name
  EXPECT_EQ(s->address(), "redis /run/redis/redis.sock");
}

TEST(StoreSettings, TcpAddressesAndOptions) {
  auto s = parse_store_settings(conf(
      "<store redis>\n address = 198.18.0.9\n prefix = {site1}:pk:\n timeout = 120ms\n fallback = local\n"
      " database = 3\n name = gw-a.example\n</store>\n"));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->host, "198.18.0.9");
  EXPECT_EQ(s->port, 6379);
  EXPECT_EQ(s->prefix, "{site1}:pk:");
  EXPECT_EQ(s->timeout_ms, 120);
  EXPECT_TRUE(s->fallback_local);
  EXPECT_EQ(s->database, 3);
  EXPECT_EQ(s->name, "gw-a.example");
  auto v6 = parse_store_settings(conf("<store redis>\naddress = [2001:db8::7]:6380\n</store>\n"));
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "2001:db8::7");
  EXPECT_EQ(v6->port, 6380);
  EXPECT_EQ(v6->address(), "redis [2001:db8::7]:6380");
}

TEST(StoreSettings, ErrorsNameFileAndLine) {
  EXPECT_EQ(config_error("<store redis>\n  timeout = 50\n</store>\n"),
            "fleet.conf:1: <store redis> needs address = 127.0.0.1:6379 (or a Unix socket path)");
  EXPECT_NE(config_error("<store redis>\n address = 127.0.0.1\n colour = red\n</store>\n").find("fleet.conf:3: unknown key 'colour'"),
            std::string::npos);
  EXPECT_NE(config_error("<store redis>\n address = redis.example:6379\n</store>\n").find("fleet.conf:2: bad address"),
            std::string::npos);  // host names are not resolved (no DNS in the knock path)
  EXPECT_NE(config_error("<store redis>\n address = 2001:db8::1\n</store>\n").find("in brackets"), std::string::npos);
  EXPECT_NE(config_error("<store redis>\n address = 127.0.0.1:70000\n</store>\n").find("fleet.conf:2: address: bad port"),
            std::string::npos);
  EXPECT_NE(config_error("<store redis>\n address = 127.0.0.1\n timeout = 0\n</store>\n").find("fleet.conf:3: timeout"),
            std::string::npos);
  EXPECT_NE(config_error("<store redis>\n address = 127.0.0.1\n timeout = 5001\n</store>\n").find("fleet.conf:3: timeout"),
            std::string::npos);
  EXPECT_NE(config_error("<store redis>\n address = 127.0.0.1\n fallback = open\n</store>\n").find("fleet.conf:3: fallback must be"),
            std::string::npos);
  EXPECT_NE(config_error("<store redis>\n address = 127.0.0.1\n user = pk\n</store>\n").find("fleet.conf:3: user needs passwordfile"),
            std::string::npos);
  EXPECT_NE(config_error("<store redis>\n address = 127.0.0.1\n prefix = a b\n</store>\n").find("fleet.conf:3: prefix"),
            std::string::npos);
  EXPECT_NE(config_error("<store memcached>\n address = 127.0.0.1\n</store>\n").find("fleet.conf:1: unknown store 'memcached'"),
            std::string::npos);
  EXPECT_NE(config_error("<store redis>\n address = 127.0.0.1\n</store>\n<store other>\n address = 127.0.0.1\n</store>\n")
                .find("only one <store> block"),
            std::string::npos);
  EXPECT_NE(config_error("store = redis\n").find("fleet.conf:1:"), std::string::npos);
  EXPECT_NE(config_error("<store redis>\n address = 127.0.0.1\n passwordfile = /nonexistent/pw\n</store>\n")
                .find("fleet.conf:3: passwordfile /nonexistent/pw does not exist"),
            std::string::npos);
}

TEST(SharedKnock, EntriesAreAuthenticatedWithTheFleetKey) {
  const std::string encoded = "pk1 gw=gwA t=1000 logip=198.18.1.2 IP=3323068417 PORT=22 act=open act=close";
  const std::string entry = sealed(encoded);
  std::string why;
  auto back = unseal_shared_knock(entry, test_fleet_key(), &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(*back, encoded);
  // Written without the key (anyone with write access to Redis): refused before it is parsed.
  EXPECT_FALSE(unseal_shared_knock(encoded, test_fleet_key(), &why));
  EXPECT_EQ(why, "no authentication tag");
  // A changed action list, address or time under a copied tag: refused.
  std::string changed = entry;
  changed.replace(changed.find("act=close"), 9, "act=xxxxx");
  EXPECT_FALSE(unseal_shared_knock(changed, test_fleet_key(), &why));
  EXPECT_NE(why.find("authentication failed"), std::string::npos);
  std::array<std::uint8_t, 32> other{};
  EXPECT_FALSE(unseal_shared_knock(entry, other, &why));
  EXPECT_FALSE(unseal_shared_knock(entry, {}, &why));  // no key: nothing followed
  EXPECT_TRUE(seal_shared_knock(encoded, {}).empty());  // and nothing published
}

TEST(StoreSettings, PasswordFileLikeAKeyFile) {
  const std::string dir = std::filesystem::temp_directory_path() / ("pk-store-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string file = dir + "/redis.pass";
  std::ofstream(file) << "s3cret\n";
  ::chmod(file.c_str(), 0600);
  auto s = parse_store_settings(
      conf("<store redis>\n address = 127.0.0.1\n user = portknock\n passwordfile = " + file + "\n</store>\n"));
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->has_password);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(s->password.data()), s->password.size()), "s3cret");
  EXPECT_EQ(s->user, "portknock");
  ::chmod(file.c_str(), 0644);  // every user may read it: refused, as a key file is
  EXPECT_NE(config_error("<store redis>\n address = 127.0.0.1\n passwordfile = " + file + "\n</store>\n").find("fleet.conf:3:"),
            std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(StoreKeys, StateAndReplayKeys) {
  EXPECT_EQ(redis_state_key("pk:", {"198.18.0.1", "visits", "num"}), "pk:state:198.18.0.1 visits num");
  // A blank inside a key is escaped, so the space between keys cannot be forged.
  EXPECT_EQ(redis_state_key("pk:", {"a b", "c"}), "pk:state:a%20b c");
  EXPECT_NE(redis_state_key("pk:", {"a b"}), redis_state_key("pk:", {"a", "b"}));
  EXPECT_EQ(redis_state_key("pk:", {""}), "pk:state:%");
  EXPECT_EQ(redis_replay_key("pk:", "00112233445566778899aabbccddeeff"), "pk:replay:00112233445566778899aabbccddeeff");
}

TEST(StoreKeys, CommitArguments) {
  StoreCommit c;
  c.ids = {"aa", "bb"};
  c.replay_ms = 90000;
  c.reads = {{{"198.18.0.1", "n"}, ""}};
  c.writes = {{{"198.18.0.1", "n"}, "i1"}, {{"last"}, "s198.18.0.1"}};
  c.state_ms = 3600000;
  c.stamp = "gwA 1709632800";
  const std::vector<std::string> want = {"5",
                                         "p:replay:aa", "p:replay:bb", "p:state:198.18.0.1 n", "p:state:198.18.0.1 n", "p:state:last",
                                         "2", "1", "2", "90000", "3600000", "gwA 1709632800",
                                         "", "i1", "s198.18.0.1"};
  EXPECT_EQ(redis_commit_args("p:", c), want);
  // The script reads its counts and offsets as documented above.
  EXPECT_NE(kRedisCommitScript.find("ARGV[6 + i]"), std::string_view::npos);
  EXPECT_NE(kRedisCommitScript.find("'PX', ARGV[4]"), std::string_view::npos);
}

// What the commit script does, in memory; `down` makes it unreachable; `before_commit` runs
// before each commit (another gateway's write in between).
class MemoryStore final : public SharedStore {
 public:
  std::optional<std::string> read(const std::vector<std::string>& keys, std::string* error) override {
    ++reads;
    if (down) {
      *error = "memory store down";
      return std::nullopt;
    }
    auto it = data.find(redis_state_key("pk:", keys));
    return it == data.end() ? std::string() : it->second;
  }
  Result commit(const StoreCommit& c) override {
    ++commits;
    if (down) return {Outcome::Unavailable, "memory store down"};
    if (before_commit) before_commit();
    for (const auto& id : c.ids)
      if (auto it = data.find(redis_replay_key("pk:", id)); it != data.end()) return {Outcome::Replay, it->second};
    for (const auto& [keys, stored] : c.reads) {
      auto it = data.find(redis_state_key("pk:", keys));
      if ((it == data.end() ? std::string() : it->second) != stored) return {Outcome::Conflict, redis_state_key("pk:", keys)};
    }
    for (const auto& id : c.ids) data[redis_replay_key("pk:", id)] = c.stamp;
    for (const auto& [keys, stored] : c.writes) data[redis_state_key("pk:", keys)] = stored;
    if (!c.fleet.empty() && !c.publish.empty())
      stream->push_back({std::to_string(stream->size() + 1) + "-0", c.publish});
    last = c;
    return {Outcome::Ok, {}};
  }
  bool usable(std::string* why) override {
    if (down) *why = "memory store down";
    return !down;
  }
  void tick() override {}
  double next_tick_in() const override { return 3600; }
  std::string describe() const override { return "memory"; }
  bool fallback_local() const override { return fallback; }
  const std::string& gateway() const override { return name; }
  // Fleet sharing: the stream in memory, one cursor per gateway (index of the next entry).
  const std::string& fleet() const override { return fleet_name; }
  std::span<const std::uint8_t> fleet_key() const override { return test_fleet_key(); }
  bool fetch(std::size_t max, std::vector<StreamEntry>& out, std::string* error) override {
    if (down) {
      *error = "memory store down";
      return false;
    }
    for (std::size_t i = (*cursors)[name]; i < stream->size() && out.size() < max; ++i) out.push_back((*stream)[i]);
    return true;
  }
  bool handled(const std::string& id, std::string*) override {
    for (std::size_t i = 0; i < stream->size(); ++i)
      if ((*stream)[i].id == id) (*cursors)[name] = i + 1;
    return true;
  }

  std::string fleet_name;
  std::shared_ptr<std::vector<StreamEntry>> stream = std::make_shared<std::vector<StreamEntry>>();
  std::shared_ptr<std::map<std::string, std::size_t>> cursors = std::make_shared<std::map<std::string, std::size_t>>();
  std::map<std::string, std::string> data;
  bool down = false;
  bool fallback = false;
  std::string name = "gw";
  std::function<void()> before_commit;
  int reads = 0, commits = 0;
  StoreCommit last;
};

constexpr double kT0 = 1709632800;
constexpr std::uint32_t kIp = 0xC6120001;  // 198.18.0.1

const char* kTwice = R"C(
stateexpire = 1h
<actions>
  <action open>
    condition = PORT == 22 && state(IP,visits,num) < 2
    template  = open
  </action>
</actions>
<template open>
  state  = state(IP,visits,num)++
  system = "/bin/true open IP"
</template>
)C";

struct Gateway {
  RecordingRunner runner;
  ManualClock clock;
  config::Value root;
  std::unique_ptr<Engine> engine;
  Gateway(const char* text, SharedStore* store) {
    root = conf(text);
    EngineOptions options;
    options.runner = &runner;
    options.clock = &clock;
    options.store = store;
    clock.set(kT0);
    engine = std::make_unique<Engine>(root, options);
  }
};

KnockEvent knock(std::uint8_t id_byte = 0, std::uint16_t port = 22) {
  KnockEvent e;
  e.values.set(codec::Field::Ip, kIp);
  e.values.set(codec::Field::Port, port);
  e.logip = IpAddress::v4(kIp);
  e.time = kT0;
  if (id_byte != 0) {
    spa::Identity id{};
    id.fill(id_byte);
    e.add_replay(id);
    e.replay_expiry = static_cast<std::int64_t>(kT0) + 120;
  }
  return e;
}

TEST(FleetEngine, AKnockAcceptedAtOneGatewayIsAReplayAtTheOther) {
  MemoryStore store;
  Gateway a(kTwice, &store), b(kTwice, &store);
  EXPECT_TRUE(a.engine->handle(knock(7)));
  ASSERT_EQ(store.last.ids.size(), 1u);
  EXPECT_EQ(store.last.ids[0], "07070707070707070707070707070707");
  EXPECT_EQ(store.last.replay_ms, (120 + 1 + Engine::kFleetClockSlack) * 1000);
  EXPECT_EQ(store.last.state_ms, 3600 * 1000);
  EXPECT_EQ(store.last.stamp, "gw 1709632800");
  EXPECT_FALSE(b.engine->handle(knock(7)));
  EXPECT_TRUE(b.runner.commands.empty());
  EXPECT_EQ(b.engine->fleet_replays(), 1u);
  EXPECT_TRUE(b.engine->replayed(knock(7)));  // remembered locally too
  EXPECT_FALSE(b.engine->state().get({"198.18.0.1", "visits", "num"}).defined());  // nothing applied
  EXPECT_TRUE(b.engine->handle(knock(8)));  // a fresh knock still opens there
}

TEST(FleetEngine, TwicePerIpHoldsAcrossGateways) {
  MemoryStore store;
  Gateway a(kTwice, &store), b(kTwice, &store), c(kTwice, &store);
  int opened = 0;
  for (int i = 0; i < 6; ++i) {
    Gateway& g = i % 3 == 0 ? a : i % 3 == 1 ? b : c;
    opened += g.engine->handle(knock()) && !g.runner.commands.empty() ? 1 : 0;
    g.runner.commands.clear();
  }
  EXPECT_EQ(opened, 2);
  EXPECT_EQ(store.data["pk:state:198.18.0.1 visits num"], "i2");
}

TEST(FleetEngine, AConcurrentChangeMakesTheKnockJudgedAgain) {
  MemoryStore store;
  Gateway a(kTwice, &store);
  store.data["pk:state:198.18.0.1 visits num"] = "i1";
  // Another gateway opens for the same address between this one's read and its commit.
  int injected = 0;
  store.before_commit = [&] {
    if (injected++ == 0) store.data["pk:state:198.18.0.1 visits num"] = "i2";
  };
  // Judged again with what the other gateway wrote: 2 opens already, no action matches here.
  EXPECT_TRUE(a.engine->handle(knock()));
  EXPECT_EQ(store.commits, 2);
  EXPECT_TRUE(a.runner.commands.empty());
  EXPECT_EQ(store.data["pk:state:198.18.0.1 visits num"], "i2");
  // Conflicts without end: refused after kStoreAttempts.
  store.data["pk:state:198.18.0.1 visits num"] = "i0";
  store.before_commit = [&] { store.data["pk:state:198.18.0.1 visits num"] = "i0" + std::to_string(store.commits); };
  store.commits = 0;
  EXPECT_FALSE(a.engine->handle(knock()));
  EXPECT_EQ(store.commits, Engine::kStoreAttempts);
  EXPECT_TRUE(a.runner.commands.empty());
}

TEST(FleetEngine, StoreDownRefusesByDefault) {
  MemoryStore store;
  store.down = true;
  Gateway a(kTwice, &store);
  EXPECT_FALSE(a.engine->handle(knock(9)));
  EXPECT_TRUE(a.runner.commands.empty());
  EXPECT_EQ(a.engine->store_refusals(), 1u);
  EXPECT_FALSE(a.engine->replayed(knock(9)));  // not used up: it may be sent again
  store.down = false;
  EXPECT_TRUE(a.engine->handle(knock(9)));
  EXPECT_EQ(a.runner.commands.size(), 1u);
}

TEST(FleetEngine, StoreDownFallsBackToLocalWhenAsked) {
  MemoryStore store;
  store.down = true;
  store.fallback = true;
  Gateway a(kTwice, &store);
  EXPECT_TRUE(a.engine->handle(knock(9)));
  EXPECT_EQ(a.runner.commands.size(), 1u);
  EXPECT_EQ(a.engine->store_fallbacks(), 1u);
  EXPECT_TRUE(a.engine->replayed(knock(9)));  // the local replay cache has it
  EXPECT_EQ(a.engine->state().get({"198.18.0.1", "visits", "num"}).str(), "1");
  EXPECT_FALSE(a.engine->handle(knock(9)));  // a replay here is still refused
}

TEST(FleetEngine, TestModeNeverUsesTheStore) {
  MemoryStore store;
  EngineOptions options;
  options.test_mode = true;
  options.store = &store;
  std::ostringstream out;
  options.test_output = &out;
  auto root = conf(kTwice);
  Engine engine(root, options);
  EXPECT_TRUE(engine.handle(knock(3)));
  EXPECT_EQ(store.reads + store.commits, 0);
}


// ---------------------------------------------------------------- fleet sharing


SharedKnock sample_knock() {
  SharedKnock k;
  k.gateway = "gwA";
  k.time = 1709632800.25;
  k.values.set(codec::Field::Ip, kIp);
  k.values.set(codec::Field::Port, 22);
  k.values.set(codec::Field::Flag0, 255);
  k.logip = IpAddress::v4(0xC6120102);
  k.client = "alice";
  k.proto = "spa";
  k.user = "a.b@c";
  k.client_timeout = 30;
  k.actions = {"open", "close", "odd name,%"};
  return k;
}


TEST(SharedKnockCodec, RoundTrip) {
  const SharedKnock k = sample_knock();
  const std::string text = encode_shared_knock(k);
  EXPECT_EQ(text, "pk1 gw=gwA t=1709632800250 logip=198.18.1.2 IP=3323068417 PORT=22 FLAG0=255 client=alice proto=spa "
                  "user=a.b@c cto=30 act=open act=close act=odd%20name%2c%25");
  std::string why;
  auto back = decode_shared_knock(text, &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(back->gateway, "gwA");
  EXPECT_DOUBLE_EQ(back->time, 1709632800.25);
  EXPECT_EQ(back->values, k.values);
  EXPECT_EQ(back->logip.str(), "198.18.1.2");
  EXPECT_EQ(back->client, "alice");
  EXPECT_EQ(back->proto, "spa");
  EXPECT_EQ(back->user, "a.b@c");
  EXPECT_EQ(back->client_timeout, 30u);
  EXPECT_EQ(back->actions, k.actions);

  SharedKnock v6;
  v6.gateway = "gwB";
  v6.time = 5;
  codec::KnockValues::Ip6Bytes a{0x20, 0x01, 0x0d, 0xb8};
  a[15] = 1;
  v6.values.set_ip6(a);
  v6.logip = *IpAddress::parse("2001:db8::2");
  v6.actions = {"#1"};
  auto back6 = decode_shared_knock(encode_shared_knock(v6), &why);
  ASSERT_TRUE(back6) << why;
  EXPECT_EQ(back6->values, v6.values);
  EXPECT_EQ(back6->logip.str(), "2001:db8::2");
  EXPECT_EQ(back6->actions, v6.actions);
  EXPECT_FALSE(back6->client_timeout);
}

TEST(SharedKnockCodec, HostileEntriesAreRefused) {
  const std::string good = "pk1 gw=gwA t=1000 logip=198.18.1.2 PORT=22 act=open";
  std::string why;
  ASSERT_TRUE(decode_shared_knock(good, &why)) << why;
  const std::vector<std::string> hostile = {
      "",
      "pk2 gw=gwA t=1000 logip=198.18.1.2 act=open",          // unknown version
      "pk1",                                                   // nothing
      "pk1 t=1000 logip=198.18.1.2 act=open",                  // no gateway
      "pk1 gw=gwA logip=198.18.1.2 act=open",                  // no time
      "pk1 gw=gwA t=1000 act=open",                            // no LOGIP
      "pk1 gw=gwA t=1000 logip=198.18.1.2",                    // no action
      good + " gw=gwB",                                        // a key twice
      good + " PORT=23",                                       // a field twice
      good + " PORT=65536",                                    // out of range for two bytes
      good + " FLAG0=256",                                     // out of range for one byte
      good + " IP=4294967296",                                 // out of range for four bytes
      good + " IP=-1",
      good + " CLIENT=1",                                      // only the canonical name
      good + " IP6=20010db8",                                  // short
      good + " IP6=zz010db8000000000000000000000001",          // not hex
      good + " client=al;ce",                                  // not a name: would reach a shell
      good + " user=$(reboot)",
      good + " proto=" + std::string(65, 'a'),                 // too long
      good + " cto=4294967296",
      good + " act=a%2",                                       // cut escape
      good + " act=a%zz",
      good + " act=a;b",
      good + " act=",
      good + " evil=1",                                        // unknown key
      good + " PORT",                                          // no =
      good + "  ",                                             // empty token
      "pk1 gw=g;w t=1000 logip=198.18.1.2 act=open",
      "pk1 gw=gwA t=10.5 logip=198.18.1.2 act=open",
      "pk1 gw=gwA t=1000 logip=198.18.1.300 act=open",
      "pk1 gw=gwA t=1000 logip=host.example act=open",
      good + " " + std::string(kMaxSharedKnockBytes, 'x'),     // too long
  };
  for (const auto& h : hostile) EXPECT_FALSE(decode_shared_knock(h, &why)) << h;
  std::string many = good;
  for (std::size_t i = 0; i < kMaxSharedActions; ++i) many += " act=a";
  EXPECT_FALSE(decode_shared_knock(many, &why));
  EXPECT_NE(why.find("actions"), std::string::npos);
  EXPECT_TRUE(valid_stream_id("1709632800000-0"));
  EXPECT_FALSE(valid_stream_id("1709632800000"));
  EXPECT_FALSE(valid_stream_id("-0"));
  EXPECT_FALSE(valid_stream_id("1-"));
  EXPECT_FALSE(valid_stream_id("1-0 x"));
  EXPECT_FALSE(valid_stream_id(std::string(42, '1')));
}

TEST(StoreSettings, FleetName) {
  const std::string dir = std::filesystem::temp_directory_path() / ("pk-fleet-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string key = dir + "/fleet.key";
  std::ofstream(key) << "a-fleet-secret-of-some-length\n";
  ::chmod(key.c_str(), 0600);
  auto s = parse_store_settings(conf("<store redis>\n address = /run/r.sock\n fleet = site-1\n fleetlength = 500\n fleetkeyfile = " +
                                     key + "\n</store>\n"));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->fleet, "site-1");
  EXPECT_EQ(s->fleet_length, 500);
  EXPECT_EQ(s->fleet_key.size(), 32u);
  // Unauthenticated sharing would let anyone who can write to Redis open every gateway.
  EXPECT_NE(config_error("<store redis>\n address = /run/r.sock\n fleet = site-1\n</store>\n")
                .find("fleet.conf:3: fleet needs fleetkeyfile"),
            std::string::npos);
  std::ofstream(key) << "short\n";
  EXPECT_NE(config_error("<store redis>\n address = /run/r.sock\n fleet = a\n fleetkeyfile = " + key + "\n</store>\n")
                .find("fewer than 16 bytes"),
            std::string::npos);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(parse_store_settings(conf("<store redis>\n address = /run/r.sock\n</store>\n"))->fleet, "");
  EXPECT_NE(config_error("<store redis>\n address = /run/r.sock\n fleet = a b\n fleetkeyfile = /x\n</store>\n").find("fleet.conf:3: fleet: bad fleet name"),
            std::string::npos);
  EXPECT_NE(config_error("<store redis>\n address = /run/r.sock\n fleetlength = 500\n</store>\n").find("fleet.conf:3: fleetlength needs fleet"),
            std::string::npos);
  EXPECT_EQ(redis_fleet_key("pk:", "site-1"), "pk:fleet:site-1");
  EXPECT_EQ(redis_cursor_key("pk:", "site-1", "gwB"), "pk:fleet:site-1:cursor:gwB");
}

TEST(StoreKeys, CommitArgumentsPublishInTheSameScript) {
  StoreCommit c;
  c.ids = {"aa"};
  c.replay_ms = 1000;
  c.stamp = "gwA 1";
  c.fleet = "f";
  c.fleet_length = 777;
  c.publish = "pk1 ...";
  const std::vector<std::string> want = {"2", "p:replay:aa", "p:fleet:f", "1", "0", "0", "1000", "0", "gwA 1", "777", "pk1 ..."};
  EXPECT_EQ(redis_commit_args("p:", c), want);
  EXPECT_NE(kRedisCommitScript.find("'XADD', KEYS[ni + nr + nw + 1], 'MAXLEN', '~'"), std::string_view::npos);
  c.fleet.clear();  // no fleet: nothing published, the arguments as before
  EXPECT_EQ(redis_commit_args("p:", c).size(), 8u);
}

const char* kShared = R"C(
stateexpire = 1h
<actions>
  <action open>
    condition = PORT == 22 && state(IP,visits,num) < 1
    template  = open
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 30s
  </action>
</actions>
<template open>
  state  = state(IP,visits,num)++
  system = "/bin/true open IP"
</template>
<template close>
  system = "/bin/true close IP"
</template>
)C";

TEST(FleetEngine, AKnockAtOneGatewayRunsItsActionsAtEveryOtherOnce) {
  MemoryStore sa, sb, sc;  // one memory, three gateways' views of it
  sa.name = "gwA";
  sb.name = "gwB";
  sc.name = "gwC";
  for (MemoryStore* s : {&sa, &sb, &sc}) s->fleet_name = "f";
  sb.stream = sc.stream = sa.stream;
  sb.cursors = sc.cursors = sa.cursors;
  Gateway a(kShared, &sa), b(kShared, &sb), c(kShared, &sc);
  // b and c read the same state keys as a: one map.
  ASSERT_TRUE(a.engine->handle(knock(7)));
  sb.data = sc.data = sa.data;
  ASSERT_EQ(sa.stream->size(), 1u);
  EXPECT_EQ(sa.data["pk:state:198.18.0.1 visits num"], "i1");  // applied once, by a
  for (Gateway* g : {&a, &b, &c}) g->engine->tick();
  EXPECT_EQ(a.runner.commands.size(), 1u);  // its own entry is not run again
  for (Gateway* g : {&b, &c}) {
    ASSERT_EQ(g->runner.commands.size(), 1u);
    EXPECT_EQ(g->runner.commands[0].text, "/bin/true open 198.18.0.1");  // though state(...) < 1 no longer holds
    EXPECT_EQ(g->engine->scheduler().size(), 1u);                        // its own close, recorded here
    EXPECT_EQ(g->engine->fleet_followed(), 1u);
    EXPECT_FALSE(g->engine->state().get({"198.18.0.1", "visits", "num"}).defined());  // no state written
  }
  EXPECT_EQ(sb.data["pk:state:198.18.0.1 visits num"], "i1");
  // Read again (a later tick, a cursor that did not move): nothing runs twice.
  (*sa.cursors)["gwB"] = 0;
  for (Gateway* g : {&b, &c}) {
    g->clock.mono_now += 1;
    g->clock.wall_now += 1;
    g->engine->tick();
    EXPECT_EQ(g->runner.commands.size(), 1u);
  }
  // The close runs after its delay at each.
  for (Gateway* g : {&b, &c}) {
    g->clock.mono_now += 30;
    g->engine->run_due();
    ASSERT_EQ(g->runner.commands.size(), 2u);
    EXPECT_EQ(g->runner.commands[1].text, "/bin/true close 198.18.0.1");
  }
}

TEST(FleetEngine, MalformedOldAndUnknownEntriesAreSkippedAndCounted) {
  MemoryStore sa, sb;
  sa.name = "gwA";
  sb.name = "gwB";
  sa.fleet_name = sb.fleet_name = "f";
  sb.stream = sa.stream;
  sb.cursors = sa.cursors;
  Gateway b(kShared, &sb);
  const std::string t = std::to_string(static_cast<long long>(kT0) * 1000);
  sa.stream->push_back({"1-0", ""});                                                   // not one field k
  sa.stream->push_back({"2-0", sealed("pk1 gw=gwA t=" + t + " logip=198.18.1.2 act=open PORT=99999")});
  sa.stream->push_back({"3-0", sealed("pk1 gw=gwA t=1000 logip=198.18.1.2 IP=3323068417 PORT=22 act=open")});  // too old
  sa.stream->push_back({"4-0", sealed("pk1 gw=gwA t=" + t + " logip=198.18.1.2 IP=3323068417 PORT=22 act=nosuch")});
  sa.stream->push_back({"5-0", sealed("pk1 gw=gwA t=" + t + " logip=198.18.1.2 IP=3323068417 PORT=22 act=close")});
  b.engine->tick();
  EXPECT_EQ(b.engine->fleet_malformed(), 2u);
  EXPECT_EQ(b.engine->fleet_dropped(), 2u);
  EXPECT_EQ(b.engine->fleet_followed(), 1u);
  EXPECT_TRUE(b.runner.commands.empty());  // only the close's action: pending
  EXPECT_EQ(b.engine->scheduler().size(), 1u);
  EXPECT_EQ((*sa.cursors)["gwB"], 5u);
}

TEST(FleetEngine, StoreDownWhileFollowingLosesNothing) {
  MemoryStore sa, sb;
  sa.name = "gwA";
  sb.name = "gwB";
  sa.fleet_name = sb.fleet_name = "f";
  sb.stream = sa.stream;
  sb.cursors = sa.cursors;
  Gateway a(kShared, &sa), b(kShared, &sb);
  ASSERT_TRUE(a.engine->handle(knock(7)));
  sb.down = true;
  b.engine->tick();
  EXPECT_TRUE(b.runner.commands.empty());
  sb.down = false;
  b.clock.mono_now += 1;
  b.engine->tick();
  EXPECT_EQ(b.runner.commands.size(), 1u);
}

}  // namespace
