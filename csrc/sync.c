/*
 * sync.c: tasks working together -- uring.queue, uring.semaphore,
 * uring.event and uring.select.
 *
 * One primitive under all four: a waiter.  A task that must wait puts
 * its waiter (a userdata each task keeps for the next wait) on its own
 * stack, marked to-be-closed so that however the task leaves -- results,
 * an error, a cancel, its coroutine closed -- the waiter is released;
 * gives it one node per object it waits on, links each node at the tail
 * of that object's list, and parks alone in the waiter's private
 * ur_waitq.  That private queue is what task.c's cancel
 * and uring.timeout already interrupt, so every wait here can be
 * cancelled or timed out with no code of its own: no polling, no timers.
 *
 * An object that can serve a waiter *grants* it: it takes what the waiter
 * is owed out of circulation at once (a queue item is promised, semaphore
 * permits are deducted, a queue slot is reserved), unhooks every node of
 * the waiter -- so a select is granted by one object only -- and makes
 * the task runnable.  Lists are served from the head: FIFO.  A granted
 * task that is interrupted before it runs gives back what it was owed,
 * to the next waiter: each wait has exactly one outcome, and no item or
 * permit is lost to a cancel.
 */
#include <math.h>
#include <string.h>

#include "uring.h"

#define UR_QUEUE_MT  "uring.queue"
#define UR_SEM_MT    "uring.semaphore"
#define UR_EVENT_MT  "uring.event"
#define UR_WAITER_MT "uring.waiter"
#define UR_GROUP_MT  "uring.group"

/* Every function here carries, after the loop (upvalue 1), the
 * metatables it checks and sets and the waiter cache: found with no
 * lookup (luaL_checkudata's getfield costs a strcmp and a registry
 * lookup; a queue hand-off does a dozen of these). */
enum {
  UV_QUEUE = 2, UV_SEM, UV_EVENT, UV_WAITER, UV_CACHE, UV_TASK,
  UV_N = UV_TASK
};
static char cache_key;      /* registry: the cache, for ur_sync_task_ended */

/* The userdata at idx if its metatable is upvalue uv, else NULL */
static void *testud (lua_State *L, int idx, int uv) {
  void *p = lua_touserdata(L, idx);
  int same;
  if (p == NULL || !lua_getmetatable(L, idx)) return NULL;
  same = lua_rawequal(L, -1, lua_upvalueindex(uv));
  lua_pop(L, 1);
  return same ? p : NULL;
}

static void *checkud (lua_State *L, int idx, int uv, const char *tname) {
  void *p = testud(L, idx, uv);
  if (p == NULL) luaL_typeerror(L, idx, tname);
  return p;
}

static void setmt (lua_State *L, int uv) {
  lua_pushvalue(L, lua_upvalueindex(uv));
  lua_setmetatable(L, -2);
}

/* what a node waits for */
enum { N_GET, N_PUT, N_ACQUIRE, N_EVENT, N_TASK };

typedef struct waiter waiter;

struct ur_wnode {
  ur_wnode *prev, *next;
  ur_wlist *list;       /* the object's list it is on; NULL: unhooked */
  waiter *w;
  int kind;             /* N_* */
  void *obj;            /* the queue, semaphore, event or task */
};

struct waiter {
  ur_task *t;
  ur_waitq park;        /* t alone; where cancel and timeout find it */
  int won;              /* 1-based node granted, 0: none (yet) */
  int n;                /* nodes in use */
  int cap;              /* nodes it has room for */
  lua_Integer want;     /* permits asked of a semaphore */
  ur_wnode node[];
};

typedef struct queue {
  lua_Integer cap;      /* most items it holds */
  lua_Integer size;     /* slots of its ring (uservalue 1), <= cap */
  lua_Integer head;     /* slot (0-based) of the first item */
  lua_Integer n;        /* items held */
  lua_Integer promised; /* of those, granted to getters not yet run */
  lua_Integer reserved; /* free slots granted to putters not yet run */
  int closed;
  ur_wlist getters, putters;
} queue;

typedef struct sem {
  lua_Integer count;    /* permits free */
  lua_Integer max;      /* permits it was made with */
  ur_wlist waiters;
} sem;

