// source_watch: opens capture sources through the capture::Source interface and prints each
// observation on a line, for the e2e tests (tests/e2e/netns_nflog_source.sh).
//
//   source_watch [--rcvbuf BYTES] [--nflog GROUP]... [--listen ADDR:PORT]... [--count N]
//                [--seconds S] [--pause S]
//
// --rcvbuf sets the NFLOG receive buffer of the groups that follow (to provoke kernel drops);
// --pause sleeps S seconds after "ready" before reading anything.
// Prints "ready" once every source is open, then per observation:
//   SOURCE-KEY|PROTO|SRC|SPORT|DST|DPORT|FLAGS|PAYLOAD-BYTES
// and at the end each source's describe() line, prefixed "stats ". Exit 0 when N observations
// were seen (or S seconds passed without --count), 1 on timeout, 2 on errors.
#include <poll.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "capture/nflog.hpp"
#include "capture/source.hpp"
#include "capture/udp_source.hpp"
#include "codec/spa.hpp"

using namespace knock;
using namespace knock::capture;

namespace {

double now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

int usage() {
  std::fprintf(stderr, "usage: source_watch [--rcvbuf BYTES] [--nflog GROUP]... [--listen ADDR:PORT]... [--count N] [--seconds S] [--pause S]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::unique_ptr<Source>> sources;
  long count = -1;
  double seconds = 10;
  double pause = 0;
  int rcvbuf = 0;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (i + 1 >= argc) return usage();
      const char* v = argv[++i];
      if (a == "--nflog") {
        NflogSource::Options o;
        o.group = static_cast<std::uint16_t>(std::strtoul(v, nullptr, 10));
        if (rcvbuf > 0) o.receive_buffer = rcvbuf;
        sources.push_back(std::make_unique<NflogSource>(o));
      } else if (a == "--listen") {
        const auto l = parse_listen(v, spa::kDefaultPort);
        if (!l) return usage();
        sources.push_back(std::make_unique<UdpSocketSource>(*l));
      } else if (a == "--rcvbuf") {
        rcvbuf = static_cast<int>(std::strtol(v, nullptr, 10));
      } else if (a == "--pause") {
        pause = std::strtod(v, nullptr);
      } else if (a == "--count") {
        count = std::strtol(v, nullptr, 10);
      } else if (a == "--seconds") {
        seconds = std::strtod(v, nullptr);
      } else {
        return usage();
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "source_watch: %s\n", e.what());
    return 2;
  }
  if (sources.empty()) return usage();
  std::printf("ready\n");
  std::fflush(stdout);
  if (pause > 0) {
    const timespec t{static_cast<time_t>(pause), static_cast<long>((pause - static_cast<double>(static_cast<time_t>(pause))) * 1e9)};
    nanosleep(&t, nullptr);
  }

  long seen = 0;
  const double deadline = now() + seconds;
  std::vector<pollfd> fds(sources.size());
  while ((count < 0 || seen < count) && now() < deadline) {
    double timeout = deadline - now();
    for (std::size_t i = 0; i < sources.size(); ++i) {
      fds[i] = pollfd{sources[i]->fd(), POLLIN, 0};
      const double t = sources[i]->next_timeout(now());
      if (t >= 0 && t < timeout) timeout = t;
    }
    poll(fds.data(), fds.size(), static_cast<int>(timeout * 1000) + 1);
    for (std::size_t i = 0; i < sources.size(); ++i) {
      Source& s = *sources[i];
      if ((fds[i].revents & POLLIN) == 0 && s.next_timeout(now()) != 0) continue;
      s.dispatch([&](const Observation& o) {
        ++seen;
        std::printf("%s|%s|%s|%u|%s|%u|0x%02x|%u\n", s.key().c_str(), o.protocol == kProtoTcp ? "tcp" : "udp",
                    o.source.str().c_str(), o.source_port, o.destination.str().c_str(), o.dest_port,
                    o.tcp_flags, o.payload_size);
      }, 64);
      std::fflush(stdout);
    }
  }
  for (auto& s : sources) std::printf("stats %s\n", s->describe().c_str());
  std::fflush(stdout);
  return (count < 0 || seen >= count) ? 0 : 1;
}
