#include "rules/store.hpp"

#include <sodium.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "util/files.hpp"
#include "util/text.hpp"

namespace knock::rules {

namespace {

constexpr std::array<std::string_view, 11> kStoreKeys = {"address",  "user",     "passwordfile", "prefix",
                                                         "timeout",  "fallback", "database",     "name",
                                                         "fleet",    "fleetlength", "fleetkeyfile"};

std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) ? '?' : c;
  return out;
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

// A whole number in [min, max], digits only; nullopt otherwise.
std::optional<long> whole(std::string_view t, long min, long max) {
  if (t.empty() || t.size() > 9) return std::nullopt;
  long n = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (n < min || n > max) return std::nullopt;
  return n;
}

void parse_address(StoreSettings& s, const std::string& text, const Location& where) {
  const std::string bad = "bad address '" + shown(text) + "' (a Unix socket path starting with /, or a numeric IP:PORT such as 127.0.0.1:6379 or [2001:db8::1]:6379; host names are not resolved)";
  if (text.empty()) throw ConfigError(where, bad);
  if (text[0] == '/') {
    if (text.size() >= sizeof(sockaddr_un{}.sun_path))
      throw ConfigError(where, "address: the socket path is longer than " + std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes");
    s.unix_path = text;
    return;
  }
  std::string host = text, port;
  if (text[0] == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string::npos) throw ConfigError(where, bad);
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') throw ConfigError(where, bad);
      port = text.substr(close + 2);
      if (port.empty()) throw ConfigError(where, bad);
    }
    in6_addr a6{};
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) throw ConfigError(where, bad);
  } else {
    const std::size_t colon = text.find(':');
    if (colon != std::string::npos) {
      if (text.find(':', colon + 1) != std::string::npos)
        throw ConfigError(where, bad + "; write an IPv6 address in brackets");
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (port.empty()) throw ConfigError(where, bad);
    }
    in_addr a4{};
    if (inet_pton(AF_INET, host.c_str(), &a4) != 1) throw ConfigError(where, bad);
  }
  if (!port.empty()) {
    auto p = whole(port, 1, 65535);
    if (!p) throw ConfigError(where, "address: bad port '" + shown(port) + "' (1 to 65535)");
    s.port = static_cast<int>(*p);
  }
  s.host = host;
}

std::string default_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return "gateway";
  std::string out;
  for (const char* p = host; *p != '\0' && out.size() < 64; ++p) out += name_char(*p) ? *p : '_';
  return out.empty() ? std::string("gateway") : out;
}

}  // namespace

