// Parser for Perl's Config::General format with its default options. It mirrors the two passes
// of Config::General 2.65: _read() turns the raw lines of a file (and its includes) into a flat
// list of logical lines ("chunks"), then _parse() builds the tree from them. Every Perl regex
// of those passes is reproduced by hand with the same leftmost/greedy/lazy outcome, in linear
// time. Where Config::General silently loses data or accepts a mismatched end tag, we are
// stricter and report an error (see tests/data/config/bad).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "config/tree.hpp"
#include "util/log.hpp"

namespace knock::config {
namespace {

// Config::General separates a here-document's key from its text with this marker.
constexpr std::string_view kSep = "ad7d7b87f5b81d2a0d5cb75294afeb91aa4801b1f8e8532dc1b633c0e1d47037";

// Perl's \s on byte strings.
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

// Perl truthiness of a defined string.
bool truthy(std::string_view s) { return !s.empty() && s != "0"; }

std::string_view ltrim(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  return s.substr(i);
}
std::string_view rtrim(std::string_view s) {
  std::size_t n = s.size();
  while (n > 0 && is_space(s[n - 1])) --n;
  return s.substr(0, n);
}
std::string_view trim(std::string_view s) { return rtrim(ltrim(s)); }
bool all_space(std::string_view s) { return ltrim(s).empty(); }

bool iequal_prefix(std::string_view s, std::size_t at, std::string_view word) {
  if (s.size() < at + word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    char c = s[at + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != word[i]) return false;
  }
  return true;
}

std::string quote_for_message(std::string_view s) {
  std::string out;
  const std::size_t limit = 80;
  for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > limit) out += "...";
  return out;
}

std::string line_ref(const Location& at, const Location& from) {
  if (at.file == from.file) return "line " + std::to_string(at.line);
  return at.str();
}

struct Chunk {
  std::string text;
  Location where;
};

std::string dir_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return std::string();
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// ---------------------------------------------------------------------------------------------
// Pass 1: Config::General::_read
// ---------------------------------------------------------------------------------------------
class Reader {
 public:
  Reader(const ParseLimits& limits, std::vector<Chunk>& out) : limits_(limits), out_(out) {}

  // Reads `text` as file `name`; `dir` is where its relative includes are looked up.
  void read(std::string_view text, const std::string& name, const std::string& dir, int depth);
  void read_path(const std::string& path, const Location& from, int depth);

  int last_line = 0;  // line count of the outermost file

 private:
  void include(const std::string& file, const Location& at, const std::string& dir, int depth);

  const ParseLimits& limits_;
  std::vector<Chunk>& out_;
  std::size_t total_lines_ = 0;
  std::vector<std::string> stack_;  // canonical paths being read (include-loop detection)
  std::vector<std::string> loaded_;  // canonical paths read so far
};

std::string canonical(const std::string& path) {
  char* r = ::realpath(path.c_str(), nullptr);
  if (r == nullptr) return path;
  std::string out(r);
  std::free(r);
  return out;
}

void Reader::read_path(const std::string& path, const Location& from, int depth) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    if (from.file.empty()) throw ConfigError(Location{path, 0}, "cannot read the configuration: " + errno_message(e));
    throw ConfigError(from, "cannot include '" + path + "': " + errno_message(e));
  }
  if (S_ISDIR(st.st_mode)) {
    if (from.file.empty()) throw ConfigError(Location{path, 0}, "is a directory, expected a configuration file");
    throw ConfigError(from, "cannot include '" + path + "': it is a directory, expected a file");
  }
  const std::string canon = canonical(path);
  for (const auto& open : stack_)
    if (open == canon) throw ConfigError(from, "include loop: '" + path + "' is already being read");
  for (const auto& done : loaded_)
    if (done == canon) {
      // Config::General reads a file only once (it warns and skips the repeated include).
      log::warning(from.str() + ": '" + path + "' was already read; not including it again");
      return;
    }
  if (st.st_size > 0 && static_cast<unsigned long long>(st.st_size) > limits_.max_file_bytes)
    throw ConfigError(from.file.empty() ? Location{path, 0} : from,
                      "'" + path + "' is larger than " + std::to_string(limits_.max_file_bytes) + " bytes");
  if (limits_.check_file) limits_.check_file(path, from.file.empty() ? Location{path, 0} : from);
  // A descriptor, not an ifstream: O_CLOEXEC, so a command started meanwhile never inherits it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw ConfigError(from.file.empty() ? Location{path, 0} : from, "cannot open '" + path + "': " + errno_message(e));
  }
  std::string text;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      throw ConfigError(from.file.empty() ? Location{path, 0} : from, "cannot read '" + path + "'");
    }
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > limits_.max_file_bytes) {
      ::close(fd);
      throw ConfigError(from.file.empty() ? Location{path, 0} : from,
                        "'" + path + "' is larger than " + std::to_string(limits_.max_file_bytes) + " bytes");
    }
  }
  ::close(fd);
  loaded_.push_back(canon);
  stack_.push_back(canon);
  read(text, path, dir_of(path), depth);
  stack_.pop_back();
}

