// fwknop_verify CONF NOW SOURCE: the daemon side of fwknop's SPA packets for the oracle
// (tests/oracle/fwknop_client.sh, packets from Debian's real fwknop client). CONF is a
// knockdaemon-style file with <fwknop NAME> blocks and optionally fwknopwindow; NOW is Unix
// seconds or "now"; SOURCE the packet's source address. Each line of standard input is one
// packet as the client writes it with --save-packet (blanks around ignored). Each gives a line:
//   REASON STANZA offset=N user=U ip=A timestamp=T ports=P,... timeout=N
// (ip: the address to open when ok, else the one the packet asks for; 0.0.0.0 before the fields)
// REASON is the Reason spelled in lower case without spaces (ok, size, base64, source, hmac,
// decrypt, fields, digest, version, tooold, toonew, messagetype, nat, serverauth, user,
// sourceaddress, access, clienttimeout) or replay (an ok packet a ReplayCache already holds).
#include <cstdio>
#include <ctime>
#include <iostream>
#include <string>

#include "codec/fwknop.hpp"
#include "codec/replay.hpp"
#include "config/tree.hpp"
#include "util/text.hpp"

using namespace knock;

namespace {

const char* token(fwknop::Reason r) {
  using fwknop::Reason;
  switch (r) {
    case Reason::Ok: return "ok";
    case Reason::Size: return "size";
    case Reason::Base64: return "base64";
    case Reason::Source: return "source";
    case Reason::Hmac: return "hmac";
    case Reason::Decrypt: return "decrypt";
    case Reason::Fields: return "fields";
    case Reason::Digest: return "digest";
    case Reason::Version: return "version";
    case Reason::TooOld: return "tooold";
    case Reason::TooNew: return "toonew";
    case Reason::MessageType: return "messagetype";
    case Reason::Nat: return "nat";
    case Reason::ServerAuth: return "serverauth";
    case Reason::User: return "user";
    case Reason::SourceAddress: return "sourceaddress";
    case Reason::Access: return "access";
    case Reason::ClientTimeout: return "clienttimeout";
  }
  return "?";
}

std::string dotted(std::uint32_t ip) {
  return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 255) + "." + std::to_string((ip >> 8) & 255) +
         "." + std::to_string(ip & 255);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: fwknop_verify CONF NOW|now SOURCE < packets\n");
    return 2;
  }
  try {
    const config::Value root = config::parse_file(argv[1]);
    const fwknop::Settings settings = fwknop::settings_from_config(root);
    const fwknop::Stanzas stanzas = fwknop::Stanzas::from_config(root);
    const fwknop::Verifier verifier(stanzas, settings.window);
    const auto source = IpAddress::parse(argv[3]);
    if (!source) throw ConfigError(std::string("bad source address ") + argv[3]);
    const std::string now_arg = argv[2];
    spa::ReplayCache cache(1024);
    std::string line;
    while (std::getline(std::cin, line)) {
      const std::int64_t now = now_arg == "now" ? static_cast<std::int64_t>(std::time(nullptr)) : std::stoll(now_arg);
      const std::string_view packet = trim_blanks(line);
      const fwknop::Verified v = verifier.verify(
          {reinterpret_cast<const std::uint8_t*>(packet.data()), packet.size()}, *source, now);
      const char* reason = token(v.reason);
      if (v.ok() && cache.insert(v.identity, v.timestamp + verifier.window(), now) != spa::ReplayCache::Result::Fresh)
        reason = "replay";
      std::cout << reason << ' ' << (v.stanza >= 0 ? std::string(v.stanza_name) : "-") << " offset=" << v.offset
                << " user=" << v.user() << " ip=" << dotted(v.ok() ? v.ip : v.requested_ip) << " timestamp=" << v.timestamp << " ports=";
      for (std::size_t i = 0; i < v.port_count; ++i)
        std::cout << (i ? "," : "") << fwknop::proto_name(v.ports[i].proto) << '/' << v.ports[i].port;
      std::cout << " timeout=" << (v.has_client_timeout ? std::to_string(v.client_timeout) : "-") << '\n';
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fwknop_verify: %s\n", e.what());
    return 2;
  }
}
