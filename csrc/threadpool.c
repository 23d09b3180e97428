/*
 * threadpool.c: uring.thread(fn | chunk, ...) -- plain Lua on a worker
 * thread, in a lua_State of its own, while the loop keeps running.
 *
 * A job carries the code (a dumped function without upvalues other than
 * _ENV, or chunk text), its arguments and later its results, all as
 * bytes (wire.c), so the two states never share a Lua value.  A small
 * pool of detached workers (thread.c) takes jobs from a FIFO; each job
 * gets a fresh state with the standard libraries (made ahead, while the
 * worker is idle), closed after its answer has gone out.
 * The answer comes back through the ring as dns.c's does: the worker
 * writes an eventfd, and the waiting task sleeps in an IORING_OP_READ of
 * it, so other tasks run meanwhile and nothing polls.
 *
 * Lifetime: the job is shared by the worker and the waiting side (a
 * "hold" userdata on the task's stack) and freed by whoever drops the
 * last reference of an atomic count; only then is its eventfd closed, so
 * a worker never writes to a closed or reused fd.  A waiting side that
 * goes away early (task cancelled, timeout, lua_close) marks the job
 * abandoned: a job not yet started is skipped, and one running is
 * stopped as lua.c stops a script on Ctrl-C: the canceller sends the
 * worker a signal (UR_STOP_SIGNAL, a real-time one), whose handler, on
 * the worker's own thread, sets a hook in the job's state that raises
 * "canceled".  No other thread ever touches that lua_State, and no hook
 * is set until then: a count hook alone would make the VM trace every
 * instruction (2.5x slower).  If the host program already handles that
 * signal, jobs fall back to a count hook.  A job stuck inside a C
 * function (os.execute, a blocking read) cannot be stopped; it finishes
 * on its own and its results are dropped.  Nothing the loop waits for:
 * uring.run returns without it.
 *
 * The pool lives as long as its loop (the loop's close hook stops it);
 * each worker holds a reference, so one still busy at lua_close frees
 * the pool when it ends.  thread.c keeps this module's code mapped.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "uring.h"
#include <lualib.h>

#define THREAD_HOLD_MT "uring.thread.job"
#define POOL_MAX 256
#define HOOK_EVERY 1000         /* instructions between abandon checks,
                                   when no stop signal could be had */
#define UR_STOP_SIGNAL (SIGRTMAX - 2)

typedef struct ur_pool ur_pool;

typedef struct job {
  atomic_int refs;        /* worker + hold; the last one frees */
  atomic_int abandoned;   /* the waiting side is gone: stop */
  atomic_int done;        /* ok/out are final (release) */
  int efd;                /* the worker writes 1 here when done */
  int is_text;            /* code is chunk text, else a dumped function */
  int ok;                 /* out holds the results; else one error string */
  ur_wire code, args, out;
  ur_wire paths;          /* package.path, package.cpath for the state */
  ur_pool *pool;          /* set when queued; the hook reads stopping */
  struct job *next;       /* the queue, then the pool's running list */
  struct job *prev;       /* the running list */
  pthread_t worker;       /* while running: the thread to signal */
  lua_State *S;           /* while running: its state (worker's only) */
} job;

struct ur_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job *head, *tail;       /* jobs waiting for a worker */
  job *running;           /* jobs a worker runs now (to signal them) */
  int size;               /* workers wanted at most */
  int started, idle;
  int refs;               /* the loop + each worker; under mu */
  atomic_int stopping;    /* the loop is gone: abandon everything */
  struct spare *spares;   /* each worker's next state; under mu */
  struct ur_pool *pnext, *pprev;   /* every pool alive (pools_mu) */
};

/* Every pool not yet freed, also one whose loop let it go (closed, or
 * forgotten by a forked child) while its workers finish: a forked child
 * has none of them, and its copy of a pool stays pointed to from here,
 * so a leak checker sees the parent's memory, not a leak. */
static pthread_mutex_t pools_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ur_pool *pools;

/* A worker's next state, made while it has no job.  Held in a list of
 * the pool's, not on the worker's stack, so a forked child (whose copy
 * of the pool is kept, pool_forget) still points to every one. */
typedef struct spare {
  lua_State *S;
  struct spare *next, *prev;
} spare;

typedef struct hold { job *j; } hold;

static void pool_unref_locked (ur_pool *p);

