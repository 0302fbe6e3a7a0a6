// Privilege separation (doc/SECURITY.md, "Two processes"): the monitor's loop, and the worker's
// start, confinement, loop and end.
#include "daemon/daemon_impl.hpp"

namespace knock::daemon {

int Daemon::run_monitor(int signal_fd) {
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
    wait = std::min(wait, priority_wait(now));
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
    watch_priority(after);
    if (after >= next_refusal_summary_) {
      next_refusal_summary_ = after + std::max(1.0, current_->settings.tracker.summary_interval);
      log_refusals();
    }
  }
  stop_worker("");
  return finish(signal_fd);
}

void Daemon::start_worker() {
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
  raise_worker();
  if (account.name == "nobody" && !current_->settings.user && !warned_nobody_) {
    warned_nobody_ = true;
    log::warning("the worker runs as nobody, an account other services share (they could signal it): create the "
                 "system user portknock (the Debian package does) or set user = NAME");
  }
}

void Daemon::stop_worker(const std::string& why) {
  if (worker_pid_ < 0) return;
  const pid_t pid = end_worker();
  if (!why.empty()) log::info("worker " + std::to_string(pid) + " stopped (" + why + ")");
}

// SIGKILL (it holds nothing to save; one that closed its socket but lives on ends all the
// same), collects its status, keeps its counters, lets go of its channel. Returns its pid.
pid_t Daemon::end_worker(int* status) {
  const pid_t pid = worker_pid_;
  ::kill(pid, SIGKILL);
  int ignored = 0;
  int* st = status != nullptr ? status : &ignored;
  rusage usage{};
  while (wait4(pid, st, 0, &usage) < 0 && errno == EINTR) {
  }
  // Its CPU time stays in the real-time guard's total (the next worker does not start afresh).
  ended_workers_cpu_ += static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                        static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  fold_worker_counters();
  ::close(monitor_sock_);
  monitor_sock_ = -1;
  worker_pid_ = -1;
  return pid;
}

void Daemon::serve_worker() {
  if (take_reports()) worker_ended();
}

bool Daemon::take_reports() {
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

void Daemon::retire_worker(const std::string& why) {
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

void Daemon::take_counters(Refusals& into, const privsep::Counters::Kind& from) {
  static_assert(privsep::Counters::kReasons == std::tuple_size_v<decltype(Refusals::by_reason)>);
  into.by_reason = from.by_reason;
  into.earliest = from.earliest;
  into.latest = from.latest;
}

void Daemon::give_counters(const Refusals& from, privsep::Counters::Kind& into) {
  into.by_reason = from.by_reason;
  into.earliest = from.earliest;
  into.latest = from.latest;
}

void Daemon::fold_worker_counters() {
  counters_base_.packets += worker_counters_.packets;
  counters_base_.dropped += worker_counters_.dropped;
  counters_base_.ports_queued += worker_counters_.ports_queued;
  counters_base_.knocks += worker_counters_.knocks;
  worker_counters_.packets = worker_counters_.dropped = worker_counters_.ports_queued = 0;
  worker_counters_.knocks = worker_counters_.tracked = 0;
}

privsep::Counters Daemon::all_source_counters() {
  if (!privsep_) return source_totals();
  privsep::Counters c = worker_counters_;
  c.packets += counters_base_.packets;
  c.dropped += counters_base_.dropped;
  c.ports_queued += counters_base_.ports_queued;
  c.knocks += counters_base_.knocks;
  return c;
}

bool Daemon::allowed(privsep::KnockReport& r, std::string& why) const {
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

std::string Daemon::fwknop_outside(const fwknop::Stanza& stanza, const privsep::KnockReport& r) {
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

void Daemon::answer_log_check(const privsep::LogCheck& check, std::string& why) {
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

void Daemon::worker_ended() {
  int status = 0;
  const pid_t pid = end_worker(&status);
  std::string how;
  if (WIFEXITED(status)) {
    how = "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WEXITSTATUS(status) == kWorkerSourceFailed) how += " (a source failed: reopening the sources)";
  } else if (WIFSIGNALED(status)) {
    how = std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
    if (WTERMSIG(status) == SIGSYS) how += ": a system call its seccomp filter forbids";
  }
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

void Daemon::schedule_worker_restart() {
  const double now = wall_clock();
  if (now - worker_started_ >= 60) restart_delay_ = 0;
  next_worker_start_ = now + restart_delay_;
  restart_delay_ = restart_delay_ == 0 ? 1 : std::min(60.0, restart_delay_ * 2);
}

void Daemon::reopen_unresumable() {
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

int Daemon::worker_main(int sock, pid_t monitor, const WorkerAccount& account) noexcept {
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

void Daemon::close_all_but(int sock) {
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

int Daemon::finish_worker(const capture::ObservationCallback& on_packet) {
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

int Daemon::run_worker() {
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

}  // namespace knock::daemon
