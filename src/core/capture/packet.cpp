#include "capture/packet.hpp"

namespace knock::capture {

namespace {

// A read-only window over captured bytes; every access is checked against its end.
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) noexcept
      : data_(data), size_(data == nullptr ? 0 : size) {}
  std::size_t size() const noexcept { return size_; }
  bool has(std::size_t offset, std::size_t n) const noexcept {
    return offset <= size_ && n <= size_ - offset;
  }
  std::uint8_t u8(std::size_t o) const noexcept { return data_[o]; }
  std::uint16_t be16(std::size_t o) const noexcept {
    return static_cast<std::uint16_t>((data_[o] << 8) | data_[o + 1]);
  }
  std::uint32_t be32(std::size_t o) const noexcept {
    return (std::uint32_t{data_[o]} << 24) | (std::uint32_t{data_[o + 1]} << 16) |
           (std::uint32_t{data_[o + 2]} << 8) | std::uint32_t{data_[o + 3]};
  }
  std::uint32_t le32(std::size_t o) const noexcept {
    return (std::uint32_t{data_[o + 3]} << 24) | (std::uint32_t{data_[o + 2]} << 16) |
           (std::uint32_t{data_[o + 1]} << 8) | std::uint32_t{data_[o]};
  }
  const std::uint8_t* at(std::size_t o) const noexcept { return data_ + o; }
  // The bytes from offset on (offset must be <= size()).
  Reader from(std::size_t o) const noexcept { return Reader(data_ + o, size_ - o); }
  Reader first(std::size_t n) const noexcept { return Reader(data_, n < size_ ? n : size_); }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
};

constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86DD;
constexpr std::uint16_t kEtherVlan = 0x8100;
constexpr std::uint16_t kEtherQinQ = 0x88A8;
constexpr std::uint16_t kEtherQinQOld = 0x9100;
constexpr int kMaxVlanTags = 8;
constexpr int kMaxIpv6ExtHeaders = 16;

ParseResult fail(ParseStatus s) noexcept {
  ParseResult r;
  r.status = s;
  return r;
}

// L4 header at r; the IP layer filled source/destination.
ParseResult parse_l4(std::uint8_t proto, Reader r, ParseResult res) noexcept {
  Observation& o = res.observation;
  o.protocol = proto;
  if (proto == kProtoTcp) {
    if (!r.has(0, 20)) return fail(ParseStatus::Truncated);
    if ((r.u8(12) >> 4) < 5) return fail(ParseStatus::BadHeader);
    o.source_port = r.be16(0);
    o.dest_port = r.be16(2);
    o.tcp_seq = r.be32(4);
    o.has_tcp_seq = true;
    o.tcp_flags = r.u8(13);
  } else if (proto == kProtoUdp) {
    if (!r.has(0, 8)) return fail(ParseStatus::Truncated);
    o.source_port = r.be16(0);
    o.dest_port = r.be16(2);
    o.tcp_flags = 0;
    o.has_tcp_seq = false;
    // The datagram's payload, as far as both the UDP length and the capture reach.
    const std::uint16_t udp_len = r.be16(4);
    if (udp_len >= 8) {
      const Reader payload = r.from(8).first(static_cast<std::size_t>(udp_len - 8));
      o.payload = payload.size() != 0 ? payload.at(0) : nullptr;
      o.payload_size = static_cast<std::uint16_t>(payload.size());
    }
  } else {
    return fail(ParseStatus::NotTcpUdp);
  }
  res.status = ParseStatus::Ok;
  return res;
}

