/*
 * udp.c: UDP sockets through the ring.
 *
 * uring.udp([host, port]) makes the socket with IORING_OP_SOCKET and, when
 * given an address, binds it (bind(2) is set-up, done once).  Datagrams go
 * out with IORING_OP_SENDMSG and come in with IORING_OP_RECVMSG: a
 * datagram carries its peer's address, which plain SEND/RECV cannot.
 *
 * - The msghdr, iovec and peer address of each op live in memory the
 *   request owns (r->mem), so a task that is cancelled or collected never
 *   leaves the kernel pointing at freed memory; the string being sent is
 *   pinned (ur_req_pin), not copied.
 * - settimeout links an IORING_OP_LINK_TIMEOUT to each recvfrom.
 * - close() cancels every op other tasks have in flight on the socket;
 *   they wake with nil, "closed".  The descriptor itself is closed when
 *   the last of those CQEs is in (handle.c).
 * - The family is the bind address's (IPv6 for "::1"), else IPv4.  An
 *   IPv6 socket sends to an IPv4 address as ::ffff:a.b.c.d; an IPv4
 *   socket given a numeric IPv6 address raises (a programming error).
 */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uring.h"

#define UR_UDP_MT   "uring.udp"
#define UDP_MAX     65536         /* largest datagram recvfrom takes */

typedef struct udp_sock {
  ur_handle h;            /* the fd: -1 until made and from close() on */
  int family;             /* AF_INET or AF_INET6 */
  int bind;               /* construction: bind to local */
  double timeout;         /* recvfrom limit in seconds; < 0: none */
  ur_addr local;          /* construction: the address to bind */
} udp_sock;

/* What an op hands the kernel: all of it owned by the request. */
typedef struct udp_msg {
  struct msghdr msg;
  struct iovec iov;
  struct sockaddr_storage name;   /* the peer: written or read */
  unsigned char data[];           /* recvfrom: the datagram lands here */
} udp_msg;

static udp_sock *udp_check (lua_State *L, int idx) {
  return (udp_sock *)luaL_checkudata(L, idx, UR_UDP_MT);
}

/* As liolib's tofile: using a closed socket is a programming error. */
static udp_sock *udp_open (lua_State *L) {
  udp_sock *u = udp_check(L, 1);
  if (u->h.fd < 0) luaL_error(L, "attempt to use a closed socket");
  return u;
}

/* The fail triple for a finished op; "timeout" only for our own timer. */
static int udp_fail (lua_State *L, udp_sock *u, int res, int timed) {
  if (u->h.fd < 0) return ur_pushclosed(L);
  if (res == -ECANCELED && timed) {
    luaL_pushfail(L);
    lua_pushliteral(L, "timeout");
    lua_pushinteger(L, ETIME);
    return 3;
  }
  return ur_pushfail(L, res, NULL);
}

/* A host argument: a string without embedded zeros. */
static const char *udp_checkhost (lua_State *L, int arg) {
  const char *h = ur_checkcstr(L, arg, "host");
  size_t n = strlen(h);
  luaL_argcheck(L, n > 0 && n < 1024, arg, "invalid host name");
  return h;
}

static int udp_checkport (lua_State *L, int arg) {
  lua_Integer p = luaL_checkinteger(L, arg);
  luaL_argcheck(L, p >= 0 && p <= 65535, arg, "port out of range");
  return (int)p;
}

/* Fit a peer address to the socket's family: an IPv4 peer of an IPv6
 * socket becomes ::ffff:a.b.c.d.  0 if it cannot be sent to. */
static int udp_fit (const udp_sock *u, ur_addr *a) {
  if (a->ss.ss_family == u->family) return 1;
  if (u->family == AF_INET6 && a->ss.ss_family == AF_INET) {
    struct sockaddr_in in = *(struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
    memset(a, 0, sizeof *a);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = in.sin_port;
    in6->sin6_addr.s6_addr[10] = 0xff;
    in6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&in6->sin6_addr.s6_addr[12], &in.sin_addr, 4);
    a->len = sizeof *in6;
    return 1;
  }
  return 0;
}

static const char *udp_family_name (int family) {
  return family == AF_INET6 ? "inet6" : "inet";
}

/* --- uring.udp([host, port]) --- */

static int udp_socket_k (lua_State *L, int status, lua_KContext ctx);
static int udp_socket_made (lua_State *L, ur_task *t, udp_sock *u, int res);

