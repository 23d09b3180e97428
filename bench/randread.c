/*
 * bench/randread.c: the raw liburing ceiling for random 4 KiB reads.
 *
 *   randread FILE QD OPS [direct]
 *
 * Keeps QD reads of 4 KiB in flight at random 4 KiB-aligned offsets of
 * FILE until OPS have completed: each reaped CQE is replaced by a new
 * read, and one io_uring_submit_and_wait(1) per turn submits them all.
 * "direct" opens FILE with O_DIRECT (buffers are 4096-aligned anyway).
 * Prints "c-qdN: X iops".  The ring is set up as the core's
 * (csrc/loop.c ur_setup_ring): SUBMIT_ALL | COOP_TASKRUN | SINGLE_ISSUER |
 * DEFER_TASKRUN with a CQ twice the SQ, dropping flags on EINVAL.
 */
#define _GNU_SOURCE           /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#define BS 4096

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int setup (struct io_uring *ring, unsigned entries) {
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
    if (ret == 0) return 0;
    if (ret != -EINVAL) break;
  }
  return ret;
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t xorshift (void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void queue_read (struct io_uring *ring, int fd, char *buf,
                        unsigned slot, uint64_t blocks) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(ring);   /* QD <= entries */
  io_uring_prep_read(sqe, fd, buf + (size_t)slot * BS, BS,
                     (xorshift() % blocks) * BS);
  io_uring_sqe_set_data64(sqe, slot);
}

int main (int argc, char **argv) {
  struct io_uring ring;
  struct stat st;
  char *buf;
  long qd, ops, done = 0, issued = 0;
  uint64_t blocks;
  int fd, ret, direct;
  double t0, t1;
  if (argc < 4) {
    fprintf(stderr, "usage: randread FILE QD OPS [direct]\n");
    return 2;
  }
  qd = atol(argv[2]);
  ops = atol(argv[3]);
  direct = argc > 4 && strcmp(argv[4], "direct") == 0;
  if (qd < 1 || qd > 4096 || ops < qd) {
    fprintf(stderr, "randread: need 1 <= QD <= 4096 and OPS >= QD\n");
    return 2;
  }
  fd = open(argv[1], O_RDONLY | (direct ? O_DIRECT : 0));
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < BS) {
    fprintf(stderr, "randread: %s: %s\n", argv[1],
            fd < 0 ? strerror(errno) : "too small");
    return 1;
  }
  blocks = (uint64_t)st.st_size / BS;
  if (posix_memalign((void **)&buf, BS, (size_t)qd * BS) != 0) return 1;
  ret = setup(&ring, (unsigned)qd);
  if (ret < 0) {
    fprintf(stderr, "randread: io_uring setup: %s\n", strerror(-ret));
    return 1;
  }
  t0 = now();
  for (; issued < qd; issued++) queue_read(&ring, fd, buf, (unsigned)issued, blocks);
  while (done < ops) {
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    ret = io_uring_submit_and_wait(&ring, 1);
    if (ret < 0 && ret != -EINTR) {
      fprintf(stderr, "randread: submit: %s\n", strerror(-ret));
      return 1;
    }
    io_uring_for_each_cqe(&ring, head, cqe) {
      unsigned slot = (unsigned)cqe->user_data;
      if (cqe->res != BS) {
        fprintf(stderr, "randread: read returned %d\n", cqe->res);
        return 1;
      }
      seen++;
      done++;
      if (issued < ops) {
        queue_read(&ring, fd, buf, slot, blocks);
        issued++;
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
  t1 = now();
  printf("c-qd%ld: %.0f iops (%ld ops%s)\n", qd, (double)ops / (t1 - t0), ops,
         direct ? ", O_DIRECT" : "");
  io_uring_queue_exit(&ring);
  close(fd);
  free(buf);
  return 0;
}
