/*
 * fs.c: files through the ring, shaped like Lua's io library.
 *
 * A uring.file keeps its own read buffer and write buffer (as stdio does)
 * and its own offset: reads and writes go to the kernel as IORING_OP_READ
 * and IORING_OP_WRITE at explicit offsets, so no lseek is ever needed on
 * the hot path.  Pipes and terminals, which have no offset, are detected
 * by the kernel's ESPIPE and use offset -1 from then on.
 *
 * A method that needs I/O (read, write, flush, seek, sync, close) runs as
 * a small state machine, drive(): it either finishes and pushes results,
 * or starts one op and yields; file_k absorbs the op's result into the
 * file and calls drive() again.  While an op is in flight the request owns
 * the buffer the kernel writes into (r->mem), so closing or collecting the
 * file then cannot free memory the kernel still holds.
 *
 * One task at a time may run a method on a file; a second one raises
 * "file is busy".  pread/pwrite keep no state and may be used by many
 * tasks at once.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uring.h"

#define FILL_MIN   (64 * 1024)     /* smallest read-ahead */
#define WBUF_SIZE  (64 * 1024)     /* write buffer; larger writes go direct */
#define L_MAXLENNUM 200            /* as liolib: longest numeral read */

/* M_WFLUSH: the flush that ends a line-buffered or unbuffered write; it
 * returns the file, as write does (M_FLUSH returns true, as io's flush) */
enum { M_NONE, M_READ, M_WRITE, M_FLUSH, M_WFLUSH, M_SEEK, M_SYNC, M_CLOSE };
enum { OP_NONE, OP_FILL, OP_FLUSH, OP_WDIRECT, OP_SYNC, OP_CLOSE, OP_WSYNC };
enum { VB_FULL, VB_LINE, VB_NO };

typedef struct ur_file {
  ur_handle h;            /* the fd; -1 before open and once closed */
  unsigned readable:1, writable:1, append:1, seekable:1, direct:1, eof:1;
  unsigned busy:1, datasync:1, sent:1, nl:1;
  int vbuf;               /* VB_* */
  int64_t off;            /* file offset of rbuf[rpos]; of wbuf[0] */
  char *rbuf;             /* buffered read data: rbuf[rpos .. rpos+rlen) */
  size_t rcap, rpos, rlen, scanned;
  char *wbuf;             /* pending writes: wbuf[0 .. wlen) */
  size_t wcap, wlen;
  /* the method in progress */
  int method, op;
  int arg, last;          /* format/argument being handled; the last one */
  size_t done;            /* bytes of the current write item written */
  int err;                /* -errno from a failed op, ends the method */
  int cerr;               /* close: the failed final flush, reported once
                             the descriptor is closed anyway (as fclose) */
  int whence;             /* seek */
  lua_Integer seekoff;
  int wres;               /* result of the WRITE linked before an FSYNC */
  ur_task *owner;         /* the task running the method */
} ur_file;

static ur_file *checkfile (lua_State *L, int idx) {
  return (ur_file *)ur_checkudata(L, idx, ur_loop_of(L)->file_mt, UR_FILE_MT);
}

/* file:pread(buf, ...) runs it per op */
static ur_buffer *checkbuffer (lua_State *L, int idx) {
  return (ur_buffer *)ur_checkudata(L, idx, ur_loop_of(L)->buffer_mt,
                                    UR_BUFFER_MT);
}

/* As liolib's tofile: a closed file is a programming error. */
static ur_file *tofile (lua_State *L) {
  ur_file *f = checkfile(L, 1);
  if (f->h.fd < 0) luaL_error(L, "attempt to use a closed file");
  return f;
}

static ur_file *newfile (lua_State *L) {
  ur_file *f = (ur_file *)lua_newuserdatauv(L, sizeof *f, 0);
  memset(f, 0, sizeof *f);
  ur_handle_init(&f->h);    /* closed until the open completes */
  f->seekable = 1;
  luaL_setmetatable(L, UR_FILE_MT);
  return f;
}

static void consume (ur_file *f, size_t n) {
  f->rpos += n;
  f->rlen -= n;
  f->off += (int64_t)n;
  f->scanned = 0;
  if (f->rlen == 0) f->rpos = 0;
}

static void drop_readahead (ur_file *f) {
  f->rpos = f->rlen = f->scanned = 0;
}

/* --- read formats, over the buffer; NEED means "fill, then retry" --- */

enum { FMT_OK, FMT_FAIL, FMT_NEED };

static int fmt_line (lua_State *L, ur_file *f, int keepnl) {
  char *p = f->rbuf + f->rpos;
  char *nl = NULL;
  if (f->rlen > f->scanned)
    nl = (char *)memchr(p + f->scanned, '\n', f->rlen - f->scanned);
  if (nl) {
    size_t n = (size_t)(nl - p) + 1;
    lua_pushlstring(L, p, keepnl ? n : n - 1);
    consume(f, n);
    return FMT_OK;
  }
  f->scanned = f->rlen;     /* don't rescan what has no newline */
  if (!f->eof) return FMT_NEED;
  if (f->rlen == 0) return FMT_FAIL;
  lua_pushlstring(L, p, f->rlen);
  consume(f, f->rlen);
  return FMT_OK;
}

static int fmt_all (lua_State *L, ur_file *f) {
  if (!f->eof) return FMT_NEED;
  lua_pushlstring(L, f->rbuf ? f->rbuf + f->rpos : "", f->rlen);
  consume(f, f->rlen);
  return FMT_OK;
}

static int fmt_chars (lua_State *L, ur_file *f, size_t n) {
  size_t take;
  if (n == 0) {             /* test for EOF, as read(0) does */
    if (f->rlen == 0 && !f->eof) return FMT_NEED;
    if (f->rlen == 0) return FMT_FAIL;
    lua_pushliteral(L, "");
    return FMT_OK;
  }
  if (f->rlen < n && !f->eof) return FMT_NEED;
  if (f->rlen == 0) return FMT_FAIL;
  take = f->rlen < n ? f->rlen : n;
  lua_pushlstring(L, f->rbuf + f->rpos, take);
  consume(f, take);
  return FMT_OK;
}

/* liolib's read_number, over our buffer: the same numeral grammar, the
 * same 200-character limit and the same one character of look-ahead. */
typedef struct RN {
  const char *p;
  size_t avail, used;
  int c, n;
  char buff[L_MAXLENNUM + 1];
} RN;

static int rn_getc (RN *rn) {
  return rn->used < rn->avail ? (unsigned char)rn->p[rn->used++] : EOF;
}

static int nextc (RN *rn) {
  if (rn->n >= L_MAXLENNUM) {
    rn->buff[0] = '\0';
    return 0;
  }
  rn->buff[rn->n++] = (char)rn->c;
  rn->c = rn_getc(rn);
  return 1;
}

static int test2 (RN *rn, const char *set) {
  if (rn->c == set[0] || rn->c == set[1]) return nextc(rn);
  return 0;
}

