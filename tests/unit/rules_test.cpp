// The Engine: <template>s and <actions> from a config, the manual's recipes verbatim (block tags
// restored) over knocks spanning hours, delayed and persistent responses, -test, injection.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/tree.hpp"
#include "rules/engine.hpp"

using namespace knock;
using namespace knock::rules;

namespace {
const bool kTz = [] {
  setenv("TZ", "UTC", 1);
  tzset();
  return true;
}();

constexpr double kT0 = 1709632800;  // 2024-03-05 10:00:00 UTC
constexpr std::uint32_t kIpA = 0xC6120001;  // 198.18.0.1
constexpr std::uint32_t kIpB = 0xC6120002;  // 198.18.0.2

const char* kOpen = R"C(
<template iptables_open>
  system    = "/sbin/iptables -D INPUT -p tcp -s IP/32 -d 0/0 --dport PORT --syn -j ACCEPT"
</template>
)C";

KnockEvent kn(double t, std::uint32_t ip = kIpA, std::uint16_t port = 22, std::optional<std::uint32_t> flag0 = {}) {
  KnockEvent e;
  e.values.set(codec::Field::Ip, ip);
  e.values.set(codec::Field::Port, port);
  if (flag0) e.values.set(codec::Field::Flag0, *flag0);
  e.logip = IpAddress::v4(ip);
  e.time = t;
  return e;
}

struct Rig {
  RecordingRunner runner;
  ManualClock clock;
  config::Value root;
  std::unique_ptr<Engine> engine;
  explicit Rig(const std::string& conf, EngineOptions options = {}, double start = kT0) {
    root = config::parse_string(conf, "recipe.conf");
    options.runner = &runner;
    options.clock = &clock;
    clock.set(start);
    engine = std::make_unique<Engine>(root, options);
  }
  // Knocks at the event's time; false when the knock was refused.
  bool handle(const KnockEvent& e) {
    clock.set(e.time);
    return engine->handle(e);
  }
  // Knocks and returns how many commands ran for it.
  std::size_t knock_count(const KnockEvent& e) {
    std::size_t before = runner.commands.size();
    handle(e);
    return runner.commands.size() - before;
  }
  // What kill -9 leaves: no snapshot, no sync, the cache's lock released. (The engine's
  // destructor saves nothing, so destroying it after abandon_cache() writes nothing either.)
  void crash() {
    engine->abandon_cache();
    engine.reset();
  }
  // Both clocks at t; the delayed commands due by then run (and are reported done).
  void run_due(double t) {
    clock.set(t);
    engine->run_due();
    engine->reap();
  }
};

std::string config_error(const std::string& conf) {
  try {
    RecordingRunner r;
    EngineOptions o;
    o.runner = &r;
    Engine e(config::parse_string(conf, "bad.conf"), o);
  } catch (const ConfigError& e) {
    return e.where().str() + ": " + e.message();
  }
  return "no error";
}

std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::path(BINARY_DIR) / ("rules_test_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
  return dir;
}
}  // namespace

TEST(Recipes, ImmediatePlusDelayed) {
  Rig rig(R"C(
<actions>
  <action>
  condition = PORT == 22
  template  = exec_myprog
  use       = yes
  </action>
  <action>
  condition = PORT == 22
  template  = exec_myprog
  delay     = 5 # minutes
  use       = yes
  </action>
</actions>
<template exec_myprog>
  system = "/bin/myprog"
</template>
)C");
  EXPECT_EQ(rig.knock_count(kn(kT0)), 1u);
  EXPECT_EQ(rig.runner.commands[0].text, "/bin/myprog");
  ASSERT_EQ(rig.engine->pending().size(), 1u);
  EXPECT_EQ(rig.engine->next_due(), 300);
  rig.run_due(kT0 + 299);
  EXPECT_EQ(rig.runner.commands.size(), 1u);
  rig.run_due(kT0 + 300);
  ASSERT_EQ(rig.runner.commands.size(), 2u);
  EXPECT_EQ(rig.runner.commands[1].text, "/bin/myprog");
  EXPECT_FALSE(rig.engine->next_due());
  EXPECT_EQ(rig.knock_count(kn(kT0, kIpA, 23)), 0u);  // condition false
}

TEST(Recipes, ThrottleOncePerHour) {
  Rig rig(std::string(R"C(
<actions>
  <action ssh>
      condition = PORT == 22 && ( ! state(IP,visits,prevtime) || TIME-state(IP,visits,prevtime) > 3600)
      template  = prev_visit
      template  = iptables_open
      use       = yes
  </action>
</actions>
      <template prev_visit>
      state     = state(IP,visits,prevtime) = TIME
      </template>
)C") + kOpen);
  EXPECT_EQ(rig.knock_count(kn(kT0)), 1u);
  EXPECT_EQ(rig.runner.commands.back().text,
            "/sbin/iptables -D INPUT -p tcp -s 198.18.0.1/32 -d 0/0 --dport 22 --syn -j ACCEPT");
  EXPECT_EQ(rig.engine->state().get({"198.18.0.1", "visits", "prevtime"}).str(), "1709632800");
  EXPECT_EQ(rig.knock_count(kn(kT0 + 1800)), 0u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 3600)), 0u);  // > 3600, not >=
  EXPECT_EQ(rig.knock_count(kn(kT0 + 60, kIpB)), 1u);  // per IP
  EXPECT_EQ(rig.knock_count(kn(kT0 + 3601)), 1u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 3700)), 0u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 3 * 3600)), 1u);
}

TEST(Recipes, LimitToTwo) {
  Rig rig(std::string(R"C(
<actions>
  <action ssh>
      condition = PORT == 22 && state(IP,visits,num) < 2
      template  = num_visits
      template  = iptables_open
      use       = yes
  </action>
</actions>
      <template num_visits>
      state     = state(IP,visits,num)++
      </template>
)C") + kOpen);
  EXPECT_EQ(rig.knock_count(kn(kT0)), 1u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 7200)), 1u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 14400)), 0u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 86400)), 0u);
  EXPECT_EQ(rig.knock_count(kn(kT0, kIpB)), 1u);
  EXPECT_EQ(rig.engine->state().get({"198.18.0.1", "visits", "num"}).str(), "2");
}

