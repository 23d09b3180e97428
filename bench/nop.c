/*
 * bench/nop.c: the raw liburing floor for one NOP round trip.
 *
 *   nop batched [ops [entries]]   fill the SQ with `entries` NOPs, one
 *                                 io_uring_submit_and_wait for all, reap
 *                                 them, repeat
 *   nop single  [ops [entries]]   submit one NOP, wait for its CQE, repeat
 *
 * Prints "c-batched: X ns/op" or "c-single: X ns/op".  The ring is set up
 * as the core's (csrc/loop.c ur_setup_ring): SUBMIT_ALL | COOP_TASKRUN |
 * SINGLE_ISSUER | DEFER_TASKRUN with a CQ twice the SQ, dropping flags on
 * EINVAL down to none.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <liburing.h>

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int setup (struct io_uring *ring, unsigned entries, unsigned *flags) {
  static const unsigned ladder[] = {
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
      IORING_SETUP_SINGLE_ISSUER,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_SUBMIT_ALL,
    0,
  };
  int ret = -EINVAL;
  for (size_t i = 0; i < sizeof ladder / sizeof ladder[0]; i++) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = ladder[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
    p.cq_entries = entries * 2;
    ret = io_uring_queue_init_params(entries, ring, &p);
    if (ret == 0) {
      *flags = p.flags;
      return 0;
    }
    if (ret != -EINVAL) break;
  }
  return ret;
}

/* reap n CQEs that are already in the ring (or wait for them) */
static int reap (struct io_uring *ring, unsigned n) {
  while (n > 0) {
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      if (cqe->res < 0) {
        fprintf(stderr, "nop: cqe res %d\n", cqe->res);
        return -1;
      }
      seen++;
    }
    if (seen == 0) {
      int ret = io_uring_wait_cqe(ring, &cqe);
      if (ret < 0) {
        fprintf(stderr, "nop: wait_cqe: %s\n", strerror(-ret));
        return -1;
      }
      continue;
    }
    io_uring_cq_advance(ring, seen);
    n -= seen;
  }
  return 0;
}

static int batched (struct io_uring *ring, long ops) {
  unsigned entries = ring->sq.ring_entries;
  while (ops > 0) {
    unsigned n = 0;
    int ret;
    while (n < entries && (long)n < ops) {
      struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
      if (sqe == NULL) break;
      io_uring_prep_nop(sqe);
      n++;
    }
    ret = io_uring_submit_and_wait(ring, n);
    if (ret < 0) {
      fprintf(stderr, "nop: submit_and_wait: %s\n", strerror(-ret));
      return -1;
    }
    if (reap(ring, n) < 0) return -1;
    ops -= n;
  }
  return 0;
}

static int single (struct io_uring *ring, long ops) {
  for (long i = 0; i < ops; i++) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    int ret;
    io_uring_prep_nop(sqe);
    ret = io_uring_submit_and_wait(ring, 1);
    if (ret < 0) {
      fprintf(stderr, "nop: submit_and_wait: %s\n", strerror(-ret));
      return -1;
    }
    if (reap(ring, 1) < 0) return -1;
  }
  return 0;
}

int main (int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "batched";
  long ops = argc > 2 ? atol(argv[2]) : 2000000;
  unsigned entries = argc > 3 ? (unsigned)atoi(argv[3]) : 256;
  struct io_uring ring;
  unsigned flags = 0;
  double t0, t1;
  int ret, is_batched = strcmp(mode, "batched") == 0;
  if (!is_batched && strcmp(mode, "single") != 0) {
    fprintf(stderr, "usage: nop batched|single [ops [entries]]\n");
    return 2;
  }
  if (ops < 1 || entries < 1) {
    fprintf(stderr, "nop: ops and entries must be positive\n");
    return 2;
  }
  ret = setup(&ring, entries, &flags);
  if (ret < 0) {
    fprintf(stderr, "nop: io_uring_queue_init: %s\n", strerror(-ret));
    return 1;
  }
  /* warm up: page in the rings, settle the CPU */
  ret = is_batched ? batched(&ring, ops / 20 + 1) : single(&ring, ops / 20 + 1);
  t0 = now();
  if (ret == 0) ret = is_batched ? batched(&ring, ops) : single(&ring, ops);
  t1 = now();
  io_uring_queue_exit(&ring);
  if (ret < 0) return 1;
  printf("c-%s: %.1f ns/op (%ld ops, %u entries, flags %#x)\n",
         is_batched ? "batched" : "single", (t1 - t0) / (double)ops * 1e9,
         ops, entries, flags);
  return 0;
}
