/*
 * dns.c: host names resolved without stalling the loop.
 *
 * getaddrinfo(3) blocks, and there is no io_uring op for it, so a lookup
 * runs on a detached helper thread (thread.c).  When it is done the
 * thread writes to an eventfd; the task meanwhile waits on an
 * IORING_OP_READ of that eventfd, so the completion arrives through the
 * ring like any other CQE and every other task keeps running.
 *
 * Lifetime (RELIABILITY.md §2.1): the lookup record (host, result,
 * eventfd) is shared by the thread and the waiting side, and freed by
 * whoever drops the last reference of an atomic count; only then is the
 * eventfd closed.  So a task cancelled mid-lookup (its READ is cancelled,
 * the thread finishes later) never makes the thread write to a closed or
 * reused fd, and nothing leaks whichever side ends first.
 *
 * The waiting side's reference is held by a small userdata ("hold") that
 * ur_resolve leaves on the task's stack across the yield.  Its __gc drops
 * the reference, so every path that raises (cancel, timeout, out of
 * memory) or never resumes (a task collected at lua_close) still lets go.
 * The 8 bytes the kernel READs land in the request (r->u.u64, slab memory
 * that outlives any in-flight SQE), never in the shared record: the
 * record may be freed by the thread while a READ is still queued.
 *
 * Errors: a failed lookup gives the fail triple
 *   nil, "<host>: <gai_strerror text>", code
 * where code is errno-like: EAI_SYSTEM gives the errno the resolver saw,
 * EAI_MEMORY gives ENOMEM, EAI_AGAIN (temporary failure, e.g. no DNS
 * server reachable) gives EAGAIN, and every "this name has no address"
 * answer (EAI_NONAME, EAI_NODATA, EAI_FAIL, EAI_FAMILY, ...) gives
 * EHOSTUNREACH.  Scripts that only test `if not addr` need none of it.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "uring.h"

#define DNS_HOLD_MT "uring.dns.lookup"

typedef struct dns_lookup {
  atomic_int refs;        /* thread + hold; the last one frees */
  atomic_int done;        /* set (release) once gai/res are final */
  int efd;                /* eventfd the thread signals, or -1 */
  int socktype;
  int port;               /* set on every address handed back */
  int gai;                /* getaddrinfo's return; 0 = ok */
  int err;                /* errno for EAI_SYSTEM */
  struct addrinfo *res;   /* getaddrinfo's list, or NULL */
  ur_addr numeric;        /* a numeric host, parsed without the resolver */
  int is_numeric;
  char host[];            /* a copy: the caller's string may be collected */
} dns_lookup;

/* The waiting side's reference, anchored on the task's stack. */
typedef struct dns_hold { dns_lookup *lk; } dns_hold;

static void dns_unref (dns_lookup *lk) {
  /* acq_rel: the last dropper sees everything the other side wrote */
  if (atomic_fetch_sub_explicit(&lk->refs, 1, memory_order_acq_rel) != 1)
    return;
  if (lk->res) freeaddrinfo(lk->res);
  /* nobody can write to it any more, and no request names it: the
   * waiting side lets go after its READ's CQE */
  ur_fd_release(lk->efd);
  free(lk);
}

static int dns_hold_gc (lua_State *L) {
  dns_hold *h = (dns_hold *)luaL_testudata(L, 1, DNS_HOLD_MT);
  if (h && h->lk) {
    dns_unref(h->lk);
    h->lk = NULL;
  }
  return 0;
}

/* The lookup itself; runs on the helper thread, or inline as a fallback. */
static void dns_lookup_run (dns_lookup *lk) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = lk->socktype;
  /* no AI_ADDRCONFIG: it hides "localhost" on hosts with only loopback;
   * no service: the port is set on the result, never looked up */
  lk->gai = getaddrinfo(lk->host, NULL, &hints, &lk->res);
  if (lk->gai == EAI_SYSTEM) lk->err = errno;
  atomic_store_explicit(&lk->done, 1, memory_order_release);
}

static void *dns_thread (void *arg) {
  dns_lookup *lk = (dns_lookup *)arg;
  uint64_t one = 1;
  dns_lookup_run(lk);
  /* the eventfd is still open: our own reference keeps it so */
  while (write(lk->efd, &one, sizeof one) < 0 && errno == EINTR) {}
  dns_unref(lk);
  return NULL;
}

/* Start the helper thread; it holds a reference of its own. */
static int dns_spawn (dns_lookup *lk) {
  atomic_fetch_add_explicit(&lk->refs, 1, memory_order_relaxed);  /* thread's */
  if (ur_thread_start(dns_thread, lk) != 0) {
    atomic_fetch_sub_explicit(&lk->refs, 1, memory_order_relaxed);
    return -1;
  }
  return 0;
}

