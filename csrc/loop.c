/*
 * loop.c: the ring, the run queue and the reaper.
 *
 * One loop per Lua state.  A loop turn resumes every task that was
 * runnable when the turn began, then submits everything those tasks
 * prepared and, if nothing is runnable, waits in one
 * io_uring_submit_and_wait; then it reaps every ready CQE in one batch.
 * Lua runs only from loop_turn's flat frame (lua_resume), never from the
 * reaper: handlers are plain C that mark tasks runnable.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "uring.h"

static char loop_key;   /* registry key of the loop userdata */

/* The ring is set up and belongs to another process (our parent). */
int ur_loop_foreign (ur_loop *loop) {
  return loop->ring_ok && loop->pid != getpid();
}

int ur_foreign_error (lua_State *L, ur_loop *loop) {
  return luaL_error(L, "uring: this ring belongs to process %d; a forked "
                    "child must not use its parent's ring", (int)loop->pid);
}

double ur_now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * Set up a ring with the fastest flags this kernel takes, dropping one rung
 * at a time on EINVAL (an older kernel): DEFER_TASKRUN (6.1) runs
 * completion work only when we wait, so it never interrupts Lua;
 * SINGLE_ISSUER (6.0) lets the kernel skip locking; COOP_TASKRUN (5.19)
 * avoids IPIs; SUBMIT_ALL (5.18) keeps a bad SQE from stalling the batch.
 * CQSIZE makes the CQ twice the SQ so a full SQ of completions never
 * overflows it.  SQPOLL is opt-in only, and the kernel refuses it with
 * DEFER_TASKRUN or COOP_TASKRUN (EINVAL): its rungs go without them
 * (keeping SINGLE_ISSUER), and a rung that is then the same as the one
 * before is not tried twice.
 */
static int ur_setup_ring (ur_loop *loop, struct io_uring *ring,
                          unsigned entries, int sqpoll, unsigned idle,
                          unsigned *flags_out) {
  static const unsigned ladder[] = {
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
      IORING_SETUP_SINGLE_ISSUER,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_SUBMIT_ALL,
    0,
  };
  int ret = -EINVAL;
  unsigned tried = ~0u;
  (void)loop;
  /* a linked pair (an op and its timeout, a write and its fsync) must
   * reach the kernel in one submit: with a 1-entry SQ, ur_reserve_sqes
   * would flush forever waiting for room for two */
  if (entries < 2) entries = 2;
  for (size_t i = 0; i < sizeof ladder / sizeof ladder[0]; i++) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = ladder[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
    p.cq_entries = entries * 2;
    if (sqpoll) {
      p.flags &= ~(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN);
      if (p.flags == tried) continue;
      tried = p.flags;
      p.flags |= IORING_SETUP_SQPOLL;
      p.sq_thread_idle = idle;
    }
    ret = io_uring_queue_init_params(entries, ring, &p);
    if (ret == 0) {
      if (flags_out) *flags_out = p.flags;
      return 0;
    }
    if (ret != -EINVAL) break;
  }
  return ret;
}

/* Default ring size; URING_TEST_RING overrides it so the specs can run
 * under a tiny ring (4) and a large one (4096). */
static unsigned default_entries (void) {
  const char *e = getenv("URING_TEST_RING");
  if (e && *e) {
    long n = strtol(e, NULL, 10);
    if (n >= 1 && n <= 32768) return (unsigned)n;
  }
  return 4096;
}

static int default_sqpoll (void) {
  const char *e = getenv("URING_TEST_SQPOLL");
  return e && *e && strcmp(e, "0") != 0;
}

/* URING_TEST_FIXED_FILES=N: configure{fixed_files = N} by default (the
 * specs and bench/http.sh run servers with it) */
static uint32_t default_ffiles (void) {
  const char *e = getenv("URING_TEST_FIXED_FILES");
  long n = e && *e ? strtol(e, NULL, 10) : 0;
  return n >= 1 && n <= UR_FFILES_MAX ? (uint32_t)n : 0;
}

