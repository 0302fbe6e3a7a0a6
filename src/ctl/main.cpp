// knockctl: asks a running knockdaemon over its control socket. Logic in knockcore
// (client/knockctl.hpp).
#include "client/knockctl.hpp"

int main(int argc, char** argv) { return knock::client::knockctl_main(argc, argv); }
