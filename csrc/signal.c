/*
 * signal.c: signals as something a task waits for, and poll readiness.
 *
 * uring.signal(sig) blocks the signal for the process and reads it from
 * a signalfd through the ring, so a task simply waits for it and no Lua
 * ever runs inside a signal handler.  uring.poll(fd, events) is
 * IORING_OP_POLL_ADD: readiness, for fds the ring cannot read for us
 * (a terminal driven by readline).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "uring.h"

#define UR_SIGNAL_MT "uring.signal"

typedef struct ur_signal {
  ur_handle h;           /* the signalfd, -1 once closed */
  int signo;
  sigset_t prev;         /* mask before we blocked it: restored on close */
  int was_blocked;
} ur_signal;

static const struct { const char *name; int no; } signames[] = {
  {"SIGINT", SIGINT}, {"SIGTERM", SIGTERM}, {"SIGHUP", SIGHUP},
  {"SIGQUIT", SIGQUIT}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},
  {"SIGCHLD", SIGCHLD}, {"SIGWINCH", SIGWINCH}, {"SIGPIPE", SIGPIPE},
  {"SIGALRM", SIGALRM}, {"SIGCONT", SIGCONT},
};

static int checksigno (lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n > 0 && n < NSIG && n != SIGKILL && n != SIGSTOP, idx,
                  "invalid signal number");
    return (int)n;
  }
  {
    const char *name = ur_checkcstr(L, idx, "signal name");
    char full[32];
    if (strncmp(name, "SIG", 3) != 0) {
      snprintf(full, sizeof full, "SIG%s", name);
      name = full;
    }
    for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
      if (strcasecmp(name, signames[i].name) == 0) return signames[i].no;
  }
  return luaL_argerror(L, idx, "unknown signal name");
}

/* uring.signal(sig) -> signal object; sig is a number or "INT", "SIGTERM"... */
static int l_signal (lua_State *L) {
  int signo = checksigno(L, 1), fd, ret;
  ur_signal *s = (ur_signal *)lua_newuserdatauv(L, sizeof *s, 0);
  sigset_t set;
  ur_handle_init(&s->h);      /* closed first */
  s->signo = signo;
  luaL_setmetatable(L, UR_SIGNAL_MT);
  sigemptyset(&set);
  sigaddset(&set, signo);
  /* blocked, so it queues for the signalfd instead of killing us */
  if (sigprocmask(SIG_BLOCK, &set, &s->prev) != 0)
    return ur_pushfail(L, -errno, "signal");
  s->was_blocked = sigismember(&s->prev, signo);
  fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  ret = fd < 0 ? -errno : ur_handle_adopt(ur_loop_of(L), &s->h, fd);
  if (ret < 0) {
    if (!s->was_blocked) sigprocmask(SIG_UNBLOCK, &set, NULL);
    return ur_pushfail(L, ret, "signal");
  }
  return 1;
}

static ur_signal *tosignal (lua_State *L) {
  ur_signal *s = (ur_signal *)luaL_checkudata(L, 1, UR_SIGNAL_MT);
  if (s->h.fd < 0) luaL_error(L, "attempt to use a closed signal");
  return s;
}

static int wait_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res, signo = 0;
  (void)status; (void)ctx;
  if (res == (int)sizeof(struct signalfd_siginfo)) {
    ur_kernel_wrote(r->mem, (size_t)res);
    signo = (int)((struct signalfd_siginfo *)r->mem)->ssi_signo;
  }
  ur_req_free(t->loop, r);
  ur_check_interrupt(L, t);
  if (res < 0 && ((ur_signal *)lua_touserdata(L, 1))->h.fd < 0)
    return ur_pushclosed(L);    /* sig:close() while we waited */
  if (res < 0) return ur_pushfail(L, res, "signal");
  lua_pushinteger(L, signo);
  return 1;
}

