#include "rules/expr.hpp"

#include <cmath>
#include <cstdint>
#include <ctime>
#include <limits>

namespace knock::rules {

namespace {
constexpr std::array<std::string_view, kVarCount> kVarNames = {
    "IP", "PORT", "FLAG0", "FLAG1", "FLAG2", "FLAG3", "FLAG4", "FLAG5", "FLAG6", "FLAG7",
    "FLAG8", "FLAG9", "CHECKSUM", "LOGIP", "TIME", "THISYEAR", "THISMONTH", "THISDAY",
    "THISHOUR", "THISMINUTE", "CLIENTNAME", "PROTO", "USER", "CLIENT_TIMEOUT", "IP6", "FAMILY"};
constexpr int kMaxHeight = 256;  // of the syntax tree: bounds the evaluator's recursion
}  // namespace

std::string_view var_name(Var v) { return kVarNames[static_cast<std::size_t>(v)]; }

std::optional<Var> var_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kVarCount; ++i)
    if (kVarNames[i] == name) return static_cast<Var>(i);
  return std::nullopt;
}

Vars make_vars(const codec::KnockValues& values, const IpAddress& logip, double time, const KnockExtras& extras) {
  Vars vars;
  auto put = [&](Var v, Scalar s) { vars.value[static_cast<std::size_t>(v)] = std::move(s); };
  static_assert(static_cast<int>(Var::Checksum) == static_cast<int>(codec::Field::Checksum));
  if (auto ip = values.get(codec::Field::Ip)) put(Var::Ip, Scalar::string(IpAddress::v4(*ip).str()));
  for (auto f = static_cast<std::size_t>(codec::Field::Port); f <= static_cast<std::size_t>(codec::Field::Checksum); ++f) {
    auto value = values.value[f];
    if (value) put(static_cast<Var>(f), Scalar::integer(*value));
  }
  if (values.ip6) put(Var::Ip6, Scalar::string(IpAddress::v6_bytes(values.ip6->data()).str()));
  put(Var::LogIp, Scalar::string(logip.str()));
  put(Var::Family, Scalar::integer(values.ip6 ? 6 : values.get(codec::Field::Ip) ? 4 : logip.is_v4() ? 4 : 6));
  if (!extras.client.empty()) put(Var::ClientName, Scalar::string(std::string(extras.client)));
  if (!extras.proto.empty()) put(Var::Proto, Scalar::string(std::string(extras.proto)));
  if (!extras.user.empty()) put(Var::User, Scalar::string(std::string(extras.user)));
  if (extras.client_timeout) put(Var::ClientTimeout, Scalar::integer(*extras.client_timeout));
  // Keep time_t conversions defined for hostile or absent timestamps.
  double t = std::isfinite(time) ? std::floor(time) : 0.0;
  if (t < 0) t = 0;
  if (t > 253402300799.0) t = 253402300799.0;  // 9999-12-31
  put(Var::Time, Scalar::integer(static_cast<long long>(t)));
  std::time_t tt = static_cast<std::time_t>(t);
  struct tm tm_local {};
  if (localtime_r(&tt, &tm_local) != nullptr) {
    put(Var::ThisYear, Scalar::integer(tm_local.tm_year + 1900LL));
    put(Var::ThisMonth, Scalar::integer(tm_local.tm_mon + 1));
    put(Var::ThisDay, Scalar::integer(tm_local.tm_mday));
    put(Var::ThisHour, Scalar::integer(tm_local.tm_hour));
    put(Var::ThisMinute, Scalar::integer(tm_local.tm_min));
  }
  return vars;
}

std::string key_text(const Expr::Key& key, const Vars& vars) {
  return key.is_var ? vars[key.var].str() : key.word;
}

enum class Op : std::uint8_t {
  Num, Str, Var, State, Neg, Pos, Not,
  Add, Sub, Mul, Div, Mod,
  NumEq, NumNe, NumLt, NumGt, NumLe, NumGe, StrEq, StrNe, StrLt, StrGt, StrLe, StrGe,
  And, Or, Cond,
  Assign, AddAssign, SubAssign, MulAssign, DivAssign, ModAssign,
  PreInc, PreDec, PostInc, PostDec, Seq,
};

struct Expr::Node {
  Op op = Op::Num;
  std::uint32_t a = 0, b = 0, c = 0;  // children, or a = state ref index
  int height = 1;
  Scalar literal;
  Var var = Var::Ip;
  std::vector<std::uint32_t> list;  // Seq: the statements
};

