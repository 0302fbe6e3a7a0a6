#include "client/client.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "config/tree.hpp"
#include "util/log.hpp"
#include "util/files.hpp"
#include "util/manpages.hpp"

namespace knock::client {
namespace {

constexpr const char* kUsage =
    "usage: knockclient [-conf FILE] -remote HOST [-client IP] [-port N] [-flag0 N ... -flag9 N]\n"
    "                   [-knock F1,F2,...] [-portspan a-b,c,...] [-encrypt yes|no] [-cipher NAME]\n"
    "                   [-iv yes|no] [-key KEY | -key - | -keyfile FILE] [-proto tcp|udp]\n"
    "                   [-delay MS] [-logfile FILE] [-test] [-debug] [-quiet] [-h] [-man]\n"
    "Sends an (encrypted) knock to HOST as connection attempts to ports of the port span.\n"
    "  -test     print the port sequence (comma-separated) instead of sending it\n"
    "  -logfile  append the knock as iptables LOG lines to FILE instead of sending it\n"
    "  -delay    milliseconds between knock packets (default 10)\n"
    "Config: -conf FILE, else the first of ~/.knockclient.conf, BIN/knockclient.conf,\n"
    "BIN/etc/knockclient.conf, BIN/../etc/knockclient.conf, /etc/portknock/knockclient.conf.\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 usage or config error. Full manual: knockclient -man\n";

// Config keys and options that take a value.
const std::vector<std::string> kValueKeys = {"remote", "client", "port", "flag0", "flag1", "flag2", "flag3",
                                             "flag4", "flag5", "flag6", "flag7", "flag8", "flag9", "knock",
                                             "portspan", "encrypt", "key", "keyfile", "cipher", "iv", "proto",
                                             "delay", "logfile"};
const std::vector<std::string> kFlagKeys = {"test", "debug", "quiet"};

struct Sources {
  const cli::ParsedArgs& args;
  const config::Value* root;

