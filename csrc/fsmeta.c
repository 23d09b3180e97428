/*
 * fsmeta.c: metadata and links, the calls beside open/read/write:
 * uring.chmod, chown, utime, truncate, readlink, realpath, access,
 * file:allocate, and the C under file.lua's file:truncate, file:lock and
 * fs.lua's temporary names.
 *
 * Two ways down, one shape up.  Where the kernel has an op the call goes
 * through the ring (FALLOCATE; FTRUNCATE from 6.9, when the probe has
 * it).  Where it has none (chmod, chown, utimensat, truncate by path,
 * readlink, realpath, faccessat) the call is a job on the helper pool
 * (jobs.c): it blocks a pool thread, never the loop.  Either way the
 * task waits and gets true (or the string asked for) | nil, msg, errno.
 * uring.features().fs says which way each function goes.
 *
 * Locks: flock(2) may wait for as long as another process likes, and a
 * thread stuck in it cannot be cancelled.  file:lock therefore asks with
 * LOCK_NB here (never blocks) and file.lua waits between tries on the
 * ring's timers, so cancelling or timing out the task simply ends it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uring.h"

#define OP_FTRUNCATE 55   /* IORING_OP_FTRUNCATE, 6.9: not in liburing 2.3 */

enum { P_CHMOD, P_CHOWN, P_UTIME, P_TRUNCATE, P_FTRUNCATE, P_READLINK,
       P_REALPATH, P_ACCESS };
static const char *const pnames[] = {
  "chmod", "chown", "utime", "truncate", "truncate", "readlink", "realpath",
  "access"
};

typedef struct path_job {
  ur_job job;
  int op;                 /* P_* */
  int res;                /* 0 or -errno */
  int fd;                 /* P_FTRUNCATE: our own dup, closed by drop */
  int64_t a, b;           /* mode, uid/gid, size */
  struct timespec ts[2];  /* P_UTIME */
  char *out;              /* readlink, realpath: malloc'd */
  size_t outlen;
  char path[];
} path_job;

static void path_drop (ur_job *j) {
  path_job *p = (path_job *)j;
  ur_fd_release(p->fd);
  free(p->out);
  free(p);
}

static void do_readlink (path_job *p) {
  size_t cap = 256;
  for (;;) {
    char *buf = (char *)malloc(cap);
    ssize_t n;
    if (buf == NULL) {
      p->res = -ENOMEM;
      return;
    }
    n = readlink(p->path, buf, cap);
    if (n < 0) {
      p->res = -errno;
      free(buf);
      return;
    }
    if ((size_t)n < cap) {      /* else it may have been cut: grow */
      p->out = buf;
      p->outlen = (size_t)n;
      return;
    }
    free(buf);
    cap *= 2;
  }
}

static void path_run (ur_job *j) {
  path_job *p = (path_job *)j;
  int rc = 0;
  switch (p->op) {
    case P_CHMOD: rc = fchmodat(AT_FDCWD, p->path, (mode_t)p->a, 0); break;
    case P_CHOWN:
      rc = fchownat(AT_FDCWD, p->path, (uid_t)p->a, (gid_t)p->b, 0);
      break;
    case P_UTIME: rc = utimensat(AT_FDCWD, p->path, p->ts, 0); break;
    case P_TRUNCATE: rc = truncate(p->path, (off_t)p->a); break;
    case P_FTRUNCATE: rc = ftruncate(p->fd, (off_t)p->a); break;
    case P_READLINK: do_readlink(p); return;
    case P_REALPATH:
      p->out = realpath(p->path, NULL);
      if (p->out == NULL) rc = -1;
      else p->outlen = strlen(p->out);
      break;
    default: rc = faccessat(AT_FDCWD, p->path, (int)p->a, AT_EACCESS);
  }
  p->res = rc < 0 ? -errno : 0;
}

/* A job for op on path (NULL: on p->fd), not yet queued.  The stack is
 * cut to 4 and the job set pushed at 5, where the continuation finds it. */
