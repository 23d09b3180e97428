/*
 * proc.c: child processes, waited for through the ring.
 *
 * uring.exec{argv..., stdin =, stdout =, stderr =, env =, cwd =} starts a
 * program with fork and exec (the child gets an empty signal mask: the loop
 * blocks SIGINT and uring.signal blocks others, and neither must leak into
 * children; an exec failure comes back through a CLOEXEC pipe) and
 * returns a process table; uring.popen(cmd [, mode]) runs
 * "/bin/sh -c cmd" and returns a uring.file over the parent's pipe end,
 * linked to its process so that file:close() waits for it (init's
 * uring.proc layer wraps close).  Every descriptor we make is CLOEXEC, so
 * a child inherits only the three it is given.
 *
 * Waiting: IORING_OP_WAITID (6.7) when the probe has it, filled by hand
 * because liburing 2.3 has no io_uring_prep_waitid.  The kernel's
 * io_waitid_prep reads
 *     sqe->len        -> which   (idtype: P_PID)
 *     sqe->fd         -> upid    (the pid)
 *     sqe->file_index -> options (WEXITED)
 *     sqe->addr2      -> infop   (siginfo_t *, written at completion)
 * and rejects addr, buf_index, addr3 and waitid_flags (rw_flags) != 0;
 * io_uring_prep_rw zeroes all of those, and its offset argument is addr2
 * (a union with off).  The siginfo lives in r->mem: the request owns it
 * until the CQE.  Without WAITID (older kernels, or URING_PROC_FALLBACK=1
 * to test this path) a pidfd is polled (IORING_OP_POLL_ADD, readable when
 * the child exits) and then reaped with waitid(P_PIDFD, WNOHANG).
 *
 * No zombies: a process collected unreaped is reaped at once if it has
 * exited, else handed to the loop as a detached WAITID (or pidfd poll)
 * whose plain-C handler completes the reap.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uring.h"

#define UR_PROC_MT    "uring.process"
#define UR_PROCH_MT   "uring.prochandle"
#define OP_WAITID     50          /* IORING_OP_WAITID; not in liburing 2.3 */

extern char **environ;

static char handle_key;       /* process table -> its handle */
static char links_key;        /* weak table: popen file -> handle */

typedef struct ur_proc {
  pid_t pid;
  ur_handle pidfd;            /* fallback only: polled for the exit */
  int reaped;                 /* status below is final */
  int how;                    /* CLD_EXITED, or killed */
  int code;                   /* exit status, or signal number */
  int err;                    /* -errno if the status was lost (ECHILD) */
  int waiting;                /* a task has the wait request in flight */
  ur_waitq waitq;             /* further tasks in wait() */
} ur_proc;

/* --- reaping --- */

static void record (ur_proc *p, const siginfo_t *si) {
  p->reaped = 1;
  p->how = si->si_code == CLD_EXITED ? CLD_EXITED : CLD_KILLED;
  p->code = si->si_status;
}

/* waitid without the ring: 1 if reaped (or lost), 0 if still running */
static int reap_now (ur_proc *p, int block) {
  siginfo_t si;
  if (p->reaped) return 1;
  for (;;) {
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | (block ? 0 : WNOHANG)) == 0)
      break;
    if (errno == EINTR) continue;
    p->reaped = 1;            /* ECHILD: someone else reaped it */
    p->err = -errno;
    return 1;
  }
  if (si.si_pid != p->pid) return 0;
  record(p, &si);
  return 1;
}

/* The loop's probe (probe.c) has WAITID; a kernel that could not be
 * probed is taken not to. */
static int waitid_supported (ur_loop *loop) {
  const char *e = getenv("URING_PROC_FALLBACK");
  if (e && *e && strcmp(e, "0") != 0) return 0;
  return loop->probed && !ur_op_missing(loop, OP_WAITID);
}

