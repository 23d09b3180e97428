/*
 * task.c: tasks, the coroutines the loop resumes.
 *
 * A task is a userdata ("uring.task") whose first uservalue is its
 * coroutine and whose second, once it ends, is a table of its results or
 * its error.  The coroutine's extra space (LUA_EXTRASPACE) points back at
 * the task, which is how an op finds the task it runs in; threads made by
 * coroutine.create copy the main thread's NULL, so an op inside a plain
 * coroutine is refused instead of yielding to the wrong resumer.
 *
 * A task waits on exactly one thing: a request (wait_ud) or a wait queue
 * (join, a busy file).  Cancel and timeout expiry both interrupt that
 * wait: the request is cancelled in the kernel and the task resumes when
 * its CQE arrives (never earlier: the kernel may still hold its memory),
 * then raises "canceled" or the timeout sentinel.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "uring.h"

static char timeout_key;   /* registry: the timeout sentinel */

/* At most this many idle coroutines are kept (each holds its grown stack
 * and call-info list, ~1-2 KiB): a server answering one request per
 * connection then makes no coroutine per connection. */
#define COPOOL_MAX 64

/* The task whose coroutine is L, if the loop is resuming it right now.
 * A plain coroutine inside a task, or a task's coroutine resumed by
 * anyone but the loop, is not a task. */
ur_task *ur_task_of (lua_State *L) {
  return ur_task_in(ur_loop_of(L), L);
}

static const char *ur_status_name (int status) {
  static const char *const names[] = {
    "ready", "running", "waiting", "done", "failed", "canceled"
  };
  return names[status];
}

static ur_task *checktask (lua_State *L, int idx) {
  return (ur_task *)luaL_checkudata(L, idx, UR_TASK_MT);
}

/* Raise what interrupted the task's wait: a cancel, or an expired
 * uring.timeout scope it is still inside. */
void ur_check_interrupt (lua_State *L, ur_task *t) {
  if (t->canceled) {
    lua_pushliteral(L, "canceled");
    lua_error(L);
  }
  if (ur_interrupted(t)) {           /* not canceled: a scope expired */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &timeout_key);
    lua_error(L);
  }
}

/* Why a function that waits cannot, here (t: the task of L, if any):
 * raised with `where` before it (luaL_where of the level to blame). */
static void cannot_wait (lua_State *L, ur_task *t, const char *fname,
                         int level) {
  const char *why = NULL;
  if (t == NULL && ur_loop_of(L)->unwinding)
    why = "cannot wait here: the <close> variables of a task that failed "
          "or was cancelled run after it ended";
  else if (t == NULL)
    why = "not inside a task (use uring.run)";
  else
    why = "cannot wait here: called across a C-call boundary (a "
          "metamethod, an iterator or a C function)";
  luaL_where(L, level);
  lua_pushfstring(L, "%s: %s", fname, why);
  lua_concat(L, 2);
  lua_error(L);
}

/* The task an op runs in; raises when there is none or it cannot yield
 * (ur_task_current_in, uring.h, runs the usual case inline). */
ur_task *ur_task_current_slow (lua_State *L, ur_loop *loop,
                               const char *fname) {
  ur_task *t = ur_task_in(loop, L);
  if (t == NULL || !lua_isyieldable(L)) cannot_wait(L, t, fname, 1);
  if (ur_interrupted(t)) ur_check_interrupt(L, t);
  return t;
}

ur_task *ur_task_current (lua_State *L, const char *fname) {
  return ur_task_current_slow(L, ur_loop_of(L), fname);
}

/* _intask(name [, level]): the check ur_task_current makes, for the
 * functions written in Lua that wait (uring.check.intask), raised at the
 * line `level` calls up from the function that called this (1: its
 * caller) -- one C call on their hot paths (a Lua check costs a
 * response of uring.http ~900 instructions). */
