// <logformat> blocks: the shipped formats against sample lines, config errors, hostile lines.
#include "capture/logformat.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "client/net.hpp"
#include "config/tree.hpp"

using namespace knock;
using namespace knock::capture;

namespace {

const std::string kData = std::string(TEST_DATA_DIR) + "/capture/";

LogFormat format_from(const std::string& body) {
  const config::Value root = config::parse_string("<logformat f>\n" + body + "</logformat>\n", "t.conf");
  return LogFormat(*root.find("logformat")->find("f"));
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

}  // namespace

TEST(LogFormat, ShippedFormatsParseTheirSampleLines) {
  const config::Value root = config::parse_file(std::string(SOURCE_DIR) + "/etc/logformats.conf");
  const config::Value* formats = root.find("logformat");
  ASSERT_NE(formats, nullptr);
  for (const char* name : {"iptables", "nftables", "ulogd", "ipchains"})
    EXPECT_NE(formats->find(name), nullptr) << name;

  std::ifstream in(kData + "logformat-samples.tsv");
  ASSERT_TRUE(in) << "missing samples";
  std::string row;
  int checked = 0, accepted = 0;
  while (std::getline(in, row)) {
    if (row.empty() || row[0] == '#') continue;
    const auto cols = split(row, '\t');
    ASSERT_EQ(cols.size(), 3u) << row;
    SCOPED_TRACE(cols[0] + ": " + cols[2]);
    const config::Value* block = formats->find(cols[0]);
    ASSERT_NE(block, nullptr);
    const LogFormat format(*block);
    const auto o = format.parse_line(cols[2], 1234.5);
    ++checked;
    if (cols[1] == "-") {
      EXPECT_FALSE(o.has_value());
      continue;
    }
    ASSERT_TRUE(o.has_value());
    ++accepted;
    const auto want = split(cols[1], ' ');
    ASSERT_EQ(want.size(), 7u);
    EXPECT_EQ(o->source, *IpAddress::parse(want[0]));
    EXPECT_EQ(o->destination, *IpAddress::parse(want[1]));
    EXPECT_EQ(std::to_string(o->protocol), want[2]);
    EXPECT_EQ(std::to_string(o->dest_port), want[3]);
    EXPECT_EQ(std::to_string(o->source_port), want[4]);
    if (want[5] == "-") {
      EXPECT_FALSE(o->has_tcp_seq);
    } else {
      EXPECT_TRUE(o->has_tcp_seq);
      EXPECT_EQ(std::to_string(o->tcp_seq), want[5]);
    }
    EXPECT_EQ(format.last_interface(), want[6]);
    EXPECT_DOUBLE_EQ(o->time, 1234.5);
  }
  EXPECT_GE(checked, 26);
  EXPECT_GE(accepted, 16);
}

// issue 11: the shipped formats take only lines the kernel (or ulogd) wrote, with the shipped
// prefix right after the kernel tag. Any program can put text in the same log: each of these
// would have counted as a knock from 198.18.6.6 with unanchored regexes.
TEST(LogFormat, ShippedFormatsRefuseLinesAProgramWrote) {
  const config::Value root = config::parse_file(std::string(SOURCE_DIR) + "/etc/logformats.conf");
  const config::Value* formats = root.find("logformat");
  ASSERT_NE(formats, nullptr);
  const std::string fields = "IN=eth0 OUT= MAC= SRC=198.18.6.6 DST=198.18.0.1 LEN=60 PROTO=TCP SPT=4000 DPT=2000";
  const std::vector<std::string> forged = {
      // a program named alice on host vm (logger -t alice 'portknock IN=...')
      "Nov 26 15:14:12 vm alice: portknock " + fields,
      // logger -t alice 'kernel: portknock IN=...': the kernel tag inside the message
      "Nov 26 15:14:12 vm alice: kernel: portknock " + fields,
      "Nov 26 15:14:12 vm alice[4242]: kernel: [ 12.000000] portknock " + fields,
      // a template that prints the facility: user.notice
      "Nov 26 15:14:12 vm user.notice alice: kernel: portknock " + fields,
      // a whole kernel line quoted by a program
      "Nov 26 15:14:12 vm alice: Nov 26 15:14:12 vm kernel: portknock " + fields,
      // sshd logs the user name a client chose
      "Nov 26 15:14:12 vm sshd[77]: Invalid user portknock " + fields + " from 198.18.6.6 port 4000",
      "2026-11-26T15:14:12.123456+00:00 vm sshd[77]: Invalid user portknock " + fields,
      // no syslog header at all, or text before it
      "portknock " + fields,
      "x Nov 26 15:14:12 vm kernel: portknock " + fields,
      // another prefix, or the prefix not right after the tag
      "Nov 26 15:14:12 vm kernel: notportknock " + fields,
      "Nov 26 15:14:12 vm kernel: [ 12.0] other: portknock " + fields,
      "Nov 26 15:14:12 vm kernel: portknockIN=eth0 OUT= SRC=198.18.6.6 DST=198.18.0.1 PROTO=TCP SPT=1 DPT=2000",
  };
  for (const char* name : {"iptables", "nftables", "ulogd"}) {
    const LogFormat format(*formats->find(name));
    for (const auto& line : forged) EXPECT_FALSE(format.parse_line(line, 0).has_value()) << name << ": " << line;
  }
  // ulogd's own file: the prefix right after the host, nowhere else
  const LogFormat ulogd(*formats->find("ulogd"));
  EXPECT_FALSE(ulogd.parse_line("Nov 26 15:14:19 host alice: portknock " + fields, 0).has_value());
  EXPECT_TRUE(ulogd.parse_line("Nov 26 15:14:19 host portknock " + fields, 0).has_value());
  // the kernel's own lines, as rsyslog (with and without the uptime), journalctl -o short,
  // short-precise and short-iso write them
  const LogFormat iptables(*formats->find("iptables"));
  for (const char* header :
       {"Nov 26 15:14:12 vm kernel: ", "Nov  6 15:14:12 vm kernel: [12345.678901] ",
        "Nov 26 15:14:12 vm kernel: [    1.000000] ", "Nov 26 15:14:12.123456 vm kernel: ",
        "2026-11-26T15:14:12+0000 vm kernel: ", "2026-11-26T15:14:12.123456+00:00 vm kernel: ",
        "2026-11-26T15:14:12Z vm kernel: "}) {
    const auto o = iptables.parse_line(std::string(header) + "portknock " + fields, 0);
    ASSERT_TRUE(o.has_value()) << header;
    EXPECT_EQ(o->source, *IpAddress::parse("198.18.6.6"));
  }
}

TEST(LogFormat, TheManualsExampleAndDefaults) {
  const LogFormat f = format_from("port = DPT=([0-9]+)\nipclient = SRC=([0-9.]+)\n");
  const auto o = f.parse_line("... SRC=198.18.0.9 DPT=883 ...", 7);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->dest_port, 883);
  EXPECT_EQ(o->protocol, kProtoTcp);
  EXPECT_EQ(o->destination, IpAddress());
  EXPECT_FALSE(o->has_tcp_seq);
  EXPECT_EQ(f.last_interface(), "");
  EXPECT_FALSE(f.parse_line("... SRC=198.18.0.9 ...", 7));   // no port
  EXPECT_FALSE(f.parse_line("... DPT=883 ...", 7));           // no client
  EXPECT_FALSE(f.parse_line("SRC=198.18.0.9 DPT=", 7));
  EXPECT_FALSE(f.parse_line("SRC=198.18.0.9 DPT=00000000000000000000001", 7));
  EXPECT_FALSE(f.parse_line("", 7));
  // without a capture group the whole match is the field
  const LogFormat g = format_from("port = [0-9]+$\nipclient = ^[0-9.]+\n");
  const auto p = g.parse_line("198.18.1.1 to 65535", 0);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->dest_port, 65535);
  EXPECT_EQ(p->source.str(), "198.18.1.1");
}