static int pidfd_open_ (pid_t pid) {
#ifdef SYS_pidfd_open
  return (int)syscall(SYS_pidfd_open, pid, 0);
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

/* Fill sqe to wait for pid: WAITID, or a poll on pidfd.  See the top. */
static void prep_wait (struct io_uring_sqe *sqe, int use_waitid, pid_t pid,
                       int pidfd, siginfo_t *si) {
  if (use_waitid) {
    io_uring_prep_rw(OP_WAITID, sqe, (int)pid, NULL, P_PID,
                     (uint64_t)(uintptr_t)si);   /* offset is addr2 */
    sqe->file_index = WEXITED;
  }
  else
    io_uring_prep_poll_add(sqe, pidfd, POLLIN);
}

/* --- orphans: processes collected unreaped --- */

static pid_t *orphans;        /* waiting for a ring to reap them */
static int norphans, orphancap;

/* A detached reaper's CQE: WAITID has reaped the child in the kernel; a
 * pidfd poll means it exited: reap it here. */
static void orphan_cqe (ur_loop *loop, ur_req *r) {
  if (r->opcode == IORING_OP_POLL_ADD && r->fd >= 0) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    waitid((idtype_t)P_PIDFD, (id_t)r->fd, &si, WEXITED | WNOHANG);
    ur_fd_release(r->fd);     /* the request owned it; its CQE is in */
    r->fd = -1;
  }
  ur_req_free(loop, r);
}

/* Submit a detached reaper for pid.  safe: may flush the SQ (a normal C
 * function); from __gc only a free SQE is taken, since the code the
 * collector interrupted may have one half prepared.  0 if not possible. */
static int reap_later (ur_loop *loop, pid_t pid, int safe) {
  int use_waitid, pidfd = -1;
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (!loop->ring_ok || loop->closing || loop->pid != getpid()) return 0;
  use_waitid = waitid_supported(loop);
  if (!use_waitid && (pidfd = pidfd_open_(pid)) < 0) return 0;
  r = ur_req_new(NULL, loop, use_waitid ? OP_WAITID : IORING_OP_POLL_ADD);
  if (r == NULL) goto fail;
  if (use_waitid && (r->mem = calloc(1, sizeof(siginfo_t))) == NULL) {
    ur_req_free(loop, r);
    goto fail;
  }
  r->memlen = use_waitid ? sizeof(siginfo_t) : 0;
  if (safe) sqe = ur_get_sqe(loop);
  else if ((sqe = io_uring_get_sqe(&loop->ring)) != NULL) {
    loop->pending++;
    loop->stats.sqes++;
  }
  if (sqe == NULL) {
    ur_req_free(loop, r);
    goto fail;
  }
  r->fd = pidfd;
  r->aux = (int)pid;
  r->on_cqe = orphan_cqe;
  prep_wait(sqe, use_waitid, pid, pidfd, (siginfo_t *)r->mem);
  ur_req_submitted(loop, r, sqe);
  r->task = NULL;
  return 1;
fail:
  ur_fd_release(pidfd);       /* no request was made to name it */
  return 0;
}

static void add_orphan (pid_t pid) {
  if (norphans == orphancap) {
    int cap = orphancap ? orphancap * 2 : 8;
    pid_t *a = (pid_t *)realloc(orphans, (size_t)cap * sizeof *a);
    if (a == NULL) return;    /* it stays a zombie until we exit */
    orphans = a;
    orphancap = cap;
  }
  orphans[norphans++] = pid;
}

/* From a normal C function: reap or hand over the orphans left by __gc. */
static void drain_orphans (ur_loop *loop) {
  int i = 0;
  while (i < norphans) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if ((waitid(P_PID, (id_t)orphans[i], &si, WEXITED | WNOHANG) != 0
         || si.si_pid == orphans[i] || reap_later(loop, orphans[i], 1)))
      orphans[i] = orphans[--norphans];
    else
      i++;
  }
  if (norphans == 0) {        /* nothing is kept when nothing waits */
    free(orphans);
    orphans = NULL;
    orphancap = 0;
  }
}

