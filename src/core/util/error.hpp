#pragma once
// Error types. Startup and configuration problems are exceptions carrying FILE:LINE; the
// programs turn them into one line on stderr and exit code 2. The packet path never throws.
#include <stdexcept>
#include <string>

namespace knock {

// Where something was written: a config file and line, or a command-line option.
struct Location {
  std::string file;  // empty when unknown
  int line = 0;      // 0 when the location is not a line of a file (e.g. "command line")

  std::string str() const;  // "FILE:LINE", "FILE" or "" (never throws)
};

// A configuration or usage problem found at start-up: exit code 2.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(Location where, const std::string& message);
  explicit ConfigError(const std::string& message);  // no location (e.g. a bad option)
  const Location& where() const noexcept { return where_; }
  const std::string& message() const noexcept { return message_; }

 private:
  Location where_;
  std::string message_;
};

// A failure while running (cannot open a capture, cannot send): exit code 1.
class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Exit codes shared by both programs.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitUsage = 2;

// strerror(errno) captured at once, for messages.
std::string errno_message(int saved_errno);

}  // namespace knock
