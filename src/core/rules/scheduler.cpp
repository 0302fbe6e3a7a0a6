#include "rules/scheduler.hpp"

#include <cmath>

namespace knock::rules {

bool Scheduler::add(PendingCommand command) {
  if (queue_.size() >= max_ || !std::isfinite(command.due)) return false;
  double due = command.due;
  queue_.emplace(std::make_pair(due, seq_++), std::move(command));
  return true;
}

std::vector<PendingCommand> Scheduler::take_due(double now) {
  std::vector<PendingCommand> out;
  while (!queue_.empty() && queue_.begin()->first.first <= now) {
    out.push_back(std::move(queue_.begin()->second));
    queue_.erase(queue_.begin());
  }
  return out;
}

std::optional<double> Scheduler::next_due() const {
  if (queue_.empty()) return std::nullopt;
  return queue_.begin()->first.first;
}

std::vector<PendingCommand> Scheduler::pending() const {
  std::vector<PendingCommand> out;
  out.reserve(queue_.size());
  for (const auto& [key, cmd] : queue_) out.push_back(cmd);
  return out;
}

}  // namespace knock::rules
