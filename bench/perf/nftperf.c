// nftperf: the cost of one libnftables command in process, alone (doc/PERFORMANCE.md, "The p99").
//   nftperf N ADD DEL    runs ADD then DEL N times through one context (as knockdaemon's template
//                        key `nft` does: NFT_CTX_DEFAULT, buffered output and errors), and prints
//                        the median, p99 and largest time of ADD in ms.
// Build: cc -O2 -Wall -Wextra -o nftperf bench/perf/nftperf.c -lnftables
// Example, in a namespace with the bench's table inet pk:
//   nftperf 300 "add element inet pk allowed { 198.18.1.2 . 22 timeout 30s }"
//               "delete element inet pk allowed { 198.18.1.2 . 22 }"   (one line)
#include <nftables/libnftables.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  if (argc != 4 || atoi(argv[1]) <= 0) {
    fprintf(stderr, "usage: nftperf N ADD DEL\n");
    return 2;
  }
  const int n = atoi(argv[1]);
  struct nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == NULL) return 1;
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  nft_run_cmd_from_buffer(ctx, "list tables");  // as knockdaemon prepares its context
  double* t = malloc(sizeof *t * (size_t)n);
  if (t == NULL) return 1;
  for (int i = 0; i < n; ++i) {
    const double t0 = now_ms();
    if (nft_run_cmd_from_buffer(ctx, argv[2]) != 0) {
      fprintf(stderr, "nftperf: %s", nft_ctx_get_error_buffer(ctx));
      return 1;
    }
    t[i] = now_ms() - t0;
    if (nft_run_cmd_from_buffer(ctx, argv[3]) != 0) {
      fprintf(stderr, "nftperf: %s", nft_ctx_get_error_buffer(ctx));
      return 1;
    }
  }
  qsort(t, (size_t)n, sizeof *t, by_value);
  int p = (int)(n * 0.99 + 0.999) - 1;
  if (p >= n) p = n - 1;
  printf("add: median %.3f ms, p99 %.3f ms, max %.3f ms (n=%d)\n", t[(n - 1) / 2], t[p], t[n - 1], n);
  free(t);
  nft_ctx_free(ctx);
  return 0;
}