Expr::Expr() = default;
Expr::~Expr() = default;
Expr::Expr(const Expr&) = default;
Expr::Expr(Expr&&) noexcept = default;
Expr& Expr::operator=(const Expr&) = default;
Expr& Expr::operator=(Expr&&) noexcept = default;

// ---------------------------------------------------------------- lexer

namespace {
enum class Tok : std::uint8_t { Number, String, Ident, Punct, End };
struct Token {
  Tok kind = Tok::End;
  std::size_t pos = 0, len = 0;
  std::string text;  // identifier/punctuation text, or the decoded string
  Scalar number;
};

bool ident_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool ident_char(char c) { return ident_start(c) || (c >= '0' && c <= '9'); }
bool digit(char c) { return c >= '0' && c <= '9'; }

struct LexError {
  std::size_t pos;
  std::string message;
};

// Fills tokens or returns the first error.
std::optional<LexError> lex(std::string_view s, const ExprLimits& limits, std::vector<Token>& out) {
  static constexpr std::string_view kPuncts[] = {
      "++", "--", "+=", "-=", "*=", "/=", "%=", "==", "!=", "<=", ">=", "&&", "||",
      "+", "-", "*", "/", "%", "<", ">", "!", "=", "(", ")", ",", ";", "?", ":"};
  std::size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') { ++i; continue; }
    Token t;
    t.pos = i;
    if (c == '0' && i + 1 < s.size() && digit(s[i + 1])) {
      // A leading 0 makes an octal literal in Perl: 010 is 8.
      std::size_t j = i + 1;
      std::uint64_t value = 0;
      while (j < s.size() && digit(s[j])) {
        if (s[j] > '7') return LexError{j, "illegal octal digit '" + std::string(1, s[j]) + "'"};
        if (value > (UINT64_MAX >> 3)) return LexError{i, "octal number too large"};
        value = value * 8 + static_cast<std::uint64_t>(s[j] - '0');
        ++j;
      }
      if (j < s.size() && (ident_char(s[j]) || s[j] == '.')) return LexError{j, "bad number"};
      t.kind = Tok::Number;
      t.len = j - i;
      t.number = Scalar::uinteger(value);
      out.push_back(std::move(t));
      i = j;
      continue;
    }
    if (digit(c) || (c == '.' && i + 1 < s.size() && digit(s[i + 1]))) {
      std::size_t j = i;
      bool is_int = true;
      while (j < s.size() && digit(s[j])) ++j;
      if (j < s.size() && s[j] == '.' && !(j + 1 < s.size() && s[j + 1] == '.')) {
        is_int = false;
        ++j;
        while (j < s.size() && digit(s[j])) ++j;
      }
      if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
        std::size_t k = j + 1;
        if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
        if (k < s.size() && digit(s[k])) {
          while (k < s.size() && digit(s[k])) ++k;
          j = k;
          is_int = false;
        }
      }
      if (j < s.size() && ident_char(s[j])) return LexError{j, "bad number"};
      t.kind = Tok::Number;
      t.len = j - i;
      // An integer literal is exact up to 2^64-1 (Perl's IV/UV), anything else a double.
      PerlNum n = perl_num_of_string(s.substr(i, j - i));
      t.number = is_int && n.iok ? Scalar::from_parts(false, n.mag) : Scalar::number(n.nv);
      out.push_back(std::move(t));
      i = j;
      continue;
    }
    if (ident_start(c)) {
      std::size_t j = i;
      while (j < s.size() && ident_char(s[j])) ++j;
      t.kind = Tok::Ident;
      t.len = j - i;
      t.text = std::string(s.substr(i, j - i));
      out.push_back(std::move(t));
      i = j;
      continue;
    }
    if (c == '"' || c == '\'') {
      std::size_t j = i + 1;
      std::string value;
      bool closed = false;
      while (j < s.size()) {
        char d = s[j];
        if (d == c) { closed = true; ++j; break; }
        if (d == '\\' && j + 1 < s.size()) {
          char e = s[j + 1];
          if (c == '\'') {
            if (e == '\\' || e == '\'') { value += e; j += 2; continue; }
            value += d;
            ++j;
            continue;
          }
          switch (e) {
            case 'n': value += '\n'; break;
            case 't': value += '\t'; break;
            case '\\': case '"': case '$': case '@': value += e; break;
            default: return LexError{j, "unsupported escape in string"};
          }
          j += 2;
          continue;
        }
        if (c == '"' && (d == '$' || d == '@')) return LexError{j, "variables in strings are not supported"};
        value += d;
        ++j;
        if (value.size() > limits.max_string) return LexError{i, "string too long"};
      }
      if (!closed) return LexError{i, "unterminated string"};
      t.kind = Tok::String;
      t.len = j - i;
      t.text = std::move(value);
      out.push_back(std::move(t));
      i = j;
      continue;
    }
    bool matched = false;
    for (std::string_view p : kPuncts) {
      if (s.substr(i, p.size()) == p) {
        t.kind = Tok::Punct;
        t.len = p.size();
        t.text = std::string(p);
        out.push_back(std::move(t));
        i += p.size();
        matched = true;
        break;
      }
    }
    if (!matched) return LexError{i, std::string("unexpected character '") + (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e ? std::string("?") : std::string(1, c)) + "'"};
  }
  Token end;
  end.kind = Tok::End;
  end.pos = s.size();
  out.push_back(std::move(end));
  return std::nullopt;
}
}  // namespace

