/*
 * http_serve.c: uring.http's per-connection request loop, in C.
 *
 * sock:_serve runs the common request of a kept-alive connection without
 * going back to Lua between requests: it takes the next head from the
 * socket's buffer (http.c's parser, receiving as needed), builds the
 * request table, resets the connection's response, calls the handler
 * (lua_pcallk: a handler may yield, it runs in the connection's task) and,
 * when the handler finished its response and the connection stays open,
 * goes on to the next head.  Everything else goes back to the Lua loop in
 * lua/uring/http/server.lua, which keeps the rules: a head with a body
 * (read there, with 100-continue and the size limits), a handler that
 * failed, returned a status, did not finish or upgraded to a WebSocket,
 * the end of the connection.  So this file holds no HTTP rule the Lua
 * loop does not also hold; it only skips the round trips through the VM
 * that cost most of a small request.
 */
#include <string.h>

#include "uring.h"

/* --- the connection's response state, while it lives in C ---
 *
 * The response object (res, a Lua table: lua/uring/http/server.lua) is
 * the connection's state.  For a request sock:_serve takes on, the
 * fields a handler's res:header, res:finish, res:sent and res:sendfile
 * use (status 200, the headers set, sent, done) are held here instead
 * ("fast"), and those methods of res are C closures over it: setting a
 * header fills two array slots of res, and a response the same as the
 * connection's last
 * one (same header strings, same body string, compared by address) goes
 * out as the same bytes.  Any other use of res first writes this state
 * back into the table (http_flush; core._http_sync, which every Lua
 * method of a response calls first), and from then on the Lua code is
 * the rule, as before.  res._keep is held here too: server:close()
 * writes the state back before it sets it.  The last response built is remembered once per Lua state
 * (http_memo), so a connection that answers once (churn) finds it too. */
#define FAST_HEADERS 8          /* more: written back, Lua's path */
#define MEMO_BODY 4096          /* larger bodies are not remembered */

typedef struct http_conn {
  const void *res;              /* the response (anchored: UV_RES) */
  ur_sock *sock;                /* its socket (anchored: UV_SOCK) */
  int fast;                     /* the state below is res's */
  int sent, done, head_only, v10;
  int keep;                     /* res._keep (server:close() syncs first) */
  /* idle: no request under way (from the start, and from when the loop
   * waits for a head on an empty buffer); the sweeper stamps it with its
   * clock the first time it sees it so (core._http_idle): a flag in C,
   * not a field of res written twice per request */
  int busy, stamped;
  lua_Number since;
  int hn;                       /* headers set: res[1..2hn] */
  lua_Integer len;              /* res:sendfile's length; -1: none */
  const char *name[FAST_HEADERS], *value[FAST_HEADERS];
  size_t vlen[FAST_HEADERS];    /* (a value may hold a NUL; a name not) */
  /* what res[1..2 * FAST_HEADERS] hold (NULL: unknown, since Lua wrote
   * them): a header set again as it was costs no table write */
  const char *slot[2 * FAST_HEADERS];
} http_conn;

/* the http_conn userdata's user values: the response, its socket */
enum { UV_RES = 1, UV_SOCK, UV_COUNT = UV_SOCK };

/* The last response a fast finish built, for every connection of the Lua
 * state: its bytes (user value 1) and what made them, the strings by
 * address (anchored in user value 2, so no other string can have one). */
typedef struct http_memo {
  int valid, keep, head_only, hn;
  const char *body;             /* NULL: finish() had no body */
  const char *name[FAST_HEADERS], *value[FAST_HEADERS];
  /* the connection whose request the C loop last handed a handler, so
   * the fast methods find its state without a lookup (anchored in user
   * value 3, so its response cannot be another table at that address) */
  const void *cur_res;
  http_conn *cur_hc;
  const void *hc_mt;            /* the http_conn metatable (by address: a
                                   check costs no registry lookup) */
  /* the last bare request head taken (checked with head_max), its text
   * anchored in user value 4, and what the loop needs of it: the next
   * head with the same bytes is that string again, not parsed again */
  const char *head;
  size_t head_n, head_max;
  int head_v10, head_keep, head_head_only;
} http_memo;

enum { UV_MEMO_OUT = 1, UV_MEMO_ANCHORS, UV_MEMO_CUR, UV_MEMO_HEAD,
       UV_MEMO_COUNT = UV_MEMO_HEAD };

#define HTTP_CONN_MT "uring.http_conn"

/* Upvalues of every function here: 1 the loop (as every core function
 * has it), 2 the field names used, interned once, in an array (a field
 * then costs a raw table access and no lookup of a C string:
 * lua_getfield hashes and compares its string on every call), 3 the
 * http_memo.  res's header and finish closures have more: the http_conn,
 * Lua's own version of the method, sock:send and the socket. */
enum { K_CODE = 1, K_HN, K_LEN, K_SENT, K_DONE, K_ERR, K_MODE, K_HEAD_ONLY,
       K_KEEP, K_V10, K_REQUESTS,
       K_HC, K_LENGTH, K_COUNT = K_LENGTH };
