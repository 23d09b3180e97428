/*
 * ring_prep.c: the teaching ring's prep_* methods.
 *
 * One method per io_uring op, each the liburing io_uring_prep_* of the
 * same name with memory-safe arguments: fds, uring.buffers and strings
 * with bounds checked, paths without zero bytes, seconds as numbers.
 * Every argument is checked first; then ur_ring_sqe (ring_req.c) takes a
 * request with its anchors and memory, and the SQE; from there to the end
 * of the method nothing raises.  Also here: ring:fixed(slot), the marker
 * a prep takes for a registered file, and the kernel constants the prep
 * arguments use.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/xattr.h>

#include "ring.h"

#define RING_MAX_IOV   1024         /* IOV_MAX */

/* ------------------------------------------------------- argument checks */

/* user_data: any Lua integer; omitted means 0 */
static lua_Integer ring_user (lua_State *L, int idx) {
  return luaL_optinteger(L, idx, 0);
}

static int ring_int (lua_State *L, int idx, lua_Integer lo, lua_Integer hi,
                     const char *what) {
  lua_Integer v = luaL_checkinteger(L, idx);
  if (v < lo || v > hi)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s must be in %I..%I",
                                          what, lo, hi));
  return (int)v;
}

unsigned ur_ring_uint (lua_State *L, int idx, lua_Integer def,
                       const char *what) {
  lua_Integer v = luaL_optinteger(L, idx, def);
  if (v < 0 || v > (lua_Integer)UINT_MAX)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s must be in 0..%I", what,
                                          (lua_Integer)UINT_MAX));
  return (unsigned)v;
}

static int ring_fd (lua_State *L, int idx) {
  return ring_int(L, idx, -1, INT_MAX, "fd");
}

/* The slot a ring:fixed(slot) marker at idx names, checked against the
 * files registered now (they may have changed since the marker was made). */
static int ring_slot_check (lua_State *L, ur_ring *r, int idx,
                            lua_Integer slot) {
  if (r->nfiles == 0)
    luaL_argerror(L, idx, "no files are registered (use ring:register_files)");
  if (slot < 0 || slot >= r->nfiles)
    luaL_argerror(L, idx, lua_pushfstring(L, "file slot %I out of range "
                  "(0..%d registered)", slot, r->nfiles - 1));
  return (int)slot;
}

/*
 * Where an SQE names a file: an fd, or ring:fixed(slot) for a registered
 * file.  Returns the fd or the slot; *fixed says which (the caller sets
 * IOSQE_FIXED_FILE after its io_uring_prep_*, which clears sqe->flags).
 */
static int ring_file (lua_State *L, ur_ring *r, int idx, int *fixed) {
  int *slot = (int *)luaL_testudata(L, idx, RING_FIXED_MT);
  if (slot != NULL) {
    *fixed = 1;
    return ring_slot_check(L, r, idx, *slot);
  }
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_typeerror(L, idx, "fd or ring:fixed(slot)");
  *fixed = 0;
  return ring_fd(L, idx);
}

static void ring_fixed_flag (struct io_uring_sqe *sqe, int fixed) {
  if (fixed) sqe->flags |= IOSQE_FIXED_FILE;
}

/* A directory fd, or nil for the current directory (AT_FDCWD). */
static int ring_dirfd (lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return AT_FDCWD;
  return ring_int(L, idx, AT_FDCWD, INT_MAX, "dirfd");
}

/* A file offset: >= 0, or -1 for "the file position" (read, write, splice). */
static uint64_t ring_offset (lua_State *L, int idx) {
  lua_Integer v = luaL_optinteger(L, idx, 0);
  luaL_argcheck(L, v >= -1, idx, "offset must be >= 0 (or -1)");
  return (uint64_t)(int64_t)v;
}

/* A path the kernel reads (it gets anchored by the caller). */
static const char *ring_path (lua_State *L, int idx) {
  return ur_checkpath(L, idx);
}

/* Seconds as a number -> timespec; kept in the request (u.ts), which the
 * kernel reads at submit time (or later, with SQPOLL). */
struct __kernel_timespec ur_ring_seconds (lua_State *L, int idx) {
  struct __kernel_timespec ts;
  double t = ur_checkseconds(L, idx);
  ts.tv_sec = (long long)floor(t);
  ts.tv_nsec = (long long)((t - floor(t)) * 1e9);
  if (ts.tv_nsec >= 1000000000) ts.tv_nsec = 999999999;
  return ts;
}

/*
 * The bytes an SQE reads or writes: a uring.buffer (or, when the kernel
 * only reads, a string), nbytes (nil: through the end) from 1-based
 * position pos (nil: 1).  Bounds are checked here; an overflow raises.
 */
typedef struct ring_region {
  unsigned char *p;     /* into a buffer */
  const char *s;        /* or into a string */
  unsigned len;
  ur_buffer *buf;
} ring_region;