static void job_unref (job *j) {
  if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
    return;
  if (j->pool) {                /* the pool outlives every job given it */
    pthread_mutex_lock(&j->pool->mu);
    pool_unref_locked(j->pool);
  }
  ur_wire_free(&j->code);
  ur_wire_free(&j->args);
  ur_wire_free(&j->out);
  ur_wire_free(&j->paths);
  /* no request names it any more: the waiting side lets go after its
   * READ's CQE (or at lua_close, when the ring has been drained) */
  ur_fd_release(j->efd);
  free(j);
}

static void pool_unref_locked (ur_pool *p) {
  int last = --p->refs == 0;
  pthread_mutex_unlock(&p->mu);
  if (last) {
    pthread_mutex_lock(&pools_mu);
    if (p->pprev) p->pprev->pnext = p->pnext;
    else pools = p->pnext;
    if (p->pnext) p->pnext->pprev = p->pprev;
    pthread_mutex_unlock(&pools_mu);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
  }
}

/* --- the worker side: never touches the loop or the caller's state --- */

static void stop_hook (lua_State *S, lua_Debug *ar) {
  job *j = *(job **)lua_getextraspace(S);
  (void)ar;
  if (atomic_load_explicit(&j->abandoned, memory_order_relaxed)
      || atomic_load_explicit(&j->pool->stopping, memory_order_relaxed))
    luaL_error(S, "canceled");
}

/* The job this worker runs, for the stop signal's handler.  Set before
 * the signal is unblocked and read only on this thread. */
static __thread job *volatile current_job;
static int stop_signal_ok;      /* our handler owns UR_STOP_SIGNAL */
static pthread_once_t stop_once = PTHREAD_ONCE_INIT;

/* On the worker's own thread, between two VM instructions or inside a C
 * call: if the job is abandoned, arm the hook that raises (lua.c's
 * laction does the same for Ctrl-C).  A late signal for a job already
 * done finds the next job not abandoned and does nothing. */
