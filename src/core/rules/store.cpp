#include "rules/store.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>

#include "util/files.hpp"
#include "util/text.hpp"

namespace knock::rules {

namespace {

constexpr std::array<std::string_view, 8> kStoreKeys = {"address", "user",     "passwordfile", "prefix",
                                                        "timeout", "fallback", "database",     "name"};

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
                                "' in <store redis> (known: address, user, passwordfile, prefix, timeout, fallback, database, name)");
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
return {0, ''}
)LUA";

std::vector<std::string> redis_commit_args(std::string_view prefix, const StoreCommit& c) {
  std::vector<std::string> args;
  args.reserve(7 + 2 * (c.ids.size() + c.reads.size() + c.writes.size()));
  args.push_back(std::to_string(c.ids.size() + c.reads.size() + c.writes.size()));
  for (const auto& id : c.ids) args.push_back(redis_replay_key(prefix, id));
  for (const auto& [keys, value] : c.reads) args.push_back(redis_state_key(prefix, keys));
  for (const auto& [keys, value] : c.writes) args.push_back(redis_state_key(prefix, keys));
  args.push_back(std::to_string(c.ids.size()));
  args.push_back(std::to_string(c.reads.size()));
  args.push_back(std::to_string(c.writes.size()));
  args.push_back(std::to_string(std::max<std::int64_t>(1, c.replay_ms)));
  args.push_back(std::to_string(std::max<std::int64_t>(0, c.state_ms)));
  args.push_back(c.stamp);
  for (const auto& [keys, value] : c.reads) args.push_back(value);
  for (const auto& [keys, value] : c.writes) args.push_back(value);
  return args;
}

}  // namespace knock::rules