// ---------------------------------------------------------------- parser

class Parser {
 public:
  Parser(std::string_view text, const Location& where, const ExprLimits& limits, Expr& out)
      : text_(text), where_(where), limits_(limits), out_(out) {}

  void run() {
    if (text_.size() > limits_.max_length)
      fail(0, "expression is longer than " + std::to_string(limits_.max_length) + " characters");
    if (auto err = lex(text_, limits_, toks_)) fail(err->pos, err->message);
    Expr::Node seq;
    seq.op = Op::Seq;
    while (true) {
      while (is(";")) ++at_;
      if (peek().kind == Tok::End) break;
      seq.list.push_back(parse_low_or());
      if (peek().kind != Tok::End && !is(";")) fail_expected("an operator or ';'");
    }
    if (seq.list.empty()) fail(0, "empty expression");
    out_.root_ = add(std::move(seq));
  }

 private:
  const Token& peek() const { return toks_[at_]; }
  bool is(std::string_view punct) const { return peek().kind == Tok::Punct && peek().text == punct; }
  bool is_word(std::string_view w) const { return peek().kind == Tok::Ident && peek().text == w; }

  [[noreturn]] void fail(std::size_t pos, const std::string& message) const {
    std::string near = std::string(text_.substr(pos, 20));
    for (char& ch : near)
      if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) > 0x7e) ch = '?';
    std::string m = "in expression, column " + std::to_string(pos + 1) + ": " + message;
    if (!near.empty()) m += " near '" + near + "'";
    throw ConfigError(where_, m);
  }
  [[noreturn]] void fail_expected(const std::string& what) const {
    const Token& t = peek();
    fail(t.pos, "expected " + what + (t.kind == Tok::End ? ", found the end" : ""));
  }
  void expect(std::string_view punct) {
    if (!is(punct)) fail_expected("'" + std::string(punct) + "'");
    ++at_;
  }

  std::uint32_t add(Expr::Node n) {
    int h = 0;
    if (n.op == Op::Seq) {
      for (auto i : n.list) h = std::max(h, out_.nodes_[i].height);
    } else {
      int arity = this->arity(n.op);
      if (arity >= 1) h = std::max(h, out_.nodes_[n.a].height);
      if (arity >= 2) h = std::max(h, out_.nodes_[n.b].height);
      if (arity >= 3) h = std::max(h, out_.nodes_[n.c].height);
    }
    n.height = h + 1;
    if (n.height > kMaxHeight) fail(peek().pos, "expression too deeply nested");
    out_.nodes_.push_back(std::move(n));
    return static_cast<std::uint32_t>(out_.nodes_.size() - 1);
  }
  static int arity(Op op) {
    switch (op) {
      case Op::Num: case Op::Str: case Op::Var: case Op::State: case Op::PreInc: case Op::PreDec:
      case Op::PostInc: case Op::PostDec: case Op::Seq:
        return 0;
      case Op::Not: case Op::Neg: case Op::Pos: return 1;
      case Op::Cond: return 3;
      default: return 2;
    }
  }
  std::uint32_t node(Op op, std::uint32_t a = 0, std::uint32_t b = 0, std::uint32_t c = 0) {
    Expr::Node n;
    n.op = op;
    n.a = a;
    n.b = b;
    n.c = c;
    // Binary and unary nodes need their children counted; leaves use a as a ref index.
    return add(std::move(n));
  }

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > p.limits_.max_depth) p.fail(p.peek().pos, "expression too deeply nested");
    }
    ~DepthGuard() { --p.depth_; }
  };

  std::uint32_t parse_low_or() {
    std::uint32_t left = parse_low_and();
    while (is_word("or")) {
      ++at_;
      left = node(Op::Or, left, parse_low_and());
    }
    return left;
  }
  std::uint32_t parse_low_and() {
    std::uint32_t left = parse_low_not();
    while (is_word("and")) {
      ++at_;
      left = node(Op::And, left, parse_low_not());
    }
    return left;
  }
  // `not (...)` is a call in Perl, a term of the highest precedence: `not (X) && Y` is
  // `(not X) && Y`. Only a `not` not followed by '(' is the low-precedence operator.
  bool not_call() const {
    return is_word("not") && toks_[at_ + 1].kind == Tok::Punct && toks_[at_ + 1].text == "(";
  }
  std::uint32_t parse_low_not() {
    if (is_word("not") && !not_call()) {
      DepthGuard guard(*this);
      ++at_;
      return node(Op::Not, parse_low_not());
    }
    return parse_assign();
  }
  std::uint32_t parse_assign() {
    std::size_t start = at_;
    std::uint32_t left = parse_cond();
    static constexpr std::pair<std::string_view, Op> kAssign[] = {
        {"=", Op::Assign}, {"+=", Op::AddAssign}, {"-=", Op::SubAssign},
        {"*=", Op::MulAssign}, {"/=", Op::DivAssign}, {"%=", Op::ModAssign}};
    for (auto [punct, op] : kAssign) {
      if (!is(punct)) continue;
      if (out_.nodes_[left].op != Op::State) fail(toks_[start].pos, "only state(...) can be assigned to");
      ++at_;
      DepthGuard guard(*this);
      std::uint32_t right = parse_assign();
      Expr::Node n;
      n.op = op;
      n.a = out_.nodes_[left].a;
      n.b = right;
      n.height = 0;
      out_.writes_state_ = true;
      std::uint32_t idx = add_assign(std::move(n));
      return idx;
    }
    return left;
  }
  std::uint32_t add_assign(Expr::Node n) {
    n.height = out_.nodes_[n.b].height + 1;
    if (n.height > kMaxHeight) fail(peek().pos, "expression too deeply nested");
    out_.nodes_.push_back(std::move(n));
    return static_cast<std::uint32_t>(out_.nodes_.size() - 1);
  }
  std::uint32_t parse_cond() {
    std::uint32_t test = parse_oror();
    if (!is("?")) return test;
    ++at_;
    DepthGuard guard(*this);
    std::uint32_t yes = parse_assign();
    expect(":");
    std::uint32_t no = parse_assign();
    return node(Op::Cond, test, yes, no);
  }
  std::uint32_t parse_oror() {
    std::uint32_t left = parse_andand();
    while (is("||")) {
      ++at_;
      left = node(Op::Or, left, parse_andand());
    }
    return left;
  }
  std::uint32_t parse_andand() {
    std::uint32_t left = parse_equality();
    while (is("&&")) {
      ++at_;
      left = node(Op::And, left, parse_equality());
    }
    return left;
  }
  std::optional<Op> equality_op() const {
    if (is("==")) return Op::NumEq;
    if (is("!=")) return Op::NumNe;
    if (is_word("eq")) return Op::StrEq;
    if (is_word("ne")) return Op::StrNe;
    return std::nullopt;
  }
  std::optional<Op> relational_op() const {
    if (is("<")) return Op::NumLt;
    if (is(">")) return Op::NumGt;
    if (is("<=")) return Op::NumLe;
    if (is(">=")) return Op::NumGe;
    if (is_word("lt")) return Op::StrLt;
    if (is_word("gt")) return Op::StrGt;
    if (is_word("le")) return Op::StrLe;
    if (is_word("ge")) return Op::StrGe;
    return std::nullopt;
  }
  // Perl's equality and relational operators do not chain: a == b == c is a syntax error.
  std::uint32_t parse_equality() {
    std::uint32_t left = parse_relational();
    if (auto op = equality_op()) {
      ++at_;
      left = node(*op, left, parse_relational());
      if (equality_op()) fail(peek().pos, "comparisons do not chain; use && between them");
    }
    return left;
  }
  std::uint32_t parse_relational() {
    std::uint32_t left = parse_additive();
    if (auto op = relational_op()) {
      ++at_;
      left = node(*op, left, parse_additive());
      if (relational_op()) fail(peek().pos, "comparisons do not chain; use && between them");
    }
    return left;
  }
  std::uint32_t parse_additive() {
    std::uint32_t left = parse_mult();
    while (is("+") || is("-")) {
      Op op = is("+") ? Op::Add : Op::Sub;
      ++at_;
      left = node(op, left, parse_mult());
    }
    return left;
  }
  std::uint32_t parse_mult() {
    std::uint32_t left = parse_unary();
    while (is("*") || is("/") || is("%")) {
      Op op = is("*") ? Op::Mul : is("/") ? Op::Div : Op::Mod;
      ++at_;
      left = node(op, left, parse_unary());
    }
    return left;
  }
  std::uint32_t parse_unary() {
    if (is("!") || is("-") || is("+")) {
      Op op = is("!") ? Op::Not : is("-") ? Op::Neg : Op::Pos;
      DepthGuard guard(*this);
      ++at_;
      return node(op, parse_unary());
    }
    return parse_incdec();
  }
  std::uint32_t parse_incdec() {
    if (is("++") || is("--")) {
      Op op = is("++") ? Op::PreInc : Op::PreDec;
      std::size_t pos = peek().pos;
      ++at_;
      std::uint32_t target = parse_primary();
      if (out_.nodes_[target].op != Op::State) fail(pos, "++ and -- apply only to state(...)");
      return incdec(op, target);
    }
    std::size_t pos = peek().pos;
    std::uint32_t target = parse_primary();
    if (is("++") || is("--")) {
      Op op = is("++") ? Op::PostInc : Op::PostDec;
      if (out_.nodes_[target].op != Op::State) fail(pos, "++ and -- apply only to state(...)");
      ++at_;
      return incdec(op, target);
    }
    return target;
  }
  std::uint32_t incdec(Op op, std::uint32_t target) {
    out_.writes_state_ = true;
    Expr::Node n;
    n.op = op;
    n.a = out_.nodes_[target].a;
    return add(std::move(n));
  }
  std::uint32_t parse_primary() {
    const Token& t = peek();
    switch (t.kind) {
      case Tok::Number: {
        Expr::Node n;
        n.op = Op::Num;
        n.literal = t.number;
        ++at_;
        return add(std::move(n));
      }
      case Tok::String: {
        Expr::Node n;
        n.op = Op::Str;
        n.literal = Scalar::string(t.text);
        ++at_;
        return add(std::move(n));
      }
      case Tok::Ident: {
        if (t.text == "state") return parse_state();
        if (not_call()) {
          DepthGuard guard(*this);
          at_ += 2;
          std::uint32_t inner = parse_low_or();
          expect(")");
          return node(Op::Not, inner);
        }
        if (auto v = var_from_name(t.text)) {
          Expr::Node n;
          n.op = Op::Var;
          n.var = *v;
          ++at_;
          return add(std::move(n));
        }
        fail(t.pos, "unknown name '" + t.text + "' (expected a field such as IP, PORT, FLAG0, TIME, or state(...))");
      }
      case Tok::Punct:
        if (t.text == "(") {
          DepthGuard guard(*this);
          ++at_;
          std::uint32_t inner = parse_low_or();
          expect(")");
          return inner;
        }
        fail_expected("a value");
      case Tok::End:
        fail_expected("a value");
    }
    fail_expected("a value");
  }
  std::uint32_t parse_state() {
    std::size_t pos = peek().pos;
    ++at_;
    expect("(");
    std::vector<Expr::Key> keys;
    while (true) {
      const Token& t = peek();
      Expr::Key key;
      if (t.kind == Tok::Ident) {
        if (auto v = var_from_name(t.text)) {
          key.is_var = true;
          key.var = *v;
        } else {
          key.word = t.text;
        }
      } else if (t.kind == Tok::Number) {
        key.word = t.number.str();
      } else if (t.kind == Tok::String) {
        key.word = t.text;
      } else {
        fail_expected("a key (a field name, a word, a number or a quoted string)");
      }
      ++at_;
      keys.push_back(std::move(key));
      if (keys.size() > limits_.max_keys)
        fail(pos, "state(...) has more than " + std::to_string(limits_.max_keys) + " keys");
      if (is(",")) {
        ++at_;
        continue;
      }
      expect(")");
      break;
    }
    out_.state_refs_.push_back(std::move(keys));
    Expr::Node n;
    n.op = Op::State;
    n.a = static_cast<std::uint32_t>(out_.state_refs_.size() - 1);
    return add(std::move(n));
  }

  std::string_view text_;
  const Location& where_;
  const ExprLimits& limits_;
  Expr& out_;
  std::vector<Token> toks_;
  std::size_t at_ = 0;
  int depth_ = 0;
};

