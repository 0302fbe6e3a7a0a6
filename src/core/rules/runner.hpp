#pragma once
// Running a template's system command: an interface so tests can record what would run.
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "rules/nft.hpp"

namespace knock::rules {

struct Command {
  std::string text;    // for /bin/sh -c
  std::string origin;  // "action NAME, template T" for logs
  bool nft = false;    // run in process through libnftables, not by /bin/sh
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Starts (or queues) a command; never blocks on it and never throws.
  virtual void run(const Command& command) noexcept = 0;
  // Collects finished children; the daemon calls it from its loop. Never blocks.
  virtual void reap() noexcept {}
};

// Records commands instead of running them.
class RecordingRunner final : public CommandRunner {
 public:
  void run(const Command& command) noexcept override {
    try {
      commands.push_back(command);
    } catch (...) {
    }
  }
  std::vector<Command> commands;
};

struct ShellRunnerOptions {
  // Running at once; the rest wait in a queue. One by default: commands run in the order the
  // knocks asked for them, so a firewall's close never overtakes its open.
  std::size_t max_children = 1;
  std::size_t max_queue = 256;     // beyond this, commands are refused (and logged)
  std::size_t stderr_bytes = 2048; // kept from a child's stderr for the log
  std::size_t stderr_lines = 5;    // lines of it logged
  std::string shell = "/bin/sh";
};

// The words of a command that needs no shell: only letters, digits, spaces and / . - _ : , = + @ %,
// the first word an absolute path. Empty when the command needs /bin/sh.
std::vector<std::string> plain_command_words(std::string_view text);

// Runs commands with `/bin/sh -c CMD` (or directly, when plain_command_words allows) through posix_spawn: stdin and stdout are /dev/null,
// stderr goes to a non-blocking pipe. Nothing waits: call reap() periodically (the daemon's
// loop, when poll_fd() is readable and at least every second while busy()) to log each
// child's exit status and first stderr lines and to start queued commands.
class ShellRunner final : public CommandRunner {
 public:
  explicit ShellRunner(ShellRunnerOptions options = {});
  ~ShellRunner() override;  // closes pipes; children keep running and are reaped by init
  ShellRunner(const ShellRunner&) = delete;
  ShellRunner& operator=(const ShellRunner&) = delete;

  void run(const Command& command) noexcept override;
  void reap() noexcept override;
  // Sets up libnftables now rather than on the first knock (it reads the ruleset once).
  void prepare_nft() noexcept;

  bool busy() const { return !children_.empty() || !queue_.empty(); }
  std::size_t running() const { return children_.size(); }
  std::size_t queued() const { return queue_.size(); }
  // The stderr pipes of running children (readable when they write or exit).
  std::vector<int> fds() const;
  // One epoll descriptor over those pipes: readable when any child wrote or exited.
  int poll_fd() const { return epoll_fd_; }
  // Reaps until idle or the timeout passes (for shutdown and tests). True when idle.
  bool wait_idle(double timeout_seconds) noexcept;

  struct Finished {
    std::string command;
    int status = 0;       // exit code, or 128 + signal
    std::string stderr_head;
  };
  // Last finished commands, newest last (bounded to 64), for tests and status reports.
  const std::deque<Finished>& finished() const { return finished_; }

 private:
  struct Child {
    pid_t pid = -1;
    int err_fd = -1;
    Command command;
    std::string err;
    bool exited = false;
    int status = 0;
  };
  void start(const Command& command) noexcept;
  void run_nft(const Command& command) noexcept;
  std::unique_ptr<NftExecutor> nft_;  // created on the first nft command
  void drain(Child& child) noexcept;
  void finish(Child& child) noexcept;

  ShellRunnerOptions options_;
  std::vector<Child> children_;
  std::deque<Command> queue_;
  std::deque<Finished> finished_;
  int epoll_fd_ = -1;
};

}  // namespace knock::rules
