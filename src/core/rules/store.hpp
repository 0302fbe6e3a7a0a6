#pragma once
// A memory that gateways share (doc/FLEET.md): the replay identities of accepted knocks and the
// state(...) values, kept in Redis (`<store redis>`) so that a knock accepted at one gateway is
// a replay at the others and "open only twice per IP" holds across all of them. Without a
// <store> block the engine keeps both itself, as before. Pending closes are never shared: each
// gateway keeps its own (scheduler and state cache).
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/tree.hpp"
#include "codec/fields.hpp"
#include "rules/state.hpp"
#include "util/address.hpp"
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
  std::string fleet;         // fleet = NAME: publish accepted knocks to, and follow, PREFIX fleet:NAME ("" none)
  SecureBytes fleet_key;     // fleetkeyfile: 32 bytes (BLAKE2b of the file's first line) authenticating entries
  long fleet_length = 10000; // fleetlength: the stream is trimmed to about this many entries (MAXLEN ~)
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
  // Fleet sharing: the accepted knock (encode_shared_knock), added to the fleet's stream by the
  // same script that commits it, so it is published exactly when it is committed. "" none.
  std::string fleet;
  std::string publish;
  long fleet_length = 10000;
};

// A knock accepted at one gateway of a fleet, as published in the fleet's stream: what the other
// gateways need to run their own actions for it (doc/FLEET.md).
struct SharedKnock {
  std::string gateway;                // the gateway that accepted it
  double time = 0;                    // the knock's time (Unix seconds)
  codec::KnockValues values;          // as that gateway judged them (observed source resolved)
  IpAddress logip;
  std::string client, proto, user;    // extras ("" none)
  std::optional<std::uint32_t> client_timeout;
  std::vector<std::string> actions;   // the actions that gateway ran, in its order
};
inline constexpr std::size_t kMaxSharedKnockBytes = 4096;
inline constexpr std::size_t kMaxSharedActions = 64;
// One line of space-separated KEY=VALUE tokens after "pk1"; decode is strict (every stream
// entry is hostile input): bounded size, known keys once each, values validated; nullopt with
// *why otherwise.
std::string encode_shared_knock(const SharedKnock& knock);
// Entries are authenticated with the fleet's key (fleetkeyfile, the same at every gateway):
// "ENCODED mac=HMAC-SHA256 in hex". Only a holder of the key can write an entry a gateway runs;
// write access to Redis alone is not enough. unseal checks the tag (constant time) before
// anything is parsed and returns the encoded knock; nullopt with *why otherwise. An empty key
// seals nothing and opens nothing.
std::string seal_shared_knock(std::string_view encoded, std::span<const std::uint8_t> key);
std::optional<std::string_view> unseal_shared_knock(std::string_view entry, std::span<const std::uint8_t> key,
                                                    std::string* why);
std::optional<SharedKnock> decode_shared_knock(std::string_view text, std::string* why);
// A stream entry as read: its id ("1709632800000-0") and its encoded knock ("" when the entry
// was not one field k with at most kMaxSharedKnockBytes bytes: malformed).
struct StreamEntry {
  std::string id;
  std::string data;
};
bool valid_stream_id(std::string_view id);

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
  // One knock's requests share one budget (the timeout), not one each: a store that answers
  // every request just in time cannot hold the loop for (keys + 2) x retries timeouts per knock.
  // The engine brackets a knock's requests with these.
  virtual void begin_knock() {}
  virtual void end_knock() {}
  // Reconnects when the back-off has passed (at most the timeout); next_tick_in(): seconds
  // until that, or a large number when connected.
  virtual void tick() = 0;
  virtual double next_tick_in() const = 0;
  virtual std::string describe() const = 0;
  virtual bool fallback_local() const = 0;
  virtual const std::string& gateway() const = 0;
  // Fleet sharing (doc/FLEET.md): the fleet name ("" none); up to `max` entries of the fleet's
  // stream after this gateway's cursor (false with *error when the store cannot be used now);
  // `handled`: the entries up to `id` are done, the cursor moves past them (kept in the store
  // per gateway, so that a restart continues there).
  virtual const std::string& fleet() const {
    static const std::string none;
    return none;
  }
  virtual long fleet_length() const { return 10000; }
  // The key that authenticates the fleet's entries (empty: nothing is published or followed).
  virtual std::span<const std::uint8_t> fleet_key() const { return {}; }
  virtual bool fetch(std::size_t /*max*/, std::vector<StreamEntry>& /*out*/, std::string* /*error*/) { return true; }
  virtual bool handled(const std::string& /*id*/, std::string* /*error*/) { return true; }
};

// The data model (doc/FLEET.md): the Redis key of a state path, of a replay identity.
std::string redis_state_key(std::string_view prefix, const std::vector<std::string>& keys);
std::string redis_replay_key(std::string_view prefix, std::string_view hex_identity);
std::string redis_fleet_key(std::string_view prefix, std::string_view fleet);
std::string redis_cursor_key(std::string_view prefix, std::string_view fleet, std::string_view gateway);
// Reads a fleet's stream after a cursor, bounded (doc/FLEET.md). KEYS: stream, cursor key.
// ARGV: cursor ("" to take the stored one, or the newest entry the first time), count, max bytes.
// Returns {CURSOR, ID1, DATA1, ...}, DATA "" for a malformed entry.
extern const std::string_view kRedisFetchScript;
// The one script a commit runs (EVALSHA, EVAL when the server lost it), and its arguments after
// the script or its SHA1: numkeys, the keys, the arguments.
extern const std::string_view kRedisCommitScript;
std::vector<std::string> redis_commit_args(std::string_view prefix, const StoreCommit& commit);

// A store in Redis. Requests are bounded by settings.timeout_ms; a failure closes the
// connection and later attempts back off (0.1 s doubling to 5 s). Never throws.
std::unique_ptr<SharedStore> make_redis_store(StoreSettings settings);

}  // namespace knock::rules
