// Review 4: attacks on IPv6 knocks (IP6, FAMILY, per-family templates) and on the control
// socket knockctl talks to. Each test is an attack that worked on 511163a.
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "config/tree.hpp"
#include "daemon/control.hpp"
#include "rules/engine.hpp"
#include "util/error.hpp"

namespace knock {
namespace {

constexpr double kT0 = 1709632800;

codec::KnockValues::Ip6Bytes v6(const char* text) {
  const auto a = IpAddress::parse(text);
  codec::KnockValues::Ip6Bytes b{};
  std::copy(a->bytes(), a->bytes() + 16, b.begin());
  return b;
}

// The shipped configuration's door (etc/knockdaemon.conf, doc/RULES.md "IPv6: one template for
// both families"): the condition binds the knock's address to where it came from.
const char* kShipped = R"C(
<actions>
  <action open>
    condition = PORT == 22 && (IP eq LOGIP || IP6 eq LOGIP)
    template  = open
  </action>
</actions>
<template open>
  system4 = "/usr/sbin/iptables -I INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
  system6 = "/usr/sbin/ip6tables -I INPUT -p tcp -s IP6/128 --dport PORT --syn -j ACCEPT"
</template>
)C";

// A knock from 198.18.0.2 carrying IP 198.18.0.2 (so `IP eq LOGIP` holds) and also IP6
// 2001:db8::66: FAMILY is 6, so system6 opened the door for 2001:db8::66, an address the
// condition never compared with anything. knockclient never sends both (the other family's
// field is zeros); a knock that carries two addresses is refused.
TEST(Review4Attack, KnockWithBothAddressesOpensAnUncheckedV6Address) {
  rules::RecordingRunner runner;
  rules::ManualClock clock;
  clock.set(kT0);
  rules::EngineOptions options;
  options.runner = &runner;
  options.clock = &clock;
  rules::Engine engine(config::parse_string(kShipped, "shipped.conf"), options);
  rules::KnockEvent e;
  e.values.set(codec::Field::Ip, 0xC6120002);  // 198.18.0.2
  e.values.set_ip6(v6("2001:db8::66"));
  e.values.set(codec::Field::Port, 22);
  e.logip = *IpAddress::parse("198.18.0.2");
  e.time = kT0;
  EXPECT_FALSE(engine.handle(e));
  for (const auto& c : runner.commands) ADD_FAILURE() << "ran: " << c.text;
  // The same from the v6 side: LOGIP 2001:db8::2 = IP6, IP an unchecked v4 address.
  e.values.set(codec::Field::Ip, 0xC6120042);  // 198.18.0.66
  e.values.set_ip6(v6("2001:db8::2"));
  e.logip = *IpAddress::parse("2001:db8::2");
  e.time = kT0 + 1;
  EXPECT_FALSE(engine.handle(e));
  // One address, as knockclient sends it, still opens.
  e.values.set(codec::Field::Ip, 0);
  e.time = kT0 + 2;
  EXPECT_TRUE(engine.handle(e));
  ASSERT_EQ(runner.commands.size(), 1u);
  EXPECT_EQ(runner.commands[0].text, "/usr/sbin/ip6tables -I INPUT -p tcp -s 2001:db8::2/128 --dport 22 --syn -j ACCEPT");
}

struct TempDir {
  std::string path;
  TempDir() {
    std::string t = "/tmp/review4.XXXXXX";
    path = ::mkdtemp(t.data());
    ::chmod(path.c_str(), 0755);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// Serves `server` until `child` ends; returns its exit status (-1 if it did not end in 10 s).
int serve_until_exit(daemon::ControlServer& server, pid_t child) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    std::vector<pollfd> fds;
    server.add_poll_fds(fds);
    ::poll(fds.data(), fds.size(), 20);
    server.process(fds, 0);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  return -1;
}

// controlgroup = GROUP: "Members of this group may use the control socket besides root". The
// socket was root:GROUP 0660 but its folder, made by the daemon (or by systemd's
// RuntimeDirectoryMode=0750), root:root 0750: no member could reach the socket.
TEST(Review4Attack, ControlGroupMemberCanReachTheSocket) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (changes user)";
  const group* gr = ::getgrnam("nogroup");
  if (gr == nullptr) GTEST_SKIP() << "no group nogroup";
  const gid_t gid = gr->gr_gid;
  TempDir tmp;
  daemon::ControlServer::Options o;
  o.path = tmp.path + "/run/ctl.sock";
  o.group = gid;
  daemon::ControlServer server(o, [](std::string_view) { return std::string("ok\n"); });
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(65534) != 0) _exit(3);
    try {
      _exit(daemon::control_request(o.path, "status", 5) == "ok\n" ? 0 : 1);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "member: %s\n", e.what());
      _exit(2);
    }
  }
  EXPECT_EQ(serve_until_exit(server, pid), 0);
  // Anyone else is still refused.
  const pid_t other = ::fork();
  if (other == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65533) != 0 || ::setuid(65534) != 0) _exit(3);
    try {
      daemon::control_request(o.path, "status", 5);
      _exit(0);
    } catch (const std::exception&) {
      _exit(1);
    }
  }
  EXPECT_EQ(serve_until_exit(server, other), 1);
}

