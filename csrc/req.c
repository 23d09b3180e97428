/*
 * req.c: the request slab.
 *
 * Every SQE the core prepares has a record here until its last CQE: the
 * task to resume, the memory the kernel writes into, and a registry ref
 * pinning the Lua value the kernel reads.  Records come from chunks that
 * never move and are recycled through a free list; user_data is
 * index | generation << 32, and the generation is bumped on free so a late
 * or duplicated CQE finds a mismatch instead of someone else's request.
 *
 * The slab itself (ur_slab_*) knows no loop: the task loop embeds one and
 * each teaching ring (ring.c) embeds its own, so both anchor, pin and
 * release through the same code.  The ur_req_* functions below are the
 * loop's: its pooled I/O buffers, registered slots, cancels and traces.
 */
#include <stdlib.h>
#include <string.h>

#include "uring.h"

/* ------------------------------------------------------------ the slab */

/* Room for UR_SLAB_CHUNK more records: 0 if memory ran out. */
int ur_slab_grow (ur_slab *s) {
  ur_req **chunks, *c;
  uint32_t base = s->nreqs;
  if (s->nreqs > UINT32_MAX - 2 * UR_SLAB_CHUNK) return 0;
  chunks = (ur_req **)realloc(s->chunks, (s->nchunks + 1) * sizeof *chunks);
  if (!chunks) return 0;
  s->chunks = chunks;
  c = (ur_req *)calloc(UR_SLAB_CHUNK, sizeof *c);
  if (!c) return 0;
  chunks[s->nchunks++] = c;
  s->nreqs += UR_SLAB_CHUNK;
  /* thread the new records onto the free list, lowest index first */
  for (uint32_t i = UR_SLAB_CHUNK; i-- > 0;) {
    c[i].gen = 1;
    c[i].idx = base + i;
    c[i].pin_ref = LUA_NOREF;
    c[i].next_free = s->free_head;
    s->free_head = base + i + 1;
  }
  return 1;
}

/* Make sure the next ur_slab_take succeeds: 0 if memory ran out.  Lets a
 * caller that must not fail after some point (the teaching ring takes its
 * record only once it holds the SQE) find out before it. */
int ur_slab_reserve (ur_slab *s) {
  return s->free_head != 0 || ur_slab_grow(s);
}

/*
 * r is back: the kernel is done with it.  Unpin its buffers, drop its
 * anchor, free plain malloc'd memory (an owner with memory classes of its
 * own, like the loop's I/O buffer pool, releases those first), bump the
 * generation and put it on the free list.  L is any thread of the state
 * (for the registry).  Plain C and a registry unref: never raises.  The
 * other fields are left as they are: ur_slab_take resets them.
 */
static inline void slab_put (lua_State *L, ur_slab *s, ur_req *r) {
  if (r->memclass == UR_MEM_BUFFER) {
    ((ur_buffer *)r->obj)->pins--;      /* still anchored by pin_ref */
    r->mem = NULL;                      /* the buffer's bytes: not ours */
  }
  else if (r->memclass == UR_MEM_BUFVEC && r->mem) {
    ur_buffer **bufs = (ur_buffer **)r->mem;
    for (int i = 0; i < r->aux; i++)
      if (bufs[i]) bufs[i]->pins--;
  }
  if (r->pin_ref != LUA_NOREF) {
    lua_checkstack(L, 4);
    luaL_unref(L, LUA_REGISTRYINDEX, r->pin_ref);   /* unpinned */
    r->pin_ref = LUA_NOREF;
  }
  if (r->mem) free(r->mem);
  r->state = UR_REQ_FREE;
  r->gen++;
  if (r->gen == 0) r->gen = 1;   /* user_data 0 is reserved */
  r->next_free = s->free_head;
  s->free_head = r->idx + 1;
  s->used--;
}

void ur_slab_put (lua_State *L, ur_slab *s, ur_req *r) {
  if (r->state != UR_REQ_FREE) slab_put(L, s, r);
}

/* Free the chunks.  Every record must have been put back, or be
 * abandoned on purpose (then do not call this: leak the slab). */
void ur_slab_destroy (ur_slab *s) {
  for (uint32_t c = 0; c < s->nchunks; c++) free(s->chunks[c]);
  free(s->chunks);
  s->chunks = NULL;
  s->nchunks = s->nreqs = 0;
  s->free_head = 0;
  s->used = 0;
}

/* A registry ref to the value at idx, for pin_ref: the kernel reads it
 * until the request's last CQE.  May raise (memory) only here, before a
 * caller that takes the ref first has taken anything else. */
int ur_anchor (lua_State *L, int idx) {
  lua_pushvalue(L, idx);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}


/* ------------------------------------------------- the loop's requests */

/* ur_req_new's (uring.h) other cases: a forked child, an empty free
 * list.  Raises "not enough memory" before anything is prepared: callers
 * take a request first, then the SQE, so nothing half-built reaches the
 * kernel. */
