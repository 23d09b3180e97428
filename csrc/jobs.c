/*
 * jobs.c: blocking calls that io_uring has no op for (getdents64, chmod,
 * utimensat, realpath, ...) run on a small pool of helper threads.
 *
 * A "job set" is what one waiting task owns: an eventfd, and the list of
 * its jobs that have finished.  A pool thread runs a job, puts it on its
 * set's list and writes the set's eventfd; the task waits with one
 * IORING_OP_READ of that eventfd, so the loop keeps running other tasks
 * and the task resumes through the ring like after any other op.  Many
 * jobs may be in flight for one set (uring.walk keeps several directories
 * reading at once); one READ then reports all that have finished.
 *
 * Why a pool and not a thread per call (as dns.c and copy.c do): a walk
 * reads thousands of directories, each in well under the ~30 us that
 * making a thread costs.  The threads are made on demand, at most
 * POOL_MAX, and then stay, parked on a condition variable.
 *
 * Lifetime: a set is counted (its Lua userdata, and each job not yet
 * finished).  A task that is cancelled while jobs run does not wait for
 * them: the userdata lets go and asks them to stop early (ur_job_stopped);
 * the last job to finish frees the set, its eventfd and every job on its
 * list.  Jobs own copies of what they read (paths, dup'd fds), never a
 * Lua value.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "uring.h"

#define JOBSET_MT "uring.jobset"
#define POOL_MAX 4

struct ur_jobset {
  atomic_int refs;        /* the userdata + jobs not finished */
  atomic_int stop;        /* nobody waits any more: end early */
  int efd;                /* written by a pool thread per finished job */
  pthread_mutex_t mu;     /* guards done */
  ur_job *done;           /* finished, not yet taken */
  uint32_t pending;       /* submitted, not yet taken (loop side only) */
};

typedef struct jobset_ud { ur_jobset *s; } jobset_ud;

/* --- the pool --- */

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static ur_job *pool_head, *pool_tail;
static int pool_threads, pool_idle;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* A forked child has none of the parent's threads: it starts afresh. */
static void pool_child (void) {
  pthread_mutex_init(&pool_mu, NULL);
  pthread_cond_init(&pool_cv, NULL);
  pool_head = pool_tail = NULL;
  pool_threads = pool_idle = 0;
}

static void pool_atfork (void) {
  pthread_atfork(NULL, NULL, pool_child);
}

