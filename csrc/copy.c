/*
 * copy.c: all of uring.copyfile's C.  file.lua's range_copy calls the
 * fast path, copy_file_range(2) on a helper thread (core._copy_range,
 * core._copy_trim); its splice_copy calls the fallback, SPLICE pairs
 * through a pipe (core._splice_pipe, core._splice; described at its
 * section below).  Files are reached through fs.c's ur_file_handle only.
 * sock:sendfile (its section is last; net.c lists it among the socket
 * methods) sends small ranges by a READ linked to a SEND, large ones by
 * sendfile(2) with POLL_ADD for room, and falls back on those SPLICE
 * pairs with a socket at the far end; core._file_meta serves
 * uring.http.static.
 *
 * Why a thread first: io_uring has no copy_file_range op.  SPLICE pairs
 * through a pipe (the fallback) do the same kernel copy, but every SPLICE
 * is an io-wq work item: the pipe-to-file half is hashed on the
 * destination inode and the file-to-pipe half is not, so each 1 MiB pair
 * hops between two io-wq workers and each completion wakes the loop
 * thread (~4,200 context switches a GiB, cp's 30-60; try_to_wake_up was
 * 12% of the profile).  cp makes one copy_file_range call; so does this,
 * in steps, on a thread of its own, while the loop waits on an
 * IORING_OP_READ of an eventfd the thread writes once, when it is done:
 * other tasks keep running, and the task resumes through the ring like
 * any other.
 *
 * One call of core._copy_range copies from an offset until the end of
 * the source or `max` bytes, in COPY_STEP steps, on a thread that lives
 * for that call.  On ext4 the destination is given its blocks with one
 * fallocate (KEEP_SIZE: its size still grows as bytes land) once the
 * first step has worked; a copy that ends short of them (the source
 * shrank, an error, a cancel: file.lua's range_copy knows, a call does
 * not) gives those past the end back with core._copy_trim.
 *
 * Lifetime: the job (dups of both fds, the eventfd, the results) is
 * shared by the thread and the waiting side's "hold" userdata, freed by
 * whoever drops the last reference.  The thread closes its dups, then
 * writes the eventfd, and never touches it again.  A task that is
 * cancelled (or whose uring.timeout scope expires) mid-copy asks the
 * thread to stop and waits for it, one step at most: when it raises,
 * no fd of the copy is open and no request is in flight.  Only a copy
 * abandoned without resuming (lua_close, a raise while re-arming) lets
 * the thread finish on its own; its last reference then closes the
 * eventfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "uring.h"

/* --- the fast path: copy_file_range on a thread of its own --- */

#define COPY_MT   "uring.copy.job"
/* one copy_file_range: a stop is seen within a step (~1 ms from the page
 * cache, ~40 ms from a 100 MB/s disk) */
#define COPY_STEP ((int64_t)4 << 20)

typedef struct copy_job {
  atomic_int refs;        /* thread + hold; the last one frees */
  atomic_int stop;        /* the waiting side gave up: end after this step */
  atomic_int done;        /* release: the results below are final */
  atomic_int signalled;   /* release: the eventfd write has returned */
  int efd;                /* written once, by the thread, at its end */
  int in, out;            /* the thread's own fds; it closes them */
  int64_t off, max, keep; /* copy from off, at most max; dst's size */
  int64_t copied;         /* results, final before the eventfd write */
  int err;                /* errno that ended the call, or 0 */
  int eof;                /* the source's end was reached */
} copy_job;

typedef struct copy_hold { copy_job *j; } copy_hold;

static void copy_unref (copy_job *j) {
  /* acq_rel: the last dropper sees everything the other side wrote */
  if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
    return;
  /* the last reference: no request names the eventfd any more (the
   * waiting side lets go after its READ's CQE), and the dups never were */
  ur_fd_release(j->in);
  ur_fd_release(j->out);
  ur_fd_release(j->efd);
  free(j);
}

/* Let go of the job without waiting: the thread stops after its step. */
static void copy_release (copy_hold *h) {
  if (h->j == NULL) return;
  atomic_store_explicit(&h->j->stop, 1, memory_order_relaxed);
  copy_unref(h->j);
  h->j = NULL;
}

static int copy_hold_gc (lua_State *L) {
  copy_hold *h = (copy_hold *)luaL_testudata(L, 1, COPY_MT);
  if (h) copy_release(h);
  return 0;
}

static int on_ext4 (int fd) {
  struct statfs sf;
  return fstatfs(fd, &sf) == 0 && sf.f_type == EXT4_SUPER_MAGIC;
}

static void *copy_thread (void *arg) {
  copy_job *j = (copy_job *)arg;
  int64_t pos = j->off, end = j->off + j->max;
  uint64_t one = 1;
  while (pos < end && !atomic_load_explicit(&j->stop, memory_order_relaxed)) {
    loff_t oin = pos, oout = pos;
    int64_t ask = end - pos < COPY_STEP ? end - pos : COPY_STEP;
    ssize_t k = copy_file_range(j->in, &oin, j->out, &oout, (size_t)ask, 0);
    if (k < 0) {
      if (errno == EINTR) continue;
      j->err = errno;
      break;
    }
    if (k == 0) {
      j->eof = 1;
      break;
    }
    /* it works for these files: on ext4 the rest gets its blocks in one
     * go (cheaper than a delayed allocation per write; errors only cost
     * that saving).  Not elsewhere: xfs and btrfs may clone extents
     * here, and blocks reserved first would be wasted. */
    if (pos == 0 && j->keep > k && on_ext4(j->out))
      (void)fallocate(j->out, FALLOC_FL_KEEP_SIZE, k, j->keep - k);
    pos += k;
  }
  j->copied = pos - j->off;
  ur_fd_release(j->in);         /* the thread's own dups */
  ur_fd_release(j->out);
  j->in = j->out = -1;
  atomic_store_explicit(&j->done, 1, memory_order_release);
  /* the waiting side closes the eventfd once it has seen this write, or
   * the flag below: it is still open here */
  while (write(j->efd, &one, sizeof one) < 0 && errno == EINTR) {}
  atomic_store_explicit(&j->signalled, 1, memory_order_release);
  copy_unref(j);
  return NULL;
}

static int copy_k (lua_State *L, int status, lua_KContext ctx);

