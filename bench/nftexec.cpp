// nftexec: what one `nft` template command costs through NftExecutor (src/core/rules/nft.hpp),
// with the netlink fast path of set elements and with libnftables alone (PORTKNOCK_NFT_FASTPATH=0),
// in a network namespace of its own (root). Not a test: prints medians and p99s in µs.
//   nftexec [N]   N adds (timeout 30s) and N deletes of one element, each way, in an empty set
//                 and in a set of 1000 elements (default N = 300)
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "rules/nft.hpp"

namespace {

double now_us() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

struct Stats {
  double median, p99, max;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  std::size_t p = static_cast<std::size_t>(static_cast<double>(n) * 0.99 + 0.999);
  p = p == 0 ? 0 : std::min(p - 1, n - 1);
  return {v[(n - 1) / 2], v[p], v[n - 1]};
}

bool run(knock::rules::NftExecutor& nft, const std::string& command) {
  std::string error;
  if (nft.run(command, &error)) return true;
  std::fprintf(stderr, "nftexec: %s: %s\n", command.c_str(), error.c_str());
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 300;
  if (n <= 0 || argc > 2) {
    std::fprintf(stderr, "usage: nftexec [N]\n");
    return 2;
  }
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("nftexec: unshare(CLONE_NEWNET) (needs root)");
    return 1;
  }
  {
    knock::rules::NftExecutor setup;
    if (!run(setup, "add table inet pk") ||
        !run(setup, "add set inet pk allowed { type ipv4_addr . inet_service; flags timeout; }"))
      return 1;
  }
  const std::string add = "add element inet pk allowed { 198.18.1.2 . 22 timeout 30s }";
  const std::string del = "delete element inet pk allowed { 198.18.1.2 . 22 }";
  for (const int fill : {0, 1000}) {
    if (fill > 0) {
      knock::rules::NftExecutor setup;
      std::string many = "add element inet pk allowed { ";
      for (int i = 0; i < fill; ++i)
        many += (i ? ", " : "") + std::string("198.18.") + std::to_string(10 + i / 250) + "." +
                std::to_string(1 + i % 250) + " . 22 timeout 1h";
      if (!run(setup, many + " }")) return 1;
    }
    for (const bool fast : {true, false}) {
      setenv("PORTKNOCK_NFT_FASTPATH", fast ? "1" : "0", 1);
      knock::rules::NftExecutor nft;
      std::string ignored;
      nft.run("list tables", &ignored);  // as the runner prepares its context
      std::vector<double> adds, dels;
      for (int i = 0; i < n; ++i) {
        double t0 = now_us();
        if (!run(nft, add)) return 1;
        adds.push_back(now_us() - t0);
        t0 = now_us();
        if (!run(nft, del)) return 1;
        dels.push_back(now_us() - t0);
      }
      const Stats a = stats(adds), d = stats(dels);
      std::printf("%-12s set of %4d: add median %6.1f µs p99 %6.1f max %6.1f | delete median %6.1f µs p99 %6.1f max %6.1f (n=%d)\n",
                  fast ? "fast path" : "libnftables", fill, a.median, a.p99, a.max, d.median, d.p99, d.max, n);
    }
  }
  return 0;
}
