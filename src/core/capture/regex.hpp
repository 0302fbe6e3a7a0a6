#pragma once
// A PCRE2 pattern compiled once (with JIT when available), for config-given regexes applied to
// hostile text. Matching never throws or allocates beyond PCRE2's own bounded work.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "util/error.hpp"

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;
struct pcre2_real_match_context_8;

namespace knock::capture {

class Regex {
 public:
  // Throws ConfigError(where, ...) when the pattern does not compile.
  Regex(const std::string& pattern, const Location& where);
  ~Regex();
  Regex(Regex&& other) noexcept;
  Regex& operator=(Regex&& other) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  const std::string& pattern() const { return pattern_; }
  std::uint32_t capture_count() const { return captures_; }
  bool jit() const { return jit_; }

  // Whole-string search using caller-owned match data (sized for at least capture_count()+1
  // pairs). Returns false on no match and on any matching error (match limit, bad data).
  bool search(std::string_view text, pcre2_real_match_data_8* md) const noexcept;
  // search() then the first capture group (or the whole match when the pattern has none).
  // The view points into text.
  std::optional<std::string_view> first_group(std::string_view text,
                                              pcre2_real_match_data_8* md) const noexcept;

 private:
  void reset() noexcept;
  std::string pattern_;
  pcre2_real_code_8* code_ = nullptr;
  std::uint32_t captures_ = 0;
  bool jit_ = false;
};

// Owns pcre2 match data (allocated once, reused for every match) and a match context that
// bounds backtracking.
class MatchData {
 public:
  explicit MatchData(std::uint32_t pairs);
  ~MatchData();
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
  pcre2_real_match_data_8* get() const { return md_; }

 private:
  pcre2_real_match_data_8* md_ = nullptr;
};

}  // namespace knock::capture
