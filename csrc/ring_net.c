/*
 * ring_net.c: sockets and provided buffer rings on the teaching ring.
 *
 * With these a learner builds a TCP server and client from SQEs alone,
 * outside uring.run: prep_socket, prep_bind, prep_listen, prep_accept
 * (and its multishot form), prep_connect, and prep_recv_multishot, whose
 * data lands in buffers the kernel picks from a ring set up with
 * ring:setup_buf_ring.  The fds these make are plain integers the user
 * closes (prep_close), as with prep_openat; one Lua never saw is closed
 * by ring:close (ur_ring_drain).
 *
 * The buffer groups are owned by the ring: a CQE hands Lua a copy of the
 * bytes and the buffer id; the buffer stays out of the kernel's reach
 * until ring:return_buf gives it back, so a reader who never returns
 * buffers sees -ENOBUFS end the multishot -- the lesson.  They are freed
 * only once the ring's last request is back (ring.c, ring_shutdown).
 *
 * liburing 2.3 has no io_uring_setup_buf_ring nor the bind/listen preps
 * (Linux 6.11): the ring memory is our own mmap and the SQEs are filled
 * with io_uring_prep_rw and the opcode number, after a probe.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "ring.h"

#define RING_OP_BIND    56          /* IORING_OP_BIND, Linux 6.11 */
#define RING_OP_LISTEN  57          /* IORING_OP_LISTEN, Linux 6.11 */
#define RING_MAX_BUFS   32768       /* the kernel's ring-entry cap */
#define RING_MAX_BUFSZ  (1 << 20)
#define RING_MAX_GROUP_BYTES (64u << 20)

/* 0 if the kernel has op; otherwise the fail triple pushed (3).  The
 * kernel is asked once, on a ring of its own (this ring's restrictions
 * may forbid the probe), and the answer kept: it cannot change. */
