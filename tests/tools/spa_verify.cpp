// spa_verify CONF NOW: the daemon side of the SPA message for the oracle (tests/oracle/spa_nacl.py).
// CONF is a knockdaemon-style file with knock, spacipher, spawindow, portspan (optional) and
// <client NAME> blocks. Each line of standard input is a message in hex, or "P " and a
// comma-separated port list (the port form over portspan). Each gives one output line:
//   REASON CLIENT OFFSET [FIELD=VALUE ...]
// REASON is ok, size, unknownkey, tag, version, tooold, toonew, fields, replay (an ok message
// whose identity the ReplayCache already holds), badports; CLIENT is the name or -.
#include <charconv>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "codec/codec.hpp"
#include "codec/keys.hpp"
#include "codec/replay.hpp"
#include "codec/spa.hpp"
#include "config/tree.hpp"

using namespace knock;

namespace {

const char* token(spa::Reason r) {
  switch (r) {
    case spa::Reason::Ok: return "ok";
    case spa::Reason::Size: return "size";
    case spa::Reason::UnknownKey: return "unknownkey";
    case spa::Reason::Tag: return "tag";
    case spa::Reason::Version: return "version";
    case spa::Reason::TooOld: return "tooold";
    case spa::Reason::TooNew: return "toonew";
    case spa::Reason::Fields: return "fields";
  }
  return "?";
}

std::optional<std::vector<std::uint8_t>> unhex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < s.size(); i += 2) {
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(s.data() + i, s.data() + i + 2, v, 16);
    if (ec != std::errc{} || p != s.data() + i + 2) return std::nullopt;
    out.push_back(static_cast<std::uint8_t>(v));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: spa_verify CONF NOW < messages\n");
    return 2;
  }
  try {
    const config::Value root = config::parse_file(argv[1]);
    const spa::Settings settings = spa::settings_from_config(root);
    const auto knock = root.scalar("knock");
    if (!knock) throw ConfigError("knock is not set");
    const spa::KeyRing ring = spa::KeyRing::from_config(root);
    const spa::Verifier verifier(ring, settings.cipher, codec::KnockFormat::parse(*knock, root.where_of("knock")),
                                 settings.window, settings.cipher_where);
    std::optional<codec::PortSpan> span;
    if (auto s = root.scalar("portspan")) span = codec::PortSpan::parse(*s, root.where_of("portspan"));
    spa::ReplayCache cache(settings.replay_capacity);
    const std::int64_t now = std::stoll(argv[2]);
    std::string line;
    while (std::getline(std::cin, line)) {
      std::optional<std::vector<std::uint8_t>> bytes;
      if (line.rfind("P ", 0) == 0 && span) {
        std::vector<std::uint16_t> ports;
        std::size_t pos = 2;
        while (pos < line.size()) {
          std::size_t end = line.find(',', pos);
          if (end == std::string::npos) end = line.size();
          ports.push_back(static_cast<std::uint16_t>(std::stoul(line.substr(pos, end - pos))));
          pos = end + 1;
        }
        std::vector<std::uint8_t> b(verifier.message_bytes());
        if (codec::ports_to_bytes(*span, ports, b) == codec::DecodeError::None) bytes = b;
        else {
          std::cout << "badports - 0\n";
          continue;
        }
      } else {
        bytes = unhex(line);
      }
      if (!bytes) {
        std::cout << "size - 0\n";
        continue;
      }
      const spa::Verified v = verifier.verify(*bytes, now);
      const char* reason = token(v.reason);
      if (v.ok() && cache.insert(v.identity, static_cast<std::int64_t>(v.send_time) + verifier.window(), now) !=
                        spa::ReplayCache::Result::Fresh)
        reason = "replay";
      std::cout << reason << ' ' << (v.client >= 0 ? std::string(v.client_name) : "-") << ' ' << v.offset;
      if (v.ok())
        for (auto f : verifier.format().fields()) std::cout << ' ' << codec::field_name(f) << '=' << *v.values.get(f);
      std::cout << '\n';
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "spa_verify: %s\n", e.what());
    return 2;
  }
}
