#pragma once
// Running a template's system command: an interface so tests can record what would run.
#include <array>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <cstdint>
#include <sys/types.h>
#include <vector>

#include "rules/action_kind.hpp"
#include "rules/in_process.hpp"

namespace knock::rules {

struct Command {
  std::string text;    // for /bin/sh -c, or the in-process library's one line
  std::string origin;  // "action NAME, template T" for logs
  ActionKind kind = ActionKind::shell;  // nft, ipset: run in process, not by /bin/sh
  // A pending response's id in the scheduler (0: an immediate command). The runner reports it
  // through take_completed() once the command has finished, and never refuses it.
  std::uint64_t id = 0;
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Starts (or queues) a command; never blocks on it and never throws. False when an
  // immediate command (id 0) was refused because the queue is full; a pending response (id != 0)
  // is never refused.
  virtual bool run(const Command& command) noexcept = 0;
  // Collects finished children; the daemon calls it from its loop. Never blocks.
  virtual void reap() noexcept {}
  // Immediate commands that would still be accepted now.
  virtual std::size_t room() const noexcept { return static_cast<std::size_t>(-1); }
  // Ids of the pending responses (Command::id) whose command finished with exit status 0 (an
  // in-process command: succeeded) since the last call.
  virtual std::vector<std::uint64_t> take_completed() noexcept { return {}; }
  // Pending responses that failed since the last call: (id, status), status the exit code,
  // 128 + signal, or -1 when the command could not be started at all (no descriptor, no process,
  // no such program). The engine tries them again.
  virtual std::vector<std::pair<std::uint64_t, int>> take_failed() noexcept { return {}; }
  // Stops every running command now (SIGKILL to its process group) and forgets the queue; used
  // at exit once stopwait has passed, so that no command outlives the daemon.
  virtual void kill_all() noexcept {}
  // Prepares an in-process kind's library before the first knock (when a template uses it).
  virtual void prepare(ActionKind /*kind*/) noexcept {}
  // Commands running or waiting; the caller should reap() soon.
  virtual bool busy() const noexcept { return false; }
  // Readable when a running command wrote or exited; -1 when there is none.
  virtual int poll_fd() const noexcept { return -1; }
  // Reaps until idle or the timeout passes (for shutdown and tests). True when idle.
  virtual bool wait_idle(double /*timeout_seconds*/) noexcept { return true; }
};

// Records commands instead of running them.
class RecordingRunner final : public CommandRunner {
 public:
  bool run(const Command& command) noexcept override {
    try {
      commands.push_back(command);
      if (command.id != 0) completed.push_back(command.id);
    } catch (...) {
    }
    return true;
  }
  std::vector<std::uint64_t> take_completed() noexcept override { return std::exchange(completed, {}); }
  std::vector<Command> commands;
  std::vector<std::uint64_t> completed;
};

struct ShellRunnerOptions {
  // Running at once; the rest wait in a queue. One by default: commands run in the order the
  // knocks asked for them, so a firewall's close never overtakes its open.
  std::size_t max_children = 1;
  // Immediate commands waiting beyond this are refused (the engine asks room() first and then
  // refuses the whole knock: fail closed). Pending responses that fell due are never refused:
  // their number is bounded by the scheduler's table.
  std::size_t max_queue = 4096;
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

  bool run(const Command& command) noexcept override;
  void reap() noexcept override;
  std::size_t room() const noexcept override;
  std::vector<std::uint64_t> take_completed() noexcept override { return std::exchange(completed_, {}); }
  std::vector<std::pair<std::uint64_t, int>> take_failed() noexcept override { return std::exchange(failed_, {}); }
  void kill_all() noexcept override;
  // Sets up an in-process kind's library now rather than on the first knock.
  void prepare(ActionKind kind) noexcept override;

  bool busy() const noexcept override { return !children_.empty() || !queue_.empty(); }
  std::size_t running() const { return children_.size(); }
  std::size_t queued() const { return queue_.size(); }
  // The stderr pipes of running children (readable when they write or exit).
  std::vector<int> fds() const;
  // One epoll descriptor over those pipes: readable when any child wrote or exited.
  int poll_fd() const noexcept override { return epoll_fd_; }
  bool wait_idle(double timeout_seconds) noexcept override;

  struct Finished {
    std::string command;
    int status = 0;       // exit code, or 128 + signal
    std::string stderr_head;
  };
  // Commands (shell and in-process) that finished with status 0, and otherwise (metrics).
  std::uint64_t succeeded() const { return succeeded_; }
  std::uint64_t failed() const { return failed_count_; }
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
  void run_in_process(const Command& command) noexcept;
  InProcessAction* executor(ActionKind kind) noexcept;  // created on first use; nullptr: none
  std::array<std::unique_ptr<InProcessAction>, 3> in_process_;  // by ActionKind
  void drain(Child& child) noexcept;
  void finish(Child& child) noexcept;

  ShellRunnerOptions options_;
  std::vector<Child> children_;
  std::deque<Command> queue_;
  std::deque<Finished> finished_;
  std::vector<std::uint64_t> completed_;
  std::vector<std::pair<std::uint64_t, int>> failed_;
  std::size_t queued_immediate_ = 0;
  std::uint64_t succeeded_ = 0;
  std::uint64_t failed_count_ = 0;
  int epoll_fd_ = -1;
};

}  // namespace knock::rules
