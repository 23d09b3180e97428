/*
 * faults.c: allocation failures for the core, on request (test builds only).
 *
 * Linked into the core only by `make asan-build` (FAULTS=1), which also
 * compiles every csrc file with -DUR_FAULTS: uring.h then routes malloc,
 * calloc, realloc and posix_memalign here.  The release core has neither
 * this file nor the macros, so it is the same code as without them.
 *
 *   local faults = require "uring.faults"   (the test build's module)
 *   faults.alloc(n) -> count, failed   arm: count the core's allocations
 *                                      from now, fail the nth (0: none);
 *                                      returns what the previous arming saw
 *   faults.alloc()  -> count, failed   disarm, and the same
 *   faults.enter(...), faults.bufring{...}: below
 *
 * A module of its own, not a field of uring.core: nothing of the test
 * build reaches the public table.
 *
 * Helper threads (dns.c, copy.c) allocate too, so the counter is atomic;
 * which allocation is the nth then depends a little on timing, as the
 * sweep accepts.
 *
 * The kernel's side (uring.h routes these liburing calls here too), for
 * the failure modes this kernel will not produce on request
 * (spec/regress/12_modes_spec.lua):
 *
 *   faults.enter(n, "EAGAIN" | "EBUSY" [, period]) -> hits, calls
 *       the next n submits (one in every period, default 1) fail with
 *       that error after pushing the SQEs into the kernel's SQ, as
 *       io_uring_enter does when it fails (tokio#8255); returns what the
 *       previous arming saw; faults.enter() disarms
 *   URING_FAULT_SETUP_EINVAL=DEFER_TASKRUN,SINGLE_ISSUER
 *       io_uring_setup refuses (EINVAL) any flag set naming one of these,
 *       as a kernel older than the flag does
 *   URING_FAULT_MASK_OPS=socket,waitid
 *       the probe lacks these ops, and an SQE of one is answered by the
 *       real kernel with the EINVAL an older kernel gives an op it does
 *       not know (its opcode is rewritten to one past any kernel's last)
 *   faults.bufring{max = n, hold = true | false} -> held
 *       the provided-buffer group grows to n buffers at most; with hold,
 *       buffers the core gives back are kept here instead, as if a
 *       consumer still held them, until hold = false gives them back
 * The variables are read at each call, so a child may change them
 * between ring setups.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uring.h"

#undef malloc
#undef calloc
#undef realloc
#undef posix_memalign
#undef io_uring_queue_init_params
#undef io_uring_get_probe_ring
#undef io_uring_get_probe
#undef io_uring_submit
#undef io_uring_submit_and_wait
#undef io_uring_submit_and_get_events
#undef io_uring_submit_and_wait_timeout

static unsigned long fault_count, fault_at;
static int fault_armed, fault_failed;

/* Under ASan, URING_OOM_STACK=1 prints where the failed one was asked
 * for (the sweep's reports name the function) */
#if defined(__SANITIZE_ADDRESS__)
void __sanitizer_print_stack_trace (void);
#define print_stack() __sanitizer_print_stack_trace()
#else
#define print_stack() ((void)0)
#endif

/* 1: this allocation is the one to fail */
static int fault_now (void) {
  unsigned long n;
  if (!__atomic_load_n(&fault_armed, __ATOMIC_RELAXED)) return 0;
  n = __atomic_add_fetch(&fault_count, 1, __ATOMIC_RELAXED);
  if (n != fault_at) return 0;
  __atomic_store_n(&fault_failed, 1, __ATOMIC_RELAXED);
  if (getenv("URING_OOM_STACK") && *getenv("URING_OOM_STACK") == '1') {
    fprintf(stderr, "@@oom failed core allocation %lu at:\n", n);
    print_stack();
  }
  return 1;
}

void *ur_fault_malloc (size_t n) {
  return fault_now() ? NULL : malloc(n);
}

void *ur_fault_calloc (size_t n, size_t m) {
  return fault_now() ? NULL : calloc(n, m);
}

void *ur_fault_realloc (void *p, size_t n) {
  return n > 0 && fault_now() ? NULL : realloc(p, n);
}

int ur_fault_memalign (void **p, size_t align, size_t n) {
  return fault_now() ? ENOMEM : posix_memalign(p, align, n);
}

static int l_faults (lua_State *L) {
  lua_Integer at = luaL_optinteger(L, 1, -1);
  lua_pushinteger(L, (lua_Integer)__atomic_load_n(&fault_count, __ATOMIC_RELAXED));
  lua_pushboolean(L, __atomic_load_n(&fault_failed, __ATOMIC_RELAXED));
  __atomic_store_n(&fault_armed, 0, __ATOMIC_RELAXED);
  if (at >= 0) {
    fault_count = 0;
    fault_failed = 0;
    fault_at = (unsigned long)at;
    __atomic_store_n(&fault_armed, 1, __ATOMIC_RELAXED);
  }
  return 2;
}

/* --- io_uring_enter failing after the SQEs were pushed --- */

static struct {
  unsigned long left, period, calls, hits;
  int err;
} enter;

/* 0, or the error this submit fails with.  The SQEs prepared since the
 * last submit are first made the kernel's (liburing's __io_uring_flush_sq:
 * the SQ tail moves), as a real io_uring_enter that fails finds them: the
 * next submit must not prepare them again, and their requests stay in
 * flight until their CQEs (under SQPOLL the poller may take them now). */
static int enter_fails (struct io_uring *ring) {
  struct io_uring_sq *sq = &ring->sq;
  if (enter.left == 0 || ++enter.calls % enter.period != 0) return 0;
  enter.left--;
  enter.hits++;
  if (sq->sqe_head != sq->sqe_tail) {
    sq->sqe_head = sq->sqe_tail;
    io_uring_smp_store_release(sq->ktail, sq->sqe_tail);
  }
  return enter.err;
}

