/*
 * websocket.c: the byte work of RFC 6455 that Lua does slowly, for
 * lua/uring/http/websocket.lua (which owns the protocol).
 *
 *   core._ws_accept(key)      -> base64(SHA-1(key .. GUID)): the
 *                                handshake's Sec-WebSocket-Accept
 *   core._ws_mask(data [, key]) -> data XOR the 4-byte key, key: the
 *                                masking of every client frame (with no
 *                                key, a fresh one from getrandom(2))
 *   core._ws_unmask(key .. data) -> data XOR key: a received frame's
 *                                key and payload, split and unmasked
 *   core._ws_key()            -> a client's Sec-WebSocket-Key (16
 *                                random bytes in base64)
 *   core._ws_lock()           -> a lock: lock:acquire() waits in the
 *                                loop, lock:release() -- sends on one
 *                                connection never interleave their frames
 *
 * Masking in Lua moves ~60 MB/s (string.unpack/pack per 8 bytes); here it
 * runs at memory speed, which is what 256 MiB through an echo needs.
 * None of it touches a socket: the frames go through the socket methods,
 * so a TLS socket carries them unchanged.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "uring.h"

/* ---- SHA-1 (FIPS 180-4), only for the 60-byte handshake string ---- */

static uint32_t rol (uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block (uint32_t h[5], const unsigned char *p) {
  uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16
           | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++)
    w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  for (int i = 0; i < 80; i++) {
    uint32_t f, k, t;
    if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999u; }
    else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1u; }
    else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDCu; }
    else { f = b ^ c ^ d; k = 0xCA62C1D6u; }
    t = rol(a, 5) + f + e + k + w[i];
    e = d; d = c; c = rol(b, 30); b = a; a = t;
  }
  h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void sha1 (const unsigned char *msg, size_t n, unsigned char out[20]) {
  uint32_t h[5] = { 0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u,
                    0xC3D2E1F0u };
  unsigned char tail[128];
  size_t full = n / 64 * 64, rest = n - full, tl;
  uint64_t bits = (uint64_t)n * 8;
  for (size_t i = 0; i < full; i += 64) sha1_block(h, msg + i);
  /* the padding: 0x80, zeros, the length in bits (big-endian) */
  memset(tail, 0, sizeof tail);
  memcpy(tail, msg + full, rest);
  tail[rest] = 0x80;
  tl = rest + 9 <= 64 ? 64 : 128;
  for (int i = 0; i < 8; i++) tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
  for (size_t i = 0; i < tl; i += 64) sha1_block(h, tail + i);
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (unsigned char)(h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(h[i] >> 8);
    out[4 * i + 3] = (unsigned char)h[i];
  }
}

static const char B64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* base64 of p[0..n) into out (4 * ceil(n / 3) bytes); its length */
static size_t b64 (const unsigned char *p, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < n) v |= p[i + 2];
    out[o++] = B64[v >> 18 & 63];
    out[o++] = B64[v >> 12 & 63];
    out[o++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? B64[v & 63] : '=';
  }
  return o;
}

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* _ws_accept(key) -> the Sec-WebSocket-Accept answering key */
static int l_ws_accept (lua_State *L) {
  size_t n;
  const char *key = luaL_checklstring(L, 1, &n);
  unsigned char buf[128], digest[20];
  char out[28];
  luaL_argcheck(L, n <= sizeof buf - sizeof WS_GUID, 1, "key too long");
  memcpy(buf, key, n);
  memcpy(buf + n, WS_GUID, sizeof WS_GUID - 1);
  sha1(buf, n + sizeof WS_GUID - 1, digest);
  lua_pushlstring(L, out, b64(digest, 20, out));
  return 1;
}

/* ---- unpredictable bytes: a client's keys (RFC 6455 10.3) ---- */

/* A pool refilled 4 KiB at a time: one getrandom per ~1,000 frames, not
 * one per frame.  Per thread: uring.thread states run on other threads. */
static _Thread_local unsigned char pool[4096];
static _Thread_local size_t pool_left;