void Reader::include(const std::string& file, const Location& at, const std::string& dir, int depth) {
  if (depth + 1 > limits_.max_include_depth)
    throw ConfigError(at, "includes nested deeper than " + std::to_string(limits_.max_include_depth) + " files");
  std::string path = file;
  if (path.empty() || path[0] != '/') path = dir.empty() ? file : (dir == "/" ? "/" + file : dir + "/" + file);
  read_path(path, at, depth + 1);
}

// Config::General's <<include>> patterns (UseApacheInclude off). The first one is, verbatim,
// /^\s*<<include\s+(["'])(.+?)>>\\s*$/i: it wants a literal backslash and then only s/S letters.
std::optional<std::string> include_file(std::string_view line) {
  std::size_t i = 0;
  while (i < line.size() && is_space(line[i])) ++i;
  if (!iequal_prefix(line, i, "<<include")) return std::nullopt;
  i += 9;
  const std::size_t ws = i;
  while (i < line.size() && is_space(line[i])) ++i;
  if (i == ws) return std::nullopt;
  if (i < line.size() && (line[i] == '"' || line[i] == '\'')) {
    const std::size_t k = line.rfind(">>\\");
    if (k != std::string_view::npos && k >= i + 2) {
      bool only_s = true;
      for (std::size_t j = k + 3; j < line.size(); ++j) only_s = only_s && (line[j] == 's' || line[j] == 'S');
      if (only_s) return std::string(line.substr(i + 1, k - i - 1));
    }
  }
  // /^\s*<<include\s+(.+?)>>\s*$/i
  const std::string_view body = rtrim(line);
  if (body.size() < 2 || body.substr(body.size() - 2) != ">>") return std::nullopt;
  const std::size_t end = body.size() - 2;
  std::size_t start = i;
  if (start >= end) {
    start = i - 1;  // \s+ gives back one blank so that (.+?) gets a character
    if (start <= ws || start >= end) return std::nullopt;
  }
  return std::string(line.substr(start, end - start));
}