/* Wait for the thread's eventfd write: one READ, into request r. */
static int copy_wait (lua_State *L, ur_task *t, copy_job *j, ur_req *r) {
  struct io_uring_sqe *sqe = ur_get_sqe(t->loop);
  r->u.u64 = 0;
  r->fd = j->efd;
  /* the kernel writes the count into the slab, never into the job */
  io_uring_prep_read(sqe, j->efd, &r->u.u64, sizeof r->u.u64, 0);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "copyfile", 0, copy_k);
}

static int copy_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res;
  copy_hold *h;
  copy_job *j;
  int64_t copied;
  int err, eof;
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  h = (copy_hold *)luaL_checkudata(L, 5, COPY_MT);
  j = h->j;
  if (j == NULL)
    luaL_error(L, "uring: internal error: copyfile lost its job");
  if (res < 0
      && !atomic_load_explicit(&j->signalled, memory_order_acquire)) {
    /* the READ was cancelled (task:cancel, an expired uring.timeout):
     * the thread still holds its fds; stop it and wait, one step */
    atomic_store_explicit(&j->stop, 1, memory_order_relaxed);
    return copy_wait(L, t, j, ur_req_new(L, t->loop, IORING_OP_READ));
  }
  /* the thread has written the eventfd: it is done with everything */
  if (!atomic_load_explicit(&j->done, memory_order_acquire))
    luaL_error(L, "uring: internal error: copyfile woken early");
  copied = j->copied;
  err = j->err;
  eof = j->eof;
  ur_fd_release(j->efd);        /* its READ is done; the thread is too */
  j->efd = -1;
  copy_unref(j);
  h->j = NULL;
  ur_check_interrupt(L, t);
  if (copied == 0 && err != 0) return ur_pushfail(L, -err, NULL);
  lua_pushinteger(L, (lua_Integer)copied);
  lua_pushboolean(L, eof);
  return 2;
}

/* core._copy_range(infd, outfd, offset, keep, max) -> bytes, eof | false | fail
 * Copies from offset of infd to the same offset of outfd until the end
 * of infd or max bytes; keep is the size dst is being copied to (its
 * blocks are allocated at once).  false: no thread could be made. */
static int l_copy_range (lua_State *L) {
  lua_Integer in = luaL_checkinteger(L, 1), out = luaL_checkinteger(L, 2);
  lua_Integer off = luaL_checkinteger(L, 3);
  lua_Integer keep = luaL_checkinteger(L, 4), max = luaL_checkinteger(L, 5);
  ur_task *t;
  copy_hold *h;
  copy_job *j;
  ur_req *r;
  luaL_argcheck(L, in >= 0 && in <= INT32_MAX, 1, "invalid fd");
  luaL_argcheck(L, out >= 0 && out <= INT32_MAX, 2, "invalid fd");
  luaL_argcheck(L, off >= 0, 3, "offset must be non-negative");
  luaL_argcheck(L, keep >= 0, 4, "size must be non-negative");
  luaL_argcheck(L, max > 0, 5, "count must be positive");
  lua_settop(L, 4);
  t = ur_task_current(L, "copyfile");
  /* the hold first: once it holds the job, any raise frees it */
  h = (copy_hold *)lua_newuserdatauv(L, sizeof *h, 0);    /* 5 */
  h->j = NULL;
  luaL_setmetatable(L, COPY_MT);
  j = (copy_job *)calloc(1, sizeof *j);
  if (j == NULL) luaL_error(L, "copyfile: not enough memory");
  atomic_init(&j->refs, 1);
  j->in = j->out = j->efd = -1;
  j->off = off;
  j->max = max > INT64_MAX - off ? INT64_MAX - off : max;
  j->keep = keep;
  h->j = j;
  /* the request before the thread: ur_req_new may raise, the thread
   * once started cannot be called back */
  r = ur_req_new(L, t->loop, IORING_OP_READ);
  j->efd = eventfd(0, EFD_CLOEXEC);
  if (j->efd >= 0) j->in = fcntl((int)in, F_DUPFD_CLOEXEC, 0);
  if (j->in >= 0) j->out = fcntl((int)out, F_DUPFD_CLOEXEC, 0);
  if (j->out < 0) {           /* out of fds, or not an fd */
    int e = errno;
    ur_req_free(t->loop, r);
    copy_release(h);
    return ur_pushfail(L, -e, NULL);
  }
  atomic_fetch_add_explicit(&j->refs, 1, memory_order_relaxed);  /* thread's */
  if (ur_thread_start(copy_thread, j) != 0) {
    atomic_fetch_sub_explicit(&j->refs, 1, memory_order_relaxed);
    ur_req_free(t->loop, r);
    copy_release(h);
    lua_pushboolean(L, 0);    /* the caller splices instead */
    return 1;
  }
  return copy_wait(L, t, j, r);
}

/* core._copy_trim(fd): a copy into fd ended short of the blocks it was
 * given (an error, a cancel, a source that shrank): give back those past
 * its end.  A truncate to the same size does that (ext4_setattr); two
 * short syscalls, on this thread, and only then. */
static int l_copy_trim (lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  struct stat st;
  luaL_argcheck(L, fd >= 0 && fd <= INT32_MAX, 1, "invalid fd");
  if (fstat((int)fd, &st) == 0 && S_ISREG(st.st_mode)
      && (int64_t)st.st_blocks * 512 > st.st_size + 4095)
    (void)ftruncate((int)fd, st.st_size);
  return 0;
}

/* --- the fallback: the kernel copies, through a pipe ---
 *
 * Used where copy_file_range (above) cannot serve the files, e.g. from
 * one file system to another.  SPLICE file -> pipe linked to
 * SPLICE pipe -> file moves a chunk page cache to page cache with one
 * kernel copy and no user-space buffer (what cp gets from
 * copy_file_range).  One call links up to SPLICE_PAIRS such pairs into a
 * single chain: an io-wq worker runs a chain from end to end on its own,
 * so the copy does not stall between chunks waiting for this thread to be
 * scheduled (on a busy machine that wait cost more than the copying).
 *
 * A short splice (end of file, a short write) breaks the chain: the rest
 * completes with -ECANCELED, and whatever reached the pipe but not the
 * file is drained by one more SPLICE before the call returns.
 *
 * The pipe's fds must stay open until the kernel is done with every
 * request naming them: a linked SQE looks its fd up only when it is
 * issued, so closing early could hand it somebody else's file.  The pipe
 * therefore counts its holders (each request in flight, and the "hold"
 * userdata the copy keeps on its task's stack); the last one closes it.
 * At lua_close with a copy in flight the loop frees the requests without
 * their handlers: that pipe is left open.
 */

