#include "util/files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "util/log.hpp"

namespace knock {

namespace {
std::string mode_text(mode_t mode);
}  // namespace

void check_not_writable_by_others(const std::string& path, const Location& where) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return;
  if ((st.st_mode & S_IWOTH) != 0 || ((st.st_mode & S_IWGRP) != 0 && st.st_gid != 0)) {
    throw ConfigError(where, path + " is writable by other users (mode " + mode_text(st.st_mode) +
                                 "); refusing it: chmod go-w " + path);
  }
  if (st.st_uid != 0 && st.st_uid != geteuid())
    throw ConfigError(where, path + " belongs to another user (uid " + std::to_string(st.st_uid) + "); refusing it");
}

namespace {

std::string folder_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%03o", static_cast<unsigned>(mode & 07777));
  return text;
}

}  // namespace

void check_config_file(const std::string& path, const Location& where) {
  check_not_writable_by_others(path, where);
  const std::string folder = folder_of(path);
  struct stat st;
  if (stat(folder.c_str(), &st) != 0) return;
  if ((st.st_mode & S_IWOTH) != 0 || ((st.st_mode & S_IWGRP) != 0 && st.st_gid != 0))
    throw ConfigError(where, "the folder " + folder + " of " + path + " is writable by other users (mode " +
                                 mode_text(st.st_mode) + "): they could replace " + path +
                                 "; refusing it: chmod go-w " + folder);
  if (st.st_uid != 0 && st.st_uid != geteuid())
    throw ConfigError(where, "the folder " + folder + " of " + path + " belongs to another user (uid " +
                                 std::to_string(st.st_uid) + "); refusing it");
}

void check_secret_not_readable_by_others(const std::string& path, const Location& where) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return;
  if ((st.st_mode & S_IROTH) != 0)
    throw ConfigError(where, path + " holds a key and every user can read it (mode " + mode_text(st.st_mode) +
                                 "); refusing it: chmod o-r " + path);
}

void mark_all_close_on_exec() {
#ifdef SYS_close_range
  // Linux 5.11: one call. CLOSE_RANGE_CLOEXEC is 1u << 2 (linux/close_range.h).
  if (syscall(SYS_close_range, 3u, ~0u, 1u << 2) == 0) return;
#endif
  const int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    for (int fd = 3; fd < 1024; ++fd) {
      const int flags = fcntl(fd, F_GETFD);
      if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
    return;
  }
  DIR* entries = fdopendir(dir);
  if (entries == nullptr) {
    close(dir);
    return;
  }
  while (const dirent* e = readdir(entries)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd <= 2 || fd == dir) continue;
    const int flags = fcntl(static_cast<int>(fd), F_GETFD);
    if (flags >= 0) fcntl(static_cast<int>(fd), F_SETFD, flags | FD_CLOEXEC);
  }
  closedir(entries);
}

SecureBytes first_line_of(std::string& text) {
  std::size_t end = text.find('\n');
  if (end == std::string::npos) end = text.size();
  if (end > 0 && text[end - 1] == '\r') --end;
  SecureBytes line(reinterpret_cast<const std::uint8_t*>(text.data()), end);
  secure_wipe(text.data(), text.size());
  return line;
}

SecureBytes read_key_file(const std::string& path, const Location& where) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    const int saved = errno;
    throw ConfigError(where, "cannot read key file " + path + ": " + errno_message(saved));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 4096) {
    close(fd);
    throw ConfigError(where, "key file " + path + " must be a regular file of at most 4096 bytes");
  }
  check_not_writable_by_others(path, where);
  if ((st.st_mode & S_IROTH) != 0) {
    close(fd);
    throw ConfigError(where, "key file " + path + " is readable by every user (mode " + mode_text(st.st_mode) +
                                 "); refusing it: chmod 600 " + path);
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t have = 0;
  while (have < text.size()) {
    const ssize_t n = read(fd, text.data() + have, text.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += static_cast<std::size_t>(n);
  }
  close(fd);
  text.resize(have);
  SecureBytes key = first_line_of(text);
  if (key.empty()) throw ConfigError(where, "key file " + path + " is empty");
  return key;
}

void write_file_atomically(const std::string& path, std::string_view content, unsigned mode) {
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string temp = path + ".XXXXXX";
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) throw RuntimeError("cannot write " + path + ": " + errno_message(errno));
  bool ok = ::fchmod(fd, static_cast<mode_t>(mode)) == 0;
  for (std::size_t at = 0; ok && at < content.size();) {
    const ssize_t n = ::write(fd, content.data() + at, content.size() - at);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) at += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
    const int e = ok ? errno : saved;
    ::unlink(temp.c_str());
    throw RuntimeError("cannot write " + path + ": " + errno_message(e));
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace knock
