/*
 * msg_ring.c: the channel between uring.workers (ch:send, ch:receive),
 * IORING_OP_MSG_RING as its doorbell.
 *
 * Made before the fork (ur_chan_prefork, from workers.c), so every worker
 * inherits them:
 *   - one mailbox per worker in a MAP_SHARED mapping: a byte ring of
 *     MBOX_BYTES that any worker appends to and only its owner reads
 *     (records reserved with a compare-and-swap on the tail, committed
 *     by a release store of their kind, so one sender's records keep
 *     their order and none is lost or read twice);
 *   - one SOCK_DGRAM socketpair per worker, for the sockets that move:
 *     the sender passes the fd with SCM_RIGHTS (tagged with its id and a
 *     sequence number) before it commits the mailbox record that names
 *     it, so the fd is already queued when the receiver reads the record.
 *
 * The doorbell: a receiver with nothing to read says so in its mailbox
 * (waiting) and parks; the sender that commits the next record sees the
 * flag and posts, with an IORING_OP_MSG_RING on its own ring, a CQE into
 * the receiver's ring.  Its user_data is UR_CHAN_UD, whose high 32 bits
 * (a request's generation, never 0) are 0: the reaper hands it to this
 * file's foreign_cqe hook and never reads it as a request.  A receiver
 * that waits keeps a 1-second timer in flight (keeper): the loop sees I/O
 * pending rather than a deadlock, and a bell that could not be rung only
 * delays a message by up to that second.
 *
 * The receiver's ring fd: the kernel refuses to pass io_uring fds with
 * SCM_RIGHTS (since 6.7), so a sender takes a copy of it with
 * pidfd_getfd(2) (Linux 5.6) from the pid and fd number the receiver
 * published in its mailbox; that needs ptrace access to the sibling (the
 * same user, Yama ptrace_scope 0).  Copies are kept, closed through
 * handle.c (a doorbell in flight names them), at ch:close.  Where it is
 * refused (Yama, seccomp, valgrind, which lacks the call), the sender
 * marks the receiver's mailbox nobell and the receiver polls it every
 * 10 ms instead: slower, never lost.
 *
 * Why not IORING_MSG_SEND_FD for the sockets: it moves a file between
 * registered-file tables, which only rings with configure{fixed_files}
 * have (fixedfile.c owns their slots), and the receiver would still need
 * IORING_OP_FIXED_FD_INSTALL to get the plain fd our sockets are made of;
 * SCM_RIGHTS works for every ring setup, at one sendmsg and one recvmsg.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uring.h"

#define CHAN_MT      "uring.channel"
#define MBOX_BYTES   (256 * 1024)     /* per receiver; a power of 2 */
#define CHAN_MSG_MAX (64 * 1024)      /* ch:send's bound for a string */
#define KEEPER_SECS  1.0              /* a receiver's timer, with bells */
#define NOBELL_SECS  0.01             /* ... and when it polls instead */

enum { K_EMPTY, K_STRING, K_SOCKET, K_PAD, K_VOID };   /* record kinds */
enum { S_NEW, S_OPEN, S_CLOSED };                      /* mailbox states */

/* a record's head, 16-byte aligned in the ring; payload follows */
typedef struct rec {
  _Atomic uint32_t kind;     /* written last: 0 until committed */
  uint32_t from, len, seq;   /* sender id; payload bytes; socket's seq */
} rec;

typedef struct mbox {
  _Atomic uint64_t tail;     /* reserved up to (senders) */
  char pad0[56];
  _Atomic uint64_t head;     /* read up to (the owner) */
  char pad1[56];
  _Atomic uint32_t waiting;  /* the owner is parked: ring the bell */
  _Atomic uint32_t state;    /* S_*; the parent sets S_CLOSED at reaping */
  _Atomic int32_t pid, ring_fd;   /* where to take the ring fd from */
  _Atomic uint32_t nobell;   /* a sender could not take the ring fd */
  char pad2[44];
  unsigned char data[MBOX_BYTES];
} mbox;

