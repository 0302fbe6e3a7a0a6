// knockperf: the small measuring tool of scripts/bench.sh (built there with cc, not CMake).
//
//   knockperf listen PORT                 accept and close TCP connections forever
//   knockperf knock SERVER TARGET TIMEOUT_MS GAP_US P1,P2,... [SOURCE]
//        sends one SYN to each knock port (non-blocking connect, closed at once, as knockclient
//        does), then probes SERVER:TARGET with a new SYN every 100 us until one connects.
//        Prints "OK <latency_us> <last_knock_mono_ns> <last_knock_realtime_ns>" or
//        "TIMEOUT <last_knock_mono_ns>".
//        Latency = last knock SYN sent -> connect() to TARGET completed (CLOCK_MONOTONIC,
//        which every namespace on one machine shares).
//   knockperf udp SERVER TARGET TIMEOUT_MS UDPPORT FILE [SOURCE]
//        sends FILE's bytes as one UDP datagram to SERVER:UDPPORT (a single-packet knock made by
//        a client beforehand), then probes as `knock` does. Same output; latency from the send.
//   knockperf stamp FILE                  appends CLOCK_MONOTONIC in ns to FILE (for templates)
//   knockperf run CMD                     runs /bin/sh -c CMD; prints its wall time in us and
//                                         its start (CLOCK_MONOTONIC ns)
//   knockperf flood DST LO HI SECONDS     raw SYN flood to DST ports LO..HI from random sources
//        in 198.18.0.0/15 (minus 198.18.0.0/22 where the bench hosts live) as fast as it can.
//        Prints the number of packets sent.
//   knockperf udpflood DST PORT SECONDS TEMPLATE KEEP ALPHABET
//        raw UDP flood to DST:PORT from the same random sources: each datagram is TEMPLATE's
//        bytes with all but the first KEEP replaced by random ones, drawn from ALPHABET: `bin`
//        (any byte) or `b64` (fwknop's base64 characters), so that each one gets as far as the
//        receiver's authentication check. Prints the number of datagrams sent.
// Addresses: whatever the caller passes; the bench uses 198.18.0.0/15 only.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static struct sockaddr_in addr_of(const char* ip, int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
    fprintf(stderr, "knockperf: bad address %s\n", ip);
    exit(2);
  }
  return a;
}

// A non-blocking connect: the SYN leaves inside connect().
static const struct sockaddr_in* g_source;  // knock and probes from this address when set

