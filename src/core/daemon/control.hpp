#pragma once
// The control socket knockctl talks to (a Unix stream socket; doc/knockctl.1): one request line
// per connection, one answer, then the daemon closes it. Every connection is hostile input
// from a local user: the socket file is root's, mode 0600 (0660 with `controlgroup`), the peer
// is checked again with SO_PEERCRED, requests are one line of at most 1 KiB, at most 8
// connections at once, each ended after 2 s, answers bounded; nothing here blocks the loop.
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace knock::daemon {

class ControlServer {
 public:
  struct Options {
    std::string path;
    std::optional<gid_t> group;  // controlgroup: its members may use the socket too
    std::size_t max_clients = 8;
    double timeout = 2.0;                   // seconds a connection may take in all
    std::size_t max_request = 1024;         // bytes, the newline included
    std::size_t max_answer = 16u << 20;     // bytes
  };
  // The answer to one request line (without its newline), for a peer already allowed.
  using Handler = std::function<std::string(std::string_view request)>;

  // Binds the socket (making its folder, 0750, when missing). Throws RuntimeError: the path is
  // not a socket, another daemon answers on it, or a step fails.
  ControlServer(Options options, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Appends the descriptors to poll (the listening one, then the connections).
  void add_poll_fds(std::vector<pollfd>& fds);
  // Handles what poll() reported for the descriptors add_poll_fds() appended.
  void process(const std::vector<pollfd>& fds, double now);
  // Seconds until a connection times out (1 when none).
  double next_timeout(double now) const;
  const std::string& path() const { return options_.path; }
  std::size_t connections() const { return clients_.size(); }
  std::uint64_t refused() const { return refused_; }

 private:
  struct Client {
    int fd = -1;
    double deadline = 0;
    std::string in;
    std::string out;
    std::size_t sent = 0;
    bool answering = false;
  };
  void accept_clients(double now);
  bool allowed(int fd, const ucred& peer) const;
  // Reads what is there; when a line is complete, answers it. False: close the connection.
  bool read_from(Client& c);
  bool write_to(Client& c);

  Options options_;
  Handler handler_;
  int listen_fd_ = -1;
  std::size_t poll_from_ = 0;
  std::size_t polled_ = 0;  // connections add_poll_fds() appended
  std::vector<Client> clients_;
  std::uint64_t refused_ = 0;
};

// knockctl's side: sends `request` to the socket at `path` and returns the whole answer.
// Throws RuntimeError (no daemon there, permission denied, no answer within timeout seconds).
std::string control_request(const std::string& path, std::string_view request, double timeout = 10);

}  // namespace knock::daemon
