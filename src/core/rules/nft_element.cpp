#include "rules/nft_element.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <poll.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "util/address.hpp"
#include "util/clock.hpp"
#include "util/error.hpp"

namespace knock::rules {

namespace {

// nft's datatype numbers (nftables include/datatype.h) and its concatenation shift (TYPE_BITS).
constexpr std::uint32_t kTypeIpv4 = 7;
constexpr std::uint32_t kTypeIpv6 = 8;
constexpr std::uint32_t kTypeInetService = 13;
constexpr unsigned kTypeBits = 6;
constexpr std::size_t kMaxFields = 5;       // 5 x 6 bits: what a 32-bit key type holds
constexpr std::size_t kMaxKeyBytes = 64;    // NFT_DATA_VALUE_MAXLEN
constexpr std::size_t kMaxNameLength = 255;  // NFT_NAME_MAXLEN - 1
constexpr std::size_t kMaxCommandLength = 1024;
constexpr int kDeadlineMs = 1000;

bool is_space(char c) { return c == ' ' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Words and braces; false on a character nft would read as something else (quotes, `;`, `,`,
// `$`, `@`, `#`, newlines, control bytes, non-ASCII...).
bool split_words(std::string_view text, std::vector<std::string_view>* words) {
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (is_space(c)) {
      ++i;
    } else if (c == '{' || c == '}') {
      words->push_back(text.substr(i, 1));
      ++i;
    } else {
      const std::size_t start = i;
      while (i < text.size() && !is_space(text[i]) && text[i] != '{' && text[i] != '}') {
        const char d = text[i];
        if (!is_letter(d) && !is_digit(d) && d != '.' && d != ':' && d != '_' && d != '-' && d != '/') return false;
        ++i;
      }
      words->push_back(text.substr(start, i - start));
    }
    if (words->size() > 64) return false;
  }
  return true;
}

std::optional<std::uint8_t> family_of(std::string_view word) {
  if (word == "ip") return NFPROTO_IPV4;
  if (word == "ip6") return NFPROTO_IPV6;
  if (word == "inet") return NFPROTO_INET;
  if (word == "arp") return NFPROTO_ARP;
  if (word == "bridge") return NFPROTO_BRIDGE;
  if (word == "netdev") return NFPROTO_NETDEV;
  return std::nullopt;
}

// nft's identifier ({letter}|[_.])({letter}|{digit}|[/\-_.])*, minus the words that would read
// as keywords here.
bool is_identifier(std::string_view word) {
  if (word.empty() || word.size() > kMaxNameLength || word == ".") return false;
  if (!is_letter(word[0]) && word[0] != '_' && word[0] != '.') return false;
  for (const char c : word) {
    if (!is_letter(c) && !is_digit(c) && c != '/' && c != '-' && c != '_' && c != '.') return false;
  }
  if (family_of(word)) return false;
  for (const char* keyword : {"element", "table", "set", "map", "timeout", "expires", "add", "create", "delete"}) {
    if (word == keyword) return false;
  }
  return true;
}

// Decimal without a leading zero (nft reads 022 as octal), 0..max.
std::optional<std::uint32_t> parse_decimal(std::string_view word, std::uint32_t max) {
  if (word.empty() || word.size() > 10 || (word.size() > 1 && word[0] == '0')) return std::nullopt;
  std::uint64_t value = 0;
  for (const char c : word) {
    if (!is_digit(c)) return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (value > max) return std::nullopt;
  return static_cast<std::uint32_t>(value);
}

std::optional<ElementField> parse_value(std::string_view word) {
  ElementField field;
  if (word.find_first_of(".:") != std::string_view::npos) {
    // An address: a dotted quad, or IPv6 of hex digits and colons only (no embedded IPv4, zone
    // or brackets: nft's scanner reads those differently).
    if (word.find(':') != std::string_view::npos)
      for (const char c : word)
        if (!is_hex(c) && c != ':') return std::nullopt;
    const auto address = IpAddress::parse(word);
    if (!address) return std::nullopt;
    field.kind = address->is_v4() ? ElementField::Kind::Ipv4 : ElementField::Kind::Ipv6;
    field.length = static_cast<std::uint8_t>(address->size());
    std::memcpy(field.bytes.data(), address->bytes(), address->size());
    return field;
  }
  const auto port = parse_decimal(word, 65535);
  if (!port) return std::nullopt;
  field.kind = ElementField::Kind::Port;
  field.bytes[0] = static_cast<std::uint8_t>(*port >> 8);
  field.bytes[1] = static_cast<std::uint8_t>(*port & 0xff);
  field.length = 2;
  return field;
}

// nft's time string ([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?, at most 8 digits a
// unit (nftables' time_parse), in milliseconds. A bare number is not a time for nft: nullopt.
std::optional<std::uint64_t> parse_time(std::string_view word) {
  static constexpr std::uint64_t kUnits[] = {86400000, 3600000, 60000, 1000, 1};
  std::size_t next_unit = 0;  // units must come in the order d h m s ms
  std::uint64_t total = 0;
  std::size_t i = 0;
  if (word.empty()) return std::nullopt;
  while (i < word.size()) {
    std::uint64_t number = 0;
    std::size_t digits = 0;
    while (i < word.size() && is_digit(word[i])) {
      if (++digits > 8) return std::nullopt;
      number = number * 10 + static_cast<std::uint64_t>(word[i] - '0');
      ++i;
    }
    if (digits == 0 || i >= word.size()) return std::nullopt;
    std::size_t unit = 0;
    if (word[i] == 'd') {
      unit = 0;
    } else if (word[i] == 'h') {
      unit = 1;
    } else if (word[i] == 'm' && i + 1 < word.size() && word[i + 1] == 's') {
      unit = 4;
      ++i;
    } else if (word[i] == 'm') {
      unit = 2;
    } else if (word[i] == 's') {
      unit = 3;
    } else {
      return std::nullopt;
    }
    ++i;
    if (unit < next_unit) return std::nullopt;
    next_unit = unit + 1;
    total += number * kUnits[unit];  // at most 99999999 days: no overflow
  }
  return total;
}

}  // namespace

std::uint32_t ElementField::nft_type() const noexcept {
  switch (kind) {
    case Kind::Ipv4:
      return kTypeIpv4;
    case Kind::Ipv6:
      return kTypeIpv6;
    case Kind::Port:
      return kTypeInetService;
  }
  return 0;
}

std::uint32_t ElementCommand::key_type() const noexcept {
  std::uint32_t type = 0;
  for (const ElementField& field : key) type = type << kTypeBits | field.nft_type();
  return type;
}

std::vector<std::uint8_t> ElementCommand::key_bytes() const {
  std::vector<std::uint8_t> out;
  for (const ElementField& field : key) {
    out.insert(out.end(), field.bytes.begin(), field.bytes.begin() + field.length);
    if (key.size() > 1) out.resize((out.size() + 3) / 4 * 4, 0);
  }
  return out;
}

std::string ElementCommand::set_text() const { return "set " + family_name + " " + table + " " + set; }

std::optional<ElementCommand> parse_element_command(std::string_view text) noexcept {
  try {
    if (text.size() > kMaxCommandLength) return std::nullopt;
    std::vector<std::string_view> words;
    if (!split_words(text, &words)) return std::nullopt;
    ElementCommand command;
    std::size_t i = 0;
    auto word = [&](std::size_t k) -> std::string_view { return k < words.size() ? words[k] : std::string_view{}; };
    if (word(0) == "add") {
      command.verb = ElementVerb::Add;
    } else if (word(0) == "create") {
      command.verb = ElementVerb::Create;
    } else if (word(0) == "delete") {
      command.verb = ElementVerb::Delete;
    } else {
      return std::nullopt;
    }
    if (word(1) != "element") return std::nullopt;
    i = 2;
    // [FAMILY] TABLE SET {
    if (word(i + 3) == "{") {
      const auto family = family_of(word(i));
      if (!family) return std::nullopt;
      command.family = *family;
      command.family_name = std::string(word(i));
      ++i;
    } else if (word(i + 2) == "{") {
      command.family = NFPROTO_IPV4;  // nft's default family
      command.family_name = "ip";
    } else {
      return std::nullopt;
    }
    if (!is_identifier(word(i)) || !is_identifier(word(i + 1))) return std::nullopt;
    command.table = std::string(word(i));
    command.set = std::string(word(i + 1));
    i += 3;
    // KEY: value (. value)*
    while (true) {
      const auto field = parse_value(word(i));
      if (!field || command.key.size() >= kMaxFields) return std::nullopt;
      command.key.push_back(*field);
      ++i;
      if (word(i) != ".") break;
      ++i;
    }
    if (word(i) == "timeout") {
      const auto ms = parse_time(word(i + 1));
      // 0 would make nft send no timeout at all (the set's default applies); the kernel refuses
      // absurd ones with its own words: both are left to libnftables.
      if (!ms || *ms == 0 || *ms > 100ULL * 365 * 86400000) return std::nullopt;
      if (command.verb == ElementVerb::Delete) return std::nullopt;
      command.timeout_ms = *ms;
      i += 2;
    }
    if (word(i) != "}" || i + 1 != words.size()) return std::nullopt;
    if (command.key_bytes().size() > kMaxKeyBytes) return std::nullopt;
    return command;
  } catch (...) {
    return std::nullopt;
  }
}

// ---------------------------------------------------------------------------------------------

// What the kernel says about the set (NFT_MSG_NEWSET, the answer to NFT_MSG_GETSET).
struct ElementWriter::SetInfo {
  bool found = false;
  bool malformed = false;
  std::string table;
  std::string name;
  bool has_key_type = false, has_key_len = false;
  std::uint32_t flags = 0, key_type = 0, key_len = 0;
  bool has_data = false;  // a map (data type), an object map, or set expressions
  std::vector<std::uint32_t> field_len;
  // The ruleset's generation (NFT_MSG_GETGEN, asked just before the set): the batch carries it,
  // and the kernel refuses the batch if anything changed since (the set re-created as an
  // interval set would take the lone key for the start of an open-ended range).
  bool has_genid = false;
  std::uint32_t genid = 0;
};

namespace {

struct AttrTable {
  const nlattr* tb[NFTA_SET_MAX + 1] = {};
};

int set_attribute(const nlattr* attr, void* data) {
  auto* table = static_cast<AttrTable*>(data);
  const int type = mnl_attr_get_type(attr);
  if (type < 0 || type > NFTA_SET_MAX) return MNL_CB_OK;  // newer kernels: ignore what we do not know
  table->tb[type] = attr;
  return MNL_CB_OK;
}

bool read_u32(const nlattr* attr, std::uint32_t* out) {
  if (attr == nullptr) return false;
  if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0) return false;
  *out = ntohl(mnl_attr_get_u32(attr));
  return true;
}

bool read_string(const nlattr* attr, std::string* out) {
  if (attr == nullptr || mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0) return false;
  *out = mnl_attr_get_str(attr);
  return true;
}

// The attributes nested in `nest` (libmnl's mnl_attr_for_each_nested, which C++ cannot compile).
template <class Visit>
bool for_each_nested(const nlattr* nest, Visit visit) {
  const char* start = static_cast<const char*>(mnl_attr_get_payload(nest));
  const char* end = start + mnl_attr_get_payload_len(nest);
  for (auto* attr = reinterpret_cast<const nlattr*>(start);
       mnl_attr_ok(attr, static_cast<int>(end - reinterpret_cast<const char*>(attr))); attr = mnl_attr_next(attr)) {
    if (!visit(attr)) return false;
  }
  return true;
}

// NFTA_SET_DESC { NFTA_SET_DESC_CONCAT { NFTA_LIST_ELEM { NFTA_SET_FIELD_LEN u32 } ... } }
bool read_fields(const nlattr* desc, std::vector<std::uint32_t>* out) {
  if (mnl_attr_validate(desc, MNL_TYPE_NESTED) < 0) return false;
  return for_each_nested(desc, [out](const nlattr* concat) {
    if (mnl_attr_get_type(concat) != NFTA_SET_DESC_CONCAT) return true;
    if (mnl_attr_validate(concat, MNL_TYPE_NESTED) < 0) return false;
    return for_each_nested(concat, [out](const nlattr* element) {
      if (mnl_attr_get_type(element) != NFTA_LIST_ELEM || mnl_attr_validate(element, MNL_TYPE_NESTED) < 0) return false;
      bool seen = false;
      const bool ok = for_each_nested(element, [out, &seen](const nlattr* field) {
        std::uint32_t length = 0;
        if (mnl_attr_get_type(field) != NFTA_SET_FIELD_LEN || !read_u32(field, &length)) return false;
        if (seen || out->size() >= 16) return false;
        out->push_back(length);
        seen = true;
        return true;
      });
      return ok && seen;
    });
  });
}

double now_ms() { return mono_seconds() * 1e3; }

// Owning pointers for libnftnl's objects.
struct SetFree {
  void operator()(nftnl_set* s) const noexcept { nftnl_set_free(s); }
};
using SetPtr = std::unique_ptr<nftnl_set, SetFree>;

}  // namespace

ElementWriter::~ElementWriter() { close(); }

bool ElementWriter::open() noexcept {
  if (socket_ != nullptr) return true;
  socket_ = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  if (socket_ == nullptr) return false;
  if (mnl_socket_bind(socket_, 0, MNL_SOCKET_AUTOPID) < 0) {
    close();
    return false;
  }
  portid_ = mnl_socket_get_portid(socket_);
  if (sequence_ == 0) sequence_ = static_cast<std::uint32_t>(::time(nullptr));
  return true;
}

void ElementWriter::close() noexcept {
  if (socket_ != nullptr) mnl_socket_close(socket_);
  socket_ = nullptr;
  portid_ = 0;
}

// The answer to a request numbered first..last is read until it is settled. With `set`, that is
// the set's description (NFT_MSG_NEWSET); without, the acknowledgement of request first + 1 (the
// element message of a batch). Returns 0 when settled, an errno (> 0) the kernel answered with
// for one of the requests, -1 on no answer within the deadline, -2 on a socket failure.
// Messages of other (older, abandoned) requests are skipped.
int ElementWriter::talk(const void* request, std::size_t length, std::uint32_t first, std::uint32_t last,
                        SetInfo* set, std::string* error) noexcept {
  if (mnl_socket_sendto(socket_, request, length) < 0) {
    *error = "sending to the kernel: " + errno_message(errno);
    return -2;
  }
  const double deadline = now_ms() + kDeadlineMs;
  alignas(nlmsghdr) char buffer[16384];
  while (true) {
    const double left = deadline - now_ms();
    if (left <= 0) {
      *error = "no answer from the kernel within 1 s";
      return -1;
    }
    pollfd p{mnl_socket_get_fd(socket_), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      *error = "waiting for the kernel: " + errno_message(errno);
      return -2;
    }
    if (ready == 0) continue;
    const ssize_t n = mnl_socket_recvfrom(socket_, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      *error = "reading the kernel's answer: " + errno_message(errno);
      return -2;
    }
    int left_bytes = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buffer); mnl_nlmsg_ok(nlh, left_bytes);
         nlh = mnl_nlmsg_next(nlh, &left_bytes)) {
      if (nlh->nlmsg_seq < first || nlh->nlmsg_seq > last || (nlh->nlmsg_pid != 0 && nlh->nlmsg_pid != portid_))
        continue;
      if (nlh->nlmsg_type == NLMSG_ERROR) {
        if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) {
          *error = "a truncated answer from the kernel";
          return -2;
        }
        const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (err->error != 0) return err->error < 0 ? -err->error : err->error;
        if (set == nullptr && nlh->nlmsg_seq == first + 1) return 0;
        continue;
      }
      if (set != nullptr && nlh->nlmsg_type == ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) {
        const nlattr* tb[NFTA_GEN_MAX + 1] = {};
        if (nlh->nlmsg_len >= mnl_nlmsg_size(sizeof(nfgenmsg)) &&
            mnl_attr_parse(
                nlh, sizeof(nfgenmsg),
                [](const nlattr* attr, void* data) {
                  const int type = mnl_attr_get_type(attr);
                  if (type >= 0 && type <= NFTA_GEN_MAX) static_cast<const nlattr**>(data)[type] = attr;
                  return MNL_CB_OK;
                },
                tb) >= 0)
          set->has_genid = read_u32(tb[NFTA_GEN_ID], &set->genid);
        continue;
      }
      if (set != nullptr && nlh->nlmsg_type == ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSET)) {
        AttrTable table;
        if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nfgenmsg)) ||
            mnl_attr_parse(nlh, sizeof(nfgenmsg), set_attribute, &table) < 0) {
          set->malformed = true;
          return 0;
        }
        const nlattr* const* tb = table.tb;
        set->found = true;
        if (!read_string(tb[NFTA_SET_TABLE], &set->table) || !read_string(tb[NFTA_SET_NAME], &set->name))
          set->malformed = true;
        if (tb[NFTA_SET_FLAGS] != nullptr && !read_u32(tb[NFTA_SET_FLAGS], &set->flags)) set->malformed = true;
        set->has_key_type = read_u32(tb[NFTA_SET_KEY_TYPE], &set->key_type);
        set->has_key_len = read_u32(tb[NFTA_SET_KEY_LEN], &set->key_len);
        set->has_data = tb[NFTA_SET_DATA_TYPE] != nullptr || tb[NFTA_SET_DATA_LEN] != nullptr ||
                        tb[NFTA_SET_OBJ_TYPE] != nullptr || tb[NFTA_SET_EXPR] != nullptr ||
                        tb[NFTA_SET_EXPRESSIONS] != nullptr;
        if (tb[NFTA_SET_DESC] != nullptr && !read_fields(tb[NFTA_SET_DESC], &set->field_len)) set->malformed = true;
        return 0;
      }
    }
  }
}

