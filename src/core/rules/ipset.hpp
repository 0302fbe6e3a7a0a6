#pragma once
// ipset commands run inside the daemon through libipset (template keys `ipset`, `ipset4`,
// `ipset6`), for iptables firewalls: `-m set --match-set portknock src,dst -j ACCEPT` and a set
// created with `timeout 0` let the kernel remove each element after its own timeout, with no
// process per knock. The command is one line of `ipset restore`, without the program name:
//   add portknock IP,tcp:PORT timeout 30      del portknock IP,tcp:PORT
// Every command runs as with `ipset -exist`: adding an element already there refreshes its
// timeout (a second knock keeps the door open longer), deleting one already gone (its timeout
// passed) succeeds, so a close is never retried for nothing.
#include <optional>
#include <string>
#include <string_view>

#include "rules/in_process.hpp"

struct ipset;

namespace knock::rules {

// Why `text` is not a command this daemon runs through libipset, or nullopt when it is: words of
// letters, digits and _ . : , / - separated by spaces, none starting with '-' (no -exist, -file,
// -output), the first `add` or `del`, the second a set name (at most 31 of letters, digits and
// _ . -), then an element and the element's options (timeout N, ...). Checked when the
// configuration is read (field names stand for numbers there) and again before each run.
std::optional<std::string> ipset_command_error(std::string_view text);

class IpsetExecutor final : public InProcessAction {
 public:
  IpsetExecutor();
  ~IpsetExecutor() override;
  IpsetExecutor(const IpsetExecutor&) = delete;
  IpsetExecutor& operator=(const IpsetExecutor&) = delete;

  // Runs one command; false with libipset's message (e.g. "The set with the given name does not
  // exist") in *error. Never throws, never prints.
  bool run(const std::string& command, std::string* error) noexcept override;
  // Opens the netlink socket and checks the kernel's protocol version now, not on the first knock.
  void prepare() noexcept override;

 private:
  friend struct IpsetCallbacks;  // libipset's error and output callbacks (ipset.cpp)
  // After a command that may have opened the socket: marks it close-on-exec.
  void after_open() noexcept;

  ::ipset* handle_ = nullptr;
  bool socket_seen_ = false;
  std::string message_;
};

}  // namespace knock::rules
