// libFuzzer target: parse_packet on arbitrary frames. The first byte picks the link type.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "capture/packet.hpp"

using namespace knock::capture;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const int kLinks[] = {kDltEn10mb, kDltLinuxSll, kDltLinuxSll2, kDltRaw, kLinktypeRaw,
                               kDltIpv4,   kDltIpv6,     kDltNull,      kDltLoop, 105};
  if (size < 1) return 0;
  const int dlt = kLinks[data[0] % (sizeof kLinks / sizeof kLinks[0])];
  // an exact-size copy so that any read past the capture is caught
  std::vector<std::uint8_t> frame(data + 1, data + size);
  const ParseResult r = parse_packet_result(dlt, frame.data(), frame.size(), 1.0);
  if (r.ok()) {
    const Observation& o = r.observation;
    if (o.protocol != kProtoTcp && o.protocol != kProtoUdp) std::abort();
    if (o.has_tcp_seq != (o.protocol == kProtoTcp)) std::abort();
    if (o.source.is_v4() != o.destination.is_v4()) std::abort();
  }
  // every shorter capture of the same frame must not crash either
  if (frame.size() <= 256) {
    for (std::size_t n = 0; n < frame.size(); ++n) {
      std::vector<std::uint8_t> cut(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(n));
      (void)parse_packet(dlt, cut.data(), cut.size(), 1.0);
    }
  }
  return 0;
}
