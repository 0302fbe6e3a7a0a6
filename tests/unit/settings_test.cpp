// knockdaemon's settings: the whole configuration validated at once, errors at FILE:LINE.
#include <gtest/gtest.h>

#include "config/tree.hpp"
#include "daemon/settings.hpp"

using namespace knock;

namespace {
const std::string kKnock = "knock = IP,PORT,FLAG0,CHECKSUM\nportspan = 2000-2255\n";

daemon::Settings load(const std::string& text) {
  return daemon::load_settings(config::parse_string(text, "test.conf"));
}

// The line a ConfigError names, or -1 when the text loads.
int error_line(const std::string& text, std::string* message = nullptr) {
  try {
    load(text);
  } catch (const ConfigError& e) {
    if (message != nullptr) *message = e.what();
    EXPECT_EQ(e.where().file, "test.conf");
    return e.where().line;
  }
  return -1;
}
}  // namespace

TEST(Settings, Defaults) {
  const auto s = load(kKnock);
  EXPECT_EQ(s.mode, daemon::RunMode::Network);
  EXPECT_EQ(s.interfaces, std::vector<std::string>{"any"});
  EXPECT_TRUE(s.listen.empty());
  EXPECT_FALSE(s.spa);
  EXPECT_FALSE(s.fwknop);
  EXPECT_EQ(s.snaplen, 1500);
  EXPECT_EQ(s.tracker.knock_timeout, 30);
  EXPECT_EQ(s.tracker.knock_length, 8u);  // 8 plain bytes over a 256-port span
  EXPECT_FALSE(s.user);
}

TEST(Settings, NetworkAndFileKeys) {
  const auto s = load(kKnock +
                      "runmode = file\nlogfile = /var/log/fw\nfileinterval = 0.25\nuselogformat = fw\n"
                      "<logformat fw>\n  ipclient = SRC=(\\S+)\n  port = DPT=(\\d+)\n</logformat>\n"
                      "interface = eth0\nsnapshotsize = 96\nknocktimeout = 5\nmaxsources = 2048\nuser = nobody\n");
  EXPECT_EQ(s.mode, daemon::RunMode::File);
  EXPECT_EQ(s.logfile, "/var/log/fw");
  EXPECT_DOUBLE_EQ(s.fileinterval, 0.25);
  ASSERT_TRUE(s.logformat);
  EXPECT_EQ(s.interfaces, std::vector<std::string>{"eth0"});
  EXPECT_EQ(s.snaplen, 96);
  EXPECT_EQ(s.tracker.knock_timeout, 5);
  EXPECT_EQ(s.tracker.max_sources, 2048u);
  EXPECT_EQ(s.user, "nobody");
}

TEST(Settings, ErrorsNameTheLine) {
  std::string m;
  EXPECT_EQ(error_line(kKnock + "runmode = sideways\n", &m), 3);
  EXPECT_NE(m.find("expected network, file or nflog"), std::string::npos);
  EXPECT_EQ(error_line(kKnock + "colour = blue\n", &m), 3);
  EXPECT_NE(m.find("unknown key 'colour'"), std::string::npos);
  EXPECT_EQ(error_line(kKnock + "<interface x>\n</interface>\n"), 3);      // a key used as a block
  EXPECT_EQ(error_line(kKnock + "snapshotsize = lots\n"), 3);
  EXPECT_EQ(error_line(kKnock + "snapshotsize = 10\n"), 3);                // below the minimum
  EXPECT_EQ(error_line(kKnock + "useethfilter = nope\n", &m), 3);
  EXPECT_NE(m.find("no <ethfilter nope> block"), std::string::npos);
  EXPECT_EQ(error_line(kKnock + "runmode = file\n", &m), 3);               // no logfile
  EXPECT_EQ(error_line(kKnock + "<ethfilter a>\n  proto = IP_PROTO_XYZ\n</ethfilter>\n"), 4);
  EXPECT_EQ(error_line(kKnock + "<logformat a>\n  ipclient = (\n  port = (\\d+)\n</logformat>\n"), 4);
  EXPECT_EQ(error_line(kKnock + "keyfile = /nonexistent/198.18.0.2.key\n"), 3);
  EXPECT_EQ(error_line(kKnock + "key = a\nkeyfile = /etc/hostname\n"), 4);  // both
  EXPECT_EQ(error_line(kKnock + "knocktimeout = 0\n"), 3);
  EXPECT_EQ(error_line(kKnock + "interface = a\ninterface = a\n"), 4);     // given twice
}

TEST(Settings, EveryBlockIsCheckedNotOnlyTheOneInUse) {
  // -check must catch a broken block the config does not select (yet).
  EXPECT_EQ(error_line(kKnock + "useethfilter = good\n<ethfilter good>\n  proto = IP_PROTO_TCP\n</ethfilter>\n"
                                "<ethfilter spare>\n  flags = SYN|BOGUS\n</ethfilter>\n"),
            8);
}

