#pragma once
// Small text helpers for config values, shared by every area.
#include <optional>
#include <string_view>

namespace knock {

// Without leading and trailing spaces and tabs.
std::string_view trim_blanks(std::string_view text) noexcept;

// yes/no as Perl users write them: yes/no, 1/0, true/false, on/off, any case, blanks around
// ignored; nullopt for anything else.
std::optional<bool> parse_yes_no(std::string_view text) noexcept;

}  // namespace knock