// The here-document start patterns of the 'guess' split policy. Returns {key, end marker}.
std::optional<std::pair<std::string, std::string>> heredoc_start(std::string_view line) {
  // (.+?)\s*$ after "<<\s*": the marker, trimmed; a blank-only rest gives its last character.
  auto marker = [](std::string_view rest) -> std::optional<std::string> {
    if (rest.empty()) return std::nullopt;
    std::string_view m = trim(rest);
    if (m.empty()) return std::string(rest.substr(rest.size() - 1));
    return std::string(m);
  };
  std::size_t ws = 0;
  while (ws < line.size() && is_space(line[ws])) ++ws;
  // /^\s*([^=]+?)\s*=\s*<<\s*(.+?)\s*$/
  const std::size_t eq = line.find('=');
  if (eq != std::string_view::npos && !(eq == 0)) {
    std::string key;
    bool ok = true;
    if (ws < eq) {
      key = std::string(rtrim(line.substr(ws, eq - ws)));
    } else if (ws == eq) {
      key = std::string(line.substr(ws - 1, 1));
    } else {
      ok = false;
    }
    if (ok) {
      std::size_t j = eq + 1;
      while (j < line.size() && is_space(line[j])) ++j;
      if (line.substr(j, 2) == "<<")
        if (auto m = marker(line.substr(j + 2))) return std::make_pair(key, *m);
    }
  }
  // /^\s*(\S+?)\s+<<\s*(.+?)\s*$/
  std::size_t w = ws;
  while (w < line.size() && !is_space(line[w])) ++w;
  if (w == ws) return std::nullopt;
  std::size_t j = w;
  while (j < line.size() && is_space(line[j])) ++j;
  if (j == w || line.substr(j, 2) != "<<") return std::nullopt;
  if (auto m = marker(line.substr(j + 2))) return std::make_pair(std::string(line.substr(ws, w - ws)), *m);
  return std::nullopt;
}

// /^(\s*)\Q$end\E\s*$/: returns the indentation when `line` ends the here-document.
std::optional<std::string> heredoc_end(std::string_view line, const std::string& end) {
  if (end.empty()) return std::nullopt;
  if (!is_space(end[0])) {
    std::size_t ws = 0;
    while (ws < line.size() && is_space(line[ws])) ++ws;
    if (line.substr(ws, end.size()) != end || !all_space(line.substr(ws + end.size()))) return std::nullopt;
    return std::string(line.substr(0, ws));
  }
  // A blank-only marker (only "k <<   " makes one): the line must be blank; greedy indentation.
  if (!all_space(line)) return std::nullopt;
  const std::size_t at = line.rfind(end);
  if (at == std::string_view::npos) return std::nullopt;
  return std::string(line.substr(0, at));
}

// A file that starts with a UTF-8 byte-order mark is read by Config::General as UTF-8 text: it
// dies on malformed UTF-8, and its \s then also matches Unicode white space (U+00A0, U+2003...),
// which would split and trim lines where we, reading bytes, do not. We refuse both, naming the line.
void check_utf8_text(std::string_view text, const std::string& name) {
  int line = 1;
  std::size_t i = 0;
  auto fail = [&](const std::string& what) {
    throw ConfigError(Location{name, line}, what + " in a file that starts with a UTF-8 byte-order mark");
  };
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c == '\n') ++line;
      ++i;
      continue;
    }
    std::size_t len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? (c <= 0xEF ? 3 : 0) : c >= 0xC2 ? 2 : 0;
    if (len == 0 || i + len > text.size()) fail("malformed UTF-8");
    std::uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (std::size_t k = 1; k < len; ++k) {
      const auto d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xC0) != 0x80) fail("malformed UTF-8");
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      fail("malformed UTF-8");
    if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
        cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000) {
      static const char* hex = "0123456789ABCDEF";
      std::string u = "U+";
      for (int shift = 12; shift >= 0; shift -= 4) u += hex[(cp >> shift) & 15];
      fail("Unicode white space (" + u + "), which Config::General would take for a blank,");
    }
    i += len;
  }
}

