#include "rules/runner.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include "util/error.hpp"
#include "util/log.hpp"

// Commands start with this fixed environment, never the daemon's (which may carry whatever
// the shell or service manager that started it had: LD_PRELOAD, IFS, proxies, secrets).
// doc/knockdaemon.1, ENVIRONMENT.
static const char* const kCommandEnv[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C",
    nullptr,
};

namespace knock::rules {

ShellRunner::ShellRunner(ShellRunnerOptions options) : options_(std::move(options)) {
  if (options_.max_children == 0) options_.max_children = 1;
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
}

ShellRunner::~ShellRunner() {
  reap();
  for (auto& c : children_)
    if (c.err_fd >= 0) ::close(c.err_fd);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

bool ShellRunner::run(const Command& command) noexcept {
  try {
    // In order: an in-process command runs at once only when nothing is running or waiting.
    if (in_process(command.kind) && children_.empty() && queue_.empty()) {
      run_in_process(command);
      return true;
    }
    if (!in_process(command.kind) && children_.size() < options_.max_children && queue_.empty()) {
      start(command);
      return true;
    }
    if (command.id == 0) {
      if (queued_immediate_ >= options_.max_queue) {
        log::error("command queue full (" + std::to_string(options_.max_queue) + "); not running " +
                   command.origin + ": " + command.text);
        return false;
      }
      ++queued_immediate_;
    }
    queue_.push_back(command);
    return true;
  } catch (...) {
    // A pending response is reported done only once it ran: it stays recorded as started and
    // runs again after a restart.
    log::error("out of memory; not running " + command.origin);
    return false;
  }
}

std::size_t ShellRunner::room() const noexcept {
  return queued_immediate_ >= options_.max_queue ? 0 : options_.max_queue - queued_immediate_;
}

std::vector<std::string> plain_command_words(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    const bool safe = std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '/' || c == '.' || c == '-' ||
                      c == '_' || c == ':' || c == ',' || c == '=' || c == '+' || c == '@' || c == '%';
    if (c == ' ') {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else if (safe) {
      word += c;
    } else {
      return {};
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  if (words.empty() || words.front().front() != '/') return {};
  return words;
}

InProcessAction* ShellRunner::executor(ActionKind kind) noexcept {
  const auto i = static_cast<std::size_t>(kind);
  if (i >= in_process_.size() || !in_process(kind)) return nullptr;
  if (!in_process_[i]) in_process_[i] = make_in_process_action(kind);
  return in_process_[i].get();
}

void ShellRunner::prepare(ActionKind kind) noexcept {
  const auto i = static_cast<std::size_t>(kind);
  if (i >= in_process_.size() || in_process_[i]) return;  // prepared, or already in use
  if (InProcessAction* action = executor(kind)) action->prepare();
}

void ShellRunner::run_in_process(const Command& command) noexcept {
  try {
    const std::string shown = std::string(action_key(command.kind)) + " " + command.text;
    std::string error;
    log::info("running " + command.origin + ": " + shown);
    InProcessAction* action = executor(command.kind);
    bool ok = false;
    if (action == nullptr)
      error = "out of memory";
    else
      ok = action->run(command.text, &error);
    if (ok) {
      log::info(command.origin + ": '" + shown + "' done");
    } else {
      log::error(command.origin + ": '" + shown + "' failed: " + error);
    }
    if (finished_.size() >= 64) finished_.pop_front();
    finished_.push_back({shown, ok ? 0 : 1, error});
    ++(ok ? succeeded_ : failed_count_);
    if (command.id != 0) {
      if (ok)
        completed_.push_back(command.id);
      else
        failed_.emplace_back(command.id, 1);
    }
  } catch (...) {
    log::error("out of memory; not running " + std::string(action_key(command.kind)) + " command");
  }
}

void ShellRunner::start(const Command& command) noexcept {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0) {
    log::error("cannot run " + command.origin + ": pipe: " + errno_message(errno));
    if (command.id != 0) failed_.emplace_back(command.id, -1);
    return;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The child starts with default signal handling and an empty mask, whatever the daemon set.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  // Each command leads a process group of its own: kill_all() can stop it with its children.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  // A plain command (words of safe characters, first word an absolute path) is started
  // directly: a shell would only add a fork and exec to the knock-to-open latency.
  std::vector<std::string> words = plain_command_words(command.text);
  std::string text = command.text;
  char arg0[] = "sh";
  char arg1[] = "-c";
  std::vector<char*> argv;
  std::string program = options_.shell;
  if (!words.empty()) {
    program = words.front();
    for (auto& w : words) argv.push_back(w.data());
  } else {
    argv = {arg0, arg1, text.data()};
  }
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, program.c_str(), &actions, &attr, argv.data(), const_cast<char* const*>(kCommandEnv));
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    log::error("cannot run " + command.origin + ": " + errno_message(rc));
    if (command.id != 0) failed_.emplace_back(command.id, -1);
    return;
  }
  log::info("running " + command.origin + ": " + command.text);
  if (epoll_fd_ >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = pipefd[0];
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, pipefd[0], &ev);
  }
  Child c;
  c.pid = pid;
  c.err_fd = pipefd[0];
  c.command = command;
  children_.push_back(std::move(c));
}

void ShellRunner::drain(Child& child) noexcept {
  if (child.err_fd < 0) return;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(child.err_fd, buf, sizeof buf);
    if (n > 0) {
      std::size_t room = options_.stderr_bytes > child.err.size() ? options_.stderr_bytes - child.err.size() : 0;
      child.err.append(buf, std::min(room, static_cast<std::size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {  // every writer closed it
      ::close(child.err_fd);
      child.err_fd = -1;
    }
    return;
  }
}

void ShellRunner::finish(Child& child) noexcept {
  drain(child);
  if (child.err_fd >= 0) {  // a background grandchild may keep it open: stop listening
    ::close(child.err_fd);
    child.err_fd = -1;
  }
  std::string head;
  std::size_t lines = 0;
  for (std::size_t i = 0; i < child.err.size() && lines < options_.stderr_lines; ++i) {
    char c = child.err[i];
    if (c == '\n') {
      ++lines;
      if (lines < options_.stderr_lines && i + 1 < child.err.size()) head += " | ";
      continue;
    }
    head += c;
  }
  std::string msg = child.command.origin + ": '" + child.command.text + "' ";
  if (child.status == 0)
    msg += "exited 0";
  else if (child.status > 128)
    msg += "killed by signal " + std::to_string(child.status - 128);
  else
    msg += "exited " + std::to_string(child.status);
  if (!head.empty()) msg += "; stderr: " + head;
  ++(child.status == 0 ? succeeded_ : failed_count_);
  if (child.status == 0)
    log::info(msg);
  else
    log::warning(msg);
  try {
    if (child.command.id != 0) {
      if (child.status == 0)
        completed_.push_back(child.command.id);
      else
        failed_.emplace_back(child.command.id, child.status);
    }
    finished_.push_back({child.command.text, child.status, head});
    if (finished_.size() > 64) finished_.pop_front();
  } catch (...) {
  }
}

void ShellRunner::reap() noexcept {
  for (std::size_t i = 0; i < children_.size();) {
    Child& c = children_[i];
    drain(c);
    int status = 0;
    pid_t r = ::waitpid(c.pid, &status, WNOHANG);
    if (r == c.pid || (r < 0 && errno == ECHILD)) {
      c.status = r < 0 ? 255 : WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
      finish(c);
      children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    ++i;
  }
  while (!queue_.empty()) {
    if (in_process(queue_.front().kind)) {
      if (!children_.empty()) break;  // after the shell commands queued before it
      Command next = std::move(queue_.front());
      queue_.pop_front();
      if (next.id == 0) --queued_immediate_;
      run_in_process(next);
      continue;
    }
    if (children_.size() >= options_.max_children) break;
    Command next = std::move(queue_.front());
    queue_.pop_front();
    if (next.id == 0) --queued_immediate_;
    start(next);
  }
}

void ShellRunner::kill_all() noexcept {
  for (auto& c : children_) {
    ::kill(-c.pid, SIGKILL);
    ::kill(c.pid, SIGKILL);
    log::warning(c.command.origin + ": '" + c.command.text + "' still running at exit: killed");
  }
  for (auto& c : children_) {
    int status = 0;
    while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (c.err_fd >= 0) ::close(c.err_fd);
    if (c.command.id != 0) {
      try {
        failed_.emplace_back(c.command.id, 128 + SIGKILL);
      } catch (...) {
      }
    }
  }
  children_.clear();
  queue_.clear();
  queued_immediate_ = 0;
}

std::vector<int> ShellRunner::fds() const {
  std::vector<int> out;
  for (const auto& c : children_)
    if (c.err_fd >= 0) out.push_back(c.err_fd);
  return out;
}

bool ShellRunner::wait_idle(double timeout_seconds) noexcept {
  struct timespec start {};
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (true) {
    reap();
    if (!busy()) return true;
    struct timespec now {};
    clock_gettime(CLOCK_MONOTONIC, &now);
    double elapsed = static_cast<double>(now.tv_sec - start.tv_sec) + static_cast<double>(now.tv_nsec - start.tv_nsec) / 1e9;
    if (elapsed >= timeout_seconds) return false;
    std::vector<pollfd> pfds;
    for (int fd : fds()) pfds.push_back({fd, POLLIN, 0});
    // Child exits are not pollable here: wake at least every 10 ms to waitpid.
    ::poll(pfds.data(), pfds.size(), 10);
  }
}

}  // namespace knock::rules