int ur_fault_submit (struct io_uring *ring) {
  int err = enter_fails(ring);
  return err ? err : io_uring_submit(ring);
}

int ur_fault_submit_and_wait (struct io_uring *ring, unsigned wait_nr) {
  int err = enter_fails(ring);
  return err ? err : io_uring_submit_and_wait(ring, wait_nr);
}

int ur_fault_submit_and_get_events (struct io_uring *ring) {
  int err = enter_fails(ring);
  return err ? err : io_uring_submit_and_get_events(ring);
}

int ur_fault_submit_and_wait_timeout (struct io_uring *ring,
                                      struct io_uring_cqe **cqe, unsigned n,
                                      struct __kernel_timespec *ts,
                                      sigset_t *sigmask) {
  int err = enter_fails(ring);
  return err ? err : io_uring_submit_and_wait_timeout(ring, cqe, n, ts, sigmask);
}

static int l_fault_enter (lua_State *L) {
  static const char *const names[] = {"EAGAIN", "EBUSY", NULL};
  static const int errs[] = {-EAGAIN, -EBUSY};
  int arm = !lua_isnoneornil(L, 1);
  lua_Integer n = arm ? luaL_checkinteger(L, 1) : 0;
  int err = arm ? errs[luaL_checkoption(L, 2, "EAGAIN", names)] : 0;
  lua_Integer period = luaL_optinteger(L, 3, 1);
  luaL_argcheck(L, period >= 1, 3, "period must be >= 1");
  lua_pushinteger(L, (lua_Integer)enter.hits);
  lua_pushinteger(L, (lua_Integer)enter.calls);
  memset(&enter, 0, sizeof enter);
  enter.left = (unsigned long)n;
  enter.err = err;
  enter.period = (unsigned long)period;
  return 2;
}

/* --- setup flags refused, ops missing --- */

/* The names in the comma-separated list in environment variable var,
 * one by one: *pos starts at 0; NULL at the end. */
static const char *next_name (const char *var, size_t *pos, char *buf,
                              size_t len) {
  const char *v = getenv(var), *p, *end;
  size_t n;
  if (v == NULL || *pos >= strlen(v)) return NULL;
  p = v + *pos;
  end = strchr(p, ',');
  n = end ? (size_t)(end - p) : strlen(p);
  *pos += n + 1;
  if (n >= len) n = len - 1;
  memcpy(buf, p, n);
  buf[n] = '\0';
  return buf;
}

int ur_fault_queue_init_params (unsigned entries, struct io_uring *ring,
                                struct io_uring_params *p) {
  char name[64];
  size_t pos = 0;
  while (next_name("URING_FAULT_SETUP_EINVAL", &pos, name, sizeof name))
    if (p->flags & ur_setup_flag(name)) return -EINVAL;
  return io_uring_queue_init_params(entries, ring, p);
}

static int op_masked (unsigned op) {
  const char *opname = ur_opname(op);
  char name[64];
  size_t pos = 0;
  while (next_name("URING_FAULT_MASK_OPS", &pos, name, sizeof name))
    if (strcmp(name, opname) == 0) return 1;
  return 0;
}

static struct io_uring_probe *mask_probe (struct io_uring_probe *p) {
  if (p == NULL) return NULL;
  for (unsigned i = 0; i < p->ops_len; i++)
    if (op_masked(p->ops[i].op)) p->ops[i].flags &= ~IO_URING_OP_SUPPORTED;
  return p;
}

struct io_uring_probe *ur_fault_get_probe_ring (struct io_uring *ring) {
  return mask_probe(io_uring_get_probe_ring(ring));
}

struct io_uring_probe *ur_fault_get_probe (void) {
  return mask_probe(io_uring_get_probe());
}

/* No kernel numbers an op 255: it answers EINVAL, as for any op it lacks */
void ur_fault_sqe (struct io_uring_sqe *sqe) {
  if (op_masked(sqe->opcode)) sqe->opcode = 255;
}

/* --- provided buffers held back --- */

static struct {
  int hold;
  unsigned max;          /* 0: the core's own cap */
  unsigned *bids;
  size_t n, cap;
} held;

int ur_fault_hold_buf (unsigned bid) {
  if (!held.hold) return 0;
  if (held.n == held.cap) {
    size_t cap = held.cap ? held.cap * 2 : 64;
    unsigned *nb = (unsigned *)realloc(held.bids, cap * sizeof *nb);
    if (nb == NULL) return 0;      /* given back after all */
    held.bids = nb;
    held.cap = cap;
  }
  held.bids[held.n++] = bid;
  return 1;
}

unsigned ur_fault_bufring_max (unsigned max) {
  return held.max && held.max < max ? held.max : max;
}

static int l_fault_bufring (lua_State *L) {
  ur_loop *loop = ur_loop_get(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_getfield(L, 1, "max") != LUA_TNIL)
    held.max = (unsigned)luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  lua_pushinteger(L, (lua_Integer)held.n);
  if (lua_getfield(L, 1, "hold") != LUA_TNIL) {
    held.hold = lua_toboolean(L, -1);
    if (!held.hold) {              /* the consumer lets go of them */
      for (size_t i = 0; i < held.n; i++)
        if (loop->ring_ok) ur_bufring_recycle(loop, held.bids[i]);
      held.n = 0;
      free(held.bids);
      held.bids = NULL;
      held.cap = 0;
    }
  }
  lua_pop(L, 1);
  return 1;
}

void ur_register_faults (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"alloc", l_faults}, {"enter", l_fault_enter},
    {"bufring", l_fault_bufring}, {NULL, NULL}
  };
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "uring.faults");
  lua_pop(L, 1);
}
