/*
 * uring.h: the structures shared by the C core of lua-uring.
 *
 * The core owns one io_uring per Lua state (ur_loop), a slab of request
 * records (ur_req) naming everything the kernel may touch, and the tasks
 * (ur_task) whose coroutines wait on those requests.  Lua only ever sees
 * userdata wrapping these; no raw SQE, CQE or pointer crosses into Lua.
 */
#ifndef LUA_URING_H
#define LUA_URING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <liburing.h>
#include <lua.h>
#include <lauxlib.h>

/* memcheck cannot see the kernel write into a buffer (liburing#640):
 * tell it, at the CQE, instead of zeroing buffers to silence it */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define ur_kernel_wrote(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#endif
#endif
#ifndef ur_kernel_wrote
#define ur_kernel_wrote(p, n) ((void)0)
#endif

/* Test builds only (make asan-build): the core's malloc family goes
 * through spec/helpers/faults.c, which can fail the nth call on request
 * (the out-of-memory sweep, make oom).  The release build is untouched. */
#ifdef UR_FAULTS
#include <stdlib.h>
void *ur_fault_malloc (size_t n);
void *ur_fault_calloc (size_t n, size_t m);
void *ur_fault_realloc (void *p, size_t n);
int ur_fault_memalign (void **p, size_t align, size_t n);
void ur_register_faults (lua_State *L);
#define malloc(n) ur_fault_malloc(n)
#define calloc(n, m) ur_fault_calloc(n, m)
#define realloc(p, n) ur_fault_realloc(p, n)
#define posix_memalign(p, a, n) ur_fault_memalign(p, a, n)
/* ... and the kernel's answers the specs cannot get from this kernel
 * (spec/regress/12_modes_spec.lua): io_uring_enter failing with EAGAIN or
 * EBUSY after the SQEs were pushed (core._fault_enter), setup flags
 * refused with EINVAL (URING_FAULT_SETUP_EINVAL=FLAG,...), ops missing
 * from the probe and answered with EINVAL as an older kernel answers them
 * (URING_FAULT_MASK_OPS=op,...), and provided buffers held back, as if a
 * consumer kept them, in a group that may not grow (core._fault_bufring) */
int ur_fault_queue_init_params (unsigned entries, struct io_uring *ring,
                                struct io_uring_params *p);
struct io_uring_probe *ur_fault_get_probe_ring (struct io_uring *ring);
struct io_uring_probe *ur_fault_get_probe (void);
int ur_fault_submit (struct io_uring *ring);
int ur_fault_submit_and_wait (struct io_uring *ring, unsigned wait_nr);
int ur_fault_submit_and_get_events (struct io_uring *ring);
int ur_fault_submit_and_wait_timeout (struct io_uring *ring,
                                      struct io_uring_cqe **cqe, unsigned n,
                                      struct __kernel_timespec *ts,
                                      sigset_t *sigmask);
void ur_fault_sqe (struct io_uring_sqe *sqe);   /* a masked op: EINVAL */
int ur_fault_hold_buf (unsigned bid);           /* 1: held, not given back */
unsigned ur_fault_bufring_max (unsigned max);   /* the group's cap */
#define io_uring_queue_init_params(e, r, p) ur_fault_queue_init_params(e, r, p)
#define io_uring_get_probe_ring(r) ur_fault_get_probe_ring(r)
#define io_uring_get_probe() ur_fault_get_probe()
#define io_uring_submit(r) ur_fault_submit(r)
#define io_uring_submit_and_wait(r, n) ur_fault_submit_and_wait(r, n)
#define io_uring_submit_and_get_events(r) ur_fault_submit_and_get_events(r)
#define io_uring_submit_and_wait_timeout(r, c, n, t, s) \
  ur_fault_submit_and_wait_timeout(r, c, n, t, s)
#define UR_FAULT_SQE(sqe) ur_fault_sqe(sqe)
#else
#define UR_FAULT_SQE(sqe) ((void)0)
#endif

#define UR_LOOP_MT   "uring.loop"
#define UR_TASK_MT   "uring.task"
#define UR_FILE_MT   "uring.file"
#define UR_BUFFER_MT "uring.buffer"
#define UR_RING_MT   "uring.ring"

typedef struct ur_loop ur_loop;
typedef struct ur_req ur_req;
typedef struct ur_task ur_task;
typedef struct ur_bufring ur_bufring;
typedef struct ur_strcache ur_strcache;

/* A CQE handler runs inside the reaper: plain C, never calls Lua, never
 * raises.  It must end the request (ur_req_free) or hand it to a task. */
typedef void (*ur_handler) (ur_loop *loop, ur_req *req);

enum { UR_REQ_FREE, UR_REQ_INFLIGHT, UR_REQ_DONE };

/*
 * A request: one per SQE in flight.  Its user_data is the slab index in the
 * low 32 bits and a generation in the high 32, so a stale CQE is detected
 * rather than trusted.  Slab chunks never move: the kernel may read u.ts
 * from here at submit time.
 */
struct ur_req {
  uint32_t gen;         /* bumped on free */
  uint32_t idx;         /* its slab index */
  /* zeroed by ur_slab_take, one 64-byte block (a few stores) */
  ur_handler on_cqe;    /* NULL: wake the task (ur_req_wake) */
  ur_task *task;        /* the task to resume, or NULL */
  void *obj;            /* the object a handler updates (a socket), or NULL */
  void *mem;            /* malloc'd memory the kernel writes into */
  size_t memlen;
  double t_prep;        /* uring.now() at prep; for trace only */
  int32_t res;          /* copied from the CQE */
  uint32_t cflags;      /* copied from the CQE */
  int aux;              /* per-op small state (timeout scope depth, ...) */
  uint8_t canceling;    /* an ASYNC_CANCEL for it was submitted */
  uint8_t memclass;     /* mem is a pooled I/O buffer of class memclass-1
                           (ur_iobuf_new); 0: plain malloc, freed;
                           UR_MEM_FIXED: registered slot aux (fixedbuf.c);
                           UR_MEM_BUFFER: obj is a pinned uring.buffer */
  uint8_t onfd;         /* on the list of the fd it names (handle.c) */
  uint8_t makes_fd;     /* its result is a new fd: the core closes it if
                           nobody is left to take it (loop shutdown) */
  /* set by ur_slab_take */
  uint8_t state;        /* UR_REQ_* */
  uint8_t opcode;       /* IORING_OP_*, for trace and stats */
  uint8_t background;   /* the loop's own (the run's SIGINT poll), or a
                           SEND_ZC waiting only for its notification: it
                           keeps no task waiting, so deadlock detection
                           and stats() leave it out */
  uint8_t untraced;     /* prepared by an untraced task while tracing: its
                           CQEs stay out of the trace even when no task
                           waits on them (a multishot accept) */
  int fd;               /* the fd it names (for trace; handle.c's list) */
  int pin_ref;          /* registry ref: Lua value the kernel reads */
  /* written by whoever uses them */
  uint32_t next_free;   /* free-list link (index + 1; 0 ends) */
  uint32_t fd_prev, fd_next;   /* the fd's list: slab index + 1; 0 ends */
  union {               /* small arguments the kernel reads at submit */
    struct __kernel_timespec ts;
    uint64_t u64;
    int i[4];
  } u;
  /* the teaching ring's (ring.c) requests: the user's user_data, and
   * the prep order (prep_cancel names "the oldest with this user_data") */
  lua_Integer user;
  uint64_t seq;
  /* the teaching ring's link chains with IOSQE_CQE_SKIP_SUCCESS, whose
   * requests may end without a CQE (ring_req.c, ur_ring_chain): the
   * request before and after it in its chain, and its RING_CHAIN_* bits */
  uint64_t chain_prev, chain_next;
  uint8_t chain_flags;
  uint8_t cancel_late;  /* on the loop's late-cancel list (ur_req_cancel_late) */
};

/*
 * The request slab: records in chunks of UR_SLAB_CHUNK that never move
 * (the kernel reads u.ts and mem from them), recycled through a free list.
 * The task loop embeds one, and so does each uring.ring: both give the
 * kernel user_data = index | generation << 32 (ur_slab_ud), both anchor
 * Lua values through pin_ref and uring.buffers through pins, and both
 * release them in ur_slab_put.
 */
typedef struct ur_slab {
  ur_req **chunks;
  uint32_t nchunks, nreqs;
  uint32_t free_head;   /* index + 1 of first free; 0 = none */
  uint32_t used;        /* records taken and not yet put back */
} ur_slab;

/* Task states, as task:status() names them. */
enum { UR_READY, UR_RUNNING, UR_WAITING, UR_DONE, UR_FAILED, UR_CANCELED };

/* A FIFO of tasks parked on something that is not a request (join, a busy
 * file).  Tasks link through ur_task.next. */
typedef struct ur_waitq { ur_task *head, *tail; } ur_waitq;

/* Waiters of uring.select, queues, semaphores and events (sync.c): a
 * doubly linked list of nodes, one node per object a waiter waits on. */
typedef struct ur_wnode ur_wnode;
typedef struct ur_wlist { ur_wnode *head, *tail; } ur_wlist;

struct ur_task {
  lua_State *co;        /* its coroutine (uservalue 1 of the task userdata) */
  ur_loop *loop;
  int ref;              /* registry ref to the task userdata while alive */
  uint32_t id;          /* small number for :tasks and trace */
  uint8_t status;       /* UR_READY .. UR_CANCELED */
  uint8_t started;      /* resumed at least once */
  uint8_t canceled;     /* cancel requested: every wait point raises */
  uint8_t observed;     /* joined: its error is handled */
  int nargs;            /* arguments for the first resume */
  uint64_t wait_ud;     /* user_data of the request it waits on, or 0 */
  ur_waitq *waitq;      /* the queue it is parked in, or NULL */
  ur_task *next;        /* run queue or wait queue link */
  ur_waitq joiners;     /* tasks blocked in :join() on it */
  int scope_depth;      /* nested uring.timeout scopes open */
  int expired_at;       /* outermost expired scope (1-based), 0 if none */
  const char *what;     /* what it waits on, for :tasks ("read", "join") */
  uint64_t *scope_ud;   /* timer request of each open timeout scope */
  int scope_cap;
  uint8_t untraced;     /* the REPL's own: uring.trace leaves it out;
                         * UR_UNTRACED_INHERIT: its spawns too */
  ur_wlist watchers;    /* selects waiting for it to end (sync.c) */
  uint8_t sync_cached;  /* sync.c keeps a waiter for it */
};

/* Pooled I/O buffers (file:pread and O_DIRECT writes): 4096-aligned, in
 * classes of 4 KiB << k up to 64 KiB; bigger ones are allocated each time. */
#define UR_IOBUF_CLASSES 5
#define UR_IOBUF_MIN     4096
#define UR_MEM_FIXED     0xFE   /* memclass of a registered-buffer read */
#define UR_MEM_BUFFER    0xFD   /* memclass of a read into a uring.buffer */
#define UR_MEM_BUFVEC    0xFC   /* memclass: mem starts with aux pointers to
                                   pinned uring.buffers (NULL: a string) */
#define UR_MEM_SLOT      0xFB   /* memclass: the bytes are a string pinned
                                   in send slot aux (strcache.c) */
#define UR_FIXED_MAX     16384  /* the kernel's IORING_MAX_REG_BUFFERS */
#define UR_FFILES_MAX    65536  /* configure{fixed_files} at most */

/* Cancels a turn may hold back (ur_req_cancel_late); more are sent now. */
#define UR_LATE_MAX      64

/* An fd the ring may name, embedded in every object that owns one
 * (handle.c).  fd is -1 before it is opened and from close() on. */
typedef struct ur_handle {
  int fd;
  int slot;             /* the registered-file slot SQEs name, or -1 */
  uint32_t epoch;       /* the ring setup (loop->ring_epoch) of the slot */
  int held;             /* closed with requests in flight: the fd number,
                           still the kernel's until they complete (a
                           collected object's requests must forget it) */
} ur_handle;

/* Per fd number: the requests in flight naming it, and whether it is to
 * be closed when the last of them completes (handle.c). */
typedef struct ur_fdent {
  uint32_t head;        /* first request on the list: slab index + 1 */
  uint32_t count;
  int slot;             /* the slot to empty with it, or -1 */
  uint32_t epoch;
  uint8_t state;        /* open, or to be closed at its last request */
} ur_fdent;

/*
 * What an area of the core needs at the turns of the loop's life, given
 * once by its ur_register_* (ur_loop_hook); any may be NULL.  The engine
 * (loop.c, stats.c) calls them and calls no area by name.
 */
typedef struct ur_hooks {
  void (*ring_setup) (lua_State *L, ur_loop *loop);    /* a ring was set up */
  void (*ring_teardown) (ur_loop *loop, int drained);  /* the ring goes;
                           drained: the kernel holds no request any more */
  void (*run_start) (ur_loop *loop);                   /* uring.run begins */
  void (*forget) (ur_loop *loop);   /* a forked child lets the ring go */
  void (*close) (ur_loop *loop);    /* the loop is collected (lua_close) */
  void (*features) (lua_State *L, ur_loop *loop);  /* add to features() */
} ur_hooks;
#define UR_HOOKS_MAX 16

typedef struct ur_stats {
  uint64_t enters, sqes, cqes, flushes, waits, resumes, spawned;
  uint64_t overflow_flushes, stale_cqes;
  uint64_t fixed_reads;   /* reads through a registered buffer */
  uint64_t send_zc, send_zc_copied;   /* send_zc.c: SEND_ZCs issued, and
                           notifications saying the kernel copied anyway */
} ur_stats;

struct ur_loop {
  struct io_uring ring;
  int ring_ok;          /* ring set up */
  int running;          /* inside uring.run */
  int reaping;          /* inside ur_reap: a flush must not reap again */
  int closing;          /* shutting down: no new requests */
  int unwinding;        /* closing an ended task's <close> variables */
  unsigned entries;     /* SQ size asked for */
  unsigned setup_flags; /* flags the kernel accepted */
  unsigned sq_thread_idle;
  int want_sqpoll;
  pid_t pid;            /* owner; a forked child must not touch the ring */
  ur_slab slab;         /* its requests */
  uint32_t inflight;    /* requests the kernel holds */
  uint32_t background;  /* of those, the loop's own (ur_req.background) */
  uint32_t canceling;   /* of those, ones we asked the kernel to cancel */
  uint32_t pending;     /* SQEs prepared, not yet submitted */
  uint32_t lazy;        /* of those, ones no task waits on (fixedfile.c's
                           slot updates): a busy turn does not enter for
                           them alone; the next enter carries them */
  /* tasks */
  ur_waitq runq;
  uint32_t runq_len;
  uint32_t busy_turns;  /* turns that found tasks runnable */
  double busy_looked;   /* when a busy turn last looked for completions */
  uint32_t live_tasks;
  uint32_t next_task_id;
  ur_task *current;     /* the task being resumed, or NULL */
  int tasks_ref;        /* registry ref of the table anchoring live tasks */
  int main_ref;         /* registry ref of uring.run's main task */
  int main_failed;      /* 1: it just failed, cancel the rest; 2: done */
  int error_ref;        /* first unobserved task error, or LUA_NOREF;
                           LUA_REFNIL: one there was no memory to keep */
  uint32_t error_task;  /* the id of the task that raised it */
  lua_State *L;         /* the main thread, for registry work */
  ur_bufring *bufring;  /* provided receive buffers, made on first use */
  const void *file_mt;  /* the uring.file metatable (fs.c checkfile) */
  const void *buffer_mt;   /* the uring.buffer metatable (fs.c) */
  const void *sock_mt;  /* the uring.socket metatable (net.c checksock) */
  const void *pat_line[2];   /* "*l" and "l" (lua_topointer), interned
                                and anchored: a receive pattern is one of
                                them if it is the same object (net.c) */
  void *iobuf_free[UR_IOBUF_CLASSES];   /* pooled I/O buffers, per class */
  uint32_t iobuf_count[UR_IOBUF_CLASSES];
  /* registered buffers for file reads (fixedbuf.c) */
  uint32_t want_fixed;  /* configure{fixed_buffers}: 0 = off */
  uint32_t want_fixed_size;  /* configure{fixed_buffer_size} */
  uint32_t fixed_size;  /* bytes per registered buffer (as set up: a later
                           configure changes only want_fixed_size) */
  uint32_t fixed_n;     /* registered with the ring now (0: none) */
  uint32_t fixed_nfree; /* free slots, on top of fixed_stack */
  uint32_t *fixed_stack;
  unsigned char *fixed_base;   /* fixed_n * fixed_size bytes, 4096-aligned */
  int fixed_err;        /* -errno of a failed registration, else 0 */
  /* registered files for sockets (fixedfile.c) */
  uint32_t want_ffiles; /* configure{fixed_files}: 0 = off */
  uint32_t ffiles_n;    /* slots registered with the ring now */
  uint32_t ffiles_nfree;   /* free slots, on top of ffiles_stack */
  uint32_t *ffiles_stack;
  uint32_t ring_epoch;  /* counts ring setups: a slot is valid in its own */
  int ffiles_err;       /* -errno of a failed registration, else 0 */
  int *ffiles_fd;       /* per slot: the fd an install SQE reads (the
                           kernel reads it at issue: stable memory) */
  uint8_t ffiles_sqe;   /* slots change by IORING_OP_FILES_UPDATE SQEs,
                           not by io_uring_register calls */
  /* fds the ring may name (handle.c) */
  ur_fdent *fdtab;
  uint32_t fdcap;
  uint32_t fd_closing;  /* fds waiting for their last CQE to close */
  uint8_t op_missing[32];   /* ops this kernel lacks, a bit each (probe.c) */
  int probed;           /* the probe answered: op_missing is known */
  const ur_hooks *hooks[UR_HOOKS_MAX];   /* the areas' (ur_loop_hook) */
  int nhooks;
  int trace_ref;        /* trace function, or LUA_NOREF; -2 = print */
  struct ur_trace_ev *tq;  /* trace events waiting for the next turn */
  size_t tq_len, tq_cap;
  struct ur_trace_ev *tlog;   /* the newest events, for trace_export */
  size_t tlog_len, tlog_cap, tlog_start;
  uint64_t tlog_dropped;
  uint64_t trace_enters;   /* stats.enters at the last "enter" event */
  ur_stats stats;
  /* uring.thread's worker pool (threadpool.c), made on first use */
  struct ur_pool *pool;
  uint32_t want_threads;   /* configure{threads}: 0 = the CPU count */
  /* embedding (embed.c): uring.pollfd's eventfd, -1 until asked for */
  int pollfd;
  /* sock:send through SEND_ZC (send_zc.c) */
  size_t send_zc_min;   /* configure{send_zc}: sends this big or bigger; 0 off */
  uint8_t zc_no_usage;  /* the kernel refused IORING_SEND_ZC_REPORT_USAGE */
  /* strings kept anchored in fixed registry slots: small sends pinned,
   * received lines reused (strcache.c) */
  struct ur_strcache *strcache;
  /* the socket receive or send last checked (net.c): a later call on it
   * skips the metatable check; its __gc clears this, so it always names
   * a live socket (open or closed: the callers check the fd) */
  void *sock_hot;
  /* multishot receives (recv_multishot.c) */
  uint8_t recv_mshot;   /* configure{recv_multishot} */
  uint8_t mshot_refused;   /* the kernel answered one with EINVAL */
  /* spawning (task.c): registry refs (0: not made yet) of the task
   * metatable and of the pool of returned tasks' coroutines, its count */
  int task_mt_ref, copool_ref;
  uint32_t copool_n;
  /* slots of the tasks table (tasks_ref): the highest used, and the
   * first free one (0: none), each free slot holding the next */
  int task_top, task_free;
  /* cancels held back until the enter that carries their request has
   * shown whether it completed at once (ur_req_cancel_late): the request
   * user_data, and enter_seq when it was put here */
  struct { uint64_t ud; uint32_t seq; } late[UR_LATE_MAX];
  uint32_t nlate;
  uint32_t enter_seq;   /* counts enters that reached the kernel */
  /* closed sockets' first receive buffers, for the next ones (net.c) */
  void *rbuf_pool;
  uint32_t rbuf_pooled;
};

#define UR_SLAB_CHUNK 256

/* loop.c */
ur_loop *ur_loop_get (lua_State *L);          /* create on first use */
/* The core's functions carry the loop as upvalue 1 (set by ur_setfuncs):
 * finding it costs no lookup on the hot path. */
#define ur_loop_of(L) ((ur_loop *)lua_touserdata((L), lua_upvalueindex(1)))

/* luaL_checkudata without its two table lookups (the name in the
 * registry, ~300 instructions; pread and receive run it per op): the
 * metatable is compared by address with the loop's record of it (mt),
 * which stays in the registry for the state's life. */
static inline void *ur_checkudata (lua_State *L, int idx, const void *mt,
                                   const char *tname) {
  void *p = lua_touserdata(L, idx);
  if (p != NULL && lua_getmetatable(L, idx)) {
    int same = lua_topointer(L, -1) == mt;
    lua_pop(L, 1);
    if (same) return p;
  }
  luaL_typeerror(L, idx, tname);
  return NULL;
}
void ur_setfuncs (lua_State *L, const luaL_Reg *l);   /* table at top */
void ur_loop_hook (lua_State *L, const ur_hooks *h);
/* Call hook `which` of every area that has one, with args. */
#define ur_hooks_call(loop, which, ...) do { \
    for (int i_ = 0; i_ < (loop)->nhooks; i_++) \
      if ((loop)->hooks[i_]->which) (loop)->hooks[i_]->which(__VA_ARGS__); \
  } while (0)