  std::optional<codec::SettingText> get(std::string_view key) const {
    if (auto v = args.get(key)) return codec::SettingText{*v, Location{"option -" + std::string(key), 0}};
    if (root != nullptr)
      if (auto t = root->scalar(key)) return codec::SettingText{*t, root->where_of(key)};
    return std::nullopt;
  }
  // A flag given on the command line, or set to a true yes/no value in the file.
  bool flag(std::string_view key) const {
    if (args.has(key)) return true;
    if (auto v = get(key)) {
      const auto b = codec::parse_yes_no(v->text);
      if (!b) throw ConfigError(v->where, std::string(key) + " must be yes or no, not '" + v->text + "'");
      return *b;
    }
    return false;
  }
};

std::uint32_t parse_number(const codec::SettingText& v, std::uint32_t max, std::string_view what) {
  std::uint32_t n = 0;
  const char* b = v.text.data();
  const char* e = b + v.text.size();
  const auto [end, ec] = std::from_chars(b, e, n);
  if (v.text.empty() || ec != std::errc{} || end != e || n > max)
    throw ConfigError(v.where, std::string(what) + " must be a number from 0 to " + std::to_string(max) + ", not '" +
                                   v.text + "'");
  return n;
}

}  // namespace

const std::vector<cli::OptionSpec>& option_specs() {
  static const std::vector<cli::OptionSpec> specs = [] {
    std::vector<cli::OptionSpec> s;
    s.push_back({"conf", true});
    for (const auto& k : kValueKeys) s.push_back({k, true});
    for (const auto& k : kFlagKeys) s.push_back({k, false});
    s.push_back({"h", false});
    s.push_back({"help", false});
    s.push_back({"man", false});
    return s;
  }();
  return specs;
}

ClientPlan make_plan(const cli::ParsedArgs& args, const config::Value* root,
                     const std::function<std::string()>& read_stdin) {
  if (!args.positional.empty()) throw ConfigError("unexpected argument '" + args.positional.front() + "' (try -h)");
  if (root != nullptr) {
    for (const auto& [key, value] : root->members()) {
      const bool known = std::find(kValueKeys.begin(), kValueKeys.end(), key) != kValueKeys.end() ||
                         std::find(kFlagKeys.begin(), kFlagKeys.end(), key) != kFlagKeys.end();
      if (!known) throw ConfigError(value.where(), "unknown knockclient setting '" + key + "'");
    }
  }
  const Sources src{args, root};
  ClientPlan plan;
  plan.test = src.flag("test");

  // The key: -key/-keyfile on the command line beat key/keyfile in the file.
  if (args.has("key") && args.has("keyfile")) throw ConfigError("give either -key or -keyfile, not both");
  std::optional<codec::SettingText> key;
  if (auto k = args.get("key")) {
    const Location where{"option -key", 0};
    if (*k == "-") {
      std::string input = read_stdin();
      const SecureBytes line = first_line_of(input);
      key = codec::SettingText{std::string(line.begin(), line.end()), where};
      if (key->text.empty()) throw ConfigError(where, "no key on standard input (-key -)");
    } else {
      key = codec::SettingText{*k, where};
      plan.key_on_command_line = true;
    }
  } else if (auto f = args.get("keyfile")) {
    const Location where{"option -keyfile", 0};
    const SecureBytes bytes = read_key_file(*f, where);
    key = codec::SettingText{std::string(bytes.begin(), bytes.end()), where};
  } else if (auto kf = src.get("keyfile")) {
    if (root->find("key") != nullptr) throw ConfigError(kf->where, "give either key or keyfile, not both");
    const SecureBytes bytes = read_key_file(kf->text, kf->where);
    key = codec::SettingText{std::string(bytes.begin(), bytes.end()), kf->where};
  } else {
    key = src.get("key");
    // A key in a config file every user can read is no secret: refused, as sshd refuses a
    // readable private key.
    if (key && root != nullptr && root->find("key") != nullptr)
      check_secret_not_readable_by_others(key->where.file, key->where);
  }
  plan.codec = codec::codec_settings([&](std::string_view name) -> std::optional<codec::SettingText> {
    if (name == "key") return key;
    return src.get(name);
  });
  if (key) secure_wipe(key->text.data(), key->text.size());
  const codec::KnockFormat format = codec::KnockFormat::parse(plan.codec.knock, plan.codec.knock_where);

  if (auto v = src.get("proto")) {
    if (v->text == "tcp" || v->text == "TCP") plan.proto = Proto::Tcp;
    else if (v->text == "udp" || v->text == "UDP") plan.proto = Proto::Udp;
    else throw ConfigError(v->where, "proto must be tcp or udp, not '" + v->text + "'");
  }
  if (auto v = src.get("delay")) plan.delay = std::chrono::milliseconds(parse_number(*v, 60000, "delay"));
  if (auto v = src.get("logfile")) {
    if (v->text.empty()) throw ConfigError(v->where, "logfile needs a file name");
    plan.logfile = v->text;
  }

  // Field values.
  if (format.has(codec::Field::Port)) {
    auto v = src.get("port");
    if (!v) throw ConfigError("the knock has a PORT field: give -port N (or port = N in the config)");
    plan.values.set(codec::Field::Port, parse_number(*v, 65535, "port"));
  }
  for (int i = 0; i <= 9; ++i) {
    const auto field = static_cast<codec::Field>(static_cast<int>(codec::Field::Flag0) + i);
    const std::string name = "flag" + std::to_string(i);
    if (auto v = src.get(name)) plan.values.set(field, parse_number(*v, 255, name));
    else if (format.has(field)) plan.values.set(field, 0);
  }
  std::optional<codec::SettingText> client_text = src.get("client");
  if (client_text) {
    const auto ip = IpAddress::parse(client_text->text);
    if (!ip || !ip->is_v4())
      throw ConfigError(client_text->where, "client must be an IPv4 address, not '" + client_text->text + "'");
    plan.client = *ip;
  }

  // The remote host: needed to send or log, and for the default client address.
  const auto remote = src.get("remote");
  const bool need_client_ip = format.has(codec::Field::Ip) && !plan.client;
  if (!remote && (!plan.test || need_client_ip))
    throw ConfigError("no remote host: give -remote HOST (or remote = HOST in the config)");
  if (remote) {
    if (remote->text.empty()) throw ConfigError(remote->where, "remote needs a host name or address");
    plan.remote_name = remote->text;
    plan.remote = resolve_host(remote->text);
    if (!plan.client) {
      const IpAddress local = route_source(*plan.remote);
      if (local.is_v4()) {
        plan.client = local;
      } else if (format.has(codec::Field::Ip)) {
        throw ConfigError("the IP field holds an IPv4 address and the route to " + remote->text +
                          " is IPv6: give -client IPv4ADDRESS");
      } else {
        plan.client = local;
      }
    }
  }
  if (format.has(codec::Field::Ip)) plan.values.set(codec::Field::Ip, plan.client->v4_host_order());
  return plan;
}

int run(int argc, const char* const* argv) {
  log::set_program("knockclient");
  try {
    const auto args = cli::parse(argc, argv, option_specs());
    if (args.has("h") || args.has("help")) {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    if (args.has("man")) {
      manpages::print(manpages::client());
      return kExitOk;
    }
    if (args.has("debug")) log::set_level(log::Level::Debug);
    if (args.has("quiet")) log::set_level(log::Level::Error);

    std::optional<config::Value> root;
    std::optional<std::string> conf = args.get("conf");
    if (!conf) conf = cli::find_config("knockclient");
    if (conf) {
      root = config::parse_file(*conf);
      log::debug("config " + *conf);
    }
    const auto plan = make_plan(args, root ? &*root : nullptr, [] {
      std::string text;
      char buf[512];
      std::size_t n = 0;
      while (text.size() <= 4096 && (n = std::fread(buf, 1, sizeof buf, stdin)) > 0) text.append(buf, n);
      secure_wipe(buf, sizeof buf);
      return text;
    });
    if (!args.has("debug") && !args.has("quiet")) {
      Sources src{args, root ? &*root : nullptr};
      if (src.flag("quiet")) log::set_level(log::Level::Error);
      else if (src.flag("debug")) log::set_level(log::Level::Debug);
    }
    if (plan.key_on_command_line)
      log::warning("a key given with -key is visible to every user in the process list; use -keyfile FILE or -key -");

    const codec::KnockCodec codec(plan.codec);
    const auto ports = codec.encode(plan.values);
    if (log::enabled(log::Level::Debug)) {
      std::string d = "knock " + codec.format().str() + " = ";
      for (auto f : codec.format().fields()) {
        if (f == codec::Field::Checksum) continue;
        d += std::string(codec::field_name(f)) + ":" +
             (f == codec::Field::Ip ? IpAddress::v4(*plan.values.get(f)).str() : std::to_string(*plan.values.get(f))) +
             " ";
      }
      d += "-> " + std::to_string(codec.wire_bytes()) + " bytes, " + std::to_string(ports.size()) + " ports";
      log::debug(d);
    }
    std::string line;
    for (auto p : ports) line += (line.empty() ? "" : ",") + std::to_string(p);
    if (plan.test) {
      std::fputs((line + "\n").c_str(), stdout);
      return std::fflush(stdout) == 0 ? kExitOk : kExitRuntime;
    }
    if (plan.logfile) {
      write_knock_log(*plan.logfile, *plan.client, *plan.remote, ports, plan.proto);
      log::info("wrote a knock of " + std::to_string(ports.size()) + " lines to " + *plan.logfile);
      return kExitOk;
    }
    send_knock(*plan.remote, ports, plan.proto, plan.delay);
    log::info("knocked " + *plan.remote_name + " (" + plan.remote->str() + ") with " + std::to_string(ports.size()) +
              (plan.proto == Proto::Tcp ? " TCP SYNs" : " UDP datagrams"));
    log::debug("ports " + line);
    return kExitOk;
  } catch (const ConfigError& e) {
    log::error(e.what());
    return kExitUsage;
  } catch (const RuntimeError& e) {
    log::error(e.what());
    return kExitRuntime;
  } catch (const std::exception& e) {
    log::error(e.what());
    return kExitRuntime;
  }
}

}  // namespace knock::client