TEST(Recipes, OneTimeKnockCounter) {
  Rig rig(std::string(R"C(
knock   = IP,PORT,FLAG0,CHECKSUM
<actions>
  <action otk>
      condition = PORT == 22 && state(IP,visits,PORT,num) < FLAG0
      template  = num_visits
      template  = iptables_open
      use       = yes
  </action>
</actions>
      <template num_visits>
      state     = state(IP,visits,PORT,num)++
      </template>
)C") + kOpen);
  EXPECT_EQ(rig.knock_count(kn(kT0, kIpA, 22, 1)), 1u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 3600, kIpA, 22, 1)), 0u);  // replayed
  EXPECT_EQ(rig.knock_count(kn(kT0 + 7200, kIpA, 22, 2)), 1u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 7300, kIpA, 22, 2)), 0u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 7400, kIpA, 22, 0)), 0u);
  EXPECT_EQ(rig.engine->state().get({"198.18.0.1", "visits", "22", "num"}).str(), "2");
}

TEST(Recipes, OneTimeKnockUniqueValue) {
  Rig rig(std::string(R"C(
<actions>
  <action otk>
      condition = PORT == 22 && ! state(IP,uniqueval,FLAG0)
      template  = iptables_open
      template  = keyvisit
      use       = yes
  </action>
</actions>
      <template keyvisit>
      state = state(IP,uniqueval,FLAG0)++
      </template>
)C") + kOpen);
  EXPECT_EQ(rig.knock_count(kn(kT0, kIpA, 22, 7)), 1u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 5, kIpA, 22, 7)), 0u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 86400 * 30, kIpA, 22, 7)), 0u);  // never expires
  EXPECT_EQ(rig.knock_count(kn(kT0 + 10, kIpA, 22, 8)), 1u);
  EXPECT_EQ(rig.knock_count(kn(kT0 + 10, kIpB, 22, 7)), 1u);
}

