#include "daemon/settings.hpp"

#include "daemon/privileges.hpp"

#include "rules/engine.hpp"
#include "util/log.hpp"

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
constexpr std::array<std::string_view, 41> kKnownKeys = {
    "runmode",
    "logfile",
    "fileinterval",
    "uselogformat",
    "logformat",
    "interface",
    "snapshotsize",
    "useethfilter",
    "ethfilter",
    "knock",
    "portspan",
    "encrypt",
    "key",
    "keyfile",
    "cipher",
    "iv",
    "actions",
    "template",
    "statecache",
    "usecache",
    "knocktimeout",
    "maxsources",
    "user",
    "summaryinterval",
    "protectedshare",
    "stateexpire",
    "syncinterval",
    "maxpending",
    "stopwait",
    "proto",
    "nflog_group",
    "listen",
    "replaykeep",
    "privsep",
    "observedsource",
    "controlsocket",
    "controlgroup",
    "commandcaps",
    "realtime",
    "realtimecpu",
    "store",
};
constexpr std::array<std::string_view, 4> kBlocks = {"logformat", "ethfilter", "actions", "template"};

bool is_block_key(std::string_view key) {
  return std::find(kBlocks.begin(), kBlocks.end(), key) != kBlocks.end() || key == "client" || key == "fwknop" ||
         key == "store";
}