#define UR_SPLICE_MT "uring.splice.pipe"
#define SPLICE_PIPE_SZ (1 << 20)
#define SPLICE_PAIRS   16      /* 16 MiB a chain: measured against 4, 8, 32 */

typedef struct splice_pipe {
  int fd[2];              /* [0] read end, [1] write end */
  int refs;               /* the hold + requests in flight */
  int size;               /* the pipe's capacity: the most one pair moves */
  int pending;            /* CQEs of the current call still to come */
  ur_req *last;           /* the request the task waits on, once done */
  int npairs;             /* pairs in the current chain */
  int res[2 * SPLICE_PAIRS];   /* their results: in, out, in, out ... */
  int inpipe, moved;      /* drain: bytes in the pipe; taken out */
  /* sock:sendfile's progress (below): where the file is read next, what
   * is left to send, what went out, and whether the file ended early */
  int64_t sf_off, sf_left, sf_sent;
  int sf_eof;
  int sf_head;            /* the head goes first in the next chain */
  int hres;               /* the head SEND's result (r->aux == HEAD_SLOT) */
  size_t hsent;           /* bytes of the head sent */
} splice_pipe;

#define HEAD_SLOT (-2)    /* r->aux of sendfile's head SEND */

typedef struct splice_hold { splice_pipe *p; } splice_hold;

static void splice_unref (splice_pipe *p) {
  if (--p->refs > 0) return;
  ur_fd_release(p->fd[0]);      /* the last request naming them is done */
  ur_fd_release(p->fd[1]);
  free(p);
}

static int splice_hold_gc (lua_State *L) {
  splice_hold *h = (splice_hold *)luaL_checkudata(L, 1, UR_SPLICE_MT);
  if (h->p) splice_unref(h->p);
  h->p = NULL;
  return 0;
}

/* A hold on a new pipe at the top of the stack; 0, or -errno (the hold
 * is then empty) */
static int splice_pipe_new (lua_State *L) {
  splice_hold *h = (splice_hold *)lua_newuserdatauv(L, sizeof *h, 0);
  splice_pipe *p;
  int sz;
  h->p = NULL;
  luaL_setmetatable(L, UR_SPLICE_MT);
  p = (splice_pipe *)calloc(1, sizeof *p);
  if (p == NULL) return -ENOMEM;
  if (pipe2(p->fd, O_CLOEXEC) != 0) {
    int e = errno;
    free(p);
    return -e;
  }
  /* a bigger pipe: fewer, larger splices (1 MiB is the default limit) */
  sz = fcntl(p->fd[1], F_SETPIPE_SZ, SPLICE_PIPE_SZ);
  if (sz < 0) sz = fcntl(p->fd[1], F_GETPIPE_SZ);
  p->size = sz > 0 ? sz : 65536;
  p->refs = 1;
  h->p = p;
  return 0;
}

/* core._splice_pipe() -> hold | fail */
static int l_splice_pipe (lua_State *L) {
  int ret = splice_pipe_new(L);
  if (ret < 0) return ur_pushfail(L, ret, NULL);
  return 1;
}

/* Every request of a call: keep its result (its slot is in r->aux); the
 * last CQE to arrive wakes the task, through the request it waits on. */
static void splice_cqe (ur_loop *loop, ur_req *r) {
  splice_pipe *p = (splice_pipe *)r->obj;
  ur_req *wake = NULL;
  if (r->aux >= 0) p->res[r->aux] = r->res;
  else if (r->aux == HEAD_SLOT) p->hres = r->res;
  if (r->task) p->last = r;   /* the awaited one: freed by the task */
  else ur_req_free(loop, r);
  if (--p->pending == 0) {
    wake = p->last;
    p->last = NULL;
  }
  splice_unref(p);
  if (wake) ur_req_wake(loop, wake);
}

/* Queue request r as one SPLICE of a call between a file (its handle f)
 * and the pipe (into the pipe if to_pipe); its result goes to res[slot].
 * r is on f: closing the file cancels the copy; the pipe's fds live as
 * long as any request names them (refs). */
static void splice_prep (ur_loop *loop, ur_req *r, splice_pipe *p,
                         ur_handle *f, int to_pipe, int64_t off,
                         unsigned n, int slot, int link) {
  struct io_uring_sqe *sqe = ur_get_sqe(loop);
  if (to_pipe) io_uring_prep_splice(sqe, f->fd, off, p->fd[1], -1, n, 0);
  else io_uring_prep_splice(sqe, p->fd[0], -1, f->fd, off, n, 0);
  if (link) sqe->flags |= IOSQE_IO_LINK;
  ur_handle_sqe(loop, f, r, sqe);
  r->obj = p;
  r->aux = slot;
  r->on_cqe = splice_cqe;
  p->refs++;
  p->pending++;
  ur_req_submitted(loop, r, sqe);
  r->task = NULL;             /* only the awaited one names the task */
}

static int splice_k (lua_State *L, int status, lua_KContext ctx);

/* What reached the pipe but not the file: one more SPLICE, and wait. */
static int splice_drain (lua_State *L, ur_task *t, splice_pipe *p,
                         ur_handle *out, int64_t off) {
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_SPLICE);
  p->pending = 0;
  p->last = NULL;
  if (out->fd < 0) {          /* closed meanwhile */
    ur_req_free(t->loop, r);
    return ur_pushclosed(L);
  }
  splice_prep(t->loop, r, p, out, 0, off,
              (unsigned)(p->inpipe - p->moved), 0, 0);
  return ur_await(L, t, r, "copyfile", 1, splice_k);
}