/* At the start of each uring.run: orphans left by a __gc that found no
 * free SQE get their reaper now, while a loop runs to complete it. */
static void proc_run_start (ur_loop *loop) {
  if (norphans > 0 && loop->ring_ok) drain_orphans(loop);
}

/* At loop __gc (lua_close): reap what has exited and forget the rest (the
 * init process reaps them once we exit); the list is not left behind. */
static void proc_close (ur_loop *loop) {
  (void)loop;
  for (int i = 0; i < norphans; i++) {
    siginfo_t si;
    waitid(P_PID, (id_t)orphans[i], &si, WEXITED | WNOHANG);
  }
  free(orphans);
  orphans = NULL;
  norphans = orphancap = 0;
}

static int l_handle_gc (lua_State *L) {
  ur_proc *p = (ur_proc *)luaL_checkudata(L, 1, UR_PROCH_MT);
  if (p->pid > 0 && !reap_now(p, 0)) {
    if (!reap_later(ur_loop_of(L), p->pid, 0)) add_orphan(p->pid);
    p->reaped = 1;
  }
  ur_handle_close(ur_loop_of(L), &p->pidfd, p);
  return 0;
}

/* --- results --- */

/* ok, how, code: as os.execute and io.popen's close.  The process is
 * reaped: its pidfd (fallback path) has nothing left to tell. */
static int push_status (lua_State *L, ur_proc *p) {
  ur_handle_close(ur_loop_of(L), &p->pidfd, NULL);
  if (p->err) return ur_pushfail(L, p->err, "wait");
  if (p->how == CLD_EXITED && p->code == 0) lua_pushboolean(L, 1);
  else luaL_pushfail(L);
  lua_pushstring(L, p->how == CLD_EXITED ? "exit" : "signal");
  lua_pushinteger(L, p->code);
  return 3;
}

static ur_proc *checkhandle (lua_State *L, int idx) {
  return (ur_proc *)luaL_checkudata(L, idx, UR_PROCH_MT);
}

/* Argument 1 is a process table (or, internally, a handle): replace it
 * with the handle. */
static ur_proc *toproc (lua_State *L) {
  ur_proc *p = (ur_proc *)luaL_testudata(L, 1, UR_PROCH_MT);
  if (p) return p;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    int same;
    luaL_getmetatable(L, UR_PROC_MT);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same && lua_rawgetp(L, 1, &handle_key) == LUA_TUSERDATA) {
      lua_replace(L, 1);
      return checkhandle(L, 1);
    }
  }
  luaL_typeerror(L, 1, UR_PROC_MT);
  return NULL;
}

/* --- proc:wait() --- */

static int wait_start (lua_State *L, ur_task *t, ur_proc *p);

/* The wait's CQE: take in the status now (the task may be cancelled and
 * never look), then wake the task. */
static void wait_cqe (ur_loop *loop, ur_req *r) {
  ur_proc *p = (ur_proc *)r->obj;
  if (r->state == UR_REQ_DONE && !p->reaped) {
    if (r->opcode == OP_WAITID && r->res >= 0) {
      siginfo_t *si = (siginfo_t *)r->mem;
      ur_kernel_wrote(si, sizeof *si);
      if (si->si_pid == p->pid) record(p, si);
    }
    else if (r->opcode == OP_WAITID && r->res == -ECHILD) {
      p->reaped = 1;
      p->err = r->res;
    }
    else if (r->opcode == IORING_OP_POLL_ADD && r->res > 0)
      reap_now(p, 0);
  }
  ur_req_wake(loop, r);
}

static int wait_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  ur_proc *p = checkhandle(L, 1);
  int res = r->res;
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  p->waiting = 0;
  ur_waitq_wake_all(t->loop, &p->waitq);   /* they see the status, or wait */
  ur_check_interrupt(L, t);
  if (p->reaped) return push_status(L, p);
  if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN)
    return ur_pushfail(L, res, "wait");
  return wait_start(L, t, p);             /* woken early: wait again */
}

