#pragma once
// How a template's command runs: by /bin/sh (system), or inside the daemon through a library
// (nft: libnftables; ipset: libipset). One value travels with each command from the template to
// the runner, the table of pending responses and the state cache.
#include <cstdint>
#include <string_view>

namespace knock::rules {

enum class ActionKind : std::uint8_t { shell, nft, ipset };

// The template key without its 4/6 suffix ("system", "nft", "ipset").
constexpr std::string_view action_key(ActionKind kind) noexcept {
  switch (kind) {
    case ActionKind::nft:
      return "nft";
    case ActionKind::ipset:
      return "ipset";
    case ActionKind::shell:
      break;
  }
  return "system";
}

// Run inside the daemon rather than as a process.
constexpr bool in_process(ActionKind kind) noexcept { return kind != ActionKind::shell; }

}  // namespace knock::rules
