/*
 * ring.c: uring.ring, the teaching API.
 *
 * A uring.ring wraps its own struct io_uring, separate from the task loop,
 * and exposes liburing's model one call at a time: prep_* fills an SQE,
 * submit hands the SQ to the kernel, wait_cqe/peek_cqe take CQEs back.  It
 * is synchronous and works from plain Lua, without uring.run.
 *
 * What liburing leaves to the C programmer this file does for Lua: every
 * Lua value an SQE names (a uring.buffer read into, a string written, a
 * path) is anchored from prep until its CQE has been handed to Lua, and
 * every piece of C memory the kernel reads or writes (timespecs, iovecs,
 * statx results, open_how) lives in a per-SQE slot until then too.  The
 * user's user_data is any Lua integer; the kernel sees a slot id instead
 * (index + 1 | generation << 32), so two SQEs with the same user_data
 * still anchor separately.
 *
 * Rules kept throughout (STYLE.md): every argument is checked, every
 * allocation is done and every anchor stored before io_uring_get_sqe;
 * from get_sqe to a fully prepared SQE nothing can raise.  Closing waits
 * for the kernel to give back every SQE; what it never gives back is
 * leaked, not freed under it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
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
#include <unistd.h>

#include "uring.h"

#define RING_CHUNK     64           /* slots per chunk; chunks never move */
#define RING_MAX_IOV   1024         /* IOV_MAX */
#define RING_MAX_FIXED 16384        /* the kernel's registered-buffer cap */
#define RING_MAX_FILES (1 << 20)    /* the kernel's registered-file cap */

/* ring:fixed(slot): "this SQE names registered file slot N", given where
 * an fd goes; prep_* then set IOSQE_FIXED_FILE */
#define RING_FIXED_MT  "uring.fixed_file"

/* uservalues of a ring userdata */
enum { UV_ANCHORS = 1, UV_FIXED = 2 };

/*
 * One SQE from prep until its CQE was returned to Lua.  The kernel may
 * read u (a timespec, an open_how) at submit time, and with SQPOLL at any
 * time before the CQE, so slots live in chunks that are never moved.
 */
typedef struct ring_slot {
  lua_Integer user;     /* the user's user_data */
  uint64_t seq;         /* prep order: "the oldest with this user_data" */
  uint32_t gen;         /* bumped on release: a stale slot id is caught */
  uint32_t next_free;   /* free list (index + 1; 0 ends) */
  uint8_t busy;         /* prepared; its CQE not yet returned to Lua */
  uint8_t opcode;
  uint8_t anchored;     /* anchors[index + 1] holds its Lua values */
  uint8_t zc_first;     /* send_zc whose first CQE (F_MORE) is still due */
  ur_buffer *buf1;      /* the one buffer it pins, or NULL */
  ur_buffer **bufv;     /* or several (readv/writev), inside mem */
  unsigned nbufv;
  void *mem;            /* malloc'd: iovecs, statx; the kernel uses it */
  union {
    struct __kernel_timespec ts;
    struct open_how how;
  } u;
} ring_slot;

typedef struct ur_ring {
  struct io_uring ring;
  int ok;               /* set up and not closed */
  unsigned entries;
  unsigned flags;       /* IORING_SETUP_* the kernel accepted */
  pid_t pid;            /* owner: a forked child must not touch it */
  ring_slot **chunks;
  uint32_t nchunks, nslots;
  uint32_t free_head;   /* index + 1 of the first free slot; 0 = none */
  uint32_t inflight;    /* busy slots */
  uint64_t seq;
  int nfixed;           /* buffers registered with register_buffers */
  int nfiles;           /* file slots registered with register_files */
  uint32_t zc_pending;  /* slots with zc_first set: one more CQE each */
} ur_ring;


/* ---------------------------------------------------------------- slots */

static ring_slot *ring_slot_at_index (ur_ring *r, uint32_t idx) {
  return &r->chunks[idx / RING_CHUNK][idx % RING_CHUNK];
}

/* Make sure a free slot exists; raises only before anything changed. */
static void ring_slot_reserve (lua_State *L, ur_ring *r) {
  ring_slot **chunks, *c;
  uint32_t base = r->nslots;
  if (r->free_head != 0) return;
  if (r->nslots > UINT32_MAX / 2 - RING_CHUNK)
    luaL_error(L, "uring.ring: too many SQEs in flight");
  chunks = (ring_slot **)realloc(r->chunks, (r->nchunks + 1) * sizeof *chunks);
  if (chunks == NULL) luaL_error(L, "uring.ring: not enough memory");
  r->chunks = chunks;
  c = (ring_slot *)calloc(RING_CHUNK, sizeof *c);
  if (c == NULL) luaL_error(L, "uring.ring: not enough memory");
  chunks[r->nchunks++] = c;
  r->nslots += RING_CHUNK;
  for (uint32_t i = RING_CHUNK; i-- > 0;) {
    c[i].gen = 1;
    c[i].next_free = r->free_head;
    r->free_head = base + i + 1;
  }
}

static uint64_t ring_slot_kud (ur_ring *r, ring_slot *s, uint32_t idx) {
  (void)r;
  return ((uint64_t)s->gen << 32) | (uint64_t)(idx + 1);
}

/* The busy slot a CQE's user_data names, or NULL (0 = our own cancels). */
static ring_slot *ring_slot_of (ur_ring *r, uint64_t kud, uint32_t *pidx) {
  uint32_t low = (uint32_t)kud, gen = (uint32_t)(kud >> 32);
  ring_slot *s;
  if (low == 0 || low > r->nslots) return NULL;
  s = ring_slot_at_index(r, low - 1);
  if (!s->busy || s->gen != gen) return NULL;
  *pidx = low - 1;
  return s;
}

/*
 * The kernel user_data of the oldest busy SQE the user tagged `user`, for
 * cancel/timeout_remove/poll_remove.  0 if none: no request carries 0, so
 * the kernel answers -ENOENT, which is the lesson.
 */
static uint64_t ring_find (ur_ring *r, lua_Integer user) {
  ring_slot *best = NULL;
  uint32_t bidx = 0;
  for (uint32_t i = 0; i < r->nslots; i++) {
    ring_slot *s = ring_slot_at_index(r, i);
    if (s->busy && s->user == user && (!best || s->seq < best->seq)) {
      best = s;
      bidx = i;
    }
  }
  return best ? ring_slot_kud(r, best, bidx) : 0;
}

