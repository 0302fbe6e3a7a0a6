// Review 8, an attacker's view of the in-process firewall paths (libipset actions, the nft
// netlink fast path). Each test is an attack that worked before its fix.
#include <gtest/gtest.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "rules/nft.hpp"
#include "rules/nft_element.hpp"

namespace knock::rules {
namespace {

class Nft {
 public:
  Nft() {
    ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    nft_ctx_buffer_output(ctx_);
    nft_ctx_buffer_error(ctx_);
  }
  ~Nft() { nft_ctx_free(ctx_); }
  Nft(const Nft&) = delete;
  Nft& operator=(const Nft&) = delete;
  // The command's output, or "ERROR: " and nft's message.
  std::string run(const std::string& command) {
    const int rc = nft_run_cmd_from_buffer(ctx_, command.c_str());
    std::string out = rc == 0 ? nft_ctx_get_output_buffer(ctx_) : std::string("ERROR: ") + nft_ctx_get_error_buffer(ctx_);
    (void)nft_ctx_get_output_buffer(ctx_);
    return out;
  }

 private:
  nft_ctx* ctx_;
};

// Runs body in a forked child inside a new network namespace; its failures fail the test.
void in_netns(const std::function<void()>& body) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, CAP_NET_ADMIN)";
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (unshare(CLONE_NEWNET) != 0) _exit(77);
    body();
    _exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "cannot create a network namespace";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child in its namespace failed (see above)";
}

// The set is re-created between the fast path's NFT_MSG_GETSET and its batch (an `nft -f` reload
// that gives it `flags interval`, to hold networks). The batch names the set only by its name:
// the element checked against a plain set lands in an interval set as a lone interval start,
// which the kernel's rbtree matches for every address above it. The door opened for
// 198.18.0.2 opens for 198.18.0.200, 203.0.113.9, ... too.
TEST(Review8Attack, SetRecreatedBetweenLookupAndBatchOpensARange) {
  in_netns([] {
    Nft nft;
    ASSERT_EQ(nft.run("table inet t { set s { type ipv4_addr; }; }"), "");
    ElementWriter writer;
    bool reloaded = false;
    writer.between_for_test = [&] {
      if (reloaded) return;
      reloaded = true;
      EXPECT_EQ(nft.run("delete set inet t s\nadd set inet t s { type ipv4_addr; flags interval; }"), "");
    };
    const auto command = parse_element_command("add element inet t s { 198.18.0.2 }");
    ASSERT_TRUE(command);
    const auto result = writer.write(*command);
    ASSERT_TRUE(reloaded);
    // Whatever the outcome, no address but 198.18.0.2 may be in the set.
    EXPECT_NE(nft.run("get element inet t s { 198.18.0.200 }").rfind("ERROR: ", 0), std::string::npos)
        << "the door opened for another host: " << nft.run("list set inet t s");
    EXPECT_NE(nft.run("get element inet t s { 203.0.113.9 }").rfind("ERROR: ", 0), std::string::npos)
        << nft.run("list set inet t s");
    // The fast path stood back (nothing written); libnftables, which knows interval sets, runs it.
    EXPECT_EQ(result.outcome, ElementWriter::Outcome::NotApplicable) << result.error;
    NftExecutor executor;
    std::string error;
    EXPECT_TRUE(executor.run("add element inet t s { 198.18.0.2 }", &error)) << error;
    EXPECT_EQ(nft.run("get element inet t s { 198.18.0.2 }").find("ERROR"), std::string::npos);
    EXPECT_NE(nft.run("get element inet t s { 198.18.0.200 }").rfind("ERROR: ", 0), std::string::npos)
        << nft.run("list set inet t s");
  });
}

}  // namespace
}  // namespace knock::rules
