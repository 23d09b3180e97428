/*
 * net.c: TCP and Unix stream sockets through the ring.
 *
 * Sockets are made with IORING_OP_SOCKET and driven with CONNECT, ACCEPT,
 * SEND, RECV, SHUTDOWN and CLOSE; bind, listen and the option calls are
 * set-up, done once with plain syscalls.
 *
 * - A listener arms one multishot ACCEPT: each CQE is a new connection,
 *   queued on the listener until a task takes it with accept().  When the
 *   kernel ends the multishot (no IORING_CQE_F_MORE) it is armed again.
 * - A receive picks its buffer from the loop's provided-buffer ring
 *   (bufring.c) only when data arrives; the CQE handler copies the bytes
 *   into the socket's own buffer, where Lua's patterns are parsed (the
 *   "_take" primitives) and where bytes stay when a timeout strikes.
 *   With configure{recv_multishot} the receive is one multishot RECV
 *   kept armed instead (recv_multishot.c), hooked in where a receive
 *   begins (ur_sock_recv_raw) and where it ends (ur_sock_recv_result).
 * - A send pins the Lua string and resubmits the rest of a short send;
 *   MSG_NOSIGNAL keeps a closed peer from raising SIGPIPE.
 * - settimeout links an IORING_OP_LINK_TIMEOUT to each receive and send.
 * - close() cancels what other tasks have in flight on the socket (a
 *   pending recv would otherwise keep the file open and send no FIN) and
 *   wakes them with nil, "closed".
 * - A TLS socket (tls.c) is this same socket with s->tls set: receives
 *   bring ciphertext, which the CQE handler hands to OpenSSL's memory BIO
 *   instead of the receive buffer, and the receive continuation
 *   (ur_sock_recv_result) lets tls.c decrypt into the receive buffer; so
 *   every pattern, lines, receive_head and settimeout work unchanged.
 * - sock:receive_head and sock:_take_request live beside the HTTP parser
 *   (http.c), which sees the receive buffer and the receive op through
 *   the ur_sock_* functions here (uring.h) and adds them to this file's
 *   socket_methods.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "uring.h"
#include "strcache.h"   /* the line slots, asked inline */

#define UR_SOCK_MT "uring.socket"
#define RECV_KEEP  (64 * 1024)   /* a buffer this big is kept, not shrunk */

struct ur_sock {
  ur_handle h;            /* the fd; -1 once closed (handle.c) */
  int family;
  unsigned listener:1, eof:1, rbusy:1, wbusy:1, armed:1;
  unsigned ownbuf:1;      /* the group ran dry and cannot grow: the next
                             receive brings a buffer of its own */
  unsigned nomem:1;       /* the early RECV's bytes could not be kept (the
                             reaper cannot raise): the next receive that
                             reaches the kernel raises instead */
  unsigned first_recv:1;  /* a listener made with opts.first_recv: its
                             connections come with their first RECV queued
                             (early_recv); opt-in, as that RECV takes bytes
                             a reader of the fd (sock:fd()) would expect */
  double timeout;         /* seconds for each recv/send; < 0: none */
  char *rbuf;             /* received, not yet taken: rbuf[rpos..+rlen) */
  size_t rcap, rpos, rlen;
  size_t scanned;         /* bytes of rbuf already searched for '\n' */
  size_t mark;            /* a parser's resume point (ur_sock_mark) */
  lua_Integer rin;        /* bytes ever put in rbuf (LuaSocket's getstats:
                             some arrive with no receive waiting) */
  /* listener */
  struct pend *pend;      /* accepted connections no task has taken yet */
  size_t phead, plen, pcap;
  int accept_err;
  ur_waitq acceptors;     /* tasks blocked in accept() */
  /* send-behind: a small send the task did not wait for (start_send) */
  uint64_t behind;        /* its request's user_data while in flight, or 0 */
  int behind_err;         /* -errno it failed with, for the next send */
  unsigned nobehind:1;    /* a send failed, or the send side is shut: every
                             send waits for the kernel's own answer */
  ur_tls *tls;            /* TLS state (tls.c), or NULL: plain TCP */
  void *tls_ctx;          /* a listener's (or a TLS connect's) context,
                             one reference held (tls.c) */
  ur_mshot ms;            /* its multishot receive (recv_multishot.c) */
  uint64_t early;         /* its first RECV, queued at accept, while in
                             flight with no task waiting on it, or 0 */
};

/* An accepted connection no task has taken yet: its fd, already under the
 * one close path, and what its first RECV (queued by the reaper when the
 * ACCEPT's CQE came: early_recv) brought, until accept() hands it all to
 * the socket it makes. */
struct pend {
  ur_handle h;
  uint64_t early;         /* the first RECV while in flight, or 0 */
  char *bytes;            /* what it brought (malloc'd), or NULL */
  size_t n;
  int eof;                /* it found the peer's FIN */
  int nomem;              /* no memory for the bytes it brought: the
                             socket's first receive raises (ur_sock.nomem) */
  int ownbuf;             /* it found the group dry at its cap: the first
                             receive brings a buffer of its own */
};

/* it runs several times per request on a busy server */
static ur_sock *checksock (lua_State *L, int idx) {
  return (ur_sock *)ur_checkudata(L, idx, ur_loop_at(L)->sock_mt, UR_SOCK_MT);
}

/* the same, with the loop at hand (each upvalue lookup is an API call) */
static ur_sock *checksock_in (lua_State *L, ur_loop *loop, int idx) {
  return (ur_sock *)ur_checkudata(L, idx, loop->sock_mt, UR_SOCK_MT);
}

static ur_sock *tosock (lua_State *L) {
  ur_sock *s = checksock(L, 1);
  if (s->h.fd < 0) luaL_error(L, "attempt to use a closed socket");
  return s;
}

/* Closed first: collecting a half-made socket does nothing. */
static ur_sock *newsock (lua_State *L, int family) {
  ur_sock *s = (ur_sock *)lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  ur_handle_init(&s->h);
  s->family = family;
  s->timeout = -1;
  luaL_setmetatable(L, UR_SOCK_MT);
  return s;
}

/* A socket for fd (connected, handed over by another worker). */
ur_sock *ur_sock_push_fd (lua_State *L, ur_loop *loop, int fd, int family) {
  ur_sock *s = newsock(L, family);
  if (ur_handle_adopt(loop, &s->h, fd) < 0) {
    lua_pop(L, 1);
    return NULL;
  }
  ur_handle_fix(loop, &s->h);
  return s;
}

/* The fail tuple for an op on a socket: "closed" once closed (by any
 * task), "timeout" for our own timer. */
int ur_sock_fail (lua_State *L, ur_sock *s, int res) {
  if (s->h.fd >= 0 && res == -ECANCELED && s->timeout >= 0) {
    luaL_pushfail(L);
    lua_pushliteral(L, "timeout");
    lua_pushinteger(L, ETIME);
    return 3;
  }
  if (s->h.fd < 0 || res == -ECANCELED) return ur_pushclosed(L);
  return ur_pushfail(L, res, NULL);
}

/* --- receiving --- */

/* A socket's receive buffer starts at RBUF_FIRST bytes.  Closed sockets'
 * buffers of that size are kept by the loop (up to RBUF_POOL of them) for
 * the next sockets' first bytes: a churned connection (one request, then
 * close) would otherwise malloc and free 4 KiB each time, a size glibc
 * serves from its large bins after consolidating every fast bin the Lua
 * allocator filled meanwhile (issue 17). */
#define RBUF_FIRST 4096
#define RBUF_POOL  64

static char *rbuf_take (ur_loop *loop) {
  char *b = (char *)loop->rbuf_pool;
  memcpy(&loop->rbuf_pool, b, sizeof loop->rbuf_pool);   /* the next */
  loop->rbuf_pooled--;
  return b;
}

/* s's receive buffer goes: to the pool, or freed. */
static void rbuf_drop (ur_loop *loop, ur_sock *s) {
  if (s->rbuf && s->rcap == RBUF_FIRST && loop->rbuf_pooled < RBUF_POOL) {
    memcpy(s->rbuf, &loop->rbuf_pool, sizeof loop->rbuf_pool);
    loop->rbuf_pool = s->rbuf;
    loop->rbuf_pooled++;
  }
  else free(s->rbuf);
  s->rbuf = NULL;
  s->rcap = s->rlen = s->rpos = 0;
}

/* The loop is collected: the pool goes, and stays shut (a socket
 * collected later frees its buffer). */
static void rbuf_pool_free (ur_loop *loop) {
  while (loop->rbuf_pool) free(rbuf_take(loop));
  loop->rbuf_pooled = RBUF_POOL;
}

/* Room for n more bytes at the end of the receive buffer, or NULL (out of
 * memory); ur_sock_commit then counts what was written there. */
static char *reserve (ur_sock *s, size_t n) {
  if (s->rpos > 0 && s->rcap - s->rpos - s->rlen < n) {
    memmove(s->rbuf, s->rbuf + s->rpos, s->rlen);
    s->rpos = 0;
  }
  if (s->rlen + n > s->rcap) {
    size_t cap = s->rcap ? s->rcap : RBUF_FIRST;
    char *nb;
    while (cap < s->rlen + n) cap *= 2;
    nb = (char *)realloc(s->rbuf, cap);
    if (nb == NULL) return 0;
    s->rbuf = nb;
    s->rcap = cap;
  }
  return s->rbuf + s->rpos + s->rlen;
}

static int append (ur_sock *s, const char *p, size_t n) {
  char *dst = reserve(s, n);
  if (dst == NULL) return 0;
  memcpy(dst, p, n);
  s->rlen += n;
  s->rin += (lua_Integer)n;
  return 1;
}

static void consume (ur_sock *s, size_t n) {
  s->rpos += n;
  s->rlen -= n;
  s->scanned = 0;
  s->mark = 0;
  if (s->rlen == 0) {
    s->rpos = 0;
    if (s->rcap > RECV_KEEP) {  /* a burst is over: give the memory back */
      free(s->rbuf);
      s->rbuf = NULL;
      s->rcap = 0;
    }
  }
}

/* The receive buffer as the parsers beside this file (http.c) see it:
 * the socket stays opaque to them, and its bytes are taken only through
 * consume, which keeps the line and head scans in step. */
ur_sock *ur_sock_check (lua_State *L, int idx) { return checksock(L, idx); }
int ur_sock_closed (const ur_sock *s) { return s->h.fd < 0; }
int ur_sock_eof (const ur_sock *s) { return s->eof; }
void ur_sock_consume (ur_sock *s, size_t n) { consume(s, n); }
size_t *ur_sock_mark (ur_sock *s) { return &s->mark; }

/* for tls.c: it decrypts straight into the receive buffer */
char *ur_sock_reserve (ur_sock *s, size_t n) { return reserve(s, n); }
void ur_sock_commit (ur_sock *s, size_t n) {
  s->rlen += n;
  s->rin += (lua_Integer)n;
}
void ur_sock_set_eof (ur_sock *s) { s->eof = 1; }
ur_tls *ur_sock_tls (const ur_sock *s) { return s->tls; }
void ur_sock_set_tls (ur_sock *s, ur_tls *tls) { s->tls = tls; }
void **ur_sock_tls_ctx (ur_sock *s) { return &s->tls_ctx; }
int ur_sock_listening (const ur_sock *s) { return s->listener; }
double ur_sock_timeout (const ur_sock *s) { return s->timeout; }
int ur_sock_busy (const ur_sock *s, int sending) {
  return sending ? s->wbusy : s->rbusy;
}
ur_handle *ur_sock_handle (ur_sock *s) { return &s->h; }
ur_mshot *ur_sock_mshot (ur_sock *s) { return &s->ms; }
void ur_sock_receiving (ur_sock *s, int busy) { s->rbusy = busy ? 1 : 0; }

