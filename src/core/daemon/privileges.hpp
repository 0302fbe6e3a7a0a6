#pragma once
// Dropping root after the capture is open (config key `user = NAME`): the daemon keeps only
// CAP_NET_ADMIN (firewall commands; passed to them as an ambient capability) and CAP_NET_RAW
// (to reopen the capture after SIGHUP).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace knock::daemon {

// Switches to the user's uid, gid and groups, keeping the two capabilities. Throws
// RuntimeError when the user is unknown or a step fails; a no-op when not running as root
// (then it only checks that we already are that user).
void drop_privileges(const std::string& user);

// The capabilities the firewall commands may have (config key `commandcaps`, default
// CAP_NET_ADMIN CAP_NET_RAW): every other one leaves the bounding set, so no program the daemon
// starts can hold it, even as root. The daemon's own permitted set is unchanged (it still starts
// its worker and opens captures). Parses "CAP_NET_ADMIN CAP_NET_RAW" or "all"; nullopt = all.
std::optional<std::vector<int>> parse_capabilities(std::string_view text, std::string* why);
// Drops from the bounding set what `keep` does not name. A no-op without CAP_SETPCAP (not root),
// said once at debug level. Throws RuntimeError when a drop fails.
void limit_command_capabilities(const std::vector<int>& keep);
// "0000000000003000": the bounding set as /proc/PID/status prints it (tests, logs).
std::string bounding_set_hex();

}  // namespace knock::daemon
