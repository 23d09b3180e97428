/*
 * bench/lua_symbols.c: a minimal lua5.4 for profiling, linked against
 * Debian's static liblua5.4.a (which keeps its symbols; the packaged
 * lua5.4 binary is stripped, so callgrind can only say "lua5.4" for
 * every VM function).
 *
 *   cc -O2 -g -o build/bench/lua_symbols bench/lua_symbols.c \
 *      $(pkg-config --cflags lua5.4) /usr/lib/x86_64-linux-gnu/liblua5.4.a \
 *      -Wl,-E -ldl -lm
 *   valgrind --tool=callgrind build/bench/lua_symbols script.lua args...
 *
 * It runs one script with `arg` set as lua.c sets it (arg[0] the script,
 * arg[1..] its arguments, the script's ... the same); -Wl,-E exports the
 * Lua API so C modules (uring.core) resolve against this binary.
 */
#include <stdio.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int traceback (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

int main (int argc, char **argv) {
  lua_State *L;
  int status, i;
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua [args...]\n", argv[0]);
    return 2;
  }
  L = luaL_newstate();
  if (L == NULL) return 1;
  luaL_openlibs(L);
  lua_createtable(L, argc - 2, 2);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  status = luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) {
    for (i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
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
