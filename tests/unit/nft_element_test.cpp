// The fast path of nft set elements (rules/nft_element.hpp): the strict parser, nft's key
// encoding, and the writer checked against libnftables itself inside a private network
// namespace (a set written by the fast path must list exactly like its twin written by nft).
#include "rules/nft_element.hpp"

#include <gtest/gtest.h>
#include <linux/netfilter.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "rules/nft.hpp"

namespace knock::rules {
namespace {

using Outcome = ElementWriter::Outcome;

std::string hex(const std::vector<std::uint8_t>& bytes) {
  std::string out;
  static const char digits[] = "0123456789abcdef";
  for (const std::uint8_t b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

TEST(NftElementParse, AcceptsTheTemplateForms) {
  auto c = parse_element_command("add element inet pk allowed { 198.18.0.2 . 22 timeout 30s }");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->verb, ElementVerb::Add);
  EXPECT_EQ(c->family, NFPROTO_INET);
  EXPECT_EQ(c->table, "pk");
  EXPECT_EQ(c->set, "allowed");
  ASSERT_EQ(c->key.size(), 2u);
  EXPECT_EQ(c->timeout_ms, 30000u);
  EXPECT_EQ(c->key_type(), (7u << 6) | 13u);
  EXPECT_EQ(hex(c->key_bytes()), "c612000200160000");
  EXPECT_EQ(c->set_text(), "set inet pk allowed");

  c = parse_element_command("  delete element ip6 t6 s_6{2001:db8::1 . 65535}\t");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->verb, ElementVerb::Delete);
  EXPECT_EQ(c->family, NFPROTO_IPV6);
  EXPECT_EQ(c->key_type(), (8u << 6) | 13u);
  EXPECT_EQ(hex(c->key_bytes()), "20010db8000000000000000000000001ffff0000");
  EXPECT_EQ(c->timeout_ms, 0u);

  c = parse_element_command("create element t s { 0 }");  // no family: nft's default, ip
  ASSERT_TRUE(c);
  EXPECT_EQ(c->verb, ElementVerb::Create);
  EXPECT_EQ(c->family, NFPROTO_IPV4);
  EXPECT_EQ(c->family_name, "ip");
  EXPECT_EQ(c->key_type(), 13u);
  EXPECT_EQ(hex(c->key_bytes()), "0000");  // one field: not padded

  c = parse_element_command("add element bridge b.x/y-z _s { 10.0.0.1 . 192.168.1.255 . 8080 timeout 1d2h3m4s5ms }");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->family, NFPROTO_BRIDGE);
  EXPECT_EQ(c->table, "b.x/y-z");
  EXPECT_EQ(c->key_type(), ((7u << 6 | 7u) << 6) | 13u);
  EXPECT_EQ(hex(c->key_bytes()), "0a000001c0a801ff1f900000");
  EXPECT_EQ(c->timeout_ms, 86400000u + 2 * 3600000u + 3 * 60000u + 4000u + 5u);

  c = parse_element_command("add element netdev n s { ::ffff . 1 timeout 1h30m }");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->timeout_ms, 5400000u);
  c = parse_element_command("add element arp a s { 1.2.3.4 timeout 250ms }");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->timeout_ms, 250u);
  EXPECT_EQ(c->key_type(), 7u);
  EXPECT_EQ(hex(c->key_bytes()), "01020304");
}

