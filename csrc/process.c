/*
 * process.c: what uring.run does to the process around the loop.
 *
 * - SIGINT cancels the run's main task: a signalfd polled through the
 *   ring (below);
 * - SIGPIPE is blocked while the loop runs, so a write to a closed pipe
 *   fails with EPIPE instead of killing the process;
 * - a fork()ed child learns it is one (pthread_atfork) before it touches
 *   the parent's ring.
 * loop.c's l_run arms these around the loop (ur_runsig_arm, _disarm).
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "uring.h"

volatile int ur_forked;

static void in_child (void) { ur_forked = 1; }

/* Once per process: a fork()ed child must learn it is one before it
 * touches the ring (posix_spawn, which execs at once, runs no hook). */
void ur_fork_watch (void) {
  static int hooked;
  if (!hooked && pthread_atfork(NULL, NULL, in_child) == 0) hooked = 1;
}

/*
 * SIGINT during uring.run (DESIGN: "SIGINT cancels uring.run's main task").
 * Unless the script already blocks or ignores SIGINT, run blocks it and
 * polls a signalfd through the ring (multishot).  The handler is plain C:
 * it sets main_failed, so the next turn cancels every task as when the
 * main task fails; <close> variables run, and run raises "interrupted".
 * A uring.signal("INT") made inside the run (the REPL's) takes over: when
 * another signalfd in this process watches SIGINT, ours steps aside and
 * leaves the signal to it.  The poll is a background request: deadlock
 * detection still sees "no I/O"; it is drained before run returns.
 */

/* Another signalfd of ours (not fd) that watches SIGINT? */
static int sigint_other_holder (int fd) {
  DIR *d = opendir("/proc/self/fdinfo");
  struct dirent *e;
  int found = 0;
  if (d == NULL) return 0;
  while (!found && (e = readdir(d)) != NULL) {
    char path[300], buf[512];
    ssize_t n;
    int f;
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoi(e->d_name) == fd)
      continue;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%s", e->d_name);
    if ((f = open(path, O_RDONLY | O_CLOEXEC)) < 0) continue;
    n = read(f, buf, sizeof buf - 1);
    close(f);
    if (n > 0) {
      char *m;
      buf[n] = '\0';
      m = strstr(buf, "sigmask:");
      if (m && (strtoull(m + 8, NULL, 16) & (1ULL << (SIGINT - 1)))) found = 1;
    }
  }
  closedir(d);
  return found;
}

static int sigint_take (ur_runsig *s) {
  struct signalfd_siginfo si;
  int n = 0;
  while (read(s->h.fd, &si, sizeof si) == (ssize_t)sizeof si) n++;
  return n;
}

static void sigint_cqe (ur_loop *loop, ur_req *r) {
  ur_runsig *s = (ur_runsig *)r->obj;
  if (r->state == UR_REQ_DONE) s->req = NULL;
  if (r->res > 0 && !s->aside) {
    if (sigint_other_holder(s->h.fd)) {
      s->aside = 1;         /* a uring.signal("INT") will read it */
      if (r->state != UR_REQ_DONE) ur_req_cancel(loop, r);
    }
    else if (sigint_take(s) > 0) {
      s->hits++;
      loop->main_failed = 1;   /* next turn: cancel every task */
    }
  }
  if (r->state == UR_REQ_DONE) ur_req_free(loop, r);
}

static void sigint_arm (lua_State *L, ur_loop *loop, ur_runsig *s) {
  sigset_t set, cur;
  struct sigaction sa;
  struct io_uring_sqe *sqe;
  int trace = loop->trace_ref, fd;
  ur_handle_init(&s->h);
  s->hits = s->aside = 0;
  s->req = NULL;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  /* no poll on this kernel (the probe): nothing would read a blocked
   * SIGINT, and Ctrl-C would do nothing until the run ends; leave it to
   * end the process, as it ends a plain Lua script */
  if (ur_op_missing(loop, IORING_OP_POLL_ADD)) return;
  if (sigprocmask(SIG_BLOCK, NULL, &cur) != 0 || sigismember(&cur, SIGINT))
    return;                 /* the script handles SIGINT itself */
  if (sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
    return;                 /* ignored (a background job): leave it so */
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return;
  fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0 || ur_handle_adopt(loop, &s->h, fd) < 0) {
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    return;
  }
  /* no memory for the request: no SIGINT handling this run (raising here
   * would leave the run marked running, SIGINT blocked, the fd open) */
  (void)L;
  s->req = ur_req_new(NULL, loop, IORING_OP_POLL_ADD);
  if (s->req == NULL) {
    ur_handle_close(loop, &s->h, NULL);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    return;
  }
  s->req->obj = s;
  s->req->on_cqe = sigint_cqe;
  s->req->background = 1;
  sqe = ur_get_sqe(loop);
  io_uring_prep_poll_multishot(sqe, s->h.fd, POLLIN);
  ur_handle_sqe(loop, &s->h, s->req, sqe);
  loop->trace_ref = LUA_NOREF;        /* the loop's own: not traced */
  ur_req_submitted(loop, s->req, sqe);
  loop->trace_ref = trace;
  s->req->task = NULL;
}

/* After the run: drain the poll, take a SIGINT that is still pending,
 * restore the mask.  Returns the number of SIGINTs seen. */
static int sigint_disarm (ur_loop *loop, ur_runsig *s) {
  sigset_t set;
  int trace = loop->trace_ref;
  if (s->h.fd < 0) return 0;
  loop->trace_ref = LUA_NOREF;
  if (s->req) ur_req_cancel(loop, s->req);
  while (s->req) {
    if (ur_submit(loop, 1) < 0) break;
    ur_reap(loop);
  }
  loop->trace_ref = trace;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  if (!sigint_other_holder(s->h.fd)) {
    s->hits += sigint_take(s);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
  }
  ur_handle_close(loop, &s->h, s);
  return s->hits;
}

/*
 * A write to a pipe whose reader is gone (a popen'd child that exited)
 * raises SIGPIPE in the thread that submitted it, which is ours, and its
 * default action kills the process.  While the loop runs SIGPIPE is
 * blocked, so such a write fails with EPIPE instead (as a send does with
 * MSG_NOSIGNAL); the SIGPIPEs it left pending are taken before the mask
 * comes back.  A script that blocks SIGPIPE itself is left alone.
 */
static int sigpipe_block (void) {
  sigset_t set, cur;
  if (sigprocmask(SIG_BLOCK, NULL, &cur) != 0 || sigismember(&cur, SIGPIPE))
    return 0;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  return sigprocmask(SIG_BLOCK, &set, NULL) == 0;
}

static void sigpipe_unblock (int blocked) {
  sigset_t set;
  struct timespec zero = { 0, 0 };
  if (!blocked) return;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  while (sigtimedwait(&set, NULL, &zero) == SIGPIPE) {}
  sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* Before the loop runs: SIGINT through the ring, SIGPIPE blocked. */
void ur_runsig_arm (lua_State *L, ur_loop *loop, ur_runsig *s) {
  sigint_arm(L, loop, s);
  s->sigpipe = sigpipe_block();
}

/* After it: both as they were.  Returns the number of SIGINTs seen. */
int ur_runsig_disarm (ur_loop *loop, ur_runsig *s) {
  sigpipe_unblock(s->sigpipe);
  return sigint_disarm(loop, s);
}
