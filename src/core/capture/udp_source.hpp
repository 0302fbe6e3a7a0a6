#pragma once
// Single-packet knocks on an ordinary UDP socket: the daemon binds the SPA port itself
// (`listen = 0.0.0.0:62202`, `listen = [::]:62202`) and reads datagrams with recvmmsg() in
// batches into buffers allocated once. Nothing is ever sent back: the socket is receive-only.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "capture/observation.hpp"
#include "capture/source.hpp"
#include "util/address.hpp"

namespace knock::capture {

struct ListenAddress {
  IpAddress address;
  std::uint16_t port = 0;
  std::string str() const;  // "198.18.0.1:62202", "[::]:62202"
};
// "0.0.0.0:62202", "[::]:62202", "198.18.0.1" / "[2001:db8::1]" / "::" (default_port), "*:62202"
// (all IPv4 addresses). std::nullopt when malformed (port 0 included).
std::optional<ListenAddress> parse_listen(std::string_view text, std::uint16_t default_port);

class UdpSocketSource final : public Source {
 public:
  struct Options {
    std::size_t max_datagram = 1500;       // longer datagrams are counted (oversize) and dropped
    int batch = 32;                        // datagrams per recvmmsg()
    int receive_buffer = 1024 * 1024;      // SO_RCVBUF (the kernel caps it at rmem_max)
    bool v6only = true;                    // [::] receives IPv6 only; listen on 0.0.0.0 for IPv4
    bool pktinfo = true;                   // destination address from IP_PKTINFO / IPV6_PKTINFO
  };
  struct Counters {
    std::uint64_t oversize = 0;  // datagrams longer than max_datagram (MSG_TRUNC)
    std::uint64_t batches = 0;   // recvmmsg() calls that returned datagrams
  };

  // Binds a close-on-exec, non-blocking UDP socket. Throws RuntimeError (EADDRINUSE, EACCES...).
  UdpSocketSource(const ListenAddress& listen, Options options);
  explicit UdpSocketSource(const ListenAddress& listen) : UdpSocketSource(listen, Options{}) {}
  ~UdpSocketSource() override;
  UdpSocketSource(const UdpSocketSource&) = delete;
  UdpSocketSource& operator=(const UdpSocketSource&) = delete;

  int fd() const override { return fd_; }
  double next_timeout(double) const override { return next_ < count_ ? 0 : -1; }
  // Each datagram becomes an Observation: protocol UDP, the sender's address and port, the bound
  // port (and the destination address from the packet info, else the bound one), the payload
  // (valid only during the callback), time = the kernel's receive timestamp.
  int dispatch(const ObservationCallback& callback, int budget) override;
  SourceStats stats() override { return stats_; }
  std::string describe() override;
  const std::string& key() const override { return key_; }

  const Counters& counters() const noexcept { return counters_; }
  // The bound address (the port the kernel picked when listen.port was 0).
  const ListenAddress& local() const noexcept { return local_; }

 private:
  Options options_;
  ListenAddress local_;
  std::string key_;
  int fd_ = -1;
  // One recvmmsg() batch, allocated at construction.
  std::vector<std::uint8_t> data_;      // batch * max_datagram
  std::vector<std::uint8_t> control_;   // batch * kControlBytes
  std::vector<sockaddr_storage> from_;  // the senders
  std::vector<iovec> iov_;
  std::vector<mmsghdr> headers_;
  std::size_t next_ = 0;               // first datagram of the batch not handled yet
  std::size_t count_ = 0;              // datagrams in the batch
  double batch_time_ = 0;
  SourceStats stats_;
  Counters counters_;
};

}  // namespace knock::capture
