// knockclient: sends a port knock. All logic lives in knockcore (client/client.hpp).
#include "client/client.hpp"

int main(int argc, char** argv) { return knock::client::run(argc, argv); }