/*
 * The kernel is done with slot idx and Lua has its CQE: unpin, unanchor,
 * free.  Plain C plus table stores of nil, so it never raises.  ringidx is
 * the ring's stack index (its uservalue holds the anchors).
 */
static void ring_release (lua_State *L, ur_ring *r, int ringidx,
                          ring_slot *s, uint32_t idx) {
  if (s->buf1) s->buf1->pins--;                   /* unpinned */
  for (unsigned i = 0; i < s->nbufv; i++)
    if (s->bufv[i]) s->bufv[i]->pins--;
  if (s->anchored) {
    lua_getiuservalue(L, ringidx, UV_ANCHORS);
    lua_pushnil(L);
    lua_rawseti(L, -2, (lua_Integer)idx + 1);    /* unanchored */
    lua_pop(L, 1);
  }
  if (s->zc_first) {
    s->zc_first = 0;
    r->zc_pending--;
  }
  free(s->mem);
  s->mem = NULL;
  s->buf1 = NULL;
  s->bufv = NULL;
  s->nbufv = 0;
  s->anchored = 0;
  s->busy = 0;
  if (++s->gen == 0) s->gen = 1;
  s->next_free = r->free_head;
  r->free_head = idx + 1;
  r->inflight--;
}

/*
 * The one way to get an SQE.  Everything that can raise happens first: a
 * free slot, the anchor store (anchor = stack index of the value to keep,
 * 0 for none), the malloc of memlen bytes of slot memory; only then
 * io_uring_get_sqe.  A full SQ undoes the anchor and raises, since this is
 * the teaching API: the user decides when to submit.  The caller then
 * preps the SQE and may not raise until it returns.
 */
static struct io_uring_sqe *ring_sqe (lua_State *L, ur_ring *r, int ringidx,
                                      const char *fname, uint8_t opcode,
                                      lua_Integer user, int anchor,
                                      size_t memlen, ring_slot **ps) {
  struct io_uring_sqe *sqe;
  ring_slot *s;
  uint32_t idx;
  void *mem = NULL;
  ring_slot_reserve(L, r);
  idx = r->free_head - 1;
  if (anchor) {
    lua_getiuservalue(L, ringidx, UV_ANCHORS);
    lua_pushvalue(L, anchor);
    lua_rawseti(L, -2, (lua_Integer)idx + 1);   /* pinned: kernel uses it */
    lua_pop(L, 1);
  }
  if (memlen && (mem = calloc(1, memlen)) == NULL) {
    if (anchor) {
      lua_getiuservalue(L, ringidx, UV_ANCHORS);
      lua_pushnil(L);
      lua_rawseti(L, -2, (lua_Integer)idx + 1);
      lua_pop(L, 1);
    }
    luaL_error(L, "%s: not enough memory", fname);
    return NULL;
  }
  sqe = io_uring_get_sqe(&r->ring);
  if (sqe == NULL) {
    free(mem);
    if (anchor) {
      lua_getiuservalue(L, ringidx, UV_ANCHORS);
      lua_pushnil(L);
      lua_rawseti(L, -2, (lua_Integer)idx + 1);
      lua_pop(L, 1);
    }
    luaL_error(L, "%s: submission queue full (call ring:submit())", fname);
    return NULL;
  }
  /* commit: from here nothing raises */
  s = ring_slot_at_index(r, idx);
  r->free_head = s->next_free;
  s->next_free = 0;
  s->user = user;
  s->seq = ++r->seq;
  s->busy = 1;
  s->opcode = opcode;
  s->anchored = anchor != 0;
  s->zc_first = 0;
  s->buf1 = NULL;
  s->bufv = NULL;
  s->nbufv = 0;
  s->mem = mem;
  r->inflight++;
  *ps = s;
  /* the caller's io_uring_prep_* leaves user_data alone */
  io_uring_sqe_set_data64(sqe, ring_slot_kud(r, s, idx));
  return sqe;
}

static void ring_pin (ring_slot *s, ur_buffer *b) {
  s->buf1 = b;
  b->pins++;                                      /* pinned until CQE */
}


/* ------------------------------------------------------- argument checks */

/* Every method but close and __tostring starts here. */
static ur_ring *ring_check (lua_State *L) {
  ur_ring *r = (ur_ring *)luaL_checkudata(L, 1, UR_RING_MT);
  if (!r->ok) luaL_error(L, "attempt to use a closed ring");
  if (r->pid != getpid())
    luaL_error(L, "uring.ring: this ring belongs to process %d; a forked "
               "child must not use its parent's ring", (int)r->pid);
  return r;
}

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

static unsigned ring_uint (lua_State *L, int idx, lua_Integer def,
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

/* Seconds as a number -> timespec; kept in the slot, which the kernel
 * reads at submit time (or later, with SQPOLL). */
static struct __kernel_timespec ring_seconds (lua_State *L, int idx) {
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
  ur_ring *r = ring_check(L);
  lua_Integer ud = ring_user(L, 2);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_nop", IORING_OP_NOP,
                                      ud, 0, 0, &s);
  io_uring_prep_nop(sqe);
  return 0;
}

/* Shared by read/write and their _fixed forms: argument order is
 * (fd, buf, nbytes, offset, user_data [, pos]). */
