// libFuzzer target for the Config::General parser: any input must either parse (and print as
// JSON) or raise ConfigError; anything else (crash, other exception, hang) is a bug.
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I src/core \
//     tests/fuzz/config_fuzz.cpp src/core/config/*.cpp src/core/util/error.cpp src/core/util/log.cpp \
//     -o /tmp/config_fuzz && /tmp/config_fuzz -max_total_time=60 tests/fuzz/corpus/config
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/tree.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  knock::config::ParseLimits limits;
  limits.max_file_bytes = 1 << 20;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const knock::config::Value root = knock::config::parse_string(text, "fuzz.conf", limits);
    const std::string json = knock::config::to_json(root);
    if (json.empty() || json.back() != '\n') __builtin_trap();
  } catch (const knock::ConfigError&) {
  }
  return 0;
}
