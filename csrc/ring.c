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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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

/* ring:async(): IOSQE_ASYNC: skip the inline attempt and go straight to
 * an io-wq worker thread */
static int l_async (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  ring_last_sqe(L, r, "async")->flags |= IOSQE_ASYNC;
  return 0;
}

/* ring:skip_success(): IOSQE_CQE_SKIP_SUCCESS: no CQE unless it fails.
 * Checked at submit: it must be linked to a later SQE (see ur_ring_chain) */
static int l_skip_success (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  ring_last_sqe(L, r, "skip_success")->flags |= IOSQE_CQE_SKIP_SUCCESS;
  return 0;
}

/* Before a submit: every SQE whose success posts no CQE needs a linked
 * successor, whose CQE tells us the kernel is done with both; without one
 * its request (and what it pins) could never be released. */
static void ring_check_skips (lua_State *L, ur_ring *r, const char *fname) {
  struct io_uring_sq *sq = &r->ring.sq;
  for (unsigned i = sq->sqe_head; i != sq->sqe_tail; i++) {
    const struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
    if ((sqe->flags & IOSQE_CQE_SKIP_SUCCESS)
        && (!(sqe->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK))
            || i + 1 == sq->sqe_tail))
      luaL_error(L, "%s: an SQE marked skip_success has no linked SQE after "
                 "it (ring:link() it and prep the next): its success would "
                 "post no CQE and nothing would say when it is done", fname);
  }
  ur_ring_chain(r);
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
  int ret, enters;
  ring_check_skips(L, r, "submit");
  enters = loop ? ring_trace_sqes(loop, r, 0) : 0;
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
  /* the argument first, then what the SQEs prepared may not do */
  if (n < 0) return luaL_argerror(L, 2, "count must be non-negative");
  ring_check_skips(L, r, "submit_and_wait");
  /* waiting for more CQEs than can ever come would hang forever (a
   * send_zc whose first CQE Lua has not taken yet has two to come; a
   * skip_success SQE may post none) */
  if (n > (lua_Integer)r->slab.used + (lua_Integer)r->zc_pending
          - (lua_Integer)r->skips)
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

/* ring:wait_cqe([timeout [, keep]]) -> res, user_data, flags [, extra...]
 * | fail.  keep leaves the CQE at the head for ring:cqe_seen. */
static int l_wait_cqe (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  struct __kernel_timespec ts = { 0, 0 };
  int timed = !lua_isnoneornil(L, 2);
  int keep = lua_toboolean(L, 3);
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
    if ((n = ur_ring_push_cqe(L, r, cqe, keep)) > 0) {
      ur_loop *loop = ur_tracing(L);
      if (loop) ur_trace_ring_flush(L, loop);
      return n;
    }
  }
}

/* ring:peek_cqe([keep]) -> res, user_data, flags [, extra...] | nil: never
 * blocks */
static int l_peek_cqe (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int keep = lua_toboolean(L, 2);
  for (;;) {
    struct io_uring_cqe *cqe;
    int n, ret = io_uring_peek_cqe(&r->ring, &cqe);
    if (ret == -EAGAIN || ret == -EINTR) {
      lua_pushnil(L);
      return 1;
    }
    if (ret < 0) return ur_pushfail(L, ret, "peek_cqe");
    if ((n = ur_ring_push_cqe(L, r, cqe, keep)) > 0) {
      ur_loop *loop = ur_tracing(L);
      if (loop) ur_trace_ring_flush(L, loop);
      return n;
    }
  }
}

/* ring:cqe_seen(): io_uring_cqe_seen(3) for the CQE a wait_cqe or peek_cqe
 * with keep handed over: cq_head moves past it, its request may end */