typedef struct event {
  int set;
  ur_wlist waiters;
} event;

/* --- the waiter --- */

static void wlist_push (ur_wlist *l, ur_wnode *nd) {
  nd->next = NULL;
  nd->prev = l->tail;
  if (l->tail) l->tail->next = nd;
  else l->head = nd;
  l->tail = nd;
  nd->list = l;
}

static void wnode_unhook (ur_wnode *nd) {
  ur_wlist *l = nd->list;
  if (l == NULL) return;
  if (nd->prev) nd->prev->next = nd->next;
  else l->head = nd->next;
  if (nd->next) nd->next->prev = nd->prev;
  else l->tail = nd->prev;
  nd->prev = nd->next = NULL;
  nd->list = NULL;
}

static void waiter_unhook (waiter *w) {
  for (int i = 0; i < w->n; i++) wnode_unhook(&w->node[i]);
}

/* Serve the waiter of nd: it won through nd; the task runs next turn. */
static void grant (ur_loop *loop, ur_wnode *nd) {
  waiter *w = nd->w;
  w->won = (int)(nd - w->node) + 1;
  waiter_unhook(w);
  ur_task_unpark(loop, w->t);
}

/* Wake the waiter of nd without serving it (a queue closed): it looks
 * again when it runs. */
static void nudge (ur_loop *loop, ur_wnode *nd) {
  waiter *w = nd->w;
  waiter_unhook(w);
  ur_task_unpark(loop, w->t);
}

static void queue_serve (ur_loop *loop, queue *q);
static void sem_serve (ur_loop *loop, sem *s);

/* The waiter of nd was granted through nd but will not take it (it was
 * interrupted first): what it was owed goes to the next waiter. */
static void give_back (ur_loop *loop, ur_wnode *nd) {
  switch (nd->kind) {
    case N_GET:
      ((queue *)nd->obj)->promised--;
      queue_serve(loop, (queue *)nd->obj);
      break;
    case N_PUT:
      ((queue *)nd->obj)->reserved--;
      queue_serve(loop, (queue *)nd->obj);
      break;
    case N_ACQUIRE:
      ((sem *)nd->obj)->count += nd->w->want;
      sem_serve(loop, (sem *)nd->obj);
      break;
    default:              /* an event or a task: nothing was taken */
      break;
  }
}

/* The waiter is done with: unhook it and give back a grant nobody took.
 * Returns the task it was for (NULL: it was released already). */
static ur_task *waiter_release (waiter *w) {
  ur_task *t = w->t;
  if (t == NULL) return NULL;
  waiter_unhook(w);
  w->t = NULL;
  if (w->won) {
    give_back(t->loop, &w->node[w->won - 1]);
    w->won = 0;
  }
  return t;
}

/* __close and __gc: release the waiter, drop its anchors, and wake a
 * task still parked here (its coroutine was closed from outside: the
 * loop then ends it).  The frame that made the waiter closes it however
 * it ends, but Lua may skip a __close when memory runs out as it calls
 * it: the task's end (ur_sync_task_ended) releases it then, and a waiter
 * anchors its task and objects (user values), so even its __gc finds
 * them. */
static int waiter_close (lua_State *L) {
  waiter *w = (waiter *)lua_touserdata(L, 1);
  ur_task *t = w ? waiter_release(w) : NULL;
  if (t == NULL) return 0;
  for (int i = 0; i < w->n; i++) {      /* let the objects go */
    lua_pushnil(L);
    lua_setiuservalue(L, 1, i + 2);
  }
  if (t->waitq == &w->park) ur_task_unpark(t->loop, t);
  return 0;
}

/* A waiter of n nodes for t, pushed and marked to-be-closed.  Each task
 * keeps the one it used last (registry cache, by task address; dropped
 * when the task ends): a hand-off through a queue then allocates nothing,
 * where a fresh userdata per wait cost more than the rest of it (GC). */
