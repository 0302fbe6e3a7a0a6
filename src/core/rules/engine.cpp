#include "rules/engine.hpp"

#include <sodium.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <time.h>
#include <ctime>
#include <iostream>

#include "rules/ipset.hpp"
#include "util/log.hpp"
#include "util/text.hpp"

namespace knock::rules {

namespace {

// The address a knock's door opens for: IP6, else IP, when the knock carries a non-zero one,
// else where it came from (knockctl list and close).
std::string door_address(const KnockEvent& event) {
  if (event.values.ip6) {
    bool zero = true;
    for (auto b : *event.values.ip6) zero = zero && b == 0;
    if (!zero) return IpAddress::v6_bytes(event.values.ip6->data()).str();
  }
  if (auto ip = event.values.get(codec::Field::Ip); ip && *ip != 0) return IpAddress::v4(*ip).str();
  return event.logip.str();
}
bool word_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

std::string trim(std::string_view s) { return std::string(trim_blanks(s)); }

// What may reach a shell: numbers and IPv4/IPv6 addresses (digits, hex, dots, colons), a
// leading minus; "" for an undefined state.
bool safe_value(std::string_view v) {
  if (v.size() > 64) return false;
  std::size_t i = (!v.empty() && v[0] == '-') ? 1 : 0;
  if (i == 1 && v.size() == 1) return false;
  for (; i < v.size(); ++i) {
    char c = v[i];
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

// Letters, digits and . _ - @, not starting with '-' (an option to the command it lands in).
bool safe_name(std::string_view v) {
  if (v.empty() || v.size() > 64 || v.front() == '-') return false;
  for (char c : v)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '@'))
      return false;
  return true;
}

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) ? '?' : c;
  return out;
}
}  // namespace

