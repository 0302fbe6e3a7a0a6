#pragma once
// The parsed configuration: the same tree Perl's Config::General builds with its default
// options, with the FILE:LINE each value came from.
//   - a block is an Object; its members keep the order in which keys first appeared;
//   - a key given once holds a String, given several times an Array of the values in order;
//   - <name x> ... </name> becomes member "name" -> Object { "x" -> Object {...} };
//   - an unnamed block given several times becomes an Array of Objects.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/error.hpp"

namespace knock::config {

class Value {
 public:
  enum class Kind { String, Object, Array };

  static Value string(std::string text, Location where);
  static Value object(Location where);
  static Value array(Location where);
  // A key written without any value (`key` alone): Config::General stores undef, printed as
  // JSON null. It is a String with empty text, so callers may treat it as "".
  static Value null(Location where);

  Kind kind() const { return kind_; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_object() const { return kind_ == Kind::Object; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_null() const { return null_; }
  const Location& where() const { return where_; }

  // String
  const std::string& text() const { return text_; }

  // Object
  using Member = std::pair<std::string, Value>;
  const std::vector<Member>& members() const { return members_; }
  std::vector<Member>& members() { return members_; }
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  // Every value given for key: the items of an Array, or the one value; empty if absent.
  std::vector<const Value*> all(std::string_view key) const;
  // The text of a key that must be given at most once as a plain value. Throws ConfigError
  // (at the key's location) when it is a block or given several times.
  std::optional<std::string> scalar(std::string_view key) const;
  // Location of a member's value, or of this object when absent.
  Location where_of(std::string_view key) const;

  // Array
  const std::vector<Value>& items() const { return items_; }
  std::vector<Value>& items() { return items_; }

 private:
  Kind kind_ = Kind::String;
  bool null_ = false;
  Location where_;
  std::string text_;
  std::vector<Member> members_;
  std::vector<Value> items_;
};

// Limits that keep hostile configs from exhausting memory or the stack.
struct ParseLimits {
  std::size_t max_file_bytes = 16 * 1024 * 1024;
  int max_depth = 64;            // nested blocks
  int max_include_depth = 16;    // nested <<include>>
  std::size_t max_total_lines = 1'000'000;
  // Called with each file's path before it is opened (the main file with where = {path, 0},
  // an <<include>> with the line that includes it); throws to refuse the file. The daemon
  // checks owner and mode here (check_config_file in util/files.hpp).
  std::function<void(const std::string& path, const Location& where)> check_file;
};

// Parses a Config::General file (following <<include>> relative to the including file).
// Throws ConfigError with FILE:LINE on any error.
Value parse_file(const std::string& path, const ParseLimits& limits = {});
// Parses text as if it were the file `name` (includes are relative to the current directory).
Value parse_string(std::string_view text, const std::string& name, const ParseLimits& limits = {});

// The tree as JSON, keys sorted, formatted byte-for-byte as Perl's
// JSON::PP->new->canonical->pretty prints it (so it can be compared with the oracle).
std::string to_json(const Value& root);
// One JSON string literal, quoted and escaped as to_json() writes strings.
std::string json_string(std::string_view s);

}  // namespace knock::config