static int l_intask (lua_State *L) {
  ur_task *t = ur_task_of(L);
  if (t != NULL && lua_isyieldable(L)) return 0;
  cannot_wait(L, t, luaL_checkstring(L, 1), (int)luaL_optinteger(L, 2, 1) + 1);
  return 0;
}

/* ur_resumed's (uring.h) every case, raising where it must */
ur_req *ur_resumed_slow (lua_State *L, ur_task *t) {
  ur_req *r;
  if (t == NULL)
    luaL_error(L, "a task can only be resumed by the uring loop");
  r = ur_req_at(t->loop, t->wait_ud);
  t->wait_ud = 0;
  if (r == NULL || r->state != UR_REQ_DONE)
    luaL_error(L, "uring: internal error: resumed without a completion");
  return r;
}

/* The default CQE handler: the request is done; resume its task. */
void ur_req_wake (ur_loop *loop, ur_req *r) {
  ur_task *t = r->task;
  if (t == NULL || t->wait_ud != ur_req_ud(loop, r)) {
    if (r->state == UR_REQ_DONE) ur_req_free(loop, r);
    return;
  }
  t->status = UR_READY;
  ur_enqueue(loop, t);
}

/* Wait queues: tasks blocked on another task or object. */
int ur_park (lua_State *L, ur_task *t, ur_waitq *q, const char *what,
             lua_KContext ctx, lua_KFunction k) {
  t->next = NULL;
  if (q->tail) q->tail->next = t;
  else q->head = t;
  q->tail = t;
  t->waitq = q;
  t->status = UR_WAITING;
  t->what = what;
  return lua_yieldk(L, 0, ctx, k);
}

static void waitq_remove (ur_waitq *q, ur_task *t) {
  ur_task **p = &q->head, *prev = NULL;
  while (*p && *p != t) { prev = *p; p = &(*p)->next; }
  if (*p == NULL) return;
  *p = t->next;
  if (q->tail == t) q->tail = prev;
  t->next = NULL;
}

static void wake (ur_loop *loop, ur_task *t) {
  t->waitq = NULL;
  t->status = UR_READY;
  ur_enqueue(loop, t);
}

void ur_waitq_wake_one (ur_loop *loop, ur_waitq *q) {
  ur_task *t = q->head;
  if (t == NULL) return;
  q->head = t->next;
  if (q->head == NULL) q->tail = NULL;
  wake(loop, t);
}

void ur_waitq_wake_all (ur_loop *loop, ur_waitq *q) {
  while (q->head) ur_waitq_wake_one(loop, q);
}

/* Interrupt whatever t waits on; it resumes and raises via the
 * continuation's ur_check_interrupt. */
static void task_interrupt (ur_loop *loop, ur_task *t) {
  if (t->status != UR_WAITING) return;   /* READY: raises when resumed */
  if (t->wait_ud) {
    ur_req *r = ur_req_at(loop, t->wait_ud);
    if (r) ur_req_cancel(loop, r);
  }
  else if (t->waitq) {
    waitq_remove(t->waitq, t);
    wake(loop, t);
  }
}

/* Take t out of the wait queue it is parked in and make it runnable (a
 * timer for a wait that has no request of its own). */
void ur_task_unpark (ur_loop *loop, ur_task *t) {
  if (t->status == UR_WAITING && t->waitq) {
    waitq_remove(t->waitq, t);
    wake(loop, t);
  }
}

void ur_task_cancel (ur_loop *loop, ur_task *t) {
  if (t->status >= UR_DONE) return;
  t->canceled = 1;
  task_interrupt(loop, t);
}

/* Push the task userdata anchored under t->ref. */
static void push_task (lua_State *L, ur_task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->loop->tasks_ref);
  lua_rawgeti(L, -1, t->ref);
  lua_remove(L, -2);
}