static const char *const key_names[K_COUNT] = {
  "_code", "_hn", "_len", "_sent", "_done", "_err", "_mode", "_head_only",
  "_keep", "_v10", "requests",
  "_hc", "length"
};
enum { U_LOOP = 1, U_KEYS, U_MEMO, U_HCMT, U_LUA, U_SEND, U_SENDFILE,
       U_REGISTERED = U_MEMO, U_LAST = U_SENDFILE };

static void push_key (lua_State *L, int k) {
  lua_rawgeti(L, lua_upvalueindex(U_KEYS), k);
}

/* t[k], left on the stack.  t is a response, a server or a request,
 * whose metatables have no __newindex, and k a field they always hold
 * (or an __index that answers nil for it): lua_getfield and
 * lua_setfield find a short constant key through Lua's string cache and
 * the table's fast path, ~100 instructions less than lua_rawget with the
 * key fetched from the upvalue array. */
static void get (lua_State *L, int t, int k) {
  lua_getfield(L, t, key_names[k - 1]);
}

static int truthy (lua_State *L, int t, int k) {
  int v;
  get(L, t, k);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* t[k] = the value on top (popped); t is an absolute index */
static void set (lua_State *L, int t, int k) {
  lua_setfield(L, t, key_names[k - 1]);
}

static void set_bool (lua_State *L, int t, int k, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, t, key_names[k - 1]);
}

/* Write the state back into res (at index res) and leave it to Lua: the
 * fields as the Lua loop and res:finish would have left them. */
static void http_flush (lua_State *L, http_conn *hc, int res) {
  if (!hc->fast) return;
  hc->fast = 0;
  memset(hc->slot, 0, sizeof hc->slot);     /* Lua may write them now */
  lua_pushinteger(L, 200);
  set(L, res, K_CODE);
  lua_pushinteger(L, hc->hn);
  set(L, res, K_HN);
  set_bool(L, res, K_SENT, hc->sent);
  set_bool(L, res, K_DONE, hc->done);
  set_bool(L, res, K_ERR, 0);
  if (hc->len >= 0) {           /* res:sendfile sent it: as Lua's leaves it */
    lua_pushinteger(L, hc->len);
    set(L, res, K_LEN);
    push_key(L, K_LENGTH);
    set(L, res, K_MODE);
  }
  else {
    set_bool(L, res, K_LEN, 0);
    set_bool(L, res, K_MODE, 0);
  }
  set_bool(L, res, K_HEAD_ONLY, hc->head_only);
  set_bool(L, res, K_V10, hc->v10);
  set_bool(L, res, K_KEEP, hc->keep);
}

/* core._http_sync(res): a Lua method of a response calls it first: the
 * state held in C, if any, is written back into res */
static int l_http_sync (lua_State *L) {
  http_conn *hc;
  if (!lua_istable(L, 1)) return 0;
  lua_settop(L, 1);
  push_key(L, K_HC);            /* raw: any table may come here */
  lua_rawget(L, 1);
  hc = (http_conn *)luaL_testudata(L, 2, HTTP_CONN_MT);
  if (hc != NULL) http_flush(L, hc, 1);
  return 0;
}

/* The C state of self (index 1), or NULL when self is not a response
 * with one.  The fast methods are shared by every connection and find
 * the state here: four closures made per connection cost each accept
 * ~4,000 instructions under churn (bench/http_callgrind.sh, CHURN=1). */
static http_conn *self_hc (lua_State *L) {
  http_memo *memo = (http_memo *)lua_touserdata(L, lua_upvalueindex(U_MEMO));
  const void *self = lua_topointer(L, 1);
  http_conn *hc = NULL;
  if (self != NULL && self == memo->cur_res) return memo->cur_hc;
  if (lua_type(L, 1) != LUA_TTABLE) return NULL;
  get(L, 1, K_HC);
  if (lua_getmetatable(L, -1)) {
    if (lua_rawequal(L, -1, lua_upvalueindex(U_HCMT)))
      hc = (http_conn *)lua_touserdata(L, -2);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return hc != NULL && hc->res == self ? hc : NULL;
}

/* hc (at index idx) is the connection a handler now runs for */
static void set_current (lua_State *L, http_conn *hc, int idx) {
  http_memo *memo = (http_memo *)lua_touserdata(L, lua_upvalueindex(U_MEMO));
  if (memo->cur_hc == hc) return;
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, lua_upvalueindex(U_MEMO), UV_MEMO_CUR);
  memo->cur_hc = hc;
  memo->cur_res = hc->res;
}

/* the socket of self's connection, pushed (self_hc found its state) */
static void push_sock (lua_State *L) {
  http_memo *memo = (http_memo *)lua_touserdata(L, lua_upvalueindex(U_MEMO));
  if (memo->cur_res == lua_topointer(L, 1))
    lua_getiuservalue(L, lua_upvalueindex(U_MEMO), UV_MEMO_CUR);
  else get(L, 1, K_HC);
  lua_getiuservalue(L, -1, UV_SOCK);
  lua_remove(L, -2);
}

