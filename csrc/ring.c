/*
 * ring.c: uring.ring, the teaching API: the ring object.
 *
 * A uring.ring wraps its own struct io_uring, separate from the task loop,
 * and exposes liburing's model one call at a time: prep_* (ring_prep.c)
 * fills an SQE, submit hands the SQ to the kernel, wait_cqe/peek_cqe take
 * CQEs back.  It is synchronous and works from plain Lua, without
 * uring.run.  This file has the object: setup, submit and wait, the SQE
 * flags of the last prepared SQE, registration, introspection and close.
 * Its requests (anchors, memory, release) are in ring_req.c, on the same
 * slab as the task loop's.
 *
 * Two things liburing leaves to the C programmer are done here: a wait
 * that could never end raises instead (nothing the kernel holds can
 * complete), and close gets every request back from the kernel, also
 * those stuck behind an IOSQE_IO_DRAIN barrier or blocked in an io-wq
 * worker (a splice on an empty pipe), before it frees anything; what the
 * kernel never gives back is leaked, not freed under it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ring.h"

#define RING_MAX_FIXED 16384        /* the kernel's registered-buffer cap */
#define RING_MAX_FILES (1 << 20)    /* the kernel's registered-file cap */


/* Every method but close and __tostring starts here. */
ur_ring *ur_ring_check (lua_State *L) {
  ur_ring *r = (ur_ring *)luaL_checkudata(L, 1, UR_RING_MT);
  if (!r->ok) luaL_error(L, "attempt to use a closed ring");
  if (r->pid != getpid())
    luaL_error(L, "uring.ring: this ring belongs to process %d; a forked "
               "child must not use its parent's ring", (int)r->pid);
  return r;
}

/* ------------------------------------------------------- SQ-side methods */

/* The SQE prepared last and not yet submitted, or raise. */
static struct io_uring_sqe *ring_last_sqe (lua_State *L, ur_ring *r,
                                           const char *fname) {
  struct io_uring_sq *sq = &r->ring.sq;
  if (sq->sqe_tail == sq->sqe_head)
    luaL_error(L, "%s: no prepared SQE (prep one first; %s before submit)",
               fname, fname);
  return &sq->sqes[(sq->sqe_tail - 1) & sq->ring_mask];
}

/* ring:link(): IOSQE_IO_LINK on the last prepared SQE: the next SQE starts
 * only when this one succeeded, and fails with -ECANCELED otherwise */
static int l_link (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  ring_last_sqe(L, r, "link")->flags |= IOSQE_IO_LINK;
  return 0;
}

/* ring:hardlink(): IOSQE_IO_HARDLINK: like link, but the chain goes on
 * even if this SQE fails */
static int l_hardlink (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  ring_last_sqe(L, r, "hardlink")->flags |= IOSQE_IO_HARDLINK;
  return 0;
}

/* ring:drain(): IOSQE_IO_DRAIN: start only after every earlier SQE ended */
static int l_drain (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  ring_last_sqe(L, r, "drain")->flags |= IOSQE_IO_DRAIN;
  return 0;
}

/* Tracing: the SQEs this submit publishes (prepared since the last one),
 * each stamped with its prep; returns whether the submit will make the
 * system call (an SQPOLL ring's thread may take them without one). */
static int ring_trace_sqes (ur_loop *loop, ur_ring *r, unsigned wait_nr) {
  struct io_uring_sq *sq = &r->ring.sq;
  for (unsigned i = sq->sqe_head; i != sq->sqe_tail; i++) {
    const struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
    ur_req *q = ur_slab_at(&r->slab, sqe->user_data);
    if (q) q->fd = sqe->fd;             /* for its CQE's event */
    ur_trace_ring_req(loop, r->ring.ring_fd, 0, sqe->opcode, sqe->fd,
                      q ? q->user : 0, 0, 0, sqe->len, q ? q->t_prep : 0);
  }
  return wait_nr > 0 || !(r->flags & IORING_SETUP_SQPOLL)
      || (IO_URING_READ_ONCE(*sq->kflags) & IORING_SQ_NEED_WAKEUP);
}

