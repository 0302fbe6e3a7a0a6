#pragma once
// Delayed system commands: the daemon's own scheduler (no at(1)). Time is whatever the caller
// says it is (packet timestamps under -pcap, the clock otherwise).
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace knock::rules {

struct PendingCommand {
  double due = 0;       // seconds since the epoch
  std::string command;  // already substituted, ready for /bin/sh -c
  std::string origin;   // "action NAME, template T" for logs
  bool nft = false;     // an nftables command run in process (template key nft), not a shell one
  bool operator==(const PendingCommand&) const = default;
};

class Scheduler {
 public:
  explicit Scheduler(std::size_t max_pending = 10'000) : max_(max_pending) {}

  // False (nothing added) when full or when due is not a finite time.
  bool add(PendingCommand command);
  // Removes and returns every command due at or before now, earliest first (ties: order added).
  std::vector<PendingCommand> take_due(double now);
  std::optional<double> next_due() const;
  // What is left, earliest first.
  std::vector<PendingCommand> pending() const;
  std::size_t size() const { return queue_.size(); }
  std::size_t capacity() const { return max_; }
  void clear() { queue_.clear(); }

 private:
  std::size_t max_;
  std::uint64_t seq_ = 0;
  std::map<std::pair<double, std::uint64_t>, PendingCommand> queue_;
};

}  // namespace knock::rules