static int ring_prep_rw (lua_State *L, const char *fname, uint8_t op) {
  ur_ring *r = ring_check(L);
  int ffixed;
  int fd = ring_file(L, r, 2, &ffixed);
  int is_write = (op == IORING_OP_WRITE || op == IORING_OP_WRITE_FIXED);
  int fixed = (op == IORING_OP_READ_FIXED || op == IORING_OP_WRITE_FIXED);
  ring_region g = ring_region_of(L, 3, 4, 7, is_write && !fixed);
  uint64_t off = ring_offset(L, 5);
  lua_Integer ud = ring_user(L, 6);
  int bindex = 0;
  ring_slot *s;
  struct io_uring_sqe *sqe;
  if (fixed) {
    /* the kernel finds the pages by index; we find the index by buffer */
    lua_getiuservalue(L, 1, UV_FIXED);
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
  sqe = ring_sqe(L, r, 1, fname, op, ud, 3, 0, &s);
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
  if (g.buf) ring_pin(s, g.buf);
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
  ur_ring *r = ring_check(L);
  int ffixed;
  int fd = ring_file(L, r, 2, &ffixed);
  uint64_t off;
  lua_Integer ud, n;
  int rwflags = 0, anchor;
  ring_slot *s;
  struct io_uring_sqe *sqe;
  struct iovec *iov;
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
  sqe = ring_sqe(L, r, 1, fname, is_write ? IORING_OP_WRITEV : IORING_OP_READV,
                 ud, anchor, (size_t)n * (sizeof *iov + sizeof(ur_buffer *)),
                 &s);
  iov = (struct iovec *)s->mem;
  s->bufv = (ur_buffer **)(iov + n);
  s->nbufv = (unsigned)n;
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, anchor, i + 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len;
      const char *str = lua_tolstring(L, -1, &len);
      iov[i].iov_base = (void *)(uintptr_t)str;   /* the kernel only reads */
      iov[i].iov_len = len;
      s->bufv[i] = NULL;
    }
    else {
      ur_buffer *b = (ur_buffer *)lua_touserdata(L, -1);
      iov[i].iov_base = b->data;
      iov[i].iov_len = b->size;
      s->bufv[i] = b;
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
  ur_ring *r = ring_check(L);
  int ffixed;
  int fd = ring_file(L, r, 2, &ffixed);
  lua_Integer ud;
  ring_slot *s;
  struct io_uring_sqe *sqe;
  luaL_argexpected(L, lua_isnoneornil(L, 3) || lua_isboolean(L, 3), 3,
                   "boolean");
  ud = ring_user(L, 4);
  sqe = ring_sqe(L, r, 1, "prep_fsync", IORING_OP_FSYNC, ud, 0, 0, &s);
  io_uring_prep_fsync(sqe, fd, lua_toboolean(L, 3) ? IORING_FSYNC_DATASYNC : 0);
  ring_fixed_flag(sqe, ffixed);
  return 0;
}

/* ring:prep_sync_file_range(fd, len, offset, flags [, user_data]) */
static int l_prep_sync_file_range (lua_State *L) {
  ur_ring *r = ring_check(L);
  int fd = ring_fd(L, 2);
  unsigned len = ring_uint(L, 3, 0, "len");
  uint64_t off = ring_offset(L, 4);
  int flags = (int)ring_uint(L, 5, 0, "flags");
  lua_Integer ud = ring_user(L, 6);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_sync_file_range",
                                      IORING_OP_SYNC_FILE_RANGE, ud, 0, 0, &s);
  io_uring_prep_sync_file_range(sqe, fd, len, off, flags);
  return 0;
}

/* ring:prep_fallocate(fd, mode, offset, len [, user_data]) */
static int l_prep_fallocate (lua_State *L) {
  ur_ring *r = ring_check(L);
  int fd = ring_fd(L, 2);
  int mode = ring_int(L, 3, 0, INT_MAX, "mode");
  lua_Integer off = luaL_checkinteger(L, 4), len = luaL_checkinteger(L, 5);
  lua_Integer ud = ring_user(L, 6);
  ring_slot *s;
  struct io_uring_sqe *sqe;
  luaL_argcheck(L, off >= 0, 4, "offset must be >= 0");
  luaL_argcheck(L, len >= 0, 5, "len must be >= 0");
  sqe = ring_sqe(L, r, 1, "prep_fallocate", IORING_OP_FALLOCATE, ud, 0, 0, &s);
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
  ur_ring *r = ring_check(L);
  int fd = ring_fd(L, 2);
  uint64_t off = ring_offset(L, 3);
  unsigned len = ring_uint(L, 4, 0, "len");   /* liburing 2.3 sends 32 bits */
  int advice;
  lua_Integer ud = ring_user(L, 6);
  ring_slot *s;
  struct io_uring_sqe *sqe;
  if (lua_type(L, 5) == LUA_TSTRING)
    advice = values[luaL_checkoption(L, 5, NULL, names)];
  else
    advice = ring_int(L, 5, 0, INT_MAX, "advice");
  sqe = ring_sqe(L, r, 1, "prep_fadvise", IORING_OP_FADVISE, ud, 0, 0, &s);
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
  ur_ring *r = ring_check(L);
  int dfd = ring_dirfd(L, 2);
  const char *path = ring_path(L, 3);
  int flags = ring_open_flags(L, 4, "r");
  unsigned mode = ring_uint(L, 5, 0666, "mode");
  lua_Integer ud = ring_user(L, 6);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_openat", IORING_OP_OPENAT,
                                      ud, 3, 0, &s);
  io_uring_prep_openat(sqe, dfd, path, flags, (mode_t)mode);
  return 0;
}

/* ring:prep_openat2(dirfd|nil, path, {flags =, mode =, resolve =} [, user_data]);
 * the open_how lives in the slot, since the kernel reads it at submit */
static int l_prep_openat2 (lua_State *L) {
  ur_ring *r = ring_check(L);
  int dfd = ring_dirfd(L, 2);
  const char *path = ring_path(L, 3);
  struct open_how how;
  lua_Integer ud;
  ring_slot *s;
  struct io_uring_sqe *sqe;
  memset(&how, 0, sizeof how);
  luaL_checktype(L, 4, LUA_TTABLE);
  ud = ring_user(L, 5);
  lua_getfield(L, 4, "flags");
  how.flags = (uint64_t)ring_open_flags(L, lua_gettop(L), "r");
  lua_getfield(L, 4, "mode");
  if (!lua_isnil(L, -1))
    how.mode = ring_uint(L, lua_gettop(L), 0, "mode");
  else if (how.flags & O_CREAT)
    how.mode = 0666;      /* the kernel rejects a mode without O_CREAT */
  lua_getfield(L, 4, "resolve");
  how.resolve = ring_uint(L, lua_gettop(L), 0, "resolve");
  lua_pop(L, 3);
  sqe = ring_sqe(L, r, 1, "prep_openat2", IORING_OP_OPENAT2, ud, 3, 0, &s);
  s->u.how = how;
  io_uring_prep_openat2(sqe, dfd, path, &s->u.how);
  return 0;
}

