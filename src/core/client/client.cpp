#include "client/client.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "client/proxy.hpp"
#include "config/tree.hpp"
#include "util/log.hpp"
#include "util/files.hpp"
#include "util/manpages.hpp"

namespace knock::client {
namespace {

constexpr const char* kUsage =
    "usage: knockclient [-conf FILE] -remote HOST [-4|-6] [-client IP|observed] [-port N] [-flag0 N ... -flag9 N]\n"
    "                   [-knock F1,F2,...] [-portspan a-b,c,...] [-encrypt yes|no] [-cipher NAME]\n"
    "                   [-iv yes|no] [-key KEY | -key - | -keyfile FILE] [-proto tcp|udp|spa]\n"
    "                   [-spacipher xchacha20poly1305|aes256gcm] [-spaform udp|ports|udpports]\n"
    "                   [-spaport N] [-passphrase TEXT -salt BASE64]\n"
    "                   [-delay MS] [-logfile FILE] [-test] [-debug] [-quiet] [-h] [-man]\n"
    "                   [-proxy HOST PORT | -wait PORT] [-waittime SECONDS]\n"
    "       knockclient -keygen [FILE]\n"
    "Sends an (encrypted) knock to HOST as connection attempts to ports of the port span, or with\n"
    "-proto spa an authenticated single-packet knock (one UDP datagram to -spaport, default 62202).\n"
    "  -test     print the port sequence (comma-separated) instead of sending it; with -proto spa\n"
    "            the message in hex, then the ports for the port forms\n"
    "  -keygen   write a new random SPA key (base64) to FILE (mode 0600, never overwritten) or stdout\n"
    "  -logfile  append the knock as iptables LOG lines to FILE instead of sending it\n"
    "  -delay    milliseconds between knock packets (default 10)\n"
    "  -4, -6    resolve HOST to an IPv4 (A) or IPv6 (AAAA) address only\n"
    "  -proxy    knock HOST, connect to PORT once open, relay stdin/stdout (ssh ProxyCommand)\n"
    "  -wait     knock, then wait until PORT accepts a connection; -waittime: at most (default 10)\n"
    "Config: -conf FILE, else the first of ~/.knockclient.conf, BIN/knockclient.conf,\n"
    "BIN/etc/knockclient.conf, BIN/../etc/knockclient.conf, /etc/portknock/knockclient.conf.\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 usage or config error. Full manual: knockclient -man\n";

// Config keys and options that take a value.
const std::vector<std::string> kValueKeys = {"remote", "client", "port", "flag0", "flag1", "flag2", "flag3",
                                             "flag4", "flag5", "flag6", "flag7", "flag8", "flag9", "knock",
                                             "portspan", "encrypt", "key", "keyfile", "cipher", "iv", "proto",
                                             "delay", "logfile", "spacipher", "spaport", "spaform",
                                             "passphrase", "salt", "spatime", "spanonce", "waittime"};
const std::vector<std::string> kFlagKeys = {"test", "debug", "quiet"};

std::string hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (auto b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

std::vector<std::uint8_t> unhex(const codec::SettingText& v) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::vector<std::uint8_t> out;
  if (v.text.size() % 2 != 0) throw ConfigError(v.where, "spanonce must be hex digits, two per byte");
  for (std::size_t i = 0; i < v.text.size(); i += 2) {
    const int hi = digit(v.text[i]);
    const int lo = digit(v.text[i + 1]);
    if (hi < 0 || lo < 0) throw ConfigError(v.where, "spanonce must be hex digits, two per byte");
    out.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
  }
  return out;
}

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
    s.push_back({"4", false});
    s.push_back({"6", false});
    s.push_back({"keygen", false});
    s.push_back({"proxy", true});  // -proxy HOST PORT: PORT is taken from the positionals
    s.push_back({"wait", true});
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
  std::optional<codec::SettingText> proto = src.get("proto");
  const bool spa = proto && (proto->text == "spa" || proto->text == "SPA");
  if (spa) {
    SpaPlan sp;
    // key = BASE64 (also from -key, -key - and keyfile, read above) or passphrase + salt.
    const Location block = root != nullptr ? Location{root->where().file, 0} : Location{"command line", 0};
    sp.key.emplace(spa::key_from_settings(
        [&](std::string_view name) -> std::optional<codec::SettingText> {
          if (name == "key") return key;
          if (name == "keyfile") return std::nullopt;  // read into `key` above
          return src.get(name);
        },
        block));
    if (key) secure_wipe(key->text.data(), key->text.size());
    if (args.has("passphrase")) plan.key_on_command_line = true;
    const auto knock = src.get("knock");
    if (!knock) throw ConfigError("knock is not set (config key knock)");
    sp.format = codec::KnockFormat::parse(knock->text, knock->where);
    if (auto v = src.get("spacipher")) {
      const auto c = spa::cipher_from_name(v->text);
      if (!c) throw ConfigError(v->where, "spacipher must be xchacha20poly1305 or aes256gcm, not '" + v->text + "'");
      if (!spa::cipher_available(*c))
        throw ConfigError(v->where, "spacipher = aes256gcm needs a CPU with AES-NI and PCLMUL; use xchacha20poly1305");
      sp.cipher = *c;
    }
    if (auto v = src.get("spaform")) {
      if (v->text == "udp") sp.form = SpaForm::Udp;
      else if (v->text == "ports") sp.form = SpaForm::TcpPorts;
      else if (v->text == "udpports") sp.form = SpaForm::UdpPorts;
      else throw ConfigError(v->where, "spaform must be udp, ports or udpports, not '" + v->text + "'");
    }
    if (auto v = src.get("spaport")) {
      sp.port = static_cast<std::uint16_t>(parse_number(*v, 65535, "spaport"));
      if (sp.port == 0) throw ConfigError(v->where, "spaport must be a number from 1 to 65535, not '0'");
    }
    if (sp.form != SpaForm::Udp) {
      const auto span = src.get("portspan");
      if (!span) throw ConfigError("spaform = " + std::string(sp.form == SpaForm::TcpPorts ? "ports" : "udpports") +
                                   " needs portspan (config key portspan)");
      sp.span = codec::PortSpan::parse(span->text, span->where);
      plan.proto = sp.form == SpaForm::TcpPorts ? Proto::Tcp : Proto::Udp;
    }
    // Fixed time and nonce: for test vectors only. A nonce used twice with one key would reveal
    // the knock and allow forgeries, so these never reach the network.
    if (auto v = src.get("spatime")) {
      if (!plan.test) throw ConfigError(v->where, "spatime is only for -test");
      std::uint64_t t = 0;
      const auto [end, ec] = std::from_chars(v->text.data(), v->text.data() + v->text.size(), t);
      if (v->text.empty() || ec != std::errc{} || end != v->text.data() + v->text.size())
        throw ConfigError(v->where, "spatime must be Unix seconds, not '" + v->text + "'");
      sp.send_time = t;
    }
    if (auto v = src.get("spanonce")) {
      if (!plan.test) throw ConfigError(v->where, "spanonce is only for -test");
      sp.nonce = unhex(*v);
      if (sp.nonce.size() != spa::nonce_bytes(sp.cipher))
        throw ConfigError(v->where, "spanonce must be " + std::to_string(spa::nonce_bytes(sp.cipher)) + " bytes for " +
                                        std::string(spa::cipher_name(sp.cipher)));
    }
    plan.spa.emplace(std::move(sp));
  } else {
    for (std::string_view k : {"spacipher", "spaport", "spaform", "passphrase", "salt", "spatime", "spanonce"})
      if (auto v = src.get(k)) throw ConfigError(v->where, std::string(k) + " needs proto = spa");
    plan.codec = codec::codec_settings([&](std::string_view name) -> std::optional<codec::SettingText> {
      if (name == "key") return key;
      return src.get(name);
    });
    if (key) secure_wipe(key->text.data(), key->text.size());
    if (proto) {
      if (proto->text == "tcp" || proto->text == "TCP") plan.proto = Proto::Tcp;
      else if (proto->text == "udp" || proto->text == "UDP") plan.proto = Proto::Udp;
      else throw ConfigError(proto->where, "proto must be tcp, udp or spa, not '" + proto->text + "'");
    }
  }
  const codec::KnockFormat format =
      spa ? plan.spa->format : codec::KnockFormat::parse(plan.codec.knock, plan.codec.knock_where);

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
  // -client ADDRESS (IPv4 or IPv6), or `observed`: the knock carries 0.0.0.0 / :: and asks the
  // daemon for the address it came from (only where its config says observedsource = yes).
  std::optional<codec::SettingText> client_text = src.get("client");
  const bool observed = client_text && client_text->text == "observed";
  if (client_text && !observed) {
    const auto ip = IpAddress::parse(client_text->text);
    if (!ip)
      throw ConfigError(client_text->where,
                        "client must be an IPv4 or IPv6 address or 'observed', not '" + client_text->text + "'");
    plan.client = *ip;
  }
  if (args.has("4") && args.has("6")) throw ConfigError("give -4 or -6, not both");
  const int family = args.has("4") ? 4 : args.has("6") ? 6 : 0;