const char *ur_sock_buffered (const ur_sock *s, size_t *len) {
  *len = s->rlen;
  return s->rbuf ? s->rbuf + s->rpos : "";
}

/* p[0..n) without its CRs (LuaSocket's "*l" ignores every CR) */
static void push_nocr (lua_State *L, const char *p, size_t n) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++)
    if (p[i] != '\r') luaL_addchar(&b, p[i]);
  luaL_pushresult(&b);
}

/* The receive CQE: copy the bytes into the socket and give the provided
 * buffer straight back, then wake the task.  A receive into the socket's
 * own buffer (lent to the request, below) just gives it back. */
static void recv_cqe (ur_loop *loop, ur_req *r) {
  ur_sock *s = (ur_sock *)r->obj;
  int res = r->res;
  const char *data = NULL;
  if (s && s->tls && s->h.fd >= 0) {   /* ciphertext: OpenSSL's to read */
    if (r->cflags & IORING_CQE_F_BUFFER)
      data = ur_bufring_data(loop, r->cflags >> IORING_CQE_BUFFER_SHIFT);
    else
      data = (const char *)r->mem;
    if (res > 0 && data) {
      ur_kernel_wrote(data, (size_t)res);
      if (!ur_tls_feed(s->tls, data, (size_t)res)) r->res = -ENOMEM;
    }
    if (r->cflags & IORING_CQE_F_BUFFER)
      ur_bufring_recycle(loop, r->cflags >> IORING_CQE_BUFFER_SHIFT);
    ur_req_wake(loop, r);
    return;
  }
  if (r->aux == 1 && s && s->h.fd >= 0 && s->rbuf == NULL) {
    if (res > 0) ur_kernel_wrote(r->mem, (size_t)res);
    s->rbuf = (char *)r->mem;
    s->rcap = r->memlen;
    s->rpos = 0;
    s->scanned = 0;
    s->rlen = res > 0 ? (size_t)res : 0;
    s->rin += (lua_Integer)s->rlen;
    r->mem = NULL;
    ur_req_wake(loop, r);
    return;
  }
  if (r->cflags & IORING_CQE_F_BUFFER)
    data = ur_bufring_data(loop, r->cflags >> IORING_CQE_BUFFER_SHIFT);
  else if (r->mem)
    data = (const char *)r->mem;
  if (res > 0 && data) {
    ur_kernel_wrote(data, (size_t)res);
    if (s && s->h.fd >= 0 && s->rbuf == NULL && loop->rbuf_pool
        && (size_t)res <= RBUF_FIRST) {
      s->rbuf = rbuf_take(loop);       /* a connection's first bytes */
      s->rcap = RBUF_FIRST;
      s->rpos = s->rlen = s->scanned = 0;
    }
    if (s && s->h.fd >= 0 && !append(s, data, (size_t)res)) r->res = -ENOMEM;
  }
  if (r->cflags & IORING_CQE_F_BUFFER)
    ur_bufring_recycle(loop, r->cflags >> IORING_CQE_BUFFER_SHIFT);
  ur_req_wake(loop, r);
}

static void early_cqe (ur_loop *loop, ur_req *r);

/* The socket's first RECV (early_recv) if it is still in flight with no
 * task waiting on it; else NULL.  s forgets it once it is gone; while a
 * receive waits on it, s keeps it for ur_sock_recv_result. */
static ur_req *early_pending (ur_loop *loop, ur_sock *s) {
  ur_req *r;
  if (s->early == 0) return NULL;
  r = ur_req_at(loop, s->early);
  /* r->obj: a ring set up since (configure) may have reused the slot */
  if (r == NULL || r->state != UR_REQ_INFLIGHT || r->on_cqe != early_cqe
      || r->obj != s) {
    s->early = 0;
    return NULL;
  }
  return r->task ? NULL : r;
}

/* The socket's first RECV, queued when it was accepted (early_recv), is
 * still in flight: the receive waits on it rather than queue a second
 * one beside it (two RECVs could take the bytes out of order).  A
 * receive with a time limit (settimeout), or a TLS flow, cancels it
 * first: its bytes, if it won the race, are kept; if not, the receive
 * goes out again as its own (ur_sock_recv_result).  -1: none. */
static int early_wait (lua_State *L, ur_sock *s, ur_task *t, int flow,
                       lua_KContext ctx, lua_KFunction k) {
  ur_req *r = early_pending(t->loop, s);
  if (r == NULL) return -1;
  if (s->timeout >= 0 || flow) ur_req_cancel(t->loop, r);
  /* the socket's first wait, as configure{recv_multishot} counts them */
  if (s->ms.waits < 255) s->ms.waits++;
  s->rbusy = 1;
  return ur_await(L, t, r, "recv", ctx, k);
}

/*
 * A socket whose buffer is empty but allocated (a keep-alive connection
 * between requests: consume keeps up to RECV_KEEP) lends that buffer to
 * the request: the kernel receives straight into it, with no copy out of
 * a provided buffer (cold in cache: the group hands buffers out in FIFO
 * order) and no buffer held that the socket does not already own.  The
 * request owns it until the CQE (ur_req_free frees it if the socket is
 * gone).  A socket with no buffer (an idle connection's first receive)
 * still takes a provided buffer only when data arrives.  The task resumes
 * in k with ctx (ur_sock_recv_result tells it what came).
 */
/* The bytes an early RECV brought were lost to an allocation that
 * failed in the reaper (early_cqe), after those buffered before them:
 * the stream has a hole there, so it ends, and the receive that reached
 * it raises, as one whose own bytes found no memory (recv_cqe). */
static void nomem_hole (lua_State *L, ur_sock *s) {
  s->nomem = 0;
  s->eof = 1;
  luaL_error(L, "receive: not enough memory");
}

int ur_sock_recv (lua_State *L, ur_sock *s, ur_task *t,
                  lua_KContext ctx, lua_KFunction k) {
  if (s->tls) return ur_tls_recv(L, s, t, ctx, k);   /* it may send first */
  return ur_sock_recv_raw(L, s, t, 0, ctx, k);
}

/* The receive itself: bytes, or a TLS socket's ciphertext (the receive
 * buffer holds plaintext then, and is never lent). */
int ur_sock_recv_raw (lua_State *L, ur_sock *s, ur_task *t, int flow,
                      lua_KContext ctx, lua_KFunction k) {
  ur_loop *loop = t->loop;
  int lend, pick, n;
  int want = loop->recv_mshot && !flow && !s->tls && !s->ownbuf;
  ur_req *r, *tr;
  struct io_uring_sqe *sqe;
  size_t cap = UR_BR_SIZE;
  if (s->nomem) nomem_hole(L, s);
  if (s->early && (n = early_wait(L, s, t, flow, ctx, k)) >= 0) return n;
  /* configure{recv_multishot}: one RECV kept armed (recv_multishot.c);
   * one armed before must end first, whatever this receive wants */
  if ((want || s->ms.ud)
      && (n = ur_mshot_recv(L, s, t, flow, want, ctx, k)) >= 0)
    return n;
  lend = s->tls == NULL && s->rlen == 0 && s->rbuf != NULL && s->rcap >= 1024;
  pick = !lend && !s->ownbuf && ur_bufring_ensure(loop) == 0;
  r = ur_req_new(L, loop, IORING_OP_RECV);
  if (!lend && !pick) {
    /* no provided buffers (old kernel, memlock), or none left: a buffer
     * of our own */
    r->mem = malloc(UR_BR_SIZE);
    if (r->mem == NULL) {
      ur_req_free(loop, r);
      return luaL_error(L, "receive: not enough memory");
    }
  }
  tr = s->timeout >= 0 ? ur_link_timeout_new(L, loop) : NULL;
  if (lend) {                   /* nothing raises from here on */
    r->mem = s->rbuf;
    cap = s->rcap;
    r->aux = 1;
    s->rbuf = NULL;
    s->rcap = 0;
    s->rpos = 0;
  }
  sqe = ur_get_sqe(loop);
  io_uring_prep_recv(sqe, s->h.fd, r->mem, cap, 0);
  ur_handle_sqe(loop, &s->h, r, sqe);
  if (pick) {
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = UR_BGID;
  }
  r->on_cqe = recv_cqe;
  r->obj = s;
  r->memlen = cap;
  if (flow) r->aux = flow;      /* a TLS send's handshake reads (tls.c) */
  ur_req_submitted(loop, r, sqe);
  if (tr) ur_link_timeout_add(loop, tr, sqe, s->timeout);
  s->rbusy = 1;
  s->ownbuf = 0;
  return ur_await(L, t, r, "recv", ctx, k);
}

/* In a receive's continuation: end the request and say what it brought
 * (UR_RECV_*, uring.h); for UR_RECV_FAILED the fail triple is pushed.
 * Raises a cancel or an expired timeout scope (what arrived stays
 * buffered).  The socket is the request's r->obj, checked when the op
 * began: a continuation needs no second checksock (__gc clears r->obj). */
/* The usual end of a receive, first (1, the socket in *sp): a plain
 * receive brought bytes for a socket still open, and nothing interrupted
 * the task -- what ur_sock_recv_result concludes then, with none of its
 * other cases to rule out; 0: it has to. */
static inline int recv_result_bytes (ur_task *t, ur_sock **sp) {
  ur_req *r = t ? ur_req_at(t->loop, t->wait_ud) : NULL;
  ur_sock *s;
  if (r != NULL && r->on_cqe == recv_cqe && r->state == UR_REQ_DONE
      && r->res > 0 && (s = (ur_sock *)r->obj) != NULL && s->h.fd >= 0
      && s->tls == NULL && !ur_interrupted(t)) {
    t->wait_ud = 0;
    ur_req_free(t->loop, r);
    s->rbusy = 0;
    *sp = s;
    return 1;
  }
  return 0;
}