ParseResult parse_ipv4(Reader r, double ts) noexcept {
  if (!r.has(0, 20)) return fail(ParseStatus::Truncated);
  const std::uint8_t vihl = r.u8(0);
  if ((vihl >> 4) != 4) return fail(ParseStatus::BadHeader);
  const std::size_t ihl = static_cast<std::size_t>(vihl & 0x0F) * 4;
  if (ihl < 20) return fail(ParseStatus::BadHeader);
  const std::size_t total = r.be16(2);
  if (total < ihl) return fail(ParseStatus::BadHeader);
  if (!r.has(0, ihl)) return fail(ParseStatus::Truncated);
  const std::uint16_t frag = r.be16(6);
  if ((frag & 0x1FFF) != 0) return fail(ParseStatus::Fragment);
  const bool more_fragments = (frag & 0x2000) != 0;
  ParseResult res;
  res.observation.source = IpAddress::v4_bytes(r.at(12));
  res.observation.destination = IpAddress::v4_bytes(r.at(16));
  res.observation.time = ts;
  // Ignore link-layer padding beyond the IP total length.
  Reader l4 = r.first(total).from(ihl);
  ParseResult out = parse_l4(r.u8(9), l4, res);
  if (more_fragments && out.status == ParseStatus::Truncated && r.size() >= total)
    return fail(ParseStatus::Fragment);  // first fragment too short to hold the L4 header
  return out;
}

bool is_ipv6_ext(std::uint8_t nh) noexcept {
  return nh == 0 || nh == 43 || nh == 60 || nh == 44 || nh == 51 || nh == 135 || nh == 139 ||
         nh == 140;
}

ParseResult parse_ipv6(Reader r, double ts) noexcept {
  if (!r.has(0, 40)) return fail(ParseStatus::Truncated);
  if ((r.u8(0) >> 4) != 6) return fail(ParseStatus::BadHeader);
  const std::size_t payload = r.be16(4);
  ParseResult res;
  res.observation.source = IpAddress::v6_bytes(r.at(8));
  res.observation.destination = IpAddress::v6_bytes(r.at(24));
  res.observation.time = ts;
  // payload length 0 is a jumbogram (or bogus); then the capture bounds the packet
  Reader p = r.from(40);
  if (payload != 0) p = p.first(payload);
  std::uint8_t nh = r.u8(6);
  std::size_t off = 0;
  bool fragmented = false;
  for (int i = 0; is_ipv6_ext(nh); ++i) {
    if (i >= kMaxIpv6ExtHeaders) return fail(ParseStatus::BadHeader);
    if (!p.has(off, 8)) return fail(fragmented ? ParseStatus::Fragment : ParseStatus::Truncated);
    std::size_t len;
    if (nh == 44) {  // fragment header: fixed 8 bytes
      const std::uint16_t fo = p.be16(off + 2);
      if ((fo & 0xFFF8) != 0) return fail(ParseStatus::Fragment);
      fragmented = (fo & 1) != 0;
      len = 8;
    } else if (nh == 51) {  // AH: length in 4-octet units minus 2
      len = (static_cast<std::size_t>(p.u8(off + 1)) + 2) * 4;
    } else {
      len = (static_cast<std::size_t>(p.u8(off + 1)) + 1) * 8;
    }
    if (!p.has(off, len)) return fail(fragmented ? ParseStatus::Fragment : ParseStatus::Truncated);
    nh = p.u8(off);
    off += len;
  }
  ParseResult out = parse_l4(nh, p.from(off), res);
  if (fragmented && out.status == ParseStatus::Truncated) return fail(ParseStatus::Fragment);
  return out;
}

ParseResult parse_ip_by_version(Reader r, double ts) noexcept {
  if (!r.has(0, 1)) return fail(ParseStatus::Truncated);
  switch (r.u8(0) >> 4) {
    case 4: return parse_ipv4(r, ts);
    case 6: return parse_ipv6(r, ts);
    default: return fail(ParseStatus::NonIp);
  }
}

