#include "rules/state.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <random>

#include "util/error.hpp"

namespace knock::rules {

// ---------------------------------------------------------------- tree

std::unique_ptr<StateTree::Node> StateTree::copy(const Node& n) {
  auto out = std::make_unique<Node>();
  out->value = n.value;
  out->has_value = n.has_value;
  for (const auto& [k, child] : n.children) out->children.emplace(k, copy(*child));
  return out;
}

StateTree::StateTree(const StateTree& other)
    : limits_(other.limits_), root_(copy(*other.root_)), count_(other.count_) {}

StateTree& StateTree::operator=(const StateTree& other) {
  if (this != &other) {
    limits_ = other.limits_;
    root_ = copy(*other.root_);
    count_ = other.count_;
  }
  return *this;
}

Scalar StateTree::get(const std::vector<std::string>& keys) const {
  const Node* n = root_.get();
  for (const auto& k : keys) {
    auto it = n->children.find(k);
    if (it == n->children.end()) return Scalar();
    n = it->second.get();
  }
  return n->has_value ? n->value : Scalar();
}

bool StateTree::set(const std::vector<std::string>& keys, const Scalar& value, std::string* error) {
  auto refuse = [&](std::string m) {
    if (error != nullptr) *error = std::move(m);
    return false;
  };
  if (keys.empty()) return refuse("state(...) needs a key");
  if (keys.size() > limits_.max_depth) return refuse("state key has too many levels");
  std::size_t missing = 0;
  const Node* probe = root_.get();
  for (const auto& k : keys) {
    if (k.size() > limits_.max_key) return refuse("state key too long");
    if (probe != nullptr) {
      auto it = probe->children.find(k);
      probe = it == probe->children.end() ? nullptr : it->second.get();
    }
    if (probe == nullptr) ++missing;
  }
  if (value.kind() == Scalar::Kind::String && value.str().size() > limits_.max_value)
    return refuse("state value too long");
  if (count_ + missing > limits_.max_entries)
    return refuse("state is full (" + std::to_string(limits_.max_entries) + " keys)");
  Node* n = root_.get();
  for (const auto& k : keys) {
    auto it = n->children.find(k);
    if (it == n->children.end()) {
      it = n->children.emplace(k, std::make_unique<Node>()).first;
      ++count_;
    }
    n = it->second.get();
  }
  n->value = value;
  n->has_value = true;
  ++generation_;
  return true;
}

std::vector<StateTree::Entry> StateTree::entries() const {
  std::vector<Entry> out;
  std::vector<std::string> path;
  // Iterative walk: depth is bounded by max_depth anyway, but no recursion is needed.
  struct Frame {
    const Node* node;
    std::map<std::string, std::unique_ptr<Node>, std::less<>>::const_iterator next;
  };
  std::vector<Frame> stack;
  stack.push_back({root_.get(), root_->children.begin()});
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.next == f.node->children.end()) {
      stack.pop_back();
      if (!path.empty()) path.pop_back();
      continue;
    }
    const auto& [key, child] = *f.next;
    ++f.next;
    path.push_back(key);
    if (child->has_value) out.push_back({path, child->value});
    stack.push_back({child.get(), child->children.begin()});
  }
  return out;
}

void StateTree::clear() {
  root_ = std::make_unique<Node>();
  count_ = 0;
  ++generation_;
}

Scalar OverlayState::get(const std::vector<std::string>& keys) const {
  auto it = writes_.find(keys);
  return it != writes_.end() ? it->second : base_.get(keys);
}

bool OverlayState::set(const std::vector<std::string>& keys, const Scalar& value, std::string* error) {
  if (writes_.size() >= 1000) {
    if (error != nullptr) *error = "too many state changes";
    return false;
  }
  writes_[keys] = value;
  return true;
}

// ---------------------------------------------------------------- cache format