static int readdigits (RN *rn, int hex) {
  int count = 0;
  while ((hex ? isxdigit(rn->c) : isdigit(rn->c)) && nextc(rn)) count++;
  return count;
}

static int fmt_number (lua_State *L, ur_file *f) {
  RN rn;
  int count = 0, hex = 0;
  char decp[2];
  /* skip spaces first: they may span several fills */
  while (f->rlen > 0 && isspace((unsigned char)f->rbuf[f->rpos]))
    consume(f, 1);
  if (f->rlen < L_MAXLENNUM + 1 && !f->eof) return FMT_NEED;
  rn.p = f->rbuf ? f->rbuf + f->rpos : "";
  rn.avail = f->rlen;
  rn.used = 0;
  rn.n = 0;
  decp[0] = lua_getlocaledecpoint();
  decp[1] = '.';
  rn.c = rn_getc(&rn);
  test2(&rn, "-+");
  if (test2(&rn, "00")) {
    if (test2(&rn, "xX")) hex = 1;
    else count = 1;
  }
  count += readdigits(&rn, hex);
  if (test2(&rn, decp)) count += readdigits(&rn, hex);
  if (count > 0 && test2(&rn, (hex ? "pP" : "eE"))) {
    test2(&rn, "-+");
    readdigits(&rn, 0);
  }
  if (rn.c != EOF) rn.used--;          /* unread the look-ahead */
  consume(f, rn.used);
  rn.buff[rn.n] = '\0';
  if (lua_stringtonumber(L, rn.buff)) return FMT_OK;
  return FMT_FAIL;
}

/* --- starting ops: each hands the kernel memory the request owns --- */

static int file_k (lua_State *L, int status, lua_KContext ctx);

static int start_op (lua_State *L, ur_file *f, ur_task *t, ur_req *r,
                     struct io_uring_sqe *sqe, int op, const char *what) {
  if (op != OP_CLOSE) ur_handle_sqe(t->loop, &f->h, r, sqe);
  f->op = op;
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, what, 0, file_k);
}

static int method_end (ur_file *f);
static void file_release (ur_file *f);

/* Another task closed the file while this method ran: it cannot go on
 * (what it did so far stays done). */
static int closed_midway (lua_State *L, ur_file *f) {
  method_end(f);
  return ur_pushclosed(L);
}

/* Make room for at least want more bytes after the buffered data. */
static int reserve_read (ur_file *f, size_t want) {
  size_t need;
  if (f->rpos > 0 && f->rcap - f->rpos - f->rlen < want) {
    memmove(f->rbuf, f->rbuf + f->rpos, f->rlen);
    f->rpos = 0;
  }
  need = f->rlen + want;
  if (need > f->rcap) {
    size_t cap = f->rcap ? f->rcap : FILL_MIN;
    char *nb;
    while (cap < need) cap *= 2;
    nb = (char *)realloc(f->rbuf, cap);
    if (nb == NULL) return 0;
    f->rbuf = nb;
    f->rcap = cap;
  }
  return 1;
}

static int start_fill (lua_State *L, ur_file *f, ur_task *t) {
  /* read ahead at least as much as is buffered: "a" on a big file
   * doubles its request each time instead of crawling */
  size_t want = f->rlen > FILL_MIN ? f->rlen : FILL_MIN;
  ur_req *r;
  struct io_uring_sqe *sqe;
  size_t space;
  if (f->h.fd < 0) return closed_midway(L, f);
  r = ur_req_new(L, t->loop, IORING_OP_READ);
  if (want > (size_t)INT_MAX / 2) want = (size_t)INT_MAX / 2;
  if (!reserve_read(f, want)) {
    ur_req_free(t->loop, r);
    f->busy = 0;
    return luaL_error(L, "read: not enough memory");
  }
  space = f->rcap - f->rpos - f->rlen;
  if (space > (size_t)INT_MAX) space = (size_t)INT_MAX;
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_read(sqe, f->h.fd, f->rbuf + f->rpos + f->rlen, (unsigned)space,
                     f->seekable ? (uint64_t)(f->off + (int64_t)f->rlen)
                                 : (uint64_t)-1);
  r->mem = f->rbuf;           /* owned by the request while in flight */
  r->memlen = space;
  f->rbuf = NULL;
  return start_op(L, f, t, r, sqe, OP_FILL, "read");
}

static uint64_t write_offset (ur_file *f) {
  /* O_APPEND and pipes: -1, the kernel's own position */
  return (f->append || !f->seekable) ? (uint64_t)-1 : (uint64_t)f->off;
}

static int start_flush (lua_State *L, ur_file *f, ur_task *t) {
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (f->h.fd < 0) return closed_midway(L, f);
  r = ur_req_new(L, t->loop, IORING_OP_WRITE);
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_write(sqe, f->h.fd, f->wbuf, (unsigned)f->wlen, write_offset(f));
  r->mem = f->wbuf;           /* owned by the request while in flight */
  r->memlen = f->wlen;
  f->wbuf = NULL;
  return start_op(L, f, t, r, sqe, OP_FLUSH, "write");
}

/* Write argument f->arg straight from the Lua string: pinned, not copied. */
static int start_wdirect (lua_State *L, ur_file *f, ur_task *t) {
  size_t len, n;
  const char *s = lua_tolstring(L, f->arg, &len);
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (f->h.fd < 0) return closed_midway(L, f);
  r = ur_req_new(L, t->loop, IORING_OP_WRITE);
  n = len - f->done;
  if (n > (size_t)INT_MAX) n = (size_t)INT_MAX;
  ur_req_pin(L, r, f->arg);   /* pinned: the kernel reads it until the CQE */
  r->memlen = n;
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_write(sqe, f->h.fd, s + f->done, (unsigned)n, write_offset(f));
  return start_op(L, f, t, r, sqe, OP_WDIRECT, "write");
}

static int start_simple (lua_State *L, ur_file *f, ur_task *t, int op) {
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (f->h.fd < 0) return closed_midway(L, f);
  r = ur_req_new(L, t->loop, op == OP_SYNC ? IORING_OP_FSYNC : IORING_OP_CLOSE);
  sqe = ur_get_sqe(t->loop);
  if (op == OP_SYNC)
    io_uring_prep_fsync(sqe, f->h.fd, f->datasync ? IORING_FSYNC_DATASYNC : 0);
  else                        /* the handle closes it: IORING_OP_CLOSE */
    ur_handle_close_sqe(t->loop, &f->h, r, sqe);
  return start_op(L, f, t, r, sqe, op, op == OP_SYNC ? "fsync" : "close");
}

/* The linked WRITE's CQE: hand the buffer back and keep its result for
 * the FSYNC's continuation (the task waits on the FSYNC, the chain's end). */
static void linked_write_cqe (ur_loop *loop, ur_req *r) {
  ur_file *f = (ur_file *)r->obj;
  if (f) {
    f->wbuf = (char *)r->mem;
    r->mem = NULL;
    f->wres = r->res;
  }
  ur_req_free(loop, r);
}

/* sync() with buffered writes: WRITE then FSYNC as one linked chain, one
 * submission; the FSYNC starts only once the WRITE has completed, and is
 * cancelled (-ECANCELED) if the WRITE fails. */
