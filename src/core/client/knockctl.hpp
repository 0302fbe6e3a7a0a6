#pragma once
// knockctl (doc/knockctl.1): status, list, close ADDRESS|all, reload, metrics of a running
// knockdaemon, through its control socket (daemon/control.hpp).
namespace knock::client {

// Exit codes: 0 done, 1 the daemon refused or could not be reached, 2 usage.
int knockctl_main(int argc, const char* const* argv);

}  // namespace knock::client
