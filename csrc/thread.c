/*
 * thread.c: detached helper threads, for work io_uring has no op for
 * (dns.c's getaddrinfo, copy.c's copy_file_range).  The thread reports
 * back through an eventfd the loop READs, so it never touches Lua.
 *
 * lua_close unloads this module (dlclose), but a detached thread may still
 * be running: a cancelled lookup whose resolver waits out a 5 s DNS
 * timeout, say.  Its code must stay mapped, so before the first thread
 * starts we open ourselves again with RTLD_NODELETE (the handle is kept on
 * purpose).  Without it, exiting right after cancelling lookups crashed
 * about one run in ten.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>

#include "uring.h"

static void pin_module (void) {
  Dl_info info;
  if (dladdr((void *)pin_module, &info) && info.dli_fname)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

static pthread_once_t pin_once = PTHREAD_ONCE_INIT;

/* Start fn(arg) on a detached thread with every signal blocked, so a
 * signal meant for the Lua program (SIGINT, uring.signal) is never
 * delivered to it.  0, or -1 if no thread could be made. */
int ur_thread_start (void *(*fn)(void *), void *arg) {
  pthread_attr_t attr;
  pthread_t th;
  sigset_t all, old;
  int rc;
  pthread_once(&pin_once, pin_module);
  if (pthread_attr_init(&attr) != 0) return -1;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&th, &attr, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return rc == 0 ? 0 : -1;
}