double SystemClock::wall() const noexcept {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double SystemClock::mono() const noexcept {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::optional<double> parse_delay(std::string_view text, double max_seconds) {
  std::string t = trim(text);
  if (t.empty()) return std::nullopt;
  double unit = 60;
  char last = t.back();
  if (last == 's' || last == 'm' || last == 'h' || last == 'd') {
    unit = last == 's' ? 1 : last == 'm' ? 60 : last == 'h' ? 3600 : 86400;
    t = trim(std::string_view(t).substr(0, t.size() - 1));
  }
  if (t.empty() || t.size() > 20) return std::nullopt;
  int dots = 0, digits = 0;
  for (char c : t) {
    if (c == '.') ++dots;
    else if (c >= '0' && c <= '9') ++digits;
    else return std::nullopt;
  }
  if (dots > 1 || digits == 0) return std::nullopt;
  double seconds = numify(t) * unit;
  if (!std::isfinite(seconds) || seconds > max_seconds) return std::nullopt;
  return seconds;
}

// ---------------------------------------------------------------- configuration

std::vector<Engine::SystemPart> Engine::parse_system(std::string_view text, const Location& where,
                                                     const ExprLimits& limits) {
  if (text.size() > limits.max_length) throw ConfigError(where, "system command is longer than " + std::to_string(limits.max_length) + " characters");
  std::vector<SystemPart> parts;
  auto literal = [&](std::string_view s) {
    if (s.empty()) return;
    if (parts.empty() || parts.back().kind != SystemPart::Kind::Literal) parts.push_back({});
    parts.back().text.append(s);
  };
  std::size_t i = 0;
  while (i < text.size()) {
    if (!word_char(text[i])) {
      literal(text.substr(i, 1));
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && word_char(text[j])) ++j;
    std::string_view word = text.substr(i, j - i);
    bool boundary_before = i == 0 || !word_char(text[i - 1]);  // always true at a run start
    (void)boundary_before;
    if (word == "state") {
      std::size_t k = j;
      while (k < text.size() && text[k] == ' ') ++k;
      if (k < text.size() && text[k] == '(') {
        std::size_t close = text.find(')', k);
        if (close == std::string_view::npos)
          throw ConfigError(where, "system: state( at column " + std::to_string(i + 1) + " has no closing ')'");
        SystemPart part;
        part.kind = SystemPart::Kind::State;
        std::string_view inside = text.substr(k + 1, close - k - 1);
        std::size_t start = 0;
        while (true) {
          std::size_t comma = inside.find(',', start);
          std::string key = trim(inside.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
          bool ok = !key.empty();
          for (char c : key) ok = ok && (word_char(c) || c == '.' || c == ':' || c == '-');
          if (!ok)
            throw ConfigError(where, "system: state(...) at column " + std::to_string(i + 1) +
                                         " has a bad key '" + printable(key) + "' (keys are field names or words)");
          Expr::Key ek;
          if (auto v = var_from_name(key)) {
            ek.is_var = true;
            ek.var = *v;
          } else {
            ek.word = key;
          }
          part.keys.push_back(std::move(ek));
          if (part.keys.size() > limits.max_keys)
            throw ConfigError(where, "system: state(...) has more than " + std::to_string(limits.max_keys) + " keys");
          if (comma == std::string_view::npos) break;
          start = comma + 1;
        }
        parts.push_back(std::move(part));
        i = close + 1;
        continue;
      }
    }
    if (auto v = var_from_name(word)) {
      SystemPart part;
      part.kind = SystemPart::Kind::Var;
      part.var = *v;
      parts.push_back(std::move(part));
    } else {
      literal(word);
    }
    i = j;
  }
  return parts;
}

std::optional<std::string> Engine::substitute(const std::vector<SystemPart>& parts, const Vars& vars,
                                              const StateStore& state, std::string* why) {
  std::string out;
  for (const auto& p : parts) {
    switch (p.kind) {
      case SystemPart::Kind::Literal: out += p.text; break;
      case SystemPart::Kind::Var: {
        const Scalar& v = vars[p.var];
        if (!v.defined()) {
          if (why) *why = std::string(var_name(p.var)) + " is not in this knock";
          return std::nullopt;
        }
        std::string s = v.str();
        // A client's name comes from the config, whose names are letters, digits, . _ - only.
        const bool ok = (p.var == Var::ClientName || p.var == Var::Proto || p.var == Var::User) ? safe_name(s) : safe_value(s);
        if (s.empty() || !ok) {
          if (why) *why = std::string(var_name(p.var)) + " has the value '" + printable(s) + "', not a number or address";
          return std::nullopt;
        }
        out += s;
        break;
      }
      case SystemPart::Kind::State: {
        std::vector<std::string> keys;
        for (const auto& k : p.keys) keys.push_back(key_text(k, vars));
        std::string s = state.get(keys).str();
        if (!safe_value(s)) {
          if (why) *why = "a state value is '" + printable(s) + "', not a number or address";
          return std::nullopt;
        }
        out += s;
        break;
      }
    }
  }
  return out;
}

Engine::Engine(const config::Value& root, EngineOptions options)
    : options_(std::move(options)),
      state_(options_.state_limits),
      scheduler_(options_.max_pending),
      replay_(options_.replay_capacity) {
  clock_ = options_.clock != nullptr ? options_.clock : &system_clock_;
  if (!root.is_object()) throw ConfigError(root.where(), "the configuration must be a block");
  load_templates(root);
  load_actions(root);
  if (options_.runner != nullptr) {
    runner_ = options_.runner;
  } else if (!options_.test_mode) {
    own_runner_ = std::make_unique<ShellRunner>();
    runner_ = own_runner_.get();
  }
  if (runner_ != nullptr) {
    for (const Template& t : templates_)
      for (const Step& step : t.steps)
        if (in_process(step.kind)) runner_->prepare(step.kind);
  }
  load_cache_settings(root);
  std::optional<StoreSettings> store = parse_store_settings(root);  // checked in -test too
  if (!options_.test_mode) {
    if (options_.store != nullptr) {
      store_ = options_.store;
    } else if (store) {
      own_store_ = make_redis_store(std::move(*store));
      store_ = own_store_.get();
    }
  }
}

Engine::~Engine() = default;

// An ipset line is checked as it will run, each field and state(...) standing for a number.
void Engine::check_ipset_template(const std::vector<SystemPart>& parts, const Location& where) {
  std::string sample;
  for (const SystemPart& part : parts) sample += part.kind == SystemPart::Kind::Literal ? part.text : "1";
  if (auto why = ipset_command_error(sample)) throw ConfigError(where, "ipset: " + *why);
}

void Engine::load_templates(const config::Value& root) {
  const config::Value* block = root.find("template");
  if (block == nullptr) return;
  if (!block->is_object())
    throw ConfigError(block->where(), "'template' must be a named block: <template NAME> ... </template>");
  for (const auto& [name, body] : block->members()) {
    if (body.is_string())
      throw ConfigError(body.where(), "'" + name + "' outside a named block; write <template NAME>");
    if (body.is_array())
      throw ConfigError(body.items().size() > 1 ? body.items()[1].where() : body.where(),
                        "template '" + name + "' is defined more than once");
    Template t;
    t.name = name;
    t.where = body.where();
    for (const auto& [key, value] : body.members()) {
      // system4/nft4/ipset4 and system6/nft6/ipset6: the same, only for a knock whose FAMILY is 4 or 6.
      const int family = key.size() > 3 && (key.back() == '4' || key.back() == '6') ? key.back() - '0' : 0;
      const std::string base = family != 0 ? key.substr(0, key.size() - 1) : key;
      std::optional<ActionKind> kind;
      for (ActionKind k : {ActionKind::shell, ActionKind::nft, ActionKind::ipset})
        if (base == action_key(k)) kind = k;
      if ((!kind && base != "state") || (family != 0 && base == "state"))
        throw ConfigError(value.where(), "unknown key '" + key + "' in <template " + name +
                                             "> (expected system, nft, ipset or state; system4, system6, nft4, nft6, "
                                             "ipset4, ipset6)");
      for (const config::Value* item : body.all(key)) {
        if (!item->is_string()) throw ConfigError(item->where(), "'" + key + "' must be a value, not a block");
        Step step;
        step.family = family;
        if (kind) {
          step.is_system = true;
          step.kind = *kind;
          step.system = parse_system(item->text(), item->where(), options_.expr_limits);
          if (*kind == ActionKind::ipset) check_ipset_template(step.system, item->where());
        } else {
          step.state = Expr::parse(item->text(), item->where(), options_.expr_limits);
        }
        t.steps.push_back(std::move(step));
      }
    }
    if (t.steps.empty()) throw ConfigError(t.where, "<template " + name + "> has no system, nft, ipset or state");
    templates_.push_back(std::move(t));
  }
}

namespace {
bool body_like(const config::Value& v) {
  if (v.is_string()) return true;
  if (v.is_array()) {
    for (const auto& item : v.items())
      if (!item.is_string()) return false;
    return true;
  }
  return false;
}
}  // namespace

void Engine::load_actions(const config::Value& root) {
  const config::Value* actions = root.find("actions");
  if (actions == nullptr) return;
  std::vector<const config::Value*> blocks;
  if (actions->is_array()) {
    for (const auto& item : actions->items()) blocks.push_back(&item);
  } else {
    blocks.push_back(actions);
  }
  for (const config::Value* block : blocks) {
    if (!block->is_object()) throw ConfigError(block->where(), "'actions' must be a block: <actions> ... </actions>");
    for (const auto& [key, value] : block->members()) {
      if (key != "action")
        throw ConfigError(value.where(), "unknown key '" + key + "' in <actions> (expected <action> blocks)");
      std::vector<const config::Value*> list;
      if (value.is_array()) {
        for (const auto& item : value.items()) list.push_back(&item);
      } else {
        list.push_back(&value);
      }
      for (const config::Value* a : list) {
        if (!a->is_object()) throw ConfigError(a->where(), "'action' must be a block: <action NAME> ... </action>");
        bool unnamed = a->members().empty();
        for (const auto& m : a->members()) unnamed = unnamed || body_like(m.second);
        if (unnamed) {
          add_action("#" + std::to_string(actions_.size() + 1), *a);
          continue;
        }
        for (const auto& [name, body] : a->members()) {
          if (body.is_array())
            throw ConfigError(body.items().size() > 1 ? body.items()[1].where() : body.where(),
                              "action '" + name + "' is defined more than once");
          add_action(name, body);
        }
      }
    }
  }
}

void Engine::add_action(std::string name, const config::Value& body) {
  Action action;
  action.name = std::move(name);
  action.where = body.where();
  const std::string label = "<action " + action.name + ">";
  for (const auto& [key, value] : body.members()) {
    if (key != "condition" && key != "template" && key != "delay" && key != "use")
      throw ConfigError(value.where(), "unknown key '" + key + "' in " + label +
                                           " (expected condition, template, delay, use)");
    if (!body_like(value)) throw ConfigError(value.where(), "'" + key + "' must be a value, not a block");
  }
  auto condition = body.scalar("condition");
  if (!condition) throw ConfigError(action.where, label + " has no condition");
  action.condition = Expr::parse(*condition, body.where_of("condition"), options_.expr_limits);
  auto names = body.all("template");
  if (names.empty()) throw ConfigError(action.where, label + " has no template");
  for (const config::Value* n : names) {
    std::string tname = trim(n->text());
    std::size_t found = templates_.size();
    for (std::size_t i = 0; i < templates_.size(); ++i)
      if (templates_[i].name == tname) found = i;
    if (found == templates_.size())
      throw ConfigError(n->where(), "unknown template '" + printable(tname) + "' in " + label);
    action.templates.push_back(found);
  }
  if (auto delay = body.scalar("delay")) {
    auto seconds = parse_delay(*delay);
    if (!seconds)
      throw ConfigError(body.where_of("delay"), "bad delay '" + printable(*delay) +
                                                    "' (minutes, e.g. 5 or 0.05, or with a unit: 30s, 5m, 1h; at most 30 days)");
    action.delay = *seconds;
  }
  if (auto use = body.scalar("use")) {
    auto b = parse_yes_no(*use);
    if (!b) throw ConfigError(body.where_of("use"), "use must be yes or no, not '" + printable(*use) + "'");
    action.use = *b;
  }
  actions_.push_back(std::move(action));
}

void Engine::load_cache_settings(const config::Value& root) {
  if (auto observed = root.scalar("observedsource")) {
    auto b = parse_yes_no(*observed);
    if (!b)
      throw ConfigError(root.where_of("observedsource"), "observedsource must be yes or no, not '" + printable(*observed) + "'");
    observed_source_ = *b;
  }
  auto use = root.scalar("usecache");
  auto path = root.scalar("statecache");
  if (use) {
    auto b = parse_yes_no(*use);
    if (!b) throw ConfigError(root.where_of("usecache"), "usecache must be yes or no, not '" + printable(*use) + "'");
    use_cache_ = *b;
  }
  if (auto expire = root.scalar("stateexpire")) {
    auto seconds = parse_delay(*expire, 3650.0 * 86400);
    if (!seconds || *seconds <= 0)
      throw ConfigError(root.where_of("stateexpire"), "bad stateexpire '" + printable(*expire) +
                                                          "' (minutes, or with a unit: 30s, 5m, 1h, 7d; at most 10 years)");
    state_expire_ = *seconds;
  }
  if (auto interval = root.scalar("syncinterval")) {
    auto seconds = parse_delay(*interval, 3600);
    if (!seconds)
      throw ConfigError(root.where_of("syncinterval"), "bad syncinterval '" + printable(*interval) +
                                                           "' (minutes, or with a unit: 1s, 5m; at most 1h)");
    sync_interval_ = *seconds;
  }
  if (auto max = root.scalar("maxpending")) {
    const std::string t = trim(*max);
    std::size_t n = 0;
    bool ok = !t.empty() && t.size() <= 7;
    for (char c : t) {
      ok = ok && c >= '0' && c <= '9';
      if (ok) n = n * 10 + static_cast<std::size_t>(c - '0');
    }
    if (!ok || n == 0 || n > 1'000'000)
      throw ConfigError(root.where_of("maxpending"), "maxpending must be a whole number from 1 to 1000000, not '" +
                                                         printable(*max) + "'");
    options_.max_pending = n;
    scheduler_.set_capacity(n);
  }
  last_sync_ = last_expire_ = clock_->mono();
  if (!use_cache_) return;
  if (!path || trim(*path).empty()) throw ConfigError(root.where_of("usecache"), "usecache = yes needs statecache = PATH");
  cache_path_ = trim(*path);
  std::string dir = cache_path_.find('/') == std::string::npos ? "." : cache_path_.substr(0, cache_path_.rfind('/'));
  if (dir.empty()) dir = "/";
  struct stat st {};
  if (!options_.test_mode && (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)))
    throw ConfigError(root.where_of("statecache"), "statecache: directory " + dir + " does not exist");
  if (options_.test_mode) return;
  cache_ = std::make_unique<CacheWriter>(cache_path_);
  if (!options_.load_cache) return;
  // One daemon per cache: a second one would replace the journal the first still appends to.
  if (auto err = cache_->lock()) throw RuntimeError(*err);
  std::optional<CacheContents> contents;
  try {
    // Every close the cache holds is loaded, whatever maxpending says now: they were promised.
    contents = load_cache(cache_path_, options_.state_limits, std::size_t{10'000'000}, options_.cache_owner);
  } catch (const CorruptCacheError& e) {
    if (!options_.fresh)
      throw RuntimeError(std::string(e.what()) +
                         "; to keep it aside and start with an empty state, run knockdaemon -fresh");
    std::string aside = move_cache_aside(cache_path_, options_.now);
    log::warning(std::string(e.what()) + "; moved it to " + aside + " and starting with an empty state");
    ::unlink(journal_path(cache_path_).c_str());
  }
  const double wall = clock_->wall(), mono = clock_->mono();
  if (contents) {
    state_ = std::move(contents->state);
    const auto counts = replay_.load(contents->replay, static_cast<std::int64_t>(wall));
    if (counts.bad + counts.refused != 0)
      log::warning("state cache " + cache_path_ + ": " + std::to_string(counts.bad + counts.refused) +
                   " replay records not loaded (damaged, or more than spareplaycache)");
    // Saved due times are wall-clock times: map them back; a close overdue at start runs at once.
    // A wall clock that was ahead when they were saved must not postpone them: none is due later
    // than the longest delay of this configuration from now.
    double longest = 0;
    for (const Action& a : actions_) longest = std::max(longest, a.delay);
    scheduler_.set_capacity(std::max(options_.max_pending, contents->pending.size()));
    for (auto& p : contents->pending) {
      const double due_mono = mono + std::clamp(p.due - wall, 0.0, longest);
      scheduler_.add(std::move(p), due_mono);
    }
    log::info("state cache " + cache_path_ + ": " + std::to_string(state_.size()) + " keys, " +
              std::to_string(scheduler_.size()) + " pending commands (" + std::to_string(contents->journal_records) +
              " journal records)");
  }
  // A cache that cannot be written refuses knocks (nothing opens without its close recorded),
  // but the daemon starts all the same: the closes it loaded must run. tick() tries again.
  if (auto err = cache_->snapshot(state_, scheduler_.pending(wall, mono), replay_.save())) {
    log::error("state cache cannot be written: " + *err + "; knocks are refused until it can");
    snapshot_failures_ = 1;
    next_snapshot_try_ = mono + 1;
  }
}

// ---------------------------------------------------------------- running

bool Engine::save() noexcept {
  if (!cache_) return true;
  try {
    // A few seconds of slack: a message judged in its window by its packet's time stays
    // remembered even when the wall clock has just passed its expiry.
    replay_.expire(static_cast<std::int64_t>(clock_->wall()) - 5);
    const double mono = clock_->mono();
    if (auto err = cache_->snapshot(state_, scheduler_.pending(clock_->wall(), mono), replay_.save())) {
      ++snapshot_failures_;
      next_snapshot_try_ = mono + std::min(60.0, std::pow(2.0, std::min(snapshot_failures_, 6)));
      log::error("state cache not saved: " + *err + (cache_->ready() ? "" : "; knocks are refused until it is"));
      return false;
    }
    if (snapshot_failures_ != 0) log::info("state cache " + cache_path_ + " written again; knocks are accepted");
    snapshot_failures_ = 0;
    last_sync_ = mono;
    return true;
  } catch (const std::exception& e) {
    log::error(std::string("state cache not saved: ") + e.what());
    return false;
  }
}

bool Engine::record(const std::string& records) noexcept {
  if (!cache_ || records.empty()) return true;
  if (auto err = cache_->append(records)) {
    log::error("state cache: " + *err);
    return false;
  }
  return true;
}

bool Engine::refuse(const std::string& who, const std::string& why) noexcept {
  ++refused_;
  log::error("knock from " + who + " refused, nothing run: " + why);
  return false;
}

std::optional<std::string> Engine::plan_knock(const KnockEvent& event, const Vars& vars, long long family,
                                              OverlayState& staged, Plan& plan, std::ostream& out,
                                              const std::vector<std::string>* only) const {
  const double mono = clock_->mono();
  std::vector<Command>& now = plan.now;
  auto& later = plan.later;
  std::vector<std::string>& done = plan.done;
  for (const Action& action : actions_) {
    if (!action.use) continue;
    if (only != nullptr) {
      if (std::find(only->begin(), only->end(), action.name) == only->end()) continue;
    }
    EvalResult cond = only != nullptr ? EvalResult{true, Scalar::integer(1), {}} : action.condition.evaluate(vars, &staged);
    if (!cond.ok) {
      if (options_.test_mode) {
        out << "action " << action.name << ": condition: " << cond.error << '\n';
        continue;
      }
      return std::optional<std::string>("action " + action.name + " (" + action.where.str() + "): condition: " + cond.error);
    }
    if (!cond.value.truthy()) continue;
    for (std::size_t ti : action.templates) {
      const Template& t = templates_[ti];
      const std::string origin = "action " + action.name + ", template " + t.name;
      for (const Step& step : t.steps) {
        if (step.family != 0 && step.family != family) continue;
        if (!step.is_system) {
          if (only != nullptr) continue;  // applied by the gateway that accepted the knock
          if (options_.test_mode) {
            out << "would set: " << step.state->render(vars) << '\n';
            continue;
          }
          EvalResult r = step.state->evaluate(vars, &staged);
          if (!r.ok) return std::optional<std::string>(origin + ": state: " + r.error);
          continue;
        }
        std::string why;
        auto cmd = substitute(step.system, vars, staged, &why);
        if (!cmd) {
          if (options_.test_mode) {
            out << "would refuse the knock: " << origin << ": " << why << '\n';
            continue;
          }
          return std::optional<std::string>(origin + ": command refused: " + why);
        }
        const std::string kind = in_process(step.kind) ? std::string(action_key(step.kind)) + " " : "";
        if (action.delay > 0) {
          if (options_.test_mode)
            out << "would run after " << format_number(action.delay, false) << "s: " << kind << *cmd << '\n';
          else {
            PendingCommand p{event.time + action.delay, *cmd, origin, step.kind, 0};
            p.who = event.logip.str();
            p.target = door_address(event);
            p.client = std::string(event.extras.client);
            p.knocked = event.time;
            later.push_back({std::move(p), mono + action.delay});
          }
        } else if (options_.test_mode) {
          out << "would run: " << kind << *cmd << '\n';
        } else {
          now.push_back({*cmd, origin, step.kind, 0});
        }
      }
    }
    done.push_back(action.name);
  }
  return std::nullopt;
}

bool Engine::handle(const KnockEvent& event) noexcept {
  std::string who;
  try {
    // A carried address of all zeros (0.0.0.0, ::) is no address: the knock asks for the one it
    // came from, which only observedsource = yes grants (doc/RULES.md).
    codec::KnockValues values = event.values;
    const bool asks_v4 = values.has(codec::Field::Ip), asks_v6 = values.has(codec::Field::Ip6);
    if (asks_v4 && *values.get(codec::Field::Ip) == 0) values.clear(codec::Field::Ip);
    if (asks_v6 && *values.ip6 == codec::KnockValues::Ip6Bytes{}) values.clear(codec::Field::Ip6);
    const bool observed = (asks_v4 || asks_v6) && !values.has(codec::Field::Ip) && !values.has(codec::Field::Ip6);
    if (observed && observed_source_) {
      if (event.logip.is_v4()) {
        values.set(codec::Field::Ip, event.logip.v4_host_order());
      } else {
        codec::KnockValues::Ip6Bytes a{};
        std::copy(event.logip.bytes(), event.logip.bytes() + a.size(), a.begin());
        values.set_ip6(a);
      }
    }
    const Vars vars = make_vars(values, event.logip, event.time, event.extras);
    who = vars[Var::Ip6].defined() ? vars[Var::Ip6].str() : vars[Var::Ip].defined() ? vars[Var::Ip].str() : vars[Var::LogIp].str();
    if (!event.extras.client.empty()) who += " (client " + std::string(event.extras.client) + ")";
    if (observed && !observed_source_)
      return refuse(who, "the knock carries no address (0.0.0.0 or ::), asking for the one it came from; "
                         "only observedsource = yes allows that");
    if (observed) who += " (observed source)";
    // Two addresses: a condition that checks one (IP eq LOGIP || IP6 eq LOGIP) would let the
    // other one through to the templates of its family unchecked. knockclient never sends both.
    if (values.has(codec::Field::Ip) && values.has(codec::Field::Ip6))
      return refuse(who, "the knock carries both an IPv4 (IP) and an IPv6 (IP6) address; one of them must be zeros");
    const long long family = vars[Var::Family].iv();
    // Checked by the daemon before it gets here (and counted there); again here, for safety.
    if (replayed(event)) return refuse(who, "a replay of an accepted knock");
    std::ostream& out = options_.test_output ? *options_.test_output : std::cout;
    // With a shared store the state is read from it and the knock committed there first (its
    // identities claimed, its state changes applied, all or nothing); what follows is local.
    SharedStore* shared = options_.test_mode ? nullptr : store_;
    // One budget for all of this knock's requests (SharedStore::begin_knock).
    struct KnockBudget {
      SharedStore* store;
      explicit KnockBudget(SharedStore* s) : store(s) {
        if (store != nullptr) store->begin_knock();
      }
      ~KnockBudget() {
        if (store != nullptr) store->end_knock();
      }
      KnockBudget(const KnockBudget&) = delete;
      KnockBudget& operator=(const KnockBudget&) = delete;
    } budget(shared);
    // The store cannot be used: true to go on without it (fallback = local).
    auto without_store = [&](const std::string& why) {
      if (!store_->fallback_local()) return false;
      ++store_fallbacks_;
      log::warning("knock from " + who + ": the shared store is unavailable (" + why +
                   "); judged by this gateway alone (fallback = local)");
      shared = nullptr;
      return true;
    };
    auto refuse_store = [&](const std::string& why) {
      ++store_refused_;
      return refuse(who, "the shared store is unavailable (" + why + "); refused (fallback = closed)");
    };
    for (int attempt = 1;; ++attempt) {
      std::string down;
      if (shared != nullptr && !shared->usable(&down) && !without_store(down)) return refuse_store(down);
      OverlayState staged(state_, shared);
      Plan plan;
      const auto refused = plan_knock(event, vars, family, staged, plan, out);
      if (shared != nullptr && !staged.remote_error().empty()) {
        if (!staged.remote_unavailable()) return refuse(who, "shared store: " + staged.remote_error());
        if (without_store(staged.remote_error())) continue;
        return refuse_store(staged.remote_error());
      }
      if (refused) return refuse(who, *refused);
      std::vector<Command>& now = plan.now;
      auto& later = plan.later;
      std::vector<std::string>& done = plan.done;
      if (options_.test_mode) {
        out.flush();
        return true;
      }
      // Everything the knock asks for must fit before any of it happens.
      if (later.size() > scheduler_.room())
        return refuse(who, "the table of pending responses is full (maxpending " + std::to_string(scheduler_.capacity()) +
                               "); a close could not be recorded");
      if (runner_ != nullptr && now.size() > runner_->room())
        return refuse(who, "the command queue is full");
      if (state_.size() + staged.missing_nodes() > state_.limits().max_entries)
        return refuse(who, "the state is full (" + std::to_string(state_.limits().max_entries) + " keys)");
      const auto event_s = static_cast<std::int64_t>(event.time);
      if (shared != nullptr) {
        StoreCommit commit;
        for (std::size_t r = 0; r < event.replay_count; ++r) {
          char text[2 * sizeof(spa::Identity) + 1];
          sodium_bin2hex(text, sizeof text, event.replay[r].data(), event.replay[r].size());
          commit.ids.emplace_back(text, 2 * sizeof(spa::Identity));
        }
        commit.replay_ms = (std::max<std::int64_t>(event.replay_expiry - event_s, 0) + 1 + kFleetClockSlack) * 1000;
        for (const auto& [keys, stored] : staged.reads()) commit.reads.emplace_back(keys, stored);
        for (const auto& [keys, value] : staged.writes()) commit.writes.emplace_back(keys, encode_state_value(value));
        commit.state_ms = static_cast<std::int64_t>(std::ceil(state_expire_ * 1000));
        commit.stamp = shared->gateway() + " " + std::to_string(static_cast<std::int64_t>(clock_->wall()));
        if (!shared->fleet().empty() && !done.empty()) {
          // Published by the commit script itself: exactly when the knock is committed.
          SharedKnock k;
          k.gateway = shared->gateway();
          k.time = event.time;
          k.values = values;
          k.logip = event.logip;
          k.client = event.extras.client;
          k.proto = event.extras.proto;
          k.user = event.extras.user;
          k.client_timeout = event.extras.client_timeout;
          k.actions = done;
          commit.fleet = shared->fleet();
          commit.fleet_length = shared->fleet_length();
          commit.publish = seal_shared_knock(encode_shared_knock(k), shared->fleet_key());
        }
        const SharedStore::Result result = shared->commit(commit);
        if (result.outcome == SharedStore::Outcome::Replay) {
          ++fleet_replays_;
          // Remembered here too: the next copy is refused without asking the store.
          for (std::size_t i = 0; i < event.replay_count; ++i) replay_.insert(event.replay[i], event.replay_expiry, event_s);
          return refuse(who, "a replay of a knock accepted at gateway " + result.detail.substr(0, result.detail.find(' ')) +
                                 " (shared store)");
        }
        if (result.outcome == SharedStore::Outcome::Conflict) {
          if (attempt < kStoreAttempts) continue;
          return refuse(who, "the state it reads was changed by other gateways " + std::to_string(attempt) +
                                 " times while it was judged (" + result.detail + ")");
        }
        if (result.outcome == SharedStore::Outcome::Unavailable) {
          if (without_store(result.detail)) continue;
          return refuse_store(result.detail);
        }
        if (result.outcome == SharedStore::Outcome::Error) return refuse(who, "shared store: " + result.detail);
      }
      // The identity is used up now, even if recording fails below (then the sender knocks anew).
      // The knock's own time is "now" for the replay cache: the verifier judged the window by it.
      for (std::size_t i = 0; i < event.replay_count; ++i)
        if (replay_.insert(event.replay[i], event.replay_expiry, event_s) != spa::ReplayCache::Result::Fresh)
          return refuse(who, "the replay cache is full of live entries (spareplaycache " +
                                 std::to_string(replay_.capacity()) + ")");
      // Recorded before anything runs: once the journal has it, a kill -9 loses nothing.
      std::string records;
      for (std::size_t r = 0; r < event.replay_count; ++r) {
        char text[2 * sizeof(spa::Identity) + 1];
        sodium_bin2hex(text, sizeof text, event.replay[r].data(), event.replay[r].size());
        records += replay_record(std::string_view(text, 2 * sizeof(spa::Identity)), event.replay_expiry);
      }
      for (const auto& [keys, value] : staged.writes()) records += state_record(keys, value, event.time);
      for (auto& [p, due_mono] : later) {
        p.id = scheduler_.next_id();
        records += pending_record(p);
      }
      if (!record(records)) return refuse(who, "the state cache could not record it");
      state_.set_time(event.time);
      for (const auto& [keys, value] : staged.writes()) {
        std::string err;
        if (!state_.set(keys, value, &err)) log::error("state change after the checks failed: " + err);
      }
      for (auto& [p, due_mono] : later) scheduler_.add(std::move(p), due_mono);
      for (const auto& name : done) log::info("knock from " + who + ": action " + name);
      if (runner_ != nullptr)
        for (const auto& c : now) runner_->run(c);
      return true;
    }
  } catch (const std::exception& e) {
    return refuse(who.empty() ? std::string("?") : who, std::string("not handled: ") + e.what());
  }
}

bool Engine::follow(const SharedKnock& knock, const std::string& id) noexcept {
  std::string who = knock.logip.str() + " (shared by gateway " + knock.gateway + ")";
  try {
    // Handled once: an identity of the entry itself, kept in the replay cache and its journal
    // with the pending closes, so that a restart that reads the entry again skips it.
    spa::Identity mark{};
    const std::string tag = "portknock fleet " + store_->fleet() + " " + id;
    crypto_generichash(mark.data(), mark.size(), reinterpret_cast<const unsigned char*>(tag.data()), tag.size(), nullptr, 0);
    if (replay_.contains(mark)) return true;
    double longest = 0;
    for (const Action& a : actions_) longest = std::max(longest, a.delay);
    const double age = clock_->wall() - knock.time;
    if (age > std::max(kFleetMaxAge, longest)) {
      ++fleet_dropped_;
      log::warning("knock from " + who + " not run here: accepted " + format_number(std::round(age), false) +
                   "s ago (older than " + format_number(std::max(kFleetMaxAge, longest), false) + "s)");
      return true;
    }
    // Nor one from the future beyond the gateways' clock difference: the age limit above would
    // never apply to it (a forged t, up to 15 digits of ms).
    if (age < -static_cast<double>(kFleetClockSlack)) {
      ++fleet_dropped_;
      log::warning("knock from " + who + " not run here: dated " + format_number(std::round(-age), false) +
                   "s in the future (more than the " + std::to_string(kFleetClockSlack) + "s the gateways' clocks may differ)");
      return true;
    }
    KnockExtras extras;
    extras.client = knock.client;
    extras.proto = knock.proto;
    extras.user = knock.user;
    extras.client_timeout = knock.client_timeout;
    KnockEvent event;
    event.values = knock.values;
    event.logip = knock.logip;
    event.time = knock.time;
    event.extras = extras;
    const Vars vars = make_vars(event.values, event.logip, event.time, event.extras);
    who = (vars[Var::Ip6].defined() ? vars[Var::Ip6].str() : vars[Var::Ip].defined() ? vars[Var::Ip].str() : vars[Var::LogIp].str());
    if (!knock.client.empty()) who += " (client " + knock.client + ")";
    who += " (shared by gateway " + knock.gateway + ")";
    if (event.values.has(codec::Field::Ip) && event.values.has(codec::Field::Ip6)) {
      ++fleet_dropped_;
      return refuse(who, "the shared knock carries both an IPv4 and an IPv6 address");
    }
    // The accepting gateway resolved an observed source before publishing: a zero address
    // (0.0.0.0, ::) in an entry is forged, and must never reach a command (to some firewalls "any").
    if ((event.values.has(codec::Field::Ip) && *event.values.get(codec::Field::Ip) == 0) ||
        (event.values.ip6 && *event.values.ip6 == codec::KnockValues::Ip6Bytes{})) {
      ++fleet_dropped_;
      return refuse(who, "the shared knock carries a zero address (0.0.0.0 or ::); the accepting gateway resolves an observed source");
    }
    OverlayState staged(state_, store_);
    Plan plan;
    const auto refused = plan_knock(event, vars, vars[Var::Family].iv(), staged, plan, std::cout, &knock.actions);
    if (!staged.remote_error().empty() && staged.remote_unavailable()) return false;  // again later
    auto drop = [&](const std::string& why) {
      ++fleet_dropped_;
      refuse(who, why);
      return true;
    };
    if (!staged.remote_error().empty()) return drop("shared store: " + staged.remote_error());
    if (refused) return drop(*refused);
    if (plan.done.empty()) return drop("none of its actions (" + std::to_string(knock.actions.size()) + ") is used here");
    if (plan.later.size() > scheduler_.room())
      return drop("the table of pending responses is full (maxpending " + std::to_string(scheduler_.capacity()) +
                  "); a close could not be recorded");
    if (runner_ != nullptr && plan.now.size() > runner_->room()) return drop("the command queue is full");
    const auto now_s = static_cast<std::int64_t>(clock_->wall());
    const std::int64_t keep = now_s + static_cast<std::int64_t>(std::max(kFleetMaxAge, longest)) + 86400;
    if (replay_.insert(mark, keep, now_s) != spa::ReplayCache::Result::Fresh)
      return drop("the replay cache is full of live entries (spareplaycache " + std::to_string(replay_.capacity()) + ")");
    char text[2 * sizeof(spa::Identity) + 1];
    sodium_bin2hex(text, sizeof text, mark.data(), mark.size());
    std::string records = replay_record(std::string_view(text, 2 * sizeof(spa::Identity)), keep);
    for (auto& [p, due_mono] : plan.later) {
      p.id = scheduler_.next_id();
      records += pending_record(p);
    }
    if (!record(records)) return drop("the state cache could not record it");
    for (auto& [p, due_mono] : plan.later) scheduler_.add(std::move(p), due_mono);
    for (const auto& name : plan.done) log::info("knock from " + who + ": action " + name);
    ++fleet_followed_;
    if (runner_ != nullptr)
      for (const auto& c : plan.now) runner_->run(c);
    return true;
  } catch (const std::exception& e) {
    ++fleet_dropped_;
    refuse(who, std::string("shared knock not handled: ") + e.what());
    return true;
  }
}

void Engine::follow_fleet() noexcept {
  try {
    const double mono = clock_->mono();
    if (mono < next_follow_) return;
    next_follow_ = mono + kFleetPollInterval;
    std::string why;
    if (!store_->usable(&why)) return;
    std::vector<StreamEntry> entries;
    if (!store_->fetch(kFleetBatch, entries, &why)) return;
    std::string last;
    std::size_t malformed = 0;
    for (const auto& entry : entries) {
      std::string bad;
      std::optional<SharedKnock> knock;
      if (!entry.data.empty()) {
        // The tag first: an entry not written by a holder of the fleet key is not even parsed.
        if (auto encoded = unseal_shared_knock(entry.data, store_->fleet_key(), &bad))
          knock = decode_shared_knock(*encoded, &bad);
      } else {
        bad = "not one field k of at most " + std::to_string(kMaxSharedKnockBytes) + " bytes";
      }
      if (!knock) {
        ++fleet_malformed_;
        if (malformed++ == 0)  // one line per read at most: the stream is hostile input
          log::warning("fleet " + store_->fleet() + ": stream entry " + entry.id + " skipped, malformed: " + bad +
                       " (" + std::to_string(fleet_malformed_) + " so far)");
      } else if (knock->gateway != store_->gateway() && !follow(*knock, entry.id)) {
        break;  // the store went away while it was judged: from this entry on, next time
      }
      last = entry.id;
    }
    if (!last.empty()) store_->handled(last, &why);
    if (entries.size() >= kFleetBatch) next_follow_ = mono;  // more are waiting
  } catch (const std::exception& e) {
    log::error(std::string("fleet: ") + e.what());
  }
}

void Engine::run_due() noexcept {
  try {
    auto due = scheduler_.take_due(clock_->mono());
    for (const auto& p : due)
      if (runner_ != nullptr) runner_->run({p.command, p.origin + " (delayed)", p.kind, p.id});
  } catch (const std::exception& e) {
    log::error(std::string("delayed commands: ") + e.what());
  }
}

std::optional<double> Engine::next_due() const {
  auto due = scheduler_.next_due();
  if (!due) return std::nullopt;
  return std::max(0.0, *due - clock_->mono());
}

std::vector<PendingCommand> Engine::pending() const { return scheduler_.pending(clock_->wall(), clock_->mono()); }

void Engine::reap() noexcept {
  if (runner_ == nullptr) return;
  runner_->reap();
  try {
    std::string records;
    for (std::uint64_t id : runner_->take_completed())
      if (scheduler_.finished(id)) records += done_record(id);
    // A close that failed (iptables waiting for its lock, no process left, killed at exit) is
    // tried again, 1, 2, 4 ... 60 s later, up to kCloseAttempts times; then given up, loudly.
    const double mono = clock_->mono();
    for (const auto& [id, status] : runner_->take_failed()) {
      const int attempts = scheduler_.attempts(id);
      if (attempts < 0) continue;
      const std::string what = status < 0 ? "could not start" : "exited " + std::to_string(status);
      if (attempts + 1 < kCloseAttempts) {
        const double backoff = std::min(60.0, std::pow(2.0, attempts));
        log::warning("pending response " + std::to_string(id) + " " + what + "; trying again in " +
                     format_number(backoff, false) + "s (attempt " + std::to_string(attempts + 2) + " of " +
                     std::to_string(kCloseAttempts) + ")");
        scheduler_.retry(id, mono + backoff);
      } else {
        log::error("pending response " + std::to_string(id) + " " + what + " " + std::to_string(kCloseAttempts) +
                   " times; giving up: the door it closes may still be open");
        if (scheduler_.finished(id)) records += done_record(id);
      }
    }
    // A done record lost here only makes a restart run that close once more (at least once).
    record(records);
  } catch (const std::exception& e) {
    log::error(std::string("finished commands: ") + e.what());
  }
}

void Engine::tick() noexcept {
  if (store_ != nullptr) store_->tick();
  if (store_ != nullptr && !store_->fleet().empty()) follow_fleet();
  const double mono = clock_->mono();
  if (state_expire_ > 0 && mono - last_expire_ >= std::clamp(state_expire_ / 10, 1.0, 60.0)) {
    last_expire_ = mono;
    const std::size_t dropped = state_.expire(clock_->wall() - state_expire_);
    if (dropped != 0) {
      log::info("stateexpire: dropped " + std::to_string(dropped) + " state values not written for " +
                format_number(state_expire_, false) + "s");
      save();
    }
  }
  if (!cache_) return;
  if (snapshot_failures_ != 0 || cache_->journal_bytes() > (1u << 20)) {
    if (snapshot_failures_ == 0 || mono >= next_snapshot_try_) save();
    return;
  }
  if (cache_->dirty() && mono - last_sync_ >= sync_interval_) {
    last_sync_ = mono;
    if (auto err = cache_->sync()) log::error("state cache: " + *err);
  }
}

double Engine::next_tick_in() const {
  double in = 60;
  const double mono = clock_->mono();
  if (state_expire_ > 0) in = std::min(in, last_expire_ + std::clamp(state_expire_ / 10, 1.0, 60.0) - mono);
  if (cache_ && cache_->dirty()) in = std::min(in, last_sync_ + sync_interval_ - mono);
  if (cache_ && snapshot_failures_ != 0) in = std::min(in, next_snapshot_try_ - mono);
  if (store_ != nullptr) in = std::min(in, store_->next_tick_in());
  if (store_ != nullptr && !store_->fleet().empty()) in = std::min(in, next_follow_ - mono);
  return std::max(0.0, in);
}

void Engine::abandon_cache() noexcept {
  if (cache_) cache_->abandon();
}

bool Engine::wait_for_commands(double timeout_seconds) noexcept {
  bool idle = runner_ == nullptr || runner_->wait_idle(timeout_seconds);
  reap();
  return idle;
}

std::vector<std::string> Engine::pending_descriptions(bool relative) const {
  std::vector<std::string> out;
  const double wall = clock_->wall();
  for (const auto& p : pending()) {
    std::string line = "due " + local_time_text(p.due);
    if (relative) line += " (in " + format_number(std::max(0.0, std::round(p.due - wall)), true) + "s)";
    out.push_back(line + ": " + p.origin + ": " + p.command);
  }
  return out;
}

void Engine::take_over(Engine& old) {
  // Switching caches on a reload would drop what the other file holds: that needs a restart.
  if (use_cache_ != old.use_cache_ || cache_path_ != old.cache_path_)
    throw RuntimeError("statecache and usecache cannot change on a reload; restart knockdaemon to change them");
  state_ = std::move(old.state_);
  old.state_.clear();
  scheduler_ = std::move(old.scheduler_);
  {
    const auto now_s = static_cast<std::int64_t>(clock_->wall());
    replay_.load(old.replay_.save(), now_s);
    old.replay_.clear();
  }
  scheduler_.set_capacity(std::max(scheduler_.size(), options_.max_pending));
  old.scheduler_.clear();
  if (old.cache_) cache_ = std::move(old.cache_);
  snapshot_failures_ = old.snapshot_failures_;
  next_snapshot_try_ = old.next_snapshot_try_;
  save();
}

}  // namespace knock::rules