static int results_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return lua_gettop(L) - (int)ctx;
}

/* Lua's version of the method (its checks, its rules), the state written
 * back first when self is this response.  nargs: the arguments kept. */
static int slow (lua_State *L, int nargs) {
  http_conn *hc;
  lua_settop(L, nargs);
  if ((hc = self_hc(L)) != NULL) http_flush(L, hc, 1);
  lua_pushvalue(L, lua_upvalueindex(U_LUA));
  lua_insert(L, 1);
  lua_callk(L, nargs, LUA_MULTRET, 0, results_k);
  return results_k(L, LUA_OK, 0);
}

/* the header name is one the response frames itself (Lua's path) */
static int framing (const char *p, size_t n) {
  static const char *const names[] = {
    "content-length", "connection", "transfer-encoding"
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    size_t k;
    if (strlen(names[i]) != n) continue;
    for (k = 0; k < n; k++) {
      int c = (unsigned char)p[k];
      if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != names[i][k]) break;
    }
    if (k == n) return 1;
  }
  return 0;
}

/* two header names (no NUL inside) equal in any case */
static int same_name (const char *a, const char *b) {
  if (a == b) return 1;
  for (;; a++, b++) {
    int x = (unsigned char)*a, y = (unsigned char)*b;
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return 0;
    if (x == 0) return 1;
  }
}

/* Argument errors worded and placed as uring.check words and places
 * them for the Lua versions (at the handler's line; a method's self is
 * #1, and with ':' the count starts after it) */
static int arg_error (lua_State *L, int arg, const char *fname,
                      const char *msg) {
  lua_Debug ar;
  if (lua_getstack(L, 0, &ar)) {
    lua_getinfo(L, "n", &ar);
    if (ar.namewhat != NULL && strcmp(ar.namewhat, "method") == 0) {
      arg--;
      if (arg == 0)
        return luaL_error(L, "calling '%s' on bad self (%s)", fname, msg);
    }
  }
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, fname, msg);
}

static int type_error (lua_State *L, int arg, const char *fname,
                       const char *expected) {
  const char *got = luaL_typename(L, arg);
  if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
    got = lua_tostring(L, -1);
  return arg_error(L, arg, fname,
                   lua_pushfstring(L, "%s expected, got %s", expected, got));
}

/* res:header(name, value) for this response: checked here as the Lua
 * set_header checks it (so its errors point at the handler's line).
 * While the state is in C, a name and value taken as they are (strings,
 * not a framing header) fill res's array slots as set_header fills them;
 * anything else is Lua's set_header, after the state is written back.
 * Another self is Lua's set_header's to take or refuse. */
static int l_fast_header (lua_State *L) {
  http_conn *hc;
  size_t nl, vl = 0, i;
  const char *n, *v = NULL;
  int vt, sent;
  if (!lua_istable(L, 1)) return type_error(L, 1, "header", "response");
  if ((hc = self_hc(L)) == NULL) return slow(L, 3);
  lua_settop(L, 3);
  /* the header the last response set at this place, the same strings
   * (by address: res's slots anchor them, and only checked ones that
   * frame nothing get there): set again without checking them again */
  i = (size_t)hc->hn;
  if (hc->fast && !hc->sent && i < FAST_HEADERS
      && lua_type(L, 2) == LUA_TSTRING && lua_type(L, 3) == LUA_TSTRING
      && (n = lua_tolstring(L, 2, &nl)) == hc->slot[2 * i]
      && (v = lua_tolstring(L, 3, &vl)) == hc->slot[2 * i + 1]) {
    size_t j;
    for (j = 0; j < i; j++)     /* set earlier in this response: replaced */
      if (same_name(hc->name[j], n)) break;
    if (j == i) {
      hc->name[i] = n;
      hc->value[i] = v;
      hc->vlen[i] = vl;
      hc->hn++;
      lua_settop(L, 1);
      return 1;
    }
  }
  v = NULL;
  vl = 0;
  if (lua_type(L, 2) != LUA_TSTRING) return type_error(L, 2, "header", "string");
  n = lua_tolstring(L, 2, &nl);
  if (nl == 0) return arg_error(L, 2, "header", "invalid header name");
  for (i = 0; i < nl; i++) {
    unsigned char c = (unsigned char)n[i];
    if (c <= ' ' || c == 0x7f || c == ':')
      return arg_error(L, 2, "header", "invalid header name");
  }
  vt = lua_type(L, 3);
  if (vt == LUA_TSTRING) {
    v = lua_tolstring(L, 3, &vl);
    if (memchr(v, '\r', vl) || memchr(v, '\n', vl))
      return arg_error(L, 3, "header", "CR or LF in value");
  }
  else if (vt != LUA_TNIL && vt != LUA_TNUMBER)
    return type_error(L, 3, "header", "string");
  sent = hc->fast ? hc->sent : truthy(L, 1, K_SENT);
  if (sent) return luaL_error(L, "header: headers already sent");
  if (!hc->fast || v == NULL || framing(n, nl)) return slow(L, 3);
  for (i = 0; i < (size_t)hc->hn; i++)
    if (same_name(hc->name[i], n)) break;
  if (i == FAST_HEADERS) return slow(L, 3);
  if (i == (size_t)hc->hn) {         /* a new name: appended */
    if (hc->slot[2 * i] != n) {
      lua_pushvalue(L, 2);
      lua_rawseti(L, 1, 2 * (lua_Integer)i + 1);
      hc->slot[2 * i] = n;
    }
    hc->name[i] = n;
    hc->hn++;
  }
  if (hc->slot[2 * i + 1] != v) {
    lua_pushvalue(L, 3);
    lua_rawseti(L, 1, 2 * (lua_Integer)i + 2);
    hc->slot[2 * i + 1] = v;
  }
  hc->value[i] = v;
  hc->vlen[i] = vl;
  lua_pushvalue(L, 1);
  return 1;
}

