/*
 * process.c: what uring.run does to the process around the loop.
 *
 * - SIGINT cancels the run's main task: a signalfd polled through the
 *   ring (below);
 * - SIGPIPE is blocked while the loop runs, so a write to a closed pipe
 *   fails with EPIPE instead of killing the process;
 * - a fork()ed child learns it is one (pthread_atfork) before it touches
 *   the parent's ring.
 * loop.c's l_run arms these around the loop (ur_runsig_arm, _disarm).
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "uring.h"

volatile int ur_forked;

static void in_child (void) { ur_forked = 1; }

/* Once per process: a fork()ed child must learn it is one before it
 * touches the ring (posix_spawn, which execs at once, runs no hook). */
void ur_fork_watch (void) {
  static int hooked;
  if (!hooked && pthread_atfork(NULL, NULL, in_child) == 0) hooked = 1;
}

/*
 * SIGINT during uring.run (DESIGN: "SIGINT cancels uring.run's main task"),
 * done as lua.c does it, plus a wake-up for the ring.  Unless the script
 * already blocks or ignores SIGINT, run installs a handler for the run's
 * length.  The handler, plain async-signal-safe C:
 *  - if a task is running Lua right now, sets a count hook on its
 *    coroutine that raises "interrupted" at the next instruction
 *    (lua_sethook may be called from a signal handler), so even
 *    `while true do end` stops;
 *  - writes an eventfd that the ring polls (multishot, a background
 *    request), so the loop wakes and, in sigint_cqe, cancels every task
 *    as when the main task fails; <close> variables run, and run raises
 *    "interrupted".
 * A task that waits in core._sigint_wait() (the REPL's watcher) takes a
 * Ctrl-C that found no busy task instead: it is woken, nothing is
 * cancelled.  A uring.signal("INT") blocks the signal, which then goes
 * to its signalfd and never to this handler.  During os.execute and
 * io.popen's close the C library ignores SIGINT in the parent (the child
 * gets it), as in plain lua.
 */

static ur_runsig *volatile armed;   /* the run whose handler is in place */
static ur_loop *volatile armed_loop;

static void interrupt_hook (lua_State *co, lua_Debug *ar) {
  (void)ar;
  lua_sethook(co, NULL, 0, 0);
  lua_pushliteral(co, "interrupted");   /* as is: the word run raises */
  lua_error(co);
}