static ring_region ring_region_of (lua_State *L, int bidx, int nidx, int pidx,
                                   int strings_ok) {
  ring_region g = { NULL, NULL, 0, NULL };
  size_t size;
  lua_Integer pos, n;
  if (strings_ok && lua_type(L, bidx) == LUA_TSTRING) {
    g.s = lua_tolstring(L, bidx, &size);
  }
  else {
    g.buf = (ur_buffer *)luaL_testudata(L, bidx, UR_BUFFER_MT);
    if (g.buf == NULL)
      luaL_typeerror(L, bidx, strings_ok ? "uring.buffer or string"
                                         : "uring.buffer");
    size = g.buf->size;
  }
  pos = luaL_optinteger(L, pidx, 1);
  luaL_argcheck(L, pos >= 1 && (size_t)pos <= size + 1, pidx,
                "position out of range");
  n = luaL_optinteger(L, nidx, (lua_Integer)(size - (size_t)(pos - 1)));
  luaL_argcheck(L, n >= 0, nidx, "nbytes must be >= 0");
  if ((size_t)n > size - (size_t)(pos - 1) || n > (lua_Integer)UINT_MAX)
    luaL_argerror(L, nidx, lua_pushfstring(L,
        "%I bytes at position %I overflow a %s of %I bytes", n, pos,
        g.buf ? "buffer" : "string", (lua_Integer)size));
  g.len = (unsigned)n;
  if (g.buf) g.p = g.buf->data + pos - 1;
  else g.s += pos - 1;
  return g;
}


/* --------------------------------------------------------------- prep_* */

/* ring:prep_nop([user_data]) */
static int l_prep_nop (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  lua_Integer ud = ring_user(L, 2);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_nop", IORING_OP_NOP,
                                         ud, 0, 0, &q);
  io_uring_prep_nop(sqe);
  return 0;
}

/* Shared by read/write and their _fixed forms: argument order is
 * (fd, buf, nbytes, offset, user_data [, pos]). */
static int ring_prep_rw (lua_State *L, const char *fname, uint8_t op) {
  ur_ring *r = ur_ring_check(L);
  int ffixed;
  int fd = ring_file(L, r, 2, &ffixed);
  int is_write = (op == IORING_OP_WRITE || op == IORING_OP_WRITE_FIXED);
  int fixed = (op == IORING_OP_READ_FIXED || op == IORING_OP_WRITE_FIXED);
  ring_region g = ring_region_of(L, 3, 4, 7, is_write && !fixed);
  uint64_t off = ring_offset(L, 5);
  lua_Integer ud = ring_user(L, 6);
  int bindex = 0;
  ur_req *q;
  struct io_uring_sqe *sqe;
  if (fixed) {
    /* the kernel finds the pages by index; we find the index by buffer */
    lua_getiuservalue(L, 1, RING_UV_FIXED);
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushvalue(L, 3);
      lua_rawget(L, -2);
    }
    else
      lua_pushnil(L);
    if (!lua_isinteger(L, -1))
      return luaL_argerror(L, 3, "buffer is not registered "
                           "(use ring:register_buffers)");
    bindex = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
  }
  sqe = ur_ring_sqe(L, r, fname, op, ud, 3, 0, &q);
  switch (op) {
    case IORING_OP_READ:
      io_uring_prep_read(sqe, fd, g.p, g.len, off);
      break;
    case IORING_OP_WRITE:
      io_uring_prep_write(sqe, fd, g.buf ? (const void *)g.p : g.s, g.len,
                          off);
      break;
    case IORING_OP_READ_FIXED:
      io_uring_prep_read_fixed(sqe, fd, g.p, g.len, off, bindex);
      break;
    default:
      io_uring_prep_write_fixed(sqe, fd, g.p, g.len, off, bindex);
      break;
  }
  ring_fixed_flag(sqe, ffixed);
  if (g.buf) ur_ring_pin(q, g.buf);
  return 0;
}

/* ring:prep_read(fd, buf, nbytes, offset [, user_data [, pos]]) */
static int l_prep_read (lua_State *L) {
  return ring_prep_rw(L, "prep_read", IORING_OP_READ);
}

/* ring:prep_write(fd, buf_or_string, nbytes, offset [, user_data [, pos]]);
 * a string is pinned, never copied */
static int l_prep_write (lua_State *L) {
  return ring_prep_rw(L, "prep_write", IORING_OP_WRITE);
}

static int l_prep_read_fixed (lua_State *L) {
  return ring_prep_rw(L, "prep_read_fixed", IORING_OP_READ_FIXED);
}

static int l_prep_write_fixed (lua_State *L) {
  return ring_prep_rw(L, "prep_write_fixed", IORING_OP_WRITE_FIXED);
}

/*
 * ring:prep_readv(fd, {buf, ...}, offset [, user_data [, rw_flags]]) and
 * prep_writev (whose table may also hold strings).  The table is copied
 * into a fresh anchor table, so the user may change theirs afterwards;
 * the iovec array and the pinned-buffer list share one malloc'd block.
 */