int ur_loop_setup (lua_State *L, ur_loop *loop);   /* 0 or -errno */
ur_loop *ur_loop_ready (lua_State *L);        /* and set up the ring; raises */
/* ur_get_sqe (inline, below ur_slab_take) flushes a full SQ through: */
struct io_uring_sqe *ur_get_sqe_slow (ur_loop *loop);
void ur_reserve_sqes (ur_loop *loop, unsigned n);  /* room for a link chain */
int ur_submit (ur_loop *loop, unsigned wait_nr);    /* counts enters */
int ur_submit_timeout (ur_loop *loop, double secs); /* wait for 1, bounded */
void ur_reap (ur_loop *loop);                 /* dispatch every ready CQE */
void ur_enqueue (ur_loop *loop, ur_task *t);  /* make t runnable */
/* One loop turn; wait < 0: as uring.run (until a CQE), else at most wait
 * seconds, and no deadlock verdict (uring.step) */
void ur_loop_turn (lua_State *L, ur_loop *loop, double wait);
double ur_now (void);
/* After fork() the child inherits the loop but not the ring's mappings
 * (dontfork): touching them would crash.  ur_foreign is true there. */
extern volatile int ur_forked;        /* set in the child by pthread_atfork */
#define ur_foreign(loop) (ur_forked && ur_loop_foreign(loop))
int ur_loop_foreign (ur_loop *loop);
void ur_fork_watch (void);            /* process.c: sets ur_forked */
void ur_loop_forget (ur_loop *loop);
int ur_foreign_error (lua_State *L, ur_loop *loop);   /* raises */
void ur_register_loop (lua_State *L);

