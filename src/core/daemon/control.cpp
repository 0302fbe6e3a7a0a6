#include "daemon/control.hpp"

#include <fcntl.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "util/clock.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace knock::daemon {
namespace {

sockaddr_un address_of(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    throw RuntimeError("control socket path '" + path + "' is empty or longer than " +
                       std::to_string(sizeof addr.sun_path - 1) + " bytes");
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

double mono_now() { return mono_seconds(); }

}  // namespace

// Runs `f` with the file system gid `gid` (when set): what it creates is born in that group, so
// nothing is chowned by path afterwards (and no CAP_CHOWN is needed, which the unit does not have).
namespace {
template <typename F>
auto as_group(std::optional<gid_t> gid, F f) {
  if (!gid) return f();
  const auto old = static_cast<gid_t>(::setfsgid(*gid));
  struct Restore {
    gid_t g;
    ~Restore() { ::setfsgid(g); }
  } restore{old};
  return f();
}

std::string mode_text(mode_t mode) {
  char m[8];
  std::snprintf(m, sizeof m, "%04o", static_cast<unsigned>(mode & 07777));
  return m;
}
}  // namespace

ControlServer::ControlServer(Options options, Handler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {
  const sockaddr_un addr = address_of(options_.path);
  const std::size_t slash = options_.path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : options_.path.substr(0, slash);
  if (dir != "/" && dir != ".") {
    int e = 0;
    as_group(options_.group, [&] { e = ::mkdir(dir.c_str(), 0750) == 0 ? 0 : errno; });
    if (e != 0 && e != EEXIST) throw RuntimeError("control socket: cannot make " + dir + ": " + errno_message(e));
  }
  // The folder must be root's and writable by nobody else (unless sticky, as /tmp): another
  // user who can write there could swap the socket between the steps below.
  struct stat ds {};
  if (::stat(dir.c_str(), &ds) != 0) throw RuntimeError("control socket: " + dir + ": " + errno_message(errno));
  if (!S_ISDIR(ds.st_mode) || ds.st_uid != ::geteuid() ||
      ((ds.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (ds.st_mode & S_ISVTX) == 0))
    throw RuntimeError("control socket: " + dir + " must be a folder of the daemon's user (" +
                       std::to_string(::geteuid()) + ") that no one else may write (mode " + mode_text(ds.st_mode) + ", owner " + std::to_string(ds.st_uid) + ")");
  if (options_.group && (ds.st_mode & S_IXOTH) == 0 && !(ds.st_gid == *options_.group && (ds.st_mode & S_IXGRP) != 0))
    log::warning("control socket: the controlgroup cannot reach it: " + dir +
                 " (mode " + mode_text(ds.st_mode) + ") lets only its owner and group " + std::to_string(ds.st_gid) +
                 " in (give the folder that group, or mode 0755; the socket itself stays 0660)");
  struct stat st {};
  if (::lstat(options_.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw RuntimeError("control socket: " + options_.path + " exists and is not a socket");
    // A daemon still answering there keeps it; a stale one is replaced.
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
      const bool alive = ::connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
      ::close(probe);
      if (alive) throw RuntimeError("control socket: another daemon answers on " + options_.path);
    }
    ::unlink(options_.path.c_str());
  }
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) throw RuntimeError("control socket: socket: " + errno_message(errno));
  // Born root:GROUP 0660 (root:root 0600 without a group): no chown or chmod by path after.
  const mode_t old = ::umask(options_.group ? 0117 : 0177);
  int bind_errno = 0;
  as_group(options_.group, [&] {
    bind_errno = ::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 ? 0 : errno;
  });
  ::umask(old);
  if (bind_errno != 0) {
    ::close(listen_fd_);
    throw RuntimeError("control socket: bind " + options_.path + ": " + errno_message(bind_errno));
  }
  if (options_.group && (::lstat(options_.path.c_str(), &st) != 0 || st.st_gid != *options_.group)) {
    ::close(listen_fd_);
    ::unlink(options_.path.c_str());
    throw RuntimeError("control socket: cannot give " + options_.path + " to its group (setfsgid needs CAP_SETGID)");
  }
  if (::listen(listen_fd_, 16) != 0) {
    const int e = errno;
    ::close(listen_fd_);
    ::unlink(options_.path.c_str());
    throw RuntimeError("control socket: listen: " + errno_message(e));
  }
}

ControlServer::~ControlServer() {
  for (auto& c : clients_) ::close(c.fd);
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(options_.path.c_str());
  }
}

void ControlServer::add_poll_fds(std::vector<pollfd>& fds) {
  poll_from_ = fds.size();
  polled_ = clients_.size();
  fds.push_back({clients_.size() < options_.max_clients ? listen_fd_ : -1, POLLIN, 0});
  for (const auto& c : clients_) fds.push_back({c.fd, static_cast<short>(c.answering ? POLLOUT : POLLIN), 0});
}

double ControlServer::next_timeout(double) const {
  if (clients_.empty()) return 1;
  const double now = mono_now();
  double soonest = 1;
  for (const auto& c : clients_) soonest = std::min(soonest, std::max(0.0, c.deadline - now));
  return soonest;
}

bool ControlServer::allowed(int fd, const ucred& peer) const {
  if (peer.uid == 0) return true;
  if (!options_.group) return false;
  if (peer.gid == *options_.group) return true;
  // The peer's supplementary groups as the kernel holds them (what decided its connect() to the
  // socket file, too): no user or group database is asked, so a slow NSS source (LDAP) cannot
  // stall the monitor's loop. NGROUPS_MAX (65536) bounds the list.
  std::vector<gid_t> groups(64);
  socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) {
    if (errno != ERANGE || len > 65536 * sizeof(gid_t)) return false;
    groups.resize(len / sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) return false;
  }
  groups.resize(std::min<std::size_t>(groups.size(), len / sizeof(gid_t)));
  return std::find(groups.begin(), groups.end(), *options_.group) != groups.end();
}

