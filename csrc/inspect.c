/*
 * inspect.c: what uring.inspect (lua/uring/inspect.lua) shows of the
 * loop's own ring -- not a teaching ring -- the indices both sides write,
 * read the way ring:state() reads them (one vocabulary), and the ring's
 * fd, so the page can also show the kernel's view in /proc/self/fdinfo.
 */
#include "uring.h"

/* _loop_state() -> {sq_head =, sq_tail =, cq_head =, cq_tail =,
 * overflow =, ..., ring_fd =} | nil before the loop's ring exists */
static int l_loop_state (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  if (!loop->ring_ok) {
    lua_pushnil(L);
    return 1;
  }
  ur_push_ring_state(L, &loop->ring);
  lua_pushinteger(L, loop->ring.ring_fd);
  lua_setfield(L, -2, "ring_fd");
  return 1;
}

/* _inflight_ops([fds]) -> {opname = count, ...}, own: the loop's requests
 * in flight by op, leaving out the loop's own (the SIGINT poll, as stats()
 * does) and counting apart the inspector's -- those of its tasks, and
 * those naming its sockets (fds: a set {[fd] = true}), such as a multishot
 * accept no task waits on -- so the page shows the user's work, not itself */
static int l_inflight_ops (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  lua_Integer own = 0;
  int has_fds = lua_istable(L, 1);
  lua_newtable(L);
  for (uint32_t i = 0; i < loop->slab.nreqs; i++) {
    ur_req *r = ur_slab_req(&loop->slab, i);
    int ours = 0;
    if (r->state != UR_REQ_INFLIGHT || r->background) continue;
    if (has_fds && r->fd >= 0) {
      ours = lua_rawgeti(L, 1, r->fd) != LUA_TNIL;
      lua_pop(L, 1);
    }
    if (ours || (r->task && r->task->untraced == UR_UNTRACED_INHERIT)) {
      own++;
      continue;
    }
    const char *name = ur_opname(r->opcode);
    lua_getfield(L, -1, name);
    lua_pushinteger(L, lua_tointeger(L, -1) + 1);
    lua_setfield(L, -3, name);
    lua_pop(L, 1);
  }
  lua_pushinteger(L, own);
  return 2;
}

/* _tracing() -> whether uring.trace is on (the inspector turns it on for
 * its timeline only when the user has not, and off only if it did) */
static int l_tracing (lua_State *L) {
  lua_pushboolean(L, ur_loop_of(L)->trace_ref != LUA_NOREF);
  return 1;
}

void ur_register_inspect (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_loop_state", l_loop_state}, {"_inflight_ops", l_inflight_ops},
    {"_tracing", l_tracing},
    {NULL, NULL}
  };
  ur_setfuncs(L, funcs);
}