/* ring:prep_close(fd [, user_data]) */
static int l_prep_close (lua_State *L) {
  ur_ring *r = ring_check(L);
  int fd = ring_fd(L, 2);
  lua_Integer ud = ring_user(L, 3);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_close", IORING_OP_CLOSE,
                                      ud, 0, 0, &s);
  io_uring_prep_close(sqe, fd);
  return 0;
}

/* ring:prep_statx(dirfd|nil, path [, flags [, mask [, user_data]]]); the
 * kernel writes a struct statx into slot memory, and wait_cqe/peek_cqe
 * turn it into a table (their 4th result) */
static int l_prep_statx (lua_State *L) {
  ur_ring *r = ring_check(L);
  int dfd = ring_dirfd(L, 2);
  const char *path = ring_path(L, 3);
  int flags = (int)ring_uint(L, 4, 0, "flags");
  unsigned mask = ring_uint(L, 5, STATX_BASIC_STATS | STATX_BTIME, "mask");
  lua_Integer ud = ring_user(L, 6);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_statx", IORING_OP_STATX,
                                      ud, 3, sizeof(struct statx), &s);
  io_uring_prep_statx(sqe, dfd, path, flags, mask, (struct statx *)s->mem);
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
  ur_ring *r = ring_check(L);
  int dfd = ring_dirfd(L, 2);
  const char *path = ring_path(L, 3);
  int flags = (int)ring_uint(L, 4, 0, "flags");
  lua_Integer ud = ring_user(L, 5);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_unlinkat",
                                      IORING_OP_UNLINKAT, ud, 3, 0, &s);
  io_uring_prep_unlinkat(sqe, dfd, path, flags);
  return 0;
}

/* ring:prep_renameat(olddirfd|nil, oldpath, newdirfd|nil, newpath
 *                    [, flags [, user_data]]) */
static int l_prep_renameat (lua_State *L) {
  ur_ring *r = ring_check(L);
  int odfd = ring_dirfd(L, 2);
  const char *oldp = ring_path(L, 3);
  int ndfd = ring_dirfd(L, 4);
  const char *newp = ring_path(L, 5);
  unsigned flags = ring_uint(L, 6, 0, "flags");
  lua_Integer ud = ring_user(L, 7);
  int anchor = ring_anchor2(L, 3, 5);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_renameat",
                                      IORING_OP_RENAMEAT, ud, anchor, 0, &s);
  io_uring_prep_renameat(sqe, odfd, oldp, ndfd, newp, flags);
  return 0;
}

/* ring:prep_mkdirat(dirfd|nil, path [, mode [, user_data]]) */
static int l_prep_mkdirat (lua_State *L) {
  ur_ring *r = ring_check(L);
  int dfd = ring_dirfd(L, 2);
  const char *path = ring_path(L, 3);
  unsigned mode = ring_uint(L, 4, 0777, "mode");
  lua_Integer ud = ring_user(L, 5);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_mkdirat",
                                      IORING_OP_MKDIRAT, ud, 3, 0, &s);
  io_uring_prep_mkdirat(sqe, dfd, path, (mode_t)mode);
  return 0;
}

/* ring:prep_symlinkat(target, newdirfd|nil, linkpath [, user_data]) */
static int l_prep_symlinkat (lua_State *L) {
  ur_ring *r = ring_check(L);
  const char *target = ring_path(L, 2);
  int ndfd = ring_dirfd(L, 3);
  const char *linkp = ring_path(L, 4);
  lua_Integer ud = ring_user(L, 5);
  int anchor = ring_anchor2(L, 2, 4);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_symlinkat",
                                      IORING_OP_SYMLINKAT, ud, anchor, 0, &s);
  io_uring_prep_symlinkat(sqe, target, ndfd, linkp);
  return 0;
}

/* ring:prep_linkat(olddirfd|nil, oldpath, newdirfd|nil, newpath
 *                  [, flags [, user_data]]) */
static int l_prep_linkat (lua_State *L) {
  ur_ring *r = ring_check(L);
  int odfd = ring_dirfd(L, 2);
  const char *oldp = ring_path(L, 3);
  int ndfd = ring_dirfd(L, 4);
  const char *newp = ring_path(L, 5);
  int flags = (int)ring_uint(L, 6, 0, "flags");
  lua_Integer ud = ring_user(L, 7);
  int anchor = ring_anchor2(L, 3, 5);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_linkat",
                                      IORING_OP_LINKAT, ud, anchor, 0, &s);
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
  ur_ring *r = ring_check(L);
  int fdin = ring_fd(L, 2);
  int64_t offin = ring_splice_off(L, 3);
  int fdout = ring_fd(L, 4);
  int64_t offout = ring_splice_off(L, 5);
  unsigned n = (luaL_checkinteger(L, 6), ring_uint(L, 6, 0, "nbytes"));
  unsigned flags = ring_uint(L, 7, 0, "flags");
  lua_Integer ud = ring_user(L, 8);
  ring_slot *s;
  struct io_uring_sqe *sqe;
  sqe = ring_sqe(L, r, 1, "prep_splice", IORING_OP_SPLICE, ud, 0, 0, &s);
  io_uring_prep_splice(sqe, fdin, offin, fdout, offout, n, flags);
  return 0;
}

/* ring:prep_tee(fd_in, fd_out, nbytes [, flags [, user_data]]): both pipes;
 * tee has no offsets, as in liburing */
