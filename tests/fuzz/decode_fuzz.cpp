// libFuzzer target: arbitrary port sequences into KnockCodec::decode, without encryption and with
// every cipher (iv yes/no where allowed). decode must never crash, throw or read out of bounds;
// whatever it accepts must re-encode (with the same IV) to the same ports.
// Build: clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -Isrc/core ... -lcryptopp
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "codec/codec.hpp"

namespace {
using namespace knock;
using namespace knock::codec;

std::vector<std::unique_ptr<KnockCodec>> make_codecs() {
  std::vector<std::unique_ptr<KnockCodec>> out;
  auto add = [&](const char* knock, const char* span, bool encrypt, const char* cipher, bool iv) {
    CodecSettings s;
    s.knock = knock;
    s.portspan = span;
    s.encrypt = encrypt;
    s.key = secure_copy("fuzz key");
    s.cipher = cipher;
    s.iv = iv;
    out.push_back(std::make_unique<KnockCodec>(s));
  };
  add("IP,PORT,FLAG0,CHECKSUM", "1000-1255", false, "Blowfish", false);
  add("IP,PORT,FLAG0,CHECKSUM", "1000-1031", false, "Blowfish", false);  // 5-bit symbols: padding
  add("PORT,CHECKSUM", "0-1", false, "Blowfish", false);                 // 1-bit symbols
  add("IP6,PORT,FLAG0,CHECKSUM", "1000-1255", false, "Blowfish", false);  // IPv6: 16 more bytes
  add("IP,IP6,PORT,CHECKSUM", "1000-1127", true, "Rijndael", false);
  // The largest knock on the wire: every field with IP6, Blowfish, iv = yes (56 bytes).
  add("IP,PORT,FLAG0,FLAG1,FLAG2,FLAG3,FLAG4,FLAG5,FLAG6,FLAG7,FLAG8,FLAG9,IP6,CHECKSUM", "1000-1255", true,
      "Blowfish", true);
  for (const char* c : {"Blowfish", "DES", "DES_EDE3", "CAST5", "IDEA", "Rijndael", "Twofish"}) {
    add("IP,PORT,FLAG0,CHECKSUM", "1000-1255", true, c, false);
    if (block_cipher_block_size(*block_cipher_from_name(c)) == 8)
      add("IP,PORT,FLAG0,FLAG1,FLAG2,FLAG3,FLAG4,FLAG5,FLAG6,FLAG7,FLAG8,FLAG9,CHECKSUM", "1000-1255,30000-30255",
          true, c, true);
  }
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto codecs = make_codecs();
  if (size < 1) return 0;
  const KnockCodec& codec = *codecs[data[0] % codecs.size()];
  std::vector<std::uint16_t> ports;
  for (std::size_t i = 1; i + 1 < size; i += 2) {
    // Mostly ports of the span, sometimes any port.
    const auto raw = static_cast<std::uint16_t>(data[i] << 8 | data[i + 1]);
    ports.push_back((raw & 0x8000) != 0 ? raw : codec.span().port_at(raw % codec.span().size()));
  }
  const DecodeResult r = codec.decode(ports);
  if (r.ok() && codec.cipher() == nullptr) {
    if (codec.encode(r.values) != ports) __builtin_trap();
  }
  return 0;
}
