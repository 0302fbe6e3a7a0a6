#include "capture/pcap_writer.hpp"

#include <pcap/pcap.h>

#include <cmath>

#include "util/error.hpp"

namespace knock::capture {

namespace {

void put16(std::vector<std::uint8_t>& v, std::uint16_t x) {
  v.push_back(static_cast<std::uint8_t>(x >> 8));
  v.push_back(static_cast<std::uint8_t>(x));
}
void put32(std::vector<std::uint8_t>& v, std::uint32_t x) {
  put16(v, static_cast<std::uint16_t>(x >> 16));
  put16(v, static_cast<std::uint16_t>(x));
}
void set16(std::vector<std::uint8_t>& v, std::size_t o, std::uint16_t x) {
  v[o] = static_cast<std::uint8_t>(x >> 8);
  v[o + 1] = static_cast<std::uint8_t>(x);
}

std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t acc = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) acc += static_cast<std::uint32_t>((p[i] << 8) | p[i + 1]);
  if (n % 2 != 0) acc += static_cast<std::uint32_t>(p[n - 1] << 8);
  return acc;
}
std::uint16_t fold(std::uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xFFFF) + (acc >> 16);
  return static_cast<std::uint16_t>(~acc);
}

std::vector<std::uint8_t> build_l4(const PacketSpec& s) {
  std::vector<std::uint8_t> l4;
  if (s.protocol == kProtoTcp) {
    put16(l4, s.source_port);
    put16(l4, s.dest_port);
    put32(l4, s.tcp_seq);
    put32(l4, 0);                    // ack
    l4.push_back(5 << 4);            // data offset 5
    l4.push_back(s.tcp_flags);
    put16(l4, 64240);                // window
    put16(l4, 0);                    // checksum
    put16(l4, 0);                    // urgent
  } else if (s.protocol == kProtoUdp) {
    put16(l4, s.source_port);
    put16(l4, s.dest_port);
    put16(l4, static_cast<std::uint16_t>(8 + s.payload.size()));
    put16(l4, 0);
  }
  l4.insert(l4.end(), s.payload.begin(), s.payload.end());
  return l4;
}

void l4_checksum(const PacketSpec& s, std::vector<std::uint8_t>& l4) {
  std::size_t at;
  if (s.protocol == kProtoTcp) at = 16;
  else if (s.protocol == kProtoUdp) at = 6;
  else return;
  std::uint32_t acc = sum16(s.source.bytes(), s.source.size());
  acc = sum16(s.destination.bytes(), s.destination.size(), acc);
  acc += s.protocol;
  acc += static_cast<std::uint32_t>(l4.size() & 0xFFFF) + static_cast<std::uint32_t>(l4.size() >> 16);
  acc = sum16(l4.data(), l4.size(), acc);
  std::uint16_t c = fold(acc);
  if (c == 0 && s.protocol == kProtoUdp) c = 0xFFFF;
  set16(l4, at, c);
}

std::vector<std::uint8_t> build_ip(const PacketSpec& s) {
  std::vector<std::uint8_t> l4 = build_l4(s);
  l4_checksum(s, l4);
  std::vector<std::uint8_t> ip;
  if (s.source.is_v4()) {
    std::vector<std::uint8_t> opts = s.ipv4_options;
    while (opts.size() % 4 != 0) opts.push_back(0);  // EOL padding
    if (opts.size() > 40) throw RuntimeError("IPv4 options longer than 40 bytes");
    const std::size_t ihl = 20 + opts.size();
    ip.push_back(static_cast<std::uint8_t>(0x40 | (ihl / 4)));
    ip.push_back(0);
    put16(ip, static_cast<std::uint16_t>(ihl + l4.size()));
    put16(ip, 0);       // id
    put16(ip, 0x4000);  // DF
    ip.push_back(64);
    ip.push_back(s.protocol);
    put16(ip, 0);
    ip.insert(ip.end(), s.source.bytes(), s.source.bytes() + 4);
    ip.insert(ip.end(), s.destination.bytes(), s.destination.bytes() + 4);
    ip.insert(ip.end(), opts.begin(), opts.end());
    set16(ip, 10, fold(sum16(ip.data(), ip.size())));
  } else {
    std::vector<std::uint8_t> ext;
    const std::vector<std::uint8_t>& chain = s.ipv6_ext_headers;
    for (std::size_t i = 0; i < chain.size(); ++i) {
      const std::uint8_t next = i + 1 < chain.size() ? chain[i + 1] : s.protocol;
      if (chain[i] == 44) {  // fragment header, offset 0, M=0 (an atomic fragment)
        ext.push_back(next);
        ext.push_back(0);
        put16(ext, 0);
        put32(ext, 0x12345678);
      } else {  // 8-byte options/routing header padded with PadN
        ext.push_back(next);
        ext.push_back(0);
        if (chain[i] == 43) {  // routing type 0... use type 4 (SRH-less), segments left 0
          ext.push_back(4);
          ext.push_back(0);
          put32(ext, 0);
        } else {
          ext.push_back(1);  // PadN
          ext.push_back(4);
          put32(ext, 0);
        }
      }
    }
    ip.push_back(0x60);
    ip.push_back(0);
    put16(ip, 0);
    put16(ip, static_cast<std::uint16_t>(ext.size() + l4.size()));
    ip.push_back(chain.empty() ? s.protocol : chain[0]);
    ip.push_back(64);
    ip.insert(ip.end(), s.source.bytes(), s.source.bytes() + 16);
    ip.insert(ip.end(), s.destination.bytes(), s.destination.bytes() + 16);
    ip.insert(ip.end(), ext.begin(), ext.end());
  }
  ip.insert(ip.end(), l4.begin(), l4.end());
  return ip;
}