TEST(Recipes, OneTimeKnockExpiringByHourAndDay) {
  const std::string templ = R"C(
      <template keyvisit>
      state = state(IP,uniqueval,THISHOUR,FLAG0)++
      </template>
      <template keyvisit_day>
      state = state(IP,uniqueval,THISDAY,FLAG0)++
      </template>
)C";
  Rig hour(std::string(R"C(
<actions>
  <action otk>
      # one hour
      condition = PORT == 22 && ! state(IP,uniqueval,THISHOUR,FLAG0)
      template  = iptables_open
      template  = keyvisit
      use       = yes
  </action>
</actions>
)C") + templ + kOpen);
  EXPECT_EQ(hour.knock_count(kn(kT0 + 300, kIpA, 22, 7)), 1u);    // 10:05
  EXPECT_EQ(hour.knock_count(kn(kT0 + 1800, kIpA, 22, 7)), 0u);   // 10:30
  EXPECT_EQ(hour.knock_count(kn(kT0 + 3660, kIpA, 22, 7)), 1u);   // 11:01
  EXPECT_EQ(hour.knock_count(kn(kT0 + 3700, kIpA, 22, 7)), 0u);

  Rig day(std::string(R"C(
<actions>
  <action otk>
      # one day
      condition = PORT == 22 && ! state(IP,uniqueval,THISDAY,FLAG0)
      template  = iptables_open
      template  = keyvisit_day
      use       = yes
  </action>
</actions>
)C") + templ + kOpen);
  EXPECT_EQ(day.knock_count(kn(kT0, kIpA, 22, 7)), 1u);               // 5 March 10:00
  EXPECT_EQ(day.knock_count(kn(kT0 + 13 * 3600, kIpA, 22, 7)), 0u);   // 23:00
  EXPECT_EQ(day.knock_count(kn(kT0 + 14 * 3600, kIpA, 22, 7)), 1u);   // 6 March 00:00
  EXPECT_EQ(day.engine->state().get({"198.18.0.1", "uniqueval", "6", "7"}).str(), "1");
}

TEST(Recipes, StateInSystemAndCombinedState) {
  Rig rig(R"C(
<actions>
  <action a>
      condition = PORT == 22 && FLAG0 < 255 && state(IP,visits,num) < 1
      template  = exec_myprog
      template  = incr_num_visits
      template  = combine
      use       = yes
  </action>
</actions>
      <template exec_myprog>
      system = "/bin/myprog state(IP,visits,num) FLAG0 LOGIP TIME THISYEAR-THISMONTH-THISDAY"
      </template>
      <template incr_num_visits>
      state     = state(IP,visits,num)++
      </template>
      <template combine>
      state     = state(IP,c) = state(IP,a) + state(IP,b)
      </template>
)C");
  EXPECT_EQ(rig.knock_count(kn(kT0, kIpA, 22, 3)), 1u);
  // The command is built when its template runs: before the increment.
  EXPECT_EQ(rig.runner.commands[0].text, "/bin/myprog  3 198.18.0.1 1709632800 2024-3-5");
  EXPECT_EQ(rig.knock_count(kn(kT0 + 1, kIpA, 22, 3)), 0u);  // runs only once
  EXPECT_EQ(rig.engine->state().get({"198.18.0.1", "c"}).str(), "0");
}

TEST(Engine, InjectionIsRefused) {
  Rig rig(R"C(
<actions>
  <action a>
      condition = PORT == 22
      template  = evil
      template  = show
      template  = show_flag
  </action>
</actions>
<template evil>
  state = state(IP,name) = "x; touch /tmp/pwned"
</template>
<template show>
  system = "echo state(IP,name)"
</template>
<template show_flag>
  system = "echo FLAG1 FLAG0"
</template>
)C");
  rig.handle(kn(kT0, kIpA, 22, 5));
  EXPECT_TRUE(rig.runner.commands.empty());  // a string state and an absent FLAG1: both refused
  EXPECT_EQ(Engine::parse_system("a IPX xIP IP_ $IP:PORT", {}, {}).size(), 4u);
  StateTree st;
  std::string why;
  Vars v = make_vars(kn(kT0).values, *IpAddress::parse("2001:db8::1"), kT0);
  EXPECT_EQ(Engine::substitute(Engine::parse_system("a IPX xIP IP_ $IP:PORT LOGIP", {}, {}), v, st, &why),
            "a IPX xIP IP_ $198.18.0.1:22 2001:db8::1");
}

// USER (an fwknop sender's user name, chosen by the key holder) reaches commands; a name that
// starts with '-' would be an option to the command it lands in (`logger -f`, `ipset -exist`).
TEST(Engine, NamesStartingWithADashAreNotSubstituted) {
  StateTree st;
  std::string why;
  Vars v = make_vars(kn(kT0).values, *IpAddress::parse("198.18.0.9"), kT0);
  const auto parts = Engine::parse_system("/usr/bin/logger -t knock USER", {}, {});
  v.value[static_cast<std::size_t>(Var::User)] = Scalar::string("alice");
  EXPECT_EQ(Engine::substitute(parts, v, st, &why), "/usr/bin/logger -t knock alice");
  for (const char* user : {"-f", "--help", "-"}) {
    v.value[static_cast<std::size_t>(Var::User)] = Scalar::string(user);
    EXPECT_EQ(Engine::substitute(parts, v, st, &why), std::nullopt) << user;
  }
}

TEST(Engine, TestModePrintsAndChangesNothing) {
  std::ostringstream out;
  EngineOptions o;
  o.test_mode = true;
  o.test_output = &out;
  Rig rig(std::string(R"C(
<actions>
  <action ssh>
      condition = PORT == 22 && state(IP,visits,num) < 2
      template  = num_visits
      template  = iptables_open
  </action>
  <action close>
      condition = PORT == 22
      template  = iptables_open
      delay     = 0.05
  </action>
</actions>
<template num_visits>
  state     = state(IP,visits,num)++
</template>
)C") + kOpen, o);
  rig.handle(kn(kT0));
  rig.handle(kn(kT0));
  rig.handle(kn(kT0));
  const std::string cmd = "/sbin/iptables -D INPUT -p tcp -s 198.18.0.1/32 -d 0/0 --dport 22 --syn -j ACCEPT";
  std::string expected;
  for (int i = 0; i < 3; ++i)
    expected += "would set: state(198.18.0.1,visits,num)++\nwould run: " + cmd + "\nwould run after 3s: " + cmd + "\n";
  EXPECT_EQ(out.str(), expected);
  EXPECT_TRUE(rig.engine->state().empty());
  EXPECT_TRUE(rig.engine->pending().empty());
  EXPECT_TRUE(rig.runner.commands.empty());
}

TEST(Engine, ConfigErrorsNameFileAndLine) {
  EXPECT_EQ(config_error("<actions>\n<action a>\ncondition = PORT ==\ntemplate = t\n</action>\n</actions>\n"
                         "<template t>\nsystem = x\n</template>\n"),
            "bad.conf:3: in expression, column 8: expected a value, found the end");
  EXPECT_EQ(config_error("<actions>\n<action a>\ncondition = 1\ntemplate = nope\n</action>\n</actions>\n"),
            "bad.conf:4: unknown template 'nope' in <action a>");
  EXPECT_EQ(config_error("<actions>\n<action a>\ncondition = 1\ntemplate = t\ncolour = red\n</action>\n</actions>\n"
                         "<template t>\nsystem = x\n</template>\n"),
            "bad.conf:5: unknown key 'colour' in <action a> (expected condition, template, delay, use)");
  EXPECT_NE(config_error("<actions>\n<action a>\ncondition = 1\ntemplate = t\ndelay = 5 minutes\n</action>\n</actions>\n"
                         "<template t>\nsystem = x\n</template>\n")
                .find("bad.conf:5: bad delay"),
            std::string::npos);
  EXPECT_NE(config_error("<template t>\nsystem = x\nsate = 1\n</template>\n").find("bad.conf:3: unknown key 'sate'"),
            std::string::npos);
  EXPECT_NE(config_error("<template t>\nstate = state(IP)) = 1\n</template>\n").find("bad.conf:2: in expression, column 10"),
            std::string::npos);
  EXPECT_NE(config_error("usecache = yes\n").find("needs statecache"), std::string::npos);
  EXPECT_NE(config_error("<actions>\n<action a>\ncondition = 1\ntemplate = t\nuse = maybe\n</action>\n</actions>\n"
                         "<template t>\nsystem = x\n</template>\n").find("bad.conf:5: use must be yes or no"),
            std::string::npos);
}

TEST(Engine, DelayParsing) {
  EXPECT_EQ(parse_delay("5"), 300);
  EXPECT_EQ(parse_delay(" 0.05 "), 0.05 * 60);
  EXPECT_EQ(parse_delay("30s"), 30);
  EXPECT_EQ(parse_delay("5m"), 300);
  EXPECT_EQ(parse_delay("2 h"), 7200);
  EXPECT_EQ(parse_delay("0"), 0);
  EXPECT_FALSE(parse_delay("-1"));
  EXPECT_FALSE(parse_delay("5x"));
  EXPECT_FALSE(parse_delay("1e9"));
  EXPECT_FALSE(parse_delay("99999999"));
  EXPECT_FALSE(parse_delay(""));
  EXPECT_FALSE(parse_delay("."));
}

TEST(Engine, UnnamedNamedAndUnusedActions) {
  Rig rig(R"C(
<actions>
  <action first>
    condition = PORT == 22
    template = t
  </action>
  <action off>
    condition = 1
    template = t
    use = no
  </action>
  <action>
    condition = PORT == 22
    template = t
    template = t
  </action>
</actions>
<template t>
  system = "/bin/true PORT"
</template>
)C");
  EXPECT_EQ(rig.engine->action_count(), 3u);
  EXPECT_EQ(rig.knock_count(kn(kT0)), 3u);
}

// A knock is all or nothing: an error in any matching action (here a division by zero in a
// condition, then in a state change) refuses the whole knock, so the action that would open
// never runs while the one that would close could not even be evaluated.
TEST(Engine, RuntimeErrorRefusesTheWholeKnock) {
  const char* conf = R"C(
<actions>
  <action open>
    condition = PORT == 22
    template = t
  </action>
  <action div>
    condition = PORT / (FLAG0 - FLAG0) > 1
    template = t
  </action>
  <action statediv>
    condition = PORT == 23
    template = counter
    template = bad
    template = t
  </action>
</actions>
<template t>
  system = "/bin/true"
</template>
<template counter>
  state = state(IP,n)++
</template>
<template bad>
  state = state(IP,x) = 1 % FLAG0
</template>
)C";
  Rig rig(conf);
  EXPECT_FALSE(rig.handle(kn(kT0, kIpA, 22, 4)));  // div: error: nothing runs, not even open
  EXPECT_TRUE(rig.runner.commands.empty());
  Rig rig2(std::string(conf).replace(std::string(conf).find("PORT / (FLAG0 - FLAG0) > 1"), 26, "0"));
  EXPECT_FALSE(rig2.handle(kn(kT0, kIpA, 23, 0)));  // 1 % 0 after state(IP,n)++: both undone
  EXPECT_TRUE(rig2.runner.commands.empty());
  EXPECT_FALSE(rig2.engine->state().get({"198.18.0.1", "n"}).defined());
  EXPECT_TRUE(rig2.handle(kn(kT0, kIpA, 23, 3)));
  EXPECT_EQ(rig2.runner.commands.size(), 1u);
  EXPECT_EQ(rig2.engine->state().get({"198.18.0.1", "n"}).str(), "1");
  EXPECT_EQ(rig2.engine->refused_knocks(), 1u);
}

namespace {
const char* kOpenClose = R"C(
<actions>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 1m
  </action>
</actions>
<template open>
  system = "/sbin/iptables -I INPUT -s IP -j ACCEPT"
</template>
<template close>
  system = "/sbin/iptables -D INPUT -s IP -j ACCEPT"
</template>
)C";
}  // namespace

