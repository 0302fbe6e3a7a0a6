#pragma once
// Logging to stderr (the journal under systemd). One line per event; messages about the
// packet path are rate-limited by their callers into periodic summaries.
#include <string>
#include <string_view>

namespace knock::log {

enum class Level { Error = 0, Warning = 1, Info = 2, Debug = 3 };

void set_program(std::string_view name);
void set_level(Level level);  // -quiet: Error; default: Info; -debug: Debug
Level level();
inline bool enabled(Level l) { return static_cast<int>(l) <= static_cast<int>(level()); }

void write(Level level, std::string_view message);
inline void error(std::string_view m) { write(Level::Error, m); }
inline void warning(std::string_view m) { write(Level::Warning, m); }
inline void info(std::string_view m) { if (enabled(Level::Info)) write(Level::Info, m); }
inline void debug(std::string_view m) { if (enabled(Level::Debug)) write(Level::Debug, m); }

}  // namespace knock::log
