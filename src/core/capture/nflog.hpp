#pragma once
// Knocks seen through NFLOG: the firewall itself hands matching packets to the daemon
// (iptables `-j NFLOG --nflog-group N`, nftables `log group N`) over a netlink socket. No log
// file, no packet socket.
//
// Three layers:
//  - parse_nflog_message(): one raw netlink message -> an Observation, bounds-checked and noexcept.
//    The bytes are treated as hostile (libnetfilter-log's own parser trusts the kernel).
//  - NflogReader: the messages of received datagrams, with counters, a cursor (a batch can stop
//    at the budget or at an exception and resume) and no allocation after construction. Needs no
//    socket: tests feed it bytes.
//  - NflogSource: the netlink socket (libnetfilter-log binds the group and sets the copy mode)
//    feeding an NflogReader; a capture::Source.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "capture/observation.hpp"
#include "capture/packet.hpp"
#include "capture/source.hpp"

struct nflog_handle;
struct nflog_g_handle;

namespace knock::capture {

enum class NflogStatus : std::uint8_t {
  Ok,            // an Observation (ParseStatus Ok)
  Truncated,     // fewer bytes than the headers, or than the message's own length says
  BadLength,     // nlmsg_len smaller than the headers
  NotPacket,     // another netlink message type (not NFULNL_MSG_PACKET), or nfgenmsg version != 0
  BadAttribute,  // attribute length < 4 or past the message end, wrong size for its type,
                 // a known attribute nested or repeated, an unterminated prefix, bad timestamp
  NoPayload,     // no NFULA_PAYLOAD (or an empty one)
  Packet,        // the payload is not a usable IP packet: see NflogMessage::packet_status
};
inline constexpr std::size_t kNflogStatusCount = 7;
std::string_view to_string(NflogStatus status) noexcept;

// Netlink/nfnetlink constants (linux/netlink.h, linux/netfilter/nfnetlink*.h).
inline constexpr std::size_t kNlmsgHeaderBytes = 16;
inline constexpr std::size_t kNfgenmsgBytes = 4;
inline constexpr std::uint16_t kNflogPacketType = (4u << 8) | 0u;  // NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET
inline constexpr std::uint16_t kNfulaPacketHdr = 1, kNfulaMark = 2, kNfulaTimestamp = 3,
                               kNfulaPayload = 9, kNfulaPrefix = 10, kNfulaSeq = 12;

struct NflogMessage {
  NflogStatus status = NflogStatus::Truncated;
  ParseStatus packet_status = ParseStatus::Ok;  // meaningful when status is Ok or Packet
  Observation observation;                      // meaningful when status == Ok
  std::uint8_t family = 0;                      // nfgen_family (NFPROTO_IPV4 = 2, IPV6 = 10, ...)
  std::uint16_t group = 0;                      // res_id: the NFLOG group
  std::uint16_t hw_protocol = 0;                // NFULA_PACKET_HDR (0 when absent)
  std::uint8_t hook = 0;
  bool has_timestamp = false;
  bool has_seq = false;
  std::uint32_t seq = 0;                        // NFULA_SEQ (instance-local)
  std::string_view prefix;                      // NFULA_PREFIX without its NUL (views the input)
  const std::uint8_t* payload = nullptr;        // NFULA_PAYLOAD: the IP packet (views the input)
  std::size_t payload_size = 0;
  bool ok() const noexcept { return status == NflogStatus::Ok; }
};

// One netlink message at data (size bytes available; the message's nlmsg_len must fit in them,
// bytes after it are ignored). The payload is parsed as IPv4 or IPv6 by the packet header's
// hw_protocol, else by the version nibble. The time is NFULA_TIMESTAMP when present, else now.
// Views in the result point into data.
NflogMessage parse_nflog_message(const std::uint8_t* data, std::size_t size, double now) noexcept;

class NflogReader {
 public:
  // Extras beyond SourceStats.
  struct Counters {
    std::uint64_t datagrams = 0;       // recv() results loaded
    std::uint64_t overruns = 0;        // ENOBUFS: the socket's queue overflowed
    std::uint64_t seq_lost = 0;        // messages missing by NFULA_SEQ
    std::uint64_t foreign = 0;         // datagrams not from the kernel (ignored)
    std::uint64_t cut = 0;             // datagrams longer than the buffer (MSG_TRUNC)
    std::uint64_t framing = 0;         // a datagram whose netlink framing broke (rest skipped)
    std::array<std::uint64_t, kNflogStatusCount> by_status{};
  };

