#include "rules/engine.hpp"

#include <sys/stat.h>

#include <cmath>
#include <ctime>
#include <iostream>

#include "util/log.hpp"
#include "util/text.hpp"

namespace knock::rules {

namespace {
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

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) ? '?' : c;
  return out;
}
}  // namespace

std::optional<double> parse_delay(std::string_view text) {
  std::string t = trim(text);
  if (t.empty()) return std::nullopt;
  double unit = 60;
  char last = t.back();
  if (last == 's' || last == 'm' || last == 'h') {
    unit = last == 's' ? 1 : last == 'm' ? 60 : 3600;
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
  if (!std::isfinite(seconds) || seconds > 30.0 * 86400) return std::nullopt;
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
        if (s.empty() || !safe_value(s)) {
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
    : options_(std::move(options)), state_(options_.state_limits), scheduler_(options_.max_pending) {
  if (!root.is_object()) throw ConfigError(root.where(), "the configuration must be a block");
  load_templates(root);
  load_actions(root);
  load_cache_settings(root);
  if (options_.runner != nullptr) {
    runner_ = options_.runner;
  } else if (!options_.test_mode) {
    own_runner_ = std::make_unique<ShellRunner>();
    runner_ = own_runner_.get();
    for (const Template& t : templates_)
      for (const Step& step : t.steps)
        if (step.is_nft) {
          own_runner_->prepare_nft();
          return;
        }
  }
}

Engine::~Engine() = default;

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
      if (key != "system" && key != "state" && key != "nft")
        throw ConfigError(value.where(),
                          "unknown key '" + key + "' in <template " + name + "> (expected system, nft or state)");
      for (const config::Value* item : body.all(key)) {
        if (!item->is_string()) throw ConfigError(item->where(), "'" + key + "' must be a value, not a block");
        Step step;
        if (key == "system" || key == "nft") {
          step.is_system = true;
          step.is_nft = key == "nft";
          step.system = parse_system(item->text(), item->where(), options_.expr_limits);
        } else {
          step.state = Expr::parse(item->text(), item->where(), options_.expr_limits);
        }
        t.steps.push_back(std::move(step));
      }
    }
    if (t.steps.empty()) throw ConfigError(t.where, "<template " + name + "> has no system, nft or state");
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
  auto use = root.scalar("usecache");
  auto path = root.scalar("statecache");
  if (use) {
    auto b = parse_yes_no(*use);
    if (!b) throw ConfigError(root.where_of("usecache"), "usecache must be yes or no, not '" + printable(*use) + "'");
    use_cache_ = *b;
  }
  if (!use_cache_) return;
  if (!path || trim(*path).empty()) throw ConfigError(root.where_of("usecache"), "usecache = yes needs statecache = PATH");
  cache_path_ = trim(*path);
  std::string dir = cache_path_.find('/') == std::string::npos ? "." : cache_path_.substr(0, cache_path_.rfind('/'));
  if (dir.empty()) dir = "/";
  struct stat st {};
  if (!options_.test_mode && (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)))
    throw ConfigError(root.where_of("statecache"), "statecache: directory " + dir + " does not exist");
  if (!options_.load_cache) return;
  std::optional<CacheContents> contents;
  try {
    contents = load_cache(cache_path_, options_.state_limits, options_.max_pending);
  } catch (const CorruptCacheError& e) {
    if (!options_.fresh)
      throw RuntimeError(std::string(e.what()) +
                         "; to keep it aside and start with an empty state, run knockdaemon -fresh");
    std::string aside = move_cache_aside(cache_path_, options_.now);
    log::warning(std::string(e.what()) + "; moved it to " + aside + " and starting with an empty state");
  }
  if (!contents) return;
  state_ = std::move(contents->state);
  for (auto& p : contents->pending) scheduler_.add(std::move(p));
  log::info("state cache " + cache_path_ + ": " + std::to_string(state_.size()) + " keys, " +
            std::to_string(scheduler_.size()) + " pending commands");
}

// ---------------------------------------------------------------- running

bool Engine::save(bool sync) noexcept {
  if (!use_cache_ || options_.test_mode) return true;
  auto err = save_cache(cache_path_, state_, scheduler_.pending(), sync);
  if (err) {
    log::error("state cache not saved: " + *err);
    return false;
  }
  return true;
}