/* ring:submit() -> number of SQEs submitted | fail */
static int l_submit (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  ur_loop *loop = ur_tracing(L);
  unsigned pend = io_uring_sq_ready(&r->ring);
  int ret, enters = loop ? ring_trace_sqes(loop, r, 0) : 0;
  do ret = io_uring_submit(&r->ring); while (ret == -EINTR);
  if (loop) {
    if (enters) ur_trace_ring_enter(loop, &r->ring, pend, 0, ret < 0 ? 0 : ret);
    ur_trace_ring_flush(L, loop);
  }
  if (ret < 0) return ur_pushfail(L, ret, "submit");
  lua_pushinteger(L, ret);
  return 1;
}

/* ring:submit_and_wait([n]) -> submitted | fail: submit, then wait until n
 * (default 1) CQEs are ready; one io_uring_enter */
static int l_submit_and_wait (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  lua_Integer n = luaL_optinteger(L, 2, 1);
  ur_loop *loop;
  unsigned pend;
  int ret, enters;
  /* waiting for more CQEs than can ever come would hang forever (a
   * send_zc whose first CQE Lua has not taken yet has two to come) */
  if (n < 0 || n > (lua_Integer)r->slab.used + (lua_Integer)r->zc_pending)
    return luaL_argerror(L, 2, lua_pushfstring(L, "cannot wait for %I CQEs: "
                         "%d SQE(s) in flight", n, (int)r->slab.used));
  loop = ur_tracing(L);
  pend = io_uring_sq_ready(&r->ring);
  enters = loop ? ring_trace_sqes(loop, r, (unsigned)n) : 0;
  do ret = io_uring_submit_and_wait(&r->ring, (unsigned)n);
  while (ret == -EINTR);
  if (loop) {
    if (enters)
      ur_trace_ring_enter(loop, &r->ring, pend, (unsigned)n, ret < 0 ? 0 : ret);
    ur_trace_ring_flush(L, loop);
  }
  if (ret < 0) return ur_pushfail(L, ret, "submit_and_wait");
  lua_pushinteger(L, ret);
  return 1;
}

static int l_sq_space_left (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  lua_pushinteger(L, io_uring_sq_space_left(&r->ring));
  return 1;
}

static int l_sq_ready (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  lua_pushinteger(L, io_uring_sq_ready(&r->ring));
  return 1;
}

static int l_cq_ready (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  lua_pushinteger(L, io_uring_cq_ready(&r->ring));
  return 1;
}

/* ring:inflight() -> SQEs prepared whose CQE Lua has not taken yet */
static int l_inflight (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  lua_pushinteger(L, r->slab.used);
  return 1;
}

/* ring:state() -> the ring's indices as the kernel and we see them now.
 * Each side writes one index of each ring and only reads the other's: we
 * write the SQ tail and the CQ head, the kernel the SQ head and the CQ
 * tail.  The kernel's are read with acquire loads (liburing's rule: what
 * they announce -- a consumed SQE, a written CQE -- must be visible before
 * we act on it).  Indices are free-running 32-bit counters; an entry's
 * slot is index & mask. */
void ur_push_ring_state (lua_State *L, struct io_uring *ring) {
  struct io_uring_sq *sq = &ring->sq;
  struct io_uring_cq *cq = &ring->cq;
  struct { const char *k; unsigned v; } f[] = {
    {"sq_head", io_uring_smp_load_acquire(sq->khead)},
    {"sq_tail", IO_URING_READ_ONCE(*sq->ktail)},
    /* prepared by prep_* but not yet published: the next submit moves
     * sq_tail up to sqe_tail */
    {"sqe_tail", sq->sqe_tail},
    {"sq_mask", sq->ring_mask}, {"sq_entries", sq->ring_entries},
    {"sq_flags", IO_URING_READ_ONCE(*sq->kflags)},
    {"sq_dropped", IO_URING_READ_ONCE(*sq->kdropped)},
    {"cq_head", IO_URING_READ_ONCE(*cq->khead)},
    {"cq_tail", io_uring_smp_load_acquire(cq->ktail)},
    {"cq_mask", cq->ring_mask}, {"cq_entries", cq->ring_entries},
    {"cq_flags", cq->kflags ? IO_URING_READ_ONCE(*cq->kflags) : 0},
    /* CQEs the kernel could not post to a full CQ: counted here; since
     * 5.5 it keeps them and sq_flags shows IORING_SQ_CQ_OVERFLOW (2) */
    {"overflow", IO_URING_READ_ONCE(*cq->koverflow)},
    {"sq_ready", io_uring_sq_ready(ring)},
    {"cq_ready", io_uring_cq_ready(ring)},
  };
  lua_createtable(L, 0, (int)(sizeof f / sizeof f[0]));
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    lua_pushinteger(L, (lua_Integer)f[i].v);
    lua_setfield(L, -2, f[i].k);
  }
}

