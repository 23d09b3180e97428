/*
 * strcache.c: strings the loop keeps anchored in a few fixed registry
 * slots, so the two hottest string paths of a socket cost no allocation.
 *
 * - A small send is pinned through a send slot instead of copied into
 *   malloc'd memory (net.c's send_req): the slot anchors the string until
 *   every request reading it has completed (busy), and the next send of
 *   the same string (an HTTP server's canned response) finds it there
 *   with one pointer compare.  Storing a string in a free slot is one
 *   registry store, cheaper than the malloc, memcpy and free it replaces;
 *   a slot still being read is not replaced: that send copies as before.
 *   The kernel reads the Lua string itself, anchored: principle 3 of
 *   DESIGN.md ("a string being sent is pinned, not copied").
 *
 * - A received line is pushed through a line slot: a line seen lately
 *   (a keep-alive client's request line and headers, the blank line
 *   ending them) comes back as the string made last time, found by a
 *   cheap hash of its length and three bytes (naming a pair of slots)
 *   and a memcmp, instead of Lua hashing every byte again to intern it
 *   (~6 instructions a byte).  A miss pushes the string as before and
 *   keeps it in the pair's slot used less lately.
 *
 * Both sets are small (16 strings of up to 1 KiB, 65 lines of up to 64
 * bytes: ~20 KiB held at most; sends direct-mapped, lines two-way), and
 * their registry slots are taken once, when the module is opened, so the
 * hot paths never allocate a ref.
 */
#include <stdint.h>
#include <string.h>

#include "uring.h"

#include "strcache.h"   /* the cache's layout; its line hit, inline */

/* r is done: the kernel no longer reads its slot's string. */
void ur_strcache_unpin (ur_loop *loop, ur_req *r) {
  loop->strcache->send[r->aux].busy--;
}

/* The slot of the pair at i holding p[0..n) (its n equal to key: n, or
 * n with LINE_MAYCR), or -1; a hit makes the pair's other slot the one a
 * miss takes next */
static int line_find (ur_strcache *c, unsigned i, const char *p, size_t n,
                      uint32_t key) {
  if ((c->line[i].n == key || c->line[i].n == (key | LINE_MAYCR))
      && memcmp(c->line[i].p, p, n) == 0) {
    c->victim[i / 2] = 1;
    return (int)i;
  }
  if ((c->line[i + 1].n == key || c->line[i + 1].n == (key | LINE_MAYCR))
      && memcmp(c->line[i + 1].p, p, n) == 0) {
    c->victim[i / 2] = 0;
    return (int)i + 1;
  }
  return -1;
}

/*
 * Push p[0..n) as a Lua string: the one a line slot holds if it has
 * these bytes, else a new one, kept in the slot (nocr: the caller checked
 * it has no CR, so ur_strcache_line_hit may hand it out).  Raises only
 * as lua_pushlstring does (memory).
 */
void ur_strcache_push_line (lua_State *L, ur_loop *loop, const char *p,
                            size_t n, int nocr) {
  ur_strcache *c = loop->strcache;
  unsigned i;
  int hit;
  const char *s;
  if (n > LINE_KEEP_MAX) {
    lua_pushlstring(L, p, n);
    return;
  }
  i = ur_line_pair(p, n);
  hit = line_find(c, i, p, n, (uint32_t)n);
  if (hit >= 0) {
    if (nocr) c->line[hit].n = (uint32_t)n;   /* now known CR-free */
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->line[hit].ref);
    return;
  }
  /* two lines that share a pair both stay; a third takes the place of
   * the one used less lately */
  i += c->victim[i / 2];
  c->victim[i / 2] ^= 1;
  s = lua_pushlstring(L, p, n);
  lua_pushvalue(L, -1);
  lua_rawseti(L, LUA_REGISTRYINDEX, c->line[i].ref);   /* anchored */
  c->line[i].p = s;
  c->line[i].n = (uint32_t)n | (nocr ? 0 : LINE_MAYCR);
}

/* The cache and its registry slots, once per Lua state (the loop keeps
 * it when the module is opened again).  It is a userdata anchored in the
 * registry: it lives as long as the loop, whose teardown still releases
 * send slots through it. */
void ur_register_strcache (lua_State *L) {
  ur_loop *loop = ur_loop_get(L);
  ur_strcache *c;
  if (loop->strcache) return;
  c = (ur_strcache *)lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_ref(L, LUA_REGISTRYINDEX);      /* anchored for the state's life */
  for (int i = 0; i < SEND_SLOTS; i++) {
    lua_pushboolean(L, 0);
    c->send[i].ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  for (int i = 0; i < LINE_SLOTS; i++) {
    c->line[i].n = NO_LINE;
    lua_pushboolean(L, 0);
    c->line[i].ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  loop->strcache = c;
}