/* req.c: the slab (any owner), then the loop's requests */
int ur_slab_reserve (ur_slab *s);                 /* 0: out of memory */
int ur_slab_grow (ur_slab *s);                    /* 0: out of memory */
void ur_slab_put (lua_State *L, ur_slab *s, ur_req *r);  /* never raises */
void ur_slab_destroy (ur_slab *s);        /* the chunks; records are gone */
int ur_anchor (lua_State *L, int idx);    /* a registry ref for pin_ref */
/* ur_req_new (raises) and ur_req_submitted are inline, below ur_slab_take */
ur_req *ur_req_new_slow (lua_State *L, ur_loop *loop, uint8_t opcode);
void ur_req_traced (ur_loop *loop, ur_req *r);
/* ur_req_free (unpins, frees mem) is inline, below ur_slab_take */
void ur_req_free_slow (ur_loop *loop, ur_req *r);
void ur_req_cancel (ur_loop *loop, ur_req *r);        /* ASYNC_CANCEL it */
int ur_req_cancel_late (ur_loop *loop, ur_req *r);    /* 0: cancel it now */
void ur_late_cancels (ur_loop *loop);       /* after a reap (loop.c) */
void ur_req_pin (lua_State *L, ur_req *r, int idx);   /* kernel reads it */
void *ur_iobuf_new (ur_loop *loop, ur_req *r, size_t n);  /* r->mem; NULL: ENOMEM */
void ur_req_free_all (ur_loop *loop);       /* loop teardown */
ur_req *ur_link_timeout_new (lua_State *L, ur_loop *loop);   /* may raise */
void ur_link_timeout_add (ur_loop *loop, ur_req *tr,
                          struct io_uring_sqe *op, double secs);