/* what the fork leaves to each process (and the parent, to mark gone) */
static mbox *shm;
static int shm_n;
static int (*pairs)[2];      /* [j][0]: send to worker j; [j][1]: j reads */

/* a socket that came over the socketpair before its record was read */
typedef struct stashed { uint32_t from, seq; int fd; } stashed;

typedef struct chan {
  ur_loop *loop;
  int id, n, open;
  uint32_t seq;              /* of the sockets this worker sends */
  ur_handle *peers;          /* copies of the other rings' fds, by id */
  ur_req *keeper;            /* the timer while a receiver waits */
  ur_waitq waitq;            /* tasks in ch:receive */
  stashed *stash;
  size_t nstash, capstash;
} chan;

static chan *live;           /* the open channel of this process */

void (*ur_foreign_cqe) (ur_loop *loop, uint64_t ud, int32_t res);

static size_t align16 (size_t n) { return (n + 15) & ~(size_t)15; }

static rec *rec_at (mbox *mb, uint64_t pos) {
  return (rec *)(mb->data + (pos % MBOX_BYTES));
}

/* --- before and after the fork (workers.c) --- */

static void pairs_close (int upto, int keep_recv) {
  for (int j = 0; j < upto; j++) {
    if (pairs[j][0] >= 0) close(pairs[j][0]);
    if (pairs[j][1] >= 0 && j + 1 != keep_recv) close(pairs[j][1]);
  }
}

/* The mailboxes and socketpairs for n workers: 0 or -errno. */
int ur_chan_prefork (int n) {
  size_t len = (size_t)n * sizeof(mbox);
  void *p;
  if (shm != NULL) return -EBUSY;     /* inside a worker: one level only */
  p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return -errno;
  pairs = calloc((size_t)n, sizeof *pairs);
  if (pairs == NULL) {
    munmap(p, len);
    return -ENOMEM;
  }
  for (int j = 0; j < n; j++) {
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pairs[j]) != 0) {
      int err = -errno;
      pairs_close(j, 0);
      free(pairs);
      pairs = NULL;
      munmap(p, len);
      return err;
    }
  }
  shm = (mbox *)p;          /* zero-filled: every mailbox S_NEW, empty */
  shm_n = n;
  return 0;
}

/* Worker i (1-based) keeps every send end and its own receive end. */
void ur_chan_child (int i) {
  if (shm == NULL) return;
  for (int j = 0; j < shm_n; j++)
    if (j + 1 != i) {
      close(pairs[j][1]);
      pairs[j][1] = -1;
    }
}

/* The parent keeps only the mapping, to mark reaped workers gone. */
void ur_chan_parent (void) {
  if (shm == NULL) return;
  pairs_close(shm_n, 0);
  free(pairs);
  pairs = NULL;
}

void ur_chan_gone (int i) {
  if (shm != NULL && i >= 1 && i <= shm_n)
    atomic_store(&shm[i - 1].state, S_CLOSED);
}

void ur_chan_release (void) {
  if (shm == NULL) return;
  munmap(shm, (size_t)shm_n * sizeof(mbox));
  shm = NULL;
  shm_n = 0;
}

/* --- the mailbox --- */

/* Reserve a record for len payload bytes: its position, or -1 if full. */
static int64_t mbox_reserve (mbox *mb, size_t len) {
  uint64_t need = 16 + align16(len);
  uint64_t t = atomic_load_explicit(&mb->tail, memory_order_relaxed);
  for (;;) {
    uint64_t h = atomic_load_explicit(&mb->head, memory_order_acquire);
    uint64_t off = t % MBOX_BYTES;
    uint64_t pad = off + need > MBOX_BYTES ? MBOX_BYTES - off : 0;
    if (t + pad + need - h > MBOX_BYTES) return -1;
    if (atomic_compare_exchange_weak(&mb->tail, &t, t + pad + need)) {
      if (pad) {                /* the end of the ring is skipped */
        rec *p = rec_at(mb, t);
        p->len = (uint32_t)(pad - 16);
        atomic_store_explicit(&p->kind, K_PAD, memory_order_release);
      }
      return (int64_t)(t + pad);
    }
  }
}