static int start_connect(const struct sockaddr_in* a) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  if (g_source && bind(fd, (const struct sockaddr*)g_source, sizeof *g_source) != 0) die("bind");
  struct linger lg = {1, 0};  // close() aborts: no retransmission, port freed at once
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  if (connect(fd, (const struct sockaddr*)a, sizeof *a) != 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

static void sleep_until(int64_t t) {
  while (mono_ns() < t) {
  }
}

static int cmd_listen(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = addr_of("0.0.0.0", port);
  if (bind(fd, (struct sockaddr*)&a, sizeof a) != 0) die("bind");
  if (listen(fd, 4096) != 0) die("listen");
  for (;;) {
    int c = accept(fd, NULL, NULL);
    if (c >= 0) close(c);
  }
  return 0;
}

#define MAX_PROBES 256
static int probe(const char* server, int target, int timeout_ms, int64_t last);

static int cmd_udp(const char* server, int target, int timeout_ms, int udp_port, const char* file) {
  static unsigned char buf[65536];
  int in = open(file, O_RDONLY | O_CLOEXEC);
  if (in < 0) die(file);
  ssize_t len = read(in, buf, sizeof buf);
  if (len <= 0) die("read");
  close(in);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  if (g_source && bind(fd, (const struct sockaddr*)g_source, sizeof *g_source) != 0) die("bind");
  struct sockaddr_in a = addr_of(server, udp_port);
  if (sendto(fd, buf, (size_t)len, 0, (const struct sockaddr*)&a, sizeof a) != len) die("sendto");
  const int64_t last = mono_ns();
  close(fd);
  return probe(server, target, timeout_ms, last);
}

static int cmd_knock(const char* server, int target, int timeout_ms, int gap_us, const char* list) {
  int ports[4096], n = 0;
  for (const char* p = list; *p && n < 4096;) {
    ports[n++] = atoi(p);
    const char* c = strchr(p, ',');
    if (!c) break;
    p = c + 1;
  }
  int64_t last = 0;
  for (int i = 0; i < n; ++i) {
    if (i > 0 && gap_us > 0) sleep_until(last + (int64_t)gap_us * 1000);
    struct sockaddr_in a = addr_of(server, ports[i]);
    int fd = start_connect(&a);
    last = mono_ns();
    if (fd >= 0) close(fd);
  }
  return probe(server, target, timeout_ms, last);
}

// Probes SERVER:TARGET with a new SYN every 100 us from `last` on until one connects.
static int probe(const char* server, int target, int timeout_ms, int64_t last) {
  const struct sockaddr_in t = addr_of(server, target);
  const int64_t deadline = last + (int64_t)timeout_ms * 1000000LL;
  const int64_t step = 100000;  // a new probe SYN every 100 us
  struct pollfd fds[MAX_PROBES];
  int64_t started[MAX_PROBES];
  int live = 0;
  int64_t next = last;
  for (;;) {
    int64_t now = mono_ns();
    if (now >= deadline) break;
    if (now >= next) {
      if (live == MAX_PROBES) {  // drop the oldest
        close(fds[0].fd);
        memmove(fds, fds + 1, sizeof fds[0] * (MAX_PROBES - 1));
        memmove(started, started + 1, sizeof started[0] * (MAX_PROBES - 1));
        --live;
      }
      int fd = start_connect(&t);
      if (fd >= 0) {
        fds[live].fd = fd;
        fds[live].events = POLLOUT;
        fds[live].revents = 0;
        started[live] = now;
        ++live;
      }
      next = now + step;
    }
    // poll() has ms granularity: poll without waiting, spin a little between probes.
    int r = poll(fds, (nfds_t)live, 0);
    if (r > 0) {
      for (int i = 0; i < live; ++i) {
        if (!fds[i].revents) continue;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fds[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0 && (fds[i].revents & POLLOUT)) {
          int64_t done = mono_ns();
          for (int k = 0; k < live; ++k) close(fds[k].fd);
          struct timespec rt;  // the wall clock of the last knock packet, to match other tools' logs
          clock_gettime(CLOCK_REALTIME, &rt);
          const int64_t real = (int64_t)rt.tv_sec * 1000000000LL + rt.tv_nsec - (mono_ns() - last);
          printf("OK %lld %lld %lld\n", (long long)((done - last) / 1000), (long long)last, (long long)real);
          return 0;
        }
        close(fds[i].fd);  // refused or reset: forget it
        fds[i] = fds[live - 1];
        started[i] = started[live - 1];
        --live;
        --i;
      }
    }
    struct timespec nap = {0, 20000};
    nanosleep(&nap, NULL);
  }
  for (int k = 0; k < live; ++k) close(fds[k].fd);
  printf("TIMEOUT %lld\n", (long long)last);
  return 3;
}

static int cmd_stamp(const char* file) {
  int64_t t = mono_ns();
  int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) die(file);
  char buf[32];
  int len = snprintf(buf, sizeof buf, "%lld\n", (long long)t);
  if (write(fd, buf, (size_t)len) != len) die("write");
  close(fd);
  return 0;
}

static int cmd_run(const char* cmd) {
  char* argv[] = {"sh", "-c", (char*)cmd, NULL};
  pid_t pid;
  int64_t t0 = mono_ns();
  if (posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ) != 0) die("posix_spawn");
  int status;
  waitpid(pid, &status, 0);
  printf("%lld %lld\n", (long long)((mono_ns() - t0) / 1000), (long long)t0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static uint16_t csum_fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

static int cmd_flood(const char* dst, int lo, int hi, double seconds) {
  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);  // implies IP_HDRINCL
  if (fd < 0) die("raw socket");
  const struct sockaddr_in to = addr_of(dst, 0);
  enum { BATCH = 64, LEN = 40 };
  static unsigned char pkt[BATCH][LEN];
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < BATCH; ++i) {
    iov[i].iov_base = pkt[i];
    iov[i].iov_len = LEN;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = (void*)&to;
    msgs[i].msg_hdr.msg_namelen = sizeof to;
  }
  uint64_t x = (uint64_t)mono_ns() | 1, sent = 0;
  const int64_t end = mono_ns() + (int64_t)(seconds * 1e9);
  const uint32_t d = ntohl(to.sin_addr.s_addr);
  const uint32_t span = (uint32_t)(hi - lo + 1);
  while (mono_ns() < end) {
    for (int i = 0; i < BATCH; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
      // 198.18.4.0 .. 198.19.255.255: the /15 minus its first /22
      const uint32_t s = 0xC6120400u + (uint32_t)(x % (131072u - 1024u));
      const uint16_t dport = (uint16_t)(lo + (uint32_t)(x >> 32) % span);
      const uint16_t sport = (uint16_t)(1024 + (x >> 48) % 60000);
      unsigned char* p = pkt[i];
      memset(p, 0, LEN);
      struct iphdr* ip = (struct iphdr*)p;
      ip->version = 4;
      ip->ihl = 5;
      ip->tot_len = htons(LEN);
      ip->id = (uint16_t)x;
      ip->ttl = 64;
      ip->protocol = IPPROTO_TCP;
      ip->saddr = htonl(s);
      ip->daddr = htonl(d);  // the kernel fills the IP checksum
      struct tcphdr* tcp = (struct tcphdr*)(p + 20);
      tcp->source = htons(sport);
      tcp->dest = htons(dport);
      tcp->seq = htonl((uint32_t)(x >> 16));
      tcp->doff = 5;
      tcp->syn = 1;
      tcp->window = htons(64240);
      uint32_t sum = (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + IPPROTO_TCP + 20;
      const uint16_t* w = (const uint16_t*)tcp;
      for (int k = 0; k < 10; ++k) sum += ntohs(w[k]);
      tcp->check = htons(csum_fold(sum));
    }
    int r = sendmmsg(fd, msgs, BATCH, 0);
    if (r > 0) sent += (uint64_t)r;
    else if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) die("sendmmsg");
  }
  printf("%llu\n", (unsigned long long)sent);
  return 0;
}