/* process.c: uring.run's process plumbing, armed around the loop */
#include <signal.h>
#include <stdatomic.h>
typedef struct ur_runsig {
  ur_handle h;          /* the eventfd SIGINT's handler writes; -1 when
                           not armed */
  int hits;             /* SIGINTs taken */
  atomic_int pending;   /* the handler's count, not yet taken (lock-free
                           atomics: safe in a signal handler) */
  atomic_int busy;      /* of those, ones that found Lua running and set
                           the "interrupted" hook */
  ur_waitq watchers;    /* tasks in core._sigint_wait (the REPL's) */
  struct sigaction old; /* the handler before the run's */
  ur_req *req;          /* the poll, until its last CQE */
  int sigpipe;          /* SIGPIPE was blocked by us */
} ur_runsig;
void ur_runsig_arm (lua_State *L, ur_loop *loop, ur_runsig *s);
int ur_runsig_disarm (ur_loop *loop, ur_runsig *s);   /* SIGINTs seen */
int ur_runsig_pending (void);   /* a Ctrl-C the loop has not taken yet */
void ur_register_process (lua_State *L);   /* core._sigint_wait */

/* handle.c: the one close path for fds the ring may name */
void ur_handle_init (ur_handle *h);
int ur_handle_adopt (ur_loop *loop, ur_handle *h, int fd);  /* 0 | -ENOMEM */
void ur_handle_fix (ur_loop *loop, ur_handle *h);
void ur_handle_sqe (ur_loop *loop, ur_handle *h, ur_req *r,
                    struct io_uring_sqe *sqe);
uint32_t ur_handle_inflight (ur_loop *loop, const ur_handle *h);
int ur_handle_close (ur_loop *loop, ur_handle *h, const void *gone);
int ur_handle_close_lazy (ur_loop *loop, ur_handle *h, const void *gone);
void ur_handle_close_sqe (ur_loop *loop, ur_handle *h, ur_req *r,
                          struct io_uring_sqe *sqe);
void ur_fd_unlink (ur_loop *loop, ur_req *r);
void ur_fd_release (int fd);          /* close an fd no request names */
void ur_fdtab_forget (ur_loop *loop);
void ur_fdtab_free (ur_loop *loop);
int ur_pushclosed (lua_State *L);     /* nil, "closed", EBADF */

/* task.c */
ur_task *ur_task_current (lua_State *L, const char *fname);  /* raises */
ur_task *ur_task_of (lua_State *L);           /* NULL outside a task */
/* the same two with the loop at hand: no upvalue lookup (hot paths) */
/* (ur_task_current_in is inline, below ur_interrupted) */
ur_task *ur_task_current_slow (lua_State *L, ur_loop *loop,
                               const char *fname);
static inline ur_task *ur_task_in (ur_loop *loop, lua_State *L) {
  ur_task *t = loop->current;
  return (t && t->co == L) ? t : NULL;
}
/* The loop resuming tasks on this thread right now (ur_loop_turn sets
 * it while it runs them), or NULL: a thread-local read (__tls_get_addr),
 * where the loop upvalue (ur_loop_of) is an API call of ~35. */
extern __thread ur_loop *ur_resuming;
/* ur_loop_of(L) for the hot paths of sockets, which run in the task the
 * loop is resuming: that loop when L is its task, else the upvalue. */
static inline ur_loop *ur_loop_at (lua_State *L) {
  ur_loop *loop = ur_resuming;
  if (loop != NULL && loop->current != NULL && loop->current->co == L)
    return loop;
  return ur_loop_of(L);
}
/* (ur_await, the park on a request, is inline below ur_interrupted) */
/* (ur_resumed, the finished request, is inline below ur_interrupted) */
ur_req *ur_resumed_slow (lua_State *L, ur_task *t);
void ur_check_interrupt (lua_State *L, ur_task *t);   /* raise cancel/timeout */
void ur_req_wake (ur_loop *loop, ur_req *r);  /* default CQE handler */
int ur_park (lua_State *L, ur_task *t, ur_waitq *q, const char *what,
             lua_KContext ctx, lua_KFunction k);
void ur_waitq_wake_one (ur_loop *loop, ur_waitq *q);
void ur_waitq_wake_all (ur_loop *loop, ur_waitq *q);
void ur_task_finished (lua_State *L, ur_loop *loop, ur_task *t, int status,
                       const char *why);   /* never raises */
