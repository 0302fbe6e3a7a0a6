#include "codec/codec.hpp"

#include <array>

#include "config/tree.hpp"

namespace knock::codec {

std::string_view to_string(DecodeError error) noexcept {
  switch (error) {
    case DecodeError::None: return "ok";
    case DecodeError::Length: return "wrong number of ports";
    case DecodeError::NotInSpan: return "port not in span";
    case DecodeError::SymbolPadding: return "non-zero padding bits";
    case DecodeError::Header: return "no RandomIV header";
    case DecodeError::CipherPadding: return "bad cipher padding (wrong key or cipher?)";
    case DecodeError::Checksum: return "checksum mismatch";
  }
  return "unknown";
}

CodecSettings codec_settings(const SettingLookup& lookup) {
  CodecSettings s;
  auto yes_no = [&](std::string_view key, bool& value, Location& where) {
    if (auto v = lookup(key)) {
      where = v->where;
      const auto b = parse_yes_no(v->text);
      if (!b) throw ConfigError(v->where, std::string(key) + " must be yes or no, not '" + v->text + "'");
      value = *b;
    }
  };
  auto required = [&](std::string_view key, std::string& value, Location& where) {
    auto v = lookup(key);
    if (!v) throw ConfigError(std::string(key) + " is not set (config key " + std::string(key) + ")");
    value = v->text;
    where = v->where;
  };
  required("knock", s.knock, s.knock_where);
  required("portspan", s.portspan, s.portspan_where);
  yes_no("encrypt", s.encrypt, s.encrypt_where);
  yes_no("iv", s.iv, s.iv_where);
  if (auto v = lookup("cipher")) {
    s.cipher = v->text;
    s.cipher_where = v->where;
  }
  if (auto v = lookup("key")) {
    s.key = secure_copy(v->text);
    s.key_where = v->where;
    secure_wipe(v->text.data(), v->text.size());
  }
  return s;
}

CodecSettings codec_settings_from_config(const config::Value& root) {
  // An absent key has no line of its own: name the file.
  for (std::string_view key : {"knock", "portspan"})
    if (root.find(key) == nullptr)
      throw ConfigError(Location{root.where().file, 0},
                        std::string(key) + " is not set: add a `" + std::string(key) + " = ...` line");
  return codec_settings([&root](std::string_view key) -> std::optional<SettingText> {
    auto text = root.scalar(key);
    if (!text) return std::nullopt;
    return SettingText{std::move(*text), root.where_of(key)};
  });
}

KnockCodec::KnockCodec(const CodecSettings& s)
    : format_(KnockFormat::parse(s.knock, s.knock_where)), span_(PortSpan::parse(s.portspan, s.portspan_where)) {
  if (s.encrypt) {
    if (s.key.empty()) throw ConfigError(s.encrypt_where, "encrypt = yes needs a key (key, -key or -keyfile)");
    cipher_ = make_cbc_cipher(s.cipher, s.key, s.iv, s.cipher_where);
    wire_bytes_ = cipher_->encrypted_size(format_.byte_length());
  } else {
    wire_bytes_ = format_.byte_length();
  }
  ports_ = ports_for_bytes(span_, wire_bytes_);
}

std::vector<std::uint8_t> KnockCodec::wire(const KnockValues& values) const {
  auto plain = format_.pack(values);
  if (!cipher_) return plain;
  auto out = cipher_->encrypt(plain);
  secure_wipe(plain.data(), plain.size());
  return out;
}

std::vector<std::uint16_t> KnockCodec::encode(const KnockValues& values) const { return to_ports(wire(values)); }

std::vector<std::uint16_t> KnockCodec::encode(const KnockValues& values, std::span<const std::uint8_t> iv) const {
  if (!cipher_) throw std::invalid_argument("an explicit IV needs encryption");
  auto plain = format_.pack(values);
  return to_ports(cipher_->encrypt(plain, iv));
}

std::size_t ports_for_bytes(const PortSpan& span, std::size_t bytes) noexcept {
  const auto n = static_cast<std::size_t>(span.bits());
  return n == 0 ? 0 : (8 * bytes + n - 1) / n;
}

std::vector<std::uint16_t> bytes_to_ports(const PortSpan& span, std::span<const std::uint8_t> bytes) {
  const auto n = static_cast<unsigned>(span.bits());
  std::vector<std::uint16_t> out;
  out.reserve(ports_for_bytes(span, bytes.size()));
  std::uint32_t acc = 0;  // holds < n + 8 <= 23 bits
  unsigned have = 0;
  for (std::uint8_t b : bytes) {
    acc = (acc << 8) | b;
    have += 8;
    while (have >= n) {
      have -= n;
      out.push_back(span.port_at((acc >> have) & ((1u << n) - 1)));
    }
    acc &= (1u << have) - 1;
  }
  if (have > 0) out.push_back(span.port_at((acc << (n - have)) & ((1u << n) - 1)));
  return out;
}

DecodeError ports_to_bytes(const PortSpan& span, std::span<const std::uint16_t> ports,
                           std::span<std::uint8_t> out) noexcept {
  if (span.bits() == 0 || ports.size() != ports_for_bytes(span, out.size())) return DecodeError::Length;
  const auto n = static_cast<unsigned>(span.bits());
  std::uint32_t acc = 0;
  unsigned have = 0;
  std::size_t pos = 0;
  for (std::uint16_t port : ports) {
    const int symbol = span.index_of(port);
    if (symbol < 0) return DecodeError::NotInSpan;
    acc = (acc << n) | static_cast<std::uint32_t>(symbol);
    have += n;
    while (have >= 8 && pos < out.size()) {
      have -= 8;
      out[pos++] = static_cast<std::uint8_t>(acc >> have);
    }
    acc &= (1u << have) - 1;
  }
  // What is left is the padding of the last symbol (fewer than n bits): it must be zero.
  if (pos != out.size() || acc != 0) return DecodeError::SymbolPadding;
  return DecodeError::None;
}

std::vector<std::uint16_t> KnockCodec::to_ports(std::span<const std::uint8_t> bytes) const {
  return bytes_to_ports(span_, bytes);
}

DecodeError KnockCodec::to_bytes(std::span<const std::uint16_t> ports, std::span<std::uint8_t> out) const noexcept {
  if (ports.size() != ports_ || out.size() < wire_bytes_) return DecodeError::Length;
  return ports_to_bytes(span_, ports, out.first(wire_bytes_));
}

DecodeResult KnockCodec::decode(std::span<const std::uint16_t> ports) const noexcept {
  DecodeResult result;
  std::array<std::uint8_t, kMaxWireBytes> wire{};
  std::array<std::uint8_t, kMaxWireBytes> plain{};
  result.error = to_bytes(ports, wire);
  if (result.error != DecodeError::None) return result;
  std::span<const std::uint8_t> knock(wire.data(), wire_bytes_);
  if (cipher_) {
    std::size_t plain_len = 0;
    switch (cipher_->decrypt(knock, plain, plain_len)) {
      case CipherStatus::Ok: break;
      case CipherStatus::Header: result.error = DecodeError::Header; return result;
      case CipherStatus::Length: result.error = DecodeError::Length; return result;
      case CipherStatus::Padding: result.error = DecodeError::CipherPadding; return result;
    }
    // A valid padding that leaves a different length is a wrong padding for this format.
    if (plain_len != format_.byte_length()) {
      secure_wipe(plain.data(), plain.size());
      result.error = DecodeError::CipherPadding;
      return result;
    }
    knock = std::span<const std::uint8_t>(plain.data(), plain_len);
  }
  bool checksum_failed = false;
  if (!format_.unpack(knock, result.values, &checksum_failed))
    result.error = checksum_failed ? DecodeError::Checksum : DecodeError::Length;
  secure_wipe(plain.data(), plain.size());
  return result;
}

}  // namespace knock::codec
