#pragma once
// Small text helpers for config values, shared by every area.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace knock {

// Without leading and trailing spaces and tabs.
std::string_view trim_blanks(std::string_view text) noexcept;

// yes/no as Perl users write them: yes/no, 1/0, true/false, on/off, any case, blanks around
// ignored; nullopt for anything else.
std::optional<bool> parse_yes_no(std::string_view text) noexcept;
// The words of a value, split at blanks and commas ("eth0 eth1", "eth0,eth1").
std::vector<std::string> split_words(std::string_view text);
// "2024-03-05 10:10:00": Unix seconds as local time, for logs and knockctl.
std::string local_time_text(double unix_seconds);

}  // namespace knock
