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
  uint32_t next_free;   /* free-list link (index + 1; 0 ends) */
  uint8_t state;        /* UR_REQ_* */
  uint8_t opcode;       /* IORING_OP_*, for trace and stats */
  uint8_t canceling;    /* an ASYNC_CANCEL for it was submitted */
  uint8_t memclass;     /* mem is a pooled I/O buffer of class memclass-1
                           (ur_iobuf_new); 0: plain malloc, freed;
                           UR_MEM_FIXED: registered slot aux (fixedbuf.c);
                           UR_MEM_BUFFER: obj is a pinned uring.buffer */
  int32_t res;          /* copied from the CQE */
  uint32_t cflags;      /* copied from the CQE */
  int fd;               /* for trace; and closed by the core when an open
                           or accept completes for a task that is gone */
  int aux;              /* per-op small state (timeout scope depth, ...) */
  ur_handler on_cqe;    /* NULL: wake the task (ur_req_wake) */
  ur_task *task;        /* the task to resume, or NULL */
  void *obj;            /* the object a handler updates (a socket), or NULL */
  int pin_ref;          /* registry ref: Lua value the kernel reads */
  void *mem;            /* malloc'd memory the kernel writes into */
  size_t memlen;
  double t_prep;        /* uring.now() at prep; for trace only */
  union {               /* small arguments the kernel reads at submit */
    struct __kernel_timespec ts;
    uint64_t u64;
    int i[4];
  } u;
};

/* Task states, as task:status() names them. */
enum { UR_READY, UR_RUNNING, UR_WAITING, UR_DONE, UR_FAILED, UR_CANCELED };

/* A FIFO of tasks parked on something that is not a request (join, a busy
 * file).  Tasks link through ur_task.next. */
typedef struct ur_waitq { ur_task *head, *tail; } ur_waitq;

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
};

/* Pooled I/O buffers (file:pread and O_DIRECT writes): 4096-aligned, in
 * classes of 4 KiB << k up to 64 KiB; bigger ones are allocated each time. */
#define UR_IOBUF_CLASSES 5
#define UR_IOBUF_MIN     4096
#define UR_MEM_FIXED     0xFE   /* memclass of a registered-buffer read */
#define UR_MEM_BUFFER    0xFD   /* memclass of a read into a uring.buffer */
#define UR_FIXED_MAX     16384  /* the kernel's IORING_MAX_REG_BUFFERS */
#define UR_FFILES_MAX    65536  /* configure{fixed_files} at most */

