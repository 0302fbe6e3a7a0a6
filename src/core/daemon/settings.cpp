#include "daemon/settings.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>

#include "util/files.hpp"
#include "util/log.hpp"

namespace knock::daemon {
namespace {

// Every top-level key and block knockdaemon understands (the original's and this project's).
constexpr std::array<std::string_view, 29> kKnownKeys = {
    "runmode",  "logfile",   "fileinterval", "uselogformat", "logformat",  "interface",
    "snapshotsize", "useethfilter", "ethfilter", "knock",  "portspan",   "encrypt",
    "key",      "keyfile",   "cipher",       "iv",           "actions",    "template",
    "statecache", "usecache", "knocktimeout", "maxsources",  "user",       "summaryinterval",
    "protectedshare", "stateexpire", "syncinterval", "maxpending", "stopwait",
};
constexpr std::array<std::string_view, 4> kBlocks = {"logformat", "ethfilter", "actions", "template"};

bool is_block_key(std::string_view key) {
  return std::find(kBlocks.begin(), kBlocks.end(), key) != kBlocks.end();
}

double parse_number(const config::Value& root, std::string_view key, double fallback, double min, double max) {
  const auto text = root.scalar(key);
  if (!text) return fallback;
  const Location where = root.where_of(key);
  double value = 0;
  const char* begin = text->data();
  const char* end = begin + text->size();
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end || !std::isfinite(value))
    throw ConfigError(where, std::string(key) + " = '" + *text + "': expected a number");
  if (value < min || value > max)
    throw ConfigError(where, std::string(key) + " = " + *text + ": must be between " + std::to_string(min) +
                                 " and " + std::to_string(max));
  return value;
}

// The <NAME x> block selected by `use` = x, e.g. uselogformat -> <logformat x>.
const config::Value& named_block(const config::Value& root, std::string_view block, std::string_view use_key,
                                 const std::string& name) {
  const config::Value* blocks = root.find(block);
  const Location where = root.where_of(use_key);
  if (blocks == nullptr || !blocks->is_object())
    throw ConfigError(where, std::string(use_key) + " = " + name + ", but there is no <" + std::string(block) +
                                 " " + name + "> block");
  const config::Value* found = blocks->find(name);
  if (found == nullptr) {
    std::string known;
    for (const auto& [k, v] : blocks->members()) known += (known.empty() ? "" : ", ") + k;
    throw ConfigError(where, "no <" + std::string(block) + " " + name + "> block (defined: " + known + ")");
  }
  if (found->is_array())
    throw ConfigError(found->items().back().where(), "<" + std::string(block) + " " + name + "> is defined twice");
  return *found;
}

void check_keys(const config::Value& root) {
  for (const auto& [key, value] : root.members()) {
    const bool known = std::find(kKnownKeys.begin(), kKnownKeys.end(), key) != kKnownKeys.end();
    if (!known) {
      const Location where = value.is_array() ? value.items().front().where() : value.where();
      throw ConfigError(where, "unknown key '" + key + "'");
    }
    const bool want_block = is_block_key(key);
    const config::Value& first = value.is_array() ? value.items().front() : value;
    if (want_block && !first.is_object())
      throw ConfigError(first.where(), "'" + key + "' must be a block <" + key + " NAME> ... </" + key + ">");
    if (!want_block && first.is_object())
      throw ConfigError(first.where(), "'" + key + "' is a plain key, not a block");
  }
}

}  // namespace

Settings load_settings(const config::Value& root) {
  if (!root.is_object()) throw ConfigError(root.where(), "the configuration is not a set of keys");
  check_keys(root);
  Settings s;

  const std::string mode = root.scalar("runmode").value_or("network");
  if (mode == "network") {
    s.mode = RunMode::Network;
  } else if (mode == "file") {
    s.mode = RunMode::File;
  } else {
    throw ConfigError(root.where_of("runmode"), "runmode = " + mode + ": expected network or file");
  }

  // Both modes' keys are validated whichever mode is used, so -check catches them early.
  s.interface = root.scalar("interface").value_or("any");
  if (s.interface.empty()) s.interface = "any";
  s.snaplen = static_cast<int>(parse_number(root, "snapshotsize", 1500, 64, 262144));
  if (auto name = root.scalar("useethfilter")) {
    s.ethfilter_name = *name;
    s.ethfilter = std::make_unique<capture::EthFilter>(named_block(root, "ethfilter", "useethfilter", *name));
  } else {
    s.ethfilter = std::make_unique<capture::EthFilter>();
  }
  // The others are checked too, so -check catches a broken block before it is selected.
  if (const config::Value* filters = root.find("ethfilter"); filters != nullptr && filters->is_object())
    for (const auto& [name, block] : filters->members())
      if (block.is_object() && name != s.ethfilter_name) capture::EthFilter check(block);

  s.logfile = root.scalar("logfile").value_or("");
  s.fileinterval = parse_number(root, "fileinterval", 0.5, 0.01, 3600);
  if (auto name = root.scalar("uselogformat")) {
    s.logformat_name = *name;
    s.logformat = std::make_unique<capture::LogFormat>(named_block(root, "logformat", "uselogformat", *name));
  }
  if (const config::Value* formats = root.find("logformat"); formats != nullptr && formats->is_object())
    for (const auto& [name, block] : formats->members())
      if (block.is_object() && name != s.logformat_name) capture::LogFormat check(block);
  if (s.mode == RunMode::File) {
    if (s.logfile.empty()) throw ConfigError(root.where_of("runmode"), "runmode = file needs logfile = PATH");
    if (!s.logformat) throw ConfigError(root.where_of("runmode"), "runmode = file needs uselogformat = NAME");
  }

  // A key in a file every user can read is no secret (sshd refuses such a private key too).
  if (root.find("key") != nullptr) {
    const Location at = root.where_of("key");
    check_secret_not_readable_by_others(at.file, at);
  }
  codec::CodecSettings codec = codec::codec_settings_from_config(root);
  if (auto keyfile = root.scalar("keyfile")) {
    if (root.find("key") != nullptr)
      throw ConfigError(root.where_of("keyfile"), "give either key or keyfile, not both");
    codec.key = read_key_file(*keyfile, root.where_of("keyfile"));
    codec.key_where = root.where_of("keyfile");
  }
  s.codec = std::make_unique<codec::KnockCodec>(codec);

  s.tracker.knock_length = s.codec->ports_per_knock();
  s.tracker.knock_timeout = parse_number(root, "knocktimeout", 30, 0.001, tracker::kMaxKnockTimeout);
  s.tracker.max_sources = static_cast<std::size_t>(
      parse_number(root, "maxsources", 0, 0, static_cast<double>(tracker::kMaxSources)));
  s.tracker.summary_interval = parse_number(root, "summaryinterval", 60, 0, 86400);
  s.tracker.protected_share = parse_number(root, "protectedshare", 0.5, 0, 1);
  if (auto problem = tracker::validate(s.tracker)) throw ConfigError(root.where_of("maxsources"), *problem);

  s.user = root.scalar("user");
  return s;
}

}  // namespace knock::daemon
