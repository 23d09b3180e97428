/*
 * handle.c: the one close path for every fd the ring may name.
 *
 * A queued SQE names its file by number, and the kernel looks the number
 * up only when it issues the SQE (a linked one, later still: liburing#782).
 * Closing the fd while such an SQE waits frees the number for reuse, and
 * the next socket() or accept gets it: the queued send then delivers one
 * connection's bytes to another (liburing#363).  So a descriptor belongs
 * to the kernel until the last CQE of every request naming it.
 *
 * Every object that owns an fd (file, socket, listener, UDP socket,
 * signal, process pipe, ...) embeds a ur_handle.  Requests that name the
 * fd go through ur_handle_sqe, which puts them on the fd's list in the
 * loop's fd table (loop->fdtab, indexed by fd number: it outlives any
 * object, so a collected socket's last CQE still finds where to close).
 * ur_handle_close marks the object closed at once, cancels every request
 * on the list, and closes the fd (close(2), and the registered-file slot)
 * when the list is empty: now, or at the last CQE (ur_fd_unlink, called
 * by the reaper; inside uring.run that close is a fire-and-forget
 * IORING_OP_CLOSE); or, with nothing in flight, through the ring
 * (ur_handle_close_sqe: IORING_OP_CLOSE).
 *
 * This file is the only one that calls close(2) on an fd the ring may
 * name; ur_fd_release is for an fd that no request names any more.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uring.h"

/* FD_CLOSING_RING: as FD_CLOSING, its close(2) through the ring */
enum { FD_OPEN, FD_CLOSING, FD_CLOSED, FD_CLOSING_RING };

static ur_req *req_at_index (ur_loop *loop, uint32_t idx1) {
  return ur_slab_req(&loop->slab, idx1 - 1);
}

/* Room in the fd table for fd; 0 if out of memory. */
static int fdtab_reserve (ur_loop *loop, int fd) {
  uint32_t cap = loop->fdcap ? loop->fdcap : 64;
  ur_fdent *t;
  if ((uint32_t)fd < loop->fdcap) return 1;
  while (cap <= (uint32_t)fd) cap *= 2;
  t = (ur_fdent *)realloc(loop->fdtab, cap * sizeof *t);
  if (t == NULL) return 0;
  memset(t + loop->fdcap, 0, (cap - loop->fdcap) * sizeof *t);
  loop->fdtab = t;
  loop->fdcap = cap;
  return 1;
}

/* close(2), for an fd that no request names (any more). */
void ur_fd_release (int fd) {
  if (fd >= 0) close(fd);
}

void ur_handle_init (ur_handle *h) {
  h->fd = -1;
  h->slot = -1;
  h->epoch = 0;
  h->held = -1;
}

/* h owns fd from now on.  Out of memory for the fd table: fd is closed
 * (nothing names it yet) and -ENOMEM returned; h stays closed. */
int ur_handle_adopt (ur_loop *loop, ur_handle *h, int fd) {
  ur_fdent *e;
  if (!fdtab_reserve(loop, fd)) {
    ur_fd_release(fd);
    return -ENOMEM;
  }
  e = &loop->fdtab[fd];
  memset(e, 0, sizeof *e);
  e->slot = -1;
  h->fd = fd;
  h->slot = -1;
  h->held = -1;
  return 0;
}

/* configure{fixed_files}: name the fd by a registered slot from now on. */
void ur_handle_fix (ur_loop *loop, ur_handle *h) {
  if (h->fd < 0) return;
  h->slot = ur_ffile_add(loop, h->fd);
  h->epoch = loop->ring_epoch;
}

/* r, prepared in sqe, names h's fd: put it on the fd's list (and name
 * the registered slot instead, where there is one).  Never fails. */
void ur_handle_sqe (ur_loop *loop, ur_handle *h, ur_req *r,
                    struct io_uring_sqe *sqe) {
  ur_fdent *e = &loop->fdtab[h->fd];
  if (h->slot >= 0 && h->epoch == loop->ring_epoch) {
    if (sqe->opcode == IORING_OP_SPLICE && sqe->fd != h->fd) {
      /* h is the in side, which has a flag of its own (no caller splices
       * from a socket today; sendfile's socket is the out side) */
      sqe->splice_fd_in = h->slot;
      sqe->splice_flags |= SPLICE_F_FD_IN_FIXED;
    }
    else {
      sqe->fd = h->slot;
      sqe->flags |= IOSQE_FIXED_FILE;
    }
  }
  r->fd = h->fd;
  r->onfd = 1;
  r->fd_prev = 0;
  r->fd_next = e->head;
  if (e->head) req_at_index(loop, e->head)->fd_prev = r->idx + 1;
  e->head = r->idx + 1;
  e->count++;
}

