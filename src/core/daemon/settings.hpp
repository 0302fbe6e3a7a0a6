#pragma once
// knockdaemon's configuration, read and validated as a whole from the parsed tree: every
// block, key, regex, expression, cipher and span. Anything wrong is a ConfigError at FILE:LINE.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "capture/ethfilter.hpp"
#include "capture/logformat.hpp"
#include "capture/udp_source.hpp"
#include "codec/fwknop.hpp"
#include "codec/keys.hpp"
#include "codec/spa.hpp"
#include "codec/codec.hpp"
#include "config/tree.hpp"
#include "daemon/priority.hpp"
#include "tracker/tracker.hpp"

namespace knock::daemon {

enum class RunMode { Network, File, Nflog };

struct Settings {
  RunMode mode = RunMode::Network;
  // network mode: one capture per interface (`interface = eth0 eth1`, or the key repeated)
  std::vector<std::string> interfaces = {"any"};
  int snaplen = 1500;
  std::string ethfilter_name;
  std::unique_ptr<capture::EthFilter> ethfilter;
  // file mode
  std::string logfile;
  double fileinterval = 0.5;
  std::string logformat_name;
  std::unique_ptr<capture::LogFormat> logformat;
  // nflog mode
  int nflog_group = -1;
  // UDP sockets for single-packet knocks (`listen = 0.0.0.0:62202`, repeatable), in every mode
  std::vector<capture::ListenAddress> listen;
  // the knock: the original's format...
  std::unique_ptr<codec::KnockCodec> codec;
  bool original_iv = false;    // encrypt = yes and iv = yes: knocks carry a fresh IV each
  double replay_keep = 30.0 * 86400;  // replaykeep: how long such a knock's identity is kept
  // ...or, with `proto = spa`, the authenticated message spelled over the span
  bool spa_ports = false;
  // authenticated single-packet knocks (<client NAME> blocks); null without clients
  spa::Settings spa_settings;
  std::unique_ptr<spa::KeyRing> keyring;
  std::unique_ptr<spa::Verifier> spa;
  // fwknop's packets (<fwknop NAME> blocks); null without them
  fwknop::Settings fwknop_settings;
  std::unique_ptr<fwknop::Stanzas> stanzas;
  std::unique_ptr<fwknop::Verifier> fwknop;
  tracker::TrackerOptions tracker;
  // "FILE:LINE: what is weak" for settings that let knocks be forged or replayed; logged once the
  // whole configuration is known to be valid (so an error stays one clear line).
  std::vector<std::string> warnings;
  // privileges: with privsep (the default) the packets are read by a confined worker running as
  // `user` (default portknock, else nobody); without it the whole daemon drops to `user`.
  std::optional<std::string> user;
  bool privsep = true;
  // commandcaps: what the commands may hold (nullopt: all the daemon has)
  std::optional<std::vector<int>> command_caps = std::vector<int>{12, 13};  // CAP_NET_ADMIN, CAP_NET_RAW
  // realtime, realtimecpu: SCHED_FIFO for the monitor and the worker (off by default)
  RealtimeSettings realtime;
  // knockctl's socket ("": none) and the group that may use it besides root
  std::string control_socket = "/run/portknock/knockdaemon.sock";
  bool control_socket_set = false;  // named in the config (else the default)
  std::optional<std::string> control_group;
};

// Reads everything but the actions (the rules engine validates those). `for_capture_file`: -pcap
// is given, so network-mode keys are still checked but the interface is not needed.
Settings load_settings(const config::Value& root);

}  // namespace knock::daemon
