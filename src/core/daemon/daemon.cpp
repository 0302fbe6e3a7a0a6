#include "daemon/daemon.hpp"

#include <dirent.h>
#include <grp.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <tuple>

#include "capture/logfollow.hpp"
#include "capture/nflog.hpp"
#include "capture/pcap_source.hpp"
#include "capture/source.hpp"
#include "capture/udp_source.hpp"
#include "config/tree.hpp"
#include "daemon/control.hpp"
#include "daemon/detector.hpp"
#include "daemon/privileges.hpp"
#include "daemon/privsep.hpp"
#include "daemon/sandbox.hpp"
#include "daemon/settings.hpp"
#include "rules/engine.hpp"
#include "tracker/tracker.hpp"
#include "util/cli.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
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

double wall_clock() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

// Knock-to-action latency: from the packet's capture to the engine having run or queued the
// knock's responses (Prometheus buckets, seconds).
struct Histogram {
  static constexpr std::array<double, 14> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                     0.025,  0.05,    0.1,    0.25,  0.5,   1,     5};
  std::array<std::uint64_t, kBounds.size()> counts{};  // per bucket, not cumulative
  double sum = 0;
  std::uint64_t count = 0;
  void observe(double seconds) noexcept {
    if (!(seconds >= 0) || seconds > 3600) return;
    for (std::size_t i = 0; i < kBounds.size(); ++i) {
      if (seconds <= kBounds[i]) {
        ++counts[i];
        break;
      }
    }
    sum += seconds;
    ++count;
  }
};

long peak_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// One generation of configuration: replaced as a whole on SIGHUP.
struct Generation {
  config::Value root;
  Settings settings;
  std::unique_ptr<rules::Engine> engine;
  double stop_wait = 10;  // stopwait: how long SIGTERM waits for running commands
};

class Daemon final : public KnockSink {
 public:
  Daemon(std::string conf_path, bool test_mode, bool fresh, std::optional<std::string> pcap_file)
      : conf_path_(std::move(conf_path)), test_mode_(test_mode), fresh_(fresh), pcap_file_(std::move(pcap_file)) {
    // The command runner outlives every generation: a reload hands it, with its running
    // children and its queue, to the next configuration.
    if (!test_mode_) runner_ = std::make_unique<rules::ShellRunner>();
    if (pcap_file_) clock_ = &capture_clock_;
  }