/* A coroutine for a new task, pushed: one a finished task left in the
 * pool, else a new one.  A new coroutine starts with a small stack and
 * grows it (and its call-info list) one step at a time as the task calls
 * deeper, then the collector frees it all: ~5,000 instructions of a
 * churned HTTP connection (bench/README.md, issue 17). */
static lua_State *copool_take (lua_State *L, ur_loop *loop) {
  lua_State *co;
  lua_Integer n = loop->copool_n;
  if (n == 0) return lua_newthread(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->copool_ref);
  lua_rawgeti(L, -1, n);
  co = lua_tothread(L, -1);
  lua_pushnil(L);
  lua_rawseti(L, -3, n);
  lua_remove(L, -2);
  loop->copool_n--;
  return co;
}

/* The coroutine of a task that just returned (at index idx), back to the
 * pool.  Only one that returned normally: nothing of it is left running
 * (its frames are gone, its <close> variables closed, its upvalues
 * closed), so it is what lua_newthread makes but for its grown stack.
 * Not one with a hook (debug.sethook, the run's SIGINT hook): a hook is
 * the coroutine's own and would follow it into the next task. */
static void copool_give (lua_State *L, ur_loop *loop, lua_State *co,
                         int idx) {
  lua_Debug ar;
  idx = lua_absindex(L, idx);
  if (loop->copool_n >= COPOOL_MAX || lua_status(co) != LUA_OK
      || lua_getstack(co, 0, &ar)
      || lua_gethook(co) != NULL || lua_gethookmask(co) != 0)
    return;
  if (loop->copool_ref == 0) {
    lua_createtable(L, COPOOL_MAX, 0);
    loop->copool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_settop(co, 0);                    /* its results: recorded already */
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->copool_ref);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, (lua_Integer)++loop->copool_n);
  lua_pop(L, 1);
}

/* The task at the top, anchored in the loop's tasks table until it
 * ends: its slot.  luaL_ref keeps its free list at index 0, in the
 * table's hash part (two lookups more per spawn and per end); here the
 * list's head is in the loop and each free slot holds the next. */
static int tasks_anchor (lua_State *L, ur_loop *loop) {
  int ref = loop->task_free;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->tasks_ref);
  if (ref != 0) {
    lua_rawgeti(L, -1, ref);
    loop->task_free = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  else ref = ++loop->task_top;
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, ref);
  lua_pop(L, 1);
  return ref;
}

static void tasks_release (lua_State *L, ur_loop *loop, int ref) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->tasks_ref);
  lua_pushinteger(L, loop->task_free);
  lua_rawseti(L, -2, ref);
  lua_pop(L, 1);
  loop->task_free = ref;
}

/* fn, args (nargs of them) at the top -> a new task, queued to run. */
int ur_task_new (lua_State *L, ur_loop *loop, int nargs) {
  ur_task *t;
  lua_State *co;
  luaL_checkstack(L, 4, "too many arguments");
  t = (ur_task *)lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  t->ref = LUA_NOREF;
  /* the metatable by a registry ref: luaL_setmetatable looks its name up */
  if (loop->task_mt_ref == 0) {
    luaL_getmetatable(L, UR_TASK_MT);
    loop->task_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->task_mt_ref);
  lua_setmetatable(L, -2);
  co = copool_take(L, loop);
  lua_setiuservalue(L, -2, 1);          /* the task anchors its coroutine */
  lua_insert(L, -(nargs + 2));          /* task below fn and args */
  luaL_checkstack(co, nargs + 1, "too many arguments");
  lua_xmove(L, co, nargs + 1);          /* fn and args onto the coroutine */
  t->co = co;
  t->loop = loop;
  t->nargs = nargs;
  t->id = ++loop->next_task_id;
  t->status = UR_READY;
  {
    ur_task *parent = ur_task_of(L);  /* the inspector's spawns stay its own */
    if (parent && parent->untraced == UR_UNTRACED_INHERIT)
      t->untraced = UR_UNTRACED_INHERIT;
  }
  t->ref = tasks_anchor(L, loop);       /* alive until it ends */
  loop->live_tasks++;
  loop->stats.spawned++;
  ur_enqueue(loop, t);
  return 1;
}