static void on_stop_signal (int signo) {
  job *j = current_job;
  (void)signo;
  if (j && j->S && (atomic_load(&j->abandoned) || atomic_load(&j->pool->stopping)))
    lua_sethook(j->S, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void stop_signal_install (void) {
  struct sigaction sa, old;
  if (sigaction(UR_STOP_SIGNAL, NULL, &old) != 0 || old.sa_handler != SIG_DFL
      || (old.sa_flags & SA_SIGINFO))
    return;                     /* the program's own: leave it */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  stop_signal_ok = sigaction(UR_STOP_SIGNAL, &sa, NULL) == 0;
}

/* Ask the worker running j to stop it; under the pool's lock, so the
 * worker is still on j (it leaves the running list under the lock). */
static void job_signal_locked (job *j) {
  if (stop_signal_ok) pthread_kill(j->worker, UR_STOP_SIGNAL);
}

static int traceback (lua_State *S) {
  const char *msg = lua_tostring(S, 1);
  if (msg == NULL) msg = lua_pushfstring(S, "(error object is a %s value)",
                                         luaL_typename(S, 1));
  luaL_traceback(S, S, msg, 1);
  return 1;
}

/* The job, inside the state's protection: any raise here (memory, a
 * syntax error) becomes the job's error. */
static int job_body (lua_State *S) {
  job *j = (job *)lua_touserdata(S, 1);
  int base, nargs, nres, st;
  char err[160];
  /* the caller's module paths, so require finds what it finds */
  lua_getglobal(S, "package");
  if (ur_wire_decode(S, &j->paths) == 2) {
    lua_setfield(S, -3, "cpath");
    lua_setfield(S, -2, "path");
  }
  lua_settop(S, 1);
  lua_pushcfunction(S, traceback);
  base = lua_gettop(S);
  /* text only for chunk text: a user's string is never taken as bytecode */
  if (luaL_loadbufferx(S, j->code.p, j->code.len, "=thread",
                       j->is_text ? "t" : "b") != LUA_OK)
    return lua_error(S);
  nargs = ur_wire_decode(S, &j->args);
  if (!stop_signal_ok)          /* no signal to stop us: look, now and then */
    lua_sethook(S, stop_hook, LUA_MASKCOUNT, HOOK_EVERY);
  st = lua_pcall(S, nargs, LUA_MULTRET, base);
  lua_sethook(S, NULL, 0, 0);
  if (st != LUA_OK) return lua_error(S);   /* the traceback */
  nres = lua_gettop(S) - base;
  for (int i = 1; i <= nres; i++)
    if (ur_wire_encode(S, base + i, &j->out, err, sizeof err) < 0)
      return luaL_error(S, "thread: result #%d: %s", i, err);
  j->ok = 1;
  return 0;
}

static int open_libs (lua_State *S) {
  luaL_openlibs(S);
  return 0;
}

/* A new state with the standard libraries, or NULL (out of memory).  A
 * worker makes the next one while it has no job, so a job's round trip
 * pays for neither making nor closing one. */
static lua_State *fresh_state (void) {
  lua_State *S = luaL_newstate();
  if (S == NULL) return NULL;
  lua_pushcfunction(S, open_libs);
  if (lua_pcall(S, 0, 0, 0) != LUA_OK) {
    lua_close(S);
    return NULL;
  }
  return S;
}

/* Run j in S (fresh_state's; NULL: out of memory, no message). */
static void job_run (job *j, lua_State *S) {
  sigset_t stop;
  /* a canceller that marked it abandoned before it was on the running
   * list sent no signal: look (after the list, so one is never missed) */
  if (atomic_load(&j->abandoned) || atomic_load(&j->pool->stopping))
    return;                     /* nobody waits: do not even start */
  if (S == NULL) return;        /* ok = 0, no message: out of memory */
  *(job **)lua_getextraspace(S) = j;
  j->S = S;
  current_job = j;
  sigemptyset(&stop);
  if (stop_signal_ok) {
    sigaddset(&stop, UR_STOP_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &stop, NULL);
  }
  lua_pushcfunction(S, job_body);
  lua_pushlightuserdata(S, j);
  if (lua_pcall(S, 1, 0, 0) != LUA_OK) {
    char err[64];
    ur_wire_free(&j->out);
    j->ok = 0;
    if (ur_wire_encode(S, -1, &j->out, err, sizeof err) < 0)
      ur_wire_free(&j->out);   /* an error object we cannot copy */
  }
  if (stop_signal_ok) pthread_sigmask(SIG_BLOCK, &stop, NULL);
  current_job = NULL;
  j->S = NULL;
}

static void *worker (void *arg) {
  ur_pool *p = (ur_pool *)arg;
  spare local = { NULL, NULL, NULL };
  spare *sp = malloc(sizeof *sp);     /* (the stack's, out of memory) */
  if (sp == NULL) sp = &local;
  sp->S = fresh_state();
  pthread_mutex_lock(&p->mu);
  sp->prev = NULL;
  sp->next = p->spares;
  if (p->spares) p->spares->prev = sp;
  p->spares = sp;
  for (;;) {
    job *j;
    lua_State *S;
    while (p->head == NULL && !atomic_load(&p->stopping)
           && p->started <= p->size) {
      p->idle++;
      pthread_cond_wait(&p->cv, &p->mu);
      p->idle--;
    }
    /* the pool was made smaller (configure), or is stopping: leave;
     * a stopping pool's queued jobs are skipped by the ones left */
    if (p->head == NULL || p->started > p->size) break;
    j = p->head;
    p->head = j->next;
    if (p->head == NULL) p->tail = NULL;
    j->worker = pthread_self();     /* on the running list: signalable */
    j->prev = NULL;
    j->next = p->running;
    if (p->running) p->running->prev = j;
    p->running = j;
    pthread_mutex_unlock(&p->mu);
    S = sp->S ? sp->S : fresh_state();
    sp->S = NULL;
    job_run(j, S);
    pthread_mutex_lock(&p->mu);
    if (j->prev) j->prev->next = j->next;
    else p->running = j->next;
    if (j->next) j->next->prev = j->prev;
    pthread_mutex_unlock(&p->mu);
    atomic_store_explicit(&j->done, 1, memory_order_release);
    {
      uint64_t one = 1;   /* the fd is open: our reference keeps it so */
      while (write(j->efd, &one, sizeof one) < 0 && errno == EINTR) {}
    }
    job_unref(j);
    /* after the answer went out: the caller does not wait for these */
    if (S) lua_close(S);
    if (!atomic_load(&p->stopping)) sp->S = fresh_state();
    pthread_mutex_lock(&p->mu);
  }
  if (sp->prev) sp->prev->next = sp->next;
  else p->spares = sp->next;
  if (sp->next) sp->next->prev = sp->prev;
  p->started--;
  pool_unref_locked(p);
  if (sp->S) lua_close(sp->S);
  if (sp != &local) free(sp);
  return NULL;
}

/* --- the loop side --- */

static int default_size (void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > POOL_MAX ? POOL_MAX : (int)n;
}

static ur_pool *pool_get (ur_loop *loop) {
  ur_pool *p = loop->pool;
  pthread_once(&stop_once, stop_signal_install);
  if (p == NULL) {
    if ((p = (ur_pool *)calloc(1, sizeof *p)) == NULL) return NULL;
    if (pthread_mutex_init(&p->mu, NULL) != 0) { free(p); return NULL; }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
      pthread_mutex_destroy(&p->mu);
      free(p);
      return NULL;
    }
    p->refs = 1;              /* the loop's */
    atomic_init(&p->stopping, 0);
    pthread_mutex_lock(&pools_mu);
    p->pnext = pools;
    if (pools) pools->pprev = p;
    pools = p;
    pthread_mutex_unlock(&pools_mu);
    loop->pool = p;
  }
  p->size = loop->want_threads ? (int)loop->want_threads : default_size();
  return p;
}

/* Queue j (the pool takes a reference); start a worker if none is idle
 * and the pool may grow.  0, or -1 when no worker exists or can start. */
static int pool_submit (ur_pool *p, job *j) {
  int rc = 0;
  pthread_mutex_lock(&p->mu);
  if (p->idle == 0 && p->started < p->size) {
    p->refs++;
    p->started++;
    if (ur_thread_start(worker, p) != 0) {
      p->refs--;
      p->started--;
      if (p->started == 0) rc = -1;   /* nobody would ever take it */
    }
  }
  if (rc == 0) {
    atomic_fetch_add_explicit(&j->refs, 1, memory_order_relaxed);
    p->refs++;                  /* the job's, dropped when it is freed */
    j->pool = p;
    j->next = NULL;
    if (p->tail) p->tail->next = j;
    else p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return rc;
}

/* The loop is collected: every job is abandoned, idle workers leave,
 * busy ones leave after their job (whose hook stops it). */
/* A forked child has none of the parent's workers, and the pool's lock
 * may have been held at the fork: the child lets the copy go (never
 * freed: a worker's state in it may have been mid-use at the fork; the
 * list of pools still points to it). */
static void pool_forget (ur_loop *loop) {
  loop->pool = NULL;
}

static void pool_close (ur_loop *loop) {
  ur_pool *p = loop->pool;
  if (p == NULL) return;
  if (ur_foreign(loop)) {       /* a forked child's lua_close: not its pool */
    pool_forget(loop);
    return;
  }
  loop->pool = NULL;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->stopping, 1);
  for (job *j = p->running; j; j = j->next) job_signal_locked(j);
  pthread_cond_broadcast(&p->cv);
  pool_unref_locked(p);
}


static void hold_release (hold *h) {
  job *j = h->j;
  if (j) {
    h->j = NULL;
    if (!atomic_load_explicit(&j->done, memory_order_acquire)) {
      ur_pool *p = j->pool;     /* alive: the job holds it */
      atomic_store(&j->abandoned, 1);
      if (p) {
        pthread_mutex_lock(&p->mu);
        for (job *r = p->running; r; r = r->next)
          if (r == j) job_signal_locked(j);
        pthread_mutex_unlock(&p->mu);
      }
    }
    job_unref(j);
  }
}

static int hold_gc (lua_State *L) {
  hold_release((hold *)luaL_checkudata(L, 1, THREAD_HOLD_MT));
  return 0;
}

/* Why the function at idx cannot run in another state, or NULL. */
static const char *fn_problem (lua_State *L, int idx) {
  const char *name;
  if (lua_iscfunction(L, idx)) return "a C function cannot be copied";
  name = lua_getupvalue(L, idx, 1);
  if (name == NULL) return NULL;            /* no upvalue at all */
  lua_pop(L, 1);
  if (strcmp(name, "_ENV") == 0) {          /* globals: the thread's own */
    name = lua_getupvalue(L, idx, 2);
    if (name == NULL) return NULL;
    lua_pop(L, 1);
  }
  return lua_pushfstring(L, "function has upvalue '%s' (only globals reach "
                         "a thread: pass values as arguments)", name);
}

static int dump_writer (lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  ur_wire *w = (ur_wire *)ud;
  ur_wire tmp = *w;
  if (n == 0) return 0;         /* an empty chunk: w->p may be NULL */
  if (tmp.cap - tmp.len < n) {
    size_t cap = tmp.cap ? tmp.cap : 256;
    char *q;
    while (cap - tmp.len < n) cap *= 2;
    if ((q = (char *)realloc(tmp.p, cap)) == NULL) return 1;
    tmp.p = q;
    tmp.cap = cap;
  }
  memcpy(tmp.p + tmp.len, p, n);
  tmp.len += n;
  *w = tmp;
  return 0;
}

static int thread_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res, n;
  hold *h = (hold *)luaL_checkudata(L, (int)ctx, THREAD_HOLD_MT);
  job *j = h->j;
  (void)status;
  ur_req_free(t->loop, r);
  if (ur_interrupted(t) || res < 0
      || !atomic_load_explicit(&j->done, memory_order_acquire)) {
    hold_release(h);            /* now, not at the next GC: stop the job */
    ur_check_interrupt(L, t);
    return ur_pushfail(L, res < 0 ? res : -EIO, "thread");
  }
  lua_settop(L, (int)ctx);
  if (!j->ok) {
    luaL_pushfail(L);
    if (j->out.len == 0) lua_pushliteral(L, "thread: not enough memory");
    else ur_wire_decode(L, &j->out);
    hold_release(h);
    return 2;
  }
  n = ur_wire_decode(L, &j->out);
  hold_release(h);
  return n;
}