static int l_state (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  ur_push_ring_state(L, &r->ring);
  return 1;
}

/* ------------------------------------------------------- CQ-side methods */

/* ring:wait_cqe([timeout]) -> res, user_data, flags [, statx] | fail */
static int l_wait_cqe (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  struct __kernel_timespec ts = { 0, 0 };
  int timed = !lua_isnoneornil(L, 2);
  if (timed) ts = ur_ring_seconds(L, 2);
  for (;;) {
    struct io_uring_cqe *cqe;
    int ret, n;
    /* liburing would block forever here: nothing the kernel holds can
     * post a CQE.  Say what is missing instead. */
    if (io_uring_cq_ready(&r->ring) == 0 && ur_ring_in_kernel(r) == 0) {
      unsigned left = ur_ring_left(r);
      if (left > 0)
        return luaL_error(L, "wait_cqe: the kernel stopped submitting at an "
                          "SQE that failed and left %d SQE(s) in the SQ, so "
                          "no CQE can come (call ring:submit() to submit "
                          "them)", (int)left);
      return luaL_error(L, "wait_cqe: no submitted SQE is in flight, so no "
                        "CQE can come (call ring:submit())");
    }
    {
      /* an empty CQ: liburing waits in io_uring_enter */
      ur_loop *loop = io_uring_cq_ready(&r->ring) == 0 ? ur_tracing(L) : NULL;
      ret = timed ? io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts)
                  : io_uring_wait_cqe(&r->ring, &cqe);
      if (loop) ur_trace_ring_enter(loop, &r->ring, 0, 1, 0);
    }
    if (ret == -EINTR) continue;
    if (ret < 0) return ur_pushfail(L, ret, "wait_cqe");
    if ((n = ur_ring_push_cqe(L, r, cqe)) > 0) {
      ur_loop *loop = ur_tracing(L);
      if (loop) ur_trace_ring_flush(L, loop);
      return n;
    }
  }
}

/* ring:peek_cqe() -> res, user_data, flags [, statx] | nil: never blocks */
static int l_peek_cqe (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  for (;;) {
    struct io_uring_cqe *cqe;
    int n, ret = io_uring_peek_cqe(&r->ring, &cqe);
    if (ret == -EAGAIN || ret == -EINTR) {
      lua_pushnil(L);
      return 1;
    }
    if (ret < 0) return ur_pushfail(L, ret, "peek_cqe");
    if ((n = ur_ring_push_cqe(L, r, cqe)) > 0) {
      ur_loop *loop = ur_tracing(L);
      if (loop) ur_trace_ring_flush(L, loop);
      return n;
    }
  }
}


/* -------------------------------------------------------- fixed buffers */

/*
 * ring:register_buffers{buf, ...} -> true | fail.  The kernel pins the
 * buffers' pages; the ring anchors the buffers until unregister_buffers or
 * close, and prep_read_fixed finds a buffer's index from it.
 */
static int l_register_buffers (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  lua_Integer n;
  struct iovec *iov;
  int ret;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 2);
  luaL_argcheck(L, n >= 1 && n <= RING_MAX_FIXED, 2,
                "table must hold 1..16384 buffers");
  /* scratch iovecs in a userdata: collected even if we raise below */
  iov = (struct iovec *)lua_newuserdatauv(L, (size_t)n * sizeof *iov, 0);
  lua_createtable(L, (int)n, (int)n);        /* [i] = buf, [buf] = i - 1 */
  for (lua_Integer i = 1; i <= n; i++) {
    ur_buffer *b;
    lua_rawgeti(L, 2, i);
    b = (ur_buffer *)luaL_testudata(L, -1, UR_BUFFER_MT);
    if (b == NULL)
      return luaL_argerror(L, 2, lua_pushfstring(L,
          "item %I is a %s, not a uring.buffer", i, luaL_typename(L, -1)));
    iov[i - 1].iov_base = b->data;
    iov[i - 1].iov_len = b->size;
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, i);
    lua_pushinteger(L, i - 1);
    lua_rawset(L, -3);
  }
  ret = io_uring_register_buffers(&r->ring, iov, (unsigned)n);
  if (ret < 0) return ur_pushfail(L, ret, "register_buffers");
  lua_setiuservalue(L, 1, RING_UV_FIXED);    /* anchored while registered */
  r->nfixed = (int)n;
  lua_pushboolean(L, 1);
  return 1;
}