TEST(NftElementParse, RejectsEverythingElse) {
  const std::vector<std::string> rejected = {
      "",
      "add",
      "add element",
      "add element inet t s",
      "add element inet t s {}",
      "add element inet t s { }",
      "list element inet t s { 1.2.3.4 }",
      "add elements inet t s { 1.2.3.4 }",
      "Add element inet t s { 1.2.3.4 }",
      "add element inet t s { 1.2.3.4, 1.2.3.5 }",    // several elements
      "add element inet t s { 1.2.3.4 , }",
      "add element inet t s { 1.2.3.0/24 }",          // prefix
      "add element inet t s { 1.2.3.4-1.2.3.9 }",     // range
      "add element inet t s { 1.2.3.4 . ssh }",       // service name
      "add element inet t s { 1.2.3.4 . 022 }",       // octal to nft
      "add element inet t s { 1.2.3.4 . 0x16 }",
      "add element inet t s { 1.2.3.4 . 65536 }",
      "add element inet t s { 1.2.3.4 . -1 }",
      "add element inet t s { 1.2.3.4 . 99999999999999999999 }",
      "add element inet t s { 1.2.3 }",
      "add element inet t s { 1.2.3.4.5 }",
      "add element inet t s { 1.2.3.256 }",
      "add element inet t s { 01.2.3.4 }",
      "add element inet t s { 1..2.3 }",
      "add element inet t s { 1.2.3.4. }",
      "add element inet t s { .1.2.3.4 }",
      "add element inet t s { 1.2.3.4 .22 }",
      "add element inet t s { 1.2.3.4. 22 }",
      "add element inet t s { 1.2.3.4 . }",
      "add element inet t s { . 22 }",
      "add element inet t s { 1.2.3.4 . . 22 }",
      "add element inet t s { ::ffff:1.2.3.4 }",      // embedded IPv4
      "add element inet t s { [2001:db8::1] }",
      "add element inet t s { fe80::1%eth0 }",
      "add element inet t s { 2001:db8:::1 }",
      "add element inet t s { 2001:db8::g }",
      "add element inet t s { 1:2:3:4:5:6:7:8:9 }",
      "add element inet t s { 1 . 2 . 3 . 4 . 5 . 6 }",  // six fields: not a 32-bit type
      "add element inet t s { ::1 . ::1 . ::1 . ::1 . ::1 }",  // 80 bytes of key
      "add element inet t s { 1.2.3.4 timeout 30 }",  // a bare number is no time to nft
      "add element inet t s { 1.2.3.4 timeout 0s }",
      "add element inet t s { 1.2.3.4 timeout 30s1m }",
      "add element inet t s { 1.2.3.4 timeout 1m1m }",
      "add element inet t s { 1.2.3.4 timeout 1ms1s }",
      "add element inet t s { 1.2.3.4 timeout 123456789s }",
      "add element inet t s { 1.2.3.4 timeout 30x }",
      "add element inet t s { 1.2.3.4 timeout s }",
      "add element inet t s { 1.2.3.4 timeout }",
      "add element inet t s { 1.2.3.4 timeout 30s timeout 30s }",
      "add element inet t s { 1.2.3.4 timeout 99999999d }",
      "add element inet t s { 1.2.3.4 expires 30s }",
      "add element inet t s { 1.2.3.4 comment \"x\" }",
      "add element inet t s { 1.2.3.4 counter }",
      "add element inet t s { 1.2.3.4 : accept }",     // map
      "add element inet t s { 1.2.3.4 : 5.6.7.8 }",
      "add element inet t s { $ip }",
      "add element inet t @s { 1.2.3.4 }",
      "add element inet \"t\" s { 1.2.3.4 }",
      "add element inet t s { 1.2.3.4 };",
      "add element inet t s { 1.2.3.4 } ; add element inet t s { 1.2.3.5 }",
      "add element inet t s { 1.2.3.4 }\nadd element inet t s { 1.2.3.5 }",
      "add element inet t s { 1.2.3.4 } # comment",
      "add element inet t s { 1.2.3.4 } }",
      "add element inet t s { { 1.2.3.4 } }",
      "add element inet t s 1.2.3.4",
      "add element inet t s { 1.2.3.4",
      "add element ip4 t s { 1.2.3.4 }",              // not a family: table ip4, set t, then junk
      "add element inet t { 1.2.3.4 }",               // table `inet`? no: the family
      "add element inet inet s { 1.2.3.4 }",
      "add element inet t 1s { 1.2.3.4 }",
      "add element inet t . { 1.2.3.4 }",
      "add element inet t s\xc3\xa9 { 1.2.3.4 }",
      std::string("add element inet t s { 1.2.3.4 }") + std::string(1, '\0'),
      "delete element inet t s { 1.2.3.4 timeout 30s }",
      "add element inet t " + std::string(256, 's') + " { 1.2.3.4 }",
      "add element inet t s { 1.2.3.4 }" + std::string(1100, ' '),
  };
  for (const std::string& text : rejected) EXPECT_FALSE(parse_element_command(text)) << text;
  EXPECT_TRUE(parse_element_command("add element inet t " + std::string(255, 's') + " { 1.2.3.4 }"));
}

