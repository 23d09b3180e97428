/*
 * probe.c: opcode names and IORING_REGISTER_PROBE.
 *
 * The kernel numbers its operations in one enum (include/uapi/linux/
 * io_uring.h, enum io_uring_op) that only ever grows at the end.  liburing
 * 2.3's copy stops at SENDMSG_ZC (48), but the running kernel may be far
 * newer, so the table below is written out by number, as a 6.18 kernel
 * numbers them, instead of with liburing's enum constants.  Names are the
 * constant without the IORING_OP_ prefix, lower-cased: the keys of
 * probe()'s table and of trace events.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "uring.h"

static const char *const op_names[] = {
  "nop",              /*  0 */
  "readv",            /*  1 */
  "writev",           /*  2 */
  "fsync",            /*  3 */
  "read_fixed",       /*  4 */
  "write_fixed",      /*  5 */
  "poll_add",         /*  6 */
  "poll_remove",      /*  7 */
  "sync_file_range",  /*  8 */
  "sendmsg",          /*  9 */
  "recvmsg",          /* 10 */
  "timeout",          /* 11 */
  "timeout_remove",   /* 12 */
  "accept",           /* 13 */
  "async_cancel",     /* 14 */
  "link_timeout",     /* 15 */
  "connect",          /* 16 */
  "fallocate",        /* 17 */
  "openat",           /* 18 */
  "close",            /* 19 */
  "files_update",     /* 20 */
  "statx",            /* 21 */
  "read",             /* 22 */
  "write",            /* 23 */
  "fadvise",          /* 24 */
  "madvise",          /* 25 */
  "send",             /* 26 */
  "recv",             /* 27 */
  "openat2",          /* 28 */
  "epoll_ctl",        /* 29 */
  "splice",           /* 30 */
  "provide_buffers",  /* 31 */
  "remove_buffers",   /* 32 */
  "tee",              /* 33 */
  "shutdown",         /* 34 */
  "renameat",         /* 35 */
  "unlinkat",         /* 36 */
  "mkdirat",          /* 37 */
  "symlinkat",        /* 38 */
  "linkat",           /* 39 */
  "msg_ring",         /* 40 */
  "fsetxattr",        /* 41 */
  "setxattr",         /* 42 */
  "fgetxattr",        /* 43 */
  "getxattr",         /* 44 */
  "socket",           /* 45 */
  "uring_cmd",        /* 46 */
  "send_zc",          /* 47 */
  "sendmsg_zc",       /* 48: last one liburing 2.3 knows */
  "read_multishot",   /* 49: 6.7 */
  "waitid",           /* 50: 6.7 */
  "futex_wait",       /* 51: 6.7 */
  "futex_wake",       /* 52: 6.7 */
  "futex_waitv",      /* 53: 6.7 */
  "fixed_fd_install", /* 54: 6.8 */
  "ftruncate",        /* 55: 6.9 */
  "bind",             /* 56: 6.11 */
  "listen",           /* 57: 6.11 */
  "recv_zc",          /* 58: 6.15 */
  "epoll_wait",       /* 59: 6.15 */
  "readv_fixed",      /* 60: 6.15 */
  "writev_fixed",     /* 61: 6.15 */
  "pipe",             /* 62: 6.16 */
};

#define NOPS (sizeof op_names / sizeof op_names[0])

/* The name of opcode op, or NULL for one newer than this table. */
static const char *probe_name (unsigned op) {
  return op < NOPS ? op_names[op] : NULL;
}

/* For trace and stats, which print the result with %s: never NULL. */
const char *ur_opname (unsigned op) {
  const char *name = probe_name(op);
  return name ? name : "unknown";
}

/* The inverse of ur_opname; "op<N>" (what probe() reports for an opcode
 * it has no name for) maps back to N as well. */
static int ur_opcode (const char *name) {
  unsigned n;
  char extra;
  if (name == NULL) return -1;
  for (unsigned i = 0; i < NOPS; i++)
    if (strcmp(op_names[i], name) == 0) return (int)i;
  if (sscanf(name, "op%u%c", &n, &extra) == 1 && n < 256) return (int)n;
  return -1;
}

/*
 * Push {opname = true, ...} for every op the kernel says it supports.
 * ring == NULL asks with a throwaway ring (io_uring_get_probe sets one
 * up and tears it down).  An op with no name in our table is reported as
 * "op<N>" so a newer kernel's ops are not silently dropped.
 */
int ur_push_probe (lua_State *L, struct io_uring *ring) {
  struct io_uring_probe *p = ring ? io_uring_get_probe_ring(ring)
                                  : io_uring_get_probe();
  if (p == NULL)   /* liburing does not say why: ENOMEM, or no io_uring */
    return ur_pushfail(L, ring ? -ENOMEM : -ENOSYS, "probe");
  lua_createtable(L, 0, p->ops_len);
  for (unsigned i = 0; i < p->ops_len; i++) {
    const char *name;
    if (!(p->ops[i].flags & IO_URING_OP_SUPPORTED)) continue;
    name = probe_name(p->ops[i].op);
    if (name) lua_pushstring(L, name);
    else lua_pushfstring(L, "op%d", (int)p->ops[i].op);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
  }
  io_uring_free_probe(p);
  return 1;
}

/* uring.probe() -> {opname = true, ...} | fail */
static int l_probe (lua_State *L) {
  return ur_push_probe(L, NULL);
}

/* uring.opname(n) -> name | nil; uring.opcode(name) -> n | nil: the
 * table above, for trace output and for learners. */
static int l_opname (lua_State *L) {
  lua_Integer op = luaL_checkinteger(L, 1);
  const char *name = (op >= 0 && op < 256) ? probe_name((unsigned)op) : NULL;
  if (name) lua_pushstring(L, name);
  else luaL_pushfail(L);
  return 1;
}

static int l_opcode (lua_State *L) {
  int op = ur_opcode(ur_checkcstr(L, 1, "name"));
  if (op >= 0) lua_pushinteger(L, op);
  else luaL_pushfail(L);
  return 1;
}

void ur_register_probe (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"probe", l_probe}, {"opname", l_opname}, {"opcode", l_opcode},
    {NULL, NULL}
  };
  luaL_setfuncs(L, funcs, 0);
}