static int start_write_sync (lua_State *L, ur_file *f, ur_task *t) {
  ur_loop *loop = t->loop;
  ur_req *w, *s;
  struct io_uring_sqe *sqe;
  if (f->h.fd < 0) return closed_midway(L, f);
  w = ur_req_new(L, loop, IORING_OP_WRITE);
  s = ur_req_new(L, loop, IORING_OP_FSYNC);
  ur_reserve_sqes(loop, 2);     /* a chain reaches the kernel whole */
  sqe = ur_get_sqe(loop);
  io_uring_prep_write(sqe, f->h.fd, f->wbuf, (unsigned)f->wlen, write_offset(f));
  sqe->flags |= IOSQE_IO_LINK;
  ur_handle_sqe(loop, &f->h, w, sqe);
  w->mem = f->wbuf;             /* owned by the request while in flight */
  w->memlen = f->wlen;
  w->obj = f;
  w->on_cqe = linked_write_cqe;
  f->wbuf = NULL;
  f->wres = -ECANCELED;
  ur_req_submitted(loop, w, sqe);
  sqe = ur_get_sqe(loop);
  io_uring_prep_fsync(sqe, f->h.fd, f->datasync ? IORING_FSYNC_DATASYNC : 0);
  f->sent = 1;
  return start_op(L, f, t, s, sqe, OP_WSYNC, "fsync");
}

/* --- the method state machine --- */

static int method_end (ur_file *f) {
  f->busy = 0;
  f->method = M_NONE;
  f->owner = NULL;
  if (f->h.fd < 0) file_release(f);   /* closed: nothing will use them */
  return 0;
}

/* Is a method running on f?  One that raised half-way (out of memory as
 * it pushed a result: fmt_line's lua_pushlstring) left busy set with no
 * op in flight, and nobody runs it any more: the file stayed "busy" for
 * good, and close and __gc then never freed its buffers.  A method that
 * is really running has an op in flight (it only yields in start_op). */
static int in_use (ur_file *f) {
  if (f->busy && f->op == OP_NONE) method_end(f);
  return f->busy;
}

static int method_fail (lua_State *L, ur_file *f, int err) {
  method_end(f);
  return ur_pushfail(L, err, NULL);
}

static void file_release (ur_file *f) {
  free(f->rbuf);
  free(f->wbuf);
  f->rbuf = f->wbuf = NULL;
  f->rcap = f->wcap = f->rlen = f->rpos = f->wlen = 0;
}

static int append_wbuf (ur_file *f, const char *s, size_t n) {
  if (n == 0) return 1;
  if (f->wlen + n > f->wcap) {
    size_t cap = f->wcap ? f->wcap : WBUF_SIZE;
    char *nb;
    while (cap < f->wlen + n) cap *= 2;
    nb = (char *)realloc(f->wbuf, cap);
    if (nb == NULL) return 0;
    f->wbuf = nb;
    f->wcap = cap;
  }
  memcpy(f->wbuf + f->wlen, s, n);
  f->wlen += n;
  return 1;
}

static int drive_read (lua_State *L, ur_file *f, ur_task *t) {
  for (; f->arg <= f->last; f->arg++) {
    int n = f->arg, r;
    if (lua_type(L, n) == LUA_TNUMBER) {
      size_t l = (size_t)lua_tointeger(L, n);
      r = fmt_chars(L, f, l);
    }
    else {
      const char *p = lua_tostring(L, n);
      if (*p == '*') p++;
      switch (*p) {
        case 'n': r = fmt_number(L, f); break;
        case 'l': r = fmt_line(L, f, 0); break;
        case 'L': r = fmt_line(L, f, 1); break;
        default: r = fmt_all(L, f); break;
      }
    }
    if (r == FMT_NEED) return start_fill(L, f, t);
    if (r == FMT_FAIL) {
      luaL_pushfail(L);
      break;
    }
  }
  method_end(f);
  return lua_gettop(L) - f->last;
}

static int drive_write (lua_State *L, ur_file *f, ur_task *t) {
  for (; f->arg <= f->last; f->arg++) {
    size_t len;
    const char *s;
    if (lua_type(L, f->arg) == LUA_TNUMBER) {
      char num[64];
      int n = lua_isinteger(L, f->arg)
        ? snprintf(num, sizeof num, LUA_INTEGER_FMT,
                   (LUAI_UACINT)lua_tointeger(L, f->arg))
        : snprintf(num, sizeof num, LUA_NUMBER_FMT,
                   (LUAI_UACNUMBER)lua_tonumber(L, f->arg));
      if (!append_wbuf(f, num, (size_t)n)) return method_fail(L, f, -ENOMEM);
      continue;
    }
    s = lua_tolstring(L, f->arg, &len);
    if (len < WBUF_SIZE && f->done == 0) {
      if (f->wlen + len > WBUF_SIZE) return start_flush(L, f, t);
      if (!append_wbuf(f, s, len)) return method_fail(L, f, -ENOMEM);
      if (memchr(s, '\n', len)) f->nl = 1;
      continue;
    }
    /* a big string: flush what is buffered, then send it from Lua memory */
    if (f->wlen > 0) return start_flush(L, f, t);
    if (f->done < len) return start_wdirect(L, f, t);
    f->done = 0;
  }
  if (f->wlen > 0 && (f->vbuf == VB_NO || (f->vbuf == VB_LINE && f->nl))) {
    f->method = M_WFLUSH;       /* unbuffered, or a line ended: flush now */
    f->nl = 0;
    return start_flush(L, f, t);
  }
  /* closed by another task meanwhile: what is buffered will never be
   * written, so this write did not succeed */
  if (f->h.fd < 0 && f->wlen > 0) return closed_midway(L, f);
  method_end(f);
  lua_settop(L, 1);
  return 1;                   /* the file, as io's write returns */
}

static int drive (lua_State *L, ur_file *f, ur_task *t);

static int drive_seek (lua_State *L, ur_file *f) {
  int64_t base = 0, pos;
  if (f->h.fd < 0) return closed_midway(L, f);
  if (f->whence == SEEK_CUR) base = f->off;
  else if (f->whence == SEEK_END) {
    struct stat st;
    if (fstat(f->h.fd, &st) != 0) return method_fail(L, f, -errno);
    base = st.st_size;
  }
  /* an offset near the integer limits (seek("cur", math.maxinteger))
   * would overflow the sum: EINVAL, as fseek says for a position it
   * cannot represent, and no undefined behaviour */
  if (__builtin_add_overflow(base, (int64_t)f->seekoff, &pos) || pos < 0)
    return method_fail(L, f, -EINVAL);
  /* also moves the kernel's position: for fd() users, and to learn
   * whether the file can seek at all (ESPIPE on a pipe) */
  if (lseek(f->h.fd, (off_t)pos, SEEK_SET) < 0) return method_fail(L, f, -errno);
  if (pos != f->off || f->whence != SEEK_CUR || f->seekoff != 0)
    drop_readahead(f);
  f->off = pos;
  f->eof = 0;
  method_end(f);
  lua_pushinteger(L, (lua_Integer)pos);
  return 1;
}

