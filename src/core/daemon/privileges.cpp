#include "daemon/privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "util/error.hpp"
#include "util/log.hpp"

namespace knock::daemon {
namespace {

[[noreturn]] void fail(const std::string& what) {
  const int saved = errno;
  throw RuntimeError("user: " + what + ": " + errno_message(saved));
}

void set_capabilities(std::uint32_t mask) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  data[0].effective = data[0].permitted = data[0].inheritable = mask;
  if (syscall(SYS_capset, &header, data) != 0) fail("capset");
}

}  // namespace

void drop_privileges(const std::string& user) {
  errno = 0;
  const passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) {
    if (errno == 0) throw RuntimeError("user = " + user + ": no such user");
    fail("getpwnam " + user);
  }
  if (geteuid() != 0) {
    if (geteuid() != pw->pw_uid) throw RuntimeError("user = " + user + ": not running as root, cannot switch user");
    return;
  }
  const std::uint32_t keep = (1u << CAP_NET_ADMIN) | (1u << CAP_NET_RAW);
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) fail("PR_SET_KEEPCAPS");
  if (initgroups(pw->pw_name, pw->pw_gid) != 0) fail("initgroups");
  if (setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0) fail("setresgid");
  if (setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0) fail("setresuid");
  set_capabilities(keep);
  // Ambient: the firewall commands the templates run get CAP_NET_ADMIN too.
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN, 0, 0) != 0) fail("PR_CAP_AMBIENT_RAISE");
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) fail("PR_SET_KEEPCAPS");
  if (setuid(0) == 0) throw RuntimeError("user: could regain root after dropping it");
  log::info("running as " + user + " (uid " + std::to_string(pw->pw_uid) + ") with CAP_NET_ADMIN and CAP_NET_RAW only");
}

}  // namespace knock::daemon