/* Commit: the payload is written; then the bell, if the owner waits. */
static int mbox_commit (mbox *mb, rec *p, uint32_t kind) {
  atomic_store_explicit(&p->kind, kind, memory_order_release);
  atomic_thread_fence(memory_order_seq_cst);   /* pairs with park_ready */
  return atomic_exchange(&mb->waiting, 0) != 0;
}

/* The owner's next record, skipping pads and voids; NULL if none. */
static rec *mbox_peek (mbox *mb) {
  for (;;) {
    uint64_t h = atomic_load_explicit(&mb->head, memory_order_relaxed);
    rec *p = rec_at(mb, h);
    uint32_t k = atomic_load_explicit(&p->kind, memory_order_acquire);
    if (k == K_EMPTY) return NULL;
    if (k != K_PAD && k != K_VOID) return p;
    {
      size_t size = 16 + align16(p->len);
      memset(p, 0, size);
      atomic_store_explicit(&mb->head, h + size, memory_order_release);
    }
  }
}

/* Done with the record mbox_peek gave: zero it (a later record's head
 * may land anywhere in it), then give its bytes back to the senders. */
static void mbox_pop (mbox *mb, rec *p) {
  size_t size = 16 + align16(p->len);
  uint64_t h = atomic_load_explicit(&mb->head, memory_order_relaxed);
  memset(p, 0, size);
  atomic_store_explicit(&mb->head, h + size, memory_order_release);
}

/* --- the channel object --- */

static chan *checkchan (lua_State *L, int idx) {
  chan *c = (chan *)luaL_checkudata(L, idx, CHAN_MT);
  if (!c->open) luaL_error(L, "attempt to use a closed channel");
  return c;
}

static void keeper_cqe (ur_loop *loop, ur_req *r) {
  chan *c = (chan *)r->obj;
  if (c) {
    c->keeper = NULL;
    ur_waitq_wake_all(loop, &c->waitq);   /* they look again */
  }
  ur_req_free(loop, r);
}

/* The reaper's hook for a CQE that is no request: our doorbell. */
static void foreign_cqe (ur_loop *loop, uint64_t ud, int32_t res) {
  (void)res;
  if (ud == UR_CHAN_UD && live && live->loop == loop)
    ur_waitq_wake_all(loop, &live->waitq);
}

static void chan_close (chan *c) {
  ur_loop *loop = c->loop;
  if (!c->open) return;
  c->open = 0;
  if (live == c) live = NULL;
  atomic_store(&shm[c->id - 1].waiting, 0);
  atomic_store(&shm[c->id - 1].state, S_CLOSED);
  ur_waitq_wake_all(loop, &c->waitq);   /* they see "closed" */
  if (c->keeper) {
    c->keeper->obj = NULL;
    ur_req_cancel(loop, c->keeper);
    c->keeper = NULL;
  }
  for (int j = 0; j < c->n; j++) ur_handle_close(loop, &c->peers[j], NULL);
  free(c->peers);
  c->peers = NULL;
  for (size_t k = 0; k < c->nstash; k++) close(c->stash[k].fd);
  free(c->stash);
  c->stash = NULL;
  c->nstash = c->capstash = 0;
  /* the sockets are never named by the ring: close(2) is the close */
  for (int j = 0; j < shm_n; j++)
    for (int e = 0; e < 2; e++)
      if (pairs[j][e] >= 0) close(pairs[j][e]);
  free(pairs);
  pairs = NULL;
  ur_chan_release();            /* one channel per worker: done with it */
}