int ur_task_new (lua_State *L, ur_loop *loop, int nargs);  /* fn, args -> task */
int ur_task_results (lua_State *L, ur_task *t);  /* task at top -> results */
void ur_task_cancel (ur_loop *loop, ur_task *t);
void ur_task_unpark (ur_loop *loop, ur_task *t);   /* leave its wait queue */
void ur_register_task (lua_State *L);

/* sync.c: queue, semaphore, event, select */
void ur_sync_task_ended (lua_State *L, ur_loop *loop, ur_task *t);
void ur_register_sync (lua_State *L);

/* err.c */
int ur_pushfail (lua_State *L, int res, const char *what);
int ur_pushsetupfail (lua_State *L, int res, unsigned entries);
const char *ur_setup_reason (int res, char *buf, size_t len);
lua_Integer ur_intfield (lua_State *L, int t, int arg, const char *key,
                         lua_Integer def, lua_Integer lo, lua_Integer hi);
/* Strings the kernel or libc reads as C strings (paths, names, modes):
 * one with a NUL inside raises "bad argument #arg to 'f' (what contains a
 * NUL byte)" instead of being cut at it.  ur_tocstr checks the string or
 * number already at idx (a table field), naming argument arg. */
const char *ur_checkcstr (lua_State *L, int arg, const char *what);
const char *ur_optcstr (lua_State *L, int arg, const char *what,
                        const char *def);
const char *ur_tocstr (lua_State *L, int idx, int arg, const char *what);
const char *ur_checkpath (lua_State *L, int arg);     /* what = "path" */
/* Seconds for a timer: a number (or a numeric string) in [0, 1e12), the
 * range a timespec holds exactly enough; NaN, infinities, negatives and
 * bigger values raise UR_SECONDS_MSG.  ur_seconds_problem says why v at
 * idx is not one (NULL: it is, stored in *out), for callers that raise
 * with their own name.  ur_checklimit is settimeout's: nil, a negative
 * number or >= 1e12 (math.huge) mean "no limit" (-1); NaN raises. */
#define UR_SECONDS_MAX 1e12
#define UR_SECONDS_MSG "seconds must be a non-negative number below 1e12"
const char *ur_seconds_problem (lua_State *L, int idx, double *out);
double ur_checkseconds (lua_State *L, int arg);
double ur_checklimit (lua_State *L, int arg);
void ur_register_err (lua_State *L);   /* uring.errno */

/* fs.c */
void ur_register_fs (lua_State *L);
void ur_file_push (lua_State *L, const char *mode);   /* a closed file */
int ur_file_adopt (lua_State *L, int idx, int fd);    /* 0 | -ENOMEM */
ur_handle *ur_file_handle (lua_State *L, int idx);     /* checks; copy.c */

/* statx.c: the one statx table (uring.stat, file:stat, ring:prep_statx) */
struct statx;
const char *ur_file_type (unsigned mode);     /* "file", "fifo", ... */
void ur_push_statx (lua_State *L, const struct statx *st);
int ur_statx_names (lua_State *L);
void ur_push_statx_with (lua_State *L, const struct statx *st, int names);

/* fixedfile.c: registered files for sockets */
void ur_register_fixedfile (lua_State *L);          /* its hooks */
int ur_ffile_add (ur_loop *loop, int fd);           /* a slot, or -1 */
void ur_ffile_remove (ur_loop *loop, int slot, uint32_t epoch);

/* fixedbuf.c: registered buffers for file reads */
void ur_register_fixedbuf (lua_State *L);           /* its hooks */
/* A free registered slot for a read of n bytes, or -1 (none registered,
 * all in use, or n too big): the caller then reads as before. */
static inline int ur_fixed_take (ur_loop *loop, size_t n) {
  if (loop->fixed_nfree == 0 || n > loop->fixed_size) return -1;
  return (int)loop->fixed_stack[--loop->fixed_nfree];
}

/* buffer.c */
typedef struct ur_buffer {
  size_t size;
  int pins;             /* SQEs naming it that have not completed */
  unsigned char *data;  /* 4096-aligned, inside this userdata */
} ur_buffer;
ur_buffer *ur_checkbuffer (lua_State *L, int idx);
void ur_register_buffer (lua_State *L);

/* addr.c: socket addresses; numeric only (host names go through dns.c) */
#include <sys/socket.h>
typedef struct ur_addr {
  struct sockaddr_storage ss;
  socklen_t len;
} ur_addr;
int ur_addr_numeric (const char *host, int port, ur_addr *a);  /* 1: parsed */
int ur_addr_unix (const char *path, ur_addr *a);               /* 0: too long */
int ur_push_addr (lua_State *L, const struct sockaddr *sa, socklen_t len);

/* dns.c: getaddrinfo on a helper thread; its completion is read through
 * the ring (an eventfd), so other tasks run while a name resolves.
 * ur_resolve yields; in the continuation k, ur_resolved gives the first
 * address (0) or pushes the fail triple (returns 3). */
int ur_resolve (lua_State *L, ur_task *t, const char *host, int port,
                int socktype, lua_KContext ctx, lua_KFunction k);
int ur_resolved (lua_State *L, ur_task *t, ur_addr *out);
void ur_register_dns (lua_State *L);

/* thread.c: a detached helper thread, signals blocked; 0 or -1 */
int ur_thread_start (void *(*fn)(void *), void *arg);

/* copy.c: uring.copyfile's C: copy_file_range on a helper thread, and
 * the fallback, SPLICE pairs through a pipe; sock:sendfile on the same
 * pairs (ur_sock_sendfile, above) */
void ur_register_copy (lua_State *L);

/* bufring.c: provided receive buffers (one group per loop) */
#define UR_BGID     1
#define UR_BR_SIZE  (16 * 1024)
int ur_bufring_ensure (ur_loop *loop);           /* 0 or -errno */
const char *ur_bufring_data (ur_loop *loop, unsigned bid);
void ur_bufring_recycle (ur_loop *loop, unsigned bid);
int ur_bufring_grow (ur_loop *loop);
void ur_register_bufring (lua_State *L);           /* its hooks */

/* signal.c: uring.signal (signalfd through the ring), uring.poll */
void ur_register_signal (lua_State *L);
void ur_register_proc (lua_State *L);    /* proc.c: exec, popen */

/* net.c (TCP and Unix streams), udp.c */
void ur_register_net (lua_State *L);     /* exports core.socket_methods */
void ur_register_udp (lua_State *L);
/* A stream socket's receive side, for the parser beside net.c (http.c):
 * the socket stays opaque; its bytes are taken only with consume. */
typedef struct ur_sock ur_sock;
ur_sock *ur_sock_check (lua_State *L, int idx);   /* raises: not a socket */
int ur_sock_closed (const ur_sock *s);
int ur_sock_eof (const ur_sock *s);                /* the peer has closed */
const char *ur_sock_buffered (const ur_sock *s, size_t *len); /* never NULL */
void ur_sock_consume (ur_sock *s, size_t n);
size_t *ur_sock_mark (ur_sock *s);   /* a parser's resume point; consume
                                        resets it to 0 */
/* A receive: ur_sock_recv_task checks (in a task, not listening, not
 * busy); ur_sock_recv yields until bytes come, then resumes k(ctx),
 * where ur_sock_recv_result ends the request and says what came. */
enum { UR_RECV_FAILED = -1, UR_RECV_EOF = 0, UR_RECV_BYTES = 1,
       UR_RECV_AGAIN = 2 };   /* FAILED: the fail triple is pushed */
