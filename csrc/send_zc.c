/*
 * send_zc.c: sock:send of big strings through IORING_OP_SEND_ZC.
 *
 * With uring.configure{send_zc = N}, a send of N bytes or more on a
 * TCP socket lends the kernel the pages of the Lua string instead of
 * having it copy them into socket buffers.  (Not TLS, whose bytes are
 * made by OpenSSL; not Unix sockets, which have no zero copy: the kernel
 * answers EOPNOTSUPP, so net.c keeps them on SEND.)  A SEND_ZC posts two
 * CQEs:
 *
 *   1. its result (IORING_CQE_F_MORE set): the bytes are queued on the
 *      socket; the sending task goes on from here, as after a SEND;
 *   2. the notification (IORING_CQE_F_NOTIF): the kernel let go of the
 *      pages (the peer acknowledged them, or they were copied after all).
 *
 * The request, and with it the pin on the string (DESIGN principle 3),
 * lives until the second, whatever happened to the task or the socket
 * in between: the task may have ended and the string gone out of every
 * Lua variable.  Between the two the request is "background" (no task
 * waits on it: deadlock detection and stats().inflight leave it out) and
 * off its fd's list: the fd is not named by any SQE that can still run,
 * and a notification may wait for a slow peer, which must not hold up
 * closing the socket (the kernel keeps its own reference on the socket).
 *
 * A kernel without SEND_ZC (before 6.0; the probe says so) gets plain
 * SENDs: ur_send_zc_wanted says no, and net.c sends as before.  The
 * notification reports whether the kernel copied the bytes anyway
 * (IORING_SEND_ZC_REPORT_USAGE, 6.2+; it always does on loopback, where
 * the receiver's copy is the one copy): stats().send_zc_copied.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "uring.h"

/* 6.2's; liburing 2.3's headers predate them */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

/* r->aux bits of a SEND_ZC request; its result waits in r->u.i[0] (the
 * notification's CQE overwrites r->res) */
enum {
  ZC_RESULT = 1,   /* the first CQE came: the notification is due */
  ZC_WOKEN = 2,    /* its task was woken and has not taken the result */
  ZC_USAGE = 4     /* asked with REPORT_USAGE */
};

/*
 * configure{send_zc = N | true | false} from the table at index t
 * (argument 1): def when absent; false or 0: off; true: UR_SEND_ZC_ON.
 */
size_t ur_send_zc_option (lua_State *L, int t, size_t def) {
  size_t v = def;
  int type = lua_getfield(L, t, "send_zc");
  if (type == LUA_TBOOLEAN)
    v = lua_toboolean(L, -1) ? UR_SEND_ZC_ON : 0;
  else if (type != LUA_TNIL) {
    int isint;
    lua_Integer n = lua_tointegerx(L, -1, &isint);
    if (type != LUA_TNUMBER || !isint)
      luaL_argerror(L, 1, lua_pushfstring(L, "send_zc must be a byte count, "
                    "true or false, got %s", type == LUA_TNUMBER ? "a fraction"
                    : luaL_typename(L, -1)));
    if (n < 0 || n > INT32_MAX)
      luaL_argerror(L, 1, "send_zc must be in 0..2147483647 (0: off)");
    v = (size_t)n;
  }
  lua_pop(L, 1);
  return v;
}

/* Requests whose result came and whose notification has not: stats(). */
uint32_t ur_send_zc_held (ur_loop *loop) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < loop->slab.nreqs; i++) {
    ur_req *r = ur_slab_req(&loop->slab, i);
    if (r->state == UR_REQ_INFLIGHT && r->opcode == IORING_OP_SEND_ZC
        && (r->aux & ZC_RESULT))
      n++;
  }
  return n;
}

/*
 * Both CQEs of a SEND_ZC.  The first (F_MORE: dispatch left it in
 * flight) wakes the task; the last frees the request, unless a task that
 * was woken has still to take the result (its continuation frees it).
 * A SEND_ZC that fails before the kernel armed a notification posts one
 * CQE only, without F_MORE: then it ends as any request does.
 */
static void zc_cqe (ur_loop *loop, ur_req *r) {
  ur_task *t = r->task;
  int waited = t != NULL && t->wait_ud == ur_req_ud(loop, r);
  if (r->state == UR_REQ_INFLIGHT) {
    r->aux |= ZC_RESULT;
    r->u.i[0] = r->res;
    if (r->onfd) ur_fd_unlink(loop, r);   /* may close a closed socket's fd */
    r->background = 1;                    /* nobody waits on the rest */
    loop->background++;
    if (r->canceling) {                   /* nothing left to cancel */
      r->canceling = 0;
      loop->canceling--;
    }
    if (waited) {
      r->aux |= ZC_WOKEN;
      ur_req_wake(loop, r);
    }
    else
      r->task = NULL;
    return;
  }
  if (r->aux & ZC_RESULT) {             /* the notification */
    if ((r->aux & ZC_USAGE) && (r->res & IORING_NOTIF_USAGE_ZC_COPIED))
      loop->stats.send_zc_copied++;
    if (!(r->aux & ZC_WOKEN)) ur_req_free(loop, r);   /* unpinned */
    return;
  }
  ur_req_wake(loop, r);                 /* one CQE only */
}