bool known_key(std::string_view key) {
  return std::find(kKnownKeys.begin(), kKnownKeys.end(), key) != kKnownKeys.end() ||
         std::find(spa::kDaemonKeys.begin(), spa::kDaemonKeys.end(), key) != spa::kDaemonKeys.end() ||
         std::find(fwknop::kDaemonKeys.begin(), fwknop::kDaemonKeys.end(), key) != fwknop::kDaemonKeys.end();
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
    if (!known_key(key)) {
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
  } else if (mode == "nflog") {
    s.mode = RunMode::Nflog;
  } else {
    throw ConfigError(root.where_of("runmode"), "runmode = " + mode + ": expected network, file or nflog");
  }

  // Every mode's keys are validated whichever mode is used, so -check catches them early.
  if (root.find("interface") != nullptr) {
    s.interfaces.clear();
    for (const config::Value* item : root.all("interface")) {
      if (!item->is_string()) throw ConfigError(item->where(), "interface must be a value");
      for (const auto& name : split_words(item->text())) {
        if (name.size() > 15 || name.find('/') != std::string::npos)
          throw ConfigError(item->where(), "interface '" + name + "': not an interface name");
        if (std::find(s.interfaces.begin(), s.interfaces.end(), name) != s.interfaces.end())
          throw ConfigError(item->where(), "interface " + name + " is given twice");
        s.interfaces.push_back(name);
      }
    }
    if (s.interfaces.empty()) s.interfaces = {"any"};
    if (s.interfaces.size() > 16) throw ConfigError(root.where_of("interface"), "at most 16 interfaces");
  }
  s.nflog_group = static_cast<int>(parse_number(root, "nflog_group", -1, 0, 65535));
  if (s.mode == RunMode::Nflog && s.nflog_group < 0)
    throw ConfigError(root.where_of("runmode"), "runmode = nflog needs nflog_group = N (the firewall rule's --nflog-group)");
  for (const config::Value* item : root.all("listen")) {
    if (!item->is_string()) throw ConfigError(item->where(), "listen must be a value");
    // Without a port: spaport's (read here too, as the <client> blocks are later).
    auto address = capture::parse_listen(item->text(), spa::settings_from_config(root).port);
    if (!address)
      throw ConfigError(item->where(), "listen = '" + item->text() +
                                           "': expected ADDRESS:PORT, e.g. 0.0.0.0:62202 or [::]:62202");
    s.listen.push_back(*address);
    if (s.listen.size() > 16) throw ConfigError(item->where(), "at most 16 listen addresses");
  }
  s.snaplen = static_cast<int>(parse_number(root, "snapshotsize", 1500, 64, 262144));
  if (auto name = root.scalar("useethfilter")) {
    if (s.mode != RunMode::Network)
      s.warnings.push_back(root.where_of("useethfilter").str() +
                           ": useethfilter applies to captured packets (runmode = network) only; ignored here");
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
  s.original_iv = codec.encrypt && codec.iv;
  if (auto keep = root.scalar("replaykeep")) {
    auto seconds = rules::parse_delay(*keep, 3650.0 * 86400);
    if (!seconds || *seconds <= 0)
      throw ConfigError(root.where_of("replaykeep"), "bad replaykeep '" + *keep + "' (e.g. 30d; at most 10 years)");
    s.replay_keep = *seconds;
  }

  // A key written in a block (<client>, <fwknop>) of a file every user can read is no secret.
  for (const char* block : {"client", "fwknop"}) {
    const config::Value* blocks = root.find(block);
    if (blocks == nullptr || !blocks->is_object()) continue;
    for (const auto& [name, body] : blocks->members()) {
      if (!body.is_object()) continue;
      for (const char* key : {"key", "passphrase", "key_base64", "hmac_key", "hmac_key_base64"})
        if (body.find(key) != nullptr) {
          const Location at = body.where_of(key);
          check_secret_not_readable_by_others(at.file, at);
        }
    }
  }
  // Authenticated single-packet knocks: one <client NAME> block per key.
  s.spa_settings = spa::settings_from_config(root);
  s.keyring = std::make_unique<spa::KeyRing>(spa::KeyRing::from_config(root));
  if (s.keyring->size() != 0)
    s.spa = std::make_unique<spa::Verifier>(*s.keyring, s.spa_settings.cipher, s.codec->format(), s.spa_settings.window,
                                            s.spa_settings.cipher_where);
  if (auto proto = root.scalar("proto")) {
    if (*proto == "spa") {
      s.spa_ports = true;
    } else if (*proto != "original") {
      throw ConfigError(root.where_of("proto"), "proto = " + *proto + ": expected spa or original");
    }
  }
  if (s.spa_ports && !s.spa)
    throw ConfigError(root.where_of("proto"), "proto = spa needs at least one <client NAME> block with its key");
  // fwknop's packets: one <fwknop NAME> block per key pair.
  s.fwknop_settings = fwknop::settings_from_config(root);
  s.stanzas = std::make_unique<fwknop::Stanzas>(fwknop::Stanzas::from_config(root));
  if (!s.stanzas->empty()) s.fwknop = std::make_unique<fwknop::Verifier>(*s.stanzas, s.fwknop_settings.window);
  if (s.spa && s.fwknop && s.spa_settings.port == s.fwknop_settings.port)
    throw ConfigError(root.where_of("fwknopport"), "spaport and fwknopport must differ");

  // A socket nothing reads from: its datagrams would only be counted outside the span (or,
  // on a span port, taken for port knocks, which one port cannot carry).
  {
    const auto items = root.all("listen");
    for (std::size_t i = 0; i < s.listen.size() && i < items.size(); ++i) {
      const auto port = s.listen[i].port;
      if ((s.spa && port == s.spa_settings.port) || (s.fwknop && port == s.fwknop_settings.port)) continue;
      throw ConfigError(items[i]->where(),
                        "listen = " + items[i]->text() + ": no verifier reads datagrams on port " + std::to_string(port) +
                            " (" + (s.spa ? "spaport is " + std::to_string(s.spa_settings.port) : "no <client NAME> block") +
                            ", " + (s.fwknop ? "fwknopport is " + std::to_string(s.fwknop_settings.port) : "no <fwknop NAME> block") +
                            ")");
    }
  }
  // A datagram both captured and received on a socket would be seen twice (and its second copy
  // counted as a replay).
  if (s.mode == RunMode::Network)
    for (const auto& address : s.listen)
      if ((s.spa && address.port == s.spa_settings.port) || (s.fwknop && address.port == s.fwknop_settings.port))
        s.warnings.push_back(root.where_of("listen").str() + ": listen on " + address.str() +
                     " while runmode = network also captures that port: each datagram the firewall lets "
                     "through is seen twice (the second copy counts as a replay)");
  // Replays are refused by identities kept in the state cache: without it, a restart forgets them.
  const bool cache = parse_yes_no(root.scalar("usecache").value_or("no")).value_or(false);
  if (!cache && (s.spa || s.fwknop || (s.original_iv && !s.spa_ports)))
    s.warnings.push_back(root.where_of("knock").str() + ": without usecache = yes the knocks accepted so far are "
                                                "forgotten at every restart, and can then be replayed once");
  // Settings that let an observer forge or replay a port knock of the original format.
  if (!s.spa_ports) {
    const Location knock_at = root.where_of("knock");
    if (!codec.encrypt)
      s.warnings.push_back((codec.encrypt_where.file.empty() ? knock_at : codec.encrypt_where).str() + ": encrypt = no: anyone who sees a knock can make one for any "
                                               "address (use <client> blocks and proto = spa)");
    else if (!codec.iv)
      s.warnings.push_back((codec.iv_where.file.empty() ? knock_at : codec.iv_where).str() + ": iv = no: a knock seen once can be replayed (use iv = yes, or "
                                          "<client> blocks and proto = spa)");
    if (s.codec->format().byte_length() < 8)
      s.warnings.push_back(root.where_of("knock").str() + ": a knock of " + std::to_string(s.codec->format().byte_length()) +
                   " bytes is under one cipher block: easier to guess or forge");
  }

  s.tracker.knock_length = s.spa_ports ? codec::ports_for_bytes(s.codec->span(), s.spa->message_bytes())
                                       : s.codec->ports_per_knock();
  s.tracker.knock_timeout = parse_number(root, "knocktimeout", 30, 0.001, tracker::kMaxKnockTimeout);
  s.tracker.max_sources = static_cast<std::size_t>(
      parse_number(root, "maxsources", 0, 0, static_cast<double>(tracker::kMaxSources)));
  s.tracker.summary_interval = parse_number(root, "summaryinterval", 60, 0, 86400);
  s.tracker.protected_share = parse_number(root, "protectedshare", 0.5, 0, 1);
  if (auto problem = tracker::validate(s.tracker)) throw ConfigError(root.where_of("maxsources"), *problem);

  s.user = root.scalar("user");
  if (auto text = root.scalar("privsep")) {
    const auto yes = parse_yes_no(*text);
    if (!yes) throw ConfigError(root.where_of("privsep"), "privsep must be yes or no, not '" + *text + "'");
    s.privsep = *yes;
  }
  if (auto path = root.scalar("controlsocket")) {
    s.control_socket_set = true;
    if (*path == "none") {
      s.control_socket.clear();
    } else if (path->empty() || path->front() != '/' || path->size() > 100) {
      throw ConfigError(root.where_of("controlsocket"), "controlsocket must be an absolute path of at most 100 bytes, or none");
    } else {
      s.control_socket = *path;
    }
  }
  s.control_group = root.scalar("controlgroup");
  if (auto caps = root.scalar("commandcaps")) {
    std::string why;
    s.command_caps = parse_capabilities(*caps, &why);
    if (!why.empty()) throw ConfigError(root.where_of("commandcaps"), why);
  }
  // The worker runs at `realtime`, the monitor one above.
  s.realtime.priority = static_cast<int>(parse_number(root, "realtime", 0, 0, 98));
  if (s.realtime.priority != parse_number(root, "realtime", 0, 0, 98))
    throw ConfigError(root.where_of("realtime"), "realtime must be a whole number from 0 (off) to 98");
  s.realtime.max_share = parse_number(root, "realtimecpu", 50, 1, 100) / 100;
  return s;
}

}  // namespace knock::daemon
