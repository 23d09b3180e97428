/*
 * fixedfile.c: registered files for sockets (uring.configure{
 * fixed_files = N}).
 *
 * Every SQE on a plain fd makes the kernel look the fd up in the
 * process's file table and take and drop a reference on its struct file.
 * With a sparse table of N slots registered once
 * (io_uring_register_files_sparse), each connection socket -- accepted or
 * connected, TCP or Unix stream, TLS or not, and UDP sockets -- is
 * installed into a free slot, and every SQE that names it through
 * ur_handle_sqe names the slot with IOSQE_FIXED_FILE instead: receive,
 * send, SEND_ZC, sendmsg/recvmsg (UDP), connect, shutdown, POLL_ADD and
 * SPLICE (the socket is the out side, which IOSQE_FIXED_FILE covers; an
 * in side would need SPLICE_F_FD_IN_FIXED, handle.c sets it).  The
 * socket keeps its ordinary fd for what cannot take a slot: listeners
 * (bind, listen and the multishot accept on it: one lookup per arm, not
 * per connection), setsockopt/getsockname/getpeername, sendfile(2) (a
 * syscall, not an SQE), and IORING_OP_CLOSE, which closes the fd after
 * the slot is emptied.
 *
 * Install and removal cost no system call: they are IORING_OP_FILES_UPDATE
 * SQEs (fire and forget, no CQE on success where the kernel can skip it)
 * that ride on the loop's next enter.  The kernel issues a submission's
 * SQEs in ring order, and a FILES_UPDATE runs inline at issue, so an
 * install queued before a socket's first op is in place when that op
 * looks its slot up (no link needed), and a removal queued at close comes
 * after every op of the old socket (handle.c queues it only after their
 * last CQE) and before the install of the next socket given the slot:
 * an op meant for one socket can never reach another through a reused
 * slot.  For that order to hold, a ring uses SQEs for every update or
 * for none: io_uring_register_files_update (one system call each) only
 * where the kernel lacks the op, or with URING_TEST_FFILES_REGISTER=1
 * (the A/B of bench/http.sh).  Outside uring.run the SQE is submitted at
 * once, so a closed socket's FIN does not wait for the next run.  The
 * kernel reads the fd number when it issues the install, not when it is
 * queued: only handle.c closes the number, and a close queues the slot's
 * removal behind the install, so at worst (closed before the enter, the
 * number taken by a new file meanwhile) the slot holds that file between
 * two adjacent SQEs that nothing names it between.  An install can only
 * fail if the kernel is out of memory (or the fd was closed behind the
 * core's back before the enter); the socket's ops then fail with EBADF.
 *
 * A request in flight on a slot holds its own reference to the file (the
 * kernel's resource node), so emptying the slot never pulls the file from
 * under it; handle.c waits for them anyway, as for plain fds.
 *
 * Opt-in, measured (bench/README.md, "fixed files"): it saves the fd
 * lookup on every op, and costs two SQEs per connection.  Slots are per
 * ring: a socket made under an earlier ring (before a configure, or in
 * the parent of a fork) goes on with its plain fd, and a forked child
 * never touches the parent's table.  If the table cannot be registered,
 * or every slot is taken, sockets use plain fds; uring.features() says
 * why and how many slots are free.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "uring.h"

/* URING_TEST_FFILES_REGISTER=1: slots change by io_uring_register calls
 * even where the kernel has IORING_OP_FILES_UPDATE (A/B, specs) */
static int want_register (void) {
  const char *e = getenv("URING_TEST_FFILES_REGISTER");
  return e && *e && strcmp(e, "0") != 0;
}