void Reader::read(std::string_view text, const std::string& name, const std::string& dir, int depth) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") {  // UTF-8 byte-order mark
    text.remove_prefix(3);
    check_utf8_text(text, name);
  }

  std::optional<std::string> hier;  // here-document key, while inside one
  std::string hier_end;
  Location hier_at;
  std::vector<std::string> hierdoc;
  bool c_comment = false;
  std::optional<std::string> longline;
  Location long_at;
  int lineno = 0;

  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string line(text.substr(pos, nl - pos));
    pos = nl + 1;
    ++lineno;
    if (++total_lines_ > limits_.max_total_lines)
      throw ConfigError(Location{name, lineno},
                        "more than " + std::to_string(limits_.max_total_lines) + " lines in the configuration");
    const Location here{name, lineno};

    if (hier) {
      if (auto indent = heredoc_end(line, hier_end)) {
        std::string chunk = *hier + " " + std::string(kSep);
        if (!indent->empty()) {
          for (auto& l : hierdoc) {
            if (l.compare(0, indent->size(), *indent) == 0) l.erase(0, indent->size());
            chunk += l;
            chunk += '\n';
          }
        } else {
          for (std::size_t i = 0; i < hierdoc.size(); ++i) {
            if (i > 0) chunk += '\n';
            chunk += hierdoc[i];
          }
        }
        out_.push_back({std::move(chunk), hier_at});
        hierdoc.clear();
        hier.reset();
      } else {
        hierdoc.push_back(std::move(line));
      }
      continue;
    }

    // C comments (CComments is on by default).
    const std::size_t open = line.find("/*");
    const std::size_t close = open == std::string::npos ? std::string::npos : line.rfind("*/");
    if (open != std::string::npos && close != std::string::npos && close >= open + 2) {
      // s/\s*\/\*.*\*\/\s*//
      std::size_t from = open;
      while (from > 0 && is_space(line[from - 1])) --from;
      std::size_t to = close + 2;
      while (to < line.size() && is_space(line[to])) ++to;
      line.erase(from, to - from);
    } else if (ltrim(line).substr(0, 2) == "/*") {
      const std::string_view r = rtrim(line);
      c_comment = !(r.size() >= 2 && r.substr(r.size() - 2) == "*/");
    } else if (const std::size_t end = line.rfind("*/"); end != std::string::npos) {
      c_comment = false;
      line.erase(0, end + 2);
    }
    if (c_comment) continue;

    // s/(?<!\\)#.*$//
    for (std::size_t i = 0; i < line.size(); ++i)
      if (line[i] == '#' && (i == 0 || line[i - 1] != '\\')) {
        line.erase(i);
        break;
      }

    // A trailing backslash (not itself escaped) continues the line.
    if (!line.empty() && line.back() == '\\' && (line.size() == 1 || line[line.size() - 2] != '\\')) {
      line.pop_back();
      if (!longline) longline.emplace();
      if (longline->empty()) long_at = here;
      *longline += ltrim(line);
      continue;
    }

    // Explicitly empty block <name/> becomes <name></name>: /\s*<([^\/]+?.*?)\/>\s*$/
    {
      const std::string_view r = rtrim(line);
      if (r.size() >= 2 && r.substr(r.size() - 2) == "/>") {
        const std::size_t e = r.size() - 2;
        std::size_t p = 0;
        bool found = false;
        while ((p = line.find('<', p)) != std::string::npos && p + 1 < e) {
          if (line[p + 1] != '/') {
            found = true;
            break;
          }
          ++p;
        }
        if (found) {
          std::string block = line.substr(p + 1, e - p - 1);
          std::string orig = line;
          if (orig.size() >= 2 && orig.compare(orig.size() - 2, 2, "/>") == 0) orig.replace(orig.size() - 2, 2, ">");
          for (std::size_t i = 0; i < block.size(); ++i)
            if (is_space(block[i])) {
              block.erase(i);
              break;
            }
          out_.push_back({std::move(orig), here});
          out_.push_back({"</" + block + ">", here});
          continue;
        }
      }
    }

    if (auto h = heredoc_start(line)) {
      // Config::General tests the key for truth: "0 <<EOF" starts nothing, and the text lines
      // become options of their own. Refuse rather than load that.
      if (h->first == "0")
        throw ConfigError(here, "a here-document cannot be named '0' (Config::General would ignore this line "
                                "and read the text as options)");
      hier = std::move(h->first);
      hier_end = std::move(h->second);
      hier_at = here;
      continue;
    }

    if (longline && truthy(*longline)) {
      *longline += ltrim(line);
      out_.push_back({std::move(*longline), long_at});
      longline.reset();
      continue;
    }
    if (all_space(line)) continue;
    if (auto file = include_file(line); file && truthy(*file)) {
      include(*file, here, dir, depth);
      continue;
    }
    out_.push_back({std::move(line), here});
  }
  if (depth == 0) last_line = lineno;

  const Location eof{name, lineno > 0 ? lineno : 1};
  // Config::General silently drops these; we refuse to lose data.
  if (hier)
    throw ConfigError(eof, "here-document '" + quote_for_message(*hier) + "' started at " + line_ref(hier_at, eof) +
                               " is never closed: expected a line '" + quote_for_message(hier_end) + "'");
  // A lone "\" continues nothing (Config::General's longline stays empty): no data is lost.
  if (longline && !longline->empty())
    throw ConfigError(eof, "the line continued (trailing \\) at " + line_ref(long_at, eof) +
                               " runs past the end of the file");
}