TEST(LogFormat, RequiredAndProtocolText) {
  const LogFormat f = format_from(
      "required = ^KNOCK\nprotocol = proto=(\\w+)\nport = port=(\\d+)\nipclient = from=(\\S+)\n"
      "ipserver = \\sto=(\\S+)\n");
  EXPECT_FALSE(f.parse_line("knock proto=tcp port=1 from=198.18.0.1", 0));
  auto o = f.parse_line("KNOCK proto=udp port=1 from=198.18.0.1 to=198.18.0.2", 0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->protocol, kProtoUdp);
  EXPECT_EQ(o->destination.str(), "198.18.0.2");
  o = f.parse_line("KNOCK proto=6 port=1 from=2001:db8::5 to=2001:db8::1", 0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->protocol, kProtoTcp);
  EXPECT_EQ(o->source.str(), "2001:db8::5");
  EXPECT_FALSE(f.parse_line("KNOCK proto=icmp port=1 from=198.18.0.1", 0));
  EXPECT_FALSE(f.parse_line("KNOCK proto=tcp port=1 from=198.18.0.1 to=banana", 0));
  EXPECT_FALSE(f.parse_line("KNOCK port=1 from=198.18.0.1", 0));  // protocol regex given, no match
  EXPECT_FALSE(f.parse_line("KNOCK proto=tcp port=1 from=198.18.0.1x", 0));
}

