#pragma once
// The detectors: from one observation of any source to one verified knock, or a refusal that is
// only counted. They run in the worker (doc/SECURITY.md, "Two processes"), or in the one process
// without privilege separation and under -pcap.
//   - a UDP payload to spaport: the authenticated single-packet message (spa::Verifier);
//   - a UDP payload to fwknopport: fwknop's client packet (fwknop::Verifier);
//   - a port of the span: the tracker, whose decoder reads the original's knock or (proto =
//     spa) the authenticated message spelled over the span.
// A verified knock goes to the KnockSink: the channel to the monitor, or the rules at once.
// The packet path allocates nothing and throws nothing.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "capture/observation.hpp"
#include "codec/codec.hpp"
#include "codec/fwknop.hpp"
#include "codec/spa.hpp"
#include "daemon/privsep.hpp"
#include "daemon/settings.hpp"
#include "rules/engine.hpp"
#include "tracker/tracker.hpp"

namespace knock::daemon {

// Where verified knocks go.
class KnockSink {
 public:
  virtual ~KnockSink() = default;
  virtual void report(privsep::KnockKind kind, bool by_ports, const rules::KnockEvent& event) noexcept = 0;
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

// "IP=198.18.1.2 PORT=22 FLAG0=0": the fields of a knock, in its format's order.
std::string describe_knock(const codec::KnockCodec& codec, const codec::KnockValues& values);

class Detector {
 public:
  explicit Detector(KnockSink& sink) : sink_(sink) {}
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

  // A configuration (at start and at each reload; `settings` must outlive its use here). The
  // tracker, and the knocks half-way through it, stays when nothing it was built from changed.
  void configure(const Settings& settings);
  bool configured() const { return tracker_ != nullptr; }
  // One observation from any source: the packet path.
  void observe(const capture::Observation& o) noexcept;

  tracker::Tracker& tracker() { return *tracker_; }
  const tracker::Tracker& tracker() const { return *tracker_; }
  Refusals& spa_refusals() { return spa_; }
  Refusals& fwknop_refusals() { return fwknop_; }
  std::uint64_t outside_span() const { return outside_span_; }  // ports outside the span
  std::uint64_t filtered() const { return filtered_; }          // refused by the ethfilter

 private:
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
  void count_spa(const spa::Verified& v) noexcept;
  void on_spa_datagram(const capture::Observation& o) noexcept;
  void on_spa(const capture::Observation& o, const spa::Verified& v, const char* how) noexcept;
  void on_fwknop_datagram(const capture::Observation& o) noexcept;
  void on_knock(const capture::Observation& o, const codec::KnockValues& values) noexcept;

  KnockSink& sink_;
  const Settings* settings_ = nullptr;
  Decoder decoder_;
  std::unique_ptr<tracker::Tracker> tracker_;
  Refusals spa_;
  Refusals fwknop_;
  std::uint64_t outside_span_ = 0;
  std::uint64_t filtered_ = 0;
};

}  // namespace knock::daemon