static int drive (lua_State *L, ur_file *f, ur_task *t) {
  if (f->err) {
    int err = f->err;
    f->err = 0;
    if (f->method != M_CLOSE || f->sent) return method_fail(L, f, err);
    f->cerr = err;            /* the final flush failed: still close */
  }
  switch (f->method) {
    case M_READ:
      if (f->wlen > 0) return start_flush(L, f, t);
      return drive_read(L, f, t);
    case M_WRITE:
      return drive_write(L, f, t);
    case M_FLUSH:
    case M_WFLUSH: {
      int m = f->method;
      if (f->wlen > 0) return start_flush(L, f, t);
      method_end(f);
      lua_settop(L, 1);         /* write returns the file */
      if (m == M_FLUSH) lua_pushboolean(L, 1);   /* flush: true, as io's */
      return 1;
    }
    case M_SEEK:
      if (f->wlen > 0) return start_flush(L, f, t);
      return drive_seek(L, f);
    case M_SYNC:
      if (f->wlen > 0 && !f->sent && f->seekable && !f->append)
        return start_write_sync(L, f, t);
      if (f->wlen > 0) return start_flush(L, f, t);
      if (!f->sent) {
        f->sent = 1;
        return start_simple(L, f, t, OP_SYNC);
      }
      method_end(f);
      lua_pushboolean(L, 1);
      return 1;
    default:                    /* M_CLOSE */
      if (f->wlen > 0) return start_flush(L, f, t);
      if (!f->sent) {
        f->sent = 1;
        if (ur_handle_inflight(t->loop, &f->h) == 0
            && !ur_op_missing(t->loop, IORING_OP_CLOSE))
          return start_simple(L, f, t, OP_CLOSE);
        /* other tasks' preads in flight: they are cancelled, and the fd
         * closed when the last is back; or a kernel without
         * IORING_OP_CLOSE (5.6): close(2) now */
        ur_handle_close(t->loop, &f->h, NULL);
      }
      file_release(f);
      method_end(f);
      if (f->cerr) {
        int err = f->cerr;
        f->cerr = 0;
        return ur_pushfail(L, err, NULL);
      }
      lua_pushboolean(L, 1);
      return 1;
  }
}

/* Take in the result of the op that just completed. */
static void absorb (ur_file *f, ur_req *r) {
  int res = r->res;
  switch (f->op) {
    case OP_FILL:
      f->rbuf = (char *)r->mem;
      r->mem = NULL;
      if (res == -ESPIPE && f->seekable) f->seekable = 0;   /* retry */
      else if (res == -EINTR || res == -EAGAIN) {}
      else if (res < 0) f->err = res;
      else if (res == 0) f->eof = 1;
      else {
        ur_kernel_wrote(f->rbuf + f->rpos + f->rlen, (size_t)res);
        f->rlen += (size_t)res;
      }
      break;
    case OP_FLUSH:
      f->wbuf = (char *)r->mem;
      r->mem = NULL;
      if (res == -ESPIPE && f->seekable) f->seekable = 0;
      else if (res == -EINTR || res == -EAGAIN) {}
      else if (res < 0) { f->err = res; f->wlen = 0; }
      else {
        memmove(f->wbuf, f->wbuf + res, f->wlen - (size_t)res);
        f->wlen -= (size_t)res;
        f->off += res;
        if (f->wlen == 0 && f->append) {
          off_t end = lseek(f->h.fd, 0, SEEK_CUR);   /* where O_APPEND put us */
          if (end >= 0) f->off = end;
        }
      }
      break;
    case OP_WSYNC: {
      int w = f->wres;            /* set by linked_write_cqe */
      if (f->wbuf == NULL) {      /* the WRITE's CQE never came (shutdown) */
        f->err = res < 0 ? res : -EIO;
        break;
      }
      if (w < 0) { f->err = w; f->wlen = 0; break; }
      memmove(f->wbuf, f->wbuf + w, f->wlen - (size_t)w);
      f->wlen -= (size_t)w;
      f->off += w;
      if (f->wlen > 0) f->sent = 0;   /* short: write the rest, sync again */
      else if (res < 0) f->err = res;
      break;
    }
    case OP_WDIRECT:
      if (res == -ESPIPE && f->seekable) f->seekable = 0;
      else if (res == -EINTR || res == -EAGAIN) {}
      else if (res < 0) { f->err = res; f->done = 0; }
      else {
        f->done += (size_t)res;
        f->off += res;
        if (f->append) {
          off_t end = lseek(f->h.fd, 0, SEEK_CUR);
          if (end >= 0) f->off = end;
        }
      }
      break;
    case OP_SYNC:
      if (res < 0) f->err = res;
      break;
    case OP_CLOSE:              /* closed, whatever the result */
      if (res < 0) f->err = res;
      break;
  }
  f->op = OP_NONE;
}

static int file_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  ur_file *f = checkfile(L, 1);
  (void)status; (void)ctx;
  if (f->h.fd < 0 && f->op != OP_CLOSE && r->res == -ECANCELED) {
    /* closed by another task, which cancelled our op */
    absorb(f, r);             /* the buffer comes back */
    ur_req_free(t->loop, r);
    f->err = 0;
    return closed_midway(L, f);
  }
  absorb(f, r);               /* what the op did counts, closed or not */
  ur_req_free(t->loop, r);
  if (ur_interrupted(t)) {
    /* a close cut short (its flush waited on a full pipe) still closes:
     * the fd is not left open for the collector; what was not written
     * yet is dropped, as close(2) drops a socket's unsent bytes */
    if (f->method == M_CLOSE) ur_handle_close(t->loop, &f->h, NULL);
    method_end(f);            /* what was read stays buffered */
    ur_check_interrupt(L, t);
  }
  return drive(L, f, t);
}

/* Claim the file for a method run by the current task. */
static ur_task *begin (lua_State *L, ur_file *f, const char *fname, int m) {
  ur_task *t = ur_task_current(L, fname);
  if (in_use(f))
    luaL_error(L, "%s: file is busy (another task is using it; "
               "use pread/pwrite to share a file)", fname);
  f->busy = 1;
  f->owner = t;
  f->method = m;
  f->err = f->cerr = 0;
  f->done = 0;
  f->sent = 0;
  return t;
}