/* the send of a fast finish came back: stack 1 res, 2 body, 3 sent, 4 msg */
static int fast_finish_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  if (lua_toboolean(L, 3)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* a failed send ends the connection, as Lua's send() has it */
  http_flush(L, self_hc(L), 1);
  set_bool(L, 1, K_KEEP, 0);
  if (lua_isnil(L, 4)) lua_pushliteral(L, "send failed");
  else lua_pushvalue(L, 4);
  set(L, 1, K_ERR);
  luaL_pushfail(L);
  lua_pushvalue(L, 4);
  return 2;
}

/* the head and body of the response, as server.lua's finish builds them
 * (status 200: the state is in C only while it is), pushed */
static void build (lua_State *L, http_conn *hc, int keep, const char *body,
                   size_t blen, size_t length) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "HTTP/1.1 200 OK\r\n");
  for (int i = 0; i < hc->hn; i++) {
    luaL_addstring(&b, hc->name[i]);
    luaL_addstring(&b, ": ");
    luaL_addlstring(&b, hc->value[i], hc->vlen[i]);
    luaL_addstring(&b, "\r\n");
  }
  {                             /* (lua_pushfstring is a snprintf) */
    char num[24], *d = num + sizeof num;
    size_t v = length;
    do *--d = (char)('0' + v % 10); while ((v /= 10) > 0);
    luaL_addstring(&b, "Content-Length: ");
    luaL_addlstring(&b, d, (size_t)(num + sizeof num - d));
    luaL_addstring(&b, "\r\n");
  }
  luaL_addstring(&b, keep ? "Connection: keep-alive\r\n\r\n"
                          : "Connection: close\r\n\r\n");
  if (!hc->head_only && blen > 0) luaL_addlstring(&b, body, blen);
  luaL_pushresult(&b);
}

/* remember the response at the top (its bytes) as the last one built:
 * its strings anchored, their addresses kept */
static void remember (lua_State *L, const http_conn *hc, int res, int keep,
                      const char *body) {
  int memo = lua_upvalueindex(U_MEMO);
  http_memo *m = (http_memo *)lua_touserdata(L, memo);
  m->valid = 0;                 /* until it describes the new bytes */
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, memo, UV_MEMO_OUT);
  lua_getiuservalue(L, memo, UV_MEMO_ANCHORS);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 1);                      /* the body, or nil */
  for (int i = 1; i <= 2 * hc->hn; i++) {     /* the headers */
    lua_rawgeti(L, res, i);
    lua_rawseti(L, -2, 1 + i);
  }
  lua_pop(L, 1);
  m->valid = 1;
  m->keep = keep;
  m->head_only = hc->head_only;
  m->hn = hc->hn;
  m->body = body;
  for (int i = 0; i < hc->hn; i++) {
    m->name[i] = hc->name[i];
    m->value[i] = hc->value[i];
  }
}

static int same_as_memo (const http_memo *m, const http_conn *hc, int keep,
                         const char *body) {
  if (!m->valid || m->body != body || m->keep != keep
      || m->head_only != hc->head_only || m->hn != hc->hn)
    return 0;
  for (int i = 0; i < hc->hn; i++)
    if (m->name[i] != hc->name[i] || m->value[i] != hc->value[i])
      return 0;
  return 1;
}

/* Send the bytes at stack index at (the top): straight from C when the
 * socket can take them at once (the common case: a call of the Lua
 * sock:send cost ~900 instructions), else by sock:send, its checks and
 * waits.  k finds what sock:send returns at at and at + 1. */