static waiter *waiter_new (lua_State *L, ur_task *t, int n) {
  waiter *w;
  luaL_checkstack(L, 4, "too many arguments");
  lua_pushvalue(L, lua_upvalueindex(UV_CACHE));
  lua_rawgetp(L, -1, t);
  w = (waiter *)lua_touserdata(L, -1);
  if (w == NULL || w->cap < n) {
    size_t size = sizeof *w + (size_t)(unsigned)n * sizeof(ur_wnode);
    lua_pop(L, 1);
    w = (waiter *)lua_newuserdatauv(L, size, n + 1);
    memset(w, 0, size);
    setmt(L, UV_WAITER);
    w->cap = n;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->loop->tasks_ref);
    lua_rawgeti(L, -1, t->ref);
    lua_setiuservalue(L, -3, 1);        /* it anchors its task */
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, -3, t);
    t->sync_cached = 1;
  }
  lua_remove(L, -2);
  w->t = t;
  w->won = 0;
  w->want = 0;
  w->n = n;
  for (int i = 0; i < n; i++) {
    memset(&w->node[i], 0, sizeof w->node[i]);
    w->node[i].w = w;
  }
  lua_toclose(L, -1);
  return w;
}

/* Node i of the waiter at widx waits on obj, the value at oidx, which
 * the waiter anchors while it waits. */
static void hook (lua_State *L, int widx, int oidx, int i, ur_wlist *l,
                  int kind, void *obj) {
  waiter *w = (waiter *)lua_touserdata(L, widx);
  ur_wnode *nd = &w->node[i];
  nd->kind = kind;
  nd->obj = obj;
  lua_pushvalue(L, oidx);
  lua_setiuservalue(L, widx, i + 2);
  wlist_push(l, nd);
}

/* In a continuation: the task, and which node won (0: none; cleared). */
static ur_task *resumed (lua_State *L, waiter *w, int *won) {
  ur_task *t = ur_task_of(L);
  if (t == NULL || w == NULL)
    luaL_error(L, "a task can only be resumed by the uring loop");
  *won = w->won;
  w->won = 0;
  waiter_unhook(w);
  return t;
}

/* --- uring.queue --- */

static queue *checkqueue (lua_State *L, int idx) {
  return (queue *)checkud(L, idx, UV_QUEUE, UR_QUEUE_MT);
}

static lua_Integer q_avail (const queue *q) { return q->n - q->promised; }
static lua_Integer q_free (const queue *q) {
  return q->cap - q->n - q->reserved;
}

/* Grant what the queue can give: items to getters, slots to putters. */
static void queue_serve (ur_loop *loop, queue *q) {
  while (q->getters.head && q_avail(q) > 0) {
    q->promised++;
    grant(loop, q->getters.head);
  }
  while (!q->closed && q->putters.head && q_free(q) > 0) {
    q->reserved++;
    grant(loop, q->putters.head);
  }
}

/* Append the value at vidx to the queue at qidx (room is known), then
 * serve the getters.  The ring doubles while it is full and below cap. */
static void queue_push (lua_State *L, int qidx, int vidx) {
  queue *q = (queue *)lua_touserdata(L, qidx);
  lua_getiuservalue(L, qidx, 1);
  if (q->n == q->size) {
    lua_Integer size = q->size * 2 < q->cap ? q->size * 2 : q->cap;
    lua_createtable(L, (int)size, 0);
    for (lua_Integer i = 0; i < q->n; i++) {
      lua_rawgeti(L, -2, (q->head + i) % q->size + 1);
      lua_rawseti(L, -2, i + 1);
    }
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, qidx, 1);
    lua_remove(L, -2);
    q->head = 0;
    q->size = size;
  }
  lua_pushvalue(L, vidx);
  lua_rawseti(L, -2, (q->head + q->n) % q->size + 1);
  lua_pop(L, 1);
  q->n++;
  queue_serve(ur_loop_of(L), q);
}

/* Push the first item of the queue at qidx and take it out, then serve
 * the putters. */
static int queue_take (lua_State *L, int qidx) {
  queue *q = (queue *)lua_touserdata(L, qidx);
  lua_getiuservalue(L, qidx, 1);
  lua_rawgeti(L, -1, q->head + 1);
  lua_pushnil(L);
  lua_rawseti(L, -3, q->head + 1);      /* the queue keeps no reference */
  lua_remove(L, -2);
  q->head = (q->head + 1) % q->size;
  q->n--;
  queue_serve(ur_loop_of(L), q);
  return 1;
}