ur_loop *ur_loop_get (lua_State *L) {
  ur_loop *loop;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &loop_key) == LUA_TUSERDATA) {
    loop = (ur_loop *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return loop;
  }
  lua_pop(L, 1);
  ur_fork_watch();
  /* closed first, then acquired: __gc on an unset loop is a no-op */
  loop = (ur_loop *)lua_newuserdatauv(L, sizeof *loop, 0);
  memset(loop, 0, sizeof *loop);
  loop->entries = default_entries();
  loop->want_sqpoll = default_sqpoll();
  loop->want_ffiles = default_ffiles();
  loop->sq_thread_idle = 1000;
  loop->want_fixed_size = 64 * 1024;
  loop->send_zc_min = UR_SEND_ZC_DEFAULT;   /* send_zc.c */
  loop->recv_mshot = (uint8_t)ur_recv_mshot_default();   /* recv_multishot.c */
  loop->main_ref = loop->error_ref = loop->trace_ref = LUA_NOREF;
  loop->pollfd = -1;
  lua_newtable(L);                     /* anchors live tasks */
  loop->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  loop->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  luaL_setmetatable(L, UR_LOOP_MT);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &loop_key);
  return loop;
}

/* An area's hooks (uring.h ur_hooks): the loop calls them from now on.
 * The module may be opened again in one state (package.loaded cleared):
 * the loop, kept in the registry, knows them already. */
void ur_loop_hook (lua_State *L, const ur_hooks *h) {
  ur_loop *loop = ur_loop_get(L);
  for (int i = 0; i < loop->nhooks; i++)
    if (loop->hooks[i] == h) return;
  if (loop->nhooks == UR_HOOKS_MAX)
    luaL_error(L, "uring: internal error: too many hooks (UR_HOOKS_MAX)");
  loop->hooks[loop->nhooks++] = h;
}

/* Register l into the table at the top, each with the loop as upvalue. */
void ur_setfuncs (lua_State *L, const luaL_Reg *l) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &loop_key);
  luaL_setfuncs(L, l, 1);
}

/* Set up the loop's ring with its configured options and register what
 * they ask for.  Returns 0 or the -errno of the ring's setup. */
int ur_loop_setup (lua_State *L, ur_loop *loop) {
  int ret = ur_setup_ring(loop, &loop->ring, loop->entries,
                          loop->want_sqpoll, loop->sq_thread_idle, &loop->setup_flags);
  if (ret < 0) return ret;
  /* which ops this kernel has; without the ones the loop stands on, no
   * ring (ur_setup_reason names the op) */
  if ((ret = ur_probe_loop(loop)) < 0) {
    io_uring_queue_exit(&loop->ring);
    memset(&loop->ring, 0, sizeof loop->ring);
    return ret;
  }
  /* a child after fork keeps our mappings; don't let it write to them */
  io_uring_ring_dontfork(&loop->ring);
  loop->ring_ok = 1;
  loop->pid = getpid();
  /* registered buffers and files: a failure only warns (reads and
   * sockets go on without them) */
  ur_hooks_call(loop, ring_setup, L, loop);
  return 0;
}

ur_loop *ur_loop_ready (lua_State *L) {
  ur_loop *loop = ur_loop_get(L);
  int ret;
  if (loop->ring_ok) return loop;
  ret = ur_loop_setup(L, loop);
  if (ret < 0) {
    ur_pushsetupfail(L, ret, loop->entries);
    lua_pop(L, 1);
    lua_error(L);   /* the message names the cause and the fix */
  }
  return loop;
}

/*
 * Enter the kernel: submit what is pending and wait for wait_nr CQEs.
 * EINTR (a signal, a profiler) and EAGAIN/EBUSY (the kernel is short of
 * memory or the CQ is backed up) are retried after reaping; they are
 * never a user's error.  Returns the number submitted or -errno.
 */
static int under_valgrind (void) {
#ifdef RUNNING_ON_VALGRIND
  return RUNNING_ON_VALGRIND != 0;
#else
  return 0;
#endif
}

