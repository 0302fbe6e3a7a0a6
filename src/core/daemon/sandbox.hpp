#pragma once
// The worker's confinement (doc/SECURITY.md, "Two processes"): after the monitor forks it, and
// before it reads one hostile byte, the worker
//   1. becomes its own account (setgroups to its group only, setresgid, setresuid), having
//      dropped every capability from the bounding set while it still could,
//   2. holds no capability in any set (effective, permitted, inheritable, ambient) and checks
//      that root cannot be regained,
//   3. is not dumpable, may not fork (RLIMIT_NPROC 0), sets no_new_privs,
//   4. installs a seccomp filter (libseccomp) that allows only the calls its read paths make:
//      anything else kills it (SIGSYS), calls that take a path fail with EACCES, memory can
//      never be made executable, and it writes only to stdout, stderr and its channel.
// Not running as root: steps 2 to 4 only (the account stays the caller's).
#include <optional>
#include <string>

#include <sys/types.h>

namespace knock::daemon {

struct WorkerAccount {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

// The worker's account: `user` when the config names one, else `portknock` (the Debian
// package's system user), else `nobody`. Resolved in the monitor (NSS may open files). Throws
// RuntimeError when the named user does not exist, or (as root) when none of them does, or
// when the account is root's.
WorkerAccount worker_account(const std::optional<std::string>& user);

// Steps 1 to 3; a parent-death signal set before stays set (the uid change clears it). The
// caller checks getppid() again afterwards: the parent may have died meanwhile. Throws RuntimeError when any step fails (the worker then exits: fail closed).
void demote_worker(const WorkerAccount& account);
// Step 4. `channel`: the one descriptor besides stdout and stderr the worker may write to or
// send on (-1: none). Throws RuntimeError when the filter cannot be built or loaded.
void install_worker_filter(int channel);

// For tests and the log: "uid 65534, no capabilities, no_new_privs, seccomp filter".
std::string describe_confinement();

}  // namespace knock::daemon
