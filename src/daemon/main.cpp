// knockdaemon: watches knocks on a span of closed ports and runs the configured actions.
#include "daemon/daemon.hpp"

int main(int argc, char** argv) { return knock::daemon::main(argc, argv); }
