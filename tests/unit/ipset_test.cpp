// The in-process ipset action (src/core/rules/ipset.{hpp,cpp}): the command syntax, the template
// keys ipset/ipset4/ipset6 and their substitution, and the executor against a real kernel set
// inside a network namespace of its own (root only: skipped otherwise).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "config/tree.hpp"
#include "rules/engine.hpp"
#include "rules/ipset.hpp"
#include "util/error.hpp"

using namespace knock;
using namespace knock::rules;

namespace {

constexpr double kT0 = 1709632800;
constexpr std::uint32_t kIpA = 0xC6120001;  // 198.18.0.1

KnockEvent knock4(double t, std::uint16_t port = 22) {
  KnockEvent e;
  e.values.set(codec::Field::Ip, kIpA);
  e.values.set(codec::Field::Port, port);
  e.logip = IpAddress::v4(kIpA);
  e.time = t;
  return e;
}
KnockEvent knock6(double t, const char* ip6) {
  KnockEvent e;
  const auto a = *IpAddress::parse(ip6);
  codec::KnockValues::Ip6Bytes b{};
  std::copy(a.bytes(), a.bytes() + 16, b.begin());
  e.values.set_ip6(b);
  e.values.set(codec::Field::Port, 22);
  e.logip = a;
  e.time = t;
  return e;
}

struct Rig {
  RecordingRunner runner;
  ManualClock clock;
  config::Value root;
  std::unique_ptr<Engine> engine;
  explicit Rig(const std::string& conf, EngineOptions options = {}) {
    root = config::parse_string(conf, "ipset.conf");
    options.runner = &runner;
    options.clock = &clock;
    clock.set(kT0);
    engine = std::make_unique<Engine>(root, options);
  }
  bool handle(const KnockEvent& e) {
    clock.set(e.time);
    return engine->handle(e);
  }
};

std::string actions(const std::string& templates) {
  return R"C(
<actions>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 30s
  </action>
</actions>
)C" + templates;
}