ur_task *ur_sock_recv_task (lua_State *L, ur_sock *s);   /* raises */
int ur_sock_recv (lua_State *L, ur_sock *s, ur_task *t,
                  lua_KContext ctx, lua_KFunction k);
int ur_sock_recv_result (lua_State *L, ur_task *t, ur_sock **sp);
/* sock:sendfile: the send side's handle, checked (raises), and the busy
 * mark sock:send honours; ur_sock_sendfile is in copy.c, beside the
 * splice machinery it shares with uring.copyfile */
ur_handle *ur_sock_send_handle (lua_State *L, int idx, ur_sock **sp);
void ur_sock_sending (ur_sock *s, int busy);
int ur_sock_sendfile (lua_State *L);
/* ... and waits first for a send-behind in flight (-1: none; in k,
 * ur_sock_behind_done: NULL with the fail tuple pushed if it closed) */
int ur_sock_wait_behind (lua_State *L, ur_sock *s, ur_task *t,
                         lua_KContext ctx, lua_KFunction k);
ur_sock *ur_sock_behind_done (lua_State *L, ur_task *t);
/* ... and, before a socket moves (msg_ring.c), its first RECV, queued
 * when it was accepted, too: cancelled, what it brought buffered */
int ur_sock_settle (lua_State *L, ur_sock *s, ur_task *t,
                    lua_KContext ctx, lua_KFunction k);
/* the string at idx sent behind at once, 1 pushed; or 0: use sock:send */
int ur_sock_send_behind (lua_State *L, ur_sock *s, int idx);

/* recv_multishot.c: a socket's receive as one multishot RECV that stays
 * armed (configure{recv_multishot}).  net.c embeds a ur_mshot in each
 * socket and hands its receive over where ur_sock_recv_raw begins and
 * where ur_sock_recv_result takes the result. */
#define UR_RECV_MSHOT_DEFAULT 0   /* off: bench/README.md, docs/api.md */
typedef struct ur_mshot {
  uint64_t ud;          /* the armed multishot's user_data, or 0 */
  uint64_t timer;       /* settimeout's TIMEOUT while a task waits, or 0 */
  size_t got;           /* bytes buffered since the waiting task looked */
  int err;              /* -errno it ended with, for the next receive */
  int flow;             /* the waiting receive's flow (tls.c) */
  uint8_t timedout;     /* the timer fired first */
  uint8_t waits;        /* single-shot waits before arming (to MSHOT_AFTER) */
} ur_mshot;
ur_mshot *ur_sock_mshot (ur_sock *s);
void ur_sock_receiving (ur_sock *s, int busy);
int ur_recv_mshot_option (lua_State *L, int t, int def);   /* raises */
int ur_recv_mshot_default (void);       /* URING_TEST_RECV_MULTISHOT */
int ur_mshot_recv (lua_State *L, ur_sock *s, ur_task *t, int flow, int want,
                   lua_KContext ctx, lua_KFunction k);   /* -1: single shot */
int ur_mshot_owns (const ur_req *r);
int ur_mshot_close (lua_State *L, ur_sock *s, ur_task *t, lua_KContext ctx,
                    lua_KFunction k);   /* -1: none armed */
int ur_mshot_result (ur_loop *loop, ur_task *t, ur_req *r, ur_sock **sp,
                     int *flow);
void ur_register_recv_mshot (lua_State *L);

/* A TLS socket (tls.c) is a stream socket with TLS state: net.c moves
 * the ciphertext through the ring and calls tls.c at these points. */
typedef struct ur_tls ur_tls;
char *ur_sock_reserve (ur_sock *s, size_t n);   /* room at the end, or NULL */
void ur_sock_commit (ur_sock *s, size_t n);     /* n bytes written there */
void ur_sock_set_eof (ur_sock *s);
ur_tls *ur_sock_tls (const ur_sock *s);
void ur_sock_set_tls (ur_sock *s, ur_tls *tls);
void **ur_sock_tls_ctx (ur_sock *s);            /* a held context */
int ur_sock_listening (const ur_sock *s);
int ur_sock_busy (const ur_sock *s, int sending);
ur_handle *ur_sock_handle (ur_sock *s);
int ur_sock_fail (lua_State *L, ur_sock *s, int res);   /* pushes 3 */
/* a socket object for a connected fd it now owns (msg_ring.c), pushed;
 * NULL (the fd closed) when out of memory */
ur_sock *ur_sock_push_fd (lua_State *L, ur_loop *loop, int fd, int family);
/* flow: 0 for a receive's own requests, UR_TLS_SENDING for a send's
 * (a send never decrypts: the bytes are the receiver's to take) */
#define UR_TLS_SENDING 2
int ur_sock_recv_raw (lua_State *L, ur_sock *s, ur_task *t, int flow,
                      lua_KContext ctx, lua_KFunction k);
int ur_sock_send_mem (lua_State *L, ur_sock *s, ur_task *t, int flow,
                      char *mem, size_t n, lua_KContext ctx,
                      lua_KFunction k);
int ur_sock_kick (lua_State *L, ur_sock *s, ur_task *t, lua_KContext ctx,
                  lua_KFunction k);
struct io_uring_sqe *ur_sock_send_bg (ur_loop *loop, ur_sock *s, char *mem,
                                      size_t n);
int ur_tls_feed (ur_tls *tls, const char *p, size_t n);   /* 0: ENOMEM */
int ur_tls_recv (lua_State *L, ur_sock *s, ur_task *t, lua_KContext ctx,
                 lua_KFunction k);
void ur_tls_sent (ur_tls *tls, ur_req *r);
int ur_tls_result (lua_State *L, ur_sock *s, int res, int op, int flow);
int ur_tls_send (lua_State *L, ur_sock *s, ur_task *t);  /* stack as send's */
void ur_tls_close (ur_loop *loop, ur_sock *s);
struct io_uring_sqe *ur_tls_notify (ur_loop *loop, ur_sock *s);   /* or NULL */
int ur_tls_attach (ur_sock *s, void *ctx, const char *servername); /* -errno */
void ur_tls_ctx_release (void **ctx);
void ur_tls_opts (lua_State *L, int opts, ur_sock *s, int listening,
                  const char *fname);
int ur_tls_connect (lua_State *L, ur_task *t, ur_sock *s);   /* stack 1..5 */
void ur_register_tls (lua_State *L);

/* strcache.c: a small send pinned through a slot of anchored strings (1;
 * 0: that slot is busy, copy), let go of by ur_req_free; and a received
 * line pushed as the string a line slot already holds, if it does */
/* (ur_strcache_pin, for net.c: inline, in strcache.h) */
void ur_strcache_unpin (ur_loop *loop, ur_req *r);
void ur_strcache_push_line (lua_State *L, ur_loop *loop, const char *p,
                            size_t n, int nocr);   /* nocr: checked CR-free */
/* (ur_strcache_line_hit, for net.c: inline, in strcache.h) */
void ur_register_strcache (lua_State *L);

/* http.c: HTTP/1.x request heads; adds sock:receive_head and
 * sock:_take_request to net.c's socket methods (so: after net.c) */
void ur_register_http (lua_State *L);
/* a whole head taken from s's buffer (see http.c): > 1 its values
 * pushed, 1 a bad head's status pushed, 0 part of one, -1 nothing */
