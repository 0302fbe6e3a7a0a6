// Unit tests of the Config::General parser (config/tree.hpp). Expected trees were checked
// against Perl's Config::General 2.65 (tests/oracle/config_general.sh does so on a corpus).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/tree.hpp"

using knock::ConfigError;
using knock::config::parse_file;
using knock::config::parse_string;
using knock::config::ParseLimits;
using knock::config::to_json;
using knock::config::Value;

namespace {

std::string json(std::string_view text) { return to_json(parse_string(text, "t.conf")); }

// Line of the ConfigError thrown for text, with its message in *message.
int error_line(std::string_view text, std::string* message = nullptr, const ParseLimits& limits = {}) {
  try {
    parse_string(text, "t.conf", limits);
  } catch (const ConfigError& e) {
    if (message != nullptr) *message = e.what();
    EXPECT_EQ(e.where().file, "t.conf");
    return e.where().line;
  }
  ADD_FAILURE() << "no error for: " << text;
  return -1;
}

std::string text_of(const Value& root, std::string_view key) {
  const Value* v = root.find(key);
  if (v == nullptr || !v->is_string()) return "<absent>";
  return v->text();
}

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() / ("config_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string write(const std::string& name, const std::string& text) const {
    const auto p = path_ / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace

TEST(ConfigParse, KeyValueForms) {
  const Value root = parse_string("a = 1\nb 2\nc=3\n  d\t  four five  \ne = \"quoted  \"\n", "t.conf");
  EXPECT_EQ(text_of(root, "a"), "1");
  EXPECT_EQ(text_of(root, "b"), "2");
  EXPECT_EQ(text_of(root, "c"), "3");
  EXPECT_EQ(text_of(root, "d"), "four five");
  EXPECT_EQ(text_of(root, "e"), "quoted  ");
  EXPECT_EQ(root.find("d")->where().line, 4);
  EXPECT_EQ(root.find("d")->where().file, "t.conf");
}

TEST(ConfigParse, EmptyAndMissingValues) {
  const Value root = parse_string("dest_ip =\nflag\nz = \"\"\n", "t.conf");
  ASSERT_NE(root.find("dest_ip"), nullptr);
  EXPECT_FALSE(root.find("dest_ip")->is_null());
  EXPECT_EQ(text_of(root, "dest_ip"), "");
  EXPECT_TRUE(root.find("flag")->is_null());
  EXPECT_EQ(text_of(root, "flag"), "");
  EXPECT_EQ(text_of(root, "z"), "");
  EXPECT_EQ(to_json(root), "{\n   \"dest_ip\" : \"\",\n   \"flag\" : null,\n   \"z\" : \"\"\n}\n");
}

TEST(ConfigParse, Comments) {
  const Value root = parse_string(
      "# full line\na = 1 # trailing\nb = x\\#y\n/* c\nhidden = 1\n*/\nc = p /* q */ r\n", "t.conf");
  EXPECT_EQ(text_of(root, "a"), "1");
  EXPECT_EQ(text_of(root, "b"), "x#y");
  EXPECT_EQ(root.find("hidden"), nullptr);
  EXPECT_EQ(text_of(root, "c"), "pr");  // Config::General removes the comment and its blanks
  EXPECT_EQ(root.members().size(), 3U);
}

TEST(ConfigParse, QuotesAndEscapes) {
  const Value root = parse_string(
      "a = \"x y\"\nb = \"l\" r\nc = 'q'\nd = \"say \\\"hi\\\"\"\ne = a\\\\b\nf = \\$x\ng = \\s\nh = \"0\"\n", "t.conf");
  EXPECT_EQ(text_of(root, "a"), "x y");
  EXPECT_EQ(text_of(root, "b"), "\"l\" r");
  EXPECT_EQ(text_of(root, "c"), "'q'");
  EXPECT_EQ(text_of(root, "d"), "say \"hi\"");
  EXPECT_EQ(text_of(root, "e"), "a\\b");
  EXPECT_EQ(text_of(root, "f"), "$x");
  EXPECT_EQ(text_of(root, "g"), "\\s");
  EXPECT_EQ(text_of(root, "h"), "0");
}

TEST(ConfigParse, Continuation) {
  const Value root = parse_string("a = one \\\n    two \\\n three\nb = c:\\\\\nnext = 1\n", "t.conf");
  EXPECT_EQ(text_of(root, "a"), "one two three");
  EXPECT_EQ(root.find("a")->where().line, 1);
  EXPECT_EQ(text_of(root, "b"), "c:\\");
  EXPECT_EQ(text_of(root, "next"), "1");
}

TEST(ConfigParse, HereDocuments) {
  const Value root = parse_string(
      "m <<EOT\nline 1\n  line 2 # kept\nEOT\nn = <<END\n   x\n    y\n   END\nafter 1\n", "t.conf");
  EXPECT_EQ(text_of(root, "m"), "line 1\n  line 2 # kept");
  EXPECT_EQ(root.find("m")->where().line, 1);
  EXPECT_EQ(text_of(root, "n"), "x\n y");  // the end marker's indentation is removed
  EXPECT_EQ(root.find("n")->where().line, 5);
  EXPECT_EQ(text_of(root, "after"), "1");
}

TEST(ConfigParse, RepeatedKeysBecomeArrays) {
  const Value root = parse_string("template = a\ntemplate = b\nother = x\ntemplate = c\n", "t.conf");
  const Value* t = root.find("template");
  ASSERT_TRUE(t->is_array());
  ASSERT_EQ(t->items().size(), 3U);
  EXPECT_EQ(t->items()[0].text(), "a");
  EXPECT_EQ(t->items()[2].text(), "c");
  EXPECT_EQ(t->items()[2].where().line, 4);
  EXPECT_EQ(root.members()[0].first, "template");  // order of first appearance
  EXPECT_EQ(root.all("template").size(), 3U);
  EXPECT_THROW(root.scalar("template"), ConfigError);
}

TEST(ConfigParse, Blocks) {
  const Value root = parse_string(
      "<actions>\n <action open>\n  template = a\n  template = b\n </action>\n <action close>\n  use = no\n"
      " </action>\n</actions>\n<template a>\n</template>\n<Empty/>\n",
      "t.conf");
  const Value* actions = root.find("actions");
  ASSERT_TRUE(actions && actions->is_object());
  EXPECT_EQ(actions->where().line, 1);
  const Value* action = actions->find("action");
  ASSERT_TRUE(action && action->is_object());
  ASSERT_NE(action->find("open"), nullptr);
  EXPECT_EQ(action->find("open")->where().line, 2);
  EXPECT_EQ(action->find("open")->all("template").size(), 2U);
  EXPECT_EQ(text_of(*action->find("close"), "use"), "no");
  ASSERT_TRUE(root.find("template")->find("a")->is_object());
  EXPECT_TRUE(root.find("template")->find("a")->members().empty());
  ASSERT_NE(root.find("Empty"), nullptr);  // block names keep their case
}

TEST(ConfigParse, RepeatedBlocks) {
  const Value root = parse_string("<l>\np=1\n</l>\n<l>\np=2\n</l>\n<t x>\n</t>\n<t x>\nq=1\n</t>\n", "t.conf");
  ASSERT_TRUE(root.find("l")->is_array());
  EXPECT_EQ(text_of(root.find("l")->items()[1], "p"), "2");
  const Value* x = root.find("t")->find("x");
  ASSERT_TRUE(x->is_array());
  EXPECT_EQ(x->items().size(), 2U);
  EXPECT_EQ(text_of(x->items()[1], "q"), "1");
}

TEST(ConfigParse, OddBlockNames) {
  EXPECT_EQ(json("<\"a b\">\n</\"a b\">\n"), "{\n   \"a b\" : {}\n}\n");
  EXPECT_EQ(json("<a \"b c\">\n</a>\n"), "{\n   \"a\" : {\n      \"b c\" : {}\n   }\n}\n");
  EXPECT_EQ(json("<a b c>\n</a>\n"), "{\n   \"a\" : {\n      \"b c\" : {}\n   }\n}\n");
  EXPECT_EQ(json("<A>\n</a>\n"), "{\n   \"A\" : {}\n}\n");
}

TEST(ConfigParse, Unicode) {
  EXPECT_EQ(text_of(parse_string("n = Zo\xC3\xAB \xE2\x82\xAC\n", "t.conf"), "n"), "Zo\xC3\xAB \xE2\x82\xAC");
  EXPECT_EQ(text_of(parse_string("\xEF\xBB\xBFk = v\n", "t.conf"), "k"), "v");  // BOM dropped
  // Without a byte-order mark U+00A0 is two ordinary bytes, for Config::General too.
  EXPECT_EQ(json("k\xC2\xA0= v\n"), "{\n   \"k\xC2\xA0\" : \"v\"\n}\n");
  auto error = [](const std::string& text) -> std::string {
    try {
      parse_string(text, "t.conf");
    } catch (const ConfigError& e) {
      return e.where().str() + ": " + e.what();
    }
    return "accepted";
  };
  // After a byte-order mark: Unicode white space and malformed UTF-8 are refused at their line.
  EXPECT_NE(error("\xEF\xBB\xBF" "a = 1\nk = v\xE3\x80\x80w\n").find("t.conf:2"), std::string::npos);
  EXPECT_NE(error("\xEF\xBB\xBF" "a = 1\nk = v\xE3\x80\x80w\n").find("U+3000"), std::string::npos);
  EXPECT_NE(error("\xEF\xBB\xBFk = \xC0\xAF\n").find("malformed UTF-8"), std::string::npos);   // overlong
  EXPECT_NE(error("\xEF\xBB\xBFk = \xED\xA0\x80\n").find("malformed UTF-8"), std::string::npos);  // surrogate
  EXPECT_NE(error("\xEF\xBB\xBFk = \xE2\x82\n").find("malformed UTF-8"), std::string::npos);  // cut short
}

TEST(ConfigParse, LoneBackslashAndHereDocZero) {
  // Config::General: a line holding only "\" continues nothing.
  EXPECT_EQ(json("\\\nk = v\n"), "{\n   \"k\" : \"v\"\n}\n");
  EXPECT_EQ(json("\\\nk = v\na \\\nb\n"), "{\n   \"a\" : \"b\",\n   \"k\" : \"v\"\n}\n");
  EXPECT_THROW(parse_string("0\\\nk = v\n", "t.conf"), ConfigError);  // "0" would be dropped
  EXPECT_THROW(parse_string("0 <<EOF\nx\nEOF\n", "t.conf"), ConfigError);
  EXPECT_THROW(parse_string("0 = <<EOF\nx\nEOF\n", "t.conf"), ConfigError);
  EXPECT_EQ(json("00 <<EOF\nx\nEOF\n"), "{\n   \"00\" : \"x\"\n}\n");  // "00" is true in Perl
}

TEST(ConfigJson, FormatsLikeJsonPP) {
  EXPECT_EQ(json(""), "{}\n");
  EXPECT_EQ(json("b = 1\na = 2\na = 3\n<c>\n</c>\n"),
            "{\n   \"a\" : [\n      \"2\",\n      \"3\"\n   ],\n   \"b\" : \"1\",\n   \"c\" : {}\n}\n");
  EXPECT_EQ(json("k = \"\x01\x7f\t\\\\/\"\n"), "{\n   \"k\" : \"\\u0001\x7f\\t\\\\/\"\n}\n");
  EXPECT_EQ(json("k <<E\na\r\nE\n"), "{\n   \"k\" : \"a\"\n}\n");  // trailing blanks of a here-document go
}

TEST(ConfigErrors, UnclosedBlock) {
  std::string m;
  EXPECT_EQ(error_line("<actions>\n<action a>\n</action>\nx = 1\n", &m), 4);
  EXPECT_NE(m.find("t.conf:4: block <actions> opened at line 1 is never closed"), std::string::npos) << m;
}

TEST(ConfigErrors, MismatchedAndStrayEndTags) {
  std::string m;
  EXPECT_EQ(error_line("<action a>\n</template>\n", &m), 2);
  EXPECT_NE(m.find("unexpected </template>, expected </action>"), std::string::npos) << m;
  EXPECT_EQ(error_line("a = 1\n\n</actions>\n", &m), 3);
  EXPECT_NE(m.find("no block is open"), std::string::npos) << m;
}

TEST(ConfigErrors, ValueAndBlockClash) {
  EXPECT_EQ(error_line("template = x\n<template y>\n</template>\n"), 2);
  EXPECT_EQ(error_line("a = 1\na = 2\n<a n>\n</a>\n"), 3);
  EXPECT_EQ(error_line("flag\n<flag>\n</flag>\n"), 2);
  // A block first, then the value: Config::General makes an array of both.
  const Value root = parse_string("<a>\n</a>\na = 1\n", "t.conf");
  ASSERT_TRUE(root.find("a")->is_array());
  EXPECT_TRUE(root.find("a")->items()[0].is_object());
}

TEST(ConfigErrors, UnterminatedHereDocAndContinuation) {
  std::string m;
  EXPECT_EQ(error_line("a = 1\nm <<EOT\nx\ny\n", &m), 4);
  EXPECT_NE(m.find("expected a line 'EOT'"), std::string::npos) << m;
  EXPECT_EQ(error_line("a = 1 \\\n  b \\", &m), 2);
}

TEST(ConfigLimits, DeepNesting) {
  std::string text;
  for (int i = 0; i < 100000; ++i) text += "<b>\n";
  std::string m;
  EXPECT_EQ(error_line(text, &m), 65);
  EXPECT_NE(m.find("nested deeper"), std::string::npos);
  std::string ok;
  for (int i = 0; i < 64; ++i) ok += "<b>\n";
  for (int i = 0; i < 64; ++i) ok += "</b>\n";
  EXPECT_NO_THROW(parse_string(ok, "t.conf"));
}

TEST(ConfigLimits, HugeLineAndManyLines) {
  const std::string huge = "k = " + std::string(4 << 20, 'x') + "\n";
  EXPECT_EQ(text_of(parse_string(huge, "t.conf"), "k").size(), 4U << 20);
  const std::string ugly = std::string(1 << 20, '<') + std::string(1 << 20, '/') + "\n";
  EXPECT_NO_THROW(parse_string(ugly, "t.conf"));
  ParseLimits small;
  small.max_total_lines = 10;
  EXPECT_EQ(error_line(std::string(20, '\n'), nullptr, small), 11);
  small.max_file_bytes = 8;
  EXPECT_THROW(parse_string("0123456789", "t.conf", small), ConfigError);
}

TEST(ConfigFiles, IncludeRelativeToIncludingFile) {
  TempDir dir;
  dir.write("sub/inner.inc", "inner = yes\n<<include leaf.inc>>\n");
  dir.write("sub/leaf.inc", "leaf = 1\n");
  const std::string main = dir.write("main.conf", "a = 1\n<blk>\n<<include sub/inner.inc>>\n</blk>\nz = 2\n");
  const Value root = parse_file(main);
  EXPECT_EQ(text_of(*root.find("blk"), "inner"), "yes");
  EXPECT_EQ(text_of(*root.find("blk"), "leaf"), "1");
  EXPECT_EQ(root.find("blk")->find("leaf")->where().line, 1);
  EXPECT_NE(root.find("blk")->find("leaf")->where().file.find("leaf.inc"), std::string::npos);
  EXPECT_EQ(text_of(root, "z"), "2");
}

TEST(ConfigFiles, IncludeErrors) {
  TempDir dir;
  const std::string loop = dir.write("loop.conf", "a = 1\n<<include other.conf>>\n");
  dir.write("other.conf", "b = 1\n\n<<include loop.conf>>\n");
  try {
    parse_file(loop);
    ADD_FAILURE() << "include loop accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(e.where().file.find("other.conf"), std::string::npos);
    EXPECT_EQ(e.where().line, 3);
    EXPECT_NE(std::string(e.what()).find("include loop"), std::string::npos);
  }
  const std::string missing = dir.write("missing.conf", "\n<<include nope.conf>>\n");
  try {
    parse_file(missing);
    ADD_FAILURE() << "missing include accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.where().line, 2);
  }
  // The same file included twice (not a loop) is read once, as Config::General does.
  dir.write("once.inc", "k = v\n");
  const Value twice = parse_file(dir.write("twice.conf", "<<include once.inc>>\n<<include once.inc>>\n"));
  EXPECT_TRUE(twice.find("k")->is_string());
  EXPECT_THROW(parse_file(dir.write("x.conf", "") + ".absent"), ConfigError);
}

TEST(ConfigFiles, DeepIncludeChainIsBounded) {
  TempDir dir;
  for (int i = 0; i < 30; ++i)
    dir.write("f" + std::to_string(i) + ".conf", "<<include f" + std::to_string(i + 1) + ".conf>>\n");
  dir.write("f30.conf", "end = 1\n");
  EXPECT_THROW(parse_file(dir.write("f0.conf", "<<include f1.conf>>\n")), ConfigError);
}

TEST(ConfigCorpus, GoodFilesParse) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(TEST_DATA_DIR) + "/config/good")) {
    if (entry.path().extension() != ".conf") continue;
    EXPECT_NO_THROW(parse_file(entry.path().string())) << entry.path();
    ++n;
  }
  EXPECT_GE(n, 10);
}

TEST(ConfigCorpus, BadFilesFailAtTheirLine) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(TEST_DATA_DIR) + "/config/bad")) {
    if (entry.path().extension() != ".conf") continue;
    std::ifstream in(entry.path());
    std::string first;
    std::getline(in, first);
    if (first.rfind("\xEF\xBB\xBF", 0) == 0) first.erase(0, 3);  // a byte-order mark
    ASSERT_EQ(first.rfind("# expect-line: ", 0), 0U) << entry.path();
    const int want = std::stoi(first.substr(15));
    try {
      parse_file(entry.path().string());
      ADD_FAILURE() << entry.path() << " accepted";
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.where().line, want) << entry.path() << ": " << e.what();
      EXPECT_EQ(std::filesystem::path(e.where().file).filename(), entry.path().filename()) << e.what();
    }
    ++n;
  }
  EXPECT_GE(n, 10);
}
