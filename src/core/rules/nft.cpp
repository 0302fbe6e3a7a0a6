#include "rules/nft.hpp"

#include <nftables/libnftables.h>

namespace knock::rules {

NftExecutor::NftExecutor() {
  ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx_ != nullptr) {
    nft_ctx_buffer_output(ctx_);
    nft_ctx_buffer_error(ctx_);
  }
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

bool NftExecutor::run(const std::string& command, std::string* error) noexcept {
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