static int waitq_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_proc *p = checkhandle(L, 1);
  (void)status; (void)ctx;
  if (t == NULL)
    return luaL_error(L, "a task can only be resumed by the uring loop");
  ur_check_interrupt(L, t);
  if (p->reaped) return push_status(L, p);
  return wait_start(L, t, p);
}

static int wait_start (lua_State *L, ur_task *t, ur_proc *p) {
  ur_loop *loop = t->loop;
  int use_waitid;
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (p->waiting)             /* one request per process; others queue */
    return ur_park(L, t, &p->waitq, "wait", 0, waitq_k);
  use_waitid = waitid_supported(loop);
  if (!use_waitid && p->pidfd.fd < 0) {
    int fd = pidfd_open_(p->pid);
    int err = fd < 0 ? -errno : ur_handle_adopt(loop, &p->pidfd, fd);
    if (err < 0) {
      if (reap_now(p, 0)) return push_status(L, p);
      return ur_pushfail(L, err, "wait: pidfd_open");
    }
  }
  r = ur_req_new(L, loop, use_waitid ? OP_WAITID : IORING_OP_POLL_ADD);
  if (use_waitid) {
    r->mem = calloc(1, sizeof(siginfo_t));   /* the kernel writes here */
    if (r->mem == NULL) {
      ur_req_free(loop, r);
      return luaL_error(L, "wait: not enough memory");
    }
    r->memlen = sizeof(siginfo_t);
  }
  ur_req_pin(L, r, 1);        /* the handle outlives the request */
  r->obj = p;
  r->on_cqe = wait_cqe;
  sqe = ur_get_sqe(loop);
  prep_wait(sqe, use_waitid, p->pid, p->pidfd.fd, (siginfo_t *)r->mem);
  if (!use_waitid) ur_handle_sqe(loop, &p->pidfd, r, sqe);
  ur_req_submitted(loop, r, sqe);
  p->waiting = 1;
  return ur_await(L, t, r, "wait", 0, wait_k);
}

/* proc:wait() -> ok, "exit"|"signal", code   (as os.execute) */
static int l_proc_wait (lua_State *L) {
  ur_proc *p = toproc(L);
  ur_task *t;
  lua_settop(L, 1);
  t = ur_task_current(L, "wait");
  drain_orphans(t->loop);
  if (p->reaped) return push_status(L, p);
  return wait_start(L, t, p);
}

/* _reap(handle, block) -> ok, how, code | nothing if still running:
 * popen's close outside a task (blocks, as io.popen's) or while a task
 * unwinds (never blocks; the collector reaps it later). */
static int l_proc_reap (lua_State *L) {
  ur_proc *p = checkhandle(L, 1);
  if (p->waiting) return 0;
  if (reap_now(p, lua_toboolean(L, 2))) return push_status(L, p);
  return 0;
}

/* --- proc:kill([sig]) --- */

static const struct { const char *name; int no; } signames[] = {
  {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP},
  {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
  {"STOP", SIGSTOP}, {"CONT", SIGCONT}, {"ALRM", SIGALRM},
  {"PIPE", SIGPIPE}, {"WINCH", SIGWINCH}, {"ABRT", SIGABRT},
};

static int checksig (lua_State *L, int idx) {
  const char *name;
  if (lua_isnoneornil(L, idx)) return SIGTERM;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 0 && n < NSIG, idx, "invalid signal number");
    return (int)n;
  }
  name = ur_checkcstr(L, idx, "signal name");
  if (strncmp(name, "SIG", 3) == 0) name += 3;
  for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
    if (strcmp(name, signames[i].name) == 0) return signames[i].no;
  return luaL_argerror(L, idx, "unknown signal name");
}

