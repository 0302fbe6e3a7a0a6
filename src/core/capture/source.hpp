#pragma once
// Sources as one interface (doc: design/house.md, "Sources as one interface"; Zeek's IOSource):
// the event loop polls every source's fd(), takes the smallest next_timeout(), and calls
// dispatch() on the ready ones with a budget so that a flooded source cannot starve the rest.
// A reload keeps a source whose key() is unchanged, reopens one whose key changed and closes one
// whose key vanished.
//
// Implementations: PcapSource (wraps LivePcapSource / OfflinePcapSource), LogSource (wraps
// LogFollower and a line parser), NflogSource
// (capture/nflog.hpp), UdpSocketSource (capture/udp_source.hpp).
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "capture/logfollow.hpp"
#include "capture/packet.hpp"
#include "capture/pcap_source.hpp"

namespace knock::capture {

// What every source counts. Units are what the source reads: frames (pcap), NFLOG messages,
// datagrams (UDP socket).
struct SourceStats {
  std::uint64_t received = 0;   // units read
  std::uint64_t delivered = 0;  // observations handed to the callback
  // Lost before this process could read them: the kernel's queue overflowed (pcap ps_drop +
  // ps_ifdrop, NFLOG sequence gaps / ENOBUFS, UDP SO_RXQ_OVFL).
  std::uint64_t dropped = 0;
  // Read but refused before IP parsing (a malformed NFLOG message, an oversize datagram).
  std::uint64_t malformed = 0;
  // Read but not an observation, by ParseStatus (index Ok is unused: those are delivered).
  std::array<std::uint64_t, kParseStatusCount> unparsed{};

  std::uint64_t unparsed_total() const noexcept;
};

// "received 10, delivered 8, dropped 0, malformed 1, unparsed 1 (truncated 1)": for summaries.
std::string format_stats(const SourceStats& stats);

class Source {
 public:
  virtual ~Source() = default;
  // A descriptor to poll for readability, or -1 (an offline source: always ready until closed()).
  virtual int fd() const = 0;
  // Seconds until dispatch() should run without the fd being readable: -1 = wait on fd(),
  // 0 = ready now (offline file, or work left over from an interrupted batch), > 0 = later.
  virtual double next_timeout(double now) const = 0;
  // Reads and parses up to budget units (<= 0: a source-defined default batch) without blocking
  // and hands each Observation to callback; the observation and its payload are valid only
  // during the call. Returns the number of units handled (0: nothing was ready). Throws
  // RuntimeError when the source fails for good; an exception from the callback stops the batch
  // and is rethrown (what was not delivered yet is kept for the next call where the source can).
  virtual int dispatch(const ObservationCallback& callback, int budget) = 0;
  // An offline source at its end: the loop may reap it. Always false for live sources.
  virtual bool closed() const { return false; }
  // Counters (refreshes kernel figures where the source has them).
  virtual SourceStats stats() = 0;
  // One line: what the source watches and its counters.
  virtual std::string describe() = 0;
  // What the source watches and how (everything that needs a reopen when it changes).
  virtual const std::string& key() const = 0;
  // Every descriptor the source reads: what a confined worker keeps when it closes the rest.
  virtual std::vector<int> descriptors() const { return {fd()}; }
  // Whether a process forked from the one that opened the source can pick up reading where an
  // earlier reader (a worker that died) stopped. False where the read position lives in the
  // reader's memory (libpcap's ring index): the monitor reopens such a source for a new worker.
  virtual bool resumable() const { return true; }
};

// The pcap sources behind the Source interface. Their own API (PacketSource) is unchanged.
class PcapSource final : public Source {
 public:
  // key: given by the caller (the daemon's source_key); empty -> "pcap " + description().
  explicit PcapSource(std::unique_ptr<PacketSource> packets, std::string key = "");

  int fd() const override { return packets_->selectable_fd(); }
  double next_timeout(double now) const override;
  int dispatch(const ObservationCallback& callback, int budget) override;
  bool closed() const override { return packets_->exhausted(); }
  SourceStats stats() override;
  std::string describe() override;
  const std::string& key() const override { return key_; }

  bool resumable() const override { return false; }

  PacketSource& packets() { return *packets_; }
  // The pcap counters as a SourceStats (kernel drops = ps_drop + ps_ifdrop).
  static SourceStats convert(const CaptureStats& stats);

 private:
  std::unique_ptr<PacketSource> packets_;
  std::string key_;
};

// A followed log file behind the Source interface: each complete line goes through parser (the
// <logformat> of the current configuration; a reload may swap it with set_parser() and keep
// the file). Units are lines; lines the parser refuses count in skipped (other kernel messages
// are normal there), not in the SourceStats core. The budget does not apply: LogFollower bounds
// each call by bytes (Options::max_bytes_per_call).
class LogSource final : public Source {
 public:
  using LineParser = std::function<std::optional<Observation>(std::string_view line, double now)>;
  LogSource(std::unique_ptr<LogFollower> follower, LineParser parser, std::string key = "");

  int fd() const override { return follower_->fd(); }
  double next_timeout(double now) const override;
  int dispatch(const ObservationCallback& callback, int budget) override;
  SourceStats stats() override { return stats_; }
  std::string describe() override;
  const std::string& key() const override { return key_; }

  std::vector<int> descriptors() const override { return follower_->descriptors(); }

  void set_parser(LineParser parser) { parser_ = std::move(parser); }
  std::uint64_t skipped() const noexcept { return skipped_; }
  LogFollower& follower() { return *follower_; }

 private:
  std::unique_ptr<LogFollower> follower_;
  LineParser parser_;
  std::string key_;
  SourceStats stats_;
  std::uint64_t skipped_ = 0;
};

// Default units per dispatch() when the caller passes budget <= 0 to a live source.
inline constexpr int kDefaultBudget = 256;

}  // namespace knock::capture
