// libFuzzer target: the fwknop SPA verifier (codec/fwknop) on arbitrary input.
//  - input[0] % 3 == 0: the rest as a datagram from the network: never crash, never accept (no
//    one without the HMAC key can make an authentic packet);
//  - == 1: a valid packet built for the stanza, with the rest XOR-ed into it: accepted if and
//    only if the packet is unchanged, then with the values built;
//  - == 2: the rest as the plaintext, encrypted and authenticated with the stanza's keys (an
//    authentic packet with hostile fields): never crash; when accepted, every field is within
//    its bounds and allowed by the stanza.
#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "../tools/fwknop_builder.hpp"
#include "codec/fwknop.hpp"
#include "config/tree.hpp"

namespace {
using namespace knock;
using namespace knock::fwknop;

const std::string kKey(32, 'k');
const std::string kHmac(64, 'h');
const std::string kSalt = "saltsalt";
constexpr std::int64_t kNow = 1700000000;

struct World {
  Stanzas stanzas;
  Verifier verifier;
  IpAddress source = *IpAddress::parse("198.18.1.2");
  World() : stanzas(make()), verifier(stanzas, 120) {}
  static Stanzas make() {
    auto b64 = [](const std::string& s) {
      return base64_encode({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
    };
    return Stanzas::from_config(config::parse_string(
        "<fwknop fuzz>\n key_base64 = " + b64(kKey) + "\n hmac_key_base64 = " + b64(kHmac) +
            "\n open_ports = tcp/22, udp/53\n require_source_address = no\n max_client_timeout = 600\n</fwknop>\n",
        "fuzz.conf"));
  }
  Verified check(const std::string& w) const {
    return verifier.verify({reinterpret_cast<const std::uint8_t*>(w.data()), w.size()}, source, kNow);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;
  if (size == 0 || size > 4096) return 0;
  const std::uint8_t mode = data[0] % 3;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode == 0) {
    if (w.check(rest).ok()) __builtin_trap();
  } else if (mode == 1) {
    fwknop_test::Packet p;
    p.message = (rest.size() > 1 && (rest[0] & 1)) ? "198.18.1.2,udp/53" : "198.18.1.2,tcp/22";
    const std::string good = fwknop_test::wire(fwknop_test::encrypt(p.full_plaintext(), kKey, kSalt), kHmac);
    std::string m = good;
    for (std::size_t i = 1; i < rest.size(); ++i) m[(i - 1) % m.size()] = static_cast<char>(m[(i - 1) % m.size()] ^ rest[i]);
    const Verified r = w.check(m);
    // sodium_memcmp, not ==: libFuzzer hooks memcmp and would learn the genuine packet.
    const bool unchanged = sodium_memcmp(m.data(), good.data(), m.size()) == 0;
    if (r.ok() != unchanged) __builtin_trap();
    if (r.ok() && (r.port_count != 1 || r.ip != 0xC6120102u || r.user() != "alice")) __builtin_trap();
  } else {
    const Verified r = w.check(fwknop_test::wire(fwknop_test::encrypt(rest, kKey, kSalt), kHmac));
    if (r.ok()) {
      const Stanza& s = w.stanzas.stanza(0);
      if (r.port_count == 0 || r.port_count > kMaxPorts || r.user().size() > kMaxUser || r.user().empty())
        __builtin_trap();
      for (const auto& p : r.requests())
        if (!s.port_allowed(p)) __builtin_trap();
      if (r.offset < -120 || r.offset > 120) __builtin_trap();
      if (r.has_client_timeout && (r.client_timeout == 0 || r.client_timeout > 600)) __builtin_trap();
      if (r.ip == 0) __builtin_trap();
    }
  }
  return 0;
}
