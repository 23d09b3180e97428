/*
 * drill.c: the thread-pool contender of examples/tour_drill.lua.
 *
 *   cc -O2 -pthread -o build/drill bench/drill.c
 *   build/drill PATH THREADS < offsets
 *
 * Reads byte offsets (one per line) from stdin, then THREADS threads take
 * them from a shared index (an atomic counter) and pread 4 KiB at each,
 * the way a thread pool serves blocking file I/O (libuv's, Node's).
 * Each 4 KiB block of the tour's file starts with its block number
 * (uint32, little-endian); the sum of those is printed so the caller can
 * check that every read returned the right block.  One line:
 *
 *   drill: threads=8 reads=1000 wall_ms=12.345 cpu_ms=6.789 sum=123456 errors=0
 *
 * wall is CLOCK_MONOTONIC around the reads (threads started and joined
 * included), cpu is getrusage(RUSAGE_SELF) user + system over the same span.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define LEN 4096

static int fd;
static long long *offsets;
static size_t count;
static atomic_size_t next_index;
static atomic_ullong sum;
static atomic_uint errors;

static void *worker (void *arg) {
  unsigned char *buf = aligned_alloc(4096, LEN);
  (void)arg;
  if (buf == NULL) { atomic_fetch_add(&errors, 1); return NULL; }
  for (;;) {
    size_t i = atomic_fetch_add(&next_index, 1);
    if (i >= count) break;
    ssize_t n = pread(fd, buf, LEN, (off_t)offsets[i]);
    if (n != LEN) { atomic_fetch_add(&errors, 1); continue; }
    uint32_t b = (uint32_t)buf[0] | (uint32_t)buf[1] << 8
               | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 24;
    atomic_fetch_add(&sum, b);
  }
  free(buf);
  return NULL;
}

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu (void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
       + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main (int argc, char **argv) {
  size_t cap = 1024;
  long long off;
  int nthreads;
  if (argc != 3 || (nthreads = atoi(argv[2])) < 1 || nthreads > 1024) {
    fprintf(stderr, "usage: drill PATH THREADS < offsets\n");
    return 2;
  }
  fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (fd < 0) { perror(argv[1]); return 1; }
  offsets = malloc(cap * sizeof *offsets);
  while (offsets && scanf("%lld", &off) == 1) {
    if (count == cap) offsets = realloc(offsets, (cap *= 2) * sizeof *offsets);
    if (offsets) offsets[count++] = off;
  }
  if (offsets == NULL) { fprintf(stderr, "drill: out of memory\n"); return 1; }

  pthread_t *tids = calloc((size_t)nthreads, sizeof *tids);
  double w0 = now(), c0 = cpu();
  for (int t = 0; t < nthreads; t++)
    if (pthread_create(&tids[t], NULL, worker, NULL) != 0) {
      fprintf(stderr, "drill: pthread_create: %s\n", strerror(errno));
      return 1;
    }
  for (int t = 0; t < nthreads; t++) pthread_join(tids[t], NULL);
  double w1 = now(), c1 = cpu();
  printf("drill: threads=%d reads=%zu wall_ms=%.3f cpu_ms=%.3f sum=%llu errors=%u\n",
         nthreads, count, (w1 - w0) * 1e3, (c1 - c0) * 1e3,
         (unsigned long long)atomic_load(&sum), atomic_load(&errors));
  free(tids);
  free(offsets);
  close(fd);
  return atomic_load(&errors) ? 1 : 0;
}