int ur_submit (ur_loop *loop, unsigned wait_nr) {
  int ret;
  if (ur_foreign(loop)) return -EBADF;   /* a forked child: not our ring */
  for (;;) {
    unsigned pend = io_uring_sq_ready(&loop->ring);
    int sqpoll = (loop->setup_flags & IORING_SETUP_SQPOLL) != 0;
    /* liburing enters unless SQPOLL lets it skip the syscall */
    if (wait_nr || !sqpoll || (pend && (IO_URING_READ_ONCE(*loop->ring.sq.kflags) & IORING_SQ_NEED_WAKEUP))
        || io_uring_cq_has_overflow(&loop->ring))
      loop->stats.enters++;
    if (wait_nr)
      loop->stats.waits++;
    if (wait_nr && loop->nlate) {
      /* a held-back cancel (ur_req_cancel_late) goes out only after this
       * enter: do not sleep on (its send may wait for a reader that never
       * comes, with nothing else in flight); mostly the send's own CQE is
       * ready by then */
      struct __kernel_timespec ts = { 0, 0 };
      struct io_uring_cqe *cqe;
      ret = io_uring_submit_and_wait_timeout(&loop->ring, &cqe, wait_nr, &ts, NULL);
      if (ret == -ETIME) ret = 0;
    }
    else if (wait_nr && under_valgrind()) {
      /* valgrind runs one thread at a time and does not let go of it
       * inside io_uring_enter: a resolver thread would never run while
       * we wait for its eventfd.  Wait in slices, and yield between them
       * (sched_yield is where valgrind hands the CPU to another thread). */
      struct __kernel_timespec ts = { 0, 10 * 1000 * 1000 };
      struct io_uring_cqe *cqe;
      sched_yield();
      ret = io_uring_submit_and_wait_timeout(&loop->ring, &cqe, wait_nr, &ts, NULL);
      if (ret == -ETIME) ret = 0;
    }
    else if (wait_nr)
      ret = io_uring_submit_and_wait(&loop->ring, wait_nr);
    else
      ret = io_uring_submit_and_get_events(&loop->ring);
    if (ret >= 0) {
      loop->pending = io_uring_sq_ready(&loop->ring);
      loop->lazy = 0;
      loop->enter_seq++;
      /* tracing: the enter, stamped when it returned (a stamp taken
       * before it would cost uring.nop() when tracing is off) */
      if (loop->trace_ref != LUA_NOREF)
        ur_trace_enter(loop, pend, wait_nr, ret);
      return ret;
    }
    if (ret == -EINTR) {
      if (io_uring_cq_ready(&loop->ring)) return 0;   /* woken by a CQE */
      continue;
    }
    if (ret == -EAGAIN || ret == -EBUSY) {
      /* the SQEs stay in the SQ, owned by their requests: reap to free
       * CQ space, then try again without waiting.  A flush inside a reap
       * (a handler arming an op) does not reap again: that reap has taken
       * its batch off the CQ already, and a nested one would dispatch
       * later CQEs before the batch's own (loop_flush's rule) */
      if (!loop->reaping) ur_reap(loop);
      /* a task that reap woke may be what the next CQE waits for */
      if (wait_nr && (io_uring_cq_ready(&loop->ring) || loop->runq_len > 0))
        wait_nr = 0;
      continue;
    }
    return ret;
  }
}

/* Submit and wait at most secs for one CQE (close outside uring.run
 * draining what it cancelled): 0 when one is ready, the time is up, or
 * the kernel asks to be tried again (EINTR, EAGAIN, EBUSY: the caller
 * reaps and calls again; the SQEs it was given stay in the SQ, owned by
 * their requests). */
int ur_submit_timeout (ur_loop *loop, double secs) {
  struct __kernel_timespec ts;
  struct io_uring_cqe *cqe;
  int ret;
  if (ur_foreign(loop)) return -EBADF;
  ur_set_ts(&ts, secs);
  loop->stats.enters++;
  loop->stats.waits++;
  {
    unsigned pend = io_uring_sq_ready(&loop->ring);
    ret = io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, &ts, NULL);
    if (loop->trace_ref != LUA_NOREF) ur_trace_enter(loop, pend, 1, ret < 0 ? 0 : ret);
  }
  loop->pending = io_uring_sq_ready(&loop->ring);
  loop->lazy = 0;
  if (ret >= 0 || ret == -ETIME) loop->enter_seq++;
  if (ret == -ETIME || ret == -EINTR || ret == -EAGAIN || ret == -EBUSY)
    return 0;
  return ret < 0 ? ret : 0;
}

/*
 * Flush a full SQ.  The CQEs that the flush makes ready are reaped at once
 * (no syscall: they are in the shared ring) so a small CQ does not
 * overflow while a storm of SQEs is prepared; a flush inside a reap does
 * not reap again.
 */
static void loop_flush (ur_loop *loop) {
  loop->stats.flushes++;
  ur_submit(loop, 0);
  /* SQPOLL: the kernel thread consumes the SQ on its own time; wait for
   * room rather than spin */
  if ((loop->setup_flags & IORING_SETUP_SQPOLL)
      && io_uring_sq_space_left(&loop->ring) == 0) {
    loop->stats.enters++;
    io_uring_sqring_wait(&loop->ring);
  }
  if (!loop->reaping) ur_reap(loop);
}

