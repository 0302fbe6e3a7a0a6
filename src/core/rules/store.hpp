#pragma once
// A memory that gateways share (doc/FLEET.md): the replay identities of accepted knocks and the
// state(...) values, kept in Redis (`<store redis>`) so that a knock accepted at one gateway is
// a replay at the others and "open only twice per IP" holds across all of them. Without a
// <store> block the engine keeps both itself, as before. Pending closes are never shared: each
// gateway keeps its own (scheduler and state cache).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/tree.hpp"
#include "rules/state.hpp"
#include "util/error.hpp"
#include "util/secure.hpp"

namespace knock::rules {

struct StoreSettings {
  Location where;            // the <store redis> block
  std::string unix_path;     // address = /run/redis/redis.sock
  std::string host;          // address = 127.0.0.1:6379, [2001:db8::1]:6379 (numeric only)
  int port = 6379;
  std::string user;          // ACL user (AUTH USER PASSWORD); "" for AUTH PASSWORD
  bool has_password = false;
  SecureBytes password;      // first line of passwordfile
  std::string prefix = "portknock:";
  int timeout_ms = 50;       // per request (and per connection attempt)
  bool fallback_local = false;  // fallback = local: the store unreachable, the local memory decides
  int database = 0;
  std::string name;          // this gateway, recorded with the identities it claims (default: host name)
  std::string address() const;  // for log lines: "redis 127.0.0.1:6379" or "redis /path"
};

inline constexpr int kMaxStoreTimeoutMs = 5000;

// The <store redis> block, nullopt when there is none. Throws ConfigError at FILE:LINE (an
// unknown key, a bad address, a password file other users can read, ...).
std::optional<StoreSettings> parse_store_settings(const config::Value& root);

// One knock, committed fleet-wide all or nothing: its replay identities are claimed (none of
// them may be present), the state keys it read must still hold what was read, then the
// identities are recorded and its state changes applied.
struct StoreCommit {
  std::vector<std::string> ids;  // replay identities, 32 hex digits each
  std::int64_t replay_ms = 0;    // how long they are kept
  std::vector<std::pair<std::vector<std::string>, std::string>> reads;   // key path, stored form read ("" none)
  std::vector<std::pair<std::vector<std::string>, std::string>> writes;  // key path, stored form to write
  std::int64_t state_ms = 0;     // expiry of written state keys (stateexpire); 0: none
  std::string stamp;             // stored with each identity: "GATEWAY UNIXTIME"
};

class SharedStore : public StateReader {
 public:
  enum class Outcome {
    Ok,           // committed
    Replay,       // an identity was claimed before (detail: the stamp of who claimed it)
    Conflict,     // a state key read changed meanwhile (detail: the key): evaluate again
    Unavailable,  // not reachable, too slow, or in back-off (detail: why)
    Error,        // the store answered with an error (detail: it)
  };
  struct Result {
    Outcome outcome = Outcome::Unavailable;
    std::string detail;
  };
  virtual Result commit(const StoreCommit& commit) = 0;
  // Whether requests may be sent now: connected, or not connected but past the back-off (a
  // connection is then attempted, at most the timeout). False with *why otherwise.
  virtual bool usable(std::string* why) = 0;
  // Reconnects when the back-off has passed (at most the timeout); next_tick_in(): seconds
  // until that, or a large number when connected.
  virtual void tick() = 0;
  virtual double next_tick_in() const = 0;
  virtual std::string describe() const = 0;
  virtual bool fallback_local() const = 0;
  virtual const std::string& gateway() const = 0;
};

// The data model (doc/FLEET.md): the Redis key of a state path, of a replay identity.
std::string redis_state_key(std::string_view prefix, const std::vector<std::string>& keys);
std::string redis_replay_key(std::string_view prefix, std::string_view hex_identity);
// The one script a commit runs (EVALSHA, EVAL when the server lost it), and its arguments after
// the script or its SHA1: numkeys, the keys, the arguments.
extern const std::string_view kRedisCommitScript;
std::vector<std::string> redis_commit_args(std::string_view prefix, const StoreCommit& commit);

// A store in Redis. Requests are bounded by settings.timeout_ms; a failure closes the
// connection and later attempts back off (0.1 s doubling to 5 s). Never throws.
std::unique_ptr<SharedStore> make_redis_store(StoreSettings settings);

}  // namespace knock::rules
