#include "capture/ethfilter.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <utility>

#include "capture/packet.hpp"
#include "capture/pcap_source.hpp"

namespace knock::capture {

namespace {

enum Field { kSrcIp, kDestIp, kSrcPort, kDestPort, kFieldCount };
constexpr std::array<const char*, kFieldCount> kFieldNames = {"src_ip", "dest_ip", "src_port",
                                                              "dest_port"};

std::string upper_trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  std::string out = s.substr(b, e - b);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::optional<unsigned> parse_small_number(const std::string& s, unsigned max) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  unsigned long v = 0;
  std::size_t i = 0;
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'X')) {
    base = 16;
    i = 2;
  }
  for (; i < s.size(); ++i) {
    const char c = s[i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (base == 16 && c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return std::nullopt;
    v = v * static_cast<unsigned long>(base) + static_cast<unsigned long>(d);
    if (v > max) return std::nullopt;
  }
  return static_cast<unsigned>(v);
}

}  // namespace

std::optional<std::uint8_t> parse_ip_proto(const std::string& text) {
  const std::string t = upper_trim(text);
  if (t == "IP_PROTO_TCP" || t == "TCP") return kProtoTcp;
  if (t == "IP_PROTO_UDP" || t == "UDP") return kProtoUdp;
  if (t == "IP_PROTO_ICMP" || t == "ICMP") return std::uint8_t{1};
  if (t == "IP_PROTO_IGMP" || t == "IGMP") return std::uint8_t{2};
  if (t == "IP_PROTO_IPIP") return std::uint8_t{4};
  if (auto n = parse_small_number(t, 255)) return static_cast<std::uint8_t>(*n);
  return std::nullopt;
}

std::optional<std::uint8_t> parse_tcp_flags(const std::string& text) {
  const std::string t = upper_trim(text);
  unsigned mask = 0;
  std::size_t pos = 0;
  while (true) {
    const std::size_t bar = t.find('|', pos);
    const std::string part = upper_trim(t.substr(pos, bar == std::string::npos ? std::string::npos : bar - pos));
    static constexpr std::pair<const char*, std::uint8_t> kNames[] = {
        {"FIN", kTcpFin}, {"SYN", kTcpSyn}, {"RST", kTcpRst}, {"PSH", kTcpPsh},
        {"ACK", kTcpAck}, {"URG", kTcpUrg}, {"ECE", 0x40},    {"CWR", 0x80}};
    bool found = false;
    for (const auto& [name, bit] : kNames) {
      if (part == name) {
        mask |= bit;
        found = true;
      }
    }
    if (!found) {
      const auto n = parse_small_number(part, 255);
      if (!n) return std::nullopt;
      mask |= *n;
    }
    if (bar == std::string::npos) break;
    pos = bar + 1;
  }
  return static_cast<std::uint8_t>(mask);
}

namespace {

bool inet_text(const IpAddress& a, char* buffer, std::size_t size) noexcept {
  return inet_ntop(a.is_v4() ? AF_INET : AF_INET6, a.bytes(), buffer,
                   static_cast<socklen_t>(size)) != nullptr;
}

}  // namespace

struct EthFilter::Impl {
  std::array<std::optional<Regex>, kFieldCount> regex;
  std::unique_ptr<MatchData> md;
};

EthFilter::EthFilter() : impl_(std::make_unique<Impl>()) {}
EthFilter::~EthFilter() = default;
EthFilter::EthFilter(EthFilter&&) noexcept = default;
EthFilter& EthFilter::operator=(EthFilter&&) noexcept = default;

EthFilter::EthFilter(const config::Value& block) : impl_(std::make_unique<Impl>()) {
  if (!block.is_object()) throw ConfigError(block.where(), "ethfilter must be a block");
  std::uint32_t pairs = 1;
  for (const auto& member : block.members()) {
    const std::string& key = member.first;
    const config::Value& value = member.second;
    const bool known = key == "proto" || key == "flags" ||
                       std::find_if(kFieldNames.begin(), kFieldNames.end(), [&](const char* n) {
                         return key == n;
                       }) != kFieldNames.end();
    if (!known) throw ConfigError(value.where(), "unknown ethfilter property '" + key + "'");
    const std::optional<std::string> text = block.scalar(key);
    if (!text) continue;
    if (key == "proto") {
      if (upper_trim(*text).empty()) continue;
      protocol_ = parse_ip_proto(*text);
      if (!protocol_) throw ConfigError(value.where(), "bad proto '" + *text + "'");
    } else if (key == "flags") {
      if (upper_trim(*text).empty()) continue;
      const auto f = parse_tcp_flags(*text);
      if (!f) throw ConfigError(value.where(), "bad flags '" + *text + "' (use SYN|ACK|FIN|RST|PSH|URG)");
      flags_ = *f;
    } else {
      if (text->empty()) continue;
      for (std::size_t i = 0; i < kFieldCount; ++i) {
        if (key == kFieldNames[i]) {
          impl_->regex[i].emplace(*text, value.where());
          pairs = std::max(pairs, impl_->regex[i]->capture_count() + 1);
        }
      }
    }
  }
  impl_->md = std::make_unique<MatchData>(pairs);
}

