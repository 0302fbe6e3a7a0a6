#pragma once
// Files an attacker might have planted or changed: configs, key files, the state cache.
#include <string>

#include "util/error.hpp"
#include "util/secure.hpp"

namespace knock {

// Refuses (ConfigError at `where`) a file that other users can write or that belongs to another
// user, as sshd does: they could change what the daemon runs as root. A missing file passes
// (the caller reports it its own way).
void check_not_writable_by_others(const std::string& path, const Location& where);

// Reads a key file: its first line, without the line end. Opened without following a link;
// refused when other users can write it or when it is not a regular file of at most 4 KiB;
// a warning when other users can read it.
SecureBytes read_key_file(const std::string& path, const Location& where);

// The first line of text (without "\n" or "\r\n"); text is wiped.
SecureBytes first_line_of(std::string& text);

}  // namespace knock
