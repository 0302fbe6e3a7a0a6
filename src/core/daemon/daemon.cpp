#include "daemon/daemon.hpp"

#include "daemon/daemon_impl.hpp"
#include "util/manpages.hpp"

namespace knock::daemon {
namespace {


const std::vector<cli::OptionSpec> kOptions = {
    {"conf", true}, {"debug", false}, {"quiet", false}, {"test", false}, {"h", false},
    {"help", false}, {"man", false}, {"check", false}, {"dumpconfig", false}, {"pcap", true},
    {"version", false}, {"fresh", false},
};

constexpr const char* kUsage =
    "usage: knockdaemon [-conf FILE] [-debug | -quiet] [-test] [-pcap FILE] [-fresh]\n"
    "       knockdaemon -check [-conf FILE]      validate the configuration and exit\n"
    "       knockdaemon -dumpconfig [-conf FILE] print the parsed configuration as JSON\n"
    "       knockdaemon -h | -man | -version\n"
    "-fresh: a damaged state cache is moved aside (PATH.corrupt-TIME) instead of refused.\n"
    "Options may be written with one dash or two (-conf FILE, --conf=FILE).\n"
    "Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.\n";

long peak_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

}  // namespace

std::unique_ptr<Generation> Daemon::load(bool initial) const {
  auto g = std::make_unique<Generation>();
  // The main file, every <<include>>, and the folders holding them: nobody but root may be
  // able to change what the daemon runs as root.
  config::ParseLimits limits;
  limits.check_file = check_config_file;
  g->root = config::parse_file(conf_path_, limits);
  g->settings = load_settings(g->root);
  rules::EngineOptions options;
  options.test_mode = test_mode_;
  options.test_output = &std::cout;
  options.runner = runner_.get();
  options.clock = clock_;
  options.load_cache = initial;
  options.fresh = fresh_;
  options.now = wall_clock();
  options.replay_capacity = g->settings.spa_settings.replay_capacity;
  // A cache written after the drop to `user` belongs to that user: accept it at the next start.
  if (g->settings.user) {
    if (const passwd* pw = ::getpwnam(g->settings.user->c_str())) options.cache_owner = static_cast<long>(pw->pw_uid);
  }
  // The worker's account must exist now: a reload to a user that is gone would stop the
  // running worker and start none (deaf until the next reload).
  if (g->settings.privsep && !pcap_file_ && g->settings.user) {
    try {
      (void)worker_account(g->settings.user);
    } catch (const std::exception& e) {
      throw ConfigError(g->root.where_of("user"), e.what());
    }
  }
  g->engine = std::make_unique<rules::Engine>(g->root, options);
  for (const auto& warning : g->settings.warnings) log::warning(warning);
  // libnftables opens its netlink socket without SOCK_CLOEXEC (in nft_ctx_new, while the
  // engine is built): no command may inherit it.
  mark_all_close_on_exec();
  if (auto wait = g->root.scalar("stopwait")) {
    auto seconds = rules::parse_delay(*wait, 3600);
    if (!seconds)
      throw ConfigError(g->root.where_of("stopwait"), "bad stopwait '" + *wait + "' (e.g. 10s; at most 1h)");
    g->stop_wait = *seconds;
  }
  return g;
}

void Daemon::adopt(std::unique_ptr<Generation> next) {
  if (current_) next->engine->take_over(*current_->engine);
  std::unique_ptr<Generation> old = std::move(current_);
  current_ = std::move(next);
  detector_.configure(current_->settings);  // (compares with the old settings, still alive here)
}

int Daemon::run() {
  adopt(load());
  const Settings& s = current_->settings;
  const std::size_t knock_bytes = s.spa_ports ? s.spa->message_bytes() : s.codec->wire_bytes();
  log::info(std::string(s.spa_ports ? "knock (authenticated message): " : "knock: ") + std::to_string(knock_bytes) +
            " bytes in " + std::to_string(detector_.tracker().knock_length()) + " ports of a " +
            std::to_string(s.codec->span().size()) +
            "-port span; tracking up to " + std::to_string(detector_.tracker().max_sources()) + " sources (" +
            std::to_string(detector_.tracker().allocated_bytes() / 1024) + " KiB)");
  if (pcap_file_) return run_capture_file();
  return run_live();
}

void Daemon::report(privsep::KnockKind kind, bool by_ports, const rules::KnockEvent& event) noexcept {
  if (worker_sock_ < 0) return accept(kind, by_ports, event, event.time);
  const std::size_t size = privsep::encode_knock(kind, by_ports, event, out_);
  if (size == 0) {
    ++unreportable_;
    return;
  }
  if (!privsep::send_message(worker_sock_, std::span(out_.data(), size))) {
    log::error("worker: cannot reach the monitor (" + errno_message(errno) + "); stopping");
    _exit(kWorkerLostMonitor);
  }
}

void Daemon::accept(privsep::KnockKind kind, bool by_ports, const rules::KnockEvent& event, double captured) noexcept {
  try {
    Refusals* counts = kind == privsep::KnockKind::Spa      ? &detector_.spa_refusals()
                       : kind == privsep::KnockKind::Fwknop ? &detector_.fwknop_refusals()
                                                            : nullptr;
    if (event.replay_count != 0 && current_->engine->replayed(event)) {
      if (counts != nullptr) {
        ++counts->replayed;
      } else {
        ++original_replayed_;
      }
      return;
    }
    const std::string from = event.logip.str();
    const std::string fields = describe_knock(*current_->settings.codec, event.values);
    std::string line = "knock from " + from;
    if (kind == privsep::KnockKind::Spa) {
      line += " (client " + std::string(event.extras.client) + ", " + (by_ports ? "port knock" : "datagram") + ")";
    } else if (kind == privsep::KnockKind::Fwknop) {
      line += " (fwknop " + std::string(event.extras.client) + ", user " + std::string(event.extras.user) + ")";
    }
    log::info(line + ": " + fields);
    if (test_mode_ && kind != privsep::KnockKind::Fwknop) {
      std::cout << "knock from " << from;
      if (kind == privsep::KnockKind::Spa) std::cout << " (client " << event.extras.client << ")";
      std::cout << ": " << fields << std::endl;
    }
    const bool accepted = current_->engine->handle(event);
    if (accepted) ++(counts != nullptr ? counts->accepted : original_accepted_);
    latency_.observe(wall_clock() - (captured >= 0 ? captured : event.time));
  } catch (const std::exception& e) {
    log::error("knock from " + event.logip.str() + ": " + e.what());
  }
}

void Daemon::log_refusals() {
  const Settings& s = current_->settings;
  if (s.spa && detector_.spa_refusals().total() != detector_.spa_refusals().reported) {
    log::info(detector_.spa_refusals().describe<spa::Reason>("single-packet knocks",
                                                  [](spa::Reason r) { return spa::to_string(r); }));
    detector_.spa_refusals().reported = detector_.spa_refusals().total();
  }
  if (s.fwknop && detector_.fwknop_refusals().total() != detector_.fwknop_refusals().reported) {
    log::info(detector_.fwknop_refusals().describe<fwknop::Reason>("fwknop packets",
                                                        [](fwknop::Reason r) { return fwknop::to_string(r); }));
    detector_.fwknop_refusals().reported = detector_.fwknop_refusals().total();
  }
  if (original_replayed_ != original_replayed_reported_) {
    log::info("port knocks refused as replays (a ciphertext seen before): " + std::to_string(original_replayed_));
    original_replayed_reported_ = original_replayed_;
  }
}

std::string Daemon::bpf() const {
  const Settings& s = current_->settings;
  std::string filter = capture::bpf_filter(*s.ethfilter, s.codec->span().ports());
  std::string udp;
  if (s.spa) udp += "udp dst port " + std::to_string(s.spa_settings.port);
  if (s.fwknop) udp += std::string(udp.empty() ? "" : " or ") + "udp dst port " + std::to_string(s.fwknop_settings.port);
  if (udp.empty() || filter.empty()) return filter;  // empty: no filter at all
  return "(" + filter + ") or (" + udp + ")";
}

int Daemon::run_capture_file() {
  capture::OfflinePcapSource source(*pcap_file_, bpf());
  log::info("reading packets from " + *pcap_file_);
  double last_time = 0;
  auto callback = [&](const capture::Observation& o) {
    // The capture's clock drives the scheduler: what falls due before this packet runs first.
    capture_clock_.set(o.time);
    current_->engine->run_due();
    current_->engine->reap();
    last_time = o.time;
    detector_.observe(o);
  };
  while (!source.exhausted()) {
    source.dispatch(callback, 4096);
    if (auto summary = detector_.tracker().summary_due(last_time)) {
      log::info(*summary);
      log_refusals();
    }
  }
  if (!source.last_error().empty()) log::warning(*pcap_file_ + ": " + source.last_error());
  if (last_time > 0) {
    capture_clock_.set(last_time);
    current_->engine->run_due();
  }
  current_->engine->wait_for_commands();
  report_end(source.stats());
  log_refusals();
  for (const auto& line : current_->engine->pending_descriptions())
    log::info("still pending at the end of the capture: " + line);
  current_->engine->save();
  return kExitOk;
}

std::string Daemon::describe(const capture::CaptureStats& stats) const {
  std::string out = "capture: " + std::to_string(stats.packets) + " packets seen, " +
                    std::to_string(stats.kernel_dropped) + " dropped by the kernel, " +
                    std::to_string(stats.interface_dropped) + " by the interface; not parsed:";
  bool any = false;
  for (std::size_t i = 1; i < stats.by_status.size(); ++i) {
    if (stats.by_status[i] == 0) continue;
    out += " " + std::string(capture::to_string(static_cast<capture::ParseStatus>(i))) + " " +
           std::to_string(stats.by_status[i]);
    any = true;
  }
  if (!any) out += " none";
  return out + "; " + describe_ignored();
}

std::string Daemon::describe(const capture::LogFollower::Stats& stats) const {
  return "log file: " + std::to_string(stats.lines) + " lines read, " + std::to_string(stats.long_lines_skipped) +
         " over-long lines skipped, " + std::to_string(stats.rotations) + " rotations, " +
         std::to_string(stats.truncations) + " truncations; " + describe_ignored();
}

std::string Daemon::describe_ignored() const {
  return "ignored: " + std::to_string(detector_.outside_span()) + " ports outside the span, " + std::to_string(detector_.filtered()) +
         " packets refused by the ethfilter";
}

void Daemon::report_end(const capture::CaptureStats& stats) const {
  log::info(describe(stats));
  const auto& c = detector_.tracker().counters();
  log::info("end of capture: " + std::to_string(stats.packets) + " packets, " + std::to_string(c.ports_queued) +
            " ports queued, " + std::to_string(c.decode_attempts) + " decode attempts, " +
            std::to_string(c.knocks) + " knocks; peak RSS " + std::to_string(peak_rss_kib()) + " KiB");
}

std::vector<std::pair<std::string, std::function<std::unique_ptr<capture::Source>()>>> Daemon::wanted_sources() {
  std::vector<std::pair<std::string, std::function<std::unique_ptr<capture::Source>()>>> out;
  const Settings& s = current_->settings;
  if (s.mode == RunMode::Network) {
    const std::string filter = bpf();
    for (const std::string& name : s.interfaces) {
      std::string key = "network " + name + " " + std::to_string(s.snaplen) + " " + filter;
      out.emplace_back(key, [name, filter, key, snaplen = s.snaplen] {
        capture::LivePcapSource::Options options;
        options.snaplen = snaplen;
        auto live = std::make_unique<capture::LivePcapSource>(name, filter, options);
        log::info("watching interface " + name + " for knocks (filter: " + filter + ")");
        return std::make_unique<capture::PcapSource>(std::move(live), key);
      });
    }
  } else if (s.mode == RunMode::File) {
    std::string key = "file " + s.logfile + " " + std::to_string(s.fileinterval);
    out.emplace_back(key, [this, key, path = s.logfile, interval = s.fileinterval, format = s.logformat_name] {
      capture::LogFollower::Options options;
      options.interval = interval;
      auto follower = std::make_unique<capture::LogFollower>(path, options);
      log::info("watching log file " + path + " for knocks (format " + format + ")");
      // The parser of the generation in force when a line arrives.
      return std::make_unique<capture::LogSource>(
          std::move(follower),
          [this](std::string_view line, double now) { return current_->settings.logformat->parse_line(line, now); },
          key);
    });
  } else {
    std::string key = "nflog " + std::to_string(s.nflog_group);
    out.emplace_back(key, [key, group = s.nflog_group] {
      capture::NflogSource::Options options;
      options.group = static_cast<std::uint16_t>(group);
      auto source = std::make_unique<capture::NflogSource>(options);
      log::info("watching NFLOG group " + std::to_string(group) + " for knocks");
      return source;
    });
  }
  for (const auto& address : s.listen) {
    std::string key = "udp " + address.str();
    out.emplace_back(key, [address] {
      auto source = std::make_unique<capture::UdpSocketSource>(address);
      log::info("listening for single-packet knocks on UDP " + address.str());
      return source;
    });
  }
  return out;
}

void Daemon::open_sources(bool initial) {
  std::vector<OpenSource> next;
  bool missing = false;
  for (auto& wanted : wanted_sources()) {
    const std::string& key = wanted.first;
    auto same = std::find_if(sources_.begin(), sources_.end(), [&](const OpenSource& src) { return src.key == key; });
    if (same != sources_.end()) {
      next.push_back(std::move(*same));
      sources_.erase(same);
      continue;
    }
    try {
      next.push_back({key, wanted.second()});
      sources_changed_ = true;
    } catch (const std::exception& e) {
      if (initial) throw;
      missing = true;
      log::error(std::string("cannot open a source (trying again later): ") + e.what());
    }
  }
  if (missing) {
    for (auto& old : sources_) {
      log::warning("keeping " + old.source->describe() + " until the new sources open");
      next.push_back(std::move(old));
    }
    retry_in_ = retry_in_ == 0 ? 5 : std::min(300.0, retry_in_ * 2);
    next_source_retry_ = wall_clock() + retry_in_;
  } else {
    retry_in_ = 0;
    next_source_retry_ = 0;
  }
  if (!sources_.empty() && !missing) sources_changed_ = true;  // some closed
  sources_ = std::move(next);
  if (sources_.empty()) log::error("no source is open: no knock can be seen until one opens");
}

int Daemon::run_live() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  if (sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) throw RuntimeError("cannot block signals");
  const int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) throw RuntimeError("signalfd: " + errno_message(errno));

  open_sources(true);
  started_at_ = wall_clock();
  open_control();
  // What the commands may hold, for good: the rest leaves the bounding set now (the daemon's
  // own capabilities stay; its worker drops everything anyway).
  if (const auto& keep = current_->settings.command_caps) {
    limit_command_capabilities(*keep);
    log::info("commands run with capabilities bounded to " + bounding_set_hex() + " (commandcaps)");
  }
  privsep_ = current_->settings.privsep;
  watch_priority(wall_clock());  // before the worker is forked and before a drop to `user`
  if (privsep_) return run_monitor(signal_fd);
  if (const auto& user = current_->settings.user) drop_privileges(*user);
  const capture::ObservationCallback on_packet = [this](const capture::Observation& o) { detector_.observe(o); };

  std::vector<pollfd> fds;
  bool running = true;
  while (running) {
    const double now = wall_clock();
    double wait = 1.0;
    if (auto due = current_->engine->next_due()) wait = std::min(wait, *due);
    wait = std::min(wait, current_->engine->next_tick_in());
    wait = std::min(wait, priority_wait(now));
    fds.clear();
    fds.push_back({signal_fd, POLLIN, 0});
    fds.push_back({runner_ ? runner_->poll_fd() : -1, POLLIN, 0});
    for (const auto& src : sources_) {
      fds.push_back({src.source->fd(), POLLIN, 0});
      const double t = src.source->next_timeout(now);
      if (t >= 0) wait = std::min(wait, t);
    }
    if (next_source_retry_ != 0) wait = std::min(wait, std::max(0.0, next_source_retry_ - now));
    // A child's exit closes its stderr pipe slightly before waitpid() can collect it.
    if (runner_ && runner_->busy()) wait = std::min(wait, 0.005);
    if (control_) {
      control_->add_poll_fds(fds);
      wait = std::min(wait, control_->next_timeout(now));
    }
    const int timeout_ms = static_cast<int>(std::ceil(std::max(0.0, wait) * 1000));
    if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) throw RuntimeError("poll: " + errno_message(errno));

    if (fds[0].revents & POLLIN) running = take_signals(signal_fd) && running;
    // Every ready source gets one budget: a flooded source cannot starve the others.
    const double before_dispatch = wall_clock();
    bool failed = false;
    for (std::size_t i = 0; i < sources_.size() && i + 2 < fds.size(); ++i) {
      capture::Source& src = *sources_[i].source;
      if (fds[i + 2].fd != src.fd()) continue;  // a reload replaced the sources this turn
      if (!(fds[i + 2].revents & (POLLIN | POLLERR)) && src.next_timeout(before_dispatch) != 0) continue;
      try {
        src.dispatch(on_packet, 4096);
      } catch (const std::exception& e) {
        // An interface gone, a socket error: that source is closed and reopened later; the
        // daemon (its pending closes above all) goes on.
        log::error(src.describe() + ": " + e.what() + "; closing it, reopening it later");
        sources_[i].source.reset();
        failed = true;
      }
    }
    if (failed) {
      std::erase_if(sources_, [](const OpenSource& src) { return !src.source; });
      retry_in_ = retry_in_ == 0 ? 5 : retry_in_;
      next_source_retry_ = wall_clock() + retry_in_;
    }
    if (next_source_retry_ != 0 && wall_clock() >= next_source_retry_) open_sources(false);
    if (control_) control_->process(fds, wall_clock());

    const double after = wall_clock();
    current_->engine->run_due();
    current_->engine->reap();
    current_->engine->tick();
    watch_priority(after);
    detector_.tracker().expire(after);
    if (auto summary = detector_.tracker().summary_due(after)) {
      log::info(*summary);
      for (const auto& src : sources_) log_source(*src.source);
    }
    // Single-packet refusals have their own summary: no port reaches the tracker for them.
    if (after >= next_refusal_summary_) {
      next_refusal_summary_ = after + std::max(1.0, current_->settings.tracker.summary_interval);
      log_refusals();
    }
  }
  return finish(signal_fd);
}