void put_tags(std::vector<std::uint8_t>& f, const PacketSpec& s) {
  for (std::size_t i = 0; i < s.vlan_tags.size(); ++i) {
    const bool outer = s.qinq && i + 1 < s.vlan_tags.size();
    put16(f, outer ? 0x88A8 : 0x8100);
    put16(f, s.vlan_tags[i]);
  }
}

}  // namespace

std::vector<std::uint8_t> build_frame(int dlt, const PacketSpec& spec) {
  if (spec.source.is_v4() != spec.destination.is_v4())
    throw RuntimeError("build_frame: mixed address families");
  const std::vector<std::uint8_t> ip = build_ip(spec);
  const std::uint16_t type = spec.source.is_v4() ? 0x0800 : 0x86DD;
  std::vector<std::uint8_t> f;
  switch (dlt) {
    case kDltEn10mb:
      for (std::uint8_t b : {0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2}) f.push_back(b);
      put_tags(f, spec);
      put16(f, type);
      break;
    case kDltLinuxSll:
      put16(f, 0);  // to us
      put16(f, 1);  // ARPHRD_ETHER
      put16(f, 6);
      for (std::uint8_t b : {0x02, 0, 0, 0, 0, 2, 0, 0}) f.push_back(b);
      put_tags(f, spec);
      put16(f, type);
      break;
    case kDltLinuxSll2: {
      const bool tagged = !spec.vlan_tags.empty();
      put16(f, tagged ? (spec.qinq && spec.vlan_tags.size() > 1 ? 0x88A8 : 0x8100) : type);
      put16(f, 0);
      put32(f, 1);  // ifindex
      put16(f, 1);  // ARPHRD_ETHER
      f.push_back(0);
      f.push_back(6);
      for (std::uint8_t b : {0x02, 0, 0, 0, 0, 2, 0, 0}) f.push_back(b);
      for (std::size_t i = 0; i < spec.vlan_tags.size(); ++i) {
        put16(f, spec.vlan_tags[i]);
        if (i + 1 < spec.vlan_tags.size()) put16(f, 0x8100);
      }
      if (tagged) put16(f, type);
      break;
    }
    case kDltRaw: case kLinktypeRaw: case kDltIpv4: case kDltIpv6:
      break;
    case kDltNull: {  // little-endian AF, as a Linux/x86 capturer writes it
      const std::uint32_t af = spec.source.is_v4() ? 2 : 24;
      for (int i = 0; i < 4; ++i) f.push_back(static_cast<std::uint8_t>(af >> (8 * i)));
      break;
    }
    case kDltLoop:
      put32(f, spec.source.is_v4() ? 2 : 24);
      break;
    default:
      throw RuntimeError("build_frame: unsupported link type " + std::to_string(dlt));
  }
  f.insert(f.end(), ip.begin(), ip.end());
  return f;
}

PcapWriter::PcapWriter(const std::string& path, int dlt, int snaplen)
    : dlt_(dlt), snaplen_(snaplen) {
  dead_ = pcap_open_dead(dlt, snaplen);
  if (dead_ == nullptr) throw RuntimeError("pcap_open_dead failed for link type " + std::to_string(dlt));
  dumper_ = pcap_dump_open(dead_, path.c_str());
  if (dumper_ == nullptr) {
    const std::string msg = pcap_geterr(dead_);
    pcap_close(dead_);
    throw RuntimeError("cannot write " + path + ": " + msg);
  }
}

PcapWriter::~PcapWriter() { close(); }

void PcapWriter::close() {
  if (dumper_ != nullptr) pcap_dump_close(dumper_);
  if (dead_ != nullptr) pcap_close(dead_);
  dumper_ = nullptr;
  dead_ = nullptr;
}

void PcapWriter::flush() {
  if (dumper_ != nullptr && pcap_dump_flush(dumper_) != 0) throw RuntimeError("pcap_dump_flush failed");
}

void PcapWriter::add_raw(const std::vector<std::uint8_t>& frame, double ts, std::size_t caplen) {
  if (dumper_ == nullptr) throw RuntimeError("PcapWriter: closed");
  pcap_pkthdr h{};
  double sec = std::floor(ts);
  h.ts.tv_sec = static_cast<time_t>(sec);
  h.ts.tv_usec = static_cast<suseconds_t>(std::lround((ts - sec) * 1e6));
  if (h.ts.tv_usec >= 1000000) {
    h.ts.tv_sec += 1;
    h.ts.tv_usec -= 1000000;
  }
  std::size_t cap = frame.size();
  if (caplen != 0 && caplen < cap) cap = caplen;
  if (cap > static_cast<std::size_t>(snaplen_)) cap = static_cast<std::size_t>(snaplen_);
  h.caplen = static_cast<bpf_u_int32>(cap);
  h.len = static_cast<bpf_u_int32>(frame.size());
  pcap_dump(reinterpret_cast<u_char*>(dumper_), &h, frame.data());
  ++count_;
}

void PcapWriter::add(const PacketSpec& spec, double ts, std::size_t caplen) {
  add_raw(build_frame(dlt_, spec), ts, caplen);
}

void PcapWriter::add_tcp_syn(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
                             std::uint16_t dport, std::uint32_t seq, double ts) {
  PacketSpec s;
  s.source = src;
  s.destination = dst;
  s.source_port = sport;
  s.dest_port = dport;
  s.tcp_seq = seq;
  add(s, ts);
}

void PcapWriter::add_udp(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
                         std::uint16_t dport, const std::vector<std::uint8_t>& payload, double ts) {
  PacketSpec s;
  s.source = src;
  s.destination = dst;
  s.source_port = sport;
  s.dest_port = dport;
  s.protocol = kProtoUdp;
  s.tcp_flags = 0;
  s.payload = payload;
  add(s, ts);
}

}  // namespace knock::capture