static path_job *path_new (lua_State *L, int op, const char *path) {
  size_t len = path ? strlen(path) : 0;
  path_job *p;
  ur_jobset *set;
  int ret;
  lua_settop(L, 4);
  ret = ur_jobset_new(L, &set);
  if (ret < 0) {
    ur_pushfail(L, ret, pnames[op]);
    return NULL;
  }
  p = (path_job *)calloc(1, sizeof *p + len + 1);
  if (p == NULL) luaL_error(L, "%s: not enough memory", pnames[op]);
  if (path) memcpy(p->path, path, len + 1);
  p->op = op;
  p->fd = -1;
  p->job.run = path_run;
  p->job.drop = path_drop;
  return p;
}

static int path_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_jobset *set = ur_jobset_check(L, 5);
  int res = ur_jobset_woken(L, t), nret = 1;
  path_job *p;
  (void)status;
  if (res < 0) return ur_pushfail(L, res, pnames[ctx]);
  p = (path_job *)ur_jobset_peek(set);
  if (p == NULL)
    return ur_jobset_wait(L, t, set, pnames[ctx], ctx, path_k);
  if (p->res < 0)
    nret = ur_pushfail(L, p->res, lua_type(L, 1) == LUA_TSTRING
                                    ? lua_tostring(L, 1) : NULL);
  else if (p->out) lua_pushlstring(L, p->out, p->outlen);
  else lua_pushboolean(L, 1);
  ur_jobset_drop(set, &p->job);
  ur_jobset_release(L, 5);      /* its eventfd closes now, not at the GC */
  return nret;
}

/* Queue p and wait for it: true, a string, or the fail triple. */
static int path_start (lua_State *L, path_job *p) {
  ur_jobset *set = ur_jobset_check(L, 5);
  ur_task *t = ur_task_current(L, pnames[p->op]);
  ur_job_submit(set, &p->job);
  return ur_jobset_wait(L, t, set, pnames[p->op], p->op, path_k);
}

/* The shared start of the path functions: the task first (raises
 * outside one), then the job. */
#define PATH_JOB(L, op, path, p) do { \
    ur_task_current(L, pnames[op]); \
    if ((p = path_new(L, op, path)) == NULL) return 3; \
  } while (0)

/* uring.chmod(path, mode) -> true | fail */
static int l_chmod (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  lua_Integer mode = luaL_checkinteger(L, 2);
  path_job *p;
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "invalid permissions");
  PATH_JOB(L, P_CHMOD, path, p);
  p->a = mode;
  return path_start(L, p);
}

/* an owner id: an integer in [0, 2^32 - 2], or nil/-1 for "unchanged" */
static int64_t checkid (lua_State *L, int arg) {
  lua_Integer id;
  if (lua_isnoneornil(L, arg)) return -1;
  id = luaL_checkinteger(L, arg);
  luaL_argcheck(L, id >= -1 && id < (lua_Integer)UINT32_MAX, arg, "invalid id");
  return id;
}

/* uring.chown(path, uid, gid) -> true | fail   (nil or -1: unchanged) */
static int l_chown (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  int64_t uid = checkid(L, 2), gid = checkid(L, 3);
  path_job *p;
  PATH_JOB(L, P_CHOWN, path, p);
  p->a = uid;
  p->b = gid;
  return path_start(L, p);
}

/* seconds since the epoch -> timespec; nil: now */
static void checktime (lua_State *L, int arg, struct timespec *ts) {
  lua_Number v, s;
  if (lua_isnoneornil(L, arg)) {
    ts->tv_sec = 0;
    ts->tv_nsec = UTIME_NOW;
    return;
  }
  v = luaL_checknumber(L, arg);
  luaL_argcheck(L, isfinite(v) && fabs(v) < 1e12, arg,
                "time must be a finite number of seconds");
  s = floor(v);
  ts->tv_sec = (time_t)s;
  ts->tv_nsec = (long)((v - s) * 1e9);
  if (ts->tv_nsec > 999999999) ts->tv_nsec = 999999999;
}

