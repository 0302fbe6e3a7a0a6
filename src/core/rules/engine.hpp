#pragma once
// What the daemon does with a decoded knock: <actions> whose conditions hold run their
// <template>s (system commands now or after a delay, state changes at once).
#include <array>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codec/fields.hpp"
#include "codec/replay.hpp"
#include "codec/spa.hpp"
#include "config/tree.hpp"
#include "rules/expr.hpp"
#include "rules/runner.hpp"
#include "rules/scheduler.hpp"
#include "rules/state.hpp"
#include "rules/store.hpp"
#include "util/address.hpp"

namespace knock::rules {

// The engine's two clocks: wall time for TIME/THIS* and for what is saved; a monotonic clock for
// delays, so that a stepped wall clock neither hastens nor postpones a close.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual double wall() const noexcept = 0;  // seconds since the epoch
  virtual double mono() const noexcept = 0;  // seconds, arbitrary origin
};
class SystemClock final : public Clock {
 public:
  double wall() const noexcept override;
  double mono() const noexcept override;
};
// Set by hand: tests, and -pcap (where the capture's time stamps are both clocks).
class ManualClock final : public Clock {
 public:
  double wall() const noexcept override { return wall_now; }
  double mono() const noexcept override { return mono_now; }
  void set(double both) { wall_now = mono_now = both; }
  double wall_now = 0;
  double mono_now = 0;
};

struct KnockEvent {
  codec::KnockValues values;
  IpAddress logip;   // the source as seen on the wire or in the log (LOGIP)
  double time = 0;   // receive time, seconds since the epoch (packet time under -pcap)
  KnockExtras extras;  // CLIENTNAME, PROTO, USER, CLIENT_TIMEOUT of an authenticated knock
  // The knock's replay identities (the SPA tag; fwknop's digest; each ciphertext block of an
  // original iv = yes knock after its IV), remembered until replay_expiry (Unix seconds) once
  // the knock is accepted: a knock that shares any of them with an accepted one is refused.
  std::array<spa::Identity, 4> replay{};
  std::size_t replay_count = 0;
  std::int64_t replay_expiry = 0;
  void add_replay(const spa::Identity& id) noexcept {
    if (replay_count < replay.size()) replay[replay_count++] = id;
  }
};

struct EngineOptions {
  bool test_mode = false;             // -test: evaluate, print, change nothing, run nothing
  std::ostream* test_output = nullptr;  // where -test prints (default std::cout)
  CommandRunner* runner = nullptr;    // not owned; null: the engine's own ShellRunner
  const Clock* clock = nullptr;       // not owned; null: the system's clocks
  bool load_cache = true;             // read statecache at construction (false on reload)
  long cache_owner = -1;              // a uid besides root and the daemon's that may own the cache
  bool fresh = false;                 // a corrupt cache is moved aside instead of refused
  double now = 0;                     // for naming a cache moved aside
  ExprLimits expr_limits;
  StateLimits state_limits;
  std::size_t max_pending = 10'000;
  std::size_t replay_capacity = spa::kDefaultReplayCapacity;  // spareplaycache
  // A shared store to use instead of <store redis> (tests; not owned). Null: the engine builds
  // the one the configuration names, if any (never in -test).
  SharedStore* store = nullptr;
};

// "5" (minutes), "0.05", "30s", "5m", "1h", "2d" -> seconds; nullopt when malformed or over
// max_seconds (30 days by default).
std::optional<double> parse_delay(std::string_view text, double max_seconds = 30.0 * 86400);

