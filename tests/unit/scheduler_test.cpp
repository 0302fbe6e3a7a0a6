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
  EXPECT_TRUE(s.add({20, "b", "o"}));
  EXPECT_TRUE(s.add({10, "a", "o"}));
  EXPECT_TRUE(s.add({20, "c", "o"}));
  EXPECT_FALSE(s.add({5, "d", "o"}));  // full
  EXPECT_EQ(s.next_due(), 10);
  EXPECT_TRUE(s.take_due(9.99).empty());
  auto due = s.take_due(20);
  ASSERT_EQ(due.size(), 3u);
  EXPECT_EQ(due[0].command, "a");
  EXPECT_EQ(due[1].command, "b");  // same time: order added
  EXPECT_EQ(due[2].command, "c");
  EXPECT_FALSE(s.add({NAN, "x", "o"}));
  EXPECT_FALSE(s.add({INFINITY, "x", "o"}));
  EXPECT_EQ(s.size(), 0u);
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
  r.run({"echo 'first line' >&2; echo second >&2; exit 3", "test"});  // queue full: refused
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