// The attack of issue 11: fill the table of pending closes with valid knocks; the next knock's
// open used to run while its close was refused, leaving that door open for good.
TEST(Engine, FullPendingTableRefusesTheOpen) {
  Rig rig(std::string("maxpending = 3\n") + kOpenClose);
  for (std::uint32_t i = 0; i < 3; ++i) EXPECT_TRUE(rig.handle(kn(kT0 + i, kIpA + i)));
  EXPECT_EQ(rig.runner.commands.size(), 3u);
  EXPECT_FALSE(rig.handle(kn(kT0 + 3, kIpA + 3)));  // its close cannot be recorded: no open
  EXPECT_EQ(rig.runner.commands.size(), 3u);
  for (const auto& c : rig.runner.commands) EXPECT_EQ(c.text.find("198.18.0.4"), std::string::npos);
  // Due closes stay in the table until the runner says they finished; then there is room again.
  rig.clock.set(kT0 + 62);
  rig.engine->run_due();
  EXPECT_EQ(rig.runner.commands.size(), 6u);
  EXPECT_EQ(rig.engine->pending().size(), 3u);
  EXPECT_FALSE(rig.handle(kn(kT0 + 62, kIpA + 3)));
  rig.engine->reap();
  EXPECT_TRUE(rig.engine->pending().empty());
  EXPECT_TRUE(rig.handle(kn(kT0 + 62, kIpA + 3)));
  EXPECT_EQ(rig.runner.commands.back().text, "/sbin/iptables -I INPUT -s 198.18.0.4 -j ACCEPT");
}

// A close whose command cannot be built (a value that may not reach a shell) refuses the open.
TEST(Engine, UnsubstitutableCloseRefusesTheOpen) {
  Rig rig(R"C(
<actions>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 1m
  </action>
</actions>
<template open>
  system = "/sbin/iptables -I INPUT -s IP -j ACCEPT"
</template>
<template close>
  system = "/sbin/iptables -D INPUT -s IP -j ACCEPT state(IP,label)"
</template>
<template label>
  state = state(IP,label) = 'x y'
</template>
)C");
  rig.engine->handle(kn(kT0));  // no label yet: "" is allowed
  EXPECT_EQ(rig.runner.commands.size(), 1u);
  Rig bad(std::string(R"C(
<actions>
  <action label>
    condition = PORT == 22
    template  = label
  </action>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 1m
  </action>
</actions>
<template label>
  state = state(IP,label) = '; rm -rf /'
</template>
<template open>
  system = "/sbin/iptables -I INPUT -s IP -j ACCEPT"
</template>
<template close>
  system = "/sbin/iptables -D INPUT -s IP -j ACCEPT state(IP,label)"
</template>
)C"));
  EXPECT_FALSE(bad.handle(kn(kT0)));
  EXPECT_TRUE(bad.runner.commands.empty());
  EXPECT_TRUE(bad.engine->pending().empty());
  EXPECT_FALSE(bad.engine->state().get({"198.18.0.1", "label"}).defined());
}

// A full state refuses the knock rather than the record (the OTK recipe records after opening).
TEST(Engine, FullStateRefusesTheKnock) {
  EngineOptions o;
  o.state_limits.max_entries = 4;
  Rig rig(std::string(kOpenClose).replace(std::string(kOpenClose).find("  system = \"/sbin/iptables -I"), 0,
                                          "  state = state(IP,otk) = 1\n"),
          o);
  EXPECT_TRUE(rig.handle(kn(kT0, kIpA)));      // 2 keys: 198.18.0.1, otk
  EXPECT_TRUE(rig.handle(kn(kT0, kIpA + 1)));  // 4 keys
  EXPECT_FALSE(rig.handle(kn(kT0, kIpA + 2)));
  EXPECT_EQ(rig.runner.commands.size(), 2u);
  EXPECT_EQ(rig.engine->pending().size(), 2u);
}

// Delays run on the monotonic clock: a wall clock stepped back an hour neither postpones the
// close by an hour nor changes when it runs.
TEST(Engine, WallClockStepDoesNotMoveACloseDue) {
  Rig rig(kOpenClose);
  rig.handle(kn(kT0));
  rig.clock.wall_now = kT0 - 3600 + 61;  // an hour back, while 61 s pass
  rig.clock.mono_now = kT0 + 61;
  rig.engine->run_due();
  ASSERT_EQ(rig.runner.commands.size(), 2u);
  EXPECT_EQ(rig.runner.commands[1].text, "/sbin/iptables -D INPUT -s 198.18.0.1 -j ACCEPT");
}

// usecache = yes and a journal that cannot be written (the disk is full): the knock is refused,
// nothing opens, and nothing of it is left in the journal; once writes work again, knocks do.
TEST(Engine, UnwritableCacheRefusesTheKnock) {
  auto dir = temp_dir("unwritable");
  const std::string conf = "statecache = " + (dir / "state.cache").string() + "\nusecache = yes\n" + kOpenClose;
  Rig rig(conf);
  EXPECT_TRUE(rig.handle(kn(kT0)));
  const std::string jpath = (dir / "state.cache.journal").string();
  const auto size = std::filesystem::file_size(jpath);
  // RLIMIT_FSIZE at the journal's size: the next append fails (EFBIG) as on a full disk.
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit tight = old;
  tight.rlim_cur = size;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &tight), 0);
  const bool accepted = rig.handle(kn(kT0 + 1, kIpB));
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  EXPECT_FALSE(accepted);
  EXPECT_EQ(rig.runner.commands.size(), 1u);  // only the first knock's open
  EXPECT_EQ(rig.engine->pending().size(), 1u);
  EXPECT_EQ(std::filesystem::file_size(jpath), size);
  EXPECT_TRUE(rig.handle(kn(kT0 + 2, kIpB)));
  EXPECT_EQ(rig.runner.commands.size(), 2u);
  // A symlinked journal is refused at start, like a symlinked cache.
  std::filesystem::remove(jpath);
  ASSERT_EQ(symlink("/dev/null", jpath.c_str()), 0);
  EXPECT_THROW(Rig(conf, {}, kT0 + 3), RuntimeError);
  std::filesystem::remove_all(dir);
}