static int send_out (lua_State *L, http_conn *hc, int at, lua_KContext ctx,
                     lua_KFunction k) {
  if (ur_sock_send_behind(L, hc->sock, at)) {
    lua_settop(L, at - 1);
    lua_pushboolean(L, 1);      /* (k takes a true "sent") */
    lua_pushnil(L);
    return k(L, LUA_OK, ctx);
  }
  lua_pushvalue(L, lua_upvalueindex(U_SEND));
  push_sock(L);                 /* (index 1 is the response) */
  lua_rotate(L, at, 2);         /* send, sock, bytes */
  lua_callk(L, 2, 2, ctx, k);
  return k(L, LUA_OK, ctx);
}

/* res:finish([body]) for this response, checked here as the Lua finish
 * checks it.  While the state is in C, a string body (or none) goes out
 * with the head in one send, the same bytes as last time when the
 * response is the same; anything else is Lua's finish. */
static int l_fast_finish (lua_State *L) {
  http_conn *hc;
  const char *body = NULL;
  size_t blen = 0;
  int keep, t;
  if (!lua_istable(L, 1)) return type_error(L, 1, "finish", "response");
  if ((hc = self_hc(L)) == NULL) return slow(L, lua_gettop(L));
  lua_settop(L, 2);
  t = lua_type(L, 2);
  if (t != LUA_TSTRING && t != LUA_TNIL && t != LUA_TNUMBER)
    return type_error(L, 2, "finish", "string");
  if (!hc->fast || t == LUA_TNUMBER) return slow(L, 2);
  if (hc->done) {                 /* finished already: as Lua's finish */
    lua_pushboolean(L, 1);
    return 1;
  }
  ur_task_current(L, "finish");
  if (t == LUA_TSTRING) body = lua_tolstring(L, 2, &blen);
  keep = hc->keep;
  hc->sent = hc->done = 1;
  if (same_as_memo((http_memo *)lua_touserdata(L, lua_upvalueindex(U_MEMO)),
                   hc, keep, body))
    lua_getiuservalue(L, lua_upvalueindex(U_MEMO), UV_MEMO_OUT);
  else {
    build(L, hc, keep, body ? body : "", blen, blen);
    if (blen <= MEMO_BODY) remember(L, hc, 1, keep, body);
  }
  return send_out(L, hc, 3, 0, fast_finish_k);
}

/* res:sent() for this response: read from the C state, which stays in
 * C (a handler asking it first, as uring.http.static does, then keeps
 * the fast path); anything else is Lua's sent */
static int l_fast_sent (lua_State *L) {
  http_conn *hc = self_hc(L);
  if (hc == NULL || !hc->fast)
    return slow(L, lua_gettop(L));
  lua_pushboolean(L, hc->sent);
  return 1;
}

/* the send of a fast sendfile came back: stack 1 res, 2 file, 3 offset,
 * 4 len, 5 sent (bytes of the file; true for the head alone), 6 msg.
 * ctx: the head alone was sent (HEAD). */
static int fast_sendfile_k (lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if (ctx ? lua_toboolean(L, 5)
          : (lua_isinteger(L, 5) && lua_tointeger(L, 5) == lua_tointeger(L, 4))) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* a short send ends the connection, as Lua's res:sendfile has it */
  http_flush(L, self_hc(L), 1);
  set_bool(L, 1, K_KEEP, 0);
  if (lua_isnil(L, 6)) {
    if (ctx) lua_pushliteral(L, "send failed");
    else lua_pushliteral(L, "file shrank while it was sent");
    lua_replace(L, 6);
  }
  lua_pushvalue(L, 6);
  set(L, 1, K_ERR);
  luaL_pushfail(L);
  lua_pushvalue(L, 6);
  return 2;
}

/* res:sendfile(file, offset, len) for this response, checked here as the
 * Lua res:sendfile checks it.  While the state is in C (status 200), the
 * head is built here and sock:sendfile sends it with the bytes; the
 * state stays in C, done, so the connection's next request is the C
 * loop's too (handing the response to Lua cost a static request ~10,000
 * instructions).  Anything else is Lua's sendfile. */
static int l_fast_sendfile (lua_State *L) {
  http_conn *hc;
  lua_Integer off, len;
  int keep;
  if (!lua_istable(L, 1)) return type_error(L, 1, "sendfile", "response");
  if ((hc = self_hc(L)) == NULL || !hc->fast)
    return slow(L, lua_gettop(L));
  lua_settop(L, 4);
  if (!lua_isinteger(L, 3) || (off = lua_tointeger(L, 3)) < 0)
    return arg_error(L, 3, "sendfile", "offset must be a non-negative integer");
  if (!lua_isinteger(L, 4) || (len = lua_tointeger(L, 4)) < 0)
    return arg_error(L, 4, "sendfile", "length must be a non-negative integer");
  (void)off;
  if (hc->sent) return luaL_error(L, "sendfile: headers already sent");
  ur_task_current(L, "sendfile");
  keep = hc->keep;
  hc->sent = hc->done = 1;
  hc->len = len;
  if (hc->head_only) {          /* HEAD: the head alone, as sock:send */
    build(L, hc, keep, "", 0, (size_t)len);
    return send_out(L, hc, 5, 1, fast_sendfile_k);
  }
  lua_pushvalue(L, lua_upvalueindex(U_SENDFILE));
  push_sock(L);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 4);
  build(L, hc, keep, "", 0, (size_t)len);
  lua_callk(L, 5, 2, 0, fast_sendfile_k);
  return fast_sendfile_k(L, LUA_OK, 0);
}