static int ring_prep_vec (lua_State *L, const char *fname, int is_write) {
  ur_ring *r = ur_ring_check(L);
  int ffixed;
  int fd = ring_file(L, r, 2, &ffixed);
  uint64_t off;
  lua_Integer ud, n;
  int rwflags = 0, anchor;
  ur_req *q;
  struct io_uring_sqe *sqe;
  struct iovec *iov;
  ur_buffer **bufv;
  luaL_checktype(L, 3, LUA_TTABLE);
  off = ring_offset(L, 4);
  ud = ring_user(L, 5);
  if (!lua_isnoneornil(L, 6))
    rwflags = ring_int(L, 6, INT_MIN, INT_MAX, "rw_flags");
  n = (lua_Integer)lua_rawlen(L, 3);
  luaL_argcheck(L, n >= 1 && n <= RING_MAX_IOV, 3,
                "table must hold 1..1024 buffers");
  lua_createtable(L, (int)n, 0);
  anchor = lua_gettop(L);
  for (lua_Integer i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, 3, i);
    if (!(t == LUA_TSTRING && is_write) &&
        luaL_testudata(L, -1, UR_BUFFER_MT) == NULL)
      return luaL_argerror(L, 3, lua_pushfstring(L,
          "item %I is a %s, not a uring.buffer%s", i, luaL_typename(L, -1),
          is_write ? " or string" : ""));
    lua_rawseti(L, anchor, i);
  }
  sqe = ur_ring_sqe(L, r, fname, is_write ? IORING_OP_WRITEV : IORING_OP_READV,
                    ud, anchor, (size_t)n * (sizeof(ur_buffer *) + sizeof *iov),
                    &q);
  /* UR_MEM_BUFVEC: the pinned buffers first (ur_slab_put unpins them),
   * then the iovecs */
  bufv = (ur_buffer **)q->mem;
  iov = (struct iovec *)(bufv + n);
  q->memclass = UR_MEM_BUFVEC;
  q->aux = (int)n;
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, anchor, i + 1);    /* no raise: the anchor table has it */
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len;
      const char *str = lua_tolstring(L, -1, &len);
      iov[i].iov_base = (void *)(uintptr_t)str;   /* the kernel only reads */
      iov[i].iov_len = len;
    }
    else {
      ur_buffer *b = (ur_buffer *)lua_touserdata(L, -1);
      iov[i].iov_base = b->data;
      iov[i].iov_len = b->size;
      bufv[i] = b;
      b->pins++;                                  /* pinned until CQE */
    }
    lua_pop(L, 1);
  }
  if (is_write)
    io_uring_prep_writev2(sqe, fd, iov, (unsigned)n, off, rwflags);
  else
    io_uring_prep_readv2(sqe, fd, iov, (unsigned)n, off, rwflags);
  ring_fixed_flag(sqe, ffixed);
  return 0;
}

/* ring:prep_readv(fd, {buf, ...}, offset [, user_data [, rw_flags]]) */
static int l_prep_readv (lua_State *L) {
  return ring_prep_vec(L, "prep_readv", 0);
}

/* ring:prep_writev(fd, {buf_or_string, ...}, offset [, user_data [, rw_flags]]) */
static int l_prep_writev (lua_State *L) {
  return ring_prep_vec(L, "prep_writev", 1);
}

/* ring:prep_fsync(fd [, datasync [, user_data]]) */
static int l_prep_fsync (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int ffixed;
  int fd = ring_file(L, r, 2, &ffixed);
  lua_Integer ud;
  ur_req *q;
  struct io_uring_sqe *sqe;
  luaL_argexpected(L, lua_isnoneornil(L, 3) || lua_isboolean(L, 3), 3,
                   "boolean");
  ud = ring_user(L, 4);
  sqe = ur_ring_sqe(L, r, "prep_fsync", IORING_OP_FSYNC, ud, 0, 0, &q);
  io_uring_prep_fsync(sqe, fd, lua_toboolean(L, 3) ? IORING_FSYNC_DATASYNC : 0);
  ring_fixed_flag(sqe, ffixed);
  return 0;
}

/* ring:prep_sync_file_range(fd, len, offset, flags [, user_data]) */
static int l_prep_sync_file_range (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int fd = ring_fd(L, 2);
  unsigned len = ur_ring_uint(L, 3, 0, "len");
  uint64_t off = ring_offset(L, 4);
  int flags = (int)ur_ring_uint(L, 5, 0, "flags");
  lua_Integer ud = ring_user(L, 6);
  ur_req *q;
  struct io_uring_sqe *sqe;
  sqe = ur_ring_sqe(L, r, "prep_sync_file_range", IORING_OP_SYNC_FILE_RANGE, ud,
                    0, 0, &q);
  io_uring_prep_sync_file_range(sqe, fd, len, off, flags);
  return 0;
}

/* ring:prep_fallocate(fd, mode, offset, len [, user_data]) */
static int l_prep_fallocate (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int fd = ring_fd(L, 2);
  int mode = ring_int(L, 3, 0, INT_MAX, "mode");
  lua_Integer off = luaL_checkinteger(L, 4), len = luaL_checkinteger(L, 5);
  lua_Integer ud = ring_user(L, 6);
  ur_req *q;
  struct io_uring_sqe *sqe;
  luaL_argcheck(L, off >= 0, 4, "offset must be >= 0");
  luaL_argcheck(L, len >= 0, 5, "len must be >= 0");
  sqe = ur_ring_sqe(L, r, "prep_fallocate", IORING_OP_FALLOCATE, ud, 0, 0, &q);
  io_uring_prep_fallocate(sqe, fd, mode, (off_t)off, (off_t)len);
  return 0;
}

/* ring:prep_fadvise(fd, offset, len, advice [, user_data]); advice is a
 * POSIX_FADV_* number or its name ("sequential", "dontneed", ...) */
static int l_prep_fadvise (lua_State *L) {
  static const char *const names[] = {
    "normal", "random", "sequential", "willneed", "dontneed", "noreuse", NULL
  };
  static const int values[] = {
    POSIX_FADV_NORMAL, POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL,
    POSIX_FADV_WILLNEED, POSIX_FADV_DONTNEED, POSIX_FADV_NOREUSE
  };
  ur_ring *r = ur_ring_check(L);
  int fd = ring_fd(L, 2);
  uint64_t off = ring_offset(L, 3);
  unsigned len = ur_ring_uint(L, 4, 0, "len");  /* liburing 2.3: 32 bits */
  int advice;
  lua_Integer ud = ring_user(L, 6);
  ur_req *q;
  struct io_uring_sqe *sqe;
  if (lua_type(L, 5) == LUA_TSTRING)
    advice = values[luaL_checkoption(L, 5, NULL, names)];
  else
    advice = ring_int(L, 5, 0, INT_MAX, "advice");
  sqe = ur_ring_sqe(L, r, "prep_fadvise", IORING_OP_FADVISE, ud, 0, 0, &q);
  io_uring_prep_fadvise(sqe, fd, off, (off_t)len, advice);
  return 0;
}