// Closes survive a crash between the knock and the snapshot: the journal alone brings them back
// (no snapshot or fsync after the knock; the engine is simply dropped, as by kill -9).
TEST(Engine, JournalBringsBackClosesAfterACrash) {
  auto dir = temp_dir("crashjournal");
  const std::string conf = "statecache = " + (dir / "state.cache").string() + "\nusecache = yes\n" + kOpenClose;
  {
    Rig rig(conf);
    for (std::uint32_t i = 0; i < 5; ++i) EXPECT_TRUE(rig.handle(kn(kT0 + i, kIpA + i)));
    rig.clock.set(kT0 + 61);
    rig.engine->run_due();  // the first two fall due and start...
    rig.runner.completed.resize(1);  // ...only the first finishes before the "crash"
    rig.engine->reap();
    rig.crash();
  }
  Rig after(conf, {}, kT0 + 100);
  ASSERT_EQ(after.engine->pending().size(), 4u);  // the started-but-unfinished one included
  after.engine->run_due();  // all overdue: they run at once
  ASSERT_EQ(after.runner.commands.size(), 4u);
  EXPECT_EQ(after.runner.commands[0].text, "/sbin/iptables -D INPUT -s 198.18.0.2 -j ACCEPT");
  std::filesystem::remove_all(dir);
}

TEST(Engine, PersistentStateAndPendingSurviveRestart) {
  auto dir = temp_dir("persist");
  const std::string conf = "statecache = " + (dir / "state.cache").string() + "\nusecache = yes\n" + R"C(
<actions>
  <action open>
    condition = PORT == 22 && state(IP,visits,num) < 2
    template = num
    template = t
  </action>
  <action close>
    condition = PORT == 22
    template = t
    delay = 10m
  </action>
</actions>
<template num>
  state = state(IP,visits,num)++
</template>
<template t>
  system = "/bin/true IP"
</template>
)C";
  {
    Rig rig(conf);
    rig.handle(kn(kT0));
    rig.handle(kn(kT0 + 60, kIpB));
    EXPECT_EQ(rig.runner.commands.size(), 2u);
  }
  struct stat st {};
  ASSERT_EQ(stat((dir / "state.cache").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  {
    Rig rig(conf, {}, kT0 + 60);  // restarted right after the second knock
    EXPECT_EQ(rig.engine->state().get({"198.18.0.1", "visits", "num"}).str(), "1");
    ASSERT_EQ(rig.engine->pending().size(), 2u);
    EXPECT_EQ(rig.engine->pending()[0].due, kT0 + 600);
    EXPECT_EQ(rig.engine->pending_descriptions(true).at(0),
              "due 2024-03-05 10:10:00 (in 540s): action close, template t: /bin/true 198.18.0.1");
    rig.run_due(kT0 + 630);  // the first is overdue: it runs at once
    ASSERT_EQ(rig.runner.commands.size(), 1u);
    EXPECT_EQ(rig.runner.commands[0].text, "/bin/true 198.18.0.1");
    EXPECT_EQ(rig.knock_count(kn(kT0 + 700)), 1u);  // second visit: open only; close is delayed
  }
  {
    Rig rig(conf);
    EXPECT_EQ(rig.engine->state().get({"198.18.0.1", "visits", "num"}).str(), "2");
    EXPECT_EQ(rig.engine->pending().size(), 2u);  // 198.18.0.2's close and the new one
    EXPECT_EQ(rig.knock_count(kn(kT0 + 800)), 0u);
  }
  // A reload keeps state and pending commands without reading the file.
  {
    Rig old(conf);
    EngineOptions o;
    o.load_cache = false;
    Rig fresh(conf, o);
    EXPECT_TRUE(fresh.engine->state().empty());
    fresh.engine->take_over(*old.engine);
    EXPECT_EQ(fresh.engine->state().get({"198.18.0.1", "visits", "num"}).str(), "2");
    EXPECT_EQ(fresh.engine->pending().size(), 3u);
    EXPECT_TRUE(old.engine->pending().empty());
  }
  // A corrupt cache is refused with its name, or moved aside with `fresh`.
  std::ofstream(dir / "state.cache") << "portknock-state 1\nS 1 a i1\n";
  try {
    Rig rig(conf);
    ADD_FAILURE() << "corrupt cache accepted";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "state.cache").string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EngineOptions o;
  o.fresh = true;
  o.now = kT0;
  Rig rig(conf, o);
  EXPECT_TRUE(rig.engine->state().empty());
  EXPECT_TRUE(std::filesystem::exists(dir / "state.cache.corrupt-20240305-100000"));
  std::filesystem::remove_all(dir);
}

TEST(Engine, NftTemplatesRunInProcessInOrder) {
  Rig rig(R"C(
<actions>
  <action open>
    condition = PORT == 22
    template  = nft_open
    use       = yes
  </action>
  <action close>
    condition = PORT == 22
    template  = nft_close
    delay     = 30s
    use       = yes
  </action>
</actions>
<template nft_open>
  system = "/bin/true IP"
  nft    = "add element inet portknock allowed { IP . PORT timeout 60s }"
</template>
<template nft_close>
  nft    = "delete element inet portknock allowed { IP . PORT }"
</template>
)C");
  rig.handle(kn(kT0));
  ASSERT_EQ(rig.runner.commands.size(), 2u);
  EXPECT_EQ(rig.runner.commands[0].kind, ActionKind::shell);
  EXPECT_EQ(rig.runner.commands[0].text, "/bin/true 198.18.0.1");
  EXPECT_EQ(rig.runner.commands[1].kind, ActionKind::nft);
  EXPECT_EQ(rig.runner.commands[1].text, "add element inet portknock allowed { 198.18.0.1 . 22 timeout 60s }");
  ASSERT_EQ(rig.engine->pending().size(), 1u);
  EXPECT_EQ(rig.engine->pending()[0].kind, ActionKind::nft);
  rig.run_due(kT0 + 31);
  ASSERT_EQ(rig.runner.commands.size(), 3u);
  EXPECT_EQ(rig.runner.commands[2].kind, ActionKind::nft);
  EXPECT_EQ(rig.runner.commands[2].text, "delete element inet portknock allowed { 198.18.0.1 . 22 }");

  std::ostringstream out;
  EngineOptions test;
  test.test_mode = true;
  test.test_output = &out;
  Rig dry(R"C(
<actions>
  <action>
    condition = PORT == 22
    template  = t
    use       = yes
  </action>
</actions>
<template t>
  nft = "add element inet portknock allowed { IP . PORT }"
</template>
)C", test);
  dry.handle(kn(kT0));
  EXPECT_EQ(out.str(), "would run: nft add element inet portknock allowed { 198.18.0.1 . 22 }\n");
  EXPECT_TRUE(dry.runner.commands.empty());
}

// ---------------------------------------------------------------- review: attacks
// Each of these FAILS where the review found a way to break "a close is never lost and never
// refused; when the daemon cannot guarantee the close, it does not open".
#include <sys/wait.h>

namespace {
std::string cache_conf(const std::filesystem::path& dir, const std::string& extra = "") {
  return "statecache = " + (dir / "state.cache").string() + "\nusecache = yes\n" + extra + kOpenClose;
}
}  // namespace

// Finding 1: the admin lowers maxpending (or a reload lowered it: take_over keeps the larger
// table, save() writes it all) and the daemon restarts: the cache holds more closes than the new
// maxpending, load_cache calls that "corrupt" and the daemon refuses to start, so the closes that
// were promised never run. With -fresh they are thrown away.
TEST(Attack, SmallerMaxpendingAtRestartKeepsPromisedCloses) {
  auto dir = temp_dir("attack_maxpending");
  {
    Rig rig(cache_conf(dir, "maxpending = 3\n"));
    for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(rig.handle(kn(kT0 + i, kIpA + i)));
  }
  std::unique_ptr<Rig> after;
  try {
    after = std::make_unique<Rig>(cache_conf(dir, "maxpending = 2\n"), EngineOptions{}, kT0 + 100);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "restart refused, 3 promised closes will never run: " << e.what();
  }
  if (after) {
    EXPECT_EQ(after->engine->pending().size(), 3u);
  }
  std::filesystem::remove_all(dir);
}

// Finding 2: the disk is full (or the cache's file system is read-only) when the daemon restarts
// after a crash: the start-up snapshot fails and the engine refuses to start, so the overdue
// closes in the journal never run. Fail closed should refuse knocks, not refuse to close.
TEST(Attack, DiskFullAtRestartStillRunsOverdueCloses) {
  auto dir = temp_dir("attack_diskfull");
  {
    Rig rig(cache_conf(dir));
    ASSERT_TRUE(rig.handle(kn(kT0)));
    rig.crash();  // kill -9
  }
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit tight = old;
  tight.rlim_cur = 0;  // every write fails with EFBIG, as on a full disk
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &tight), 0);
  std::unique_ptr<Rig> after;
  std::string error;
  try {
    after = std::make_unique<Rig>(cache_conf(dir), EngineOptions{}, kT0 + 100);
  } catch (const std::exception& e) {
    error = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  ASSERT_TRUE(after) << "restart refused with the disk full; the overdue close never runs: " << error;
  after->run_due(kT0 + 100);
  ASSERT_EQ(after->runner.commands.size(), 1u);
  EXPECT_EQ(after->runner.commands[0].text, "/sbin/iptables -D INPUT -s 198.18.0.1 -j ACCEPT");
  std::filesystem::remove_all(dir);
}

