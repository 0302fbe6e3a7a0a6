#pragma once
// knockdaemon's configuration, read and validated as a whole from the parsed tree: every
// block, key, regex, expression, cipher and span. Anything wrong is a ConfigError at FILE:LINE.
#include <memory>
#include <optional>
#include <string>

#include "capture/ethfilter.hpp"
#include "capture/logformat.hpp"
#include "codec/codec.hpp"
#include "config/tree.hpp"
#include "tracker/tracker.hpp"

namespace knock::daemon {

enum class RunMode { Network, File };

struct Settings {
  RunMode mode = RunMode::Network;
  // network mode
  std::string interface = "any";
  int snaplen = 1500;
  std::string ethfilter_name;
  std::unique_ptr<capture::EthFilter> ethfilter;
  // file mode
  std::string logfile;
  double fileinterval = 0.5;
  std::string logformat_name;
  std::unique_ptr<capture::LogFormat> logformat;
  // the knock
  std::unique_ptr<codec::KnockCodec> codec;
  tracker::TrackerOptions tracker;
  // privileges
  std::optional<std::string> user;
};

// Reads everything but the actions (the rules engine validates those). `for_capture_file`: -pcap
// is given, so network-mode keys are still checked but the interface is not needed.
Settings load_settings(const config::Value& root);

}  // namespace knock::daemon