int ur_sock_recv_result (lua_State *L, ur_task *t, ur_sock **sp) {
  ur_req *r;
  ur_sock *s;
  int res, op = IORING_OP_RECV, flow = 0;
  if (recv_result_bytes(t, sp)) return UR_RECV_BYTES;
  r = t ? ur_req_at(t->loop, t->wait_ud) : NULL;
  /* a wait on the multishot: what it brought (a single shot's handler
   * is told apart first, without the call) */
  if (r && r->on_cqe != recv_cqe && ur_mshot_owns(r))
    res = ur_mshot_result(t->loop, t, r, &s, &flow);
  else {
    r = ur_resumed(L, t);
    s = (ur_sock *)r->obj;
    res = r->res;
    op = r->opcode;
    flow = r->aux;
    if (s && s->early == ur_req_ud(t->loop, r)) {
      s->early = 0;             /* the early RECV (early_wait), cancelled
                                   for a time limit: ask again, with it */
      if (res == -ECANCELED) res = -EAGAIN;
    }
    /* a TLS socket's receive may have been its own send (tls.c): what the
     * kernel did not take goes back first in line */
    if (s && s->tls && op == IORING_OP_SEND) ur_tls_sent(s->tls, r);
    ur_req_free(t->loop, r);
  }
  *sp = s;
  if (s == NULL) {
    ur_pushclosed(L);
    return UR_RECV_FAILED;
  }
  if (op == IORING_OP_SEND) s->wbusy = 0;
  else if (op == IORING_OP_RECV) s->rbusy = 0;
  if (s->h.fd < 0) {
    ur_sock_fail(L, s, -EBADF);
    return UR_RECV_FAILED;
  }
  if (ur_interrupted(t)) ur_check_interrupt(L, t);
  if (res == -ENOBUFS || res == -EINTR || res == -EAGAIN) {
    /* ENOBUFS: a burst took every provided buffer.  Grow the group; at
     * its cap (or out of memory) the retry brings a buffer of its own
     * rather than ask the kernel again at once: while the buffers are
     * still held (CQEs not yet reaped, a backed-up CQ) it would answer
     * ENOBUFS again, as fast as the loop can ask */
    if (res == -ENOBUFS && !ur_bufring_grow(t->loop)) s->ownbuf = 1;
    return UR_RECV_AGAIN;
  }
  if (s->tls) return ur_tls_result(L, s, res, op, flow);   /* decrypt */
  if (res > 0) return UR_RECV_BYTES;
  if (res == 0) {
    s->eof = 1;
    return UR_RECV_EOF;
  }
  if (res == -ENOMEM) {
    /* the bytes that came could not be buffered (recv_cqe): the stream
     * has a hole, so it ends here rather than go on past it */
    s->eof = 1;
    luaL_error(L, "receive: not enough memory");
  }
  ur_sock_fail(L, s, res);
  return UR_RECV_FAILED;
}

static int fill_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_sock *s;
  (void)status;
  switch (ur_sock_recv_result(L, t, &s)) {
    case UR_RECV_FAILED: return 3;
    case UR_RECV_AGAIN: return ur_sock_recv(L, s, t, ctx, fill_k);
    case UR_RECV_BYTES: lua_pushboolean(L, 1); return 1;
    default: lua_pushboolean(L, 0); return 1;
  }
}

/* The checks of a receive that must wait for bytes; then the task that
 * waits. */
static inline ur_task *recv_task_in (lua_State *L, ur_loop *loop,
                                     ur_sock *s) {
  ur_task *t = ur_task_current_in(L, loop, "receive");
  if (s->listener) luaL_error(L, "receive: socket is listening");
  if (s->rbusy)
    luaL_error(L, "receive: socket is busy (another task is receiving on "
               "it)");
  return t;
}

ur_task *ur_sock_recv_task (lua_State *L, ur_sock *s) {
  return recv_task_in(L, ur_loop_of(L), s);
}

/* sock:_fill() -> true (more bytes buffered) | false (EOF) | fail
 * The one receive primitive of the Lua views (read, recv, uring.socket,
 * uring.http); patterns are taken from the buffer. */
static int l_sock_fill (lua_State *L) {
  ur_sock *s = tosock(L);
  ur_task *t = ur_sock_recv_task(L, s);
  lua_settop(L, 1);
  if (s->eof) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return ur_sock_recv(L, s, t, 0, fill_k);
}

/* Push the buffered line, if a whole one is buffered (keep: with its LF;
 * dropcr: without any CR, as LuaSocket's "*l") and take it; 0 if none.
 * A line seen lately comes back as the same string (strcache.c). */
static int take_line (lua_State *L, ur_loop *loop, ur_sock *s, int keep,
                      int dropcr) {
  char *p = s->rbuf + s->rpos, *nl = NULL;
  if (s->rlen > s->scanned)
    nl = (char *)memchr(p + s->scanned, '\n', s->rlen - s->scanned);
  if (nl == NULL) {
    s->scanned = s->rlen;
    return 0;
  }
  {
    size_t n = (size_t)(nl - p) + 1, len = keep ? n : n - 1;
    if (dropcr) {
      /* the usual line: at most one CR, right before the LF; one a line
       * slot holds has no other (strcache.c), so a hit needs no scan */
      size_t m = (len > 0 && p[len - 1] == '\r') ? len - 1 : len;
      if (ur_strcache_line_hit(L, loop, p, m))
        ;
      else if (memchr(p, '\r', m) == NULL)
        ur_strcache_push_line(L, loop, p, m, 1);
      else
        push_nocr(L, p, len);
    }
    else
      ur_strcache_push_line(L, loop, p, len, 0);
    consume(s, n);
  }
  return 1;
}

/* take_line(L, loop, s, 0, 1), LuaSocket's "*l", for the paths of
 * sock:receive that run per line of a line protocol: inline there, with
 * the constants folded in. */
static inline __attribute__((always_inline))
int take_recv_line (lua_State *L, ur_loop *loop, ur_sock *s) {
  char *p, *nl;
  size_t len, m;
  if (s->rlen <= s->scanned) {
    s->scanned = s->rlen;
    return 0;
  }
  p = s->rbuf + s->rpos;
  nl = (char *)memchr(p + s->scanned, '\n', s->rlen - s->scanned);
  if (nl == NULL) {
    s->scanned = s->rlen;
    return 0;
  }
  len = (size_t)(nl - p);
  m = (len > 0 && p[len - 1] == '\r') ? len - 1 : len;
  if (!ur_strcache_line_hit(L, loop, p, m)) {   /* as take_line's */
    if (memchr(p, '\r', m) == NULL) ur_strcache_push_line(L, loop, p, m, 1);
    else push_nocr(L, p, len);
  }
  consume(s, len + 1);
  return 1;
}

/* sock:_take_line(keep_newline, drop_cr) -> line | nil (no full line) */
static int l_sock_take_line (lua_State *L) {
  ur_sock *s = checksock(L, 1);
  if (!take_line(L, ur_loop_of(L), s, lua_toboolean(L, 2),
                 lua_toboolean(L, 3)))
    lua_pushnil(L);
  return 1;
}

/*
 * sock:receive([pattern [, prefix]]) in C: the hot path of every line
 * protocol is one C call that takes a buffered line, or receives and
 * takes it in the continuation, with no Lua frame around it.  Stack: 1
 * the socket, 2 the pattern, 3 the prefix (a string or nil); ctx says
 * what to take: RECV_LINE, RECV_ALL or a count (>= 0).
 */
#define RECV_LINE ((lua_KContext)-1)
#define RECV_ALL  ((lua_KContext)-2)

static int receive_k (lua_State *L, int status, lua_KContext ctx);

/* the value at the top, after the prefix if there is one */
static void prefixed (lua_State *L) {
  if (lua_type(L, 3) == LUA_TSTRING) {
    lua_pushvalue(L, 3);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
}

static void push_take (lua_State *L, ur_sock *s, size_t n) {
  if (n > s->rlen) n = s->rlen;
  lua_pushlstring(L, s->rbuf ? s->rbuf + s->rpos : "", n);
  consume(s, n);
}

static int receive_step (lua_State *L, ur_loop *loop, ur_sock *s,
                         lua_KContext ctx) {
  if (ctx == RECV_LINE) {
    if (take_recv_line(L, loop, s)) {
      prefixed(L);
      return 1;
    }
  }
  else if (ctx >= 0 && s->rlen >= (size_t)ctx) {
    push_take(L, s, (size_t)ctx);
    prefixed(L);
    return 1;
  }
  if (s->eof) {
    if (ctx == RECV_ALL) {
      push_take(L, s, s->rlen);
      prefixed(L);
      return 1;
    }
    luaL_pushfail(L);
    lua_pushliteral(L, "closed");
    if (ctx == RECV_LINE) {    /* the partial line, CRs dropped */
      push_nocr(L, s->rbuf ? s->rbuf + s->rpos : "", s->rlen);
      consume(s, s->rlen);
    }
    else
      push_take(L, s, s->rlen);
    prefixed(L);
    return 3;
  }
  return ur_sock_recv(L, s, recv_task_in(L, loop, s), ctx, receive_k);
}

static int receive_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_in(ur_loop_at(L), L);
  ur_sock *s;
  (void)status;
  switch (ur_sock_recv_result(L, t, &s)) {
    case UR_RECV_FAILED: return 3;
    case UR_RECV_AGAIN: return ur_sock_recv(L, s, t, ctx, receive_k);
    default: return receive_step(L, t->loop, s, ctx);
  }
}

/* The continuation of l_sock_receive's short cut: a line with no prefix
 * (the stack holds the socket, maybe the pattern and its metatable: no
 * string at 3), taken at once when the bytes brought one; anything else
 * goes the general way. */
static int line_k (lua_State *L, int status, lua_KContext ctx) {
  ur_loop *loop = ur_loop_at(L);
  ur_task *t = ur_task_in(loop, L);
  ur_sock *s;
  (void)status; (void)ctx;
  if (recv_result_bytes(t, &s)) {   /* the usual end, as below */
    loop->sock_hot = s;
    if (take_recv_line(L, loop, s)) return 1;
    lua_settop(L, 3);
    return receive_step(L, loop, s, RECV_LINE);
  }
  switch (ur_sock_recv_result(L, t, &s)) {
    case UR_RECV_FAILED: return 3;
    case UR_RECV_BYTES:
      /* s is the request's socket (r->obj: checked when the receive
       * began, cleared by __gc): the task's next receive or send on it,
       * after others ran meanwhile, skips the metatable check */
      loop->sock_hot = s;
      if (take_recv_line(L, loop, s)) return 1;
    /* fall through */
    default:
      lua_settop(L, 3);
      return receive_step(L, loop, s, RECV_LINE);
  }
}

/* ur_sock_recv_raw's case of a keep-alive connection between requests,
 * for sock:receive's line path: the socket's empty buffer lent to the
 * RECV, no timeout, no multishot, no TLS (the caller checked) -- the
 * same request, SQE and park, without the general case's checks. */
static int recv_lent (lua_State *L, ur_loop *loop, ur_sock *s, ur_task *t) {
  ur_req *r;
  if (s->nomem) nomem_hole(L, s);
  r = ur_req_new(L, loop, IORING_OP_RECV);
  struct io_uring_sqe *sqe;
  size_t cap = s->rcap;
  r->mem = s->rbuf;             /* nothing raises from here on */
  r->aux = 1;
  s->rbuf = NULL;
  s->rcap = 0;
  s->rpos = 0;
  sqe = ur_get_sqe(loop);
  io_uring_prep_recv(sqe, s->h.fd, r->mem, cap, 0);
  ur_handle_sqe(loop, &s->h, r, sqe);
  r->on_cqe = recv_cqe;
  r->obj = s;
  r->memlen = cap;
  ur_req_submitted(loop, r, sqe);
  s->rbusy = 1;
  s->ownbuf = 0;
  return ur_await(L, t, r, "recv", 0, line_k);
}

/* The general case of sock:receive: any pattern, a prefix, nothing
 * buffered yet.  Stack: the arguments (and no more). */
