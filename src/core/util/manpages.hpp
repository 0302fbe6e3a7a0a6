#pragma once
// The roff source of the man pages, embedded at build time from doc/*.1.
#include <string_view>

namespace knock::manpages {
std::string_view daemon();
std::string_view client();

// Shows a page through man(1) when a person reads it on a terminal, else prints the roff
// source (what -man prints into a pipe or file, identical to the installed page).
void print(std::string_view roff);
}  // namespace knock::manpages