/* Stack: 1 host, 2 port, 3 the (closed) udp.  Make the socket:
 * IORING_OP_SOCKET, or socket(2) on a kernel without it (5.19). */
static int udp_start_socket (lua_State *L, ur_task *t, udp_sock *u) {
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (ur_op_missing(t->loop, IORING_OP_SOCKET)) {
    int fd = socket(u->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return udp_socket_made(L, t, u, fd < 0 ? -errno : fd);
  }
  r = ur_req_new(L, t->loop, IORING_OP_SOCKET);
  sqe = ur_get_sqe(t->loop);
  r->makes_fd = 1;
  io_uring_prep_socket(sqe, u->family, SOCK_DGRAM | SOCK_CLOEXEC, 0, 0);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "socket", 0, udp_socket_k);
}

static int udp_resolved_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  udp_sock *u = udp_check(L, 3);
  (void)status; (void)ctx;
  if (ur_resolved(L, t, &u->local) != 0) return 3;
  u->family = u->local.ss.ss_family;
  lua_settop(L, 3);
  return udp_start_socket(L, t, u);
}

static int udp_socket_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  udp_sock *u = udp_check(L, 3);
  int res = r->res;
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);
  if (res == -EINVAL || res == -EOPNOTSUPP) {
    /* a kernel without IORING_OP_SOCKET (< 5.19) that could not be
     * probed: the plain call */
    res = socket(u->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (res < 0) res = -errno;
  }
  return udp_socket_made(L, t, u, res);
}

/* The socket's fd, or -errno: bind it if asked. */
static int udp_socket_made (lua_State *L, ur_task *t, udp_sock *u, int res) {
  if (res >= 0 && ur_interrupted(t)) ur_fd_release(res);   /* nobody will get it */
  ur_check_interrupt(L, t);
  if (res >= 0) res = ur_handle_adopt(t->loop, &u->h, res);
  if (res < 0) return ur_pushfail(L, res, "udp");
  ur_handle_fix(t->loop, &u->h);   /* sendmsg/recvmsg name its slot */
  if (u->bind
      && bind(u->h.fd, (struct sockaddr *)&u->local.ss, u->local.len) != 0) {
    int err = errno;
    ur_handle_close(t->loop, &u->h, NULL);
    if (lua_isstring(L, 1))
      lua_pushfstring(L, "%s:%d", lua_tostring(L, 1), (int)lua_tointeger(L, 2));
    else
      lua_pushfstring(L, "*:%d", (int)lua_tointeger(L, 2));
    return ur_pushfail(L, -err, lua_tostring(L, -1));
  }
  lua_settop(L, 3);
  return 1;
}

/* uring.udp([host [, port]]) -> udp | fail
 * With an address, bind to it ("*" = any IPv4, "::" = any IPv6; a name is
 * resolved without blocking other tasks); port 0 picks a free one. */
static int l_udp (lua_State *L) {
  const char *host = NULL;
  int port = 0, numeric = 1;
  ur_task *t;
  udp_sock *u;
  if (!lua_isnoneornil(L, 1)) host = udp_checkhost(L, 1);
  if (!lua_isnoneornil(L, 2)) port = udp_checkport(L, 2);
  lua_settop(L, 2);
  t = ur_task_current(L, "udp");
  /* closed first: collecting a half-made socket does nothing */
  u = (udp_sock *)lua_newuserdatauv(L, sizeof *u, 0);     /* 3 */
  memset(u, 0, sizeof *u);
  ur_handle_init(&u->h);
  u->family = AF_INET;
  u->timeout = -1;
  luaL_setmetatable(L, UR_UDP_MT);
  if (host || port) {
    u->bind = 1;
    numeric = ur_addr_numeric(host ? host : "*", port, &u->local);
    if (numeric) u->family = u->local.ss.ss_family;
  }
  if (!numeric)
    return ur_resolve(L, t, host, port, SOCK_DGRAM, 0, udp_resolved_k);
  return udp_start_socket(L, t, u);
}

/* --- udp:sendto(data, host, port) --- */

static int udp_sendto_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  udp_sock *u = udp_check(L, 1);
  int res = r->res;
  (void)status; (void)ctx;
  ur_req_free(t->loop, r);      /* unpins the string */
  if (res < 0) {                /* bytes that went out are reported, even
                                   after a close or an interrupt */
    ur_check_interrupt(L, t);
    return udp_fail(L, u, res, 0);
  }
  lua_pushinteger(L, res);
  return 1;
}