/* proc:kill([sig]) -> true | fail  (default SIGTERM) */
static int l_proc_kill (lua_State *L) {
  ur_proc *p = toproc(L);
  int sig = checksig(L, 2);
  /* an unreaped child's pid cannot be reused, so this is our child */
  if (p->reaped) return ur_pushfail(L, -ESRCH, "kill");
  if (kill(p->pid, sig) != 0) return ur_pushfail(L, -errno, "kill");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_proc_tostring (lua_State *L) {
  ur_proc *p = toproc(L);
  if (p->reaped && !p->err)
    lua_pushfstring(L, "uring.process %d (%s %d)", (int)p->pid,
                    p->how == CLD_EXITED ? "exit" : "signal", p->code);
  else
    lua_pushfstring(L, "uring.process %d (%s)", (int)p->pid,
                    p->reaped ? "reaped" : "running");
  return 1;
}

/* --- spawning --- */

enum { IO_INHERIT, IO_NULL, IO_PIPE, IO_FILE };

typedef struct spawn_io {
  int kind[3];
  int fd[3];                  /* IO_FILE: the file's fd */
  int child[3], parent[3];    /* IO_PIPE ends; -1 */
} spawn_io;

static void io_close_all (spawn_io *io) {
  for (int i = 0; i < 3; i++) {
    if (io->child[i] >= 0) close(io->child[i]);
    if (io->parent[i] >= 0) close(io->parent[i]);
    io->child[i] = io->parent[i] = -1;
  }
}

/* The child's side of spawn, between fork and exec: async-signal-safe
 * calls only (the parent may have other threads, holding malloc's lock).
 * On any failure it writes errno to the CLOEXEC pipe `ep` and exits 127;
 * a successful exec closes the pipe, so the parent reads EOF. */
static void child (const char *path, char *const argv[], char *const envp[],
                   const char *cwd, const spawn_io *io, const char *dirs,
                   char *buf, int ep) {
  int err = 0;
  sigset_t none;
  /* handlers the parent installed run nowhere but in the parent: default
   * them before the mask opens (ignored signals stay ignored, as exec
   * keeps them) */
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction sa;
    if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL
        && sa.sa_handler != SIG_IGN) {
      sa.sa_handler = SIG_DFL;
      sa.sa_flags = 0;
      sigaction(sig, &sa, NULL);
    }
  }
  for (int i = 0; i < 3 && err == 0; i++) {
    int fd = -1;
    switch (io->kind[i]) {
      case IO_NULL:
        fd = open("/dev/null", i == 0 ? O_RDONLY : O_WRONLY);
        if (fd < 0) { err = errno; break; }
        if (fd != i && (dup2(fd, i) < 0 || close(fd) != 0)) err = errno;
        fd = -1;
        break;
      case IO_PIPE: fd = io->child[i]; break;
      case IO_FILE: fd = io->fd[i]; break;
      default: break;
    }
    if (fd < 0) continue;
    /* dup2 onto itself keeps CLOEXEC: clear it by hand */
    if (fd == i ? fcntl(i, F_SETFD, 0) < 0 : dup2(fd, i) < 0) err = errno;
  }
  if (err == 0 && cwd && chdir(cwd) != 0) err = errno;
  sigemptyset(&none);
  if (err == 0) sigprocmask(SIG_SETMASK, &none, NULL);
  if (err == 0 && strchr(path, '/')) {
    execve(path, argv, envp);
    err = errno;
  }
  else if (err == 0) {
    /* execvp's search, over the PATH the parent read, in a buffer the
     * parent allocated: EACCES is kept while later directories are tried */
    size_t plen = strlen(path);
    const char *d = dirs;
    int seen_eacces = 0;
    err = ENOENT;
    for (;;) {
      const char *end = strchr(d, ':');
      size_t dlen = end ? (size_t)(end - d) : strlen(d);
      if (dlen == 0) {        /* an empty entry: the current directory */
        buf[0] = '.';
        dlen = 1;
      }
      else memcpy(buf, d, dlen);
      buf[dlen] = '/';
      memcpy(buf + dlen + 1, path, plen + 1);
      execve(buf, argv, envp);
      if (errno == EACCES) seen_eacces = 1;
      else if (errno != ENOENT && errno != ENOTDIR) { err = errno; break; }
      if (!end) break;
      d = end + 1;
    }
    if (err == ENOENT && seen_eacces) err = EACCES;
  }
  while (write(ep, &err, sizeof err) < 0 && errno == EINTR) {}
  _exit(127);
}

