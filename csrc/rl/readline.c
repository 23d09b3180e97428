/*
 * uring.readline: GNU readline's callback interface, for the REPL.
 *
 * In callback mode readline never blocks: the REPL waits for stdin to be
 * readable through the ring (uring.poll), then feeds readline one
 * character with rl_callback_read_char.  So servers started at the prompt
 * keep serving while the user types.  Signals are left to the REPL
 * (rl_catch_signals = 0): it reads SIGINT from a signalfd.
 *
 * A separate module (not in uring.core) so that the core does not link
 * readline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <readline/history.h>
#include <readline/readline.h>

#include <lua.h>
#include <lauxlib.h>

int luaopen_uring_readline (lua_State *L);

static char *line;          /* the line the handler received */
static int got_line;        /* 1: line is set (NULL line: EOF) */
static int installed;

static void on_line (char *l) {
  line = l;
  got_line = 1;
  /* hand the terminal back while the line runs (Ctrl-C, output) */
  rl_callback_handler_remove();
  installed = 0;
}

/* install(prompt): show the prompt and start collecting a line */
static int l_install (lua_State *L) {
  const char *prompt = luaL_checkstring(L, 1);
  if (installed) rl_callback_handler_remove();
  rl_catch_signals = 0;
  rl_catch_sigwinch = 0;
  got_line = 0;
  rl_callback_handler_install(prompt, on_line);
  installed = 1;
  return 0;
}

/* read_char() -> line | false (EOF) | nil (line not complete yet) */
static int l_read_char (lua_State *L) {
  if (!installed && !got_line) return luaL_error(L, "read_char: not installed");
  if (!got_line) rl_callback_read_char();
  if (!got_line) return 0;
  got_line = 0;
  if (line == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushstring(L, line);
  free(line);
  line = NULL;
  return 1;
}

/* interrupt(): Ctrl-C at the prompt: drop the line, start a fresh one */
static int l_interrupt (lua_State *L) {
  (void)L;
  if (!installed) return 0;
  rl_free_line_state();
  rl_callback_sigcleanup();
  rl_replace_line("", 0);
  rl_crlf();
  rl_on_new_line();
  rl_redisplay();
  return 0;
}

static int l_remove (lua_State *L) {
  (void)L;
  if (installed) rl_callback_handler_remove();
  installed = 0;
  return 0;
}

static int l_add_history (lua_State *L) {
  add_history(luaL_checkstring(L, 1));
  return 0;
}

int luaopen_uring_readline (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"install", l_install}, {"read_char", l_read_char},
    {"interrupt", l_interrupt}, {"remove", l_remove},
    {"add_history", l_add_history}, {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  return 1;
}
