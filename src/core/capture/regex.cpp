#define PCRE2_CODE_UNIT_WIDTH 8
#include "capture/regex.hpp"

#include <pcre2.h>

#include <new>
#include <utility>

namespace knock::capture {

namespace {

// Bounds the work of one match on a hostile line (JIT and interpreter both honour it).
pcre2_match_context* shared_context() noexcept {
  static pcre2_match_context* ctx = [] {
    pcre2_match_context* c = pcre2_match_context_create(nullptr);
    if (c != nullptr) {
      pcre2_set_match_limit(c, 1'000'000);
      pcre2_set_depth_limit(c, 10'000);
    }
    return c;
  }();
  return ctx;
}

}  // namespace

Regex::Regex(const std::string& pattern, const Location& where) : pattern_(pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0, &error,
                        &offset, nullptr);
  if (code_ == nullptr) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(error, buffer, sizeof buffer);
    throw ConfigError(where, "bad regular expression '" + pattern + "' at offset " +
                                 std::to_string(offset) + ": " +
                                 reinterpret_cast<const char*>(buffer));
  }
  pcre2_pattern_info(code_, PCRE2_INFO_CAPTURECOUNT, &captures_);
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { reset(); }

void Regex::reset() noexcept {
  if (code_ != nullptr) pcre2_code_free(code_);
  code_ = nullptr;
}

Regex::Regex(Regex&& other) noexcept
    : pattern_(std::move(other.pattern_)),
      code_(std::exchange(other.code_, nullptr)),
      captures_(other.captures_),
      jit_(other.jit_) {}

Regex& Regex::operator=(Regex&& other) noexcept {
  if (this != &other) {
    reset();
    pattern_ = std::move(other.pattern_);
    code_ = std::exchange(other.code_, nullptr);
    captures_ = other.captures_;
    jit_ = other.jit_;
  }
  return *this;
}

bool Regex::search(std::string_view text, pcre2_match_data* md) const noexcept {
  if (code_ == nullptr || md == nullptr) return false;
  const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0,
                             md, shared_context());
  return rc >= 0;  // rc == 0 means the ovector was too small: still a match
}

std::optional<std::string_view> Regex::first_group(std::string_view text,
                                                   pcre2_match_data* md) const noexcept {
  if (!search(text, md)) return std::nullopt;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  const std::uint32_t pairs = pcre2_get_ovector_count(md);
  const std::uint32_t group = (captures_ >= 1 && pairs >= 2) ? 1 : 0;
  const PCRE2_SIZE start = ov[2 * group], end = ov[2 * group + 1];
  if (start == PCRE2_UNSET || end == PCRE2_UNSET || start > end || end > text.size())
    return std::nullopt;  // the group did not take part in the match
  return text.substr(start, end - start);
}

MatchData::MatchData(std::uint32_t pairs) {
  md_ = pcre2_match_data_create(pairs == 0 ? 1 : pairs, nullptr);
  if (md_ == nullptr) throw std::bad_alloc();
}

MatchData::~MatchData() {
  if (md_ != nullptr) pcre2_match_data_free(md_);
}

}  // namespace knock::capture