int ur_ring_unsupported (lua_State *L, ur_ring *r, unsigned op,
                         const char *fname) {
  static signed char known[256];      /* 0 unknown, 1 yes, -1 no */
  char up[32];
  size_t i;
  const char *name = ur_opname(op);
  (void)r;
  if (op < 256 && known[op] == 0) {
    struct io_uring_probe *p = io_uring_get_probe();
    known[op] = (p && io_uring_opcode_supported(p, (int)op)) ? 1 : -1;
    if (p) io_uring_free_probe(p);
  }
  if (op < 256 && known[op] == 1) return 0;
  for (i = 0; name[i] && i < sizeof up - 1; i++)
    up[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
  up[i] = '\0';
  lua_pushnil(L);
  lua_pushfstring(L, "%s: IORING_OP_%s not supported by this kernel", fname,
                  up);
  lua_pushinteger(L, EOPNOTSUPP);
  return 3;
}

static int net_fd (lua_State *L, int idx) {
  lua_Integer v = luaL_checkinteger(L, idx);
  luaL_argcheck(L, v >= 0 && v <= INT_MAX, idx, "fd must be in 0..2147483647");
  return (int)v;
}

static int net_small (lua_State *L, int idx, lua_Integer def, lua_Integer hi,
                      const char *what) {
  lua_Integer v = luaL_optinteger(L, idx, def);
  if (v < 0 || v > hi)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s must be in 0..%I", what, hi));
  return (int)v;
}

/* host, port at idx, idx+1: a numeric address (no lookup here) */
static void net_addr (lua_State *L, int idx, ur_addr *a) {
  const char *host = luaL_checkstring(L, idx);
  lua_Integer port = luaL_checkinteger(L, idx + 1);
  luaL_argcheck(L, port >= 0 && port <= 65535, idx + 1,
                "port must be in 0..65535");
  if (!ur_addr_numeric(host, (int)port, a))
    luaL_argerror(L, idx, lua_pushfstring(L, "'%s' is not a numeric IPv4 "
                  "or IPv6 address", host));
}

/* ring:prep_socket(domain, type [, protocol [, user_data]]): res is the fd */
static int l_prep_socket (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int domain = net_small(L, 2, 0, 255, "domain");
  int type = (luaL_checkinteger(L, 3), net_small(L, 3, 0, INT_MAX, "type"));
  int proto = net_small(L, 4, 0, 255, "protocol");
  lua_Integer ud = luaL_optinteger(L, 5, 0);
  ur_req *q;
  struct io_uring_sqe *sqe;
  luaL_checkinteger(L, 2);
  sqe = ur_ring_sqe(L, r, "prep_socket", IORING_OP_SOCKET, ud, 0, 0, &q);
  io_uring_prep_socket(sqe, domain, type, proto, 0);
  return 0;
}

/* bind and connect: the address lives in the request until its CQE */
static int net_prep_addr (lua_State *L, const char *fname, uint8_t op) {
  ur_ring *r = ur_ring_check(L);
  int fd = net_fd(L, 2);
  ur_addr a;
  lua_Integer ud;
  ur_req *q;
  struct io_uring_sqe *sqe;
  int nfail;
  net_addr(L, 3, &a);
  ud = luaL_optinteger(L, 5, 0);
  if (op == RING_OP_BIND && (nfail = ur_ring_unsupported(L, r, op, fname)))
    return nfail;
  sqe = ur_ring_sqe(L, r, fname, op, ud, 0, sizeof a.ss, &q);
  memcpy(q->mem, &a.ss, a.len);
  if (op == IORING_OP_CONNECT)
    io_uring_prep_connect(sqe, fd, (struct sockaddr *)q->mem, a.len);
  else
    io_uring_prep_rw(op, sqe, fd, q->mem, 0, a.len);
  return 0;
}

/* ring:prep_bind(fd, host, port [, user_data]) */
static int l_prep_bind (lua_State *L) {
  return net_prep_addr(L, "prep_bind", RING_OP_BIND);
}

/* ring:prep_connect(fd, host, port [, user_data]) */
static int l_prep_connect (lua_State *L) {
  return net_prep_addr(L, "prep_connect", IORING_OP_CONNECT);
}

/* ring:prep_listen(fd [, backlog [, user_data]]) */
static int l_prep_listen (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int fd = net_fd(L, 2);
  int backlog = net_small(L, 3, 128, 65535, "backlog");
  lua_Integer ud = luaL_optinteger(L, 4, 0);
  ur_req *q;
  struct io_uring_sqe *sqe;
  int nfail = ur_ring_unsupported(L, r, RING_OP_LISTEN, "prep_listen");
  if (nfail) return nfail;
  sqe = ur_ring_sqe(L, r, "prep_listen", RING_OP_LISTEN, ud, 0, 0, &q);
  io_uring_prep_rw(RING_OP_LISTEN, sqe, fd, NULL, (unsigned)backlog, 0);
  return 0;
}

/* prep_accept and prep_multishot_accept(fd [, user_data [, flags]]):
 * flags of SOCK_CLOEXEC, SOCK_NONBLOCK; res is the new connection's fd.
 * The multishot one posts a CQE per connection (with IORING_CQE_F_MORE)
 * until it fails or is cancelled. */
static int net_prep_accept (lua_State *L, const char *fname, int multishot) {
  ur_ring *r = ur_ring_check(L);
  int fd = net_fd(L, 2);
  lua_Integer ud = luaL_optinteger(L, 3, 0);
  int flags = net_small(L, 4, 0, SOCK_CLOEXEC | SOCK_NONBLOCK, "flags");
  ur_req *q;
  struct io_uring_sqe *sqe;
  luaL_argcheck(L, (flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK)) == 0, 4,
                "flags must be SOCK_CLOEXEC and/or SOCK_NONBLOCK");
  sqe = ur_ring_sqe(L, r, fname, IORING_OP_ACCEPT, ud, 0, 0, &q);
  if (multishot) io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, flags);
  else io_uring_prep_accept(sqe, fd, NULL, NULL, flags);
  return 0;
}

static int l_prep_accept (lua_State *L) {
  return net_prep_accept(L, "prep_accept", 0);
}

static int l_prep_multishot_accept (lua_State *L) {
  return net_prep_accept(L, "prep_multishot_accept", 1);
}

/* The group bgid at idx, set up; raises otherwise. */
static ring_bufgroup *net_group (lua_State *L, ur_ring *r, int idx) {
  lua_Integer g = luaL_checkinteger(L, idx);
  luaL_argcheck(L, g >= 0 && g < RING_MAX_GROUPS, idx,
                "buffer group must be in 0..15");
  if (r->groups[g] == NULL)
    luaL_argerror(L, idx, lua_pushfstring(L, "buffer group %I is not set up "
                  "(use ring:setup_buf_ring)", g));
  return r->groups[g];
}