static int l_prep_tee (lua_State *L) {
  ur_ring *r = ring_check(L);
  int fdin = ring_fd(L, 2);
  int fdout = ring_fd(L, 3);
  unsigned n;
  unsigned flags = ring_uint(L, 5, 0, "flags");
  lua_Integer ud = ring_user(L, 6);
  ring_slot *s;
  struct io_uring_sqe *sqe;
  luaL_checkinteger(L, 4);
  n = ring_uint(L, 4, 0, "nbytes");
  sqe = ring_sqe(L, r, 1, "prep_tee", IORING_OP_TEE, ud, 0, 0, &s);
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
  ur_ring *r = ring_check(L);
  int fd = by_fd ? ring_fd(L, 2) : -1;
  const char *path = by_fd ? NULL : ring_path(L, 2);
  const char *name = ring_name(L, 3);
  ur_buffer *b = ur_checkbuffer(L, 4);
  lua_Integer ud = ring_user(L, 5);
  int anchor;
  ring_slot *s;
  struct io_uring_sqe *sqe;
  lua_createtable(L, 3, 0);
  for (int i = 2; i <= 4; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - 1);
  }
  anchor = lua_gettop(L);
  sqe = ring_sqe(L, r, 1, fname, by_fd ? IORING_OP_FGETXATTR
                 : IORING_OP_GETXATTR, ud, anchor, 0, &s);
  if (by_fd)
    io_uring_prep_fgetxattr(sqe, fd, name, (char *)b->data,
                            (unsigned)b->size);
  else
    io_uring_prep_getxattr(sqe, name, (char *)b->data, path,
                           (unsigned)b->size);
  ring_pin(s, b);
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
  ur_ring *r = ring_check(L);
  int fd = by_fd ? ring_fd(L, 2) : -1;
  const char *path = by_fd ? NULL : ring_path(L, 2);
  const char *name = ring_name(L, 3);
  size_t len;
  const char *value = luaL_checklstring(L, 4, &len);
  int flags = (int)ring_uint(L, 5, 0, "flags");
  lua_Integer ud = ring_user(L, 6);
  int anchor;
  ring_slot *s;
  struct io_uring_sqe *sqe;
  luaL_argcheck(L, len <= UINT_MAX, 4, "value too long");
  lua_createtable(L, 3, 0);
  for (int i = 2; i <= 4; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - 1);
  }
  anchor = lua_gettop(L);
  sqe = ring_sqe(L, r, 1, fname, by_fd ? IORING_OP_FSETXATTR
                 : IORING_OP_SETXATTR, ud, anchor, 0, &s);
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
  ur_ring *r = ring_check(L);
  int ffixed;
  int fd = ring_file(L, r, 2, &ffixed);
  int is_send = (op != IORING_OP_RECV);
  ring_region g = ring_region_of(L, 3, 4, 7, is_send);
  int flags = lua_isnoneornil(L, 5) ? 0 : ring_int(L, 5, 0, INT_MAX, "flags");
  lua_Integer ud = ring_user(L, 6);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, fname, op, ud, 3, 0, &s);
  const void *src = g.buf ? (const void *)g.p : (const void *)g.s;
  switch (op) {
    case IORING_OP_SEND:
      io_uring_prep_send(sqe, fd, src, g.len, flags);
      break;
    case IORING_OP_SEND_ZC:
      io_uring_prep_send_zc(sqe, fd, src, g.len, flags, 0);
      s->zc_first = 1;                /* two CQEs: result, notification */
      r->zc_pending++;
      break;
    default:
      io_uring_prep_recv(sqe, fd, g.p, g.len, flags);
      break;
  }
  ring_fixed_flag(sqe, ffixed);
  if (g.buf) ring_pin(s, g.buf);
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
  ur_ring *r = ring_check(L);
  int ffixed;
  int fd = ring_file(L, r, 2, &ffixed);
  unsigned mask;
  lua_Integer ud = ring_user(L, 4);
  ring_slot *s;
  struct io_uring_sqe *sqe;
  luaL_checkinteger(L, 3);
  mask = ring_uint(L, 3, 0, "mask");
  sqe = ring_sqe(L, r, 1, "prep_poll_add", IORING_OP_POLL_ADD, ud, 0, 0, &s);
  io_uring_prep_poll_add(sqe, fd, mask);
  ring_fixed_flag(sqe, ffixed);
  return 0;
}

/* ring:prep_poll_remove(target_user_data [, user_data]) */
static int l_prep_poll_remove (lua_State *L) {
  ur_ring *r = ring_check(L);
  uint64_t target = ring_find(r, luaL_checkinteger(L, 2));
  lua_Integer ud = ring_user(L, 3);
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_poll_remove",
                                      IORING_OP_POLL_REMOVE, ud, 0, 0, &s);
  io_uring_prep_poll_remove(sqe, target);
  return 0;
}

/* ring:prep_timeout(seconds [, count [, user_data [, flags]]]): completes
 * with -ETIME when the time passes, or 0 after count other CQEs */
static int l_prep_timeout (lua_State *L) {
  ur_ring *r = ring_check(L);
  struct __kernel_timespec ts = ring_seconds(L, 2);
  unsigned count = ring_uint(L, 3, 0, "count");
  lua_Integer ud = ring_user(L, 4);
  unsigned flags = ring_uint(L, 5, 0, "flags");
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_timeout",
                                      IORING_OP_TIMEOUT, ud, 0, 0, &s);
  s->u.ts = ts;
  io_uring_prep_timeout(sqe, &s->u.ts, count, flags);
  return 0;
}

/* ring:prep_timeout_remove(target_user_data [, user_data [, flags]]) */
static int l_prep_timeout_remove (lua_State *L) {
  ur_ring *r = ring_check(L);
  uint64_t target = ring_find(r, luaL_checkinteger(L, 2));
  lua_Integer ud = ring_user(L, 3);
  unsigned flags = ring_uint(L, 4, 0, "flags");
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_timeout_remove",
                                      IORING_OP_TIMEOUT_REMOVE, ud, 0, 0, &s);
  io_uring_prep_timeout_remove(sqe, target, flags);
  return 0;
}

/* ring:prep_timeout_update(target_user_data, seconds [, user_data [, flags]]) */
static int l_prep_timeout_update (lua_State *L) {
  ur_ring *r = ring_check(L);
  uint64_t target = ring_find(r, luaL_checkinteger(L, 2));
  struct __kernel_timespec ts = ring_seconds(L, 3);
  lua_Integer ud = ring_user(L, 4);
  unsigned flags = ring_uint(L, 5, 0, "flags");
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_timeout_update",
                                      IORING_OP_TIMEOUT_REMOVE, ud, 0, 0, &s);
  s->u.ts = ts;
  io_uring_prep_timeout_update(sqe, &s->u.ts, target, flags);
  return 0;
}

/* ring:prep_link_timeout(seconds [, user_data [, flags]]): must follow an
 * SQE marked with ring:link(); cancels it if it has not completed in time */