ur_req *ur_req_new_slow (lua_State *L, ur_loop *loop, uint8_t opcode) {
  ur_req *r;
  if (ur_foreign(loop)) {
    if (L == NULL) return NULL;
    ur_foreign_error(L, loop);
  }
  r = ur_slab_take(&loop->slab, opcode);
  if (r == NULL) {
    if (L == NULL) return NULL;         /* a handler: it copes */
    luaL_error(L, "uring: not enough memory for requests");
  }
  /* not in flight until ur_req_submitted */
  return r;
}

/*
 * I/O buffers for requests, pooled per loop: a 4 KiB pread at queue depth
 * 32 would otherwise cost a malloc and a free per op, and O_DIRECT a
 * posix_memalign (whose fresh pages the kernel must also fault in when it
 * pins them).  A free buffer's first bytes link it into its class's list;
 * each class keeps at most IOBUF_KEEP bytes (and at least 32 buffers).
 */
#define IOBUF_KEEP (512 * 1024)

static unsigned iobuf_class (size_t n) {
  unsigned k = 0;
  while ((size_t)UR_IOBUF_MIN << k < n) k++;
  return k;
}

static uint32_t iobuf_keep (unsigned k) {
  uint32_t n = IOBUF_KEEP / ((uint32_t)UR_IOBUF_MIN << k);
  return n < 32 ? 32 : n;
}

void *ur_iobuf_new (ur_loop *loop, ur_req *r, size_t n) {
  unsigned k = iobuf_class(n ? n : 1);
  void *p = NULL;
  if (k < UR_IOBUF_CLASSES && loop->iobuf_free[k]) {
    p = loop->iobuf_free[k];
    loop->iobuf_free[k] = *(void **)p;
    loop->iobuf_count[k]--;
  }
  else {
    size_t size = k < UR_IOBUF_CLASSES ? (size_t)UR_IOBUF_MIN << k
                  : (n + UR_IOBUF_MIN - 1) & ~(size_t)(UR_IOBUF_MIN - 1);
    if (posix_memalign(&p, UR_IOBUF_MIN, size) != 0) return NULL;
  }
  r->mem = p;
  r->memlen = n;
  r->memclass = k < UR_IOBUF_CLASSES ? (uint8_t)(k + 1) : 0;
  return p;
}

static void iobuf_release (ur_loop *loop, void *p, unsigned k) {
  if (loop->iobuf_count[k] >= iobuf_keep(k)) {
    free(p);
    return;
  }
  *(void **)p = loop->iobuf_free[k];
  loop->iobuf_free[k] = p;
  loop->iobuf_count[k]++;
}

static void iobuf_free_all (ur_loop *loop) {
  for (unsigned k = 0; k < UR_IOBUF_CLASSES; k++) {
    while (loop->iobuf_free[k]) {
      void *p = loop->iobuf_free[k];
      loop->iobuf_free[k] = *(void **)p;
      free(p);
    }
    loop->iobuf_count[k] = 0;
  }
}

/* ur_req_submitted (uring.h) while tracing: no cost per op otherwise (a
 * request made before tracing began is traced as if no task made it) */
void ur_req_traced (ur_loop *loop, ur_req *r) {
  r->untraced = r->untraced || (r->task && r->task->untraced);
  r->t_prep = ur_now();
  ur_trace_sqe(loop, r);
}

/* ur_req_free's (uring.h) general case: memory, pins, the fd's list */
void ur_req_free_slow (ur_loop *loop, ur_req *r) {
  if (r->state == UR_REQ_FREE) return;
  if (r->onfd) ur_fd_unlink(loop, r);   /* freed without its last CQE */
  if (r->memclass == UR_MEM_FIXED) {
    /* back on the free stack, unless the ring it belonged to is gone */
    if ((unsigned char *)r->mem >= loop->fixed_base
        && (unsigned char *)r->mem < loop->fixed_base
             + (size_t)loop->fixed_n * loop->fixed_size
        && loop->fixed_nfree < loop->fixed_n)
      loop->fixed_stack[loop->fixed_nfree++] = (uint32_t)r->aux;
    r->mem = NULL;                      /* the loop's, not malloc'd */
    r->memclass = 0;
  }
  else if (r->memclass == UR_MEM_SLOT) {
    ur_strcache_unpin(loop, r);         /* the string stays in its slot */
    r->memclass = 0;
  }
  else if (r->memclass && r->memclass <= UR_IOBUF_CLASSES) {
    if (r->mem) iobuf_release(loop, r->mem, r->memclass - 1u);
    r->mem = NULL;
    r->memclass = 0;
  }
  slab_put(loop->L, &loop->slab, r);    /* pins, anchor, the rest */
}

