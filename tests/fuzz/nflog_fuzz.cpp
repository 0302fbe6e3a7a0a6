// libFuzzer target: parse_nflog_message and NflogReader on arbitrary bytes. The first byte picks
// the mode: even = one message (exact-size copy, every shorter cut too), odd = a whole datagram of
// messages through NflogReader in small budgets.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "capture/nflog.hpp"

using namespace knock::capture;

namespace {

void check(const NflogMessage& m, const std::uint8_t* data, std::size_t size) {
  if (m.payload != nullptr && (m.payload < data || m.payload_size > size ||
                               m.payload > data + size - m.payload_size))
    std::abort();
  if (!m.prefix.empty()) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(m.prefix.data());
    if (p < data || m.prefix.size() > size || p > data + size - m.prefix.size()) std::abort();
  }
  if (m.ok()) {
    const Observation& o = m.observation;
    if (o.protocol != kProtoTcp && o.protocol != kProtoUdp) std::abort();
    if (o.source.is_v4() != o.destination.is_v4()) std::abort();
    if (o.payload != nullptr && (o.payload < m.payload || o.payload + o.payload_size > m.payload + m.payload_size))
      std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool datagram = (data[0] & 1) != 0;
  std::vector<std::uint8_t> bytes(data + 1, data + size);  // exact size: reads past it are caught
  if (!datagram) {
    check(parse_nflog_message(bytes.data(), bytes.size(), 1.0), bytes.data(), bytes.size());
    if (bytes.size() <= 512) {
      for (std::size_t n = 0; n < bytes.size(); ++n) {
        std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
        check(parse_nflog_message(cut.data(), cut.size(), 1.0), cut.data(), cut.size());
      }
    }
    return 0;
  }
  static NflogReader reader(4096);
  const std::size_t n = bytes.size() < reader.capacity() ? bytes.size() : reader.capacity();
  if (n != 0) std::memcpy(reader.buffer(), bytes.data(), n);
  reader.loaded(n, 1.0, n < bytes.size());
  std::uint64_t delivered = 0;
  for (int rounds = 0; reader.pending(); ++rounds) {
    if (rounds > 4096) std::abort();  // every call must make progress
    reader.deliver([&](const Observation& o) {
      ++delivered;
      if (o.protocol != kProtoTcp && o.protocol != kProtoUdp) std::abort();
    }, 2);
  }
  const SourceStats& s = reader.stats();
  if (s.received < s.delivered || s.received != s.delivered + s.malformed + s.unparsed_total()) std::abort();
  return 0;
}
