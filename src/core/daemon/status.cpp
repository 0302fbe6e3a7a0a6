// The control socket's answers: knockctl status, list, close, reload and metrics
// (doc/knockctl.1); the socket itself is daemon/control.cpp.
#include "daemon/daemon_impl.hpp"

namespace knock::daemon {

void Daemon::open_control() {
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

std::string Daemon::format_wall(double t) { return local_time_text(t); }

privsep::Counters Daemon::source_totals() {
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

std::string Daemon::control(std::string_view request) {
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

std::string Daemon::control_status(bool json) {
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

std::string Daemon::control_list(bool json) {
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
             ", \"nft\": " + (p.kind == rules::ActionKind::nft ? "true" : "false") +
             ", \"kind\": \"" + std::string(rules::action_key(p.kind)) + "\"}";
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

std::string Daemon::control_metrics() {
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

}  // namespace knock::daemon