/* uring.queue([capacity]) -> q; capacity: how many items it holds before
 * put waits (default: no limit). */
static int l_queue (lua_State *L) {
  lua_Integer cap = LUA_MAXINTEGER;
  queue *q;
  if (!lua_isnoneornil(L, 1)) {
    if (lua_type(L, 1) == LUA_TNUMBER && !lua_isinteger(L, 1)
        && lua_tonumber(L, 1) == HUGE_VAL)
      cap = LUA_MAXINTEGER;              /* math.huge: no limit */
    else {
      cap = luaL_checkinteger(L, 1);
      luaL_argcheck(L, cap >= 1, 1, "capacity must be at least 1");
    }
  }
  q = (queue *)lua_newuserdatauv(L, sizeof *q, 1);
  memset(q, 0, sizeof *q);
  q->cap = cap;
  q->size = cap < 8 ? cap : 8;
  setmt(L, UV_QUEUE);
  lua_createtable(L, (int)q->size, 0);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int get_k (lua_State *L, int status, lua_KContext ctx);

/* Park in q:get, with the waiter at index 2. */
static int get_park (lua_State *L, ur_task *t) {
  queue *q = (queue *)lua_touserdata(L, 1);
  hook(L, 2, 1, 0, &q->getters, N_GET, q);
  return ur_park(L, t, &((waiter *)lua_touserdata(L, 2))->park, "queue get",
                 0, get_k);
}

static int get_k (lua_State *L, int status, lua_KContext ctx) {
  queue *q = (queue *)lua_touserdata(L, 1);
  int won;
  ur_task *t = resumed(L, (waiter *)lua_touserdata(L, 2), &won);
  (void)status; (void)ctx;
  if (won) {
    waiter *w = (waiter *)lua_touserdata(L, 2);
    if (ur_interrupted(t)) {            /* the item goes to the next getter */
      give_back(t->loop, &w->node[won - 1]);
      ur_check_interrupt(L, t);
    }
    q->promised--;
    return queue_take(L, 1);
  }
  ur_check_interrupt(L, t);
  if (q_avail(q) > 0) return queue_take(L, 1);
  if (q->closed) return ur_pushclosed(L);
  return get_park(L, t);
}

/* q:get() -> item, waiting while the queue is empty; nil, "closed",
 * EBADF once it is closed and drained. */
static int l_queue_get (lua_State *L) {
  queue *q = checkqueue(L, 1);
  ur_task *t;
  lua_settop(L, 1);
  if (q_avail(q) > 0) return queue_take(L, 1);
  if (q->closed) return ur_pushclosed(L);
  t = ur_task_current(L, "get");
  waiter_new(L, t, 1);
  return get_park(L, t);
}

/* q:try_get() -> item | nil: never waits. */
static int l_queue_try_get (lua_State *L) {
  queue *q = checkqueue(L, 1);
  lua_settop(L, 1);
  if (q_avail(q) > 0) return queue_take(L, 1);
  lua_pushnil(L);
  return 1;
}

static int put_k (lua_State *L, int status, lua_KContext ctx);

/* Park in q:put, with the item at 2 and the waiter at 3. */
static int put_park (lua_State *L, ur_task *t) {
  queue *q = (queue *)lua_touserdata(L, 1);
  hook(L, 3, 1, 0, &q->putters, N_PUT, q);
  return ur_park(L, t, &((waiter *)lua_touserdata(L, 3))->park, "queue put",
                 0, put_k);
}

static int put_done (lua_State *L) {
  queue_push(L, 1, 2);
  lua_pushboolean(L, 1);
  return 1;
}

static int put_k (lua_State *L, int status, lua_KContext ctx) {
  queue *q = (queue *)lua_touserdata(L, 1);
  int won;
  ur_task *t = resumed(L, (waiter *)lua_touserdata(L, 3), &won);
  (void)status; (void)ctx;
  if (won) {
    waiter *w = (waiter *)lua_touserdata(L, 3);
    if (q->closed || ur_interrupted(t)) {   /* the slot to the next putter */
      give_back(t->loop, &w->node[won - 1]);
      if (q->closed) return ur_pushclosed(L);
      ur_check_interrupt(L, t);
    }
    q->reserved--;
    return put_done(L);
  }
  ur_check_interrupt(L, t);
  if (q->closed) return ur_pushclosed(L);
  if (q_free(q) > 0) return put_done(L);
  return put_park(L, t);
}

/* q:put(v) -> true, waiting while the queue is full; nil, "closed",
 * EBADF on a closed queue (the item is not in it). */
static int l_queue_put (lua_State *L) {
  queue *q = checkqueue(L, 1);
  ur_task *t;
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "a value expected (nil cannot "
                "be queued)");
  lua_settop(L, 2);
  if (q->closed) return ur_pushclosed(L);
  if (q_free(q) > 0 && q->putters.head == NULL) return put_done(L);
  t = ur_task_current(L, "put");
  waiter_new(L, t, 1);
  return put_park(L, t);
}

