#pragma once
// What the daemon does with a decoded knock: <actions> whose conditions hold run their
// <template>s (system commands now or after a delay, state changes at once).
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codec/fields.hpp"
#include "config/tree.hpp"
#include "rules/expr.hpp"
#include "rules/runner.hpp"
#include "rules/scheduler.hpp"
#include "rules/state.hpp"
#include "util/address.hpp"

namespace knock::rules {

struct KnockEvent {
  codec::KnockValues values;
  IpAddress logip;   // the source as seen on the wire or in the log (LOGIP)
  double time = 0;   // receive time, seconds since the epoch (packet time under -pcap)
};

struct EngineOptions {
  bool test_mode = false;             // -test: evaluate, print, change nothing, run nothing
  std::ostream* test_output = nullptr;  // where -test prints (default std::cout)
  CommandRunner* runner = nullptr;    // not owned; null: the engine's own ShellRunner
  bool load_cache = true;             // read statecache at construction (false on reload)
  bool fresh = false;                 // a corrupt cache is moved aside instead of refused
  double now = 0;                     // for naming a cache moved aside
  ExprLimits expr_limits;
  StateLimits state_limits;
  std::size_t max_pending = 10'000;
};

// "5" (minutes), "0.05", "30s", "5m", "1h" -> seconds; nullopt when malformed or over 30 days.
std::optional<double> parse_delay(std::string_view text);

class Engine {
 public:
  // Validates <template>s, <actions>, statecache and usecache; loads the cache when asked.
  // Throws ConfigError at FILE:LINE, or RuntimeError for an unreadable or unsafe cache.
  Engine(const config::Value& root, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // One decoded knock: every used action whose condition holds, in config order.
  void handle(const KnockEvent& event) noexcept;
  // Runs the delayed commands due at `now`.
  void run_due(double now) noexcept;
  std::optional<double> next_due() const { return scheduler_.next_due(); }
  std::vector<PendingCommand> pending() const { return scheduler_.pending(); }
  // One line per pending command: "due 2024-03-05 10:10:00 (in 300s): action a, template t: CMD".
  std::vector<std::string> pending_descriptions(double now = 0) const;
  // Collects finished commands (forwards to the runner).
  void reap() noexcept;
  // Readable when a running command wrote to stderr or exited (then call reap()); -1 when
  // there is none. Poll it with a timeout of at most a second.
  int command_fd() const;
  // Commands running or queued: the caller should reap() soon.
  bool commands_busy() const;
  // Waits (reaping) until no command runs or is queued, at most `timeout_seconds`.
  bool wait_for_commands(double timeout_seconds = 60) noexcept;

  const StateTree& state() const { return state_; }
  bool uses_cache() const { return use_cache_; }
  const std::string& cache_path() const { return cache_path_; }
  // Writes the cache now (when usecache); false and logged on failure.
  bool save(bool sync = true) noexcept;
  // SIGHUP: take the state and pending commands of the engine being replaced, then save.
  void take_over(Engine& old);

  std::size_t action_count() const { return actions_.size(); }

  struct SystemPart {
    enum class Kind { Literal, Var, State } kind = Kind::Literal;
    std::string text;
    Var var = Var::Ip;
    std::vector<Expr::Key> keys;
  };
  struct Step {
    bool is_system = false;  // system = "..." (or, with is_nft, nft = "...")
    bool is_nft = false;
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
  static std::vector<SystemPart> parse_system(std::string_view text, const Location& where,
                                              const ExprLimits& limits);

 private:
  void load_templates(const config::Value& root);
  void load_actions(const config::Value& root);
  void add_action(std::string name, const config::Value& body);
  void load_cache_settings(const config::Value& root);

  EngineOptions options_;
  std::vector<Template> templates_;
  std::vector<Action> actions_;
  StateTree state_;
  Scheduler scheduler_;
  bool use_cache_ = false;
  std::string cache_path_;
  std::unique_ptr<ShellRunner> own_runner_;
  CommandRunner* runner_ = nullptr;
};

}  // namespace knock::rules