static int l_chan_gc (lua_State *L) {
  chan_close((chan *)luaL_checkudata(L, 1, CHAN_MT));
  return 0;
}

static int l_chan_close (lua_State *L) {
  chan_close((chan *)luaL_checkudata(L, 1, CHAN_MT));
  return 0;
}

/* core._chan_open(i, n) -> ch, inside the worker's uring.run */
static int l_chan_open (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  int i = (int)luaL_checkinteger(L, 1), n = (int)luaL_checkinteger(L, 2);
  chan *c;
  if (shm == NULL || pairs == NULL || n != shm_n || i < 1 || i > n
      || pairs[i - 1][1] < 0)
    return luaL_error(L, "channel: not inside uring.workers' worker %d", i);
  if (live) return luaL_error(L, "channel: already open in this worker");
  if (!loop->ring_ok) return luaL_error(L, "channel: open it inside uring.run");
  c = (chan *)lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->peers = calloc((size_t)n, sizeof *c->peers);
  if (c->peers == NULL) return luaL_error(L, "channel: not enough memory");
  for (int j = 0; j < n; j++) ur_handle_init(&c->peers[j]);
  c->loop = loop;
  c->id = i;
  c->n = n;
  c->open = 1;
  luaL_setmetatable(L, CHAN_MT);
  live = c;
  atomic_store(&shm[i - 1].pid, (int32_t)getpid());
  atomic_store(&shm[i - 1].ring_fd, loop->ring.ring_fd);
  atomic_store(&shm[i - 1].state, S_OPEN);
  return 1;
}

/* ch.id, ch.n, then the methods (the metatable's "methods") */
static int l_chan_index (lua_State *L) {
  chan *c = (chan *)luaL_checkudata(L, 1, CHAN_MT);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "id") == 0) lua_pushinteger(L, c->id);
  else if (k && strcmp(k, "n") == 0) lua_pushinteger(L, c->n);
  else {
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
  }
  return 1;
}

static int l_chan_tostring (lua_State *L) {
  chan *c = (chan *)luaL_checkudata(L, 1, CHAN_MT);
  if (c->open) lua_pushfstring(L, "uring.channel (worker %d of %d)", c->id, c->n);
  else lua_pushliteral(L, "uring.channel (closed)");
  return 1;
}

/* --- sending --- */

/* A copy of worker j's ring fd, for the doorbell: 0 or -errno. */
static int peer_ring (chan *c, int j) {
  mbox *mb = &shm[j - 1];
  ur_handle *h = &c->peers[j - 1];
  int pidfd, fd;
  if (j == c->id || h->fd >= 0) return 0;
  pidfd = (int)syscall(SYS_pidfd_open, (pid_t)atomic_load(&mb->pid), 0);
  if (pidfd < 0) return -errno;
  fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)atomic_load(&mb->ring_fd), 0);
  if (fd < 0) fd = -errno;
  close(pidfd);
  if (fd < 0) return fd;
  return ur_handle_adopt(c->loop, h, fd);
}

static void bell_cqe (ur_loop *loop, ur_req *r) {
  ur_req_free(loop, r);         /* a bell that failed: the keeper reads it */
}

/* Post the doorbell CQE into worker j's ring (ours, for j == id). */
static void ring_bell (lua_State *L, chan *c, int j) {
  ur_loop *loop = c->loop;
  struct io_uring_sqe *sqe;
  ur_req *r;
  int fd = j == c->id ? loop->ring.ring_fd : c->peers[j - 1].fd;
  if (fd < 0 && peer_ring(c, j) < 0) {
    /* no bell (pidfd_getfd refused): the owner polls its mailbox */
    atomic_store(&shm[j - 1].nobell, 1);
    return;
  }
  r = ur_req_new(L, loop, IORING_OP_MSG_RING);
  r->background = 1;            /* nobody waits for it */
  r->on_cqe = bell_cqe;
  sqe = ur_get_sqe(loop);
  io_uring_prep_msg_ring(sqe, j == c->id ? loop->ring.ring_fd
                         : c->peers[j - 1].fd, (unsigned)c->id, UR_CHAN_UD, 0);
  if (j != c->id) ur_handle_sqe(loop, &c->peers[j - 1], r, sqe);
  ur_req_submitted(loop, r, sqe);
  r->task = NULL;
}

