#pragma once
// A command run inside the daemon through a library rather than as a process (template keys
// nft and ipset): one object per kind, held by the runner and created on first use.
#include <memory>
#include <string>

#include "rules/action_kind.hpp"

namespace knock::rules {

class InProcessAction {
 public:
  virtual ~InProcessAction() = default;
  // Runs one command; false with the library's message in *error when it fails. Never throws.
  virtual bool run(const std::string& command, std::string* error) noexcept = 0;
  // Does now what the first command would otherwise do (open a socket, load tables), so that the
  // first knock is as fast as the others and the socket exists before descriptors are checked.
  virtual void prepare() noexcept {}
};

// The executor for an in-process kind; nullptr for ActionKind::shell (or when out of memory).
std::unique_ptr<InProcessAction> make_in_process_action(ActionKind kind) noexcept;

}  // namespace knock::rules