static void jobset_unref (ur_jobset *s) {
  ur_job *j, *next;
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
    return;
  /* the last one: no job runs, and no READ is left waiting on efd (a
   * waiting task holds the userdata) */
  for (j = s->done; j; j = next) {
    next = j->next;
    j->drop(j);
  }
  ur_fd_release(s->efd);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static void job_finish (ur_job *j) {
  ur_jobset *s = j->set;
  uint64_t one = 1;
  ur_job **p;
  /* at the end: the first finished is the first taken, and a job taken
   * piece by piece (a walk's big directory) stays first until dropped;
   * the list holds a set's few jobs in flight, a short walk */
  j->next = NULL;
  pthread_mutex_lock(&s->mu);
  for (p = &s->done; *p; p = &(*p)->next) {}
  *p = j;
  pthread_mutex_unlock(&s->mu);
  while (write(s->efd, &one, sizeof one) < 0 && errno == EINTR) {}
  jobset_unref(s);
}

static void *pool_worker (void *arg) {
  (void)arg;
  pthread_mutex_lock(&pool_mu);
  for (;;) {
    ur_job *j;
    while (pool_head == NULL) {
      pool_idle++;
      pthread_cond_wait(&pool_cv, &pool_mu);
      pool_idle--;
    }
    j = pool_head;
    pool_head = j->next;
    if (pool_head == NULL) pool_tail = NULL;
    pthread_mutex_unlock(&pool_mu);
    j->run(j);
    job_finish(j);
    pthread_mutex_lock(&pool_mu);
  }
  return NULL;
}

int ur_job_stopped (const ur_job *j) {
  return atomic_load_explicit(&j->set->stop, memory_order_relaxed);
}

/* Queue j on s.  Never fails: with no thread at all to be had, the job
 * runs here, on the loop's thread (slower, but it gets done). */
void ur_job_submit (ur_jobset *s, ur_job *j) {
  int start = 0;
  j->set = s;
  j->next = NULL;
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  s->pending++;
  pthread_mutex_lock(&pool_mu);
  if (pool_idle == 0 && pool_threads < POOL_MAX) {
    pool_threads++;
    start = 1;
  }
  if (pool_tail) pool_tail->next = j;
  else pool_head = j;
  pool_tail = j;
  pthread_cond_signal(&pool_cv);
  pthread_mutex_unlock(&pool_mu);
  if (!start) return;
  if (ur_thread_start(pool_worker, NULL) == 0) {
    pthread_once(&pool_once, pool_atfork);   /* the module is pinned now */
    return;
  }
  pthread_mutex_lock(&pool_mu);
  pool_threads--;
  while (pool_threads == 0 && pool_head) {   /* nobody else will run them */
    ur_job *q = pool_head;
    pool_head = q->next;
    if (pool_head == NULL) pool_tail = NULL;
    pthread_mutex_unlock(&pool_mu);
    q->run(q);
    job_finish(q);
    pthread_mutex_lock(&pool_mu);
  }
  pthread_mutex_unlock(&pool_mu);
}

/* --- the waiting side --- */

/* Let go of the set at idx now (its eventfd closes once no job runs)
 * instead of when it is collected: a finished call leaves no fd behind.
 * __gc, __close and core._jobset_close. */
void ur_jobset_release (lua_State *L, int idx) {
  jobset_ud *u = (jobset_ud *)luaL_checkudata(L, idx, JOBSET_MT);
  if (u->s) {
    atomic_store_explicit(&u->s->stop, 1, memory_order_relaxed);
    jobset_unref(u->s);
    u->s = NULL;
  }
}

static int jobset_gc (lua_State *L) {
  ur_jobset_release(L, 1);
  return 0;
}

/* Push a new set's userdata: 0, or -errno (no eventfd; the userdata is
 * pushed all the same, empty).  Raises only when out of memory. */
int ur_jobset_new (lua_State *L, ur_jobset **out) {
  jobset_ud *u = (jobset_ud *)lua_newuserdatauv(L, sizeof *u, 0);
  ur_jobset *s;
  u->s = NULL;
  luaL_setmetatable(L, JOBSET_MT);
  *out = NULL;
  s = (ur_jobset *)calloc(1, sizeof *s);
  if (s == NULL) luaL_error(L, "not enough memory");
  s->efd = eventfd(0, EFD_CLOEXEC);
  if (s->efd < 0) {
    int e = errno;
    free(s);
    return -e;
  }
  pthread_mutex_init(&s->mu, NULL);
  atomic_init(&s->refs, 1);
  atomic_init(&s->stop, 0);
  u->s = s;
  *out = s;
  return 0;
}

ur_jobset *ur_jobset_check (lua_State *L, int idx) {
  jobset_ud *u = (jobset_ud *)luaL_checkudata(L, idx, JOBSET_MT);
  if (u->s == NULL) luaL_argerror(L, idx, "job set is gone");
  return u->s;
}

uint32_t ur_jobset_pending (const ur_jobset *s) {
  return s->pending;
}

/* Yield until the eventfd says a job of s has finished (perhaps one
 * already taken: the caller takes what there is and waits again if that
 * was nothing).  In k, ur_jobset_woken gives the READ's result. */
int ur_jobset_wait (lua_State *L, ur_task *t, ur_jobset *s, const char *what,
                    lua_KContext ctx, lua_KFunction k) {
  ur_req *r = ur_req_new(L, t->loop, IORING_OP_READ);
  struct io_uring_sqe *sqe = ur_get_sqe(t->loop);
  r->u.u64 = 0;
  r->fd = s->efd;
  /* the count lands in the slab record, never in the set */
  io_uring_prep_read(sqe, s->efd, &r->u.u64, sizeof r->u.u64, 0);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, what, ctx, k);
}

/* In the continuation: the READ's result (< 0: it was cancelled), its
 * request ended.  A cancel (task:cancel, an expired uring.timeout) is
 * raised here; the jobs in flight finish on their own. */
int ur_jobset_woken (lua_State *L, ur_task *t) {
  ur_req *r = ur_resumed(L, t);
  int res = r->res;
  ur_req_free(t->loop, r);
  ur_check_interrupt(L, t);
  return res;
}

/* A finished job, still on the set's list (NULL: none): the caller
 * reads its results and then ends it with ur_jobset_drop, so a raise
 * in between (memory) leaves it to the set, never leaked. */
ur_job *ur_jobset_peek (ur_jobset *s) {
  ur_job *j;
  pthread_mutex_lock(&s->mu);
  j = s->done;
  pthread_mutex_unlock(&s->mu);
  return j;
}

void ur_jobset_drop (ur_jobset *s, ur_job *j) {
  ur_job **p;
  pthread_mutex_lock(&s->mu);
  for (p = &s->done; *p && *p != j; p = &(*p)->next) {}
  if (*p) *p = j->next;
  pthread_mutex_unlock(&s->mu);
  s->pending--;
  j->drop(j);
}

void ur_register_jobs (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_jobset_close", jobset_gc},
    {NULL, NULL}
  };
  ur_setfuncs(L, funcs);
  luaL_newmetatable(L, JOBSET_MT);
  lua_pushcfunction(L, jobset_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, jobset_gc);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
}