  // The remote host: needed to send or log, and for the default client address.
  const bool has4 = format.has(codec::Field::Ip), has6 = format.has(codec::Field::Ip6);
  const auto remote = src.get("remote");
  const bool need_client_ip = (has4 || has6) && !plan.client && !observed;
  if (!remote && (!plan.test || need_client_ip))
    throw ConfigError("no remote host: give -remote HOST (or remote = HOST in the config)");
  if (remote) {
    if (remote->text.empty()) throw ConfigError(remote->where, "remote needs a host name or address");
    plan.remote_name = remote->text;
    plan.remote = resolve_host(remote->text, family);
    if (!plan.client) plan.client = route_source(*plan.remote);
  }
  // IP and IP6: the client's address in the field of its family; the other one, if the format
  // has both, all zeros (no address of that family).
  if (has4) plan.values.set(codec::Field::Ip, 0);
  if (has6) plan.values.set_ip6({});
  if ((has4 || has6) && !observed) {
    const IpAddress& c = *plan.client;
    const std::string whence = client_text ? "" : " (the route to " + *plan.remote_name + ")";
    if (c.is_v4() && !has4)
      throw ConfigError("the knock carries IP6 but no IP field and the client address " + c.str() + whence +
                        " is IPv4: give -client IPV6ADDRESS or -6, or add IP to knock =");
    if (!c.is_v4() && !has6)
      throw ConfigError("the knock's IP field holds an IPv4 address and the client address " + c.str() + whence +
                        " is IPv6: give -client IPV4ADDRESS or -4, or add IP6 to knock =");
    if (c.is_v4()) {
      plan.values.set(codec::Field::Ip, c.v4_host_order());
    } else {
      codec::KnockValues::Ip6Bytes a{};
      std::copy(c.bytes(), c.bytes() + a.size(), a.begin());
      plan.values.set_ip6(a);
    }
  }
  return plan;
}

namespace {

int run_spa(const ClientPlan& plan) {
  const SpaPlan& sp = *plan.spa;
  const std::uint64_t now = sp.send_time ? *sp.send_time : static_cast<std::uint64_t>(std::time(nullptr));
  const auto message = spa::seal(sp.cipher, sp.format, plan.values, *sp.key, now, sp.nonce);
  std::vector<std::uint16_t> ports;
  if (sp.span) ports = codec::bytes_to_ports(*sp.span, message);
  std::string line;
  for (auto p : ports) line += (line.empty() ? "" : ",") + std::to_string(p);
  if (log::enabled(log::Level::Debug)) {
    char id[9];
    std::snprintf(id, sizeof id, "%08x", sp.key->id());
    log::debug("spa " + std::string(spa::cipher_name(sp.cipher)) + " key id " + id + " time " + std::to_string(now) +
               " knock " + sp.format.str() + " -> " + std::to_string(message.size()) + " bytes" +
               (sp.span ? ", " + std::to_string(ports.size()) + " ports" : ""));
  }
  if (plan.test) {
    std::string out = hex(message) + "\n";
    if (sp.span) out += line + "\n";
    std::fputs(out.c_str(), stdout);
    return std::fflush(stdout) == 0 ? kExitOk : kExitRuntime;
  }
  if (plan.logfile) {
    if (!sp.span) throw ConfigError("-logfile needs spaform = ports or udpports (a single datagram has no log form)");
    write_knock_log(*plan.logfile, *plan.client, *plan.remote, ports, plan.proto);
    log::info("wrote an SPA knock of " + std::to_string(ports.size()) + " lines to " + *plan.logfile);
    return kExitOk;
  }
  if (!sp.span) {
    send_datagram(*plan.remote, sp.port, message);
    log::info("sent an SPA message of " + std::to_string(message.size()) + " bytes to " + *plan.remote_name + " (" +
              plan.remote->str() + ") UDP port " + std::to_string(sp.port));
    return kExitOk;
  }
  send_knock(*plan.remote, ports, plan.proto, plan.delay);
  log::info("knocked " + *plan.remote_name + " (" + plan.remote->str() + ") with an SPA message as " +
            std::to_string(ports.size()) + (plan.proto == Proto::Tcp ? " TCP SYNs" : " UDP datagrams"));
  log::debug("ports " + line);
  return kExitOk;
}

}  // namespace

int run(int argc, const char* const* argv) {
  log::set_program("knockclient");
  try {
    auto args = cli::parse(argc, argv, option_specs());
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
    if (args.has("keygen")) {
      if (args.positional.size() > 1) throw ConfigError("-keygen takes at most one FILE");
      if (args.positional.empty()) {
        const spa::Key key = spa::Key::random();
        std::string line = key.base64() + "\n";
        std::fputs(line.c_str(), stdout);
        secure_wipe(line.data(), line.size());
        return std::fflush(stdout) == 0 ? kExitOk : kExitRuntime;
      }
      const spa::Key key = spa::write_new_key_file(args.positional.front());
      char id[9];
      std::snprintf(id, sizeof id, "%08x", key.id());
      log::info("wrote a new SPA key to " + args.positional.front() + " (key id " + id + ")");
      return kExitOk;
    }

    std::optional<config::Value> root;
    std::optional<std::string> conf = args.get("conf");
    if (!conf) conf = cli::find_config("knockclient");
    if (conf) {
      root = config::parse_file(*conf);
      log::debug("config " + *conf);
    }
    const auto follow = take_follow_up(args, root ? &*root : nullptr);  // -proxy HOST PORT, -wait PORT
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
    if (follow) check_follow_up(*follow, plan);
    const auto then = [&](int rc) { return rc == kExitOk && follow ? run_follow_up(*follow, plan) : rc; };
    if (plan.key_on_command_line)
      log::warning("a key given with -key is visible to every user in the process list; use -keyfile FILE or -key -");

    if (plan.spa) return then(run_spa(plan));
    const codec::KnockCodec codec(plan.codec);
    const auto ports = codec.encode(plan.values);
    if (log::enabled(log::Level::Debug)) {
      std::string d = "knock " + codec.format().str() + " = ";
      for (auto f : codec.format().fields()) {
        if (f == codec::Field::Checksum) continue;
        d += std::string(codec::field_name(f)) + ":" + codec::value_text(plan.values, f) + " ";
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
    return then(kExitOk);
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