static int receive_args (lua_State *L, ur_loop *loop, ur_sock *s) {
  lua_KContext ctx = RECV_LINE;
  switch (lua_type(L, 3)) {
    case LUA_TNONE: case LUA_TNIL: case LUA_TSTRING: break;
    case LUA_TNUMBER: lua_tolstring(L, 3, NULL); break;   /* in place */
    default:
      return luaL_error(L, "bad argument #2 to 'receive' (string expected, "
                        "got %s)", luaL_typename(L, 3));
  }
  switch (lua_type(L, 2)) {
    case LUA_TNUMBER: {
      int isint;
      lua_Integer n = lua_tointegerx(L, 2, &isint);
      if (!isint || n < 0)
        return luaL_error(L, "bad argument #1 to 'receive' (invalid count)");
      ctx = (lua_KContext)n;
      break;
    }
    case LUA_TSTRING: {
      const char *p = lua_tostring(L, 2);
      if (p[0] == '*') p++;
      if (strcmp(p, "l") == 0) ctx = RECV_LINE;
      else if (strcmp(p, "a") == 0) ctx = RECV_ALL;
      else
        return luaL_error(L, "bad argument #1 to 'receive' (invalid receive "
                          "pattern)");
      break;
    }
    case LUA_TNONE: case LUA_TNIL: break;
    default:
      return luaL_error(L, "bad argument #1 to 'receive' (invalid receive "
                        "pattern)");
  }
  lua_settop(L, 3);
  return receive_step(L, loop, s, ctx);
}

/* sock:receive([pattern [, prefix]]) -> data | nil, "closed", partial
 *   | nil, msg, errno
 * LuaSocket's patterns: "*l"/"l" (a line, CRs and the LF dropped),
 * "*a"/"a" (everything until the peer closes), n (exactly n bytes).  A
 * timeout returns nil, "timeout", ETIME and keeps the bytes buffered.
 * A line protocol calls it several times per message, mostly for a line
 * that is already buffered: that case costs half the Lua API calls of
 * the general one (receive_args). */
static int receive_checked (lua_State *L, ur_loop *loop);

static int l_sock_receive (lua_State *L) {
  ur_loop *loop = ur_loop_at(L);
  ur_sock *s = (ur_sock *)lua_touserdata(L, 1);
  /* a line protocol's call: sock:receive() on the socket last checked
   * (loop->sock_hot only ever names a live socket) */
  if (s != NULL && s == loop->sock_hot && lua_gettop(L) == 1
      && s->h.fd >= 0) {
    if (take_recv_line(L, loop, s)) return 1;
    if (!s->eof) {              /* wait for bytes, the stack as it is */
      ur_task *t = recv_task_in(L, loop, s);
      if (s->rlen == 0 && s->rbuf != NULL && s->rcap >= 1024
          && s->timeout < 0 && s->tls == NULL && !loop->recv_mshot
          && s->ms.ud == 0)
        return recv_lent(L, loop, s, t);
      return ur_sock_recv(L, s, t, 0, line_k);
    }
  }
  return receive_checked(L, loop);
}

/* sock:receive's every other case: the socket checked, the pattern
 * read; a line at hand still costs few API calls. */
static int receive_checked (lua_State *L, ur_loop *loop) {
  int top = lua_gettop(L);
  ur_sock *s;
  if (top <= 2) {               /* no prefix: maybe a line, at hand */
    /* one API call: a string's object (NULL for a number) */
    const void *p = top < 2 ? loop->pat_line[0] : lua_topointer(L, 2);
    if (p == loop->pat_line[0] || p == loop->pat_line[1]) {
      s = (ur_sock *)lua_touserdata(L, 1);
      if (s == NULL) goto general;
      if (s != loop->sock_hot) {
        /* checksock, keeping the metatable it pushes: the line goes on
         * top of it and is what returns (nothing reads index 2 after
         * this: the pattern is known) */
        if (!lua_getmetatable(L, 1) || lua_topointer(L, -1) != loop->sock_mt)
          goto general;
        loop->sock_hot = s;     /* a socket: the next call skips this */
      }
      if (s->h.fd >= 0) {
        if (take_recv_line(L, loop, s)) return 1;
        if (!s->eof)            /* wait for bytes, the stack as it is */
          return ur_sock_recv(L, s, recv_task_in(L, loop, s), 0, line_k);
        lua_settop(L, 3);       /* 2: the pattern (or nil), 3: no prefix */
        return receive_step(L, loop, s, RECV_LINE);
      }
    general:
      lua_settop(L, top);       /* the general path checks and says why */
    }
  }
  s = checksock_in(L, loop, 1);
  if (s->h.fd < 0) return luaL_error(L, "attempt to use a closed socket");
  return receive_args(L, loop, s);
}

/* sock:_take(n) -> up to n buffered bytes ("" if none); n < 0: all */
static int l_sock_take (lua_State *L) {
  ur_sock *s = checksock(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, -1);
  size_t take = (n < 0 || (size_t)n > s->rlen) ? s->rlen : (size_t)n;
  lua_pushlstring(L, s->rbuf ? s->rbuf + s->rpos : "", take);
  consume(s, take);
  return 1;
}

/* sock:_closed() -> closed, listening, receiving, sending: the Lua
 * methods check these first, so "attempt to use a closed socket", "socket
 * is listening" and "socket is busy" name the caller's line */
static int l_sock_closed (lua_State *L) {
  ur_sock *s = checksock(L, 1);
  lua_pushboolean(L, s->h.fd < 0);
  lua_pushboolean(L, s->listener);
  lua_pushboolean(L, s->rbusy);
  lua_pushboolean(L, s->wbusy);
  return 4;
}

/* sock:_buffered() -> bytes waiting, eof, bytes ever received */
static int l_sock_buffered (lua_State *L) {
  ur_sock *s = checksock(L, 1);
  lua_pushinteger(L, (lua_Integer)s->rlen);
  lua_pushboolean(L, s->eof);
  lua_pushinteger(L, s->rin);
  return 3;
}

/* --- sending --- */

static void bg_send_cqe (ur_loop *loop, ur_req *r) {
  ur_req_free(loop, r);
}

static int send_k (lua_State *L, int status, lua_KContext ctx);

/* A send this small (an HTTP response head, a line of a chat) is pinned
 * through a send slot (strcache.c), or copied into memory the request
 * owns: either costs a fraction of pinning the string with a registry ref
 * and unref.  Bigger ones are pinned with a ref, not copied. */
#define SEND_COPY 1024

/* A whole send up to this size on a plain socket without a timeout goes
 * "behind": the request owns the bytes (copied or pinned) until its CQE,
 * and the task goes on at once, as a write(2) returns once the kernel
 * has the bytes.  It saves a task switch per response.  Only one is in
 * flight per socket: the next send, a shutdown, waits for it first, so a
 * slow reader still pushes back and the bytes keep their order.  It is
 * sent with MSG_WAITALL (the kernel retries a partial send itself), and
 * a failure is reported by the next send. */
#define SEND_BEHIND (64 * 1024)

static void behind_cqe (ur_loop *loop, ur_req *r) {
  ur_sock *s = (ur_sock *)r->obj;
  if (s) {
    if (s->behind == ur_req_ud(loop, r)) s->behind = 0;
    /* short only with an error whose errno the kernel kept to itself */
    if (r->res < 0 || (size_t)r->res < r->memlen) {
      if (s->behind_err == 0) s->behind_err = r->res < 0 ? r->res : -EPIPE;
      s->nobehind = 1;
    }
  }
  if (r->task) ur_req_wake(loop, r);   /* a task waits for it (wait_behind) */
  else ur_req_free(loop, r);
}

/* The socket's send-behind, if one is still in flight: the task waits for
 * it (resuming in k), so what it sends next goes after it.  Returns -1
 * when there is none. */
static int wait_behind (lua_State *L, ur_sock *s, ur_task *t,
                        lua_KContext ctx, lua_KFunction k) {
  ur_req *r;
  if (s->behind == 0) return -1;
  r = ur_req_at(t->loop, s->behind);
  if (r == NULL || r->state != UR_REQ_INFLIGHT || r->task != NULL) {
    s->behind = 0;
    return -1;
  }
  s->wbusy = 1;                 /* another task's send: "busy", as before */
  return ur_await(L, t, r, "send", ctx, k);
}

/* In wait_behind's continuation: the send-behind is done (its CQE
 * recorded any failure); NULL with the fail tuple pushed if the socket
 * closed meanwhile. */
static ur_sock *behind_done (lua_State *L, ur_task *t) {
  ur_req *r = ur_resumed(L, t);
  ur_sock *s = (ur_sock *)r->obj;
  ur_req_free(t->loop, r);
  if (s) s->wbusy = 0;
  if (s == NULL || s->h.fd < 0) {
    ur_pushclosed(L);
    return NULL;
  }
  ur_check_interrupt(L, t);
  return s;
}

/* The SEND request for src[0..n), src inside the string at stack index
 * pin, whose body starts at str: a small one is pinned through one of the
 * loop's send slots (strcache.c: no copy, no allocation) or, when its slot
 * is still busy with another string, copied into memory the request owns
 * until the CQE (malloc'd to size: a pooled 4 KiB I/O buffer would hold
 * 4 KiB per send in flight, 40 MB for a broadcast to 10k sockets); a
 * bigger one pins the string with a ref of its own.  With trp, the
 * request of the link timeout too (room for both SQEs is made first).
 * Raises (memory) before anything reaches the ring, holding nothing. */
static inline __attribute__((always_inline))
ur_req *send_req (lua_State *L, ur_loop *loop, ur_sock *s,
                         const char *str, const char *src, size_t n,
                         int pin, int flags, struct io_uring_sqe **sqep,
                         ur_req **trp) {
  ur_req *r = ur_req_new(L, loop, IORING_OP_SEND);
  struct io_uring_sqe *sqe;
  if (trp) {
    *trp = ur_req_new(NULL, loop, IORING_OP_LINK_TIMEOUT);
    if (*trp == NULL) {
      ur_req_free(loop, r);
      luaL_error(L, "send: not enough memory");
    }
    ur_reserve_sqes(loop, 2);   /* a chain reaches the kernel whole */
  }
  if (n <= SEND_COPY && ur_strcache_pin(L, loop, r, pin, str))
    ;                           /* pinned: the slot anchors the string */
  else if (n <= SEND_COPY) {
    r->mem = malloc(n ? n : 1);
    if (r->mem == NULL) {
      ur_req_free(loop, r);
      if (trp) ur_req_free(loop, *trp);
      luaL_error(L, "send: not enough memory");
    }
    memcpy(r->mem, src, n);
    src = (const char *)r->mem;
  }
  else
    ur_req_pin(L, r, pin);      /* pinned: the kernel reads it until the CQE */
  sqe = ur_get_sqe(loop);
  io_uring_prep_send(sqe, s->h.fd, src, n, flags);
  ur_handle_sqe(loop, &s->h, r, sqe);
  r->obj = s;
  r->memlen = n;
  *sqep = sqe;
  return r;
}

