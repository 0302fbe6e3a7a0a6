// LogFollower: appends, rotation by rename, truncation, deletion and re-creation, late
// appearance, over-long lines, binary data. Polls with deadlines; no fixed sleeps.
#include "capture/logfollow.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace knock::capture;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/logfollow_test.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void append(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  out << text;
}

void rewrite(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << text;
}

LogFollower::Options fast() {
  LogFollower::Options o;
  o.interval = 0.05;
  return o;
}

struct Collector {
  std::vector<std::string> lines;
  LogFollower::LineCallback callback() {
    return [this](std::string_view l) { lines.emplace_back(l); };
  }
};

// The daemon's loop: poll the inotify fd with next_check_in() as the timeout, then read.
// Runs until done() or the deadline; returns done().
bool pump(LogFollower& f, Collector& c, const std::function<bool()>& done, double seconds = 10) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    pollfd p{f.fd(), POLLIN, 0};
    const int timeout_ms = static_cast<int>(std::min(f.next_check_in(), 0.2) * 1000);
    if (f.fd() >= 0) poll(&p, 1, timeout_ms);
    else poll(nullptr, 0, timeout_ms);
    f.read_lines(c.callback());
  }
  return true;
}

bool until_lines(LogFollower& f, Collector& c, std::size_t n, double seconds = 10) {
  return pump(f, c, [&] { return c.lines.size() >= n; }, seconds);
}

// A few more rounds, to see that nothing else arrives.
void settle(LogFollower& f, Collector& c) {
  for (int i = 0; i < 3; ++i) {
    pollfd p{f.fd(), POLLIN, 0};
    poll(&p, f.fd() >= 0 ? 1 : 0, 60);
    f.read_lines(c.callback());
  }
}

}  // namespace

TEST(LogFollower, StartsAtTheEndAndFollowsAppends) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "old1\nold2\n");
  LogFollower f(log, fast());
  EXPECT_TRUE(f.is_open());
  Collector c;
  f.read_lines(c.callback());
  EXPECT_TRUE(c.lines.empty());
  append(log, "new1\nnew2\r\n");
  ASSERT_TRUE(until_lines(f, c, 2));
  append(log, "par");
  settle(f, c);
  EXPECT_EQ(c.lines.size(), 2u);  // an unterminated line waits
  append(log, "tial\n\n");
  ASSERT_TRUE(until_lines(f, c, 4));
  settle(f, c);
  EXPECT_EQ(c.lines, (std::vector<std::string>{"new1", "new2", "partial", ""}));
  EXPECT_EQ(f.stats().lines, 4u);
}

TEST(LogFollower, StartingInsideALineSkipsItsRest) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "old\nhalf");
  LogFollower f(log, fast());
  Collector c;
  append(log, "-line\nnext\n");
  ASSERT_TRUE(until_lines(f, c, 1));
  settle(f, c);
  EXPECT_EQ(c.lines, (std::vector<std::string>{"next"}));
}

TEST(LogFollower, InotifyWakesBeforeTheInterval) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  LogFollower::Options o;
  o.interval = 3600;  // only inotify can make this prompt
  LogFollower f(log, o);
  if (f.fd() < 0) GTEST_SKIP() << "no inotify";
  EXPECT_GT(f.next_check_in(), 3000);
  append(log, "ping\n");
  pollfd p{f.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  Collector c;
  f.read_lines(c.callback());
  EXPECT_EQ(c.lines, (std::vector<std::string>{"ping"}));
}

TEST(LogFollower, RotationByRenameReadsOldThenNew) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  LogFollower f(log, fast());
  Collector c;
  append(log, "a1\n");
  ASSERT_TRUE(until_lines(f, c, 1));
  append(log, "a2\n");  // written just before the rename, not read yet
  fs::rename(log, dir.file("fw.log.1"));
  rewrite(log, "b1\n");
  ASSERT_TRUE(until_lines(f, c, 3));
  EXPECT_EQ(c.lines, (std::vector<std::string>{"a1", "a2", "b1"}));
  EXPECT_EQ(f.stats().rotations, 1u);
  // a writer that has not reopened yet still writes to the renamed file
  append(dir.file("fw.log.1"), "a3\n");
  append(log, "b2\n");
  ASSERT_TRUE(until_lines(f, c, 5));
  std::vector<std::string> tail(c.lines.begin() + 3, c.lines.end());
  std::sort(tail.begin(), tail.end());
  EXPECT_EQ(tail, (std::vector<std::string>{"a3", "b2"}));
}

