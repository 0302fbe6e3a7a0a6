// The state tree and its cache file: round trip, corrupt and unsafe files, and a writer killed
// with SIGKILL mid-stream leaving either the old or the new file, never a broken one.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "rules/state.hpp"

using namespace knock;
using namespace knock::rules;

namespace {
std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::path(BINARY_DIR) / ("state_test_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
  return dir;
}

std::string load_error(const std::string& path) {
  try {
    load_cache(path);
  } catch (const RuntimeError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(StateTree, SetGetAndLimits) {
  StateTree st(StateLimits{5, 3, 8, 16});
  std::string err;
  EXPECT_TRUE(st.set({"a", "b"}, Scalar::integer(1), &err));
  EXPECT_TRUE(st.set({"a", "c"}, Scalar::string("x"), &err));
  EXPECT_EQ(st.size(), 3u);
  EXPECT_EQ(st.get({"a", "b"}).str(), "1");
  EXPECT_FALSE(st.get({"a"}).defined());
  EXPECT_FALSE(st.get({"zz", "b"}).defined());
  EXPECT_EQ(st.size(), 3u);  // reads create nothing
  EXPECT_FALSE(st.set({"a", "b", "c", "d"}, Scalar::integer(1), &err));
  EXPECT_FALSE(st.set({"123456789"}, Scalar::integer(1), &err));
  EXPECT_FALSE(st.set({"a"}, Scalar::string(std::string(17, 'x')), &err));
  EXPECT_TRUE(st.set({"d", "e"}, Scalar::integer(1), &err));
  EXPECT_FALSE(st.set({"f"}, Scalar::integer(1), &err));
  EXPECT_NE(err.find("full"), std::string::npos);
  EXPECT_TRUE(st.set({"a", "b"}, Scalar::integer(2), &err));  // existing keys still change
}

TEST(StateCache, RoundTrip) {
  auto dir = temp_dir("roundtrip");
  const std::string path = (dir / "c").string();
  StateTree st;
  st.set({"198.18.0.1", "visits", "num"}, Scalar::integer(2), nullptr);
  st.set({"198.18.0.1", "visits", "prevtime"}, Scalar::integer(1709632800), nullptr);
  st.set({"2001:db8::1", "x y", "%", ""}, Scalar::string("a b\n%c\t"), nullptr);
  st.set({"f"}, Scalar::number(0.1), nullptr);
  st.set({"u"}, Scalar(), nullptr);
  st.set({"big"}, Scalar::number(1e300), nullptr);
  std::vector<PendingCommand> pending = {
      {1709633100.25, "/sbin/iptables -D INPUT -s 198.18.0.1", "action close, template t", ActionKind::shell, 7},
      {1709633200, "delete element inet pk allowed { 198.18.0.1 . 22 }", "action close, template n", ActionKind::nft, 9}};
  // Who a close is for (knockctl list): address, client, time of the knock; also without a client.
  pending.push_back({1709633300, "/bin/true", "action close, template t", ActionKind::shell, 11, 0, "2001:db8::5", "2001:db8::6", "alice b", 1709633000.5});
  pending.push_back({1709633400, "/bin/true", "action close, template t", ActionKind::shell, 12, 0, "198.18.0.9", "198.18.0.9", "", 1709633100});
  ASSERT_EQ(save_cache(path, st, pending), std::nullopt);
  struct stat s {};
  ASSERT_EQ(stat(path.c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 0777, 0600u);
  auto loaded = load_cache(path);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(serialize_cache(loaded->state, loaded->pending), serialize_cache(st, pending));
  EXPECT_EQ(loaded->state.get({"2001:db8::1", "x y", "%", ""}).str(), "a b\n%c\t");
  EXPECT_EQ(loaded->state.get({"f"}).str(), "0.1");
  EXPECT_EQ(loaded->state.get({"big"}).str(), "1e+300");
  EXPECT_EQ(loaded->pending, pending);  // the kind of each command (shell or nft) too
  EXPECT_FALSE(load_cache((dir / "missing").string()));  // absent: start empty
  for (const auto& entry : std::filesystem::directory_iterator(dir))  // no temp files left
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// A pending record's letter says how its command runs: P /bin/sh, N nft, I ipset. Caches written
// before ipset (P and N only) still load; an unknown letter is refused.
TEST(StateCache, PendingLettersNameTheKindOfCommand) {
  auto dir = temp_dir("letters");
  const std::string path = (dir / "c").string();
  const std::vector<PendingCommand> pending = {{100, "/bin/true", "o", ActionKind::shell, 1},
                                               {200, "delete element inet pk a { 198.18.0.1 }", "o", ActionKind::nft, 2},
                                               {300, "del pk 198.18.0.1,tcp:22", "o", ActionKind::ipset, 3}};
  ASSERT_EQ(save_cache(path, StateTree(), pending), std::nullopt);
  std::string text;
  {
    std::ifstream in(path);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_NE(text.find("\nP 1 "), std::string::npos) << text;
  EXPECT_NE(text.find("\nN 2 "), std::string::npos) << text;
  EXPECT_NE(text.find("\nI 3 "), std::string::npos) << text;
  auto loaded = load_cache(path);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->pending, pending);
  text.replace(text.find("\nI 3 "), 5, "\nX 3 ");
  std::ofstream(path, std::ios::trunc) << text;
  EXPECT_NE(load_error(path).find("unknown record"), std::string::npos) << load_error(path);
  std::filesystem::remove_all(dir);
}

TEST(StateCache, CorruptTruncatedAndUnsafeFilesAreRefused) {
  auto dir = temp_dir("corrupt");
  const std::string path = (dir / "c").string();
  StateTree st;
  st.set({"a"}, Scalar::integer(1), nullptr);
  ASSERT_EQ(save_cache(path, st, {}), std::nullopt);
  std::string good;
  {
    std::ifstream in(path);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (std::size_t cut = 0; cut < good.size(); ++cut) {  // every truncation is caught
    std::ofstream(path, std::ios::trunc) << good.substr(0, cut);
    EXPECT_NE(load_error(path).find("state cache " + path), std::string::npos) << cut;
  }
  std::ofstream(path, std::ios::trunc) << "portknock-state 1\nS 1 a x1\nend 1\n";
  EXPECT_NE(load_error(path).find("line 2: bad value"), std::string::npos) << load_error(path);
  std::ofstream(path, std::ios::trunc) << "portknock-state 1\nS 1 a i1\nend 2\n";
  EXPECT_NE(load_error(path).find("line 3: record count"), std::string::npos);
  std::ofstream(path, std::ios::trunc) << good;
  ASSERT_TRUE(load_cache(path));
  chmod(path.c_str(), 0622);
  EXPECT_NE(load_error(path).find("writable by other users (mode 0622)"), std::string::npos) << load_error(path);
  chmod(path.c_str(), 0600);
  std::filesystem::create_symlink(path, dir / "link");
  EXPECT_NE(load_error((dir / "link").string()).find("symbolic link"), std::string::npos);
  chmod(dir.c_str(), 0777);
  EXPECT_NE(load_error(path).find("directory"), std::string::npos);
  chmod(dir.c_str(), 01777);  // sticky, like /tmp: fine
  EXPECT_TRUE(load_cache(path));
  chmod(dir.c_str(), 0700);
  std::string aside = move_cache_aside(path, 1709632800);
  EXPECT_NE(aside.find(".corrupt-"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::exists(aside));
  std::filesystem::remove_all(dir);
}

// A child saves a growing state in a loop and reports each completed save on a pipe; it is
// killed with SIGKILL at an arbitrary moment. The file must load and hold at least the last
// reported value.
TEST(StateCache, SurvivesSigkillMidStream) {
  auto dir = temp_dir("crash");
  const std::string path = (dir / "c").string();
  for (int round = 0; round < 5; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      StateTree st;
      for (std::uint32_t i = 1;; ++i) {
        st.set({"n"}, Scalar::integer(i), nullptr);
        st.set({"k", std::to_string(i % 500)}, Scalar::string(std::string(100, 'x')), nullptr);
        if (save_cache(path, st, {{1.0 * i, "true", "x", ActionKind::shell, 1}})) _exit(3);
        if (write(fds[1], &i, sizeof i) != sizeof i) _exit(4);
      }
    }
    close(fds[1]);
    std::uint32_t last = 0, value = 0;
    const std::uint32_t wait_for = 20 + static_cast<std::uint32_t>(round) * 37;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (last < wait_for && std::chrono::steady_clock::now() < deadline &&
           read(fds[0], &value, sizeof value) == sizeof value)
      last = value;
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    while (read(fds[0], &value, sizeof value) == sizeof value) last = value;  // reported before death
    close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_GE(last, wait_for);
    auto loaded = load_cache(path);
    ASSERT_TRUE(loaded);
    EXPECT_GE(loaded->state.get({"n"}).num(), last);
    ASSERT_EQ(loaded->pending.size(), 1u);
  }
  std::filesystem::remove_all(dir);
}

TEST(OverlayState, WritesStayInTheOverlay) {
  StateTree st;
  st.set({"a"}, Scalar::integer(1), nullptr);
  OverlayState o(st);
  EXPECT_TRUE(o.set({"a"}, Scalar::integer(5), nullptr));
  EXPECT_EQ(o.get({"a"}).str(), "5");
  EXPECT_EQ(st.get({"a"}).str(), "1");
}

TEST(StateTree, ExpireDropsOldValuesAndEmptyKeys) {
  StateTree st;
  st.set_time(100);
  st.set({"198.18.0.1", "visits", "num"}, Scalar::integer(1), nullptr);
  st.set({"198.18.0.1", "otk"}, Scalar::integer(1), nullptr);
  st.set_time(200);
  st.set({"198.18.0.2", "visits", "num"}, Scalar::integer(1), nullptr);
  st.set({"198.18.0.1", "visits", "num"}, Scalar::integer(2), nullptr);  // rewritten: young again
  EXPECT_EQ(st.size(), 7u);
  EXPECT_EQ(st.expire(150), 1u);  // only 198.18.0.1's otk was last written before 150
  EXPECT_FALSE(st.get({"198.18.0.1", "otk"}).defined());
  EXPECT_EQ(st.get({"198.18.0.1", "visits", "num"}).str(), "2");
  EXPECT_EQ(st.size(), 6u);
  EXPECT_EQ(st.expire(1000), 2u);
  EXPECT_EQ(st.size(), 0u);  // no empty branches left behind
  EXPECT_TRUE(st.entries().empty());
}

TEST(OverlayState, ChecksLimitsAndCountsNewKeys) {
  StateTree st(StateLimits{5, 3, 8, 16});
  st.set({"a", "b"}, Scalar::integer(1), nullptr);
  OverlayState o(st);
  std::string err;
  EXPECT_FALSE(o.set({"123456789"}, Scalar::integer(1), &err));  // key too long, as the tree says
  EXPECT_FALSE(o.set({"a"}, Scalar::string(std::string(17, 'x')), &err));
  EXPECT_TRUE(o.set({"a", "c"}, Scalar::integer(1), &err));
  EXPECT_TRUE(o.set({"x", "y"}, Scalar::integer(1), &err));
  EXPECT_EQ(o.missing_nodes(), 3u);  // a/c, x, x/y
  EXPECT_EQ(st.size(), 2u);          // nothing reached the tree
}

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST(StateCache, JournalRecordsSurviveWithoutASnapshot) {
  auto dir = temp_dir("journal");
  const std::string path = (dir / "c").string();
  StateTree st;
  st.set({"a"}, Scalar::integer(1), nullptr);
  {
    CacheWriter w(path);
    EXPECT_TRUE(w.append("D 1\n").has_value());  // no journal before the first snapshot
    ASSERT_EQ(w.snapshot(st, {{100, "/bin/true 1", "o", ActionKind::shell, 1}}), std::nullopt);
    ASSERT_EQ(w.append(state_record({"b"}, Scalar::integer(2), 5) +
                       pending_record({200, "/bin/true 2", "o", ActionKind::shell, 2}) +
                       pending_record({300, "nft-cmd", "o", ActionKind::nft, 3}) + done_record(1)),
              std::nullopt);
    EXPECT_TRUE(w.dirty());
    ASSERT_EQ(w.sync(), std::nullopt);
    EXPECT_FALSE(w.dirty());
  }
  auto loaded = load_cache(path);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->journal_records, 4u);
  EXPECT_EQ(loaded->state.get({"a"}).str(), "1");
  EXPECT_EQ(loaded->state.get({"b"}).str(), "2");
  ASSERT_EQ(loaded->pending.size(), 2u);  // 1 finished
  EXPECT_EQ(loaded->pending[0].id, 2u);
  EXPECT_EQ(loaded->pending[1].id, 3u);
  EXPECT_EQ(loaded->pending[1].kind, ActionKind::nft);

  // A torn last line (a crash in the middle of a write) is dropped; the rest stays.
  const std::string jpath = journal_path(path);
  std::ofstream(jpath, std::ios::app) << "P 4 400 o /bin/tr";
  loaded = load_cache(path);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->pending.size(), 2u);
  // A damaged line before the end is corruption, named with its line.
  std::ofstream(jpath, std::ios::app) << "ue\nX what\n";
  EXPECT_NE(load_error(path).find("state journal " + jpath + " line 7"), std::string::npos) << load_error(path);

  // A journal that belongs to an older snapshot is ignored (the snapshot has all of it).
  {
    CacheWriter w(path);
    ASSERT_EQ(w.snapshot(loaded->state, loaded->pending), std::nullopt);
  }
  const std::string fresh_journal = slurp(jpath);
  std::ofstream(jpath, std::ios::trunc) << "portknock-journal 12345\nD 2\nD 3\n";
  loaded = load_cache(path);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->pending.size(), 2u);
  EXPECT_EQ(loaded->journal_records, 0u);
  std::ofstream(jpath, std::ios::trunc) << fresh_journal << "D 2\n";
  loaded = load_cache(path);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->pending.size(), 1u);
  // The journal gets the same safety checks as the snapshot.
  chmod(jpath.c_str(), 0666);
  EXPECT_NE(load_error(path).find("writable by other users"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// As SurvivesSigkillMidStream, with the journal: each reported append is in the file after a
// SIGKILL at any moment, without any fsync or snapshot in between.
TEST(StateCache, JournalSurvivesSigkillMidStream) {
  auto dir = temp_dir("journalcrash");
  const std::string path = (dir / "c").string();
  for (int round = 0; round < 3; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      CacheWriter w(path);
      if (w.snapshot(StateTree(), {})) _exit(3);
      for (std::uint32_t i = 1;; ++i) {
        if (w.append(state_record({"n"}, Scalar::integer(i), i) + pending_record({1.0 * i, "true", "x", ActionKind::shell, i})))
          _exit(3);
        if (i > 2 && w.append(done_record(i - 2))) _exit(3);
        if (write(fds[1], &i, sizeof i) != sizeof i) _exit(4);
        if (i % 2000 == 0 && w.snapshot(StateTree(), {})) _exit(3);  // (drops the records: fine here)
      }
    }
    close(fds[1]);
    std::uint32_t last = 0, value = 0;
    const std::uint32_t wait_for = 50 + static_cast<std::uint32_t>(round) * 71;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (last < wait_for && std::chrono::steady_clock::now() < deadline &&
           read(fds[0], &value, sizeof value) == sizeof value)
      last = value;
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    while (read(fds[0], &value, sizeof value) == sizeof value) last = value;
    close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_GE(last, wait_for);
    auto loaded = load_cache(path);
    ASSERT_TRUE(loaded);
    EXPECT_GE(loaded->state.get({"n"}).num(), last);
    bool has_last = false;
    for (const auto& p : loaded->pending) has_last = has_last || p.id == last;
    EXPECT_TRUE(has_last) << last;
    EXPECT_LE(loaded->pending.size(), 3u);
  }
  std::filesystem::remove_all(dir);
}

// Review finding 7 (fails): what the daemon may write, it cannot read back. maxpending accepts
// up to 1,000,000, and every accepted close is written to the snapshot; a snapshot (or journal)
// over kMaxCacheBytes (64 MiB) is "corrupt" at the next start: the daemon refuses to start, so
// none of the closes runs (-fresh throws them all away). 600,000 ordinary iptables closes are
// enough (about 110 bytes each).
TEST(CacheAttack, EverythingMaxpendingAllowsCanBeLoadedBack) {
  auto dir = temp_dir("attack_64mib");
  const std::string path = (dir / "state.cache").string();
  std::vector<PendingCommand> pending;
  const std::size_t n = 600'000;
  pending.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    pending.push_back({1709632800.0 + 3600, "/usr/sbin/iptables -D INPUT -p tcp -s 198.18." + std::to_string(i / 65536) +
                                                "." + std::to_string(i % 256) + "/32 -d 0/0 --dport 22 --syn -j ACCEPT",
                       "action close, template iptables_close", ActionKind::shell, i + 1});
  ASSERT_EQ(save_cache(path, StateTree(), pending, 0), std::nullopt);
  try {
    auto loaded = load_cache(path, {}, 1'000'000);
    ASSERT_TRUE(loaded);
    EXPECT_EQ(loaded->pending.size(), n);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "a cache the daemon wrote within its limits is refused at start: " << e.what();
  }
  std::filesystem::remove_all(dir);
}
