/*
 * recv_multishot.c: a stream socket's receive as one multishot RECV that
 * stays armed (uring.configure{recv_multishot = true}).
 *
 * A single-shot receive (net.c) costs an SQE per wait: a kept-alive HTTP
 * connection sends one RECV per request, the kernel tries it, finds
 * nothing, arms a poll, and retries when the request comes.  A multishot
 * RECV (IORING_RECV_MULTISHOT, Linux 6.0) is armed once: each arrival
 * posts a CQE with IORING_CQE_F_MORE naming a buffer it picked from the
 * loop's group (bufring.c).  The handler copies the bytes into the
 * socket's receive buffer and gives the buffer straight back, whether or
 * not a task waits, so a later receive finds them without a wait.
 *
 * The request belongs to the socket, not to a task: a task that must
 * wait for bytes awaits it (ur_await) and the first CQE that brings any
 * wakes it, leaving the request armed.  While no task waits it is
 * "background" (deadlock detection and stats().inflight leave it out),
 * as it wakes nobody.  It is on its fd's list like any request naming the
 * fd (handle.c), so close cancels it and the fd closes at its last CQE;
 * a collected socket's CQEs find r->obj cleared.  The request is freed
 * at its last CQE only (no IORING_CQE_F_MORE), or by the woken task when
 * that CQE came before it looked (MS_WOKEN).
 *
 * The multishot ends, and the next wait arms a new one, when:
 *   - the peer closes (res 0: EOF) or the receive fails (told next);
 *   - the group ran dry (ENOBUFS): net.c grows it, as for a single shot;
 *   - bytes pile up past MSHOT_BOUND with no task reading (a slow reader
 *     pushes back: we cancel it, and the kernel's socket buffer and TCP's
 *     window hold the rest);
 *   - the kernel ends it by itself (a full CQ): no error, just again;
 *   - the socket starts TLS (tls.c reads with single shots: the armed one
 *     is cancelled at its first wait, feeding OpenSSL until its end).
 * A timeout (settimeout) is a TIMEOUT of its own per wait, cancelled when
 * bytes come first: a linked timeout would end the multishot.
 *
 * Which kernels: IORING_RECV_MULTISHOT is a flag, which no probe lists;
 * it came in 6.0 with IORING_OP_SEND_ZC, which the probe does list, so a
 * probe with SEND_ZC says the kernel has it.  A kernel that answers the
 * first CQE with EINVAL anyway is believed too: single shots from then on.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "uring.h"

#define MSHOT_BOUND (64 * 1024)   /* buffered past this, nobody reading:
                                     cancel; the next wait arms again */
/* A socket's first wait is a single shot; the multishot is armed from
 * the second on.  A connection that serves one request and closes (HTTP
 * "Connection: close") then never pays for a multishot it would have to
 * cancel and wait for at close (bench/README.md, "Multishot receive"). */
#ifndef MSHOT_AFTER
#define MSHOT_AFTER 1
#endif

/* r->aux bits of the multishot request */
enum {
  MS_WOKEN = 1,   /* its task was woken and has not taken the result */
  MS_DATA = 2     /* it brought bytes at least once */
};

static void mshot_cqe (ur_loop *loop, ur_req *r);
static void kick_cqe (ur_loop *loop, ur_req *r);

/* configure{recv_multishot = true | false} at table index t (argument 1);
 * def when absent. */
