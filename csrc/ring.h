/*
 * ring.h: the teaching ring (uring.ring), shared by its three files, one
 * concern each:
 *
 *   ring.c       the ring object: setup, submit, wait, close, registration
 *   ring_req.c   its requests, on the core's slab (req.c): an SQE with its
 *                anchors, a CQE handed to Lua, release, lookup by user_data
 *   ring_prep.c  the prep_* methods, their argument checks and constants
 *
 * A ring owns one struct io_uring, separate from the task loop's, and one
 * ur_slab: a request (ur_req) per SQE from prep until its last CQE has
 * been handed to Lua.  The kernel sees the request's slab user_data; the
 * user's user_data (any Lua integer) is kept in ur_req.user.
 */
#ifndef LUA_URING_RING_H
#define LUA_URING_RING_H

#include <sys/types.h>

#include "uring.h"

/* ring:fixed(slot): "this SQE names registered file slot N", given where
 * an fd goes; prep_* then set IOSQE_FIXED_FILE */
#define RING_FIXED_MT  "uring.fixed_file"

/* the uservalue of a ring userdata: the registered buffers, [i] = buf and
 * [buf] = index, anchored while registered */
#define RING_UV_FIXED  1

/* ring:setup_buf_ring: provided buffer groups 0..RING_MAX_GROUPS-1 */
#define RING_MAX_GROUPS 16

/* A provided buffer ring (IORING_REGISTER_PBUF_RING): nbufs buffers of
 * size bytes, owned by the ring and freed only after its last request.
 * out[bid] is set while Lua holds buffer bid (its CQE was handed over and
 * ring:return_buf has not given it back). */
typedef struct ring_bufgroup {
  struct io_uring_buf_ring *br;   /* shared with the kernel (mmap) */
  size_t brsize;
  unsigned char *data;            /* nbufs * size bytes */
  unsigned char *out;             /* nbufs flags */
  unsigned nbufs, size;
} ring_bufgroup;

typedef struct ur_ring {
  struct io_uring ring;
  ur_slab slab;         /* its requests; slab.used is ring:inflight() */
  int ok;               /* set up and not closed */
  unsigned entries;
  unsigned flags;       /* IORING_SETUP_* the kernel accepted */
  pid_t pid;            /* owner: a forked child must not touch it */
  uint64_t seq;         /* requests prepared so far (ur_req.seq) */
  int nfixed;           /* buffers registered with register_buffers */
  int nfiles;           /* file slots registered with register_files */
  uint32_t zc_pending;  /* send_zc requests whose first CQE is still due:
                           one more CQE each than requests */
  uint32_t leaked;      /* requests close could not get back (tostring) */
  uint32_t skips;       /* submitted with CQE_SKIP_SUCCESS, not yet known
                           done: they may never post a CQE */
  int kept;             /* the CQE at the CQ head was handed to Lua by a
                           wait/peek with keep; cqe_seen consumes it */
  int efd;              /* register_eventfd's eventfd, or -1: closed with
                           the ring, after its last request */
  ring_bufgroup *groups[RING_MAX_GROUPS];
} ur_ring;

/* ur_req.chain_flags: what its SQE had when submitted */
#define RING_CHAIN_SKIP   1         /* IOSQE_CQE_SKIP_SUCCESS */
#define RING_CHAIN_LINK   2         /* IOSQE_IO_LINK */
#define RING_CHAIN_HARD   4         /* IOSQE_IO_HARDLINK */

/* ring.c */
ur_ring *ur_ring_check (lua_State *L);   /* argument 1, open, ours; raises */

/* ring_req.c */
struct io_uring_sqe *ur_ring_sqe (lua_State *L, ur_ring *r, const char *fname,
                                  uint8_t opcode, lua_Integer user,
                                  int anchor, size_t memlen, ur_req **pq);
void ur_ring_pin (ur_req *q, ur_buffer *b);     /* after ur_ring_sqe */
uint64_t ur_ring_find (ur_ring *r, lua_Integer user);
int ur_ring_push_cqe (lua_State *L, ur_ring *r, struct io_uring_cqe *cqe,
                      int keep);
void ur_ring_consume (lua_State *L, ur_ring *r, struct io_uring_cqe *cqe);
void ur_ring_chain (ur_ring *r);     /* submit: link skipped SQEs' successors */
unsigned ur_ring_drain (lua_State *L, ur_ring *r);   /* close: no Lua */
void ur_ring_release (lua_State *L, ur_ring *r, ur_req *q);
void ur_ring_release_all (lua_State *L, ur_ring *r);
unsigned ur_ring_unconsumed (ur_ring *r);
unsigned ur_ring_left (ur_ring *r);
uint32_t ur_ring_in_kernel (ur_ring *r);

/* ring_net.c: sockets and provided buffer rings on the teaching ring */
void ur_ring_net_methods (lua_State *L);    /* into the table at the top */
void ur_ring_net_constants (lua_State *L);  /* into the module table */
void ur_ring_free_groups (ur_ring *r);      /* close, after the last request */
int ur_ring_push_buf (lua_State *L, ur_ring *r, ur_req *q, int32_t res,
                      uint32_t flags);      /* a CQE's buffer: data, bid */
int ur_ring_unsupported (lua_State *L, ur_ring *r, unsigned op,
                         const char *fname);    /* 0, or 3: fail pushed */

/* ring_prep.c */
unsigned ur_ring_uint (lua_State *L, int idx, lua_Integer def,
                       const char *what);          /* optional, 0..UINT_MAX */
struct __kernel_timespec ur_ring_seconds (lua_State *L, int idx);
void ur_ring_prep_methods (lua_State *L);   /* into the table at the top */
void ur_ring_constants (lua_State *L);      /* into the module table */

#endif