static int l_prep_link_timeout (lua_State *L) {
  ur_ring *r = ring_check(L);
  struct __kernel_timespec ts = ring_seconds(L, 2);
  lua_Integer ud = ring_user(L, 3);
  unsigned flags = ring_uint(L, 4, 0, "flags");
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_link_timeout",
                                      IORING_OP_LINK_TIMEOUT, ud, 0, 0, &s);
  s->u.ts = ts;
  io_uring_prep_link_timeout(sqe, &s->u.ts, flags);
  return 0;
}

/* ring:prep_cancel(target_user_data [, user_data [, flags]]): flags of
 * IORING_ASYNC_CANCEL_*; with CANCEL_ANY the target is ignored */
static int l_prep_cancel (lua_State *L) {
  ur_ring *r = ring_check(L);
  uint64_t target = ring_find(r, luaL_checkinteger(L, 2));
  lua_Integer ud = ring_user(L, 3);
  unsigned flags = ring_uint(L, 4, 0, "flags");
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_cancel",
                                      IORING_OP_ASYNC_CANCEL, ud, 0, 0, &s);
  io_uring_prep_cancel64(sqe, target, (int)flags);
  return 0;
}

/* ring:prep_cancel_fd(fd [, user_data [, flags]]): cancel requests on fd */
static int l_prep_cancel_fd (lua_State *L) {
  ur_ring *r = ring_check(L);
  int fd = ring_fd(L, 2);
  lua_Integer ud = ring_user(L, 3);
  unsigned flags = ring_uint(L, 4, 0, "flags");
  ring_slot *s;
  struct io_uring_sqe *sqe = ring_sqe(L, r, 1, "prep_cancel_fd",
                                      IORING_OP_ASYNC_CANCEL, ud, 0, 0, &s);
  io_uring_prep_cancel_fd(sqe, fd, flags);
  return 0;
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
  ur_ring *r = ring_check(L);
  ring_last_sqe(L, r, "link")->flags |= IOSQE_IO_LINK;
  return 0;
}

/* ring:hardlink(): IOSQE_IO_HARDLINK: like link, but the chain goes on
 * even if this SQE fails */
static int l_hardlink (lua_State *L) {
  ur_ring *r = ring_check(L);
  ring_last_sqe(L, r, "hardlink")->flags |= IOSQE_IO_HARDLINK;
  return 0;
}

/* ring:drain(): IOSQE_IO_DRAIN: start only after every earlier SQE ended */
static int l_drain (lua_State *L) {
  ur_ring *r = ring_check(L);
  ring_last_sqe(L, r, "drain")->flags |= IOSQE_IO_DRAIN;
  return 0;
}

/* SQEs handed to the kernel whose CQE Lua has not taken yet. */
static uint32_t ring_submitted (ur_ring *r) {
  unsigned local = r->ring.sq.sqe_tail - r->ring.sq.sqe_head;
  return r->inflight > local ? r->inflight - local : 0;
}

/* ring:submit() -> number of SQEs submitted | fail */
static int l_submit (lua_State *L) {
  ur_ring *r = ring_check(L);
  int ret;
  do ret = io_uring_submit(&r->ring); while (ret == -EINTR);
  if (ret < 0) return ur_pushfail(L, ret, "submit");
  lua_pushinteger(L, ret);
  return 1;
}

/* ring:submit_and_wait([n]) -> submitted | fail: submit, then wait until n
 * (default 1) CQEs are ready; one io_uring_enter */
static int l_submit_and_wait (lua_State *L) {
  ur_ring *r = ring_check(L);
  lua_Integer n = luaL_optinteger(L, 2, 1);
  int ret;
  /* waiting for more CQEs than can ever come would hang forever (a
   * send_zc whose first CQE Lua has not taken yet has two to come) */
  if (n < 0 || n > (lua_Integer)r->inflight + (lua_Integer)r->zc_pending)
    return luaL_argerror(L, 2, lua_pushfstring(L, "cannot wait for %I CQEs: "
                         "%d SQE(s) in flight", n, (int)r->inflight));
  do ret = io_uring_submit_and_wait(&r->ring, (unsigned)n);
  while (ret == -EINTR);
  if (ret < 0) return ur_pushfail(L, ret, "submit_and_wait");
  lua_pushinteger(L, ret);
  return 1;
}

static int l_sq_space_left (lua_State *L) {
  ur_ring *r = ring_check(L);
  lua_pushinteger(L, io_uring_sq_space_left(&r->ring));
  return 1;
}

static int l_sq_ready (lua_State *L) {
  ur_ring *r = ring_check(L);
  lua_pushinteger(L, io_uring_sq_ready(&r->ring));
  return 1;
}

static int l_cq_ready (lua_State *L) {
  ur_ring *r = ring_check(L);
  lua_pushinteger(L, io_uring_cq_ready(&r->ring));
  return 1;
}

/* ring:inflight() -> SQEs prepared whose CQE Lua has not taken yet */
static int l_inflight (lua_State *L) {
  ur_ring *r = ring_check(L);
  lua_pushinteger(L, r->inflight);
  return 1;
}


/* ------------------------------------------------------- CQ-side methods */

static double ring_ts (struct statx_timestamp t) {
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const char *ring_ftype (unsigned mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "link";
    case S_IFSOCK: return "socket";
    case S_IFIFO: return "named pipe";
    case S_IFCHR: return "char device";
    case S_IFBLK: return "block device";
    default: return "other";
  }
}

static void ring_push_statx (lua_State *L, const struct statx *st) {
  lua_createtable(L, 0, 16);
#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))
#define SETN(k, v) (lua_pushnumber(L, (v)), lua_setfield(L, -2, k))
  SETI("mask", st->stx_mask);
  SETI("size", st->stx_size);
  SETI("mode", st->stx_mode);
  SETI("perm", st->stx_mode & 07777);
  lua_pushstring(L, ring_ftype(st->stx_mode));
  lua_setfield(L, -2, "type");
  SETI("ino", st->stx_ino);
  SETI("nlink", st->stx_nlink);
  SETI("uid", st->stx_uid);
  SETI("gid", st->stx_gid);
  SETI("blksize", st->stx_blksize);
  SETI("blocks", st->stx_blocks);
  SETI("dev_major", st->stx_dev_major);
  SETI("dev_minor", st->stx_dev_minor);
  SETN("atime", ring_ts(st->stx_atime));
  SETN("mtime", ring_ts(st->stx_mtime));
  SETN("ctime", ring_ts(st->stx_ctime));
  if (st->stx_mask & STATX_BTIME) SETN("btime", ring_ts(st->stx_btime));
#undef SETI
#undef SETN
}