/* How a task ends, for task_record (run under lua_pcall). */
typedef struct ending {
  ur_task *t;
  int status;           /* in: how it ended; out: as recorded */
  const char *why;      /* the error to end it with, or NULL: co's stack */
  int reset;            /* its coroutine was reset (<close> variables ran) */
} ending;

static int is_main (lua_State *L, ur_loop *loop, ur_task *t) {
  int yes;
  if (loop->main_ref == LUA_NOREF) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->main_ref);
  yes = lua_touserdata(L, -1) == (void *)t;
  lua_pop(L, 1);
  return yes;
}

/* task_record(ending, task): everything ending a task allocates: its
 * results, or its error with a traceback, as uservalue 2; the closing of
 * its <close> variables; the anchor of an error nobody joined.  Any of it
 * may run out of memory: ur_task_finished then ends the task anyway. */
static int task_record (lua_State *L) {
  ending *e = (ending *)lua_touserdata(L, 1);
  ur_task *t = e->t;
  ur_loop *loop = t->loop;
  lua_State *co = t->co;
  int status = e->status, st;
  if (e->why) {                         /* the loop's reason, not co's */
    lua_settop(co, 0);
    lua_pushstring(co, e->why);
  }
  if (status == UR_DONE) {
    int n = lua_gettop(co);
    lua_createtable(L, n, 1);
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(co, i);
      lua_xmove(co, L, 1);
      lua_rawseti(L, -2, i);
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
  }
  else {
    lua_createtable(L, 2, 0);
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);                /* the raw error */
    if (status == UR_FAILED && t->canceled && lua_type(L, -1) == LUA_TSTRING
        && strcmp(lua_tostring(L, -1), "canceled") == 0)
      status = UR_CANCELED;
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
      if (t->started)
        luaL_traceback(L, co, lua_tostring(L, -1), 0);
      else
        lua_pushvalue(L, -1);
    }
    else if (lua_isnil(L, -1))
      lua_pushliteral(L, "(error object is a nil value)");
    else
      lua_pushvalue(L, -1);             /* a table error is kept as is */
    lua_rawseti(L, -3, 1);              /* [1] error with traceback */
    lua_rawseti(L, -2, 2);              /* [2] raw error */
    /* close its <close> variables; an error one of them raises replaces
     * the task's error, as coroutine.close reports it (it was lost: a
     * cancelled task whose cleanup failed looked merely "canceled") */
    loop->unwinding = 1;                /* for ur_task_current's message */
    st = lua_resetthread(co);
    loop->unwinding = 0;
    e->reset = 1;
    if (st != LUA_OK && lua_gettop(co) > 0) {
      lua_rawgeti(L, -1, 2);            /* the raw error */
      lua_pushvalue(co, -1);
      lua_xmove(co, L, 1);              /* what the closing left */
      if (!lua_rawequal(L, -1, -2)) {
        status = UR_FAILED;
        lua_pushvalue(L, -1);
        lua_rawseti(L, -4, 2);
        lua_rawseti(L, -3, 1);
        lua_pop(L, 1);
      }
      else
        lua_pop(L, 2);
    }
  }
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 2, 2);
  e->status = status;
  /* the error of a task nobody joins is raised by uring.run, or handed
   * to the REPL's watch at once (failwatch.c) */
  if (status == UR_FAILED && loop->main_ref != LUA_NOREF && !is_main(L, loop, t)
      && !t->observed && t->joiners.head == NULL) {
    lua_rawgeti(L, -1, 1);              /* the error with its traceback */
    if (ur_failwatch_add(L, loop, 2, -1))
      t->observed = 1;
    else if (loop->error_ref == LUA_NOREF) {
      lua_pushvalue(L, -1);
      loop->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      loop->error_task = t->id;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* The task ended (its coroutine returned or raised, or the loop ends it
 * with the error why): keep its results or its error with a traceback,
 * close its pending to-be-closed variables, wake its joiners and drop the
 * loop's anchor.  Never raises: if keeping the record runs out of memory
 * the task ends all the same, failed with the memory error (a task left
 * half-ended was never run again and uring.run spun forever). */
void ur_task_finished (lua_State *L, ur_loop *loop, ur_task *t, int status,
                       const char *why) {
  ending e = { t, status, why, 0 };
  int top = lua_gettop(L);
  push_task(L, t);                      /* top+1: task */
  /* a task that returned nothing (a server's connection task) keeps no
   * record: its uservalue 2 stays nil, which join reads as no results;
   * nothing to allocate, so no lua_pcall (~400 instructions) */
  if (status != UR_DONE || lua_gettop(t->co) != 0) {
    lua_pushcfunction(L, task_record);
    lua_pushlightuserdata(L, &e);
    lua_pushvalue(L, top + 1);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
      /* the error ("not enough memory", which Lua keeps without
       * allocating) is the task's, as is, in place of the record table */
      if (!e.reset) {
        loop->unwinding = 1;
        lua_resetthread(t->co);         /* its <close> variables still run */
        loop->unwinding = 0;
      }
      lua_setiuservalue(L, top + 1, 2);
      e.status = UR_FAILED;
      if (loop->main_ref != LUA_NOREF && !is_main(L, loop, t) && !t->observed
          && t->joiners.head == NULL && loop->error_ref == LUA_NOREF) {
        loop->error_ref = LUA_REFNIL;   /* no memory to keep it: run says so */
        loop->error_task = t->id;
      }
    }
  }
  status = e.status;
  t->status = (uint8_t)status;
  t->what = NULL;
  /* its open timeout scopes' timers have nobody to fire at */
  for (int i = 0; i < t->scope_depth; i++) {
    ur_req *r = ur_req_at(loop, t->scope_ud[i]);
    if (r) {
      r->task = NULL;
      ur_req_cancel(loop, r);
    }
  }
  free(t->scope_ud);
  t->scope_ud = NULL;
  t->scope_depth = t->scope_cap = 0;
  if (t->joiners.head) t->observed = 1;
  ur_waitq_wake_all(loop, &t->joiners);
  ur_sync_task_ended(L, loop, t);
  if (status == UR_FAILED && is_main(L, loop, t)) loop->main_failed = 1;
  /* drop the coroutine now: a finished task keeps only its results (a
   * coroutine that returned goes back to the pool) */
  if (status == UR_DONE) {
    lua_getiuservalue(L, top + 1, 1);
    copool_give(L, loop, t->co, -1);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  lua_setiuservalue(L, top + 1, 1);
  t->co = NULL;
  tasks_release(L, loop, t->ref);
  t->ref = LUA_NOREF;
  loop->live_tasks--;
  lua_settop(L, top);
}

/* Task at the top: push what it returned (DONE only). */
int ur_task_results (lua_State *L, ur_task *t) {
  int n;
  if (lua_getiuservalue(L, -1, 2) != LUA_TTABLE) return 0;   /* none */
  lua_getfield(L, -1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  (void)t;
  luaL_checkstack(L, n, "too many results");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  return n;
}

/* The error of a task nobody joined is raised by uring.run, unless a
 * join sees it first. */
static void observe (ur_loop *loop, lua_State *L, ur_task *t) {
  t->observed = 1;
  if (loop->error_ref != LUA_NOREF && loop->error_task == t->id) {
    luaL_unref(L, LUA_REGISTRYINDEX, loop->error_ref);
    loop->error_ref = LUA_NOREF;
  }
}

/* task at idx has ended: true, results... | false, err */
static int join_results (lua_State *L, int idx) {
  ur_task *t = checktask(L, idx);
  int n, tbl;
  observe(t->loop, L, t);
  lua_getiuservalue(L, idx, 2);
  tbl = lua_gettop(L);
  if (t->status != UR_DONE) {
    lua_pushboolean(L, 0);
    if (lua_istable(L, tbl)) lua_rawgeti(L, tbl, 2);
    else lua_pushvalue(L, tbl);         /* the memory error, as is */
    return 2;
  }
  if (!lua_istable(L, tbl)) {           /* it returned nothing */
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_getfield(L, tbl, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n + 1, "too many results");
  lua_pushboolean(L, 1);
  for (int i = 1; i <= n; i++) lua_rawgeti(L, tbl, i);
  return n + 1;
}

static int join_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *self = ur_task_of(L);
  (void)status; (void)ctx;
  if (self == NULL)
    return luaL_error(L, "a task can only be resumed by the uring loop");
  ur_check_interrupt(L, self);
  if (checktask(L, 1)->status < UR_DONE)   /* woken early: wait again */
    return ur_park(L, self, &checktask(L, 1)->joiners, "join", 0, join_k);
  return join_results(L, 1);
}

/* task:join() -> true, results... | false, err */
static int l_task_join (lua_State *L) {
  ur_task *t = checktask(L, 1), *self;
  lua_settop(L, 1);
  if (t->status >= UR_DONE) return join_results(L, 1);
  self = ur_task_current(L, "join");
  if (self == t) return luaL_error(L, "join: a task cannot join itself");
  return ur_park(L, self, &t->joiners, "join", 0, join_k);
}

static int join_shielded_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *self = ur_task_of(L);
  (void)status; (void)ctx;
  if (self == NULL)
    return luaL_error(L, "a task can only be resumed by the uring loop");
  if (checktask(L, 1)->status < UR_DONE)   /* interrupted: wait on */
    return ur_park(L, self, &checktask(L, 1)->joiners, "group", 0,
                   join_shielded_k);
  return join_results(L, 1);
}

/* _join_shielded(task): task:join() that a cancel or an expired timeout
 * does not end (they interrupt a wait once; it waits on).  uring.group,
 * itself interrupted, waits so for its children to unwind. */
static int l_join_shielded (lua_State *L) {
  ur_task *t = checktask(L, 1), *self = ur_task_of(L);
  lua_settop(L, 1);
  if (t->status >= UR_DONE) return join_results(L, 1);
  if (self == NULL || !lua_isyieldable(L)) cannot_wait(L, self, "join", 1);
  if (self == t) return luaL_error(L, "join: a task cannot join itself");
  return ur_park(L, self, &t->joiners, "group", 0, join_shielded_k);
}

/* task:cancel() -> true if it was live.  Cancelling the running task
 * raises "canceled" at once. */
static int l_task_cancel (lua_State *L) {
  ur_task *t = checktask(L, 1);
  if (t->status >= UR_DONE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (ur_task_of(L) == t) {
    t->canceled = 1;
    lua_pushliteral(L, "canceled");
    return lua_error(L);
  }
  ur_task_cancel(t->loop, t);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_task_status (lua_State *L) {
  lua_pushstring(L, ur_status_name(checktask(L, 1)->status));
  return 1;
}

static int l_task_id (lua_State *L) {
  lua_pushinteger(L, checktask(L, 1)->id);
  return 1;
}

/* What it waits on ("read", "join", ...), or nil. */
static int l_task_waiting_on (lua_State *L) {
  ur_task *t = checktask(L, 1);
  if (t->status == UR_WAITING && t->what) lua_pushstring(L, t->what);
  else lua_pushnil(L);
  return 1;
}

static int l_task_tostring (lua_State *L) {
  ur_task *t = checktask(L, 1);
  if (t->status == UR_WAITING && t->what)
    lua_pushfstring(L, "uring.task %d (waiting: %s)", (int)t->id, t->what);
  else
    lua_pushfstring(L, "uring.task %d (%s)", (int)t->id,
                    ur_status_name(t->status));
  return 1;
}

/* uring.spawn(fn, ...) -> task; it runs on the next loop turn. */
static int l_spawn(lua_State *L) {
  ur_loop *loop;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  loop = ur_loop_of(L);
  if (!loop->ring_ok) ur_loop_ready(L);
  return ur_task_new(L, loop, lua_gettop(L) - 1);
}

/* uring.current() -> the running task, or nil outside one */
static int l_current (lua_State *L) {
  ur_task *t = ur_task_of(L);
  if (t == NULL || t->ref == LUA_NOREF) lua_pushnil(L);
  else push_task(L, t);
  return 1;
}

/* uring.tasks() -> array of live tasks (for :tasks in the REPL) */
static int l_tasks (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  int n = 0;
  lua_newtable(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->tasks_ref);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -1) == LUA_TUSERDATA) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, -5, ++n);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

/* --- operations that only wait: yield, sleep, nop --- */

static int yield_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  (void)status; (void)ctx;
  if (t == NULL)
    return luaL_error(L, "a task can only be resumed by the uring loop");
  ur_check_interrupt(L, t);
  return 0;
}

/* uring.yield(): let every other runnable task run, then continue. */
static int l_yield (lua_State *L) {
  ur_task *t = ur_task_current(L, "yield");
  t->status = UR_READY;
  ur_enqueue(t->loop, t);
  return lua_yieldk(L, 0, 0, yield_k);
}

static int sleep_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  ur_check_interrupt(L, t);
  return 0;
}