int ur_recv_mshot_option (lua_State *L, int t, int def) {
  int type = lua_getfield(L, t, "recv_multishot");
  int v = def;
  if (type == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (type != LUA_TNIL)
    luaL_argerror(L, 1, lua_pushfstring(L, "boolean recv_multishot expected, "
                  "got %s", luaL_typename(L, -1)));
  lua_pop(L, 1);
  return v;
}

/* URING_TEST_RECV_MULTISHOT=1 (or 0): the default the specs and
 * bench/http.sh run servers with; else UR_RECV_MSHOT_DEFAULT */
int ur_recv_mshot_default (void) {
  const char *e = getenv("URING_TEST_RECV_MULTISHOT");
  if (e && *e) return strcmp(e, "0") != 0;
  return UR_RECV_MSHOT_DEFAULT;
}

static int supported (const ur_loop *loop) {
  return !loop->mshot_refused && !ur_op_missing(loop, IORING_OP_SEND_ZC)
         && !ur_op_missing(loop, IORING_OP_RECV);
}

/* Make t, which awaits r, runnable; r stays in flight.  Later CQEs of
 * the same batch find no task on it and only buffer their bytes. */
static void wake_waiter (ur_loop *loop, ur_req *r) {
  ur_task *t = r->task;
  if (t == NULL || t->wait_ud != ur_req_ud(loop, r)) return;
  r->aux |= MS_WOKEN;
  r->task = NULL;
  t->status = UR_READY;
  ur_enqueue(loop, t);
}

/* n bytes the kernel put at p: the socket's (or OpenSSL's, after
 * starttls) from now on.  Out of memory leaves a hole in the stream: the
 * multishot is cancelled and the next receive says so. */
static void take (ur_loop *loop, ur_req *r, ur_sock *s, const char *p,
                  size_t n) {
  ur_mshot *m = ur_sock_mshot(s);
  ur_tls *tls = ur_sock_tls(s);
  ur_kernel_wrote(p, n);
  if (m->err == -ENOMEM) return;        /* past a hole: nothing more */
  if (tls) {
    if (!ur_tls_feed(tls, p, n)) m->err = -ENOMEM;
  }
  else {
    char *dst = ur_sock_reserve(s, n);
    if (dst == NULL) m->err = -ENOMEM;
    else {
      memcpy(dst, p, n);
      ur_sock_commit(s, n);
    }
  }
  if (m->err == -ENOMEM) ur_req_cancel(loop, r);
  else m->got += n;
  r->aux |= MS_DATA;
}

/* Every CQE of the multishot: buffer the bytes, give the provided buffer
 * back, wake the waiting task; at the last one, note how it ended. */
static void mshot_cqe (ur_loop *loop, ur_req *r) {
  ur_sock *s = (ur_sock *)r->obj;      /* NULL: collected */
  int res = r->res, more = (r->cflags & IORING_CQE_F_MORE) != 0;
  int live = s != NULL && !ur_sock_closed(s);
  ur_mshot *m = s ? ur_sock_mshot(s) : NULL;
  if (r->cflags & IORING_CQE_F_BUFFER) {
    unsigned bid = r->cflags >> IORING_CQE_BUFFER_SHIFT;
    if (res > 0 && live)
      take(loop, r, s, ur_bufring_data(loop, bid), (size_t)res);
    ur_bufring_recycle(loop, bid);
  }
  if (!more) {                           /* its last CQE */
    if (m && m->ud == ur_req_ud(loop, r)) m->ud = 0;
    if (live) {
      if (res == 0) ur_sock_set_eof(s);
      else if (res == -EINVAL && !(r->aux & MS_DATA))
        loop->mshot_refused = 1;         /* an older kernel: single shots */
      else if (res < 0 && res != -ECANCELED && m->err == 0) m->err = res;
    }
    wake_waiter(loop, r);
    if (!(r->aux & MS_WOKEN)) ur_req_free(loop, r);  /* else its task's */
    return;
  }
  if (r->task) wake_waiter(loop, r);
  else if (live && !r->canceling) {      /* nobody reads: push back */
    size_t buffered;
    ur_sock_buffered(s, &buffered);
    if (buffered > MSHOT_BOUND) ur_req_cancel(loop, r);
  }
}

/* Arm the socket's multishot; NULL when it cannot (no provided buffers,
 * no memory for a request: the caller receives with a single shot).  The
 * request is born background: no task waits on it until one awaits it. */
static ur_req *arm (ur_loop *loop, ur_sock *s, ur_mshot *m) {
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (ur_bufring_ensure(loop) != 0) return NULL;
  r = ur_req_new(NULL, loop, IORING_OP_RECV);   /* never raises */
  if (r == NULL) return NULL;
  sqe = ur_get_sqe(loop);
  io_uring_prep_recv(sqe, ur_sock_handle(s)->fd, NULL, 0, 0);
  sqe->ioprio |= IORING_RECV_MULTISHOT;
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = UR_BGID;
  ur_handle_sqe(loop, ur_sock_handle(s), r, sqe);
  r->on_cqe = mshot_cqe;
  r->obj = s;
  r->background = 1;
  ur_req_submitted(loop, r, sqe);
  r->task = NULL;
  m->ud = ur_req_ud(loop, r);
  return r;
}

/* A result known without the kernel (how the multishot ended while no
 * task waited): a NOP brings the task to its continuation, which every
 * receive's caller expects to be resumed in. */
static void kick_cqe (ur_loop *loop, ur_req *r) {
  ur_req_wake(loop, r);
}

static int kick (lua_State *L, ur_sock *s, ur_task *t, lua_KContext ctx,
                 lua_KFunction k) {
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_NOP);
  struct io_uring_sqe *sqe = ur_get_sqe(t->loop);
  io_uring_prep_nop(sqe);
  r->on_cqe = kick_cqe;
  r->obj = s;                  /* anchored by the waiting task's stack */
  ur_req_submitted(t->loop, r, sqe);
  ur_sock_receiving(s, 1);
  return ur_await(L, t, r, "recv", ctx, k);
}