/* Stack: 1 udp, 2 data, 3 host, 4 port.  Send to a, already fitted. */
static int udp_send_start (lua_State *L, ur_task *t, udp_sock *u,
                           const ur_addr *a) {
  size_t len;
  const char *s = lua_tolstring(L, 2, &len);
  ur_req *r;
  udp_msg *m;
  struct io_uring_sqe *sqe;
  r = ur_req_new(L, t->loop, IORING_OP_SENDMSG);
  m = (udp_msg *)calloc(1, sizeof *m);
  if (m == NULL) {
    ur_req_free(t->loop, r);
    return luaL_error(L, "sendto: not enough memory");
  }
  r->mem = m;                   /* the kernel reads the msghdr: owned here */
  r->memlen = sizeof *m;
  memcpy(&m->name, &a->ss, a->len);
  m->iov.iov_base = (void *)(uintptr_t)s;   /* the kernel only reads it */
  m->iov.iov_len = len;
  m->msg.msg_name = &m->name;
  m->msg.msg_namelen = a->len;
  m->msg.msg_iov = &m->iov;
  m->msg.msg_iovlen = 1;
  ur_req_pin(L, r, 2);          /* pinned: the kernel reads it until CQE */
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_sendmsg(sqe, u->h.fd, &m->msg, 0);
  ur_handle_sqe(t->loop, &u->h, r, sqe);
  ur_req_submitted(t->loop, r, sqe);
  return ur_await(L, t, r, "sendto", 0, udp_sendto_k);
}

static int udp_sendto_resolved_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  udp_sock *u = udp_check(L, 1);
  ur_addr a;
  (void)status; (void)ctx;
  if (ur_resolved(L, t, &a) != 0) return 3;
  lua_settop(L, 4);
  if (u->h.fd < 0) return udp_fail(L, u, -EBADF, 0);
  if (!udp_fit(u, &a)) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: no %s address", lua_tostring(L, 3),
                    udp_family_name(u->family));
    lua_pushinteger(L, EAFNOSUPPORT);
    return 3;
  }
  return udp_send_start(L, t, u, &a);
}

/* udp:sendto(data, host, port) -> bytes | fail */
static int l_udp_sendto (lua_State *L) {
  udp_sock *u = udp_open(L);
  const char *host;
  int port;
  ur_task *t;
  ur_addr a;
  luaL_checkstring(L, 2);
  host = udp_checkhost(L, 3);
  port = udp_checkport(L, 4);
  lua_settop(L, 4);             /* checkstring made a number the string */
  t = ur_task_current(L, "sendto");
  if (!ur_addr_numeric(host, port, &a))
    return ur_resolve(L, t, host, port, SOCK_DGRAM, 0, udp_sendto_resolved_k);
  if (!udp_fit(u, &a))
    return luaL_argerror(L, 3, lua_pushfstring(L, "%s address for an %s socket",
                         udp_family_name(a.ss.ss_family),
                         udp_family_name(u->family)));
  return udp_send_start(L, t, u, &a);
}

/* --- udp:recvfrom([max]) --- */

static int udp_recvfrom_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  udp_sock *u = udp_check(L, 1);
  int res = r->res, n = 0;
  (void)status;
  if (res >= 0) {              /* it arrived: returned, closed or not */
    udp_msg *m = (udp_msg *)r->mem;
    ur_kernel_wrote(m->data, (size_t)res);
    ur_kernel_wrote(&m->name, m->msg.msg_namelen);
    lua_pushlstring(L, (const char *)m->data, (size_t)res);
    n = 1 + ur_push_addr(L, (struct sockaddr *)&m->name, m->msg.msg_namelen);
  }
  ur_req_free(t->loop, r);
  /* a datagram that made it is returned even to an interrupted task, as
   * pread does: the wait was over before the interrupt could matter */
  if (n == 0) {
    ur_check_interrupt(L, t);
    return udp_fail(L, u, res < 0 ? res : -EBADF, (int)ctx);
  }
  return n;
}

/* udp:recvfrom([max]) -> data, host, port | fail
 * max (default 65536): a longer datagram is cut to max bytes, as
 * recvfrom(2) does. */
