// The delayed-command scheduler and the shell runner.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "rules/runner.hpp"
#include "rules/scheduler.hpp"

using namespace knock::rules;

TEST(Scheduler, OrderCapacityAndDue) {
  Scheduler s(3);
  EXPECT_FALSE(s.next_due());
  EXPECT_EQ(s.add({1020, "b", "o"}, 20), 1u);
  EXPECT_EQ(s.add({1010, "a", "o"}, 10), 2u);
  EXPECT_EQ(s.add({1020, "c", "o"}, 20), 3u);
  EXPECT_EQ(s.room(), 0u);
  EXPECT_EQ(s.add({1005, "d", "o"}, 5), 0u);  // full
  EXPECT_EQ(s.next_due(), 10);
  EXPECT_TRUE(s.take_due(9.99).empty());
  auto due = s.take_due(20);
  ASSERT_EQ(due.size(), 3u);
  EXPECT_EQ(due[0].command, "a");
  EXPECT_EQ(due[1].command, "b");  // same time: order added
  EXPECT_EQ(due[2].command, "c");
  // Started is not finished: they keep their places until the runner says they are done.
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(s.started(), 3u);
  EXPECT_EQ(s.add({1030, "e", "o"}, 30), 0u);
  EXPECT_EQ(s.pending().size(), 3u);
  EXPECT_TRUE(s.finished(2));
  EXPECT_FALSE(s.finished(2));
  EXPECT_FALSE(s.finished(99));
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s.add({NAN, "x", "o"}, 1), 0u);
  EXPECT_EQ(s.add({1, "x", "o"}, INFINITY), 0u);
  EXPECT_EQ(s.add({1040, "f", "o", ActionKind::shell, 1}, 40), 4u);  // id 1 is taken: a new one
  // A restart hands started commands back, due at once.
  s.restart_started(50);
  EXPECT_EQ(s.started(), 0u);
  due = s.take_due(50);
  ASSERT_EQ(due.size(), 3u);
  EXPECT_EQ(due[0].command, "f");
}

TEST(Scheduler, ExpediteMakesOnlyMatchingWaitingCommandsDueNow) {
  Scheduler s;
  PendingCommand a{0, "close a", "o", ActionKind::shell, 0};
  a.who = "198.18.0.1";
  PendingCommand b{0, "close b", "o", ActionKind::shell, 0};
  b.who = "198.18.0.2";
  s.add(a, 100);
  s.add(b, 200);
  auto for_a = [](const PendingCommand& p) { return p.who == "198.18.0.1"; };
  EXPECT_EQ(s.expedite(for_a, 10), 1u);
  auto due = s.take_due(10);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].command, "close a");
  // Started already: not expedited again (it runs once).
  EXPECT_EQ(s.expedite(for_a, 11), 0u);
  EXPECT_EQ(s.expedite([](const PendingCommand&) { return true; }, 12), 1u);
  EXPECT_EQ(s.take_due(12).size(), 1u);
  EXPECT_TRUE(s.take_due(1000).empty());
}

TEST(Scheduler, DueTimesFollowTheMonotonicClock) {
  Scheduler s;
  s.add({1000 + 60, "close", "o"}, 5060);  // wall 1000 <-> mono 5000 when added
  // The wall clock is stepped back an hour while 30 s pass: the close is still 30 s away, and
  // what is saved says so in the new wall time.
  auto p = s.pending(1000 - 3600 + 30, 5030);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_DOUBLE_EQ(p[0].due, 1000 - 3600 + 60);
  EXPECT_TRUE(s.take_due(5059).empty());
  EXPECT_EQ(s.take_due(5060).size(), 1u);
}

TEST(ShellRunner, PendingResponsesAreNeverRefusedAndReportDone) {
  ShellRunnerOptions o;
  o.max_queue = 2;
  ShellRunner r(o);
  EXPECT_TRUE(r.run({"sleep 0.2", "open"}));
  EXPECT_TRUE(r.run({"/bin/true", "open"}));
  EXPECT_TRUE(r.run({"/bin/true", "open"}));
  EXPECT_EQ(r.room(), 0u);
  EXPECT_FALSE(r.run({"/bin/true", "open"}));  // an immediate command beyond the queue: refused
  for (std::uint64_t id = 1; id <= 50; ++id) EXPECT_TRUE(r.run({"/bin/true", "close", ActionKind::shell, id}));
  EXPECT_TRUE(r.run({"list table inet portknock-test-absent-198-18-0-3", "close", ActionKind::nft, 51}));
  ASSERT_TRUE(r.wait_idle(60));
  auto done = r.take_completed();
  ASSERT_EQ(done.size(), 50u);
  for (std::uint64_t id = 1; id <= 50; ++id) EXPECT_EQ(done[id - 1], id);  // in order, each once
  EXPECT_TRUE(r.take_completed().empty());
  // The nft command failed (no such table): reported as failed, to be tried again, not as done.
  auto failed = r.take_failed();
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].first, 51u);
  EXPECT_NE(failed[0].second, 0);
  EXPECT_EQ(r.room(), 2u);
}