/* uring.thread(fn | chunk, ...) -> results | nil, msg */
static int l_thread (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  int nargs = lua_gettop(L) - 1, is_text, hidx;
  ur_task *t;
  hold *h;
  job *j;
  ur_req *r;
  ur_pool *p;
  struct io_uring_sqe *sqe;
  char err[160];
  const char *why;
  if (lua_type(L, 1) == LUA_TSTRING) is_text = 1;
  else if (lua_type(L, 1) == LUA_TFUNCTION) is_text = 0;
  else return luaL_typeerror(L, 1, "function or string");
  if (!is_text && (why = fn_problem(L, 1)) != NULL)
    return luaL_argerror(L, 1, why);
  t = ur_task_current(L, "thread");
  /* the hold first: once it holds the job, any raise frees it */
  h = (hold *)lua_newuserdatauv(L, sizeof *h, 0);
  h->j = NULL;
  luaL_setmetatable(L, THREAD_HOLD_MT);
  hidx = lua_gettop(L);
  if ((j = (job *)calloc(1, sizeof *j)) == NULL)
    return luaL_error(L, "thread: not enough memory");
  atomic_init(&j->refs, 1);
  atomic_init(&j->abandoned, 0);
  atomic_init(&j->done, 0);
  j->efd = -1;
  j->is_text = is_text;
  h->j = j;
  if (is_text) {
    size_t n;
    const char *s = lua_tolstring(L, 1, &n);
    if (dump_writer(L, s, n, &j->code) != 0)
      return luaL_error(L, "thread: not enough memory");
  }
  else {
    lua_pushvalue(L, 1);
    if (lua_dump(L, dump_writer, &j->code, 0) != 0)
      return luaL_error(L, "thread: not enough memory");
    lua_pop(L, 1);
  }
  for (int i = 2; i <= nargs + 1; i++)
    if (ur_wire_encode(L, i, &j->args, err, sizeof err) < 0)
      return luaL_argerror(L, i, err);
  lua_getglobal(L, "package");
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_getfield(L, -1, "path");
    lua_getfield(L, -2, "cpath");
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING
        && (ur_wire_encode(L, -2, &j->paths, err, sizeof err) < 0
            || ur_wire_encode(L, -1, &j->paths, err, sizeof err) < 0))
      ur_wire_free(&j->paths);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  /* the request before the worker: ur_req_new may raise, a queued job
   * cannot be called back */
  r = ur_req_new(L, t->loop, IORING_OP_READ);
  j->efd = eventfd(0, EFD_CLOEXEC);
  if (j->efd < 0) {
    int e = errno;
    ur_req_free(loop, r);
    hold_release(h);
    return ur_pushfail(L, -e, "thread: eventfd");
  }
  if ((p = pool_get(loop)) == NULL || pool_submit(p, j) < 0) {
    ur_req_free(loop, r);
    hold_release(h);
    return ur_pushfail(L, p ? -EAGAIN : -ENOMEM, "thread: no worker");
  }
  sqe = ur_get_sqe(t->loop);
  r->u.u64 = 0;
  r->fd = j->efd;
  /* the kernel writes the 8-byte count into the slab, not the job */
  io_uring_prep_read(sqe, j->efd, &r->u.u64, sizeof r->u.u64, 0);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "thread", hidx, thread_k);
}

void ur_register_threadpool (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"thread", l_thread},
    {NULL, NULL}
  };
  static const ur_hooks hooks = {
    NULL, NULL, NULL, pool_forget, pool_close, NULL
  };
  luaL_newmetatable(L, THREAD_HOLD_MT);
  lua_pushcfunction(L, hold_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  ur_loop_hook(L, &hooks);
  ur_setfuncs(L, funcs);
}
