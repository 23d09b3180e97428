/*
 * fixedfile.c: registered files for TCP sockets (uring.configure{
 * fixed_files = N}).
 *
 * Every SQE on a plain fd makes the kernel look the fd up in the
 * process's file table and take and drop a reference on its struct file.
 * With a sparse table of N slots registered once
 * (io_uring_register_files_sparse), an accepted or connected socket's fd
 * is installed into a free slot (io_uring_register_files_update: one
 * system call per connection) and its receives and sends name the slot
 * with IOSQE_FIXED_FILE.  The socket keeps its ordinary fd too, for
 * setsockopt, getpeername, shutdown and close; closing it empties the
 * slot first (a second system call).
 *
 * Opt-in: it saves the lookup on every receive and send, and costs two
 * system calls per connection, so it can pay on long keep-alive
 * connections and costs on churn (bench/http.sh measures it).  Slots are
 * per ring: a socket made under an earlier ring (before a configure, or
 * in the parent of a fork) goes on with its plain fd.  If the table
 * cannot be registered, or every slot is taken, sockets use plain fds;
 * uring.features() says why.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "uring.h"

/* After ring setup: register the sparse table.  A failure only warns. */
static int ffiles_setup (lua_State *L, ur_loop *loop) {
  int ret;
  loop->ring_epoch++;           /* slots of earlier rings are void */
  loop->ffiles_err = 0;
  if (loop->want_ffiles == 0) return 0;
  free(loop->ffiles_stack);
  loop->ffiles_stack = (uint32_t *)malloc(loop->want_ffiles * sizeof(uint32_t));
  ret = loop->ffiles_stack == NULL ? -ENOMEM
      : io_uring_register_files_sparse(&loop->ring, loop->want_ffiles);
  if (ret < 0) {
    free(loop->ffiles_stack);
    loop->ffiles_stack = NULL;
    loop->ffiles_n = loop->ffiles_nfree = 0;
    loop->ffiles_err = ret;
    if (L) {
      lua_warning(L, "uring: fixed_files: ", 1);
      lua_warning(L, strerror(-ret), 1);
      lua_warning(L, "; sockets use plain fds", 0);
    }
    return ret;
  }
  loop->ffiles_n = loop->want_ffiles;
  for (uint32_t i = 0; i < loop->ffiles_n; i++)   /* slot 0 on top */
    loop->ffiles_stack[i] = loop->ffiles_n - 1 - i;
  loop->ffiles_nfree = loop->ffiles_n;
  return 0;
}

/* At ring teardown (the kernel drops the table with the ring). */
static void ffiles_free (ur_loop *loop) {
  free(loop->ffiles_stack);
  loop->ffiles_stack = NULL;
  loop->ffiles_n = loop->ffiles_nfree = 0;
}

/* Install fd into a free slot of the current ring: the slot, or -1 (none
 * registered, all taken, or the kernel refused). */
int ur_ffile_add (ur_loop *loop, int fd) {
  if (loop->ffiles_nfree == 0 || !loop->ring_ok) return -1;
  uint32_t slot = loop->ffiles_stack[--loop->ffiles_nfree];
  if (io_uring_register_files_update(&loop->ring, slot, &fd, 1) != 1) {
    loop->ffiles_nfree++;
    return -1;
  }
  return (int)slot;
}

/* Empty a slot taken under ring epoch `epoch`; a slot of an earlier ring
 * went with that ring.  Requests in flight keep their own reference. */
void ur_ffile_remove (ur_loop *loop, int slot, uint32_t epoch) {
  int none = -1;
  if (slot < 0 || epoch != loop->ring_epoch || !loop->ring_ok) return;
  if (io_uring_register_files_update(&loop->ring, (unsigned)slot, &none, 1) == 1)
    loop->ffiles_stack[loop->ffiles_nfree++] = (uint32_t)slot;
  /* else the slot stays taken: never handed out while it may hold fd */
}

/* {count =, wanted =, free =, error =} as features().fixed_files */
static void ffiles_features (lua_State *L, ur_loop *loop) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, loop->ffiles_n);
  lua_setfield(L, -2, "count");
  lua_pushinteger(L, loop->want_ffiles);
  lua_setfield(L, -2, "wanted");
  lua_pushinteger(L, loop->ffiles_nfree);
  lua_setfield(L, -2, "free");
  if (loop->ffiles_err) {
    lua_pushstring(L, strerror(-loop->ffiles_err));
    lua_setfield(L, -2, "error");
  }
  lua_setfield(L, -2, "fixed_files");
}

static void ffiles_ring_setup (lua_State *L, ur_loop *loop) {
  ffiles_setup(L, loop);
}

/* The table goes with the ring (or stays the parent's after a fork). */
static void ffiles_teardown (ur_loop *loop, int drained) {
  (void)drained;
  ffiles_free(loop);
}

void ur_register_fixedfile (lua_State *L) {
  static const ur_hooks hooks = {
    ffiles_ring_setup, ffiles_teardown, NULL, ffiles_free, NULL,
    ffiles_features
  };
  ur_loop_hook(L, &hooks);
}
