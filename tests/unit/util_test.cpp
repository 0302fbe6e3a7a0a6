// The shared utilities: addresses, command lines, key files, text helpers, secrets.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "util/address.hpp"
#include "util/cli.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/secure.hpp"
#include "util/text.hpp"

using namespace knock;

namespace {
std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("util_test_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}
void write(const std::filesystem::path& p, const std::string& text, mode_t mode) {
  std::ofstream(p) << text;
  chmod(p.c_str(), mode);
}
}  // namespace

TEST(IpAddress, ParsesAndPrintsBothFamilies) {
  auto v4 = IpAddress::parse("198.18.0.2");
  ASSERT_TRUE(v4);
  EXPECT_TRUE(v4->is_v4());
  EXPECT_EQ(v4->v4_host_order(), 0xC6120002u);
  EXPECT_EQ(v4->str(), "198.18.0.2");
  EXPECT_EQ(IpAddress::v4(0xC6120002u), *v4);

  auto v6 = IpAddress::parse("2001:db8:0:0::1");
  ASSERT_TRUE(v6);
  EXPECT_FALSE(v6->is_v4());
  EXPECT_EQ(v6->size(), 16u);
  EXPECT_EQ(v6->str(), "2001:db8::1");  // RFC 5952
  EXPECT_NE(*v6, *v4);

  for (const char* bad : {"", "198.18.0", "198.18.0.256", "2001:db8::g", "198.18.0.2 ", "::ffff:198.18.0.2x"})
    EXPECT_FALSE(IpAddress::parse(bad)) << bad;
  EXPECT_FALSE(IpAddress::parse(std::string(200, '1')));
}

TEST(IpAddress, HashSeparatesFamilies) {
  const auto zero4 = IpAddress::v4(0);
  std::uint8_t zeros[16] = {};
  const auto zero6 = IpAddress::v6_bytes(zeros);
  EXPECT_NE(zero4, zero6);
  EXPECT_NE(zero4.hash(), zero6.hash());
}

TEST(Cli, OneAndTwoDashes) {
  const std::vector<cli::OptionSpec> specs = {{"conf", true}, {"debug", false}};
  const char* a[] = {"prog", "-conf", "a.conf", "--debug"};
  auto p = cli::parse(4, a, specs);
  EXPECT_EQ(p.get("conf"), "a.conf");
  EXPECT_TRUE(p.has("debug"));
  const char* b[] = {"prog", "--conf=b.conf", "x"};
  p = cli::parse(3, b, specs);
  EXPECT_EQ(p.get("conf"), "b.conf");
  EXPECT_EQ(p.positional, std::vector<std::string>{"x"});
}

TEST(Cli, ErrorsAreUsageErrors) {
  const std::vector<cli::OptionSpec> specs = {{"conf", true}, {"debug", false}};
  const char* unknown[] = {"prog", "-bogus"};
  EXPECT_THROW(cli::parse(2, unknown, specs), ConfigError);
  const char* missing[] = {"prog", "-conf"};
  try {
    cli::parse(2, missing, specs);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "option -conf needs a value");
  }
  const char* flag_value[] = {"prog", "--debug=1"};
  EXPECT_THROW(cli::parse(2, flag_value, specs), ConfigError);
}

TEST(Cli, SearchListOrder) {
  setenv("HOME", "/home/someone", 1);
  const auto list = cli::config_search_list("knockdaemon");
  ASSERT_EQ(list.size(), 5u);
  EXPECT_EQ(list[0], "/home/someone/.knockdaemon.conf");
  const std::string bin = cli::executable_dir();
  EXPECT_EQ(list[1], bin + "/knockdaemon.conf");
  EXPECT_EQ(list[2], bin + "/etc/knockdaemon.conf");
  EXPECT_EQ(list[3], bin + "/../etc/knockdaemon.conf");
  EXPECT_EQ(list[4], "/etc/portknock/knockdaemon.conf");
}

TEST(Files, KeyFileFirstLineAndChecks) {
  const auto dir = temp_dir("key");
  write(dir / "key", "s3cret\r\nsecond line\n", 0600);
  const SecureBytes key = read_key_file((dir / "key").string(), Location{"k.conf", 3});
  EXPECT_EQ(std::string(key.begin(), key.end()), "s3cret");

  write(dir / "empty", "\n", 0600);
  EXPECT_THROW(read_key_file((dir / "empty").string(), {}), ConfigError);
  write(dir / "open", "x\n", 0666);
  try {
    read_key_file((dir / "open").string(), Location{"k.conf", 3});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.where().line, 3);
    EXPECT_NE(std::string(e.what()).find("writable by other users"), std::string::npos);
  }
  write(dir / "big", std::string(5000, 'x'), 0600);
  EXPECT_THROW(read_key_file((dir / "big").string(), {}), ConfigError);
  std::filesystem::create_symlink(dir / "key", dir / "link");
  EXPECT_THROW(read_key_file((dir / "link").string(), {}), ConfigError);  // not followed
  EXPECT_THROW(read_key_file((dir / "missing").string(), {}), ConfigError);
  std::filesystem::remove_all(dir);
}

TEST(Files, WritableByOthersRefused) {
  const auto dir = temp_dir("perm");
  write(dir / "ok.conf", "", 0644);
  EXPECT_NO_THROW(check_not_writable_by_others((dir / "ok.conf").string(), {}));
  write(dir / "world.conf", "", 0646);
  EXPECT_THROW(check_not_writable_by_others((dir / "world.conf").string(), {}), ConfigError);
  EXPECT_NO_THROW(check_not_writable_by_others((dir / "absent.conf").string(), {}));
  std::filesystem::remove_all(dir);
}

TEST(Text, TrimAndYesNo) {
  EXPECT_EQ(trim_blanks(" \t a b \t"), "a b");
  EXPECT_EQ(trim_blanks(""), "");
  for (const char* yes : {"yes", "YES", " on ", "1", "True"}) EXPECT_EQ(parse_yes_no(yes), true) << yes;
  for (const char* no : {"no", "Off", "0", "false"}) EXPECT_EQ(parse_yes_no(no), false) << no;
  for (const char* bad : {"", "y", "2", "yess", "nope", "truely"}) EXPECT_FALSE(parse_yes_no(bad)) << bad;
}

TEST(Secure, ConstantTimeEqualAndWipe) {
  const std::uint8_t a[] = {1, 2, 3}, b[] = {1, 2, 3}, c[] = {1, 2, 4};
  EXPECT_TRUE(constant_time_equal(a, 3, b, 3));
  EXPECT_FALSE(constant_time_equal(a, 3, c, 3));
  EXPECT_FALSE(constant_time_equal(a, 3, b, 2));
  std::string secret = "passphrase";
  secure_wipe(secret.data(), secret.size());
  EXPECT_EQ(secret, std::string(10, '\0'));
  std::string text = "line one\nline two";
  const SecureBytes first = first_line_of(text);
  EXPECT_EQ(std::string(first.begin(), first.end()), "line one");
  EXPECT_EQ(text, std::string(text.size(), '\0'));
}