TEST(Settings, SeveralInterfacesNflogAndListen) {
  const std::string client = "<client alice>\n  key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n</client>\n";
  auto s = load(kKnock + client + "interface = eth0 eth1\ninterface = veth2\nlisten = 0.0.0.0:62202\nlisten = [::]:62202\n");
  EXPECT_EQ(s.interfaces, (std::vector<std::string>{"eth0", "eth1", "veth2"}));
  ASSERT_EQ(s.listen.size(), 2u);
  EXPECT_EQ(s.listen[1].str(), "[::]:62202");
  s = load(kKnock + "runmode = nflog\nnflog_group = 5\n");
  EXPECT_EQ(s.mode, daemon::RunMode::Nflog);
  EXPECT_EQ(s.nflog_group, 5);
  EXPECT_EQ(error_line(kKnock + "runmode = nflog\n"), 3);
  EXPECT_EQ(error_line(kKnock + "listen = 198.18.0.1:0\n"), 3);
  EXPECT_EQ(error_line(kKnock + "interface = eth0 eth0\n"), 3);
  // An ethfilter outside network mode filters nothing: said at its line.
  const std::string filter = "useethfilter = syn\n<ethfilter syn>\n  proto = IP_PROTO_TCP\n</ethfilter>\n";
  auto said = [](const daemon::Settings& st) {
    for (const auto& w : st.warnings)
      if (w.find("useethfilter applies to captured packets") != std::string::npos) return w;
    return std::string();
  };
  EXPECT_EQ(said(load(kKnock + filter)), "");
  EXPECT_EQ(said(load(kKnock + "runmode = nflog\nnflog_group = 5\n" + filter)).rfind("test.conf:5: ", 0), 0u);
  // A socket no verifier reads: refused at its line, saying which ports are read.
  std::string m;
  EXPECT_EQ(error_line(kKnock + "listen = 0.0.0.0:62202\n", &m), 3);
  EXPECT_NE(m.find("no verifier reads datagrams on port 62202 (no <client NAME> block, no <fwknop NAME> block)"),
            std::string::npos) << m;
  EXPECT_EQ(error_line(kKnock + client + "listen = 0.0.0.0:62202\nlisten = 0.0.0.0:2000\n", &m), 7);
  EXPECT_NE(m.find("spaport is 62202"), std::string::npos) << m;
}

TEST(Settings, PrivilegeSeparationControlSocketAndCommandCapabilities) {
  auto s = load(kKnock);
  EXPECT_TRUE(s.privsep);
  EXPECT_EQ(s.control_socket, "/run/portknock/knockdaemon.sock");
  ASSERT_TRUE(s.command_caps);
  EXPECT_EQ(*s.command_caps, (std::vector<int>{12, 13}));  // CAP_NET_ADMIN, CAP_NET_RAW
  s = load(kKnock + "privsep = no\ncontrolsocket = none\ncommandcaps = CAP_NET_ADMIN cap_dac_override\n");
  EXPECT_FALSE(s.privsep);
  EXPECT_TRUE(s.control_socket.empty());
  EXPECT_EQ(*s.command_caps, (std::vector<int>{12, 1}));
  EXPECT_FALSE(load(kKnock + "commandcaps = all\n").command_caps);
  std::string m;
  EXPECT_EQ(error_line(kKnock + "commandcaps = CAP_NET_ADMIN CAP_FLY\n", &m), 3);
  EXPECT_NE(m.find("unknown capability 'CAP_FLY'"), std::string::npos);
  EXPECT_EQ(error_line(kKnock + "privsep = maybe\n"), 3);
  EXPECT_EQ(error_line(kKnock + "controlsocket = relative.sock\n"), 3);
}

TEST(Settings, RealtimeIsOffByDefaultAndBounded) {
  auto s = load(kKnock);
  EXPECT_EQ(s.realtime.priority, 0);
  EXPECT_DOUBLE_EQ(s.realtime.max_share, 0.5);
  s = load(kKnock + "realtime = 10\nrealtimecpu = 20\n");
  EXPECT_EQ(s.realtime.priority, 10);
  EXPECT_DOUBLE_EQ(s.realtime.max_share, 0.2);
  std::string m;
  EXPECT_EQ(error_line(kKnock + "realtime = 99\n", &m), 3);  // the monitor runs one above
  EXPECT_NE(m.find("realtime"), std::string::npos);
  EXPECT_EQ(error_line(kKnock + "realtime = 2.5\n", &m), 3);
  EXPECT_NE(m.find("whole number"), std::string::npos);
  EXPECT_EQ(error_line(kKnock + "realtime = fast\n"), 3);
  EXPECT_EQ(error_line(kKnock + "realtimecpu = 0\n"), 3);
  EXPECT_EQ(error_line(kKnock + "realtimecpu = 101\n"), 3);
}