TEST(LogFollower, TruncationRestartsAtTheTop) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "x1\nx2\nx3\n");
  LogFollower f(log, fast());
  Collector c;
  append(log, "x4\n");
  ASSERT_TRUE(until_lines(f, c, 1));
  rewrite(log, "");
  ASSERT_TRUE(pump(f, c, [&] { return f.stats().truncations == 1; }));
  append(log, "after\n");
  ASSERT_TRUE(until_lines(f, c, 2));
  EXPECT_EQ(c.lines, (std::vector<std::string>{"x4", "after"}));
}

// copytruncate, then the next line written before the follower looked: the file is as long as
// before, so its size alone does not tell. Its modification time does (an append always grows it).
TEST(LogFollower, TruncatedAndRefilledToTheSameLengthBeforeALook) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  LogFollower f(log, fast());
  Collector c;
  append(log, "knock7\n");
  ASSERT_TRUE(until_lines(f, c, 1));
  rewrite(log, "knock8\n");  // truncated and refilled in place, same length
  ASSERT_TRUE(until_lines(f, c, 2));
  EXPECT_EQ(c.lines, (std::vector<std::string>{"knock7", "knock8"}));
  EXPECT_EQ(f.stats().truncations, 1u);
  append(log, "knock9\n");  // and an ordinary append after it is read once
  ASSERT_TRUE(until_lines(f, c, 3));
  settle(f, c);
  EXPECT_EQ(c.lines, (std::vector<std::string>{"knock7", "knock8", "knock9"}));
}

// The other side of the same check: a file that only grew, read in budget-sized pieces that end
// exactly at its new end, is not taken for a rewritten one (each read forgets the time noted at
// the last end). Under CI load a 20 MB line written in 4 MiB chunks met the 4 MiB budget so.
TEST(LogFollower, GrowthReadInBudgetSizedPiecesIsNoTruncation) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  auto options = fast();
  options.max_bytes_per_call = 16;
  LogFollower f(log, options);
  Collector c;
  append(log, "aaaa\n");
  ASSERT_TRUE(until_lines(f, c, 1));
  settle(f, c);  // read to its end: the time is noted
  append(log, "bbbbbbbbbbbbbbb\n");  // exactly one budget
  ASSERT_TRUE(until_lines(f, c, 2));
  append(log, "ccccccccccccccc\n");
  ASSERT_TRUE(until_lines(f, c, 3));
  settle(f, c);
  EXPECT_EQ(c.lines, (std::vector<std::string>{"aaaa", "bbbbbbbbbbbbbbb", "ccccccccccccccc"}));
  EXPECT_EQ(f.stats().truncations, 0u);
}

TEST(LogFollower, DeletedThenRecreated) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  LogFollower f(log, fast());
  Collector c;
  append(log, "one\n");
  ASSERT_TRUE(until_lines(f, c, 1));
  fs::remove(log);
  settle(f, c);  // nothing to read, nothing breaks
  EXPECT_EQ(c.lines.size(), 1u);
  rewrite(log, "two\nthree\n");  // a new file is read from its start
  ASSERT_TRUE(until_lines(f, c, 3));
  EXPECT_EQ(c.lines, (std::vector<std::string>{"one", "two", "three"}));
}

TEST(LogFollower, FileThatAppearsLater) {
  TempDir dir;
  const std::string log = dir.file("later.log");
  LogFollower f(log, fast());
  EXPECT_FALSE(f.is_open());
  Collector c;
  settle(f, c);
  EXPECT_TRUE(c.lines.empty());
  rewrite(log, "first\n");
  ASSERT_TRUE(until_lines(f, c, 1));
  EXPECT_TRUE(f.is_open());
  EXPECT_EQ(c.lines, (std::vector<std::string>{"first"}));
}

TEST(LogFollower, MissingDirectoryThatAppearsLater) {
  TempDir dir;
  const std::string log = dir.file("sub/fw.log");
  LogFollower f(log, fast());
  Collector c;
  settle(f, c);
  fs::create_directory(dir.file("sub"));
  rewrite(log, "hello\n");
  ASSERT_TRUE(until_lines(f, c, 1));
  EXPECT_EQ(c.lines, (std::vector<std::string>{"hello"}));
}

TEST(LogFollower, OverlongLineIsSkippedAndCounted) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  LogFollower f(log, fast());
  Collector c;
  append(log, std::string(1 << 20, 'L'));  // 1 MiB, no newline yet
  settle(f, c);
  EXPECT_TRUE(c.lines.empty());
  EXPECT_EQ(f.stats().long_lines_skipped, 1u);
  append(log, std::string(1000, 'L') + "\nshort\n" + std::string(70000, 'M') + "\nend\n");
  ASSERT_TRUE(until_lines(f, c, 2));
  settle(f, c);
  EXPECT_EQ(c.lines, (std::vector<std::string>{"short", "end"}));
  EXPECT_EQ(f.stats().long_lines_skipped, 2u);
}