Expr Expr::parse(std::string_view text, const Location& where, const ExprLimits& limits) {
  Expr e;
  e.text_ = std::string(text.substr(0, limits.max_length + 1));
  Parser(text, where, limits, e).run();
  return e;
}

// ---------------------------------------------------------------- evaluation

namespace {
constexpr std::uint64_t kTwo53 = 1ULL << 53;
constexpr std::uint64_t kIvMinMag = 1ULL << 63;
constexpr double kUvMaxP1 = 18446744073709551616.0;
__extension__ typedef __int128 Wide;

Wide wide(const PerlNum& n) { return n.neg ? -static_cast<Wide>(n.mag) : static_cast<Wide>(n.mag); }

// An exact integer result when it fits IV or UV (as perl's pp_add, pp_subtract and
// pp_multiply keep it), else the double.
Scalar int_or_double(Wide v, double fallback) {
  if (v < -static_cast<Wide>(kIvMinMag) || v > static_cast<Wide>(UINT64_MAX)) return Scalar::number(fallback);
  return v < 0 ? Scalar::from_parts(true, static_cast<std::uint64_t>(-v)) : Scalar::from_parts(false, static_cast<std::uint64_t>(v));
}

// Perl's unary minus (pp_negate): strings first (-"foo" is "-foo", -"-foo" is "+foo").
Scalar negate(const Scalar& v) {
  if (v.kind() == Scalar::Kind::String) {
    const std::string s = v.str();
    if (!s.empty()) {
      if (ident_start(s[0])) return Scalar::string("-" + s);
      if (s[0] == '+') return Scalar::string("-" + s.substr(1));
      if (s[0] == '-' && !looks_like_number(s)) return Scalar::string("+" + s.substr(1));
    }
  }
  // A double stays a double (perl only takes the integer view of a string).
  if (v.kind() == Scalar::Kind::Number && !v.is_int()) return Scalar::number(-v.num());
  PerlNum n = v.perl_num();
  if (!n.iok) return Scalar::number(-n.nv);
  if (!n.neg && n.mag > kIvMinMag) return Scalar::number(-n.nv);
  return Scalar::from_parts(!n.neg, n.mag);
}

// Perl's numeric comparison: exact between integers, else between doubles (NaN: unordered).
std::optional<int> num_compare(const Scalar& l, const Scalar& r) {
  PerlNum a = l.perl_num(), b = r.perl_num();
  if (a.iok && b.iok) {
    Wide x = wide(a), y = wide(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (std::isnan(a.nv) || std::isnan(b.nv)) return std::nullopt;
  return a.nv < b.nv ? -1 : a.nv > b.nv ? 1 : 0;
}

// Perl's ++ (sv_inc) and -- (sv_dec) on a value that is not a magic-increment string.
Scalar step(const Scalar& old, int delta) {
  if (!old.defined()) return Scalar::integer(delta);
  PerlNum n;
  if (old.kind() == Scalar::Kind::String) {
    const std::string s = old.str();
    if (s.empty() && delta > 0) return Scalar::integer(1);
    n = perl_num_of_string(s);
  } else {
    n = old.perl_num();
  }
  if (!n.iok) return Scalar::number(n.nv + delta);
  Wide v = wide(n) + delta;
  return int_or_double(v, n.nv + delta);
}

// Perl's magic string increment: "aa" -> "ab", "Az" -> "Ba", "zz" -> "aaa", "a9" -> "b0".
bool magic_increment(const std::string& s, std::string* out) {
  if (s.empty()) return false;
  std::size_t i = 0;
  while (i < s.size() && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z'))) ++i;
  while (i < s.size() && digit(s[i])) ++i;
  if (i != s.size()) return false;
  std::string r = s;
  std::size_t k = r.size();
  while (k > 0) {
    char& ch = r[k - 1];
    if (ch == 'z') { ch = 'a'; --k; continue; }
    if (ch == 'Z') { ch = 'A'; --k; continue; }
    if (ch == '9') { ch = '0'; --k; continue; }
    ++ch;
    *out = r;
    return true;
  }
  char first = s[0];
  char lead = (first >= 'a' && first <= 'z') ? 'a' : (first >= 'A' && first <= 'Z') ? 'A' : '1';
  *out = std::string(1, lead) + r;
  return true;
}
}  // namespace

class Evaluator {
 public:
  Evaluator(const Expr& e, const Vars& vars, StateStore* state) : e_(e), vars_(vars), state_(state) {}

  EvalResult run() {
    EvalResult r;
    const Expr::Node& root = e_.nodes_[e_.root_];
    for (auto idx : root.list) {
      r.value = eval(idx);
      if (!error_.empty()) break;
    }
    if (!error_.empty()) {
      r.ok = false;
      r.value = Scalar();
      r.error = error_;
    }
    return r;
  }

 private:
  std::vector<std::string> keys(std::uint32_t ref) const {
    std::vector<std::string> out;
    for (const auto& k : e_.state_refs_[ref]) out.push_back(key_text(k, vars_));
    return out;
  }
  Scalar get(const std::vector<std::string>& k) const { return state_ ? state_->get(k) : Scalar(); }
  void set(const std::vector<std::string>& k, const Scalar& v) {
    std::string err;
    if (state_ == nullptr)
      error_ = "state cannot be changed here";
    else if (!state_->set(k, v, &err))
      error_ = err.empty() ? "state refused the change" : err;
  }
  Scalar fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return Scalar();
  }

  // Perl's pp_add, pp_subtract, pp_multiply, pp_divide and pp_modulo with PERL_PRESERVE_IVUV:
  // exact 64-bit integers where both operands are integers and the result fits, else doubles.
  // An undefined left side of += and -= counts as the integer 0 (elsewhere undef is the double 0).
  Scalar binary_arith(Op op, const Scalar& l, const Scalar& r) {
    PerlNum a = l.perl_num(), b = r.perl_num();
    if (!l.defined() && (op == Op::AddAssign || op == Op::SubAssign)) a.iok = true;
    const bool ints = a.iok && b.iok;
    switch (op) {
      case Op::Add: case Op::AddAssign:
        return ints ? int_or_double(wide(a) + wide(b), a.nv + b.nv) : Scalar::number(a.nv + b.nv);
      case Op::Sub: case Op::SubAssign:
        return ints ? int_or_double(wide(a) - wide(b), a.nv - b.nv) : Scalar::number(a.nv - b.nv);
      case Op::Mul: case Op::MulAssign: {
        if (!ints) return Scalar::number(a.nv * b.nv);
        std::uint64_t m = 0;
        if (__builtin_mul_overflow(a.mag, b.mag, &m)) return Scalar::number(a.nv * b.nv);
        bool neg = a.neg != b.neg && m != 0;
        if (neg && m > kIvMinMag) return Scalar::number(a.nv * b.nv);
        return Scalar::from_parts(neg, m);
      }
      case Op::Div: case Op::DivAssign: {
        if (ints) {
          if (b.mag == 0) return fail("Illegal division by zero");
          // Integer division only where a double could not hold the left side exactly.
          if (a.mag >= b.mag && a.mag > kTwo53 && a.mag % b.mag == 0) {
            std::uint64_t q = a.mag / b.mag;
            if (a.neg == b.neg) return Scalar::from_parts(false, q);
            if (q <= kIvMinMag) return Scalar::from_parts(true, q);
            return Scalar::number(-static_cast<double>(q));
          }
        }
        if (b.nv == 0) return fail("Illegal division by zero");
        return Scalar::number(a.nv / b.nv);
      }
      case Op::Mod: case Op::ModAssign: {
        std::uint64_t left = 0, right = 0;
        bool left_neg = false, right_neg = false, use_double = false, dright_valid = false;
        double dleft = 0, dright = 0;
        if (b.iok) {
          right = b.mag;
          right_neg = b.neg;
        } else {
          dright = b.nv;
          right_neg = dright < 0;
          if (right_neg) dright = -dright;
          if (dright < kUvMaxP1) {
            right = static_cast<std::uint64_t>(dright);
            dright_valid = true;
          } else {
            use_double = true;
          }
        }
        if (!use_double && a.iok) {
          left = a.mag;
          left_neg = a.neg;
        } else {
          dleft = a.nv;
          left_neg = dleft < 0;
          if (left_neg) dleft = -dleft;
          if (!use_double) {
            if (dleft < kUvMaxP1) {
              left = static_cast<std::uint64_t>(dleft);
            } else {
              dleft = std::floor(dleft + 0.5);
              use_double = true;
              dright = dright_valid ? std::floor(dright + 0.5) : static_cast<double>(right);
            }
          }
        }
        if (use_double) {
          if (dright == 0) return fail("Illegal modulus zero");
          double ans = std::fmod(dleft, dright);
          if (left_neg != right_neg && ans != 0) ans = dright - ans;
          if (right_neg) ans = -ans;
          return Scalar::number(ans);
        }
        if (right == 0) return fail("Illegal modulus zero");
        std::uint64_t ans = left % right;
        if (left_neg != right_neg && ans != 0) ans = right - ans;
        if (right_neg) {
          if (ans <= kIvMinMag) return Scalar::from_parts(true, ans);
          return Scalar::number(-static_cast<double>(ans));
        }
        return Scalar::from_parts(false, ans);
      }
      default: return Scalar();
    }
  }

  Scalar eval(std::uint32_t idx) {
    if (!error_.empty()) return Scalar();
    const Expr::Node& n = e_.nodes_[idx];
    switch (n.op) {
      case Op::Num: case Op::Str: return n.literal;
      case Op::Var: return vars_[n.var];
      case Op::State: return get(keys(n.a));
      case Op::Not: return Scalar::boolean(!eval(n.a).truthy());
      case Op::Pos: return eval(n.a);
      case Op::Neg: return negate(eval(n.a));
      case Op::Add: case Op::Sub: case Op::Mul: case Op::Div: case Op::Mod: {
        Scalar l = eval(n.a);
        Scalar r = eval(n.b);
        if (!error_.empty()) return Scalar();
        return binary_arith(n.op, l, r);
      }
      case Op::NumEq: case Op::NumNe: case Op::NumLt: case Op::NumGt: case Op::NumLe: case Op::NumGe: {
        Scalar a = eval(n.a);
        Scalar b = eval(n.b);
        std::optional<int> c = num_compare(a, b);
        if (!c) return Scalar::boolean(n.op == Op::NumNe);
        switch (n.op) {
          case Op::NumEq: return Scalar::boolean(*c == 0);
          case Op::NumNe: return Scalar::boolean(*c != 0);
          case Op::NumLt: return Scalar::boolean(*c < 0);
          case Op::NumGt: return Scalar::boolean(*c > 0);
          case Op::NumLe: return Scalar::boolean(*c <= 0);
          default: return Scalar::boolean(*c >= 0);
        }
      }
      case Op::StrEq: case Op::StrNe: case Op::StrLt: case Op::StrGt: case Op::StrLe: case Op::StrGe: {
        std::string a = eval(n.a).str();
        std::string b = eval(n.b).str();
        int c = a.compare(b);
        switch (n.op) {
          case Op::StrEq: return Scalar::boolean(c == 0);
          case Op::StrNe: return Scalar::boolean(c != 0);
          case Op::StrLt: return Scalar::boolean(c < 0);
          case Op::StrGt: return Scalar::boolean(c > 0);
          case Op::StrLe: return Scalar::boolean(c <= 0);
          default: return Scalar::boolean(c >= 0);
        }
      }
      case Op::And: {
        Scalar l = eval(n.a);
        return l.truthy() ? eval(n.b) : l;
      }
      case Op::Or: {
        Scalar l = eval(n.a);
        return l.truthy() ? l : eval(n.b);
      }
      case Op::Cond: return eval(n.a).truthy() ? eval(n.b) : eval(n.c);
      case Op::Assign: {
        Scalar v = eval(n.b);
        if (!error_.empty()) return Scalar();
        set(keys(n.a), v);
        return v;
      }
      case Op::AddAssign: case Op::SubAssign: case Op::MulAssign: case Op::DivAssign: case Op::ModAssign: {
        Scalar r = eval(n.b);
        if (!error_.empty()) return Scalar();
        auto k = keys(n.a);
        Scalar v = binary_arith(n.op, get(k), r);
        if (!error_.empty()) return Scalar();
        set(k, v);
        return v;
      }
      case Op::PreInc: case Op::PostInc: {
        auto k = keys(n.a);
        Scalar old = get(k);
        Scalar updated;
        std::string magic;
        if (old.kind() == Scalar::Kind::String && magic_increment(old.str(), &magic))
          updated = Scalar::string(magic);
        else
          updated = step(old, +1);
        set(k, updated);
        if (n.op == Op::PreInc) return updated;
        return old.defined() ? old : Scalar::integer(0);
      }
      case Op::PreDec: case Op::PostDec: {
        auto k = keys(n.a);
        Scalar old = get(k);
        Scalar updated = step(old, -1);
        set(k, updated);
        return n.op == Op::PreDec ? updated : old;
      }
      case Op::Seq: {
        Scalar last;
        for (auto i : n.list) last = eval(i);
        return last;
      }
    }
    return Scalar();
  }

  const Expr& e_;
  const Vars& vars_;
  StateStore* state_;
  std::string error_;
};

EvalResult Expr::evaluate(const Vars& vars, StateStore* state) const noexcept {
  if (nodes_.empty()) return EvalResult{false, Scalar(), "empty expression"};
  try {
    return Evaluator(*this, vars, state).run();
  } catch (...) {
    return EvalResult{false, Scalar(), "out of memory"};
  }
}

std::string Expr::render(const Vars& vars) const {
  std::vector<Token> toks;
  ExprLimits limits;
  limits.max_string = text_.size();
  if (lex(text_, limits, toks)) return text_;
  std::string out;
  std::size_t copied = 0;
  for (const auto& t : toks) {
    if (t.kind != Tok::Ident) continue;
    auto v = var_from_name(t.text);
    if (!v) continue;
    out.append(text_, copied, t.pos - copied);
    out += vars[*v].str();
    copied = t.pos + t.len;
  }
  out.append(text_, copied, std::string::npos);
  return out;
}

}  // namespace knock::rules
