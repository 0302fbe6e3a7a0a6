#include "capture/logfollow.hpp"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstring>

#include "util/error.hpp"
#include "util/log.hpp"

namespace knock::capture {

namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::uint32_t kDirEvents = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                     IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF |
                                     IN_MOVE_SELF | IN_ONLYDIR;

}  // namespace

LogFollower::LogFollower(std::string path, Options options)
    : path_(std::move(path)), options_(options), buffer_(kReadChunk) {
  if (options_.max_line == 0) options_.max_line = 1;
  if (options_.interval <= 0) options_.interval = 0.1;
  const std::size_t slash = path_.rfind('/');
  directory_ = slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0)
    log::warning("inotify unavailable (" + errno_message(errno) + "); checking " + path_ +
                 " every " + std::to_string(options_.interval) + " s");
  watch_directory();
  warn_about_directory();
  open_current(options_.start_at_end);
  starting_ = false;
  last_check_ = now();
}

std::string LogFollower::untrusted(const struct stat& st) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 07777));
  if ((st.st_mode & S_IWOTH) != 0) return std::string("is writable by every user (mode ") + mode + ")";
  if ((st.st_mode & S_IWGRP) != 0 && st.st_gid != 0)
    return "is writable by group " + std::to_string(st.st_gid) + " (mode " + mode + ")";
  if (st.st_uid != 0 && st.st_uid != geteuid()) return "belongs to uid " + std::to_string(st.st_uid) + ", not root";
  return "";
}

void LogFollower::warn_about_directory() const {
  struct stat dir {};
  if (::stat(directory_.c_str(), &dir) != 0) return;
  struct stat file {};
  const gid_t log_group = ::stat(path_.c_str(), &file) == 0 ? file.st_gid : 0;
  const bool others = (dir.st_mode & S_IWOTH) != 0;
  const bool group = (dir.st_mode & S_IWGRP) != 0 && dir.st_gid != 0 && dir.st_gid != log_group;
  const bool owner = dir.st_uid != 0 && dir.st_uid != geteuid();
  if (!others && !group && !owner) return;
  char mode[8];
  std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(dir.st_mode & 07777));
  log::warning("users other than root can create files in " + directory_ + " (mode " + mode + ", uid " +
               std::to_string(dir.st_uid) + ", gid " + std::to_string(dir.st_gid) +
               "): after a rotation one of them could put their own file at " + path_ +
               " (refused, but no knock is seen until the real log is back) or fill the folder; "
               "keep the log in a folder only root can write");
}

LogFollower::~LogFollower() {
  close_stream(current_);
  close_stream(retired_);
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

double LogFollower::now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double LogFollower::next_check_in() const {
  if (pending_) return 0;
  const double left = last_check_ + options_.interval - now();
  return left > 0 ? left : 0;
}

void LogFollower::watch_directory() {
  if (inotify_fd_ < 0 || dir_wd_ >= 0) return;
  dir_wd_ = inotify_add_watch(inotify_fd_, directory_.c_str(), kDirEvents);
}

void LogFollower::drain_inotify() {
  if (inotify_fd_ < 0) return;
  alignas(inotify_event) char events[4096];
  for (;;) {
    const ssize_t n = ::read(inotify_fd_, events, sizeof events);
    if (n <= 0) break;  // EAGAIN: drained
    for (ssize_t off = 0; off + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
      inotify_event ev;
      std::memcpy(&ev, events + off, sizeof ev);
      if (ev.wd == dir_wd_ && (ev.mask & IN_IGNORED) != 0) dir_wd_ = -1;  // directory gone
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev.len);
    }
  }
}

void LogFollower::close_stream(Stream& s) {
  if (s.fd >= 0) ::close(s.fd);
  s = Stream{};
}

std::vector<int> LogFollower::descriptors() const {
  std::vector<int> out;
  for (int fd : {inotify_fd_, current_.fd, retired_.fd})
    if (fd >= 0) out.push_back(fd);
  return out;
}

bool LogFollower::open_current(bool at_end) {
  const int fd = open_at_name();
  if (fd < 0) return false;
  adopt(fd, at_end);
  return true;
}

int LogFollower::open_new_at_name(dev_t dev, ino_t ino) {
  struct stat st {};
  if (lstat(path_.c_str(), &st) != 0) return -1;
  if (dev != 0 && ino != 0 && st.st_dev == dev && st.st_ino == ino) return -1;
  return open_at_name();
}

int LogFollower::open_at_name() {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno != ENOENT && !warned_) {
      log::warning("cannot open log " + path_ + ": " + errno_message(errno));
      warned_ = true;
    }
    return -1;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (!warned_) log::warning("log " + path_ + " is not a regular file; waiting");
    warned_ = true;
    ::close(fd);
    return -1;
  }
  if (const std::string why = untrusted(st); !why.empty()) {
    ::close(fd);
    const std::string message = "log " + path_ + " " + why +
                                ": its lines could be forged knocks; refusing to read it (the firewall's log must be "
                                "root's and writable by root only)";
    if (starting_) throw RuntimeError(message);
    if (!refused_) log::error(message);
    refused_ = true;
    return -1;
  }
  warned_ = false;
  refused_ = false;
  return fd;
}

