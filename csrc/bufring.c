/*
 * bufring.c: the loop's ring of provided receive buffers.
 *
 * A socket receive asks the kernel to pick a buffer from this group only
 * when data arrives (IOSQE_BUFFER_SELECT), so the thousands of idle
 * connections a server holds each cost no receive buffer.  The CQE names
 * the buffer it used; the handler copies the bytes into the socket's own
 * buffer and gives the buffer straight back, so buffers are only ever
 * held between a CQE and its handler.  When a burst of completions uses
 * them all the kernel answers ENOBUFS: the ring then grows (up to
 * UR_BR_MAX buffers) and the receive is simply sent again; at the cap it
 * is sent with a buffer of its own (the kernel would answer ENOBUFS
 * again until the held buffers come back).
 *
 * liburing 2.3 has io_uring_register_buf_ring but not
 * io_uring_setup_buf_ring, so the shared ring memory is our own mmap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "uring.h"

#define UR_BR_MAX     4096          /* ring entries: the most buffers */
#define UR_BR_FIRST   256           /* buffers provided at first */

struct ur_bufring {
  struct io_uring_buf_ring *br;     /* shared with the kernel */
  size_t brsize;                    /* bytes mapped for br */
  char **bufs;                      /* bufs[bid]: UR_BR_SIZE bytes each */
  unsigned nbufs;                   /* provided so far */
};

/* Put buffer bid at slot tail + offset; io_uring_buf_ring_advance then
 * publishes every slot added. */
static void add_buf (ur_bufring *b, unsigned bid, int offset) {
  io_uring_buf_ring_add(b->br, b->bufs[bid], UR_BR_SIZE, (unsigned short)bid,
                        io_uring_buf_ring_mask(UR_BR_MAX), offset);
}

/* Provide buffers nbufs .. want-1; returns how many were added. */
static unsigned provide (ur_bufring *b, unsigned want) {
  unsigned added = 0;
  if (want > UR_BR_MAX) want = UR_BR_MAX;
#ifdef UR_FAULTS
  want = ur_fault_bufring_max(want);   /* a spec caps the group */
#endif
  while (b->nbufs < want) {
    char *p = (char *)malloc(UR_BR_SIZE);
    if (p == NULL) break;
    b->bufs[b->nbufs] = p;
    add_buf(b, b->nbufs, (int)added);
    b->nbufs++;
    added++;
  }
  if (added) io_uring_buf_ring_advance(b->br, (int)added);
  return added;
}

/* Set the group up on first use: 0, or -errno (memlock, old kernel). */
int ur_bufring_ensure (ur_loop *loop) {
  ur_bufring *b;
  struct io_uring_buf_reg reg;
  int ret;
  if (loop->bufring) return 0;
  b = (ur_bufring *)calloc(1, sizeof *b);
  if (b == NULL) return -ENOMEM;
  b->bufs = (char **)calloc(UR_BR_MAX, sizeof *b->bufs);
  b->brsize = UR_BR_MAX * sizeof(struct io_uring_buf);
  b->br = (struct io_uring_buf_ring *)mmap(NULL, b->brsize,
            PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (b->bufs == NULL || b->br == MAP_FAILED) {
    if (b->br != MAP_FAILED) munmap(b->br, b->brsize);
    free(b->bufs);
    free(b);
    return -ENOMEM;
  }
  io_uring_buf_ring_init(b->br);
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (unsigned long)b->br;
  reg.ring_entries = UR_BR_MAX;
  reg.bgid = UR_BGID;
  ret = io_uring_register_buf_ring(&loop->ring, &reg, 0);
  if (ret < 0) {
    munmap(b->br, b->brsize);
    free(b->bufs);
    free(b);
    return ret;
  }
  loop->bufring = b;
  provide(b, UR_BR_FIRST);
  return 0;
}

const char *ur_bufring_data (ur_loop *loop, unsigned bid) {
  return loop->bufring->bufs[bid];
}

/* Give buffer bid back to the kernel. */
void ur_bufring_recycle (ur_loop *loop, unsigned bid) {
  ur_bufring *b = loop->bufring;
  if (b == NULL || bid >= b->nbufs) return;
#ifdef UR_FAULTS
  if (ur_fault_hold_buf(bid)) return;  /* a spec holds it, as a consumer */
#endif
  add_buf(b, bid, 0);
  io_uring_buf_ring_advance(b->br, 1);
}

/* ENOBUFS: every buffer was in use at once; double the group.  Returns 0
 * when it is already as large as it may be, or memory ran out (the
 * receive then retries with a buffer of its own: net.c). */
int ur_bufring_grow (ur_loop *loop) {
  ur_bufring *b = loop->bufring;
  if (b == NULL) return 0;
  return provide(b, b->nbufs * 2) > 0;
}

/* After the ring has drained (nothing in flight may name a buffer), or
 * in a forked child (ring_ok is 0 then: nothing is unregistered). */
static void bufring_free (ur_loop *loop) {
  ur_bufring *b = loop->bufring;
  if (b == NULL) return;
  if (loop->ring_ok) io_uring_unregister_buf_ring(&loop->ring, UR_BGID);
  for (unsigned i = 0; i < b->nbufs; i++) free(b->bufs[i]);
  free(b->bufs);
  munmap(b->br, b->brsize);
  free(b);
  loop->bufring = NULL;
}

/* The ring goes: the buffers with it, unless the kernel may still write
 * into one (then they are leaked, never freed under it). */
static void bufring_teardown (ur_loop *loop, int drained) {
  if (drained) bufring_free(loop);
}

void ur_register_bufring (lua_State *L) {
  static const ur_hooks hooks = {
    NULL, bufring_teardown, NULL, bufring_free, NULL, NULL
  };
  ur_loop_hook(L, &hooks);
}