typedef struct ur_stats {
  uint64_t enters, sqes, cqes, flushes, waits, resumes, spawned;
  uint64_t overflow_flushes, stale_cqes;
  uint64_t fixed_reads;   /* reads through a registered buffer */
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
  /* request slab: chunks of UR_SLAB_CHUNK, never moved */
  ur_req **chunks;
  uint32_t nchunks, nreqs;
  uint32_t free_head;   /* index + 1 of first free; 0 = none */
  uint32_t inflight;    /* requests the kernel holds */
  uint32_t canceling;   /* of those, ones we asked the kernel to cancel */
  uint32_t pending;     /* SQEs prepared, not yet submitted */
  /* tasks */
  ur_waitq runq;
  uint32_t runq_len;
  uint32_t busy_turns;  /* turns that found tasks runnable */
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
  int trace_ref;        /* trace function, or LUA_NOREF; -2 = print */
  struct ur_trace_ev *tq;  /* trace events waiting for the next turn */
  size_t tq_len, tq_cap;
  ur_stats stats;
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
int ur_loop_setup (lua_State *L, ur_loop *loop);   /* 0 or -errno */
ur_loop *ur_loop_ready (lua_State *L);        /* and set up the ring; raises */
struct io_uring_sqe *ur_get_sqe (ur_loop *loop);   /* flushes a full SQ */
void ur_reserve_sqes (ur_loop *loop, unsigned n);  /* room for a link chain */
int ur_submit (ur_loop *loop, unsigned wait_nr);    /* counts enters */
void ur_reap (ur_loop *loop);                 /* dispatch every ready CQE */
void ur_enqueue (ur_loop *loop, ur_task *t);  /* make t runnable */
double ur_now (void);
/* After fork() the child inherits the loop but not the ring's mappings
 * (dontfork): touching them would crash.  ur_foreign is true there. */
extern volatile int ur_forked;        /* set in the child by pthread_atfork */
#define ur_foreign(loop) (ur_forked && ur_loop_foreign(loop))
int ur_loop_foreign (ur_loop *loop);
void ur_loop_forget (ur_loop *loop);
int ur_foreign_error (lua_State *L, ur_loop *loop);   /* raises */
int ur_setup_ring (ur_loop *loop, struct io_uring *ring, unsigned entries,
                   int sqpoll, unsigned idle, unsigned *flags_out);
void ur_register_loop (lua_State *L);

/* req.c */
ur_req *ur_req_new (lua_State *L, ur_loop *loop, uint8_t opcode); /* raises */
void ur_req_submitted (ur_loop *loop, ur_req *r, struct io_uring_sqe *sqe);
void ur_req_free (ur_loop *loop, ur_req *r);          /* unpins, frees mem */
void ur_req_cancel (ur_loop *loop, ur_req *r);        /* ASYNC_CANCEL it */
void ur_req_pin (lua_State *L, ur_req *r, int idx);   /* kernel reads it */
void *ur_iobuf_new (ur_loop *loop, ur_req *r, size_t n);  /* r->mem; NULL: ENOMEM */
void ur_slab_free (ur_loop *loop);
void ur_req_free_done (ur_loop *loop, ur_req *r);     /* handler: just end it */
ur_req *ur_link_timeout_new (lua_State *L, ur_loop *loop);   /* may raise */
void ur_link_timeout_add (ur_loop *loop, ur_req *tr,
                          struct io_uring_sqe *op, double secs);

/* task.c */
ur_task *ur_task_current (lua_State *L, const char *fname);  /* raises */
ur_task *ur_task_of (lua_State *L);           /* NULL outside a task */
int ur_await (lua_State *L, ur_task *t, ur_req *r, const char *what,
              lua_KContext ctx, lua_KFunction k);
ur_req *ur_resumed (lua_State *L, ur_task *t);   /* the finished request */
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
const char *ur_status_name (int status);

/* err.c */
int ur_pushfail (lua_State *L, int res, const char *what);
int ur_pushsetupfail (lua_State *L, int res, unsigned entries);
const char *ur_setup_reason (int res, char *buf, size_t len);
lua_Integer ur_intfield (lua_State *L, int t, int arg, const char *key,
                         lua_Integer def, lua_Integer lo, lua_Integer hi);

/* fs.c */
void ur_register_fs (lua_State *L);

/* fixedfile.c: registered files for sockets */
int ur_ffiles_setup (lua_State *L, ur_loop *loop);  /* after ring setup */
void ur_ffiles_free (ur_loop *loop);                /* at ring teardown */
int ur_ffile_add (ur_loop *loop, int fd);           /* a slot, or -1 */
void ur_ffile_remove (ur_loop *loop, int slot, uint32_t epoch);
void ur_ffiles_push (lua_State *L, ur_loop *loop);  /* for features() */

/* fixedbuf.c: registered buffers for file reads */
int ur_fixed_setup (lua_State *L, ur_loop *loop);   /* after ring setup */
void ur_fixed_free (ur_loop *loop);                 /* at shutdown */
void ur_fixed_push (lua_State *L, ur_loop *loop);   /* for features() */
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

/* copy.c: copy_file_range on a helper thread, for uring.copyfile */
void ur_register_copy (lua_State *L);

/* bufring.c: provided receive buffers (one group per loop) */
#define UR_BGID     1
#define UR_BR_SIZE  (16 * 1024)
int ur_bufring_ensure (ur_loop *loop);           /* 0 or -errno */
const char *ur_bufring_data (ur_loop *loop, unsigned bid);
void ur_bufring_recycle (ur_loop *loop, unsigned bid);
int ur_bufring_grow (ur_loop *loop);
unsigned ur_bufring_count (ur_loop *loop);
void ur_bufring_free (ur_loop *loop);

/* signal.c: uring.signal (signalfd through the ring), uring.poll */
void ur_register_signal (lua_State *L);
void ur_register_proc (lua_State *L);    /* proc.c: exec, popen */
void ur_proc_drain (ur_loop *loop);     /* reap orphans, at uring.run */
void ur_proc_forget (void);             /* at loop __gc */

/* http.c: HTTP/1.x request heads, for net.c's sock:_take_request */
size_t ur_http_head_len (const char *buf, size_t len, size_t *scan,
                         size_t *first);
int ur_http_too_big (size_t len, size_t first, size_t max);
int ur_http_push_head (lua_State *L, const char *p, size_t n, size_t max);
void ur_register_http (lua_State *L);

/* net.c (TCP and Unix streams), udp.c */
void ur_register_net (lua_State *L);
void ur_register_udp (lua_State *L);

/* ring.c (teaching API), probe.c (op names), stats.c (stats, trace) */
void ur_register_ring (lua_State *L);
const char *ur_opname (unsigned op);
int ur_opcode (const char *name);     /* -1 if unknown */
int ur_push_probe (lua_State *L, struct io_uring *ring);
void ur_register_probe (lua_State *L);
void ur_register_stats (lua_State *L);
void ur_register_workers (lua_State *L);   /* workers.c: uring.workers */
void ur_trace_sqe (ur_loop *loop, ur_req *r);
void ur_trace_cqe (ur_loop *loop, ur_req *r);
void ur_trace_flush (lua_State *L, ur_loop *loop);
void ur_trace_free (ur_loop *loop);                 /* at loop __gc */
void ur_push_setup_flags (lua_State *L, unsigned flags);

/* user_data <-> request, on every SQE and CQE: inline */
static inline uint64_t ur_req_ud (ur_loop *loop, ur_req *r) {
  (void)loop;
  return ((uint64_t)r->gen << 32) | r->idx;
}

/* The live request named by ud, or NULL if it is stale. */
static inline ur_req *ur_req_at (ur_loop *loop, uint64_t ud) {
  uint32_t idx = (uint32_t)ud, gen = (uint32_t)(ud >> 32);
  ur_req *r;
  if (idx >= loop->nreqs) return NULL;
  r = &loop->chunks[idx / UR_SLAB_CHUNK][idx % UR_SLAB_CHUNK];
  return (r->gen == gen && r->state != UR_REQ_FREE) ? r : NULL;
}

/* t was cancelled, or a uring.timeout scope it is inside has expired:
 * its next wait point raises (ur_check_interrupt) */
static inline int ur_interrupted (const ur_task *t) {
  return t->canceled || (t->expired_at && t->expired_at <= t->scope_depth);
}

static inline void ur_set_ts (struct __kernel_timespec *ts, double secs) {
  ts->tv_sec = (long long)secs;
  ts->tv_nsec = (long long)((secs - (double)ts->tv_sec) * 1e9);
}

/* Every register function receives the module table at the stack top and
 * adds its functions and metatables; it leaves the stack as it found it. */

#endif
