#pragma once
// Follows a log file like `tail -F`: starts at its end, survives rotation by rename (the old
// file is read to its end, and kept open for a grace period for writers that have not reopened
// yet) and by truncation, picks up a file that appears later or reappears after deletion.
// Wakes on inotify (the directory is watched) with Options::interval as the upper bound
// between checks. Lines are bounded: longer ones are skipped and counted, never buffered.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/stat.h>
#include <sys/types.h>

namespace knock::capture {

class LogFollower {
 public:
  struct Options {
    double interval = 1.0;                        // fileinterval: seconds between checks
    std::size_t max_line = 64 * 1024;             // longer lines are skipped
    bool start_at_end = true;                     // for the file present at construction
    std::size_t max_bytes_per_call = 4u << 20;    // read_lines() returns after this much
    double rotate_grace = 10.0;                   // seconds a renamed-away file is still read
  };
  struct Stats {
    std::uint64_t lines = 0;
    std::uint64_t long_lines_skipped = 0;
    std::uint64_t rotations = 0;       // switched to a new file at the name
    std::uint64_t truncations = 0;
    std::uint64_t bytes = 0;
  };
  using LineCallback = std::function<void(std::string_view)>;

  explicit LogFollower(std::string path) : LogFollower(std::move(path), Options{}) {}
  LogFollower(std::string path, Options options);
  ~LogFollower();
  LogFollower(const LogFollower&) = delete;
  LogFollower& operator=(const LogFollower&) = delete;

  // Poll this for readability (the inotify descriptor); -1 when inotify is unavailable.
  int fd() const { return inotify_fd_; }
  // Seconds until read_lines() should run even without an inotify event (0: now).
  double next_check_in() const;
  // Drains inotify, checks the file (rotation, truncation, appearance) and delivers every
  // complete new line (without its '\n' or "\r\n"), up to max_bytes_per_call. The view is
  // valid only during the callback.
  void read_lines(const LineCallback& callback);

  bool is_open() const { return current_.fd >= 0; }

  // Reaching the file by its name. By default the follower looks at the name itself; a
  // confined worker (daemon/privsep.hpp) has no file system and asks the monitor instead.
  // The check gets the identity of the file held now (dev 0, ino 0: none) and returns the
  // descriptor of a new, trusted file at the name, or -1 (unchanged, absent, or refused).
  using NameCheck = std::function<int(dev_t dev, ino_t ino)>;
  void set_name_check(NameCheck check) { name_check_ = std::move(check); }
  // The local check: lstat() the name; when it names another file than (dev, ino), opens it
  // (O_NOFOLLOW, a regular file root may trust, see untrusted()) and returns it, else -1.
  int open_new_at_name(dev_t dev, ino_t ino);
  // Takes `fd` (from open_new_at_name) as the current file; the one held so far is read to its
  // end for rotate_grace seconds. at_end: start reading at the end of the file.
  void adopt(int fd, bool at_end);
  dev_t current_dev() const { return current_.dev; }
  ino_t current_ino() const { return current_.ino; }
  // Every descriptor the follower reads (inotify, current and retired files).
  std::vector<int> descriptors() const;
  const Stats& stats() const { return stats_; }
  const std::string& path() const { return path_; }

 private:
  struct Stream {
    int fd = -1;
    dev_t dev = 0;
    ino_t ino = 0;
    off_t pos = 0;
    // The modification time when the file was last read to its end (pos == size); {0, 0}: not
    // known. A file no longer than pos with a newer time was truncated and written again.
    struct timespec seen_mtime {};
    // The last bytes read before pos: a file of the same length with a newer time whose bytes
    // there changed was rewritten; unchanged, it is only being appended to (the time moves
    // before the size does during a write).
    std::array<char, 32> tail{};
    std::size_t tail_len = 0;
    std::string partial;     // start of a line not yet terminated (<= max_line)
    bool skipping = false;   // discarding up to the next newline
  };
  void watch_directory();
  void drain_inotify();
  // Opens the file at the name (open_new_at_name) and adopts it. A file a user other than root
  // (or this process's user) could write is refused: an exception while the follower is being
  // built, an error logged once (and the file not read) after a rotation.
  bool open_current(bool at_end);
  int open_at_name();
  // Why the daemon must not trust the log file st describes ("" when it may).
  static std::string untrusted(const struct stat& st);
  // A warning when users other than root (or the log file's group) can create files in its folder.
  void warn_about_directory() const;
  // Reads s up to EOF or the budget; returns false when the budget ran out.
  bool read_stream(Stream& s, const LineCallback& callback, std::size_t& budget);
  void close_stream(Stream& s);
  double now() const;

  std::string path_;
  std::string directory_;
  Options options_;
  int inotify_fd_ = -1;
  int dir_wd_ = -1;
  Stream current_;
  Stream retired_;
  double retired_until_ = 0;
  double last_check_ = 0;
  bool pending_ = false;
  bool starting_ = true;   // in the constructor: an untrusted log file is an exception
  bool refused_ = false;   // an untrusted file at the name was reported
  bool warned_ = false;
  std::vector<char> buffer_;
  NameCheck name_check_;
  Stats stats_;
};

}  // namespace knock::capture