/* ring:unregister_buffers() -> true | fail.  SQEs in flight keep their
 * own buffer anchored, so dropping the registry's anchors here is safe. */
static int l_unregister_buffers (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int ret = io_uring_unregister_buffers(&r->ring);
  if (ret < 0) return ur_pushfail(L, ret, "unregister_buffers");
  lua_pushnil(L);
  lua_setiuservalue(L, 1, RING_UV_FIXED);
  r->nfixed = 0;
  lua_pushboolean(L, 1);
  return 1;
}


/* --------------------------------------------------------- fixed files */

/* The fds in the list at idx (1..RING_MAX_FILES integers, -1 for an empty
 * slot), in a scratch userdata left on the stack (collected even if we
 * raise).  what names the list in messages. */
static int *ring_fd_list (lua_State *L, int idx, lua_Integer *pn) {
  lua_Integer n;
  int *fds;
  luaL_checktype(L, idx, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, idx);
  luaL_argcheck(L, n >= 1 && n <= RING_MAX_FILES, idx,
                "table must hold 1..1048576 fds");
  fds = (int *)lua_newuserdatauv(L, (size_t)n * sizeof *fds, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    int isint;
    lua_Integer v;
    lua_rawgeti(L, idx, i);
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < -1 || v > INT_MAX)
      luaL_argerror(L, idx, lua_pushfstring(L, "item %I must be an fd "
                    "(0..%d) or -1 for an empty slot, got %s", i, INT_MAX,
                    isint ? lua_tostring(L, -1) : luaL_typename(L, -1)));
    fds[i - 1] = (int)v;
    lua_pop(L, 1);
  }
  *pn = n;
  return fds;
}

/*
 * ring:register_files{fd, ...} -> true | fail.  The kernel takes its own
 * reference to each file: closing an fd afterwards does not empty its
 * slot, and nothing on the Lua side needs anchoring.  -1 is an empty
 * (sparse) slot, to be filled by update_files.
 */
static int l_register_files (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  lua_Integer n;
  int *fds = ring_fd_list(L, 2, &n);
  int ret = io_uring_register_files(&r->ring, fds, (unsigned)n);
  if (ret < 0) return ur_pushfail(L, ret, "register_files");
  r->nfiles = (int)n;
  lua_pushboolean(L, 1);
  return 1;
}

/* ring:unregister_files() -> true | fail (ENXIO when none).  SQEs in
 * flight on a fixed file hold their own reference in the kernel. */
static int l_unregister_files (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int ret = io_uring_unregister_files(&r->ring);
  if (ret < 0) return ur_pushfail(L, ret, "unregister_files");
  r->nfiles = 0;
  lua_pushboolean(L, 1);
  return 1;
}

/* ring:update_files(offset, {fd, ...}) -> slots updated | fail.  offset is
 * the 0-based first slot; -1 empties a slot.  Out of range is the
 * kernel's to refuse (EINVAL), none registered gives ENXIO. */
static int l_update_files (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  unsigned off = (luaL_checkinteger(L, 2), ur_ring_uint(L, 2, 0, "offset"));
  lua_Integer n;
  int *fds = ring_fd_list(L, 3, &n);
  int ret = io_uring_register_files_update(&r->ring, off, fds, (unsigned)n);
  if (ret < 0) return ur_pushfail(L, ret, "update_files");
  lua_pushinteger(L, ret);
  return 1;
}

/* ring:fixed(slot) -> a marker that prep_* take in place of an fd: the SQE
 * names registered file slot (0-based, the kernel's numbering) and gets
 * IOSQE_FIXED_FILE.  Checked here and again at each prep. */

/* ------------------------------------------------------- introspection */

/* Flags a user may ask for by name: the others need parameters we do not
 * take (sq_aff, attach_wq), change the SQE/CQE layout (sqe128, cqe32), or
 * are set by us (cqsize). */
#define SETUP_ALLOWED (IORING_SETUP_IOPOLL | IORING_SETUP_SQPOLL | \
  IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | \
  IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SINGLE_ISSUER | \
  IORING_SETUP_DEFER_TASKRUN)

/* ring:flags() -> {SQPOLL = true, CQSIZE = true, ...}: the names of
 * uring.features().flags */