/*
 * Start resolving host and yield; the task resumes in k(ctx) once the
 * answer is in, and k calls ur_resolved.  Leaves the hold userdata on the
 * stack (ur_resolved removes it).  A numeric host, or a lookup that
 * cannot get a thread or an eventfd (EMFILE, EAGAIN), completes through
 * an IORING_OP_NOP instead: the same path, answered at once (the latter
 * after an inline, blocking getaddrinfo — degraded, never wrong).
 */
int ur_resolve (lua_State *L, ur_task *t, const char *host, int port,
                int socktype, lua_KContext ctx, lua_KFunction k) {
  size_t n = strlen(host);
  dns_hold *h;
  dns_lookup *lk;
  ur_req *r;
  struct io_uring_sqe *sqe;
  int threaded = 0;
  luaL_checkstack(L, 2, "resolve");
  /* the hold first: once it holds the record, any raise frees it */
  h = (dns_hold *)lua_newuserdatauv(L, sizeof *h, 0);
  h->lk = NULL;
  luaL_setmetatable(L, DNS_HOLD_MT);
  lk = (dns_lookup *)malloc(sizeof *lk + n + 1);
  if (lk == NULL) luaL_error(L, "resolve: not enough memory");
  atomic_init(&lk->refs, 1);
  atomic_init(&lk->done, 0);
  lk->efd = -1;
  lk->socktype = socktype;
  lk->port = port;
  lk->gai = lk->err = 0;
  lk->res = NULL;
  memcpy(lk->host, host, n + 1);
  lk->is_numeric = ur_addr_numeric(host, 0, &lk->numeric);
  h->lk = lk;
  /* the request before the thread: ur_req_new may raise, the thread
   * once started cannot be called back */
  r = ur_req_new(L, t->loop, IORING_OP_READ);
  if (lk->is_numeric)
    atomic_store_explicit(&lk->done, 1, memory_order_relaxed);
  else {
    lk->efd = eventfd(0, EFD_CLOEXEC);
    if (lk->efd >= 0 && dns_spawn(lk) == 0) threaded = 1;
    else dns_lookup_run(lk);      /* no fd or no thread: block, once */
  }
  sqe = ur_get_sqe(t->loop);
  if (threaded) {
    r->u.u64 = 0;
    r->fd = lk->efd;
    /* the kernel writes the 8-byte count into the slab, not the record */
    io_uring_prep_read(sqe, lk->efd, &r->u.u64, sizeof r->u.u64, 0);
  }
  else {
    r->opcode = IORING_OP_NOP;
    io_uring_prep_nop(sqe);
  }
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "resolve", ctx, k);
}

/* The record of the hold at idx, or NULL. */
static dns_lookup *dns_take (lua_State *L, int idx) {
  dns_hold *h = (dns_hold *)luaL_testudata(L, idx, DNS_HOLD_MT);
  return h ? h->lk : NULL;
}

/* Drop the hold at idx and remove it from the stack.  Released now
 * rather than at the next GC: the eventfd must not outlive the lookup by
 * a collection cycle. */
static void dns_release (lua_State *L, int idx) {
  dns_hold *h;
  idx = lua_absindex(L, idx);
  h = (dns_hold *)luaL_testudata(L, idx, DNS_HOLD_MT);
  if (h && h->lk) {
    dns_unref(h->lk);
    h->lk = NULL;
  }
  lua_remove(L, idx);
}

/* Push the fail triple for a lookup that found nothing (see the code
 * mapping at the top of this file). */
static int dns_pushfail (lua_State *L, const dns_lookup *lk, int gai) {
  int code;
  const char *msg;
  switch (gai) {
    case EAI_SYSTEM: code = lk->err ? lk->err : EIO; msg = strerror(code); break;
    case EAI_MEMORY: code = ENOMEM; msg = gai_strerror(gai); break;
    case EAI_AGAIN: code = EAGAIN; msg = gai_strerror(gai); break;
    default: code = EHOSTUNREACH; msg = gai_strerror(gai); break;
  }
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", lk->host, msg);
  lua_pushinteger(L, code);
  return 3;
}

/*
 * In the continuation: end the request, then raise (cancel, timeout), or
 * push a fail triple in place of the hold and return NULL, or return the
 * record, still held at the top of the stack, for the caller to read.
 */
static dns_lookup *dns_finish (lua_State *L, ur_task *t) {
  ur_req *r = ur_resumed(L, t);
  int res = r->res;
  dns_lookup *lk = dns_take(L, -1);
  ur_req_free(t->loop, r);
  if (lk == NULL)
    luaL_error(L, "uring: internal error: resolve lost its lookup");
  /* raising here is safe: the hold's __gc drops the reference */
  ur_check_interrupt(L, t);
  if (res < 0 || !atomic_load_explicit(&lk->done, memory_order_acquire)) {
    ur_pushfail(L, res < 0 ? res : -EIO, lk->host);   /* the READ failed */
    dns_release(L, -4);
    return NULL;
  }
  if (lk->gai != 0) {
    dns_pushfail(L, lk, lk->gai);
    dns_release(L, -4);
    return NULL;
  }
  return lk;
}

