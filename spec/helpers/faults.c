/*
 * faults.c: allocation failures for the core, on request (test builds only).
 *
 * Linked into the core only by `make asan-build` (FAULTS=1), which also
 * compiles every csrc file with -DUR_FAULTS: uring.h then routes malloc,
 * calloc, realloc and posix_memalign here.  The release core has neither
 * this file nor the macros, so it is the same code as without them.
 *
 *   local faults = require "uring.faults"   (the test build's module)
 *   faults(n) -> count, failed   arm: count the core's allocations from
 *                                now, fail the nth (0: none); returns what
 *                                the previous arming saw
 *   faults()  -> count, failed   disarm, and the same
 *
 * A module of its own, not a field of uring.core: nothing of the test
 * build reaches the public table.
 *
 * Helper threads (dns.c, copy.c) allocate too, so the counter is atomic;
 * which allocation is the nth then depends a little on timing, as the
 * sweep accepts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "uring.h"

#undef malloc
#undef calloc
#undef realloc
#undef posix_memalign

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

void ur_register_faults (lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushcfunction(L, l_faults);
  lua_setfield(L, -2, "uring.faults");
  lua_pop(L, 1);
}
