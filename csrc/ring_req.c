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
  q->chain_prev = q->chain_next = 0;
  q->chain_flags = 0;
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

/* The kernel is done with q and Lua has its last CQE (or never will).
 * So it is with the CQE_SKIP_SUCCESS requests chained before q: a link
 * chain runs in order, and one that failed was released at its own CQE
 * (its user_data is stale now, so ur_slab_at finds nothing). */
void ur_ring_release (lua_State *L, ur_ring *r, ur_req *q) {
  while (q != NULL) {
    uint64_t prev = q->chain_prev;
    if (q->opcode == IORING_OP_SEND_ZC && q->aux) {
      q->aux = 0;
      r->zc_pending--;
    }
    if (q->chain_flags & RING_CHAIN_SKIP) r->skips--;
    ur_slab_put(L, &r->slab, q);
    q = prev ? ur_slab_at(&r->slab, prev) : NULL;
  }
}

/* A CQE_SKIP_SUCCESS request with IO_LINK failed: the kernel cancels the
 * rest of its chain without posting their CQEs (they never started), so
 * they are released here, up to the chain's last SQE. */
static void ring_release_rest (lua_State *L, ur_ring *r, ur_req *q) {
  uint64_t next = q->chain_next;
  while (next) {
    ur_req *n = ur_slab_at(&r->slab, next);
    int more;
    if (n == NULL) break;
    next = n->chain_next;
    more = n->chain_flags & (RING_CHAIN_LINK | RING_CHAIN_HARD);
    n->chain_prev = 0;                /* its predecessors end on their own */
    ur_ring_release(L, r, n);
    if (!more) break;
  }
}

/*
 * At submit: an SQE with IOSQE_CQE_SKIP_SUCCESS posts no CQE if it
 * succeeds, so nothing of its own says when the kernel is done with it.
 * Submit refuses one without a linked successor; here each successor
 * learns its predecessor's user_data, so the successor's last CQE
 * releases both (ur_ring_release).  If it fails, it posts its CQE and the
 * kernel ends the rest of the chain silently: each linked request learns
 * its successor for that (ring_release_rest).  r->skips counts them:
 * that many fewer CQEs may come than requests are in flight.
 */
void ur_ring_chain (ur_ring *r) {
  struct io_uring_sq *sq = &r->ring.sq;
  for (unsigned i = sq->sqe_head; i != sq->sqe_tail; i++) {
    struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
    ur_req *q = ur_slab_at(&r->slab, sqe->user_data), *nq = NULL;
    if (q == NULL || q->chain_flags) continue;     /* chained before */
    if (i + 1 != sq->sqe_tail)
      nq = ur_slab_at(&r->slab, sq->sqes[(i + 1) & sq->ring_mask].user_data);
    if (sqe->flags & IOSQE_IO_LINK) q->chain_flags |= RING_CHAIN_LINK;
    if (sqe->flags & IOSQE_IO_HARDLINK) q->chain_flags |= RING_CHAIN_HARD;
    if (nq && (sqe->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)))
      q->chain_next = ur_slab_ud(nq);
    if ((sqe->flags & IOSQE_CQE_SKIP_SUCCESS) && nq) {
      q->chain_flags |= RING_CHAIN_SKIP;
      nq->chain_prev = sqe->user_data;
      r->skips++;
    }
  }
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
 * Hand one CQE to Lua: res, user_data, flags (and a statx table, or a
 * provided buffer's data and id).  The results are pushed before the CQE
 * is consumed, so a memory error leaves it in the CQ for the next call.
 * keep (wait_cqe/peek_cqe with keep, liburing's io_uring_wait_cqe without
 * io_uring_cqe_seen) leaves it at the CQ head for ring:cqe_seen; otherwise
 * it is consumed here.  Returns the number of results, or 0 for a CQE that
 * names no request (consumed and skipped).
 */
int ur_ring_push_cqe (lua_State *L, ur_ring *r, struct io_uring_cqe *cqe,
                      int keep) {
  ur_req *q = ur_slab_at(&r->slab, cqe->user_data);
  int32_t res = cqe->res;
  uint32_t flags = cqe->flags;
  int n = 3;
  if (q == NULL) {
    io_uring_cqe_seen(&r->ring, cqe);
    return 0;
  }
  luaL_checkstack(L, 5, NULL);
  lua_pushinteger(L, res);     /* raw -errno, as liburing gives it */
  lua_pushinteger(L, q->user);
  lua_pushinteger(L, flags);
  if (q->opcode == IORING_OP_STATX && res >= 0) {
    ur_kernel_wrote(q->mem, sizeof(struct statx));
    ur_push_statx(L, (const struct statx *)q->mem);
    n = 4;
  }
  else if (flags & IORING_CQE_F_BUFFER)
    n += ur_ring_push_buf(L, r, q, res, flags);
  if (keep) r->kept = 1;
  else ur_ring_consume(L, r, cqe);
  return n;
}

/* The CQE at the head, already handed to Lua, leaves the CQ: traced,
 * cq_head moves on, and its request is released if it was its last. */
void ur_ring_consume (lua_State *L, ur_ring *r, struct io_uring_cqe *cqe) {
  ur_req *q = ur_slab_at(&r->slab, cqe->user_data);
  uint32_t flags = cqe->flags;
  ur_loop *loop = ur_tracing(L);
  r->kept = 0;
  if (q && loop)
    ur_trace_ring_req(loop, r->ring.ring_fd, 1, q->opcode, q->fd, q->user,
                      cqe->res, flags, q->memlen, q->t_prep);
  io_uring_cqe_seen(&r->ring, cqe);
  if (q == NULL) return;
  if (flags & IORING_CQE_F_MORE) ring_more(r, q);
  else {
    /* a skip_success request's CQE: it failed (see ur_ring_chain) */
    if ((q->chain_flags & (RING_CHAIN_SKIP | RING_CHAIN_LINK))
        == (RING_CHAIN_SKIP | RING_CHAIN_LINK))
      ring_release_rest(L, r, q);
    ur_ring_release(L, r, q);         /* its last CQE (send_zc: the notif) */
  }
}

/* Ops whose result is a new fd the ring's user must close. */
static int ring_makes_fd (uint8_t op) {
  return op == IORING_OP_OPENAT || op == IORING_OP_OPENAT2
      || op == IORING_OP_SOCKET || op == IORING_OP_ACCEPT;
}

/*
 * Take every ready CQE back without handing it to Lua (close).  An fd
 * that an open, socket or accept made and Lua never saw is closed:
 * nobody else can (a CQE kept at the head, Lua has seen).  Returns the
 * number of requests released.
 */
unsigned ur_ring_drain (lua_State *L, ur_ring *r) {
  struct io_uring_cqe *cqe;
  unsigned head, n = 0, released = 0;
  io_uring_for_each_cqe(&r->ring, head, cqe) {
    ur_req *q = ur_slab_at(&r->slab, cqe->user_data);
    int seen = (n == 0 && r->kept);
    n++;
    if (q == NULL) continue;            /* our own cancels carry 0 */
    if (cqe->res >= 0 && ring_makes_fd(q->opcode) && !seen)
      close(cqe->res);
    if (cqe->flags & IORING_CQE_F_MORE) ring_more(r, q);
    else {
      if ((q->chain_flags & (RING_CHAIN_SKIP | RING_CHAIN_LINK))
          == (RING_CHAIN_SKIP | RING_CHAIN_LINK))
        ring_release_rest(L, r, q);
      ur_ring_release(L, r, q);
      released++;
    }
  }
  r->kept = 0;
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