static int send_k (lua_State *L, int status, lua_KContext ctx);

/* pass the fd to worker j over its socketpair, tagged (from, seq) */
static int pass_fd (chan *c, int j, int fd, uint32_t seq) {
  uint32_t tag[2] = { (uint32_t)c->id, seq };
  struct iovec iov = { tag, sizeof tag };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr m;
  struct cmsghdr *cm;
  memset(&m, 0, sizeof m);
  memset(&u, 0, sizeof u);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  cm = CMSG_FIRSTHDR(&m);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  return sendmsg(pairs[j - 1][0], &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0
         ? -errno : 0;
}

/* the send itself, once nothing is in flight on a socket being moved */
static int send_now (lua_State *L, chan *c, int j) {
  mbox *mb = &shm[j - 1];
  ur_sock *s = NULL;
  const char *p;
  size_t len;
  int64_t pos;
  rec *r;
  uint32_t kind = K_STRING, seq = 0;
  int ret;
  if (atomic_load(&mb->state) == S_CLOSED) {
    luaL_pushfail(L);
    lua_pushfstring(L, "send: worker %d has stopped", j);
    lua_pushinteger(L, EPIPE);
    return 3;
  }
  if (ur_op_missing(c->loop, IORING_OP_MSG_RING))
    return ur_pushfail(L, UR_ENOOP(IORING_OP_MSG_RING), "send");
  if (lua_type(L, 3) == LUA_TSTRING) p = lua_tolstring(L, 3, &len);
  else {
    s = ur_sock_check(L, 3);
    if (ur_sock_closed(s))            /* closed while we waited */
      return ur_pushclosed(L);
    p = ur_sock_buffered(s, &len);     /* bytes read, not taken: move too */
    kind = K_SOCKET;
  }
  if ((pos = mbox_reserve(mb, len)) < 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "send: the mailbox of worker %d is full", j);
    lua_pushinteger(L, EAGAIN);
    return 3;
  }
  r = rec_at(mb, (uint64_t)pos);
  r->from = (uint32_t)c->id;
  r->len = (uint32_t)len;
  if (kind == K_SOCKET) {
    seq = ++c->seq;
    if ((ret = pass_fd(c, j, ur_sock_handle(s)->fd, seq)) < 0) {
      mbox_commit(mb, r, K_VOID);       /* the owner skips it */
      return ur_pushfail(L, ret, "send");
    }
  }
  r->seq = seq;
  memcpy(r + 1, p, len);
  if (mbox_commit(mb, r, kind)) ring_bell(L, c, j);
  if (kind == K_SOCKET) {
    /* it has moved: the sender's copy closes by the one close path, at
     * once (a plain call may not yield: sock:close then closes now, or
     * at the last CQE of what is in flight, and does not wait for an
     * IORING_OP_CLOSE round trip: bench/msgring.lua, handoff) */
    lua_settop(L, 3);
    lua_getfield(L, 3, "close");
    lua_insert(L, 3);
    lua_call(L, 1, 0);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int send_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  chan *c = (chan *)lua_touserdata(L, 1);
  (void)status; (void)ctx;
  if (t == NULL)
    return luaL_error(L, "a task can only be resumed by the uring loop");
  if (ur_sock_behind_done(L, t) == NULL) return 3;   /* it failed */
  ur_check_interrupt(L, t);
  if (!c->open) return ur_pushclosed(L);
  {                             /* the early RECV's turn, if any */
    int ret = ur_sock_settle(L, ur_sock_check(L, 3), t, 0, send_k);
    if (ret >= 0) return ret;
  }
  return send_now(L, c, (int)lua_tointeger(L, 2));
}

/* ch:send(j, msg) -> true | nil, msg, errno */
static int l_chan_send (lua_State *L) {
  chan *c = checkchan(L, 1);
  lua_Integer j = luaL_checkinteger(L, 2);
  size_t len;
  luaL_argcheck(L, j >= 1 && j <= c->n, 2,
                lua_pushfstring(L, "worker id in 1..%d expected", c->n));
  if (lua_type(L, 3) == LUA_TSTRING) {
    lua_tolstring(L, 3, &len);
    luaL_argcheck(L, len <= CHAN_MSG_MAX, 3,
                  "string longer than 65536 bytes (the mailbox's bound)");
  }
  else if (luaL_testudata(L, 3, "uring.socket")) {
    ur_sock *s = ur_sock_check(L, 3);
    ur_task *t;
    if (ur_sock_closed(s)) luaL_argerror(L, 3, "socket is closed");
    if (ur_sock_listening(s)) luaL_argerror(L, 3, "a listening socket cannot move");
    if (ur_sock_tls(s)) luaL_argerror(L, 3, "a TLS socket cannot move");
    if (ur_sock_busy(s, 0) || ur_sock_busy(s, 1))
      luaL_argerror(L, 3, "socket is busy in another task");
    ur_sock_buffered(s, &len);
    if (len > CHAN_MSG_MAX)             /* they move in the record */
      luaL_argerror(L, 3, "socket has over 65536 bytes received, unread");
    t = ur_task_current(L, "send");
    lua_settop(L, 3);
    /* a send-behind still in flight goes out before the socket moves */
    {
      int ret = ur_sock_settle(L, s, t, 0, send_k);
      if (ret >= 0) return ret;
    }
  }
  else luaL_typeerror(L, 3, "string or uring.socket");
  lua_settop(L, 3);
  return send_now(L, c, (int)j);
}

/* --- receiving --- */

/* The fd that came with (from, seq): from the stash, or read from the
 * socketpair (stashing others' that come first); -errno if it is not
 * there (cannot be: the sender passed it before committing). */
static int take_fd (chan *c, uint32_t from, uint32_t seq) {
  int me = pairs[c->id - 1][1];
  for (size_t k = 0; k < c->nstash; k++)
    if (c->stash[k].from == from && c->stash[k].seq == seq) {
      int fd = c->stash[k].fd;
      c->stash[k] = c->stash[--c->nstash];
      return fd;
    }
  for (;;) {
    uint32_t tag[2];
    struct iovec iov = { tag, sizeof tag };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr m;
    struct cmsghdr *cm;
    int fd = -1;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    if (recvmsg(me, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0) return -errno;
    for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
      if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    if (fd < 0) continue;
    if (tag[0] == from && tag[1] == seq) return fd;
    if (c->nstash == c->capstash) {
      size_t cap = c->capstash ? c->capstash * 2 : 8;
      stashed *ns = realloc(c->stash, cap * sizeof *ns);
      if (ns == NULL) {
        close(fd);
        return -ENOMEM;
      }
      c->stash = ns;
      c->capstash = cap;
    }
    c->stash[c->nstash].from = tag[0];
    c->stash[c->nstash].seq = tag[1];
    c->stash[c->nstash++].fd = fd;
  }
}

/* The next message pushed as from, msg (2), a failure (3), or 0. */
static int try_receive (lua_State *L, chan *c) {
  mbox *mb = &shm[c->id - 1];
  rec *r = mbox_peek(mb);
  if (r == NULL) return 0;
  lua_pushinteger(L, r->from);
  if (atomic_load_explicit(&r->kind, memory_order_relaxed) == K_STRING) {
    lua_pushlstring(L, (const char *)(r + 1), r->len);
    mbox_pop(mb, r);
    return 2;
  }
  {
    int fd = take_fd(c, r->from, r->seq), family = AF_UNSPEC;
    socklen_t sl = sizeof family;
    ur_sock *s;
    if (fd < 0) {
      mbox_pop(mb, r);
      return ur_pushfail(L, fd, "receive");
    }
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &sl);
    s = ur_sock_push_fd(L, c->loop, fd, family);
    if (s == NULL) {
      mbox_pop(mb, r);
      return ur_pushfail(L, -ENOMEM, "receive");
    }
    if (r->len > 0) {
      char *dst = ur_sock_reserve(s, r->len);
      if (dst == NULL) {
        mbox_pop(mb, r);
        return ur_pushfail(L, -ENOMEM, "receive");
      }
      memcpy(dst, r + 1, r->len);
      ur_sock_commit(s, r->len);
    }
    mbox_pop(mb, r);
    return 2;
  }
}

static int receive_k (lua_State *L, int status, lua_KContext ctx);

static int receive_step (lua_State *L, ur_task *t, chan *c) {
  mbox *mb = &shm[c->id - 1];
  int n;
  lua_settop(L, 1);
  if (!c->open) return ur_pushclosed(L);
  if ((n = try_receive(L, c)) > 0) return n;
  if (ur_op_missing(c->loop, IORING_OP_MSG_RING))
    return ur_pushfail(L, UR_ENOOP(IORING_OP_MSG_RING), "receive");
  /* say we wait, then look once more: a sender that committed before
   * the flag was up is seen here, one after it rings (mbox_commit) */
  atomic_store(&mb->waiting, 1);
  atomic_thread_fence(memory_order_seq_cst);
  if ((n = try_receive(L, c)) > 0) return n;
  if (c->keeper == NULL) {
    ur_req *r = ur_req_new(L, c->loop, IORING_OP_TIMEOUT);
    struct io_uring_sqe *sqe = ur_get_sqe(c->loop);
    ur_set_ts(&r->u.ts, atomic_load(&mb->nobell) ? NOBELL_SECS : KEEPER_SECS);
    io_uring_prep_timeout(sqe, &r->u.ts, 0, 0);
    r->on_cqe = keeper_cqe;
    r->obj = c;
    ur_req_submitted(c->loop, r, sqe);
    r->task = NULL;
    c->keeper = r;
  }
  return ur_park(L, t, &c->waitq, "channel receive", 0, receive_k);
}

static int receive_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  (void)status; (void)ctx;
  if (t == NULL)
    return luaL_error(L, "a task can only be resumed by the uring loop");
  ur_check_interrupt(L, t);
  return receive_step(L, t, (chan *)lua_touserdata(L, 1));
}

/* ch:receive() -> from, msg | nil, msg, errno */
static int l_chan_receive (lua_State *L) {
  chan *c = checkchan(L, 1);
  ur_task *t = ur_task_current(L, "receive");
  return receive_step(L, t, c);
}

/* core._chan_max() -> the string bound; for the docs and the specs */
static int l_chan_max (lua_State *L) {
  lua_pushinteger(L, CHAN_MSG_MAX);
  return 1;
}

void ur_register_msg_ring (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"send", l_chan_send}, {"receive", l_chan_receive},
    {"close", l_chan_close}, {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"_chan_open", l_chan_open}, {"_chan_max", l_chan_max}, {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__index", l_chan_index}, {"__gc", l_chan_gc}, {"__close", l_chan_gc},
    {"__tostring", l_chan_tostring}, {NULL, NULL}
  };
  luaL_newmetatable(L, CHAN_MT);
  ur_setfuncs(L, meta);
  lua_newtable(L);
  ur_setfuncs(L, methods);
  lua_setfield(L, -2, "methods");         /* docs_spec lists them here */
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
  ur_foreign_cqe = foreign_cqe;
}