TEST(LogFormat, ConfigErrorsAtTheirLine) {
  auto expect_error_at = [](const std::string& body, int line, const char* what) {
    try {
      format_from(body);
      ADD_FAILURE() << "accepted: " << body;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.where().line, line) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error_at("port = (\\d+)\nipclient = (\\S+)\nportt = x\n", 4, "portt");
  expect_error_at("port = (\\d+)\n\nipclient = ([0-9.+\n", 4, "regular expression");
  expect_error_at("ipclient = (\\S+)\n", 1, "port");
  expect_error_at("port = (\\d+)\n", 1, "ipclient");
}

TEST(LogFormat, HostileLines) {
  const LogFormat f = format_from("port = (?:a+)+b([0-9]+)\nipclient = SRC=(\\S+)\n");
  // catastrophic backtracking is bounded by the match limit: no match, no hang
  const std::string evil = "SRC=198.18.0.1 " + std::string(5000, 'a');
  EXPECT_FALSE(f.parse_line(evil, 0));
  static const char kBinary[] = "SRC=198.18.0.1 \0\xff\xfe ab123";
  const std::string binary(kBinary, sizeof kBinary - 1);
  const auto o = f.parse_line(binary, 0);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->dest_port, 123);
  const std::string huge(1 << 20, 'x');
  EXPECT_FALSE(f.parse_line(huge, 0));
  EXPECT_FALSE(f.parse_line("SRC=" + std::string(100, '1') + " ab1", 0));
}

TEST(LogFormat, TextHelpers) {
  EXPECT_EQ(parse_port_text("0"), 0);
  EXPECT_EQ(parse_port_text("65535"), 65535);
  EXPECT_FALSE(parse_port_text("65536"));
  EXPECT_FALSE(parse_port_text("-1"));
  EXPECT_FALSE(parse_port_text("+1"));
  EXPECT_FALSE(parse_port_text(" 1"));
  EXPECT_FALSE(parse_port_text(""));
  EXPECT_EQ(parse_protocol_text("tcp"), kProtoTcp);
  EXPECT_EQ(parse_protocol_text("UDP"), kProtoUdp);
  EXPECT_EQ(parse_protocol_text("17"), kProtoUdp);
  EXPECT_FALSE(parse_protocol_text("1"));
  EXPECT_FALSE(parse_protocol_text("tcpx"));
  EXPECT_EQ(parse_address_text("2001:0db8:0000:0000:0000:0000:0000:0001")->str(), "2001:db8::1");
  EXPECT_FALSE(parse_address_text("198.18.0.1 "));
  EXPECT_FALSE(parse_address_text(std::string(200, '1')));
  EXPECT_FALSE(parse_address_text(std::string("198.18.0.1\0", 11)));
}

// knockclient -logfile writes ip6tables LOG lines as the kernel does (full IPv6 text, TC=,
// HOPLIMIT=): the shipped iptables format reads them back, for TCP and UDP.
TEST(LogFormat, KnockclientLogLinesOfBothFamilies) {
  const config::Value root = config::parse_file(std::string(SOURCE_DIR) + "/etc/logformats.conf");
  const LogFormat format(*root.find("logformat")->find("iptables"));
  for (const char* pair : {"198.18.0.2 198.18.0.1", "2001:db8::2 2001:db8:0:1::1"}) {
    const std::string text(pair);
    const auto src = *IpAddress::parse(text.substr(0, text.find(' ')));
    const auto dst = *IpAddress::parse(text.substr(text.find(' ') + 1));
    for (auto proto : {client::Proto::Tcp, client::Proto::Udp}) {
      const std::string line = client::iptables_log_line(src, dst, 40000, 2001, proto, "host", 1700000000, 12.5);
      SCOPED_TRACE(line);
      if (!src.is_v4()) {
        EXPECT_NE(line.find("SRC=2001:0db8:0000:0000:0000:0000:0000:0002 DST=2001:0db8:0000:0001:"), std::string::npos);
      }
      const auto o = format.parse_line(line, 1);
      ASSERT_TRUE(o.has_value());
      EXPECT_EQ(o->source, src);
      EXPECT_EQ(o->destination, dst);
      EXPECT_EQ(o->dest_port, 2001);
      EXPECT_EQ(o->source_port, 40000);
      EXPECT_EQ(o->protocol, proto == client::Proto::Tcp ? kProtoTcp : kProtoUdp);
    }
  }
}
