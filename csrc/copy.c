/*
 * copy.c: uring.copyfile's fast path, copy_file_range(2) on a helper
 * thread.
 *
 * io_uring has no copy_file_range op.  SPLICE pairs through a pipe (fs.c)
 * do the same kernel copy, but every SPLICE is an io-wq work item: the
 * pipe-to-file half is hashed on the destination inode and the
 * file-to-pipe half is not, so each 1 MiB pair hops between two io-wq
 * workers and each completion wakes the loop thread (~4,200 context
 * switches a GiB, cp's 30-60; try_to_wake_up was 12% of the profile).
 * cp makes one copy_file_range call; so does this, in steps, on
 * a thread of its own, while the loop waits on an IORING_OP_READ of an
 * eventfd the thread writes once, when it is done: other tasks keep
 * running, and the task resumes through the ring like any other.
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
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "uring.h"

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

void ur_register_copy (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_copy_range", l_copy_range}, {"_copy_trim", l_copy_trim},
    {NULL, NULL}
  };
  luaL_newmetatable(L, COPY_MT);
  lua_pushcfunction(L, copy_hold_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
}
