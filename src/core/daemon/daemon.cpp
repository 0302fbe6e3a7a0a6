#include "daemon/daemon.hpp"

#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "capture/logfollow.hpp"
#include "capture/pcap_source.hpp"
#include "config/tree.hpp"
#include "daemon/privileges.hpp"
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

// The decoder the tracker calls with the last L ports of a source; keeps the last result.
struct Decoder {
  const codec::KnockCodec* codec = nullptr;
  codec::DecodeResult last;
  bool operator()(std::span<const std::uint16_t> ports) noexcept {
    last = codec->decode(ports);
    return last.ok();
  }
};

std::string describe_knock(const codec::KnockCodec& codec, const codec::KnockValues& values) {
  std::string out;
  for (codec::Field field : codec.format().fields()) {
    const auto value = values.get(field);
    if (!value) continue;
    if (!out.empty()) out += ' ';
    out += codec::field_name(field);
    out += '=';
    out += field == codec::Field::Ip ? IpAddress::v4(*value).str() : std::to_string(*value);
  }
  return out;
}

long peak_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// A reload keeps the tracker (and the knocks half-way through it) only when nothing it was
// built from changed.
bool same_tracking(const tracker::TrackerOptions& a, const tracker::TrackerOptions& b) {
  return a.knock_length == b.knock_length && a.max_sources == b.max_sources && a.knock_timeout == b.knock_timeout &&
         a.summary_interval == b.summary_interval && a.protected_share == b.protected_share;
}

// One generation of configuration: replaced as a whole on SIGHUP.
struct Generation {
  config::Value root;
  Settings settings;
  std::unique_ptr<rules::Engine> engine;
  double stop_wait = 10;  // stopwait: how long SIGTERM waits for running commands
};