/* Close fd, which no request names any more, for ur_handle_close_lazy.
 * Inside uring.run the close goes through the ring, fire and forget
 * (user_data 0, as a cancel's): a server's connection closed while its
 * last send was in flight then costs no close(2) of its own, the next
 * enter carries it.  The number stays taken until the op runs, and
 * nothing names it meanwhile (its object is closed), so no other file
 * can be hit.  Elsewhere (a close waited for outside a run, loop
 * shutdown, a forked child): close(2) now. */
static void fd_close_quietly (ur_loop *loop, int fd) {
  if (loop->running && loop->ring_ok && !loop->closing && !ur_foreign(loop)
      && !ur_op_missing(loop, IORING_OP_CLOSE)) {
    struct io_uring_sqe *sqe = ur_get_sqe(loop);
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, 0);
    return;
  }
  ur_fd_release(fd);
}

/* The fd's last request is done and it is closing: close it now. */
static void fd_close_now (ur_loop *loop, int fd) {
  ur_fdent *e = &loop->fdtab[fd];
  if (e->state == FD_CLOSING) ur_fd_release(fd);
  else if (e->state == FD_CLOSING_RING) fd_close_quietly(loop, fd);
  ur_ffile_remove(loop, e->slot, e->epoch);
  memset(e, 0, sizeof *e);
  e->slot = -1;
  loop->fd_closing--;
}

/* r's kernel side is over (its last CQE, or it is freed unsubmitted):
 * take it off its fd's list; the last one off a closing fd closes it. */
void ur_fd_unlink (ur_loop *loop, ur_req *r) {
  ur_fdent *e = &loop->fdtab[r->fd];
  r->onfd = 0;
  if (r->fd_prev) req_at_index(loop, r->fd_prev)->fd_next = r->fd_next;
  else e->head = r->fd_next;
  if (r->fd_next) req_at_index(loop, r->fd_next)->fd_prev = r->fd_prev;
  r->fd_prev = r->fd_next = 0;
  if (--e->count == 0 && e->state != FD_OPEN) fd_close_now(loop, r->fd);
}

/* Requests in flight on h's fd. */
uint32_t ur_handle_inflight (ur_loop *loop, const ur_handle *h) {
  return h->fd >= 0 ? loop->fdtab[h->fd].count : 0;
}

/* The requests on e's list whose r->obj is `gone` (an object being
 * collected) forget it: their CQEs must not touch its memory. */
static void detach (ur_loop *loop, ur_fdent *e, const void *gone) {
  for (uint32_t i = e->head; i; ) {
    ur_req *c = req_at_index(loop, i);
    if (c->obj == gone) c->obj = NULL;
    i = c->fd_next;
  }
}

/* Cancel every request on e's list.  A cancel may flush the SQ and reap,
 * which takes finished requests off the list: start again from the head
 * each time, skipping the ones already asked. */
static void cancel_all (ur_loop *loop, ur_fdent *e) {
  for (;;) {
    uint32_t i = e->head;
    ur_req *r = NULL;
    while (i) {
      ur_req *c = req_at_index(loop, i);
      if (!c->canceling && !c->cancel_late && c->state == UR_REQ_INFLIGHT) {
        r = c;
        break;
      }
      i = c->fd_next;
    }
    if (r == NULL) return;
    /* a send nobody waits for (a response sent behind) is most likely
     * done by the enter that carries it: its cancel waits to see */
    if (r->task != NULL || r->opcode != IORING_OP_SEND
        || !ur_req_cancel_late(loop, r))
      ur_req_cancel(loop, r);
  }
}