static int cmd_udpflood(const char* dst, int port, double seconds, const char* file, int keep, const char* alphabet) {
  static unsigned char tmpl[1400];
  int in = open(file, O_RDONLY | O_CLOEXEC);
  if (in < 0) die(file);
  ssize_t tlen = read(in, tmpl, sizeof tmpl);
  if (tlen <= 0) die("read");
  close(in);
  if (keep < 0 || keep > tlen) keep = (int)tlen;
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const int use_b64 = !strcmp(alphabet, "b64");
  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);  // implies IP_HDRINCL
  if (fd < 0) die("raw socket");
  const struct sockaddr_in to = addr_of(dst, 0);
  enum { BATCH = 64 };
  const int len = 28 + (int)tlen;
  static unsigned char pkt[BATCH][28 + 1400];
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < BATCH; ++i) {
    iov[i].iov_base = pkt[i];
    iov[i].iov_len = (size_t)len;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = (void*)&to;
    msgs[i].msg_hdr.msg_namelen = sizeof to;
  }
  uint64_t x = (uint64_t)mono_ns() | 1, sent = 0;
  const int64_t end = mono_ns() + (int64_t)(seconds * 1e9);
  const uint32_t d = ntohl(to.sin_addr.s_addr);
  while (mono_ns() < end) {
    for (int i = 0; i < BATCH; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const uint32_t s = 0xC6120400u + (uint32_t)(x % (131072u - 1024u));
      const uint16_t sport = (uint16_t)(1024 + (x >> 48) % 60000);
      unsigned char* p = pkt[i];
      memset(p, 0, 28);
      struct iphdr* ip = (struct iphdr*)p;
      ip->version = 4;
      ip->ihl = 5;
      ip->tot_len = htons((uint16_t)len);
      ip->id = (uint16_t)x;
      ip->ttl = 64;
      ip->protocol = IPPROTO_UDP;
      ip->saddr = htonl(s);
      ip->daddr = htonl(d);
      unsigned char* body = p + 28;
      memcpy(body, tmpl, (size_t)keep);
      for (int k = keep; k < tlen; ++k) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        body[k] = use_b64 ? (unsigned char)b64[x % 64] : (unsigned char)x;
      }
      p[20] = (unsigned char)(sport >> 8), p[21] = (unsigned char)sport;
      p[22] = (unsigned char)(port >> 8), p[23] = (unsigned char)port;
      p[24] = (unsigned char)((len - 20) >> 8), p[25] = (unsigned char)(len - 20);
      p[26] = p[27] = 0;  // no UDP checksum (allowed over IPv4)
    }
    int r = sendmmsg(fd, msgs, BATCH, 0);
    if (r > 0) sent += (uint64_t)r;
    else if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) die("sendmmsg");
  }
  printf("%llu\n", (unsigned long long)sent);
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 3 && !strcmp(argv[1], "listen")) return cmd_listen(atoi(argv[2]));
  if (argc >= 7 && !strcmp(argv[1], "knock")) {
    static struct sockaddr_in src;
    if (argc >= 8) {
      src = addr_of(argv[7], 0);
      g_source = &src;
    }
    return cmd_knock(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), argv[6]);
  }
  if (argc >= 7 && !strcmp(argv[1], "udp")) {
    static struct sockaddr_in src;
    if (argc >= 8) {
      src = addr_of(argv[7], 0);
      g_source = &src;
    }
    return cmd_udp(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), argv[6]);
  }
  if (argc >= 8 && !strcmp(argv[1], "udpflood"))
    return cmd_udpflood(argv[2], atoi(argv[3]), atof(argv[4]), argv[5], atoi(argv[6]), argv[7]);
  if (argc >= 3 && !strcmp(argv[1], "stamp")) return cmd_stamp(argv[2]);
  if (argc >= 3 && !strcmp(argv[1], "run")) return cmd_run(argv[2]);
  if (argc >= 6 && !strcmp(argv[1], "flood")) return cmd_flood(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
  fprintf(stderr, "usage: see the header of bench/perf/knockperf.c\n");
  return 2;
}