/* ur_get_sqe (uring.h) when the SQ is full */
struct io_uring_sqe *ur_get_sqe_slow (ur_loop *loop) {
  struct io_uring_sqe *sqe;
  while ((sqe = io_uring_get_sqe(&loop->ring)) == NULL)
    loop_flush(loop);
  loop->pending++;
  loop->stats.sqes++;
  return sqe;
}

/* A link chain must reach the kernel in one submit: make room first. */
void ur_reserve_sqes (ur_loop *loop, unsigned n) {
  while (io_uring_sq_space_left(&loop->ring) < n)
    loop_flush(loop);
}

void ur_enqueue (ur_loop *loop, ur_task *t) {
  t->next = NULL;
  if (loop->runq.tail) loop->runq.tail->next = t;
  else loop->runq.head = t;
  loop->runq.tail = t;
  loop->runq_len++;
}

static ur_task *runq_pop (ur_loop *loop) {
  ur_task *t = loop->runq.head;
  if (t) {
    loop->runq.head = t->next;
    if (!loop->runq.head) loop->runq.tail = NULL;
    t->next = NULL;
    loop->runq_len--;
  }
  return t;
}

static void dispatch (ur_loop *loop, uint64_t ud, int32_t res, uint32_t flags) {
  ur_req *r;
  if (ud == 0) return;          /* fire-and-forget (cancels) */
  if ((ud >> 32) == 0) {        /* generation 0: no request's (MSG_RING) */
    if (ur_foreign_cqe) ur_foreign_cqe(loop, ud, res);
    return;
  }
  r = ur_req_at(loop, ud);
  if (r == NULL || r->state != UR_REQ_INFLIGHT) {
    loop->stats.stale_cqes++;   /* never trusted */
    return;
  }
  r->res = res;
  r->cflags = flags;
  if (!(flags & IORING_CQE_F_MORE)) {   /* the last CQE of this request */
    r->state = UR_REQ_DONE;
    loop->inflight--;
    loop->background -= r->background;
    if (r->canceling) loop->canceling--;
    if (r->onfd) ur_fd_unlink(loop, r);   /* may close a closed object's fd */
  }
  if (loop->trace_ref != LUA_NOREF) ur_trace_cqe(loop, r);
  /* the kernel's EINVAL for an op it lacks (the probe said so): say that
   * (ur_pushfail words it), not "Invalid argument" */
  if (res == -EINVAL && ur_op_missing(loop, r->opcode))
    r->res = UR_ENOOP(r->opcode);
  if (loop->closing) {          /* shutting down: nobody will resume */
    if (r->makes_fd && res >= 0) ur_fd_release(res);   /* nobody takes it */
    if (r->state == UR_REQ_DONE) ur_req_free(loop, r);
    return;
  }
  if (r->on_cqe) r->on_cqe(loop, r);
  else ur_req_wake(loop, r);
}

/*
 * Reap every ready CQE: copy a batch out, advance the CQ, then dispatch,
 * so no handler runs while the kernel's CQ head is still ours.  An
 * overflowed CQ (more completions than CQ entries) is flushed back in with
 * io_uring_get_events.
 */
void ur_reap (ur_loop *loop) {
  enum { BATCH = 256 };
  struct { uint64_t ud; int32_t res; uint32_t flags; } b[BATCH];
  int was = loop->reaping;
  if (ur_foreign(loop)) return;
  loop->reaping = 1;
  for (;;) {
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    /* io_uring_for_each_cqe, with the tail read once per batch and
     * the CQE size known: CQE32 is never asked for */
    unsigned tail = io_uring_smp_load_acquire(loop->ring.cq.ktail);
    for (head = *loop->ring.cq.khead; head != tail && n < BATCH; head++) {
      cqe = &loop->ring.cq.cqes[head & loop->ring.cq.ring_mask];
      b[n].ud = cqe->user_data;
      b[n].res = cqe->res;
      b[n].flags = cqe->flags;
      n++;
    }
    if (n == 0) {
      if (!io_uring_cq_has_overflow(&loop->ring)) break;
      loop->stats.overflow_flushes++;
      loop->stats.enters++;
      io_uring_get_events(&loop->ring);
      if (io_uring_cq_ready(&loop->ring) == 0) break;
      continue;
    }
    io_uring_cq_advance(&loop->ring, n);
    loop->stats.cqes += n;
    for (unsigned i = 0; i < n; i++)
      dispatch(loop, b[i].ud, b[i].res, b[i].flags);
  }
  if (loop->nlate) ur_late_cancels(loop);
  loop->reaping = was;
}

