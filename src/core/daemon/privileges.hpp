#pragma once
// Dropping root after the capture is open (config key `user = NAME`): the daemon keeps only
// CAP_NET_ADMIN (firewall commands; passed to them as an ambient capability) and CAP_NET_RAW
// (to reopen the capture after SIGHUP).
#include <string>

namespace knock::daemon {

// Switches to the user's uid, gid and groups, keeping the two capabilities. Throws
// RuntimeError when the user is unknown or a step fails; a no-op when not running as root
// (then it only checks that we already are that user).
void drop_privileges(const std::string& user);

}  // namespace knock::daemon
