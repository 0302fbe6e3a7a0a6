#include "daemon/sandbox.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/net.h>
#include <net/if.h>
#include <pwd.h>
#include <seccomp.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "util/error.hpp"

namespace knock::daemon {
namespace {

// One argument comparison, every field given (libseccomp's SCMP_An macros leave datum_b out,
// which clang's -Wmissing-field-initializers reports).
scmp_arg_cmp arg(unsigned index, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) { return {index, op, a, b}; }

[[noreturn]] void fail(const std::string& what) {
  const int saved = errno;
  throw RuntimeError("worker confinement: " + what + ": " + errno_message(saved));
}

std::optional<WorkerAccount> lookup(const std::string& name) {
  errno = 0;
  const passwd* pw = ::getpwnam(name.c_str());
  if (pw == nullptr) {
    if (errno != 0 && errno != ENOENT && errno != ESRCH) fail("getpwnam " + name);
    return std::nullopt;
  }
  return WorkerAccount{name, pw->pw_uid, pw->pw_gid};
}

}  // namespace

WorkerAccount worker_account(const std::optional<std::string>& user) {
  std::optional<WorkerAccount> account;
  if (user) {
    account = lookup(*user);
    if (!account) throw RuntimeError("user = " + *user + ": no such user");
  } else {
    account = lookup("portknock");
    if (!account) account = lookup("nobody");
  }
  if (!account) {
    if (geteuid() != 0) return WorkerAccount{"", geteuid(), getegid()};
    throw RuntimeError("no account for the worker: neither portknock nor nobody exists (set user = NAME)");
  }
  if (geteuid() == 0 && (account->uid == 0 || account->gid == 0))
    throw RuntimeError("user = " + account->name + ": the worker must not run as root (uid and gid 0 are refused)");
  return *account;
}

void demote_worker(const WorkerAccount& account) {
  // The kernel clears the parent-death signal when the euid changes: it is set again below.
  int parent_death = 0;
  if (prctl(PR_GET_PDEATHSIG, &parent_death, 0, 0, 0) != 0) fail("PR_GET_PDEATHSIG");
  if (geteuid() == 0) {
    // The bounding set first, while CAP_SETPCAP is still ours: nothing can ever come back.
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
      if (cap_drop_bound(static_cast<cap_value_t>(cap)) != 0 && errno != EINVAL) fail("dropping the bounding set");
    }
    const gid_t group = account.gid;
    if (setgroups(1, &group) != 0) fail("setgroups");
    if (setresgid(account.gid, account.gid, account.gid) != 0) fail("setresgid");
    if (setresuid(account.uid, account.uid, account.uid) != 0) fail("setresuid");
    if (setuid(0) == 0 || seteuid(0) == 0) {
      errno = EPERM;
      fail("root could be regained");
    }
    if (setgid(0) == 0 || setegid(0) == 0) {
      errno = EPERM;
      fail("group root could be regained");
    }
    if (parent_death != 0 && prctl(PR_SET_PDEATHSIG, parent_death, 0, 0, 0) != 0) fail("PR_SET_PDEATHSIG");
  }
  // Not running as root: the same account, but no capability either.
  if (cap_reset_ambient() != 0 && errno != EINVAL) fail("clearing the ambient capabilities");
  cap_t none = cap_init();
  if (none == nullptr) fail("cap_init");
  const int set = cap_set_proc(none);
  cap_free(none);
  if (set != 0) fail("clearing the capabilities");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail("PR_SET_DUMPABLE");
  const rlimit no_processes{0, 0};
  if (setrlimit(RLIMIT_NPROC, &no_processes) != 0) fail("RLIMIT_NPROC");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("PR_SET_NO_NEW_PRIVS");
}