bool EthFilter::has_regexes() const {
  return std::any_of(impl_->regex.begin(), impl_->regex.end(), [](const auto& r) { return r.has_value(); });
}

bool EthFilter::matches(const Observation& o) const noexcept {
  if (protocol_ && o.protocol != *protocol_) return false;
  if (flags_ != 0 && o.protocol == kProtoTcp && (o.tcp_flags & flags_) == 0) return false;
  if (!impl_ || !impl_->md) return true;
  for (std::size_t i = 0; i < kFieldCount; ++i) {
    const auto& re = impl_->regex[i];
    if (!re) continue;
    char buffer[48];  // fits any IPv6 text (46) or a port
    std::string_view text;
    if (i == kSrcIp || i == kDestIp) {
      const IpAddress& a = i == kSrcIp ? o.source : o.destination;
      if (!inet_text(a, buffer, sizeof buffer)) return false;
      text = buffer;
    } else {
      const int n = std::snprintf(buffer, sizeof buffer, "%u",
                                  static_cast<unsigned>(i == kSrcPort ? o.source_port : o.dest_port));
      if (n <= 0) return false;
      text = std::string_view(buffer, static_cast<std::size_t>(n));
    }
    if (!re->search(text, impl_->md->get())) return false;
  }
  return true;
}

namespace {

std::string port_clause(const std::vector<std::uint16_t>& span, std::size_t max_ranges) {
  std::vector<std::uint16_t> ports = span;
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  if (ports.empty()) return "";
  std::vector<std::pair<unsigned, unsigned>> runs;
  for (std::uint16_t p : ports) {
    if (!runs.empty() && runs.back().second + 1 == p) runs.back().second = p;
    else runs.emplace_back(p, p);
  }
  if (max_ranges == 0) max_ranges = 1;
  if (runs.size() > max_ranges) {  // merge across the smallest gaps (ties: lowest ports first)
    std::vector<std::size_t> order(runs.size() - 1);
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
      return runs[x + 1].first - runs[x].second < runs[y + 1].first - runs[y].second;
    });
    std::vector<bool> merge(runs.size() - 1, false);
    for (std::size_t k = 0; k < runs.size() - max_ranges; ++k) merge[order[k]] = true;
    std::vector<std::pair<unsigned, unsigned>> merged;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      if (i > 0 && merge[i - 1]) merged.back().second = runs[i].second;
      else merged.push_back(runs[i]);
    }
    runs.swap(merged);
  }
  std::string out;
  for (const auto& [a, b] : runs) {
    if (!out.empty()) out += " or ";
    out += a == b ? "dst port " + std::to_string(a)
                  : "dst portrange " + std::to_string(a) + "-" + std::to_string(b);
  }
  return runs.size() > 1 ? "(" + out + ")" : out;
}

}  // namespace

std::string bpf_filter(const EthFilter& filter, const std::vector<std::uint16_t>& span_ports,
                       int dlt, std::size_t max_ranges) {
  const std::uint8_t mask = filter.flags_mask();
  std::string tcp = "tcp";
  if (mask != 0)
    tcp = "((ip and tcp[tcpflags] & " + std::to_string(mask) + " != 0) or (ip6 and tcp))";
  std::string proto;
  const auto p = filter.protocol();
  if (!p) proto = "(" + tcp + " or udp)";
  else if (*p == kProtoTcp) proto = tcp;
  else if (*p == kProtoUdp) proto = "udp";
  else proto = "(ip proto " + std::to_string(*p) + " or ip6 proto " + std::to_string(*p) + ")";
  std::string expr = proto;
  const std::string ports = port_clause(span_ports, max_ranges);
  if (!ports.empty()) expr += " and " + ports;
  // pcap's tcp, udp and port tests on IPv6 read only the fixed header's next header: a packet
  // with extension headers (hop-by-hop, routing, fragment, destination options, AH) passes
  // whole, for the parser to find its TCP or UDP header (a superset, as the filter must be).
  expr = "(" + expr + ") or (ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 60 or ip6[6] == 51))";
  return dlt < 0 ? expr : link_filter(expr, dlt);
}

}  // namespace knock::capture