/* A send nobody waits for (SEND_BEHIND): its CQE frees it. */
static int send_behind (lua_State *L, ur_loop *loop, ur_sock *s,
                        const char *str, const char *src, size_t n, int pin) {
  struct io_uring_sqe *sqe;
  ur_req *r = send_req(L, loop, s, str, src, n, pin,
                       MSG_NOSIGNAL | MSG_WAITALL, &sqe, NULL);
  ur_req_submitted(loop, r, sqe);
  r->on_cqe = behind_cqe;
  r->task = NULL;
  s->behind = ur_req_ud(loop, r);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* Can a send of n bytes go behind?  (A kernel without SEND: the task
 * waits, and hears so from the CQE.  A send configure{send_zc} wants
 * zero copy for is send_now's: SEND_ZC, waited for.) */
static inline int can_go_behind (ur_loop *loop, ur_sock *s, size_t n) {
  return n <= SEND_BEHIND && s->timeout < 0 && !s->nobehind
         && !ur_op_missing(loop, IORING_OP_SEND)
         && (s->family == AF_UNIX || !ur_send_zc_wanted(loop, (lua_Integer)n));
}

/* Send data[from + done .. to): arguments 2 (data), 3 (i), 4 (j). */
static int start_send (lua_State *L, ur_sock *s, ur_task *t, size_t done) {
  size_t len, from = (size_t)lua_tointeger(L, 3), to = (size_t)lua_tointeger(L, 4);
  const char *data = lua_tolstring(L, 2, &len);
  ur_loop *loop = t->loop;
  ur_req *r, *tr = NULL;
  struct io_uring_sqe *sqe;
  size_t n = to - from - done;
  const char *src = data + from + done;
  (void)len;
  if (n > (size_t)INT32_MAX) n = (size_t)INT32_MAX;
  if (done == 0 && can_go_behind(loop, s, n))
    return send_behind(L, loop, s, data, src, n, 2);
  r = send_req(L, loop, s, data, src, n, 2, MSG_NOSIGNAL, &sqe,
               s->timeout >= 0 ? &tr : NULL);
  ur_req_submitted(loop, r, sqe);
  if (tr) ur_link_timeout_add(loop, tr, sqe, s->timeout);
  s->wbusy = 1;
  return ur_await(L, t, r, "send", (lua_KContext)done, send_k);
}

/* A send of mem[0..n), which the request owns from here on (freed with
 * it, or here if no request can be had): a TLS socket's ciphertext
 * (tls.c).  Its continuation k ends it with ur_sock_recv_result, which
 * gives what the kernel did not take back to tls.c. */
int ur_sock_send_mem (lua_State *L, ur_sock *s, ur_task *t, int flow,
                      char *mem, size_t n, lua_KContext ctx,
                      lua_KFunction k) {
  ur_loop *loop = t->loop;
  ur_req *tr = NULL, *r;
  struct io_uring_sqe *sqe;
  if (s->timeout >= 0) {
    tr = ur_req_new(NULL, loop, IORING_OP_LINK_TIMEOUT);
    if (tr) ur_reserve_sqes(loop, 2);
  }
  r = ur_req_new(NULL, loop, IORING_OP_SEND);
  if (r == NULL || (s->timeout >= 0 && tr == NULL)) {
    if (r) ur_req_free(loop, r);
    if (tr) ur_req_free(loop, tr);
    free(mem);
    return luaL_error(L, "send: not enough memory");
  }
  r->mem = mem;                 /* owned: the kernel reads it until the CQE */
  r->memlen = n;
  r->aux = flow;
  sqe = ur_get_sqe(loop);
  io_uring_prep_send(sqe, s->h.fd, mem, n, MSG_NOSIGNAL);
  ur_handle_sqe(loop, &s->h, r, sqe);
  r->obj = s;
  ur_req_submitted(loop, r, sqe);
  if (tr) ur_link_timeout_add(loop, tr, sqe, s->timeout);
  s->wbusy = 1;
  return ur_await(L, t, r, "send", ctx, k);
}

/* A NOP whose completion resumes k like a receive's: tls.c's way to run
 * its decryption in a receive continuation when the bytes are already
 * in OpenSSL's hands (a send's handshake read them). */
int ur_sock_kick (lua_State *L, ur_sock *s, ur_task *t, lua_KContext ctx,
                  lua_KFunction k) {
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_NOP);
  struct io_uring_sqe *sqe = ur_get_sqe(t->loop);
  io_uring_prep_nop(sqe);
  r->obj = s;
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "recv", ctx, k);
}

/* A send nobody waits for (a TLS close_notify, on close): queued before
 * the close cancels what is in flight, it goes out first.  Its SQE, or
 * NULL if none could be had (shutdown links its own to it). */
struct io_uring_sqe *ur_sock_send_bg (ur_loop *loop, ur_sock *s, char *mem,
                                      size_t n) {
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (!loop->ring_ok || loop->closing || ur_foreign(loop)
      || (r = ur_req_new(NULL, loop, IORING_OP_SEND)) == NULL) {
    free(mem);
    return NULL;
  }
  r->mem = mem;
  r->memlen = n;
  sqe = ur_get_sqe(loop);
  io_uring_prep_send(sqe, s->h.fd, mem, n, MSG_NOSIGNAL);
  ur_handle_sqe(loop, &s->h, r, sqe);
  r->on_cqe = bg_send_cqe;
  ur_req_submitted(loop, r, sqe);
  r->task = NULL;               /* nobody's: its CQE frees it */
  return sqe;
}

/* A send that failed part way: the fail triple (n values pushed) and
 * the bytes that did go out. */
static int send_failed (lua_State *L, int n, size_t done) {
  lua_pushinteger(L, (lua_Integer)done);
  return n + 1;
}

/* Bytes the kernel sent are reported whatever came next: a close by
 * another task that cancelled the rest, a timeout, an interrupt after
 * the last byte. */
static int send_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  ur_sock *s = (ur_sock *)r->obj;   /* as ur_sock_recv_result's */
  int res = r->res;
  size_t done = (size_t)ctx;
  size_t total = (size_t)(lua_tointeger(L, 4) - lua_tointeger(L, 3));
  (void)status;
  ur_req_free(t->loop, r);
  if (res > 0) done += (size_t)res;
  if (s) s->wbusy = 0;
  if (done >= total) {
    lua_pushinteger(L, (lua_Integer)done);
    return 1;
  }
  if (s == NULL || s->h.fd < 0) return send_failed(L, ur_pushclosed(L), done);
  ur_check_interrupt(L, t);
  if (res < 0 && res != -EINTR && res != -EAGAIN) {
    s->nobehind = 1;
    return send_failed(L, ur_sock_fail(L, s, res), done);
  }
  return start_send(L, s, t, done);   /* the rest of a short send */
}

static int send_failed (lua_State *L, int n, size_t done);

/* The send proper, once no send-behind is in flight: stack 1 socket,
 * 2 data, 3 from, 4 to */
static int send_now (lua_State *L, ur_sock *s, ur_task *t) {
  if (s->behind_err) {          /* said once; later sends ask the kernel */
    int err = s->behind_err;
    s->behind_err = 0;
    return send_failed(L, ur_sock_fail(L, s, err), 0);
  }
  if (s->tls) return ur_tls_send(L, s, t);   /* encrypt, then send */
  if (s->family != AF_UNIX     /* the kernel has zero copy for TCP only */
      && ur_send_zc_wanted(t->loop, lua_tointeger(L, 4) - lua_tointeger(L, 3)))
    return ur_sock_send_zc(L, s, t, 0);     /* send_zc.c: zero copy */
  return start_send(L, s, t, 0);
}

static int send_behind_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_sock *s = behind_done(L, t);
  (void)status; (void)ctx;
  if (s == NULL) return send_failed(L, 3, 0);
  return send_now(L, s, t);
}

static int send_checked (lua_State *L, ur_loop *loop, ur_sock *s);

/* sock:send(data [, i [, j]]) -> bytes sent (all of data[i..j]) | fail
 * A response sent with nothing else in flight on the socket goes behind
 * without touching the stack: no continuation will read it. */
static int l_sock_send (lua_State *L) {
  ur_loop *loop = ur_loop_at(L);
  ur_sock *s = (ur_sock *)lua_touserdata(L, 1);
  size_t len;
  const char *data;
  /* a server's answer: sock:send(string) on the socket last checked
   * (loop->sock_hot only ever names a live socket), nothing in flight
   * on it, going behind: what the general way below does for it, with
   * no i, j to work out */
  if (s != NULL && s == loop->sock_hot && lua_gettop(L) == 2
      && s->h.fd >= 0 && s->behind == 0 && s->behind_err == 0
      && s->tls == NULL && !s->listener && !s->wbusy
      && (data = lua_tolstring(L, 2, &len)) != NULL && len > 0
      && can_go_behind(loop, s, len)) {
    ur_task_current_in(L, loop, "send");   /* raises outside a task */
    return send_behind(L, loop, s, data, data, len, 2);
  }
  return send_checked(L, loop, s);
}

/* sock:send's every case: the socket checked, i and j worked out */
static int send_checked (lua_State *L, ur_loop *loop, ur_sock *s) {
  if (s == NULL || s != loop->sock_hot) {
    s = checksock_in(L, loop, 1);
    loop->sock_hot = s;         /* a socket: the next call skips the check */
  }
  int top = lua_gettop(L);
  size_t len;
  const char *data;
  lua_Integer i = 1, j = -1;
  ur_task *t;
  int w;
  if (s->h.fd < 0) return luaL_error(L, "attempt to use a closed socket");
  if ((data = lua_tolstring(L, 2, &len)) == NULL)
    data = luaL_checklstring(L, 2, &len);   /* raises: not a string */
  if (top >= 3) {
    i = luaL_optinteger(L, 3, 1);
    j = luaL_optinteger(L, 4, -1);
  }
  /* string.sub's rules for i and j */
  if (i < 0) i = (lua_Integer)len + i + 1;
  if (i < 1) i = 1;
  if (j < 0) j = (lua_Integer)len + j + 1;
  if (j > (lua_Integer)len) j = (lua_Integer)len;
  t = ur_task_current_in(L, loop, "send");
  if (s->listener) return luaL_error(L, "send: socket is listening");
  if (s->wbusy)
    return luaL_error(L, "send: socket is busy (another task is sending)");
  if (i > j) {
    lua_pushinteger(L, 0);
    return 1;
  }
  if (s->behind == 0 && s->behind_err == 0 && s->tls == NULL
      && can_go_behind(loop, s, (size_t)(j - i + 1)))
    return send_behind(L, loop, s, data, data + i - 1, (size_t)(j - i + 1),
                       2);
  lua_settop(L, 2);
  lua_pushinteger(L, i - 1);    /* 3: from (0-based) */
  lua_pushinteger(L, j);        /* 4: to (exclusive) */
  if ((w = wait_behind(L, s, t, 0, send_behind_k)) >= 0) return w;
  return send_now(L, s, t);
}

/* The whole string at stack index idx sent behind, as sock:send would
 * send it, when it can be at once: a task's own send on a plain socket
 * with nothing in flight (http_serve.c: a response sent from C without
 * a call of the Lua method).  Returns 1 with the byte count pushed, or 0
 * with nothing done: then sock:send is the way (its checks, its waits,
 * its errors). */
int ur_sock_send_behind (lua_State *L, ur_sock *s, int idx) {
  ur_loop *loop = ur_loop_of(L);
  size_t n;
  const char *data = lua_tolstring(L, idx, &n);
  if (s->h.fd < 0 || s->listener || s->wbusy || s->behind != 0
      || s->behind_err != 0 || s->tls != NULL || n == 0
      || !can_go_behind(loop, s, n))
    return 0;
  return send_behind(L, loop, s, data, data, n, idx);
}

/* sock:sendfile (copy.c) sends through the socket's handle: checked as
 * sock:send checks (raises: closed, listening, busy); the sending side is
 * taken with ur_sock_sending(s, 1) once nothing can raise any more. */
ur_handle *ur_sock_send_handle (lua_State *L, int idx, ur_sock **sp) {
  ur_sock *s = checksock(L, idx);
  if (s->h.fd < 0) luaL_error(L, "attempt to use a closed socket");
  if (s->listener) luaL_error(L, "sendfile: socket is listening");
  if (s->wbusy)
    luaL_error(L, "sendfile: socket is busy (another task is sending)");
  *sp = s;
  return &s->h;
}

void ur_sock_sending (ur_sock *s, int busy) { s->wbusy = busy ? 1 : 0; }

