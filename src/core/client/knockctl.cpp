#include "client/knockctl.hpp"

#include <cstdio>
#include <string>
#include <vector>

#include "daemon/control.hpp"
#include "util/cli.hpp"
#include "util/error.hpp"
#include "util/files.hpp"

namespace knock::client {
namespace {

constexpr const char* kDefaultSocket = "/run/portknock/knockdaemon.sock";

constexpr const char* kUsage =
    "usage: knockctl [-socket FILE] [-json] [-timeout SECONDS] COMMAND\n"
    "  status              version, configuration, sources, counters, pending responses\n"
    "  list                the open doors: pending responses, who knocked, when they close\n"
    "  close ADDRESS|all   run those pending responses now (the door closes now)\n"
    "  reload              what SIGHUP does; prints OK or the FILE:LINE error\n"
    "  metrics [-textfile FILE]  Prometheus text (to FILE atomically, for node_exporter)\n"
    "-socket: the daemon's controlsocket (default /run/portknock/knockdaemon.sock).\n"
    "-json: answers as JSON (status, list, close, reload).\n"
    "Exit codes: 0 done, 1 refused or unreachable, 2 usage. Manual: man knockctl\n";

const std::vector<cli::OptionSpec> kOptions = {{"socket", true}, {"json", false},     {"timeout", true},
                                               {"textfile", true}, {"h", false},      {"help", false},
                                               {"version", false}};

}  // namespace

int knockctl_main(int argc, const char* const* argv) {
  try {
    const cli::ParsedArgs args = cli::parse(argc, argv, kOptions);
    if (args.has("h") || args.has("help")) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (args.has("version")) {
      std::puts("knockctl " PORTKNOCK_VERSION);
      return 0;
    }
    const auto& words = args.positional;
    if (words.empty()) throw ConfigError("no command (status, list, close, reload, metrics; -h for help)");
    const std::string& verb = words[0];
    const bool one = words.size() == 1;
    if (!((verb == "status" || verb == "list" || verb == "reload" || verb == "metrics") && one) &&
        !(verb == "close" && words.size() == 2))
      throw ConfigError("bad command '" + verb + (words.size() > 1 ? " ..." : "") + "' (-h for help)");
    if (args.has("textfile") && verb != "metrics") throw ConfigError("-textfile goes with metrics only");
    double timeout = 30;
    if (auto t = args.get("timeout")) {
      try {
        timeout = std::stod(*t);
      } catch (...) {
        timeout = -1;
      }
      if (!(timeout > 0 && timeout <= 3600)) throw ConfigError("-timeout takes seconds, from 0.1 to 3600");
    }
    std::string request = verb;
    if (verb == "close") request += " " + words[1];
    if (args.has("json") && verb != "metrics") request += " json";
    const std::string path = args.get("socket").value_or(kDefaultSocket);
    const std::string answer = daemon::control_request(path, request, timeout);
    if (answer.rfind("error: ", 0) == 0) {
      std::fprintf(stderr, "knockctl: %s", answer.c_str() + 7);
      return 1;
    }
    if (auto file = args.get("textfile")) {
      write_file_atomically(*file, answer, 0644);
      return 0;
    }
    std::fputs(answer.c_str(), stdout);
    return 0;
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "knockctl: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "knockctl: %s\n", e.what());
    return 1;
  }
}

}  // namespace knock::client