/* ring:prep_recv_multishot(fd, bgid [, flags [, user_data]]): a CQE per
 * arrival, its bytes in a buffer the kernel picked from group bgid;
 * ends (no F_MORE) at EOF (res 0), on an error, or -ENOBUFS when the
 * group has no buffer left. */
static int l_prep_recv_multishot (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  int fd = net_fd(L, 2);
  int bgid = (net_group(L, r, 3), (int)lua_tointeger(L, 3));
  int flags = net_small(L, 4, 0, INT_MAX, "flags");
  lua_Integer ud = luaL_optinteger(L, 5, 0);
  ur_req *q;
  struct io_uring_sqe *sqe = ur_ring_sqe(L, r, "prep_recv_multishot",
                                         IORING_OP_RECV, ud, 0, 0, &q);
  io_uring_prep_recv_multishot(sqe, fd, NULL, 0, flags);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = (uint16_t)bgid;
  q->aux = bgid + 1;                  /* its CQEs name buffers of this group */
  return 0;
}

/* Buffer bid of g back to the kernel: at the ring's tail, published. */
static void net_give (ring_bufgroup *g, unsigned bid) {
  io_uring_buf_ring_add(g->br, g->data + (size_t)bid * g->size, g->size,
                        (unsigned short)bid, io_uring_buf_ring_mask(g->nbufs),
                        0);
  io_uring_buf_ring_advance(g->br, 1);
  g->out[bid] = 0;
}

/*
 * ring:setup_buf_ring(bgid, nbufs, size) -> true | fail: group bgid
 * (0..15) of nbufs buffers (a power of two up to 32768) of size bytes
 * each (up to 1 MiB; 64 MiB in all), all given to the kernel now.
 */