static int splice_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  splice_pipe *p = ((splice_hold *)lua_touserdata(L, 1))->p;
  ur_handle *out = ur_file_handle(L, 3);   /* checked by l_splice */
  int64_t off = (int64_t)lua_tointeger(L, 4);
  lua_Integer total = 0;
  (void)status;
  ur_req_free(t->loop, r);
  ur_check_interrupt(L, t);
  if (ctx == 1) {             /* a drain came back */
    int res = p->res[0];
    if (res < 0) return ur_pushfail(L, res, NULL);
    if (res == 0) return ur_pushfail(L, -EIO, NULL);   /* no progress */
    p->moved += res;
    if (p->moved < p->inpipe)
      return splice_drain(L, t, p, out, off + lua_tointeger(L, 6) + p->moved);
    lua_pushinteger(L, lua_tointeger(L, 6) + p->moved);
    return 1;
  }
  for (int j = 0; j < p->npairs; j++) {
    int in = p->res[2 * j], wr = p->res[2 * j + 1];
    /* a failed read or write ends the copy (the pipe may hold bytes that
     * belong nowhere now: it is not used again) */
    if (in < 0) return ur_pushfail(L, in, NULL);
    if (wr < 0 && wr != -ECANCELED) return ur_pushfail(L, wr, NULL);
    if (wr < 0) wr = 0;       /* cancelled: the chain broke on a short in */
    total += wr;
    if (wr < in) {            /* the pipe still holds in - wr bytes */
      lua_settop(L, 5);
      lua_pushinteger(L, total);   /* 6: copied before the drain */
      p->inpipe = in - wr;
      p->moved = 0;
      return splice_drain(L, t, p, out, off + total);
    }
    if (in < p->size) break;  /* short: end of file, the rest cancelled */
  }
  lua_pushinteger(L, total);
  return 1;
}

/* core._splice(hold, infile, outfile, offset, n) -> bytes | fail
 * Copies up to n bytes at offset of infile to the same offset of outfile
 * (fewer: at most SPLICE_PAIRS pipefuls); 0 at the end of infile. */
static int l_splice (lua_State *L) {
  splice_hold *h = (splice_hold *)luaL_checkudata(L, 1, UR_SPLICE_MT);
  ur_handle *in = ur_file_handle(L, 2), *out = ur_file_handle(L, 3);
  lua_Integer off = luaL_checkinteger(L, 4);
  lua_Integer n = luaL_checkinteger(L, 5);
  splice_pipe *p = h->p;
  ur_task *t;
  ur_loop *loop;
  ur_req *r[2 * SPLICE_PAIRS];
  int pairs;
  luaL_argcheck(L, p != NULL, 1, "pipe is closed");
  if (in->fd < 0 || out->fd < 0)
    return luaL_error(L, "attempt to use a closed file");
  luaL_argcheck(L, off >= 0, 4, "offset must be non-negative");
  luaL_argcheck(L, n > 0, 5, "count must be positive");
  lua_settop(L, 5);
  t = ur_task_current(L, "copyfile");
  loop = t->loop;
  /* as many pairs as n needs, as the SQ can hold in one chain */
  pairs = (int)((n + p->size - 1) / p->size);
  if (pairs > SPLICE_PAIRS) pairs = SPLICE_PAIRS;
  if ((unsigned)pairs * 2 > loop->ring.sq.ring_entries)
    pairs = (int)loop->ring.sq.ring_entries / 2;
  if (pairs < 1) pairs = 1;
  /* every request first (they may raise), then the SQEs, all in one
   * submission: nothing half-built reaches the kernel */
  for (int i = 0; i < 2 * pairs; i++)
    r[i] = ur_req_new(L, loop, IORING_OP_SPLICE);
  ur_reserve_sqes(loop, (unsigned)pairs * 2);
  p->npairs = pairs;
  p->pending = 0;
  p->last = NULL;
  for (int j = 0; j < pairs; j++) {
    int64_t at = off + (int64_t)j * p->size;
    splice_prep(loop, r[2 * j], p, in, 1, at, (unsigned)p->size, 2 * j, 1);
    splice_prep(loop, r[2 * j + 1], p, out, 0, at, (unsigned)p->size,
                2 * j + 1, j < pairs - 1);
  }
  return ur_await(L, t, r[2 * pairs - 1], "copyfile", 0, splice_k);
}

/* --- sock:sendfile: a file to a socket ---
 *
 * Three paths: small ranges through a buffer, large ones by sendfile(2)
 * (both below), and this one where sendfile(2) is not used (a source that
 * is not a regular file, a loop run while SIGPIPE is not blocked).
 * The same pairs as the copy above, with the socket as the destination:
 * SPLICE file -> pipe linked to SPLICE pipe -> socket, up to SPLICE_PAIRS
 * pairs a chain, chains until the range is sent.  The bytes go from the
 * page cache to the socket in the kernel; Lua never holds them.  The
 * file-side requests are on the file's handle, the socket-side ones on
 * the socket's: closing either cancels the send.
 *
 * Each call that splices makes its pipe and closes it when it returns
 * (its requests are all complete by then): a pipe2 and an fcntl are a
 * few microseconds against the ~150 us a MiB takes, and no idle pipe is
 * left holding fds or bytes stranded by a failed send.
 */

/* The call is over: its pipe goes now, not when the hold is collected. */
static void sf_release (lua_State *L, int idx) {
  splice_hold *h = (splice_hold *)luaL_testudata(L, idx, UR_SPLICE_MT);
  if (h && h->p) {
    splice_unref(h->p);
    h->p = NULL;
  }
}

static int sendfile_k (lua_State *L, int status, lua_KContext ctx);

/* Stack of a sendfile: 1 the socket, 2 the file, 3 offset, 4 length,
 * 5 the head (a string, or nil), 6 the pipe's hold (splice) or the
 * buffer (small), 7 the buffer's bytes to send */
#define SF_HOLD 6
static ur_sock *sf_sock (lua_State *L) {
  return ur_sock_check(L, 1);
}

/* the fail tuple and the bytes of the file that did go out */
static int sendfile_fail (lua_State *L, int res, int64_t sent) {
  ur_sock *s = sf_sock(L);
  int n;
  ur_sock_sending(s, 0);
  sf_release(L, SF_HOLD);
  if (ur_sock_closed(s) || res == -ECANCELED) n = ur_pushclosed(L);
  else n = ur_pushfail(L, res, "sendfile");
  lua_pushinteger(L, (lua_Integer)sent);
  return n + 1;
}

/* Queue the next chain: pairs for what is left, at most SPLICE_PAIRS
 * and half the SQ. */
