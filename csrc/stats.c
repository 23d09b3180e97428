/*
 * stats.c: counters and tracing, so a learner can see what the ring did.
 *
 * uring.stats() reads counters the loop keeps anyway.  uring.trace() turns
 * on one event per SQE prepared and per CQE reaped.  Events are produced
 * deep inside the loop (in a flush, in the reaper) where Lua must not run,
 * so for a trace function they are queued in C and delivered from the
 * loop's own frame at the next turn; trace(true) prints them at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "uring.h"

#define TRACE_PRINT (-3)   /* trace_ref value: print to stderr */
#define TRACE_LOG_MAX (1u << 18)   /* events kept for trace_export */

enum { EV_SQE, EV_CQE, EV_ENTER };

typedef struct ur_trace_ev {
  char kind;               /* EV_SQE: prepared, EV_CQE: reaped, EV_ENTER */
  uint8_t op;
  int fd;
  uint32_t task;
  uint64_t ud;
  int32_t res;             /* cqe: the result; enter: SQEs submitted */
  uint32_t flags;
  size_t len;
  double time;             /* uring.now() when it happened (enter: returned) */
  double elapsed;          /* cqe: since its SQE */
  uint32_t to_submit, min_complete, ready;   /* enter only */
  int ring;                /* a teaching ring's fd, or 0: the loop's */
} trace_ev;

/* Every event also goes to the log trace_export writes: a ring of the
 * newest TRACE_LOG_MAX, so a long trace keeps its recent part. */
static void log_event (ur_loop *loop, const trace_ev *ev) {
  if (loop->tlog_len == loop->tlog_cap) {
    size_t cap = loop->tlog_cap ? loop->tlog_cap * 2 : 256;
    trace_ev *n;
    if (loop->tlog_cap >= TRACE_LOG_MAX) {     /* full: the oldest goes */
      loop->tlog[loop->tlog_start] = *ev;
      loop->tlog_start = (loop->tlog_start + 1) % loop->tlog_cap;
      loop->tlog_dropped++;
      return;
    }
    n = (trace_ev *)realloc(loop->tlog, cap * sizeof *n);
    if (n == NULL) return;                     /* no memory: not logged */
    loop->tlog = n;
    loop->tlog_cap = cap;
  }
  loop->tlog[loop->tlog_len++] = *ev;
}

static void print_event (const trace_ev *ev) {
  char who[32];             /* a loop request's task, or a teaching ring */
  if (ev->ring) snprintf(who, sizeof who, "ring=%d", ev->ring);
  else snprintf(who, sizeof who, "task=%u", ev->task);
  if (ev->kind == EV_ENTER)
    fprintf(stderr, "[uring] enter      %s%sto_submit=%u min_complete=%u "
            "submitted=%d ready=%u @%.6f\n", ev->ring ? who : "",
            ev->ring ? " " : "", ev->to_submit, ev->min_complete,
            (int)ev->res, ev->ready, ev->time);
  else if (ev->kind == EV_CQE)
    fprintf(stderr, "[uring] cqe %-10s %s ud=%#llx res=%d%s %.1fus @%.6f\n",
            ur_opname(ev->op), who, (unsigned long long)ev->ud, ev->res,
            (ev->flags & IORING_CQE_F_MORE) ? " more" : "",
            ev->elapsed * 1e6, ev->time);
  else
    fprintf(stderr, "[uring] sqe %-10s %s ud=%#llx fd=%d len=%zu @%.6f\n",
            ur_opname(ev->op), who, (unsigned long long)ev->ud, ev->fd,
            ev->len, ev->time);
}

/* An event: to the log, then printed at once or queued for the trace
 * function (delivered at the next turn: Lua must not run here). */
