#include "util/error.hpp"

#include <cstring>

namespace knock {

std::string Location::str() const {
  if (file.empty()) return {};
  if (line <= 0) return file;
  return file + ":" + std::to_string(line);
}

static std::string with_location(const Location& where, const std::string& message) {
  const std::string prefix = where.str();
  return prefix.empty() ? message : prefix + ": " + message;
}

ConfigError::ConfigError(Location where, const std::string& message)
    : std::runtime_error(with_location(where, message)), where_(std::move(where)), message_(message) {}

ConfigError::ConfigError(const std::string& message) : std::runtime_error(message), message_(message) {}

std::string errno_message(int saved_errno) {
  char buffer[256];
  // GNU strerror_r returns a pointer that may or may not be buffer.
  return std::string(strerror_r(saved_errno, buffer, sizeof buffer));
}

}  // namespace knock
