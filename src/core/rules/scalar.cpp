#include "rules/scalar.hpp"

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <limits>

namespace knock::rules {

namespace {
constexpr double kTwo53 = 9007199254740992.0;
constexpr double kTwo63 = 9223372036854775808.0;
constexpr double kTwo64 = 18446744073709551616.0;
constexpr std::uint64_t kIvMinMag = 9223372036854775808ULL;  // |IV_MIN|

PerlNum num_of_double(double v) {
  PerlNum n;
  n.nv = v;
  if (std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < kTwo53) {
    n.iok = true;
    n.neg = v < 0;
    n.mag = static_cast<std::uint64_t>(std::fabs(v));
  }
  return n;
}
}  // namespace

Scalar Scalar::number(double v, bool is_int) {
  if (is_int && std::isfinite(v) && v == std::trunc(v)) {
    if (v >= -kTwo63 && v < kTwo63) return integer(static_cast<long long>(v));
    if (v >= 0 && v < kTwo64) return uinteger(static_cast<unsigned long long>(v));
  }
  Scalar s;
  s.kind_ = Kind::Number;
  s.type_ = Type::Nv;
  s.num_ = v;
  return s;
}

Scalar Scalar::integer(long long v) {
  Scalar s;
  s.kind_ = Kind::Number;
  s.type_ = Type::Iv;
  s.iv_ = v;
  return s;
}

Scalar Scalar::uinteger(unsigned long long v) {
  if (v <= static_cast<unsigned long long>(LLONG_MAX)) return integer(static_cast<long long>(v));
  Scalar s;
  s.kind_ = Kind::Number;
  s.type_ = Type::Uv;
  s.uv_ = v;
  return s;
}

Scalar Scalar::from_parts(bool neg, std::uint64_t mag) {
  if (!neg || mag == 0) return uinteger(mag);
  if (mag == kIvMinMag) return integer(LLONG_MIN);
  return integer(-static_cast<long long>(mag));
}

Scalar Scalar::string(std::string text) {
  Scalar s;
  s.kind_ = Kind::String;
  s.str_ = std::move(text);
  return s;
}

double Scalar::num() const {
  switch (kind_) {
    case Kind::Undef: return 0;
    case Kind::Number:
      return type_ == Type::Iv ? static_cast<double>(iv_) : type_ == Type::Uv ? static_cast<double>(uv_) : num_;
    case Kind::String: return numify(str_);
  }
  return 0;
}

PerlNum Scalar::perl_num() const {
  switch (kind_) {
    case Kind::Undef: return PerlNum{};
    case Kind::Number: {
      if (type_ == Type::Nv) return num_of_double(num_);
      PerlNum n;
      n.iok = true;
      if (type_ == Type::Uv) {
        n.mag = uv_;
      } else {
        n.neg = iv_ < 0;
        n.mag = n.neg ? 0 - static_cast<std::uint64_t>(iv_) : static_cast<std::uint64_t>(iv_);
      }
      n.nv = num();
      return n;
    }
    case Kind::String: return perl_num_of_string(str_);
  }
  return PerlNum{};
}

std::string Scalar::str() const {
  switch (kind_) {
    case Kind::Undef: return {};
    case Kind::Number:
      if (type_ == Type::Iv) return std::to_string(iv_);
      if (type_ == Type::Uv) return std::to_string(uv_);
      return format_number(num_, false);
    case Kind::String: return str_;
  }
  return {};
}

bool Scalar::truthy() const {
  switch (kind_) {
    case Kind::Undef: return false;
    case Kind::Number:
      if (type_ == Type::Iv) return iv_ != 0;
      if (type_ == Type::Uv) return true;
      return num_ != 0 || std::isnan(num_);
    case Kind::String: return !(str_.empty() || str_ == "0");
  }
  return false;
}

std::string format_number(double v, bool is_int) {
  // Perl prints an NV with %.15g; the integers it keeps exactly print in full.
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Inf" : "-Inf";
  if (v == 0) return "0";  // also -0
  char buf[64];
  if (is_int && std::fabs(v) < 9007199254740992.0)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool starts_with_nocase(std::string_view s, std::string_view word) {
  if (s.size() < word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != word[i]) return false;
  }
  return true;
}
}  // namespace

