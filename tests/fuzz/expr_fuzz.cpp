// libFuzzer: parse arbitrary text as a condition/state expression and evaluate it twice
// against a small, bounded state; also the system-template substitution path.
#include <cstddef>
#include <cstdint>
#include <string>

#include "rules/engine.hpp"
#include "rules/expr.hpp"
#include "rules/state.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace knock;
  using namespace knock::rules;
  std::string text(reinterpret_cast<const char*>(data), size);
  knock::codec::KnockValues kv;
  kv.set(codec::Field::Ip, 0xC6120001);
  kv.set(codec::Field::Port, 22);
  kv.set(codec::Field::Flag0, size % 256);
  Vars vars = make_vars(kv, IpAddress::v4(0xC6120002), 1709632800.5);
  StateTree state(StateLimits{1000, 16, 256, 1024});
  try {
    Expr e = Expr::parse(text, Location{"fuzz", 1});
    e.evaluate(vars, &state);
    e.evaluate(vars, &state);
    (void)e.render(vars);
  } catch (const ConfigError&) {
  }
  try {
    auto parts = Engine::parse_system(text, Location{"fuzz", 1}, ExprLimits{});
    std::string why;
    (void)Engine::substitute(parts, vars, state, &why);
  } catch (const ConfigError&) {
  }
  (void)parse_delay(text);
  return 0;
}
