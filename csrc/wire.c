/*
 * wire.c: Lua values copied from one lua_State to another as bytes.
 *
 * uring.thread runs Lua in a state of its own on another OS thread; the
 * two states share nothing, so arguments and results travel as a flat
 * byte string in plain malloc'd memory that either thread may free.
 * Only plain data crosses: nil, booleans, numbers (integer or float, as
 * they were), strings, and tables of them (keys too).  A function, a
 * userdata, a thread, a table that contains itself, or one nested deeper
 * than UR_WIRE_DEPTH is refused with a sentence saying which and where.
 * Tables are copied raw: metatables stay behind.
 *
 * Encoding never raises (it runs on the worker, where a raise would
 * escape the job), and allocates no Lua memory; decoding allocates Lua
 * values and raises only for memory, inside the caller's protection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uring.h"

enum { W_NIL = 'n', W_FALSE = 'f', W_TRUE = 't', W_INT = 'i', W_FLT = 'd',
       W_STR = 's', W_TABLE = '{', W_END = '}' };

static int wire_put (ur_wire *w, const void *p, size_t n) {
  if (n == 0) return 0;         /* w->p may still be NULL */
  if (w->cap - w->len < n) {
    size_t cap = w->cap ? w->cap : 64;
    char *q;
    while (cap - w->len < n) cap *= 2;
    if ((q = (char *)realloc(w->p, cap)) == NULL) return -1;
    w->p = q;
    w->cap = cap;
  }
  memcpy(w->p + w->len, p, n);
  w->len += n;
  return 0;
}

static int wire_tag (ur_wire *w, char tag) { return wire_put(w, &tag, 1); }

typedef struct enc {
  ur_wire *w;
  const void *path[UR_WIRE_DEPTH];   /* the tables we are inside: a cycle
                                        is one of them met again */
  int depth;
  char *err;
  size_t errlen;
} enc;

static int enc_value (lua_State *L, int idx, enc *e);

static int enc_table (lua_State *L, int idx, enc *e) {
  const void *me = lua_topointer(L, idx);
  for (int i = 0; i < e->depth; i++)
    if (e->path[i] == me) {
      snprintf(e->err, e->errlen, "a table that contains itself cannot be "
               "copied");
      return -1;
    }
  if (e->depth == UR_WIRE_DEPTH) {
    snprintf(e->err, e->errlen, "tables nested deeper than %d cannot be "
             "copied", UR_WIRE_DEPTH);
    return -1;
  }
  if (!lua_checkstack(L, 3)) {
    snprintf(e->err, e->errlen, "stack overflow");
    return -1;
  }
  e->path[e->depth++] = me;
  if (wire_tag(e->w, W_TABLE) < 0) goto nomem;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if (enc_value(L, top - 1, e) < 0 || enc_value(L, top, e) < 0) {
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
  }
  if (wire_tag(e->w, W_END) < 0) goto nomem;
  e->depth--;
  return 0;
nomem:
  snprintf(e->err, e->errlen, "not enough memory");
  return -1;
}

static int enc_value (lua_State *L, int idx, enc *e) {
  int rc = 0;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: rc = wire_tag(e->w, W_NIL); break;
    case LUA_TBOOLEAN:
      rc = wire_tag(e->w, lua_toboolean(L, idx) ? W_TRUE : W_FALSE);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        rc = wire_tag(e->w, W_INT) < 0 ? -1 : wire_put(e->w, &i, sizeof i);
      }
      else {
        lua_Number d = lua_tonumber(L, idx);
        rc = wire_tag(e->w, W_FLT) < 0 ? -1 : wire_put(e->w, &d, sizeof d);
      }
      break;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);   /* a string: no convert */
      rc = (wire_tag(e->w, W_STR) < 0 || wire_put(e->w, &n, sizeof n) < 0
            || wire_put(e->w, s, n) < 0) ? -1 : 0;
      break;
    }
    case LUA_TTABLE:
      return enc_table(L, lua_absindex(L, idx), e);
    default:
      snprintf(e->err, e->errlen, "a %s cannot be copied to another Lua "
               "state", luaL_typename(L, idx));
      return -1;
  }
  if (rc < 0) snprintf(e->err, e->errlen, "not enough memory");
  return rc;
}

/* Append the value at idx to w.  0, or -1 with the reason in err. */
int ur_wire_encode (lua_State *L, int idx, ur_wire *w, char *err,
                    size_t errlen) {
  enc e;
  e.w = w;
  e.depth = 0;
  e.err = err;
  e.errlen = errlen;
  return enc_value(L, lua_absindex(L, idx), &e);
}

typedef struct dec { const char *p, *end; } dec;

static void dec_bytes (lua_State *L, dec *d, void *out, size_t n) {
  if ((size_t)(d->end - d->p) < n)
    luaL_error(L, "uring: internal error: truncated value");
  memcpy(out, d->p, n);
  d->p += n;
}

static void dec_value (lua_State *L, dec *d, int depth) {
  char tag;
  luaL_checkstack(L, 3, "copying a value");
  dec_bytes(L, d, &tag, 1);
  switch (tag) {
    case W_NIL: lua_pushnil(L); break;
    case W_FALSE: lua_pushboolean(L, 0); break;
    case W_TRUE: lua_pushboolean(L, 1); break;
    case W_INT: { lua_Integer i; dec_bytes(L, d, &i, sizeof i);
                  lua_pushinteger(L, i); break; }
    case W_FLT: { lua_Number x; dec_bytes(L, d, &x, sizeof x);
                  lua_pushnumber(L, x); break; }
    case W_STR: {
      size_t n;
      dec_bytes(L, d, &n, sizeof n);
      if ((size_t)(d->end - d->p) < n)
        luaL_error(L, "uring: internal error: truncated value");
      lua_pushlstring(L, d->p, n);
      d->p += n;
      break;
    }
    case W_TABLE:
      if (depth > UR_WIRE_DEPTH)
        luaL_error(L, "uring: internal error: value nested too deep");
      lua_newtable(L);
      while (d->p < d->end && *d->p != W_END) {
        dec_value(L, d, depth + 1);
        dec_value(L, d, depth + 1);
        lua_rawset(L, -3);
      }
      dec_bytes(L, d, &tag, 1);   /* W_END */
      break;
    default:
      luaL_error(L, "uring: internal error: bad value tag");
  }
}

/* Push every value in w; returns how many.  Raises only for memory. */
int ur_wire_decode (lua_State *L, const ur_wire *w) {
  dec d;
  int n = 0;
  if (w->len == 0) return 0;    /* w->p may be NULL */
  d.p = w->p;
  d.end = w->p + w->len;
  while (d.p < d.end) {
    dec_value(L, &d, 0);
    n++;
  }
  return n;
}

void ur_wire_free (ur_wire *w) {
  free(w->p);
  w->p = NULL;
  w->len = w->cap = 0;
}