// Finding 3: journal records keep the close's WALL due time (knock time + delay), and a restart
// trusts it. A wall clock that was a year ahead at the knock (bad RTC, wrong `date -s`, spoofed
// NTP) and is corrected before a crash and restart on the same boot postpones a 1-minute close
// by a year. (In memory the monotonic clock is right; only the journal replay is wrong.)
TEST(Attack, ClockStepBackThenCrashPostponesCloseByTheStep) {
  auto dir = temp_dir("attack_clockstep");
  const double ahead = 365.0 * 86400;
  {
    Rig rig(cache_conf(dir));
    rig.clock.wall_now = kT0 + ahead;  // the wall clock is a year ahead (mono stays at kT0)
    ASSERT_TRUE(rig.engine->handle(kn(kT0 + ahead)));
    rig.crash();  // NTP steps the clock back; then a crash (kill -9)
  }
  Rig after(cache_conf(dir), {}, kT0 + 10);  // wall corrected; same boot, 10 s later (mono kT0 + 10)
  auto due = after.engine->next_due();
  ASSERT_TRUE(due);
  EXPECT_LE(*due, 60.0) << "a 1-minute close now waits " << *due / 86400 << " days";
  std::filesystem::remove_all(dir);
}

// Finding 4: a due close whose start fails before posix_spawn (pipe2 EMFILE/ENFILE, or out of
// memory in run()) is neither run nor reported: it stays "started" for the daemon's lifetime
// (restart_started() is never called, a reload keeps it started), so the door stays open until
// the next restart. The real ShellRunner; RecordingRunner hides this.
TEST(Attack, CloseThatFailedToStartIsRetried) {
  auto dir = temp_dir("attack_emfile");
  const std::string marker = (dir / "closed").string();
  const std::string conf = R"C(
<actions>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 1m
  </action>
</actions>
<template open>
  system = "/bin/true"
</template>
<template close>
  system = "/usr/bin/touch )C" + marker + R"C("
</template>
)C";
  ShellRunner runner;
  ManualClock clock;
  clock.set(kT0);
  EngineOptions o;
  o.runner = &runner;
  o.clock = &clock;
  auto root = config::parse_string(conf, "emfile.conf");
  Engine engine(root, o);
  ASSERT_TRUE(engine.handle(kn(kT0)));
  ASSERT_TRUE(engine.wait_for_commands(5));
  // No descriptor left when the close falls due (EMFILE: a busy daemon, a leak, a flood).
  const int lowest = dup(0);
  ASSERT_GE(lowest, 0);
  close(lowest);
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  struct rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(lowest);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  clock.set(kT0 + 61);
  engine.run_due();
  setrlimit(RLIMIT_NOFILE, &old);
  // Descriptors are back; the loop keeps going for a while (an hour of daemon time).
  for (int i = 0; i < 200 && !std::filesystem::exists(marker); ++i) {
    clock.set(kT0 + 62 + i * 18);
    engine.run_due();
    engine.wait_for_commands(0.01);
    engine.tick();
  }
  EXPECT_TRUE(std::filesystem::exists(marker)) << "the close never ran; still pending: " << engine.pending().size()
                                               << ", next_due set: " << engine.next_due().has_value();
  std::filesystem::remove_all(dir);
}