// ethertype at r[off]; VLAN tags (each 4 bytes: TCI + next type) are skipped.
ParseResult parse_ethertype(Reader r, std::size_t off, double ts) noexcept {
  for (int tags = 0;; ++tags) {
    if (!r.has(off, 2)) return fail(ParseStatus::Truncated);
    const std::uint16_t type = r.be16(off);
    off += 2;
    if (type == kEtherVlan || type == kEtherQinQ || type == kEtherQinQOld) {
      if (tags >= kMaxVlanTags) return fail(ParseStatus::BadHeader);
      off += 2;  // TCI; the next type follows
      continue;
    }
    if (!r.has(off, 0)) return fail(ParseStatus::Truncated);
    if (type == kEtherIpv4) return parse_ipv4(r.from(off), ts);
    if (type == kEtherIpv6) return parse_ipv6(r.from(off), ts);
    return fail(ParseStatus::NonIp);
  }
}

// BSD AF_ values for IPv4 and the IPv6 values of the various BSDs, Darwin and Linux.
ParseResult parse_af(std::uint32_t af, Reader r, double ts) noexcept {
  if (af == 2) return parse_ipv4(r, ts);
  if (af == 24 || af == 28 || af == 30 || af == 10) return parse_ipv6(r, ts);
  return fail(ParseStatus::NonIp);
}

}  // namespace

bool link_type_supported(int dlt) noexcept {
  switch (dlt) {
    case kDltNull: case kDltEn10mb: case kDltRaw: case kLinktypeRaw: case kDltLoop:
    case kDltLinuxSll: case kDltIpv4: case kDltIpv6: case kDltLinuxSll2:
      return true;
    default:
      return false;
  }
}

std::string_view to_string(ParseStatus status) noexcept {
  switch (status) {
    case ParseStatus::Ok: return "ok";
    case ParseStatus::UnsupportedLink: return "unsupported-link";
    case ParseStatus::NonIp: return "non-ip";
    case ParseStatus::Truncated: return "truncated";
    case ParseStatus::BadHeader: return "bad-header";
    case ParseStatus::Fragment: return "fragment";
    case ParseStatus::NotTcpUdp: return "not-tcp-udp";
  }
  return "?";
}

ParseResult parse_packet_result(int dlt, const std::uint8_t* data, std::size_t caplen,
                                double timestamp) noexcept {
  const Reader r(data, caplen);
  switch (dlt) {
    case kDltEn10mb:
      return parse_ethertype(r, 12, timestamp);
    case kDltLinuxSll:  // type(2) arphrd(2) addrlen(2) addr(8) protocol(2)
      return parse_ethertype(r, 14, timestamp);
    case kDltLinuxSll2: {  // protocol(2) reserved(2) ifindex(4) arphrd(2) type(1) alen(1) addr(8)
      if (!r.has(0, 20)) return fail(ParseStatus::Truncated);
      const std::uint16_t type = r.be16(0);
      if (type == kEtherVlan || type == kEtherQinQ || type == kEtherQinQOld) {
        // the tag follows the header: TCI(2) then the real type
        if (!r.has(20, 4)) return fail(ParseStatus::Truncated);
        return parse_ethertype(r, 22, timestamp);
      }
      if (type == kEtherIpv4) return parse_ipv4(r.from(20), timestamp);
      if (type == kEtherIpv6) return parse_ipv6(r.from(20), timestamp);
      return fail(ParseStatus::NonIp);
    }
    case kDltRaw:
    case kLinktypeRaw:
      return parse_ip_by_version(r, timestamp);
    case kDltIpv4:
      return parse_ipv4(r, timestamp);
    case kDltIpv6:
      return parse_ipv6(r, timestamp);
    case kDltNull: {
      if (!r.has(0, 4)) return fail(ParseStatus::Truncated);
      // host byte order of the machine that captured: small values read one way or the other
      std::uint32_t af = r.le32(0);
      if (af > 0xFFFF) af = r.be32(0);
      return parse_af(af, r.from(4), timestamp);
    }
    case kDltLoop:
      if (!r.has(0, 4)) return fail(ParseStatus::Truncated);
      return parse_af(r.be32(0), r.from(4), timestamp);
    default:
      return fail(ParseStatus::UnsupportedLink);
  }
}

}  // namespace knock::capture
