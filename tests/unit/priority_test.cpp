// Real-time priority (daemon/priority.hpp): the guard's decisions from CPU samples, the CPU clock
// of another process, and SCHED_RESET_ON_FORK keeping the daemon's children at normal priority.
#include "daemon/priority.hpp"

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>

#include <gtest/gtest.h>

namespace knock::daemon {
namespace {

using Change = CpuGuard::Change;

TEST(CpuGuard, FirstSampleIsOnlyTheBaseline) {
  CpuGuard guard(0.5);
  EXPECT_EQ(guard.sample(100, 50), Change::none);  // 50 s of CPU before: not this interval's
  EXPECT_TRUE(guard.realtime());
  EXPECT_EQ(guard.sample(100.5, 50.1), Change::none);  // 20 %
  EXPECT_NEAR(guard.last_share(), 0.2, 1e-9);
}

TEST(CpuGuard, WithdrawsAboveTheShareAndRestoresAfterCalm) {
  CpuGuard guard(0.5);
  guard.sample(0, 0);
  EXPECT_EQ(guard.sample(0.5, 0.4), Change::withdraw);  // 80 % of a CPU
  EXPECT_FALSE(guard.realtime());
  double wall = 0.5, cpu = 0.4;
  // Still flooded for 10 s (at normal priority): nothing changes, and calm starts only after.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(guard.sample(wall += 0.5, cpu += 0.45), Change::none);
  const double calm_from = wall;
  Change last = Change::none;
  while (last == Change::none && wall < calm_from + 120) last = guard.sample(wall += 0.5, cpu += 0.01);
  EXPECT_EQ(last, Change::restore);
  EXPECT_GE(wall - calm_from, CpuGuard::kCalm);
  EXPECT_LE(wall - calm_from, CpuGuard::kCalm + 0.5);
  EXPECT_TRUE(guard.realtime());
}

TEST(CpuGuard, ABurstDuringCalmStartsTheWaitAgain) {
  CpuGuard guard(0.5);
  guard.sample(0, 0);
  ASSERT_EQ(guard.sample(1, 0.9), Change::withdraw);
  double wall = 1, cpu = 0.9;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(guard.sample(wall += 0.5, cpu), Change::none);  // 50 s calm
  EXPECT_EQ(guard.sample(wall += 0.5, cpu += 0.4), Change::none);                          // a burst
  for (int i = 0; i < 100; ++i) EXPECT_EQ(guard.sample(wall += 0.5, cpu), Change::none);  // 50 s again
  EXPECT_FALSE(guard.realtime());
}

TEST(CpuGuard, ExactlyTheShareIsAllowedAndAClockGoingBackIsABaseline) {
  CpuGuard guard(0.5);
  guard.sample(10, 1);
  EXPECT_EQ(guard.sample(11, 1.5), Change::none);  // 50 %: not more than the share
  EXPECT_EQ(guard.sample(5, 9), Change::none);     // wall clock set back: new baseline
  EXPECT_EQ(guard.sample(6, 9.2), Change::none);
  EXPECT_NEAR(guard.last_share(), 0.2, 1e-9);
  EXPECT_EQ(guard.sample(7, 10.2), Change::withdraw);
}

TEST(Priority, ReadsAnotherProcesssCpuClock) {
  const pid_t child = fork();
  if (child == 0) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    volatile unsigned long spin = 0;
    while (std::chrono::steady_clock::now() < end) spin = spin + 1;
    pause();
    _exit(0);
  }
  ASSERT_GT(child, 0);
  // Poll (with a deadline) until the child has burnt 0.1 s of CPU.
  std::optional<double> cpu;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((cpu = process_cpu_seconds(child)) && *cpu < 0.1 && std::chrono::steady_clock::now() < deadline)
    usleep(10000);
  ASSERT_TRUE(cpu.has_value());
  EXPECT_GE(*cpu, 0.1);
  const auto mine = process_cpu_seconds(0);
  ASSERT_TRUE(mine.has_value());
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_FALSE(process_cpu_seconds(child).has_value());  // gone (reaped)
}

TEST(Priority, RealTimeProcessForksNormalChildren) {
  if (geteuid() != 0) GTEST_SKIP() << "SCHED_FIFO needs root";
  // In a child, so that this test process keeps its own scheduling.
  const pid_t child = fork();
  if (child == 0) {
    if (!set_realtime(0, 5).empty()) _exit(10);
    if (scheduling_policy(0) != SCHED_FIFO) _exit(11);
    const pid_t grandchild = fork();
    if (grandchild == 0) _exit(scheduling_policy(0) == SCHED_OTHER ? 0 : 12);
    int status = 0;
    waitpid(grandchild, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) _exit(13);
    if (!set_normal(0).empty() || scheduling_policy(0) != SCHED_OTHER) _exit(14);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: cannot set, 11: not FIFO, 12: child not normal, 13, 14: cannot lower";
}

}  // namespace
}  // namespace knock::daemon
