#pragma once
// Command lines in the original's single-dash spelling (-conf FILE) and with two dashes
// (--conf FILE, --conf=FILE), and the config-file search list both programs share.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace knock::cli {

struct OptionSpec {
  std::string name;  // without dashes, e.g. "conf"
  bool takes_value = false;
};

struct ParsedArgs {
  // Option name -> value ("" for flags). A repeated option keeps the last value.
  std::map<std::string, std::string> values;
  std::vector<std::string> positional;
  bool has(std::string_view name) const { return values.count(std::string(name)) != 0; }
  std::optional<std::string> get(std::string_view name) const;
};

// Throws ConfigError ("unknown option -x", "option -conf needs a value") on bad input.
ParsedArgs parse(int argc, const char* const* argv, const std::vector<OptionSpec>& specs);

// The directory of the running executable (from /proc/self/exe), "" if unknown.
std::string executable_dir();

// The candidate config files of `program` ("knockdaemon" or "knockclient") in search order:
// ~/.PROGRAM.conf, BIN/PROGRAM.conf, BIN/etc/PROGRAM.conf, BIN/../etc/PROGRAM.conf,
// /etc/portknock/PROGRAM.conf.
std::vector<std::string> config_search_list(std::string_view program);

// The first existing file of config_search_list, or nullopt.
std::optional<std::string> find_config(std::string_view program);

}  // namespace knock::cli
