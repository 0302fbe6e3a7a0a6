#include "rules/scalar.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

namespace knock::rules {

Scalar Scalar::number(double v, bool is_int) {
  Scalar s;
  s.kind_ = Kind::Number;
  s.num_ = v;
  s.is_int_ = is_int && std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < 9007199254740992.0;
  return s;
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
    case Kind::Number: return num_;
    case Kind::String: return numify(str_);
  }
  return 0;
}

bool Scalar::int_like() const {
  if (kind_ == Kind::Number) return is_int_;
  if (kind_ != Kind::String) return true;
  bool is_int = false;
  numify(str_, &is_int);
  return is_int;
}

std::string Scalar::str() const {
  switch (kind_) {
    case Kind::Undef: return {};
    case Kind::Number: return format_number(num_, is_int_);
    case Kind::String: return str_;
  }
  return {};
}

bool Scalar::truthy() const {
  switch (kind_) {
    case Kind::Undef: return false;
    case Kind::Number: return num_ != 0 || std::isnan(num_);
    case Kind::String: return !(str_.empty() || str_ == "0");
  }
  return false;
}

std::string format_number(double v, bool is_int) {
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

}  // namespace knock::rules
