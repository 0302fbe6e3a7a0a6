// libFuzzer: arbitrary text through the nft set element parser (rules/nft_element.hpp). What it
// accepts must be what the fast path can encode: at most 5 fields, a key of at most 64 bytes,
// names of at most 255 bytes, and it must accept its own rendering again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

#include <arpa/inet.h>

#include "rules/nft_element.hpp"

namespace {

// The command again in nft's words; *dotted when an IPv6 address came out with an embedded IPv4
// (inet_ntop's ::ffff:a.b.c.d), which the parser leaves to libnftables.
std::string render(const knock::rules::ElementCommand& c, bool* dotted) {
  using knock::rules::ElementField;
  std::string out = c.verb == knock::rules::ElementVerb::Add      ? "add"
                    : c.verb == knock::rules::ElementVerb::Create ? "create"
                                                                  : "delete";
  out += " element " + c.family_name + " " + c.table + " " + c.set + " {";
  for (std::size_t i = 0; i < c.key.size(); ++i) {
    const ElementField& f = c.key[i];
    out += i ? " . " : " ";
    char text[64] = {};
    if (f.kind == ElementField::Kind::Port) {
      out += std::to_string(f.bytes[0] << 8 | f.bytes[1]);
    } else if (inet_ntop(f.kind == ElementField::Kind::Ipv4 ? AF_INET : AF_INET6, f.bytes.data(), text, sizeof text)) {
      out += text;
      if (f.kind == ElementField::Kind::Ipv6 && std::string_view(text).find('.') != std::string_view::npos) *dotted = true;
    }
  }
  if (c.timeout_ms) {
    std::uint64_t ms = c.timeout_ms;
    out += " timeout ";
    for (const auto& [unit, name] : {std::pair<std::uint64_t, const char*>{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}}) {
      if (ms >= unit) out += std::to_string(ms / unit) + name;
      ms %= unit;
    }
  }
  return out + " }";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto command = knock::rules::parse_element_command(text);
  if (!command) return 0;
  const auto key = command->key_bytes();
  if (command->key.empty() || command->key.size() > 5 || key.size() > 64 || command->table.empty() ||
      command->table.size() > 255 || command->set.empty() || command->set.size() > 255)
    std::abort();
  bool dotted = false;
  const auto again = knock::rules::parse_element_command(render(*command, &dotted));
  if (!again) {
    if (!dotted) std::abort();
    return 0;
  }
  if (again->key_bytes() != key || again->key_type() != command->key_type() || again->timeout_ms != command->timeout_ms ||
      again->table != command->table || again->set != command->set || again->family != command->family ||
      again->verb != command->verb)
    std::abort();
  return 0;
}
