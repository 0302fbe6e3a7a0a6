#pragma once
// The knockdaemon program: command line, configuration, and the event loop. Lives in the core
// library so that tests can drive it in-process.
namespace knock::daemon {

int main(int argc, const char* const* argv);

}  // namespace knock::daemon