/* madvise is not offered: it takes a raw address range of the process,
 * which no Lua value can name safely. */

/* Open flags: an O_* number, or an io.open mode ("r", "w", "a", "r+",
 * "w+", "a+", optionally with "b"), which also gets O_CLOEXEC. */
static int ring_open_flags (lua_State *L, int idx, const char *def) {
  const char *m;
  int f;
  if (lua_type(L, idx) == LUA_TNUMBER)
    return ring_int(L, idx, 0, INT_MAX, "flags");
  m = ur_optcstr(L, idx, "mode", def);
  switch (m[0]) {
    case 'r': f = 0; break;
    case 'w': f = O_CREAT | O_TRUNC; break;
    case 'a': f = O_CREAT | O_APPEND; break;
    default: f = -1;
  }
  if (f >= 0) {
    const char *p = m + 1;
    int plus = (*p == '+');
    if (plus) p++;
    if (*p == 'b') p++;
    if (*p == '\0')
      return f | O_CLOEXEC | (plus ? O_RDWR : (m[0] == 'r' ? O_RDONLY
                                                            : O_WRONLY));
  }
  return luaL_argerror(L, idx, lua_pushfstring(L, "invalid mode '%s'", m));
}

/* ring:prep_openat(dirfd|nil, path [, flags [, mode [, user_data]]]) */
static int l_prep_openat (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int dfd = ring_dirfd(L, 2);
  const char *path = ring_path(L, 3);
  int flags = ring_open_flags(L, 4, "r");
  unsigned mode = ur_ring_uint(L, 5, 0666, "mode");
  lua_Integer ud = ring_user(L, 6);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_openat", IORING_OP_OPENAT,
                                         ud, 3, 0, &q);
  io_uring_prep_openat(sqe, dfd, path, flags, (mode_t)mode);
  return 0;
}

/* ring:prep_openat2(dirfd|nil, path, {flags =, mode =, resolve =} [, user_data]);
 * the open_how lives in the request's memory, since the kernel reads it at
 * submit */
static int l_prep_openat2 (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int dfd = ring_dirfd(L, 2);
  const char *path = ring_path(L, 3);
  struct open_how how;
  lua_Integer ud;
  ur_req *q;
  struct io_uring_sqe *sqe;
  memset(&how, 0, sizeof how);
  luaL_checktype(L, 4, LUA_TTABLE);
  ud = ring_user(L, 5);
  lua_getfield(L, 4, "flags");
  how.flags = (uint64_t)ring_open_flags(L, lua_gettop(L), "r");
  lua_getfield(L, 4, "mode");
  if (!lua_isnil(L, -1))
    how.mode = ur_ring_uint(L, lua_gettop(L), 0, "mode");
  else if (how.flags & O_CREAT)
    how.mode = 0666;      /* the kernel rejects a mode without O_CREAT */
  lua_getfield(L, 4, "resolve");
  how.resolve = ur_ring_uint(L, lua_gettop(L), 0, "resolve");
  lua_pop(L, 3);
  sqe = ur_ring_sqe(L, r, "prep_openat2", IORING_OP_OPENAT2, ud, 3, sizeof how,
                    &q);
  *(struct open_how *)q->mem = how;
  io_uring_prep_openat2(sqe, dfd, path, (struct open_how *)q->mem);
  return 0;
}

/* ring:prep_close(fd [, user_data]) */
static int l_prep_close (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int fd = ring_fd(L, 2);
  lua_Integer ud = ring_user(L, 3);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_close", IORING_OP_CLOSE,
                                         ud, 0, 0, &q);
  io_uring_prep_close(sqe, fd);
  return 0;
}

/* ring:prep_statx(dirfd|nil, path [, flags [, mask [, user_data]]]); the
 * kernel writes a struct statx into the request's memory, and
 * wait_cqe/peek_cqe turn it into uring.stat's table (their 4th result) */
static int l_prep_statx (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int dfd = ring_dirfd(L, 2);
  const char *path = ring_path(L, 3);
  int flags = (int)ur_ring_uint(L, 4, 0, "flags");
  unsigned mask = ur_ring_uint(L, 5, STATX_BASIC_STATS | STATX_BTIME, "mask");
  lua_Integer ud = ring_user(L, 6);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_statx", IORING_OP_STATX,
                                         ud, 3, sizeof(struct statx), &q);
  io_uring_prep_statx(sqe, dfd, path, flags, mask, (struct statx *)q->mem);
  return 0;
}

/* Anchor two strings (paths) together: a fresh table {a, b}. */
static int ring_anchor2 (lua_State *L, int a, int b) {
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, a);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, b);
  lua_rawseti(L, -2, 2);
  return lua_gettop(L);
}

/* ring:prep_unlinkat(dirfd|nil, path [, flags [, user_data]]) */
static int l_prep_unlinkat (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int dfd = ring_dirfd(L, 2);
  const char *path = ring_path(L, 3);
  int flags = (int)ur_ring_uint(L, 4, 0, "flags");
  lua_Integer ud = ring_user(L, 5);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_unlinkat",
                                         IORING_OP_UNLINKAT, ud, 3, 0, &q);
  io_uring_prep_unlinkat(sqe, dfd, path, flags);
  return 0;
}

/* ring:prep_renameat(olddirfd|nil, oldpath, newdirfd|nil, newpath
 *                    [, flags [, user_data]]) */
