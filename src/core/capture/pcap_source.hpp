#pragma once
// Where packets come from: one interface with a live (libpcap on an interface) and an offline
// (capture file) variant, like Zeek's iosource. Each packet is parsed at once; Observations go
// to the callback, parse failures are counted by reason.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "capture/observation.hpp"
#include "capture/packet.hpp"

typedef struct pcap pcap_t;

namespace knock::capture {

struct CaptureStats {
  std::uint64_t packets = 0;           // frames handed to the parser
  std::uint64_t observations = 0;      // frames that gave an Observation
  std::array<std::uint64_t, kParseStatusCount> by_status{};  // index: ParseStatus
  // From pcap_stats (live only; 0 offline).
  std::uint64_t kernel_received = 0;
  std::uint64_t kernel_dropped = 0;
  std::uint64_t interface_dropped = 0;
};

using ObservationCallback = std::function<void(const Observation&)>;

struct PcapCloser {
  void operator()(pcap_t* p) const noexcept;
};
using PcapHandle = std::unique_ptr<pcap_t, PcapCloser>;

class PacketSource {
 public:
  virtual ~PacketSource() = default;
  // A descriptor to poll for readability, or -1 (offline: always ready until exhausted()).
  virtual int selectable_fd() const = 0;
  // Reads up to max_packets (<= 0: whatever is available / the whole file) and parses them.
  // Returns the number of frames read. Throws RuntimeError when the capture fails; an exception
  // thrown by the callback stops the batch and is rethrown.
  virtual int dispatch(const ObservationCallback& callback, int max_packets) = 0;
  // Offline source at its end (or failed); always false for a live source.
  virtual bool exhausted() const = 0;
  virtual int datalink() const = 0;
  // Counters; refreshes the kernel figures of a live capture.
  virtual CaptureStats stats() = 0;
  virtual std::string description() const = 0;
};

// libpcap on an interface ("any" for all). Throws RuntimeError with libpcap's message.
class LivePcapSource final : public PacketSource {
 public:
  struct Options {
    int snaplen = 1500;
    int buffer_bytes = 4 * 1024 * 1024;
    bool promiscuous = false;
  };
  LivePcapSource(const std::string& interface, const std::string& bpf_filter, Options options);
  LivePcapSource(const std::string& interface, const std::string& bpf_filter)
      : LivePcapSource(interface, bpf_filter, Options{}) {}

  int selectable_fd() const override { return fd_; }
  int dispatch(const ObservationCallback& callback, int max_packets) override;
  bool exhausted() const override { return false; }
  int datalink() const override { return dlt_; }
  CaptureStats stats() override;
  std::string description() const override { return "interface " + interface_; }

 private:
  std::string interface_;
  PcapHandle handle_;
  int dlt_ = 0;
  int fd_ = -1;
  CaptureStats stats_;
};

// A capture file; packet timestamps are the clock. A file cut in the middle of a record ends the
// source (last_error() says why) rather than throwing.
class OfflinePcapSource final : public PacketSource {
 public:
  OfflinePcapSource(const std::string& path, const std::string& bpf_filter);

  int selectable_fd() const override { return -1; }
  int dispatch(const ObservationCallback& callback, int max_packets) override;
  bool exhausted() const override { return exhausted_; }
  int datalink() const override { return dlt_; }
  CaptureStats stats() override { return stats_; }
  std::string description() const override { return "file " + path_; }
  const std::string& last_error() const { return error_; }

 private:
  std::string path_;
  PcapHandle handle_;
  int dlt_ = 0;
  bool exhausted_ = false;
  std::string error_;
  CaptureStats stats_;
};

// expr adapted to link type dlt: for Ethernet, VLAN-tagged frames are also tested (unless expr
// already mentions vlan); for Linux cooked captures (no `vlan` in libpcap for them) every
// VLAN-tagged frame passes (the kernel strips tags live; this is for capture files); for BSD loopback (0, 108) no filter at all, because libpcap tests
// their IPv6 headers against the compiling host's AF_INET6 value (10 on Linux) and would drop
// IPv6 from BSD captures. Both sources apply this to the filter they are given.
std::string link_filter(const std::string& expr, int dlt);
// Compiles link_filter(expr) for handle (optimised) and installs it; throws RuntimeError with
// pcap's message.
void set_bpf_filter(pcap_t* handle, const std::string& expr);
// True when expr compiles for link type dlt; error (if given) receives pcap's message otherwise.
bool bpf_compiles(int dlt, const std::string& expr, std::string* error = nullptr,
                  int snaplen = 65535);

}  // namespace knock::capture