namespace {
constexpr std::string_view kMagic = "portknock-state 1";

std::string escape(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  if (s.empty()) return "%";  // an empty field must still be a field
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f || c == '%') {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::optional<std::string> unescape(std::string_view s) {
  if (s == "%") return std::string();
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    auto nib = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = nib(s[i + 1]), lo = nib(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string encode_value(const Scalar& v) {
  switch (v.kind()) {
    case Scalar::Kind::Undef: return "u";
    case Scalar::Kind::Number: {
      if (v.is_int()) return "i" + v.str();  // exact, up to 2^64-1
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", v.num());
      return std::string(v.is_int() ? "i" : "n") + buf;
    }
    case Scalar::Kind::String: return "s" + escape(v.str());
  }
  return "u";
}

std::optional<Scalar> decode_value(std::string_view f) {
  if (f.empty()) return std::nullopt;
  std::string_view body = f.substr(1);
  switch (f[0]) {
    case 'u': return body.empty() ? std::optional<Scalar>(Scalar()) : std::nullopt;
    case 'i':
    case 'n': {
      if (body.empty() || body.size() > 40) return std::nullopt;
      if (body != "inf" && body != "-inf" && body != "nan" && body != "-nan") {
        for (char c : body)
          if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e')) return std::nullopt;
      }
      if (f[0] == 'i') {
        PerlNum n = perl_num_of_string(body);
        if (n.iok) return Scalar::from_parts(n.neg, n.mag);
        return Scalar::number(n.nv, true);
      }
      return Scalar::number(numify(body));
    }
    case 's': {
      auto s = unescape(body);
      if (!s) return std::nullopt;
      return Scalar::string(std::move(*s));
    }
    default: return std::nullopt;
  }
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start <= line.size()) {
    std::size_t sp = line.find(' ', start);
    if (sp == std::string_view::npos) sp = line.size();
    out.push_back(line.substr(start, sp - start));
    start = sp + 1;
  }
  return out;
}

std::string format_time(double t) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", t);
  return buf;
}
}  // namespace

std::string serialize_cache(const StateTree& state, const std::vector<PendingCommand>& pending) {
  std::string out;
  out += kMagic;
  out += '\n';
  std::size_t records = 0;
  for (const auto& e : state.entries()) {
    out += "S ";
    out += std::to_string(e.keys.size());
    for (const auto& k : e.keys) {
      out += ' ';
      out += escape(k);
    }
    out += ' ';
    out += encode_value(e.value);
    out += '\n';
    ++records;
  }
  for (const auto& p : pending) {
    out += p.nft ? "N " : "P ";
    out += format_time(p.due);
    out += ' ';
    out += escape(p.origin);
    out += ' ';
    out += escape(p.command);
    out += '\n';
    ++records;
  }
  out += "end " + std::to_string(records) + "\n";
  return out;
}

std::optional<CacheContents> load_cache(const std::string& path, const StateLimits& limits,
                                        std::size_t max_pending) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return std::nullopt;
    if (e == ELOOP) throw RuntimeError("state cache " + path + " is a symbolic link; refusing to use it");
    throw RuntimeError("cannot open state cache " + path + ": " + errno_message(e));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw RuntimeError("cannot stat state cache " + path + ": " + errno_message(errno));
  if (!S_ISREG(st.st_mode)) throw RuntimeError("state cache " + path + " is not a regular file");
  if (st.st_uid != ::geteuid() && st.st_uid != 0)
    throw RuntimeError("state cache " + path + " is owned by another user (uid " + std::to_string(st.st_uid) +
                       "); refusing to use it");
  if ((st.st_mode & 022) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw RuntimeError("state cache " + path + " is writable by other users (mode " + mode +
                       "); run chmod go-w on it");
  }
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  struct stat dst {};
  if (::stat(dir.c_str(), &dst) == 0 && (dst.st_mode & 022) != 0 && (dst.st_mode & S_ISVTX) == 0)
    throw RuntimeError("state cache directory " + dir +
                       " is writable by other users and not sticky; refusing to use " + path);
  if (static_cast<std::uint64_t>(st.st_size) > kMaxCacheBytes)
    throw CorruptCacheError("state cache " + path + " is larger than " + std::to_string(kMaxCacheBytes) + " bytes");