static int l_flags (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  ur_push_setup_flags(L, r->flags);
  return 1;
}

/* ring:probe() -> {opname = true, ...} | fail */
static int l_ring_probe (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  return ur_push_probe(L, &r->ring);
}

static int l_ring_tostring (lua_State *L) {
  ur_ring *r = (ur_ring *)luaL_checkudata(L, 1, UR_RING_MT);
  if (r->ok)
    lua_pushfstring(L, "uring.ring(%d entries)", (int)r->entries);
  else if (r->leaked)     /* close gave up on them: say so, for a spec */
    lua_pushfstring(L, "uring.ring (closed; %d requests left in the "
                    "kernel)", (int)r->leaked);
  else
    lua_pushliteral(L, "uring.ring (closed)");
  return 1;
}


/* ------------------------------------------------------------ lifetime */

#define RING_CLOSE_WAIT_NS (100 * 1000 * 1000)  /* one wait for CQEs */
#define RING_CLOSE_GIVE_UP 5.0      /* seconds without a request back */

/* The kernel still holds requests we could not get back: keep their
 * anchors (registry refs never dropped), their memory (the slab's chunks)
 * and the registered buffers forever rather than free what it may still
 * touch.  The ring is at stack index 1. */
static void ring_leak (lua_State *L, ur_ring *r) {
  lua_getiuservalue(L, 1, RING_UV_FIXED);
  luaL_ref(L, LUA_REGISTRYINDEX);             /* leaked on purpose */
  r->leaked = r->slab.used;
  memset(&r->slab, 0, sizeof r->slab);        /* leaked on purpose */
}

/*
 * Turn every SQE the kernel has not consumed into a NOP with the same
 * user_data: close never starts I/O that was not submitted, but each
 * request still needs its CQE to be released.  Without SQPOLL that
 * includes SQEs a submit left in the SQ behind one that failed (the kernel
 * reads the SQ only inside io_uring_enter); an SQPOLL thread may be
 * reading those already, so there only the unpublished ones change.
 */
static void ring_unsubmit (ur_ring *r) {
  struct io_uring_sq *sq = &r->ring.sq;
  for (unsigned i = sq->sqe_tail - ur_ring_unconsumed(r); i != sq->sqe_tail;
       i++) {
    struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
    uint64_t ud = sqe->user_data;
    ur_req *q = ur_slab_at(&r->slab, ud);
    io_uring_prep_nop(sqe);               /* also clears IOSQE_* flags */
    io_uring_sqe_set_data64(sqe, ud);
    /* its CQE is a NOP's (res 0): ur_ring_drain must not take that 0 for
     * the fd of an open */
    if (q) q->opcode = IORING_OP_NOP;
  }
}

/*
 * Ask the kernel to cancel every request it holds, two ways.  A
 * synchronous cancel (IORING_REGISTER_SYNC_CANCEL, Linux 6.0) goes
 * straight to the kernel, where an IORING_OP_ASYNC_CANCEL SQE would wait
 * behind an IOSQE_IO_DRAIN barrier whose predecessors are what it should
 * cancel; *use_sync is cleared if the kernel refuses it.  The SQE (with_sqe)
 * is run by the task that submits, which under SQPOLL is the kernel's
 * thread: only it reaches a splice blocked in that thread's io-wq worker.
 * Its CQE carries user_data 0, which names no request.
 */
static void ring_cancel_all (ur_ring *r, int *use_sync, int with_sqe) {
  if (*use_sync) {
    struct io_uring_sync_cancel_reg reg;
    int ret;
    memset(&reg, 0, sizeof reg);
    reg.fd = -1;
    reg.flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL;
    reg.timeout.tv_sec = 0;               /* never wait in here */
    reg.timeout.tv_nsec = 0;
    ret = io_uring_register_sync_cancel(&r->ring, &reg);
    if (ret < 0 && ret != -ENOENT && ret != -EALREADY && ret != -ETIME
        && ret != -EINTR)
      *use_sync = 0;                      /* older kernel: SQEs only */
  }
  if (with_sqe || !*use_sync) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (sqe) {
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY |
                                     IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, 0);
    }
  }
}