// Finding 5: posix_spawn failing for a transient reason (EAGAIN: RLIMIT_NPROC / pid_max / cgroup
// pids.max; ENOMEM) is taken as "nothing will ever make this command start": the close is
// reported completed, the engine writes D, and it is never run, not even after a restart.
TEST(Attack, TransientSpawnFailureIsNotReportedDone) {
  auto dir = temp_dir("attack_eagain");
  chmod(dir.c_str(), 0777);
  const std::string marker = (dir / "closed").string();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct rlimit none {0, 0};
    if (setrlimit(RLIMIT_NPROC, &none) != 0) _exit(3);
    if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);  // root ignores NPROC
    ShellRunner runner;
    runner.run({"/usr/bin/touch " + marker, "action close, template close (delayed)", ActionKind::shell, 7});
    runner.wait_idle(1);
    auto done = runner.take_completed();
    const bool reported = std::find(done.begin(), done.end(), 7u) != done.end();
    // finished() is empty only when the command never started (posix_spawn failed).
    _exit(reported && runner.finished().empty() && !std::filesystem::exists(marker) ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_NE(WEXITSTATUS(status), 3) << "could not set up RLIMIT_NPROC";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "a close that never ran (fork: EAGAIN) was reported done: D is "
                                       "journaled and the close is lost for good";
  std::filesystem::remove_all(dir);
}

// Finding 6: nothing stops two processes from using one statecache (no lock): a second
// knockdaemon (e.g. `knockdaemon -pcap capture -conf /etc/...` to try a config, or a
// double start) loads it and snapshots at start, renaming a new journal over the journal the
// running daemon still appends to. The running daemon's later closes go to an unlinked file: a
// crash loses them.
TEST(Attack, SecondInstanceOrphansTheRunningDaemonsJournal) {
  auto dir = temp_dir("attack_twoinstances");
  {
    Rig live(cache_conf(dir));
    ASSERT_TRUE(live.handle(kn(kT0)));
    // The second instance is refused at start (the cache is locked), so it replaces nothing.
    EXPECT_THROW(Rig(cache_conf(dir), {}, kT0 + 1), RuntimeError);
    ASSERT_TRUE(live.handle(kn(kT0 + 2, kIpB)));  // journaled into the live journal
    live.crash();                                 // kill -9
  }
  Rig after(cache_conf(dir), {}, kT0 + 10);
  bool found = false;
  for (const auto& p : after.engine->pending()) found = found || p.command.find("198.18.0.2") != std::string::npos;
  EXPECT_TRUE(found) << "198.18.0.2's close was lost (" << after.engine->pending().size() << " pending)";
  std::filesystem::remove_all(dir);
}

// Finding 8: a close that runs and FAILS (exit status != 0) is "finished" like one that worked:
// D is journaled and it is never tried again. The shipped iptables_close has no -w: with
// iptables-legacy, any other tool holding the xtables lock at that moment (fail2ban, docker,
// a cron'd iptables-save) makes it exit 4 and the door stays open for good.
TEST(Attack, FailedCloseIsRetried) {
  auto dir = temp_dir("attack_failedclose");
  const std::string unlocked = (dir / "unlocked").string(), marker = (dir / "closed").string();
  const std::string conf = R"C(
<actions>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 1m
  </action>
</actions>
<template close>
  system = "test -e )C" + unlocked + " || exit 4; touch " + marker + R"C("
</template>
)C";
  ShellRunner runner;
  ManualClock clock;
  clock.set(kT0);
  EngineOptions o;
  o.runner = &runner;
  o.clock = &clock;
  auto root = config::parse_string(conf, "failedclose.conf");
  Engine engine(root, o);
  ASSERT_TRUE(engine.handle(kn(kT0)));
  clock.set(kT0 + 61);
  engine.run_due();  // "the xtables lock is held": exit 4
  ASSERT_TRUE(engine.wait_for_commands(5));
  std::ofstream(unlocked) << "";  // the lock is free again
  for (int i = 0; i < 200 && !std::filesystem::exists(marker); ++i) {
    clock.set(kT0 + 62 + i * 18);
    engine.run_due();
    engine.wait_for_commands(0.05);
    engine.tick();
  }
  EXPECT_TRUE(std::filesystem::exists(marker)) << "the failed close was dropped (pending: " << engine.pending().size()
                                               << ")";
  std::filesystem::remove_all(dir);
}