static int l_udp_recvfrom (lua_State *L) {
  udp_sock *u = udp_open(L);
  lua_Integer max = luaL_optinteger(L, 2, UDP_MAX);
  ur_loop *loop;
  ur_task *t;
  ur_req *r, *tr = NULL;
  udp_msg *m;
  struct io_uring_sqe *sqe;
  luaL_argcheck(L, max >= 1 && max <= UDP_MAX, 2, "max out of range");
  lua_settop(L, 2);
  t = ur_task_current(L, "recvfrom");
  loop = t->loop;
  r = ur_req_new(L, loop, IORING_OP_RECVMSG);
  m = (udp_msg *)malloc(sizeof *m + (size_t)max);
  if (m == NULL) {
    ur_req_free(loop, r);
    return luaL_error(L, "recvfrom: not enough memory");
  }
  memset(m, 0, sizeof *m);
  r->mem = m;                   /* the kernel writes here: the request owns it */
  r->memlen = sizeof *m + (size_t)max;
  m->iov.iov_base = m->data;
  m->iov.iov_len = (size_t)max;
  m->msg.msg_name = &m->name;
  m->msg.msg_namelen = sizeof m->name;
  m->msg.msg_iov = &m->iov;
  m->msg.msg_iovlen = 1;
  /* take both requests before any SQE: ur_req_new may raise */
  if (u->timeout >= 0) tr = ur_link_timeout_new(L, loop);
  sqe = ur_get_sqe(loop);
  io_uring_prep_recvmsg(sqe, u->h.fd, &m->msg, 0);
  ur_handle_sqe(loop, &u->h, r, sqe);
  ur_req_submitted(loop, r, sqe);
  if (tr) ur_link_timeout_add(loop, tr, sqe, u->timeout);
  return ur_await(L, t, r, "recvfrom", tr != NULL, udp_recvfrom_k);
}

/* --- the rest --- */

/* udp:settimeout(seconds | nil): each later recvfrom waits at most this
 * long, then returns nil, "timeout", ETIME.  nil or negative: no limit. */
static int l_udp_settimeout (lua_State *L) {
  udp_sock *u = udp_open(L);
  /* nil, negative or math.huge: no limit; NaN raises (ur_checklimit) */
  u->timeout = ur_checklimit(L, 2);
  lua_pushinteger(L, 1);        /* as LuaSocket's settimeout */
  return 1;
}

/* udp:getsockname() -> host, port | fail */
static int l_udp_getsockname (lua_State *L) {
  udp_sock *u = udp_open(L);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(u->h.fd, (struct sockaddr *)&ss, &len) != 0)
    return ur_pushfail(L, -errno, NULL);
  return ur_push_addr(L, (struct sockaddr *)&ss, len);
}

static int l_udp_fd (lua_State *L) {
  lua_pushinteger(L, udp_open(L)->h.fd);
  return 1;
}

/* udp:close(), __close: idempotent; a second close does nothing. */
static int l_udp_close (lua_State *L) {
  ur_handle_close(ur_loop_of(L), &udp_check(L, 1)->h, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* __gc: the same close; tasks that could still be woken would anchor
 * the socket, so only lua_close gets here with ops in flight. */
static int l_udp_gc (lua_State *L) {
  udp_sock *u = (udp_sock *)luaL_testudata(L, 1, UR_UDP_MT);
  if (u) ur_handle_close(ur_loop_of(L), &u->h, u);
  return 0;
}

static int l_udp_tostring (lua_State *L) {
  udp_sock *u = udp_check(L, 1);
  if (u->h.fd < 0) lua_pushliteral(L, "uring.udp (closed)");
  else lua_pushfstring(L, "uring.udp (%s, fd %d)", udp_family_name(u->family),
                       u->h.fd);
  return 1;
}

void ur_register_udp (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"sendto", l_udp_sendto}, {"recvfrom", l_udp_recvfrom},
    {"settimeout", l_udp_settimeout}, {"getsockname", l_udp_getsockname},
    {"close", l_udp_close}, {"fd", l_udp_fd},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_udp_gc}, {"__close", l_udp_close},
    {"__tostring", l_udp_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"udp", l_udp},
    {NULL, NULL}
  };
  luaL_newmetatable(L, UR_UDP_MT);
  ur_setfuncs(L, meta);
  lua_newtable(L);
  ur_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
}