/*
 * Close h: from now on h->fd is -1 (the object is closed).  Requests in
 * flight on the fd are cancelled (gone: the object being collected; the
 * requests whose r->obj points at it forget it, now or, if it was closed
 * before, those still in flight); the fd is closed when the last of them
 * has completed, or now if there are none.  Returns 0, or close(2)'s
 * -errno when it closed now.  Outside uring.run nobody would reap those
 * completions until the next run (a listener's port would stay bound), so
 * they are waited for here; no Lua runs meanwhile.
 */
int ur_handle_close (ur_loop *loop, ur_handle *h, const void *gone) {
  int fd = h->fd, ret = 0;
  ur_fdent *e;
  if (fd < 0) {
    /* closed before: its requests may still be in flight (the number is
     * held until they are); an entry reused since holds other objects'
     * requests, which do not point at gone */
    if (gone && h->held >= 0 && (uint32_t)h->held < loop->fdcap)
      detach(loop, &loop->fdtab[h->held], gone);
    return 0;
  }
  h->fd = -1;
  e = &loop->fdtab[fd];
  e->state = FD_CLOSING;
  e->slot = h->slot;
  e->epoch = h->epoch;
  h->slot = -1;
  loop->fd_closing++;
  if (e->count > 0 && loop->ring_ok && !ur_foreign(loop)) {
    h->held = fd;
    if (gone) detach(loop, e, gone);
    cancel_all(loop, e);
    if (!loop->running && !loop->reaping && !loop->closing)
      for (int tries = 0; e->state != FD_OPEN && tries < 1000; tries++) {
        if (ur_submit_timeout(loop, 0.01) < 0) break;
        ur_reap(loop);
      }
    return 0;
  }
  if (e->count > 0) {           /* a forked child: the requests are not ours */
    e->head = 0;
    e->count = 0;
  }
  if (close(fd) != 0) ret = -errno;
  e->state = FD_CLOSED;         /* fd_close_now must not close it again */
  fd_close_now(loop, fd);
  return ret;
}

/* ur_handle_close for an fd whose end nobody waits to observe (a
 * connected socket, not a listener whose port must be free on return):
 * if requests keep it open, its close at their last CQE goes through the
 * ring (fd_close_quietly). */
int ur_handle_close_lazy (ur_loop *loop, ur_handle *h, const void *gone) {
  int fd = h->fd, ret = ur_handle_close(loop, h, gone);
  if (fd >= 0 && h->held == fd && loop->fdtab[fd].state == FD_CLOSING)
    loop->fdtab[fd].state = FD_CLOSING_RING;
  return ret;
}

/* Close h through the ring: sqe becomes r's IORING_OP_CLOSE.  Only when
 * nothing is in flight on the fd (ur_handle_inflight).  A handle with a
 * registered slot queues its removal too: the caller reserves two SQEs
 * (ur_reserve_sqes), or a flush could submit sqe half made.  The kernel frees
 * the number when the op runs, before its CQE is reaped, and a new fd may
 * take it at once: so the entry is let go now and r is not on its list
 * (nothing else can name the fd: h is closed from here on). */
void ur_handle_close_sqe (ur_loop *loop, ur_handle *h, ur_req *r,
                          struct io_uring_sqe *sqe) {
  ur_fdent *e = &loop->fdtab[h->fd];
  io_uring_prep_close(sqe, h->fd);
  ur_ffile_remove(loop, h->slot, h->epoch);
  memset(e, 0, sizeof *e);
  e->slot = -1;
  r->fd = h->fd;
  h->fd = -1;
  h->slot = -1;
}

/* A forked child: the parent's ring and its requests are gone from our
 * view.  Close our copies of the fds that were waiting to close. */
void ur_fdtab_forget (ur_loop *loop) {
  for (uint32_t i = 1; i <= loop->slab.nreqs; i++) {   /* off every list */
    ur_req *r = req_at_index(loop, i);
    r->onfd = 0;
    r->fd_prev = r->fd_next = 0;
  }
  for (uint32_t fd = 0; fd < loop->fdcap; fd++) {
    ur_fdent *e = &loop->fdtab[fd];
    if (e->state == FD_CLOSING || e->state == FD_CLOSING_RING)
      ur_fd_release((int)fd);
    memset(e, 0, sizeof *e);
    e->slot = -1;
  }
  loop->fd_closing = 0;
}

void ur_fdtab_free (ur_loop *loop) {
  free(loop->fdtab);
  loop->fdtab = NULL;
  loop->fdcap = 0;
}
