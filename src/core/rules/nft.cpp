#include "rules/nft.hpp"

#include <nftables/libnftables.h>

#include <cstdlib>
#include <cstring>

#include "rules/nft_element.hpp"
#include "util/log.hpp"

namespace knock::rules {

NftExecutor::NftExecutor() {
  ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx_ != nullptr) {
    nft_ctx_buffer_output(ctx_);
    nft_ctx_buffer_error(ctx_);
  }
  // A switch for measuring (bench/) and a way out should the fast path ever misbehave.
  const char* fast = std::getenv("PORTKNOCK_NFT_FASTPATH");
  fast_path_ = fast == nullptr || std::strcmp(fast, "0") != 0;
}

NftExecutor::~NftExecutor() {
  if (ctx_ != nullptr) nft_ctx_free(ctx_);
}

void NftExecutor::prepare() noexcept {
  try {
    std::string ignored;
    run("list tables", &ignored);
  } catch (...) {
  }
}

namespace {

// Which way a command went, for -debug; built only when someone reads it.
void trace(const char* what, const std::string& why, const std::string& command) noexcept {
  if (!log::enabled(log::Level::Debug)) return;
  try {
    log::debug(std::string("nft: ") + what + (why.empty() ? "" : " (" + why + ")") + ": " + command);
  } catch (...) {
  }
}

}  // namespace

bool NftExecutor::run(const std::string& command, std::string* error) noexcept {
  if (fast_path_) {
    if (const auto element = parse_element_command(command)) {
      try {
        if (!elements_) elements_ = std::make_unique<ElementWriter>();
      } catch (...) {
        return run_libnftables(command, error);
      }
      ElementWriter::Result result = elements_->write(*element);
      if (result.outcome == ElementWriter::Outcome::Done) {
        trace("netlink fast path", {}, command);
        return true;
      }
      if (result.outcome == ElementWriter::Outcome::Failed) {
        trace("netlink fast path failed", result.error, command);
        if (error != nullptr) *error = std::move(result.error);
        return false;
      }
      trace("libnftables", result.error, command);
    }
  }
  return run_libnftables(command, error);
}

bool NftExecutor::run_libnftables(const std::string& command, std::string* error) noexcept {
  if (ctx_ == nullptr) {
    if (error != nullptr) *error = "libnftables could not be initialised";
    return false;
  }
  const int rc = nft_run_cmd_from_buffer(ctx_, command.c_str());
  const char* message = nft_ctx_get_error_buffer(ctx_);
  if (rc != 0 && error != nullptr) {
    try {
      *error = message != nullptr && *message != '\0' ? message : "failed";
      while (!error->empty() && (error->back() == '\n' || error->back() == ' ')) error->pop_back();
      // nft repeats the command and marks the error with ^^^ on further lines: keep the first.
      if (const auto nl = error->find('\n'); nl != std::string::npos) error->resize(nl);
    } catch (...) {
    }
  }
  // Drain both buffers so the next command starts clean.
  (void)nft_ctx_get_output_buffer(ctx_);
  return rc == 0;
}

}  // namespace knock::rules
