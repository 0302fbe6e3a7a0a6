#pragma once
// Files an attacker might have planted or changed: configs, key files, the state cache.
#include <string>
#include <string_view>

#include "util/error.hpp"
#include "util/secure.hpp"

namespace knock {

// Refuses (ConfigError at `where`) a file that other users can write or that belongs to another
// user, as sshd does: they could change what the daemon runs as root. A missing file passes
// (the caller reports it its own way).
void check_not_writable_by_others(const std::string& path, const Location& where);

// A configuration file the daemon trusts (the main config and each <<include>>): the file and
// the folder holding it pass check_not_writable_by_others, so nobody but root (or the user the
// program runs as) can change or replace what it reads.
void check_config_file(const std::string& path, const Location& where);

// Refuses (ConfigError at `where`) a file holding a secret (a `key =` line, a key file) that
// every user can read (mode o+r), as sshd refuses a readable private key. A file the group can
// read is accepted: that is how a daemon that drops root (`user`) still reads its config.
// A missing file passes.
void check_secret_not_readable_by_others(const std::string& path, const Location& where);

// Reads a key file: its first line, without the line end. Opened without following a link;
// refused when other users can write it, when every user can read it (o+r), or when it is not
// a regular file of at most 4 KiB.
SecureBytes read_key_file(const std::string& path, const Location& where);

// Marks every descriptor above 2 close-on-exec, so that none reaches the commands the daemon
// starts: those it inherited (a pipe of the shell or service manager that started it) and
// those a library opened without O_CLOEXEC (libnftables' netlink socket, opened by
// nft_ctx_new). The daemon calls it first thing and after building each configuration.
void mark_all_close_on_exec();

// Writes `content` to `path` atomically: a temporary file beside it (mode `mode`, close-on-exec),
// fsync, rename over `path`, fsync of the folder. Throws RuntimeError.
void write_file_atomically(const std::string& path, std::string_view content, unsigned mode);

// The first line of text (without "\n" or "\r\n"); text is wiped.
SecureBytes first_line_of(std::string& text);

}  // namespace knock