/* uring.sleep(seconds): IORING_OP_TIMEOUT; the task waits, nothing spins. */
static int l_sleep (lua_State *L) {
  double secs = ur_checkseconds(L, 1);
  ur_task *t = ur_task_current(L, "sleep");
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_TIMEOUT);
  struct io_uring_sqe *sqe = ur_get_sqe(t->loop);
  ur_set_ts(&r->u.ts, secs);     /* read by the kernel at submit: lives in r */
  io_uring_prep_timeout(sqe, &r->u.ts, 0, 0);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "sleep", 0, sleep_k);
}

static int nop_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  ur_check_interrupt(L, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* uring.nop(): one IORING_OP_NOP round trip, the per-op cost floor. */
static int l_nop (lua_State *L) {
  ur_task *t = ur_task_current(L, "nop");
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_NOP);
  struct io_uring_sqe *sqe = ur_get_sqe(t->loop);
  io_uring_prep_nop(sqe);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "nop", 0, nop_k);
}

/* --- timeout scopes (uring.timeout is in init.lua over these two) --- */

/* The scope's timer fired: mark the scope expired and interrupt the
 * task's current wait. */
static void scope_fire (ur_loop *loop, ur_req *r) {
  ur_task *t = r->task;
  int depth = r->aux, fired = (r->res == -ETIME);
  ur_req_free(loop, r);
  if (t == NULL || !fired || depth > t->scope_depth) return;
  if (t->expired_at == 0 || depth < t->expired_at) t->expired_at = depth;
  task_interrupt(loop, t);
}