int ur_http_take_request (lua_State *L, ur_sock *s, size_t max);
/* the same for sock:_serve: a head without a body is UR_HEAD_BARE, its
 * text pushed alone and what the loop needs of it in *r.  r->last: the
 * text of the last bare head (r->last_n bytes, checked with r->last_max;
 * the flags then hold its v10, keep, head_only): the same bytes again
 * are neither parsed nor pushed again (r->same, the flags kept) */
typedef struct ur_http_head {
  int v10, keep, head_only, same;
  const char *last;
  size_t last_n, last_max;
} ur_http_head;
/* a request table's own slots (its array part): the head's text, as it
 * came, and the socket; its fields are worked out from them (http.c) */
#define UR_REQ_HEAD 1
#define UR_REQ_SOCKET 2
#define UR_HEAD_BARE 2
int ur_http_take_serve (lua_State *L, ur_sock *s, size_t max,
                        ur_http_head *r);
/* http_serve.c: sock:_serve, uring.http's request loop (after http.c) */
void ur_register_http_serve (lua_State *L);

/* ring.c (teaching API), probe.c (op names), stats.c (stats, trace) */
void ur_register_ring (lua_State *L);
const char *ur_opname (unsigned op);
/* An op this kernel lacks (probe.c, probed at ring setup).  A request
 * of one completes with UR_ENOOP(op) in place of the kernel's EINVAL
 * (dispatch), and ur_pushfail words it "what: IORING_OP_X not supported
 * by this kernel (V+)", errno EOPNOTSUPP: beyond any errno. */
#define UR_ENOOP_BASE 0x10000
#define UR_ENOOP(op) (-(UR_ENOOP_BASE + (int)(op)))
static inline int ur_op_missing (const ur_loop *loop, unsigned op) {
  return op < 256 && ((loop->op_missing[op >> 3] >> (op & 7)) & 1);
}
int ur_probe_loop (ur_loop *loop);     /* 0, or UR_ENOOP of a needed op */
const char *ur_noop_text (unsigned op, char *buf, size_t len);
int ur_push_probe (lua_State *L, struct io_uring *ring);
void ur_register_probe (lua_State *L);
void ur_register_stats (lua_State *L);
void ur_register_workers (lua_State *L);   /* workers.c: uring.workers */
void ur_register_websocket (lua_State *L); /* websocket.c: _ws_* helpers */
void ur_register_watch (lua_State *L);     /* watch.c: uring.watch */
/* msg_ring.c: the workers' channel; its doorbell CQE's user_data (high
 * 32 bits 0: never a request's), and workers.c's calls around the fork */
#define UR_CHAN_UD 0x6d736772u
/* the reaper's one call for a CQE whose user_data has generation 0, so
 * names no request: posted into our ring by another ring's MSG_RING;
 * NULL until msg_ring.c registers */
extern void (*ur_foreign_cqe) (ur_loop *loop, uint64_t ud, int32_t res);
void ur_register_msg_ring (lua_State *L);
int ur_chan_prefork (int n);               /* 0 | -errno */
void ur_chan_child (int i);
void ur_chan_parent (void);
void ur_chan_gone (int i);                 /* reaped: sends to it fail */
void ur_chan_release (void);
void ur_trace_sqe (ur_loop *loop, ur_req *r);
void ur_trace_cqe (ur_loop *loop, ur_req *r);
void ur_trace_flush (lua_State *L, ur_loop *loop);
void ur_trace_enter (ur_loop *loop, unsigned to_submit, unsigned min_complete,
                     int submitted);   /* loop.c, while tracing */
/* the teaching ring's trace hooks (ring.c, ring_req.c) */
ur_loop *ur_tracing (lua_State *L);   /* the loop if tracing, else NULL */
void ur_trace_ring_req (ur_loop *loop, int ring_fd, int cqe, unsigned op,
                        int fd, lua_Integer user, int32_t res, uint32_t flags,
                        size_t len, double t_prep);
void ur_trace_ring_enter (ur_loop *loop, struct io_uring *ring,
                          unsigned to_submit, unsigned min_complete,
                          int submitted);
void ur_trace_ring_flush (lua_State *L, ur_loop *loop);
void ur_trace_free (ur_loop *loop);                 /* at loop __gc */
void ur_push_setup_flags (lua_State *L, unsigned flags);   /* {SQPOLL = true} */
unsigned ur_setup_flag (const char *name);    /* "SQPOLL" -> bit; 0: unknown */

/* jobs.c: blocking calls io_uring has no op for, on a pool of helper
 * threads; a task waits for its set's jobs with one READ of an eventfd */
typedef struct ur_jobset ur_jobset;
typedef struct ur_job ur_job;
struct ur_job {
  void (*run) (ur_job *j);    /* on a pool thread: the blocking part */
  void (*drop) (ur_job *j);   /* free it and all it holds */
  ur_jobset *set;
  ur_job *next;
};
int ur_jobset_new (lua_State *L, ur_jobset **out);  /* pushes; 0 | -errno */
ur_jobset *ur_jobset_check (lua_State *L, int idx);
void ur_jobset_release (lua_State *L, int idx);   /* done with it: now */
void ur_job_submit (ur_jobset *s, ur_job *j);
int ur_job_stopped (const ur_job *j);      /* its waiter has let go */
uint32_t ur_jobset_pending (const ur_jobset *s);
int ur_jobset_wait (lua_State *L, ur_task *t, ur_jobset *s, const char *what,
                    lua_KContext ctx, lua_KFunction k);
int ur_jobset_woken (lua_State *L, ur_task *t);   /* in k: READ's result */
ur_job *ur_jobset_peek (ur_jobset *s);     /* a finished job, or NULL */
void ur_jobset_drop (ur_jobset *s, ur_job *j);   /* done with it */
void ur_register_jobs (lua_State *L);
void ur_register_dir (lua_State *L);       /* dir.c: uring.dir, walk's scans */
void ur_register_fsmeta (lua_State *L);    /* fsmeta.c: chmod, truncate, ... */

/* user_data <-> request, on every SQE and CQE: inline.  gen is never 0,
 * so no request has user_data 0 (the core's own cancels carry it). */
static inline uint64_t ur_slab_ud (const ur_req *r) {
  return ((uint64_t)r->gen << 32) | r->idx;
}

/* The record at index idx (< s->nreqs). */
static inline ur_req *ur_slab_req (ur_slab *s, uint32_t idx) {
  return &s->chunks[idx / UR_SLAB_CHUNK][idx % UR_SLAB_CHUNK];
}

/* The live request named by ud, or NULL if it is stale. */
static inline ur_req *ur_slab_at (ur_slab *s, uint64_t ud) {
  uint32_t idx = (uint32_t)ud, gen = (uint32_t)(ud >> 32);
  ur_req *r;
  if (idx >= s->nreqs) return NULL;
  r = ur_slab_req(s, idx);
  return (r->gen == gen && r->state != UR_REQ_FREE) ? r : NULL;
}

static inline uint64_t ur_req_ud (ur_loop *loop, ur_req *r) {
  (void)loop;
  return ur_slab_ud(r);
}

static inline ur_req *ur_req_at (ur_loop *loop, uint64_t ud) {
  return ur_slab_at(&loop->slab, ud);
}

/* A fresh record, state UR_REQ_DONE (taken, not in flight), or NULL when
 * memory ran out.  Never raises.  Inline: every op takes one, and the
 * fields are reset with one memset the compiler turns into a few stores. */