/* sock:sendfile's bytes go after a send-behind still in flight (its own
 * syscalls would overtake it): wait as a send waits.  -1: none. */
int ur_sock_wait_behind (lua_State *L, ur_sock *s, ur_task *t,
                         lua_KContext ctx, lua_KFunction k) {
  return wait_behind(L, s, t, ctx, k);
}

ur_sock *ur_sock_behind_done (lua_State *L, ur_task *t) {
  return behind_done(L, t);
}

/* Before the socket moves to another worker (msg_ring.c): the send-behind
 * goes out, and the early RECV (early_wait) is cancelled and its bytes,
 * if any came, buffered, so they move with it.  In k, ur_sock_behind_done
 * ends either wait.  -1: nothing in flight. */
int ur_sock_settle (lua_State *L, ur_sock *s, ur_task *t,
                    lua_KContext ctx, lua_KFunction k) {
  ur_req *r;
  int n = wait_behind(L, s, t, ctx, k);
  if (n >= 0 || (r = early_pending(t->loop, s)) == NULL) return n;
  s->early = 0;
  ur_req_cancel(t->loop, r);
  s->wbusy = 1;                 /* behind_done clears it */
  return ur_await(L, t, r, "recv", ctx, k);
}

/* --- accepting: one multishot ACCEPT per listener --- */

static int arm_accept (lua_State *L, ur_loop *loop, ur_sock *s);

static void wake_acceptor (ur_loop *loop, ur_sock *s) {
  ur_waitq_wake_one(loop, &s->acceptors);
}

/* Room for one more pending connection; 0 when out of memory. */
static int pend_room (ur_sock *s) {
  size_t cap;
  struct pend *np;
  if (s->plen < s->pcap) return 1;
  cap = s->pcap ? s->pcap * 2 : 16;
  np = (struct pend *)malloc(cap * sizeof *np);
  if (np == NULL) return 0;
  for (size_t i = 0; i < s->plen; i++)
    np[i] = s->pend[(s->phead + i) % s->pcap];
  free(s->pend);
  s->pend = np;
  s->pcap = cap;
  s->phead = 0;
  return 1;
}

/* The early RECV's CQE.  A task waiting on it (the socket's first
 * receive adopted it): an ordinary receive's CQE.  Otherwise its bytes
 * (or EOF) go where the first receive will look: the pending entry of a
 * connection not yet taken (r->obj the listener), or the socket's buffer
 * (r->obj the socket).  r->obj is NULL once nobody can take them. */
static void early_cqe (ur_loop *loop, ur_req *r) {
  ur_sock *s = (ur_sock *)r->obj;
  uint64_t ud = ur_req_ud(loop, r);
  int res = r->res, eof = res == 0;
  const char *data = NULL;
  if (r->task) {
    recv_cqe(loop, r);
    return;
  }
  /* the group ran dry, as for any receive (ur_sock_recv_result) */
  int ownbuf = res == -ENOBUFS && !ur_bufring_grow(loop);
  if (r->cflags & IORING_CQE_F_BUFFER)
    data = ur_bufring_data(loop, r->cflags >> IORING_CQE_BUFFER_SHIFT);
  if (res > 0 && data) ur_kernel_wrote(data, (size_t)res);
  else res = 0;                 /* an error (ENOBUFS, a reset): the first
                                   receive asks the kernel itself */
  if (s && s->listener) {
    for (size_t i = 0; i < s->plen; i++) {
      struct pend *e = &s->pend[(s->phead + i) % s->pcap];
      if (e->early != ud) continue;
      e->early = 0;
      e->eof = eof;
      e->ownbuf = ownbuf;
      if (res > 0 && (e->bytes = (char *)malloc((size_t)res)) == NULL)
        e->nomem = 1;           /* out of memory: never skip bytes */
      else if (res > 0) {
        memcpy(e->bytes, data, (size_t)res);
        e->n = (size_t)res;
      }
      break;
    }
  }
  else if (s && s->h.fd >= 0) {
    if (s->early == ud) s->early = 0;
    if (eof) s->eof = 1;
    else if (res > 0 && !append(s, data, (size_t)res)) s->nomem = 1;
    if (ownbuf) s->ownbuf = 1;
  }
  if (r->cflags & IORING_CQE_F_BUFFER)
    ur_bufring_recycle(loop, r->cflags >> IORING_CQE_BUFFER_SHIFT);
  ur_req_free(loop, r);
}

/*
 * A connection was just accepted (in the reaper, before any task runs):
 * queue its first RECV now, into a provided buffer, so it goes out with
 * the next enter and the client's request, which usually comes with the
 * connection, is already buffered or on its way when the serving task
 * first receives (it adopts this RECV: early_wait).  A connection that
 * never speaks holds no buffer meanwhile (buffer select), only the
 * request.  Only for listeners made with opts.first_recv, whose owner
 * reads its connections itself (uring.http): the RECV takes bytes out of
 * the kernel, so whoever reads the fd by other means would miss them
 * (sock:fd() settles it first).  Not for TLS listeners: OpenSSL reads the
 * first bytes in the handshake, which the serving task runs.  Out of
 * memory or without provided buffers: no early RECV, the first receive
 * asks as before.
 */
static void early_recv (ur_loop *loop, ur_sock *s, struct pend *e,
                        int untraced) {
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (!s->first_recv || s->tls_ctx || ur_bufring_ensure(loop) != 0) return;
  r = ur_req_new(NULL, loop, IORING_OP_RECV);
  if (r == NULL) return;
  sqe = ur_get_sqe(loop);
  io_uring_prep_recv(sqe, e->h.fd, NULL, UR_BR_SIZE, 0);
  ur_handle_sqe(loop, &e->h, r, sqe);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = UR_BGID;
  r->on_cqe = early_cqe;
  r->obj = s;
  r->memlen = UR_BR_SIZE;
  r->untraced = untraced;       /* as its listener's ACCEPT (the REPL's) */
  ur_req_submitted(loop, r, sqe);
  r->task = NULL;               /* no task waits on it yet */
  loop->lazy++;                 /* nor must it cost an enter of its own: the
                                   turn's next enter carries it (loop.c) */
  e->early = ur_req_ud(loop, r);
}

static void accept_cqe (ur_loop *loop, ur_req *r) {
  ur_sock *s = (ur_sock *)r->obj;
  int res = r->res, more = (r->cflags & IORING_CQE_F_MORE) != 0;
  if (res >= 0) {
    struct pend *e;
    if (s == NULL || s->h.fd < 0) ur_fd_release(res);   /* nobody can take it */
    else if (!pend_room(s)) {   /* no room to keep it: accept() says so */
      ur_fd_release(res);
      s->accept_err = -ENOMEM;
    }
    else {
      e = &s->pend[(s->phead + s->plen) % s->pcap];
      memset(e, 0, sizeof *e);
      ur_handle_init(&e->h);
      if (ur_handle_adopt(loop, &e->h, res) < 0) s->accept_err = -ENOMEM;
      else {
        s->plen++;
        early_recv(loop, s, e, r->untraced);
      }
    }
  }
  else if (s && res != -ECANCELED)
    s->accept_err = res;
  if (!more) {                  /* the kernel ended the multishot */
    if (s) s->armed = 0;
    ur_req_free(loop, r);
    if (s && s->h.fd >= 0 && s->acceptors.head && s->accept_err == 0)
      arm_accept(NULL, loop, s);
  }
  if (s) wake_acceptor(loop, s);
}

/* L may be NULL (from a handler): then failure is reported to accept() */
static int arm_accept (lua_State *L, ur_loop *loop, ur_sock *s) {
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (s->armed) return 1;
  r = ur_req_new(L, loop, IORING_OP_ACCEPT);
  if (r == NULL) {
    s->accept_err = -ENOMEM;
    return 0;
  }
  r->makes_fd = 1;
  sqe = ur_get_sqe(loop);
  io_uring_prep_multishot_accept(sqe, s->h.fd, NULL, NULL, SOCK_CLOEXEC);
  ur_handle_sqe(loop, &s->h, r, sqe);
  r->on_cqe = accept_cqe;
  r->obj = s;
  r->task = NULL;
  ur_req_submitted(loop, r, sqe);
  r->task = NULL;               /* owned by the listener, not a task */
  s->armed = 1;
  return 1;
}

static int accept_k (lua_State *L, int status, lua_KContext ctx);

/* settimeout's limit on accept: accept has no request of its own to link
 * a timeout to, so a plain timer takes the task out of the queue. */
static void accept_timer_cqe (ur_loop *loop, ur_req *r) {
  ur_task *t = r->task;
  int fired = r->res == -ETIME && r->obj != NULL;
  ur_req_free(loop, r);
  if (fired && t) ur_task_unpark(loop, t);
}

static uint64_t arm_accept_timer (lua_State *L, ur_sock *s, ur_task *t) {
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_TIMEOUT);
  struct io_uring_sqe *sqe = ur_get_sqe(t->loop);
  ur_set_ts(&r->u.ts, s->timeout);
  io_uring_prep_timeout(sqe, &r->u.ts, 0, 0);
  r->on_cqe = accept_timer_cqe;
  r->obj = s;
  ur_req_submitted(t->loop, r, sqe);
  r->task = t;
  return ur_req_ud(t->loop, r);
}

/* The accept is over: its timer, if still pending, has nobody to wake. */
static void disarm_accept_timer (ur_loop *loop, uint64_t ud) {
  ur_req *r = ud ? ur_req_at(loop, ud) : NULL;
  if (r == NULL) return;
  r->task = NULL;
  r->obj = NULL;
  ur_req_cancel(loop, r);
}

static int try_accept (lua_State *L, ur_sock *s, ur_task *t, uint64_t timer) {
  if (s->h.fd < 0 || s->plen > 0 || s->accept_err)
    disarm_accept_timer(t->loop, timer);
  if (s->h.fd < 0) return ur_sock_fail(L, s, -EBADF);
  if (s->plen > 0) {
    /* the owner first: if it cannot be made, the connection stays queued */
    ur_sock *c = newsock(L, s->family);
    struct pend *e = &s->pend[s->phead];
    ur_req *er = e->early ? ur_req_at(t->loop, e->early) : NULL;
    int ret;
    s->phead = (s->phead + 1) % s->pcap;
    s->plen--;
    c->h = e->h;                /* the fd table entry, with the early RECV
                                   on its list, stays as it is */
    ur_handle_fix(t->loop, &c->h);
    c->rbuf = e->bytes;         /* what the early RECV brought, in order */
    c->rcap = c->rlen = e->n;
    c->rin = (lua_Integer)e->n;
    c->eof = e->eof;
    c->nomem = e->nomem;
    c->ownbuf = e->ownbuf;
    if (er) {                   /* still in flight: the socket's now */
      er->obj = c;
      c->early = e->early;
    }
    /* a TLS listener's connection: its handshake runs in its first
     * receive or send, in the task that serves it, not in accept */
    if (s->tls_ctx && (ret = ur_tls_attach(c, s->tls_ctx, NULL)) < 0) {
      ur_handle_close(t->loop, &c->h, NULL);
      return ur_pushfail(L, ret, "accept");
    }
    return 1;
  }
  if (s->accept_err) {
    int err = s->accept_err;
    s->accept_err = 0;
    return ur_pushfail(L, err, "accept");
  }
  if (!s->armed) arm_accept(L, t->loop, s);
  if (timer && ur_req_at(t->loop, timer) == NULL) {   /* it fired */
    luaL_pushfail(L);
    lua_pushliteral(L, "timeout");
    lua_pushinteger(L, ETIME);
    return 3;
  }
  if (!timer && s->timeout >= 0) timer = arm_accept_timer(L, s, t);
  return ur_park(L, t, &s->acceptors, "accept", (lua_KContext)timer, accept_k);
}