  std::string text;
  text.resize(static_cast<std::size_t>(st.st_size) + 1);
  std::size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw RuntimeError("cannot read state cache " + path + ": " + errno_message(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
    if (got > kMaxCacheBytes) throw RuntimeError("state cache " + path + " grew while being read");
    if (got == text.size()) text.resize(text.size() * 2);
  }
  text.resize(got);

  CacheContents out{StateTree(limits), {}};
  auto corrupt = [&](std::size_t line, const std::string& why) -> CorruptCacheError {
    return CorruptCacheError("state cache " + path + " line " + std::to_string(line) + ": " + why +
                             "; the file is corrupt");
  };
  std::size_t line_no = 0, pos = 0, records = 0;
  bool ended = false;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) throw corrupt(line_no + 1, "truncated (last line has no newline)");
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (ended) throw corrupt(line_no, "data after the end line");
    if (line_no == 1) {
      if (line != kMagic) throw corrupt(1, "not a portknock state cache (expected '" + std::string(kMagic) + "')");
      continue;
    }
    auto f = split_fields(line);
    if (f[0] == "S") {
      if (f.size() < 4) throw corrupt(line_no, "short state record");
      std::size_t n = 0;
      for (char c : f[1]) {
        if (c < '0' || c > '9' || n > 1000) throw corrupt(line_no, "bad key count");
        n = n * 10 + static_cast<std::size_t>(c - '0');
      }
      if (n == 0 || n > limits.max_depth || f.size() != n + 3) throw corrupt(line_no, "bad key count");
      std::vector<std::string> keys;
      for (std::size_t i = 0; i < n; ++i) {
        auto k = unescape(f[2 + i]);
        if (!k) throw corrupt(line_no, "bad escape in key");
        keys.push_back(std::move(*k));
      }
      auto v = decode_value(f[n + 2]);
      if (!v) throw corrupt(line_no, "bad value");
      std::string err;
      if (!out.state.set(keys, *v, &err)) throw corrupt(line_no, err);
    } else if (f[0] == "P" || f[0] == "N") {
      if (f.size() != 4) throw corrupt(line_no, "bad pending record");
      bool ok_time = !f[1].empty() && f[1].size() < 32;
      for (char c : f[1]) ok_time = ok_time && ((c >= '0' && c <= '9') || c == '.' || c == '-');
      auto origin = unescape(f[2]);
      auto command = unescape(f[3]);
      if (!ok_time || !origin || !command) throw corrupt(line_no, "bad pending record");
      if (out.pending.size() >= max_pending) throw corrupt(line_no, "too many pending commands");
      out.pending.push_back({numify(f[1]), std::move(*command), std::move(*origin), f[0] == "N"});
    } else if (f[0] == "end") {
      if (f.size() != 2 || f[1] != std::to_string(records)) throw corrupt(line_no, "record count does not match");
      ended = true;
      continue;
    } else {
      throw corrupt(line_no, "unknown record");
    }
    ++records;
  }
  if (line_no == 0) throw corrupt(1, "empty file");
  if (!ended) throw corrupt(line_no, "truncated (no end line)");
  return out;
}

namespace {
std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::optional<std::string> fsync_directory(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return std::nullopt;
  int rc = ::fsync(dfd);
  int e = errno;
  ::close(dfd);
  if (rc != 0) return "cannot fsync directory " + dir + ": " + errno_message(e);
  return std::nullopt;
}
}  // namespace

std::optional<std::string> sync_cache(const std::string& path) noexcept {
  try {
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return "cannot open " + path + " to fsync it: " + errno_message(errno);
    int rc = ::fsync(fd);
    int e = errno;
    ::close(fd);
    if (rc != 0) return "cannot fsync " + path + ": " + errno_message(e);
    return fsync_directory(directory_of(path));
  } catch (const std::exception& e) {
    return std::string("cannot sync state cache ") + path + ": " + e.what();
  }
}

std::optional<std::string> save_cache(const std::string& path, const StateTree& state,
                                      const std::vector<PendingCommand>& pending, bool sync) noexcept {
  try {
    std::string text = serialize_cache(state, pending);
    const std::string dir = directory_of(path);
    const std::string base = path.substr(path.rfind('/') + 1);  // npos + 1 == 0
    std::random_device rd;
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".%ld.%08x", static_cast<long>(::getpid()), rd());
    std::string tmp = dir + "/." + base + ".tmp" + suffix;
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return "cannot create " + tmp + ": " + errno_message(errno);
    auto fail = [&](const std::string& what) {
      std::string m = what + " " + tmp + ": " + errno_message(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return m;
    };
    std::size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail("cannot write");
      done += static_cast<std::size_t>(n);
    }
    if (sync && ::fsync(fd) != 0) return fail("cannot fsync");
    if (::close(fd) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return "cannot close " + tmp + ": " + errno_message(e);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return "cannot rename " + tmp + " to " + path + ": " + errno_message(e);
    }
    if (sync) return fsync_directory(dir);
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string("cannot save state cache ") + path + ": " + e.what();
  }
}

std::string move_cache_aside(const std::string& path, double now) {
  std::time_t t = std::isfinite(now) && now > 0 ? static_cast<std::time_t>(now) : 0;
  struct tm tm_local {};
  localtime_r(&t, &tm_local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm_local);
  std::string target = path + ".corrupt-" + stamp;
  for (int i = 1; i < 1000; ++i) {
    struct stat st {};
    if (::lstat(target.c_str(), &st) != 0 && errno == ENOENT) break;
    target = path + ".corrupt-" + stamp + "-" + std::to_string(i);
  }
  if (::rename(path.c_str(), target.c_str()) != 0)
    throw RuntimeError("cannot move state cache " + path + " aside to " + target + ": " + errno_message(errno));
  return target;
}

}  // namespace knock::rules