/* After ring setup: register the sparse table.  A failure only warns. */
static int ffiles_setup (lua_State *L, ur_loop *loop) {
  int ret;
  loop->ring_epoch++;           /* slots of earlier rings are void */
  loop->ffiles_err = 0;
  loop->lazy = 0;               /* a new ring's SQ holds nothing of ours */
  if (loop->want_ffiles == 0) return 0;
  free(loop->ffiles_stack);
  free(loop->ffiles_fd);
  loop->ffiles_stack = (uint32_t *)malloc(loop->want_ffiles * sizeof(uint32_t));
  loop->ffiles_fd = (int *)malloc(loop->want_ffiles * sizeof(int));
  ret = loop->ffiles_stack == NULL || loop->ffiles_fd == NULL ? -ENOMEM
      : io_uring_register_files_sparse(&loop->ring, loop->want_ffiles);
  if (ret < 0) {
    free(loop->ffiles_stack);
    free(loop->ffiles_fd);
    loop->ffiles_stack = NULL;
    loop->ffiles_fd = NULL;
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
  loop->ffiles_sqe = !ur_op_missing(loop, IORING_OP_FILES_UPDATE)
                     && !want_register();
  return 0;
}

/* At ring teardown (the kernel drops the table with the ring). */
static void ffiles_free (ur_loop *loop) {
  free(loop->ffiles_stack);
  free(loop->ffiles_fd);
  loop->ffiles_stack = NULL;
  loop->ffiles_fd = NULL;
  loop->ffiles_n = loop->ffiles_nfree = 0;
}

/* Queue "slot := *fdp" (-1: empty it); the kernel reads *fdp when it
 * issues the SQE.  Outside uring.run and uring.step nobody would submit
 * it soon: now.  (Only there: no task runs, so no caller holds an SQE it
 * has not finished, which a submit would send half made.) */
static void ffile_queue (ur_loop *loop, unsigned slot, int *fdp) {
  struct io_uring_sqe *sqe = ur_get_sqe(loop);
  io_uring_prep_files_update(sqe, fdp, 1, (int)slot);
  io_uring_sqe_set_data64(sqe, 0);          /* fire and forget */
  if (loop->ring.features & IORING_FEAT_CQE_SKIP)
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  if (!loop->running) ur_submit(loop, 0);
  else loop->lazy++;            /* no hurry: the socket's next op carries it */
}

/* Install fd into a free slot of the current ring: the slot, or -1 (none
 * registered, all taken, or the kernel refused). */
int ur_ffile_add (ur_loop *loop, int fd) {
  uint32_t slot;
  if (loop->ffiles_nfree == 0 || !loop->ring_ok || ur_foreign(loop))
    return -1;
  slot = loop->ffiles_stack[--loop->ffiles_nfree];
  if (loop->ffiles_sqe) {
    loop->ffiles_fd[slot] = fd;  /* stays until the slot is handed out again */
    ffile_queue(loop, slot, &loop->ffiles_fd[slot]);
    return (int)slot;
  }
  if (io_uring_register_files_update(&loop->ring, slot, &fd, 1) != 1) {
    loop->ffiles_nfree++;
    return -1;
  }
  return (int)slot;
}

/* Empty a slot taken under ring epoch `epoch`; a slot of an earlier ring
 * went with that ring.  Requests in flight keep their own reference. */
void ur_ffile_remove (ur_loop *loop, int slot, uint32_t epoch) {
  static int none = -1;         /* read by the kernel: static storage */
  if (slot < 0 || epoch != loop->ring_epoch || !loop->ring_ok
      || ur_foreign(loop))
    return;
  if (loop->ffiles_sqe) {
    /* the next install of this slot is queued after this: in ring order */
    ffile_queue(loop, (unsigned)slot, &none);
    loop->ffiles_stack[loop->ffiles_nfree++] = (uint32_t)slot;
    return;
  }
  if (io_uring_register_files_update(&loop->ring, (unsigned)slot, &none, 1) == 1)
    loop->ffiles_stack[loop->ffiles_nfree++] = (uint32_t)slot;
  /* else the slot stays taken: never handed out while it may hold fd */
}

/* {count =, wanted =, free =, error =} as features().fixed_files */
static void ffiles_features (lua_State *L, ur_loop *loop) {
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, loop->ffiles_n);
  lua_setfield(L, -2, "count");
  lua_pushinteger(L, loop->want_ffiles);
  lua_setfield(L, -2, "wanted");
  lua_pushinteger(L, loop->ffiles_nfree);
  lua_setfield(L, -2, "free");
  if (loop->ffiles_n > 0) {     /* how slots change: SQEs or syscalls */
    lua_pushstring(L, loop->ffiles_sqe ? "sqe" : "register");
    lua_setfield(L, -2, "install");
  }
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