// ---------------------------------------------------------------------------------------------
// Against libnftables, as root in a network namespace of our own.

class Nft {
 public:
  Nft() {
    ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    nft_ctx_buffer_output(ctx_);
    nft_ctx_buffer_error(ctx_);
  }
  ~Nft() { nft_ctx_free(ctx_); }
  // Runs a command; its output, or "ERROR: " and nft's message.
  std::string run(const std::string& command) {
    const int rc = nft_run_cmd_from_buffer(ctx_, command.c_str());
    std::string out = rc == 0 ? nft_ctx_get_output_buffer(ctx_) : std::string("ERROR: ") + nft_ctx_get_error_buffer(ctx_);
    (void)nft_ctx_get_output_buffer(ctx_);
    return out;
  }
  // The elements of a set, sorted, as `nft list set` prints them (without `expires`, which ticks).
  std::vector<std::string> elements(const std::string& set) {
    const std::string listing = run("list set inet t " + set);
    std::vector<std::string> out;
    const auto start = listing.find("elements = {");
    if (start == std::string::npos) return out;
    const auto end = listing.find('}', start);
    std::string body = listing.substr(start + 12, end - start - 12);
    std::replace(body.begin(), body.end(), '\n', ' ');
    std::replace(body.begin(), body.end(), '\t', ' ');
    std::stringstream items(body);
    std::string item;
    while (std::getline(items, item, ',')) {
      std::stringstream words(item);
      std::string word, clean;
      bool skip = false;
      while (words >> word) {
        if (skip) {
          skip = false;
          continue;
        }
        if (word == "expires") {
          skip = true;
          continue;
        }
        clean += (clean.empty() ? "" : " ") + word;
      }
      if (!clean.empty()) out.push_back(clean);
    }
    std::sort(out.begin(), out.end());
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

const char* const kRuleset = R"(
table inet t {
  set a4p { type ipv4_addr . inet_service; flags timeout; }
  set b4p { type ipv4_addr . inet_service; flags timeout; }
  set a6p { type ipv6_addr . inet_service; flags timeout; }
  set b6p { type ipv6_addr . inet_service; flags timeout; }
  set a4 { type ipv4_addr; }
  set b4 { type ipv4_addr; }
  set ap { type inet_service; }
  set bp { type inet_service; }
  set a44 { type ipv4_addr . ipv4_addr; }
  set b44 { type ipv4_addr . ipv4_addr; }
  set ap4 { type inet_service . ipv4_addr; flags timeout; }
  set bp4 { type inet_service . ipv4_addr; flags timeout; }
  set atyped { typeof ip saddr . tcp dport; flags timeout; }
  set btyped { typeof ip saddr . tcp dport; flags timeout; }
  set adef { type ipv4_addr; flags timeout; timeout 1h; }
  set bdef { type ipv4_addr; flags timeout; timeout 1h; }
  set aint { type ipv4_addr; flags interval; }
  map amap { type ipv4_addr : inet_service; }
  set amark { type mark; }
}
)";

ElementWriter::Result fast(ElementWriter& writer, const std::string& text) {
  const auto command = parse_element_command(text);
  EXPECT_TRUE(command) << text;
  if (!command) return {Outcome::NotApplicable, "did not parse"};
  return writer.write(*command);
}

// `verb element inet t SET { element }` through the fast path into a<name> and through nft
// into b<name>: both must list the same.
void same_as_nft(Nft& nft, ElementWriter& writer, const std::string& verb, const std::string& name,
                 const std::string& element) {
  const auto result = fast(writer, verb + " element inet t a" + name + " { " + element + " }");
  EXPECT_EQ(result.outcome, Outcome::Done) << verb << " " << name << " " << element << ": " << result.error;
  EXPECT_EQ(nft.run(verb + " element inet t b" + name + " { " + element + " }"), "") << name << " " << element;
  const auto a = nft.elements("a" + name);
  EXPECT_EQ(a, nft.elements("b" + name)) << verb << " " << name << " " << element;
}

TEST(NftElementWriter, EncodesLikeNft) {
  in_netns([] {
    Nft nft;
    ASSERT_EQ(nft.run(kRuleset), "");
    ElementWriter writer;
    same_as_nft(nft, writer, "add", "4p", "198.18.0.2 . 22 timeout 30s");
    same_as_nft(nft, writer, "add", "4p", "198.19.255.254 . 65535 timeout 1h30m");
    same_as_nft(nft, writer, "add", "4p", "0.0.0.0 . 0");
    same_as_nft(nft, writer, "add", "6p", "2001:db8::1 . 22 timeout 30s");
    same_as_nft(nft, writer, "add", "6p", "2001:db8:ffff:1:2:3:4:5 . 443");
    same_as_nft(nft, writer, "add", "4", "198.18.7.9");
    same_as_nft(nft, writer, "add", "p", "8080");
    same_as_nft(nft, writer, "add", "p", "1");
    same_as_nft(nft, writer, "add", "44", "198.18.0.1 . 198.18.0.200");
    same_as_nft(nft, writer, "add", "p4", "2222 . 198.18.0.3 timeout 2m");
    same_as_nft(nft, writer, "add", "typed", "198.18.0.4 . 22 timeout 45s");
    same_as_nft(nft, writer, "add", "def", "198.18.0.5");  // the set's default timeout applies
    // Adding what is there (with another timeout) does what nft's add does, whatever that is.
    same_as_nft(nft, writer, "add", "4p", "198.18.0.2 . 22 timeout 2h");
    same_as_nft(nft, writer, "add", "4", "198.18.7.9");
    EXPECT_NE(nft.run("list set inet t a4p").find("198.18.0.2 . 22 timeout 2h"), std::string::npos)
        << nft.run("list set inet t a4p");
    // Deleting.
    same_as_nft(nft, writer, "delete", "4p", "198.18.0.2 . 22");
    same_as_nft(nft, writer, "delete", "6p", "2001:db8::1 . 22");
    same_as_nft(nft, writer, "delete", "44", "198.18.0.1 . 198.18.0.200");
    EXPECT_EQ(nft.elements("a44"), std::vector<std::string>{});
  });
}

TEST(NftElementWriter, TimeoutIsHonoured) {
  in_netns([] {
    Nft nft;
    ASSERT_EQ(nft.run(kRuleset), "");
    ElementWriter writer;
    EXPECT_EQ(fast(writer, "add element inet t a4p { 198.18.0.2 . 22 timeout 30s }").outcome, Outcome::Done);
    const std::string listing = nft.run("list set inet t a4p");
    EXPECT_NE(listing.find("198.18.0.2 . 22 timeout 30s expires "), std::string::npos) << listing;
    // A short one is gone once it expires (the kernel's garbage collection is lazy, but an
    // expired element is never listed).
    EXPECT_EQ(fast(writer, "add element inet t a4p { 198.18.0.3 . 22 timeout 100ms }").outcome, Outcome::Done);
    EXPECT_NE(nft.run("list set inet t a4p").find("198.18.0.3"), std::string::npos);
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
      usleep(20000);
      gone = nft.run("list set inet t a4p").find("198.18.0.3") == std::string::npos;
    }
    EXPECT_TRUE(gone);
  });
}