/* Start argv; 0 or -errno.  path: searched in PATH unless it has a '/'.
 * fork + exec rather than posix_spawn: an exec failure then comes back
 * through a CLOEXEC pipe the same way everywhere (under valgrind, too,
 * which runs posix_spawn's CLONE_VFORK as a plain fork and so loses it). */
static int spawn (pid_t *pid, const char *path, char *const argv[],
                  char *const envp[], const char *cwd, spawn_io *io) {
  const char *dirs = getenv("PATH");
  char *buf;
  int ep[2], err = 0;
  ssize_t n;
  sigset_t all, old;
  if (dirs == NULL || *dirs == '\0') dirs = "/bin:/usr/bin";
  buf = (char *)malloc(strlen(dirs) + strlen(path) + 3);
  if (buf == NULL) return -ENOMEM;
  if (pipe2(ep, O_CLOEXEC) != 0) {
    err = errno;
    free(buf);
    return -err;
  }
  /* every signal blocked across fork: the child runs no handler of ours
   * before it has reset them */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  *pid = fork();
  if (*pid == 0) {
    close(ep[0]);
    child(path, argv, envp ? envp : environ, cwd, io, dirs, buf, ep[1]);
  }
  if (*pid < 0) err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(ep[1]);
  free(buf);
  if (err == 0) {
    /* EOF: exec succeeded; an int: the child's errno, and it has exited */
    do n = read(ep[0], &err, sizeof err);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof err) err = 0;
    else while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR) {}
  }
  close(ep[0]);
  return -err;
}

static int make_pipe (spawn_io *io, int i) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -errno;
  io->child[i] = i == 0 ? p[0] : p[1];
  io->parent[i] = i == 0 ? p[1] : p[0];
  return 0;
}

/* A new handle for pid, pushed. */
static ur_proc *push_handle (lua_State *L, pid_t pid) {
  ur_proc *p = (ur_proc *)lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  p->pid = pid;
  ur_handle_init(&p->pidfd);
  luaL_setmetatable(L, UR_PROCH_MT);
  return p;
}

/* execve takes char *const argv[] but never writes through it */
static char *unconst (const char *s) {
  union { const char *c; char *m; } u;
  u.c = s;
  return u.m;
}

static const char *const io_names[] = {"stdin", "stdout", "stderr"};

static void check_io (lua_State *L, spawn_io *io, int i) {
  int tp = lua_getfield(L, 1, io_names[i]);
  io->kind[i] = IO_INHERIT;
  if (tp == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    if (strcmp(s, "pipe") == 0) io->kind[i] = IO_PIPE;
    else if (strcmp(s, "null") == 0) io->kind[i] = IO_NULL;
    else if (strcmp(s, "inherit") != 0) tp = LUA_TNONE;
  }
  else if (tp == LUA_TUSERDATA && luaL_testudata(L, -1, UR_FILE_MT)) {
    io->kind[i] = IO_FILE;
    lua_getfield(L, -1, "fd");
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);        /* raises "attempt to use a closed file" */
    io->fd[i] = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  else if (tp != LUA_TNIL) tp = LUA_TNONE;
  if (tp == LUA_TNONE)
    luaL_error(L, "bad argument #1 to 'exec' (%s must be \"pipe\", \"null\", "
               "\"inherit\" or a uring.file)", io_names[i]);
  lua_pop(L, 1);
}

/* uring.exec{prog, args... [, stdin =] [, stdout =] [, stderr =]
 *            [, env = {NAME = value}] [, cwd = path]} -> process | fail */
