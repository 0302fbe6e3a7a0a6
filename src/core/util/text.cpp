#include "util/text.hpp"

#include <ctime>

#include <array>

namespace knock {

std::string_view trim_blanks(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<bool> parse_yes_no(std::string_view text) noexcept {
  text = trim_blanks(text);
  std::array<char, 6> lower{};
  if (text.size() > lower.size()) return std::nullopt;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  const std::string_view t(lower.data(), text.size());
  if (t == "yes" || t == "1" || t == "true" || t == "on") return true;
  if (t == "no" || t == "0" || t == "false" || t == "off") return false;
  return std::nullopt;
}

std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == ',') {
      if (!word.empty()) out.push_back(std::move(word));
      word.clear();
    } else {
      word += c;
    }
  }
  if (!word.empty()) out.push_back(std::move(word));
  return out;
}

std::string local_time_text(double unix_seconds) {
  const auto secs = static_cast<std::time_t>(unix_seconds);
  struct tm tm_local {};
  localtime_r(&secs, &tm_local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm_local);
  return stamp;
}

}  // namespace knock