TEST(NftElementWriter, ErrorsAndFallbacks) {
  in_netns([] {
    Nft nft;
    ASSERT_EQ(nft.run(kRuleset), "");
    ElementWriter writer;
    // Missing table or set, a key of another type, a set that is not plain: nothing written,
    // libnftables gets the command.
    for (const char* text : {
             "add element inet nosuch a4 { 198.18.0.1 }",
             "add element inet t nosuch { 198.18.0.1 }",
             "add element ip t a4 { 198.18.0.1 }",           // no `ip t` table
             "add element inet t a4 { 2001:db8::1 }",        // IPv6 into ipv4_addr
             "add element inet t a4 { 22 }",                 // a port into ipv4_addr
             "add element inet t ap4 { 198.18.0.1 . 22 }",   // the fields the other way round
             "add element inet t a4p { 198.18.0.1 }",        // not the whole concatenation
             "add element inet t a4p { 2001:db8::1 . 22 }",
             "add element inet t a4 { 198.18.0.1 timeout 30s }",  // a set without timeouts
             "add element inet t aint { 198.18.0.1 }",
             "add element inet t amap { 198.18.0.1 }",
             "add element inet t amark { 1 }",
         }) {
      const auto result = fast(writer, text);
      EXPECT_EQ(result.outcome, Outcome::NotApplicable) << text << ": " << result.error;
    }
    EXPECT_EQ(nft.elements("a4"), std::vector<std::string>{});
    EXPECT_EQ(nft.elements("a4p"), std::vector<std::string>{});

    // Through NftExecutor: the fallback reports nft's own error.
    NftExecutor executor;
    std::string error;
    EXPECT_FALSE(executor.run("add element inet t nosuch { 198.18.0.1 }", &error));
    EXPECT_NE(error.find("No such file or directory"), std::string::npos) << error;
    error.clear();
    EXPECT_FALSE(executor.run("add element inet t a4 { 2001:db8::1 }", &error));
    EXPECT_FALSE(error.empty());
    EXPECT_TRUE(executor.run("add element inet t a4 { 198.18.0.9 }", &error)) << error;
    EXPECT_EQ(nft.elements("a4"), std::vector<std::string>{"198.18.0.9"});
    EXPECT_TRUE(executor.run("delete element inet t a4 { 198.18.0.9 }", &error)) << error;
    EXPECT_EQ(nft.elements("a4"), std::vector<std::string>{});

    // The kernel's refusals, in nft's words and naming the set.
    auto result = fast(writer, "delete element inet t a4 { 198.18.0.1 }");
    EXPECT_EQ(result.outcome, Outcome::Failed);
    EXPECT_EQ(result.error, "Error: Could not process rule: No such file or directory (set inet t a4)");
    EXPECT_NE(nft.run("delete element inet t b4 { 198.18.0.1 }").find("No such file or directory"), std::string::npos);
    EXPECT_EQ(fast(writer, "create element inet t a4 { 198.18.0.1 }").outcome, Outcome::Done);
    result = fast(writer, "create element inet t a4 { 198.18.0.1 }");
    EXPECT_EQ(result.outcome, Outcome::Failed);
    EXPECT_EQ(result.error, "Error: Could not process rule: File exists (set inet t a4)");
    EXPECT_EQ(nft.run("create element inet t b4 { 198.18.0.1 }"), "");
    EXPECT_NE(nft.run("create element inet t b4 { 198.18.0.1 }").find("File exists"), std::string::npos);
    // The socket survives a refusal.
    EXPECT_EQ(fast(writer, "add element inet t a4 { 198.18.0.2 }").outcome, Outcome::Done);

    // The set re-created with another key type between two commands: never a stale encoding.
    ASSERT_EQ(nft.run("delete set inet t a4"), "");
    ASSERT_EQ(nft.run("add set inet t a4 { type ipv6_addr; }"), "");
    EXPECT_EQ(fast(writer, "add element inet t a4 { 198.18.0.3 }").outcome, Outcome::NotApplicable);
    EXPECT_FALSE(executor.run("add element inet t a4 { 198.18.0.3 }", &error));
    EXPECT_EQ(fast(writer, "add element inet t a4 { 2001:db8::3 }").outcome, Outcome::Done);
    EXPECT_EQ(nft.elements("a4"), std::vector<std::string>{"2001:db8::3"});
  });
}

TEST(NftElementWriter, WithoutThePrivilegeNothingIsWritten) {
  // Without CAP_NET_ADMIN the kernel refuses the set lookup: libnftables then runs the command
  // (and says "Operation not permitted"), never a half-done fast path.
  in_netns([] {
    Nft nft;
    ASSERT_EQ(nft.run(kRuleset), "");
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      if (setresuid(65534, 65534, 65534) != 0) _exit(3);
      ElementWriter writer;
      const auto command = parse_element_command("add element inet t a4 { 198.18.0.1 }");
      _exit(command && writer.write(*command).outcome == Outcome::NotApplicable ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    EXPECT_EQ(nft.elements("a4"), std::vector<std::string>{});
  });
}

}  // namespace
}  // namespace knock::rules