static int l_exec (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  spawn_io io;
  lua_Integer n;
  char **argv, **envp = NULL;
  const char *cwd = NULL;
  int envidx = 0, rc, tbl;
  ur_proc *h;
  pid_t pid;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  n = (lua_Integer)lua_rawlen(L, 1);
  luaL_argcheck(L, n >= 1, 1, "argv[1], the program, is missing");
  luaL_argcheck(L, n < 100000, 1, "too many arguments");
  luaL_checkstack(L, (int)n + 8, "too many arguments");
  argv = (char **)lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *argv, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    int tp = lua_rawgeti(L, 1, i);
    if (tp != LUA_TSTRING && tp != LUA_TNUMBER)
      return luaL_error(L, "bad argument #1 to 'exec' (argv[%d] must be a "
                        "string, got %s)", (int)i, luaL_typename(L, -1));
    argv[i - 1] = unconst(lua_tostring(L, -1));    /* anchored on the stack */
    if (strlen(argv[i - 1]) != lua_rawlen(L, -1)) {
      /* the child gets C strings: "tr\0ue" would run tr; refuse it */
      lua_pushfstring(L, "argv[%d]", (int)i);
      ur_tocstr(L, -2, 1, lua_tostring(L, -1));     /* raises */
    }
  }
  argv[n] = NULL;
  if (lua_getfield(L, 1, "cwd") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "bad argument #1 to 'exec' (cwd must be a string, "
                        "got %s)", luaL_typename(L, -1));
    cwd = ur_tocstr(L, -1, 1, "cwd");
  }
  if (lua_getfield(L, 1, "env") != LUA_TNIL) {
    size_t cnt = 0, k = 0;
    if (lua_type(L, -1) != LUA_TTABLE)
      return luaL_error(L, "bad argument #1 to 'exec' (env must be a table, "
                        "got %s)", luaL_typename(L, -1));
    envidx = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, envidx)) {
      if (lua_type(L, -2) != LUA_TSTRING
          || (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
          || strchr(lua_tostring(L, -2), '=') != NULL)
        return luaL_error(L, "bad argument #1 to 'exec' (env must map names "
                          "to strings)");
      ur_tocstr(L, -2, 1, "env name");
      if (lua_type(L, -1) == LUA_TSTRING) ur_tocstr(L, -1, 1, "env value");
      lua_pop(L, 1);
      cnt++;
    }
    envp = (char **)lua_newuserdatauv(L, (cnt + 1) * sizeof *envp, 0);
    lua_newtable(L);          /* anchors the "NAME=value" strings */
    lua_pushnil(L);
    while (lua_next(L, envidx)) {
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
      envp[k++] = unconst(lua_tostring(L, -1));
      lua_rawseti(L, -4, (lua_Integer)k);
      lua_pop(L, 1);
    }
    envp[k] = NULL;
  }
  for (int i = 0; i < 3; i++) {
    io.child[i] = io.parent[i] = io.fd[i] = -1;
  }
  for (int i = 0; i < 3; i++) check_io(L, &io, i);
  if (loop->ring_ok) drain_orphans(loop);
  /* the owners first: the process table {pid =, stdin =, stdout =,
   * stderr =}, its handle, and a closed file per pipe; running out of
   * memory after the spawn could otherwise leak the child or an fd */
  lua_createtable(L, 0, 4);
  tbl = lua_gettop(L);
  luaL_setmetatable(L, UR_PROC_MT);
  h = push_handle(L, 0);
  lua_rawsetp(L, tbl, &handle_key);
  for (int i = 0; i < 3; i++)
    if (io.kind[i] == IO_PIPE) {
      ur_file_push(L, i == 0 ? "w" : "r");
      lua_setfield(L, tbl, io_names[i]);
    }
  lua_pushinteger(L, 0);
  lua_setfield(L, tbl, "pid");
  for (int i = 0; i < 3; i++)
    if (io.kind[i] == IO_PIPE && (rc = make_pipe(&io, i)) < 0) {
      io_close_all(&io);
      return ur_pushfail(L, rc, "exec");
    }
  rc = spawn(&pid, argv[0], argv, envp, cwd, &io);
  for (int i = 0; i < 3; i++) {   /* the child has its ends */
    if (io.child[i] >= 0) close(io.child[i]);
    io.child[i] = -1;
  }
  if (rc < 0) {
    io_close_all(&io);
    return ur_pushfail(L, rc, argv[0]);
  }
  h->pid = pid;                   /* collected from here on: reaped */
  for (int i = 0; i < 3; i++) {   /* nothing below allocates Lua memory */
    int fd = io.parent[i];
    if (fd < 0) continue;
    io.parent[i] = -1;
    lua_getfield(L, tbl, io_names[i]);
    rc = ur_file_adopt(L, -1, fd);
    lua_pop(L, 1);
    if (rc < 0) {
      io_close_all(&io);
      return ur_pushfail(L, rc, "exec");
    }
  }
  lua_pushinteger(L, pid);
  lua_setfield(L, tbl, "pid");
  lua_settop(L, tbl);
  return 1;
}