/* file:read(...) -- formats "n" "l" "L" "a" and counts, as io's read */
static int l_file_read (lua_State *L) {
  ur_file *f = tofile(L);
  ur_task *t;
  int nargs = lua_gettop(L) - 1;
  if (nargs == 0) {
    lua_pushliteral(L, "l");
    nargs = 1;
  }
  luaL_checkstack(L, nargs + LUA_MINSTACK, "too many arguments");
  for (int n = 2; n <= nargs + 1; n++) {  /* validate before any I/O */
    if (lua_type(L, n) == LUA_TNUMBER) {
      /* io's read(-1) reads everything ((size_t)-1 bytes); a negative
       * count is a mistake, said so here */
      luaL_argcheck(L, luaL_checkinteger(L, n) >= 0, n,
                    "count must be non-negative");
      continue;
    }
    {
      const char *p = luaL_checkstring(L, n);
      if (*p == '*') p++;
      luaL_argcheck(L, *p == 'n' || *p == 'l' || *p == 'L' || *p == 'a', n,
                    "invalid format");
    }
  }
  if (f->direct)
    return luaL_error(L, "read: a direct (O_DIRECT) file is read with "
                      "pread into aligned buffers");
  t = ur_task_current(L, "read");
  if (!f->readable) return ur_pushfail(L, -EBADF, NULL);   /* as stdio */
  t = begin(L, f, "read", M_READ);
  f->eof = 0;                 /* as io's clearerr: the file may have grown */
  f->arg = 2;
  f->last = nargs + 1;
  return drive(L, f, t);
}

/* file:write(...) -> file | fail */
static int l_file_write (lua_State *L) {
  ur_file *f = tofile(L);
  ur_task *t;
  int n = lua_gettop(L);
  for (int i = 2; i <= n; i++)
    if (lua_type(L, i) != LUA_TNUMBER) luaL_checkstring(L, i);
  if (f->direct)
    return luaL_error(L, "write: a direct (O_DIRECT) file is written with "
                      "pwrite from aligned buffers");
  t = ur_task_current(L, "write");
  if (!f->writable) {
    /* as stdio: EBADF, but only once something is to be written (io's
     * write("") on a read-only file succeeds: fwrite of 0 bytes) */
    for (int i = 2; i <= n; i++)
      if (lua_type(L, i) == LUA_TNUMBER || lua_rawlen(L, i) > 0)
        return ur_pushfail(L, -EBADF, NULL);
    lua_settop(L, 1);
    return 1;
  }
  t = begin(L, f, "write", M_WRITE);
  drop_readahead(f);          /* writing happens at the logical position */
  f->arg = 2;
  f->last = n;
  return drive(L, f, t);
}

static int l_file_flush (lua_State *L) {
  ur_file *f = tofile(L);
  ur_task *t = begin(L, f, "flush", M_FLUSH);
  lua_settop(L, 1);
  return drive(L, f, t);
}

/* file:seek([whence [, offset]]) -> position | fail */
static int l_file_seek (lua_State *L) {
  static const int modes[] = {SEEK_SET, SEEK_CUR, SEEK_END};
  static const char *const names[] = {"set", "cur", "end", NULL};
  ur_file *f = tofile(L);
  int op = luaL_checkoption(L, 2, "cur", names);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  if (in_use(f))
    return luaL_error(L, "seek: file is busy (another task is using it)");
  f->whence = modes[op];
  f->seekoff = off;
  if (f->wlen == 0) {         /* nothing to write: no need to wait */
    f->method = M_SEEK;
    return drive_seek(L, f);
  }
  {
    ur_task *t = begin(L, f, "seek", M_SEEK);
    lua_settop(L, 1);
    return drive(L, f, t);
  }
}

/* file:setvbuf(mode [, size]) -- "no", "full", "line" */
static int l_file_setvbuf (lua_State *L) {
  static const int modes[] = {VB_NO, VB_FULL, VB_LINE};
  static const char *const names[] = {"no", "full", "line", NULL};
  ur_file *f = tofile(L);
  f->vbuf = modes[luaL_checkoption(L, 2, NULL, names)];
  lua_pushboolean(L, 1);
  return 1;
}

/* file:sync([data_only]) -> true | fail   (IORING_OP_FSYNC) */
static int l_file_sync (lua_State *L) {
  ur_file *f = tofile(L);
  int dataonly = lua_toboolean(L, 2);
  ur_task *t = begin(L, f, "sync", M_SYNC);
  f->datasync = (unsigned)dataonly;
  lua_settop(L, 1);
  return drive(L, f, t);
}

/* Close without the ring: __gc, or outside a task.  Pending writes are
 * written with plain pwrite so nothing is lost; what other tasks have in
 * flight on the file (preads) is cancelled, and the fd closed once it is
 * back (handle.c). */