static void emit (ur_loop *loop, const trace_ev *ev) {
  log_event(loop, ev);
  if (loop->trace_ref == TRACE_PRINT) {
    print_event(ev);
    return;
  }
  /* the queue belongs to the loop (freed with it, one per Lua state) */
  if (loop->tq_len == loop->tq_cap) {
    size_t cap = loop->tq_cap ? loop->tq_cap * 2 : 64;
    trace_ev *n;
    if (cap > 1 << 20) return;          /* nobody is draining: drop */
    n = (trace_ev *)realloc(loop->tq, cap * sizeof *n);
    if (n == NULL) return;
    loop->tq = n;
    loop->tq_cap = cap;
  }
  loop->tq[loop->tq_len++] = *ev;
}

static void trace_event (ur_loop *loop, ur_req *r, int cqe) {
  trace_ev ev;
  /* the REPL's own polling, the inspector's server */
  if (r->untraced || (r->task && r->task->untraced)) return;
  memset(&ev, 0, sizeof ev);
  ev.kind = cqe ? EV_CQE : EV_SQE;
  ev.op = r->opcode;
  ev.fd = r->fd;
  ev.task = r->task ? r->task->id : 0;
  ev.ud = ur_req_ud(loop, r);
  ev.res = r->res;
  ev.flags = r->cflags;
  ev.len = r->memlen;
  ev.time = cqe ? ur_now() : r->t_prep;
  /* a request prepared before tracing began has no start time */
  ev.elapsed = (cqe && r->t_prep > 0) ? ev.time - r->t_prep : 0;
  emit(loop, &ev);
}

/* One io_uring_enter the loop made (loop.c, only while tracing), stamped
 * when it returned: it was asked to submit to_submit SQEs (the loop's
 * own untraced ones count too) and to wait for min_complete CQEs, and
 * submitted `submitted`; the CQEs now ready are the batch reaped next. */
void ur_trace_enter (ur_loop *loop, unsigned to_submit, unsigned min_complete,
                     int submitted) {
  trace_ev ev;
  /* under SQPOLL a submit may make no syscall (the kernel thread takes
   * the SQEs): then stats.enters did not move since the last event */
  if (loop->stats.enters == loop->trace_enters) return;
  loop->trace_enters = loop->stats.enters;
  memset(&ev, 0, sizeof ev);
  ev.kind = EV_ENTER;
  ev.fd = loop->ring.ring_fd;
  ev.res = submitted;
  ev.time = ur_now();
  ev.to_submit = to_submit;
  ev.min_complete = min_complete;
  ev.ready = io_uring_cq_ready(&loop->ring);
  emit(loop, &ev);
}

/* The teaching ring's hooks (ring.c, ring_req.c): its methods carry no
 * loop, so they ask for it; NULL when tracing is off. */
ur_loop *ur_tracing (lua_State *L) {
  ur_loop *loop = ur_loop_get(L);
  return loop->trace_ref != LUA_NOREF ? loop : NULL;
}

/* A teaching ring's SQE (published by its submit, stamped with its prep)
 * or CQE (handed to Lua): user_data is the user's, no task. */
void ur_trace_ring_req (ur_loop *loop, int ring_fd, int cqe, unsigned op,
                        int fd, lua_Integer user, int32_t res, uint32_t flags,
                        size_t len, double t_prep) {
  trace_ev ev;
  memset(&ev, 0, sizeof ev);
  ev.kind = cqe ? EV_CQE : EV_SQE;
  ev.ring = ring_fd;
  ev.op = (uint8_t)op;
  ev.fd = fd;
  ev.ud = (uint64_t)user;
  ev.res = res;
  ev.flags = flags;
  ev.len = len;
  ev.time = cqe ? ur_now() : (t_prep > 0 ? t_prep : ur_now());
  ev.elapsed = (cqe && t_prep > 0) ? ev.time - t_prep : 0;
  emit(loop, &ev);
}

/* A teaching ring's io_uring_enter (submit, submit_and_wait, a wait_cqe
 * that had to wait), stamped when it returned. */