/* core._http_methods(header, finish, sent, sendfile, send,
 * sock_sendfile) -> header, finish, sent, sendfile: the fast methods of
 * every connection's response, made once (header .. sendfile: Lua's
 * versions, which they fall back to; send and sock_sendfile: sock:send
 * and sock:sendfile) */
static int l_http_methods (lua_State *L) {
  static const lua_CFunction fast[] = {
    l_fast_header, l_fast_finish, l_fast_sent, l_fast_sendfile
  };
  enum { NFAST = sizeof fast / sizeof fast[0] };
  for (int i = 1; i <= 6; i++) luaL_checktype(L, i, LUA_TFUNCTION);
  lua_settop(L, 6);
  for (int fn = 0; fn < NFAST; fn++) {
    lua_pushvalue(L, lua_upvalueindex(U_LOOP));
    lua_pushvalue(L, lua_upvalueindex(U_KEYS));
    lua_pushvalue(L, lua_upvalueindex(U_MEMO));
    luaL_getmetatable(L, HTTP_CONN_MT);
    lua_pushvalue(L, 1 + fn);
    lua_pushvalue(L, 5);
    lua_pushvalue(L, 6);
    lua_pushcclosure(L, fast[fn], U_LAST);
  }
  return NFAST;
}

/* core._http_conn(res, sock) -> hc: the C state of a connection's
 * response, found by the fast methods as res._hc */
static int l_http_conn (lua_State *L) {
  enum { HC = 3 };
  http_conn *hc;
  ur_sock *sock;
  luaL_checktype(L, 1, LUA_TTABLE);
  sock = ur_sock_check(L, 2);
  lua_settop(L, 2);
  hc = (http_conn *)lua_newuserdatauv(L, sizeof *hc, UV_COUNT);
  memset(hc, 0, sizeof *hc);
  hc->res = lua_topointer(L, 1);
  hc->sock = sock;
  hc->len = -1;
  push_key(L, K_COUNT + 1);     /* the metatable, kept with the names: */
  lua_setmetatable(L, HC);      /* luaL_setmetatable looks its name up */
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, HC, UV_RES);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, HC, UV_SOCK);
  lua_pushvalue(L, HC);
  set(L, 1, K_HC);
  return 1;
}

/* core._http_idle(hc [, now]) -> false while a request is under way;
 * else the time the connection was first seen idle: now, if this is the
 * first look since it went idle (the sweeper's step), or true if nobody
 * stamped it yet and now is not given */
static int l_http_idle (lua_State *L) {
  http_conn *hc = (http_conn *)luaL_checkudata(L, 1, HTTP_CONN_MT);
  if (hc->busy) lua_pushboolean(L, 0);
  else if (hc->stamped) lua_pushnumber(L, hc->since);
  else if (lua_isnoneornil(L, 2)) lua_pushboolean(L, 1);
  else {
    hc->since = luaL_checknumber(L, 2);
    hc->stamped = 1;
    lua_pushnumber(L, hc->since);
  }
  return 1;
}

/* core._http_busy(hc): the Lua loop took a request (a head with a body,
 * a bad head): not idle until sock:_serve waits for a head again */
static int l_http_busy (lua_State *L) {
  http_conn *hc = (http_conn *)luaL_checkudata(L, 1, HTTP_CONN_MT);
  hc->busy = 1;
  return 0;
}

/* --- the loop --- */

/* The stack, the same in every continuation:
 *   1 sock, 2 res (the connection's response and state), 3 server,
 *   4 handler, 5 Request (the requests' metatable), 6 hc; then 7 req,
 *   while the handler runs.  ctx: max_header. */
#define S_RES 2
#define S_SERVER 3
#define S_HANDLER 4
#define S_REQMT 5
#define S_HC 6
#define S_REQ 7

static int serve_recv_k (lua_State *L, int status, lua_KContext ctx);
static int serve_handler_k (lua_State *L, int status, lua_KContext ctx);

/* sock:_serve's own upvalues, after the shared ones: the names of the
 * fields it touches per request, each a string of its own (pushed from
 * an upvalue, a raw access costs less than lua_getfield/lua_setfield
 * with a C string, or the key fetched from the names array) */
enum { SK_REQUESTS, SK_COUNT };
static const int serve_keys[SK_COUNT] = { K_REQUESTS };

static void push_skey (lua_State *L, int sk) {
  lua_pushvalue(L, lua_upvalueindex(U_REGISTERED + 1 + sk));
}

