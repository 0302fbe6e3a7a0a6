#include "codec/fwknop.hpp"

#define CRYPTOPP_ENABLE_NAMESPACE_WEAK 1
#include <cryptopp/aes.h>
#include <cryptopp/md5.h>
#include <cryptopp/sha.h>
#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <optional>
#include <unordered_set>

#include "codec/keys.hpp"
#include "config/tree.hpp"
#include "util/files.hpp"
#include "util/text.hpp"

namespace knock::fwknop {
namespace {

constexpr std::size_t kBlock = 64;  // SHA-256 block size: the HMAC pad length
constexpr std::size_t kWireMax = kSaltedPrefix.size() + kMaxPacketBytes;  // text the HMAC covers, at most
constexpr std::size_t kBytesMax = kWireMax * 3 / 4 + 3;                    // its decoded bytes, at most

// -1 for a byte outside the standard base64 alphabet.
constexpr std::array<std::int8_t, 256> make_table() {
  std::array<std::int8_t, 256> t{};
  for (auto& v : t) v = -1;
  const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(a[i])] = static_cast<std::int8_t>(i);
  return t;
}
constexpr std::array<std::int8_t, 256> kTable = make_table();

bool all_base64(const std::uint8_t* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (kTable[p[i]] < 0) return false;
  return true;
}

// HMAC-SHA256 (RFC 2104) with a key already reduced to one 64-byte block. Crypto++'s HMAC<>
// allocates its pads on the heap; this keeps everything on the stack.
void hmac_sha256(const std::uint8_t* key_block, const std::uint8_t* msg, std::size_t len, std::uint8_t* out) noexcept {
  std::uint8_t pad[kBlock];
  std::uint8_t inner[32];
  CryptoPP::SHA256 h;
  for (std::size_t i = 0; i < kBlock; ++i) pad[i] = static_cast<std::uint8_t>(key_block[i] ^ 0x36);
  h.Update(pad, kBlock);
  h.Update(msg, len);
  h.Final(inner);
  for (std::size_t i = 0; i < kBlock; ++i) pad[i] = static_cast<std::uint8_t>(key_block[i] ^ 0x5c);
  h.Update(pad, kBlock);
  h.Update(inner, sizeof inner);
  h.Final(out);
  sodium_memzero(pad, sizeof pad);
  sodium_memzero(inner, sizeof inner);
}

bool all_digits(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

template <typename T>
bool parse_number(std::string_view s, T& out) noexcept {
  if (!all_digits(s) || (s.size() > 1 && s[0] == '0')) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

// Dotted quad, each part 0..255 without leading zeros.
bool parse_ipv4(std::string_view s, std::uint32_t& out) noexcept {
  std::uint32_t v = 0;
  for (int part = 0; part < 4; ++part) {
    const std::size_t dot = part < 3 ? s.find('.') : s.size();
    if (dot == std::string_view::npos) return false;
    unsigned n = 0;
    if (dot > 3 || !parse_number(s.substr(0, dot), n) || n > 255) return false;
    v = (v << 8) | n;
    s = part < 3 ? s.substr(dot + 1) : std::string_view{};
  }
  out = v;
  return true;
}

bool parse_request(std::string_view s, PortRequest& out) noexcept {
  const std::size_t slash = s.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view proto = s.substr(0, slash);
  if (proto.size() != 3) return false;
  char p[3];
  for (int i = 0; i < 3; ++i) p[i] = static_cast<char>(proto[i] >= 'A' && proto[i] <= 'Z' ? proto[i] - 'A' + 'a' : proto[i]);
  if (std::string_view(p, 3) == "tcp") out.proto = Proto::Tcp;
  else if (std::string_view(p, 3) == "udp") out.proto = Proto::Udp;
  else return false;
  unsigned port = 0;
  if (!parse_number(s.substr(slash + 1), port) || port == 0 || port > 65535) return false;
  out.port = static_cast<std::uint16_t>(port);
  return true;
}

// Characters a user name may hold: it reaches logs and, as USER, commands.
bool good_user_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '@';
}

std::int64_t saturating_offset(std::int64_t t, std::int64_t now) noexcept {
  std::int64_t d = 0;
  if (__builtin_sub_overflow(t, now, &d)) return now < 0 ? std::numeric_limits<std::int64_t>::max()
                                                         : std::numeric_limits<std::int64_t>::min();
  return d;
}

std::string_view as_text(const std::uint8_t* p, std::size_t n) noexcept {
  return {reinterpret_cast<const char*>(p), n};
}

// Decodes a base64 field into `out` (capacity `cap` characters): printable text only.
bool decode_text_field(std::string_view field, char* out, std::size_t cap, std::size_t& len) noexcept {
  if (field.empty() || field.size() > (cap * 4 + 2) / 3) return false;
  if (!base64_decode(field, reinterpret_cast<std::uint8_t*>(out), cap, len) || len == 0) return false;
  for (std::size_t i = 0; i < len; ++i)
    if (out[i] < 0x20 || out[i] > 0x7e) return false;
  return true;
}

}  // namespace

std::string_view proto_name(Proto proto) noexcept { return proto == Proto::Udp ? "udp" : "tcp"; }

bool Network::contains(const IpAddress& a) const noexcept {
  if (a.family() != address.family()) return false;
  const std::uint8_t* x = a.bytes();
  const std::uint8_t* y = address.bytes();
  int bits = prefix;
  for (std::size_t i = 0; bits > 0; ++i, bits -= 8) {
    const std::uint8_t mask = bits >= 8 ? 0xFF : static_cast<std::uint8_t>(0xFF << (8 - bits));
    if ((x[i] & mask) != (y[i] & mask)) return false;
  }
  return true;
}

bool Stanza::source_allowed(const IpAddress& source) const noexcept {
  if (sources.empty()) return true;
  for (const auto& n : sources)
    if (n.contains(source)) return true;
  return false;
}

bool Stanza::port_allowed(const PortRequest& request) const noexcept {
  return std::find(open_ports.begin(), open_ports.end(), request) != open_ports.end();
}

bool base64_decode(std::string_view text, std::uint8_t* out, std::size_t capacity, std::size_t& length) noexcept {
  const std::size_t n = text.size();
  if (n % 4 == 1) return false;
  const std::size_t want = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
  if (want > capacity) return false;
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t o = 0;
  for (char ch : text) {
    const int v = kTable[static_cast<unsigned char>(ch)];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = static_cast<std::uint8_t>(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) return false;  // stray bits: two spellings of the same bytes would defeat the replay cache
  length = o;
  return true;
}

std::string base64_encode(std::span<const std::uint8_t> bytes) {
  static constexpr char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::uint8_t b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(a[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(a[(acc << (6 - bits)) & 63]);
  return out;
}

std::string_view to_string(Reason reason) noexcept {
  switch (reason) {
    case Reason::Ok: return "ok";
    case Reason::Size: return "wrong size";
    case Reason::Base64: return "not base64";
    case Reason::Source: return "no fwknop stanza for this source";
    case Reason::Hmac: return "HMAC failed (forged, corrupted, another key, or no HMAC)";
    case Reason::Decrypt: return "authentic but does not decrypt";
    case Reason::Fields: return "malformed fields";
    case Reason::Digest: return "digest mismatch or not SHA-256";
    case Reason::Version: return "not protocol 3.0.0";
    case Reason::TooOld: return "too old";
    case Reason::TooNew: return "too new (sender's clock ahead)";
    case Reason::MessageType: return "command message refused";
    case Reason::Nat: return "NAT access refused";
    case Reason::ServerAuth: return "server auth refused";
    case Reason::User: return "user not allowed";
    case Reason::SourceAddress: return "0.0.0.0 (the packet's source) not allowed";
    case Reason::Access: return "proto/port not allowed";
    case Reason::ClientTimeout: return "client timeout not allowed";
  }
  return "unknown";
}

codec::KnockValues Verified::knock_values() const noexcept {
  codec::KnockValues v;
  v.value[static_cast<std::size_t>(codec::Field::Ip)] = ip;
  if (port_count > 0) v.value[static_cast<std::size_t>(codec::Field::Port)] = ports[0].port;
  return v;
}

// ---- configuration --------------------------------------------------------------------------

Stanzas::Stanzas(std::vector<Stanza> stanzas, std::vector<StanzaKeys> keys)
    : stanzas_(std::move(stanzas)), keys_(std::move(keys)) {
  if (stanzas_.size() != keys_.size()) throw std::invalid_argument("fwknop: one key pair per stanza");
  if (stanzas_.size() > kMaxStanzas)
    throw ConfigError(stanzas_[kMaxStanzas].where, "at most " + std::to_string(kMaxStanzas) +
                                                       " <fwknop> blocks (each packet is tried against every one)");
  hmac_blocks_.CleanNew(stanzas_.size() * kBlock);
  std::unordered_set<std::string> names;
  for (std::size_t i = 0; i < stanzas_.size(); ++i) {
    const Stanza& s = stanzas_[i];
    const StanzaKeys& k = keys_[i];
    if (!names.insert(s.name).second) throw ConfigError(s.where, "<fwknop " + s.name + "> is defined twice");
    if (k.key.empty() || k.key.size() > kMaxKeyBytes)
      throw ConfigError(s.where, "<fwknop " + s.name + ">: the encryption key must be 1 to 32 bytes");
    if (k.hmac_key.empty() || k.hmac_key.size() > kMaxHmacKeyBytes)
      throw ConfigError(s.where, "<fwknop " + s.name + ">: the HMAC key must be 1 to 128 bytes");
    if (k.key.size() == k.hmac_key.size() && constant_time_equal(k.key.data(), k.key.size(), k.hmac_key.data(), k.hmac_key.size()))
      throw ConfigError(s.where, "<fwknop " + s.name + ">: the encryption and HMAC keys must differ");
    if (s.open_ports.empty()) throw ConfigError(s.where, "<fwknop " + s.name + "> needs open_ports");
    std::uint8_t* block = hmac_blocks_.data() + i * kBlock;
    if (k.hmac_key.size() > kBlock) CryptoPP::SHA256().CalculateDigest(block, k.hmac_key.data(), k.hmac_key.size());
    else std::copy(k.hmac_key.begin(), k.hmac_key.end(), block);
  }
}

namespace {

// A key given as base64 (key_base64), text (key) or a key file (keyfile: one line of base64).
SecureBytes key_setting(const config::Value& block, const std::string& name, const std::string& prefix) {
  const std::string b64_key = prefix + "_base64";
  const std::string file_key = prefix + "file";
  auto text = block.scalar(prefix);
  auto b64 = block.scalar(b64_key);
  auto file = block.scalar(file_key);
  auto wipe = [](std::optional<std::string>& v) {
    if (v) secure_wipe(v->data(), v->size());
  };
  const int given = (text ? 1 : 0) + (b64 ? 1 : 0) + (file ? 1 : 0);
  if (given != 1) {
    wipe(text);
    wipe(b64);
    if (given == 0)
      throw ConfigError(block.where(), "<fwknop " + name + "> needs one of " + prefix + ", " + b64_key + " and " + file_key);
    throw ConfigError(block.where_of(file ? file_key : b64_key),
                      "<fwknop " + name + ">: give only one of " + prefix + ", " + b64_key + " and " + file_key);
  }
  if (text) {
    SecureBytes out = secure_copy(*text);
    wipe(text);
    if (out.empty()) throw ConfigError(block.where_of(prefix), prefix + " is empty");
    return out;
  }
  SecureBytes line;
  Location where;
  if (b64) {
    line = secure_copy(trim_blanks(*b64));
    wipe(b64);
    where = block.where_of(b64_key);
  } else {
    where = block.where_of(file_key);
    if (file->empty()) throw ConfigError(where, file_key + " needs a file name");
    line = read_key_file(*file, where);
  }
  // fwknop's --key-gen writes standard base64 with '=' padding: accept it here.
  std::string_view t(reinterpret_cast<const char*>(line.data()), line.size());
  t = trim_blanks(t);
  while (!t.empty() && t.back() == '=') t.remove_suffix(1);
  SecureBytes out(t.size());
  std::size_t len = 0;
  if (t.empty() || !base64_decode(t, out.data(), out.size(), len))
    throw ConfigError(where, b64_key + " must be base64 (as fwknop --key-gen writes it)");
  out.resize(len);
  return out;
}

std::vector<std::string_view> split_list(std::string_view text) {
  std::vector<std::string_view> out;
  while (true) {
    const std::size_t comma = text.find(',');
    const std::string_view item = trim_blanks(text.substr(0, comma));
    if (!item.empty()) out.push_back(item);
    if (comma == std::string_view::npos) break;
    text = text.substr(comma + 1);
  }
  return out;
}

std::uint32_t seconds_setting(const config::Value& block, const std::string& key, std::uint32_t fallback,
                              std::uint32_t min, std::uint32_t max) {
  auto v = block.scalar(key);
  if (!v) return fallback;
  std::uint32_t n = 0;
  const std::string_view t = trim_blanks(*v);
  if (!parse_number(t, n) || n < min || n > max)
    throw ConfigError(block.where_of(key), key + " must be a number of seconds from " + std::to_string(min) + " to " +
                                               std::to_string(max) + ", not '" + *v + "'");
  return n;
}

}  // namespace

Stanzas Stanzas::from_config(const config::Value& root) {
  std::vector<Stanza> stanzas;
  std::vector<StanzaKeys> keys;
  const config::Value* blocks = root.find("fwknop");
  if (blocks == nullptr) return {};
  if (blocks->is_array() || !blocks->is_object()) {
    const Location where = blocks->is_array() ? blocks->items().front().where() : blocks->where();
    throw ConfigError(where, "fwknop must be a named block <fwknop NAME> ... </fwknop>");
  }
  static constexpr std::string_view kKnown[] = {
      "key", "key_base64", "keyfile", "hmac_key", "hmac_key_base64", "hmac_keyfile", "source", "open_ports",
      "require_source_address", "require_user", "fw_access_timeout", "max_client_timeout"};
  for (const auto& [name, block] : blocks->members()) {
    if (block.is_array()) throw ConfigError(block.items().back().where(), "<fwknop " + name + "> is defined twice");
    if (!block.is_object()) throw ConfigError(block.where(), "fwknop must be a named block <fwknop NAME> ... </fwknop>");
    bool good_name = !name.empty() && name.size() <= 64;
    for (char c : name)
      good_name = good_name && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                                c == '.' || c == '_' || c == '-');
    if (!good_name)
      throw ConfigError(block.where(), "fwknop stanza name '" + name.substr(0, 64) +
                                           "': use 1 to 64 letters, digits, '.', '_' or '-'");
    for (const auto& [key, value] : block.members()) {
      if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
        const Location where = value.is_array() ? value.items().front().where() : value.where();
        throw ConfigError(where, "unknown key '" + key + "' in <fwknop " + name + ">");
      }
    }
    Stanza s;
    s.name = name;
    s.where = block.where();
    if (auto v = block.scalar("source")) {
      const Location where = block.where_of("source");
      const auto items = split_list(*v);
      if (items.empty()) throw ConfigError(where, "source needs ANY or a list of addresses/networks");
      for (std::string_view item : items) {
        if (item == "ANY" || item == "any") {
          if (items.size() != 1) throw ConfigError(where, "source: ANY stands alone");
          break;
        }
        const std::size_t slash = item.find('/');
        auto addr = IpAddress::parse(item.substr(0, slash));
        if (!addr) throw ConfigError(where, "source: '" + std::string(item) + "' is not an address or network");
        const int max = addr->is_v4() ? 32 : 128;
        int prefix = max;
        if (slash != std::string_view::npos && (!parse_number(item.substr(slash + 1), prefix) || prefix > max))
          throw ConfigError(where, "source: bad prefix length in '" + std::string(item) + "'");
        s.sources.push_back(Network{*addr, prefix});
      }
    }
    if (auto v = block.scalar("open_ports")) {
      const Location where = block.where_of("open_ports");
      for (std::string_view item : split_list(*v)) {
        PortRequest r;
        if (!parse_request(item, r))
          throw ConfigError(where, "open_ports: '" + std::string(item) + "' is not tcp/PORT or udp/PORT");
        if (!s.port_allowed(r)) s.open_ports.push_back(r);
      }
      if (s.open_ports.empty()) throw ConfigError(where, "open_ports is empty");
    } else {
      throw ConfigError(block.where(), "<fwknop " + name + "> needs open_ports (e.g. open_ports = tcp/22)");
    }
    if (auto v = block.scalar("require_source_address")) {
      const auto b = parse_yes_no(*v);
      if (!b) throw ConfigError(block.where_of("require_source_address"), "require_source_address must be yes or no");
      s.require_source_address = *b;
    }
    if (auto v = block.scalar("require_user")) {
      const std::string_view t = trim_blanks(*v);
      bool good = !t.empty() && t.size() <= kMaxUser;
      for (char c : t) good = good && good_user_char(c);
      if (!good) throw ConfigError(block.where_of("require_user"), "require_user: 1 to 64 letters, digits, '.', '_', '-' or '@'");
      s.require_user = std::string(t);
    }
    s.fw_access_timeout = seconds_setting(block, "fw_access_timeout", kDefaultFwAccessTimeout, 1, 86400 * 30);
    s.max_client_timeout = seconds_setting(block, "max_client_timeout", 0, 0, 86400 * 30);
    StanzaKeys k;
    k.key = key_setting(block, name, "key");
    k.hmac_key = key_setting(block, name, "hmac_key");
    stanzas.push_back(std::move(s));
    keys.push_back(std::move(k));
  }
  return Stanzas(std::move(stanzas), std::move(keys));
}

Settings settings(const codec::SettingLookup& lookup) {
  Settings s;
  auto number = [&](std::string_view key, std::uint32_t min, std::uint32_t max) -> std::optional<std::uint32_t> {
    auto v = lookup(key);
    if (!v) return std::nullopt;
    std::uint32_t n = 0;
    if (!parse_number(trim_blanks(v->text), n) || n < min || n > max)
      throw ConfigError(v->where, std::string(key) + " must be a number from " + std::to_string(min) + " to " +
                                      std::to_string(max) + ", not '" + v->text + "'");
    return n;
  };
  if (auto n = number("fwknopport", 1, 65535)) s.port = static_cast<std::uint16_t>(*n);
  if (auto n = number("fwknopwindow", 1, 86400)) s.window = *n;
  return s;
}

Settings settings_from_config(const config::Value& root) {
  return settings([&root](std::string_view key) -> std::optional<codec::SettingText> {
    auto text = root.scalar(key);
    if (!text) return std::nullopt;
    return codec::SettingText{std::move(*text), root.where_of(key)};
  });
}

// ---- the verifier ---------------------------------------------------------------------------

struct Verifier::Scratch {
  CryptoPP::AES::Decryption aes;  // keyed once here so that rekeying reuses its memory
};

Verifier::Verifier(const Stanzas& stanzas, std::uint32_t window_seconds)
    : stanzas_(stanzas), window_(window_seconds), scratch_(new Scratch) {
  spa::init_sodium();
  std::uint8_t zero[32] = {};
  scratch_->aes.SetKey(zero, sizeof zero);
}

Verifier::~Verifier() { delete scratch_; }

Verified Verifier::verify(std::span<const std::uint8_t> payload, const IpAddress& source,
                          std::int64_t now) const noexcept {
  Verified r;
  // 1. Size.
  const std::size_t n = payload.size();
  if (n < kMinPacketBytes || n > kMaxPacketBytes) {
    r.reason = Reason::Size;
    return r;
  }
  // 2. Base64 text: the body (prefix restored) and the HMAC, both canonical.
  r.reason = Reason::Base64;
  if (!all_base64(payload.data(), n)) return r;
  const std::size_t body_len = n - kHmacChars;
  std::array<std::uint8_t, kWireMax> wire;  // "U2FsdGVkX1" + body: what the HMAC covers
  std::copy(kSaltedPrefix.begin(), kSaltedPrefix.end(), wire.begin());
  std::copy(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(body_len), wire.begin() + kSaltedPrefix.size());
  const std::size_t wire_len = kSaltedPrefix.size() + body_len;
  std::uint8_t mac[32];
  std::size_t mac_len = 0;
  if (!base64_decode(as_text(payload.data() + body_len, kHmacChars), mac, sizeof mac, mac_len) || mac_len != 32) return r;
  std::array<std::uint8_t, kBytesMax> bytes;
  std::size_t bytes_len = 0;
  if (!base64_decode(as_text(wire.data(), wire_len), bytes.data(), bytes.size(), bytes_len)) return r;
  {
    std::uint8_t digest[32];
    CryptoPP::SHA256().CalculateDigest(digest, payload.data(), n);
    std::copy(digest, digest + r.identity.size(), r.identity.begin());
  }
  // 3. HMAC, stanza by stanza (those whose source list holds the source), in constant time each.
  bool any_source = false;
  for (std::size_t i = 0; i < stanzas_.size(); ++i) {
    if (!stanzas_.stanza(i).source_allowed(source)) continue;
    any_source = true;
    std::uint8_t computed[32];
    hmac_sha256(stanzas_.hmac_block(i), wire.data(), wire_len, computed);
    if (crypto_verify_32(computed, mac) == 0) {
      r.stanza = static_cast<int>(i);
      break;
    }
  }
  if (r.stanza < 0) {
    r.reason = any_source ? Reason::Hmac : Reason::Source;
    return r;
  }
  const std::size_t si = static_cast<std::size_t>(r.stanza);
  const Stanza& stanza = stanzas_.stanza(si);
  r.stanza_name = stanza.name;
  // 4. Decryption: "Salted__" | salt | AES-256-CBC, key and IV from EVP_BytesToKey(MD5).
  r.reason = Reason::Decrypt;
  static constexpr std::uint8_t kSalted[8] = {'S', 'a', 'l', 't', 'e', 'd', '_', '_'};
  if (bytes_len < 32 || (bytes_len - 16) % 16 != 0 || !std::equal(kSalted, kSalted + 8, bytes.data())) return r;
  std::array<char, kBytesMax> plain;
  std::size_t plain_len = bytes_len - 16;
  {
    std::uint8_t kiv[48];
    std::uint8_t prev[16];
    CryptoPP::Weak::MD5 md5;
    for (std::size_t done = 0; done < sizeof kiv; done += 16) {
      if (done > 0) md5.Update(prev, sizeof prev);
      md5.Update(stanzas_.key(si), stanzas_.key_size(si));
      md5.Update(bytes.data() + 8, 8);
      md5.Final(prev);
      std::copy(prev, prev + 16, kiv + done);
    }
    CryptoPP::AES::Decryption& aes = scratch_->aes;
    aes.SetKey(kiv, 32);
    const std::uint8_t* chain = kiv + 32;  // the IV
    const std::uint8_t* in = bytes.data() + 16;
    auto* out = reinterpret_cast<std::uint8_t*>(plain.data());
    for (std::size_t off = 0; off < plain_len; off += 16) {
      aes.ProcessAndXorBlock(in + off, chain, out + off);
      chain = in + off;
    }
    sodium_memzero(kiv, sizeof kiv);
    sodium_memzero(prev, sizeof prev);
  }
  // From here on the plaintext is wiped before every return.
  struct Wipe {
    std::array<char, kBytesMax>& p;
    ~Wipe() { sodium_memzero(p.data(), p.size()); }
  } wipe{plain};
  const auto pad = static_cast<std::uint8_t>(plain[plain_len - 1]);
  if (pad == 0 || pad > 16) return r;
  for (std::size_t i = plain_len - pad; i < plain_len; ++i)
    if (static_cast<std::uint8_t>(plain[i]) != pad) return r;
  plain_len -= pad;
  const std::string_view text(plain.data(), plain_len);
  // 5. Field count and the digest (last field) before the fields, as fwknop does.
  r.reason = Reason::Fields;
  for (char c : text)
    if (c < 0x20 || c > 0x7e) return r;
  std::array<std::string_view, 10> f;
  std::size_t count = 0;
  {
    std::size_t start = 0;
    while (true) {
      const std::size_t colon = text.find(':', start);
      if (count == f.size()) return r;
      f[count++] = text.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start);
      if (colon == std::string_view::npos) break;
      start = colon + 1;
    }
  }
  if (count < 7) return r;
  r.reason = Reason::Digest;
  {
    std::uint8_t want[32];
    std::size_t want_len = 0;
    if (f[count - 1].size() != kHmacChars ||
        !base64_decode(f[count - 1], want, sizeof want, want_len) || want_len != 32)
      return r;
    std::uint8_t got[32];
    CryptoPP::SHA256().CalculateDigest(got, reinterpret_cast<const std::uint8_t*>(text.data()),
                                       text.size() - kHmacChars - 1);
    if (crypto_verify_32(got, want) != 0) return r;
  }
  // 6. The fields.
  r.reason = Reason::Fields;
  if (f[0].size() != 16 || !all_digits(f[0])) return r;
  {
    std::size_t len = 0;
    if (!decode_text_field(f[1], r.user_chars.data(), kMaxUser, len)) return r;
    r.user_length = static_cast<std::uint8_t>(len);
    for (std::size_t i = 0; i < len; ++i)
      if (!good_user_char(r.user_chars[i])) return r;
  }
  if (f[2].size() > 18 || !parse_number(f[2], r.timestamp)) return r;
  r.offset = saturating_offset(r.timestamp, now);
  if (f[3] != kVersion) {
    r.reason = Reason::Version;
    return r;
  }
  if (f[4].size() != 1 || f[4][0] < '0' || f[4][0] > '6') return r;
  r.message_type = static_cast<std::uint8_t>(f[4][0] - '0');
  const bool nat = r.message_type == 2 || r.message_type == 4 || r.message_type == 5 || r.message_type == 6;
  const bool timeout = r.message_type == 3 || r.message_type == 4 || r.message_type == 6;
  const std::size_t extras = count - 7;
  const std::size_t needed = (nat ? 1 : 0) + (timeout ? 1 : 0);
  if (extras != needed && extras != needed + 1) return r;
  const bool server_auth = extras == needed + 1;
  char scratch[kMaxMessage];
  std::size_t len = 0;
  if (!decode_text_field(f[5], scratch, kMaxMessage, len)) return r;
  std::size_t next = 6;
  if (nat) {
    char nat_text[kMaxNat];
    std::size_t nat_len = 0;
    if (!decode_text_field(f[next++], nat_text, kMaxNat, nat_len)) return r;
  }
  if (server_auth) {
    char auth[kMaxServerAuth];
    std::size_t auth_len = 0;
    if (!decode_text_field(f[next++], auth, kMaxServerAuth, auth_len)) return r;
    sodium_memzero(auth, sizeof auth);
  }
  if (timeout) {
    if (!parse_number(f[next++], r.client_timeout)) return r;
    r.has_client_timeout = true;
  }
  // The message: IP then, for access messages, 1..kMaxPorts proto/port.
  {
    std::string_view m(scratch, len);
    const std::size_t comma = m.find(',');
    if (comma == std::string_view::npos || !parse_ipv4(m.substr(0, comma), r.requested_ip)) return r;
    if (r.message_type != 0) {
      std::string_view rest = m.substr(comma + 1);
      while (true) {
        const std::size_t c = rest.find(',');
        if (r.port_count == kMaxPorts || !parse_request(rest.substr(0, c), r.ports[r.port_count])) return r;
        ++r.port_count;
        if (c == std::string_view::npos) break;
        rest = rest.substr(c + 1);
      }
    }
  }
  sodium_memzero(scratch, sizeof scratch);
  // 7. The time window.
  if (r.offset < -static_cast<std::int64_t>(window_)) {
    r.reason = Reason::TooOld;
    return r;
  }
  if (r.offset > static_cast<std::int64_t>(window_)) {
    r.reason = Reason::TooNew;
    return r;
  }
  // 8. What is asked for.
  if (r.message_type == 0) {
    r.reason = Reason::MessageType;
    return r;
  }
  if (nat) {
    r.reason = Reason::Nat;
    return r;
  }
  if (server_auth) {
    r.reason = Reason::ServerAuth;
    return r;
  }
  if (!stanza.require_user.empty() && r.user() != stanza.require_user) {
    r.reason = Reason::User;
    return r;
  }
  r.ip = r.requested_ip;
  if (r.requested_ip == 0) {
    if (stanza.require_source_address || !source.is_v4()) {
      r.reason = Reason::SourceAddress;
      return r;
    }
    r.ip = source.v4_host_order();
  }
  for (const PortRequest& p : r.requests())
    if (!stanza.port_allowed(p)) {
      r.reason = Reason::Access;
      return r;
    }
  if (r.has_client_timeout && (r.client_timeout == 0 || r.client_timeout > stanza.max_client_timeout)) {
    r.reason = Reason::ClientTimeout;
    return r;
  }
  r.fw_access_timeout = stanza.fw_access_timeout;
  r.reason = Reason::Ok;
  return r;
}

}  // namespace knock::fwknop