/* _scope_open(seconds) -> depth: arm a timer for the current task;
 * nil, why for seconds no timer takes (uring.timeout raises it at its
 * caller's line, naming itself: raised here it would name this).
 * _scope_open(false): a scope with no timer, which only _scope_expire
 * ends (uring.group's body, when a child fails). */
static int l_scope_open (lua_State *L) {
  double secs = 0;
  int timed = !(lua_isboolean(L, 1) && !lua_toboolean(L, 1));
  const char *why = timed ? ur_seconds_problem(L, 1, &secs) : NULL;
  ur_task *t;
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (why) {
    luaL_pushfail(L);
    lua_pushstring(L, why);
    return 2;
  }
  t = ur_task_current(L, "timeout");
  if (t->scope_depth == t->scope_cap) {
    int cap = t->scope_cap ? t->scope_cap * 2 : 4;
    uint64_t *a;
    if (cap > 1024) return luaL_error(L, "timeout: too many nested scopes");
    a = (uint64_t *)realloc(t->scope_ud, (size_t)cap * sizeof *a);
    if (a == NULL) return luaL_error(L, "timeout: not enough memory");
    t->scope_ud = a;
    t->scope_cap = cap;
  }
  if (!timed) {
    t->scope_ud[t->scope_depth++] = 0;  /* names no request */
    lua_pushinteger(L, t->scope_depth);
    return 1;
  }
  r = ur_req_new(L, t->loop, IORING_OP_TIMEOUT);
  sqe = ur_get_sqe(t->loop);
  r->on_cqe = scope_fire;
  r->task = t;
  r->aux = ++t->scope_depth;
  ur_set_ts(&r->u.ts, secs);
  io_uring_prep_timeout(sqe, &r->u.ts, 0, 0);
  ur_req_submitted(t->loop, r, sqe);
  t->scope_ud[r->aux - 1] = ur_req_ud(t->loop, r);
  lua_pushinteger(L, r->aux);
  return 1;
}

