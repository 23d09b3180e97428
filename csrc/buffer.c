/*
 * buffer.c: uring.buffer, a mutable byte buffer the kernel may read and
 * write.
 *
 * Lua strings are immutable and may be interned, so the kernel must never
 * write into one; a uring.buffer is the memory an SQE reads into.  Its
 * bytes live inside the userdata block itself, aligned to 4096, so the
 * buffer is good for O_DIRECT and needs no __gc: the block is freed with
 * the userdata.  The ring that names a buffer in an SQE anchors it (ring.c
 * keeps it in the ring's uservalue) and counts the SQE in pins, so the
 * collector cannot free it while the kernel still holds its address.
 *
 * Positions follow string.sub: 1-based, inclusive, negative counts from
 * the end.
 */
#include <stdint.h>
#include <string.h>

#include "uring.h"

#define BUF_ALIGN 4096
#define BUF_MAX   ((lua_Integer)1 << 30)

ur_buffer *ur_checkbuffer (lua_State *L, int idx) {
  return (ur_buffer *)luaL_checkudata(L, idx, UR_BUFFER_MT);
}

/* string.sub's index rule: negative counts from the end, then clamp. */
static size_t buf_start (lua_Integer pos, size_t len) {
  if (pos > 0) return (size_t)pos;
  else if (pos == 0) return 1;
  else if (pos < -(lua_Integer)len) return 1;
  return len + (size_t)pos + 1;
}

static size_t buf_end (lua_Integer pos, size_t len) {
  if (pos > (lua_Integer)len) return len;
  else if (pos >= 0) return (size_t)pos;
  else if (pos < -(lua_Integer)len) return 0;
  return len + (size_t)pos + 1;
}

/*
 * uring.buffer(size) -> buffer, zero-filled.  The block is over-allocated
 * by BUF_ALIGN - 1 bytes so data can be rounded up to a page boundary
 * inside it; Lua never moves a userdata, so the pointer stays valid.
 */
static int l_buffer (lua_State *L) {
  lua_Integer size = luaL_checkinteger(L, 1);
  ur_buffer *b;
  uintptr_t p;
  luaL_argcheck(L, size >= 1 && size <= BUF_MAX, 1,
                "size must be in 1..1073741824");
  b = (ur_buffer *)lua_newuserdatauv(L, sizeof *b + (size_t)size
                                     + BUF_ALIGN - 1, 0);
  p = (uintptr_t)(b + 1);
  p = (p + BUF_ALIGN - 1) & ~(uintptr_t)(BUF_ALIGN - 1);
  b->size = (size_t)size;
  b->pins = 0;
  b->data = (unsigned char *)p;
  memset(b->data, 0, b->size);
  luaL_setmetatable(L, UR_BUFFER_MT);
  return 1;
}

/* buf:size() -> bytes */
static int l_buf_size (lua_State *L) {
  ur_buffer *b = ur_checkbuffer(L, 1);
  lua_pushinteger(L, (lua_Integer)b->size);
  return 1;
}

/* buf:pinned() -> number of in-flight SQEs that name this buffer */
static int l_buf_pinned (lua_State *L) {
  ur_buffer *b = ur_checkbuffer(L, 1);
  lua_pushinteger(L, b->pins);
  return 1;
}

/* buf:tostring([i [, j]]) -> a copy of bytes i..j, as string.sub would */
static int l_buf_tostring (lua_State *L) {
  ur_buffer *b = ur_checkbuffer(L, 1);
  size_t i = buf_start(luaL_optinteger(L, 2, 1), b->size);
  size_t j = buf_end(luaL_optinteger(L, 3, -1), b->size);
  if (i > j)
    lua_pushliteral(L, "");
  else
    lua_pushlstring(L, (const char *)b->data + i - 1, j - i + 1);
  return 1;
}

/* buf:fill(byte [, i [, j]]) -> buf: set bytes i..j (all) to byte */
static int l_buf_fill (lua_State *L) {
  ur_buffer *b = ur_checkbuffer(L, 1);
  lua_Integer v = luaL_checkinteger(L, 2);
  size_t i, j;
  luaL_argcheck(L, v >= 0 && v <= 255, 2, "byte must be in 0..255");
  i = buf_start(luaL_optinteger(L, 3, 1), b->size);
  j = buf_end(luaL_optinteger(L, 4, -1), b->size);
  if (i <= j) memset(b->data + i - 1, (int)v, j - i + 1);
  lua_settop(L, 1);
  return 1;
}

/*
 * buf:write(s [, pos]) -> buf: copy s in starting at byte pos (1-based,
 * default 1, negative from the end).  Unlike tostring's clamping, a write
 * that does not fit raises: silently truncating data is a bug to report.
 */
static int l_buf_write (lua_State *L) {
  ur_buffer *b = ur_checkbuffer(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_Integer pos = luaL_optinteger(L, 3, 1);
  if (pos < 0) pos = (lua_Integer)b->size + pos + 1;
  luaL_argcheck(L, pos >= 1 && pos <= (lua_Integer)b->size, 3,
                "position out of range");
  if (len > b->size - (size_t)(pos - 1))
    return luaL_argerror(L, 2, lua_pushfstring(L,
        "%I bytes at position %I overflow a buffer of %I bytes",
        (lua_Integer)len, pos, (lua_Integer)b->size));
  memcpy(b->data + pos - 1, s, len);
  lua_settop(L, 1);
  return 1;
}

static int l_buf_len (lua_State *L) {
  return l_buf_size(L);
}

/* No address: raw pointers never cross into Lua. */
static int l_buf_tostr (lua_State *L) {
  ur_buffer *b = ur_checkbuffer(L, 1);
  lua_pushfstring(L, "uring.buffer(%I)", (lua_Integer)b->size);
  return 1;
}

void ur_register_buffer (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"size", l_buf_size}, {"tostring", l_buf_tostring},
    {"fill", l_buf_fill}, {"write", l_buf_write},
    {"pinned", l_buf_pinned},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__len", l_buf_len}, {"__tostring", l_buf_tostr},
    {"__index", NULL},
    {NULL, NULL}
  };
  luaL_newmetatable(L, UR_BUFFER_MT);
  ur_loop_get(L)->buffer_mt = lua_topointer(L, -1);  /* fs.c's fast check */
  luaL_setfuncs(L, meta, 0);
  luaL_newlibtable(L, methods);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_buffer);
  lua_setfield(L, -2, "buffer");
}
