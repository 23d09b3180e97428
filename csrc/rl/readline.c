/*
 * uring.readline: GNU readline's callback interface, for the REPL.
 *
 * In callback mode readline never blocks: the REPL waits for stdin to be
 * readable through the ring (uring.poll), then feeds readline one
 * character with rl_callback_read_char.  So servers started at the prompt
 * keep serving while the user types.  Signals are left to the REPL
 * (rl_catch_signals = 0): it reads SIGINT from a signalfd.
 *
 * Output from background tasks (hide/show around it) must not clobber
 * the half-typed line; Tab asks a Lua function for completions; history
 * is read from and appended to a file the REPL names.
 *
 * A separate module (not in uring.core) so that the core does not link
 * readline.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <readline/history.h>
#include <readline/readline.h>

#include <lua.h>
#include <lauxlib.h>

int luaopen_uring_readline (lua_State *L);

static char *line;          /* the line the handler received */
static int got_line;        /* 1: line is set (NULL line: EOF) */
static int installed;
static int hidden;          /* hide() cleared the line; show() redraws it */
static lua_State *reading;  /* the state inside read_char (completion) */
static int completer_ref = LUA_NOREF;   /* its registry: the Lua completer */

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
  if (!got_line) {
    reading = L;                /* Tab calls the completer from in here */
    rl_callback_read_char();
    reading = NULL;
  }
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

/* pending() -> true when readline holds typed input it has taken off the
 * terminal (it reads ahead while inserting a burst of characters and
 * keeps the first other key): the REPL must not wait for the terminal to
 * be readable then, or that key waits for the next keystroke */
static int l_pending (lua_State *L) {
  lua_pushboolean(L, rl_pending_input != 0
                  || RL_ISSTATE(RL_STATE_INPUTPENDING | RL_STATE_MACROINPUT));
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

/* hide(): clear the prompt and the half-typed line off the screen before
 * other output; true if there was one to clear (show() then redraws it) */
static int l_hide (lua_State *L) {
  if (installed && !hidden) {
    rl_clear_visible_line();
    fflush(rl_outstream ? rl_outstream : stdout);
    hidden = 1;
  }
  lua_pushboolean(L, hidden);
  return 1;
}

/* show(): draw the prompt and the line again below the output */
static int l_show (lua_State *L) {
  (void)L;
  if (!hidden) return 0;
  hidden = 0;
  if (installed) rl_forced_update_display();
  return 0;
}

/* read_history(path) -> true | nil, msg: a missing file is no error */
static int l_read_history (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int err = read_history(path);
  if (err != 0 && err != ENOENT) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(err));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* append_history(path [, keep]): add the last entry to the file (made if
 * missing), which keeps its `keep` newest lines (default 1000) */
static int l_append_history (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int keep = (int)luaL_optinteger(L, 2, 1000), err;
  err = append_history(1, path);
  if (err == ENOENT) err = write_history(path);
  if (err == 0) err = history_truncate_file(path, keep);
  if (err != 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(err));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* Completion: the Lua completer maps the word before the cursor to a
 * list of whole words; readline shows them or fills in their common
 * prefix.  Called inside rl_callback_read_char, so inside read_char. */
static char **matches;      /* the completer's words, NULL-ended */
static size_t nmatches, next_match;

static void free_matches (void) {
  for (size_t i = 0; i < nmatches; i++) free(matches[i]);
  free(matches);
  matches = NULL;
  nmatches = next_match = 0;
}

static char *match_gen (const char *text, int state) {
  (void)text;
  if (state == 0) next_match = 0;
  if (next_match < nmatches)
    return strdup(matches[next_match++]);   /* readline frees it */
  return NULL;
}

/* the completer runs protected: an error in it must not unwind through
 * readline's frames (it would leave the terminal half-set) */
static const char *word;    /* the word being completed */

static int call_completer (lua_State *L) {
  size_t n;
  lua_rawgeti(L, LUA_REGISTRYINDEX, completer_ref);
  lua_pushstring(L, word);
  lua_call(L, 1, 1);
  if (!lua_istable(L, -1)) return 0;
  n = lua_rawlen(L, -1);
  matches = (char **)calloc(n + 1, sizeof *matches);
  if (matches == NULL) return 0;
  for (size_t i = 1; i <= n; i++) {
    const char *m;
    lua_rawgeti(L, -1, (lua_Integer)i);
    m = lua_tostring(L, -1);
    if (m && (matches[nmatches] = strdup(m)) != NULL) nmatches++;
    lua_pop(L, 1);
  }
  return 0;
}

static char **complete (const char *text, int start, int end) {
  lua_State *L = reading;
  (void)start; (void)end;
  rl_attempted_completion_over = 1;   /* never fall back to file names */
  rl_completion_append_character = '\0';
  if (L == NULL || completer_ref == LUA_NOREF) return NULL;
  free_matches();
  word = text;
  lua_pushcfunction(L, call_completer);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) lua_pop(L, 1);
  if (nmatches == 0) {
    free_matches();
    return NULL;
  }
  {
    /* readline takes copies (match_gen): ours go now, not at unload */
    char **r = rl_completion_matches(text, match_gen);
    free_matches();
    return r;
  }
}

/* set_completer(fn): fn(word) -> {word, ...}; words break at spaces and
 * operators, not at '.' or ':' (uring.sl, sock:re) */
static int l_set_completer (lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (completer_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, completer_ref);
  lua_pushvalue(L, 1);
  completer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rl_attempted_completion_function = complete;
  rl_completer_word_break_characters = (char *)" \t\n\"'`@$><=;|&{}()[],+-*/%^~#";
  return 0;
}

int luaopen_uring_readline (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"install", l_install}, {"read_char", l_read_char},
    {"interrupt", l_interrupt}, {"remove", l_remove},
    {"add_history", l_add_history}, {"hide", l_hide}, {"show", l_show},
    {"read_history", l_read_history}, {"append_history", l_append_history},
    {"set_completer", l_set_completer}, {"pending", l_pending},
    {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  return 1;
}