std::string StoreSettings::address() const {
  if (!unix_path.empty()) return "redis " + unix_path;
  return "redis " + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<StoreSettings> parse_store_settings(const config::Value& root) {
  const config::Value* block = root.find("store");
  if (block == nullptr) return std::nullopt;
  const std::string usage = "write the store as a block <store redis> ... </store>";
  if (block->is_array())
    throw ConfigError(block->items().size() > 1 ? block->items()[1].where() : block->where(), "only one <store> block; " + usage);
  if (!block->is_object()) throw ConfigError(block->where(), "'store' is a block; " + usage);
  if (block->members().empty()) throw ConfigError(block->where(), "<store> needs a kind; " + usage);
  if (block->members().size() > 1)
    throw ConfigError(block->members()[1].second.where(), "only one <store> block; " + usage);
  const auto& [kind, body] = block->members().front();
  if (!body.is_object()) {
    if (body.is_array()) throw ConfigError(body.items().back().where(), "<store " + shown(kind) + "> is defined twice");
    throw ConfigError(body.where(), "'" + shown(kind) + "' outside a named block; " + usage);
  }
  if (kind != "redis") throw ConfigError(body.where(), "unknown store '" + shown(kind) + "' (the one kind is <store redis>)");
  StoreSettings s;
  s.where = body.where();
  for (const auto& [key, value] : body.members()) {
    const Location at = value.is_array() ? value.items().front().where() : value.where();
    if (std::find(kStoreKeys.begin(), kStoreKeys.end(), key) == kStoreKeys.end())
      throw ConfigError(at, "unknown key '" + shown(key) +
                                "' in <store redis> (known: address, user, passwordfile, prefix, timeout, fallback, database, name, fleet, fleetlength, fleetkeyfile)");
    if (value.is_object()) throw ConfigError(at, "'" + key + "' in <store redis> is a plain key, not a block");
  }
  auto address = body.scalar("address");
  if (!address) throw ConfigError(s.where, "<store redis> needs address = 127.0.0.1:6379 (or a Unix socket path)");
  parse_address(s, std::string(trim_blanks(*address)), body.where_of("address"));
  if (auto user = body.scalar("user")) {
    const std::string u(trim_blanks(*user));
    bool ok = !u.empty() && u.size() <= 64;
    for (char c : u) ok = ok && (name_char(c) || c == '@');
    if (!ok) throw ConfigError(body.where_of("user"), "user: bad ACL user name '" + shown(u) + "' (letters, digits, . _ - @)");
    s.user = u;
  }
  if (auto file = body.scalar("passwordfile")) {
    const Location at = body.where_of("passwordfile");
    const std::string path(trim_blanks(*file));
    if (path.empty() || path[0] != '/') throw ConfigError(at, "passwordfile must be an absolute path");
    if (::access(path.c_str(), F_OK) != 0) throw ConfigError(at, "passwordfile " + shown(path) + " does not exist");
    s.password = read_key_file(path, at);
    if (s.password.empty()) throw ConfigError(at, "passwordfile " + shown(path) + " is empty");
    s.has_password = true;
  } else if (!s.user.empty()) {
    throw ConfigError(body.where_of("user"), "user needs passwordfile (the ACL user's password)");
  }
  if (auto prefix = body.scalar("prefix")) {
    const std::string p(trim_blanks(*prefix));
    bool ok = !p.empty() && p.size() <= 64;
    for (char c : p) ok = ok && (name_char(c) || c == ':' || c == '{' || c == '}');
    if (!ok) throw ConfigError(body.where_of("prefix"), "prefix: bad key prefix '" + shown(p) + "' (1 to 64 of letters, digits, . _ - : { })");
    s.prefix = p;
  }
  if (auto timeout = body.scalar("timeout")) {
    std::string t(trim_blanks(*timeout));
    if (t.size() > 2 && t.compare(t.size() - 2, 2, "ms") == 0) t.resize(t.size() - 2);
    auto ms = whole(t, 1, kMaxStoreTimeoutMs);
    if (!ms)
      throw ConfigError(body.where_of("timeout"), "timeout: bad value '" + shown(*timeout) + "' (milliseconds, 1 to " +
                                                      std::to_string(kMaxStoreTimeoutMs) + ", e.g. 50 or 50ms)");
    s.timeout_ms = static_cast<int>(*ms);
  }
  if (auto fallback = body.scalar("fallback")) {
    const std::string f(trim_blanks(*fallback));
    if (f == "closed") s.fallback_local = false;
    else if (f == "local") s.fallback_local = true;
    else throw ConfigError(body.where_of("fallback"), "fallback must be closed (refuse knocks while the store is unreachable) or local, not '" + shown(f) + "'");
  }
  if (auto db = body.scalar("database")) {
    auto n = whole(trim_blanks(*db), 0, 65535);
    if (!n) throw ConfigError(body.where_of("database"), "database must be a number from 0 to 65535, not '" + shown(*db) + "'");
    s.database = static_cast<int>(*n);
  }
  if (auto name = body.scalar("name")) {
    const std::string n(trim_blanks(*name));
    bool ok = !n.empty() && n.size() <= 64;
    for (char c : n) ok = ok && name_char(c);
    if (!ok) throw ConfigError(body.where_of("name"), "name: bad gateway name '" + shown(n) + "' (1 to 64 of letters, digits, . _ -)");
    s.name = n;
  } else {
    s.name = default_name();
  }
  if (auto fleet = body.scalar("fleet")) {
    const std::string f(trim_blanks(*fleet));
    bool ok = !f.empty() && f.size() <= 64;
    for (char c : f) ok = ok && name_char(c);
    if (!ok) throw ConfigError(body.where_of("fleet"), "fleet: bad fleet name '" + shown(f) + "' (1 to 64 of letters, digits, . _ -)");
    s.fleet = f;
  }
  if (auto length = body.scalar("fleetlength")) {
    auto n = whole(trim_blanks(*length), 100, 10'000'000);
    if (!n) throw ConfigError(body.where_of("fleetlength"), "fleetlength must be a number from 100 to 10000000, not '" + shown(*length) + "'");
    if (s.fleet.empty()) throw ConfigError(body.where_of("fleetlength"), "fleetlength needs fleet = NAME");
    s.fleet_length = *n;
  }
  if (auto file = body.scalar("fleetkeyfile")) {
    const Location at = body.where_of("fleetkeyfile");
    if (s.fleet.empty()) throw ConfigError(at, "fleetkeyfile needs fleet = NAME");
    const std::string path(trim_blanks(*file));
    if (path.empty() || path[0] != '/') throw ConfigError(at, "fleetkeyfile must be an absolute path");
    if (::access(path.c_str(), F_OK) != 0) throw ConfigError(at, "fleetkeyfile " + shown(path) + " does not exist");
    const SecureBytes text = read_key_file(path, at);
    if (text.size() < 16)
      throw ConfigError(at, "fleetkeyfile " + shown(path) + " holds fewer than 16 bytes (make one with knockclient -keygen)");
    s.fleet_key = SecureBytes(crypto_auth_hmacsha256_KEYBYTES);
    crypto_generichash(s.fleet_key.data(), s.fleet_key.size(), text.data(), text.size(), nullptr, 0);
  } else if (!s.fleet.empty()) {
    // Unauthenticated entries would let anyone who can write to Redis open every gateway's door.
    throw ConfigError(body.where_of("fleet"),
                      "fleet needs fleetkeyfile (the same secret at every gateway: it authenticates what they share)");
  }
  return s;
}

std::string redis_state_key(std::string_view prefix, const std::vector<std::string>& keys) {
  std::string out(prefix);
  out += "state:";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i != 0) out += ' ';
    out += escape_state_key(keys[i]);  // blanks are %20: the space between keys is unambiguous
  }
  return out;
}