class Engine {
 public:
  // Validates <template>s, <actions>, statecache and usecache; loads the cache when asked.
  // Throws ConfigError at FILE:LINE, or RuntimeError for an unreadable or unsafe cache.
  Engine(const config::Value& root, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // One decoded knock: every used action whose condition holds, in config order. All or
  // nothing: when any matching action fails (a condition or state error, a value that may not
  // reach a command) or anything it asks for cannot be recorded (pending table or command queue
  // full, state full, journal not writable), the knock is refused as a whole: no state changes,
  // no command, a log line saying why (fail closed: an open never runs without its close).
  // Returns false when the knock was refused.
  bool handle(const KnockEvent& event) noexcept;
  // Hands the delayed commands that fell due to the runner; they stay pending until finished.
  void run_due() noexcept;
  std::optional<double> next_due() const;  // seconds from now until the next one, or nullopt
  std::vector<PendingCommand> pending() const;
  // One line per pending command: "due 2024-03-05 10:10:00 (in 300s): action a, template t: CMD".
  std::vector<std::string> pending_descriptions(bool relative = false) const;
  // Runs now the delayed commands `match` accepts (knockctl close): they become due at once and
  // go to the runner like any other; each still runs once. Returns how many.
  template <typename Match>
  std::size_t run_now(const Match& match) {
    const std::size_t n = scheduler_.expedite(match, clock_->mono());
    if (n != 0) run_due();
    return n;
  }
  // Collects finished commands and records them done.
  void reap() noexcept;
  // Journal fsync (at most once per syncinterval), compaction, state expiry. Call from the loop;
  // next_tick_in() says when it next has work.
  void tick() noexcept;
  double next_tick_in() const;
  // Waits (reaping) until no command runs or is queued, at most `timeout_seconds`.
  bool wait_for_commands(double timeout_seconds = 60) noexcept;

  const StateTree& state() const { return state_; }
  bool uses_cache() const { return use_cache_; }
  const std::string& cache_path() const { return cache_path_; }
  // Writes a snapshot of the cache now (when usecache); false and logged on failure.
  bool save() noexcept;
  // Lets go of the cache files without saving: what a crash leaves (tests only).
  void abandon_cache() noexcept;
  // How often a failed pending response is tried before the engine gives up on it.
  static constexpr int kCloseAttempts = 8;
  // SIGHUP: take the state, pending commands and open journal of the engine being replaced.
  void take_over(Engine& old);
  const Scheduler& scheduler() const { return scheduler_; }
  // Whether a knock with this replay identity was accepted before (and is still remembered).
  bool replayed(const spa::Identity& id) const noexcept { return replay_.contains(id); }
  bool replayed(const KnockEvent& event) const noexcept {
    for (std::size_t i = 0; i < event.replay_count; ++i)
      if (replay_.contains(event.replay[i])) return true;
    return false;
  }
  const spa::ReplayCache& replay_cache() const { return replay_; }
  std::uint64_t refused_knocks() const { return refused_; }
  // <store redis>: the store (null without one), knocks refused because it could not be used
  // (fallback = closed), knocks judged locally because of that (fallback = local), knocks
  // refused because another gateway had accepted them (doc/FLEET.md).
  const SharedStore* store() const { return store_; }
  std::uint64_t store_refusals() const { return store_refused_; }
  std::uint64_t store_fallbacks() const { return store_fallbacks_; }
  std::uint64_t fleet_replays() const { return fleet_replays_; }
  // Fleet sharing (`fleet = NAME`, doc/FLEET.md): knocks accepted at other gateways whose
  // actions ran here; stream entries skipped as malformed; shared knocks not run here (too old,
  // or refused: pending table full, journal not writable, ...).
  std::uint64_t fleet_followed() const { return fleet_followed_; }
  std::uint64_t fleet_malformed() const { return fleet_malformed_; }
  std::uint64_t fleet_dropped() const { return fleet_dropped_; }
  // Entries read from the fleet's stream per tick, and how often it is read.
  static constexpr std::size_t kFleetBatch = 16;
  static constexpr double kFleetPollInterval = 0.2;
  // A shared knock older than this (or than the longest delay, if longer) is not run here.
  static constexpr double kFleetMaxAge = 300;
  // Runs the actions of a knock accepted at another gateway of the fleet (stream entry `id`):
  // false when it cannot be decided now (the store unreachable: try again later).
  bool follow(const SharedKnock& knock, const std::string& id) noexcept;
  // How often one knock is evaluated again when another gateway changed the state it read.
  static constexpr int kStoreAttempts = 5;
  // Added to how long an identity is kept in the store: the gateways' clocks may differ this much.
  static constexpr std::int64_t kFleetClockSlack = 60;
  bool observed_source() const { return observed_source_; }

  std::size_t action_count() const { return actions_.size(); }

  struct SystemPart {
    enum class Kind { Literal, Var, State } kind = Kind::Literal;
    std::string text;
    Var var = Var::Ip;
    std::vector<Expr::Key> keys;
  };
  struct Step {
    bool is_system = false;  // a command: system = "...", or (by kind) nft = "...", ipset = "..."
    ActionKind kind = ActionKind::shell;
    int family = 0;          // 4 or 6: system4/nft4, system6/nft6 run only for a knock of that FAMILY
    std::vector<SystemPart> system;
    std::optional<Expr> state;
  };
  struct Template {
    std::string name;
    Location where;
    std::vector<Step> steps;
  };
  struct Action {
    std::string name;
    Location where;
    Expr condition;
    std::vector<std::size_t> templates;  // indexes into templates_
    double delay = 0;                    // seconds
    bool use = true;
  };

  // The command text of a system template for these values, or nullopt (with *why) when a
  // value is not a number or an address.
  static std::optional<std::string> substitute(const std::vector<SystemPart>& parts, const Vars& vars,
                                               const StateStore& state, std::string* why);
  // Refuses (ConfigError at `where`) an ipset line that libipset would refuse whatever the values.
  static void check_ipset_template(const std::vector<SystemPart>& parts, const Location& where);
  static std::vector<SystemPart> parse_system(std::string_view text, const Location& where,
                                              const ExprLimits& limits);

 private:
  void load_templates(const config::Value& root);
  void load_actions(const config::Value& root);
  void add_action(std::string name, const config::Value& body);
  void load_cache_settings(const config::Value& root);

  // What one knock asks for, before any of it happens.
  struct Plan {
    std::vector<Command> now;
    std::vector<std::pair<PendingCommand, double>> later;  // with its monotonic due time
    std::vector<std::string> done;                         // the actions that matched
  };
  // Evaluates every used action for this knock against `staged` (its state changes stay
  // there); nullopt, or why the knock is refused. In -test, prints what it would do instead.
  // `only`: a knock shared by another gateway: only the actions of these names, their conditions
  // not evaluated again, their state changes not applied (doc/FLEET.md).
  std::optional<std::string> plan_knock(const KnockEvent& event, const Vars& vars, long long family,
                                        OverlayState& staged, Plan& plan, std::ostream& out,
                                        const std::vector<std::string>* only = nullptr) const;
  void follow_fleet() noexcept;
  bool refuse(const std::string& who, const std::string& why) noexcept;
  // Appends to the journal (when usecache); false and logged on failure.
  bool record(const std::string& records) noexcept;

  EngineOptions options_;
  SystemClock system_clock_;
  const Clock* clock_ = nullptr;
  std::vector<Template> templates_;
  std::vector<Action> actions_;
  StateTree state_;
  Scheduler scheduler_;
  bool use_cache_ = false;
  std::string cache_path_;
  std::unique_ptr<CacheWriter> cache_;
  bool observed_source_ = false;  // observedsource: a knock carrying 0.0.0.0 / :: gets LOGIP
  double state_expire_ = 0;    // stateexpire in seconds; 0: never
  double sync_interval_ = 1;   // syncinterval in seconds
  double last_sync_ = 0;       // monotonic
  double last_expire_ = 0;     // monotonic
  std::uint64_t refused_ = 0;
  spa::ReplayCache replay_;
  int snapshot_failures_ = 0;     // consecutive failed snapshots (retried by tick())
  double next_snapshot_try_ = 0;  // monotonic
  std::unique_ptr<SharedStore> own_store_;
  SharedStore* store_ = nullptr;
  std::uint64_t store_refused_ = 0;
  std::uint64_t store_fallbacks_ = 0;
  std::uint64_t fleet_replays_ = 0;
  std::uint64_t fleet_followed_ = 0;
  std::uint64_t fleet_malformed_ = 0;
  std::uint64_t fleet_dropped_ = 0;
  double next_follow_ = 0;  // monotonic
  std::unique_ptr<ShellRunner> own_runner_;
  CommandRunner* runner_ = nullptr;
};

}  // namespace knock::rules