static int l_prep_renameat (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int odfd = ring_dirfd(L, 2);
  const char *oldp = ring_path(L, 3);
  int ndfd = ring_dirfd(L, 4);
  const char *newp = ring_path(L, 5);
  unsigned flags = ur_ring_uint(L, 6, 0, "flags");
  lua_Integer ud = ring_user(L, 7);
  int anchor = ring_anchor2(L, 3, 5);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_renameat",
                                         IORING_OP_RENAMEAT, ud, anchor, 0, &q);
  io_uring_prep_renameat(sqe, odfd, oldp, ndfd, newp, flags);
  return 0;
}

/* ring:prep_mkdirat(dirfd|nil, path [, mode [, user_data]]) */
static int l_prep_mkdirat (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int dfd = ring_dirfd(L, 2);
  const char *path = ring_path(L, 3);
  unsigned mode = ur_ring_uint(L, 4, 0777, "mode");
  lua_Integer ud = ring_user(L, 5);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_mkdirat",
                                         IORING_OP_MKDIRAT, ud, 3, 0, &q);
  io_uring_prep_mkdirat(sqe, dfd, path, (mode_t)mode);
  return 0;
}

/* ring:prep_symlinkat(target, newdirfd|nil, linkpath [, user_data]) */
static int l_prep_symlinkat (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  const char *target = ring_path(L, 2);
  int ndfd = ring_dirfd(L, 3);
  const char *linkp = ring_path(L, 4);
  lua_Integer ud = ring_user(L, 5);
  int anchor = ring_anchor2(L, 2, 4);
  ur_req *q;
  struct io_uring_sqe *sqe;
  sqe = ur_ring_sqe(L, r, "prep_symlinkat", IORING_OP_SYMLINKAT, ud, anchor, 0,
                    &q);
  io_uring_prep_symlinkat(sqe, target, ndfd, linkp);
  return 0;
}

/* ring:prep_linkat(olddirfd|nil, oldpath, newdirfd|nil, newpath
 *                  [, flags [, user_data]]) */
static int l_prep_linkat (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int odfd = ring_dirfd(L, 2);
  const char *oldp = ring_path(L, 3);
  int ndfd = ring_dirfd(L, 4);
  const char *newp = ring_path(L, 5);
  int flags = (int)ur_ring_uint(L, 6, 0, "flags");
  lua_Integer ud = ring_user(L, 7);
  int anchor = ring_anchor2(L, 3, 5);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_linkat",
                                         IORING_OP_LINKAT, ud, anchor, 0, &q);
  io_uring_prep_linkat(sqe, odfd, oldp, ndfd, newp, flags);
  return 0;
}

/* A splice offset: nil or -1 means "none" (required for a pipe). */
static int64_t ring_splice_off (lua_State *L, int idx) {
  lua_Integer v = luaL_optinteger(L, idx, -1);
  luaL_argcheck(L, v >= -1, idx, "offset must be >= 0 (or -1)");
  return (int64_t)v;
}

/* ring:prep_splice(fd_in, off_in, fd_out, off_out, nbytes [, flags [, user_data]]) */
static int l_prep_splice (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int fdin = ring_fd(L, 2);
  int64_t offin = ring_splice_off(L, 3);
  int fdout = ring_fd(L, 4);
  int64_t offout = ring_splice_off(L, 5);
  unsigned n = (luaL_checkinteger(L, 6), ur_ring_uint(L, 6, 0, "nbytes"));
  unsigned flags = ur_ring_uint(L, 7, 0, "flags");
  lua_Integer ud = ring_user(L, 8);
  ur_req *q;
  struct io_uring_sqe *sqe;
  sqe = ur_ring_sqe(L, r, "prep_splice", IORING_OP_SPLICE, ud, 0, 0, &q);
  io_uring_prep_splice(sqe, fdin, offin, fdout, offout, n, flags);
  return 0;
}

/* ring:prep_tee(fd_in, fd_out, nbytes [, flags [, user_data]]): both pipes;
 * tee has no offsets, as in liburing */
static int l_prep_tee (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int fdin = ring_fd(L, 2);
  int fdout = ring_fd(L, 3);
  unsigned n;
  unsigned flags = ur_ring_uint(L, 5, 0, "flags");
  lua_Integer ud = ring_user(L, 6);
  ur_req *q;
  struct io_uring_sqe *sqe;
  luaL_checkinteger(L, 4);
  n = ur_ring_uint(L, 4, 0, "nbytes");
  sqe = ur_ring_sqe(L, r, "prep_tee", IORING_OP_TEE, ud, 0, 0, &q);
  io_uring_prep_tee(sqe, fdin, fdout, n, flags);
  return 0;
}

/* A name for the xattr calls: no zero bytes. */
static const char *ring_name (lua_State *L, int idx) {
  return ur_checkcstr(L, idx, "name");
}

/* ring:prep_getxattr(path, name, buf [, user_data]) and
 * ring:prep_fgetxattr(fd, name, buf [, user_data]): the value is written
 * into buf (its whole size is offered); res is the value's length. */
static int ring_prep_getx (lua_State *L, const char *fname, int by_fd) {
  ur_ring *r = ur_ring_check(L);
  int fd = by_fd ? ring_fd(L, 2) : -1;
  const char *path = by_fd ? NULL : ring_path(L, 2);
  const char *name = ring_name(L, 3);
  ur_buffer *b = ur_checkbuffer(L, 4);
  lua_Integer ud = ring_user(L, 5);
  int anchor;
  ur_req *q;
  struct io_uring_sqe *sqe;
  lua_createtable(L, 3, 0);
  for (int i = 2; i <= 4; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - 1);
  }
  anchor = lua_gettop(L);
  sqe = ur_ring_sqe(L, r, fname, by_fd ? IORING_OP_FGETXATTR
                    : IORING_OP_GETXATTR, ud, anchor, 0, &q);
  if (by_fd)
    io_uring_prep_fgetxattr(sqe, fd, name, (char *)b->data,
                            (unsigned)b->size);
  else
    io_uring_prep_getxattr(sqe, name, (char *)b->data, path,
                           (unsigned)b->size);
  ur_ring_pin(q, b);
  return 0;
}