void ControlServer::accept_clients(double) {
  while (clients_.size() < options_.max_clients) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;  // EAGAIN: none left (or a transient error: next time)
    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 || !allowed(fd, peer)) {
      ++refused_;
      log::warning("control socket: refused uid " + std::to_string(peer.uid) + " (pid " + std::to_string(peer.pid) +
                   "): only root" + (options_.group ? std::string(" and the control group") : std::string()) +
                   " may use it");
      const char no[] = "error: permission denied\n";
      (void)!::send(fd, no, sizeof no - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      continue;
    }
    Client c;
    c.fd = fd;
    c.deadline = mono_now() + options_.timeout;
    clients_.push_back(std::move(c));
  }
}

bool ControlServer::read_from(Client& c) {
  char buf[512];
  for (;;) {
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (n == 0) return false;  // gone before asking
    c.in.append(buf, static_cast<std::size_t>(n));
    const std::size_t nl = c.in.find('\n');
    if (nl == std::string::npos) {
      if (c.in.size() >= options_.max_request) {
        c.out = "error: request longer than " + std::to_string(options_.max_request) + " bytes\n";
        c.answering = true;
        return true;
      }
      continue;
    }
    std::string_view line(c.in.data(), nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    try {
      c.out = handler_(line);
    } catch (const std::exception& e) {
      c.out = std::string("error: ") + e.what() + "\n";
    }
    if (c.out.size() > options_.max_answer) c.out = "error: answer too long\n";
    if (c.out.empty() || c.out.back() != '\n') c.out += '\n';
    c.answering = true;
    return true;
  }
}

bool ControlServer::write_to(Client& c) {
  while (c.sent < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    c.sent += static_cast<std::size_t>(n);
  }
  return false;  // all sent: close
}

void ControlServer::process(const std::vector<pollfd>& fds, double now) {
  if (poll_from_ < fds.size() && (fds[poll_from_].revents & POLLIN)) accept_clients(now);
  const double mono = mono_now();
  // The connections polled this turn are the first ones (accepted ones come after them).
  const std::size_t polled = std::min(polled_, fds.size() > poll_from_ + 1 ? fds.size() - poll_from_ - 1 : 0);
  for (std::size_t i = 0; i < clients_.size(); ++i) {
    Client& c = clients_[i];
    bool keep = true;
    if (i < polled && fds[poll_from_ + 1 + i].fd == c.fd) {
      const short ev = fds[poll_from_ + 1 + i].revents;
      if (!c.answering && (ev & (POLLIN | POLLHUP | POLLERR))) keep = read_from(c);
      if (keep && c.answering) keep = write_to(c);  // try at once: most answers fit the buffer
      else if (keep && (ev & (POLLHUP | POLLERR))) keep = false;
    }
    if (keep && mono >= c.deadline) keep = false;
    if (!keep) {
      ::close(c.fd);
      c.fd = -1;
    }
  }
  std::erase_if(clients_, [](const Client& c) { return c.fd < 0; });
}

std::string control_request(const std::string& path, std::string_view request, double timeout) {
  const sockaddr_un addr = address_of(path);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw RuntimeError("socket: " + errno_message(errno));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout);
  tv.tv_usec = static_cast<suseconds_t>((timeout - static_cast<double>(tv.tv_sec)) * 1e6);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    ::close(fd);
    throw RuntimeError("cannot reach knockdaemon at " + path + ": " + errno_message(e) +
                       (e == ENOENT || e == ECONNREFUSED ? " (is it running? see controlsocket)" : ""));
  }
  std::string line(request);
  line += '\n';
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    const int e = errno;
    ::close(fd);
    throw RuntimeError("cannot send to knockdaemon: " + errno_message(e));
  }
  std::string answer;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw RuntimeError("no answer from knockdaemon: " + errno_message(e));
    }
    if (n == 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return answer;
}

}  // namespace knock::daemon