/*
 * close, __close and __gc: one idempotent function (liolib's f_gc).  The
 * ring is the parent of everything its SQEs name, so it ends them first:
 * SQEs not yet consumed become NOPs (ring_unsubmit), then each round
 * cancels what the kernel holds (ring_cancel_all), submits, waits up to
 * 100 ms for CQEs and releases the requests they end (ur_ring_drain).
 * Cancelling again each round reaches requests that were held behind a
 * drain barrier until the round before.  Each round either waits or
 * releases a request, so it never spins; it gives up once 5 s pass
 * without a request coming back (a send_zc's request waits for its
 * notification, which no cancel hurries).  A request still out then (an
 * uncancelable one stuck in the kernel) keeps its anchors: leaked, not
 * freed under the kernel, and tostring(ring) says how many.  The ring is
 * at stack index 1.
 */
static void ring_shutdown (lua_State *L, ur_ring *r) {
  int use_sync = 1, cancel_sqe = 1;
  double last;
  if (!r->ok) return;
  r->ok = 0;
  if (r->pid != getpid()) {
    /* a forked child: the mappings were not inherited (dontfork) and the
     * kernel works on the parent's memory, not on this copy of it; drop
     * our fd and our copies */
    close(r->ring.ring_fd);
    ur_ring_release_all(L, r);
    ur_slab_destroy(&r->slab);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, RING_UV_FIXED);
    return;
  }
  ring_unsubmit(r);
  last = ur_now();
  while (r->slab.used > 0 && ur_now() - last < RING_CLOSE_GIVE_UP) {
    struct __kernel_timespec ts = { 0, RING_CLOSE_WAIT_NS };
    struct io_uring_cqe *cqe;
    int ret;
    ring_cancel_all(r, &use_sync, cancel_sqe);
    ret = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
    /* a cancel SQE's own CQE ends the wait at once: send the next one
     * only after a quiet wait, or it would keep ending them */
    cancel_sqe = (ret == -ETIME || (ret < 0 && ret != -EINTR));
    if (ur_ring_drain(L, r) > 0) last = ur_now();
  }
  if (r->slab.used > 0)
    ring_leak(L, r);
  else {
    if (r->nfixed) io_uring_unregister_buffers(&r->ring);
    ur_slab_destroy(&r->slab);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, RING_UV_FIXED);
  }
  r->nfixed = 0;
  r->zc_pending = 0;
  io_uring_queue_exit(&r->ring);
}

/* ring:close() -> true; also __close and __gc.  Closing twice is fine. */
static int l_ring_close (lua_State *L) {
  ur_ring *r = (ur_ring *)luaL_checkudata(L, 1, UR_RING_MT);
  ring_shutdown(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* A boolean option from the ring{} table: nil is "not given". */
static int ring_bool_opt (lua_State *L, const char *key) {
  int v;
  lua_getfield(L, 1, key);
  if (lua_isnil(L, -1)) v = -1;
  else if (lua_isboolean(L, -1)) v = lua_toboolean(L, -1);
  else
    return luaL_argerror(L, 1, lua_pushfstring(L,
        "option '%s' must be a boolean", key));
  lua_pop(L, 1);
  return v;
}

static lua_Integer ring_int_opt (lua_State *L, const char *key,
                                 lua_Integer def, lua_Integer lo,
                                 lua_Integer hi) {
  lua_Integer v = def;
  lua_getfield(L, 1, key);
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1))
      luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' must be an "
                                          "integer", key));
    v = lua_tointeger(L, -1);
    if (v < lo || v > hi)
      luaL_argerror(L, 1, lua_pushfstring(L, "%s must be in %I..%I", key,
                                          lo, hi));
  }
  lua_pop(L, 1);
  return v;
}

/*
 * uring.ring{entries = 8, cq_entries =, sqpoll =, sq_thread_idle = ms,
 * single_issuer =, defer_taskrun =, coop_taskrun =, submit_all =,
 * flags = {"name", ...}} -> ring | fail.  Plain flags by default (plus
 * CQSIZE, CQ twice the SQ): unlike the task loop's DEFER_TASKRUN ring,
 * peek_cqe then sees completions without entering the kernel.
 */