TEST(ShellRunner, RunsLogsAndCapsChildren) {
  auto dir = std::filesystem::path(BINARY_DIR) / ("scheduler_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  ShellRunnerOptions o;
  o.max_children = 2;
  o.max_queue = 3;
  ShellRunner r(o);
  const std::string out = (dir / "out").string();
  for (int i = 0; i < 5; ++i) r.run({"echo " + std::to_string(i) + " >> " + out, "test"});
  EXPECT_FALSE(r.run({"echo 'first line' >&2; echo second >&2; exit 3", "test"}));  // queue full: refused
  EXPECT_EQ(r.running(), 2u);
  EXPECT_EQ(r.queued(), 3u);
  EXPECT_GE(r.poll_fd(), 0);
  ASSERT_TRUE(r.wait_idle(30));
  std::ifstream in(out);
  int lines = 0;
  std::string line;
  while (std::getline(in, line)) ++lines;
  EXPECT_EQ(lines, 5);
  r.run({"echo 'first line' >&2; echo second >&2; exit 3", "test"});
  r.run({"kill -9 $$", "test"});
  ASSERT_TRUE(r.wait_idle(30));
  int seen = 0;
  for (const auto& f : r.finished()) {  // children finish in any order
    if (f.command.rfind("echo 'first", 0) == 0) {
      EXPECT_EQ(f.status, 3);
      EXPECT_EQ(f.stderr_head, "first line | second");
      ++seen;
    } else if (f.command == "kill -9 $$") {
      EXPECT_EQ(f.status, 128 + 9);
      ++seen;
    }
  }
  EXPECT_EQ(seen, 2);
  std::filesystem::remove_all(dir);
}

TEST(ShellRunner, PlainCommandsSkipTheShell) {
  using V = std::vector<std::string>;
  EXPECT_EQ(plain_command_words("/sbin/iptables -I INPUT -p tcp -s 198.18.0.2/32 -d 0/0 --dport 22 --syn -j ACCEPT"),
            (V{"/sbin/iptables", "-I", "INPUT", "-p", "tcp", "-s", "198.18.0.2/32", "-d", "0/0", "--dport", "22",
               "--syn", "-j", "ACCEPT"}));
  EXPECT_EQ(plain_command_words("  /bin/true   a  "), (V{"/bin/true", "a"}));
  // Anything a shell would interpret, or a program found through PATH, goes to /bin/sh.
  EXPECT_TRUE(plain_command_words("iptables -L").empty());
  EXPECT_TRUE(plain_command_words("/bin/echo a > /tmp/x").empty());
  EXPECT_TRUE(plain_command_words("/usr/sbin/nft add element inet t s { 198.18.0.2 . 22 }").empty());
  EXPECT_TRUE(plain_command_words("/bin/echo $HOME").empty());
  EXPECT_TRUE(plain_command_words("/bin/echo 'a b'").empty());
  EXPECT_TRUE(plain_command_words("/bin/echo a;b").empty());
  EXPECT_TRUE(plain_command_words("/bin/echo a\tb").empty());
  EXPECT_TRUE(plain_command_words("").empty());

  // Run directly: the exit status and stderr are still reported; no shell expands the words.
  ShellRunner r;
  r.run({"/bin/sh -c exit.7", "direct"});
  r.run({"/bin/ls /nonexistent-198.18.0.2", "direct"});
  ASSERT_TRUE(r.wait_idle(30));
  ASSERT_EQ(r.finished().size(), 2u);
  EXPECT_NE(r.finished()[0].status, 0);  // sh: "exit.7": not found
  EXPECT_EQ(r.finished()[1].status, 2);  // ls: cannot access
  EXPECT_NE(r.finished()[1].stderr_head.find("nonexistent-198.18.0.2"), std::string::npos);
}

TEST(ShellRunner, NftCommandsWaitForEarlierShellCommands) {
  ShellRunner r;
  r.run({"sleep 0.2", "first"});
  // Fails whatever the machine's ruleset (no such table), which is all this test needs.
  Command nft{"list table inet portknock-test-absent-198-18-0-2", "second", ActionKind::nft};
  r.run(nft);
  EXPECT_EQ(r.queued(), 1u);  // not run while the shell command before it still runs
  ASSERT_TRUE(r.wait_idle(30));
  ASSERT_EQ(r.finished().size(), 2u);
  EXPECT_EQ(r.finished()[0].command, "sleep 0.2");
  EXPECT_EQ(r.finished()[1].command, "nft list table inet portknock-test-absent-198-18-0-2");
  EXPECT_EQ(r.finished()[1].status, 1);
  EXPECT_FALSE(r.finished()[1].stderr_head.empty());
}