double numify(std::string_view text, bool* is_int) {
  if (is_int != nullptr) *is_int = false;
  std::size_t i = 0;
  while (i < text.size() && is_space(text[i])) ++i;
  std::size_t start = i;
  bool negative = false;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    negative = text[i] == '-';
    ++i;
  }
  std::string_view rest = text.substr(i);
  if (starts_with_nocase(rest, "inf")) return negative ? -std::numeric_limits<double>::infinity()
                                                       : std::numeric_limits<double>::infinity();
  if (starts_with_nocase(rest, "nan")) return std::numeric_limits<double>::quiet_NaN();
  std::size_t digits_start = i;
  while (i < text.size() && is_digit(text[i])) ++i;
  std::size_t int_digits = i - digits_start;
  bool plain_int = int_digits > 0;
  std::size_t frac_digits = 0;
  if (i < text.size() && text[i] == '.') {
    std::size_t j = i + 1;
    while (j < text.size() && is_digit(text[j])) ++j;
    frac_digits = j - i - 1;
    if (int_digits > 0 || frac_digits > 0) {
      i = j;
      plain_int = false;
    }
  }
  if (int_digits == 0 && frac_digits == 0) return 0;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    std::size_t j = i + 1;
    if (j < text.size() && (text[j] == '+' || text[j] == '-')) ++j;
    std::size_t exp_start = j;
    while (j < text.size() && is_digit(text[j])) ++j;
    if (j > exp_start) {
      i = j;
      plain_int = false;
    }
  }
  // from_chars does not take a leading '+' (nor a bare ".5" without help): copy the prefix.
  std::string prefix;
  prefix.reserve(i - start + 1);
  if (negative) prefix += '-';
  std::string_view body = text.substr(digits_start, i - digits_start);
  if (!body.empty() && body.front() == '.') prefix += '0';
  prefix.append(body);
  double value = 0;
  auto result = std::from_chars(prefix.data(), prefix.data() + prefix.size(), value);
  if (result.ec == std::errc::result_out_of_range) {
    // from_chars leaves value unchanged on overflow/underflow; Perl gives Inf or 0.
    bool big = false;
    for (char c : body) {
      if (c == 'e' || c == 'E') break;
      if (is_digit(c) && c != '0') { big = true; break; }
    }
    std::size_t epos = body.find_first_of("eE");
    if (epos != std::string_view::npos && epos + 1 < body.size() && body[epos + 1] == '-') big = false;
    value = big ? std::numeric_limits<double>::infinity() : 0.0;
    if (negative) value = -value;
  }
  if (is_int != nullptr) *is_int = plain_int;
  return value;
}

namespace {
struct Grok {
  bool number = false;    // the whole text (white space around allowed) is a number
  bool infnan = false;
  bool neg = false;
  bool dot = false;       // a decimal point
  bool exp = false;       // an exponent
  std::size_t int_digits = 0;
  bool overflow = false;  // the integer digits exceed 2^64-1
  std::uint64_t value = 0;
};

// Perl's grok_number (without PERL_SCAN_TRAILING).
Grok grok(std::string_view s) {
  Grok g;
  if (s == "0 but true") {
    g.number = true;
    g.int_digits = 1;
    return g;
  }
  std::size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    g.neg = s[i] == '-';
    ++i;
  }
  std::string_view rest = s.substr(i);
  if (starts_with_nocase(rest, "inf") || starts_with_nocase(rest, "nan")) {
    // "Inf", "Infinity", "NaN" (perl also takes a few rarer spellings: they stay non-numbers here).
    std::size_t len = starts_with_nocase(rest, "infinity") ? 8 : 3;
    std::size_t j = i + len;
    while (j < s.size() && is_space(s[j])) ++j;
    g.number = g.infnan = j == s.size();
    return g;
  }
  while (i < s.size() && is_digit(s[i])) {
    std::uint64_t d = static_cast<std::uint64_t>(s[i] - '0');
    if (g.value > (UINT64_MAX - d) / 10) g.overflow = true;
    if (!g.overflow) g.value = g.value * 10 + d;
    ++g.int_digits;
    ++i;
  }
  std::size_t frac = 0;
  if (i < s.size() && s[i] == '.') {
    g.dot = true;
    ++i;
    while (i < s.size() && is_digit(s[i])) { ++i; ++frac; }
  }
  if (g.int_digits == 0 && frac == 0) return g;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!(i < s.size() && is_digit(s[i]))) return g;
    while (i < s.size() && is_digit(s[i])) ++i;
    g.exp = true;
  }
  while (i < s.size() && is_space(s[i])) ++i;
  g.number = i == s.size();
  return g;
}
}  // namespace

bool looks_like_number(std::string_view text) { return grok(text).number; }

PerlNum perl_num_of_string(std::string_view text) {
  const Grok g = grok(text);
  PerlNum n;
  n.nv = numify(text);
  if (!g.number || g.infnan) return n;  // trailing garbage, or Inf/NaN: a double
  if (!g.dot && !g.exp && !g.overflow) {
    if (!g.neg || g.value <= kIvMinMag) {
      n.iok = true;
      n.neg = g.neg && g.value != 0;
      n.mag = g.value;
    }
    return n;  // below IV_MIN: a double, beyond 2^53
  }
  if (g.dot && !g.exp && g.int_digits > 0 && !g.overflow) return n;  // "1.0": perl keeps it a double
  return num_of_double(n.nv);  // "1e3", ".0": an integer when integral below 2^53
}

}  // namespace knock::rules
