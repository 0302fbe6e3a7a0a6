#include "codec/keys.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <new>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include "config/tree.hpp"
#include "util/files.hpp"
#include "util/secure.hpp"
#include "util/text.hpp"

namespace knock::spa {
namespace {

// Decodes standard base64 (padding optional) of exactly `want` bytes into out; false otherwise.
bool base64_exact(std::string_view text, std::uint8_t* out, std::size_t want) {
  text = trim_blanks(text);
  std::size_t len = 0;
  const char* end = nullptr;
  const int variant = (!text.empty() && text.back() == '=') ? sodium_base64_VARIANT_ORIGINAL
                                                             : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
  if (sodium_base642bin(out, want, text.data(), text.size(), nullptr, &len, &end, variant) != 0) return false;
  return len == want && end == text.data() + text.size();
}

}  // namespace

void init_sodium() {
  if (sodium_init() < 0) throw RuntimeError("libsodium cannot be initialised");
}

GuardedBytes::GuardedBytes(std::size_t size) {
  init_sodium();
  data_ = static_cast<std::uint8_t*>(sodium_malloc(size == 0 ? 1 : size));
  if (data_ == nullptr) throw std::bad_alloc();
  size_ = size;
  sodium_memzero(data_, size_);
}

GuardedBytes::~GuardedBytes() {
  if (data_ != nullptr) sodium_free(data_);  // wipes, even a read-only block
}

GuardedBytes::GuardedBytes(GuardedBytes&& other) noexcept : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

GuardedBytes& GuardedBytes::operator=(GuardedBytes&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) sodium_free(data_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void GuardedBytes::make_readonly() {
  if (data_ != nullptr && sodium_mprotect_readonly(data_) != 0)
    throw RuntimeError("cannot make the key memory read-only: " + errno_message(errno));
}

std::uint32_t key_id(std::span<const std::uint8_t, kKeyBytes> key) noexcept {
  unsigned char h[32];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(kKeyIdContext.data()), kKeyIdContext.size(),
                     key.data(), key.size());
  const std::uint32_t id = (std::uint32_t{h[0]} << 24) | (std::uint32_t{h[1]} << 16) | (std::uint32_t{h[2]} << 8) | h[3];
  sodium_memzero(h, sizeof h);
  return id;
}

Key Key::random() {
  Key k;
  k.bytes_ = GuardedBytes(kKeyBytes);
  randombytes_buf(k.bytes_.data(), kKeyBytes);
  k.id_ = key_id(k.bytes());
  return k;
}

Key Key::from_bytes(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != kKeyBytes) throw std::invalid_argument("an SPA key is 32 bytes");
  Key k;
  k.bytes_ = GuardedBytes(kKeyBytes);
  std::copy(bytes.begin(), bytes.end(), k.bytes_.data());
  k.id_ = key_id(k.bytes());
  return k;
}

Key Key::from_base64(std::string_view text, const Location& where) {
  Key k;
  k.bytes_ = GuardedBytes(kKeyBytes);
  if (!base64_exact(text, k.bytes_.data(), kKeyBytes))
    throw ConfigError(where, "an SPA key must be the base64 of exactly 32 bytes (make one with knockclient -keygen; "
                             "for a passphrase use passphrase = ... with salt = ...)");
  k.id_ = key_id(k.bytes());
  return k;
}