static int l_prep_getxattr (lua_State *L) {
  return ring_prep_getx(L, "prep_getxattr", 0);
}

static int l_prep_fgetxattr (lua_State *L) {
  return ring_prep_getx(L, "prep_fgetxattr", 1);
}

/* ring:prep_setxattr(path, name, value [, flags [, user_data]]) and
 * ring:prep_fsetxattr(fd, ...): value is a string (pinned) */
static int ring_prep_setx (lua_State *L, const char *fname, int by_fd) {
  ur_ring *r = ur_ring_check(L);
  int fd = by_fd ? ring_fd(L, 2) : -1;
  const char *path = by_fd ? NULL : ring_path(L, 2);
  const char *name = ring_name(L, 3);
  size_t len;
  const char *value = luaL_checklstring(L, 4, &len);
  int flags = (int)ur_ring_uint(L, 5, 0, "flags");
  lua_Integer ud = ring_user(L, 6);
  int anchor;
  ur_req *q;
  struct io_uring_sqe *sqe;
  luaL_argcheck(L, len <= UINT_MAX, 4, "value too long");
  lua_createtable(L, 3, 0);
  for (int i = 2; i <= 4; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - 1);
  }
  anchor = lua_gettop(L);
  sqe = ur_ring_sqe(L, r, fname, by_fd ? IORING_OP_FSETXATTR
                    : IORING_OP_SETXATTR, ud, anchor, 0, &q);
  if (by_fd)
    io_uring_prep_fsetxattr(sqe, fd, name, value, flags, (unsigned)len);
  else
    io_uring_prep_setxattr(sqe, name, value, path, flags, (unsigned)len);
  return 0;
}

static int l_prep_setxattr (lua_State *L) {
  return ring_prep_setx(L, "prep_setxattr", 0);
}

static int l_prep_fsetxattr (lua_State *L) {
  return ring_prep_setx(L, "prep_fsetxattr", 1);
}

/*
 * ring:prep_send(fd, data, nbytes, flags [, user_data [, pos]]),
 * ring:prep_send_zc(...) and ring:prep_recv(fd, buf, nbytes, flags
 * [, user_data [, pos]]).  flags are MSG_* (io_uring adds MSG_NOSIGNAL).
 * data is a uring.buffer or a string, pinned (never copied) until the
 * last CQE.  send_zc posts two CQEs: the result, with IORING_CQE_F_MORE,
 * then the notification (IORING_CQE_F_NOTIF, no F_MORE) once the kernel
 * no longer reads the pages; ring_push_cqe releases on the CQE without
 * F_MORE, so the pin lasts until the notification.
 */
static int ring_prep_net (lua_State *L, const char *fname, uint8_t op) {
  ur_ring *r = ur_ring_check(L);
  int ffixed;
  int fd = ring_file(L, r, 2, &ffixed);
  int is_send = (op != IORING_OP_RECV);
  ring_region g = ring_region_of(L, 3, 4, 7, is_send);
  int flags = lua_isnoneornil(L, 5) ? 0 : ring_int(L, 5, 0, INT_MAX, "flags");
  lua_Integer ud = ring_user(L, 6);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, fname, op, ud, 3, 0, &q);
  const void *src = g.buf ? (const void *)g.p : (const void *)g.s;
  switch (op) {
    case IORING_OP_SEND:
      io_uring_prep_send(sqe, fd, src, g.len, flags);
      break;
    case IORING_OP_SEND_ZC:
      io_uring_prep_send_zc(sqe, fd, src, g.len, flags, 0);
      q->aux = 1;                     /* two CQEs: result, notification */
      r->zc_pending++;
      break;
    default:
      io_uring_prep_recv(sqe, fd, g.p, g.len, flags);
      break;
  }
  ring_fixed_flag(sqe, ffixed);
  if (g.buf) ur_ring_pin(q, g.buf);
  return 0;
}

static int l_prep_send (lua_State *L) {
  return ring_prep_net(L, "prep_send", IORING_OP_SEND);
}

static int l_prep_send_zc (lua_State *L) {
  return ring_prep_net(L, "prep_send_zc", IORING_OP_SEND_ZC);
}

static int l_prep_recv (lua_State *L) {
  return ring_prep_net(L, "prep_recv", IORING_OP_RECV);
}

/* ring:prep_poll_add(fd, mask [, user_data]): mask of POLLIN, POLLOUT, ... */
static int l_prep_poll_add (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int ffixed;
  int fd = ring_file(L, r, 2, &ffixed);
  unsigned mask;
  lua_Integer ud = ring_user(L, 4);
  ur_req *q;
  struct io_uring_sqe *sqe;
  luaL_checkinteger(L, 3);
  mask = ur_ring_uint(L, 3, 0, "mask");
  sqe = ur_ring_sqe(L, r, "prep_poll_add", IORING_OP_POLL_ADD, ud, 0, 0, &q);
  io_uring_prep_poll_add(sqe, fd, mask);
  ring_fixed_flag(sqe, ffixed);
  return 0;
}

