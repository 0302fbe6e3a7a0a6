// Real-time priority for the monitor and the worker (config `realtime`, daemon/priority.hpp).
#include "daemon/daemon_impl.hpp"

namespace knock::daemon {

void Daemon::watch_priority(double now) {
  const RealtimeSettings& want = current_->settings.realtime;
  if (want.priority != realtime_applied_.priority || want.max_share != realtime_applied_.max_share) {
    const bool was_on = realtime_on_;
    realtime_applied_ = want;
    guard_ = RealtimeGuard(want.max_share);
    realtime_on_ = false;
    // Both back to normal scheduling (lowering needs no privilege: a daemon that dropped to
    // `user` can still do it).
    const auto all_normal = [this] {
      (void)set_normal(0);
      if (worker_pid_ >= 0) (void)set_normal(worker_pid_);
    };
    if (want.priority == 0) {
      all_normal();
      if (was_on) log::info("realtime = 0: normal scheduling");
      return;
    }
    // The monitor one above the worker: a worker spinning under a flood cannot keep it (and its
    // guard) off a CPU, even on a machine with one.
    if (const std::string why = set_realtime(0, want.priority + 1); !why.empty()) {
      all_normal();  // whatever an earlier `realtime` gave must not stay without its guard
      log::error("realtime = " + std::to_string(want.priority) + ": cannot use SCHED_FIFO (" + why +
                 "); normal scheduling (under the systemd unit: the drop-in of doc/PERFORMANCE.md)");
      return;
    }
    realtime_on_ = true;
    log::info("real-time priority (SCHED_FIFO) " + std::to_string(want.priority + 1) + " for the monitor and " +
              std::to_string(want.priority) + " for the worker, none for commands; withdrawn from the monitor when it "
              "uses more than " + std::to_string(static_cast<int>(want.max_share * 100 + 0.5)) +
              "% of a CPU (realtimecpu), from the worker when both together do");
    raise_worker();
    next_priority_check_ = now + CpuGuard::kInterval;
  }
  if (!realtime_on_ || now < next_priority_check_) return;
  next_priority_check_ = now + CpuGuard::kInterval;
  const auto monitor = process_cpu_seconds(0);
  if (!monitor) return;
  double workers = ended_workers_cpu_;
  if (worker_pid_ >= 0) {
    if (const auto cpu = process_cpu_seconds(worker_pid_)) workers += *cpu;
  }
  const RealtimeGuard::Changes changes = guard_.sample(wall_clock(), *monitor, workers);
  apply_priority(changes.monitor, 0, "the monitor used ", guard_.monitor_share());
  if (worker_pid_ >= 0)
    apply_priority(changes.worker, worker_pid_, "worker " + std::to_string(worker_pid_) + " and the monitor used ",
                   guard_.both_share());
}

double Daemon::priority_wait(double now) const {
  if (!realtime_on_) return 1.0;
  return std::max(0.0, next_priority_check_ - now);
}

void Daemon::raise_worker() {
  // A worker withdrawn stays withdrawn in its successor until the calm minute is over.
  if (!realtime_on_ || worker_pid_ < 0 || !guard_.worker_realtime()) return;
  if (const std::string why = set_realtime(worker_pid_, realtime_applied_.priority); !why.empty())
    log::error("worker " + std::to_string(worker_pid_) + ": cannot use SCHED_FIFO (" + why + ")");
}

void Daemon::apply_priority(CpuGuard::Change change, pid_t pid, const std::string& who, double share) {
  const std::string name = pid == 0 ? std::string("the monitor") : "worker " + std::to_string(pid);
  switch (change) {
    case CpuGuard::Change::none:
      return;
    case CpuGuard::Change::withdraw: {
      const int used = static_cast<int>(share * 100 + 0.5);
      const std::string why = set_normal(pid);
      log::warning(who + std::to_string(used) + "% of a CPU in the last half second (realtimecpu = " +
                   std::to_string(static_cast<int>(realtime_applied_.max_share * 100 + 0.5)) +
                   "): real-time priority withdrawn" +
                   (why.empty() ? "" : " but failed: " + why) + ", back after " +
                   std::to_string(static_cast<int>(CpuGuard::kCalm)) + " s under that share");
      return;
    }
    case CpuGuard::Change::restore: {
      const int priority = realtime_applied_.priority + (pid == 0 ? 1 : 0);
      const std::string why = set_realtime(pid, priority);
      if (why.empty())
        log::info(name + ": real-time priority " + std::to_string(priority) + " restored");
      else
        log::error(name + ": cannot restore SCHED_FIFO (" + why + ")");
      return;
    }
  }
}

}  // namespace knock::daemon