Key Key::from_passphrase(std::span<const std::uint8_t> passphrase, std::span<const std::uint8_t> salt,
                         const Location& where) {
  if (passphrase.empty()) throw ConfigError(where, "the passphrase is empty");
  if (salt.size() != kSaltBytes) throw ConfigError(where, "the salt must be 16 bytes");
  Key k;
  k.bytes_ = GuardedBytes(kKeyBytes);
  if (crypto_pwhash(k.bytes_.data(), kKeyBytes, reinterpret_cast<const char*>(passphrase.data()), passphrase.size(),
                    salt.data(), kArgon2OpsLimit, kArgon2MemLimit, crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw ConfigError(where, "Argon2id needs 64 MiB of memory and could not get it");
  k.id_ = key_id(k.bytes());
  return k;
}

std::string Key::base64() const {
  std::string out(sodium_base64_ENCODED_LEN(kKeyBytes, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes_.data(), kKeyBytes, sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::vector<std::uint8_t> decode_salt(std::string_view text, const Location& where) {
  init_sodium();
  std::vector<std::uint8_t> salt(kSaltBytes);
  if (!base64_exact(text, salt.data(), kSaltBytes))
    throw ConfigError(where, "salt must be the base64 of exactly 16 bytes (e.g. head -c 16 /dev/urandom | base64)");
  return salt;
}

Key key_from_settings(const codec::SettingLookup& lookup, const Location& block) {
  init_sodium();
  auto key = lookup("key");
  auto keyfile = lookup("keyfile");
  auto passphrase = lookup("passphrase");
  auto salt = lookup("salt");
  auto wipe = [](std::optional<codec::SettingText>& v) {
    if (v) secure_wipe(v->text.data(), v->text.size());
  };
  const int given = (key ? 1 : 0) + (keyfile ? 1 : 0) + (passphrase ? 1 : 0);
  if (given > 1) {
    const Location where = passphrase ? passphrase->where : keyfile->where;
    wipe(key);
    wipe(passphrase);
    throw ConfigError(where, "give only one of key, keyfile and passphrase");
  }
  if (given == 0) throw ConfigError(block, "no SPA key: give key = BASE64, keyfile = PATH or passphrase = ... with salt = ...");
  if (salt && !passphrase) {
    wipe(key);
    throw ConfigError(salt->where, "salt is only used with passphrase");
  }
  if (key) {
    try {
      Key k = Key::from_base64(key->text, key->where);
      wipe(key);
      return k;
    } catch (...) {
      wipe(key);
      throw;
    }
  }
  if (keyfile) {
    if (keyfile->text.empty()) throw ConfigError(keyfile->where, "keyfile needs a file name");
    const SecureBytes text = read_key_file(keyfile->text, keyfile->where);
    return Key::from_base64(std::string_view(reinterpret_cast<const char*>(text.data()), text.size()),
                            keyfile->where);
  }
  if (!salt) {
    wipe(passphrase);
    throw ConfigError(passphrase->where, "passphrase needs salt = BASE64 (16 bytes; e.g. head -c 16 /dev/urandom | base64)");
  }
  try {
    const auto s = decode_salt(salt->text, salt->where);
    Key k = Key::from_passphrase(
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(passphrase->text.data()), passphrase->text.size()),
        s, passphrase->where);
    wipe(passphrase);
    return k;
  } catch (...) {
    wipe(passphrase);
    throw;
  }
}

Key write_new_key_file(const std::string& path) {
  Key k = Key::random();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int saved = errno;
    throw RuntimeError("cannot create key file " + path + ": " + errno_message(saved) +
                       (saved == EEXIST ? " (an existing key file is never overwritten)" : ""));
  }
  std::string line = k.base64() + "\n";
  // The umask cannot widen 0600, but it could narrow it; make it exactly 0600.
  bool ok = ::fchmod(fd, 0600) == 0;
  std::size_t done = 0;
  while (ok && done < line.size()) {
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ok = false;
    else done += static_cast<std::size_t>(n);
  }
  const int saved = errno;
  secure_wipe(line.data(), line.size());
  if (::close(fd) != 0) ok = false;
  if (!ok) {
    ::unlink(path.c_str());
    throw RuntimeError("cannot write key file " + path + ": " + errno_message(saved));
  }
  return k;
}

KeyRing::KeyRing(std::vector<Entry> entries) {
  init_sodium();
  clients_.reserve(entries.size());
  by_id_.reserve(entries.size());
  keys_ = GuardedBytes(entries.size() * kKeyBytes);
  std::unordered_map<std::string, std::size_t> names;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (const auto [it, fresh] = names.emplace(e.name, i); !fresh)
      throw ConfigError(e.where, "client " + e.name + " is defined twice (first at " + clients_[it->second].where.str() + ")");
    const auto [it, fresh] = by_id_.emplace(e.key.id(), static_cast<std::uint32_t>(i));
    if (!fresh) {
      const ClientInfo& other = clients_[it->second];
      char hex[9];
      std::snprintf(hex, sizeof hex, "%08x", e.key.id());
      throw ConfigError(e.where, "client " + e.name + " has the key id " + hex + " of client " + other.name + " (" +
                                     other.where.str() + "): the same key, or a 1 in 2^32 collision; give " + e.name +
                                     " a new key (knockclient -keygen)");
    }
    std::copy(e.key.bytes().begin(), e.key.bytes().end(), keys_.data() + i * kKeyBytes);
    clients_.push_back(ClientInfo{e.name, e.where, e.key.id()});
  }
  keys_.make_readonly();
}

KeyRing KeyRing::from_config(const config::Value& root, std::span<const std::string_view> other_keys) {
  std::vector<Entry> entries;
  const config::Value* blocks = root.find("client");
  if (blocks == nullptr) return KeyRing(std::move(entries));
  const config::Value& first = blocks->is_array() ? blocks->items().front() : *blocks;
  if (blocks->is_array() || !blocks->is_object())
    throw ConfigError(first.where(), "client must be a named block <client NAME> ... </client>");
  for (const auto& member : blocks->members()) {
    const std::string& name = member.first;
    const config::Value& block = member.second;  // a plain reference: lambdas may capture it
    if (block.is_array())
      throw ConfigError(block.items().back().where(), "<client " + name + "> is defined twice");
    if (!block.is_object())
      throw ConfigError(block.where(), "client must be a named block <client NAME> ... </client>");
    // The name reaches logs and, as CLIENTNAME, commands: letters, digits, '.', '_' and '-' only.
    bool good_name = !name.empty() && name.size() <= 64;
    for (char c : name)
      good_name = good_name && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                                c == '.' || c == '_' || c == '-');
    if (!good_name)
      throw ConfigError(block.where(), "client name '" + name.substr(0, 64) +
                                           "': use 1 to 64 letters, digits, '.', '_' or '-'");
    for (const auto& [key, value] : block.members()) {
      const bool known = key == "key" || key == "keyfile" || key == "passphrase" || key == "salt" ||
                         std::find(other_keys.begin(), other_keys.end(), key) != other_keys.end();
      if (!known) {
        const Location where = value.is_array() ? value.items().front().where() : value.where();
        throw ConfigError(where, "unknown key '" + key + "' in <client " + name + ">");
      }
    }
    Key k = key_from_settings(
        [&block](std::string_view key) -> std::optional<codec::SettingText> {
          auto text = block.scalar(key);
          if (!text) return std::nullopt;
          return codec::SettingText{std::move(*text), block.where_of(key)};
        },
        block.where());
    entries.push_back(Entry{name, block.where(), std::move(k)});
  }
  return KeyRing(std::move(entries));
}

int KeyRing::find(std::uint32_t id) const noexcept {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? -1 : static_cast<int>(it->second);
}

}  // namespace knock::spa
