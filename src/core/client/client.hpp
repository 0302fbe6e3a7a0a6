#pragma once
// knockclient: options and config keys -> a knock -> sent, printed (-test) or logged (-logfile).
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "client/net.hpp"
#include "codec/codec.hpp"
#include "codec/spa.hpp"
#include "util/address.hpp"
#include "util/cli.hpp"

namespace knock::config {
class Value;
}

namespace knock::client {

inline constexpr std::chrono::milliseconds kDefaultDelay{10};

// Every option; the config keys are the names of the options that take a value plus the
// yes/no keys test, debug and quiet.
const std::vector<cli::OptionSpec>& option_specs();

// How the SPA message travels (spaform): one UDP datagram to spaport, or spelled over the port
// span as TCP SYNs or UDP datagrams, one per port.
enum class SpaForm { Udp, TcpPorts, UdpPorts };

// proto = spa: the authenticated single-packet knock (doc/PROTOCOL.md section 6).
struct SpaPlan {
  spa::Cipher cipher = spa::Cipher::XChaCha20Poly1305;
  SpaForm form = SpaForm::Udp;
  std::uint16_t port = spa::kDefaultPort;
  codec::KnockFormat format;
  std::optional<codec::PortSpan> span;      // the port forms only
  std::optional<spa::Key> key;
  std::optional<std::uint64_t> send_time;   // -spatime (with -test only); else the clock
  std::vector<std::uint8_t> nonce;          // -spanonce (with -test only); else random
};

struct ClientPlan {
  std::optional<std::string> remote_name;
  std::optional<IpAddress> remote;   // resolved; nullopt only with -test and no need for it
  std::optional<IpAddress> client;   // the IP field / SRC of -logfile lines
  codec::KnockValues values;
  codec::CodecSettings codec;
  Proto proto = Proto::Tcp;
  std::chrono::milliseconds delay = kDefaultDelay;
  bool test = false;
  bool key_on_command_line = false;
  std::optional<std::string> logfile;
  std::optional<SpaPlan> spa;  // proto = spa
};

// Reads the key when `-key -` (from `read_stdin`) or a keyfile is used. Throws ConfigError for bad
// values (exit 2), RuntimeError when the remote host cannot be resolved (exit 1).
ClientPlan make_plan(const cli::ParsedArgs& args, const config::Value* file_root,
                     const std::function<std::string()>& read_stdin);

// The whole program; returns the exit code.
int run(int argc, const char* const* argv);

}  // namespace knock::client