static inline ur_req *ur_slab_take (ur_slab *s, uint8_t opcode) {
  ur_req *r;
  if (s->free_head == 0 && !ur_slab_grow(s)) return NULL;
  r = ur_slab_req(s, s->free_head - 1);
  s->free_head = r->next_free;
  s->used++;
  memset(&r->on_cqe, 0, offsetof(ur_req, state) - offsetof(ur_req, on_cqe));
  r->state = UR_REQ_DONE;
  r->opcode = opcode;
  r->background = 0;
  r->untraced = 0;              /* next to background: one store for both */
  r->fd = -1;
  r->pin_ref = LUA_NOREF;
  r->cancel_late = 0;
  return r;
}

/* t was cancelled, or a uring.timeout scope it is inside has expired:
 * its next wait point raises (ur_check_interrupt) */
static inline int ur_interrupted (const ur_task *t) {
  return t->canceled || (t->expired_at && t->expired_at <= t->scope_depth);
}

/* Every op runs these, a server several per message: inline, so the
 * usual case costs no call (the rest is in loop.c, req.c and task.c). */

/* An SQE to fill; a full SQ is flushed first, never an error. */
static inline struct io_uring_sqe *ur_get_sqe (ur_loop *loop) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);
  if (sqe == NULL) return ur_get_sqe_slow(loop);
  loop->pending++;
  loop->stats.sqes++;
  return sqe;
}

/* A request record for opcode; raises when memory ran out (or, with L
 * NULL, returns NULL), and in a forked child. */
static inline ur_req *ur_req_new (lua_State *L, ur_loop *loop,
                                  uint8_t opcode) {
  if (loop->slab.free_head != 0 && !ur_foreign(loop))
    return ur_slab_take(&loop->slab, opcode);
  return ur_req_new_slow(L, loop, opcode);
}

/* Called only when the kernel is done with r (its last CQE was seen), or
 * it never reached the kernel.  The usual request (a receive whose buffer
 * the socket took back, a send through a slot) has nothing to release
 * but its slot: done here; the rest in req.c. */
static inline void ur_req_free (ur_loop *loop, ur_req *r) {
  if (r->state == UR_REQ_FREE) return;
  if (r->mem != NULL || r->pin_ref != LUA_NOREF || r->onfd
      || (r->memclass != 0 && r->memclass != UR_MEM_SLOT)) {
    ur_req_free_slow(loop, r);
    return;
  }
  if (r->memclass == UR_MEM_SLOT) {
    ur_strcache_unpin(loop, r);
    r->memclass = 0;
  }
  r->state = UR_REQ_FREE;
  if (++r->gen == 0) r->gen = 1;   /* user_data 0 is reserved */
  r->next_free = loop->slab.free_head;
  loop->slab.free_head = r->idx + 1;
  loop->slab.used--;
}

/* The SQE is fully prepared: from here the kernel owns the request. */
static inline void ur_req_submitted (ur_loop *loop, ur_req *r,
                                     struct io_uring_sqe *sqe) {
  io_uring_sqe_set_data64(sqe, ur_req_ud(loop, r));
  UR_FAULT_SQE(sqe);            /* test builds: an op an old kernel lacks */
  r->state = UR_REQ_INFLIGHT;
  loop->inflight++;
  loop->background += r->background;
  if (r->task == NULL) r->task = loop->current;   /* ur_await confirms it */
  if (loop->trace_ref != LUA_NOREF) ur_req_traced(loop, r);
}

/* The task an op runs in; raises when there is none or it cannot yield
 * (and raises what interrupted it: a cancel, an expired scope). */
static inline ur_task *ur_task_current_in (lua_State *L, ur_loop *loop,
                                           const char *fname) {
  ur_task *t = ur_task_in(loop, L);
  if (t != NULL && !ur_interrupted(t) && lua_isyieldable(L)) return t;
  return ur_task_current_slow(L, loop, fname);
}

/* Park t on request r: it resumes in k when r's CQE has arrived. */
static inline int ur_await (lua_State *L, ur_task *t, ur_req *r,
                            const char *what, lua_KContext ctx,
                            lua_KFunction k) {
  r->task = t;
  t->wait_ud = ur_req_ud(t->loop, r);
  t->status = UR_WAITING;
  t->what = what;
  return lua_yieldk(L, 0, ctx, k);
}

/* In a continuation: check that the loop resumed us, then hand back the
 * finished request.  The caller frees it (ur_req_free). */
static inline ur_req *ur_resumed (lua_State *L, ur_task *t) {
  ur_req *r;
  if (t != NULL && (r = ur_req_at(t->loop, t->wait_ud)) != NULL
      && r->state == UR_REQ_DONE) {
    t->wait_ud = 0;
    return r;
  }
  return ur_resumed_slow(L, t);
}

static inline void ur_set_ts (struct __kernel_timespec *ts, double secs) {
  ts->tv_sec = (long long)secs;
  ts->tv_nsec = (long long)((secs - (double)ts->tv_sec) * 1e9);
}

/* wire.c: plain Lua values (nil, booleans, numbers, strings, tables of
 * them) copied between lua_States as bytes in malloc'd memory */
#define UR_WIRE_DEPTH 100
typedef struct ur_wire { char *p; size_t len, cap; } ur_wire;
int ur_wire_encode (lua_State *L, int idx, ur_wire *w, char *err,
                    size_t errlen);            /* 0, or -1 and why in err */
int ur_wire_decode (lua_State *L, const ur_wire *w);   /* pushes; count */
void ur_wire_free (ur_wire *w);

/* threadpool.c: uring.thread; embed.c: uring.step, uring.pollfd */
void ur_register_threadpool (lua_State *L);
void ur_register_embed (lua_State *L);

/* Every register function receives the module table at the stack top and
 * adds its functions and metatables; it leaves the stack as it found it. */

/* failwatch.c: the REPL sees errors of tasks nobody joins as they happen */
void ur_register_failwatch (lua_State *L);
/* inspect.c: the loop ring's indices for uring.inspect; ring.c: one
 * ring's indices as a table, the vocabulary of ring:state() */
#define UR_UNTRACED_INHERIT 2
void ur_register_inspect (lua_State *L);
void ur_push_ring_state (lua_State *L, struct io_uring *ring);
int ur_failwatch_add (lua_State *L, ur_loop *loop, int task_idx, int tb_idx);

/* send_zc.c: sock:send of big strings through IORING_OP_SEND_ZC, the
 * string pinned until the notification CQE; net.c's send path asks
 * ur_send_zc_wanted, then hands the send over (stack as send_k's) */
#define UR_SEND_ZC_DEFAULT 0    /* off: bench/sendzc.sh, docs/api.md */
#define UR_SEND_ZC_ON (64 * 1024)   /* configure{send_zc = true} */
static inline int ur_send_zc_wanted (const ur_loop *loop, lua_Integer n) {
  return loop->send_zc_min > 0 && n >= (lua_Integer)loop->send_zc_min
         && !ur_op_missing(loop, IORING_OP_SEND_ZC);
}
size_t ur_send_zc_option (lua_State *L, int t, size_t def);   /* raises */
int ur_sock_send_zc (lua_State *L, ur_sock *s, ur_task *t, size_t done);
uint32_t ur_send_zc_held (ur_loop *loop);   /* waiting for notifications */
double ur_sock_timeout (const ur_sock *s);  /* net.c: settimeout's, or < 0 */

#endif