static void on_sigint (int signo) {
  int saved = errno;
  ur_runsig *s = armed;
  ur_loop *loop = armed_loop;
  uint64_t one = 1;
  (void)signo;
  if (s && loop) {
    ur_task *t = loop->current;
    if (t && t->co) {           /* Lua is running in t: stop it there */
      lua_sethook(t->co, interrupt_hook,
                  LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
      atomic_fetch_add(&s->busy, 1);
    }
    atomic_fetch_add(&s->pending, 1);
    if (write(s->h.fd, &one, sizeof one) < 0) {}   /* full: woken already */
  }
  errno = saved;
}

static void sigint_cqe (ur_loop *loop, ur_req *r) {
  ur_runsig *s = (ur_runsig *)r->obj;
  if (r->state == UR_REQ_DONE) s->req = NULL;
  if (r->res > 0) {
    uint64_t n;
    int hits, busy;
    /* drained first, then taken: a Ctrl-C after the drain wakes the ring
     * again, one after the exchange is counted then; none is lost */
    while (read(s->h.fd, &n, sizeof n) > 0) {}
    hits = atomic_exchange(&s->pending, 0);
    busy = atomic_exchange(&s->busy, 0);
    if (hits > 0 && s->watchers.head == NULL) {
      s->hits += hits;          /* run raises "interrupted" */
      loop->main_failed = 1;    /* next turn: cancel every task */
    }
    else if (hits > busy)       /* the waiter decides; nothing is lost */
      ur_waitq_wake_all(loop, &s->watchers);
  }
  if (r->state == UR_REQ_DONE) ur_req_free(loop, r);
}

static void sigint_arm (lua_State *L, ur_loop *loop, ur_runsig *s) {
  sigset_t cur;
  struct sigaction sa;
  struct io_uring_sqe *sqe;
  int trace = loop->trace_ref, fd;
  ur_handle_init(&s->h);
  s->hits = 0;
  atomic_init(&s->pending, 0);
  atomic_init(&s->busy, 0);
  s->watchers.head = s->watchers.tail = NULL;
  s->req = NULL;
  (void)L;
  /* one handler per process: a run in another Lua state has it */
  if (armed != NULL) return;
  /* no poll on this kernel (the probe): nothing would wake the loop; leave
   * SIGINT to end the process, as it ends a plain Lua script */
  if (ur_op_missing(loop, IORING_OP_POLL_ADD)) return;
  if (sigprocmask(SIG_BLOCK, NULL, &cur) != 0 || sigismember(&cur, SIGINT))
    return;                 /* the script handles SIGINT itself */
  if (sigaction(SIGINT, NULL, &s->old) != 0 || s->old.sa_handler == SIG_IGN)
    return;                 /* ignored (a background job): leave it so */
  fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0 || ur_handle_adopt(loop, &s->h, fd) < 0) return;
  /* no memory for the request: no SIGINT handling this run (raising here
   * would leave the run marked running and the fd open) */
  s->req = ur_req_new(NULL, loop, IORING_OP_POLL_ADD);
  if (s->req == NULL) {
    ur_handle_close(loop, &s->h, NULL);
    return;
  }
  s->req->obj = s;
  s->req->on_cqe = sigint_cqe;
  s->req->background = 1;
  sqe = ur_get_sqe(loop);
  io_uring_prep_poll_multishot(sqe, s->h.fd, POLLIN);
  ur_handle_sqe(loop, &s->h, s->req, sqe);
  loop->trace_ref = LUA_NOREF;        /* the loop's own: not traced */
  ur_req_submitted(loop, s->req, sqe);
  loop->trace_ref = trace;
  s->req->task = NULL;
  armed_loop = loop;
  armed = s;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESTART;   /* a read(2) in Lua's io is not cut short */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

/* After the run: the old handler back, the poll drained, a SIGINT that
 * the loop had not reaped yet counted.  Returns the SIGINTs seen. */
static int sigint_disarm (ur_loop *loop, ur_runsig *s) {
  int trace = loop->trace_ref;
  uint64_t n;
  if (s->h.fd < 0) return 0;
  sigaction(SIGINT, &s->old, NULL);
  armed = NULL;
  armed_loop = NULL;
  loop->trace_ref = LUA_NOREF;
  if (s->req) ur_req_cancel(loop, s->req);
  while (s->req) {
    if (ur_submit(loop, 1) < 0) break;
    ur_reap(loop);
  }
  loop->trace_ref = trace;
  while (read(s->h.fd, &n, sizeof n) > 0) {}
  if (s->watchers.head == NULL) s->hits += atomic_exchange(&s->pending, 0);
  ur_handle_close(loop, &s->h, s);
  return s->hits;
}

static int sigint_wait_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  (void)status; (void)ctx;
  ur_check_interrupt(L, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* core._sigint_wait() -> true at the next Ctrl-C that found no task
 * running Lua (that one is interrupted instead); false at once when this
 * run does not handle SIGINT (the caller then uses uring.signal).  While
 * a task waits here, Ctrl-C cancels nothing: the waiter decides. */
static int l_sigint_wait (lua_State *L) {
  ur_task *t = ur_task_current(L, "sigint_wait");
  ur_runsig *s = armed;
  if (s == NULL || armed_loop != t->loop) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return ur_park(L, t, &s->watchers, "interrupt", 0, sigint_wait_k);
}

void ur_register_process (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_sigint_wait", l_sigint_wait},
    {NULL, NULL}
  };
  ur_setfuncs(L, funcs);
}

/*
 * A write to a pipe whose reader is gone (a popen'd child that exited)
 * raises SIGPIPE in the thread that submitted it, which is ours, and its
 * default action kills the process.  While the loop runs SIGPIPE is
 * blocked, so such a write fails with EPIPE instead (as a send does with
 * MSG_NOSIGNAL); the SIGPIPEs it left pending are taken before the mask
 * comes back.  A script that blocks SIGPIPE itself is left alone.
 */
static int sigpipe_block (void) {
  sigset_t set, cur;
  if (sigprocmask(SIG_BLOCK, NULL, &cur) != 0 || sigismember(&cur, SIGPIPE))
    return 0;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  return sigprocmask(SIG_BLOCK, &set, NULL) == 0;
}

static void sigpipe_unblock (int blocked) {
  sigset_t set;
  struct timespec zero = { 0, 0 };
  if (!blocked) return;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  while (sigtimedwait(&set, NULL, &zero) == SIGPIPE) {}
  sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* Before the loop runs: SIGINT through the ring, SIGPIPE blocked. */
void ur_runsig_arm (lua_State *L, ur_loop *loop, ur_runsig *s) {
  sigint_arm(L, loop, s);
  s->sigpipe = sigpipe_block();
}

/* After it: both as they were.  Returns the number of SIGINTs seen. */
/* A Ctrl-C the loop has not taken yet: a busy turn then looks for the
 * eventfd's CQE (the loop's own request, otherwise left for the next wait). */
int ur_runsig_pending (void) {
  ur_runsig *s = armed;
  return s != NULL && atomic_load_explicit(&s->pending, memory_order_relaxed) > 0;
}

int ur_runsig_disarm (ur_loop *loop, ur_runsig *s) {
  sigpipe_unblock(s->sigpipe);
  return sigint_disarm(loop, s);
}