/* uring.utime(path [, atime [, mtime]]) -> true | fail   (nil: now) */
static int l_utime (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  struct timespec ts[2];
  path_job *p;
  checktime(L, 2, &ts[0]);
  checktime(L, 3, &ts[1]);
  PATH_JOB(L, P_UTIME, path, p);
  p->ts[0] = ts[0];
  p->ts[1] = ts[1];
  return path_start(L, p);
}

static lua_Integer checksize (lua_State *L, int arg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n >= 0, arg, "size must be non-negative");
  return n;
}

/* uring.truncate(path, size) -> true | fail */
static int l_truncate (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  lua_Integer size = checksize(L, 2);
  path_job *p;
  PATH_JOB(L, P_TRUNCATE, path, p);
  p->a = size;
  return path_start(L, p);
}

/* uring.readlink(path) -> target | fail */
static int l_readlink (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  path_job *p;
  PATH_JOB(L, P_READLINK, path, p);
  return path_start(L, p);
}

/* uring.realpath(path) -> absolute path, links resolved | fail */
static int l_realpath (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  path_job *p;
  PATH_JOB(L, P_REALPATH, path, p);
  return path_start(L, p);
}

/* uring.access(path [, mode]) -> true | fail
 * mode: any of "r", "w", "x" together ("rw"); nil or "f": it exists */
static int l_access (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  const char *mode = ur_optcstr(L, 2, "mode", "f");
  int how = 0;
  path_job *p;
  for (const char *c = mode; *c; c++) {
    if (*c == 'r') how |= R_OK;
    else if (*c == 'w') how |= W_OK;
    else if (*c == 'x') how |= X_OK;
    else if (*c != 'f' || mode[1] != '\0') luaL_argerror(L, 2, "invalid mode");
  }
  luaL_argcheck(L, *mode != '\0', 2, "invalid mode");
  PATH_JOB(L, P_ACCESS, path, p);
  p->a = how;
  return path_start(L, p);
}

/* --- on an open file: through the ring where the kernel can --- */

static ur_handle *openfile (lua_State *L, int idx) {
  ur_handle *h = ur_file_handle(L, idx);
  if (h->fd < 0) luaL_error(L, "attempt to use a closed file");
  return h;
}

static int fileop_k (lua_State *L, int status, lua_KContext ctx) {
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

/* file:allocate(offset, len [, keep_size]) -> true | fail
 * Reserves the blocks (IORING_OP_FALLOCATE): later writes there cannot
 * fail for want of space.  keep_size: the file's size stays as it is. */
static int l_file_allocate (lua_State *L) {
  ur_handle *h = openfile(L, 1);
  lua_Integer off = luaL_checkinteger(L, 2), len = luaL_checkinteger(L, 3);
  int keep = lua_toboolean(L, 4);
  ur_task *t;
  ur_req *r;
  struct io_uring_sqe *sqe;
  luaL_argcheck(L, off >= 0, 2, "offset must be non-negative");
  luaL_argcheck(L, len > 0, 3, "length must be positive");
  t = ur_task_current(L, "allocate");
  r = ur_req_new(L, t->loop, IORING_OP_FALLOCATE);
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_fallocate(sqe, h->fd, keep ? FALLOC_FL_KEEP_SIZE : 0,
                          (off_t)off, (off_t)len);
  ur_handle_sqe(t->loop, h, r, sqe);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "allocate", 0, fileop_k);
}

static int ftruncate_by_ring (ur_loop *loop) {
  return loop->probed && !ur_op_missing(loop, OP_FTRUNCATE);
}

/* core._ftruncate(file, size) -> true | fail: file.lua's file:truncate
 * has flushed the file's buffers first */
