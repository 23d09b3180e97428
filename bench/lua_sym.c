/*
 * bench/lua_sym.c: a minimal `lua5.4 script [args]` linked against
 * Debian's static liblua5.4.a, which keeps its symbols, so callgrind and
 * perf name the VM's functions (luaV_execute, luaH_newkey, the collector)
 * where the packaged lua5.4 shows addresses only.  Built by
 * `make -C bench lua-sym`; then e.g.
 *   LUA=build/bench/lua_sym sh bench/http_callgrind.sh quick
 * Only what the benches need of lua.c: the script's path, `arg` set as
 * lua.c sets it, the script's arguments as its `...`, and an error
 * reported with a traceback and exit status 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int traceback (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = luaL_typename(L, 1);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* arg = { [-1] = progname, [0] = script, args... }, as lua.c makes it */
static void set_arg (lua_State *L, int argc, char **argv) {
  lua_createtable(L, argc - 2, 2);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
}

int main (int argc, char **argv) {
  lua_State *L;
  int status;
  if (argc < 2) {
    fprintf(stderr, "usage: %s script [args]\n", argv[0]);
    return 2;
  }
  L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create a Lua state\n", argv[0]);
    return 1;
  }
  luaL_openlibs(L);
  set_arg(L, argc, argv);
  lua_pushcfunction(L, traceback);
  status = luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) {
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    status = lua_pcall(L, argc - 2, 0, 1);
  }
  if (status != LUA_OK) {
    fprintf(stderr, "%s: %s\n", argv[0], lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  lua_close(L);
  return 0;
}