static int close_sync (ur_loop *loop, ur_file *f, int gc) {
  int err = 0, cerr;
  size_t done = 0;
  while (done < f->wlen) {
    ssize_t n = f->append || !f->seekable
      ? write(f->h.fd, f->wbuf + done, f->wlen - done)
      : pwrite(f->h.fd, f->wbuf + done, f->wlen - done, (off_t)(f->off + (int64_t)done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { err = n < 0 ? -errno : -EIO; break; }
    done += (size_t)n;
  }
  cerr = ur_handle_close(loop, &f->h, gc ? f : NULL);
  file_release(f);
  return err ? err : cerr;
}

/* file:close(), __close and __gc: one idempotent function. */
static int l_file_close (lua_State *L) {
  ur_file *f = checkfile(L, 1);
  ur_loop *loop = ur_loop_of(L);
  ur_task *t = ur_task_of(L);
  int err;
  if (f->h.fd < 0) return luaL_error(L, "attempt to use a closed file");
  if (in_use(f)) {
    /* another task's method is in flight: its op is cancelled, it sees
     * "closed" (its buffer is the request's until then), and the fd is
     * closed once the kernel is done with it */
    ur_handle_close(loop, &f->h, NULL);
    lua_pushboolean(L, 1);
    return 1;
  }
  /* a task that can no longer wait (cancelled, or inside an expired
   * uring.timeout scope: begin would raise and leave the file open)
   * closes as __gc does */
  if (t && lua_isyieldable(L) && loop->current == t && !ur_interrupted(t)) {
    t = begin(L, f, "close", M_CLOSE);
    lua_settop(L, 1);
    return drive(L, f, t);
  }
  err = close_sync(loop, f, 0);
  if (err) return ur_pushfail(L, err, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_file_gc (lua_State *L) {
  ur_file *f = (ur_file *)luaL_testudata(L, 1, UR_FILE_MT);
  ur_loop *loop = ur_loop_of(L);
  if (f == NULL) return 0;
  in_use(f);
  if (f->h.fd >= 0 && !f->busy) close_sync(loop, f, 1);
  else                          /* lua_close, or closed before: what is in
                                   flight forgets this memory */
    ur_handle_close(loop, &f->h, f);
  if (!f->busy) file_release(f);
  return 0;
}

static int closemm_k (lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0;
}

/* `local f <close>` closes as f:close() does: the method is looked up, so
 * a close the Lua layer composed (popen's, which waits for the child,
 * lua/uring/proc.lua) runs here too. */
static int l_file_closemm (lua_State *L) {
  ur_file *f = checkfile(L, 1);
  if (f->h.fd < 0) return 0;
  lua_settop(L, 1);
  lua_getfield(L, 1, "close");
  lua_insert(L, 1);
  lua_callk(L, 1, 0, 0, closemm_k);
  return 0;
}

/* file:_closed() -> true once closed: the Lua methods check it first, so
 * their "attempt to use a closed file" names the caller's line. */
static int l_file_closed (lua_State *L) {
  lua_pushboolean(L, checkfile(L, 1)->h.fd < 0);
  return 1;
}

static int l_file_fd (lua_State *L) {
  lua_pushinteger(L, tofile(L)->h.fd);
  return 1;
}

static int l_file_tostring (lua_State *L) {
  ur_file *f = checkfile(L, 1);
  if (f->h.fd < 0) lua_pushliteral(L, "uring.file (closed)");
  else lua_pushfstring(L, "uring.file (fd %d)", f->h.fd);
  return 1;
}

/* --- positional I/O: no stream state, any number of tasks --- */

/* A positional op that failed: "closed" if the file was closed while it
 * was in flight (its cancel is why). */
static int pfail (lua_State *L, int res) {
  if (res == -ECANCELED && checkfile(L, 1)->h.fd < 0) return ur_pushclosed(L);
  return ur_pushfail(L, res, NULL);
}

static int pread_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res;
  (void)status; (void)ctx;
  if (res > 0) {
    ur_kernel_wrote(r->mem, (size_t)res);
    lua_pushlstring(L, (const char *)r->mem, (size_t)res);
  }
  ur_req_free(t->loop, r);
  if (res <= 0) ur_check_interrupt(L, t);
  if (res < 0) return pfail(L, res);
  if (res == 0) luaL_pushfail(L);   /* EOF */
  return 1;
}

/* file:pread(n, offset) -> string | nil (EOF) | fail
 * file:pread(buf, n, offset [, pos]) -> bytes | nil (EOF) | fail */
static int pread_into (lua_State *L, ur_file *f);

static int l_file_pread (lua_State *L) {
  ur_file *f = tofile(L);
  lua_Integer n, off;
  ur_task *t;
  ur_req *r;
  struct io_uring_sqe *sqe;
  void *mem;
  int slot;
  if (lua_type(L, 2) == LUA_TUSERDATA) return pread_into(L, f);
  n = luaL_checkinteger(L, 2);
  off = luaL_checkinteger(L, 3);
  luaL_argcheck(L, n >= 0 && n <= INT_MAX, 2, "count out of range");
  luaL_argcheck(L, off >= 0, 3, "offset must be non-negative");
  t = ur_task_current(L, "pread");
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  r = ur_req_new(L, t->loop, IORING_OP_READ);
  slot = ur_fixed_take(t->loop, (size_t)n);
  if (slot >= 0) {
    /* a registered buffer (configure{fixed_buffers}): its pages are
     * pinned once, not on every read; back on the stack at ur_req_free */
    mem = t->loop->fixed_base + (size_t)slot * t->loop->fixed_size;
    r->mem = mem;
    r->memlen = (size_t)n;
    r->memclass = UR_MEM_FIXED;
    r->aux = slot;
    r->opcode = IORING_OP_READ_FIXED;
    t->loop->stats.fixed_reads++;
    sqe = ur_get_sqe(t->loop);
    io_uring_prep_read_fixed(sqe, f->h.fd, mem, (unsigned)n, (uint64_t)off,
                             slot);
  }
  else {
    /* the kernel writes here: the request owns it (pooled, and aligned
     * as O_DIRECT wants) */
    mem = ur_iobuf_new(t->loop, r, (size_t)n);
    if (mem == NULL) {
      ur_req_free(t->loop, r);
      return luaL_error(L, "pread: not enough memory");
    }
    sqe = ur_get_sqe(t->loop);
    io_uring_prep_read(sqe, f->h.fd, mem, (unsigned)n, (uint64_t)off);
  }
  ur_handle_sqe(t->loop, &f->h, r, sqe);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "pread", 0, pread_k);
}

static int pread_into_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res;
  (void)status; (void)ctx;
  if (res > 0) ur_kernel_wrote(r->mem, (size_t)res);
  ur_req_free(t->loop, r);
  if (res <= 0) ur_check_interrupt(L, t);
  if (res < 0) return pfail(L, res);
  if (res == 0) luaL_pushfail(L);   /* EOF */
  else lua_pushinteger(L, res);
  return 1;
}

/* The bytes go straight into the uring.buffer at 1-based pos: no string
 * is made per read.  The request pins the buffer (registry ref, and its
 * pins count) until the CQE, so collecting it, or cancelling the task,
 * while the read is in flight cannot free memory the kernel writes. */
static int pread_into (lua_State *L, ur_file *f) {
  ur_buffer *b = checkbuffer(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  lua_Integer off = luaL_checkinteger(L, 4);
  lua_Integer pos = luaL_optinteger(L, 5, 1);
  ur_task *t;
  ur_req *r;
  struct io_uring_sqe *sqe;
  unsigned char *dst;
  luaL_argcheck(L, n >= 0 && n <= INT_MAX, 3, "count out of range");
  luaL_argcheck(L, off >= 0, 4, "offset must be non-negative");
  luaL_argcheck(L, pos >= 1 && pos <= (lua_Integer)b->size, 5,
                "position out of range");
  if ((size_t)n > b->size - (size_t)(pos - 1))
    return luaL_argerror(L, 3, lua_pushfstring(L,
        "%I bytes at position %I overflow a buffer of %I bytes",
        n, pos, (lua_Integer)b->size));
  t = ur_task_current(L, "pread");
  if (n == 0) {
    lua_pushinteger(L, 0);
    return 1;
  }
  dst = b->data + pos - 1;
  r = ur_req_new(L, t->loop, IORING_OP_READ);
  ur_req_pin(L, r, 2);          /* pinned: the kernel writes until the CQE */
  b->pins++;
  r->obj = b;
  r->mem = dst;                 /* not ours: ur_req_free only unpins */
  r->memlen = (size_t)n;
  r->memclass = UR_MEM_BUFFER;
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_read(sqe, f->h.fd, dst, (unsigned)n, (uint64_t)off);
  ur_handle_sqe(t->loop, &f->h, r, sqe);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "pread", 0, pread_into_k);
}

static int pwrite_k (lua_State *L, int status, lua_KContext ctx);

/* A write that failed part way: the fail triple (n values pushed) and
 * the bytes that did reach the file. */
static int written_fail (lua_State *L, int n, size_t done) {
  lua_pushinteger(L, (lua_Integer)done);
  return n + 1;
}

static int pwrite_start (lua_State *L, ur_file *f, ur_task *t, size_t done) {
  size_t len;
  const char *s = lua_tolstring(L, 2, &len);
  lua_Integer off = lua_tointeger(L, 3);
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_WRITE);
  struct io_uring_sqe *sqe;
  const void *src = s + done;
  size_t n = len - done;
  if (n > (size_t)INT_MAX) n = (size_t)INT_MAX;
  if (f->direct) {            /* Lua strings are not aligned: copy */
    void *mem = ur_iobuf_new(t->loop, r, n);
    if (mem == NULL) {
      ur_req_free(t->loop, r);
      return luaL_error(L, "pwrite: not enough memory");
    }
    memcpy(mem, src, n);
    src = mem;
  }
  else
    ur_req_pin(L, r, 2);      /* pinned, not copied */
  r->memlen = n;
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_write(sqe, f->h.fd, src, (unsigned)n, (uint64_t)off + done);
  ur_handle_sqe(t->loop, &f->h, r, sqe);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "pwrite", (lua_KContext)done, pwrite_k);
}

