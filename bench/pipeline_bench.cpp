// The daemon's packet path end to end, in process: parse a captured frame, check the span,
// track per source, decode (Blowfish, random IV) when a source has L ports. Items = packets.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "capture/packet.hpp"
#include "capture/pcap_writer.hpp"
#include "codec/codec.hpp"
#include "tracker/tracker.hpp"

using namespace knock;

namespace {

codec::CodecSettings blowfish_settings() {
  codec::CodecSettings s;
  s.knock = "IP,PORT,FLAG0,CHECKSUM";
  s.portspan = "2000-2255";
  s.encrypt = true;
  s.key = secure_copy("benchmark key");
  s.cipher = "Blowfish";
  s.iv = true;
  return s;
}

struct Decoder {
  const codec::KnockCodec* codec;
  codec::DecodeResult last;
  bool operator()(std::span<const std::uint16_t> ports) noexcept {
    last = codec->decode(ports);
    return last.ok();
  }
};

// Frames: `knocks` complete knocks from distinct clients, interleaved with `noise` SYNs into
// the span from random spoofed sources.
std::vector<std::vector<std::uint8_t>> make_frames(const codec::KnockCodec& codec, int knocks, int noise_per_knock) {
  std::mt19937 rng(7);
  std::vector<std::vector<std::uint8_t>> frames;
  const IpAddress server = IpAddress::v4(0xC6120001u);
  for (int k = 0; k < knocks; ++k) {
    const IpAddress client = IpAddress::v4(0xC6130000u + static_cast<std::uint32_t>(k));
    codec::KnockValues v;
    v.set(codec::Field::Ip, client.v4_host_order());
    v.set(codec::Field::Port, 22);
    v.set(codec::Field::Flag0, 1);
    const auto ports = codec.encode(v);
    for (std::uint16_t port : ports) {
      capture::PacketSpec spec;
      spec.source = client;
      spec.destination = server;
      spec.dest_port = port;
      spec.tcp_seq = rng();
      frames.push_back(capture::build_frame(capture::kDltEn10mb, spec));
      for (int n = 0; n < noise_per_knock; ++n) {
        capture::PacketSpec junk;
        junk.source = IpAddress::v4(0xC6120100u + rng() % 130000);
        junk.destination = server;
        junk.dest_port = static_cast<std::uint16_t>(2000 + rng() % 256);
        junk.tcp_seq = rng();
        frames.push_back(capture::build_frame(capture::kDltEn10mb, junk));
      }
    }
  }
  return frames;
}

void run_pipeline(benchmark::State& state, int noise_per_port) {
  const codec::KnockCodec codec(blowfish_settings());
  Decoder decoder{&codec, {}};
  tracker::TrackerOptions options;
  options.knock_length = codec.ports_per_knock();
  options.max_sources = 65536;
  tracker::Tracker tracker(options, tracker::DecodeFn(decoder));
  const auto frames = make_frames(codec, 64, noise_per_port);
  std::size_t i = 0, knocks = 0;
  double t = 1e9;
  for (auto _ : state) {
    const auto& f = frames[i];
    if (++i == frames.size()) i = 0;
    t += 1e-5;
    auto o = capture::parse_packet(capture::kDltEn10mb, f.data(), f.size(), t);
    if (o && codec.span().index_of(o->dest_port) >= 0 && tracker.observe(*o) == tracker::Outcome::Knock) ++knocks;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["knocks"] = static_cast<double>(knocks);
}

void BM_PipelineKnocksOnly(benchmark::State& state) { run_pipeline(state, 0); }
void BM_PipelineKnocksInNoise(benchmark::State& state) { run_pipeline(state, 20); }

void BM_DecodeBlowfish(benchmark::State& state) {
  const codec::KnockCodec codec(blowfish_settings());
  codec::KnockValues v;
  v.set(codec::Field::Ip, 0xC6120002u);
  v.set(codec::Field::Port, 22);
  v.set(codec::Field::Flag0, 1);
  const auto ports = codec.encode(v);
  for (auto _ : state) benchmark::DoNotOptimize(codec.decode(ports));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_ParsePacket(benchmark::State& state) {
  capture::PacketSpec spec;
  spec.source = IpAddress::v4(0xC6120002u);
  spec.destination = IpAddress::v4(0xC6120001u);
  spec.dest_port = 2000;
  const auto frame = capture::build_frame(capture::kDltEn10mb, spec);
  for (auto _ : state) benchmark::DoNotOptimize(capture::parse_packet(capture::kDltEn10mb, frame.data(), frame.size(), 0));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

}  // namespace

BENCHMARK(BM_PipelineKnocksOnly);
BENCHMARK(BM_PipelineKnocksInNoise);
BENCHMARK(BM_DecodeBlowfish);
BENCHMARK(BM_ParsePacket);
