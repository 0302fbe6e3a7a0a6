#include "capture/source.hpp"

#include <time.h>

#include <utility>

namespace knock::capture {

std::uint64_t SourceStats::unparsed_total() const noexcept {
  std::uint64_t total = 0;
  for (std::size_t i = 1; i < unparsed.size(); ++i) total += unparsed[i];
  return total;
}

std::string format_stats(const SourceStats& s) {
  std::string out = "received " + std::to_string(s.received) + ", delivered " +
                    std::to_string(s.delivered) + ", dropped " + std::to_string(s.dropped) +
                    ", malformed " + std::to_string(s.malformed) + ", unparsed " +
                    std::to_string(s.unparsed_total());
  std::string reasons;
  for (std::size_t i = 1; i < s.unparsed.size(); ++i) {
    if (s.unparsed[i] == 0) continue;
    if (!reasons.empty()) reasons += ", ";
    reasons += std::string(to_string(static_cast<ParseStatus>(i))) + " " + std::to_string(s.unparsed[i]);
  }
  if (!reasons.empty()) out += " (" + reasons + ")";
  return out;
}

PcapSource::PcapSource(std::unique_ptr<PacketSource> packets, std::string key)
    : packets_(std::move(packets)), key_(std::move(key)) {
  if (key_.empty()) key_ = "pcap " + packets_->description();
}

double PcapSource::next_timeout(double) const {
  if (packets_->selectable_fd() >= 0) return -1;
  return 0;  // a capture file is always ready until exhausted (closed())
}

int PcapSource::dispatch(const ObservationCallback& callback, int budget) {
  if (budget <= 0) budget = kDefaultBudget;  // never "the whole file" through this interface
  return packets_->dispatch(callback, budget);
}

SourceStats PcapSource::convert(const CaptureStats& c) {
  SourceStats s;
  s.received = c.packets;
  s.delivered = c.observations;
  s.dropped = c.kernel_dropped + c.interface_dropped;
  s.unparsed = c.by_status;
  s.unparsed[static_cast<std::size_t>(ParseStatus::Ok)] = 0;
  return s;
}

SourceStats PcapSource::stats() { return convert(packets_->stats()); }

std::string PcapSource::describe() { return packets_->description() + ": " + format_stats(stats()); }

LogSource::LogSource(std::unique_ptr<LogFollower> follower, LineParser parser, std::string key)
    : follower_(std::move(follower)), parser_(std::move(parser)), key_(std::move(key)) {
  if (key_.empty()) key_ = "file " + follower_->path();
}

double LogSource::next_timeout(double) const {
  // Never -1: even with inotify (fd()), the file is checked at least every interval.
  const double in = follower_->next_check_in();
  return in < 0 ? 0 : in;
}

int LogSource::dispatch(const ObservationCallback& callback, int) {
  int lines = 0;
  follower_->read_lines([&](std::string_view line) {
    ++lines;
    ++stats_.received;
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    const double now = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
    const std::optional<Observation> o = parser_ ? parser_(line, now) : std::nullopt;
    if (!o) {
      ++skipped_;
      return;
    }
    ++stats_.delivered;
    callback(*o);
  });
  return lines;
}

std::string LogSource::describe() {
  const LogFollower::Stats& f = follower_->stats();
  return "file " + follower_->path() + ": " + format_stats(stats_) + "; skipped " + std::to_string(skipped_) +
         ", long lines " + std::to_string(f.long_lines_skipped) + ", rotations " + std::to_string(f.rotations) +
         ", truncations " + std::to_string(f.truncations);
}

}  // namespace knock::capture