ElementWriter::Result ElementWriter::lookup(const ElementCommand& command, SetInfo* info) noexcept {
  Result result;  // NotApplicable
  SetPtr query(nftnl_set_alloc());
  if (!query) return {Outcome::NotApplicable, "out of memory"};
  nftnl_set_set_str(query.get(), NFTNL_SET_TABLE, command.table.c_str());
  nftnl_set_set_str(query.get(), NFTNL_SET_NAME, command.set.c_str());
  alignas(nlmsghdr) char request[2048];
  // The generation first, then the set, in one send: the kernel answers them in this order.
  const std::uint32_t gen_seq = ++sequence_;
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(request, NFT_MSG_GETGEN, AF_UNSPEC, 0, gen_seq);
  std::size_t length = nlh->nlmsg_len;
  const std::uint32_t seq = ++sequence_;
  nlh = nftnl_nlmsg_build_hdr(request + length, NFT_MSG_GETSET, command.family, 0, seq);
  nftnl_set_nlmsg_build_payload(nlh, query.get());
  length += nlh->nlmsg_len;
  const int rc = talk(request, length, gen_seq, seq, info, &result.error);
  if (rc < 0) {
    close();
    return result;
  }
  if (rc > 0) {
    result.error = "the kernel answered " + errno_message(rc) + " about the " + command.set_text();
    return result;
  }
  if (!info->found || info->malformed || !info->has_genid || info->table != command.table ||
      info->name != command.set) {
    result.error = "an unexpected description of the " + command.set_text();
    return result;
  }
  result.outcome = Outcome::Done;
  return result;
}