// A member by a supplementary group the process holds (as `newgrp`, `sg` or a fresh login give
// it) is let in from the kernel's list (SO_PEERGROUPS), the list that also let it open the
// socket file: the daemon asks no user database (an LDAP source could stall its loop), so a
// group the databases do not know is no obstacle. The old check asked getgrouplist("nobody"),
// which does not name gid 4242: refused.
TEST(Review4Attack, ControlGroupBySupplementaryGroupWithoutUserDatabase) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (changes user)";
  const gid_t gid = 4242;  // in no /etc/group
  TempDir tmp;
  daemon::ControlServer::Options o;
  o.path = tmp.path + "/run/ctl.sock";
  o.group = gid;
  daemon::ControlServer server(o, [](std::string_view) { return std::string("ok\n"); });
  const pid_t pid = ::fork();
  if (pid == 0) {
    const gid_t extra[] = {gid};
    if (::setgroups(1, extra) != 0 || ::setgid(65533) != 0 || ::setuid(65534) != 0) _exit(3);
    try {
      _exit(daemon::control_request(o.path, "status", 5) == "ok\n" ? 0 : 1);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "member: %s\n", e.what());
      _exit(2);
    }
  }
  EXPECT_EQ(serve_until_exit(server, pid), 0);
}

// The daemon (root) binds, then chown()s and chmod()s the socket by its path, and unlinks a
// stale one there. In a folder another user can write (a controlsocket under a folder that
// user made first: mkdir's EEXIST was accepted as is), that user swaps the socket for a symlink
// between bind and chown: root gives /etc/shadow (or any file) to the control group, mode 0660.
// Such a folder is refused.
TEST(Review4Attack, ControlSocketInAFolderOthersCanWriteIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown)";
  TempDir tmp;
  const std::string dir = tmp.path + "/run";
  ASSERT_EQ(::mkdir(dir.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  ASSERT_EQ(::chown(dir.c_str(), 65534, 65534), 0);
  daemon::ControlServer::Options o;
  o.path = dir + "/ctl.sock";
  EXPECT_THROW(daemon::ControlServer(o, [](std::string_view) { return std::string(); }), RuntimeError);
  // Owned by root but writable by others (no sticky bit): refused too.
  ASSERT_EQ(::chown(dir.c_str(), 0, 0), 0);
  EXPECT_THROW(daemon::ControlServer(o, [](std::string_view) { return std::string(); }), RuntimeError);
  // A symlink where the socket goes is never followed, whatever the folder.
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  const std::string victim = tmp.path + "/victim";
  { FILE* f = std::fopen(victim.c_str(), "w"); ASSERT_NE(f, nullptr); std::fclose(f); }
  ASSERT_EQ(::symlink(victim.c_str(), o.path.c_str()), 0);
  EXPECT_THROW(daemon::ControlServer(o, [](std::string_view) { return std::string(); }), RuntimeError);
  EXPECT_TRUE(std::filesystem::exists(victim));
  // A root folder, not writable by others: fine.
  ::unlink(o.path.c_str());
  EXPECT_NO_THROW(daemon::ControlServer(o, [](std::string_view) { return std::string(); }));
}

}  // namespace
}  // namespace knock
