#pragma once
// knockclient -proxy HOST PORT and -wait PORT: after the knock, connect to the port as soon as
// the door is open, then relay standard input and output through the connection (-proxy, for
// ssh's ProxyCommand) or just close it (-wait).
//
// The door opens some milliseconds after the knock, at a moment the client cannot know. A
// blocking connect() whose SYN reaches the firewall before the rule would wait for the kernel's
// first SYN retransmission, one second later. Instead a fresh non-blocking connect starts every
// `interval`, each abandoned after `attempt_timeout` (below that one second, so no socket ever
// retransmits); the first to be accepted wins, the others are dropped. After `fast_for` the
// attempts are fewer and live longer, so that a path whose round trip exceeds attempt_timeout
// still connects.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/address.hpp"
#include "util/cli.hpp"

namespace knock::config {
class Value;
}

namespace knock::client {

struct ClientPlan;

inline constexpr std::chrono::milliseconds kDefaultWaitTime{10000};

struct RetryPolicy {
  std::chrono::milliseconds interval{15};          // a fresh attempt this often during the first `fast_for`
  std::chrono::milliseconds attempt_timeout{900};  // each dropped then if unanswered (no retransmission)
  std::chrono::milliseconds fast_for{2000};
  // Then, for slow paths (a round trip near or above attempt_timeout), fewer attempts that live
  // longer: the kernel may retransmit their SYN.
  std::chrono::milliseconds slow_interval{250};
  std::chrono::milliseconds slow_attempt_timeout{3000};
  std::chrono::milliseconds deadline = kDefaultWaitTime;  // the whole wait
};

struct Connected {
  int fd = -1;                           // the connected socket (non-blocking, close-on-exec); the caller closes it
  int attempts = 0;                      // connects started
  int winner = 0;                        // which of them (from 1) was accepted
  std::chrono::milliseconds elapsed{0};  // from the first attempt to the accepted connection
  std::vector<std::chrono::steady_clock::time_point> launched;  // when each attempt's connect() returned
};

// Connects to remote:port, retrying as described above until `policy.deadline`. Throws
// RuntimeError (one line: the address, the wait, the number of attempts and the last outcome)
// when no attempt is accepted in time. Never waits longer than the deadline plus one poll.
Connected connect_when_open(const IpAddress& remote, std::uint16_t port, const RetryPolicy& policy);

// Copies in_fd to the socket and the socket to out_fd until the socket's peer closes; when in_fd
// reaches end of file the socket's sending side is shut down (the peer sees end of file) and
// the relay goes on until the peer closes. Partial writes, EINTR and full pipes are handled
// (in_fd and out_fd are made non-blocking for the relay and restored afterwards); SIGPIPE is
// ignored. Returns 0 when the peer closed and everything it sent was written, 1 after logging
// one error line (a reset connection, an unwritable out_fd, a read error).
int relay(int sock, int in_fd, int out_fd);

// What follows the knock.
struct FollowUp {
  enum class Mode { Proxy, Wait } mode = Mode::Wait;
  std::uint16_t port = 0;
  RetryPolicy retry;
};

// Takes -proxy HOST PORT (HOST becomes -remote; PORT is the one positional argument, removed),
// -wait PORT and -waittime SECONDS (or waittime = SECONDS in the config) from `args`; PORT also
// becomes -port (the knock's PORT field) unless -port or port = is set. nullopt when neither
// -proxy nor -wait is given. With -proxy the default log level becomes warnings
// (ssh shows the command's standard error), unless -debug or -quiet is given. Throws
// ConfigError.
std::optional<FollowUp> take_follow_up(cli::ParsedArgs& args, const config::Value* root);

// After make_plan: refuses -test and -logfile (nothing would be sent). Throws ConfigError.
void check_follow_up(const FollowUp& follow, const ClientPlan& plan);

// After the knock was sent: connect (and relay with -proxy). Returns the exit code; throws
// RuntimeError when the door stays shut.
int run_follow_up(const FollowUp& follow, const ClientPlan& plan);

}  // namespace knock::client