static int l_cqe_seen (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  struct io_uring_cqe *cqe;
  if (!r->kept || io_uring_peek_cqe(&r->ring, &cqe) != 0)
    return luaL_error(L, "cqe_seen: no CQE is kept (call wait_cqe or "
                      "peek_cqe with keep = true first)");
  ur_ring_consume(L, r, cqe);
  {
    ur_loop *loop = ur_tracing(L);
    if (loop) ur_trace_ring_flush(L, loop);
  }
  return 0;
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

/* -------------------------------------------- eventfd and restrictions */

/* ring:register_eventfd([async]) -> fd | fail: an eventfd the kernel
 * signals each time it posts CQEs (with async, only for those completed
 * out of line).  The ring owns it: it stays open until ring:close(). */
static int l_register_eventfd (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int async = lua_toboolean(L, 2), ret, fd;
  if (r->efd >= 0)
    return luaL_error(L, "register_eventfd: the ring has its eventfd (fd %d)"
                      " already", r->efd);
  fd = eventfd(0, EFD_CLOEXEC);
  if (fd < 0) return ur_pushfail(L, -errno, "register_eventfd");
  ret = async ? io_uring_register_eventfd_async(&r->ring, fd)
              : io_uring_register_eventfd(&r->ring, fd);
  if (ret < 0) {
    close(fd);                      /* no SQE could name it yet */
    return ur_pushfail(L, ret, "register_eventfd");
  }
  r->efd = fd;
  lua_pushinteger(L, fd);
  return 1;
}

/* ring:unregister_eventfd() -> true | fail.  The fd stays open (an SQE
 * may name it) until the ring closes. */
static int l_unregister_eventfd (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int ret = io_uring_unregister_eventfd(&r->ring);
  if (ret < 0) return ur_pushfail(L, ret, "unregister_eventfd");
  lua_pushboolean(L, 1);
  return 1;
}

/* Names of what register_restrictions can allow. */
static const struct { const char *name; unsigned v; } ring_sqe_flag_names[] = {
  {"fixed_file", IOSQE_FIXED_FILE}, {"drain", IOSQE_IO_DRAIN},
  {"link", IOSQE_IO_LINK}, {"hardlink", IOSQE_IO_HARDLINK},
  {"async", IOSQE_ASYNC}, {"buffer_select", IOSQE_BUFFER_SELECT},
  {"skip_success", IOSQE_CQE_SKIP_SUCCESS},
};
static const struct { const char *name; unsigned v; } ring_register_names[] = {
  {"register_buffers", IORING_REGISTER_BUFFERS},
  {"unregister_buffers", IORING_UNREGISTER_BUFFERS},
  {"register_files", IORING_REGISTER_FILES},
  {"unregister_files", IORING_UNREGISTER_FILES},
  {"update_files", IORING_REGISTER_FILES_UPDATE},
  {"register_eventfd", IORING_REGISTER_EVENTFD},
  {"unregister_eventfd", IORING_UNREGISTER_EVENTFD},
  {"probe", IORING_REGISTER_PROBE},
  {"setup_buf_ring", IORING_REGISTER_PBUF_RING},
};

#define RING_MAX_RESTRICTIONS 512

/* One list field of register_restrictions' table: each name through
 * lookup into res[*n] of the given opcode.  Raises on a bad name. */
static void ring_restrict_list (lua_State *L, const char *key, uint16_t opcode,
                                int (*lookup) (const char *),
                                struct io_uring_restriction *res, int *n) {
  int t;
  lua_getfield(L, 2, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1))
    luaL_argerror(L, 2, lua_pushfstring(L, "'%s' must be a list of names",
                                        key));
  t = lua_gettop(L);
  for (lua_Integer i = 1; lua_rawgeti(L, t, i) != LUA_TNIL; i++) {
    const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                      : NULL;
    int v = name ? lookup(name) : -1;
    if (v < 0)
      luaL_argerror(L, 2, lua_pushfstring(L, "%s[%I]: unknown name '%s'", key,
          i, name ? name : luaL_typename(L, -1)));
    if (*n >= RING_MAX_RESTRICTIONS)
      luaL_argerror(L, 2, "too many restrictions");
    memset(&res[*n], 0, sizeof res[*n]);
    res[*n].opcode = opcode;
    if (opcode == IORING_RESTRICTION_SQE_OP) res[*n].sqe_op = (uint8_t)v;
    else if (opcode == IORING_RESTRICTION_REGISTER_OP)
      res[*n].register_op = (uint8_t)v;
    else res[*n].sqe_flags = (uint8_t)v;
    (*n)++;
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
}

static int ring_op_lookup (const char *name) {
  for (unsigned op = 0; op < 256; op++)
    if (strcmp(ur_opname(op), name) == 0) return (int)op;
  return -1;
}

static int ring_flag_lookup (const char *name) {
  for (size_t i = 0; i < sizeof ring_sqe_flag_names
                         / sizeof ring_sqe_flag_names[0]; i++)
    if (strcmp(ring_sqe_flag_names[i].name, name) == 0)
      return (int)ring_sqe_flag_names[i].v;
  return -1;
}

static int ring_register_lookup (const char *name) {
  for (size_t i = 0; i < sizeof ring_register_names
                         / sizeof ring_register_names[0]; i++)
    if (strcmp(ring_register_names[i].name, name) == 0)
      return (int)ring_register_names[i].v;
  return -1;
}

/*
 * ring:register_restrictions{ops = {"nop", ...}, sqe_flags = {"link", ...},
 * register = {"register_buffers", ...}} -> true | fail.  Only on a ring
 * made with disabled = true, before enable_rings(): from then on any
 * other op fails with -EACCES in its CQE, any other SQE flag or
 * io_uring_register call with EACCES.  Several flags in sqe_flags are
 * allowed together (one IORING_RESTRICTION_SQE_FLAGS_ALLOWED mask).
 */
static int l_register_restrictions (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  struct io_uring_restriction *res;
  int n = 0, ret, nflags = 0;
  unsigned mask = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  res = (struct io_uring_restriction *)lua_newuserdatauv(L,
            RING_MAX_RESTRICTIONS * sizeof *res, 0);
  ring_restrict_list(L, "ops", IORING_RESTRICTION_SQE_OP, ring_op_lookup,
                     res, &n);
  ring_restrict_list(L, "register", IORING_RESTRICTION_REGISTER_OP,
                     ring_register_lookup, res, &n);
  /* the flags go into one mask */
  {
    int first = n;
    ring_restrict_list(L, "sqe_flags", IORING_RESTRICTION_SQE_FLAGS_ALLOWED,
                       ring_flag_lookup, res, &n);
    for (int i = first; i < n; i++) mask |= res[i].sqe_flags;
    nflags = n - first;
    n = first;
    if (nflags) {
      memset(&res[n], 0, sizeof res[n]);
      res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
      res[n].sqe_flags = (uint8_t)mask;
      n++;
    }
  }
  {
    lua_pushnil(L);           /* a misspelt key would silently allow less */
    while (lua_next(L, 2)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                     : NULL;
      if (k == NULL || (strcmp(k, "ops") && strcmp(k, "register")
                        && strcmp(k, "sqe_flags")))
        return luaL_argerror(L, 2, lua_pushfstring(L, "unknown key '%s' "
            "(ops, sqe_flags, register)", k ? k : luaL_typename(L, -2)));
      lua_pop(L, 1);
    }
  }
  luaL_argcheck(L, n > 0, 2, "no restriction given (ops, sqe_flags, register)");
  /* Debian's liburing 2.3 does not export io_uring_register_restrictions
   * nor io_uring_enable_rings: the raw register call does the same */
  ret = io_uring_register(r->ring.ring_fd, IORING_REGISTER_RESTRICTIONS, res,
                          (unsigned)n);
  if (ret < 0) return ur_pushfail(L, ret, "register_restrictions");
  lua_pushboolean(L, 1);
  return 1;
}

/* ring:enable_rings() -> true | fail: start a ring made disabled */
static int l_enable_rings (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int ret = io_uring_register(r->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                              NULL, 0);
  if (ret < 0) return ur_pushfail(L, ret, "enable_rings");
  lua_pushboolean(L, 1);
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

/* ring:fdinfo() -> text | fail: /proc/self/fdinfo of the ring's fd, the
 * kernel's own account of it (indices, CQEs waiting, armed polls, the
 * overflow list) to set beside ring:state() */
static int l_fdinfo (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  char path[64];
  luaL_Buffer b;
  FILE *f;
  size_t n;
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", r->ring.ring_fd);
  if ((f = fopen(path, "re")) == NULL) return ur_pushfail(L, -errno, "fdinfo");
  luaL_buffinit(L, &b);
  do {
    char *p = luaL_prepbuffer(&b);
    n = fread(p, 1, LUAL_BUFFERSIZE, f);
    luaL_addsize(&b, n);
  } while (n == LUAL_BUFFERSIZE);
  fclose(f);
  luaL_pushresult(&b);
  return 1;
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
    if (r->efd >= 0) close(r->efd);
    r->efd = -1;
    ur_ring_release_all(L, r);
    ur_slab_destroy(&r->slab);
    ur_ring_free_groups(r);
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
    ring_leak(L, r);      /* and its buffer groups: the kernel may write */
  else {
    if (r->nfixed) io_uring_unregister_buffers(&r->ring);
    ur_slab_destroy(&r->slab);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, RING_UV_FIXED);
  }
  r->nfixed = 0;
  r->zc_pending = 0;
  r->skips = 0;
  io_uring_queue_exit(&r->ring);
  if (!r->leaked) ur_ring_free_groups(r);
  if (r->efd >= 0) close(r->efd);   /* no request of ours names it now */
  r->efd = -1;
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
    "defer_taskrun", "coop_taskrun", "submit_all", "disabled", "flags", NULL
  };
  static const struct { const char *key; unsigned flag; } bools[] = {
    {"sqpoll", IORING_SETUP_SQPOLL},
    {"single_issuer", IORING_SETUP_SINGLE_ISSUER},
    {"defer_taskrun", IORING_SETUP_DEFER_TASKRUN},
    {"coop_taskrun", IORING_SETUP_COOP_TASKRUN},
    {"submit_all", IORING_SETUP_SUBMIT_ALL},
    /* for register_restrictions: nothing runs until enable_rings */
    {"disabled", IORING_SETUP_R_DISABLED},
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
  r->efd = -1;
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
    {"cqe_seen", l_cqe_seen}, {"async", l_async},
    {"skip_success", l_skip_success},
    {"register_eventfd", l_register_eventfd},
    {"unregister_eventfd", l_unregister_eventfd},
    {"register_restrictions", l_register_restrictions},
    {"enable_rings", l_enable_rings},
    {"sq_space_left", l_sq_space_left}, {"sq_ready", l_sq_ready},
    {"cq_ready", l_cq_ready}, {"inflight", l_inflight}, {"state", l_state},
    {"register_buffers", l_register_buffers},
    {"unregister_buffers", l_unregister_buffers},
    {"register_files", l_register_files},
    {"unregister_files", l_unregister_files},
    {"update_files", l_update_files},
    {"probe", l_ring_probe}, {"flags", l_flags}, {"fdinfo", l_fdinfo},
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
  ur_ring_net_methods(L);               /* ring_net.c: sockets, buf rings */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_ring);
  lua_setfield(L, -2, "ring");
  ur_ring_constants(L);
  ur_ring_net_constants(L);
}
