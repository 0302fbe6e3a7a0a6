#include "daemon/daemon.hpp"

#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "capture/logfollow.hpp"
#include "capture/nflog.hpp"
#include "capture/pcap_source.hpp"
#include "capture/source.hpp"
#include "capture/udp_source.hpp"
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

// The decoder the tracker calls with the last L ports of a source; keeps the last result. The
// ports spell the original's knock, or (proto = spa) the authenticated message.
struct Decoder {
  const codec::KnockCodec* codec = nullptr;
  const spa::Verifier* spa = nullptr;  // proto = spa: the ports carry an SPA message
  double now = 0;                      // the observation's time (the capture's clock under -pcap)
  codec::DecodeResult last;
  spa::Verified last_spa;
  std::array<std::uint8_t, spa::kMaxMessageBytes> bytes{};
  std::size_t byte_count = 0;
  bool operator()(std::span<const std::uint16_t> ports) noexcept {
    if (spa != nullptr) {
      byte_count = spa->message_bytes();
      if (codec::ports_to_bytes(codec->span(), ports, std::span(bytes.data(), byte_count)) != codec::DecodeError::None) {
        last_spa = spa::Verified{};
        return false;
      }
      last_spa = spa->verify(std::span(bytes.data(), byte_count), static_cast<std::int64_t>(now));
      return last_spa.ok();
    }
    last = codec->decode(ports);
    if (!last.ok()) return false;
    byte_count = std::min(codec->wire_bytes(), bytes.size());
    if (codec->to_bytes(ports, std::span(bytes.data(), byte_count)) != codec::DecodeError::None) byte_count = 0;
    return true;
  }
};

// Refusals of single-packet messages, counted by reason: a flood of them is a few summary
// lines, never a line each.
struct Refusals {
  std::array<std::uint64_t, 32> by_reason{};
  std::uint64_t replayed = 0;
  std::uint64_t accepted = 0;
  std::int64_t earliest = 0;  // most negative clock offset among time refusals
  std::int64_t latest = 0;    // most positive
  std::uint64_t reported = 0;  // total at the last summary
  std::uint64_t total() const {
    std::uint64_t t = replayed + accepted;
    for (auto n : by_reason) t += n;
    return t;
  }
  void time_offset(std::int64_t offset) {
    earliest = std::min(earliest, offset);
    latest = std::max(latest, offset);
  }
  template <typename Reason, typename Name>
  std::string describe(std::string_view what, Name name) const {
    std::string out = std::string(what) + ": " + std::to_string(accepted) + " accepted; refused:";
    bool any = false;
    for (std::size_t i = 1; i < by_reason.size(); ++i) {
      if (by_reason[i] == 0) continue;
      out += " " + std::string(name(static_cast<Reason>(i))) + " " + std::to_string(by_reason[i]);
      any = true;
    }
    if (replayed != 0) {
      out += " replayed " + std::to_string(replayed);
      any = true;
    }
    if (!any) out += " none";
    if (earliest < 0 || latest > 0)
      out += "; clock offsets of refused senders from " + std::to_string(earliest) + "s to +" + std::to_string(latest) +
             "s (a sender's clock is off: fix it, or widen the window)";
    return out;
  }
};