class Daemon {
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
    // A cache written after the drop to `user` belongs to that user: accept it at the next start.
    if (g->settings.user) {
      if (const passwd* pw = ::getpwnam(g->settings.user->c_str())) options.cache_owner = static_cast<long>(pw->pw_uid);
    }
    g->engine = std::make_unique<rules::Engine>(g->root, options);
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
    const bool keep_tracker = tracker_ && same_tracking(current_->settings.tracker, next->settings.tracker);
    current_ = std::move(next);
    decoder_.codec = current_->settings.codec.get();
    if (!keep_tracker) tracker_ = std::make_unique<tracker::Tracker>(current_->settings.tracker, tracker::DecodeFn(decoder_));
  }

  int run() {
    adopt(load());
    const Settings& s = current_->settings;
    log::info("knock: " + std::to_string(s.codec->wire_bytes()) + " bytes in " +
              std::to_string(s.codec->ports_per_knock()) + " ports of a " + std::to_string(s.codec->span().size()) +
              "-port span; tracking up to " + std::to_string(tracker_->max_sources()) + " sources (" +
              std::to_string(tracker_->allocated_bytes() / 1024) + " KiB)");
    if (pcap_file_) return run_capture_file();
    return run_live();
  }

 private:
  // One connection attempt from either source; the packet path: no allocation, no throw.
  void on_observation(const capture::Observation& o) noexcept {
    const Settings& s = current_->settings;
    if (s.codec->span().index_of(o.dest_port) < 0) {
      ++outside_span_;
      return;
    }
    if (s.mode == RunMode::Network && !s.ethfilter->matches(o)) {
      ++filtered_;
      return;
    }
    if (log::enabled(log::Level::Debug))
      log::debug("port " + std::to_string(o.dest_port) + " from " + o.source.str() + " queued");
    const tracker::Outcome outcome = tracker_->observe(o);
    if (outcome == tracker::Outcome::DecodeFailed && log::enabled(log::Level::Debug))
      log::debug("decode attempt for " + o.source.str() + ": " + std::string(codec::to_string(decoder_.last.error)));
    if (outcome != tracker::Outcome::Knock) return;
    try {
      on_knock(o, decoder_.last.values);
    } catch (const std::exception& e) {
      log::error("knock from " + o.source.str() + ": " + e.what());
    }
  }

  void on_knock(const capture::Observation& o, const codec::KnockValues& values) {
    const std::string fields = describe_knock(*current_->settings.codec, values);
    log::info("knock from " + o.source.str() + ": " + fields);
    if (test_mode_) std::cout << "knock from " << o.source.str() << ": " << fields << std::endl;
    rules::KnockEvent event;
    event.values = values;
    event.logip = o.source;
    event.time = o.time;
    current_->engine->handle(event);
  }

  std::string bpf() const {
    const Settings& s = current_->settings;
    return capture::bpf_filter(*s.ethfilter, s.codec->span().ports());
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
      on_observation(o);
    };
    while (!source.exhausted()) {
      source.dispatch(callback, 4096);
      if (auto summary = tracker_->summary_due(last_time)) log::info(*summary);
    }
    if (!source.last_error().empty()) log::warning(*pcap_file_ + ": " + source.last_error());
    if (last_time > 0) {
      capture_clock_.set(last_time);
      current_->engine->run_due();
    }
    current_->engine->wait_for_commands();
    report_end(source.stats());
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
    return "ignored: " + std::to_string(outside_span_) + " ports outside the span, " + std::to_string(filtered_) +
           " packets refused by the ethfilter";
  }

  void report_end(const capture::CaptureStats& stats) const {
    log::info(describe(stats));
    const auto& c = tracker_->counters();
    log::info("end of capture: " + std::to_string(stats.packets) + " packets, " + std::to_string(c.ports_queued) +
              " ports queued, " + std::to_string(c.decode_attempts) + " decode attempts, " +
              std::to_string(c.knocks) + " knocks; peak RSS " + std::to_string(peak_rss_kib()) + " KiB");
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

    std::unique_ptr<capture::PacketSource> packets;
    std::unique_ptr<capture::LogFollower> follower;
    std::string opened;  // what the open source watches; a reload that keeps it keeps the source
    auto source_key = [&] {
      const Settings& s = current_->settings;
      return s.mode == RunMode::Network ? "network " + s.interface + " " + std::to_string(s.snaplen) + " " + bpf()
                                        : "file " + s.logfile + " " + std::to_string(s.fileinterval);
    };
    auto open_source = [&] {
      std::string key = source_key();
      if (key == opened) return;
      opened = std::move(key);
      const Settings& s = current_->settings;
      packets.reset();
      follower.reset();
      if (s.mode == RunMode::Network) {
        capture::LivePcapSource::Options options;
        options.snaplen = s.snaplen;
        const std::string filter = bpf();
        packets = std::make_unique<capture::LivePcapSource>(s.interface, filter, options);
        log::info("watching interface " + s.interface + " for knocks (filter: " + filter + ")");
      } else {
        capture::LogFollower::Options options;
        options.interval = s.fileinterval;
        follower = std::make_unique<capture::LogFollower>(s.logfile, options);
        log::info("watching log file " + s.logfile + " for knocks (format " + s.logformat_name + ")");
      }
    };
    open_source();
    if (const auto& user = current_->settings.user) drop_privileges(*user);

    auto on_line = [&](std::string_view line) {
      const auto o = current_->settings.logformat->parse_line(line, wall_clock());
      if (o) on_observation(*o);
    };
    auto on_packet = [&](const capture::Observation& o) { on_observation(o); };

    bool running = true;
    while (running) {
      double wait = 1.0;
        if (auto due = current_->engine->next_due()) wait = std::min(wait, *due);
      wait = std::min(wait, current_->engine->next_tick_in());
      if (follower) wait = std::min(wait, follower->next_check_in());
      // A child's exit closes its stderr pipe slightly before waitpid() can collect it.
      if (runner_ && runner_->busy()) wait = std::min(wait, 0.005);
      pollfd fds[3] = {{signal_fd, POLLIN, 0}, {-1, POLLIN, 0}, {runner_ ? runner_->poll_fd() : -1, POLLIN, 0}};
      fds[1].fd = packets ? packets->selectable_fd() : follower->fd();
      const int timeout_ms = static_cast<int>(std::ceil(wait * 1000));
      if (poll(fds, 3, timeout_ms) < 0 && errno != EINTR) throw RuntimeError("poll: " + errno_message(errno));

      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info;
        while (read(signal_fd, &info, sizeof info) == sizeof info) {
          if (info.ssi_signo == SIGHUP) {
            if (reload()) open_source();
          } else {
            log::info(std::string("stopping on ") + (info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT"));
            running = false;
          }
        }
      }
      if (packets && (fds[1].revents & POLLIN)) packets->dispatch(on_packet, 4096);
      if (follower && ((fds[1].revents & POLLIN) || follower->next_check_in() <= 0)) follower->read_lines(on_line);

      const double after = wall_clock();
      current_->engine->run_due();
      current_->engine->reap();
      current_->engine->tick();
      tracker_->expire(after);
      if (auto summary = tracker_->summary_due(after)) {
        log::info(*summary);
        if (packets) log::info(describe(packets->stats()));
        if (follower) log::info(describe(follower->stats()));
      }
    }
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
    current_->engine->save();
    close(signal_fd);
    log::info("stopped");
    return kExitOk;
  }

  // SIGHUP: a new generation, or the old one kept when the new config fails to load.
  bool reload() {
    log::info("SIGHUP: reloading " + conf_path_);
    try {
      adopt(load(false));
      log::info("configuration reloaded");
      return true;
    } catch (const std::exception& e) {  // ConfigError, or a RuntimeError such as an unusable cache
      log::error(std::string("reload failed, keeping the running configuration: ") + e.what());
    }
    return false;
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
  Decoder decoder_;
  std::unique_ptr<tracker::Tracker> tracker_;
  std::uint64_t outside_span_ = 0;
  std::uint64_t filtered_ = 0;
};

}  // namespace

int main(int argc, const char* const* argv) {
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