// ---------------------------------------------------------------------------------------------
// Pass 2: Config::General::_parse, with an explicit stack instead of recursion.
// ---------------------------------------------------------------------------------------------
struct Node {
  enum class K { Str, Null, Obj, Arr } k = K::Obj;
  std::string text;
  Location where;
  std::vector<std::string> keys;  // members in order of first appearance
  std::vector<Node> values;
  std::unordered_map<std::string, std::size_t> index;
  std::vector<Node> items;

  Node* find(const std::string& key);
  Node& add(const std::string& key, Node v);
  bool scalar() const { return k == K::Str || k == K::Null; }
};

Node* Node::find(const std::string& key) {
  auto it = index.find(key);
  return it == index.end() ? nullptr : &values[it->second];
}

Node& Node::add(const std::string& key, Node v) {
  index.emplace(key, keys.size());
  keys.push_back(key);
  values.push_back(std::move(v));
  return values.back();
}

Node make_obj(const Location& at) {
  Node n;
  n.k = Node::K::Obj;
  n.where = at;
  return n;
}

// Turns a value into an array holding it (Config::General's "convert scalar to array").
void to_array(Node& n) {
  if (n.k == Node::K::Arr) return;
  Node arr;
  arr.k = Node::K::Arr;
  arr.where = n.where;
  arr.items.push_back(std::move(n));
  n = std::move(arr);
}

Value to_value(Node&& n) {
  switch (n.k) {
    case Node::K::Str:
      return Value::string(std::move(n.text), std::move(n.where));
    case Node::K::Null:
      return Value::null(std::move(n.where));
    case Node::K::Arr: {
      Value v = Value::array(std::move(n.where));
      v.items().reserve(n.items.size());
      for (auto& item : n.items) v.items().push_back(to_value(std::move(item)));
      return v;
    }
    case Node::K::Obj:
      break;
  }
  Value v = Value::object(std::move(n.where));
  v.members().reserve(n.keys.size());
  for (std::size_t i = 0; i < n.keys.size(); ++i) v.members().emplace_back(std::move(n.keys[i]), to_value(std::move(n.values[i])));
  return v;
}