/* q:close(): no more puts; waiting putters get nil, "closed"; getters
 * take what is left, then nil, "closed".  Closing twice is harmless. */
static int l_queue_close (lua_State *L) {
  queue *q = checkqueue(L, 1);
  ur_loop *loop = ur_loop_of(L);
  q->closed = 1;
  while (q->putters.head) nudge(loop, q->putters.head);
  while (q->getters.head) nudge(loop, q->getters.head);
  return 0;
}

/* #q: the items waiting to be taken */
static int l_queue_len (lua_State *L) {
  lua_pushinteger(L, q_avail(checkqueue(L, 1)));
  return 1;
}

static int l_queue_closed (lua_State *L) {
  lua_pushboolean(L, checkqueue(L, 1)->closed);
  return 1;
}

static int l_queue_tostring (lua_State *L) {
  queue *q = checkqueue(L, 1);
  if (q->cap == LUA_MAXINTEGER)
    lua_pushfstring(L, "uring.queue (%I items%s)", q_avail(q),
                    q->closed ? ", closed" : "");
  else
    lua_pushfstring(L, "uring.queue (%I of %I items%s)", q_avail(q), q->cap,
                    q->closed ? ", closed" : "");
  return 1;
}

/* --- uring.semaphore --- */

static sem *checksem (lua_State *L, int idx) {
  return (sem *)checkud(L, idx, UV_SEM, UR_SEM_MT);
}

/* Grant permits in FIFO order: a waiter asking for many holds back the
 * ones behind it (none starves). */
static void sem_serve (ur_loop *loop, sem *s) {
  while (s->waiters.head && s->waiters.head->w->want <= s->count) {
    s->count -= s->waiters.head->w->want;
    grant(loop, s->waiters.head);
  }
}

static lua_Integer checkpermits (lua_State *L, sem *s) {
  lua_Integer k = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, k >= 1 && k <= s->max, 2,
                lua_pushfstring(L, "permits must be in 1..%I", s->max));
  return k;
}

/* uring.semaphore(n) -> s, holding n permits */
static int l_semaphore (lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  sem *s;
  luaL_argcheck(L, n >= 1, 1, "permits must be at least 1");
  s = (sem *)lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->count = s->max = n;
  setmt(L, UV_SEM);
  return 1;
}

