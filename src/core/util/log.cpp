#include "util/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace knock::log {
namespace {
std::atomic<Level> g_level{Level::Info};
std::string g_program = "portknock";
std::mutex g_mutex;

// Under systemd the journal adds time and program; a terminal gets them from us.
bool under_journal() {
  static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  return journal;
}

const char* label(Level level) {
  switch (level) {
    case Level::Error: return "error";
    case Level::Warning: return "warning";
    case Level::Info: return "info";
    case Level::Debug: return "debug";
  }
  return "?";
}
}  // namespace

void set_program(std::string_view name) { g_program = std::string(name); }
void set_level(Level level) { g_level = level; }
Level level() { return g_level; }

void write(Level level, std::string_view message) {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(message.size() + 64);
  if (under_journal()) {
    // sd-daemon(3) priority prefix
    static const char* prio[] = {"<3>", "<4>", "<6>", "<7>"};
    line += prio[static_cast<int>(level)];
  } else {
    // Milliseconds: the time from a knock to its command is a few of them.
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm_now;
    localtime_r(&now.tv_sec, &tm_now);
    char stamp[48];
    const std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm_now);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03ld ", now.tv_nsec / 1'000'000);
    line += stamp;
    line += g_program;
    line += '[';
    line += std::to_string(getpid());
    line += "] ";
  }
  line += label(level);
  line += ": ";
  // Never let a stray control character from hostile input reach the terminal.
  for (char c : message) line += (static_cast<unsigned char>(c) < 0x20 && c != '\t') ? '?' : c;
  line += '\n';
  std::lock_guard<std::mutex> lock(g_mutex);
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace knock::log