static int random_bytes (unsigned char *out, size_t n) {
  while (n > 0) {
    size_t k;
    if (pool_left == 0) {
      ssize_t got = getrandom(pool, sizeof pool, 0);
      if (got < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      pool_left = (size_t)got;
      continue;
    }
    k = n < pool_left ? n : pool_left;
    memcpy(out, pool + sizeof pool - pool_left, k);
    memset(pool + sizeof pool - pool_left, 0, k);   /* used once only */
    pool_left -= k;
    out += k;
    n -= k;
  }
  return 0;
}

/* _ws_key() -> a client's Sec-WebSocket-Key: 16 random bytes in base64 */
static int l_ws_key (lua_State *L) {
  unsigned char raw[16];
  char out[24];
  int res = random_bytes(raw, sizeof raw);
  if (res < 0) return ur_pushfail(L, res, "getrandom");
  lua_pushlstring(L, out, b64(raw, sizeof raw, out));
  return 1;
}

/* data XOR key (repeated) from src[0..n) into a new string at the top.
 * Eight bytes at a time; memcpy keeps the loads unaligned-safe (and
 * compiles to plain moves).  The bytes are masked into scratch memory,
 * then copied into the string: a luaL_Buffer over 1 KiB is a boxed
 * userdata with a __gc metamethod, one more finalizer per frame for the
 * collector to queue and call. */
#define WS_SCRATCH 65536
static _Thread_local unsigned char scratch[WS_SCRATCH];

static void xor_into (unsigned char *dst, const unsigned char *src, size_t n,
                      const unsigned char key[4]) {
  size_t i = 0;
  uint64_t k8;
  memcpy(&k8, key, 4);
  memcpy((unsigned char *)&k8 + 4, key, 4);
  for (; i + 32 <= n; i += 32) {    /* 4 words a turn: fewer branches */
    uint64_t v[4];
    memcpy(v, src + i, 32);
    v[0] ^= k8; v[1] ^= k8; v[2] ^= k8; v[3] ^= k8;
    memcpy(dst + i, v, 32);
  }
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= k8;
    memcpy(dst + i, &v, 8);
  }
  for (; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

static void push_masked (lua_State *L, const unsigned char *src, size_t n,
                         const unsigned char key[4]) {
  unsigned char *dst = scratch;
  if (n > WS_SCRATCH)           /* plain userdata: no finalizer, no leak */
    dst = (unsigned char *)lua_newuserdatauv(L, n, 0);
  xor_into(dst, src, n, key);
  lua_pushlstring(L, (const char *)dst, n);
  if (n > WS_SCRATCH) lua_remove(L, -2);
}

/* _ws_mask(data [, key]) -> data XOR key, key.  Its own inverse: the
 * same call unmasks. */
static int l_ws_mask (lua_State *L) {
  size_t n, kn;
  const unsigned char *src = (const unsigned char *)luaL_checklstring(L, 1, &n);
  unsigned char key[4];
  if (lua_isnoneornil(L, 2)) {
    int res = random_bytes(key, 4);
    if (res < 0) return ur_pushfail(L, res, "getrandom");
  } else {
    const char *k = luaL_checklstring(L, 2, &kn);
    luaL_argcheck(L, kn == 4, 2, "4-byte key expected");
    memcpy(key, k, 4);
  }
  push_masked(L, src, n, key);
  lua_pushlstring(L, (const char *)key, 4);
  return 2;
}

/* _ws_unmask(key .. masked) -> the payload: a small frame's key and
 * payload come in one receive, and are split here without a copy */
static int l_ws_unmask (lua_State *L) {
  size_t n;
  const unsigned char *src = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_argcheck(L, n >= 4, 1, "4-byte key expected");
  push_masked(L, src + 4, n - 4, src);
  return 1;
}

/* ---- a lock over the loop: one sender at a time per connection ---- */

#define WS_LOCK_MT "uring.ws_lock"

typedef struct ws_lock {
  int held;
  ur_waitq waiters;
} ws_lock;

static int acquire_k (lua_State *L, int status, lua_KContext ctx);

/* Waiters all wake at a release and try again: a waiter cancelled while
 * woken can then never strand the others (no hand-over to lose). */
static int acquire (lua_State *L, ws_lock *l, ur_task *t) {
  if (!l->held) {
    l->held = 1;
    return 0;
  }
  return ur_park(L, t, &l->waiters, "send", 0, acquire_k);
}

static int acquire_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ws_lock *l = (ws_lock *)luaL_checkudata(L, 1, WS_LOCK_MT);
  (void)status; (void)ctx;
  ur_check_interrupt(L, t);     /* canceled or timed out: raises */
  return acquire(L, l, t);
}

/* lock:acquire(): waits (in the loop) until no other task holds it */
static int l_lock_acquire (lua_State *L) {
  ws_lock *l = (ws_lock *)luaL_checkudata(L, 1, WS_LOCK_MT);
  ur_task *t;
  if (!l->held) {               /* the usual case: nobody else sends */
    l->held = 1;
    return 0;
  }
  t = ur_task_current(L, "send");
  lua_settop(L, 1);
  return acquire(L, l, t);
}

/* lock:release(): lets the waiters try again */
static int l_lock_release (lua_State *L) {
  ws_lock *l = (ws_lock *)luaL_checkudata(L, 1, WS_LOCK_MT);
  l->held = 0;
  if (l->waiters.head) ur_waitq_wake_all(ur_loop_of(L), &l->waiters);
  return 0;
}

/* _ws_lock() -> a free lock */
static int l_ws_lock (lua_State *L) {
  ws_lock *l = (ws_lock *)lua_newuserdatauv(L, sizeof *l, 0);
  memset(l, 0, sizeof *l);
  luaL_setmetatable(L, WS_LOCK_MT);
  return 1;
}

void ur_register_websocket (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_ws_accept", l_ws_accept}, {"_ws_mask", l_ws_mask},
    {"_ws_unmask", l_ws_unmask},
    {"_ws_key", l_ws_key}, {"_ws_lock", l_ws_lock},
    {NULL, NULL}
  };
  static const luaL_Reg lock_methods[] = {
    {"acquire", l_lock_acquire}, {"release", l_lock_release},
    {NULL, NULL}
  };
  luaL_newmetatable(L, WS_LOCK_MT);
  lua_newtable(L);
  ur_setfuncs(L, lock_methods);        /* the loop as upvalue 1 */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
}
