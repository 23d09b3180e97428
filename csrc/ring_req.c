/*
 * ring_req.c: the teaching ring's requests, on the core's request slab.
 *
 * What liburing leaves to the C programmer this file does for Lua, with
 * the same machinery the task loop uses (req.c): every Lua value an SQE
 * names (a uring.buffer read into, a string written, a path) is anchored
 * by a registry ref (ur_req.pin_ref) and every uring.buffer is pinned
 * (its pins count) from prep until its last CQE has been handed to Lua;
 * every piece of C memory the kernel reads or writes (timespecs in u.ts,
 * iovecs, statx results, open_how in mem) lives in the request until
 * then too.  ur_slab_put releases all of it.
 *
 * Rule kept throughout (RELIABILITY.md §3): everything that can raise (a
 * free record, the anchor, the memory, a full SQ) comes before the SQE is
 * committed; from io_uring_get_sqe to a fully prepared SQE nothing raises.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ring.h"

/*
 * The one way to get an SQE.  A free record, the anchor (anchor = stack
 * index of the value the kernel reads, 0 for none) and memlen zeroed bytes
 * of request memory are had first; only then io_uring_get_sqe.  A full SQ
 * undoes them and raises, since this is the teaching API: the user decides
 * when to submit.  The caller then preps the SQE and may not raise until
 * it returns; its io_uring_prep_* leaves user_data alone.
 */
struct io_uring_sqe *ur_ring_sqe (lua_State *L, ur_ring *r, const char *fname,
                                  uint8_t opcode, lua_Integer user,
                                  int anchor, size_t memlen, ur_req **pq) {
  struct io_uring_sqe *sqe;
  ur_req *q;
  int ref = LUA_NOREF;
  void *mem = NULL;
  int traced = ur_tracing(L) != NULL;   /* its SQE event is stamped now */
  if (!ur_slab_reserve(&r->slab)) {
    luaL_error(L, "%s: not enough memory", fname);
    return NULL;
  }
  if (anchor) ref = ur_anchor(L, anchor);     /* may raise: nothing taken */
  if (memlen && (mem = calloc(1, memlen)) == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    luaL_error(L, "%s: not enough memory", fname);
    return NULL;
  }
  sqe = io_uring_get_sqe(&r->ring);
  if (sqe == NULL) {
    free(mem);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    luaL_error(L, "%s: submission queue full (call ring:submit())", fname);
    return NULL;
  }
  /* commit: from here nothing raises */
  q = ur_slab_take(&r->slab, opcode);         /* reserved: cannot fail */
  q->state = UR_REQ_INFLIGHT;                 /* its SQE is in the ring */
  q->pin_ref = ref;                           /* pinned: the kernel reads it */
  q->mem = mem;
  q->memlen = memlen;
  q->user = user;
  q->seq = ++r->seq;
  q->t_prep = traced ? ur_now() : 0;
  *pq = q;
  io_uring_sqe_set_data64(sqe, ur_slab_ud(q));
  return sqe;
}

/* q names buffer b (already anchored through pin_ref): count the pin. */
void ur_ring_pin (ur_req *q, ur_buffer *b) {
  q->memclass = UR_MEM_BUFFER;
  q->obj = b;
  b->pins++;                                  /* pinned until its last CQE */
}

/*
 * The kernel user_data of the oldest request the user tagged `user`, for
 * prep_cancel/timeout_remove/poll_remove.  0 if none: no request carries
 * 0, so the kernel answers -ENOENT, which is the lesson.
 */
uint64_t ur_ring_find (ur_ring *r, lua_Integer user) {
  ur_req *best = NULL;
  for (uint32_t i = 0; i < r->slab.nreqs; i++) {
    ur_req *q = ur_slab_req(&r->slab, i);
    if (q->state != UR_REQ_FREE && q->user == user
        && (best == NULL || q->seq < best->seq))
      best = q;
  }
  return best ? ur_slab_ud(best) : 0;
}

/* The kernel is done with q and Lua has its last CQE (or never will). */
void ur_ring_release (lua_State *L, ur_ring *r, ur_req *q) {
  if (q->opcode == IORING_OP_SEND_ZC && q->aux) {
    q->aux = 0;
    r->zc_pending--;
  }
  ur_slab_put(L, &r->slab, q);
}

/* Every request back at once: only where the kernel can no longer touch
 * their memory (a forked child, whose ring is its parent's). */