int Daemon::finish(int signal_fd) {
  // Commands already started get stopwait to finish; whatever is still running or waiting
  // stays recorded as pending and runs again at the next start (at least once).
  // Then they are stopped, so that no open outlives the daemon to finish after the close a
  // restart runs: a close killed here stays pending and runs again at the next start.
  if (!current_->engine->wait_for_commands(current_->stop_wait)) {
    log::warning("stopping with commands still running or queued after " +
                 std::to_string(static_cast<int>(current_->stop_wait)) +
                 "s: killing them; the pending closes among them stay pending in the state cache and run "
                 "again at the next start");
    if (runner_) runner_->kill_all();
    current_->engine->reap();
  }
  log_refusals();
  current_->engine->save();
  close(signal_fd);
  log::info("stopped");
  return kExitOk;
}

bool Daemon::take_signals(int signal_fd) {
  bool go_on = true;
  signalfd_siginfo info;
  while (read(signal_fd, &info, sizeof info) == sizeof info) {
    if (info.ssi_signo == SIGHUP) {
      log::info("SIGHUP");
      reload();
    } else {
      log::info(std::string("stopping on ") + (info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT"));
      go_on = false;
    }
  }
  return go_on;
}

void Daemon::log_source(capture::Source& src) {
  if (auto* pcap = dynamic_cast<capture::PcapSource*>(&src)) return log::info(describe(pcap->packets().stats()));
  if (auto* file = dynamic_cast<capture::LogSource*>(&src)) return log::info(describe(file->follower().stats()));
  log::info(src.describe() + "; " + describe_ignored());
}

std::string Daemon::reload() {
  log::info("reloading " + conf_path_);
  std::string error;
  try {
    adopt(load(false));
    log::info("configuration reloaded");
  } catch (const std::exception& e) {  // ConfigError, or a RuntimeError such as an unusable cache
    error = e.what();
    log::error("reload failed, keeping the running configuration: " + error);
  }
  last_reload_ = format_wall(wall_clock()) + (error.empty() ? ": OK" : ": failed: " + error);
  if (error.empty()) {
    open_sources(false);
    if (privsep_ && worker_pid_ >= 0) {
      // A new configuration, a new worker built from it. New capture handles first (from
      // now on every packet reaches them too), then the old worker reads its own dry and
      // reports, then it ends: no knock falls between the two.
      reopen_unresumable();
      handles_fresh_ = true;
      retire_worker("reload");
      restart_delay_ = 0;
      next_worker_start_ = 0;
    }
  }
  return error;
}

int main(int argc, const char* const* argv) {
  // Started with stdin, stdout or stderr closed, the first descriptors the daemon opens (the
  // runner's epoll, the signalfd, a source, the worker's channel) would take their numbers: log
  // lines written into the channel, a worker allowed to write to a socket at 1 or 2. /dev/null
  // takes them first.
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    const int null = ::open("/dev/null", O_RDWR);
    if (null != fd) {
      std::fprintf(stderr, "knockdaemon: cannot open /dev/null for descriptor %d\n", fd);
      return kExitRuntime;
    }
  }
  log::set_program("knockdaemon");
  mark_all_close_on_exec();
  try {
    const cli::ParsedArgs args = cli::parse(argc, argv, kOptions);
    if (!args.positional.empty()) throw ConfigError("unexpected argument '" + args.positional.front() + "' (try -h)");
    if (args.has("h") || args.has("help")) {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    if (args.has("version")) {
      std::puts("knockdaemon " PORTKNOCK_VERSION);
      return kExitOk;
    }
    if (args.has("man")) {
      manpages::print(manpages::daemon());
      return kExitOk;
    }
    if (args.has("debug") && args.has("quiet")) throw ConfigError("-debug and -quiet exclude each other");
    if (args.has("debug")) log::set_level(log::Level::Debug);
    if (args.has("quiet")) log::set_level(log::Level::Error);
    // -check and -dumpconfig answer in one line (or JSON) unless asked for more.
    if ((args.has("check") || args.has("dumpconfig")) && !args.has("debug")) log::set_level(log::Level::Warning);

    std::string conf_path;
    if (auto explicit_path = args.get("conf")) {
      conf_path = *explicit_path;
    } else if (auto found = cli::find_config("knockdaemon")) {
      conf_path = *found;
    } else {
      std::string tried;
      for (const auto& candidate : cli::config_search_list("knockdaemon")) tried += " " + candidate;
      throw ConfigError("no configuration file found (looked for:" + tried + "); use -conf FILE");
    }
    if (args.has("dumpconfig")) {
      std::fputs(config::to_json(config::parse_file(conf_path)).c_str(), stdout);
      return kExitOk;
    }
    log::info("configuration: " + conf_path);
    Daemon daemon(conf_path, args.has("test") || args.has("check"), args.has("fresh"), args.get("pcap"));
    if (args.has("check")) {
      daemon.load();
      std::printf("%s: configuration OK\n", conf_path.c_str());
      return kExitOk;
    }
    return daemon.run();
  } catch (const ConfigError& e) {
    const bool located = !e.where().file.empty();
    std::fprintf(stderr, "%s%s\n", located ? "" : "knockdaemon: ", e.what());
    return kExitUsage;
  } catch (const RuntimeError& e) {
    std::fprintf(stderr, "knockdaemon: %s\n", e.what());
    return kExitRuntime;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "knockdaemon: internal error: %s\n", e.what());
    return kExitRuntime;
  }
}

}  // namespace knock::daemon
