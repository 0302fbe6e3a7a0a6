// to_json: the tree printed exactly as Perl's JSON::PP->new->canonical->pretty->encode does.
#include <algorithm>

#include "config/tree.hpp"

namespace knock::config {
namespace {

void put_string(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\f': out += "\\f"; break;
      case '\b': out += "\\b"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;  // DEL and bytes >= 0x80 are written as they are
        }
    }
  }
  out += '"';
}

void put(std::string& out, const Value& v, int depth) {
  if (v.is_string()) {
    if (v.is_null())
      out += "null";
    else
      put_string(out, v.text());
    return;
  }
  const std::string inner = "\n" + std::string(static_cast<std::size_t>(depth + 1) * 3, ' ');
  const std::string outer = "\n" + std::string(static_cast<std::size_t>(depth) * 3, ' ');
  if (v.is_array()) {
    if (v.items().empty()) {
      out += "[]";
      return;
    }
    out += '[';
    bool first = true;
    for (const auto& item : v.items()) {
      if (!first) out += ',';
      first = false;
      out += inner;
      put(out, item, depth + 1);
    }
    out += outer;
    out += ']';
    return;
  }
  if (v.members().empty()) {
    out += "{}";
    return;
  }
  std::vector<const Value::Member*> sorted;
  sorted.reserve(v.members().size());
  for (const auto& m : v.members()) sorted.push_back(&m);
  std::sort(sorted.begin(), sorted.end(), [](const Value::Member* a, const Value::Member* b) {
    return std::string_view(a->first) < std::string_view(b->first);  // bytewise, as Perl's sort
  });
  out += '{';
  bool first = true;
  for (const auto* m : sorted) {
    if (!first) out += ',';
    first = false;
    out += inner;
    put_string(out, m->first);
    out += " : ";
    put(out, m->second, depth + 1);
  }
  out += outer;
  out += '}';
}

}  // namespace

std::string json_string(std::string_view s) {
  std::string out;
  put_string(out, s);
  return out;
}

std::string to_json(const Value& root) {
  std::string out;
  put(out, root, 0);
  out += '\n';
  return out;
}

}  // namespace knock::config
