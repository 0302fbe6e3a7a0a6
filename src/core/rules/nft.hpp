#pragma once
// nftables commands run inside the daemon through libnftables (template key `nft`): no process
// is started, so a knock opens the firewall in well under a millisecond. The command is what
// one line of `nft -f` takes, e.g. add element inet portknock allowed { IP . PORT timeout 60s }.
// A single set element (add/create/delete element ... { A . B [timeout T] }) of addresses and
// ports takes a fast path straight to netlink when the set's type fits (rules/nft_element.hpp);
// everything else, and every doubt, goes through libnftables.
#include <memory>
#include <string>

#include "rules/in_process.hpp"

struct nft_ctx;

namespace knock::rules {

class ElementWriter;

class NftExecutor final : public InProcessAction {
 public:
  NftExecutor();
  ~NftExecutor() override;
  NftExecutor(const NftExecutor&) = delete;
  NftExecutor& operator=(const NftExecutor&) = delete;

  // Runs one command; false with nft's message in *error when it fails. Never throws.
  bool run(const std::string& command, std::string* error) noexcept override;
  // The first commands of a context load nft's tables of names and protocols and its cache
  // (about 3 ms each): a harmless listing now keeps that off the first knock.
  void prepare() noexcept override;

 private:
  bool run_libnftables(const std::string& command, std::string* error) noexcept;

  nft_ctx* ctx_ = nullptr;
  std::unique_ptr<ElementWriter> elements_;  // created on the first element command
  bool fast_path_ = true;                    // PORTKNOCK_NFT_FASTPATH=0 turns it off
};

}  // namespace knock::rules
