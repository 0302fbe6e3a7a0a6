#pragma once
// A Perl scalar as the original's eval'ed expressions saw it: undef, a number or a string,
// with Perl's conversions between them. A number is an exact 64-bit integer (Perl's IV, or UV
// above IV_MAX) or a double (NV), as in perl's own arithmetic.
#include <cstdint>
#include <string>
#include <string_view>

namespace knock::rules {

// The numeric view perl's arithmetic takes of a value (SvIV_please): an exact integer when the
// value is one (iok), else a double. `nv` is always set; `neg`/`mag` only when iok.
struct PerlNum {
  bool iok = false;
  bool neg = false;         // iok: the value is -mag (mag <= 2^63)
  std::uint64_t mag = 0;    // iok: the magnitude
  double nv = 0;
};

class Scalar {
 public:
  enum class Kind : unsigned char { Undef, Number, String };

  Scalar() = default;  // undef
  // A double (Perl's NV); with is_int, an integral value in the 64-bit range becomes an integer.
  static Scalar number(double v, bool is_int = false);
  static Scalar integer(long long v);
  static Scalar uinteger(unsigned long long v);  // IV when it fits, else UV
  // -mag when neg (mag <= 2^63), else mag.
  static Scalar from_parts(bool neg, std::uint64_t mag);
  static Scalar string(std::string s);
  // What Perl's ! and comparisons return: 1 or "".
  static Scalar boolean(bool b) { return b ? integer(1) : string(""); }

  Kind kind() const { return kind_; }
  bool defined() const { return kind_ != Kind::Undef; }
  bool is_int() const { return kind_ == Kind::Number && type_ != Type::Nv; }
  bool is_uv() const { return kind_ == Kind::Number && type_ == Type::Uv; }
  long long iv() const { return iv_; }             // is_int() && !is_uv()
  unsigned long long uv() const { return uv_; }    // is_uv()

  double num() const;        // Perl numification (undef -> 0, "12abc" -> 12, "abc" -> 0)
  PerlNum perl_num() const;  // Perl's integer-or-double view (undef: the double 0)
  std::string str() const;   // Perl stringification (undef -> "", 3.0 -> "3", 0.1+0.2 -> "0.3")
  bool truthy() const;       // false: undef, 0, "", "0"
  // True when perl's arithmetic would use this value as an exact integer.
  bool int_like() const { return perl_num().iok; }

  bool operator==(const Scalar& other) const = default;

 private:
  enum class Type : unsigned char { Iv, Uv, Nv };
  Kind kind_ = Kind::Undef;
  Type type_ = Type::Nv;
  long long iv_ = 0;
  unsigned long long uv_ = 0;
  double num_ = 0;
  std::string str_;
};

// Perl's number formatting of a double (%.15g, Inf/-Inf/NaN); with is_int, an integral value
// below 2^53 prints in full.
std::string format_number(double v, bool is_int);
// Perl's numification of a string: a numeric prefix after leading white space, else 0.
// Sets *is_int when that prefix is a plain integer.
double numify(std::string_view text, bool* is_int = nullptr);
// Perl's grok_number + sv_2iv on a string: its integer-or-double view.
PerlNum perl_num_of_string(std::string_view text);
// Perl's looks_like_number: the whole string (white space around allowed) is a number.
bool looks_like_number(std::string_view text);

}  // namespace knock::rules
