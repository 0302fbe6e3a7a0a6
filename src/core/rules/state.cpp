#include "rules/state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <random>
#include <algorithm>
#include <unordered_set>
#include <time.h>
#include <utility>

#include "util/error.hpp"

namespace knock::rules {

// ---------------------------------------------------------------- tree

std::unique_ptr<StateTree::Node> StateTree::copy(const Node& n) {
  auto out = std::make_unique<Node>();
  out->value = n.value;
  out->has_value = n.has_value;
  out->mtime = n.mtime;
  for (const auto& [k, child] : n.children) out->children.emplace(k, copy(*child));
  return out;
}

StateTree::StateTree(const StateTree& other)
    : limits_(other.limits_), root_(copy(*other.root_)), count_(other.count_), now_(other.now_) {}

StateTree& StateTree::operator=(const StateTree& other) {
  if (this != &other) {
    limits_ = other.limits_;
    root_ = copy(*other.root_);
    count_ = other.count_;
    now_ = other.now_;
    ++generation_;
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

bool StateTree::check(const std::vector<std::string>& keys, const Scalar& value, std::string* error) const {
  auto refuse = [&](std::string m) {
    if (error != nullptr) *error = std::move(m);
    return false;
  };
  if (keys.empty()) return refuse("state(...) needs a key");
  if (keys.size() > limits_.max_depth) return refuse("state key has too many levels");
  for (const auto& k : keys)
    if (k.size() > limits_.max_key) return refuse("state key too long");
  if (value.kind() == Scalar::Kind::String && value.str().size() > limits_.max_value)
    return refuse("state value too long");
  return true;
}

std::size_t StateTree::missing_nodes(const std::vector<std::string>& keys) const {
  std::size_t missing = 0;
  const Node* probe = root_.get();
  for (const auto& k : keys) {
    if (probe != nullptr) {
      auto it = probe->children.find(k);
      probe = it == probe->children.end() ? nullptr : it->second.get();
    }
    if (probe == nullptr) ++missing;
  }
  return missing;
}

bool StateTree::set(const std::vector<std::string>& keys, const Scalar& value, std::string* error) {
  return set_at(keys, value, now_, error);
}

bool StateTree::set_at(const std::vector<std::string>& keys, const Scalar& value, double mtime, std::string* error) {
  if (!check(keys, value, error)) return false;
  const std::size_t missing = missing_nodes(keys);
  if (count_ + missing > limits_.max_entries) {
    if (error != nullptr) *error = "state is full (" + std::to_string(limits_.max_entries) + " keys)";
    return false;
  }
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
  n->mtime = mtime;
  ++generation_;
  return true;
}

namespace {
// Depth is bounded by StateLimits::max_depth, so recursion is safe here.
template <typename Node>
std::size_t expire_under(Node& node, double before, std::size_t& count) {
  std::size_t dropped = 0;
  for (auto it = node.children.begin(); it != node.children.end();) {
    Node& child = *it->second;
    if (child.has_value && child.mtime < before) {
      child.has_value = false;
      child.value = Scalar();
      ++dropped;
    }
    dropped += expire_under(child, before, count);
    if (!child.has_value && child.children.empty()) {
      it = node.children.erase(it);
      --count;
    } else {
      ++it;
    }
  }
  return dropped;
}
}  // namespace

std::size_t StateTree::expire(double before) {
  const std::size_t dropped = expire_under(*root_, before, count_);
  if (dropped != 0) ++generation_;
  return dropped;
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
    if (child->has_value) out.push_back({path, child->value, child->mtime});
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
  if (it != writes_.end()) return it->second;
  if (remote_ == nullptr) return base_.get(keys);
  if (!remote_error_.empty()) return Scalar();  // the knock is refused anyway
  auto known = reads_.find(keys);
  if (known == reads_.end()) {
    std::string error;
    std::optional<std::string> stored = remote_->read(keys, &error);
    if (!stored) {
      remote_error_ = error.empty() ? std::string("the store did not answer") : error;
      remote_unavailable_ = true;
      return Scalar();
    }
    known = reads_.emplace(keys, std::move(*stored)).first;
  }
  if (known->second.empty()) return Scalar();
  std::optional<Scalar> value = decode_state_value(known->second);
  if (!value) {
    remote_error_ = "the store holds a malformed value for a state key";
    return Scalar();
  }
  return *value;
}

bool OverlayState::set(const std::vector<std::string>& keys, const Scalar& value, std::string* error) {
  if (!base_.check(keys, value, error)) return false;
  if (writes_.size() >= 1000 && writes_.count(keys) == 0) {
    if (error != nullptr) *error = "too many state changes";
    return false;
  }
  writes_[keys] = value;
  return true;
}

std::size_t OverlayState::missing_nodes() const {
  std::size_t n = 0;
  for (const auto& [keys, value] : writes_) n += base_.missing_nodes(keys);
  return n;
}

// ---------------------------------------------------------------- cache format

namespace {
constexpr std::string_view kMagic1 = "portknock-state 1";
constexpr std::string_view kMagic = "portknock-state 2";
constexpr std::string_view kJournalMagic = "portknock-journal ";

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

std::string encode_state_value(const Scalar& value) { return encode_value(value); }
std::optional<Scalar> decode_state_value(std::string_view stored) {
  if (stored.size() > 4096) return std::nullopt;
  return decode_value(stored);
}
std::string escape_state_key(std::string_view key) { return escape(key); }

std::string state_record(const std::vector<std::string>& keys, const Scalar& value, double mtime) {
  std::string out = "S " + format_time(mtime) + " " + std::to_string(keys.size());
  for (const auto& k : keys) {
    out += ' ';
    out += escape(k);
  }
  out += ' ';
  out += encode_value(value);
  out += '\n';
  return out;
}

namespace {
// A pending record's letter tells how its command runs: P by /bin/sh, N nft, I ipset.
char pending_letter(ActionKind kind) {
  switch (kind) {
    case ActionKind::nft:
      return 'N';
    case ActionKind::ipset:
      return 'I';
    case ActionKind::shell:
      break;
  }
  return 'P';
}
std::optional<ActionKind> pending_kind(std::string_view letter) {
  if (letter == "P") return ActionKind::shell;
  if (letter == "N") return ActionKind::nft;
  if (letter == "I") return ActionKind::ipset;
  return std::nullopt;
}
}  // namespace

std::string pending_record(const PendingCommand& p) {
  std::string out = std::string(1, pending_letter(p.kind)) + " " + std::to_string(p.id) + " " + format_time(p.due) + " " +
                    escape(p.origin) + " " + escape(p.command);
  // Who it is for, when known: WHO CLIENT KNOCKED (CLIENT "-" for none), and TARGET when
  // the door opened for another address than WHO.
  if (!p.who.empty()) {
    out += " " + escape(p.who) + " " + (p.client.empty() ? std::string("-") : escape(p.client)) + " " +
           format_time(p.knocked);
    if (!p.target.empty() && p.target != p.who) out += " " + escape(p.target);
  }
  out += '\n';
  return out;
}

std::string done_record(std::uint64_t id) { return "D " + std::to_string(id) + "\n"; }

std::string replay_record(std::string_view hex_identity, std::int64_t expiry) {
  return "R " + std::string(hex_identity) + " " + std::to_string(expiry) + "\n";
}

std::string journal_path(const std::string& path) { return path + ".journal"; }

std::string serialize_cache(const StateTree& state, const std::vector<PendingCommand>& pending,
                            std::uint64_t journal, std::string_view replay) {
  std::string out;
  out += kMagic;
  out += '\n';
  out += "journal " + std::to_string(journal) + "\n";
  std::size_t records = 0;
  for (const auto& e : state.entries()) {
    out += state_record(e.keys, e.value, e.mtime);
    ++records;
  }
  for (const auto& p : pending) {
    out += pending_record(p);
    ++records;
  }
  while (!replay.empty()) {
    const std::size_t nl = replay.find('\n');
    const std::string_view line = replay.substr(0, nl);
    if (!line.empty()) {
      out += "R ";
      out += line;
      out += '\n';
      ++records;
    }
    replay = nl == std::string_view::npos ? std::string_view() : replay.substr(nl + 1);
  }
  out += "end " + std::to_string(records) + "\n";
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

std::optional<std::uint64_t> parse_u64(std::string_view f) {
  if (f.empty() || f.size() > 20) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : f) {
    if (c < '0' || c > '9') return std::nullopt;
    const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (n > (UINT64_MAX - d) / 10) return std::nullopt;
    n = n * 10 + d;
  }
  return n;
}

bool time_field(std::string_view f) {
  bool ok = !f.empty() && f.size() < 32;
  for (char c : f) ok = ok && ((c >= '0' && c <= '9') || c == '.' || c == '-');
  return ok;
}

// Opens and reads a cache file with the safety checks of load_cache(); nullopt when absent.
std::optional<std::string> read_cache_file(const std::string& path, const char* what, long also_owner) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return std::nullopt;
    if (e == ELOOP) throw RuntimeError(std::string(what) + " " + path + " is a symbolic link; refusing to use it");
    throw RuntimeError(std::string("cannot open ") + what + " " + path + ": " + errno_message(e));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw RuntimeError(std::string("cannot stat ") + what + " " + path + ": " + errno_message(errno));
  if (!S_ISREG(st.st_mode)) throw RuntimeError(std::string(what) + " " + path + " is not a regular file");
  if (st.st_uid != ::geteuid() && st.st_uid != 0 && static_cast<long>(st.st_uid) != also_owner)
    throw RuntimeError(std::string(what) + " " + path + " is owned by another user (uid " + std::to_string(st.st_uid) +
                       "); refusing to use it");
  if ((st.st_mode & 022) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw RuntimeError(std::string(what) + " " + path + " is writable by other users (mode " + mode +
                       "); run chmod go-w on it");
  }
  const std::string dir = directory_of(path);
  struct stat dst {};
  if (::stat(dir.c_str(), &dst) == 0 && (dst.st_mode & 022) != 0 && (dst.st_mode & S_ISVTX) == 0)
    throw RuntimeError(std::string(what) + " directory " + dir + " is writable by other users and not sticky; refusing to use " +
                       path);
  if (static_cast<std::uint64_t>(st.st_size) > kMaxCacheBytes)
    throw CorruptCacheError(std::string(what) + " " + path + " is larger than " + std::to_string(kMaxCacheBytes) + " bytes");
  std::string text;
  text.resize(static_cast<std::size_t>(st.st_size) + 1);
  std::size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw RuntimeError(std::string("cannot read ") + what + " " + path + ": " + errno_message(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
    if (got > kMaxCacheBytes) throw RuntimeError(std::string(what) + " " + path + " grew while being read");
    if (got == text.size()) text.resize(text.size() * 2);
  }
  text.resize(got);
  return text;
}

// Applies one S, P/N or D record; false with *why when malformed.
// Pending ids seen and finished while loading: sets, so a cache of a million closes loads in
// linear time.
struct LoadIds {
  std::unordered_set<std::uint64_t> known;
  std::unordered_set<std::uint64_t> done;
};

bool apply_record(const std::vector<std::string_view>& f, int version, CacheContents& out, LoadIds& ids,
                  std::size_t max_pending, std::size_t max_depth, double now, std::string* why) {
  auto bad = [&](const char* m) {
    *why = m;
    return false;
  };
  if (f[0] == "S") {
    const std::size_t skip = version >= 2 ? 1 : 0;  // format 2: S MTIME N KEYS... VALUE
    if (f.size() < 4 + skip) return bad("short state record");
    double mtime = now;
    if (skip != 0) {
      if (!time_field(f[1])) return bad("bad time stamp");
      mtime = numify(f[1]);
    }
    auto n = parse_u64(f[1 + skip]);
    if (!n || *n == 0 || *n > max_depth || f.size() != *n + 3 + skip) return bad("bad key count");
    std::vector<std::string> keys;
    for (std::size_t i = 0; i < *n; ++i) {
      auto k = unescape(f[2 + skip + i]);
      if (!k) return bad("bad escape in key");
      keys.push_back(std::move(*k));
    }
    auto v = decode_value(f[*n + 2 + skip]);
    if (!v) return bad("bad value");
    std::string err;
    if (!out.state.set_at(keys, *v, mtime, &err)) {
      *why = err;
      return false;
    }
    return true;
  }
  if (const auto kind = pending_kind(f[0])) {
    // format 2: P ID DUE ORIGIN COMMAND [WHO CLIENT KNOCKED [TARGET]]
    const std::size_t skip = version >= 2 ? 1 : 0;
    const bool with_target = skip != 0 && f.size() == 8 + skip;
    const bool with_who = skip != 0 && (f.size() == 7 + skip || with_target);
    if (f.size() != 4 + skip && !with_who) return bad("bad pending record");
    std::uint64_t id = 0;
    if (skip != 0) {
      auto parsed = parse_u64(f[1]);
      if (!parsed || *parsed == 0) return bad("bad pending id");
      id = *parsed;
      if (!ids.known.insert(id).second) return true;  // already known (a journal over its snapshot)
    }
    auto origin = unescape(f[2 + skip]);
    auto command = unescape(f[3 + skip]);
    if (!time_field(f[1 + skip]) || !origin || !command) return bad("bad pending record");
    if (out.pending.size() >= max_pending) return bad("too many pending commands");
    PendingCommand p{numify(f[1 + skip]), std::move(*command), std::move(*origin), *kind, id};
    if (with_who) {
      auto who = unescape(f[5]);
      auto client = f[6] == "-" ? std::optional<std::string>("") : unescape(f[6]);
      if (!who || !client || who->empty() || !time_field(f[7])) return bad("bad pending record");
      p.who = std::move(*who);
      p.client = std::move(*client);
      p.knocked = numify(f[7]);
      p.target = p.who;
      if (with_target) {
        auto target = unescape(f[8]);
        if (!target || target->empty()) return bad("bad pending record");
        p.target = std::move(*target);
      }
    }
    out.pending.push_back(std::move(p));
    return true;
  }
  if (f[0] == "R" && version >= 2) {
    // Checked for shape here; spa::ReplayCache::load() checks every line again.
    if (f.size() != 3 || f[1].size() != 32 || !parse_u64(f[2])) return bad("bad replay record");
    if (out.replay.size() > kMaxCacheBytes) return bad("too many replay records");
    out.replay.append(f[1]);
    out.replay += ' ';
    out.replay.append(f[2]);
    out.replay += '\n';
    return true;
  }
  if (f[0] == "D" && version >= 2) {
    if (f.size() != 2) return bad("bad done record");
    auto id = parse_u64(f[1]);
    if (!id) return bad("bad done record");
    ids.done.insert(*id);  // removed once everything is read
    return true;
  }
  return bad("unknown record");
}

double wall_now() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

std::optional<CacheContents> load_cache(const std::string& path, const StateLimits& limits,
                                        std::size_t max_pending, long also_owner) {
  const double now = wall_now();
  auto text = read_cache_file(path, "state cache", also_owner);
  const std::string jpath = journal_path(path);
  auto journal = read_cache_file(jpath, "state journal", also_owner);
  if (!text && !journal) return std::nullopt;

  CacheContents out{StateTree(limits), {}, 0, {}};
  LoadIds ids;
  std::uint64_t journal_id = 0;
  if (text) {
    auto corrupt = [&](std::size_t line, const std::string& why) -> CorruptCacheError {
      return CorruptCacheError("state cache " + path + " line " + std::to_string(line) + ": " + why +
                               "; the file is corrupt");
    };
    std::size_t line_no = 0, pos = 0, records = 0;
    bool ended = false;
    int version = 0;
    while (pos < text->size()) {
      std::size_t nl = text->find('\n', pos);
      if (nl == std::string::npos) throw corrupt(line_no + 1, "truncated (last line has no newline)");
      std::string_view line(text->data() + pos, nl - pos);
      pos = nl + 1;
      ++line_no;
      if (ended) throw corrupt(line_no, "data after the end line");
      if (line_no == 1) {
        if (line == kMagic) {
          version = 2;
        } else if (line == kMagic1) {
          version = 1;
        } else {
          throw corrupt(1, "not a portknock state cache (expected '" + std::string(kMagic) + "')");
        }
        continue;
      }
      auto f = split_fields(line);
      if (version >= 2 && line_no == 2) {
        std::optional<std::uint64_t> id;
        if (f.size() == 2 && f[0] == "journal") id = parse_u64(f[1]);
        if (!id) throw corrupt(line_no, "expected 'journal ID'");
        journal_id = *id;
        continue;
      }
      if (f[0] == "end") {
        if (f.size() != 2 || f[1] != std::to_string(records)) throw corrupt(line_no, "record count does not match");
        ended = true;
        continue;
      }
      std::string why;
      if (f[0] == "D" || !apply_record(f, version, out, ids, max_pending, limits.max_depth, now, &why))
        throw corrupt(line_no, f[0] == "D" ? "unknown record" : why);
      ++records;
    }
    if (line_no == 0) throw corrupt(1, "empty file");
    if (!ended) throw corrupt(line_no, "truncated (no end line)");
  }
  if (journal) {
    auto corrupt = [&](std::size_t line, const std::string& why) -> CorruptCacheError {
      return CorruptCacheError("state journal " + jpath + " line " + std::to_string(line) + ": " + why +
                               "; the file is corrupt");
    };
    std::size_t line_no = 0, pos = 0;
    while (pos < journal->size()) {
      std::size_t nl = journal->find('\n', pos);
      if (nl == std::string::npos) break;  // a torn last write: never acknowledged, so dropped
      std::string_view line(journal->data() + pos, nl - pos);
      pos = nl + 1;
      ++line_no;
      if (line_no == 1) {
        if (line.substr(0, kJournalMagic.size()) != kJournalMagic) throw corrupt(1, "not a portknock state journal");
        auto id = parse_u64(line.substr(kJournalMagic.size()));
        if (!id) throw corrupt(1, "bad journal id");
        if (*id != journal_id) break;  // it belongs to an older snapshot, which already has all of it
        continue;
      }
      std::string why;
      if (!apply_record(split_fields(line), 2, out, ids, max_pending, limits.max_depth, now, &why))
        throw corrupt(line_no, why);
      ++out.journal_records;
    }
  }
  if (!ids.done.empty())
    std::erase_if(out.pending, [&](const PendingCommand& p) { return p.id != 0 && ids.done.count(p.id) != 0; });
  // Ids from format 1 (none) are assigned here; later ones keep theirs.
  std::uint64_t next = 1;
  for (const auto& p : out.pending) next = std::max(next, p.id + 1);
  for (auto& p : out.pending)
    if (p.id == 0) p.id = next++;
  return out;
}

namespace {
// Writes all of `text` to a new file DIR/.BASE.tmp.PID.RANDOM (0600, O_EXCL|O_NOFOLLOW) and
// fsyncs it; returns the open descriptor and the name, or an error.
struct TempFile {
  int fd = -1;
  std::string name;
  std::string error;
};
TempFile write_temp(const std::string& path, std::string_view text, bool keep_open) {
  TempFile t;
  const std::string dir = directory_of(path);
  const std::string base = path.substr(path.rfind('/') + 1);  // npos + 1 == 0
  std::random_device rd;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".%ld.%08x", static_cast<long>(::getpid()), rd());
  t.name = dir + "/." + base + ".tmp" + suffix;
  int fd = ::open(t.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | (keep_open ? O_APPEND : 0), 0600);
  if (fd < 0) {
    t.error = "cannot create " + t.name + ": " + errno_message(errno);
    return t;
  }
  auto fail = [&](const std::string& what) {
    t.error = what + " " + t.name + ": " + errno_message(errno);
    ::close(fd);
    ::unlink(t.name.c_str());
    return t;
  };
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("cannot write");
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("cannot fsync");
  if (!keep_open) {
    if (::close(fd) != 0) {
      t.error = "cannot close " + t.name + ": " + errno_message(errno);
      ::unlink(t.name.c_str());
      return t;
    }
    fd = -1;
  }
  t.fd = fd;
  return t;
}

std::uint64_t random_id() {
  std::random_device rd;
  std::uint64_t id = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  return id == 0 ? 1 : id;
}
}  // namespace

std::optional<std::string> save_cache(const std::string& path, const StateTree& state,
                                      const std::vector<PendingCommand>& pending, std::uint64_t journal,
                                      std::string_view replay) noexcept {
  try {
    TempFile t = write_temp(path, serialize_cache(state, pending, journal, replay), false);
    if (!t.error.empty()) return t.error;
    if (::rename(t.name.c_str(), path.c_str()) != 0) {
      int e = errno;
      ::unlink(t.name.c_str());
      return "cannot rename " + t.name + " to " + path + ": " + errno_message(e);
    }
    return fsync_directory(directory_of(path));
  } catch (const std::exception& e) {
    return std::string("cannot save state cache ") + path + ": " + e.what();
  }
}

CacheWriter::~CacheWriter() {
  if (fd_ >= 0) {
    if (dirty_) ::fdatasync(fd_);
    ::close(fd_);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::optional<std::string> CacheWriter::lock() noexcept {
  try {
    if (lock_fd_ >= 0) return std::nullopt;
    const std::string lpath = path_ + ".lock";
    int fd = ::open(lpath.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return "cannot open " + lpath + ": " + errno_message(errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      ::close(fd);
      if (e == EWOULDBLOCK)
        return "another process (another knockdaemon?) is using the state cache " + path_ + " (" + lpath + " is locked)";
      return "cannot lock " + lpath + ": " + errno_message(e);
    }
    lock_fd_ = fd;
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string("cannot lock the state cache: ") + e.what();
  }
}

void CacheWriter::abandon() noexcept {
  if (fd_ >= 0) ::close(fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);
  fd_ = lock_fd_ = -1;
}

std::optional<std::string> CacheWriter::snapshot(const StateTree& state, const std::vector<PendingCommand>& pending,
                                                 std::string_view replay) noexcept {
  try {
    const std::uint64_t id = random_id();
    const std::string header = std::string(kJournalMagic) + std::to_string(id) + "\n";
    const std::string jpath = journal_path(path_);
    // 1. the new journal, empty, beside the old one; 2. the snapshot that names it; 3. the
    // journal moved into place. A crash between 2 and 3 leaves the old journal, whose id no
    // longer matches: it is ignored, and the snapshot has everything it held.
    TempFile j = write_temp(jpath, header, true);
    if (!j.error.empty()) return j.error;
    if (auto err = save_cache(path_, state, pending, id, replay)) {
      ::close(j.fd);
      ::unlink(j.name.c_str());
      return err;
    }
    if (::rename(j.name.c_str(), jpath.c_str()) != 0) {
      // The old journal no longer belongs to the snapshot: appending to it would record nothing.
      int e = errno;
      ::close(j.fd);
      ::unlink(j.name.c_str());
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      return "cannot rename " + j.name + " to " + jpath + ": " + errno_message(e);
    }
    if (auto err = fsync_directory(directory_of(path_))) {
      ::close(j.fd);
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      return err;
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = j.fd;
    size_ = header.size();
    dirty_ = false;
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string("cannot save state cache ") + path_ + ": " + e.what();
  }
}

std::optional<std::string> CacheWriter::append(std::string_view records) noexcept {
  if (fd_ < 0) return "state journal " + journal_path(path_) + " is not open (the last snapshot failed)";
  std::size_t done = 0;
  while (done < records.size()) {
    ssize_t n = ::write(fd_, records.data() + done, records.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = n < 0 ? errno : ENOSPC;
      // Undo the part written: a record that was refused must not come back at the next start.
      if (done != 0 && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
        ::close(fd_);
        fd_ = -1;
      }
      try {
        return "cannot append to state journal " + journal_path(path_) + ": " + errno_message(e);
      } catch (...) {
        return std::optional<std::string>(std::in_place);  // an error all the same
      }
    }
    done += static_cast<std::size_t>(n);
  }
  size_ += done;
  dirty_ = true;
  return std::nullopt;
}

std::optional<std::string> CacheWriter::sync() noexcept {
  if (fd_ < 0 || !dirty_) return std::nullopt;
  if (::fdatasync(fd_) != 0) {
    try {
      return "cannot fsync state journal " + journal_path(path_) + ": " + errno_message(errno);
    } catch (...) {
      return std::optional<std::string>(std::in_place);
    }
  }
  dirty_ = false;
  return std::nullopt;
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
