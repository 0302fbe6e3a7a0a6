#include "daemon/privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <sstream>
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

std::optional<std::vector<int>> parse_capabilities(std::string_view text, std::string* why) {
  std::istringstream words{std::string(text)};
  std::vector<int> caps;
  std::string word;
  bool all = false;
  while (words >> word) {
    if (word == "all") {
      all = true;
      continue;
    }
    std::string name = word;
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    cap_value_t value = 0;
    if (name.rfind("cap_", 0) != 0 || cap_from_name(name.c_str(), &value) != 0) {
      if (why != nullptr) *why = "unknown capability '" + word + "' (e.g. CAP_NET_ADMIN CAP_NET_RAW, or all)";
      return std::vector<int>{-1};
    }
    caps.push_back(static_cast<int>(value));
  }
  if (all) return std::nullopt;
  return caps;
}

void limit_command_capabilities(const std::vector<int>& keep) {
  if (prctl(PR_CAPBSET_READ, CAP_SETPCAP, 0, 0, 0) != 1 || geteuid() != 0) {
    log::debug("commandcaps: not root, the bounding set stays as it is");
    return;
  }
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (std::find(keep.begin(), keep.end(), cap) != keep.end()) continue;
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
    if (cap_drop_bound(static_cast<cap_value_t>(cap)) != 0) fail("dropping capability " + std::to_string(cap) + " from the bounding set");
  }
}

std::string bounding_set_hex() {
  std::uint64_t mask = 0;
  for (int cap = 0; cap <= CAP_LAST_CAP && cap < 64; ++cap)
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) mask |= std::uint64_t{1} << cap;
  char out[20];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(mask));
  return out;
}

}  // namespace knock::daemon