/* Copy a result into out with the port set; 0 if it is not IP. */
static int dns_copy (const struct sockaddr *sa, socklen_t len, int port,
                     ur_addr *out) {
  if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
      || len > sizeof out->ss)
    return 0;
  memset(out, 0, sizeof *out);
  memcpy(&out->ss, sa, len);
  out->len = len;
  if (sa->sa_family == AF_INET)
    ((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)port);
  return 1;
}

/*
 * In k: the first address of the answer, IPv4 preferred (loopback and
 * most LANs), else IPv6; 0 with *out filled, or 3 with the fail triple
 * pushed.  The port is the one the caller passes again here.
 */
int ur_resolved (lua_State *L, ur_task *t, ur_addr *out) {
  int found = 0;
  dns_lookup *lk = dns_finish(L, t);
  if (lk == NULL) return 3;
  if (lk->is_numeric)
    found = dns_copy((const struct sockaddr *)&lk->numeric.ss,
                     lk->numeric.len, lk->port, out);
  for (int fam = 0; !found && fam < 2; fam++) {
    int want = fam == 0 ? AF_INET : AF_INET6;
    for (struct addrinfo *ai = lk->res; ai && !found; ai = ai->ai_next)
      if (ai->ai_family == want)
        found = dns_copy(ai->ai_addr, ai->ai_addrlen, lk->port, out);
  }
  if (!found) {                 /* only non-IP answers: none for us */
    dns_pushfail(L, lk, EAI_NONAME);
    dns_release(L, -4);
    return 3;
  }
  dns_release(L, -1);
  return 0;
}

/* --- uring.resolve(host [, port]) --- */

static void dns_push_entry (lua_State *L, const ur_addr *a, int n) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, a->ss.ss_family == AF_INET ? "inet" : "inet6");
  lua_setfield(L, -2, "family");
  ur_push_addr(L, (const struct sockaddr *)&a->ss, a->len);
  lua_setfield(L, -3, "port");
  lua_setfield(L, -2, "addr");
  lua_rawseti(L, -2, n);
}

static int dns_resolve_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  int n = 0;
  dns_lookup *lk;
  ur_addr a;
  (void)status; (void)ctx;
  lk = dns_finish(L, t);
  if (lk == NULL) return 3;
  lua_newtable(L);              /* above the hold, which keeps lk alive */
  if (lk->is_numeric
      && dns_copy((const struct sockaddr *)&lk->numeric.ss, lk->numeric.len,
                  lk->port, &a))
    dns_push_entry(L, &a, ++n);
  /* IPv4 first, then IPv6; one entry per distinct address (getaddrinfo
   * repeats an address per protocol when it is not told one) */
  for (int fam = 0; fam < 2; fam++) {
    int want = fam == 0 ? AF_INET : AF_INET6;
    for (struct addrinfo *ai = lk->res; ai; ai = ai->ai_next) {
      int dup = 0;
      if (ai->ai_family != want) continue;
      for (struct addrinfo *p = lk->res; p != ai && !dup; p = p->ai_next)
        dup = p->ai_addrlen == ai->ai_addrlen
              && memcmp(p->ai_addr, ai->ai_addr, ai->ai_addrlen) == 0;
      if (!dup && dns_copy(ai->ai_addr, ai->ai_addrlen, lk->port, &a))
        dns_push_entry(L, &a, ++n);
    }
  }
  if (n == 0) {                 /* only non-IP answers */
    lua_pop(L, 1);
    dns_pushfail(L, lk, EAI_NONAME);
    dns_release(L, -4);
    return 3;
  }
  dns_release(L, -2);
  return 1;
}

/* uring.resolve(host [, port]) -> {{family=, addr=, port=}, ...} | fail */
static int l_resolve (lua_State *L) {
  const char *host = ur_checkcstr(L, 1, "host");
  lua_Integer port = luaL_optinteger(L, 2, 0);
  ur_task *t;
  luaL_argcheck(L, strlen(host) > 0 && strlen(host) < 1024, 1,
                "invalid host name");
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  lua_settop(L, 2);
  t = ur_task_current(L, "resolve");
  return ur_resolve(L, t, host, (int)port, SOCK_STREAM, 0, dns_resolve_k);
}

void ur_register_dns (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"resolve", l_resolve},
    {NULL, NULL}
  };
  luaL_newmetatable(L, DNS_HOLD_MT);
  lua_pushcfunction(L, dns_hold_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "uring.dns.lookup");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
}