void install_worker_filter(int channel) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (ctx == nullptr) throw RuntimeError("worker confinement: seccomp_init failed");
  int rc = 0;
  auto allow = [&](int call) {
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, call, 0);
  };
  auto refuse = [&](int call, int error) {
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(static_cast<std::uint32_t>(error)), call, 0);
  };
  // Reading: capture rings and sockets, the log file, the inotify and monitor descriptors.
  for (int call : {SCMP_SYS(read), SCMP_SYS(readv), SCMP_SYS(pread64), SCMP_SYS(recvfrom), SCMP_SYS(recvmsg),
                   SCMP_SYS(recvmmsg), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(lseek), SCMP_SYS(fstat),
                   SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(getsockopt), SCMP_SYS(getsockname),
                   SCMP_SYS(close)})
    allow(call);
  // fcntl: a descriptor's own flags only. F_DUPFD would put a capture or UDP socket at the
  // channel's or stderr's number (the write rules below go by number); F_SETOWN/F_SETSIG would
  // have the kernel signal another process of the worker's account; locks and leases touch
  // files. All of those fail with EPERM.
  for (int command : {F_GETFL, F_SETFL, F_GETFD, F_SETFD}) {
    if (rc == 0)
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1,
                            arg(1, SCMP_CMP_EQ, static_cast<scmp_datum_t>(command)));
  }
  for (int command : {F_DUPFD, F_DUPFD_CLOEXEC, F_SETOWN, F_SETOWN_EX, F_SETSIG, F_SETLK, F_SETLKW, F_OFD_SETLK,
                      F_OFD_SETLKW, F_SETLEASE, F_NOTIFY, F_SETPIPE_SZ, F_ADD_SEALS, F_GETLK, F_OFD_GETLK, F_GETOWN,
                      F_GETOWN_EX, F_GETSIG, F_GETLEASE, F_GETPIPE_SZ, F_GET_SEALS}) {
    if (rc == 0)
      rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(fcntl), 1,
                            arg(1, SCMP_CMP_EQ, static_cast<scmp_datum_t>(command)));
  }
  // Writing: log lines to stdout and stderr, messages to the monitor, and nowhere else: a
  // write on a capture or UDP socket would put packets on the network.
  for (int call : {SCMP_SYS(write), SCMP_SYS(writev)}) {
    for (int fd : {1, 2})
      if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, call, 1, arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(fd)));
  }
  for (int call : {SCMP_SYS(write), SCMP_SYS(writev), SCMP_SYS(sendmsg), SCMP_SYS(sendto)}) {
    if (channel >= 0 && rc == 0)
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, call, 1, arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(channel)));
  }
  // Memory, never executable.
  for (int call : {SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise)}) allow(call);
  for (int call : {SCMP_SYS(mmap), SCMP_SYS(mprotect)}) {
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, call, 1, arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  }
  // Time, threads' basics, signals, exit.
  for (int call : {SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
                   SCMP_SYS(futex), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getppid), SCMP_SYS(getrandom),
                   SCMP_SYS(sched_yield), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(restart_syscall),
                   SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid),
                   SCMP_SYS(getegid), SCMP_SYS(sigaltstack), SCMP_SYS(getrlimit)})
    allow(call);
  // prlimit64: reading its own limits (glibc's getrlimit) only. Another process's (of the same
  // account: nobody is shared with other services) or setting one kills it.
  if (rc == 0)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 2, arg(0, SCMP_CMP_EQ, 0), arg(2, SCMP_CMP_EQ, 0));
  // libpcap asks for an interface's flags when it goes down; a tty check on stderr is refused.
  if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, arg(1, SCMP_CMP_EQ, SIOCGIFFLAGS));
  if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOTTY), SCMP_SYS(ioctl), 1, arg(1, SCMP_CMP_NE, SIOCGIFFLAGS));
  // Paths: the worker has no business with the file system (the monitor opens what it reads).
  for (int call : {SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(openat2), SCMP_SYS(stat), SCMP_SYS(lstat),
                   SCMP_SYS(access), SCMP_SYS(faccessat), SCMP_SYS(faccessat2), SCMP_SYS(readlink),
                   SCMP_SYS(readlinkat), SCMP_SYS(inotify_add_watch)})
    refuse(call, EACCES);
  if (rc != 0) {
    seccomp_release(ctx);
    errno = -rc;
    fail("building the seccomp filter");
  }
  rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) {
    errno = -rc;
    fail("loading the seccomp filter");
  }
}

std::string describe_confinement() {
  std::ifstream status("/proc/self/status");
  std::string line;
  std::string out;
  while (std::getline(status, line)) {
    for (const char* key : {"Uid:", "CapEff:", "CapPrm:", "CapBnd:", "NoNewPrivs:", "Seccomp:"}) {
      if (line.rfind(key, 0) == 0) {
        if (!out.empty()) out += ", ";
        out += line;
      }
    }
  }
  return out;
}

}  // namespace knock::daemon