void Engine::handle(const KnockEvent& event) noexcept {
  try {
    const Vars vars = make_vars(event.values, event.logip, event.time);
    OverlayState overlay(state_);
    StateStore& store = options_.test_mode ? static_cast<StateStore&>(overlay) : state_;
    std::ostream& out = options_.test_output ? *options_.test_output : std::cout;
    const auto generation = state_.generation();
    bool scheduled = false;
    std::vector<Command> now;
    std::vector<std::string> done;
    const std::string who = vars[Var::Ip].defined() ? vars[Var::Ip].str() : vars[Var::LogIp].str();
    for (const Action& action : actions_) {
      if (!action.use) continue;
      EvalResult cond = action.condition.evaluate(vars, &store);
      if (!cond.ok) {
        log::warning("action " + action.name + " (" + action.where.str() + "): condition: " + cond.error);
        continue;
      }
      if (!cond.value.truthy()) continue;
      bool aborted = false;
      for (std::size_t ti : action.templates) {
        const Template& t = templates_[ti];
        const std::string origin = "action " + action.name + ", template " + t.name;
        for (const Step& step : t.steps) {
          if (!step.is_system) {
            if (options_.test_mode) {
              out << "would set: " << step.state->render(vars) << '\n';
              continue;
            }
            EvalResult r = step.state->evaluate(vars, &store);
            if (!r.ok) {
              log::error(origin + ": state: " + r.error + "; rest of the action skipped");
              aborted = true;
              break;
            }
            continue;
          }
          std::string why;
          auto cmd = substitute(step.system, vars, store, &why);
          if (!cmd) {
            log::error(origin + ": command refused: " + why);
            continue;
          }
          const char* kind = step.is_nft ? "nft " : "";
          if (action.delay > 0) {
            if (options_.test_mode) {
              out << "would run after " << format_number(action.delay, false) << "s: " << kind << *cmd << '\n';
            } else if (scheduler_.add({event.time + action.delay, *cmd, origin, step.is_nft})) {
              scheduled = true;
            } else {
              log::error(origin + ": too many pending commands (" + std::to_string(scheduler_.capacity()) +
                         "); not scheduled: " + *cmd);
            }
          } else if (options_.test_mode) {
            out << "would run: " << kind << *cmd << '\n';
          } else {
            now.push_back({*cmd, origin, step.is_nft});
          }
        }
        if (aborted) break;
      }
      done.push_back(action.name);
    }
    if (options_.test_mode) {
      out.flush();
      return;
    }
    // Save before anything is reported or run: a logged change is a saved change (the rename
    // survives a kill -9); the fsyncs for power loss come after the commands have started, off
    // the knock-to-open path.
    const bool changed = state_.generation() != generation || scheduled;
    if (changed) save(false);
    for (const auto& name : done) log::info("knock from " + who + ": action " + name);
    if (runner_ != nullptr)
      for (const auto& c : now) runner_->run(c);
    if (changed && use_cache_ && !options_.test_mode)
      if (auto err = sync_cache(cache_path_)) log::error("state cache not synced: " + *err);
  } catch (const std::exception& e) {
    log::error(std::string("knock not handled: ") + e.what());
  }
}

void Engine::run_due(double now) noexcept {
  try {
    auto due = scheduler_.take_due(now);
    if (due.empty()) return;
    // Run first, then save: a crash in between runs the command again (at least once).
    for (const auto& p : due) {
      if (runner_ != nullptr) runner_->run({p.command, p.origin + " (delayed)", p.nft});
    }
    save();
  } catch (const std::exception& e) {
    log::error(std::string("delayed commands: ") + e.what());
  }
}

void Engine::reap() noexcept {
  if (runner_ != nullptr) runner_->reap();
}

int Engine::command_fd() const { return own_runner_ ? own_runner_->poll_fd() : -1; }

bool Engine::commands_busy() const { return own_runner_ && own_runner_->busy(); }

bool Engine::wait_for_commands(double timeout_seconds) noexcept {
  if (own_runner_) return own_runner_->wait_idle(timeout_seconds);
  reap();
  return true;
}

std::vector<std::string> Engine::pending_descriptions(double now) const {
  std::vector<std::string> out;
  for (const auto& p : scheduler_.pending()) {
    std::time_t t = static_cast<std::time_t>(p.due);
    struct tm tm_local {};
    localtime_r(&t, &tm_local);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm_local);
    std::string line = std::string("due ") + stamp;
    if (now > 0) line += " (in " + format_number(std::round(p.due - now), true) + "s)";
    out.push_back(line + ": " + p.origin + ": " + p.command);
  }
  return out;
}

void Engine::take_over(Engine& old) {
  state_ = std::move(old.state_);
  old.state_.clear();
  for (auto& p : old.scheduler_.pending()) {
    if (!scheduler_.add(p)) log::error("reload: too many pending commands; dropped: " + p.command);
  }
  old.scheduler_.clear();
  save();
}

}  // namespace knock::rules
