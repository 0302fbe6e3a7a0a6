#include "util/cli.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "util/error.hpp"

namespace knock::cli {

std::optional<std::string> ParsedArgs::get(std::string_view name) const {
  auto it = values.find(std::string(name));
  if (it == values.end()) return std::nullopt;
  return it->second;
}

ParsedArgs parse(int argc, const char* const* argv, const std::vector<OptionSpec>& specs) {
  ParsedArgs out;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-') {
      out.positional.emplace_back(arg);
      continue;
    }
    std::string_view name = arg.substr(arg[1] == '-' ? 2 : 1);
    std::optional<std::string> inline_value;
    if (const auto eq = name.find('='); eq != std::string_view::npos && arg[1] == '-') {
      inline_value = std::string(name.substr(eq + 1));
      name = name.substr(0, eq);
    }
    const OptionSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == name) spec = &s;
    if (spec == nullptr) throw ConfigError("unknown option " + std::string(arg) + " (try -h)");
    if (!spec->takes_value) {
      if (inline_value) throw ConfigError("option -" + spec->name + " takes no value");
      out.values[spec->name] = "";
      continue;
    }
    if (inline_value) {
      out.values[spec->name] = *inline_value;
    } else {
      if (i + 1 >= argc) throw ConfigError("option -" + spec->name + " needs a value");
      out.values[spec->name] = argv[++i];
    }
  }
  return out;
}

std::string executable_dir() {
  std::string buffer(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", buffer.data(), buffer.size() - 1);
  if (n <= 0) return {};
  buffer.resize(static_cast<std::size_t>(n));
  const auto slash = buffer.rfind('/');
  return slash == std::string::npos ? std::string{} : buffer.substr(0, slash);
}

std::vector<std::string> config_search_list(std::string_view program) {
  const std::string name(program);
  std::vector<std::string> out;
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    out.push_back(std::string(home) + "/." + name + ".conf");
  if (const std::string bin = executable_dir(); !bin.empty()) {
    out.push_back(bin + "/" + name + ".conf");
    out.push_back(bin + "/etc/" + name + ".conf");
    out.push_back(bin + "/../etc/" + name + ".conf");
  }
  out.push_back("/etc/portknock/" + name + ".conf");
  return out;
}

std::optional<std::string> find_config(std::string_view program) {
  for (const auto& candidate : config_search_list(program)) {
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return candidate;
  }
  return std::nullopt;
}

}  // namespace knock::cli