TEST(LogFollower, LineCapAcrossReads) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  LogFollower::Options o = fast();
  o.max_line = 10;
  LogFollower f(log, o);
  Collector c;
  append(log, "0123456789\n01234");
  ASSERT_TRUE(until_lines(f, c, 1));
  append(log, "567890\nok\n");  // 11 bytes across two reads: too long
  ASSERT_TRUE(until_lines(f, c, 2));
  EXPECT_EQ(c.lines, (std::vector<std::string>{"0123456789", "ok"}));
  EXPECT_EQ(f.stats().long_lines_skipped, 1u);
}

TEST(LogFollower, BinaryFileDoesNotBreakIt) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  LogFollower f(log, fast());
  Collector c;
  std::mt19937 rng(7);
  std::string junk(300000, '\0');
  for (char& ch : junk) ch = static_cast<char>(rng() & 0xFF);
  append(log, junk + "\nlast line\n");
  ASSERT_TRUE(pump(f, c, [&] { return !c.lines.empty() && c.lines.back() == "last line"; }));
  for (const auto& l : c.lines) EXPECT_LE(l.size(), 64u * 1024);
}

TEST(LogFollower, ReadBudgetLeavesWorkPending) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  LogFollower::Options o;
  o.interval = 3600;
  o.max_bytes_per_call = 100;
  LogFollower f(log, o);
  Collector c;
  std::string text;
  for (int i = 0; i < 100; ++i) text += "line " + std::to_string(i) + "\n";
  append(log, text);
  f.read_lines(c.callback());
  EXPECT_LT(c.lines.size(), 100u);
  EXPECT_EQ(f.next_check_in(), 0);
  for (int i = 0; i < 100 && c.lines.size() < 100; ++i) f.read_lines(c.callback());
  ASSERT_EQ(c.lines.size(), 100u);
  EXPECT_EQ(c.lines[99], "line 99");
  EXPECT_GT(f.next_check_in(), 0);
}

TEST(LogFollower, RefusesSymlinksAndNonRegularFiles) {
  TempDir dir;
  const std::string target = dir.file("real.log");
  rewrite(target, "");
  const std::string link = dir.file("link.log");
  fs::create_symlink(target, link);
  LogFollower f(link, fast());
  EXPECT_FALSE(f.is_open());
  const std::string fifo = dir.file("fifo.log");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  LogFollower g(fifo, fast());  // must not block
  EXPECT_FALSE(g.is_open());
  Collector c;
  g.read_lines(c.callback());
  EXPECT_TRUE(c.lines.empty());
  fs::create_directory(dir.file("dir.log"));
  LogFollower h(dir.file("dir.log"), fast());
  EXPECT_FALSE(h.is_open());
}

// issue 11: a log another user can write is a source of forged knocks. Refused when the
// follower starts (an exception: the daemon stops with the message), and after a rotation (the
// new file is not read; the old one still is, to its end).
TEST(LogFollower, RefusesALogOthersCanWrite) {
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  chmod(log.c_str(), 0666);
  try {
    LogFollower f(log, fast());
    FAIL() << "a world-writable log was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("writable by every user"), std::string::npos) << e.what();
  }
  chmod(log.c_str(), 0644);
  LogFollower f(log, fast());
  Collector c;
  append(log, "a1\n");
  ASSERT_TRUE(until_lines(f, c, 1));
  // rotated: the file now at the name is one every user can write
  fs::rename(log, dir.file("fw.log.1"));
  rewrite(log, "forged\n");
  chmod(log.c_str(), 0666);
  append(dir.file("fw.log.1"), "a2\n");
  ASSERT_TRUE(until_lines(f, c, 2));
  append(log, "forged2\n");
  settle(f, c);
  settle(f, c);
  EXPECT_EQ(c.lines, (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(f.stats().rotations, 0u);
  // fixed by root: read from its start, as any new file at the name
  chmod(log.c_str(), 0644);
  append(log, "b1\n");
  ASSERT_TRUE(until_lines(f, c, 5));
  EXPECT_EQ(c.lines, (std::vector<std::string>{"a1", "a2", "forged", "forged2", "b1"}));
}

TEST(LogFollower, RefusesALogOfAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give a file away";
  TempDir dir;
  const std::string log = dir.file("fw.log");
  rewrite(log, "");
  ASSERT_EQ(chown(log.c_str(), 65534, 65534), 0);
  EXPECT_THROW(LogFollower(log, fast()), std::exception);
  ASSERT_EQ(chown(log.c_str(), 0, 65534), 0);
  chmod(log.c_str(), 0664);  // group-writable by a group other than root's
  EXPECT_THROW(LogFollower(log, fast()), std::exception);
  chmod(log.c_str(), 0644);
  EXPECT_NO_THROW(LogFollower(log, fast()));
}