  // Reads and validates everything; throws ConfigError.
  std::unique_ptr<Generation> load(bool initial = true) const {
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

  void adopt(std::unique_ptr<Generation> next) {
    if (current_) next->engine->take_over(*current_->engine);
    std::unique_ptr<Generation> old = std::move(current_);
    current_ = std::move(next);
    detector_.configure(current_->settings);  // (compares with the old settings, still alive here)
  }

  int run() {
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

 private:
  // A knock the detectors verified. In a worker it goes to the monitor, as one message; in a
  // single process (privsep = no, -pcap) straight to accept().
  void report(privsep::KnockKind kind, bool by_ports, const rules::KnockEvent& event) noexcept override {
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

  // The rules' side of a knock: replay cache, the log line, the engine (all or nothing).
  void accept(privsep::KnockKind kind, bool by_ports, const rules::KnockEvent& event, double captured = -1) noexcept {
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

  // The single-packet lines of a summary, when anything changed since the last.
  void log_refusals() {
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

  std::string bpf() const {
    const Settings& s = current_->settings;
    std::string filter = capture::bpf_filter(*s.ethfilter, s.codec->span().ports());
    std::string udp;
    if (s.spa) udp += "udp dst port " + std::to_string(s.spa_settings.port);
    if (s.fwknop) udp += std::string(udp.empty() ? "" : " or ") + "udp dst port " + std::to_string(s.fwknop_settings.port);
    if (udp.empty() || filter.empty()) return filter;  // empty: no filter at all
    return "(" + filter + ") or (" + udp + ")";
  }

  int run_capture_file() {
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

  std::string describe(const capture::CaptureStats& stats) const {
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

  std::string describe(const capture::LogFollower::Stats& stats) const {
    return "log file: " + std::to_string(stats.lines) + " lines read, " + std::to_string(stats.long_lines_skipped) +
           " over-long lines skipped, " + std::to_string(stats.rotations) + " rotations, " +
           std::to_string(stats.truncations) + " truncations; " + describe_ignored();
  }

  // Observations the daemon set aside before the tracker.
  std::string describe_ignored() const {
    return "ignored: " + std::to_string(detector_.outside_span()) + " ports outside the span, " + std::to_string(detector_.filtered()) +
           " packets refused by the ethfilter";
  }

  void report_end(const capture::CaptureStats& stats) const {
    log::info(describe(stats));
    const auto& c = detector_.tracker().counters();
    log::info("end of capture: " + std::to_string(stats.packets) + " packets, " + std::to_string(c.ports_queued) +
              " ports queued, " + std::to_string(c.decode_attempts) + " decode attempts, " +
              std::to_string(c.knocks) + " knocks; peak RSS " + std::to_string(peak_rss_kib()) + " KiB");
  }

  // The sources this generation asks for, by key: a reload keeps those whose key is unchanged.
  std::vector<std::pair<std::string, std::function<std::unique_ptr<capture::Source>()>>> wanted_sources() {
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

  // Opens what the generation asks for and is not open yet; closes what it no longer asks for.
  // Sources are matched by the key the daemon computed for them (wanted_sources). At start a
  // source that cannot be opened is fatal. On a reload, or when a source failed while running,
  // a source that cannot be opened is logged and tried again later (5 s, doubling to 5 min), and
  // the sources it was to replace are kept meanwhile: the daemon never goes deaf by a reload.
  void open_sources(bool initial) {
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

  int run_live() {
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

  int finish(int signal_fd) {
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

  // SIGHUP reloads; SIGTERM and SIGINT stop (false).
  bool take_signals(int signal_fd) {
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

  // ---- knockctl (daemon/control.hpp) ----

  void open_control() {
    const Settings& s = current_->settings;
    if (test_mode_ || pcap_file_ || s.control_socket.empty()) return;
    ControlServer::Options options;
    options.path = s.control_socket;
    try {
      if (s.control_group) {
        const group* gr = ::getgrnam(s.control_group->c_str());
        if (gr == nullptr) throw RuntimeError("controlgroup = " + *s.control_group + ": no such group");
        options.group = gr->gr_gid;
      }
      control_ = std::make_unique<ControlServer>(options, [this](std::string_view request) { return control(request); });
      log::info("control socket: " + s.control_socket + " (knockctl)");
    } catch (const std::exception& e) {
      // The door works without it: only knockctl is missing. A second daemon on the default
      // path (tests, a second instance) is told so quietly; a configured path that fails is an error.
      const std::string why = e.what();
      if (!s.control_socket_set && why.find("another daemon answers") != std::string::npos)
        log::info("no control socket: another daemon answers on " + s.control_socket + " (set controlsocket)");
      else
        log::error("no control socket, knockctl unavailable: " + why);
    }
  }

  static std::string format_wall(double t) {
    const auto secs = static_cast<std::time_t>(t);
    struct tm tm_local {};
    localtime_r(&secs, &tm_local);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm_local);
    return stamp;
  }

  // The sources' and the tracker's totals (in the process that reads the sources).
  privsep::Counters source_totals() {
    privsep::Counters c;
    for (const auto& src : sources_) {
      const capture::SourceStats st = src.source->stats();
      c.packets += st.received;
      c.dropped += st.dropped;
    }
    if (detector_.configured()) {
      c.ports_queued = detector_.tracker().counters().ports_queued;
      c.knocks = detector_.tracker().counters().knocks;
      c.tracked = detector_.tracker().size();
    }
    return c;
  }

  std::string control(std::string_view request) {
    std::vector<std::string> words;
    for (std::size_t at = 0; at < request.size();) {
      const std::size_t space = request.find(' ', at);
      const std::size_t end = space == std::string_view::npos ? request.size() : space;
      if (end > at) words.emplace_back(request.substr(at, end - at));
      at = end + 1;
    }
    const bool json = !words.empty() && words.back() == "json";
    if (json) words.pop_back();
    if (words.empty()) return "error: empty request\n";
    const std::string& verb = words[0];
    if (verb == "status" && words.size() == 1) return control_status(json);
    if (verb == "list" && words.size() == 1) return control_list(json);
    if (verb == "metrics" && words.size() == 1) return control_metrics();
    if (verb == "reload" && words.size() == 1) {
      log::info("knockctl reload");
      const std::string error = reload();
      if (json) return "{\"reloaded\": " + std::string(error.empty() ? "true" : "false") +
                       (error.empty() ? std::string() : ", \"error\": " + config::json_string(error)) + "}\n";
      return error.empty() ? "reloaded " + conf_path_ + "\n" : "error: " + error + "\n";
    }
    if (verb == "close" && words.size() == 2) {
      std::string who;
      if (words[1] != "all") {
        const auto address = IpAddress::parse(words[1]);
        if (!address) return "error: '" + words[1] + "' is neither an IP address nor all\n";
        who = address->str();
      }
      const std::size_t n = current_->engine->run_now(
          [&](const rules::PendingCommand& p) { return who.empty() || p.target == who || p.who == who; });
      const std::string target = who.empty() ? "every address" : who;
      log::info("knockctl close " + target + ": " + std::to_string(n) + " pending responses run now");
      if (json) return "{\"closed\": " + std::to_string(n) + ", \"address\": " + config::json_string(target) + "}\n";
      return std::to_string(n) + " pending response" + (n == 1 ? "" : "s") + " for " + target + " run now\n";
    }
    return "error: unknown request '" + std::string(request.substr(0, 64)) +
           "' (status, list, close ADDRESS|all, reload, metrics; json)\n";
  }

  std::string control_status(bool json) {
    const Settings& s = current_->settings;
    const privsep::Counters sources = all_source_counters();
    const auto& engine = *current_->engine;
    const char* mode = s.mode == RunMode::Network ? "network" : s.mode == RunMode::File ? "file" : "nflog";
    std::vector<std::string> source_names;
    for (const auto& src : sources_) source_names.push_back(src.key);
    const std::uint64_t accepted = detector_.spa_refusals().accepted + detector_.fwknop_refusals().accepted + original_accepted_;
    if (json) {
      std::string out = "{\"version\": \"" PORTKNOCK_VERSION "\", \"config\": " + config::json_string(conf_path_) +
                        ", \"started\": " + std::to_string(static_cast<std::int64_t>(started_at_)) +
                        ", \"last_reload\": " + config::json_string(last_reload_) + ", \"mode\": \"" + mode +
                        "\", \"privsep\": " + (privsep_ ? "true" : "false") +
                        ", \"worker_pid\": " + std::to_string(privsep_ ? worker_pid_ : -1) +
                        ", \"worker_restarts\": " + std::to_string(worker_restarts_) + ", \"sources\": [";
      for (std::size_t i = 0; i < source_names.size(); ++i) out += (i ? ", " : "") + config::json_string(source_names[i]);
      out += "], \"packets\": " + std::to_string(sources.packets) + ", \"dropped\": " + std::to_string(sources.dropped) +
             ", \"tracked_sources\": " + std::to_string(sources.tracked) +
             ", \"pending\": " + std::to_string(engine.scheduler().size()) +
             ", \"running\": " + std::to_string(engine.scheduler().started()) +
             ", \"state_keys\": " + std::to_string(engine.state().size()) +
             ", \"replay_cache\": " + std::to_string(engine.replay_cache().size()) +
             ", \"knocks_accepted\": " + std::to_string(accepted) +
             ", \"knocks_refused_by_rules\": " + std::to_string(engine.refused_knocks()) + "}\n";
      return out;
    }
    std::string out = "knockdaemon " PORTKNOCK_VERSION "\n";
    out += "config:          " + conf_path_ + " (started " + format_wall(started_at_) + "; last reload " + last_reload_ + ")\n";
    out += "mode:            " + std::string(mode);
    if (privsep_)
      out += ", privilege separation: worker " + (worker_pid_ >= 0 ? std::to_string(worker_pid_) : std::string("(restarting)")) +
             ", " + std::to_string(worker_restarts_) + " restarts";
    out += "\n";
    for (const auto& name : source_names) out += "source:          " + name + "\n";
    out += "packets:         " + std::to_string(sources.packets) + " read, " + std::to_string(sources.dropped) +
           " dropped by the kernel\n";
    out += "tracked sources: " + std::to_string(sources.tracked) + "\n";
    out += "pending:         " + std::to_string(engine.scheduler().size()) + " responses (" +
           std::to_string(engine.scheduler().started()) + " running)\n";
    out += "state keys:      " + std::to_string(engine.state().size()) + "\n";
    out += "replay cache:    " + std::to_string(engine.replay_cache().size()) + " identities\n";
    out += "knocks:          " + std::to_string(accepted) + " accepted, " + std::to_string(engine.refused_knocks()) +
           " refused by the rules\n";
    return out;
  }

  std::string control_list(bool json) {
    const auto pending = current_->engine->pending();
    std::string out = json ? "[" : "";
    if (!json) out += "ADDRESS                CLIENT       KNOCKED              CLOSES               RESPONSE\n";
    bool first = true;
    for (const auto& p : pending) {
      if (json) {
        out += std::string(first ? "" : ", ") + "{\"address\": " + config::json_string(p.target) +
               ", \"from\": " + config::json_string(p.who) +
               ", \"client\": " + config::json_string(p.client) +
               ", \"knocked\": " + std::to_string(static_cast<std::int64_t>(p.knocked)) +
               ", \"due\": " + std::to_string(static_cast<std::int64_t>(p.due)) +
               ", \"origin\": " + config::json_string(p.origin) + ", \"command\": " + config::json_string(p.command) +
               ", \"nft\": " + (p.nft ? "true" : "false") + "}";
      } else {
        char line[512];
        const std::string address = p.target.empty() ? "?" : p.target == p.who ? p.target : p.target + " (from " + p.who + ")";
        std::snprintf(line, sizeof line, "%-22s %-12s %-20s %-20s %s: %s\n", address.c_str(),
                      p.client.empty() ? "-" : p.client.c_str(), p.knocked > 0 ? format_wall(p.knocked).c_str() : "?",
                      format_wall(p.due).c_str(), p.origin.c_str(), p.command.substr(0, 200).c_str());
        out += line;
      }
      first = false;
    }
    if (json) out += "]\n";
    return out;
  }

  std::string control_metrics() {
    const privsep::Counters sources = all_source_counters();
    const auto& engine = *current_->engine;
    std::string out;
    auto metric = [&](const char* name, const char* type, const char* help) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    };
    auto line = [&](const std::string& name, std::uint64_t v) { out += name + " " + std::to_string(v) + "\n"; };
    metric("portknock_knocks_accepted_total", "counter", "Knocks the rules accepted, by kind.");
    line("portknock_knocks_accepted_total{kind=\"original\"}", original_accepted_);
    line("portknock_knocks_accepted_total{kind=\"spa\"}", detector_.spa_refusals().accepted);
    line("portknock_knocks_accepted_total{kind=\"fwknop\"}", detector_.fwknop_refusals().accepted);
    metric("portknock_knocks_refused_total", "counter", "Knocks refused, by kind and reason.");
    for (std::size_t i = 1; i < detector_.spa_refusals().by_reason.size(); ++i) {
      if (detector_.spa_refusals().by_reason[i] == 0) continue;
      line("portknock_knocks_refused_total{kind=\"spa\",reason=\"" +
               std::string(spa::to_string(static_cast<spa::Reason>(i))) + "\"}",
           detector_.spa_refusals().by_reason[i]);
    }
    for (std::size_t i = 1; i < detector_.fwknop_refusals().by_reason.size(); ++i) {
      if (detector_.fwknop_refusals().by_reason[i] == 0) continue;
      line("portknock_knocks_refused_total{kind=\"fwknop\",reason=\"" +
               std::string(fwknop::to_string(static_cast<fwknop::Reason>(i))) + "\"}",
           detector_.fwknop_refusals().by_reason[i]);
    }
    line("portknock_knocks_refused_total{kind=\"spa\",reason=\"replayed\"}", detector_.spa_refusals().replayed);
    line("portknock_knocks_refused_total{kind=\"fwknop\",reason=\"replayed\"}", detector_.fwknop_refusals().replayed);
    line("portknock_knocks_refused_total{kind=\"original\",reason=\"replayed\"}", original_replayed_);
    line("portknock_knocks_refused_total{kind=\"any\",reason=\"rules\"}", engine.refused_knocks());
    line("portknock_knocks_refused_total{kind=\"any\",reason=\"fleet replay\"}", engine.fleet_replays());
    line("portknock_knocks_refused_total{kind=\"any\",reason=\"store unavailable\"}", engine.store_refusals());
    metric("portknock_store_fallbacks_total", "counter", "Knocks judged locally because the shared store was unavailable.");
    line("portknock_store_fallbacks_total", engine.store_fallbacks());
    metric("portknock_fleet_knocks_total", "counter", "Knocks other gateways accepted and shared (fleet), by outcome here.");
    line("portknock_fleet_knocks_total{outcome=\"run\"}", engine.fleet_followed());
    line("portknock_fleet_knocks_total{outcome=\"malformed\"}", engine.fleet_malformed());
    line("portknock_fleet_knocks_total{outcome=\"dropped\"}", engine.fleet_dropped());
    metric("portknock_packets_total", "counter", "Packets, NFLOG messages, datagrams or log lines the sources read.");
    line("portknock_packets_total", sources.packets);
    metric("portknock_packets_dropped_total", "counter", "Lost in the kernel's queues before the daemon read them.");
    line("portknock_packets_dropped_total", sources.dropped);
    metric("portknock_ports_queued_total", "counter", "Ports of the span the tracker took.");
    line("portknock_ports_queued_total", sources.ports_queued);
    metric("portknock_tracked_sources", "gauge", "Sources the tracker follows now.");
    line("portknock_tracked_sources", sources.tracked);
    metric("portknock_commands_total", "counter", "Commands (shell and nft) that finished, by result.");
    line("portknock_commands_total{result=\"ok\"}", runner_ ? runner_->succeeded() : 0);
    line("portknock_commands_total{result=\"failed\"}", runner_ ? runner_->failed() : 0);
    metric("portknock_pending_responses", "gauge", "Delayed responses (closes) waiting or running.");
    line("portknock_pending_responses", engine.scheduler().size());
    metric("portknock_state_keys", "gauge", "Keys in the state tree.");
    line("portknock_state_keys", engine.state().size());
    metric("portknock_replay_cache_entries", "gauge", "Identities in the replay cache.");
    line("portknock_replay_cache_entries", engine.replay_cache().size());
    metric("portknock_worker_restarts_total", "counter", "Workers that ended and were replaced.");
    line("portknock_worker_restarts_total", worker_restarts_);
    metric("portknock_knock_to_action_seconds", "histogram",
           "From a knock's capture to its responses run or queued by the rules.");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i) {
      cumulative += latency_.counts[i];
      char le[32];
      std::snprintf(le, sizeof le, "%g", Histogram::kBounds[i]);
      line(std::string("portknock_knock_to_action_seconds_bucket{le=\"") + le + "\"}", cumulative);
    }
    line("portknock_knock_to_action_seconds_bucket{le=\"+Inf\"}", latency_.count);
    char sum[64];
    std::snprintf(sum, sizeof sum, "%.9f", latency_.sum);
    out += std::string("portknock_knock_to_action_seconds_sum ") + sum + "\n";
    line("portknock_knock_to_action_seconds_count", latency_.count);
    return out;
  }

  // ---- privilege separation (doc/SECURITY.md, "Two processes") ----

  // The monitor: holds the configuration, the engine, the runner and the sources' descriptors;
  // never reads a packet or a log line. Its worker reads them and reports knocks.
  int run_monitor(int signal_fd) {
    log::info("privilege separation: packets and log lines are read by a confined worker process");
    start_worker();
    bool running = true;
    std::vector<pollfd> fds;
    while (running) {
      const double now = wall_clock();
      double wait = 1.0;
      if (auto due = current_->engine->next_due()) wait = std::min(wait, *due);
      wait = std::min(wait, current_->engine->next_tick_in());
      if (next_source_retry_ != 0) wait = std::min(wait, std::max(0.0, next_source_retry_ - now));
      if (worker_pid_ < 0) wait = std::min(wait, std::max(0.0, next_worker_start_ - now));
      if (runner_ && runner_->busy()) wait = std::min(wait, 0.005);
      fds.clear();
      fds.push_back({signal_fd, POLLIN, 0});
      fds.push_back({runner_ ? runner_->poll_fd() : -1, POLLIN, 0});
      fds.push_back({worker_pid_ >= 0 ? monitor_sock_ : -1, POLLIN, 0});
      if (control_) {
        control_->add_poll_fds(fds);
        wait = std::min(wait, control_->next_timeout(now));
      }
      const int timeout_ms = static_cast<int>(std::ceil(std::max(0.0, wait) * 1000));
      if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) throw RuntimeError("poll: " + errno_message(errno));

      if (fds[0].revents & POLLIN) running = take_signals(signal_fd) && running;
      if (worker_pid_ >= 0 && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) serve_worker();
      if (next_source_retry_ != 0 && wall_clock() >= next_source_retry_) {
        open_sources(false);
        if (sources_changed_) stop_worker("sources reopened");
      }
      if (control_) control_->process(fds, wall_clock());
      if (worker_pid_ < 0 && running && wall_clock() >= next_worker_start_) start_worker();

      current_->engine->run_due();
      current_->engine->reap();
      current_->engine->tick();
      const double after = wall_clock();
      if (after >= next_refusal_summary_) {
        next_refusal_summary_ = after + std::max(1.0, current_->settings.tracker.summary_interval);
        log_refusals();
      }
    }
    stop_worker("");
    return finish(signal_fd);
  }

  // Forks a worker from this generation. Sources whose read position the last worker took
  // with it (pcap) are reopened first.
  void start_worker() {
    if (workers_started_ > 0 && !handles_fresh_) reopen_unresumable();
    handles_fresh_ = false;
    if (sources_.empty()) {
      next_worker_start_ = wall_clock() + 5;
      return;
    }
    WorkerAccount account;
    try {
      account = worker_account(current_->settings.user);
    } catch (const std::exception& e) {
      log::error(std::string("cannot start the worker: ") + e.what() + "; trying again in 60 s");
      next_worker_start_ = wall_clock() + 60;
      return;
    }
    const auto channel = privsep::make_channel();
    const pid_t monitor = getpid();
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
      ::close(channel[0]);
      ::close(channel[1]);
      log::error("cannot start the worker: fork: " + errno_message(errno) + "; trying again in 5 s");
      next_worker_start_ = wall_clock() + 5;
      return;
    }
    if (pid == 0) {
      ::close(channel[0]);
      _exit(worker_main(channel[1], monitor, account));
    }
    ::close(channel[1]);
    monitor_sock_ = channel[0];
    worker_pid_ = pid;
    worker_started_ = wall_clock();
    ++workers_started_;
    sources_changed_ = false;
    log::info("worker " + std::to_string(pid) + " started (user " +
              (account.name.empty() ? std::to_string(account.uid) : account.name) + ")");
    if (account.name == "nobody" && !current_->settings.user && !warned_nobody_) {
      warned_nobody_ = true;
      log::warning("the worker runs as nobody, an account other services share (they could signal it): create the "
                   "system user portknock (the Debian package does) or set user = NAME");
    }
  }

  // Ends the worker (SIGKILL: it holds nothing to save) and collects how it ended. `why`
  // empty: a normal stop, not logged as trouble.
  void stop_worker(const std::string& why) {
    if (worker_pid_ < 0) return;
    ::kill(worker_pid_, SIGKILL);
    int status = 0;
    while (waitpid(worker_pid_, &status, 0) < 0 && errno == EINTR) {
    }
    if (!why.empty()) log::info("worker " + std::to_string(worker_pid_) + " stopped (" + why + ")");
    fold_worker_counters();
    ::close(monitor_sock_);
    monitor_sock_ = -1;
    worker_pid_ = -1;
  }

  // The worker's socket is readable: its messages, or its end.
  void serve_worker() {
    if (take_reports()) worker_ended();
  }

  // Takes the worker's messages that are there (at most 1024). True when it ended (EOF).
  bool take_reports() {
    for (int budget = 0; budget < 1024; ++budget) {
      int fd = -1;
      const long n = privsep::receive_message(monitor_sock_, in_, &fd);
      if (n < 0) return false;  // drained
      if (fd >= 0) ::close(fd);  // the worker never sends descriptors
      if (n == 0) return true;
      const auto message = std::span<const std::uint8_t>(in_.data(), static_cast<std::size_t>(n));
      std::string why;
      if (n > static_cast<long>(privsep::kMaxMessage)) {
        why = "an oversized message";
      } else if (privsep::type_of(message) == static_cast<std::uint8_t>(privsep::Type::Knock)) {
        privsep::KnockReport report;
        if (privsep::decode_knock(message, report, why) && allowed(report, why)) {
          // The monitor's clock, not the worker's (whose capture time only feeds the latency).
          const double captured = report.event.time;
          report.event.time = wall_clock();
          accept(report.kind, report.by_ports, report.event,
                 captured <= report.event.time && captured > report.event.time - 60 ? captured : report.event.time);
        }
      } else if (privsep::type_of(message) == static_cast<std::uint8_t>(privsep::Type::Counters)) {
        if (auto counters = privsep::decode_counters(message, why)) {
          take_counters(detector_.spa_refusals(), counters->spa);
          take_counters(detector_.fwknop_refusals(), counters->fwknop);
          worker_counters_ = *counters;
        }
      } else if (privsep::type_of(message) == static_cast<std::uint8_t>(privsep::Type::LogCheck)) {
        if (auto check = privsep::decode_log_check(message, why)) answer_log_check(*check, why);
      } else {
        why = "an unknown message type " + std::to_string(privsep::type_of(message));
      }
      if (!why.empty()) {
        log::error("worker " + std::to_string(worker_pid_) + " broke the protocol (" + why +
                   "): killing it; a new one starts");
        ++protocol_violations_;
        stop_worker("");
        schedule_worker_restart();
        return false;
      }
    }
    return false;
  }

  // A reload's end of a worker: its write side shut, it reads its sources dry, reports what it
  // found and exits; the monitor takes those reports for at most 2 s, then ends it anyway (a
  // stopped or hung worker loses what it had not read yet).
  void retire_worker(const std::string& why) {
    if (worker_pid_ < 0) return;
    ::shutdown(monitor_sock_, SHUT_WR);
    const double deadline = wall_clock() + 2;
    for (;;) {
      if (worker_pid_ < 0) return;  // it broke the protocol meanwhile (stopped already)
      if (take_reports()) break;
      const double left = deadline - wall_clock();
      if (left <= 0) {
        log::warning("worker " + std::to_string(worker_pid_) + " did not finish its last reads within 2 s");
        break;
      }
      pollfd p{monitor_sock_, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::ceil(left * 1000)));
    }
    stop_worker(why);
  }

  static void take_counters(Refusals& into, const privsep::Counters::Kind& from) {
    static_assert(privsep::Counters::kReasons == std::tuple_size_v<decltype(Refusals::by_reason)>);
    into.by_reason = from.by_reason;
    into.earliest = from.earliest;
    into.latest = from.latest;
  }
  static void give_counters(const Refusals& from, privsep::Counters::Kind& into) {
    into.by_reason = from.by_reason;
    into.earliest = from.earliest;
    into.latest = from.latest;
  }

  // A worker's source counters start at zero (fresh capture handles): the monitor keeps the
  // totals of the workers before.
  void fold_worker_counters() {
    counters_base_.packets += worker_counters_.packets;
    counters_base_.dropped += worker_counters_.dropped;
    counters_base_.ports_queued += worker_counters_.ports_queued;
    counters_base_.knocks += worker_counters_.knocks;
    worker_counters_.packets = worker_counters_.dropped = worker_counters_.ports_queued = 0;
    worker_counters_.knocks = worker_counters_.tracked = 0;
  }
  privsep::Counters all_source_counters() {
    if (!privsep_) return source_totals();
    privsep::Counters c = worker_counters_;
    c.packets += counters_base_.packets;
    c.dropped += counters_base_.dropped;
    c.ports_queued += counters_base_.ports_queued;
    c.knocks += counters_base_.knocks;
    return c;
  }

  // What the configuration accepts from a worker: only knock kinds it has, names it defines,
  // replay identities where the kind has them, an expiry within what a kind keeps.
  bool allowed(privsep::KnockReport& r, std::string& why) const {
    const Settings& s = current_->settings;
    auto no_names = [&] { return r.client.empty() && r.proto.empty() && r.user.empty() && !r.event.extras.client_timeout; };
    switch (r.kind) {
      case privsep::KnockKind::Original:
        if (s.spa_ports || r.by_ports || !no_names()) why = "a port knock the configuration does not take";
        else if (r.event.replay_count != 0 && !s.original_iv) why = "replay identities on a knock without an IV";
        break;
      case privsep::KnockKind::Spa: {
        if (!s.spa || (r.by_ports && !s.spa_ports) || !r.proto.empty() || !r.user.empty() ||
            r.event.extras.client_timeout || r.event.replay_count != 1) {
          why = "a single-packet knock the configuration does not take";
          break;
        }
        bool known = false;
        for (std::size_t i = 0; i < s.keyring->size(); ++i) known = known || s.keyring->name(i) == r.client;
        if (!known) why = "a single-packet knock from an unknown client";
        break;
      }
      case privsep::KnockKind::Fwknop: {
        if (!s.fwknop || r.by_ports || r.event.replay_count != 1) {
          why = "an fwknop packet the configuration does not take";
          break;
        }
        const fwknop::Stanza* stanza = nullptr;
        for (std::size_t i = 0; i < s.stanzas->size() && stanza == nullptr; ++i)
          if (s.stanzas->name(i) == r.client) stanza = &s.stanzas->stanza(i);
        if (stanza == nullptr) {
          why = "an fwknop packet for an unknown stanza";
          break;
        }
        // What the stanza lets its key holder ask for, checked again here: the verifier that
        // refuses the rest runs in the worker.
        why = fwknop_outside(*stanza, r);
        break;
      }
    }
    if (!why.empty()) return false;
    // The identities are kept until replay_expiry: never longer than the longest keep, never in the past.
    const auto now = static_cast<std::int64_t>(wall_clock());
    const auto longest = static_cast<std::int64_t>(std::max<double>(s.replay_keep, spa::kReplayKeep)) + 600;
    r.event.replay_expiry = std::clamp<std::int64_t>(r.event.replay_expiry, now, now + longest);
    return true;
  }

  // Why an fwknop report asks for more than `stanza` allows its key holder ("" when it does
  // not): the source, the user, the address, the proto/port, the client timeout.
  static std::string fwknop_outside(const fwknop::Stanza& stanza, const privsep::KnockReport& r) {
    const auto& values = r.event.values.value;
    const auto ip = values[static_cast<std::size_t>(codec::Field::Ip)];
    const auto port = values[static_cast<std::size_t>(codec::Field::Port)];
    for (std::size_t i = 0; i < values.size(); ++i)
      if (values[i] && i != static_cast<std::size_t>(codec::Field::Ip) && i != static_cast<std::size_t>(codec::Field::Port))
        return "an fwknop packet with fields it does not carry";
    if (!stanza.source_allowed(r.event.logip)) return "an fwknop packet from outside its stanza's source";
    if (!stanza.require_user.empty() && r.user != stanza.require_user) return "an fwknop packet for another user";
    if (!ip || *ip == 0) return "an fwknop packet without an address to open";
    if (r.proto.empty() != !port) return "an fwknop packet with a port and no proto, or the reverse";
    if (port) {
      fwknop::PortRequest request;
      if (r.proto == fwknop::proto_name(fwknop::Proto::Tcp)) {
        request.proto = fwknop::Proto::Tcp;
      } else if (r.proto == fwknop::proto_name(fwknop::Proto::Udp)) {
        request.proto = fwknop::Proto::Udp;
      } else {
        return "an fwknop packet with an unknown proto";
      }
      request.port = static_cast<std::uint16_t>(*port);
      if (!stanza.port_allowed(request)) return "an fwknop packet for a port its stanza does not open";
    }
    const auto timeout = r.event.extras.client_timeout;
    if (!timeout || (*timeout != stanza.fw_access_timeout && (*timeout == 0 || *timeout > stanza.max_client_timeout)))
      return "an fwknop packet with a client timeout its stanza does not allow";
    return "";
  }

  // LOG_CHECK: the monitor looks at the log's name with its own privileges and hands a new
  // file to the worker; its own follower takes the same file, so a restarted worker resumes it.
  void answer_log_check(const privsep::LogCheck& check, std::string& why) {
    capture::LogSource* file = nullptr;
    for (auto& src : sources_)
      if (auto* f = dynamic_cast<capture::LogSource*>(src.source.get())) file = f;
    if (file == nullptr) {
      why = "a log check without a log file";
      return;
    }
    const int fd = file->follower().open_new_at_name(static_cast<dev_t>(check.dev), static_cast<ino_t>(check.ino));
    int copy = -1;
    if (fd >= 0) {
      copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
      file->follower().adopt(fd, false);
    }
    const std::uint8_t reply[3] = {static_cast<std::uint8_t>(privsep::Type::LogReply), privsep::kVersion,
                                   static_cast<std::uint8_t>(copy >= 0 ? 1 : 0)};
    // Never blocks: a worker that does not read its answers is broken (and killed).
    if (!privsep::send_message(monitor_sock_, std::span(reply, sizeof reply), copy, MSG_DONTWAIT))
      why = "it does not read the answers to its log checks (" + errno_message(errno) + ")";
    if (copy >= 0) ::close(copy);
  }

  // The worker's socket closed: how did it end? A new one starts after a back-off.
  void worker_ended() {
    const pid_t pid = worker_pid_;
    ::kill(pid, SIGKILL);  // a worker that closed its socket but lives on is ended all the same
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::string how;
    if (WIFEXITED(status)) {
      how = "exited with status " + std::to_string(WEXITSTATUS(status));
      if (WEXITSTATUS(status) == kWorkerSourceFailed) how += " (a source failed: reopening the sources)";
    } else if (WIFSIGNALED(status)) {
      how = std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
      if (WTERMSIG(status) == SIGSYS) how += ": a system call its seccomp filter forbids";
    }
    fold_worker_counters();
    ::close(monitor_sock_);
    monitor_sock_ = -1;
    worker_pid_ = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == kWorkerSourceFailed) {
      sources_.clear();
      open_sources(false);
    }
    schedule_worker_restart();
    ++worker_restarts_;
    log::error("worker " + std::to_string(pid) + " " + how + "; a new one starts in " +
               std::to_string(static_cast<int>(std::ceil(next_worker_start_ - wall_clock()))) +
               " s; pending closes are the monitor's and still run");
  }

  // At once after a worker that lived a minute; else 1, 2, 4 ... 60 s.
  void schedule_worker_restart() {
    const double now = wall_clock();
    if (now - worker_started_ >= 60) restart_delay_ = 0;
    next_worker_start_ = now + restart_delay_;
    restart_delay_ = restart_delay_ == 0 ? 1 : std::min(60.0, restart_delay_ * 2);
  }

  // pcap keeps its ring index in the reader's memory: a new worker gets a fresh handle.
  void reopen_unresumable() {
    for (auto& wanted : wanted_sources()) {
      auto same = std::find_if(sources_.begin(), sources_.end(),
                               [&](const OpenSource& src) { return src.key == wanted.first; });
      if (same == sources_.end() || same->source->resumable()) continue;
      try {
        auto fresh = wanted.second();
        same->source = std::move(fresh);
      } catch (const std::exception& e) {
        log::error(std::string("cannot reopen a source for the new worker (trying again later): ") + e.what());
        sources_.erase(same);
        retry_in_ = retry_in_ == 0 ? 5 : retry_in_;
        next_source_retry_ = wall_clock() + retry_in_;
      }
    }
  }

  // In the child: confine, then read. Returns the exit status.
  int worker_main(int sock, pid_t monitor, const WorkerAccount& account) noexcept {
    try {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != monitor) return kWorkerLostMonitor;
      log::set_program("knockdaemon[worker]");
      close_all_but(sock);
      worker_sock_ = sock;
      demote_worker(account);  // keeps PR_SET_PDEATHSIG
      if (getppid() != monitor) return kWorkerLostMonitor;
      install_worker_filter(sock);
      for (auto& src : sources_) {
        if (auto* file = dynamic_cast<capture::LogSource*>(src.source.get()))
          file->follower().set_name_check([this, sock](dev_t dev, ino_t ino) {
            return draining_ ? -1 : privsep::ask_for_log(sock, dev, ino, 5000);
          });
      }
      return run_worker();
    } catch (const std::exception& e) {
      log::error(std::string("worker: ") + e.what());
      return kWorkerSetupFailed;
    }
  }

  // Closes every descriptor but stdio, the monitor's socket, the sources' (and libpcap's
  // wake-up eventfd): no runner pipe, cache file, lock, signalfd or netlink socket of the monitor.
  void close_all_but(int sock) {
    std::vector<int> keep = {0, 1, 2, sock};
    for (const auto& src : sources_)
      for (int fd : src.source->descriptors()) keep.push_back(fd);
    std::vector<int> close_these;
    if (DIR* dir = opendir("/proc/self/fd")) {
      const int own = dirfd(dir);
      while (dirent* entry = readdir(dir)) {
        char* end = nullptr;
        const long fd = std::strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || fd == own) continue;
        if (std::find(keep.begin(), keep.end(), fd) != keep.end()) continue;
        char target[64] = {};
        const std::string link = "/proc/self/fd/" + std::string(entry->d_name);
        const ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
        if (n > 0 && std::string_view(target, static_cast<std::size_t>(n)) == "anon_inode:[eventfd]") continue;
        close_these.push_back(static_cast<int>(fd));
      }
      closedir(dir);
    } else {
      throw RuntimeError("cannot list /proc/self/fd: " + errno_message(errno));
    }
    for (int fd : close_these) ::close(fd);
  }

  int finish_worker(const capture::ObservationCallback& on_packet) {
    draining_ = true;
    const double deadline = wall_clock() + 1;
    for (bool more = true; more && wall_clock() < deadline;) {
      more = false;
      for (auto& src : sources_) {
        try {
          if (src.source->dispatch(on_packet, 4096) > 0) more = true;
        } catch (const std::exception&) {
          // ending anyway
        }
      }
    }
    return 0;
  }

  // The worker's loop: its sources, the tracker, the detectors; knocks go to the monitor.
  int run_worker() {
    const capture::ObservationCallback on_packet = [this](const capture::Observation& o) { detector_.observe(o); };
    std::vector<pollfd> fds;
    for (;;) {
      const double now = wall_clock();
      double wait = 1.0;
      fds.clear();
      fds.push_back({worker_sock_, POLLIN, 0});
      for (const auto& src : sources_) {
        fds.push_back({src.source->fd(), POLLIN, 0});
        const double t = src.source->next_timeout(now);
        if (t >= 0) wait = std::min(wait, t);
      }
      const int timeout_ms = static_cast<int>(std::ceil(std::max(0.0, wait) * 1000));
      if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) return kWorkerSourceFailed;
      // The monitor speaks only when asked (log checks): anything else here is its end, or
      // (a reload) its write side shut: read the sources dry, report, and exit.
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) return finish_worker(on_packet);
      const double before_dispatch = wall_clock();
      for (std::size_t i = 0; i < sources_.size(); ++i) {
        capture::Source& src = *sources_[i].source;
        if (!(fds[i + 1].revents & (POLLIN | POLLERR)) && src.next_timeout(before_dispatch) != 0) continue;
        try {
          src.dispatch(on_packet, 4096);
        } catch (const std::exception& e) {
          log::error(src.describe() + ": " + e.what() + "; the monitor reopens it");
          return kWorkerSourceFailed;
        }
      }
      const double after = wall_clock();
      detector_.tracker().expire(after);
      if (auto summary = detector_.tracker().summary_due(after)) {
        log::info(*summary);
        for (const auto& src : sources_) log_source(*src.source);
      }
      // The refusal counters go to the monitor, which logs the single-packet summary.
      if (after >= next_counters_) {
        next_counters_ = after + 0.5;
        privsep::Counters counters = source_totals();
        give_counters(detector_.spa_refusals(), counters.spa);
        give_counters(detector_.fwknop_refusals(), counters.fwknop);
        const std::uint64_t total = detector_.spa_refusals().total() + detector_.fwknop_refusals().total() + counters.packets +
                                    counters.dropped + counters.ports_queued + counters.tracked;
        if (total != counters_sent_) {
          const std::size_t size = privsep::encode_counters(counters, out_);
          if (size != 0 && privsep::send_message(worker_sock_, std::span(out_.data(), size))) counters_sent_ = total;
        }
      }
      if (after >= next_refusal_summary_) {
        next_refusal_summary_ = after + std::max(1.0, current_->settings.tracker.summary_interval);
        if (unreportable_ != unreportable_reported_) {
          log::warning("knocks that could not be reported to the monitor (a name too long): " +
                       std::to_string(unreportable_));
          unreportable_reported_ = unreportable_;
        }
      }
    }
  }

  // A source's summary line: pcap and log files as before; the others say it themselves.
  void log_source(capture::Source& src) {
    if (auto* pcap = dynamic_cast<capture::PcapSource*>(&src)) return log::info(describe(pcap->packets().stats()));
    if (auto* file = dynamic_cast<capture::LogSource*>(&src)) return log::info(describe(file->follower().stats()));
    log::info(src.describe() + "; " + describe_ignored());
  }

  // SIGHUP (or knockctl reload): a new generation, or the old one kept when the new config
  // fails to load. Returns "" or the error (FILE:LINE: what).
  std::string reload() {
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

  std::string conf_path_;
  bool test_mode_;
  bool fresh_;
  std::optional<std::string> pcap_file_;
  std::unique_ptr<rules::ShellRunner> runner_;
  rules::SystemClock system_clock_;
  rules::ManualClock capture_clock_;
  const rules::Clock* clock_ = &system_clock_;
  std::unique_ptr<Generation> current_;
  Detector detector_{*this};
  struct OpenSource {
    std::string key;  // the daemon's key for it (wanted_sources): a reload keeps an equal one
    std::unique_ptr<capture::Source> source;
  };
  std::vector<OpenSource> sources_;
  double retry_in_ = 0;           // seconds between attempts to open missing sources
  double next_source_retry_ = 0;  // wall clock; 0: nothing to retry
  std::uint64_t original_replayed_ = 0;
  std::uint64_t original_replayed_reported_ = 0;
  double next_refusal_summary_ = 0;
  // privilege separation
  static constexpr int kWorkerSetupFailed = 70;
  static constexpr int kWorkerLostMonitor = 71;
  static constexpr int kWorkerSourceFailed = 75;
  bool privsep_ = false;
  int worker_sock_ = -1;          // in the worker: its end of the channel
  privsep::Buffer out_{};         // the worker's message being sent
  std::uint64_t unreportable_ = 0;
  std::uint64_t unreportable_reported_ = 0;
  pid_t worker_pid_ = -1;         // in the monitor
  int monitor_sock_ = -1;
  privsep::Buffer in_{};
  double worker_started_ = 0;
  double restart_delay_ = 0;
  double next_worker_start_ = 0;
  std::uint64_t workers_started_ = 0;
  std::uint64_t protocol_violations_ = 0;
  bool sources_changed_ = false;
  bool warned_nobody_ = false;
  bool handles_fresh_ = false;  // reopen_unresumable() ran for the next worker already
  bool draining_ = false;       // in the worker: the monitor asked it to finish
  double next_counters_ = 0;
  std::uint64_t counters_sent_ = 0;
  privsep::Counters worker_counters_{};  // the latest the worker sent
  privsep::Counters counters_base_{};    // the workers' before it
  std::uint64_t worker_restarts_ = 0;
  // knockctl
  std::unique_ptr<ControlServer> control_;
  double started_at_ = 0;
  std::string last_reload_ = "none";
  Histogram latency_;
  std::uint64_t original_accepted_ = 0;
};

}  // namespace

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
