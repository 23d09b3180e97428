/*
 * probe.c: opcode names and IORING_REGISTER_PROBE.
 *
 * The kernel numbers its operations in one enum (include/uapi/linux/
 * io_uring.h, enum io_uring_op) that only ever grows at the end.  liburing
 * 2.3's copy stops at SENDMSG_ZC (48), but the running kernel may be far
 * newer, so the table below is written out by number, as a 6.18 kernel
 * numbers them, instead of with liburing's enum constants.  Names are the
 * constant without the IORING_OP_ prefix, lower-cased: the keys of
 * probe()'s table and of trace events.  Beside each, the kernel that
 * brought it, for the message an op this kernel lacks fails with.
 *
 * The loop probes its ring once at setup (ur_probe_loop): an op this
 * kernel lacks is then either never asked for (IORING_OP_SOCKET: net.c
 * and udp.c call socket(2); WAITID: proc.c polls a pidfd; CLOSE: close(2);
 * POLL_ADD: uring.run leaves SIGINT alone) or fails with "what:
 * IORING_OP_X not supported by this kernel (V+)", EOPNOTSUPP (dispatch
 * turns the kernel's EINVAL into UR_ENOOP(op), ur_pushfail words it).
 * Without the ops the loop itself stands on (ASYNC_CANCEL, TIMEOUT,
 * LINK_TIMEOUT) the ring is refused, with the same words.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "uring.h"

static const struct { const char *name, *since; } ops[] = {
  {"nop", "5.1"},                       /*  0 */
  {"readv", "5.1"},                     /*  1 */
  {"writev", "5.1"},                    /*  2 */
  {"fsync", "5.1"},                     /*  3 */
  {"read_fixed", "5.1"},                /*  4 */
  {"write_fixed", "5.1"},               /*  5 */
  {"poll_add", "5.1"},                  /*  6 */
  {"poll_remove", "5.1"},               /*  7 */
  {"sync_file_range", "5.2"},           /*  8 */
  {"sendmsg", "5.3"},                   /*  9 */
  {"recvmsg", "5.3"},                   /* 10 */
  {"timeout", "5.4"},                   /* 11 */
  {"timeout_remove", "5.5"},            /* 12 */
  {"accept", "5.5"},                    /* 13 */
  {"async_cancel", "5.5"},              /* 14 */
  {"link_timeout", "5.5"},              /* 15 */
  {"connect", "5.5"},                   /* 16 */
  {"fallocate", "5.6"},                 /* 17 */
  {"openat", "5.6"},                    /* 18 */
  {"close", "5.6"},                     /* 19 */
  {"files_update", "5.6"},              /* 20 */
  {"statx", "5.6"},                     /* 21 */
  {"read", "5.6"},                      /* 22 */
  {"write", "5.6"},                     /* 23 */
  {"fadvise", "5.6"},                   /* 24 */
  {"madvise", "5.6"},                   /* 25 */
  {"send", "5.6"},                      /* 26 */
  {"recv", "5.6"},                      /* 27 */
  {"openat2", "5.6"},                   /* 28 */
  {"epoll_ctl", "5.6"},                 /* 29 */
  {"splice", "5.7"},                    /* 30 */
  {"provide_buffers", "5.7"},           /* 31 */
  {"remove_buffers", "5.7"},            /* 32 */
  {"tee", "5.8"},                       /* 33 */
  {"shutdown", "5.11"},                 /* 34 */
  {"renameat", "5.11"},                 /* 35 */
  {"unlinkat", "5.11"},                 /* 36 */
  {"mkdirat", "5.15"},                  /* 37 */
  {"symlinkat", "5.15"},                /* 38 */
  {"linkat", "5.15"},                   /* 39 */
  {"msg_ring", "5.18"},                 /* 40 */
  {"fsetxattr", "5.19"},                /* 41 */
  {"setxattr", "5.19"},                 /* 42 */
  {"fgetxattr", "5.19"},                /* 43 */
  {"getxattr", "5.19"},                 /* 44 */
  {"socket", "5.19"},                   /* 45 */
  {"uring_cmd", "5.19"},                /* 46 */
  {"send_zc", "6.0"},                   /* 47 */
  {"sendmsg_zc", "6.1"},                /* 48: last one liburing 2.3 knows */
  {"read_multishot", "6.7"},            /* 49 */
  {"waitid", "6.7"},                    /* 50 */
  {"futex_wait", "6.7"},                /* 51 */
  {"futex_wake", "6.7"},                /* 52 */
  {"futex_waitv", "6.7"},               /* 53 */
  {"fixed_fd_install", "6.8"},          /* 54 */
  {"ftruncate", "6.9"},                 /* 55 */
  {"bind", "6.11"},                     /* 56 */
  {"listen", "6.11"},                   /* 57 */
  {"recv_zc", "6.15"},                  /* 58 */
  {"epoll_wait", "6.15"},               /* 59 */
  {"readv_fixed", "6.15"},              /* 60 */
  {"writev_fixed", "6.15"},             /* 61 */
  {"pipe", "6.16"},                     /* 62 */
};

#define NOPS (sizeof ops / sizeof ops[0])

/* The name of opcode op, or NULL for one newer than this table. */
static const char *probe_name (unsigned op) {
  return op < NOPS ? ops[op].name : NULL;
}

/*
 * Probe the loop's new ring: mark in loop->op_missing every op of the
 * table above that this kernel lacks.  Returns 0, or UR_ENOOP(op) when
 * it lacks one the loop itself stands on (cancellation, timers, linked
 * timeouts: the ring is then refused, ur_setup_reason says why).  A
 * kernel that cannot be probed (before 5.6, or no memory for the probe)
 * leaves nothing marked: its ops fail with the kernel's own EINVAL.
 */
int ur_probe_loop (ur_loop *loop) {
  static const unsigned needed[] = {
    IORING_OP_ASYNC_CANCEL, IORING_OP_TIMEOUT, IORING_OP_LINK_TIMEOUT
  };
  struct io_uring_probe *p = io_uring_get_probe_ring(&loop->ring);
  memset(loop->op_missing, 0, sizeof loop->op_missing);
  loop->probed = p != NULL;
  if (p == NULL) return 0;
  for (unsigned op = 0; op < NOPS; op++)
    if (!io_uring_opcode_supported(p, (int)op))
      loop->op_missing[op >> 3] |= (uint8_t)(1u << (op & 7));
  io_uring_free_probe(p);
  for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++)
    if (ur_op_missing(loop, needed[i])) return UR_ENOOP(needed[i]);
  return 0;
}

/* "IORING_OP_SOCKET not supported by this kernel (5.19+)" into buf. */
const char *ur_noop_text (unsigned op, char *buf, size_t len) {
  char upper[32];
  const char *name = ur_opname(op);
  size_t i;
  for (i = 0; name[i] && i < sizeof upper - 1; i++)
    upper[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
  upper[i] = '\0';
  snprintf(buf, len, "IORING_OP_%s not supported by this kernel (%s+)", upper,
           op < NOPS ? ops[op].since : "?");
  return buf;
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
    if (strcmp(ops[i].name, name) == 0) return (int)i;
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