/*
 * Hand one CQE to Lua: res, user_data, flags (and a statx table).  The
 * results are pushed before the CQE is consumed, so a memory error leaves
 * it in the CQ for the next call; then the slot is released (its last
 * CQE).  Returns the number of results, or 0 for a CQE that names no slot
 * (skipped).
 */
static int ring_push_cqe (lua_State *L, ur_ring *r, struct io_uring_cqe *cqe) {
  uint64_t kud = cqe->user_data;
  int32_t res = cqe->res;
  uint32_t flags = cqe->flags, idx = 0;
  ring_slot *s = ring_slot_of(r, kud, &idx);
  int n = 3;
  if (s == NULL) {
    io_uring_cqe_seen(&r->ring, cqe);
    return 0;
  }
  luaL_checkstack(L, 4, NULL);
  lua_pushinteger(L, res);     /* raw -errno, as liburing gives it */
  lua_pushinteger(L, s->user);
  lua_pushinteger(L, flags);
  if (s->opcode == IORING_OP_STATX && res >= 0) {
    ring_push_statx(L, (const struct statx *)s->mem);
    n = 4;
  }
  io_uring_cqe_seen(&r->ring, cqe);
  if (!(flags & IORING_CQE_F_MORE))
    ring_release(L, r, 1, s, idx);    /* its last CQE (send_zc: the notif) */
  else if (s->zc_first) {
    s->zc_first = 0;                  /* the result came; the notif is due */
    r->zc_pending--;
  }
  return n;
}

/* ring:wait_cqe([timeout]) -> res, user_data, flags [, statx] | fail */
static int l_wait_cqe (lua_State *L) {
  ur_ring *r = ring_check(L);
  struct __kernel_timespec ts = { 0, 0 };
  int timed = !lua_isnoneornil(L, 2);
  if (timed) ts = ring_seconds(L, 2);
  for (;;) {
    struct io_uring_cqe *cqe;
    int ret, n;
    /* liburing would block forever here: say what is missing instead */
    if (io_uring_cq_ready(&r->ring) == 0 && ring_submitted(r) == 0)
      return luaL_error(L, "wait_cqe: no submitted SQE is in flight, so no "
                        "CQE can come (call ring:submit())");
    ret = timed ? io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts)
                : io_uring_wait_cqe(&r->ring, &cqe);
    if (ret == -EINTR) continue;
    if (ret < 0) return ur_pushfail(L, ret, "wait_cqe");
    if ((n = ring_push_cqe(L, r, cqe)) > 0) return n;
  }
}

/* ring:peek_cqe() -> res, user_data, flags [, statx] | nil: never blocks */
static int l_peek_cqe (lua_State *L) {
  ur_ring *r = ring_check(L);
  for (;;) {
    struct io_uring_cqe *cqe;
    int n, ret = io_uring_peek_cqe(&r->ring, &cqe);
    if (ret == -EAGAIN || ret == -EINTR) {
      lua_pushnil(L);
      return 1;
    }
    if (ret < 0) return ur_pushfail(L, ret, "peek_cqe");
    if ((n = ring_push_cqe(L, r, cqe)) > 0) return n;
  }
}


/* -------------------------------------------------------- fixed buffers */

/*
 * ring:register_buffers{buf, ...} -> true | fail.  The kernel pins the
 * buffers' pages; the ring anchors the buffers until unregister_buffers or
 * close, and prep_read_fixed finds a buffer's index from it.
 */
static int l_register_buffers (lua_State *L) {
  ur_ring *r = ring_check(L);
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
  lua_setiuservalue(L, 1, UV_FIXED);         /* anchored while registered */
  r->nfixed = (int)n;
  lua_pushboolean(L, 1);
  return 1;
}

/* ring:unregister_buffers() -> true | fail.  SQEs in flight keep their
 * own buffer anchored, so dropping the registry's anchors here is safe. */
static int l_unregister_buffers (lua_State *L) {
  ur_ring *r = ring_check(L);
  int ret = io_uring_unregister_buffers(&r->ring);
  if (ret < 0) return ur_pushfail(L, ret, "unregister_buffers");
  lua_pushnil(L);
  lua_setiuservalue(L, 1, UV_FIXED);
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
  ur_ring *r = ring_check(L);
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
  ur_ring *r = ring_check(L);
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
  ur_ring *r = ring_check(L);
  unsigned off = (luaL_checkinteger(L, 2), ring_uint(L, 2, 0, "offset"));
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
static int l_fixed (lua_State *L) {
  ur_ring *r = ring_check(L);
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


/* ------------------------------------------------------- introspection */

static const char *const setup_names[] = {
  "iopoll", "sqpoll", "sq_aff", "cqsize", "clamp", "attach_wq",
  "r_disabled", "submit_all", "coop_taskrun", "taskrun_flag", "sqe128",
  "cqe32", "single_issuer", "defer_taskrun", NULL
};

/* Flags a user may ask for by name: the others need parameters we do not
 * take (sq_aff, attach_wq), change the SQE/CQE layout (sqe128, cqe32), or
 * are set by us (cqsize). */
#define SETUP_ALLOWED (IORING_SETUP_IOPOLL | IORING_SETUP_SQPOLL | \
  IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | \
  IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SINGLE_ISSUER | \
  IORING_SETUP_DEFER_TASKRUN)

/* ring:flags() -> {sqpoll = true, cqsize = true, ...} */
static int l_flags (lua_State *L) {
  ur_ring *r = ring_check(L);
  lua_newtable(L);
  for (int i = 0; setup_names[i]; i++)
    if (r->flags & (1u << i)) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, setup_names[i]);
    }
  return 1;
}

/* ring:probe() -> {opname = true, ...} | fail */
static int l_ring_probe (lua_State *L) {
  ur_ring *r = ring_check(L);
  return ur_push_probe(L, &r->ring);
}

static int l_ring_tostring (lua_State *L) {
  ur_ring *r = (ur_ring *)luaL_checkudata(L, 1, UR_RING_MT);
  if (r->ok)
    lua_pushfstring(L, "uring.ring(%d entries)", (int)r->entries);
  else
    lua_pushliteral(L, "uring.ring (closed)");
  return 1;
}