/* settimeout's limit on a wait: a plain timer.  If it fires while the
 * task still waits on the multishot, the task wakes and hears "timeout";
 * the multishot stays armed. */
static void timer_cqe (ur_loop *loop, ur_req *tr) {
  ur_task *t = tr->task;
  uint64_t tud = ur_req_ud(loop, tr);
  int fired = tr->res == -ETIME;
  ur_req *r;
  ur_req_free(loop, tr);
  if (!fired || t == NULL || t->wait_ud == 0) return;
  r = ur_req_at(loop, t->wait_ud);
  if (r == NULL || r->on_cqe != mshot_cqe || r->task != t || r->obj == NULL)
    return;
  {
    ur_mshot *m = ur_sock_mshot((ur_sock *)r->obj);
    if (m->timer != tud) return;
    m->timer = 0;
    m->timedout = 1;
  }
  wake_waiter(loop, r);
}

/*
 * A receive that must wait for bytes, on a socket that has a multishot
 * armed or wants one (want: configure{recv_multishot}, a plain socket, a
 * receive of its own; see net.c).  Returns -1 when it cannot (the caller
 * sends a single shot), else yields: the task resumes in k, where
 * ur_sock_recv_result asks ur_mshot_result what came.
 */
int ur_mshot_recv (lua_State *L, ur_sock *s, ur_task *t, int flow, int want,
                   lua_KContext ctx, lua_KFunction k) {
  ur_loop *loop = t->loop;
  ur_mshot *m = ur_sock_mshot(s);
  ur_req *r = m->ud ? ur_req_at(loop, m->ud) : NULL, *tr = NULL;
  if (r == NULL || r->state != UR_REQ_INFLIGHT || r->on_cqe != mshot_cqe) {
    m->ud = 0;                  /* ended (or its ring torn down) */
    r = NULL;
    if (m->err) {
      m->flow = flow;
      return kick(L, s, t, ctx, k);
    }
    if (!want || !supported(loop)) return -1;
    if (m->waits < MSHOT_AFTER) {
      m->waits++;
      return -1;
    }
  }
  else if (!want)               /* TLS from now on: let it end */
    ur_req_cancel(loop, r);
  if (ur_sock_timeout(s) >= 0) {   /* first: the only step that may raise */
    struct io_uring_sqe *sqe;
    tr = ur_req_new(L, loop, IORING_OP_TIMEOUT);
    sqe = ur_get_sqe(loop);
    ur_set_ts(&tr->u.ts, ur_sock_timeout(s));
    io_uring_prep_timeout(sqe, &tr->u.ts, 0, 0);
    tr->on_cqe = timer_cqe;
    ur_req_submitted(loop, tr, sqe);
    tr->task = t;
    m->timer = ur_req_ud(loop, tr);
  }
  if (r == NULL && (r = arm(loop, s, m)) == NULL) {
    if (tr) {                   /* no multishot after all: no timer either */
      tr->task = NULL;
      ur_req_cancel(loop, tr);
      m->timer = 0;
    }
    return -1;
  }
  if (r->background) {          /* a task waits on it now */
    r->background = 0;
    loop->background--;
  }
  m->timedout = 0;
  m->got = 0;                   /* counts what comes from now on */
  m->flow = flow;
  ur_sock_receiving(s, 1);
  return ur_await(L, t, r, "recv", ctx, k);
}