/* _scope_close(depth) -> expired: disarm the timer; true if this scope
 * is the one that expired. */
static int l_scope_close (lua_State *L) {
  lua_Integer depth = luaL_checkinteger(L, 1);
  ur_task *t = ur_task_of(L);
  ur_req *r;
  int expired = 0;
  if (t == NULL || depth != t->scope_depth)
    return luaL_error(L, "timeout: scope closed out of order");
  r = ur_req_at(t->loop, t->scope_ud[depth - 1]);
  if (r && r->state == UR_REQ_INFLIGHT) {
    r->task = NULL;                     /* its CQE just frees it */
    ur_req_cancel(t->loop, r);
  }
  t->scope_depth--;
  if (t->expired_at == depth) {
    t->expired_at = 0;
    expired = 1;
  }
  lua_pushboolean(L, expired);
  return 1;
}

/* _scope_expire(task, depth): end the task's open scope `depth` now, as
 * its timer would: the wait it is in raises the timeout sentinel, which
 * that scope's _scope_close reports as its own. */
static int l_scope_expire (lua_State *L) {
  ur_task *t = checktask(L, 1);
  lua_Integer depth = luaL_checkinteger(L, 2);
  if (t->status >= UR_DONE || depth < 1 || depth > t->scope_depth) return 0;
  if (t->expired_at == 0 || depth < t->expired_at) t->expired_at = (int)depth;
  task_interrupt(t->loop, t);
  return 0;
}

static int timeout_tostring (lua_State *L) {
  lua_pushliteral(L, "timeout");
  return 1;
}

void ur_register_task (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"join", l_task_join}, {"cancel", l_task_cancel},
    {"status", l_task_status}, {"id", l_task_id},
    {"waiting_on", l_task_waiting_on},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"spawn", l_spawn}, {"current", l_current}, {"tasks", l_tasks},
    {"yield", l_yield}, {"sleep", l_sleep}, {"nop", l_nop},
    {"_scope_open", l_scope_open}, {"_scope_close", l_scope_close},
    {"_intask", l_intask}, {"_scope_expire", l_scope_expire},
    {"_join_shielded", l_join_shielded},
    {NULL, NULL}
  };
  luaL_newmetatable(L, UR_TASK_MT);
  lua_newtable(L);
  ur_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_task_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
  /* the error a task raises when its uring.timeout scope expires */
  lua_newtable(L);
  lua_newtable(L);
  lua_pushcfunction(L, timeout_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &timeout_key);
  lua_setfield(L, -2, "TIMEOUT");
  lua_pushinteger(L, ETIME);
  lua_setfield(L, -2, "ETIME");
}
