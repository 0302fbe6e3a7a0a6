// Cost of the in-process ipset action (rules/ipset.cpp, template key ipset): one add of an element
// with a timeout and its del through one IpsetExecutor, as the daemon's monitor runs them; and an
// add of an element already there (a second knock: -exist refreshes its timeout). Root only: the
// benchmark moves itself into a network namespace of its own (unshare) and makes the set there
// with the ipset program, so the host's sets are never touched.
#include <benchmark/benchmark.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "rules/ipset.hpp"

using knock::rules::IpsetExecutor;

namespace {

// The set pk (hash:ip,port, timeout 0) in a fresh network namespace; "" or why not.
std::string ready() {
  static const std::string why = [] {
    if (geteuid() != 0) return std::string("needs root (a network namespace of its own)");
    if (unshare(CLONE_NEWNET) != 0) return std::string("unshare(CLONE_NEWNET) failed");
    if (std::system("ipset create pk hash:ip,port timeout 0") != 0) return std::string("ipset create failed");
    return std::string();
  }();
  return why;
}

void BM_IpsetAddDel(benchmark::State& state) {
  if (const std::string why = ready(); !why.empty()) return state.SkipWithError(why.c_str());
  IpsetExecutor x;
  x.prepare();
  std::string error;
  for (auto _ : state) {
    if (!x.run("add pk 198.18.1.2,tcp:22 timeout 30", &error) || !x.run("del pk 198.18.1.2,tcp:22", &error))
      return state.SkipWithError(error.c_str());
  }
}
BENCHMARK(BM_IpsetAddDel)->Unit(benchmark::kMicrosecond);

void BM_IpsetRefresh(benchmark::State& state) {
  if (const std::string why = ready(); !why.empty()) return state.SkipWithError(why.c_str());
  IpsetExecutor x;
  x.prepare();
  std::string error;
  for (auto _ : state) {
    if (!x.run("add pk 198.18.1.3,tcp:22 timeout 30", &error)) return state.SkipWithError(error.c_str());
  }
}
BENCHMARK(BM_IpsetRefresh)->Unit(benchmark::kMicrosecond);

}  // namespace
