/*
 * statx.c: a struct statx as a Lua table, in one vocabulary.
 *
 * uring.stat, file:stat and the teaching ring's prep_statx results all
 * push this table, so a script learns one set of names: `type` in stat's
 * words ("file", "directory", "link", "fifo", ...), the same words
 * uring.dir and uring.walk use for a kind.
 */
#include <sys/stat.h>

#include "uring.h"

/* A file type in stat's vocabulary. */
const char *ur_file_type (unsigned mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "link";
    case S_IFCHR: return "char device";
    case S_IFBLK: return "block device";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    default: return "other";
  }
}

static void setint (lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void settime (lua_State *L, const char *k, struct statx_timestamp t) {
  lua_pushnumber(L, (double)t.tv_sec + t.tv_nsec * 1e-9);
  lua_setfield(L, -2, k);
}

/* Push the table for st (the kernel has written it: the caller says so to
 * valgrind with ur_kernel_wrote).  mode holds the permission bits only;
 * the type is in type.  btime is there when the file system keeps it;
 * mask says which fields the kernel filled (STATX_*). */
void ur_push_statx (lua_State *L, const struct statx *st) {
  lua_createtable(L, 0, 16);
  setint(L, "size", (lua_Integer)st->stx_size);
  setint(L, "mode", st->stx_mode & 07777);
  lua_pushstring(L, ur_file_type(st->stx_mode));
  lua_setfield(L, -2, "type");
  setint(L, "nlink", st->stx_nlink);
  setint(L, "uid", st->stx_uid);
  setint(L, "gid", st->stx_gid);
  setint(L, "ino", (lua_Integer)st->stx_ino);
  setint(L, "dev", (lua_Integer)(((uint64_t)st->stx_dev_major << 32)
                                 | st->stx_dev_minor));
  setint(L, "blksize", st->stx_blksize);
  setint(L, "blocks", (lua_Integer)st->stx_blocks);
  settime(L, "atime", st->stx_atime);
  settime(L, "mtime", st->stx_mtime);
  settime(L, "ctime", st->stx_ctime);
  if (st->stx_mask & STATX_BTIME) settime(L, "btime", st->stx_btime);
  setint(L, "mask", st->stx_mask);
}
