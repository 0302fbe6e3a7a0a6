// The cost of privilege separation on the knock path (issue 13, item 5): what one verified
// knock costs to cross from the worker to the monitor.
//   BM_EncodeDecode          build the KNOCK message and check it as the monitor does
//   BM_ChannelSameThread     the same through the socketpair (sendmsg + recvmsg), no wakeup
//   BM_ChannelAcrossProcesses a forked "monitor" decodes each message and answers one byte:
//                            a round trip with two wakeups, which is more than a knock pays
//                            (the worker never waits for an answer to a KNOCK)
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include "daemon/privsep.hpp"

namespace {

using namespace knock;
using namespace knock::daemon::privsep;

rules::KnockEvent sample() {
  rules::KnockEvent e;
  e.values.set(codec::Field::Ip, 0xC6120102);
  e.values.set(codec::Field::Port, 22);
  e.values.set(codec::Field::Flag0, 0);
  e.logip = *IpAddress::parse("198.18.1.2");
  e.time = 1764450000.25;
  e.extras.client = "alice";
  spa::Identity id{};
  id.fill(0xab);
  e.add_replay(id);
  e.replay_expiry = 1764450120;
  return e;
}

void BM_EncodeDecode(benchmark::State& state) {
  const auto e = sample();
  Buffer out;
  for (auto _ : state) {
    const std::size_t n = encode_knock(KnockKind::Spa, false, e, out);
    KnockReport r;
    std::string why;
    benchmark::DoNotOptimize(decode_knock(std::span(out.data(), n), r, why));
  }
}
BENCHMARK(BM_EncodeDecode);

void BM_ChannelSameThread(benchmark::State& state) {
  const auto e = sample();
  auto channel = make_channel();
  Buffer out;
  Buffer in;
  for (auto _ : state) {
    const std::size_t n = encode_knock(KnockKind::Spa, false, e, out);
    send_message(channel[1], std::span(out.data(), n));
    const long got = receive_message(channel[0], in, nullptr);
    KnockReport r;
    std::string why;
    benchmark::DoNotOptimize(decode_knock(std::span(in.data(), static_cast<std::size_t>(got)), r, why));
  }
  close(channel[0]);
  close(channel[1]);
}
BENCHMARK(BM_ChannelSameThread);

void BM_ChannelAcrossProcesses(benchmark::State& state) {
  auto channel = make_channel();
  const pid_t pid = fork();
  if (pid == 0) {
    close(channel[1]);
    Buffer in;
    for (;;) {
      pollfd p{channel[0], POLLIN, 0};
      poll(&p, 1, -1);
      const long got = receive_message(channel[0], in, nullptr);
      if (got <= 0) _exit(0);
      KnockReport r;
      std::string why;
      decode_knock(std::span(in.data(), static_cast<std::size_t>(got)), r, why);
      const std::uint8_t ok = 1;
      send_message(channel[0], std::span(&ok, 1));
    }
  }
  close(channel[0]);
  const auto e = sample();
  Buffer out;
  Buffer in;
  for (auto _ : state) {
    const std::size_t n = encode_knock(KnockKind::Spa, false, e, out);
    send_message(channel[1], std::span(out.data(), n));
    pollfd p{channel[1], POLLIN, 0};
    poll(&p, 1, -1);
    benchmark::DoNotOptimize(receive_message(channel[1], in, nullptr));
  }
  close(channel[1]);
  waitpid(pid, nullptr, 0);
}
BENCHMARK(BM_ChannelAcrossProcesses)->UseRealTime();

}  // namespace