  explicit NflogReader(std::size_t buffer_bytes = 64 * 1024);

  // Where recv() writes, and how much room it has.
  std::uint8_t* buffer() noexcept { return buffer_.data(); }
  std::size_t capacity() const noexcept { return buffer_.size(); }
  // n bytes were received into buffer() at time now (truncated: the datagram was longer).
  void loaded(std::size_t n, double now, bool truncated = false) noexcept;
  void note_overrun() noexcept;
  // The next NFULA_SEQ expected: a freshly bound group with sequence numbers starts at 0, so
  // losses before the first message count too. Until this is called or a first message arrives,
  // each overrun counts as one drop.
  void expect_seq(std::uint32_t next) noexcept {
    seq_known_ = true;
    seq_next_ = next;
  }
  void note_foreign() noexcept { ++counters_.foreign; }
  // Messages of the loaded datagram not handled yet.
  bool pending() const noexcept { return offset_ < end_; }
  // Handles up to budget (>= 1) NFLOG packet messages of the loaded datagram; returns how many.
  // An exception from the callback propagates; the message it was given counts as handled.
  int deliver(const ObservationCallback& callback, int budget);

  const SourceStats& stats() const noexcept { return stats_; }
  const Counters& counters() const noexcept { return counters_; }

 private:
  std::vector<std::uint8_t> buffer_;
  std::size_t offset_ = 0;
  std::size_t end_ = 0;
  double now_ = 0;
  bool seq_known_ = false;
  std::uint32_t seq_next_ = 0;
  SourceStats stats_;
  Counters counters_;
};

class NflogSource final : public Source {
 public:
  struct Options {
    std::uint16_t group = 0;
    std::uint32_t copy_range = 1500;          // bytes of each packet the kernel copies
    int receive_buffer = 8 * 1024 * 1024;     // SO_RCVBUFFORCE (needs CAP_NET_ADMIN), else SO_RCVBUF
    std::uint32_t queue_threshold = 16;       // messages the kernel batches into one datagram...
    std::uint32_t flush_timeout = 1;          // ...or 1/100 s it waits before sending a batch
    std::size_t read_buffer = 64 * 1024;      // one datagram; longer ones are counted (cut)
  };
  // Opens a netlink socket (close-on-exec, non-blocking) and binds the group for IPv4 and IPv6.
  // Throws RuntimeError (EBUSY: another program, e.g. ulogd, holds the group; EPERM: not root).
  explicit NflogSource(Options options);
  ~NflogSource() override;
  NflogSource(const NflogSource&) = delete;
  NflogSource& operator=(const NflogSource&) = delete;

  int fd() const override { return fd_; }
  double next_timeout(double) const override { return reader_.pending() ? 0 : -1; }
  int dispatch(const ObservationCallback& callback, int budget) override;
  SourceStats stats() override { return reader_.stats(); }
  std::string describe() override;
  const std::string& key() const override { return key_; }

  const NflogReader::Counters& counters() const noexcept { return reader_.counters(); }
  int receive_buffer() const noexcept { return rcvbuf_; }  // what the kernel granted

 private:
  Options options_;
  std::string key_;
  nflog_handle* handle_ = nullptr;
  nflog_g_handle* group_ = nullptr;
  int fd_ = -1;
  int rcvbuf_ = 0;
  NflogReader reader_;
};

}  // namespace knock::capture