/* The loop whose ur_loop_turn is resuming tasks on this thread (uring.h:
 * ur_loop_at), or NULL. */
__thread ur_loop *ur_resuming;

/*
 * Resume one task from the loop's flat frame.  A task that yields has
 * either parked itself (ur_await, ur_park: status WAITING), queued itself
 * (uring.yield: READY), or called coroutine.yield bare; the last is
 * treated as uring.yield.
 */
static void resume_task (lua_State *L, ur_loop *loop, ur_task *t) {
  lua_State *co = t->co;
  int nres, st, nargs = 0;
  if (!t->started) {
    t->started = 1;
    nargs = t->nargs;
    if (t->canceled) {          /* canceled before it ever ran */
      ur_task_finished(L, loop, t, UR_CANCELED, "canceled");
      return;
    }
  }
  else if (lua_status(co) != LUA_YIELD) {
    /* its coroutine was resumed from outside the loop (coroutine.resume):
     * the continuation raised "can only be resumed by the uring loop" and
     * the coroutine died with that error on its stack; or it was closed
     * (coroutine.close).  End the task with
     * it, and free the request it was waiting on, which no continuation
     * will free now. */
    ur_req *r = t->wait_ud ? ur_req_at(loop, t->wait_ud) : NULL;
    if (r != NULL && r->state == UR_REQ_DONE) ur_req_free(loop, r);
    t->wait_ud = 0;
    ur_task_finished(L, loop, t, UR_FAILED, lua_status(co) != LUA_OK ? NULL
                     /* coroutine.close()d: no error on its stack */
                     : "a task can only be resumed by the uring loop "
                       "(its coroutine was closed from outside)");
    return;
  }
  t->status = UR_RUNNING;
  t->what = NULL;
  loop->current = t;
  loop->stats.resumes++;
  st = lua_resume(co, L, nargs, &nres);
  loop->current = NULL;
  if (st == LUA_YIELD) {
    if (nres) lua_pop(co, nres);   /* a park yields none: no API call */
    if (t->status == UR_RUNNING) {
      t->status = UR_READY;
      ur_enqueue(loop, t);
    }
  }
  else if (st == LUA_OK)
    ur_task_finished(L, loop, t, UR_DONE, NULL);
  else
    ur_task_finished(L, loop, t, UR_FAILED, NULL);
}

/* Cancel every live task (main error, deadlock): each raises "canceled"
 * at its next wait point and ends. */
static void cancel_all_tasks (lua_State *L, ur_loop *loop) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->tasks_ref);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    ur_task *t = (ur_task *)luaL_testudata(L, -1, UR_TASK_MT);
    if (t) ur_task_cancel(loop, t);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/*
 * One turn: run what was runnable when the turn began (tasks woken during
 * the turn wait for the next one, so a yielding task cannot starve I/O),
 * then submit, and wait only if nothing is runnable.
 */
