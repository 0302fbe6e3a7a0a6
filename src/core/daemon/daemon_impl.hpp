#pragma once
// knockdaemon's process, one class in three rooms (internal to src/core/daemon):
//   daemon.cpp   loading a generation of configuration, the sources, the one-process loops
//                (privsep = no, -pcap), accepting a verified knock into the rules, SIGHUP;
//   monitor.cpp  privilege separation: the monitor's loop, the worker's start, confinement,
//                loop and end, and the checks of every message it sends (doc/SECURITY.md);
//   status.cpp   the control socket's answers (knockctl status, list, close, reload, metrics).
// The detectors (daemon/detector.hpp) turn observations into verified knocks; the class is
// their KnockSink.
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
#include "daemon/priority.hpp"
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
#include "util/text.hpp"

namespace knock::daemon {

inline double wall_clock() {
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
  std::unique_ptr<Generation> load(bool initial = true) const;

  void adopt(std::unique_ptr<Generation> next);

  int run();

 private:
  // A knock the detectors verified. In a worker it goes to the monitor, as one message; in a
  // single process (privsep = no, -pcap) straight to accept().
  void report(privsep::KnockKind kind, bool by_ports, const rules::KnockEvent& event) noexcept override;

  // The rules' side of a knock: replay cache, the log line, the engine (all or nothing).
  void accept(privsep::KnockKind kind, bool by_ports, const rules::KnockEvent& event, double captured = -1) noexcept;

  // The single-packet lines of a summary, when anything changed since the last.
  void log_refusals();

  std::string bpf() const;

  int run_capture_file();

  std::string describe(const capture::CaptureStats& stats) const;

  std::string describe(const capture::LogFollower::Stats& stats) const;

  // Observations the daemon set aside before the tracker.
  std::string describe_ignored() const;

  void report_end(const capture::CaptureStats& stats) const;

  // The sources this generation asks for, by key: a reload keeps those whose key is unchanged.
  std::vector<std::pair<std::string, std::function<std::unique_ptr<capture::Source>()>>> wanted_sources();

  // Opens what the generation asks for and is not open yet; closes what it no longer asks for.
  // Sources are matched by the key the daemon computed for them (wanted_sources). At start a
  // source that cannot be opened is fatal. On a reload, or when a source failed while running,
  // a source that cannot be opened is logged and tried again later (5 s, doubling to 5 min), and
  // the sources it was to replace are kept meanwhile: the daemon never goes deaf by a reload.
  void open_sources(bool initial);

  int run_live();

  int finish(int signal_fd);

  // SIGHUP reloads; SIGTERM and SIGINT stop (false).
  bool take_signals(int signal_fd);

  // ---- knockctl (daemon/control.hpp) ----

  void open_control();

  static std::string format_wall(double t);

  // The sources' and the tracker's totals (in the process that reads the sources).
  privsep::Counters source_totals();

  std::string control(std::string_view request);

  std::string control_status(bool json);

  std::string control_list(bool json);

  std::string control_metrics();

  // ---- real-time priority (config `realtime`, daemon/realtime.cpp) ----

  // Applies `realtime` when it changed (start, reload) and, every CpuGuard::kInterval, takes
  // it from a process that uses more than `realtimecpu` of a CPU, or gives it back.
  void watch_priority(double now);
  // How long the loop may sleep before watch_priority wants to run again.
  double priority_wait(double now) const;
  // A new worker starts at normal priority (SCHED_RESET_ON_FORK): raise it.
  void raise_worker();
  // Carries out one of the guard's decisions for pid (0: the monitor); `who` starts the log line.
  void apply_priority(CpuGuard::Change change, pid_t pid, const std::string& who, double share);

  // ---- privilege separation (doc/SECURITY.md, "Two processes") ----

  // The monitor: holds the configuration, the engine, the runner and the sources' descriptors;
  // never reads a packet or a log line. Its worker reads them and reports knocks.
  int run_monitor(int signal_fd);

  // Forks a worker from this generation. Sources whose read position the last worker took
  // with it (pcap) are reopened first.
  void start_worker();

  // Ends the worker (SIGKILL: it holds nothing to save) and collects how it ended. `why`
  // empty: a normal stop, not logged as trouble.
  void stop_worker(const std::string& why);

  pid_t end_worker(int* status = nullptr);

  // The worker's socket is readable: its messages, or its end.
  void serve_worker();

  // Takes the worker's messages that are there (at most 1024). True when it ended (EOF).
  bool take_reports();

  // A reload's end of a worker: its write side shut, it reads its sources dry, reports what it
  // found and exits; the monitor takes those reports for at most 2 s, then ends it anyway (a
  // stopped or hung worker loses what it had not read yet).
  void retire_worker(const std::string& why);

  static void take_counters(Refusals& into, const privsep::Counters::Kind& from);  static void give_counters(const Refusals& from, privsep::Counters::Kind& into);

  // A worker's source counters start at zero (fresh capture handles): the monitor keeps the
  // totals of the workers before.
  void fold_worker_counters();  privsep::Counters all_source_counters();

  // What the configuration accepts from a worker: only knock kinds it has, names it defines,
  // replay identities where the kind has them, an expiry within what a kind keeps.
  bool allowed(privsep::KnockReport& r, std::string& why) const;

  // Why an fwknop report asks for more than `stanza` allows its key holder ("" when it does
  // not): the source, the user, the address, the proto/port, the client timeout.
  static std::string fwknop_outside(const fwknop::Stanza& stanza, const privsep::KnockReport& r);

  // LOG_CHECK: the monitor looks at the log's name with its own privileges and hands a new
  // file to the worker; its own follower takes the same file, so a restarted worker resumes it.
  void answer_log_check(const privsep::LogCheck& check, std::string& why);

  // The worker's socket closed: how did it end? A new one starts after a back-off.
  void worker_ended();

  // At once after a worker that lived a minute; else 1, 2, 4 ... 60 s.
  void schedule_worker_restart();

  // pcap keeps its ring index in the reader's memory: a new worker gets a fresh handle.
  void reopen_unresumable();

  // In the child: confine, then read. Returns the exit status.
  int worker_main(int sock, pid_t monitor, const WorkerAccount& account) noexcept;

  // Closes every descriptor but stdio, the monitor's socket, the sources' (and libpcap's
  // wake-up eventfd): no runner pipe, cache file, lock, signalfd or netlink socket of the monitor.
  void close_all_but(int sock);

  int finish_worker(const capture::ObservationCallback& on_packet);

  // The worker's loop: its sources, the tracker, the detectors; knocks go to the monitor.
  int run_worker();

  // A source's summary line: pcap and log files as before; the others say it themselves.
  void log_source(capture::Source& src);

  // SIGHUP (or knockctl reload): a new generation, or the old one kept when the new config
  // fails to load. Returns "" or the error (FILE:LINE: what).
  std::string reload();

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
  // real-time priority
  RealtimeSettings realtime_applied_{};  // what watch_priority last applied
  bool realtime_on_ = false;             // the monitor got SCHED_FIFO
  RealtimeGuard guard_;
  double ended_workers_cpu_ = 0;  // the CPU time of the workers that ended (wait4)
  double next_priority_check_ = 0;
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

}  // namespace knock::daemon