void ur_trace_ring_enter (ur_loop *loop, struct io_uring *ring,
                          unsigned to_submit, unsigned min_complete,
                          int submitted) {
  trace_ev ev;
  memset(&ev, 0, sizeof ev);
  ev.kind = EV_ENTER;
  ev.ring = ev.fd = ring->ring_fd;
  ev.res = submitted;
  ev.time = ur_now();
  ev.to_submit = to_submit;
  ev.min_complete = min_complete;
  ev.ready = io_uring_cq_ready(ring);
  emit(loop, &ev);
}

/* Deliver a teaching ring's events to a trace function now: outside
 * uring.run no loop turn would come to do it. */
void ur_trace_ring_flush (lua_State *L, ur_loop *loop) {
  if (loop->tq_len > 0) ur_trace_flush(L, loop);
}

void ur_trace_free (ur_loop *loop) {
  free(loop->tq);
  loop->tq = NULL;
  loop->tq_len = loop->tq_cap = 0;
  free(loop->tlog);
  loop->tlog = NULL;
  loop->tlog_len = loop->tlog_cap = loop->tlog_start = 0;
}

void ur_trace_sqe (ur_loop *loop, ur_req *r) { trace_event(loop, r, 0); }
void ur_trace_cqe (ur_loop *loop, ur_req *r) { trace_event(loop, r, 1); }

/* Push the table a trace function receives for ev. */
static void push_event (lua_State *L, const trace_ev *ev) {
  static const char *const kinds[] = { "sqe", "cqe", "enter" };
  lua_createtable(L, 0, 12);
  lua_pushstring(L, kinds[(int)ev->kind]);
  lua_setfield(L, -2, "event");
  lua_pushnumber(L, ev->time);
  lua_setfield(L, -2, "time");
  lua_pushinteger(L, ev->fd);
  lua_setfield(L, -2, "fd");
  if (ev->ring) {
    lua_pushinteger(L, ev->ring);
    lua_setfield(L, -2, "ring");
  }
  if (ev->kind == EV_ENTER) {
    lua_pushliteral(L, "enter");
    lua_setfield(L, -2, "op");
    lua_pushinteger(L, ev->to_submit);
    lua_setfield(L, -2, "to_submit");
    lua_pushinteger(L, ev->min_complete);
    lua_setfield(L, -2, "min_complete");
    lua_pushinteger(L, ev->res);
    lua_setfield(L, -2, "submitted");
    lua_pushinteger(L, ev->ready);
    lua_setfield(L, -2, "ready");
    return;
  }
  lua_pushstring(L, ur_opname(ev->op));
  lua_setfield(L, -2, "op");
  lua_pushinteger(L, ev->task);
  lua_setfield(L, -2, "task");
  lua_pushinteger(L, (lua_Integer)ev->ud);
  lua_setfield(L, -2, "user_data");
  lua_pushinteger(L, (lua_Integer)ev->len);
  lua_setfield(L, -2, "len");
  if (ev->kind == EV_CQE) {
    lua_pushinteger(L, ev->res);
    lua_setfield(L, -2, "res");
    /* an error is -4095..-1; a SEND_ZC notification's res is a flag
     * word (IORING_NOTIF_USAGE_ZC_COPIED is bit 31), not an errno */
    if (ev->res < 0 && ev->res > -4096) {
      lua_pushinteger(L, -ev->res);
      lua_setfield(L, -2, "errno");
    }
    lua_pushinteger(L, ev->flags);
    lua_setfield(L, -2, "flags");
    lua_pushboolean(L, (ev->flags & IORING_CQE_F_MORE) != 0);
    lua_setfield(L, -2, "more");
    lua_pushnumber(L, ev->elapsed);
    lua_setfield(L, -2, "elapsed");
  }
}

/* Deliver queued events to the trace function, from the loop's frame.
 * An error in the trace function turns tracing off and is warned about. */