static int acquire_k (lua_State *L, int status, lua_KContext ctx) {
  sem *s = (sem *)lua_touserdata(L, 1);
  waiter *w = (waiter *)lua_touserdata(L, 3);
  int won;
  ur_task *t = resumed(L, w, &won);
  (void)status; (void)ctx;
  if (won && ur_interrupted(t))          /* the permits to the next one */
    give_back(t->loop, &w->node[won - 1]);
  ur_check_interrupt(L, t);
  if (!won) {                           /* never happens: only a grant or an
                                           interrupt wakes it; wait again */
    hook(L, 3, 1, 0, &s->waiters, N_ACQUIRE, s);
    return ur_park(L, t, &w->park, "acquire", 0, acquire_k);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* s:acquire([k]) -> true, waiting until k permits (default 1) are free
 * and every earlier waiter has been served. */
static int l_sem_acquire (lua_State *L) {
  sem *s = checksem(L, 1);
  lua_Integer k = checkpermits(L, s);
  ur_task *t;
  waiter *w;
  lua_settop(L, 2);
  if (s->waiters.head == NULL && s->count >= k) {
    s->count -= k;
    lua_pushboolean(L, 1);
    return 1;
  }
  t = ur_task_current(L, "acquire");
  w = waiter_new(L, t, 1);
  w->want = k;
  hook(L, 3, 1, 0, &s->waiters, N_ACQUIRE, s);
  return ur_park(L, t, &w->park, "acquire", 0, acquire_k);
}

/* s:release([k]): give back k permits (default 1); more than were taken
 * raises. */
static int l_sem_release (lua_State *L) {
  sem *s = checksem(L, 1);
  lua_Integer k = checkpermits(L, s);
  if (k > s->max - s->count)
    return luaL_error(L, "release: %I permit(s) released but only %I taken "
                      "(a semaphore of %I)", k, s->max - s->count, s->max);
  s->count += k;
  sem_serve(ur_loop_of(L), s);
  return 0;
}

/* s:available() -> permits free now */
static int l_sem_available (lua_State *L) {
  lua_pushinteger(L, checksem(L, 1)->count);
  return 1;
}

static int l_sem_tostring (lua_State *L) {
  sem *s = checksem(L, 1);
  lua_pushfstring(L, "uring.semaphore (%I of %I free)", s->count, s->max);
  return 1;
}

/* --- uring.event --- */

static event *checkevent (lua_State *L, int idx) {
  return (event *)checkud(L, idx, UV_EVENT, UR_EVENT_MT);
}

static int l_event (lua_State *L) {
  event *e = (event *)lua_newuserdatauv(L, sizeof(event), 0);
  memset(e, 0, sizeof *e);
  setmt(L, UV_EVENT);
  return 1;
}

/* e:set(): wake every waiter; later waits return at once until clear */
static int l_event_set (lua_State *L) {
  event *e = checkevent(L, 1);
  ur_loop *loop = ur_loop_of(L);
  e->set = 1;
  while (e->waiters.head) grant(loop, e->waiters.head);
  return 0;
}

static int l_event_tostring (lua_State *L) {
  lua_pushstring(L, checkevent(L, 1)->set ? "uring.event (set)"
                                          : "uring.event (clear)");
  return 1;
}

static int l_event_clear (lua_State *L) {
  checkevent(L, 1)->set = 0;
  return 0;
}

static int l_event_is_set (lua_State *L) {
  lua_pushboolean(L, checkevent(L, 1)->set);
  return 1;
}

static int event_wait_k (lua_State *L, int status, lua_KContext ctx) {
  event *e = (event *)lua_touserdata(L, 1);
  waiter *w = (waiter *)lua_touserdata(L, 2);
  int won;
  ur_task *t = resumed(L, w, &won);
  (void)status; (void)ctx;
  ur_check_interrupt(L, t);
  if (won || e->set) {
    lua_pushboolean(L, 1);
    return 1;
  }
  hook(L, 2, 1, 0, &e->waiters, N_EVENT, e);
  return ur_park(L, t, &w->park, "event", ctx, event_wait_k);
}

/* e:wait() -> true once the event is set */
static int l_event_wait (lua_State *L) {
  event *e = checkevent(L, 1);
  ur_task *t;
  lua_settop(L, 1);
  if (e->set) {
    lua_pushboolean(L, 1);
    return 1;
  }
  t = ur_task_current(L, "wait");
  waiter_new(L, t, 1);
  hook(L, 2, 1, 0, &e->waiters, N_EVENT, e);
  return ur_park(L, t, &((waiter *)lua_touserdata(L, 2))->park, "event", 0,
                 event_wait_k);
}

/* --- uring.select --- */

/* A task's end grants every select waiting for it and drops its cached
 * waiter, releasing it first if its __close was skipped (task.c calls
 * this after waking its joiners; never raises). */
void ur_sync_task_ended (lua_State *L, ur_loop *loop, ur_task *t) {
  while (t->watchers.head) grant(loop, t->watchers.head);
  if (t->sync_cached) {
    waiter *w;
    t->sync_cached = 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key);
    lua_rawgetp(L, -1, t);
    w = (waiter *)lua_touserdata(L, -1);
    if (w) waiter_release(w);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawsetp(L, -2, t);              /* removing a key never allocates */
    lua_pop(L, 1);
  }
}

/* The kind of argument i, or raise. */
static int select_kind (lua_State *L, int i, void **obj) {
  if ((*obj = testud(L, i, UV_TASK))) return N_TASK;
  if ((*obj = testud(L, i, UV_QUEUE))) return N_GET;
  if ((*obj = testud(L, i, UV_EVENT))) return N_EVENT;
  return luaL_typeerror(L, i, "task, queue or event");
}

/* Push i and what argument i gives: a task its join results, a queue
 * the item taken (or nil, "closed", EBADF), an event true. */
static int select_result (lua_State *L, int i, int kind) {
  int base = lua_gettop(L);
  lua_pushinteger(L, i);
  if (kind == N_TASK) {
    lua_getfield(L, i, "join");         /* it has ended: join returns now */
    lua_pushvalue(L, i);
    lua_call(L, 1, LUA_MULTRET);
  }
  else if (kind == N_GET) {
    queue *q = (queue *)lua_touserdata(L, i);
    if (q_avail(q) > 0) queue_take(L, i);
    else ur_pushclosed(L);
  }
  else
    lua_pushboolean(L, 1);
  return lua_gettop(L) - base;
}

/* The first argument (1..n) that is ready, or 0. */
static int select_ready (lua_State *L, int n, int *kind) {
  for (int i = 1; i <= n; i++) {
    void *obj;
    int k = select_kind(L, i, &obj);
    if ((k == N_TASK && ((ur_task *)obj)->status >= UR_DONE)
        || (k == N_GET && (q_avail((queue *)obj) > 0 || ((queue *)obj)->closed))
        || (k == N_EVENT && ((event *)obj)->set)) {
      *kind = k;
      return i;
    }
  }
  return 0;
}

static int select_k (lua_State *L, int status, lua_KContext ctx);

/* Hook node i-1 of the waiter at n+1 on argument i, for every argument. */
static int select_park (lua_State *L, ur_task *t, int n) {
  waiter *w = (waiter *)lua_touserdata(L, n + 1);
  for (int i = 1; i <= n; i++) {
    void *obj;
    int k = select_kind(L, i, &obj);
    ur_wlist *l = k == N_TASK ? &((ur_task *)obj)->watchers
                : k == N_GET ? &((queue *)obj)->getters
                : &((event *)obj)->waiters;
    hook(L, n + 1, i, i - 1, l, k, obj);
  }
  return ur_park(L, t, &w->park, "select", (lua_KContext)n, select_k);
}

static int select_k (lua_State *L, int status, lua_KContext ctx) {
  int n = (int)ctx, won, kind;
  waiter *w = (waiter *)lua_touserdata(L, n + 1);
  ur_task *t = resumed(L, w, &won);
  (void)status;
  if (won) {
    ur_wnode *nd = &w->node[won - 1];
    if (ur_interrupted(t)) {            /* the winner loses nothing */
      give_back(t->loop, nd);
      ur_check_interrupt(L, t);
    }
    if (nd->kind == N_GET) ((queue *)nd->obj)->promised--;
    return select_result(L, won, nd->kind);
  }
  ur_check_interrupt(L, t);
  if ((won = select_ready(L, n, &kind)) > 0)
    return select_result(L, won, kind);
  return select_park(L, t, n);
}

/* uring.select(a, b, ...) -> i, values...: waits for the first of tasks,
 * queues and events to be ready; only that one is consumed. */
static int l_select (lua_State *L) {
  int n = lua_gettop(L), i, kind;
  ur_task *t;
  if (n == 0)
    return luaL_argerror(L, 1, "task, queue or event expected, got no value");
  if ((i = select_ready(L, n, &kind)) > 0) return select_result(L, i, kind);
  t = ur_task_current(L, "select");
  for (i = 1; i <= n; i++)
    if (testud(L, i, UV_TASK) == (void *)t)
      return luaL_argerror(L, i, "a task cannot select itself");
  waiter_new(L, t, n);
  return select_park(L, t, n);
}

/* luaL_setfuncs with this file's upvalues: the loop (taken from a
 * function ur_setfuncs made), the metatables and the cache */
static void sync_setfuncs (lua_State *L, const luaL_Reg *l, int loopfn) {
  lua_getupvalue(L, loopfn, 1);
  luaL_getmetatable(L, UR_QUEUE_MT);
  luaL_getmetatable(L, UR_SEM_MT);
  luaL_getmetatable(L, UR_EVENT_MT);
  luaL_getmetatable(L, UR_WAITER_MT);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key);
  luaL_getmetatable(L, UR_TASK_MT);
  luaL_setfuncs(L, l, UV_N);
}

