#pragma once
// The expression language of conditions and state templates: the subset of Perl that the
// original knockdaemon passed to eval, parsed once at start and evaluated per knock.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codec/fields.hpp"
#include "rules/scalar.hpp"
#include "util/address.hpp"
#include "util/error.hpp"

namespace knock::rules {

// The names an expression or a system command may use for a knock's values.
enum class Var : std::uint8_t {
  Ip, Port, Flag0, Flag1, Flag2, Flag3, Flag4, Flag5, Flag6, Flag7, Flag8, Flag9, Checksum,
  LogIp, Time, ThisYear, ThisMonth, ThisDay, ThisHour, ThisMinute,
  ClientName,     // the <client NAME> (or <fwknop NAME>) of an authenticated knock
  Proto,          // fwknop: the requested protocol, tcp or udp
  User,           // fwknop: the user the client names
  ClientTimeout,  // fwknop: the client's timeout (seconds), or the stanza's fw_access_timeout
  Ip6,            // the IPv6 address the knock carries (RFC 5952 text)
  Family,         // 6 when IP6 is defined, else 4 when IP is, else LOGIP's family
};
inline constexpr std::size_t kVarCount = 26;

// What an authenticated knock adds to its fields; empty / absent for the original format.
struct KnockExtras {
  std::string_view client;
  std::string_view proto;
  std::string_view user;
  std::optional<std::uint32_t> client_timeout;
};
std::string_view var_name(Var v);
std::optional<Var> var_from_name(std::string_view name);

// The values of one knock: fields absent from the knock format are undef.
struct Vars {
  std::array<Scalar, kVarCount> value{};
  const Scalar& operator[](Var v) const { return value[static_cast<std::size_t>(v)]; }
};
// IP as a dotted quad, IP6 and LOGIP as text, FAMILY 4 or 6, TIME the whole seconds of `time`, THIS* from `time` in
// local time (never the wall clock).
Vars make_vars(const codec::KnockValues& values, const IpAddress& logip, double time,
               const KnockExtras& extras = {});

// Where state(...) reads and writes.
class StateStore {
 public:
  virtual ~StateStore() = default;
  virtual Scalar get(const std::vector<std::string>& keys) const = 0;
  // False with *error set when the store refuses (too many entries, key too long).
  virtual bool set(const std::vector<std::string>& keys, const Scalar& value, std::string* error) = 0;
};

struct ExprLimits {
  std::size_t max_length = 4096;  // characters of one expression
  int max_depth = 64;             // nesting of parentheses and operators
  std::size_t max_keys = 16;      // keys in one state(...)
  std::size_t max_string = 256;   // a quoted string literal
};

struct EvalResult {
  bool ok = true;
  Scalar value;       // of the last statement
  std::string error;  // when !ok: e.g. "Illegal division by zero"
};

class Expr {
 public:
  // Throws ConfigError at `where` with the column of the problem.
  static Expr parse(std::string_view text, const Location& where, const ExprLimits& limits = {});

  // Never throws; a runtime error (division by zero, a refused state write) stops the
  // evaluation and is returned. `state` may be null: state(...) then reads undef and writes fail.
  EvalResult evaluate(const Vars& vars, StateStore* state) const noexcept;

  // The source with every field name replaced by its value (for -test's "would set:").
  std::string render(const Vars& vars) const;
  const std::string& text() const { return text_; }
  bool writes_state() const { return writes_state_; }

  struct Key {
    bool is_var = false;
    Var var = Var::Ip;
    std::string word;
  };
  struct Node;

 private:
  friend class Parser;
  friend class Evaluator;
  std::string text_;
  std::vector<Node> nodes_;
  std::vector<std::vector<Key>> state_refs_;
  std::uint32_t root_ = 0;
  bool writes_state_ = false;

 public:
  Expr();
  ~Expr();
  Expr(const Expr&);
  Expr(Expr&&) noexcept;
  Expr& operator=(const Expr&);
  Expr& operator=(Expr&&) noexcept;
};

// The text of one state key as Perl would use it for a hash key.
std::string key_text(const Expr::Key& key, const Vars& vars);

}  // namespace knock::rules