static int sendfile_round (lua_State *L, ur_task *t, splice_pipe *p) {
  ur_loop *loop = t->loop;
  ur_sock *s;
  ur_handle *sh = ur_sock_send_handle(L, 1, &s);
  ur_handle *fh = ur_file_handle(L, 2);
  ur_req *r[2 * SPLICE_PAIRS], *hr = NULL;
  int pairs = (int)((p->sf_left + p->size - 1) / p->size);
  unsigned room = loop->ring.sq.ring_entries - (p->sf_head ? 1 : 0);
  if (fh->fd < 0)              /* closed by another task meanwhile */
    return luaL_error(L, "attempt to use a closed file");
  if (pairs > SPLICE_PAIRS) pairs = SPLICE_PAIRS;
  if ((unsigned)pairs * 2 > room) pairs = (int)room / 2;
  if (pairs < 1) pairs = 1;
  if (p->sf_head) hr = ur_req_new(L, loop, IORING_OP_SEND);
  for (int i = 0; i < 2 * pairs; i++)
    r[i] = ur_req_new(L, loop, IORING_OP_SPLICE);
  ur_reserve_sqes(loop, (unsigned)pairs * 2 + (hr ? 1 : 0));
  p->npairs = pairs;
  p->pending = 0;
  p->last = NULL;
  if (hr) {                    /* the head first, in the same chain */
    size_t hlen;
    const char *head = lua_tolstring(L, 5, &hlen);
    struct io_uring_sqe *sqe = ur_get_sqe(loop);
    /* MSG_MORE: it leaves with the first bytes of the file */
    io_uring_prep_send(sqe, sh->fd, head + p->hsent, hlen - p->hsent,
                       MSG_NOSIGNAL | MSG_MORE);
    sqe->flags |= IOSQE_IO_LINK;
    ur_handle_sqe(loop, sh, hr, sqe);
    ur_req_pin(L, hr, 5);      /* pinned: the kernel reads it until the CQE */
    hr->obj = p;
    hr->aux = HEAD_SLOT;
    hr->on_cqe = splice_cqe;
    p->refs++;
    p->pending++;
    p->hres = 0;
    ur_req_submitted(loop, hr, sqe);
    hr->task = NULL;
  }
  for (int j = 0; j < pairs; j++) {
    int64_t left = p->sf_left - (int64_t)j * p->size;
    unsigned n = left < p->size ? (unsigned)left : (unsigned)p->size;
    splice_prep(loop, r[2 * j], p, fh, 1, p->sf_off + (int64_t)j * p->size,
                n, 2 * j, 1);
    splice_prep(loop, r[2 * j + 1], p, sh, 0, -1, n, 2 * j + 1,
                j < pairs - 1);
  }
  ur_sock_sending(s, 1);
  return ur_await(L, t, r[2 * pairs - 1], "sendfile", 0, sendfile_k);
}

/* What reached the pipe but not the socket: one more SPLICE, and wait. */
static int sendfile_drain (lua_State *L, ur_task *t, splice_pipe *p) {
  ur_sock *s;
  ur_handle *sh = ur_sock_send_handle(L, 1, &s);
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_SPLICE);
  p->pending = 0;
  p->last = NULL;
  splice_prep(t->loop, r, p, sh, 0, -1, (unsigned)(p->inpipe - p->moved),
              0, 0);
  ur_sock_sending(s, 1);
  return ur_await(L, t, r, "sendfile", 1, sendfile_k);
}

/* The range is sent, or the file ended: the bytes, and the pipe back. */
static int sendfile_done (lua_State *L, splice_pipe *p) {
  lua_Integer sent = (lua_Integer)p->sf_sent;
  ur_sock_sending(sf_sock(L), 0);
  sf_release(L, SF_HOLD);
  lua_pushinteger(L, sent);
  return 1;
}

static int sendfile_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  splice_pipe *p = ((splice_hold *)lua_touserdata(L, SF_HOLD))->p;
  ur_sock *s = sf_sock(L);
  (void)status;
  ur_req_free(t->loop, r);
  ur_sock_sending(s, 0);
  if (ur_interrupted(t)) sf_release(L, SF_HOLD);
  ur_check_interrupt(L, t);
  if (ur_sock_closed(s)) return sendfile_fail(L, -EBADF, p->sf_sent);
  if (ctx == 1) {              /* a drain came back */
    int res = p->res[0];
    if (res < 0) return sendfile_fail(L, res, p->sf_sent);
    if (res == 0) return sendfile_fail(L, -EPIPE, p->sf_sent);
    p->moved += res;
    p->sf_sent += res;
    if (p->moved < p->inpipe) return sendfile_drain(L, t, p);
  }
  else {
    if (p->sf_head) {          /* the head led the chain */
      size_t hlen = lua_rawlen(L, 5);
      int h = p->hres;
      if (h < 0 && h != -ECANCELED) return sendfile_fail(L, h, 0);
      if (h > 0) p->hsent += (size_t)h;
      if (p->hsent < hlen)     /* short: the chain broke before any of
                                  the file moved; the rest of it again */
        return sendfile_round(L, t, p);
      p->sf_head = 0;
    }
    for (int j = 0; j < p->npairs; j++) {
      int64_t left = p->sf_left;
      int ask = left < p->size ? (int)left : p->size;
      int in = p->res[2 * j], wr = p->res[2 * j + 1];
      if (in < 0) return sendfile_fail(L, in, p->sf_sent);
      if (wr < 0 && wr != -ECANCELED) return sendfile_fail(L, wr, p->sf_sent);
      if (wr < 0) wr = 0;      /* the chain broke on a short read */
      p->sf_off += in;
      p->sf_left -= in;
      p->sf_sent += wr;
      if (in < ask) p->sf_eof = 1;   /* the file is shorter than asked */
      if (wr < in) {           /* bytes wait in the pipe; the rest of
                                  the chain was cancelled */
        p->inpipe = in - wr;
        p->moved = 0;
        return sendfile_drain(L, t, p);
      }
      if (p->sf_eof) break;
    }
  }
  if (p->sf_eof || p->sf_left == 0) return sendfile_done(L, p);
  return sendfile_round(L, t, p);
}