/* The request of the head text at idx, as the handler's req: the head
 * (the Request metatable works out method, target and the rest from it
 * when read: csrc/http.c, Request.__index) and the socket, in the array
 * part (two slots cost less than two new keys: no hash part) */
static void push_req (lua_State *L, int idx) {
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, UR_REQ_HEAD);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, UR_REQ_SOCKET);
  lua_pushvalue(L, S_REQMT);
  lua_setmetatable(L, -2);
}

/* Run the loop until something is the Lua loop's to handle.  Returns what
 * sock:_serve returns (see l_sock_serve). */
static int serve_loop (lua_State *L, ur_sock *s, lua_KContext ctx) {
  http_conn *hc = (http_conn *)lua_touserdata(L, S_HC);
  http_memo *memo = (http_memo *)lua_touserdata(L, lua_upvalueindex(U_MEMO));
  for (;;) {
    int n, status;
    ur_http_head head;
    lua_settop(L, S_HC);
    if (ur_sock_closed(s))      /* closed under it, as by the sweeper */
      return luaL_error(L, "attempt to use a closed socket");
    /* (server._closing is not read per request: server:close() closes
     * an idle connection's socket and writes a busy one's state back,
     * with res._keep false, so the handler's end goes to the Lua loop,
     * which checks it; the loop goes on only without a pause between,
     * where close() cannot run) */
    head.last = memo->head;
    head.last_n = memo->head_n;
    head.last_max = memo->head_max;
    head.v10 = memo->head_v10;
    head.keep = memo->head_keep;
    head.head_only = memo->head_head_only;
    n = ur_http_take_serve(L, s, (size_t)ctx, &head);
    if (n == 1) return 1;                      /* a bad head: its status */
    if (n <= 0) {
      /* idle: the sweeper may end it now (and stamps it with its clock:
       * no clock read per request) */
      if (n < 0 && hc->busy) hc->busy = hc->stamped = 0;
      if (ur_sock_eof(s)) {
        lua_pushboolean(L, 0);
        return 1;
      }
      return ur_sock_recv(L, s, ur_sock_recv_task(L, s), ctx, serve_recv_k);
    }
    /* a body (Content-Length > 0, Transfer-Encoding): the Lua loop's */
    if (n != UR_HEAD_BARE) return n;
    if (head.same)              /* the last head's bytes: its string */
      lua_getiuservalue(L, lua_upvalueindex(U_MEMO), UV_MEMO_HEAD);
    else {                      /* kept for the next one */
      lua_pushvalue(L, -1);
      lua_setiuservalue(L, lua_upvalueindex(U_MEMO), UV_MEMO_HEAD);
      memo->head = lua_tolstring(L, -1, &memo->head_n);
      memo->head_max = (size_t)ctx;
      memo->head_v10 = head.v10;
      memo->head_keep = head.keep;
      memo->head_head_only = head.head_only;
    }
    hc->busy = 1;
    /* the response, reset: its state in C until Lua asks for it */
    hc->fast = 1;
    hc->keep = head.keep;
    hc->sent = hc->done = hc->hn = 0;
    hc->len = -1;
    hc->head_only = head.head_only;
    hc->v10 = head.v10;
    set_current(L, hc, S_HC);
    push_req(L, S_REQ);
    lua_replace(L, S_REQ);      /* the head's text goes; req stays at 7 */
    /* server.requests + 1 (a handler may read it) */
    push_skey(L, SK_REQUESTS);
    lua_pushvalue(L, -1);
    lua_rawget(L, S_SERVER);
    lua_pushinteger(L, lua_tointeger(L, -1) + 1);
    lua_replace(L, -2);
    lua_rawset(L, S_SERVER);
    lua_pushvalue(L, S_HANDLER);
    lua_pushvalue(L, S_REQ);
    lua_pushvalue(L, S_RES);
    status = lua_pcallk(L, 2, 3, 0, ctx, serve_handler_k);
    n = serve_handler_k(L, status, ctx);
    if (n >= 0) return n;
  }
}

/* After the handler: -1 to go on with the next request; else the number
 * of results for sock:_serve to return. */
static int after_handler (lua_State *L, int status) {
  http_conn *hc = (http_conn *)lua_touserdata(L, S_HC);
  if (status != LUA_OK && status != LUA_YIELD) {  /* it raised: err at 8 */
    http_flush(L, hc, S_RES);
    lua_pushboolean(L, 1);
    lua_pushboolean(L, 0);
    lua_pushvalue(L, S_REQ);
    lua_rotate(L, S_REQ + 1, 3);               /* true, false, req, err */
    return 4;
  }
  /* finished here, its state still in C: the response went out whole
   * (the handler's results are then ignored, as the Lua loop ignores
   * them), and nothing but res:header and res:finish touched it */
  if (hc->fast && hc->done) {
    /* the state stays in C, done: a late res:finish from another task
     * finds the response finished, as in the table */
    if (hc->keep) return -1;
    lua_pushboolean(L, 0);      /* the connection ends (its state stays in
                                   C, done: Lua's methods write it back) */
    return 1;
  }
  http_flush(L, hc, S_RES);
  lua_pushboolean(L, 1);
  lua_pushboolean(L, 1);
  lua_pushvalue(L, S_REQ);
  lua_rotate(L, S_REQ + 1, 3);      /* true, true, req, r1, r2, r3 */
  return 6;
}

