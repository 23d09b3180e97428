/*
 * workers.c: the C half of uring.workers (lua/uring/workers.lua).
 *
 * _workers_fork(n) forks n children with INT, TERM and CHLD blocked, so a
 * signal that arrives before a child watches it waits in the child's
 * pending set instead of killing it.  A child starts with a fresh loop:
 * the parent's ring memory is not mapped in it (io_uring_ring_dontfork)
 * and the parent's ring fd, provided buffers and counters are dropped, so
 * its first uring.run sets up a ring of its own.  Only an idle loop may
 * fork (no task, nothing in flight): nothing the child inherits refers to
 * the kernel's view of the parent's ring.
 *
 * _workers_wait(pids) is the parent's supervisor: it sleeps in
 * sigtimedwait, forwards INT/TERM to every live child, reaps children on
 * CHLD (reporting on stderr one that ends unasked), escalates to SIGKILL
 * if the children do not end within 10 s of a forwarded signal, and
 * returns once every child has been reaped: no zombie is left behind.
 *
 * Before the fork, msg_ring.c makes the workers' channel (shared
 * mailboxes, socketpairs); the parent keeps only its mapping, to mark a
 * reaped worker gone, and drops it when every child has been reaped.
 *
 * _workers_stop() (in a child, from its signal watcher) makes the loop
 * cancel every task at the next turn, as when the main task fails, so
 * <close> variables run and uring.run returns.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uring.h"

#define MAX_WORKERS 1024
#define KILL_AFTER  10          /* seconds after a forwarded signal */

static sigset_t saved_mask;     /* the parent's mask before the fork */

static void supervised_set (sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGCHLD);
}

static void kill_all (const pid_t *pids, int n, int sig) {
  for (int i = 0; i < n; i++)
    if (pids[i] > 0) kill(pids[i], sig);
}

/* _workers_fork(n) -> 0, {pid...} in the parent | i, pid in child i
 * | nil, msg, errno (no child is left running) */
static int l_workers_fork (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  lua_Integer n = luaL_checkinteger(L, 1);
  pid_t parent = getpid(), pids[MAX_WORKERS];
  sigset_t set;
  luaL_argcheck(L, n >= 1 && n <= MAX_WORKERS, 1, "n must be in 1..1024");
  if (loop->running)
    return luaL_error(L, "workers: call it outside uring.run (each worker "
                      "runs its own loop)");
  if (loop->live_tasks > 0 || loop->inflight > 0)
    return luaL_error(L, "workers: %d task(s) still pending; the loop must "
                      "be idle to fork", (int)loop->live_tasks);
  {
    /* the workers' channel (msg_ring.c): mailboxes and socketpairs every
     * worker inherits */
    int ret = ur_chan_prefork((int)n);
    if (ret < 0) return ur_pushfail(L, ret, "workers: channel");
  }
  supervised_set(&set);
  if (sigprocmask(SIG_BLOCK, &set, &saved_mask) != 0) {
    int err = -errno;
    ur_chan_parent();
    ur_chan_release();
    return ur_pushfail(L, err, "workers: sigprocmask");
  }
  fflush(NULL);               /* no stdio buffer written twice */
  for (lua_Integer i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      int err = errno;
      kill_all(pids, (int)i, SIGKILL);
      for (lua_Integer j = 0; j < i; j++) waitpid(pids[j], NULL, 0);
      sigprocmask(SIG_SETMASK, &saved_mask, NULL);
      ur_chan_parent();
      ur_chan_release();
      return ur_pushfail(L, -err, "workers: fork");
    }
    if (pid == 0) {
      sigset_t mask = saved_mask;     /* CHLD as before; INT/TERM stay
                                         blocked for the child's watchers */
      sigaddset(&mask, SIGINT);
      sigaddset(&mask, SIGTERM);
      sigprocmask(SIG_SETMASK, &mask, NULL);
      /* if the supervisor dies, stop too rather than serve unsupervised */
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) raise(SIGTERM);
      ur_loop_forget(loop);   /* the next uring.run makes a ring */
      ur_chan_child((int)i + 1);
      lua_pushinteger(L, i + 1);
      lua_pushinteger(L, getpid());
      return 2;
    }
    pids[i] = pid;
  }
  ur_chan_parent();
  lua_pushinteger(L, 0);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 0; i < n; i++) {
    lua_pushinteger(L, pids[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 2;
}

static void describe (int st, const char **how, int *code) {
  if (WIFEXITED(st)) { *how = "exit"; *code = WEXITSTATUS(st); }
  else { *how = "signal"; *code = WTERMSIG(st); }
}

/* _workers_wait({pid...}) -> {{pid =, how =, code =}...}, signal | nil */
static int l_workers_wait (lua_State *L) {
  pid_t pids[MAX_WORKERS];
  int status[MAX_WORKERS];
  int n, live, stopsig = 0;
  time_t stop_at = 0;
  sigset_t set;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (int)luaL_len(L, 1);
  luaL_argcheck(L, n >= 1 && n <= MAX_WORKERS, 1, "1..1024 pids expected");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    pids[i] = (pid_t)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  live = n;
  supervised_set(&set);
  while (live > 0) {
    struct timespec ts = { 1, 0 };
    siginfo_t si;
    int sig = sigtimedwait(&set, &si, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      if (!stopsig) stop_at = time(NULL);
      stopsig = sig;
      kill_all(pids, n, sig);
    }
    if (stopsig && time(NULL) - stop_at >= KILL_AFTER) {
      kill_all(pids, n, SIGKILL);
      stop_at = time(NULL);
    }
    for (int i = 0; i < n; i++) {
      int st;
      pid_t r;
      if (pids[i] <= 0) continue;
      r = waitpid(pids[i], &st, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      if (r < 0) st = 0x7f00;           /* lost (ECHILD): report it as 127 */
      status[i] = st;
      ur_chan_gone(i + 1);            /* a send to it fails from now on */
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {     /* it died */
        const char *how;
        int code;
        describe(st, &how, &code);
        fprintf(stderr, "uring.workers: worker %d (pid %d) %s %d%s\n", i + 1,
                (int)pids[i], strcmp(how, "exit") == 0 ? "exited with status"
                : "was killed by signal", code,
                stopsig ? "" : " (unasked)");
        fflush(stderr);
      }
      pids[i] = -pids[i];
      live--;
    }
  }
  sigprocmask(SIG_SETMASK, &saved_mask, NULL);
  ur_chan_release();
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    const char *how;
    int code;
    describe(status[i], &how, &code);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, -pids[i]);
    lua_setfield(L, -2, "pid");
    lua_pushstring(L, how);
    lua_setfield(L, -2, "how");
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    lua_rawseti(L, -2, i + 1);
  }
  if (stopsig) lua_pushinteger(L, stopsig);
  else lua_pushnil(L);
  return 2;
}

static int l_workers_stop (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  if (loop->running && loop->main_failed == 0) loop->main_failed = 1;
  return 0;
}

void ur_register_workers (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_workers_fork", l_workers_fork}, {"_workers_wait", l_workers_wait},
    {"_workers_stop", l_workers_stop}, {NULL, NULL}
  };
  ur_setfuncs(L, funcs);
}
