// libFuzzer target: the shipped log formats (tests/data/capture/logformats.conf, embedded) on
// arbitrary lines.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include "capture/logformat.hpp"
#include "config/tree.hpp"

using namespace knock::capture;

namespace {

constexpr std::string_view kFormats = R"(
<logformat iptables>
  required   = portknock ?IN=\S* OUT=
  interface  = IN=(\S*) OUT=
  protocol   = \sPROTO=(\S+)
  ipserver   = \sDST=(\S+)
  ipclient   = \sSRC=(\S+)
  port       = \sDPT=([0-9]+)
  sourceport = \sSPT=([0-9]+)
  sequence   = \sSEQ=([0-9]+)
</logformat>
<logformat ipchains>
  required   = Packet log: \S+ \S+ \S+ PROTO=
  interface  = Packet log: \S+ \S+ (\S+) PROTO=
  protocol   = Packet log: \S+ \S+ \S+ PROTO=([0-9]+)
  ipclient   = \sPROTO=[0-9]+ ([0-9.]+):[0-9]+
  sourceport = \sPROTO=[0-9]+ [0-9.]+:([0-9]+)
  ipserver   = \sPROTO=[0-9]+ [0-9.]+:[0-9]+ ([0-9.]+):[0-9]+
  port       = \sPROTO=[0-9]+ [0-9.]+:[0-9]+ [0-9.]+:([0-9]+)
</logformat>
<logformat loose>
  protocol   = (\w+)
  ipclient   = ([0-9a-fA-F:.]+)
  ipserver   = (?:\S+\s+){2}(\S+)
  port       = ([0-9]+)$
</logformat>
)";

std::vector<std::unique_ptr<LogFormat>>& formats() {
  static std::vector<std::unique_ptr<LogFormat>> all = [] {
    std::vector<std::unique_ptr<LogFormat>> v;
    const knock::config::Value root = knock::config::parse_string(kFormats, "fuzz.conf");
    for (const auto& member : root.find("logformat")->members())
      v.push_back(std::make_unique<LogFormat>(member.second));
    return v;
  }();
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = text.substr(start, nl - start);
    for (const auto& f : formats()) {
      const auto o = f->parse_line(line, 0);
      if (o && o->protocol != kProtoTcp && o->protocol != kProtoUdp) std::abort();
    }
    start = nl + 1;
  }
  (void)parse_port_text(text);
  (void)parse_protocol_text(text);
  (void)parse_address_text(text);
  return 0;
}