ElementWriter::Result ElementWriter::write(const ElementCommand& command) noexcept {
  try {
    if (command.key.empty() || command.table.size() > kMaxNameLength || command.set.size() > kMaxNameLength)
      return {Outcome::NotApplicable, "not a single element"};
    if (!open()) return {Outcome::NotApplicable, "no netfilter netlink socket: " + errno_message(errno)};
    if (sequence_ > 0xffff0000u) sequence_ = 1;  // the numbers of one batch never wrap around

    // 1. The set as it is now (never cached: the admin may have re-created it with another type).
    SetInfo info;
    Result found = lookup(command, &info);
    if (found.outcome != Outcome::Done) return found;
    const std::vector<std::uint8_t> key = command.key_bytes();
    // The kernel leaves NFTA_SET_FLAGS out when there are none.
    constexpr std::uint32_t kAccepted = NFT_SET_TIMEOUT | NFT_SET_EVAL;
    if (!info.has_key_type || !info.has_key_len || info.has_data || (info.flags & ~kAccepted) != 0)
      return {Outcome::NotApplicable, "the " + command.set_text() + " is not a plain set"};
    if (info.key_type != command.key_type() || info.key_len != key.size())
      return {Outcome::NotApplicable, "the key does not fit the " + command.set_text()};
    if (!info.field_len.empty()) {
      if (info.field_len.size() != command.key.size())
        return {Outcome::NotApplicable, "the key does not fit the " + command.set_text()};
      for (std::size_t k = 0; k < command.key.size(); ++k) {
        if (info.field_len[k] != command.key[k].length)
          return {Outcome::NotApplicable, "the key does not fit the " + command.set_text()};
      }
    }
    if (command.timeout_ms != 0 && (info.flags & NFT_SET_TIMEOUT) == 0)
      return {Outcome::NotApplicable, "the " + command.set_text() + " has no timeouts"};

    if (between_for_test) between_for_test();
    // 2. One batch: the element message between BATCH_BEGIN and BATCH_END, as nft sends it
    // (NLM_F_CREATE for add, with NLM_F_EXCL for create), plus an acknowledgement to wait for.
    SetPtr set(nftnl_set_alloc());
    nftnl_set_elem* element = nftnl_set_elem_alloc();
    if (!set || element == nullptr) {
      if (element != nullptr) nftnl_set_elem_free(element);
      return {Outcome::NotApplicable, "out of memory"};
    }
    nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, command.table.c_str());
    nftnl_set_set_str(set.get(), NFTNL_SET_NAME, command.set.c_str());
    nftnl_set_elem_set(element, NFTNL_SET_ELEM_KEY, key.data(), static_cast<std::uint32_t>(key.size()));
    if (command.timeout_ms != 0) nftnl_set_elem_set_u64(element, NFTNL_SET_ELEM_TIMEOUT, command.timeout_ms);
    nftnl_set_elem_add(set.get(), element);  // the set owns it now

    // Names of at most 255 bytes and a key of at most 64: well under 2 KiB in all.
    alignas(nlmsghdr) char request[4096];
    std::size_t length = 0;
    const std::uint32_t begin = ++sequence_;
    const std::uint32_t message = ++sequence_;
    const std::uint32_t end = ++sequence_;
    nlmsghdr* nlh = nftnl_batch_begin(request, begin);
    mnl_attr_put_u32(nlh, NFNL_BATCH_GENID, htonl(info.genid));  // nothing changed since the lookup
    length += nlh->nlmsg_len;
    std::uint16_t flags = NLM_F_ACK;
    std::uint16_t type = NFT_MSG_DELSETELEM;
    if (command.verb != ElementVerb::Delete) {
      type = NFT_MSG_NEWSETELEM;
      flags |= NLM_F_CREATE;
      if (command.verb == ElementVerb::Create) flags |= NLM_F_EXCL;
    }
    nlh = nftnl_nlmsg_build_hdr(request + length, type, command.family, flags, message);
    nftnl_set_elems_nlmsg_build_payload(nlh, set.get());
    length += nlh->nlmsg_len;
    nlh = nftnl_batch_end(request + length, end);
    length += nlh->nlmsg_len;

    Result result;
    const int rc = talk(request, length, begin, end, nullptr, &result.error);
    if (rc == 0) {
      result.outcome = Outcome::Done;
    } else if (rc == ERESTART) {  // the ruleset changed since the lookup: nothing was written
      result.outcome = Outcome::NotApplicable;
      result.error = "the ruleset changed while the " + command.set_text() + " was looked up";
    } else if (rc > 0) {
      result.outcome = Outcome::Failed;
      result.error = "Error: Could not process rule: " + errno_message(rc) + " (" + command.set_text() + ")";
    } else if (rc == -2 && result.error.rfind("sending", 0) == 0) {
      close();  // nothing reached the kernel: libnftables may try
      result.outcome = Outcome::NotApplicable;
    } else {
      close();  // a late answer must not be read as the next command's
      result.outcome = Outcome::Failed;
      result.error = "Error: " + result.error + " (" + command.set_text() + ")";
    }
    return result;
  } catch (...) {
    return {Outcome::NotApplicable, "out of memory"};
  }
}

}  // namespace knock::rules
