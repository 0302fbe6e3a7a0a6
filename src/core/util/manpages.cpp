#include "util/manpages.hpp"

#include <unistd.h>

#include <cstdio>

namespace knock::manpages {

void print(std::string_view roff) {
  if (isatty(STDOUT_FILENO) == 1 && access("/usr/bin/man", X_OK) == 0) {
    if (FILE* pipe = popen("/usr/bin/man -l -", "w")) {
      std::fwrite(roff.data(), 1, roff.size(), pipe);
      if (pclose(pipe) == 0) return;
    }
  }
  std::fwrite(roff.data(), 1, roff.size(), stdout);
}

}  // namespace knock::manpages
