#include "capture/pcap_source.hpp"

#include <fcntl.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include <exception>

#include "util/error.hpp"
#include "util/log.hpp"

namespace knock::capture {

void PcapCloser::operator()(pcap_t* p) const noexcept {
  if (p != nullptr) pcap_close(p);
}

namespace {

struct DispatchContext {
  const ObservationCallback* callback;
  CaptureStats* stats;
  int dlt;
  pcap_t* handle;
  std::exception_ptr error;
};

// C callback: must not let an exception cross libpcap's frames.
void on_packet(u_char* user, const pcap_pkthdr* h, const u_char* bytes) noexcept {
  auto* ctx = reinterpret_cast<DispatchContext*>(user);
  if (ctx->error) return;
  const double ts = static_cast<double>(h->ts.tv_sec) + static_cast<double>(h->ts.tv_usec) * 1e-6;
  ParseResult r = parse_packet_result(ctx->dlt, bytes, h->caplen, ts);
  ++ctx->stats->packets;
  ++ctx->stats->by_status[static_cast<std::size_t>(r.status)];
  if (!r.ok()) return;
  ++ctx->stats->observations;
  try {
    (*ctx->callback)(r.observation);
  } catch (...) {
    ctx->error = std::current_exception();
    pcap_breakloop(ctx->handle);
  }
}

int run_dispatch(pcap_t* handle, int dlt, CaptureStats& stats, const ObservationCallback& cb,
                 int max_packets) {
  DispatchContext ctx{&cb, &stats, dlt, handle, nullptr};
  const int n = pcap_dispatch(handle, max_packets <= 0 ? -1 : max_packets, on_packet,
                              reinterpret_cast<u_char*>(&ctx));
  if (ctx.error) std::rethrow_exception(ctx.error);
  return n;
}

void check_link(pcap_t* handle, const std::string& what) {
  const int dlt = pcap_datalink(handle);
  if (!link_type_supported(dlt)) {
    const char* name = pcap_datalink_val_to_name(dlt);
    throw RuntimeError(what + ": unsupported link type " + (name ? name : std::to_string(dlt)));
  }
}

}  // namespace

std::string link_filter(const std::string& expr, int dlt) {
  if (expr.empty() || dlt == kDltNull || dlt == kDltLoop) return "";
  if (dlt == kDltEn10mb && expr.find("vlan") == std::string::npos)
    return "(" + expr + ") or (vlan and (" + expr + "))";
  // libpcap has no `vlan` for cooked captures: let tagged frames through to matches()
  if ((dlt == kDltLinuxSll || dlt == kDltLinuxSll2) && expr.find("0x8100") == std::string::npos)
    return "(" + expr + ") or ether proto 0x8100 or ether proto 0x88a8";
  return expr;
}

void set_bpf_filter(pcap_t* handle, const std::string& given) {
  const std::string expr = link_filter(given, pcap_datalink(handle));
  if (expr.empty()) return;
  bpf_program prog{};
  if (pcap_compile(handle, &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0)
    throw RuntimeError("bad capture filter '" + expr + "': " + pcap_geterr(handle));
  const int rc = pcap_setfilter(handle, &prog);
  pcap_freecode(&prog);
  if (rc != 0) throw RuntimeError("cannot install capture filter: " + std::string(pcap_geterr(handle)));
}

bool bpf_compiles(int dlt, const std::string& expr, std::string* error, int snaplen) {
  PcapHandle dead(pcap_open_dead(dlt, snaplen));
  if (!dead) {
    if (error) *error = "pcap_open_dead failed";
    return false;
  }
  bpf_program prog{};
  if (pcap_compile(dead.get(), &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    if (error) *error = pcap_geterr(dead.get());
    return false;
  }
  pcap_freecode(&prog);
  return true;
}

LivePcapSource::LivePcapSource(const std::string& interface, const std::string& bpf_filter,
                               Options options)
    : interface_(interface) {
  char errbuf[PCAP_ERRBUF_SIZE] = {0};
  handle_.reset(pcap_create(interface.c_str(), errbuf));
  if (!handle_) throw RuntimeError("cannot capture on " + interface + ": " + errbuf);
  pcap_t* p = handle_.get();
  pcap_set_snaplen(p, options.snaplen);
  pcap_set_promisc(p, options.promiscuous ? 1 : 0);
  pcap_set_immediate_mode(p, 1);
  pcap_set_buffer_size(p, options.buffer_bytes);
  const int rc = pcap_activate(p);
  if (rc < 0) {
    std::string msg = pcap_statustostr(rc);
    const std::string detail = pcap_geterr(p);
    if (!detail.empty()) msg += ": " + detail;
    throw RuntimeError("cannot capture on " + interface + ": " + msg);
  }
  if (rc > 0) log::warning("capture on " + interface + ": " + pcap_statustostr(rc) + " " + pcap_geterr(p));
  // libpcap opens its packet socket without SOCK_CLOEXEC: every command the daemon starts
  // would inherit a raw socket on the interface.
  const int fd = pcap_get_selectable_fd(p);
  if (fd >= 0) {
    const int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0)
      throw RuntimeError("cannot capture on " + interface + ": fcntl FD_CLOEXEC: " + errno_message(errno));
  }
  check_link(p, "interface " + interface);
  dlt_ = pcap_datalink(p);
  set_bpf_filter(p, bpf_filter);
  if (pcap_setnonblock(p, 1, errbuf) != 0)
    throw RuntimeError("cannot make capture non-blocking: " + std::string(errbuf));
  fd_ = pcap_get_selectable_fd(p);
}

int LivePcapSource::dispatch(const ObservationCallback& callback, int max_packets) {
  const int n = run_dispatch(handle_.get(), dlt_, stats_, callback, max_packets);
  if (n == PCAP_ERROR) throw RuntimeError("capture on " + interface_ + " failed: " + pcap_geterr(handle_.get()));
  return n < 0 ? 0 : n;  // PCAP_ERROR_BREAK: nothing more this round
}

CaptureStats LivePcapSource::stats() {
  pcap_stat ps{};
  if (pcap_stats(handle_.get(), &ps) == 0) {
    stats_.kernel_received = ps.ps_recv;
    stats_.kernel_dropped = ps.ps_drop;
    stats_.interface_dropped = ps.ps_ifdrop;
  }
  return stats_;
}

OfflinePcapSource::OfflinePcapSource(const std::string& path, const std::string& bpf_filter)
    : path_(path) {
  char errbuf[PCAP_ERRBUF_SIZE] = {0};
  // pcap_open_offline() would fopen() the file without "e": opened here close-on-exec instead.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw RuntimeError("cannot read capture " + path + ": " + errno_message(errno));
  FILE* file = ::fdopen(fd, "rb");
  if (file == nullptr) {
    const int saved = errno;
    ::close(fd);
    throw RuntimeError("cannot read capture " + path + ": " + errno_message(saved));
  }
  handle_.reset(pcap_fopen_offline(file, errbuf));  // owns `file` once it succeeds
  if (!handle_) {
    std::fclose(file);
    throw RuntimeError("cannot read capture " + path + ": " + errbuf);
  }
  check_link(handle_.get(), "capture " + path);
  dlt_ = pcap_datalink(handle_.get());
  set_bpf_filter(handle_.get(), bpf_filter);
}

int OfflinePcapSource::dispatch(const ObservationCallback& callback, int max_packets) {
  if (exhausted_) return 0;
  const int n = run_dispatch(handle_.get(), dlt_, stats_, callback, max_packets);
  if (n == 0) exhausted_ = true;
  if (n == PCAP_ERROR) {
    exhausted_ = true;
    error_ = pcap_geterr(handle_.get());
    log::warning("capture " + path_ + ": " + error_);
    return 0;
  }
  return n < 0 ? 0 : n;
}

}  // namespace knock::capture
