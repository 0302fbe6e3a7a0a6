#pragma once
// The roff source of the man pages, embedded at build time from doc/*.1.
#include <string_view>

namespace knock::manpages {
std::string_view daemon();
std::string_view client();
}  // namespace knock::manpages