/* The splice path, for what is left after the head: a pipe, then chains. */
static int sendfile_splice (lua_State *L, ur_task *t) {
  splice_pipe *p;
  int ret;
  lua_settop(L, 5);
  if ((ret = splice_pipe_new(L)) < 0) return sendfile_fail(L, ret, 0);
  p = ((splice_hold *)lua_touserdata(L, SF_HOLD))->p;
  p->sf_off = lua_tointeger(L, 3);
  p->sf_left = lua_tointeger(L, 4);
  p->sf_sent = 0;
  p->sf_eof = 0;
  p->sf_head = lua_isstring(L, 5) && lua_rawlen(L, 5) > 0;
  p->hsent = 0;
  return sendfile_round(L, t, p);
}

/*
 * The small path.  SPLICE always runs on an io-wq worker (the kernel
 * forces it async), and for a few KiB that thread hop costs more than
 * copying the bytes: bench/static.sh measured 4 KiB files at well under
 * nginx's rate per CPU-second through splice.  So a range of at most
 * SENDFILE_COPY bytes is read into a buffer the request pins (a userdata
 * on the task's stack, never a Lua string), after the head if there is
 * one, by a READ linked to the SEND of the whole buffer: both run inline
 * in one submission, and the head and the bytes leave in one segment.  A
 * short read (the file shrank) breaks the link; the send is cancelled and
 * redone for what was read.  Not sendfile(2) as above, nor preadv2
 * (RWF_NOWAIT) and one sendmsg(MSG_DONTWAIT) of head and bytes on this
 * thread without yielding: at 4 KiB that served 46,000 requests per
 * server CPU-second where these linked ops serve 55,000 (bench/static.sh's
 * setup, in alternation).
 */
#define SENDFILE_COPY (64 * 1024)

static int sfbuf_k (lua_State *L, int status, lua_KContext ctx);

/* the READ half: its result goes to the SEND, which the task waits on */
static void sfread_cqe (ur_loop *loop, ur_req *r) {
  ur_req *snd = ur_req_at(loop, r->u.u64);
  int res = r->res;
  ur_req_free(loop, r);
  if (snd) {
    snd->u.i[0] = res;
    if (--snd->u.i[1] == 0) ur_req_wake(loop, snd);
  }
}

/* the SEND: the task wakes when both have completed */
static void sfsend_cqe (ur_loop *loop, ur_req *r) {
  if (--r->u.i[1] == 0) ur_req_wake(loop, r);
}

/* Send the buffer (6) from byte done to its end (7); ctx = done. */
static int sfbuf_send (lua_State *L, ur_task *t, size_t done) {
  ur_sock *s;
  ur_handle *sh = ur_sock_send_handle(L, 1, &s);
  char *buf = (char *)lua_touserdata(L, 6);
  size_t total = (size_t)lua_tointeger(L, 7);
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_SEND);
  struct io_uring_sqe *sqe = ur_get_sqe(t->loop);
  io_uring_prep_send(sqe, sh->fd, buf + done, total - done, MSG_NOSIGNAL);
  ur_handle_sqe(t->loop, sh, r, sqe);
  ur_req_pin(L, r, 6);          /* pinned: the kernel reads it until the CQE */
  r->u.i[0] = 0;
  ur_req_submitted(t->loop, r, sqe);
  ur_sock_sending(s, 1);
  return ur_await(L, t, r, "sendfile", (lua_KContext)done, sfbuf_k);
}

#define SF_LINKED ((lua_KContext)-1)

static int sfbuf_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  ur_sock *s = sf_sock(L);
  int res = r->res, rd = r->u.i[0];
  size_t hlen = lua_isstring(L, 5) ? lua_rawlen(L, 5) : 0, done, total;
  (void)status;
  ur_req_free(t->loop, r);
  ur_sock_sending(s, 0);
  ur_check_interrupt(L, t);
  if (ctx == SF_LINKED) {      /* the READ and its linked SEND */
    if (rd < 0) return sendfile_fail(L, rd, 0);
    if (res < 0 && res != -ECANCELED) return sendfile_fail(L, res, 0);
    if ((lua_Integer)rd < lua_tointeger(L, 4)) {   /* short: the file shrank */
      lua_pushinteger(L, (lua_Integer)(hlen + (size_t)rd));
      lua_replace(L, 7);
      if (res > 0) return sendfile_fail(L, -EIO, 0);   /* never: the link broke */
      res = 0;
    }
    done = res > 0 ? (size_t)res : 0;
  }
  else {
    done = (size_t)ctx + (res > 0 ? (size_t)res : 0);
    if (res < 0 && res != -EINTR && res != -EAGAIN)
      return sendfile_fail(L, res, done > hlen ? (int64_t)(done - hlen) : 0);
  }
  total = (size_t)lua_tointeger(L, 7);
  if (ur_sock_closed(s))
    return sendfile_fail(L, -EBADF, done > hlen ? (int64_t)(done - hlen) : 0);
  if (done < total) return sfbuf_send(L, t, done);
  lua_pushinteger(L, (lua_Integer)(total - hlen));
  return 1;
}

/* Head and bytes through one buffer: READ linked to SEND; n <= SENDFILE_COPY */
static int sendfile_small (lua_State *L, ur_task *t, int64_t off, size_t n) {
  ur_loop *loop = t->loop;
  ur_sock *s;
  ur_handle *sh = ur_sock_send_handle(L, 1, &s);
  ur_handle *fh = ur_file_handle(L, 2);
  size_t hlen = 0;
  const char *head = lua_isstring(L, 5) ? lua_tolstring(L, 5, &hlen) : NULL;
  size_t bytes = n;
  char *buf;
  ur_req *rr, *sr;
  struct io_uring_sqe *sqe;
  lua_settop(L, 5);
  buf = (char *)lua_newuserdatauv(L, hlen + bytes ? hlen + bytes : 1, 0);  /* 6 */
  lua_pushinteger(L, (lua_Integer)(hlen + bytes));                        /* 7 */
  if (hlen) memcpy(buf, head, hlen);
  if (bytes == 0) return sfbuf_send(L, t, 0);
  rr = ur_req_new(L, loop, IORING_OP_READ);
  sr = ur_req_new(L, loop, IORING_OP_SEND);
  ur_reserve_sqes(loop, 2);
  sqe = ur_get_sqe(loop);
  io_uring_prep_read(sqe, fh->fd, buf + hlen, (unsigned)bytes, (uint64_t)off);
  sqe->flags |= IOSQE_IO_LINK;
  ur_handle_sqe(loop, fh, rr, sqe);
  ur_req_pin(L, rr, 6);         /* the kernel writes it until the CQE */
  rr->on_cqe = sfread_cqe;
  rr->u.u64 = ur_req_ud(loop, sr);
  ur_req_submitted(loop, rr, sqe);
  rr->task = NULL;              /* only the SEND names the task */
  sqe = ur_get_sqe(loop);
  io_uring_prep_send(sqe, sh->fd, buf, hlen + bytes, MSG_NOSIGNAL);
  ur_handle_sqe(loop, sh, sr, sqe);
  ur_req_pin(L, sr, 6);
  sr->on_cqe = sfsend_cqe;
  sr->u.i[0] = 0;
  sr->u.i[1] = 2;               /* CQEs to come: the READ's and its own */
  ur_req_submitted(loop, sr, sqe);
  ur_sock_sending(s, 1);
  return ur_await(L, t, sr, "sendfile", SF_LINKED, sfbuf_k);
}