std::string redis_replay_key(std::string_view prefix, std::string_view hex_identity) {
  std::string out(prefix);
  out += "replay:";
  out += hex_identity;
  return out;
}

// KEYS: the identities (NI), the state keys read (NR), the state keys written (NW).
// ARGV: NI NR NW REPLAY_MS STATE_MS STAMP, the stored forms read ("" for none), the forms to write.
// Returns {0, ""} committed, {1, STAMP} an identity was claimed before, {2, KEY} a key read changed.
// Nothing is written unless every check passes; a script runs alone on the server, so two
// gateways committing at once are ordered: the second sees the first's identities and writes.
// With a knock to publish, one more key (the fleet's stream) and two more arguments after the
// forms: the stream's length bound and the encoded knock, added by the same script (XADD).
const std::string_view kRedisCommitScript = R"LUA(local ni, nr, nw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, ni do
  local v = redis.call('GET', KEYS[i])
  if v then return {1, v} end
end
for i = 1, nr do
  local v = redis.call('GET', KEYS[ni + i])
  if not v then v = '' end
  if v ~= ARGV[6 + i] then return {2, KEYS[ni + i]} end
end
for i = 1, ni do redis.call('SET', KEYS[i], ARGV[6], 'PX', ARGV[4]) end
for i = 1, nw do
  if ARGV[5] == '0' then
    redis.call('SET', KEYS[ni + nr + i], ARGV[6 + nr + i])
  else
    redis.call('SET', KEYS[ni + nr + i], ARGV[6 + nr + i], 'PX', ARGV[5])
  end