void LogFollower::adopt(int fd, bool at_end) {
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return;
  }
  Stream s;
  s.fd = fd;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  if (at_end && st.st_size > 0) {
    s.pos = st.st_size;
    char last = '\n';
    // a line in progress at the end: its start is not ours to see
    if (pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n') s.skipping = true;
    if (lseek(fd, s.pos, SEEK_SET) < 0) s.pos = 0;
  }
  if (current_.fd >= 0) {
    close_stream(retired_);
    retired_ = std::move(current_);
    retired_until_ = now() + options_.rotate_grace;
    ++stats_.rotations;
  }
  current_ = std::move(s);
}

bool LogFollower::read_stream(Stream& s, const LineCallback& callback, std::size_t& budget) {
  if (s.fd < 0) return true;
  struct stat st {};
  const bool known = s.seen_mtime.tv_sec != 0 || s.seen_mtime.tv_nsec != 0;
  bool truncated = false;
  if (fstat(s.fd, &st) == 0) {
    if (st.st_size < s.pos) {
      truncated = true;  // truncated under us (copytruncate)
    } else if (st.st_size == s.pos && s.pos > 0 && known && s.tail_len > 0 &&
               (st.st_mtim.tv_sec != s.seen_mtime.tv_sec || st.st_mtim.tv_nsec != s.seen_mtime.tv_nsec)) {
      // Newer, and no longer than where we were: truncated and written again up to here, or
      // an append whose size is not visible yet. Only the first changes the bytes we read last.
      std::array<char, 32> now{};
      const ssize_t got = pread(s.fd, now.data(), s.tail_len, s.pos - static_cast<off_t>(s.tail_len));
      truncated = got != static_cast<ssize_t>(s.tail_len) || std::memcmp(now.data(), s.tail.data(), s.tail_len) != 0;
    }
  }
  if (truncated) {
    lseek(s.fd, 0, SEEK_SET);
    s.pos = 0;
    s.seen_mtime = {};
    s.tail_len = 0;
    s.partial.clear();
    s.skipping = false;
    ++stats_.truncations;
  }
  const std::size_t max_line = options_.max_line;
  while (budget > 0) {
    const std::size_t want = budget < buffer_.size() ? budget : buffer_.size();
    const ssize_t n = ::read(s.fd, buffer_.data(), want);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // EOF (or an error: try again at the next check)
      struct stat end {};
      if (n == 0 && fstat(s.fd, &end) == 0 && end.st_size == s.pos) {
        s.seen_mtime = end.st_mtim;
      } else {
        s.seen_mtime = {};
      }
      return true;
    }
    s.pos += n;
    s.seen_mtime = {};  // the file moved on since its time was noted: note it again at its end
    {  // keep the last bytes read (at most tail.size())
      const std::size_t take = std::min<std::size_t>(static_cast<std::size_t>(n), s.tail.size());
      const std::size_t keep = std::min(s.tail_len, s.tail.size() - take);
      std::memmove(s.tail.data(), s.tail.data() + s.tail_len - keep, keep);
      std::memcpy(s.tail.data() + keep, buffer_.data() + n - static_cast<ssize_t>(take), take);
      s.tail_len = keep + take;
    }
    budget -= static_cast<std::size_t>(n);
    stats_.bytes += static_cast<std::uint64_t>(n);
    std::string_view chunk(buffer_.data(), static_cast<std::size_t>(n));
    while (!chunk.empty()) {
      const std::size_t nl = chunk.find('\n');
      const std::string_view piece = chunk.substr(0, nl);
      if (nl == std::string_view::npos) {  // unterminated: keep (bounded) for the next read
        if (!s.skipping) {
          if (s.partial.size() + piece.size() > max_line) {
            s.partial.clear();
            s.skipping = true;
            ++stats_.long_lines_skipped;
          } else {
            s.partial.append(piece);
          }
        }
        break;
      }
      chunk.remove_prefix(nl + 1);
      if (s.skipping) {
        s.skipping = false;
        continue;
      }
      std::string_view line = piece;
      if (!s.partial.empty()) {
        if (s.partial.size() + piece.size() > max_line) {
          s.partial.clear();
          ++stats_.long_lines_skipped;
          continue;
        }
        s.partial.append(piece);
        line = s.partial;
      } else if (line.size() > max_line) {
        ++stats_.long_lines_skipped;
        continue;
      }
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      ++stats_.lines;
      callback(line);
      s.partial.clear();
    }
  }
  return false;
}

void LogFollower::read_lines(const LineCallback& callback) {
  drain_inotify();
  watch_directory();
  const double t = now();
  last_check_ = t;
  std::size_t budget = options_.max_bytes_per_call == 0 ? kReadChunk : options_.max_bytes_per_call;
  pending_ = false;

  // Finish what was written to the files we hold before looking at the name again.
  if (retired_.fd >= 0) {
    if (!read_stream(retired_, callback, budget)) {
      pending_ = true;
      return;
    }
    if (t >= retired_until_) close_stream(retired_);
  }
  if (!read_stream(current_, callback, budget)) {
    pending_ = true;
    return;
  }
  const dev_t dev = current_.fd >= 0 ? current_.dev : 0;
  const ino_t ino = current_.fd >= 0 ? current_.ino : 0;
  const int fd = name_check_ ? name_check_(dev, ino) : open_new_at_name(dev, ino);
  if (fd >= 0) {
    adopt(fd, false);
    if (!read_stream(current_, callback, budget)) pending_ = true;
  }
}

}  // namespace knock::capture