/* Pin the value at idx: the kernel reads it until the request's CQE. */
void ur_req_pin (lua_State *L, ur_req *r, int idx) {
  r->pin_ref = ur_anchor(L, idx);
}

/* Ask the kernel to cancel r; its CQE still comes (-ECANCELED, or its
 * result if it won the race) and frees it.  The cancel's own CQE carries
 * user_data 0 and is ignored. */
void ur_req_cancel (ur_loop *loop, ur_req *r) {
  struct io_uring_sqe *sqe;
  if (r->state != UR_REQ_INFLIGHT || r->canceling) return;
  if (ur_foreign(loop)) return;   /* a forked child: the ring is not ours */
  r->canceling = 1;
  loop->canceling++;
  sqe = ur_get_sqe(loop);
  io_uring_prep_cancel64(sqe, ur_req_ud(loop, r), 0);
  io_uring_sqe_set_data64(sqe, 0);
}

/*
 * A cancel held back.  r is a send nobody waits for, on a socket being
 * closed (a response sent behind, then the connection closed at once):
 * its SQE is most likely still in the SQ, and the enter that carries it
 * completes it there (the socket has room), so it needs no cancel; yet an
 * ASYNC_CANCEL that finds nothing still costs the kernel a search of its
 * poll table and its io-wq workers (issue 17: one per churned
 * connection).  So the cancel goes out only if r is still in flight at
 * the first reap after an enter (ur_late_cancels): it waits on a full
 * socket buffer.  Returns 0 when it cannot be held back (outside
 * uring.run, SQPOLL, whose thread takes the SQ in its own time, or the
 * list is full): the caller cancels now.
 */
int ur_req_cancel_late (ur_loop *loop, ur_req *r) {
  if (r->cancel_late) return 1;
  if (!loop->running || loop->closing || loop->nlate == UR_LATE_MAX
      || (loop->setup_flags & IORING_SETUP_SQPOLL))
    return 0;
  r->cancel_late = 1;
  loop->late[loop->nlate].ud = ur_req_ud(loop, r);
  loop->late[loop->nlate].seq = loop->enter_seq;
  loop->nlate++;
  return 1;
}

/* After a reap: the held-back cancels whose requests an enter has carried
 * since are sent if those are still in flight, and dropped if not. */
void ur_late_cancels (ur_loop *loop) {
  uint32_t i = 0;
  while (i < loop->nlate) {
    ur_req *r = ur_req_at(loop, loop->late[i].ud);
    int live = r != NULL && r->state == UR_REQ_INFLIGHT;
    if (live && loop->late[i].seq == loop->enter_seq) {
      i++;                      /* not in the kernel yet */
      continue;
    }
    loop->late[i] = loop->late[--loop->nlate];
    if (live) {
      r->cancel_late = 0;
      ur_req_cancel(loop, r);
    }
  }
}

/* A CQE handler for requests whose result nobody needs. */
static void ur_req_free_done (ur_loop *loop, ur_req *r) {
  if (r->state == UR_REQ_DONE) ur_req_free(loop, r);
}

/*
 * A timeout linked to an op (settimeout), in two steps so that nothing can
 * raise once the op's SQE is in the ring: ur_link_timeout_new takes the
 * request and room for both SQEs before the op's SQE is taken;
 * ur_link_timeout_add, right after it, links the two.
 */
ur_req *ur_link_timeout_new (lua_State *L, ur_loop *loop) {
  ur_req *tr = ur_req_new(L, loop, IORING_OP_LINK_TIMEOUT);
  ur_reserve_sqes(loop, 2);     /* a chain reaches the kernel whole */
  return tr;
}

void ur_link_timeout_add (ur_loop *loop, ur_req *tr,
                          struct io_uring_sqe *op, double secs) {
  struct io_uring_sqe *sqe;
  op->flags |= IOSQE_IO_LINK;
  sqe = ur_get_sqe(loop);
  ur_set_ts(&tr->u.ts, secs);   /* read at submit: lives in the request */
  io_uring_prep_link_timeout(sqe, &tr->u.ts, 0);
  tr->on_cqe = ur_req_free_done;
  ur_req_submitted(loop, tr, sqe);
}

/* Loop teardown, once the kernel holds none of them: every request
 * back, the I/O buffer pool and the chunks freed. */
void ur_req_free_all (ur_loop *loop) {
  for (uint32_t i = 0; i < loop->slab.nreqs; i++) {
    ur_req *r = ur_slab_req(&loop->slab, i);
    if (r->state != UR_REQ_FREE) ur_req_free(loop, r);
  }
  iobuf_free_all(loop);
  ur_slab_destroy(&loop->slab);
}

/* ur_slab_take zeroes one block: keep it a cache line (a few stores) */
_Static_assert(offsetof(ur_req, state) - offsetof(ur_req, on_cqe) == 64,
               "ur_req: the block ur_slab_take zeroes is no longer 64 bytes");
