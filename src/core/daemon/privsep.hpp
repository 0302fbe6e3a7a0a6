#pragma once
// The protocol between the monitor (privileged: config, keys' owner, rules engine, commands,
// state cache) and the worker (unprivileged, confined: capture, tracking, decoding, verifying).
// doc/SECURITY.md, "Two processes", describes who holds what.
//
// One AF_UNIX SOCK_SEQPACKET socketpair: every message is one datagram of at most kMaxMessage
// bytes, so a message is never split or merged. The worker sends:
//   KNOCK      one knock its detector verified: kind, the source address, the knock's field
//              values, the names an authenticated knock carries, and its replay identities;
//   LOG_CHECK  (file mode) "is there a new file at the log's name? I hold dev/ino";
//   COUNTERS   its refusal counters (for the monitor's summaries and metrics; only counted);
// the monitor answers LOG_CHECK only, with LOG_REPLY and, when there is a new file, its
// descriptor (SCM_RIGHTS). Nothing else travels; descriptors go only monitor -> worker.
//
// Every message is hostile to the monitor: decode_*() check the type, version, every length
// and value range, and that nothing trails; the monitor then checks names and values against
// its own configuration and evaluates conditions on its own state. A worker cannot name a
// template, an action or a path, only report a knock the configuration accepts anyway.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "rules/engine.hpp"

namespace knock::daemon::privsep {

inline constexpr std::size_t kMaxMessage = 1024;
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kMaxName = 64;  // client, stanza and user names
inline constexpr std::size_t kMaxProto = 8;

enum class Type : std::uint8_t { Knock = 1, LogCheck = 2, LogReply = 3, Counters = 4 };
enum class KnockKind : std::uint8_t { Original = 0, Spa = 1, Fwknop = 2 };
std::string_view to_string(KnockKind kind) noexcept;

using Buffer = std::array<std::uint8_t, kMaxMessage>;

// A KNOCK as the monitor decoded it: owns its strings (the event's extras point into them).
struct KnockReport {
  KnockKind kind = KnockKind::Original;
  bool by_ports = false;  // an authenticated message spelled over the span, not a datagram
  rules::KnockEvent event;
  std::string client;  // <client NAME> or <fwknop NAME>
  std::string proto;
  std::string user;
  KnockReport() = default;
  KnockReport(const KnockReport&) = delete;
  KnockReport& operator=(const KnockReport&) = delete;
};

// Worker side, no allocation: the message in `out`, its size; 0 when a name is too long.
std::size_t encode_knock(KnockKind kind, bool by_ports, const rules::KnockEvent& event, Buffer& out) noexcept;
std::size_t encode_log_check(dev_t dev, ino_t ino, Buffer& out) noexcept;

// Monitor side: false with `why` set when the message is malformed in any way.
bool decode_knock(std::span<const std::uint8_t> message, KnockReport& report, std::string& why);
struct LogCheck {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
};
// The worker's refusal counters: single-packet and fwknop, by reason, and the clock offsets.
struct Counters {
  static constexpr std::size_t kReasons = 32;
  struct Kind {
    std::array<std::uint64_t, kReasons> by_reason{};
    std::int64_t earliest = 0;
    std::int64_t latest = 0;
  };
  Kind spa;
  Kind fwknop;
  // The sources and the tracker (knockctl status, metrics).
  std::uint64_t packets = 0;        // units the sources read
  std::uint64_t dropped = 0;        // lost in the kernel's queues
  std::uint64_t ports_queued = 0;   // ports the tracker took
  std::uint64_t tracked = 0;        // sources tracked now
  std::uint64_t knocks = 0;         // knocks the tracker decoded
};
std::size_t encode_counters(const Counters& counters, Buffer& out) noexcept;
std::optional<Counters> decode_counters(std::span<const std::uint8_t> message, std::string& why);

std::optional<LogCheck> decode_log_check(std::span<const std::uint8_t> message, std::string& why);
// The type byte of a message, 0 when empty.
std::uint8_t type_of(std::span<const std::uint8_t> message) noexcept;

// A socketpair for one worker: [0] the monitor's end, [1] the worker's. SOCK_SEQPACKET,
// close-on-exec. Throws RuntimeError.
std::array<int, 2> make_channel();

// Sends one message (and a descriptor when fd >= 0). Returns false on any failure (errno set).
// flags: MSG_DONTWAIT where a full socket must not block (the monitor's answers).
bool send_message(int sock, std::span<const std::uint8_t> message, int fd = -1, int flags = 0) noexcept;
// Receives one message into `buffer` without blocking; returns its size, 0 when the peer is
// gone, -1 when nothing is there or on error (errno set). A descriptor that came with it lands
// in *fd (close-on-exec); descriptors where none was expected are closed. A message longer
// than the buffer is truncated: the caller refuses it (size == kMaxMessage + 1 is returned).
long receive_message(int sock, Buffer& buffer, int* fd = nullptr) noexcept;

// The worker's LOG_CHECK round trip: waits at most `timeout_ms` for the reply; returns the new
// file's descriptor or -1 (unchanged, none, refused, or no answer).
int ask_for_log(int sock, dev_t dev, ino_t ino, int timeout_ms) noexcept;

}  // namespace knock::daemon::privsep