void ur_trace_flush (lua_State *L, ur_loop *loop) {
  size_t i;
  if (loop->tq_len == 0 || loop->trace_ref < 0) {
    loop->tq_len = 0;
    return;
  }
  for (i = 0; i < loop->tq_len && loop->trace_ref >= 0; i++) {
    /* a copy: building the table may run a __gc that queues an event
     * (a process collected unwaited submits its reaper), and the queue
     * may move */
    trace_ev e = loop->tq[i];
    lua_rawgeti(L, LUA_REGISTRYINDEX, loop->trace_ref);
    push_event(L, &e);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      lua_warning(L, "uring.trace: trace function failed: ", 1);
      lua_warning(L, lua_tostring(L, -1) ? lua_tostring(L, -1) : "?", 0);
      lua_pop(L, 1);
      luaL_unref(L, LUA_REGISTRYINDEX, loop->trace_ref);
      loop->trace_ref = LUA_NOREF;
    }
  }
  loop->tq_len = 0;
}

/* _trace_log([newest]) -> {event, ...}, dropped: the logged events, oldest
 * first (for trace_export, lua/uring/trace.lua), or only the newest ones
 * (the inspector's timeline: no copy of the whole log twice a second),
 * and how many older ones the log let go of */
static int l_trace_log (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  size_t n = loop->tlog_len, from = 0;
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer newest = luaL_checkinteger(L, 1);
    if (newest >= 0 && (size_t)newest < n) from = n - (size_t)newest;
  }
  lua_createtable(L, (int)(n - from), 0);
  for (size_t i = from; i < n; i++) {
    push_event(L, &loop->tlog[(loop->tlog_start + i) % n]);
    lua_rawseti(L, -2, (lua_Integer)(i - from) + 1);
  }
  lua_pushinteger(L, (lua_Integer)loop->tlog_dropped);
  return 2;
}

