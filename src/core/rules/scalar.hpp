#pragma once
// A Perl scalar as the original's eval'ed expressions saw it: undef, a number or a string,
// with Perl's conversions between them.
#include <string>
#include <string_view>

namespace knock::rules {

class Scalar {
 public:
  enum class Kind : unsigned char { Undef, Number, String };

  Scalar() = default;  // undef
  // is_int mirrors Perl's IV/NV distinction; it only changes how large numbers print.
  static Scalar number(double v, bool is_int = false);
  static Scalar integer(long long v) { return number(static_cast<double>(v), true); }
  static Scalar string(std::string s);
  // What Perl's ! and comparisons return: 1 or "".
  static Scalar boolean(bool b) { return b ? integer(1) : string(""); }

  Kind kind() const { return kind_; }
  bool defined() const { return kind_ != Kind::Undef; }
  bool is_int() const { return kind_ == Kind::Number && is_int_; }

  double num() const;        // Perl numification (undef -> 0, "12abc" -> 12, "abc" -> 0)
  std::string str() const;   // Perl stringification (undef -> "", 3.0 -> "3", 0.1+0.2 -> "0.3")
  bool truthy() const;       // false: undef, 0, "", "0"
  // For strings only: true when numification uses the whole text as an integer.
  bool int_like() const;

  bool operator==(const Scalar& other) const = default;

 private:
  Kind kind_ = Kind::Undef;
  bool is_int_ = false;
  double num_ = 0;
  std::string str_;
};

// Perl's number formatting (%.15g, integers in full, Inf/-Inf/NaN).
std::string format_number(double v, bool is_int);
// Perl's numification of a string: a numeric prefix after leading white space, else 0.
// Sets *is_int when that prefix is a plain integer.
double numify(std::string_view text, bool* is_int = nullptr);

}  // namespace knock::rules