std::string describe_knock(const codec::KnockCodec& codec, const codec::KnockValues& values) {
  std::string out;
  for (codec::Field field : codec.format().fields()) {
    if (!values.has(field)) continue;
    if (!out.empty()) out += ' ';
    out += codec::field_name(field);
    out += '=';
    out += codec::value_text(values, field);
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
    options.replay_capacity = g->settings.spa_settings.replay_capacity;
    // A cache written after the drop to `user` belongs to that user: accept it at the next start.
    if (g->settings.user) {
      if (const passwd* pw = ::getpwnam(g->settings.user->c_str())) options.cache_owner = static_cast<long>(pw->pw_uid);
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
    const bool keep_tracker = tracker_ && same_tracking(current_->settings.tracker, next->settings.tracker);
    current_ = std::move(next);
    decoder_.codec = current_->settings.codec.get();
    decoder_.spa = current_->settings.spa_ports ? current_->settings.spa.get() : nullptr;
    if (!keep_tracker) tracker_ = std::make_unique<tracker::Tracker>(current_->settings.tracker, tracker::DecodeFn(decoder_));
  }

  int run() {
    adopt(load());
    const Settings& s = current_->settings;
    const std::size_t knock_bytes = s.spa_ports ? s.spa->message_bytes() : s.codec->wire_bytes();
    log::info(std::string(s.spa_ports ? "knock (authenticated message): " : "knock: ") + std::to_string(knock_bytes) +
              " bytes in " + std::to_string(tracker_->knock_length()) + " ports of a " +
              std::to_string(s.codec->span().size()) +
              "-port span; tracking up to " + std::to_string(tracker_->max_sources()) + " sources (" +
              std::to_string(tracker_->allocated_bytes() / 1024) + " KiB)");
    if (pcap_file_) return run_capture_file();
    return run_live();
  }

 private:
  // One observation from any source; the packet path: no allocation, no throw.
  void on_observation(const capture::Observation& o) noexcept {
    const Settings& s = current_->settings;
    if (o.protocol == capture::kProtoUdp && o.payload != nullptr) {
      if (s.spa && o.dest_port == s.spa_settings.port) return on_spa_datagram(o);
      if (s.fwknop && o.dest_port == s.fwknop_settings.port) return on_fwknop_datagram(o);
    }
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
    decoder_.now = o.time;
    const tracker::Outcome outcome = tracker_->observe(o);
    if (outcome == tracker::Outcome::DecodeFailed && decoder_.spa != nullptr) count_spa(decoder_.last_spa);
    if (outcome == tracker::Outcome::DecodeFailed && log::enabled(log::Level::Debug))
      log::debug("decode attempt for " + o.source.str() + ": " + std::string(codec::to_string(decoder_.last.error)));
    if (outcome != tracker::Outcome::Knock) return;
    try {
      if (decoder_.spa != nullptr) {
        on_spa(o, decoder_.last_spa, "port knock");
      } else {
        on_knock(o, decoder_.last.values);
      }
    } catch (const std::exception& e) {
      log::error("knock from " + o.source.str() + ": " + e.what());
    }
  }

  void count_spa(const spa::Verified& v) noexcept {
    ++spa_refusals_.by_reason[static_cast<std::size_t>(v.reason)];
    if (v.reason == spa::Reason::TooOld || v.reason == spa::Reason::TooNew) spa_refusals_.time_offset(v.offset);
  }

  // A datagram to spaport: one authenticated single-packet knock, or nothing (counted).
  void on_spa_datagram(const capture::Observation& o) noexcept {
    const spa::Verified v = current_->settings.spa->verify(std::span(o.payload, o.payload_size),
                                                           static_cast<std::int64_t>(o.time));
    if (!v.ok()) return count_spa(v);
    try {
      on_spa(o, v, "datagram");
    } catch (const std::exception& e) {
      log::error("single-packet knock from " + o.source.str() + ": " + e.what());
    }
  }

  void on_spa(const capture::Observation& o, const spa::Verified& v, const char* how) {
    if (current_->engine->replayed(v.identity)) {
      ++spa_refusals_.replayed;
      return;
    }
    rules::KnockEvent event;
    event.values = v.values;
    event.logip = o.source;
    event.time = o.time;
    event.extras.client = v.client_name;
    event.add_replay(v.identity);
    event.replay_expiry = static_cast<std::int64_t>(v.send_time) + spa::kReplayKeep;
    const std::string fields = describe_knock(*current_->settings.codec, v.values);
    log::info("knock from " + o.source.str() + " (client " + std::string(v.client_name) + ", " + how + "): " + fields);
    if (test_mode_) std::cout << "knock from " << o.source.str() << " (client " << v.client_name << "): " << fields << std::endl;
    if (current_->engine->handle(event)) ++spa_refusals_.accepted;
  }

  // A datagram to fwknopport: a packet of fwknop's own client, or nothing (counted).
  void on_fwknop_datagram(const capture::Observation& o) noexcept {
    const fwknop::Verified v = current_->settings.fwknop->verify(std::span(o.payload, o.payload_size), o.source,
                                                                 static_cast<std::int64_t>(o.time));
    if (!v.ok()) {
      ++fwknop_refusals_.by_reason[static_cast<std::size_t>(v.reason)];
      if (v.reason == fwknop::Reason::TooOld || v.reason == fwknop::Reason::TooNew) fwknop_refusals_.time_offset(v.offset);
      return;
    }
    if (current_->engine->replayed(v.identity)) {
      ++fwknop_refusals_.replayed;
      return;
    }
    try {
      rules::KnockEvent event;
      event.values = v.knock_values();
      event.logip = o.source;
      event.time = o.time;
      event.extras.client = v.stanza_name;
      event.extras.user = v.user();
      if (v.port_count != 0) event.extras.proto = fwknop::proto_name(v.ports[0].proto);
      event.extras.client_timeout = v.has_client_timeout ? v.client_timeout : v.fw_access_timeout;
      event.add_replay(v.identity);
      event.replay_expiry = v.timestamp + spa::kReplayKeep;
      log::info("knock from " + o.source.str() + " (fwknop " + std::string(v.stanza_name) + ", user " +
                std::string(v.user()) + "): " + describe_knock(*current_->settings.codec, event.values));
      if (current_->engine->handle(event)) ++fwknop_refusals_.accepted;
    } catch (const std::exception& e) {
      log::error("fwknop packet from " + o.source.str() + ": " + e.what());
    }
  }

  void on_knock(const capture::Observation& o, const codec::KnockValues& values) {
    const Settings& s = current_->settings;
    rules::KnockEvent event;
    event.values = values;
    event.logip = o.source;
    event.time = o.time;
    // iv = yes: every honest knock has a fresh IV, so each of its ciphertext blocks after the
    // IV is new. A knock with a block seen before is a replay, the IV-rewriting forgery, or a
    // cut-and-paste of captured blocks (facts.md): refused in every case.
    if (s.original_iv && decoder_.byte_count > 16) {
      for (std::size_t at = 16; at + 8 <= decoder_.byte_count; at += 8)
        event.add_replay(spa::ReplayCache::identity_of(std::span(decoder_.bytes.data() + at, 8)));
      event.replay_expiry = static_cast<std::int64_t>(o.time + s.replay_keep);
      if (current_->engine->replayed(event)) {
        ++original_replayed_;
        return;
      }
    }
    const std::string fields = describe_knock(*s.codec, values);
    log::info("knock from " + o.source.str() + ": " + fields);
    if (test_mode_) std::cout << "knock from " << o.source.str() << ": " << fields << std::endl;
    current_->engine->handle(event);
  }

  // The single-packet lines of a summary, when anything changed since the last.
  void log_refusals() {
    const Settings& s = current_->settings;
    if (s.spa && spa_refusals_.total() != spa_refusals_.reported) {
      log::info(spa_refusals_.describe<spa::Reason>("single-packet knocks",
                                                    [](spa::Reason r) { return spa::to_string(r); }));
      spa_refusals_.reported = spa_refusals_.total();
    }
    if (s.fwknop && fwknop_refusals_.total() != fwknop_refusals_.reported) {
      log::info(fwknop_refusals_.describe<fwknop::Reason>("fwknop packets",
                                                          [](fwknop::Reason r) { return fwknop::to_string(r); }));
      fwknop_refusals_.reported = fwknop_refusals_.total();
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
      on_observation(o);
    };
    while (!source.exhausted()) {
      source.dispatch(callback, 4096);
      if (auto summary = tracker_->summary_due(last_time)) {
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
    if (const auto& user = current_->settings.user) drop_privileges(*user);
    const capture::ObservationCallback on_packet = [this](const capture::Observation& o) { on_observation(o); };

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
      const int timeout_ms = static_cast<int>(std::ceil(std::max(0.0, wait) * 1000));
      if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) throw RuntimeError("poll: " + errno_message(errno));

      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info;
        while (read(signal_fd, &info, sizeof info) == sizeof info) {
          if (info.ssi_signo == SIGHUP) {
            if (reload()) open_sources(false);
          } else {
            log::info(std::string("stopping on ") + (info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT"));
            running = false;
          }
        }
      }
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

      const double after = wall_clock();
      current_->engine->run_due();
      current_->engine->reap();
      current_->engine->tick();
      tracker_->expire(after);
      if (auto summary = tracker_->summary_due(after)) {
        log::info(*summary);
        for (const auto& src : sources_) log_source(*src.source);
      }
      // Single-packet refusals have their own summary: no port reaches the tracker for them.
      if (after >= next_refusal_summary_) {
        next_refusal_summary_ = after + std::max(1.0, current_->settings.tracker.summary_interval);
        log_refusals();
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
    log_refusals();
    current_->engine->save();
    close(signal_fd);
    log::info("stopped");
    return kExitOk;
  }

  // A source's summary line: pcap and log files as before; the others say it themselves.
  void log_source(capture::Source& src) {
    if (auto* pcap = dynamic_cast<capture::PcapSource*>(&src)) return log::info(describe(pcap->packets().stats()));
    if (auto* file = dynamic_cast<capture::LogSource*>(&src)) return log::info(describe(file->follower().stats()));
    log::info(src.describe() + "; " + describe_ignored());
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
  struct OpenSource {
    std::string key;  // the daemon's key for it (wanted_sources): a reload keeps an equal one
    std::unique_ptr<capture::Source> source;
  };
  std::vector<OpenSource> sources_;
  double retry_in_ = 0;           // seconds between attempts to open missing sources
  double next_source_retry_ = 0;  // wall clock; 0: nothing to retry
  std::uint64_t outside_span_ = 0;
  std::uint64_t filtered_ = 0;
  Refusals spa_refusals_;
  Refusals fwknop_refusals_;
  std::uint64_t original_replayed_ = 0;
  std::uint64_t original_replayed_reported_ = 0;
  double next_refusal_summary_ = 0;
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