void ur_loop_turn (lua_State *L, ur_loop *loop, double wait) {
  uint32_t n = loop->runq_len;
  ur_loop *outer = ur_resuming;   /* a loop driven from another's task */
  if (loop->trace_ref != LUA_NOREF) ur_trace_flush(L, loop);
  /* ur_loop_at's hint while the tasks run: set once a turn, and put back
   * before anything here can raise (resume_task never does) */
  ur_resuming = loop;
  while (n-- > 0) {
    ur_task *t = runq_pop(loop);
    if (!t) break;
    resume_task(L, loop, t);
    if (lua_gettop(L) != 1) lua_settop(L, 1);   /* (mostly it is: cheaper) */
  }
  ur_resuming = outer;
  /* a task fork()ed during this turn and this is the child: stop before
   * touching the ring's memory, which the child does not have */
  if (ur_foreign(loop)) ur_foreign_error(L, loop);
  if (loop->main_failed == 1) {
    /* the main task failed: end the others rather than serve forever */
    loop->main_failed = 2;
    cancel_all_tasks(L, loop);
  }
  if (loop->live_tasks == 0) {
    /* drain what we cancelled (timers of closed scopes, the requests of
     * closed objects, whose fds close with them) before returning, so the
     * next run starts clean */
    if (loop->canceling || loop->fd_closing) {
      ur_submit(loop, 1);
      ur_reap(loop);
    }
    else if (io_uring_sq_ready(&loop->ring))
      ur_submit(loop, 0);
    return;
  }
  if (loop->runq_len > 0) {
    /* tasks are runnable: submit what they prepared, but look for new
     * completions only every 16th busy turn, so a loop of runnable tasks
     * does not cost a syscall per turn; and at least every millisecond,
     * so a task computing ~1 ms between yields (a walk making stat
     * tables) does not hold a 10 ms timer back for 16 of them.  Only a
     * request some task waits on is worth a look: the loop's own (a
     * multishot receive nobody reads yet, the SIGINT poll) wait for the
     * next wait, unless a Ctrl-C came, or a batch would cost two enters */
    double now = 0;
    int awaited = loop->inflight > loop->background || ur_runsig_pending();
    if (awaited) {
      now = ur_now();
      /* 0: the last turn looked (it waited); the millisecond starts now */
      if (loop->busy_looked == 0) loop->busy_looked = now;
    }
    if (io_uring_sq_ready(&loop->ring) > loop->lazy
        || (awaited && ((++loop->busy_turns & 15) == 0
                        || now - loop->busy_looked >= 1e-3))) {
      loop->busy_looked = now;
      ur_submit(loop, 0);
    }
  }
  else if (loop->inflight == loop->background && wait >= 0) {
    /* a step (embed.c): something outside may still wake a task (set an
     * event, cancel one); this turn simply has nothing to wait for */
    return;
  }
  else if (loop->inflight == loop->background) {
    /* inflight counts every request from its prep, submitted or not, so
     * this holds whatever the SQ shows (under SQPOLL it may still list
     * SQEs the poller has not picked up, such as fire-and-forget cancels);
     * the loop's own requests (the SIGINT poll) wake no task */
    /* every task waits on another task: nothing can ever wake them */
    if (loop->error_ref == LUA_NOREF) {
      lua_pushfstring(L, "uring.run: deadlock: %d task(s) wait on each other "
                      "with no I/O in flight", (int)loop->live_tasks);
      loop->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      loop->error_task = 0;
    }
    cancel_all_tasks(L, loop);
    return;
  }
  else {
    /* wait < 0: until a CQE; a step waits at most `wait` seconds */
    int ret = wait < 0 ? ur_submit(loop, 1)
              : wait == 0 ? ur_submit(loop, 0) : ur_submit_timeout(loop, wait);
    loop->busy_looked = 0;
    if (ret < 0 && ur_foreign(loop)) ur_foreign_error(L, loop);
    if (ret < 0)
      luaL_error(L, "uring.run: io_uring_enter: %s", strerror(-ret));
  }
  ur_reap(loop);
}

static int run_body (lua_State *L) {
  ur_loop *loop = (ur_loop *)lua_touserdata(L, 1);
  while (loop->live_tasks > 0 || loop->canceling > 0 || loop->fd_closing > 0) {
    /* a task fork()ed: the child runs on in this frame, without the ring */
    if (ur_foreign(loop)) ur_foreign_error(L, loop);
    ur_loop_turn(L, loop, -1);
  }
  return 0;
}

/*
 * uring.run(fn, ...): run fn as the main task until every task ended.
 * Returns fn's results; raises the main task's error (with traceback),
 * else the first error of a task nobody joined.
 */