void ur_register_sync (lua_State *L) {
  static const luaL_Reg queue_methods[] = {
    {"get", l_queue_get}, {"put", l_queue_put}, {"try_get", l_queue_try_get},
    {"close", l_queue_close}, {"closed", l_queue_closed},
    {NULL, NULL}
  };
  static const luaL_Reg sem_methods[] = {
    {"acquire", l_sem_acquire}, {"release", l_sem_release},
    {"available", l_sem_available},
    {NULL, NULL}
  };
  static const luaL_Reg event_methods[] = {
    {"set", l_event_set}, {"clear", l_event_clear}, {"wait", l_event_wait},
    {"is_set", l_event_is_set},
    {NULL, NULL}
  };
  static const luaL_Reg queue_meta[] = {
    {"__tostring", l_queue_tostring}, {"__len", l_queue_len}, {NULL, NULL}
  };
  static const luaL_Reg sem_meta[] = {
    {"__tostring", l_sem_tostring}, {NULL, NULL}
  };
  static const luaL_Reg event_meta[] = {
    {"__tostring", l_event_tostring}, {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"queue", l_queue}, {"semaphore", l_semaphore}, {"event", l_event},
    {"select", l_select},
    {NULL, NULL}
  };
  static const luaL_Reg loop_only[] = { {"f", l_event}, {NULL, NULL} };
  static const struct { const char *mt, *field; const luaL_Reg *m, *meta; }
  kinds[] = {
    {UR_QUEUE_MT, "queue_methods", queue_methods, queue_meta},
    {UR_SEM_MT, "semaphore_methods", sem_methods, sem_meta},
    {UR_EVENT_MT, NULL, event_methods, event_meta},
  };
  int loopfn;
  /* first every value the functions carry */
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    luaL_newmetatable(L, kinds[i].mt);
    lua_pop(L, 1);
  }
  luaL_newmetatable(L, UR_WAITER_MT);
  lua_pushcfunction(L, waiter_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, waiter_close);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_key);
  lua_newtable(L);                      /* a function that has the loop */
  ur_setfuncs(L, loop_only);
  lua_getfield(L, -1, "f");
  lua_remove(L, -2);
  loopfn = lua_gettop(L);
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    luaL_getmetatable(L, kinds[i].mt);
    sync_setfuncs(L, kinds[i].meta, loopfn);
    lua_newtable(L);
    sync_setfuncs(L, kinds[i].m, loopfn);
    if (kinds[i].field) {               /* sync.lua adds methods here */
      lua_pushvalue(L, -1);
      lua_setfield(L, loopfn - 1, kinds[i].field);
    }
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
  }
  /* uring.group's objects are Lua tables; their metatable is made here
   * so it has a name in the registry (errors, docs) like the others */
  luaL_newmetatable(L, UR_GROUP_MT);
  lua_pushvalue(L, -1);
  lua_setfield(L, loopfn - 1, "_group_mt");
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, loopfn - 1, "group_methods");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushvalue(L, loopfn - 1);
  sync_setfuncs(L, funcs, loopfn);
  lua_pop(L, 2);                        /* the module table's copy, loopfn */
}
