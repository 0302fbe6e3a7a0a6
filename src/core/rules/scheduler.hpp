#pragma once
// The table of pending responses (the daemon's own scheduler, no at(1)): every delayed command
// from the moment its knock is accepted until its command has FINISHED. A command that fell due
// and was handed to the runner stays here ("started") until the runner reports it done, so a
// reload, a stop or a crash in between never loses it (doc/RULES.md, "Pending responses").
//
// Due times run on the caller's monotonic clock (a stepped wall clock does not move them); the
// wall-clock due time is kept for saving and display and recomputed from the monotonic one.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "rules/action_kind.hpp"

namespace knock::rules {

struct PendingCommand {
  double due = 0;       // wall clock, seconds since the epoch (for saving and display)
  std::string command;  // already substituted
  std::string origin;   // "action NAME, template T" for logs
  ActionKind kind = ActionKind::shell;  // nft, ipset: run in process (template key nft, ipset)
  std::uint64_t id = 0; // unique within the table and its cache (0: not yet assigned)
  int attempts = 0;     // runs that failed so far (in memory only: a restart starts again)
  // Who it is for (knockctl list, close ADDRESS): the knock's source address, the address its
  // door opened for (`target`), its client or
  // stanza name ("" for the original format), and when the knock came (wall clock). Empty
  // `who`: unknown (a cache written before these were recorded).
  std::string who{};
  std::string target{};  // the address the door opened for (IP6, else IP, else who)
  std::string client{};
  double knocked = 0;
  bool operator==(const PendingCommand&) const = default;
};

class Scheduler {
 public:
  explicit Scheduler(std::size_t max_pending = 10'000) : max_(max_pending) {}

  // Adds a command due at monotonic time `due_mono`; returns its id (command.id when non-zero
  // and free, else a new one), or 0 (nothing added) when full or the time is not finite.
  std::uint64_t add(PendingCommand command, double due_mono);
  // An id that add() will accept for a new command (so that it can be recorded before it is added).
  std::uint64_t next_id();
  void set_capacity(std::size_t max_pending) { max_ = max_pending; }
  // Free places left (waiting and started commands both take one).
  std::size_t room() const { return size() >= max_ ? 0 : max_ - size(); }
  // Marks every command due at or before mono_now as started and returns copies, earliest first
  // (ties: order added). They stay in the table until finished(id).
  std::vector<PendingCommand> take_due(double mono_now);
  // A started command has finished (whatever its exit status): forget it. False if unknown.
  bool finished(std::uint64_t id);
  // A started command that failed (or could not start): back to waiting, due at `due_mono`, its
  // attempts counted. False if unknown.
  bool retry(std::uint64_t id, double due_mono);
  // Attempts of a started command so far (-1 if unknown).
  int attempts(std::uint64_t id) const;
  // Waiting commands that `match` accepts become due at mono_now (knockctl close); returns how
  // many. Started ones are already on their way.
  template <typename Match>
  std::size_t expedite(const Match& match, double mono_now) {
    std::size_t moved = 0;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (it->first.first <= mono_now || !match(it->second)) {
        ++it;
        continue;
      }
      auto node = waiting_.extract(it++);
      node.key().first = mono_now;
      waiting_.insert(std::move(node));
      ++moved;
    }
    return moved;
  }
  // Started commands, back to waiting and due at once (after a restart or for a new runner).
  void restart_started(double mono_now);
  std::optional<double> next_due() const;  // monotonic
  // Everything not finished, earliest first, with due times converted to wall time at
  // (wall_now, mono_now); started commands keep their original due time.
  std::vector<PendingCommand> pending(double wall_now, double mono_now) const;
  // The same without conversion (the wall time recorded when added).
  std::vector<PendingCommand> pending() const;
  std::size_t size() const { return waiting_.size() + started_.size(); }
  std::size_t started() const { return started_.size(); }
  std::size_t capacity() const { return max_; }
  void clear() {
    waiting_.clear();
    started_.clear();
  }

 private:
  struct Entry {
    double due_mono;
    PendingCommand command;
  };
  std::size_t max_;
  std::uint64_t seq_ = 0;
  std::uint64_t next_id_ = 1;
  std::map<std::pair<double, std::uint64_t>, PendingCommand> waiting_;  // (due_mono, seq)
  std::map<std::uint64_t, Entry> started_;                              // by id, i.e. in start order
  std::unordered_set<std::uint64_t> ids_;                       // every id in the table
};

}  // namespace knock::rules