static int serve_handler_k (lua_State *L, int status, lua_KContext ctx) {
  int n = after_handler(L, status);
  if (n >= 0 || status == LUA_OK) return n;  /* LUA_OK: serve_loop goes on */
  /* resumed after the handler yielded: the loop goes on from here */
  return serve_loop(L, ur_sock_check(L, 1), ctx);
}

static int serve_recv_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_sock *s;
  (void)status;
  switch (ur_sock_recv_result(L, t, &s)) {
    case UR_RECV_FAILED: return 3;
    case UR_RECV_AGAIN: return ur_sock_recv(L, s, t, ctx, serve_recv_k);
    default: return serve_loop(L, s, ctx);
  }
}

/* sock:_serve(max_header, res, server, handler, Request, hc) ->
 *     method, target, path, query, v10, lines, keep, length,
 *       transfer_encoding, expect   (a head with a body: the Lua loop's)
 *   | true, ok, req, r1, r2, r3 | true, false, req, err
 *       (the handler ran and left its response for the Lua loop to end)
 *   | status (a bad head: 400, 414, 431)
 *   | false (the peer closed, the server is closing, or the response
 *       ended the connection: Connection: close)
 *   | nil, msg, errno (a failed receive)
 * uring.http's connection loop for the common request. */
static int l_sock_serve (lua_State *L) {
  ur_sock *s = ur_sock_check(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  luaL_checktype(L, 6, LUA_TTABLE);
  ur_checkudata(L, 7, ((http_memo *)lua_touserdata(L, lua_upvalueindex(U_MEMO)))->hc_mt,
                HTTP_CONN_MT);
  luaL_argcheck(L, max > 0, 2, "positive size expected");
  /* the stack as serve_loop keeps it: max_header out of it */
  lua_rotate(L, 2, -1);
  lua_settop(L, S_HC);
  return serve_loop(L, s, (lua_KContext)max);
}

/* Functions of the core table (or of socket_methods) with this file's
 * upvalues: the loop, then the field names */
/* registry keys of the shared upvalues */
static char loop_key, keys_key, memo_key;

static void set_funcs (lua_State *L, const luaL_Reg *l) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &loop_key);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &keys_key);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &memo_key);
  luaL_setfuncs(L, l, U_REGISTERED);
}

void ur_register_http_serve (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_http_conn", l_http_conn}, {"_http_sync", l_http_sync},
    {"_http_methods", l_http_methods}, {"_http_idle", l_http_idle},
    {"_http_busy", l_http_busy}, {NULL, NULL}
  };
  static const luaL_Reg sock_methods[] = {
    {"_serve", l_sock_serve}, {NULL, NULL}
  };
  luaL_newmetatable(L, HTTP_CONN_MT);
  lua_pop(L, 1);
  /* the loop, as ur_setfuncs gives it to the core's functions, kept
   * where set_funcs finds it */
  ur_setfuncs(L, funcs);
  lua_getfield(L, -1, "_http_sync");
  lua_getupvalue(L, -1, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &loop_key);
  lua_pop(L, 1);
  lua_createtable(L, K_COUNT + 1, 0);
  for (int k = 0; k < K_COUNT; k++) {
    lua_pushstring(L, key_names[k]);
    lua_rawseti(L, -2, k + 1);
  }
  luaL_getmetatable(L, HTTP_CONN_MT);   /* [K_COUNT + 1]: l_http_conn's */
  lua_rawseti(L, -2, K_COUNT + 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &keys_key);
  {
    http_memo *memo = (http_memo *)lua_newuserdatauv(L, sizeof(http_memo),
                                                     UV_MEMO_COUNT);
    memset(memo, 0, sizeof *memo);
    luaL_getmetatable(L, HTTP_CONN_MT);   /* stays in the registry */
    memo->hc_mt = lua_topointer(L, -1);
    lua_pop(L, 1);
  }
  lua_createtable(L, 1 + 2 * FAST_HEADERS, 0);
  lua_setiuservalue(L, -2, UV_MEMO_ANCHORS);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &memo_key);
  set_funcs(L, funcs);
  if (lua_getfield(L, -1, "socket_methods") != LUA_TTABLE)
    luaL_error(L, "uring: internal error: http_serve.c registered before net.c");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &loop_key);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &keys_key);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &memo_key);
  for (int k = 0; k < SK_COUNT; k++)
    lua_pushstring(L, key_names[serve_keys[k] - 1]);
  luaL_setfuncs(L, sock_methods, U_REGISTERED + SK_COUNT);
  lua_pop(L, 1);
}