/*
 * sock:close() in a task, with the multishot the only request on the
 * socket and no task receiving: cancel it and wait for its last CQE, so
 * that the close itself can then go through the ring and be waited for
 * as when nothing is armed (close returns once the peer can see the
 * end).  Returns -1 when there is no multishot to end; else the task
 * resumes in k, which takes the wait's result with ur_mshot_result and
 * closes again.
 */
int ur_mshot_close (lua_State *L, ur_sock *s, ur_task *t, lua_KContext ctx,
                    lua_KFunction k) {
  ur_loop *loop = t->loop;
  ur_mshot *m = ur_sock_mshot(s);
  ur_req *r = m->ud ? ur_req_at(loop, m->ud) : NULL;
  if (r == NULL || r->state != UR_REQ_INFLIGHT || r->on_cqe != mshot_cqe)
    return -1;
  ur_req_cancel(loop, r);
  if (r->background) {
    r->background = 0;
    loop->background--;
  }
  m->got = 0;
  ur_sock_receiving(s, 1);      /* another task's receive: "busy" */
  return ur_await(L, t, r, "close", ctx, k);
}

/* Is r (the request t waits on) this file's? */
int ur_mshot_owns (const ur_req *r) {
  return r->on_cqe == mshot_cqe || r->on_cqe == kick_cqe;
}

/*
 * In a receive's continuation (ur_sock_recv_result): take what the wait
 * on r brought, as a single shot's result would say it: bytes buffered
 * (> 0), EOF (0), or -errno (-ECANCELED for settimeout's timer: "timeout";
 * -EAGAIN: ended without a word, wait again; -ENOBUFS: grow the group).
 * The socket is r->obj (NULL: collected); *flow the wait's (tls.c).
 */
int ur_mshot_result (ur_loop *loop, ur_task *t, ur_req *r, ur_sock **sp,
                     int *flow) {
  ur_sock *s = (ur_sock *)r->obj;
  ur_mshot *m;
  int res;
  t->wait_ud = 0;
  r->aux &= ~MS_WOKEN;
  r->task = NULL;
  if (r->state == UR_REQ_DONE) ur_req_free(loop, r);   /* it ended */
  else if (!r->background) {    /* still armed; nobody waits on it now */
    r->background = 1;
    loop->background++;
  }
  *sp = s;
  if (s == NULL) return -ECANCELED;
  m = ur_sock_mshot(s);
  *flow = m->flow;
  if (m->timer) {               /* bytes came first: the timer goes */
    ur_req *tr = ur_req_at(loop, m->timer);
    if (tr) {
      tr->task = NULL;
      ur_req_cancel(loop, tr);
    }
    m->timer = 0;
  }
  if (m->err == -ENOMEM) return -ENOMEM;   /* a hole: the stream ends */
  if (m->got) {
    res = m->got > INT_MAX ? INT_MAX : (int)m->got;
    m->got = 0;
    return res;
  }
  if (m->timedout) {
    m->timedout = 0;
    return -ECANCELED;
  }
  if (m->err) {
    res = m->err;
    m->err = 0;
    return res;
  }
  return ur_sock_eof(s) ? 0 : -EAGAIN;
}

/* features().recv_multishot: {wanted =, supported =, armed = n} */
static void mshot_features (lua_State *L, ur_loop *loop) {
  lua_Integer armed = 0;
  for (uint32_t i = 0; i < loop->slab.nreqs; i++) {
    ur_req *r = ur_slab_req(&loop->slab, i);
    if (r->state == UR_REQ_INFLIGHT && r->on_cqe == mshot_cqe) armed++;
  }
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, loop->recv_mshot);
  lua_setfield(L, -2, "wanted");
  lua_pushboolean(L, supported(loop));
  lua_setfield(L, -2, "supported");
  lua_pushinteger(L, armed);
  lua_setfield(L, -2, "armed");
  lua_setfield(L, -2, "recv_multishot");
}

/* a new ring may be on a kernel that takes it after all (a child) */
static void mshot_ring_setup (lua_State *L, ur_loop *loop) {
  (void)L;
  loop->mshot_refused = 0;
}

void ur_register_recv_mshot (lua_State *L) {
  static const ur_hooks hooks = {
    mshot_ring_setup, NULL, NULL, NULL, NULL, mshot_features
  };
  ur_loop_hook(L, &hooks);
}
