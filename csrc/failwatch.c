/*
 * failwatch.c: hand the errors of tasks nobody joins to a watcher (the
 * REPL), as they happen.
 *
 * uring.run keeps the first such error and raises it when the run ends.
 * At the prompt the run ends only at Ctrl-D, so a server's handler that
 * failed an hour ago would surface then, as a crash.  While a watch is on
 * (core._failwatch(true)), a task that fails with no joiner is put on the
 * watch's list instead and the watcher, parked in core._failures(), wakes
 * to print it.  Private to lua/uring/repl.lua.
 */
#include "uring.h"

static const char watch_key = 'w';   /* registry: the watch, while on */

typedef struct watch {
  ur_waitq q;                        /* the watcher, parked */
} watch;

/* The watch at the top of the stack, or NULL (nothing pushed). */
static watch *getwatch (lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &watch_key) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    return NULL;
  }
  return (watch *)lua_touserdata(L, -1);
}

/* Called by task.c for a failed task nobody joins (the task at index
 * task_idx, its error with traceback at index tb_idx): 1 if a watch took
 * it ({task =, traceback =} on the list), 0 if uring.run should keep it. */
int ur_failwatch_add (lua_State *L, ur_loop *loop, int task_idx, int tb_idx) {
  watch *w;
  task_idx = lua_absindex(L, task_idx);
  tb_idx = lua_absindex(L, tb_idx);
  if ((w = getwatch(L)) == NULL) return 0;
  lua_getiuservalue(L, -1, 1);          /* the list */
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, task_idx);
  lua_setfield(L, -2, "task");
  lua_pushvalue(L, tb_idx);
  lua_setfield(L, -2, "traceback");
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 2);
  ur_waitq_wake_all(loop, &w->q);
  return 1;
}

/* _failwatch(on): start or stop handing unjoined errors to _failures */
static int l_failwatch (lua_State *L) {
  int on = lua_toboolean(L, 1);
  watch *w = getwatch(L);
  if (w) {
    /* the watcher returns what is left; the list stays readable */
    ur_waitq_wake_all(ur_loop_of(L), &w->q);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &watch_key);
  }
  if (on) {
    w = (watch *)lua_newuserdatauv(L, sizeof *w, 1);
    w->q.head = w->q.tail = NULL;
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &watch_key);
  }
  return 0;
}

/* The list taken so far (emptied), or nil when nothing failed yet. */
static int take (lua_State *L, watch *w) {
  lua_getiuservalue(L, -1, 1);
  if (lua_rawlen(L, -1) == 0) return 0;
  lua_newtable(L);
  lua_setiuservalue(L, -3, 1);
  (void)w;
  return 1;
}

static int failures_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_current(L, "failures");   /* raises if canceled */
  watch *w;
  (void)status; (void)ctx;
  lua_settop(L, 0);
  if ((w = getwatch(L)) == NULL) {      /* the watch was stopped */
    lua_newtable(L);
    return 1;
  }
  if (take(L, w)) return 1;
  lua_settop(L, 0);
  return ur_park(L, t, &w->q, "failures", 0, failures_k);
}

/* _failures() -> {{task =, traceback =}, ...}: waits until a task nobody joins fails */
static int l_failures (lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &watch_key) != LUA_TUSERDATA)
    return luaL_error(L, "failures: no watch (call _failwatch(true))");
  lua_pop(L, 1);
  return failures_k(L, LUA_OK, 0);
}

void ur_register_failwatch (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_failwatch", l_failwatch}, {"_failures", l_failures}, {NULL, NULL}
  };
  ur_setfuncs(L, funcs);
}
