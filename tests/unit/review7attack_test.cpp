// Review 7: attacks on `realtime = N` (daemon/priority.hpp), the guard's decisions from CPU
// samples of the monitor and its workers. tests/e2e/review7_realtime_guard.sh reads the result
// from the kernel.
#include <gtest/gtest.h>

#include "daemon/priority.hpp"

namespace knock::daemon {
namespace {

using Change = CpuGuard::Change;

// One CPU, realtimecpu = 50: the monitor at 45 % and the worker at 45 % are each under the
// share, together 90 % of the CPU at SCHED_FIFO: sshd is starved. The worker is judged on both.
TEST(Review7Attack, MonitorAndWorkerTogetherCannotTakeTheCpu) {
  RealtimeGuard guard(0.5);
  double wall = 0, monitor = 0, workers = 0;
  guard.sample(wall, monitor, workers);
  const auto c = guard.sample(wall += 0.5, monitor += 0.225, workers += 0.225);
  EXPECT_EQ(c.monitor, Change::none);
  EXPECT_EQ(c.worker, Change::withdraw);
  EXPECT_TRUE(guard.monitor_realtime());
  EXPECT_FALSE(guard.worker_realtime());
  EXPECT_NEAR(guard.both_share(), 0.9, 1e-9);
}

// The monitor's own guard withdraws it (busy with the control socket, or knocks): the worker
// must not stay at SCHED_FIFO above it, where a spinning worker keeps the monitor (its guard)
// off a CPU. And it does not come back before the monitor does.
TEST(Review7Attack, WorkerNeverOutranksAWithdrawnMonitor) {
  RealtimeGuard guard(0.5);
  double wall = 0, monitor = 0, workers = 0;
  guard.sample(wall, monitor, workers);
  auto c = guard.sample(wall += 0.5, monitor += 0.4, workers);  // the monitor 80 %, the worker idle
  EXPECT_EQ(c.monitor, Change::withdraw);
  EXPECT_EQ(c.worker, Change::withdraw);
  EXPECT_FALSE(guard.worker_realtime());
  // The monitor stays busy for 10 s (60 %), then calm; the worker is idle all along: it stays
  // at normal priority as long as the monitor does, and comes back with it at the earliest.
  bool monitor_back = false, worker_back = false;
  for (int i = 0; i < 400 && !worker_back; ++i) {
    c = guard.sample(wall += 0.5, monitor += i < 20 ? 0.3 : 0.0, workers);
    monitor_back = monitor_back || c.monitor == Change::restore;
    worker_back = c.worker == Change::restore;
    EXPECT_FALSE(worker_back && !monitor_back) << "at " << wall;
    EXPECT_FALSE(guard.worker_realtime() && !guard.monitor_realtime()) << "at " << wall;
  }
  EXPECT_TRUE(monitor_back);
  EXPECT_TRUE(worker_back);
  EXPECT_TRUE(guard.worker_realtime());
}

}  // namespace
}  // namespace knock::daemon
