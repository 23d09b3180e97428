/*
 * fixedbuf.c: registered buffers for file reads (uring.configure{
 * fixed_buffers = N}).
 *
 * A plain IORING_OP_READ makes the kernel look up and pin the pages of
 * the destination on every read; with buffers registered once
 * (io_uring_register_buffers) an IORING_OP_READ_FIXED names a slot whose
 * pages are already pinned.  The loop keeps N slots of fixed_size bytes
 * in one 4096-aligned block (so every slot suits O_DIRECT), registered as
 * N iovecs, and a stack of free slot numbers: file:pread takes a slot
 * when one is free and the read fits, else it reads as before.
 *
 * Opt-in: the pages stay locked for the ring's life and count against
 * RLIMIT_MEMLOCK for users without CAP_IPC_LOCK.  If registration fails
 * the ring works without it: reads use plain READ, uring.features() says
 * why, and a Lua warning (lua5.4 -W) says so once per setup.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>

#include "uring.h"

#define FIXED_ALIGN 4096

/* Why registration failed, in words a user can act on. */
static const char *fixed_reason (ur_loop *loop, int res, char *buf,
                                 size_t len) {
  int en = res < 0 ? -res : res;
  size_t total = (size_t)loop->want_fixed * loop->want_fixed_size;
  if (en == ENOMEM) {
    struct rlimit rl;
    getrlimit(RLIMIT_MEMLOCK, &rl);
    snprintf(buf, len, "not enough locked memory for %u registered buffers "
             "of %u bytes (%zu bytes; RLIMIT_MEMLOCK soft %llu, hard %llu "
             "bytes); fix: ulimit -l, CAP_IPC_LOCK, or fewer or smaller "
             "buffers", loop->want_fixed, loop->want_fixed_size, total,
             (unsigned long long)rl.rlim_cur,
             (unsigned long long)rl.rlim_max);
  }
  else if (en == EINVAL || en == EOPNOTSUPP)
    snprintf(buf, len, "the kernel refused %u buffers of %u bytes (%s); "
             "fix: Linux >= 5.19, at most 16384 buffers",
             loop->want_fixed, loop->want_fixed_size, strerror(en));
  else
    snprintf(buf, len, "%s", strerror(en));
  return buf;
}

/*
 * Register the configured buffers with the ring just set up.  Returns 0
 * (registered, or none wanted) or -errno; on failure nothing is kept and
 * reads go through plain READ.  L, if not NULL, gets a warning.
 */
static int fixed_setup (lua_State *L, ur_loop *loop) {
  struct iovec *iov;
  void *base = NULL;
  int ret;
  loop->fixed_err = 0;
  if (loop->want_fixed == 0 || loop->fixed_n > 0) return 0;
  loop->fixed_size = loop->want_fixed_size;
  iov = (struct iovec *)malloc(loop->want_fixed * sizeof *iov);
  loop->fixed_stack = (uint32_t *)malloc(loop->want_fixed * sizeof(uint32_t));
  if (iov == NULL || loop->fixed_stack == NULL
      || posix_memalign(&base, FIXED_ALIGN,
                        (size_t)loop->want_fixed * loop->fixed_size) != 0) {
    base = NULL;
    ret = -ENOMEM;
  }
  else {
    for (uint32_t i = 0; i < loop->want_fixed; i++) {
      iov[i].iov_base = (unsigned char *)base + (size_t)i * loop->fixed_size;
      iov[i].iov_len = loop->fixed_size;
    }
    ret = io_uring_register_buffers(&loop->ring, iov, loop->want_fixed);
  }
  free(iov);
  if (ret < 0) {
    char why[400];
    free(base);
    free(loop->fixed_stack);
    loop->fixed_stack = NULL;
    loop->fixed_err = ret;
    if (L) {
      lua_warning(L, "uring: fixed_buffers: ", 1);
      lua_warning(L, fixed_reason(loop, ret, why, sizeof why), 1);
      lua_warning(L, "; file reads use plain READ", 0);
    }
    return ret;
  }
  loop->fixed_base = (unsigned char *)base;
  loop->fixed_n = loop->want_fixed;
  /* lowest slot on top: the first reads use the first pages */
  for (uint32_t i = 0; i < loop->fixed_n; i++)
    loop->fixed_stack[i] = loop->fixed_n - 1 - i;
  loop->fixed_nfree = loop->fixed_n;
  return 0;
}

/* Once the kernel holds no request (the ring's exit unregisters the
 * buffers), or in a forked child (a copy of them). */
static void fixed_free (ur_loop *loop) {
  free(loop->fixed_base);
  free(loop->fixed_stack);
  loop->fixed_base = NULL;
  loop->fixed_stack = NULL;
  loop->fixed_n = loop->fixed_nfree = 0;
}

/* {count =, size =, free =, error =} as features().fixed_buffers */
static void fixed_features (lua_State *L, ur_loop *loop) {
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, loop->fixed_n);
  lua_setfield(L, -2, "count");
  lua_pushinteger(L, loop->want_fixed);
  lua_setfield(L, -2, "wanted");
  lua_pushinteger(L, loop->fixed_n ? loop->fixed_size : loop->want_fixed_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, loop->fixed_nfree);
  lua_setfield(L, -2, "free");
  if (loop->fixed_err) {
    char why[400];
    lua_pushstring(L, fixed_reason(loop, loop->fixed_err, why, sizeof why));
    lua_setfield(L, -2, "error");
  }
  lua_setfield(L, -2, "fixed_buffers");
}

static void fixed_ring_setup (lua_State *L, ur_loop *loop) {
  fixed_setup(L, loop);
}

/* The ring goes: the buffers with it, unless the kernel may still write
 * into them (then they are leaked, never freed under it). */
static void fixed_teardown (ur_loop *loop, int drained) {
  if (drained) fixed_free(loop);
  else {
    loop->fixed_base = NULL;
    loop->fixed_stack = NULL;
    loop->fixed_n = loop->fixed_nfree = 0;
  }
}

void ur_register_fixedbuf (lua_State *L) {
  static const ur_hooks hooks = {
    fixed_ring_setup, fixed_teardown, NULL, fixed_free, NULL, fixed_features
  };
  ur_loop_hook(L, &hooks);
}