// Finding 9: a snapshot that fails after the old journal was let go (rename of the new journal
// or the directory fsync failed) leaves the writer without a journal, and nothing retries: every
// later knock is refused until a SIGHUP or a restart, even after the cause is gone (DoS).
TEST(Attack, JournalLostBySnapshotFailureComesBack) {
  auto dir = temp_dir("attack_nojournal");
  Rig rig(cache_conf(dir));
  ASSERT_TRUE(rig.handle(kn(kT0)));
  const auto jpath = dir / "state.cache.journal";
  std::filesystem::remove(jpath);
  std::filesystem::create_directory(jpath);  // rename(new journal, PATH.journal) fails: EISDIR
  EXPECT_FALSE(rig.engine->save());
  std::filesystem::remove(jpath);  // the cause is gone
  bool accepted = false;
  for (int i = 0; i < 120 && !accepted; ++i) {  // two minutes of the daemon's loop
    rig.clock.set(kT0 + 1 + i);
    rig.engine->tick();
    accepted = rig.handle(kn(kT0 + 1 + i, kIpB));
  }
  EXPECT_TRUE(accepted) << "every knock is refused until SIGHUP or a restart";
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------- IPv6 and families

namespace {
codec::KnockValues::Ip6Bytes v6(const char* text) {
  const auto a = *IpAddress::parse(text);
  codec::KnockValues::Ip6Bytes b{};
  std::copy(a.bytes(), a.bytes() + 16, b.begin());
  return b;
}
KnockEvent kn6(double t, const char* ip6, const char* logip, std::uint16_t port = 22) {
  KnockEvent e;
  e.values.set_ip6(v6(ip6));
  e.values.set(codec::Field::Port, port);
  e.logip = *IpAddress::parse(logip);
  e.time = t;
  return e;
}
const char* kFamilies = R"C(
<actions>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 30s
  </action>
  <action six>
    condition = FAMILY == 6 && PORT == 22
    template  = note
  </action>
</actions>
<template open>
  system4 = "/usr/sbin/iptables -I INPUT -s IP -p tcp --dport PORT -j ACCEPT"
  system6 = "/usr/sbin/ip6tables -I INPUT -s IP6 -p tcp --dport PORT -j ACCEPT"
  nft4    = "add element inet portknock allowed4 { IP . PORT timeout 60s }"
  nft6    = "add element inet portknock allowed6 { IP6 . PORT timeout 60s }"
</template>
<template close>
  system4 = "/usr/sbin/iptables -D INPUT -s IP -p tcp --dport PORT -j ACCEPT"
  system6 = "/usr/sbin/ip6tables -D INPUT -s IP6 -p tcp --dport PORT -j ACCEPT"
</template>
<template note>
  system = "/bin/note LOGIP FAMILY"
</template>
)C";
std::vector<std::string> texts(const RecordingRunner& r, std::size_t from = 0) {
  std::vector<std::string> out;
  for (std::size_t i = from; i < r.commands.size(); ++i) out.push_back((r.commands[i].kind == ActionKind::nft ? "nft " : "") + r.commands[i].text);
  return out;
}
}  // namespace

// system4/nft4 run for a knock of family 4, system6/nft6 for family 6, in one action; IP6 and
// LOGIP substitute as RFC 5952 text; FAMILY in a condition.
TEST(Engine, PerFamilyTemplatesAndIp6) {
  Rig rig(kFamilies);
  ASSERT_TRUE(rig.handle(kn(kT0)));
  EXPECT_EQ(texts(rig.runner), (std::vector<std::string>{
                                   "/usr/sbin/iptables -I INPUT -s 198.18.0.1 -p tcp --dport 22 -j ACCEPT",
                                   "nft add element inet portknock allowed4 { 198.18.0.1 . 22 timeout 60s }"}));
  const std::size_t before = rig.runner.commands.size();
  ASSERT_TRUE(rig.handle(kn6(kT0 + 1, "2001:0db8:0:0::0002", "2001:db8::99")));
  EXPECT_EQ(texts(rig.runner, before),
            (std::vector<std::string>{"/usr/sbin/ip6tables -I INPUT -s 2001:db8::2 -p tcp --dport 22 -j ACCEPT",
                                      "nft add element inet portknock allowed6 { 2001:db8::2 . 22 timeout 60s }",
                                      "/bin/note 2001:db8::99 6"}));
  const std::size_t before_close = rig.runner.commands.size();
  rig.run_due(kT0 + 40);
  EXPECT_EQ(texts(rig.runner, before_close),
            (std::vector<std::string>{"/usr/sbin/iptables -D INPUT -s 198.18.0.1 -p tcp --dport 22 -j ACCEPT",
                                      "/usr/sbin/ip6tables -D INPUT -s 2001:db8::2 -p tcp --dport 22 -j ACCEPT"}));
  // A knock without any address field: FAMILY is LOGIP's.
  KnockEvent e;
  e.values.set(codec::Field::Port, 22);
  e.logip = *IpAddress::parse("2001:db8::7");
  e.time = kT0 + 50;
  const std::size_t before_logip = rig.runner.commands.size();
  EXPECT_FALSE(rig.handle(e));  // IP6 is not in this knock: refused as a whole
  EXPECT_EQ(rig.runner.commands.size(), before_logip);
  EXPECT_NE(config_error("<template t>\n  state4 = state(x)++\n</template>\n").find("bad.conf:2: unknown key 'state4'"),
            std::string::npos);
  EXPECT_NE(config_error("<template t>\n  system5 = /bin/true\n</template>\n").find("unknown key 'system5'"),
            std::string::npos);
}

// A knock carrying 0.0.0.0 / :: asks for the address it came from: refused unless the config
// says observedsource = yes; then IP or IP6 is LOGIP, by LOGIP's family.
TEST(Engine, ObservedSourceOnlyWhenAllowed) {
  const std::string actions = R"C(
<actions>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
</actions>
<template open>
  system4 = "/sbin/iptables -I INPUT -s IP -j ACCEPT"
  system6 = "/sbin/ip6tables -I INPUT -s IP6 -j ACCEPT"
</template>
)C";
  KnockEvent both;
  both.values.set(codec::Field::Ip, 0);
  both.values.set_ip6({});
  both.values.set(codec::Field::Port, 22);
  both.logip = *IpAddress::parse("2001:db8::5");
  both.time = kT0;
  {
    Rig rig(actions);
    EXPECT_FALSE(rig.engine->observed_source());
    EXPECT_FALSE(rig.handle(both));
    KnockEvent v4 = kn(kT0 + 1, 0);
    EXPECT_FALSE(rig.handle(v4));
    EXPECT_TRUE(rig.runner.commands.empty());
    EXPECT_EQ(rig.engine->refused_knocks(), 2u);
  }
  Rig rig(actions + "observedsource = yes\n");
  ASSERT_TRUE(rig.handle(both));
  KnockEvent v4 = kn(kT0 + 1, 0);
  v4.logip = *IpAddress::parse("198.18.0.9");
  ASSERT_TRUE(rig.handle(v4));
  // A carried address wins over the observed one even when allowed; the other family's zeros
  // mean "none".
  KnockEvent carried = both;
  carried.values.set_ip6(v6("2001:db8::2"));
  ASSERT_TRUE(rig.handle(carried));
  EXPECT_EQ(texts(rig.runner), (std::vector<std::string>{"/sbin/ip6tables -I INPUT -s 2001:db8::5 -j ACCEPT",
                                                          "/sbin/iptables -I INPUT -s 198.18.0.9 -j ACCEPT",
                                                          "/sbin/ip6tables -I INPUT -s 2001:db8::2 -j ACCEPT"}));
  EXPECT_NE(config_error("observedsource = maybe\n").find("bad.conf:1: observedsource must be yes or no"),
            std::string::npos);
}
