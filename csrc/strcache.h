/*
 * strcache.h: the layout of the loop's string cache (strcache.c), for
 * the one user that needs it inline: sock:receive's line path (net.c)
 * asks the line slots for every line of a line protocol, and sock:send
 * a send slot for every small send; a call there costs a fifth of the
 * lookup.
 */
#ifndef UR_STRCACHE_H
#define UR_STRCACHE_H

#include <stdint.h>
#include <string.h>

#include "uring.h"

#define SEND_SLOTS 16
#define LINE_SLOTS 66      /* 33 pairs: the empty line's, 32 others */
#define LINE_KEEP_MAX 64   /* longer lines are pushed as they come */
#define NO_LINE    UINT32_MAX
/* a line slot's n with this bit: its line was not checked for CRs (kept
 * by a reader that keeps them), so a reader dropping CRs cannot take it */
#define LINE_MAYCR 0x80000000u

struct ur_strcache {
  struct { const char *p; uint32_t busy; int ref; } send[SEND_SLOTS];
  struct { const char *p; uint32_t n; int ref; } line[LINE_SLOTS];
  uint8_t victim[LINE_SLOTS / 2];   /* per pair: the slot a miss takes */
};

/* The first slot of a line's pair: the empty line (the end of every
 * HTTP head) has pair 0 to itself; others spread over the other 32 by
 * their length and three bytes (a mask, not a division). */
static inline unsigned ur_line_pair (const char *p, size_t n) {
  uint32_t h;
  if (n == 0) return 0;
  h = (uint32_t)n * 0x9E3779B1u;
  h ^= (unsigned char)p[0] | (unsigned char)p[n / 2] << 8
       | (unsigned char)p[n - 1] << 16;
  h *= 0x85EBCA6Bu;
  return 2 * (1 + (h >> 27));
}

/*
 * Push p[0..n), a line the caller knows has no CR, if a line slot holds
 * it with no CR either (nonzero), else push nothing (0).  sock:receive's
 * "*l" tries this before it scans the line for stray CRs: a line seen
 * lately needs no scan (its bytes are the slot's, which had none).
 * Never raises.
 */
static inline int ur_strcache_line_hit (lua_State *L, ur_loop *loop,
                                        const char *p, size_t n) {
  ur_strcache *c = loop->strcache;
  unsigned i;
  if (n > LINE_KEEP_MAX) return 0;
  i = ur_line_pair(p, n);
  if (c->line[i].n == n && (n == 0 || memcmp(c->line[i].p, p, n) == 0))
    c->victim[i / 2] = 1;       /* (the empty line has its pair alone) */
  else if (c->line[i + 1].n == n && memcmp(c->line[i + 1].p, p, n) == 0) {
    c->victim[i / 2] = 0;
    i++;
  }
  else return 0;
  /* the slot's string (its type, LUA_TSTRING, is nonzero) */
  return lua_rawgeti(L, LUA_REGISTRYINDEX, c->line[i].ref);
}

/* Pointers to string bodies are 16-byte aligned (malloc): mix the bits
 * above that. */
static inline unsigned ur_send_slot (const char *s) {
  uintptr_t u = (uintptr_t)s;
  return (unsigned)((u >> 4) ^ (u >> 10)) % SEND_SLOTS;
}

/*
 * r (a send of net.c's) sends bytes of the string at stack index idx,
 * whose body starts at str: pin it through a send slot.  1: pinned
 * (r->memclass UR_MEM_SLOT,
 * r->aux the slot; ur_req_free lets go of it); 0: the slot holds another
 * string still being sent, and the caller copies.  Never raises: the
 * slot's registry entry exists, so the store allocates nothing.
 */
static inline int ur_strcache_pin (lua_State *L, ur_loop *loop, ur_req *r,
                                   int idx, const char *str) {
  ur_strcache *c = loop->strcache;
  unsigned i = ur_send_slot(str);
  if (c->send[i].p != str) {
    if (c->send[i].busy) return 0;
    lua_pushvalue(L, idx);
    lua_rawseti(L, LUA_REGISTRYINDEX, c->send[i].ref);
    c->send[i].p = str;
  }
  c->send[i].busy++;
  r->memclass = UR_MEM_SLOT;
  r->aux = (int)i;
  return 1;
}

#endif
