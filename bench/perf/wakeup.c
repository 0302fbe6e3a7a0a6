// How long a wake-up takes on this machine: a socketpair ping-pong between two processes pinned
// to CPUs A and B, each round after IDLE_US of sleep (so that the CPUs may go idle in between).
//   gcc -O2 -o /tmp/wakeup bench/perf/wakeup.c && /tmp/wakeup 0 1 20000 && /tmp/wakeup 0 0 20000
// prints the median, p90 and max round trip of 200 rounds (doc/PERFORMANCE.md, "Where the single
// packet's time goes").
#define _GNU_SOURCE
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kRounds = 200 };

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");
}

static int by_value(const void* x, const void* y) {
  const double d = *(const double*)x - *(const double*)y;
  return d < 0 ? -1 : d > 0;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s CPU_A CPU_B IDLE_US\n", argv[0]);
    return 2;
  }
  const int a = atoi(argv[1]), b = atoi(argv[2]), idle_us = atoi(argv[3]);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0) return perror("socketpair"), 1;
  if (fork() == 0) {  // the echo
    pin(b);
    char c;
    for (;;) {
      struct pollfd p = {sv[1], POLLIN, 0};
      poll(&p, 1, -1);
      if (read(sv[1], &c, 1) <= 0) _exit(0);
      if (write(sv[1], &c, 1) != 1) _exit(1);
    }
  }
  pin(a);
  double rtt[kRounds];
  char c = 'x';
  for (int i = 0; i < kRounds; i++) {
    usleep((useconds_t)idle_us);
    const double t = now_us();
    if (write(sv[0], &c, 1) != 1) return perror("write"), 1;
    struct pollfd p = {sv[0], POLLIN, 0};
    poll(&p, 1, -1);
    if (read(sv[0], &c, 1) != 1) return perror("read"), 1;
    rtt[i] = now_us() - t;
  }
  close(sv[0]);
  qsort(rtt, kRounds, sizeof rtt[0], by_value);
  printf("cpus %d->%d idle %d us: round trip median %.1f us, p90 %.1f, max %.1f\n", a, b, idle_us, rtt[kRounds / 2],
         rtt[kRounds * 9 / 10], rtt[kRounds - 1]);
  return 0;
}