static int l_run (lua_State *L) {
  ur_loop *loop;
  ur_task *m;
  ur_runsig sig;
  int st, nargs = lua_gettop(L) - 1;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  loop = ur_loop_ready(L);
  if (loop->pid != getpid()) return ur_foreign_error(L, loop);
  if (loop->running)
    return luaL_error(L, "uring.run: the loop is already running "
                      "(use uring.spawn inside a task)");
  ur_hooks_call(loop, run_start, loop);
  /* the main task's registry slot first: once the task is queued nothing
   * may raise (out of memory), or the next run would begin by running it */
  if (loop->main_ref != LUA_NOREF)      /* a run that could not start */
    luaL_unref(L, LUA_REGISTRYINDEX, loop->main_ref);
  lua_pushboolean(L, 0);
  loop->main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  ur_task_new(L, loop, nargs);          /* fn, args -> task */
  m = (ur_task *)lua_touserdata(L, -1);
  lua_pushvalue(L, -1);
  lua_rawseti(L, LUA_REGISTRYINDEX, loop->main_ref);   /* no allocation */
  loop->running = 1;
  loop->main_failed = 0;
  ur_runsig_arm(L, loop, &sig);
  lua_pushcfunction(L, run_body);
  lua_pushlightuserdata(L, loop);
  st = lua_pcall(L, 1, 0, 0);
  loop->running = 0;
  if (ur_runsig_disarm(loop, &sig) > 0 && st == LUA_OK) {
    /* Ctrl-C: every task was cancelled and has unwound */
    if (loop->error_ref != LUA_NOREF) {
      luaL_unref(L, LUA_REGISTRYINDEX, loop->error_ref);
      loop->error_ref = LUA_NOREF;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, loop->main_ref);
    loop->main_ref = LUA_NOREF;
    lua_pushliteral(L, "interrupted");
    return lua_error(L);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, loop->main_ref);
  loop->main_ref = LUA_NOREF;
  if (st != LUA_OK) {
    /* the loop itself failed (memory, io_uring_enter): end every task */
    loop->running = 1;
    cancel_all_tasks(L, loop);
    lua_pushcfunction(L, run_body);
    lua_pushlightuserdata(L, loop);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
    loop->running = 0;
    if (loop->error_ref != LUA_NOREF) {   /* the loop's error wins; none */
      luaL_unref(L, LUA_REGISTRYINDEX, loop->error_ref);  /* is left for */
      loop->error_ref = LUA_NOREF;                         /* the next run */
    }
    return lua_error(L);
  }
  if (loop->error_ref != LUA_NOREF && loop->error_task == 0) {
    /* a deadlock: it explains the "canceled" the main task saw */
    lua_rawgeti(L, LUA_REGISTRYINDEX, loop->error_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, loop->error_ref);
    loop->error_ref = LUA_NOREF;
    return lua_error(L);
  }
  if (m->status == UR_FAILED || m->status == UR_CANCELED) {
    if (loop->error_ref != LUA_NOREF) {
      luaL_unref(L, LUA_REGISTRYINDEX, loop->error_ref);
      loop->error_ref = LUA_NOREF;
    }
    /* its record: a table, or the memory error that kept it from one */
    if (lua_getiuservalue(L, -1, 2) == LUA_TTABLE) lua_rawgeti(L, -1, 1);
    return lua_error(L);
  }
  if (loop->error_ref == LUA_REFNIL) {  /* a task's, lost for memory */
    loop->error_ref = LUA_NOREF;
    lua_pushliteral(L, "not enough memory");
    return lua_error(L);
  }
  if (loop->error_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, loop->error_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, loop->error_ref);
    loop->error_ref = LUA_NOREF;
    return lua_error(L);
  }
  return ur_task_results(L, m);
}

/* In a forked child: let go of the parent's ring without a word to the
 * kernel (the ring is the parent's); our copies of its memory are private,
 * so they are freed.  The next use sets up a ring of the child's own. */
void ur_loop_forget (ur_loop *loop) {
  int fd = loop->ring_ok ? loop->ring.ring_fd : -1;
  loop->ring_ok = 0;            /* nothing may unregister from it now */
  ur_hooks_call(loop, forget, loop);   /* our copies; the next ring anew */
  if (fd >= 0) {
    close(fd);                  /* our copy of the parent's ring */
    memset(&loop->ring, 0, sizeof loop->ring);
  }
  ur_fdtab_forget(loop);        /* the parent's requests are not ours */
  loop->inflight = loop->background = loop->canceling = 0;
  loop->setup_flags = 0;
  loop->pending = loop->lazy = 0;
  loop->nlate = 0;
  loop->busy_turns = 0;
  loop->pid = 0;
  memset(&loop->stats, 0, sizeof loop->stats);
}

/*
 * Loop shutdown (lua_close, uring.configure): cancel every request and
 * reap until the kernel holds none, then tear the ring down.  If the
 * kernel will not give requests back, their memory is leaked rather than
 * freed under it.
 */