/*
 * The large path: sendfile(2) on the loop thread, POLL_ADD for room.
 * Through the pipe (above) every SPLICE is an io-wq work item: for a
 * 1 MiB file two thirds of the server's CPU went to those workers and
 * their wake-ups.  sendfile(2) hands the page-cache pages to TCP by
 * reference, as nginx does, on this thread and without a pipe; on a
 * non-blocking socket it stops when the send buffer is full (EAGAIN), and
 * one IORING_OP_POLL_ADD (POLLOUT) on the socket's handle waits for room:
 * closing the socket cancels it like any send.  The head goes first by
 * a send of its own, as nginx's writev: corked with MSG_MORE onto the
 * file's first bytes it cost twice the server CPU per 1 MiB response
 * (bench/static.sh: 5,000-7,600 against 9,900-10,600 requests per
 * CPU-second).
 *
 * The socket is made O_NONBLOCK for the call only and given back as it
 * was (our sockets are blocking: the ring does not need otherwise).
 * sendfile(2) has no MSG_NOSIGNAL: it runs only while SIGPIPE is blocked
 * (uring.run blocks it; uring.step does not); otherwise, and for a
 * source that is not a regular file (a block device), the splice path
 * serves the call.
 *
 * Stack: 1 socket, 2 file, 3 offset, 4 bytes left, 5 head, 6 head bytes
 * sent, 7 file bytes sent, 8 the socket's file flags to restore, or nil.
 */
#define SF_DIRECT_MAX ((int64_t)1 << 30)   /* one sendfile(2) at most */

static int sfdirect_k (lua_State *L, int status, lua_KContext ctx);

/* Give the socket its blocking mode back; never on a closed socket (its
 * number may be somebody else's by now). */
static void sfdirect_restore (lua_State *L, ur_sock *s) {
  if (!lua_isinteger(L, 8)) return;
  if (!ur_sock_closed(s)) {
    ur_handle *sh = ur_sock_send_handle(L, 1, &s);
    (void)fcntl(sh->fd, F_SETFL, (int)lua_tointeger(L, 8));
  }
  lua_pushnil(L);
  lua_replace(L, 8);
}

static int sfdirect_fail (lua_State *L, ur_sock *s, int res) {
  sfdirect_restore(L, s);
  return sendfile_fail(L, res, (int64_t)lua_tointeger(L, 7));
}

/* Send until done or the socket is full; then wait for room. */
static int sfdirect_run (lua_State *L, ur_task *t) {
  ur_sock *s;
  ur_handle *sh = ur_sock_send_handle(L, 1, &s);
  ur_handle *fh = ur_file_handle(L, 2);
  size_t hlen = 0;
  const char *head = lua_isstring(L, 5) ? lua_tolstring(L, 5, &hlen) : NULL;
  size_t hsent = (size_t)lua_tointeger(L, 6);
  int64_t off = (int64_t)lua_tointeger(L, 3);
  int64_t left = (int64_t)lua_tointeger(L, 4);
  int64_t sent = (int64_t)lua_tointeger(L, 7);
  ssize_t n = 0;
  int err = 0;
  if (fh->fd < 0) {            /* closed by another task meanwhile */
    sfdirect_restore(L, s);
    return luaL_error(L, "attempt to use a closed file");
  }
  for (;;) {
    if (hsent < hlen) {
      n = send(sh->fd, head + hsent, hlen - hsent,
               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) hsent += (size_t)n;
    }
    else if (left > 0) {
      off_t o = (off_t)off;
      n = sendfile(sh->fd, fh->fd, &o,
                   (size_t)(left < SF_DIRECT_MAX ? left : SF_DIRECT_MAX));
      if (n == 0) break;       /* the file is shorter than asked */
      if (n > 0) {
        off += n;
        left -= n;
        sent += n;
      }
    }
    else break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
  }
  lua_pushinteger(L, (lua_Integer)off);
  lua_replace(L, 3);
  lua_pushinteger(L, (lua_Integer)left);
  lua_replace(L, 4);
  lua_pushinteger(L, (lua_Integer)hsent);
  lua_replace(L, 6);
  lua_pushinteger(L, (lua_Integer)sent);
  lua_replace(L, 7);
  if (err == EAGAIN || err == EWOULDBLOCK) {
    /* full: wait for room through the ring, then go on */
    ur_req *r = ur_req_new(L, t->loop, IORING_OP_POLL_ADD);
    struct io_uring_sqe *sqe = ur_get_sqe(t->loop);
    io_uring_prep_poll_add(sqe, sh->fd, POLLOUT);
    ur_handle_sqe(t->loop, sh, r, sqe);
    ur_req_submitted(t->loop, r, sqe);
    ur_sock_sending(s, 1);
    return ur_await(L, t, r, "sendfile", 0, sfdirect_k);
  }
  if (err != 0) return sfdirect_fail(L, s, -err);
  sfdirect_restore(L, s);
  lua_pushinteger(L, (lua_Integer)sent);
  return 1;
}

static int sfdirect_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  ur_sock *s = sf_sock(L);
  int res = r->res;
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  ur_sock_sending(s, 0);
  if (ur_interrupted(t)) sfdirect_restore(L, s);
  ur_check_interrupt(L, t);
  if (ur_sock_closed(s)) return sfdirect_fail(L, s, -EBADF);
  /* a poll error: the next send says which (EPIPE, ECONNRESET) */
  if (res < 0 && res != -EINTR) return sfdirect_fail(L, s, res);
  return sfdirect_run(L, t);
}