static int l_setup_buf_ring (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  lua_Integer bgid = luaL_checkinteger(L, 2);
  lua_Integer nbufs = luaL_checkinteger(L, 3);
  lua_Integer size = luaL_checkinteger(L, 4);
  struct io_uring_buf_reg reg;
  ring_bufgroup *g;
  int ret;
  luaL_argcheck(L, bgid >= 0 && bgid < RING_MAX_GROUPS, 2,
                "buffer group must be in 0..15");
  if (r->groups[bgid])
    luaL_argerror(L, 2, lua_pushfstring(L, "buffer group %I is set up "
                  "already", bgid));
  luaL_argcheck(L, nbufs >= 1 && nbufs <= RING_MAX_BUFS
                && (nbufs & (nbufs - 1)) == 0, 3,
                "nbufs must be a power of two in 1..32768");
  luaL_argcheck(L, size >= 1 && size <= RING_MAX_BUFSZ, 4,
                "size must be in 1..1048576");
  luaL_argcheck(L, (uint64_t)nbufs * (uint64_t)size <= RING_MAX_GROUP_BYTES,
                4, "nbufs * size must be at most 64 MiB");
  g = (ring_bufgroup *)calloc(1, sizeof *g);
  if (g == NULL) return luaL_error(L, "setup_buf_ring: not enough memory");
  g->nbufs = (unsigned)nbufs;
  g->size = (unsigned)size;
  g->brsize = (size_t)nbufs * sizeof(struct io_uring_buf);
  g->data = (unsigned char *)malloc((size_t)nbufs * (size_t)size);
  g->out = (unsigned char *)calloc((size_t)nbufs, 1);
  g->br = (struct io_uring_buf_ring *)mmap(NULL, g->brsize,
      PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (g->br == MAP_FAILED) g->br = NULL;
  if (g->data == NULL || g->out == NULL || g->br == NULL) {
    ret = -ENOMEM;
    goto fail;
  }
  io_uring_buf_ring_init(g->br);
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (uint64_t)(uintptr_t)g->br;
  reg.ring_entries = (unsigned)nbufs;
  reg.bgid = (uint16_t)bgid;
  ret = io_uring_register_buf_ring(&r->ring, &reg, 0);
  if (ret < 0) goto fail;
  for (unsigned bid = 0; bid < g->nbufs; bid++)
    io_uring_buf_ring_add(g->br, g->data + (size_t)bid * g->size, g->size,
                          (unsigned short)bid, io_uring_buf_ring_mask(g->nbufs),
                          (int)bid);
  io_uring_buf_ring_advance(g->br, (int)g->nbufs);
  r->groups[bgid] = g;
  lua_pushboolean(L, 1);
  return 1;
fail:
  if (g->br) munmap(g->br, g->brsize);
  free(g->data);
  free(g->out);
  free(g);
  return ur_pushfail(L, ret, "setup_buf_ring");
}

/* ring:return_buf(bgid, bid): give buffer bid, which a CQE handed to Lua,
 * back to the kernel.  Returning one the kernel has already is an error
 * (two receives would share it). */
static int l_return_buf (lua_State *L) {
  ur_ring *r = ur_ring_check(L);
  ring_bufgroup *g = net_group(L, r, 2);
  lua_Integer bid = luaL_checkinteger(L, 3);
  luaL_argcheck(L, bid >= 0 && bid < (lua_Integer)g->nbufs, 3,
                "buffer id out of range");
  if (!g->out[bid])
    luaL_argerror(L, 3, lua_pushfstring(L, "buffer %I is not out (the "
                  "kernel has it already)", bid));
  net_give(g, (unsigned)bid);
  return 0;
}

/* A CQE with IORING_CQE_F_BUFFER: push the bytes the kernel put in the
 * buffer and its id; Lua holds the buffer from now on.  Returns 2. */
int ur_ring_push_buf (lua_State *L, ur_ring *r, ur_req *q, int32_t res,
                      uint32_t flags) {
  unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
  ring_bufgroup *g = (q->opcode == IORING_OP_RECV && q->aux > 0
                      && q->aux <= RING_MAX_GROUPS) ? r->groups[q->aux - 1]
                                                    : NULL;
  if (g == NULL || bid >= g->nbufs) {   /* cannot happen: say so plainly */
    lua_pushnil(L);
    lua_pushinteger(L, bid);
    return 2;
  }
  {
    unsigned char *p = g->data + (size_t)bid * g->size;
    size_t n = res > 0 ? (size_t)res : 0;
    if (n > g->size) n = g->size;
    ur_kernel_wrote(p, n);
    lua_pushlstring(L, (const char *)p, n);
  }
  lua_pushinteger(L, bid);
  g->out[bid] = 1;
  return 2;
}

/* After the ring's last request and io_uring_queue_exit. */
void ur_ring_free_groups (ur_ring *r) {
  for (int i = 0; i < RING_MAX_GROUPS; i++) {
    ring_bufgroup *g = r->groups[i];
    if (g == NULL) continue;
    munmap(g->br, g->brsize);
    free(g->data);
    free(g->out);
    free(g);
    r->groups[i] = NULL;
  }
}

/* ring:getsockname(fd) -> host, port | fail: where a socket is bound
 * (getsockname(2); no SQE), to learn the port a bind to 0 got */
static int l_getsockname (lua_State *L) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int fd;
  ur_ring_check(L);
  fd = net_fd(L, 2);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return ur_pushfail(L, -errno, "getsockname");
  return ur_push_addr(L, (struct sockaddr *)&ss, len);
}

void ur_ring_net_methods (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"prep_socket", l_prep_socket}, {"prep_bind", l_prep_bind},
    {"prep_listen", l_prep_listen}, {"prep_accept", l_prep_accept},
    {"prep_multishot_accept", l_prep_multishot_accept},
    {"prep_connect", l_prep_connect},
    {"prep_recv_multishot", l_prep_recv_multishot},
    {"setup_buf_ring", l_setup_buf_ring}, {"return_buf", l_return_buf},
    {"getsockname", l_getsockname},
    {NULL, NULL}
  };
  luaL_setfuncs(L, methods, 0);
}

void ur_ring_net_constants (lua_State *L) {
  static const struct { const char *name; lua_Integer value; } k[] = {
    {"AF_INET", AF_INET}, {"AF_INET6", AF_INET6}, {"AF_UNIX", AF_UNIX},
    {"SOCK_STREAM", SOCK_STREAM}, {"SOCK_DGRAM", SOCK_DGRAM},
    {"SOCK_CLOEXEC", SOCK_CLOEXEC}, {"SOCK_NONBLOCK", SOCK_NONBLOCK},
    {"IORING_CQE_F_BUFFER", IORING_CQE_F_BUFFER},
    {"IORING_CQE_BUFFER_SHIFT", IORING_CQE_BUFFER_SHIFT},
  };
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    lua_pushinteger(L, k[i].value);
    lua_setfield(L, -2, k[i].name);
  }
}