end
if #ARGV > 6 + nr + nw then
  redis.call('XADD', KEYS[ni + nr + nw + 1], 'MAXLEN', '~', ARGV[7 + nr + nw], '*', 'k', ARGV[8 + nr + nw])
end
return {0, ''}
)LUA";

std::vector<std::string> redis_commit_args(std::string_view prefix, const StoreCommit& c) {
  std::vector<std::string> args;
  args.reserve(7 + 2 * (c.ids.size() + c.reads.size() + c.writes.size()));
  const bool publish = !c.fleet.empty() && !c.publish.empty();
  args.push_back(std::to_string(c.ids.size() + c.reads.size() + c.writes.size() + (publish ? 1 : 0)));
  for (const auto& id : c.ids) args.push_back(redis_replay_key(prefix, id));
  for (const auto& [keys, value] : c.reads) args.push_back(redis_state_key(prefix, keys));
  for (const auto& [keys, value] : c.writes) args.push_back(redis_state_key(prefix, keys));
  if (publish) args.push_back(redis_fleet_key(prefix, c.fleet));
  args.push_back(std::to_string(c.ids.size()));
  args.push_back(std::to_string(c.reads.size()));
  args.push_back(std::to_string(c.writes.size()));
  args.push_back(std::to_string(std::max<std::int64_t>(1, c.replay_ms)));
  args.push_back(std::to_string(std::max<std::int64_t>(0, c.state_ms)));
  args.push_back(c.stamp);
  for (const auto& [keys, value] : c.reads) args.push_back(value);
  for (const auto& [keys, value] : c.writes) args.push_back(value);
  if (publish) {
    args.push_back(std::to_string(std::max(1L, c.fleet_length)));
    args.push_back(c.publish);
  }
  return args;
}

std::string redis_fleet_key(std::string_view prefix, std::string_view fleet) {
  std::string out(prefix);
  out += "fleet:";
  out += fleet;
  return out;
}

std::string redis_cursor_key(std::string_view prefix, std::string_view fleet, std::string_view gateway) {
  return redis_fleet_key(prefix, fleet) + ":cursor:" + std::string(gateway);
}

// The cursor: the one given, else the stored one, else (first time) the newest entry, stored.
// A stored cursor that is not an entry id is replaced by the newest entry (hostile input).
const std::string_view kRedisFetchScript = R"LUA(local c = ARGV[1]
if c == '' then
  c = redis.call('GET', KEYS[2])
  if (not c) or (not string.match(c, '^%d+%-%d+$')) or #c > 41 then
    local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
    if #last > 0 then c = last[1][1] else c = '0-0' end
    redis.call('SET', KEYS[2], c)
  end
end
local out = {c}
local max = tonumber(ARGV[3])
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '(' .. c, '+', 'COUNT', tonumber(ARGV[2]))) do
  local v = ''
  local f = e[2]
  if #f == 2 and f[1] == 'k' and #f[2] <= max then v = f[2] end
  out[#out + 1] = e[1]
  out[#out + 1] = v
end
return out
)LUA";

bool valid_stream_id(std::string_view id) {
  if (id.empty() || id.size() > 41) return false;
  const std::size_t dash = id.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 == id.size() || dash > 20 || id.size() - dash - 1 > 20) return false;
  for (std::size_t i = 0; i < id.size(); ++i)
    if (i != dash && (id[i] < '0' || id[i] > '9')) return false;
  return true;
}

