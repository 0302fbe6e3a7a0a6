#include "daemon/priority.hpp"

#include <sched.h>
#include <time.h>

#include <cerrno>

#include "util/error.hpp"

namespace knock::daemon {

std::string set_realtime(pid_t pid, int priority) {
  sched_param param{};
  param.sched_priority = priority;
  if (sched_setscheduler(pid, SCHED_FIFO | SCHED_RESET_ON_FORK, &param) == 0) return "";
  return errno_message(errno);
}

std::string set_normal(pid_t pid) {
  sched_param param{};
  param.sched_priority = 0;
  if (sched_setscheduler(pid, SCHED_OTHER | SCHED_RESET_ON_FORK, &param) == 0) return "";
  return errno_message(errno);
}

int scheduling_policy(pid_t pid) noexcept {
  const int policy = sched_getscheduler(pid);
  return policy < 0 ? -1 : (policy & ~SCHED_RESET_ON_FORK);
}

std::optional<double> process_cpu_seconds(pid_t pid) noexcept {
  // The kernel's process CPU clock for pid (what glibc's clock_getcpuclockid makes): reading
  // it needs no permission over the process.
  const clockid_t clock = static_cast<clockid_t>((~static_cast<unsigned>(pid) << 3) | 2U);
  timespec ts{};
  if (clock_gettime(pid == 0 ? CLOCK_PROCESS_CPUTIME_ID : clock, &ts) != 0) return std::nullopt;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

CpuGuard::Change CpuGuard::sample(double wall, double cpu) noexcept {
  if (!have_baseline_ || wall < wall_) {  // the first sample, or the clock set back
    have_baseline_ = true;
    wall_ = wall;
    cpu_ = cpu;
    return Change::none;
  }
  if (wall == wall_) return Change::none;
  share_ = cpu >= cpu_ ? (cpu - cpu_) / (wall - wall_) : 0;
  wall_ = wall;
  cpu_ = cpu;
  const bool over = share_ > max_share_;
  if (realtime_) {
    if (!over) return Change::none;
    realtime_ = false;
    calm_since_ = wall;
    return Change::withdraw;
  }
  if (over) {
    calm_since_ = wall;
    return Change::none;
  }
  if (wall - calm_since_ < kCalm) return Change::none;
  realtime_ = true;
  return Change::restore;
}

RealtimeGuard::Changes RealtimeGuard::sample(double wall, double monitor_cpu, double workers_cpu) noexcept {
  Changes c;
  c.monitor = monitor_.sample(wall, monitor_cpu);
  // The monitor's CPU counts in the worker's share: whenever the monitor is over the share, so
  // is the worker, and the worker's calm never starts before the monitor's.
  c.worker = worker_.sample(wall, monitor_cpu + workers_cpu);
  return c;
}

}  // namespace knock::daemon