static int accept_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  (void)status;
  if (t == NULL)
    return luaL_error(L, "a task can only be resumed by the uring loop");
  if (ur_interrupted(t)) {
    ur_sock *s = checksock(L, 1);
    disarm_accept_timer(t->loop, (uint64_t)ctx);
    /* It may have been woken for a connection it will now not take (a
     * cancel landing between the wake and the resume): pass the wakeup
     * on, or the connection waits while the next acceptor sleeps. */
    if (s->h.fd >= 0 && (s->plen > 0 || s->accept_err))
      wake_acceptor(t->loop, s);
    ur_check_interrupt(L, t);
  }
  return try_accept(L, checksock(L, 1), t, (uint64_t)ctx);
}

/* server:accept() -> sock | fail (nil, "timeout", 62 after settimeout) */
static int l_sock_accept (lua_State *L) {
  ur_sock *s = tosock(L);
  ur_task *t;
  if (!s->listener) return luaL_error(L, "accept: socket is not listening");
  t = ur_task_current(L, "accept");
  lua_settop(L, 1);
  return try_accept(L, s, t, 0);
}

/* --- making sockets: resolve, IORING_OP_SOCKET, then connect or listen --- */

typedef struct conn_args {   /* kept on the task's stack as a userdata */
  ur_addr addr;
  int listen, backlog, reuseport, first_recv;
  char what[96];             /* "host:port" for messages */
} conn_args;

static int socket_k (lua_State *L, int status, lua_KContext ctx);
static int socket_made (lua_State *L, ur_task *t, int res);
static int connect_k (lua_State *L, int status, lua_KContext ctx);

/* Stack: 1..3 arguments, 4: conn_args, 5: the socket, still closed (its
 * owner exists before the fd does: out of memory cannot leak the fd).
 * Make the socket: IORING_OP_SOCKET, or, on a kernel without it (5.19),
 * socket(2), a set-up call as bind and listen are. */
static int start_socket (lua_State *L, ur_task *t) {
  conn_args *a = (conn_args *)lua_touserdata(L, 4);
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (ur_op_missing(t->loop, IORING_OP_SOCKET)) {
    int fd = socket(a->addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    return socket_made(L, t, fd < 0 ? -errno : fd);
  }
  r = ur_req_new(L, t->loop, IORING_OP_SOCKET);
  sqe = ur_get_sqe(t->loop);
  r->makes_fd = 1;
  io_uring_prep_socket(sqe, a->addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC,
                       0, 0);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "socket", 0, socket_k);
}

static int resolved_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  conn_args *a = (conn_args *)lua_touserdata(L, 4);
  (void)status; (void)ctx;
  if (ur_resolved(L, t, &a->addr) != 0) return 3;
  lua_settop(L, 5);
  return start_socket(L, t);
}

static int setup_listener (lua_State *L, ur_loop *loop, ur_sock *s,
                           conn_args *a) {
  int one = 1;
  setsockopt(s->h.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (a->reuseport)
    setsockopt(s->h.fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(s->h.fd, (struct sockaddr *)&a->addr.ss, a->addr.len) != 0 ||
      listen(s->h.fd, a->backlog) != 0) {
    int err = errno;
    ur_handle_close(loop, &s->h, NULL);
    return ur_pushfail(L, -err, a->what);
  }
  s->listener = 1;
  s->first_recv = a->first_recv ? 1 : 0;
  return 0;
}

static int socket_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res;
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  return socket_made(L, t, res);
}

/* The socket's fd, or -errno: connect it, or make it listen. */
static int socket_made (lua_State *L, ur_task *t, int res) {
  conn_args *a = (conn_args *)lua_touserdata(L, 4);
  ur_sock *s = checksock(L, 5);
  if (res >= 0 && ur_interrupted(t)) ur_fd_release(res);   /* nobody will get it */
  ur_check_interrupt(L, t);
  if (res >= 0) res = ur_handle_adopt(t->loop, &s->h, res);
  if (res < 0) return ur_pushfail(L, res, a->what);
  s->family = a->addr.ss.ss_family;
  lua_settop(L, 5);
  if (a->listen) {
    if (setup_listener(L, t->loop, s, a)) return 3;
    arm_accept(L, t->loop, s);
    return 1;
  }
  ur_handle_fix(t->loop, &s->h);   /* the CONNECT names the slot too */
  {
    ur_req *c = ur_req_new(L, t->loop, IORING_OP_CONNECT);
    struct io_uring_sqe *sqe;
    ur_req_pin(L, c, 4);        /* the address, read by the kernel */
    sqe = ur_get_sqe(t->loop);
    io_uring_prep_connect(sqe, s->h.fd, (struct sockaddr *)&a->addr.ss,
                          a->addr.len);
    ur_handle_sqe(t->loop, &s->h, c, sqe);
    ur_req_submitted(t->loop, c, sqe);
    return ur_await(L, t, c, "connect", 0, connect_k);
  }
}

static int connect_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  conn_args *a = (conn_args *)lua_touserdata(L, 4);
  ur_sock *s = checksock(L, 5);
  int res = r->res;
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  if (res < 0 || ur_interrupted(t))     /* a failed or unwanted socket */
    ur_handle_close(t->loop, &s->h, NULL);
  ur_check_interrupt(L, t);
  if (res < 0) return ur_pushfail(L, res, a->what);
  lua_settop(L, 5);
  if (s->tls_ctx) return ur_tls_connect(L, t, s);   /* the handshake */
  return 1;
}

/* Stack 1..3: the arguments.  Push 4, the conn_args, and 5, the socket
 * (closed until IORING_OP_SOCKET has made its fd). */
static conn_args *push_conn (lua_State *L, int listening, int family) {
  conn_args *a = (conn_args *)lua_newuserdatauv(L, sizeof *a, 0);   /* 4 */
  memset(a, 0, sizeof *a);
  a->listen = listening;
  a->backlog = 511;
  newsock(L, family);                                              /* 5 */
  return a;
}

/* opts[key] of the table at index t (argument t): false when absent. */
static int boolfield (lua_State *L, int t, const char *key) {
  int type = lua_getfield(L, t, key), v = lua_toboolean(L, -1);
  if (type != LUA_TNIL && type != LUA_TBOOLEAN)
    luaL_argerror(L, t, lua_pushfstring(L, "%s must be a boolean, got %s",
                                        key, luaL_typename(L, -1)));
  lua_pop(L, 1);
  return v;
}

/* Shared by connect and listen: parse, resolve if needed, make. */
static int open_stream (lua_State *L, int listening, const char *fname) {
  const char *host = ur_optcstr(L, 1, "host", "*");
  lua_Integer port = luaL_checkinteger(L, 2);
  conn_args *a;
  ur_task *t;
  int numeric;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  t = ur_task_current(L, fname);
  a = push_conn(L, listening, AF_INET);
  if (lua_istable(L, 3)) {
    a->backlog = (int)ur_intfield(L, 3, 3, "backlog", 511, 0, INT32_MAX);
    lua_getfield(L, 3, "reuseport");
    a->reuseport = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (listening) a->first_recv = boolfield(L, 3, "first_recv");
    /* opts.tls: the socket holds the context until its handshake starts
     * (connect) or it closes (listen) */
    ur_tls_opts(L, 3, checksock(L, 5), listening, fname);
  }
  snprintf(a->what, sizeof a->what, "%s:%d", host, (int)port);
  numeric = ur_addr_numeric(strcmp(host, "*") == 0 && !listening
                              ? "127.0.0.1" : host, (int)port, &a->addr);
  if (numeric) return start_socket(L, t);
  return ur_resolve(L, t, host, (int)port, SOCK_STREAM, 0, resolved_k);
}

/* uring.connect(host, port [, opts]) -> sock | fail */
static int l_connect (lua_State *L) { return open_stream(L, 0, "connect"); }

/* uring.listen(host, port [, opts]) -> server | fail
 * opts: backlog (511), reuseport (false), first_recv (false) */
static int l_listen (lua_State *L) { return open_stream(L, 1, "listen"); }

/* uring.connect_unix(path) / uring.listen_unix(path [, opts]) */
static int open_unix (lua_State *L, int listening, const char *fname) {
  const char *path = ur_checkpath(L, 1);
  conn_args *a;
  ur_task *t;
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushnil(L);               /* 3: keep the stack layout of open_stream */
  t = ur_task_current(L, fname);
  a = push_conn(L, listening, AF_UNIX);
  if (!ur_addr_unix(path, &a->addr))
    return luaL_argerror(L, 1, "path too long for a Unix socket");
  if (lua_istable(L, 2)) {
    a->backlog = (int)ur_intfield(L, 2, 2, "backlog", 511, 0, INT32_MAX);
  }
  snprintf(a->what, sizeof a->what, "%s", path);
  return start_socket(L, t);
}

static int l_connect_unix (lua_State *L) { return open_unix(L, 0, "connect_unix"); }
static int l_listen_unix (lua_State *L) { return open_unix(L, 1, "listen_unix"); }

/* --- the rest of a socket's life --- */

/* sock:settimeout(seconds | nil): each later receive, send and accept
 * wait at most this long; then nil, "timeout", ETIME. */
static int l_sock_settimeout (lua_State *L) {
  ur_sock *s = tosock(L);
  /* nil, negative or math.huge: no limit; NaN raises (ur_checklimit) */
  s->timeout = ur_checklimit(L, 2);
  lua_pushinteger(L, 1);        /* as LuaSocket's settimeout */
  return 1;
}

static int shutdown_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res;
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  ur_check_interrupt(L, t);
  if (res < 0) return ur_pushfail(L, res, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int shutdown_behind_k (lua_State *L, int status, lua_KContext ctx);
static int start_shutdown (lua_State *L, ur_sock *s, ur_task *t, int how);

/* sock:shutdown([how]) -- "both" (default), "send", "receive" */
static int l_sock_shutdown (lua_State *L) {
  static const int hows[] = {SHUT_RDWR, SHUT_WR, SHUT_RD};
  static const char *const names[] = {"both", "send", "receive", NULL};
  ur_sock *s = tosock(L);
  int how = hows[luaL_checkoption(L, 2, "both", names)];
  ur_task *t = ur_task_current(L, "shutdown");
  int w = wait_behind(L, s, t, (lua_KContext)how, shutdown_behind_k);
  if (w >= 0) return w;
  return start_shutdown(L, s, t, how);
}

/* after a send-behind: the shutdown goes after its bytes */
static int shutdown_behind_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_sock *s = behind_done(L, t);
  (void)status;
  if (s == NULL) return 3;
  return start_shutdown(L, s, t, (int)ctx);
}

static int start_shutdown (lua_State *L, ur_sock *s, ur_task *t, int how) {
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_SHUTDOWN);
  struct io_uring_sqe *sqe, *notify = NULL;
  if (how != SHUT_RD) s->nobehind = 1;   /* a send now fails: say so at once */
  /* TLS: our close_notify goes first, linked, so the peer reads a clean
   * end rather than a truncation; no raise from here on */
  ur_reserve_sqes(t->loop, 2);
  if (s->tls && how != SHUT_RD) notify = ur_tls_notify(t->loop, s);
  if (notify) notify->flags |= IOSQE_IO_LINK;
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_shutdown(sqe, s->h.fd, how);
  ur_handle_sqe(t->loop, &s->h, r, sqe);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "shutdown", 0, shutdown_k);
}

