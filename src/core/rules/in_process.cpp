#include "rules/in_process.hpp"

#include <new>

#include "rules/ipset.hpp"
#include "rules/nft.hpp"

namespace knock::rules {

std::unique_ptr<InProcessAction> make_in_process_action(ActionKind kind) noexcept {
  switch (kind) {
    case ActionKind::nft:
      return std::unique_ptr<InProcessAction>(new (std::nothrow) NftExecutor());
    case ActionKind::ipset:
      return std::unique_ptr<InProcessAction>(new (std::nothrow) IpsetExecutor());
    case ActionKind::shell:
      break;
  }
  return nullptr;
}

}  // namespace knock::rules