namespace {

bool extra_char(char c) { return name_char(c) || c == '@'; }
bool extra_ok(std::string_view v) {
  if (v.empty() || v.size() > 64) return false;
  for (char c : v)
    if (!extra_char(c)) return false;
  return true;
}
bool action_char(char c) { return name_char(c) || c == '@' || c == '#'; }
const char kHex[] = "0123456789abcdef";
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
std::optional<std::uint64_t> decimal(std::string_view t, std::size_t max_digits) {
  if (t.empty() || t.size() > max_digits) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

}  // namespace

std::string encode_shared_knock(const SharedKnock& k) {
  std::string out = "pk1 gw=" + k.gateway;
  out += " t=" + std::to_string(static_cast<std::int64_t>(std::llround(std::max(0.0, k.time) * 1000)));
  out += " logip=" + k.logip.str();
  for (std::size_t f = 0; f < codec::kFieldCount; ++f) {
    const auto field = static_cast<codec::Field>(f);
    if (field == codec::Field::Ip6) continue;
    if (auto v = k.values.get(field)) out += " " + std::string(codec::field_name(field)) + "=" + std::to_string(*v);
  }
  if (k.values.ip6) {
    out += " IP6=";
    for (auto b : *k.values.ip6) {
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  if (!k.client.empty()) out += " client=" + k.client;
  if (!k.proto.empty()) out += " proto=" + k.proto;
  if (!k.user.empty()) out += " user=" + k.user;
  if (k.client_timeout) out += " cto=" + std::to_string(*k.client_timeout);
  for (const auto& a : k.actions) {
    out += " act=";
    for (char c : a) {
      if (action_char(c)) {
        out += c;
      } else {
        out += '%';
        out += kHex[static_cast<unsigned char>(c) >> 4];
        out += kHex[static_cast<unsigned char>(c) & 15];
      }
    }
  }
  return out;
}

std::string seal_shared_knock(std::string_view encoded, std::span<const std::uint8_t> key) {
  if (key.size() != crypto_auth_hmacsha256_KEYBYTES) return {};
  std::uint8_t mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256(mac, reinterpret_cast<const unsigned char*>(encoded.data()), encoded.size(), key.data());
  char hex[2 * sizeof mac + 1];
  sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
  return std::string(encoded) + " mac=" + hex;
}

std::optional<std::string_view> unseal_shared_knock(std::string_view entry, std::span<const std::uint8_t> key,
                                                    std::string* why) {
  auto bad = [&](const char* reason) -> std::optional<std::string_view> {
    if (why != nullptr) *why = reason;
    return std::nullopt;
  };
  if (key.size() != crypto_auth_hmacsha256_KEYBYTES) return bad("no fleet key");
  constexpr std::size_t kTag = 5 + 2 * crypto_auth_hmacsha256_BYTES;  // " mac=" + 64 hex digits
  if (entry.size() <= kTag || entry.size() > kMaxSharedKnockBytes) return bad("no authentication tag");
  const std::string_view body = entry.substr(0, entry.size() - kTag);
  const std::string_view tag = entry.substr(entry.size() - kTag);
  if (tag.substr(0, 5) != " mac=") return bad("no authentication tag");
  std::uint8_t mac[crypto_auth_hmacsha256_BYTES];
  std::size_t got = 0;
  if (sodium_hex2bin(mac, sizeof mac, tag.data() + 5, tag.size() - 5, nullptr, &got, nullptr) != 0 || got != sizeof mac)
    return bad("a malformed authentication tag");
  if (crypto_auth_hmacsha256_verify(mac, reinterpret_cast<const unsigned char*>(body.data()), body.size(), key.data()) != 0)
    return bad("authentication failed (not written by a holder of the fleet key)");
  return body;
}

std::optional<SharedKnock> decode_shared_knock(std::string_view text, std::string* why) {
  auto bad = [&](const std::string& reason) -> std::optional<SharedKnock> {
    if (why != nullptr) *why = reason;
    return std::nullopt;
  };
  if (text.size() > kMaxSharedKnockBytes) return bad("longer than " + std::to_string(kMaxSharedKnockBytes) + " bytes");
  if (text.substr(0, 4) != "pk1 ") return bad("not a pk1 entry");
  SharedKnock k;
  bool has_gw = false, has_t = false, has_logip = false;
  std::array<bool, codec::kFieldCount> seen{};
  std::size_t pos = 4;
  while (pos < text.size()) {
    std::size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view token = text.substr(pos, end - pos);
    pos = end + 1;
    const std::size_t eq = token.find('=');
    if (eq == std::string_view::npos || eq == 0) return bad("a token without KEY=VALUE: '" + shown(token) + "'");
    const std::string_view key = token.substr(0, eq), value = token.substr(eq + 1);
    if (key == "gw") {
      if (has_gw || !extra_ok(value) || value.find('@') != std::string_view::npos) return bad("bad or repeated gw");
      k.gateway = value;
      has_gw = true;
    } else if (key == "t") {
      auto ms = decimal(value, 15);
      if (has_t || !ms) return bad("bad or repeated t");
      k.time = static_cast<double>(*ms) / 1000.0;
      has_t = true;
    } else if (key == "logip") {
      auto ip = value.size() <= 45 ? IpAddress::parse(value) : std::nullopt;
      if (has_logip || !ip) return bad("bad or repeated logip");
      k.logip = *ip;
      has_logip = true;
    } else if (key == "IP6") {
      if (k.values.ip6 || value.size() != 2 * codec::kIp6Bytes) return bad("bad or repeated IP6");
      codec::KnockValues::Ip6Bytes a{};
      for (std::size_t i = 0; i < a.size(); ++i) {
        const int hi = hex_digit(value[2 * i]), lo = hex_digit(value[2 * i + 1]);
        if (hi < 0 || lo < 0) return bad("bad IP6");
        a[i] = static_cast<std::uint8_t>(hi * 16 + lo);
      }
      k.values.set_ip6(a);
    } else if (key == "client" || key == "proto" || key == "user") {
      std::string& slot = key == "client" ? k.client : key == "proto" ? k.proto : k.user;
      if (!slot.empty() || !extra_ok(value)) return bad("bad or repeated " + std::string(key));
      slot = value;
    } else if (key == "cto") {
      auto n = decimal(value, 10);
      if (k.client_timeout || !n || *n > 0xffffffffULL) return bad("bad or repeated cto");
      k.client_timeout = static_cast<std::uint32_t>(*n);
    } else if (key == "act") {
      if (k.actions.size() >= kMaxSharedActions) return bad("more than " + std::to_string(kMaxSharedActions) + " actions");
      std::string name;
      for (std::size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '%') {
          const int hi = i + 2 < value.size() ? hex_digit(value[i + 1]) : -1, lo = i + 2 < value.size() ? hex_digit(value[i + 2]) : -1;
          if (hi < 0 || lo < 0) return bad("bad escape in an action name");
          name += static_cast<char>(hi * 16 + lo);
          i += 2;
        } else if (action_char(value[i])) {
          name += value[i];
        } else {
          return bad("bad character in an action name");
        }
      }
      if (name.empty() || name.size() > 256) return bad("bad action name length");
      k.actions.push_back(std::move(name));
    } else {
      auto field = codec::field_from_name(key);
      if (!field || *field == codec::Field::Ip6 || codec::field_name(*field) != key) return bad("unknown key '" + shown(key) + "'");
      const auto f = static_cast<std::size_t>(*field);
      const std::size_t width = codec::field_width(*field);
      auto n = decimal(value, 10);
      const std::uint64_t max = width >= 4 ? 0xffffffffULL : (1ULL << (8 * width)) - 1;
      if (seen[f] || !n || *n > max) return bad("bad or repeated " + std::string(key));
      seen[f] = true;
      k.values.set(*field, static_cast<std::uint32_t>(*n));
    }
  }
  if (!has_gw || !has_t || !has_logip) return bad("gw, t or logip missing");
  if (k.actions.empty()) return bad("no action");
  return k;
}

}  // namespace knock::rules
