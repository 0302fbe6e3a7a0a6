#pragma once
// The knock port span (`portspan = a-b,c,d-e`): 2^N ports, symbol v <-> the v-th port.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/error.hpp"

namespace knock::codec {

class PortSpan {
 public:
  static constexpr int kMaxBits = 15;

  // Ranges are expanded in the order written. Throws ConfigError at `where` for bad syntax, a
  // port listed twice, or a count that is not 2^N with 1 <= N <= 15.
  static PortSpan parse(std::string_view text, const Location& where);

  std::size_t size() const { return ports_.size(); }
  int bits() const { return bits_; }  // N
  std::uint16_t port_at(std::size_t i) const { return ports_[i]; }
  const std::vector<std::uint16_t>& ports() const { return ports_; }
  // The symbol a port stands for, or -1 when the port is not in the span. O(1).
  int index_of(std::uint16_t port) const noexcept { return index_.empty() ? -1 : index_[port]; }
  std::string str() const;  // canonical "a-b,c,..." in span order

 private:
  std::vector<std::uint16_t> ports_;
  std::vector<std::int16_t> index_;  // 65536 entries, -1 = not in span
  int bits_ = 0;
};

}  // namespace knock::codec