static int l_ring (lua_State *L) {
  static const char *const keys[] = {
    "entries", "cq_entries", "sqpoll", "sq_thread_idle", "single_issuer",
    "defer_taskrun", "coop_taskrun", "submit_all", "flags", NULL
  };
  static const struct { const char *key; unsigned flag; } bools[] = {
    {"sqpoll", IORING_SETUP_SQPOLL},
    {"single_issuer", IORING_SETUP_SINGLE_ISSUER},
    {"defer_taskrun", IORING_SETUP_DEFER_TASKRUN},
    {"coop_taskrun", IORING_SETUP_COOP_TASKRUN},
    {"submit_all", IORING_SETUP_SUBMIT_ALL},
  };
  struct io_uring_params p;
  lua_Integer entries = 8, cq;
  unsigned flags = 0, idle = 0;
  ur_ring *r;
  int ret;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    /* a misspelt option is a bug the user wants to hear about */
    lua_pushnil(L);
    while (lua_next(L, 1)) {
      int known = 0;
      if (lua_type(L, -2) == LUA_TSTRING)
        for (int i = 0; keys[i]; i++)
          if (strcmp(keys[i], lua_tostring(L, -2)) == 0) known = 1;
      if (!known)
        return luaL_argerror(L, 1, lua_pushfstring(L, "unknown option '%s'",
            lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                           : luaL_typename(L, -2)));
      lua_pop(L, 1);
    }
    entries = ring_int_opt(L, "entries", 8, 1, 32768);
    cq = ring_int_opt(L, "cq_entries", 2 * entries, entries, 65536);
    idle = (unsigned)ring_int_opt(L, "sq_thread_idle", 0, 0, 3600000);
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++)
      if (ring_bool_opt(L, bools[i].key) == 1) flags |= bools[i].flag;
    lua_getfield(L, 1, "flags");
    if (!lua_isnil(L, -1)) {
      int t = lua_gettop(L);
      luaL_argexpected(L, lua_istable(L, t), 1, "table of flag names");
      for (lua_Integer i = 1; lua_rawgeti(L, t, i) != LUA_TNIL; i++) {
        const char *name = lua_type(L, -1) == LUA_TSTRING
                           ? lua_tostring(L, -1) : NULL;
        unsigned bit = name ? ur_setup_flag(name) : 0;
        if (!(bit & SETUP_ALLOWED))
          return luaL_argerror(L, 1, lua_pushfstring(L,
              "flag '%s' is unknown or not supported here",
              name ? name : luaL_typename(L, -1)));
        flags |= bit;
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  else
    cq = 2 * entries;
  /* closed first, then acquired: __gc on a ring never set up is a no-op */
  r = (ur_ring *)lua_newuserdatauv(L, sizeof *r, 1);
  memset(r, 0, sizeof *r);
  luaL_setmetatable(L, UR_RING_MT);
  memset(&p, 0, sizeof p);
  p.flags = flags | IORING_SETUP_CQSIZE;
  p.cq_entries = (unsigned)cq;
  p.sq_thread_idle = idle;
  ret = io_uring_queue_init_params((unsigned)entries, &r->ring, &p);
  if (ret < 0) return ur_pushsetupfail(L, ret, (unsigned)entries);
  /* a forked child gets no copy of the mappings to scribble on */
  io_uring_ring_dontfork(&r->ring);
  r->entries = r->ring.sq.ring_entries;
  r->flags = p.flags;
  r->pid = getpid();
  r->ok = 1;
  return 1;
}

void ur_register_ring (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"link", l_link}, {"hardlink", l_hardlink}, {"drain", l_drain},
    {"submit", l_submit}, {"submit_and_wait", l_submit_and_wait},
    {"wait_cqe", l_wait_cqe}, {"peek_cqe", l_peek_cqe},
    {"sq_space_left", l_sq_space_left}, {"sq_ready", l_sq_ready},
    {"cq_ready", l_cq_ready}, {"inflight", l_inflight}, {"state", l_state},
    {"register_buffers", l_register_buffers},
    {"unregister_buffers", l_unregister_buffers},
    {"register_files", l_register_files},
    {"unregister_files", l_unregister_files},
    {"update_files", l_update_files},
    {"probe", l_ring_probe}, {"flags", l_flags},
    {"close", l_ring_close},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_ring_close}, {"__close", l_ring_close},
    {"__tostring", l_ring_tostring}, {"__index", NULL},
    {NULL, NULL}
  };
  luaL_newmetatable(L, UR_RING_MT);
  luaL_setfuncs(L, meta, 0);
  lua_createtable(L, 0, 64);
  luaL_setfuncs(L, methods, 0);
  ur_ring_prep_methods(L);              /* ring_prep.c: prep_*, fixed */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_ring);
  lua_setfield(L, -2, "ring");
  ur_ring_constants(L);
}