/* uring.popen(cmd [, mode]) -> file | fail; file:close() -> ok, how, code */
static int l_popen (lua_State *L) {
  ur_loop *loop = ur_loop_of(L);
  const char *cmd = ur_checkcstr(L, 1, "command");
  const char *mode = ur_optcstr(L, 2, "mode", "r");
  char *argv[4];
  spawn_io io;
  int w, rc, fd;
  ur_proc *h;
  pid_t pid;
  luaL_argcheck(L, (mode[0] == 'r' || mode[0] == 'w') && mode[1] == '\0', 2,
                "invalid mode");
  w = mode[0] == 'w';
  for (int i = 0; i < 3; i++) {
    io.kind[i] = IO_INHERIT;
    io.child[i] = io.parent[i] = io.fd[i] = -1;
  }
  io.kind[w ? 0 : 1] = IO_PIPE;
  if (loop->ring_ok) drain_orphans(loop);
  lua_settop(L, 2);
  /* the owners first (see exec), linked: links[file] = handle */
  h = push_handle(L, 0);                  /* 3 */
  ur_file_push(L, mode);                  /* 4 */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &links_key);
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  if ((rc = make_pipe(&io, w ? 0 : 1)) < 0) return ur_pushfail(L, rc, cmd);
  argv[0] = unconst("sh");
  argv[1] = unconst("-c");
  argv[2] = unconst(cmd);
  argv[3] = NULL;
  rc = spawn(&pid, "/bin/sh", argv, NULL, NULL, &io);
  fd = io.parent[w ? 0 : 1];
  close(io.child[w ? 0 : 1]);   /* the child's end: the ring never sees it */
  if (rc < 0) {
    close(fd);                  /* not yet given to the file: never named */
    return ur_pushfail(L, rc, cmd);
  }
  h->pid = pid;                           /* collected: reaped */
  if ((rc = ur_file_adopt(L, 4, fd)) < 0) return ur_pushfail(L, rc, cmd);
  return 1;
}

void ur_register_proc (lua_State *L) {
  static const ur_hooks hooks = {
    NULL, NULL, proc_run_start, NULL, proc_close, NULL
  };
  static const luaL_Reg methods[] = {
    {"wait", l_proc_wait}, {"kill", l_proc_kill}, {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"exec", l_exec}, {"popen", l_popen},
    {"_wait", l_proc_wait}, {"_reap", l_proc_reap}, {NULL, NULL}
  };
  static const luaL_Reg hmeta[] = {{"__gc", l_handle_gc}, {NULL, NULL}};
  luaL_newmetatable(L, UR_PROC_MT);
  lua_newtable(L);
  ur_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_proc_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newmetatable(L, UR_PROCH_MT);
  ur_setfuncs(L, hmeta);
  lua_pop(L, 1);
  /* popen's file -> its process: weak keys, so a dropped file frees it */
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &links_key);
  lua_setfield(L, -2, "_popen_links");
  ur_setfuncs(L, funcs);
  ur_loop_hook(L, &hooks);
}