static int zc_k (lua_State *L, int status, lua_KContext ctx);

/* A send that failed part way: the fail triple (n values pushed) and
 * the bytes that did go out, as net.c's sends answer. */
static int zc_failed (lua_State *L, int n, size_t done) {
  lua_pushinteger(L, (lua_Integer)done);
  return n + 1;
}

/*
 * Send data[from + done .. to) with SEND_ZC; the stack is sock:send's:
 * 1 socket, 2 data, 3 from, 4 to.  MSG_WAITALL: the kernel sends the
 * rest of a partial send itself (zc_k still resends what it did not).
 */
int ur_sock_send_zc (lua_State *L, ur_sock *s, ur_task *t, size_t done) {
  ur_loop *loop = t->loop;
  size_t from = (size_t)lua_tointeger(L, 3), to = (size_t)lua_tointeger(L, 4);
  size_t n = to - from - done;
  const char *src = lua_tostring(L, 2) + from + done;
  double timeout = ur_sock_timeout(s);
  unsigned zc_flags = loop->zc_no_usage ? 0 : IORING_SEND_ZC_REPORT_USAGE;
  struct io_uring_sqe *sqe;
  ur_req *r, *tr = NULL;
  /* the anchor first: it is the only step that may raise (memory) */
  int ref = ur_anchor(L, 2);
  if (n > (size_t)INT32_MAX) n = (size_t)INT32_MAX;
  if (timeout >= 0) {
    tr = ur_req_new(NULL, loop, IORING_OP_LINK_TIMEOUT);
    if (tr) ur_reserve_sqes(loop, 2);   /* the chain reaches the kernel whole */
  }
  r = ur_req_new(NULL, loop, IORING_OP_SEND_ZC);
  if (r == NULL || (timeout >= 0 && tr == NULL)) {
    if (r) ur_req_free(loop, r);
    if (tr) ur_req_free(loop, tr);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "send: not enough memory");
  }
  r->pin_ref = ref;             /* pinned: the kernel reads it until the notif */
  sqe = ur_get_sqe(loop);
  io_uring_prep_send_zc(sqe, ur_sock_handle(s)->fd, src, n,
                        MSG_NOSIGNAL | MSG_WAITALL, zc_flags);
  ur_handle_sqe(loop, ur_sock_handle(s), r, sqe);
  r->on_cqe = zc_cqe;
  r->memlen = n;
  r->aux = zc_flags ? ZC_USAGE : 0;
  ur_req_submitted(loop, r, sqe);
  if (tr) ur_link_timeout_add(loop, tr, sqe, timeout);
  loop->stats.send_zc++;
  ur_sock_sending(s, 1);
  return ur_await(L, t, r, "send", (lua_KContext)done, zc_k);
}

/*
 * The first CQE came (or the only one): take the result and leave the
 * request to its notification, or free it if that came too.  Then as
 * net.c's send_k: the bytes sent are reported whatever came next; a
 * short send goes on with the rest.
 */
static int zc_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_sock *s = (ur_sock *)lua_touserdata(L, 1);   /* sock:send checked it */
  size_t done = (size_t)ctx;
  size_t total = (size_t)(lua_tointeger(L, 4) - lua_tointeger(L, 3));
  ur_loop *loop;
  ur_req *r;
  int res, usage;
  (void)status;
  if (t == NULL) return luaL_error(L, "a task can only be resumed by the uring loop");
  loop = t->loop;
  r = ur_req_at(loop, t->wait_ud);
  t->wait_ud = 0;
  if (r == NULL)
    return luaL_error(L, "uring: internal error: resumed without a completion");
  res = (r->aux & ZC_RESULT) ? r->u.i[0] : r->res;
  usage = r->aux & ZC_USAGE;
  if (r->state == UR_REQ_DONE) ur_req_free(loop, r);   /* notified already */
  else {
    r->aux &= ~ZC_WOKEN;        /* its notification frees it */
    r->task = NULL;
  }
  ur_sock_sending(s, 0);
  if (res > 0) done += (size_t)res;
  if (done >= total) {
    lua_pushinteger(L, (lua_Integer)done);
    return 1;
  }
  if (ur_sock_closed(s)) return zc_failed(L, ur_pushclosed(L), done);
  ur_check_interrupt(L, t);
  if (res == -EINVAL && usage && !loop->zc_no_usage) {
    loop->zc_no_usage = 1;      /* a 6.0 or 6.1 kernel: ask without it */
    return ur_sock_send_zc(L, s, t, done);
  }
  if (res < 0 && res != -EINTR && res != -EAGAIN)
    return zc_failed(L, ur_sock_fail(L, s, res), done);
  return ur_sock_send_zc(L, s, t, done);   /* the rest of a short send */
}