static void loop_shutdown (ur_loop *loop) {
  if (!loop->ring_ok) return;
  if (loop->pid != getpid()) {   /* a forked child */
    ur_loop_forget(loop);
    ur_req_free_all(loop);
    return;
  }
  loop->closing = 1;
  for (int tries = 0; loop->inflight > 0 && tries < 100; tries++) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);
    struct __kernel_timespec ts = { 0, 100 * 1000 * 1000 };
    struct io_uring_cqe *cqe;
    if (sqe) {
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY |
                                     IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, 0);
    }
    loop->stats.enters++;
    io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, &ts, NULL);
    ur_reap(loop);
  }
  /* what was registered with the ring goes with it; what the kernel
   * may still write into is leaked rather than freed under it */
  ur_hooks_call(loop, ring_teardown, loop, loop->inflight == 0);
  io_uring_queue_exit(&loop->ring);
  loop->ring_ok = 0;
  if (loop->inflight == 0) ur_req_free_all(loop);
  loop->nlate = 0;              /* their requests were cancelled with all */
  loop->closing = 0;
}

static int loop_gc (lua_State *L) {
  ur_loop *loop = (ur_loop *)luaL_checkudata(L, 1, UR_LOOP_MT);
  loop_shutdown(loop);
  if (loop->inflight == 0) ur_fdtab_free(loop);
  ur_trace_free(loop);
  ur_hooks_call(loop, close, loop);
  return 0;
}

/* uring.configure{entries =, sqpoll =, sq_thread_idle =, fixed_buffers =,
 * fixed_buffer_size =, fixed_files =, send_zc =, recv_multishot =}: ring
 * options; an idle ring is torn down and set up again with them on next
 * use. */
static int l_configure (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  lua_Integer entries, idle, nfixed, fsize, nfiles, nthreads;
  size_t zc_min;
  int mshot;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (loop->running)
    return luaL_error(L, "configure: the loop is running; call it before "
                      "uring.run");
  entries = ur_intfield(L, 1, 1, "entries", loop->entries, 1, 32768);
  idle = ur_intfield(L, 1, 1, "sq_thread_idle", loop->sq_thread_idle, 0,
                     UINT32_MAX);        /* the kernel's field is a u32 */
  nfixed = ur_intfield(L, 1, 1, "fixed_buffers", loop->want_fixed, 0,
                       UR_FIXED_MAX);
  /* whole pages, so every slot suits O_DIRECT; the kernel takes <= 1 GiB */
  fsize = ur_intfield(L, 1, 1, "fixed_buffer_size", loop->want_fixed_size, 4096,
                      1 << 30);
  if (fsize % 4096 != 0)
    return luaL_argerror(L, 1, "fixed_buffer_size must be a multiple of 4096");
  nfiles = ur_intfield(L, 1, 1, "fixed_files", loop->want_ffiles, 0,
                       UR_FFILES_MAX);
  /* uring.thread's workers at most (0: the CPU count); no ring needed */
  nthreads = ur_intfield(L, 1, 1, "threads", loop->want_threads, 0, 256);
  zc_min = ur_send_zc_option(L, 1, loop->send_zc_min);   /* send_zc.c */
  mshot = ur_recv_mshot_option(L, 1, loop->recv_mshot);
  lua_getfield(L, 1, "sqpoll");
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1))
      return luaL_argerror(L, 1, lua_pushfstring(L, "boolean sqpoll expected, "
                           "got %s", luaL_typename(L, -1)));
    loop->want_sqpoll = lua_toboolean(L, -1);
  }
  loop->sq_thread_idle = (unsigned)idle;
  loop->entries = (unsigned)entries;
  loop->want_fixed = (uint32_t)nfixed;
  loop->want_fixed_size = (uint32_t)fsize;
  loop->want_ffiles = (uint32_t)nfiles;
  loop->want_threads = (uint32_t)nthreads;
  loop->send_zc_min = zc_min;
  loop->recv_mshot = (uint8_t)mshot;
  if (loop->ring_ok && loop->live_tasks == 0) loop_shutdown(loop);
  return 0;
}

static int l_now (lua_State *L) {
  lua_pushnumber(L, ur_now());
  return 1;
}

void ur_register_loop (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"run", l_run}, {"configure", l_configure}, {"now", l_now},
    {NULL, NULL}
  };
  luaL_newmetatable(L, UR_LOOP_MT);
  lua_pushcfunction(L, loop_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  ur_loop_get(L);                       /* exists before any upvalue */
  ur_setfuncs(L, funcs);
}
