/*
 * testposix: the few POSIX calls the adversarial specs need and Lua lacks
 * (a test helper, loaded with package.loadlib; not part of lua-uring).
 *
 *   fork() -> pid (0 in the child)      _exit(code)
 *   waitpid(pid) -> "exit"|"signal", code
 *   getpid() -> pid                     close(fd) -> true | nil, errno
 *   catch(signo) -> counter: installs a handler WITHOUT SA_RESTART, so a
 *     system call blocked when the signal arrives fails with EINTR;
 *     counter() -> how many times it ran
 *   uncatch(signo): back to the default action
 *   setenv(name, value | nil): set or unset an environment variable (the
 *     test build's fault hooks read theirs at each ring setup)
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

int luaopen_testposix (lua_State *L);

static int l_fork (lua_State *L) {
  pid_t pid = fork();
  if (pid < 0) return luaL_error(L, "fork: %s", strerror(errno));
  lua_pushinteger(L, pid);
  return 1;
}

static int l_exit (lua_State *L) {
  _exit((int)luaL_checkinteger(L, 1));
  return 0;
}

static int l_waitpid (lua_State *L) {
  int st;
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return luaL_error(L, "waitpid: %s", strerror(errno));
  if (WIFEXITED(st)) {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(st));
  }
  else {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, WTERMSIG(st));
  }
  return 2;
}

static int l_getpid (lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static int l_close (lua_State *L) {
  if (close((int)luaL_checkinteger(L, 1)) != 0) {
    luaL_pushfail(L);
    lua_pushinteger(L, errno);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static volatile sig_atomic_t hits[65];

static void on_signal (int sig) { hits[sig]++; }

static int l_counter (lua_State *L) {
  lua_pushinteger(L, hits[lua_tointeger(L, lua_upvalueindex(1))]);
  return 1;
}

static int l_catch (lua_State *L) {
  struct sigaction sa;
  lua_Integer sig = luaL_checkinteger(L, 1);
  luaL_argcheck(L, sig > 0 && sig < 65, 1, "invalid signal number");
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;          /* no SA_RESTART: EINTR */
  sigemptyset(&sa.sa_mask);
  if (sigaction((int)sig, &sa, NULL) != 0)
    return luaL_error(L, "sigaction: %s", strerror(errno));
  lua_pushinteger(L, sig);
  lua_pushcclosure(L, l_counter, 1);
  return 1;
}

static int l_uncatch (lua_State *L) {
  lua_Integer sig = luaL_checkinteger(L, 1);
  luaL_argcheck(L, sig > 0 && sig < 65, 1, "invalid signal number");
  signal((int)sig, SIG_DFL);
  return 0;
}

static int l_setenv (lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int ret = lua_isnoneornil(L, 2) ? unsetenv(name)
                                  : setenv(name, luaL_checkstring(L, 2), 1);
  if (ret != 0) return luaL_error(L, "setenv: %s", strerror(errno));
  return 0;
}

int luaopen_testposix (lua_State *L) {
  static const luaL_Reg f[] = {
    {"fork", l_fork}, {"_exit", l_exit}, {"waitpid", l_waitpid},
    {"getpid", l_getpid}, {"close", l_close}, {"catch", l_catch},
    {"uncatch", l_uncatch}, {"setenv", l_setenv},
    {NULL, NULL}
  };
  luaL_newlib(L, f);
  return 1;
}
