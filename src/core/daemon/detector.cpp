#include "daemon/detector.hpp"

#include <algorithm>
#include <exception>

#include "util/log.hpp"

namespace knock::daemon {
namespace {

// A reload keeps the tracker (and the knocks half-way through it) only when nothing it was
// built from changed.
bool same_tracking(const tracker::TrackerOptions& a, const tracker::TrackerOptions& b) {
  return a.knock_length == b.knock_length && a.max_sources == b.max_sources && a.knock_timeout == b.knock_timeout &&
         a.summary_interval == b.summary_interval && a.protected_share == b.protected_share;
}

}  // namespace

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

void Detector::configure(const Settings& settings) {
  const bool keep_tracker = tracker_ && settings_ != nullptr && same_tracking(settings_->tracker, settings.tracker);
  settings_ = &settings;
  decoder_.codec = settings.codec.get();
  decoder_.spa = settings.spa_ports ? settings.spa.get() : nullptr;
  if (!keep_tracker) tracker_ = std::make_unique<tracker::Tracker>(settings.tracker, tracker::DecodeFn(decoder_));
}

// One observation from any source; the packet path: no allocation, no throw.
void Detector::observe(const capture::Observation& o) noexcept {
  const Settings& s = *settings_;
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

void Detector::count_spa(const spa::Verified& v) noexcept {
  ++spa_.by_reason[static_cast<std::size_t>(v.reason)];
  if (v.reason == spa::Reason::TooOld || v.reason == spa::Reason::TooNew) spa_.time_offset(v.offset);
}

// A datagram to spaport: one authenticated single-packet knock, or nothing (counted).
void Detector::on_spa_datagram(const capture::Observation& o) noexcept {
  const spa::Verified v = (*settings_).spa->verify(std::span(o.payload, o.payload_size),
                                                         static_cast<std::int64_t>(o.time));
  if (!v.ok()) return count_spa(v);
  try {
    on_spa(o, v, "datagram");
  } catch (const std::exception& e) {
    log::error("single-packet knock from " + o.source.str() + ": " + e.what());
  }
}

void Detector::on_spa(const capture::Observation& o, const spa::Verified& v, const char* how) noexcept {
  rules::KnockEvent event;
  event.values = v.values;
  event.logip = o.source;
  event.time = o.time;
  event.extras.client = v.client_name;
  event.add_replay(v.identity);
  event.replay_expiry = static_cast<std::int64_t>(v.send_time) + spa::kReplayKeep;
  sink_.report(privsep::KnockKind::Spa, std::string_view(how) == "port knock", event);
}

// A datagram to fwknopport: a packet of fwknop's own client, or nothing (counted).
void Detector::on_fwknop_datagram(const capture::Observation& o) noexcept {
  const fwknop::Verified v = (*settings_).fwknop->verify(std::span(o.payload, o.payload_size), o.source,
                                                               static_cast<std::int64_t>(o.time));
  if (!v.ok()) {
    ++fwknop_.by_reason[static_cast<std::size_t>(v.reason)];
    if (v.reason == fwknop::Reason::TooOld || v.reason == fwknop::Reason::TooNew) fwknop_.time_offset(v.offset);
    return;
  }
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
  sink_.report(privsep::KnockKind::Fwknop, false, event);
}

void Detector::on_knock(const capture::Observation& o, const codec::KnockValues& values) noexcept {
  const Settings& s = *settings_;
  rules::KnockEvent event;
  event.values = values;
  event.logip = o.source;
  event.time = o.time;
  // iv = yes: every honest knock has a fresh IV, so each of its ciphertext blocks after the
  // IV is new. A knock with a block seen before is a replay, the IV-rewriting forgery, or a
  // cut-and-paste of captured blocks (facts.md): refused in every case (by accept()).
  if (s.original_iv && decoder_.byte_count > 16) {
    for (std::size_t at = 16; at + 8 <= decoder_.byte_count; at += 8)
      event.add_replay(spa::ReplayCache::identity_of(std::span(decoder_.bytes.data() + at, 8)));
    event.replay_expiry = static_cast<std::int64_t>(o.time + s.replay_keep);
  }
  sink_.report(privsep::KnockKind::Original, false, event);
}


}  // namespace knock::daemon