static int pwrite_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  ur_file *f = checkfile(L, 1);
  int res = r->res;
  size_t done = (size_t)ctx, len;
  (void)status;
  lua_tolstring(L, 2, &len);
  ur_req_free(t->loop, r);
  if (res > 0) done += (size_t)res;   /* written, whatever comes next */
  if (res == 0 || done >= len) {
    lua_pushinteger(L, (lua_Integer)done);
    return 1;
  }
  if (f->h.fd < 0) return written_fail(L, ur_pushclosed(L), done);
  ur_check_interrupt(L, t);
  if (res < 0) return written_fail(L, ur_pushfail(L, res, NULL), done);
  return pwrite_start(L, f, t, done);   /* a short write: the rest */
}

/* file:pwrite(s, offset) -> bytes | fail: all of s, at offset */
static int l_file_pwrite (lua_State *L) {
  ur_file *f = tofile(L);
  size_t len;
  ur_task *t;
  luaL_checklstring(L, 2, &len);
  luaL_argcheck(L, luaL_checkinteger(L, 3) >= 0, 3,
                "offset must be non-negative");
  lua_settop(L, 3);
  t = ur_task_current(L, "pwrite");
  if (len == 0) {
    lua_pushinteger(L, 0);
    return 1;
  }
  return pwrite_start(L, f, t, 0);
}

/* --- statx: file:stat() and uring.stat(path) --- */

/* Continuation for ops that report through a fail tuple named after a
 * path (argument 1), with an optional statx result in r->mem. */
static int path_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res, isstat = ctx == 1, named = ctx == 2 ? 2 : 1;
  (void)status;
  if (res >= 0 && isstat) {
    ur_kernel_wrote(r->mem, sizeof(struct statx));
    ur_push_statx(L, (const struct statx *)r->mem);
  }
  ur_req_free(t->loop, r);
  ur_check_interrupt(L, t);
  if (res < 0)
    return ur_pushfail(L, res, lua_type(L, named) == LUA_TSTRING
                                 ? lua_tostring(L, named) : NULL);
  if (!isstat) lua_pushboolean(L, 1);
  return 1;
}

static int do_statx (lua_State *L, ur_handle *h, const char *path, int flags,
                     int pinidx, const char *fname) {
  ur_task *t = ur_task_current(L, fname);
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_STATX);
  struct io_uring_sqe *sqe;
  r->mem = malloc(sizeof(struct statx));
  if (r->mem == NULL) {
    ur_req_free(t->loop, r);
    return luaL_error(L, "%s: not enough memory", fname);
  }
  if (pinidx) ur_req_pin(L, r, pinidx);
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_statx(sqe, h ? h->fd : AT_FDCWD, path, flags,
                      STATX_BASIC_STATS | STATX_BTIME, (struct statx *)r->mem);
  if (h) ur_handle_sqe(t->loop, h, r, sqe);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, fname, 1, path_k);
}

/* file:stat() -> table | fail */
static int l_file_stat (lua_State *L) {
  ur_file *f = tofile(L);
  lua_settop(L, 1);
  return do_statx(L, &f->h, "", AT_EMPTY_PATH, 0, "stat");
}

/* uring.stat(path) -> table | fail */
static int l_stat (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  lua_settop(L, 1);
  return do_statx(L, NULL, path, 0, 1, "stat");
}

/* uring.lstat(path) -> table | fail: a link itself, not where it leads */
static int l_lstat (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  lua_settop(L, 1);
  return do_statx(L, NULL, path, AT_SYMLINK_NOFOLLOW, 1, "lstat");
}

/* unlink, rmdir, mkdir, rename, symlink, link: one op each, true | fail */
static int path_op (lua_State *L, const char *fname, int op) {
  const char *path = ur_checkpath(L, 1), *path2 = NULL;
  lua_Integer perm = 0777;
  ur_task *t;
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (op == IORING_OP_RENAMEAT || op == IORING_OP_SYMLINKAT
      || op == IORING_OP_LINKAT)
    path2 = ur_checkpath(L, 2);
  if (op == IORING_OP_MKDIRAT) {
    perm = luaL_optinteger(L, 2, 0777);
    luaL_argcheck(L, perm >= 0 && perm <= 07777, 2, "invalid permissions");
  }
  lua_settop(L, 2);
  t = ur_task_current(L, fname);
  r = ur_req_new(L, t->loop, (uint8_t)op);
  ur_req_pin(L, r, 1);        /* path: read by the kernel at submit */
  if (path2) {
    /* a second pin: keep both paths in one table */
    luaL_unref(L, LUA_REGISTRYINDEX, r->pin_ref);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 2);
    r->pin_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  sqe = ur_get_sqe(t->loop);
  switch (op) {
    case IORING_OP_UNLINKAT:
      io_uring_prep_unlinkat(sqe, AT_FDCWD, path,
                             strcmp(fname, "rmdir") == 0 ? AT_REMOVEDIR : 0);
      break;
    case IORING_OP_MKDIRAT:
      io_uring_prep_mkdirat(sqe, AT_FDCWD, path, (mode_t)perm);
      break;
    case IORING_OP_SYMLINKAT:   /* symlink(target, path) */
      io_uring_prep_symlinkat(sqe, path, AT_FDCWD, path2);
      break;
    case IORING_OP_LINKAT:
      io_uring_prep_linkat(sqe, AT_FDCWD, path, AT_FDCWD, path2, 0);
      break;
    default:
      io_uring_prep_renameat(sqe, AT_FDCWD, path, AT_FDCWD, path2, 0);
  }
  ur_req_submitted(t->loop, r, sqe);
  /* symlink's failure is about the new path, not its target */
  return ur_await(L, t, r, fname, op == IORING_OP_SYMLINKAT ? 2 : 0, path_k);
}

static int l_unlink (lua_State *L) { return path_op(L, "unlink", IORING_OP_UNLINKAT); }
static int l_rmdir (lua_State *L) { return path_op(L, "rmdir", IORING_OP_UNLINKAT); }
static int l_mkdir (lua_State *L) { return path_op(L, "mkdir", IORING_OP_MKDIRAT); }
static int l_rename (lua_State *L) { return path_op(L, "rename", IORING_OP_RENAMEAT); }
static int l_symlink (lua_State *L) { return path_op(L, "symlink", IORING_OP_SYMLINKAT); }
static int l_link (lua_State *L) { return path_op(L, "link", IORING_OP_LINKAT); }

/* --- uring.open --- */

/* As liolib's l_checkmode: [rwa]%+?b* */
static int checkmode (const char *mode) {
  return (*mode != '\0' && strchr("rwa", *(mode++)) != NULL &&
         (*mode != '+' || ((void)(++mode), 1)) &&
         (strspn(mode, "b") == strlen(mode)));
}