/* Close now, from anywhere: what is in flight on the socket is cancelled
 * and its fd closed once the last of it is back (handle.c); tasks blocked
 * in accept() wake and see "closed". */
static void sock_close (ur_loop *loop, ur_sock *s, int gc) {
  if (s->tls_ctx) ur_tls_ctx_release(&s->tls_ctx);
  if (s->h.fd < 0) {            /* closed before: what is still in flight */
    if (gc) ur_handle_close(loop, &s->h, s);   /* forgets this memory */
    return;
  }
  if (s->tls) ur_tls_close(loop, s);   /* close_notify goes out first */
  /* accepted, never taken: their early RECVs must not touch s from here
   * on (closing may reap, now or later) */
  for (size_t i = 0; i < s->plen; i++) {
    struct pend *e = &s->pend[(s->phead + i) % s->pcap];
    ur_req *r = e->early ? ur_req_at(loop, e->early) : NULL;
    if (r) r->obj = NULL;
  }
  if (s->listener) ur_handle_close(loop, &s->h, gc ? s : NULL);
  else ur_handle_close_lazy(loop, &s->h, gc ? s : NULL);
  while (s->plen > 0) {         /* ... each closed by the one close path:
                                   after its early RECV's CQE, if any */
    struct pend *e = &s->pend[s->phead];
    s->phead = (s->phead + 1) % s->pcap;
    s->plen--;
    ur_handle_close_lazy(loop, &e->h, NULL);
    free(e->bytes);
  }
  free(s->pend);
  s->pend = NULL;
  s->pcap = 0;
  ur_waitq_wake_all(loop, &s->acceptors);
  if (!s->rbusy) rbuf_drop(loop, s);
}

static int close_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res;
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  if (res < 0) return ur_pushfail(L, res, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_sock_close (lua_State *L);

/* the socket's multishot receive has ended (or a data CQE came first):
 * close again */
static int close_mshot_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = t ? ur_req_at(t->loop, t->wait_ud) : NULL;
  ur_sock *s;
  int flow;
  (void)status; (void)ctx;
  if (t == NULL)
    return luaL_error(L, "a task can only be resumed by the uring loop");
  if (r == NULL || !ur_mshot_owns(r))
    return luaL_error(L, "uring: internal error: resumed without a completion");
  ur_mshot_result(t->loop, t, r, &s, &flow);   /* bytes: dropped with it */
  if (s) s->rbusy = 0;
  lua_settop(L, 1);
  return l_sock_close(L);
}

/* sock:close(): in a task, with nothing in flight on the socket, the
 * close itself goes through the ring (IORING_OP_CLOSE, if the kernel has
 * it); otherwise (other tasks to wake, a listener, outside a task) it
 * cancels and closes now.  A multishot receive armed with nobody waiting
 * on it (recv_multishot.c) is ended first and waited for, so it does not
 * make the close a deferred one.
 * __close and __gc always take the second path. */
static int l_sock_close (lua_State *L) {
  ur_sock *s = checksock(L, 1);
  ur_loop *loop = ur_loop_of(L);
  ur_task *t = ur_task_of(L);
  int n;
  if (s->h.fd < 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (s->ms.ud && !s->rbusy && !s->tls && t && lua_isyieldable(L)
      && !ur_interrupted(t) && ur_handle_inflight(loop, &s->h) == 1
      && (n = ur_mshot_close(L, s, t, 0, close_mshot_k)) >= 0)
    return n;
  if (s->tls) ur_tls_close(loop, s);   /* close_notify: now in flight */
  if (t && lua_isyieldable(L) && !ur_interrupted(t) && !s->listener
      && ur_handle_inflight(loop, &s->h) == 0
      && !ur_op_missing(loop, IORING_OP_CLOSE)) {
    ur_req *r = ur_req_new(L, loop, IORING_OP_CLOSE);  /* may raise: first */
    struct io_uring_sqe *sqe;
    ur_reserve_sqes(loop, 2);   /* the CLOSE, and its slot's removal */
    sqe = ur_get_sqe(loop);
    ur_handle_close_sqe(loop, &s->h, r, sqe);
    rbuf_drop(loop, s);
    ur_req_submitted(loop, r, sqe);
    lua_settop(L, 1);
    return ur_await(L, t, r, "close", 0, close_k);
  }
  sock_close(loop, s, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* __gc: the memory is going away; requests still in flight (a cancelled
 * multishot accept whose last CQE is yet to come) must not touch it. */
static int l_sock_gc (lua_State *L) {
  ur_sock *s = (ur_sock *)luaL_testudata(L, 1, UR_SOCK_MT);
  ur_loop *loop = ur_loop_of(L);
  if (s == NULL) return 0;
  if (loop->sock_hot == s) loop->sock_hot = NULL;   /* memory going */
  sock_close(loop, s, 1);
  rbuf_drop(loop, s);
  return 0;
}

static int l_sock_closemm (lua_State *L) {
  ur_sock *s = checksock(L, 1);
  if (s->h.fd >= 0) sock_close(ur_loop_of(L), s, 0);
  return 0;
}

static int names (lua_State *L, int peer) {
  ur_sock *s = tosock(L);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int ret = peer ? getpeername(s->h.fd, (struct sockaddr *)&ss, &len)
                 : getsockname(s->h.fd, (struct sockaddr *)&ss, &len);
  if (ret != 0) return ur_pushfail(L, -errno, NULL);
  return ur_push_addr(L, (struct sockaddr *)&ss, len);
}

/* sock:getpeername() -> host, port (path for Unix) | fail */
static int l_sock_getpeername (lua_State *L) { return names(L, 1); }
/* sock:getsockname() -> host, port (path for Unix) | fail */
static int l_sock_getsockname (lua_State *L) { return names(L, 0); }

/* sock:_tls() -> true for a TLS socket (uring.net sends files to it
 * through Lua: the kernel's splice cannot encrypt) */
static int l_sock_is_tls (lua_State *L) {
  lua_pushboolean(L, ur_sock_tls(checksock(L, 1)) != NULL);
  return 1;
}

/*
 * sock:fd() hands the number out, and whoever reads it (a uring.ring, a
 * C library) must find every byte the peer sends from then on.  So the
 * first RECV its listener queued at accept (early_recv), if it is still
 * in flight, is cancelled and its CQE waited for first; the bytes it
 * brought, if it won the race, stay buffered for receive.  In a task the
 * task waits (fd_k); outside uring.run the ring is driven here, as
 * handle.c does for a close.
 */
static int fd_k (lua_State *L, int status, lua_KContext ctx);

static int l_sock_fd (lua_State *L) {
  ur_sock *s = tosock(L);
  ur_loop *loop = ur_loop_of(L);
  ur_task *t;
  ur_req *r;
  uint64_t ud;
  if (s->early == 0 || (r = early_pending(loop, s)) == NULL) {
    lua_pushinteger(L, s->h.fd);
    return 1;
  }
  t = ur_task_in(loop, L);
  if (t == NULL && (loop->running || loop->reaping))
    return luaL_error(L, "fd: not inside a task (use uring.run)");
  ud = s->early;
  s->early = 0;                 /* a receive from here on asks anew */
  ur_req_cancel(loop, r);
  if (t) {
    s->rbusy = 1;               /* fd_k clears it */
    lua_settop(L, 1);
    return ur_await(L, t, r, "recv", 0, fd_k);
  }
  /* r->task stays NULL: early_cqe buffers what it brought */
  for (int tries = 0; tries < 1000; tries++) {
    if ((r = ur_req_at(loop, ud)) == NULL || r->state != UR_REQ_INFLIGHT)
      break;
    if (ur_submit_timeout(loop, 0.01) < 0) break;
    ur_reap(loop);
  }
  lua_pushinteger(L, s->h.fd);
  return 1;
}

static int fd_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  ur_sock *s = checksock(L, 1);
  (void)status; (void)ctx;
  /* recv_cqe took a provided buffer's bytes but had no memory to keep
   * them: the stream ends there rather than go on with a hole */
  if (r->res == -ENOMEM && (r->cflags & IORING_CQE_F_BUFFER) && r->obj == s)
    s->eof = 1;
  ur_req_free(t->loop, r);
  s->rbusy = 0;
  ur_check_interrupt(L, t);
  lua_pushinteger(L, tosock(L)->h.fd);   /* closed meanwhile: raises */
  return 1;
}

/* sock:setoption(name, value): "nodelay", "keepalive" (bool) */
static int l_sock_setoption (lua_State *L) {
  static const char *const opts[] = {"nodelay", "keepalive", NULL};
  ur_sock *s = tosock(L);
  int o = luaL_checkoption(L, 2, NULL, opts), v = lua_toboolean(L, 3), ret;
  if (o == 0) ret = setsockopt(s->h.fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);
  else ret = setsockopt(s->h.fd, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v);
  if (ret != 0) return ur_pushfail(L, -errno, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_sock_tostring (lua_State *L) {
  ur_sock *s = checksock(L, 1);
  if (s->h.fd < 0) lua_pushliteral(L, "uring.socket (closed)");
  else lua_pushfstring(L, "uring.socket (%s, fd %d)",
                       s->listener ? "listening" : "stream", s->h.fd);
  return 1;
}

void ur_register_net (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"accept", l_sock_accept}, {"send", l_sock_send},
    {"receive", l_sock_receive},
    {"settimeout", l_sock_settimeout}, {"shutdown", l_sock_shutdown},
    {"close", l_sock_close}, {"getpeername", l_sock_getpeername},
    {"sendfile", ur_sock_sendfile}, {"_tls", l_sock_is_tls},
    {"getsockname", l_sock_getsockname}, {"fd", l_sock_fd},
    {"setoption", l_sock_setoption},
    {"_fill", l_sock_fill}, {"_take_line", l_sock_take_line},
    {"_take", l_sock_take}, {"_buffered", l_sock_buffered},
    {"_closed", l_sock_closed},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_sock_gc}, {"__close", l_sock_closemm},
    {"__tostring", l_sock_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"connect", l_connect}, {"listen", l_listen},
    {"connect_unix", l_connect_unix}, {"listen_unix", l_listen_unix},
    {NULL, NULL}
  };
  static const ur_hooks hooks = {
    NULL, NULL, NULL, NULL, rbuf_pool_free, NULL
  };
  ur_loop_hook(L, &hooks);
  {
    /* short strings are interned: while these two live (the registry
     * holds them for the state's life) every "*l" and "l" is one of them */
    ur_loop *loop = ur_loop_get(L);
    lua_pushliteral(L, "*l");
    loop->pat_line[0] = lua_topointer(L, -1);
    luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushliteral(L, "l");
    loop->pat_line[1] = lua_topointer(L, -1);
    luaL_ref(L, LUA_REGISTRYINDEX);
  }
  luaL_newmetatable(L, UR_SOCK_MT);
  ur_loop_get(L)->sock_mt = lua_topointer(L, -1);
  ur_setfuncs(L, meta);
  lua_newtable(L);
  ur_setfuncs(L, methods);
  lua_pushvalue(L, -1);
  /* exported: http.c (registered next) adds receive_head and
   * _take_request, net.lua the io-style views */
  lua_setfield(L, -4, "socket_methods");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
}