/* ------------------------------------------------------------ lifetime */

/* The kernel still holds SQEs we could not get back: keep their anchors
 * and slot memory forever rather than free what it may still touch. */
static void ring_leak (lua_State *L, ur_ring *r) {
  lua_getiuservalue(L, 1, UV_ANCHORS);
  luaL_ref(L, LUA_REGISTRYINDEX);             /* leaked on purpose */
  lua_getiuservalue(L, 1, UV_FIXED);
  luaL_ref(L, LUA_REGISTRYINDEX);
  r->chunks = NULL;                           /* leaked on purpose */
  r->nchunks = r->nslots = 0;
}

static void ring_free_slots (ur_ring *r) {
  for (uint32_t c = 0; c < r->nchunks; c++) free(r->chunks[c]);
  free(r->chunks);
  r->chunks = NULL;
  r->nchunks = r->nslots = 0;
  r->free_head = 0;
}

/* Take every ready CQE back without handing it to Lua (close).  An fd
 * that an open made and Lua never saw is closed: nobody else can. */
static void ring_drain (lua_State *L, ur_ring *r) {
  struct io_uring_cqe *cqe;
  unsigned head, n = 0;
  io_uring_for_each_cqe(&r->ring, head, cqe) {
    uint32_t idx;
    ring_slot *s = ring_slot_of(r, cqe->user_data, &idx);
    if (s && cqe->res >= 0
        && (s->opcode == IORING_OP_OPENAT || s->opcode == IORING_OP_OPENAT2))
      close(cqe->res);
    if (s && !(cqe->flags & IORING_CQE_F_MORE))
      ring_release(L, r, 1, s, idx);
    n++;
  }
  io_uring_cq_advance(&r->ring, n);
}

/*
 * close, __close and __gc: one idempotent function (liolib's f_gc).  The
 * ring is the parent of everything its SQEs name, so it ends them first:
 * prepared-but-unsubmitted SQEs become NOPs (close must not start I/O the
 * user never submitted, but their CQEs must come back), then
 * ASYNC_CANCEL_ANY|ALL cancels the rest, and we reap until 50 waits of
 * 100 ms have found nothing (a send_zc's slot waits for its notification).  A request that is still out after that (an
 * uncancelable one stuck in the kernel) keeps its anchors: leaked, not
 * freed under the kernel.  The ring is at stack index 1.
 */
static void ring_shutdown (lua_State *L, ur_ring *r) {
  struct io_uring_sq *sq = &r->ring.sq;
  if (!r->ok) return;
  r->ok = 0;
  if (r->pid != getpid()) {
    /* a forked child: the mappings were not inherited (dontfork) and the
     * requests are the parent's; just drop our fd */
    close(r->ring.ring_fd);
    ring_leak(L, r);
    return;
  }
  for (unsigned i = sq->sqe_head; i != sq->sqe_tail; i++) {
    struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
    uint64_t kud = sqe->user_data;
    uint32_t idx;
    ring_slot *s = ring_slot_of(r, kud, &idx);
    io_uring_prep_nop(sqe);               /* also clears IOSQE_* flags */
    io_uring_sqe_set_data64(sqe, kud);
    /* its CQE is a NOP's (res 0): ring_drain must not take that 0 for
     * the fd of an open */
    if (s) s->opcode = IORING_OP_NOP;
  }
  /* a cancel goes in at first and after each quiet 100 ms, not every
   * round: its own CQE would end the wait at once, and 50 rounds would
   * pass before a send_zc notification (which no cancel hurries) came */
  for (int idle = 0, cancel = 1; r->inflight > 0 && idle < 50;) {
    struct __kernel_timespec ts = { 0, 100 * 1000 * 1000 };
    struct io_uring_cqe *cqe;
    int ret;
    if (cancel) {
      struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
      if (sqe) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY |
                                       IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, 0);  /* its CQE names no slot */
      }
    }
    ret = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
    cancel = 0;
    if (ret == -ETIME || (ret < 0 && ret != -EINTR)) {
      idle++;                             /* quiet: count it, nudge again */
      cancel = 1;
    }
    ring_drain(L, r);
  }
  if (r->inflight > 0)
    ring_leak(L, r);
  else {
    if (r->nfixed) io_uring_unregister_buffers(&r->ring);
    ring_free_slots(r);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, UV_FIXED);
  }
  r->nfixed = 0;
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
        const char *name = lua_tostring(L, -1);
        int bit = -1;
        for (int j = 0; name && setup_names[j]; j++)
          if (strcmp(setup_names[j], name) == 0) bit = j;
        if (bit < 0 || !((1u << bit) & SETUP_ALLOWED))
          return luaL_argerror(L, 1, lua_pushfstring(L,
              "flag '%s' is unknown or not supported here",
              name ? name : luaL_typename(L, -1)));
        flags |= 1u << bit;
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  else
    cq = 2 * entries;
  /* closed first, then acquired: __gc on a ring never set up is a no-op */
  r = (ur_ring *)lua_newuserdatauv(L, sizeof *r, 2);
  memset(r, 0, sizeof *r);
  luaL_setmetatable(L, UR_RING_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, UV_ANCHORS);
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

/* Kernel constants under their kernel names (as luaposix keeps O_CREAT). */
static void ring_constants (lua_State *L) {
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

void ur_register_ring (lua_State *L) {
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
    {"link", l_link}, {"hardlink", l_hardlink}, {"drain", l_drain},
    {"submit", l_submit}, {"submit_and_wait", l_submit_and_wait},
    {"wait_cqe", l_wait_cqe}, {"peek_cqe", l_peek_cqe},
    {"sq_space_left", l_sq_space_left}, {"sq_ready", l_sq_ready},
    {"cq_ready", l_cq_ready}, {"inflight", l_inflight},
    {"register_buffers", l_register_buffers},
    {"unregister_buffers", l_unregister_buffers},
    {"register_files", l_register_files},
    {"unregister_files", l_unregister_files},
    {"update_files", l_update_files}, {"fixed", l_fixed},
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
  luaL_newlibtable(L, methods);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, RING_FIXED_MT);
  lua_pushcfunction(L, l_fixed_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_ring);
  lua_setfield(L, -2, "ring");
  ring_constants(L);
}