// The ConfigError's text for a configuration, or "" when it loads.
std::string config_error(const std::string& conf) {
  try {
    Rig rig(conf);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(IpsetCommand, SyntaxOfOneRestoreLine) {
  for (const char* good : {"add portknock 198.18.0.1,tcp:22 timeout 30", "del pk 2001:db8::2,tcp:22",
                           "add  pk  198.18.0.1", "add a-b_c.d 198.18.0.0/24,udp:53 timeout 0",
                           "add abcdefghijklmnopqrstuvwxyz01234 198.18.0.1"})
    EXPECT_EQ(ipset_command_error(good), std::nullopt) << good;
  const std::pair<const char*, const char*> bad[] = {
      {"", "expected add or del"},
      {"list pk", "expected add or del, not 'list'"},
      {"restore", "expected add or del"},
      {"flush pk", "expected add or del"},
      {"add pk", "expected add SETNAME ELEMENT"},
      {"-exist add pk 198.18.0.1", "'-exist': no options"},
      {"add pk 198.18.0.1 -file /etc/shadow", "'-file': no options"},
      {"add pk 198.18.0.1;reboot", "character ';' at column 18"},
      {"add pk \"198.18.0.1\"", "character '\"'"},
      {"add pk 198.18.0.1\ttimeout 3", "character 0x09"},
      {"add pk 198.18.0.1 comment $(id)", "character '$'"},
      {"add abcdefghijklmnopqrstuvwxyz012345 198.18.0.1", "bad set name"},
      {"add p:k 198.18.0.1", "bad set name 'p:k'"},
  };
  for (const auto& [text, why] : bad) {
    const auto error = ipset_command_error(text);
    ASSERT_TRUE(error.has_value()) << text;
    EXPECT_NE(error->find(why), std::string::npos) << text << ": " << *error;
  }
}

TEST(IpsetTemplate, KeysRunInProcessWithSubstitution) {
  Rig rig(actions(R"C(
<template open>
  system = "/bin/true IP"
  ipset  = "add portknock IP,tcp:PORT timeout 30"
</template>
<template close>
  ipset  = "del portknock IP,tcp:PORT"
</template>
)C"));
  ASSERT_TRUE(rig.handle(knock4(kT0)));
  ASSERT_EQ(rig.runner.commands.size(), 2u);
  EXPECT_EQ(rig.runner.commands[0].kind, ActionKind::shell);
  EXPECT_EQ(rig.runner.commands[1].kind, ActionKind::ipset);
  EXPECT_EQ(rig.runner.commands[1].text, "add portknock 198.18.0.1,tcp:22 timeout 30");
  ASSERT_EQ(rig.engine->pending().size(), 1u);
  EXPECT_EQ(rig.engine->pending()[0].kind, ActionKind::ipset);
  rig.clock.set(kT0 + 31);
  rig.engine->run_due();
  ASSERT_EQ(rig.runner.commands.size(), 3u);
  EXPECT_EQ(rig.runner.commands[2].kind, ActionKind::ipset);
  EXPECT_EQ(rig.runner.commands[2].text, "del portknock 198.18.0.1,tcp:22");
}

TEST(IpsetTemplate, PerFamilyKeysAndTestMode) {
  const std::string conf = actions(R"C(
<template open>
  ipset4 = "add pk4 IP,tcp:PORT timeout 30"
  ipset6 = "add pk6 IP6,tcp:PORT timeout 30"
</template>
<template close>
  ipset4 = "del pk4 IP,tcp:PORT"
  ipset6 = "del pk6 IP6,tcp:PORT"
</template>
)C");
  Rig rig(conf);
  ASSERT_TRUE(rig.handle(knock4(kT0)));
  ASSERT_TRUE(rig.handle(knock6(kT0 + 1, "2001:0db8::0002")));
  ASSERT_EQ(rig.runner.commands.size(), 2u);
  EXPECT_EQ(rig.runner.commands[0].text, "add pk4 198.18.0.1,tcp:22 timeout 30");
  EXPECT_EQ(rig.runner.commands[1].text, "add pk6 2001:db8::2,tcp:22 timeout 30");

  std::ostringstream out;
  EngineOptions test;
  test.test_mode = true;
  test.test_output = &out;
  Rig dry(conf, test);
  dry.handle(knock4(kT0));
  EXPECT_EQ(out.str(), "would run: ipset add pk4 198.18.0.1,tcp:22 timeout 30\n"
                       "would run after 30s: ipset del pk4 198.18.0.1,tcp:22\n");
  EXPECT_TRUE(dry.runner.commands.empty());
}

// Text that is not a number or an address never reaches libipset: the knock is refused whole.
TEST(IpsetTemplate, SubstitutionRefusesStringsAndAbsentFields) {
  Rig rig(R"C(
<actions>
  <action a>
    condition = PORT == 22
    template  = evil
    template  = open
  </action>
</actions>
<template evil>
  state = state(IP,name) = "1.2.3.4 -exist"
</template>
<template open>
  ipset = "add pk state(IP,name),tcp:PORT timeout FLAG3"
</template>
)C");
  EXPECT_FALSE(rig.handle(knock4(kT0)));
  EXPECT_TRUE(rig.runner.commands.empty());
}

TEST(IpsetTemplate, BadLinesAreRefusedAtLoadWithTheirLine) {
  const std::string head = "<actions>\n<action a>\ncondition = PORT == 22\ntemplate = t\n</action>\n</actions>\n";
  EXPECT_EQ(config_error(head + "<template t>\nipset = \"add pk IP,tcp:PORT timeout 3\"\n</template>\n"), "");
  const std::pair<const char*, const char*> bad[] = {
      {"ipset = \"list pk\"", "ipset.conf:8: ipset: expected add or del, not 'list'"},
      {"ipset4 = \"add pk IP -exist\"", "ipset.conf:8: ipset: '-exist': no options"},
      {"ipset6 = \"add pk IP6;true\"", "ipset.conf:8: ipset: character ';'"},
      {"ipset = \"add this-set-name-is-far-too-long-for-ipset IP\"", "ipset.conf:8: ipset: bad set name"},
      {"ipset = \"del pk\"", "ipset.conf:8: ipset: expected del SETNAME ELEMENT"},
      {"ipsets = \"add pk IP\"", "ipset.conf:8: unknown key 'ipsets'"},
      {"ipset5 = \"add pk IP\"", "ipset.conf:8: unknown key 'ipset5'"},
  };
  for (const auto& [line, why] : bad) {
    const std::string error = config_error(head + "<template t>\n" + line + "\n</template>\n");
    EXPECT_NE(error.find(why), std::string::npos) << line << ": " << error;
  }
}

// ---------------------------------------------------------------- against the kernel
namespace {

std::string sh(const std::string& command) {
  std::string out;
  if (FILE* p = popen((command + " 2>&1").c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    pclose(p);
  }
  return out;
}

// Runs `body` in a child in a fresh network namespace (its own, empty ipset), its stdout and
// stderr going to `output`; the child's failures come back as text ("" when none).
template <typename Body>
std::string in_fresh_netns(const std::filesystem::path& output, Body body) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return "pipe failed";
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    std::string failures;
    if (unshare(CLONE_NEWNET) != 0) {
      failures = "unshare(CLONE_NEWNET) failed";
    } else {
      const int fd = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
      failures = body();
    }
    (void)!write(pipefd[1], failures.data(), failures.size());
    _exit(0);
  }
  close(pipefd[1]);
  std::string failures;
  char buf[512];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) failures.append(buf, static_cast<std::size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failures += " (the child died)";
  return failures;
}

// The descriptors above 2 without FD_CLOEXEC.
std::string inheritable_fds() {
  std::string out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::atoi(entry.path().filename().c_str());
    const int flags = fcntl(fd, F_GETFD);
    if (fd > 2 && flags >= 0 && (flags & FD_CLOEXEC) == 0) out += std::to_string(fd) + " ";
  }
  return out;
}

bool usable() { return geteuid() == 0 && std::system("command -v ipset >/dev/null 2>&1") == 0; }

}  // namespace

TEST(IpsetExecutor, AddsRefreshesAndDeletesElementsQuietly) {
  if (!usable()) GTEST_SKIP() << "needs root and the ipset program";
  const auto output = std::filesystem::temp_directory_path() / ("ipset_test_out." + std::to_string(getpid()));
  const std::string failures = in_fresh_netns(output, [] {
    std::string f;
    std::string error;
    auto check = [&f](bool ok, const std::string& what) {
      if (!ok) f += what + "; ";
    };
    // run(X, WHAT): X ran; WHAT and its error message noted when it failed.
    auto run = [&](IpsetExecutor& x, const std::string& command) {
      error.clear();
      const bool ok = x.run(command, &error);  // (before its message is read)
      check(ok, "'" + command + "' failed: " + error);
    };
    sh("ipset create pk hash:ip,port timeout 0");
    sh("ipset create pk6 hash:ip,port family inet6 timeout 0");
    IpsetExecutor x;
    run(x, "add pk 198.18.0.1,tcp:22 timeout 30");
    check(sh("ipset test pk 198.18.0.1,tcp:22").find("is in set") != std::string::npos, "the element is not in the set");
    check(sh("ipset test pk 198.18.0.2,tcp:22").find("is NOT in set") != std::string::npos, "another host is in the set");
    check(inheritable_fds().empty(), "descriptors without close-on-exec: " + inheritable_fds());
    // -exist: adding it again refreshes its timeout instead of failing.
    run(x, "add pk 198.18.0.1,tcp:22 timeout 500");
    const std::string listed = sh("ipset list pk");
    const auto at = listed.find("198.18.0.1,tcp:22 timeout ");
    check(at != std::string::npos && std::atoi(listed.c_str() + at + 26) > 400, "timeout not refreshed: " + listed);
    run(x, "add pk6 2001:db8::2,tcp:22 timeout 30");
    check(sh("ipset test pk6 2001:db8::2,tcp:22").find("is in set") != std::string::npos, "the v6 element is not in the set");
    run(x, "del pk 198.18.0.1,tcp:22");
    check(sh("ipset test pk 198.18.0.1,tcp:22").find("is NOT in set") != std::string::npos, "the element is still there");
    run(x, "del pk 198.18.0.1,tcp:22");  // already gone: fine
    // Kernel timeouts: an element of 1 s is gone within a few seconds.
    run(x, "add pk 198.18.0.3,tcp:22 timeout 1");
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
      gone = sh("ipset test pk 198.18.0.3,tcp:22").find("is NOT in set") != std::string::npos;
      if (!gone) usleep(100'000);
    }
    check(gone, "the kernel did not remove the element after its timeout");
    return f;
  });
  EXPECT_EQ(failures, "");
  std::ifstream in(output);
  std::string printed((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(printed, "") << "the library printed";  // (the ipset program's output went to sh()'s pipe)
  std::filesystem::remove(output);
}

TEST(IpsetExecutor, FailuresComeBackAsTheLibrarysMessage) {
  if (!usable()) GTEST_SKIP() << "needs root and the ipset program";
  const auto output = std::filesystem::temp_directory_path() / ("ipset_test_err." + std::to_string(getpid()));
  const std::string failures = in_fresh_netns(output, [] {
    std::string f;
    auto expect_error = [&f](IpsetExecutor& x, const std::string& command, const std::string& message) {
      std::string error;
      if (x.run(command, &error))
        f += "'" + command + "' succeeded; ";
      else if (error.find(message) == std::string::npos)
        f += "'" + command + "': '" + error + "' lacks '" + message + "'; ";
    };
    IpsetExecutor x;
    expect_error(x, "add portknock 198.18.0.1,tcp:22 timeout 30", "The set with the given name does not exist");
    sh("ipset create pk hash:ip,port timeout 0");
    expect_error(x, "add pk 198.18.0.1,tcp:22 timeout 30 bogus", "Unknown argument: `bogus'");
    expect_error(x, "add pk 198.18.0.1,tcp:99999", "");
    expect_error(x, "add pk 2001:db8::2,tcp:22", "");
    expect_error(x, "list pk", "not run: expected add or del");
    // Nothing of a failed command is left for the next one (its timeout, its set name).
    expect_error(x, "add pk 198.18.0.1,tcp:22 timeout 30 bogus", "Unknown argument: `bogus'");
    std::string error;
    if (!x.run("add pk 198.18.0.5,tcp:22", &error)) f += "add after failures: " + error + "; ";
    if (!x.run("del pk 198.18.0.1,tcp:22", &error)) f += "del after failures: " + error + "; ";
    const std::string listed = sh("ipset list pk");
    if (listed.find("198.18.0.5,tcp:22 timeout 0") == std::string::npos) f += "unexpected set: " + listed + "; ";
    return f;
  });
  EXPECT_EQ(failures, "");
  std::ifstream in(output);
  std::string printed((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(printed, "") << "the library printed";
  std::filesystem::remove(output);
}