static int sigpipe_blocked (void) {
  sigset_t cur;
  return pthread_sigmask(SIG_BLOCK, NULL, &cur) == 0
      && sigismember(&cur, SIGPIPE) == 1;
}

/* sendfile(2) where it can serve the call, else the splice path. */
static int sendfile_direct (lua_State *L, ur_task *t) {
  ur_sock *s;
  ur_handle *sh = ur_sock_send_handle(L, 1, &s);
  ur_handle *fh = ur_file_handle(L, 2);
  int fl;
  struct stat st;
  if (!sigpipe_blocked() || fstat(fh->fd, &st) != 0 || !S_ISREG(st.st_mode)
      || (fl = fcntl(sh->fd, F_GETFL)) < 0)
    return sendfile_splice(L, t);
  lua_settop(L, 5);
  lua_pushinteger(L, 0);       /* 6: head bytes sent */
  lua_pushinteger(L, 0);       /* 7: file bytes sent */
  if (fl & O_NONBLOCK) lua_pushnil(L);          /* 8: nothing to restore */
  else if (fcntl(sh->fd, F_SETFL, fl | O_NONBLOCK) == 0) lua_pushinteger(L, fl);
  else {
    lua_settop(L, 5);
    return sendfile_splice(L, t);
  }
  return sfdirect_run(L, t);
}

/* What a static file server needs of a file: type, size, mtime (whole
 * seconds), and the inode and device that say which file it is. */
static int push_meta (lua_State *L, const struct stat *st) {
  lua_pushstring(L, ur_file_type(st->st_mode));
  lua_pushinteger(L, (lua_Integer)st->st_size);
  lua_pushinteger(L, (lua_Integer)st->st_mtim.tv_sec);
  lua_pushinteger(L, (lua_Integer)st->st_ino);
  lua_pushinteger(L, (lua_Integer)st->st_dev);
  return 5;
}

/* core._file_meta(file) -> type, size, mtime, ino, dev | fail
 * By fstat on this thread: it never waits for a disk (the inode is in
 * memory once the file is open), and it spares a server's request a
 * round trip through the ring and a 15-field stat table. */
static int l_file_meta (lua_State *L) {
  ur_handle *fh = ur_file_handle(L, 1);
  struct stat st;
  if (fh->fd < 0) return luaL_error(L, "attempt to use a closed file");
  if (fstat(fh->fd, &st) != 0) return ur_pushfail(L, -errno, NULL);
  return push_meta(L, &st);
}

/* core._path_meta(path) -> type, size, mtime, ino, dev | fail
 * stat(2) on this thread, for uring.http.static's open-file cache: is the
 * file it holds open still the one at path?  Only asked of paths it has
 * served, whose dentries and inodes are in memory: a lookup of a few
 * hundred nanoseconds, where an open and a close through the ring cost
 * two submissions and a resume per request. */
static int l_path_meta (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) return ur_pushfail(L, -errno, path);
  return push_meta(L, &st);
}

/* Stack 1 socket, 2 file, 3 offset, 4 length (both checked), 5 head:
 * the path for the size. */
static int sendfile_start (lua_State *L, ur_task *t) {
  lua_Integer off = lua_tointeger(L, 3), len = lua_tointeger(L, 4);
  if (ur_file_handle(L, 2)->fd < 0)   /* closed while a send went ahead */
    return luaL_error(L, "attempt to use a closed file");
  if (len <= SENDFILE_COPY) return sendfile_small(L, t, off, (size_t)len);
  return sendfile_direct(L, t);
}

/* A send-behind went first: now the file's bytes. */
static int sendfile_behind_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  (void)status; (void)ctx;
  if (ur_sock_behind_done(L, t) == NULL) {   /* closed: nil, msg, errno */
    lua_pushinteger(L, 0);
    return 4;
  }
  return sendfile_start(L, t);
}

/* sock:sendfile(file [, offset [, len [, head]]])
 *   -> bytes | nil, msg, errno, bytes
 * Sends len bytes (default: to the end) of file from offset (default 0)
 * to the socket, after head if given; fewer only if the file is shorter.
 * bytes counts the file's bytes, not the head's. */
int ur_sock_sendfile (lua_State *L) {
  ur_sock *s;
  ur_handle *fh;
  lua_Integer off, len;
  ur_task *t;
  int w;
  ur_sock_send_handle(L, 1, &s);
  fh = ur_file_handle(L, 2);
  if (fh->fd < 0) return luaL_error(L, "attempt to use a closed file");
  off = luaL_optinteger(L, 3, 0);
  len = luaL_optinteger(L, 4, -1);
  luaL_argcheck(L, off >= 0, 3, "offset must be non-negative");
  luaL_argcheck(L, lua_isnoneornil(L, 4) || len >= 0, 4,
                "length must be non-negative");
  if (!lua_isnoneornil(L, 5)) luaL_checkstring(L, 5);
  t = ur_task_current(L, "sendfile");
  if (len < 0) {               /* to the end: the size, once */
    struct stat st;
    if (fstat(fh->fd, &st) != 0) return ur_pushfail(L, -errno, "sendfile");
    len = st.st_size > off ? (lua_Integer)st.st_size - off : 0;
  }
  lua_settop(L, 5);
  lua_pushinteger(L, off);
  lua_replace(L, 3);
  lua_pushinteger(L, len);
  lua_replace(L, 4);
  if (len == 0 && lua_rawlen(L, 5) == 0) {   /* nothing to send */
    lua_pushinteger(L, 0);
    return 1;
  }
  if ((w = ur_sock_wait_behind(L, s, t, 0, sendfile_behind_k)) >= 0) return w;
  return sendfile_start(L, t);
}

void ur_register_copy (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_copy_range", l_copy_range}, {"_copy_trim", l_copy_trim},
    {"_splice_pipe", l_splice_pipe}, {"_splice", l_splice},
    {"_file_meta", l_file_meta}, {"_path_meta", l_path_meta},
    {NULL, NULL}
  };
  luaL_newmetatable(L, COPY_MT);
  lua_pushcfunction(L, copy_hold_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, UR_SPLICE_MT);
  lua_pushcfunction(L, splice_hold_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, splice_hold_gc);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
}
