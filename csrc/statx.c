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

/* The fields of a stat table, in the order they are set. */
enum {
  F_SIZE, F_MODE, F_TYPE, F_NLINK, F_UID, F_GID, F_INO, F_DEV, F_BLKSIZE,
  F_BLOCKS, F_ATIME, F_MTIME, F_CTIME, F_BTIME, F_MASK, F_COUNT
};
static const char *const field_names[F_COUNT] = {
  "size", "mode", "type", "nlink", "uid", "gid", "ino", "dev", "blksize",
  "blocks", "atime", "mtime", "ctime", "btime", "mask"
};

/* One field into the table on top.  names: 0, or the stack index where
 * ur_statx_names put the field names, which rawset finds without
 * lua_setfield's look-up of a C string (its cost shows when a walk makes
 * a table for each of 100,000 entries). */
static void field_int (lua_State *L, int names, int k, lua_Integer v) {
  if (names) {
    lua_pushvalue(L, names + k);
    lua_pushinteger(L, v);
    lua_rawset(L, -3);
  }
  else {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, field_names[k]);
  }
}

static void field_time (lua_State *L, int names, int k, struct statx_timestamp t) {
  if (names) lua_pushvalue(L, names + k);
  lua_pushnumber(L, (double)t.tv_sec + t.tv_nsec * 1e-9);
  if (names) lua_rawset(L, -3);
  else lua_setfield(L, -2, field_names[k]);
}

static void field_type (lua_State *L, int names, unsigned mode) {
  if (names) lua_pushvalue(L, names + F_TYPE);
  lua_pushstring(L, ur_file_type(mode));
  if (names) lua_rawset(L, -3);
  else lua_setfield(L, -2, "type");
}

static void push_statx (lua_State *L, const struct statx *st, int names) {
  lua_createtable(L, 0, F_COUNT + 1);
  field_int(L, names, F_SIZE, (lua_Integer)st->stx_size);
  field_int(L, names, F_MODE, st->stx_mode & 07777);
  field_type(L, names, st->stx_mode);
  field_int(L, names, F_NLINK, st->stx_nlink);
  field_int(L, names, F_UID, st->stx_uid);
  field_int(L, names, F_GID, st->stx_gid);
  field_int(L, names, F_INO, (lua_Integer)st->stx_ino);
  field_int(L, names, F_DEV, (lua_Integer)(((uint64_t)st->stx_dev_major << 32)
                                           | st->stx_dev_minor));
  field_int(L, names, F_BLKSIZE, st->stx_blksize);
  field_int(L, names, F_BLOCKS, (lua_Integer)st->stx_blocks);
  field_time(L, names, F_ATIME, st->stx_atime);
  field_time(L, names, F_MTIME, st->stx_mtime);
  field_time(L, names, F_CTIME, st->stx_ctime);
  if (st->stx_mask & STATX_BTIME) field_time(L, names, F_BTIME, st->stx_btime);
  field_int(L, names, F_MASK, st->stx_mask);
}

/* Push the table for st (the kernel has written it: the caller says so to
 * valgrind with ur_kernel_wrote).  mode holds the permission bits only;
 * the type is in type.  btime is there when the file system keeps it;
 * mask says which fields the kernel filled (STATX_*). */
void ur_push_statx (lua_State *L, const struct statx *st) {
  push_statx(L, st, 0);
}

/* For many tables in a row: push the field names once (returns the
 * index of the first), then ur_push_statx_with(L, st, that index) for
 * each; the caller pops the names. */
int ur_statx_names (lua_State *L) {
  int base = lua_gettop(L) + 1;
  /* the names, and room above them for the caller's array, a table, a
   * key and a value */
  luaL_checkstack(L, F_COUNT + 8, "stat field names");
  for (int k = 0; k < F_COUNT; k++) lua_pushstring(L, field_names[k]);
  return base;
}

void ur_push_statx_with (lua_State *L, const struct statx *st, int names) {
  push_statx(L, st, names);
}