/* uring.trace(fn | true | false) */
static int l_trace (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  if (loop->trace_ref >= 0) luaL_unref(L, LUA_REGISTRYINDEX, loop->trace_ref);
  loop->trace_ref = LUA_NOREF;
  loop->tq_len = 0;
  if (lua_toboolean(L, 1)) {    /* a new trace: a new log */
    loop->tlog_len = loop->tlog_start = 0;
    loop->tlog_dropped = 0;
  }
  if (lua_isfunction(L, 1)) {
    lua_pushvalue(L, 1);
    loop->trace_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  else if (lua_isboolean(L, 1)) {
    if (lua_toboolean(L, 1)) loop->trace_ref = TRACE_PRINT;
  }
  else
    luaL_typeerror(L, 1, "function or boolean");
  return 0;
}

/* _untraced([inherit]): the running task's requests are left out of the
 * trace (the REPL's stdin poll and watchers, so :trace on shows the user's
 * work); with inherit, so are those of every task it spawns, and theirs
 * (the inspector's server: its connections' tasks are spawned by serve) */
static int l_untraced (lua_State *L) {
  ur_task *t = ur_task_of(L);
  if (t == NULL) return luaL_error(L, "_untraced: not inside a task");
  t->untraced = lua_toboolean(L, 1) ? UR_UNTRACED_INHERIT : 1;
  return 0;
}

/* _untraced_of(task) -> 0 traced, 1 untraced, 2 untraced with its
 * children (the inspector tells its own tasks from the user's) */
static int l_untraced_of (lua_State *L) {
  ur_task *t = (ur_task *)luaL_checkudata(L, 1, UR_TASK_MT);
  lua_pushinteger(L, t->untraced);
  return 1;
}

static void setint (lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

/* uring.stats() -> counters since the loop was made */
static int l_stats (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  lua_createtable(L, 0, 16);
  setint(L, "enters", loop->stats.enters);
  setint(L, "sqes", loop->stats.sqes);
  setint(L, "cqes", loop->stats.cqes);
  setint(L, "inflight", loop->inflight - loop->background);
  setint(L, "tasks", loop->live_tasks);
  setint(L, "ready", loop->runq_len);
  setint(L, "flushes", loop->stats.flushes);
  setint(L, "waits", loop->stats.waits);
  setint(L, "resumes", loop->stats.resumes);
  setint(L, "spawned", loop->stats.spawned);
  setint(L, "overflow_flushes", loop->stats.overflow_flushes);
  setint(L, "stale_cqes", loop->stats.stale_cqes);
  setint(L, "fixed_reads", loop->stats.fixed_reads);
  setint(L, "send_zc", loop->stats.send_zc);                /* send_zc.c */
  setint(L, "send_zc_copied", loop->stats.send_zc_copied);
  setint(L, "send_zc_held", ur_send_zc_held(loop));
  setint(L, "fixed_buffers", loop->fixed_n);
  setint(L, "fixed_files", loop->ffiles_n - loop->ffiles_nfree);
  setint(L, "requests", loop->slab.nreqs);
  setint(L, "entries", loop->ring_ok ? loop->ring.sq.ring_entries : loop->entries);
  return 1;
}

/* Setup flags by their kernel names without the IORING_SETUP_ prefix, as
 * the DESIGN writes them: the one vocabulary of uring.features().flags,
 * ring:flags() and uring.ring{flags = {...}}. */
static const struct { unsigned flag; const char *name; } setup_names[] = {
  {IORING_SETUP_IOPOLL, "IOPOLL"}, {IORING_SETUP_SQPOLL, "SQPOLL"},
  {IORING_SETUP_SQ_AFF, "SQ_AFF"}, {IORING_SETUP_CQSIZE, "CQSIZE"},
  {IORING_SETUP_CLAMP, "CLAMP"}, {IORING_SETUP_ATTACH_WQ, "ATTACH_WQ"},
  {IORING_SETUP_R_DISABLED, "R_DISABLED"},
  {IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL"},
  {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
  {IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG"},
  {IORING_SETUP_SQE128, "SQE128"}, {IORING_SETUP_CQE32, "CQE32"},
  {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
  {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
};

/* Push {NAME = true, ...} for the setup flags in f. */
void ur_push_setup_flags (lua_State *L, unsigned f) {
  lua_newtable(L);
  for (size_t i = 0; i < sizeof setup_names / sizeof setup_names[0]; i++)
    if (f & setup_names[i].flag) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, setup_names[i].name);
    }
}

/* The IORING_SETUP_* bit named name ("SQPOLL"), or 0 if none is. */
unsigned ur_setup_flag (const char *name) {
  for (size_t i = 0; i < sizeof setup_names / sizeof setup_names[0]; i++)
    if (strcmp(setup_names[i].name, name) == 0) return setup_names[i].flag;
  return 0;
}

/*
 * uring.features() -> {kernel =, available =, reason =, ops = {...},
 * flags = {...}, entries =}.  Never raises for a kernel without
 * io_uring: it reports why instead, so a script can choose a fallback.
 */
static int l_features (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  struct utsname u;
  lua_createtable(L, 0, 8);
  if (uname(&u) == 0) {
    lua_pushstring(L, u.release);
    lua_setfield(L, -2, "kernel");
  }
  if (!loop->ring_ok) {
    int ret = ur_loop_setup(L, loop);
    if (ret < 0) {
      char why[512];
      lua_pushboolean(L, 0);
      lua_setfield(L, -2, "available");
      lua_pushstring(L, ur_setup_reason(ret, why, sizeof why));
      lua_setfield(L, -2, "reason");
      return 1;
    }
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "available");
  if (ur_push_probe(L, &loop->ring) == 1) lua_setfield(L, -2, "ops");
  else lua_pop(L, 3);
  ur_push_setup_flags(L, loop->setup_flags);
  lua_setfield(L, -2, "flags");
  setint(L, "entries", loop->ring.sq.ring_entries);
  setint(L, "cq_entries", loop->ring.cq.ring_entries);
  ur_hooks_call(loop, features, L, loop);   /* fixed_buffers, fixed_files */
  return 1;
}

void ur_register_stats (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"stats", l_stats}, {"trace", l_trace}, {"features", l_features},
    {"_untraced", l_untraced}, {"_trace_log", l_trace_log},
    {"_untraced_of", l_untraced_of},
    {NULL, NULL}
  };
  ur_setfuncs(L, funcs);
}
