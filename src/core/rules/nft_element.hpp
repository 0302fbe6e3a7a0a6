#pragma once
// Set elements over netlink (libnftnl + libmnl), the fast path of the template key `nft`.
// `add element inet pk allowed { 198.18.0.2 . 22 timeout 30s }` through libnftables costs a
// bison/flex parse and about seven netlink round trips to rebuild nft's cache (each added element
// bumps the ruleset generation, so the cache is never reused). Here the same command is one
// question (NFT_MSG_GETGEN and NFT_MSG_GETSET: the ruleset's generation, the set's key type and
// flags, asked every time, never cached) and one batch (NFT_MSG_NEWSETELEM or
// NFT_MSG_DELSETELEM), as nft itself would send it, carrying that generation: if the ruleset
// changed in between (the set re-created), the kernel refuses it and libnftables runs the command.
//
// Only a narrow, strictly parsed form qualifies (parse_element_command); anything else, and any
// set whose type the key does not match exactly, is left to libnftables (NftExecutor).
#include <array>
#include <functional>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct mnl_socket;

namespace knock::rules {

enum class ElementVerb : std::uint8_t { Add, Create, Delete };

// One field of an element's key, as nft encodes it: the bytes in network order.
struct ElementField {
  enum class Kind : std::uint8_t { Ipv4, Ipv6, Port };
  Kind kind = Kind::Ipv4;
  std::array<std::uint8_t, 16> bytes{};
  std::uint8_t length = 0;  // 4, 16 or 2

  std::uint32_t nft_type() const noexcept;  // nft's datatype: ipv4_addr 7, ipv6_addr 8, inet_service 13
};

struct ElementCommand {
  ElementVerb verb = ElementVerb::Add;
  std::uint8_t family = 0;  // NFPROTO_*
  std::string family_name;  // as written ("ip" when omitted)
  std::string table;
  std::string set;
  std::vector<ElementField> key;     // one field, or a concatenation (at most 5: nft's 32-bit type)
  std::uint64_t timeout_ms = 0;      // 0: none given

  // nft's key type of the set this key fits: concatenations are (t1 << 6 | t2) << 6 | t3 ...
  std::uint32_t key_type() const noexcept;
  // The key as the kernel compares it: one field as is, a concatenation's fields each padded
  // with zeros to a multiple of 4 bytes (one nft register).
  std::vector<std::uint8_t> key_bytes() const;
  std::string set_text() const;  // "set inet pk allowed"
};

// `add|create|delete element [FAMILY] TABLE SET { KEY [timeout T] }` with KEY one value or a
// concatenation `A . B ...` of IPv4 addresses, IPv6 addresses and decimal ports, and T nft's
// time (1d2h3m4s5ms, units in that order). nullopt for anything else: several elements, ranges,
// names, variables, quotes, comments, counters, maps, other options, trailing text. Never throws.
std::optional<ElementCommand> parse_element_command(std::string_view text) noexcept;

// Writes one element through a NETLINK_NETFILTER socket opened on first use and kept (reopened
// after an error). Needs CAP_NET_ADMIN. Every wait has a deadline of one second.
class ElementWriter {
 public:
  enum class Outcome : std::uint8_t {
    Done,           // the kernel accepted the batch
    Failed,         // the kernel refused it, or did not answer: `error` says why
    NotApplicable,  // nothing was written: use libnftables (`error` says why, for the debug log)
  };
  struct Result {
    Outcome outcome = Outcome::NotApplicable;
    std::string error;
  };

  ElementWriter() = default;
  ~ElementWriter();
  ElementWriter(const ElementWriter&) = delete;
  ElementWriter& operator=(const ElementWriter&) = delete;

  Result write(const ElementCommand& command) noexcept;

  // Tests only: runs between the set's description and the batch (the window in which another
  // process may re-create the set).
  std::function<void()> between_for_test;

 private:
  struct SetInfo;
  bool open() noexcept;
  void close() noexcept;
  // Sends `length` bytes and reads answers until the request numbered `last` is settled;
  // see the .cpp for what `on_message` and the return values mean.
  int talk(const void* request, std::size_t length, std::uint32_t first, std::uint32_t last,
           SetInfo* set, std::string* error) noexcept;
  Result lookup(const ElementCommand& command, SetInfo* info) noexcept;

  mnl_socket* socket_ = nullptr;
  std::uint32_t portid_ = 0;
  std::uint32_t sequence_ = 0;
};

}  // namespace knock::rules
