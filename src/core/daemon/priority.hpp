#pragma once
// Real-time CPU priority for the monitor and the worker (config key `realtime = N`, off by
// default). On a busy machine a knock waits for a CPU twice (the worker's wake-up, then the
// monitor's); SCHED_FIFO removes those waits (doc/PERFORMANCE.md, "The p99"). Two guards:
//  - SCHED_RESET_ON_FORK: the commands the daemon starts (and the worker, until the monitor
//    raises it) run at normal priority;
//  - CpuGuard: a process that uses more than `realtimecpu` percent of a CPU (a flood) loses its
//    real-time priority, so a flooded daemon cannot starve sshd on its core; it gets it back
//    after a minute under that share.
#include <sys/types.h>

#include <optional>
#include <string>

namespace knock::daemon {

struct RealtimeSettings {
  int priority = 0;        // the worker's SCHED_FIFO priority 1..98 (the monitor's one more); 0: off
  double max_share = 0.5;  // realtimecpu / 100
};

// SCHED_FIFO | SCHED_RESET_ON_FORK at `priority` for pid (0: the calling process). "" on
// success, else why not (e.g. "Operation not permitted": no CAP_SYS_NICE, or the unit's
// RestrictRealtime=yes).
std::string set_realtime(pid_t pid, int priority);
// Back to SCHED_OTHER (nice unchanged). "" on success.
std::string set_normal(pid_t pid);
// The scheduling policy of pid as sched_getscheduler returns it, without SCHED_RESET_ON_FORK;
// -1 when it is gone.
int scheduling_policy(pid_t pid) noexcept;
// CPU time (user + system, all threads) of a process in seconds, from its process CPU clock
// (no /proc needed: the unit hides other users' processes); nullopt when it is gone.
std::optional<double> process_cpu_seconds(pid_t pid) noexcept;

// Decides, from samples of one process's CPU time, when it loses and regains real-time
// priority. Pure logic (tests/unit/priority_test.cpp).
class CpuGuard {
 public:
  enum class Change { none, withdraw, restore };
  static constexpr double kInterval = 0.5;  // seconds between samples
  static constexpr double kCalm = 60;       // seconds under the share before restoring

  explicit CpuGuard(double max_share = 0.5) : max_share_(max_share) {}
  // `wall` and `cpu` in seconds. The first sample only sets the baseline.
  Change sample(double wall, double cpu) noexcept;
  bool realtime() const noexcept { return realtime_; }
  double last_share() const noexcept { return share_; }  // of one CPU, over the last interval

 private:
  double max_share_;
  bool realtime_ = true;
  bool have_baseline_ = false;
  double wall_ = 0, cpu_ = 0, share_ = 0;
  double calm_since_ = 0;  // when the share last went under max_share_ while withdrawn
};

// The monitor's and the worker's guards together (pure logic, tests/unit/review7attack_test.cpp).
//  - The monitor is judged on its own CPU time.
//  - The worker is judged on both processes' CPU time: on a machine with one CPU their real-time
//    shares add up (each just under realtimecpu, together they would take the whole CPU).
//  - So the worker is never real-time while the monitor is not: at SCHED_FIFO above a monitor at
//    SCHED_OTHER, a spinning worker would keep the monitor, and so this guard, off the CPU.
//  - The worker's withdrawal outlives the worker (Daemon::raise_worker; workers_cpu counts the
//    ended ones): a new one (after a crash, an exit, a protocol breach) starts at normal
//    priority until the calm minute is over.
class RealtimeGuard {
 public:
  struct Changes {
    CpuGuard::Change monitor = CpuGuard::Change::none, worker = CpuGuard::Change::none;
  };
  explicit RealtimeGuard(double max_share = 0.5) : monitor_(max_share), worker_(max_share) {}
  // monitor_cpu: the monitor's CPU time; workers_cpu: all its workers' together, the ended ones'
  // included (a total that never goes back).
  Changes sample(double wall, double monitor_cpu, double workers_cpu) noexcept;
  bool monitor_realtime() const noexcept { return monitor_.realtime(); }
  bool worker_realtime() const noexcept { return worker_.realtime(); }
  double monitor_share() const noexcept { return monitor_.last_share(); }
  double both_share() const noexcept { return worker_.last_share(); }

 private:
  CpuGuard monitor_, worker_;
};

}  // namespace knock::daemon