static int open_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res;
  ur_file *f = checkfile(L, 4);
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  if (res >= 0 && ur_interrupted(t))
    ur_fd_release(res);         /* nobody will get this fd: don't leak it */
  ur_check_interrupt(L, t);
  if (res >= 0) res = ur_handle_adopt(t->loop, &f->h, res);
  if (res < 0) return ur_pushfail(L, res, lua_tostring(L, 1));
  if (f->append) {
    struct stat st;             /* "a" starts at the end, as fopen does */
    if (!f->readable && fstat(f->h.fd, &st) == 0) f->off = st.st_size;
  }
  return 1;
}

/* uring.open(path [, mode [, opts]]) -> file | fail
 * opts: a permission number, or {perm =, direct =, sync =, exclusive =} */
static int l_open (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  const char *mode = ur_optcstr(L, 2, "mode", "r");
  lua_Integer perm = 0666;
  int flags, direct = 0, plus;
  ur_task *t;
  ur_file *f;
  ur_req *r;
  struct io_uring_sqe *sqe;
  luaL_argcheck(L, checkmode(mode), 2, "invalid mode");
  plus = strchr(mode, '+') != NULL;
  switch (mode[0]) {
    case 'r': flags = plus ? O_RDWR : O_RDONLY; break;
    case 'w': flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC; break;
    default:  flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND; break;
  }
  if (lua_type(L, 3) == LUA_TNUMBER)
    perm = luaL_checkinteger(L, 3);
  else if (lua_type(L, 3) == LUA_TTABLE) {
    if (lua_getfield(L, 3, "perm") != LUA_TNIL) {
      int isint;              /* luaL_checkinteger(L, -1) would say "#-1" */
      perm = lua_tointegerx(L, -1, &isint);
      luaL_argcheck(L, isint, 3, "perm must be an integer");
    }
    if (lua_getfield(L, 3, "direct") != LUA_TNIL) direct = lua_toboolean(L, -1);
    if (lua_getfield(L, 3, "sync") != LUA_TNIL && lua_toboolean(L, -1))
      flags |= O_SYNC;
    if (lua_getfield(L, 3, "exclusive") != LUA_TNIL && lua_toboolean(L, -1))
      flags |= O_EXCL;
    lua_pop(L, 4);
  }
  else if (!lua_isnoneornil(L, 3))
    luaL_typeerror(L, 3, "number or table");
  luaL_argcheck(L, perm >= 0 && perm <= 07777, 3, "invalid permissions");
  if (direct) flags |= O_DIRECT;
  flags |= O_CLOEXEC;
  lua_settop(L, 3);
  t = ur_task_current(L, "open");
  f = newfile(L);               /* closed until the CQE: safe to collect */
  f->readable = mode[0] == 'r' || plus;
  f->writable = mode[0] != 'r' || plus;
  f->append = mode[0] == 'a';
  f->direct = (unsigned)direct;
  r = ur_req_new(L, t->loop, IORING_OP_OPENAT);
  r->makes_fd = 1;
  ur_req_pin(L, r, 1);          /* the path, read by the kernel */
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_openat(sqe, AT_FDCWD, path, flags, (mode_t)perm);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "open", 0, open_k);
}

/* A closed uring.file for mode (checked), pushed: proc.c makes the
 * owners of a child's pipe ends before the pipes, so running out of
 * memory cannot leak them. */
void ur_file_push (lua_State *L, const char *mode) {
  int plus = strchr(mode, '+') != NULL;
  ur_file *f = newfile(L);
  f->readable = mode[0] == 'r' || plus;
  f->writable = mode[0] != 'r' || plus;
  f->append = mode[0] == 'a';
}

/* The closed file at idx takes fd: 0, or -ENOMEM (fd is closed). */
int ur_file_adopt (lua_State *L, int idx, int fd) {
  return ur_handle_adopt(ur_loop_of(L), &checkfile(L, idx)->h, fd);
}

/* The handle of the uring.file at idx (raises if it is not one): for
 * copy.c, whose splices name the file's fd and count as requests on it
 * (closing the file cancels them). */
ur_handle *ur_file_handle (lua_State *L, int idx) {
  return &checkfile(L, idx)->h;
}

/* uring.fdopen(fd [, mode]) -> file | fail
 * A file object over a duplicate of an fd this process already has
 * (stdin, a pipe from elsewhere); closing it leaves fd itself open. */
static int l_fdopen (lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  const char *mode = ur_optcstr(L, 2, "mode", "r");
  int nfd;
  luaL_argcheck(L, fd >= 0 && fd <= INT_MAX, 1, "invalid file descriptor");
  luaL_argcheck(L, checkmode(mode), 2, "invalid mode");
  ur_file_push(L, mode);
  nfd = fcntl((int)fd, F_DUPFD_CLOEXEC, 3);
  if (nfd < 0) return ur_pushfail(L, -errno, NULL);
  if ((nfd = ur_file_adopt(L, -1, nfd)) < 0) return ur_pushfail(L, nfd, NULL);
  return 1;
}

/* uring.pipe() -> r, w | fail: the two ends of a pipe, as uring.files
 * ("r" and "w"); both owners are made first. */
static int l_pipe (lua_State *L) {
  int fds[2], ret;
  lua_settop(L, 0);
  ur_file_push(L, "r");
  ur_file_push(L, "w");
  if (pipe2(fds, O_CLOEXEC) != 0) return ur_pushfail(L, -errno, "pipe");
  ret = ur_file_adopt(L, 1, fds[0]);
  if (ret < 0) {
    ur_fd_release(fds[1]);      /* not adopted: nothing names it */
    return ur_pushfail(L, ret, "pipe");
  }
  if ((ret = ur_file_adopt(L, 2, fds[1])) < 0) return ur_pushfail(L, ret, "pipe");
  return 2;
}

void ur_register_fs (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"read", l_file_read}, {"write", l_file_write}, {"flush", l_file_flush},
    {"seek", l_file_seek}, {"setvbuf", l_file_setvbuf},
    {"sync", l_file_sync}, {"close", l_file_close}, {"fd", l_file_fd},
    {"pread", l_file_pread}, {"pwrite", l_file_pwrite},
    {"stat", l_file_stat}, {"_closed", l_file_closed},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_file_gc}, {"__close", l_file_closemm},
    {"__tostring", l_file_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"open", l_open}, {"fdopen", l_fdopen}, {"pipe", l_pipe}, {"stat", l_stat},
    {"unlink", l_unlink},
    {"rmdir", l_rmdir}, {"mkdir", l_mkdir}, {"rename", l_rename},
    {"lstat", l_lstat}, {"symlink", l_symlink}, {"link", l_link},
    {NULL, NULL}
  };
  luaL_newmetatable(L, UR_FILE_MT);
  ur_loop_get(L)->file_mt = lua_topointer(L, -1);
  ur_setfuncs(L, meta);
  lua_newtable(L);
  ur_setfuncs(L, methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "file_methods");  /* init.lua adds lines() here */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
}
