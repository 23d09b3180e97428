/*
 * oomhost: run a Lua script in a lua_State whose allocator fails on
 * request, for the out-of-memory sweep (spec/oom/run.lua, `make oom`).
 *
 *   oomhost [--fail-at N] [--core-fail-at N] [--cpath PATTERN] SCRIPT
 *
 * The allocator counts the allocations made while the script has it armed
 * (oom.arm() ... oom.disarm()); with --fail-at N the Nth of them fails.
 * Lua answers a failed allocation with an emergency collection and one
 * more try: that retry (the same block, the same sizes) fails too, so the
 * failure reaches the code that asked, as it would when memory is really
 * gone.  Only growth is counted and failed: Lua does not expect a shrink
 * or a free to fail.
 *
 * The script sees a global table `oom`:
 *   oom.fail_at, oom.core_fail_at   the numbers given (0: none)
 *   oom.arm()                       start counting (and failing)
 *   oom.disarm() -> n, failed       stop; n allocations seen, whether the
 *                                   Nth was failed
 *   oom.fds() -> {[fd] = target}    the process's open descriptors
 * The core's own malloc family is failed by the core itself (built with
 * -DUR_FAULTS, spec/helpers/faults.c: require "uring.faults"); the script passes
 * core_fail_at on to it.
 *
 * The host never catches what it should report: a Lua panic, or a
 * warning (an error in a __gc metamethod) while armed, is printed with a
 * "@@oom" prefix; a panic aborts.  The script's error ends the host with
 * status 1 after printing it.  lua_close runs with the allocator disarmed.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/* Under ASan, URING_OOM_STACK=1 prints where the failed allocation was
 * asked for (symbolized): the C frames of the core and of Lua's VM. */
#if defined(__SANITIZE_ADDRESS__)
void __sanitizer_print_stack_trace (void);
#define print_stack() __sanitizer_print_stack_trace()
#else
#define print_stack() ((void)0)
#endif
static int want_stack;

static struct {
  int armed;
  unsigned long count;       /* growth allocations while armed */
  unsigned long fail_at;     /* 0: never */
  int failed;                /* the fail_at'th was failed */
  int retry;                 /* the next call may be Lua's retry of it */
  void *rptr;
  size_t rosize, rnsize;
} A;

static void *oom_alloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (A.armed && (ptr == NULL || nsize > osize)) {
    if (A.retry) {
      int same = ptr == A.rptr && osize == A.rosize && nsize == A.rnsize;
      A.retry = 0;
      if (same) return NULL;         /* the emergency retry fails too */
    }
    if (++A.count == A.fail_at) {
      A.failed = 1;
      A.retry = 1;
      A.rptr = ptr;
      A.rosize = osize;
      A.rnsize = nsize;
      if (want_stack) {
        fprintf(stderr, "@@oom failed Lua allocation %lu of %zu bytes at:\n",
                A.count, nsize);
        print_stack();
      }
      return NULL;
    }
  }
  return realloc(ptr, nsize);
}

static int l_arm (lua_State *L) {
  (void)L;
  A.count = 0;
  A.failed = A.retry = 0;
  A.armed = 1;
  return 0;
}

static int l_disarm (lua_State *L) {
  A.armed = A.retry = 0;
  lua_pushinteger(L, (lua_Integer)A.count);
  lua_pushboolean(L, A.failed);
  return 2;
}

static int l_fds (lua_State *L) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int self;
  lua_newtable(L);
  if (d == NULL) return 1;
  self = dirfd(d);
  while ((e = readdir(d)) != NULL) {
    char path[64], target[512];
    ssize_t n;
    int fd;
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    fd = atoi(e->d_name);
    if (fd == self) continue;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    n = readlink(path, target, sizeof target - 1);
    target[n < 0 ? 0 : n] = '\0';
    lua_pushstring(L, target);
    lua_rawseti(L, -2, fd);
  }
  closedir(d);
  return 1;
}

/* an error in a finalizer while armed is a finding: show it */
static void oom_warn (void *ud, const char *msg, int tocont) {
  static int cont;
  (void)ud;
  if (!cont && msg[0] == '@') return;  /* control messages ("@on") */
  if (!cont) fputs("@@oom warning: ", stderr);
  fputs(msg, stderr);
  if (!tocont) fputc('\n', stderr);
  cont = tocont;
}

static int oom_panic (lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "@@oom PANIC: unprotected error: %s\n",
          msg ? msg : "(not a string)");
  fflush(stderr);
  abort();
  return 0;
}

static int traceback (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)",
                                         luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void usage (void) {
  fputs("usage: oomhost [--fail-at N] [--core-fail-at N] [--cpath PATTERN] "
        "SCRIPT\n", stderr);
  exit(2);
}

int main (int argc, char **argv) {
  lua_State *L;
  const char *script = NULL, *cpath = NULL;
  long core_fail_at = 0;
  char defcpath[4096];
  int i, st;
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--fail-at") == 0 && i + 1 < argc)
      A.fail_at = strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--core-fail-at") == 0 && i + 1 < argc)
      core_fail_at = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--cpath") == 0 && i + 1 < argc)
      cpath = argv[++i];
    else if (argv[i][0] == '-' || script) usage();
    else script = argv[i];
  }
  if (script == NULL) usage();
  want_stack = getenv("URING_OOM_STACK") && *getenv("URING_OOM_STACK") == '1';
  if (cpath == NULL) {
    /* the core built next to this host: build/ or build-asan/ */
    const char *slash = strrchr(argv[0], '/');
    int dirlen = slash ? (int)(slash - argv[0]) : 1;
    snprintf(defcpath, sizeof defcpath, "%.*s/?.so", dirlen,
             slash ? argv[0] : ".");
    cpath = defcpath;
  }
  L = lua_newstate(oom_alloc, NULL);
  if (L == NULL) return 1;
  lua_atpanic(L, oom_panic);
  lua_setwarnf(L, oom_warn, NULL);
  luaL_openlibs(L);
  /* the checkout's Lua files, then the core next to this host */
  lua_getglobal(L, "package");
  lua_pushfstring(L, "./lua/?.lua;./lua/?/init.lua;%s", LUA_PATH_DEFAULT);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)A.fail_at);
  lua_setfield(L, -2, "fail_at");
  lua_pushinteger(L, core_fail_at);
  lua_setfield(L, -2, "core_fail_at");
  lua_pushcfunction(L, l_arm);
  lua_setfield(L, -2, "arm");
  lua_pushcfunction(L, l_disarm);
  lua_setfield(L, -2, "disarm");
  lua_pushcfunction(L, l_fds);
  lua_setfield(L, -2, "fds");
  lua_setglobal(L, "oom");
  lua_pushcfunction(L, traceback);
  st = luaL_loadfile(L, script);
  if (st == LUA_OK) st = lua_pcall(L, 0, 0, 1);
  A.armed = 0;
  if (st != LUA_OK) {
    fprintf(stderr, "@@oom script error: %s\n", lua_tostring(L, -1));
    fflush(stderr);
  }
  lua_close(L);
  return st == LUA_OK ? 0 : 1;
}