/* ring:prep_poll_remove(target_user_data [, user_data]) */
static int l_prep_poll_remove (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  uint64_t target = ur_ring_find(r, luaL_checkinteger(L, 2));
  lua_Integer ud = ring_user(L, 3);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_poll_remove",
                                         IORING_OP_POLL_REMOVE, ud, 0, 0, &q);
  io_uring_prep_poll_remove(sqe, target);
  return 0;
}

/* ring:prep_timeout(seconds [, count [, user_data [, flags]]]): completes
 * with -ETIME when the time passes, or 0 after count other CQEs */
static int l_prep_timeout (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  struct __kernel_timespec ts = ur_ring_seconds(L, 2);
  unsigned count = ur_ring_uint(L, 3, 0, "count");
  lua_Integer ud = ring_user(L, 4);
  unsigned flags = ur_ring_uint(L, 5, 0, "flags");
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_timeout",
                                         IORING_OP_TIMEOUT, ud, 0, 0, &q);
  q->u.ts = ts;
  io_uring_prep_timeout(sqe, &q->u.ts, count, flags);
  return 0;
}

/* ring:prep_timeout_remove(target_user_data [, user_data [, flags]]) */
static int l_prep_timeout_remove (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  uint64_t target = ur_ring_find(r, luaL_checkinteger(L, 2));
  lua_Integer ud = ring_user(L, 3);
  unsigned flags = ur_ring_uint(L, 4, 0, "flags");
  ur_req *q;
  struct io_uring_sqe *sqe;
  sqe = ur_ring_sqe(L, r, "prep_timeout_remove", IORING_OP_TIMEOUT_REMOVE, ud,
                    0, 0, &q);
  io_uring_prep_timeout_remove(sqe, target, flags);
  return 0;
}

/* ring:prep_timeout_update(target_user_data, seconds [, user_data [, flags]]) */
static int l_prep_timeout_update (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  uint64_t target = ur_ring_find(r, luaL_checkinteger(L, 2));
  struct __kernel_timespec ts = ur_ring_seconds(L, 3);
  lua_Integer ud = ring_user(L, 4);
  unsigned flags = ur_ring_uint(L, 5, 0, "flags");
  ur_req *q;
  struct io_uring_sqe *sqe;
  sqe = ur_ring_sqe(L, r, "prep_timeout_update", IORING_OP_TIMEOUT_REMOVE, ud,
                    0, 0, &q);
  q->u.ts = ts;
  io_uring_prep_timeout_update(sqe, &q->u.ts, target, flags);
  return 0;
}

/* ring:prep_link_timeout(seconds [, user_data [, flags]]): must follow an
 * SQE marked with ring:link(); cancels it if it has not completed in time */
static int l_prep_link_timeout (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  struct __kernel_timespec ts = ur_ring_seconds(L, 2);
  lua_Integer ud = ring_user(L, 3);
  unsigned flags = ur_ring_uint(L, 4, 0, "flags");
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_link_timeout",
                                         IORING_OP_LINK_TIMEOUT, ud, 0, 0, &q);
  q->u.ts = ts;
  io_uring_prep_link_timeout(sqe, &q->u.ts, flags);
  return 0;
}

/* ring:prep_cancel(target_user_data [, user_data [, flags]]): flags of
 * IORING_ASYNC_CANCEL_*; with CANCEL_ANY the target is ignored */
static int l_prep_cancel (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  uint64_t target = ur_ring_find(r, luaL_checkinteger(L, 2));
  lua_Integer ud = ring_user(L, 3);
  unsigned flags = ur_ring_uint(L, 4, 0, "flags");
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_cancel",
                                         IORING_OP_ASYNC_CANCEL, ud, 0, 0, &q);
  io_uring_prep_cancel64(sqe, target, (int)flags);
  return 0;
}

/* ring:prep_cancel_fd(fd [, user_data [, flags]]): cancel requests on fd */
static int l_prep_cancel_fd (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int fd = ring_fd(L, 2);
  lua_Integer ud = ring_user(L, 3);
  unsigned flags = ur_ring_uint(L, 4, 0, "flags");
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_cancel_fd",
                                         IORING_OP_ASYNC_CANCEL, ud, 0, 0, &q);
  io_uring_prep_cancel_fd(sqe, fd, flags);
  return 0;
}


static int l_fixed (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int v = ring_slot_check(L, r, 2, luaL_checkinteger(L, 2));
  int *slot = (int *)lua_newuserdatauv(L, sizeof *slot, 0);
  *slot = v;
  luaL_setmetatable(L, RING_FIXED_MT);
  return 1;
}

static int l_fixed_tostring (lua_State *L) {
  int *slot = (int *)luaL_checkudata(L, 1, RING_FIXED_MT);
  lua_pushfstring(L, "uring.fixed_file(%d)", *slot);
  return 1;
}