// s/\\([\$\\\"#])/$1/g
std::string unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '$' || s[i + 1] == '\\' || s[i + 1] == '"' || s[i + 1] == '#')) {
      out += s[i + 1];
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

// /^<([^\/]+?.*?)>$/ on a trimmed line: returns the text between < and >.
std::optional<std::string_view> start_tag(std::string_view s) {
  if (s.size() < 3 || s.front() != '<' || s.back() != '>' || s[1] == '/') return std::nullopt;
  const std::string_view inner = s.substr(1, s.size() - 2);
  // [^\/] may match a newline, . may not: no newline may follow the first slash.
  const std::size_t slash = inner.find('/');
  if (slash != std::string_view::npos && inner.find('\n', slash) != std::string_view::npos) return std::nullopt;
  return inner;
}

// /^<\/(.+?)>$/
std::optional<std::string_view> end_tag(std::string_view s) {
  if (s.size() < 4 || s.substr(0, 2) != "</" || s.back() != '>') return std::nullopt;
  const std::string_view inner = s.substr(2, s.size() - 3);
  if (inner.find('\n') != std::string_view::npos) return std::nullopt;
  return inner;
}

struct BlockName {
  std::string block;
  std::optional<std::string> name;
};

bool has_newline(std::string_view s) { return s.find('\n') != std::string_view::npos; }

BlockName split_block(std::string_view inner) {
  // /^"([^"]+)"$/: a quoted block name, not split.
  if (inner.size() >= 3 && inner.front() == '"' && inner.back() == '"' &&
      inner.substr(1, inner.size() - 2).find('"') == std::string_view::npos)
    return {std::string(inner.substr(1, inner.size() - 2)), std::nullopt};
  // /^(?:"([^"]+)"|(\S+))(?:\s+(?:"([^"]+)"|(.*)))?$/, then $1 || $2 and $3 || $4.
  auto tail = [&](std::size_t at, std::optional<std::string>& name) -> bool {
    if (at == inner.size()) return true;
    if (!is_space(inner[at])) return false;
    std::size_t j = at;
    while (j < inner.size() && is_space(inner[j])) ++j;
    const std::string_view rest = inner.substr(j);
    if (rest.size() >= 3 && rest.front() == '"' && rest.back() == '"' &&
        rest.substr(1, rest.size() - 2).find('"') == std::string_view::npos) {
      const std::string q(rest.substr(1, rest.size() - 2));
      if (truthy(q)) name = q;  // "0" falls through to the unset $4: no name
      return true;
    }
    if (has_newline(rest)) return false;
    name = std::string(rest);
    return true;
  };
  BlockName out;
  if (!inner.empty() && inner[0] == '"') {
    const std::size_t q = inner.find('"', 1);
    if (q != std::string_view::npos && q >= 2) {
      std::optional<std::string> name;
      if (tail(q + 1, name)) {
        const std::string first(inner.substr(1, q - 1));
        out.block = truthy(first) ? first : std::string();  // undef key
        out.name = std::move(name);
        return out;
      }
    }
  }
  std::size_t w = 0;
  while (w < inner.size() && !is_space(inner[w])) ++w;
  if (w > 0) {
    std::optional<std::string> name;
    if (tail(w, name)) {
      out.block = std::string(inner.substr(0, w));
      out.name = std::move(name);
      return out;
    }
  }
  out.block = std::string(inner);
  return out;
}

std::string tag_text(const BlockName& b) {
  return "<" + quote_for_message(b.block) + (b.name ? " " + quote_for_message(*b.name) : std::string()) + ">";
}

struct Frame {
  Node obj;
  BlockName name;
  std::string inner;  // text between < and > as written
  Location open;
};

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool closes(const Frame& f, std::string_view end_inner) {
  std::string_view e = trim(end_inner);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return ieq(e, f.name.block) || ieq(e, trim(f.inner));
}

void attach(Node& parent, Frame&& f) {
  const std::string& block = f.name.block;
  Node* existing = parent.find(block);
  if (f.name.name) {
    if (existing == nullptr) existing = &parent.add(block, make_obj(f.open));
    if (existing->scalar())
      throw ConfigError(f.open, "block " + tag_text(f.name) + " clashes with the value '" + quote_for_message(block) +
                                    "' given at " + line_ref(existing->where, f.open));
    if (existing->k == Node::K::Arr)
      throw ConfigError(f.open, "cannot add the named block " + tag_text(f.name) + ": '" + quote_for_message(block) +
                                    "' is already given several times (first at " +
                                    line_ref(existing->where, f.open) + ")");
    if (Node* same = existing->find(*f.name.name)) {
      to_array(*same);
      same->items.push_back(std::move(f.obj));
    } else {
      existing->add(*f.name.name, std::move(f.obj));
    }
    return;
  }
  if (existing == nullptr) {
    parent.add(block, std::move(f.obj));
    return;
  }
  if (existing->scalar())
    throw ConfigError(f.open, "block " + tag_text(f.name) + " clashes with the value '" + quote_for_message(block) +
                                  "' given at " + line_ref(existing->where, f.open));
  to_array(*existing);
  existing->items.push_back(std::move(f.obj));
}

Value build(std::vector<Chunk>& chunks, const Location& eof, const ParseLimits& limits) {
  std::vector<Frame> stack;
  stack.push_back(Frame{make_obj(Location{eof.file, 0}), {}, {}, Location{eof.file, 0}});
  for (auto& chunk : chunks) {
    std::string_view s = chunk.text;
    if (!s.empty() && s.back() == '\n') s.remove_suffix(1);  // chomp
    s = trim(s);

    // Split into option and value.
    std::string_view option;
    std::optional<std::string_view> value;
    if (const std::size_t sep = s.find(kSep); sep != std::string_view::npos) {
      option = rtrim(s.substr(0, sep));
      value = ltrim(s.substr(sep + kSep.size()));
    } else {
      // split /\s*=\s*|\s+/, $_, 2
      std::size_t p = 0;
      while (p < s.size() && !is_space(s[p]) && s[p] != '=') ++p;
      if (p < s.size()) {
        option = s.substr(0, p);
        std::size_t q = p;
        while (q < s.size() && is_space(s[q])) ++q;
        if (q < s.size() && s[q] == '=') {
          ++q;
          while (q < s.size() && is_space(s[q])) ++q;
        }
        value = s.substr(q);
      } else {
        option = s;
      }
    }
    if (value && truthy(*value) && value->front() == '"' && value->back() == '"') {
      value->remove_prefix(1);
      if (!value->empty() && value->back() == '"') value->remove_suffix(1);
    }

    if (auto inner = start_tag(s)) {
      if (static_cast<int>(stack.size()) > limits.max_depth)
        throw ConfigError(chunk.where, "blocks nested deeper than " + std::to_string(limits.max_depth) + " levels");
      stack.push_back(Frame{make_obj(chunk.where), split_block(*inner), std::string(*inner), chunk.where});
      continue;
    }
    if (auto inner = end_tag(s)) {
      if (stack.size() == 1)
        throw ConfigError(chunk.where, "unexpected </" + quote_for_message(*inner) + ">: no block is open");
      Frame& top = stack.back();
      if (!closes(top, *inner))
        throw ConfigError(chunk.where, "unexpected </" + quote_for_message(*inner) + ">, expected </" +
                                           quote_for_message(top.name.block) + "> (block " + tag_text(top.name) +
                                           " opened at " + line_ref(top.open, chunk.where) + ")");
      Frame done = std::move(top);
      stack.pop_back();
      attach(stack.back().obj, std::move(done));
      continue;
    }
    Node v;
    v.where = chunk.where;
    if (value) {
      v.k = Node::K::Str;
      v.text = unescape(*value);
    } else {
      v.k = Node::K::Null;
    }
    Node& obj = stack.back().obj;
    const std::string key(option);
    if (Node* existing = obj.find(key)) {
      to_array(*existing);
      existing->items.push_back(std::move(v));
    } else {
      obj.add(key, std::move(v));
    }
  }
  if (stack.size() > 1) {
    const Frame& top = stack.back();
    throw ConfigError(eof, "block " + tag_text(top.name) + " opened at " + line_ref(top.open, eof) +
                               " is never closed: expected </" + quote_for_message(top.name.block) + ">");
  }
  return to_value(std::move(stack.front().obj));
}

}  // namespace

Value parse_file(const std::string& path, const ParseLimits& limits) {
  std::vector<Chunk> chunks;
  Reader reader(limits, chunks);
  reader.read_path(path, Location{}, 0);
  return build(chunks, Location{path, reader.last_line > 0 ? reader.last_line : 1}, limits);
}

Value parse_string(std::string_view text, const std::string& name, const ParseLimits& limits) {
  if (text.size() > limits.max_file_bytes)
    throw ConfigError(Location{name, 0}, "larger than " + std::to_string(limits.max_file_bytes) + " bytes");
  std::vector<Chunk> chunks;
  Reader reader(limits, chunks);
  reader.read(text, name, std::string(), 0);
  return build(chunks, Location{name, reader.last_line > 0 ? reader.last_line : 1}, limits);
}

}  // namespace knock::config