static int l_ftruncate (lua_State *L) {
  ur_handle *h = openfile(L, 1);
  lua_Integer size = checksize(L, 2);
  ur_task *t = ur_task_current(L, "truncate");
  if (ftruncate_by_ring(t->loop)) {
    ur_req *r = ur_req_new(L, t->loop, OP_FTRUNCATE);
    struct io_uring_sqe *sqe = ur_get_sqe(t->loop);
    /* the length travels in off; addr, len and the flags stay 0 */
    io_uring_prep_rw(OP_FTRUNCATE, sqe, h->fd, NULL, 0, (uint64_t)size);
    ur_handle_sqe(t->loop, h, r, sqe);
    ur_req_submitted(t->loop, r, sqe);
    return ur_await(L, t, r, "truncate", 0, fileop_k);
  }
  else {
    /* on a pool thread, with a dup: closing the file meanwhile cannot
     * hand the thread another file's number */
    path_job *p = path_new(L, P_FTRUNCATE, NULL);
    if (p == NULL) return 3;
    p->a = size;
    p->fd = fcntl(h->fd, F_DUPFD_CLOEXEC, 0);
    if (p->fd < 0) {
      int e = errno;
      path_drop(&p->job);
      return ur_pushfail(L, -e, NULL);
    }
    return path_start(L, p);
  }
}

/* core._flock(file, how) -> true | fail; how: "ex", "sh" or "un".
 * Never waits (LOCK_NB): file.lua retries on the ring's timers. */
static int l_flock (lua_State *L) {
  ur_handle *h = openfile(L, 1);
  static const char *const hows[] = {"ex", "sh", "un", NULL};
  static const int ops[] = {LOCK_EX, LOCK_SH, LOCK_UN};
  int how = luaL_checkoption(L, 2, NULL, hows);
  if (flock(h->fd, ops[how] | LOCK_NB) != 0) return ur_pushfail(L, -errno, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* core._randname(n) -> n letters and digits from getrandom(2), for
 * temporary names nobody can guess */
static int l_randname (lua_State *L) {
  static const char abc[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  unsigned char raw[32];
  char out[32];
  lua_Integer n = luaL_checkinteger(L, 1);
  ssize_t got = 0;
  luaL_argcheck(L, n > 0 && n <= 32, 1, "length must be in 1..32");
  while (got < n) {
    ssize_t k = getrandom(raw + got, (size_t)(n - got), 0);
    if (k < 0 && errno != EINTR) return ur_pushfail(L, -errno, "getrandom");
    if (k > 0) got += k;
  }
  for (lua_Integer i = 0; i < n; i++) out[i] = abc[raw[i] % (sizeof abc - 1)];
  lua_pushlstring(L, out, (size_t)n);
  return 1;
}

/* features().fs: which way each file system function goes */
static void fs_features (lua_State *L, ur_loop *loop) {
  static const char *const ring[] = {
    "lstat", "symlink", "link", "allocate", "tmpfile", "mkdtemp", NULL
  };
  static const char *const thread[] = {
    "dir", "walk", "chmod", "chown", "utime", "truncate", "readlink",
    "realpath", "access", NULL
  };
  lua_createtable(L, 0, 18);
  for (int i = 0; ring[i]; i++) {
    lua_pushliteral(L, "ring");
    lua_setfield(L, -2, ring[i]);
  }
  for (int i = 0; thread[i]; i++) {
    lua_pushliteral(L, "thread");
    lua_setfield(L, -2, thread[i]);
  }
  lua_pushstring(L, ftruncate_by_ring(loop) ? "ring" : "thread");
  lua_setfield(L, -2, "file:truncate");
  lua_pushliteral(L, "poll");         /* LOCK_NB, retried on ring timers */
  lua_setfield(L, -2, "lock");
  lua_setfield(L, -2, "fs");
}

void ur_register_fsmeta (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"chmod", l_chmod}, {"chown", l_chown}, {"utime", l_utime},
    {"truncate", l_truncate}, {"readlink", l_readlink},
    {"realpath", l_realpath}, {"access", l_access},
    {"_ftruncate", l_ftruncate}, {"_flock", l_flock},
    {"_randname", l_randname},
    {NULL, NULL}
  };
  static const luaL_Reg methods[] = {
    {"allocate", l_file_allocate},
    {NULL, NULL}
  };
  static const ur_hooks hooks = {
    NULL, NULL, NULL, NULL, NULL, fs_features
  };
  ur_loop_hook(L, &hooks);
  lua_getfield(L, -1, "file_methods");
  ur_setfuncs(L, methods);
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
}