void ur_ring_release_all (lua_State *L, ur_ring *r) {
  for (uint32_t i = 0; i < r->slab.nreqs; i++) {
    ur_req *q = ur_slab_req(&r->slab, i);
    if (q->state != UR_REQ_FREE) ur_ring_release(L, r, q);
  }
}

/* A non-final CQE of q came (F_MORE): a send_zc's result, whose
 * notification is still due. */
static void ring_more (ur_ring *r, ur_req *q) {
  if (q->opcode == IORING_OP_SEND_ZC && q->aux) {
    q->aux = 0;
    r->zc_pending--;
  }
}

/*
 * Hand one CQE to Lua: res, user_data, flags (and a statx table).  The
 * results are pushed before the CQE is consumed, so a memory error leaves
 * it in the CQ for the next call; then the request is released if this
 * was its last CQE.  Returns the number of results, or 0 for a CQE that
 * names no request (skipped).
 */
int ur_ring_push_cqe (lua_State *L, ur_ring *r, struct io_uring_cqe *cqe) {
  ur_req *q = ur_slab_at(&r->slab, cqe->user_data);
  int32_t res = cqe->res;
  uint32_t flags = cqe->flags;
  int n = 3;
  if (q == NULL) {
    io_uring_cqe_seen(&r->ring, cqe);
    return 0;
  }
  luaL_checkstack(L, 4, NULL);
  lua_pushinteger(L, res);     /* raw -errno, as liburing gives it */
  lua_pushinteger(L, q->user);
  lua_pushinteger(L, flags);
  if (q->opcode == IORING_OP_STATX && res >= 0) {
    ur_kernel_wrote(q->mem, sizeof(struct statx));
    ur_push_statx(L, (const struct statx *)q->mem);
    n = 4;
  }
  {
    ur_loop *loop = ur_tracing(L);
    if (loop)
      ur_trace_ring_req(loop, r->ring.ring_fd, 1, q->opcode, q->fd, q->user,
                        res, flags, q->memlen, q->t_prep);
  }
  io_uring_cqe_seen(&r->ring, cqe);
  if (flags & IORING_CQE_F_MORE) ring_more(r, q);
  else ur_ring_release(L, r, q);      /* its last CQE (send_zc: the notif) */
  return n;
}

/*
 * Take every ready CQE back without handing it to Lua (close).  An fd
 * that an open made and Lua never saw is closed: nobody else can.
 * Returns the number of requests released.
 */
unsigned ur_ring_drain (lua_State *L, ur_ring *r) {
  struct io_uring_cqe *cqe;
  unsigned head, n = 0, released = 0;
  io_uring_for_each_cqe(&r->ring, head, cqe) {
    ur_req *q = ur_slab_at(&r->slab, cqe->user_data);
    n++;
    if (q == NULL) continue;            /* our own cancels carry 0 */
    if (cqe->res >= 0
        && (q->opcode == IORING_OP_OPENAT || q->opcode == IORING_OP_OPENAT2))
      close(cqe->res);
    if (cqe->flags & IORING_CQE_F_MORE) ring_more(r, q);
    else {
      ur_ring_release(L, r, q);
      released++;
    }
  }
  io_uring_cq_advance(&r->ring, n);
  return released;
}

/*
 * SQEs in the SQ the kernel has not consumed.  Those prepared since the
 * last submit, and, without SQPOLL, submitted ones the kernel left there:
 * without IORING_SETUP_SUBMIT_ALL it stops at the first SQE whose prep
 * fails (that one gets its CQE; the ones after it stay in the SQ until the
 * next io_uring_enter).  An SQPOLL thread retries those on its own, so for
 * it they are in flight.
 */
unsigned ur_ring_unconsumed (ur_ring *r) {
  struct io_uring_sq *sq = &r->ring.sq;
  if (r->flags & IORING_SETUP_SQPOLL) return sq->sqe_tail - sq->sqe_head;
  return sq->sqe_tail - *sq->khead;
}

/* Of those, the ones submitted and left by the kernel (0 with SQPOLL). */
unsigned ur_ring_left (ur_ring *r) {
  struct io_uring_sq *sq = &r->ring.sq;
  return ur_ring_unconsumed(r) - (sq->sqe_tail - sq->sqe_head);
}

/* Requests the kernel holds: their CQE can still come without a submit. */
uint32_t ur_ring_in_kernel (ur_ring *r) {
  unsigned un = ur_ring_unconsumed(r);
  return r->slab.used > un ? r->slab.used - un : 0;
}