/* sig:wait() -> signal number: waits until the signal arrives */
static int l_signal_wait (lua_State *L) {
  ur_signal *s = tosignal(L);
  ur_task *t = ur_task_current(L, "wait");
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_READ);
  struct io_uring_sqe *sqe;
  r->mem = malloc(sizeof(struct signalfd_siginfo));
  if (r->mem == NULL) {
    ur_req_free(t->loop, r);
    return luaL_error(L, "wait: not enough memory");
  }
  r->memlen = sizeof(struct signalfd_siginfo);
  sqe = ur_get_sqe(t->loop);
  /* the fd is non-blocking: io_uring arms a poll and reads when ready */
  io_uring_prep_read(sqe, s->h.fd, r->mem, sizeof(struct signalfd_siginfo), 0);
  ur_handle_sqe(t->loop, &s->h, r, sqe);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "signal", 0, wait_k);
}

/* sig:close(), __close, __gc: stop catching it; the old mask comes back.
 * Tasks in sig:wait() wake with nil, "closed". */
static int l_signal_close (lua_State *L) {
  ur_signal *s = (ur_signal *)luaL_checkudata(L, 1, UR_SIGNAL_MT);
  if (s->h.fd >= 0) {
    sigset_t set;
    ur_handle_close(ur_loop_of(L), &s->h, NULL);
    if (!s->was_blocked) {
      sigemptyset(&set);
      sigaddset(&set, s->signo);
      sigprocmask(SIG_UNBLOCK, &set, NULL);
    }
  }
  lua_pushboolean(L, 1);        /* as every close: true */
  return 1;
}

/* sig:fd() -> the signalfd's number (for trace, and to check leaks) */
static int l_signal_fd (lua_State *L) {
  lua_pushinteger(L, tosignal(L)->h.fd);
  return 1;
}

static int l_signal_tostring (lua_State *L) {
  ur_signal *s = (ur_signal *)luaL_checkudata(L, 1, UR_SIGNAL_MT);
  lua_pushfstring(L, "uring.signal (%d%s)", s->signo, s->h.fd < 0 ? ", closed" : "");
  return 1;
}

static int poll_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  int res = r->res;
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  ur_check_interrupt(L, t);
  if (res < 0) return ur_pushfail(L, res, "poll");
  lua_pushboolean(L, (res & POLLIN) != 0);
  lua_pushboolean(L, (res & POLLOUT) != 0);
  lua_pushboolean(L, (res & (POLLHUP | POLLERR)) != 0);
  return 3;
}

/* uring.poll(fd, events) -> readable, writable, hangup | fail
 * events: "r", "w" or "rw".  Waits until the fd is ready. */
static int l_poll (lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  const char *ev = ur_optcstr(L, 2, "events", "r");
  unsigned mask = 0;
  ur_task *t;
  ur_req *r;
  struct io_uring_sqe *sqe;
  luaL_argcheck(L, fd >= 0 && fd <= INT32_MAX, 1, "invalid file descriptor");
  if (strchr(ev, 'r')) mask |= POLLIN;
  if (strchr(ev, 'w')) mask |= POLLOUT;
  luaL_argcheck(L, mask != 0 && strspn(ev, "rw") == strlen(ev), 2,
                "events must be \"r\", \"w\" or \"rw\"");
  t = ur_task_current(L, "poll");
  r = ur_req_new(L, t->loop, IORING_OP_POLL_ADD);
  r->fd = (int)fd;
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_poll_add(sqe, (int)fd, mask);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "poll", 0, poll_k);
}

void ur_register_signal (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"wait", l_signal_wait}, {"close", l_signal_close}, {"fd", l_signal_fd},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_signal_close}, {"__close", l_signal_close},
    {"__tostring", l_signal_tostring}, {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"signal", l_signal}, {"poll", l_poll}, {NULL, NULL}
  };
  luaL_newmetatable(L, UR_SIGNAL_MT);
  ur_setfuncs(L, meta);
  lua_newtable(L);
  ur_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
}
