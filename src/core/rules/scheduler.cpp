#include "rules/scheduler.hpp"

#include <cmath>

namespace knock::rules {

std::uint64_t Scheduler::add(PendingCommand command, double due_mono) {
  if (size() >= max_ || !std::isfinite(due_mono) || !std::isfinite(command.due)) return 0;
  if (command.id == 0 || ids_.count(command.id) != 0) {
    while (ids_.count(next_id_) != 0) ++next_id_;
    command.id = next_id_++;
  } else if (command.id >= next_id_) {
    next_id_ = command.id + 1;
  }
  const std::uint64_t id = command.id;
  ids_.insert(id);
  waiting_.emplace(std::make_pair(due_mono, seq_++), std::move(command));
  return id;
}

std::uint64_t Scheduler::next_id() {
  while (ids_.count(next_id_) != 0) ++next_id_;
  return next_id_++;
}

std::vector<PendingCommand> Scheduler::take_due(double mono_now) {
  std::vector<PendingCommand> out;
  while (!waiting_.empty() && waiting_.begin()->first.first <= mono_now) {
    auto node = waiting_.extract(waiting_.begin());
    out.push_back(node.mapped());
    started_.emplace(node.mapped().id, Entry{node.key().first, std::move(node.mapped())});
  }
  return out;
}

bool Scheduler::finished(std::uint64_t id) {
  if (started_.erase(id) == 0) return false;
  ids_.erase(id);
  return true;
}

bool Scheduler::retry(std::uint64_t id, double due_mono) {
  auto it = started_.find(id);
  if (it == started_.end()) return false;
  PendingCommand command = std::move(it->second.command);
  started_.erase(it);
  ++command.attempts;
  waiting_.emplace(std::make_pair(due_mono, seq_++), std::move(command));
  return true;
}

int Scheduler::attempts(std::uint64_t id) const {
  auto it = started_.find(id);
  return it == started_.end() ? -1 : it->second.command.attempts;
}

void Scheduler::restart_started(double mono_now) {
  for (auto& [id, entry] : started_) waiting_.emplace(std::make_pair(mono_now, seq_++), std::move(entry.command));
  started_.clear();
}

std::optional<double> Scheduler::next_due() const {
  if (waiting_.empty()) return std::nullopt;
  return waiting_.begin()->first.first;
}

std::vector<PendingCommand> Scheduler::pending(double wall_now, double mono_now) const {
  std::vector<PendingCommand> out;
  out.reserve(size());
  for (const auto& [id, entry] : started_) out.push_back(entry.command);
  for (const auto& [key, cmd] : waiting_) {
    out.push_back(cmd);
    out.back().due = wall_now + (key.first - mono_now);
  }
  return out;
}

std::vector<PendingCommand> Scheduler::pending() const {
  std::vector<PendingCommand> out;
  out.reserve(size());
  for (const auto& [id, entry] : started_) out.push_back(entry.command);
  for (const auto& [key, cmd] : waiting_) out.push_back(cmd);
  return out;
}

}  // namespace knock::rules