/* Kernel constants under their kernel names (as luaposix keeps O_CREAT). */
void ur_ring_constants (lua_State *L) {
  static const struct { const char *name; lua_Integer value; } k[] = {
    {"IORING_ASYNC_CANCEL_ALL", IORING_ASYNC_CANCEL_ALL},
    {"IORING_ASYNC_CANCEL_FD", IORING_ASYNC_CANCEL_FD},
    {"IORING_ASYNC_CANCEL_ANY", IORING_ASYNC_CANCEL_ANY},
    {"IORING_TIMEOUT_ABS", IORING_TIMEOUT_ABS},
    {"IORING_TIMEOUT_BOOTTIME", IORING_TIMEOUT_BOOTTIME},
    {"IORING_TIMEOUT_REALTIME", IORING_TIMEOUT_REALTIME},
    {"IORING_TIMEOUT_ETIME_SUCCESS", IORING_TIMEOUT_ETIME_SUCCESS},
    {"IORING_FSYNC_DATASYNC", IORING_FSYNC_DATASYNC},
    {"IORING_CQE_F_MORE", IORING_CQE_F_MORE},
    {"IORING_CQE_F_NOTIF", IORING_CQE_F_NOTIF},
    {"MSG_DONTWAIT", MSG_DONTWAIT}, {"MSG_WAITALL", MSG_WAITALL},
    {"MSG_PEEK", MSG_PEEK}, {"MSG_MORE", MSG_MORE},
    {"MSG_NOSIGNAL", MSG_NOSIGNAL}, {"MSG_TRUNC", MSG_TRUNC},
    {"POLLIN", POLLIN}, {"POLLOUT", POLLOUT}, {"POLLPRI", POLLPRI},
    {"POLLERR", POLLERR}, {"POLLHUP", POLLHUP},
    {"AT_FDCWD", AT_FDCWD}, {"AT_REMOVEDIR", AT_REMOVEDIR},
    {"AT_SYMLINK_NOFOLLOW", AT_SYMLINK_NOFOLLOW},
    {"AT_SYMLINK_FOLLOW", AT_SYMLINK_FOLLOW},
    {"AT_EMPTY_PATH", AT_EMPTY_PATH},
    {"O_RDONLY", O_RDONLY}, {"O_WRONLY", O_WRONLY}, {"O_RDWR", O_RDWR},
    {"O_CREAT", O_CREAT}, {"O_EXCL", O_EXCL}, {"O_TRUNC", O_TRUNC},
    {"O_APPEND", O_APPEND}, {"O_CLOEXEC", O_CLOEXEC},
    {"O_DIRECT", O_DIRECT}, {"O_DIRECTORY", O_DIRECTORY},
    {"O_NOFOLLOW", O_NOFOLLOW}, {"O_NONBLOCK", O_NONBLOCK},
    {"O_TMPFILE", O_TMPFILE},
    {"RENAME_NOREPLACE", RENAME_NOREPLACE},
    {"RENAME_EXCHANGE", RENAME_EXCHANGE},
    {"SPLICE_F_MOVE", SPLICE_F_MOVE}, {"SPLICE_F_NONBLOCK", SPLICE_F_NONBLOCK},
    {"SPLICE_F_MORE", SPLICE_F_MORE},
    {"FALLOC_FL_KEEP_SIZE", FALLOC_FL_KEEP_SIZE},
    {"FALLOC_FL_PUNCH_HOLE", FALLOC_FL_PUNCH_HOLE},
    {"SYNC_FILE_RANGE_WAIT_BEFORE", SYNC_FILE_RANGE_WAIT_BEFORE},
    {"SYNC_FILE_RANGE_WRITE", SYNC_FILE_RANGE_WRITE},
    {"SYNC_FILE_RANGE_WAIT_AFTER", SYNC_FILE_RANGE_WAIT_AFTER},
    {"STATX_BASIC_STATS", STATX_BASIC_STATS}, {"STATX_BTIME", STATX_BTIME},
    {"XATTR_CREATE", XATTR_CREATE}, {"XATTR_REPLACE", XATTR_REPLACE},
  };
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    lua_pushinteger(L, k[i].value);
    lua_setfield(L, -2, k[i].name);
  }
}

/* The prep_* methods and ring:fixed, into the ring's method table (at the
 * top of the stack); the marker's metatable too. */
void ur_ring_prep_methods (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"prep_nop", l_prep_nop},
    {"prep_read", l_prep_read}, {"prep_write", l_prep_write},
    {"prep_readv", l_prep_readv}, {"prep_writev", l_prep_writev},
    {"prep_read_fixed", l_prep_read_fixed},
    {"prep_write_fixed", l_prep_write_fixed},
    {"prep_fsync", l_prep_fsync},
    {"prep_sync_file_range", l_prep_sync_file_range},
    {"prep_fallocate", l_prep_fallocate}, {"prep_fadvise", l_prep_fadvise},
    {"prep_openat", l_prep_openat}, {"prep_openat2", l_prep_openat2},
    {"prep_close", l_prep_close}, {"prep_statx", l_prep_statx},
    {"prep_unlinkat", l_prep_unlinkat}, {"prep_renameat", l_prep_renameat},
    {"prep_mkdirat", l_prep_mkdirat}, {"prep_symlinkat", l_prep_symlinkat},
    {"prep_linkat", l_prep_linkat},
    {"prep_splice", l_prep_splice}, {"prep_tee", l_prep_tee},
    {"prep_getxattr", l_prep_getxattr}, {"prep_fgetxattr", l_prep_fgetxattr},
    {"prep_setxattr", l_prep_setxattr}, {"prep_fsetxattr", l_prep_fsetxattr},
    {"prep_send", l_prep_send}, {"prep_send_zc", l_prep_send_zc},
    {"prep_recv", l_prep_recv},
    {"prep_poll_add", l_prep_poll_add},
    {"prep_poll_remove", l_prep_poll_remove},
    {"prep_timeout", l_prep_timeout},
    {"prep_timeout_remove", l_prep_timeout_remove},
    {"prep_timeout_update", l_prep_timeout_update},
    {"prep_link_timeout", l_prep_link_timeout},
    {"prep_cancel", l_prep_cancel}, {"prep_cancel_fd", l_prep_cancel_fd},
    {"fixed", l_fixed},
    {NULL, NULL}
  };
  luaL_setfuncs(L, methods, 0);
  luaL_newmetatable(L, RING_FIXED_MT);
  lua_pushcfunction(L, l_fixed_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
