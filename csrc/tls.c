/*
 * tls.c: TLS on OpenSSL 3, over the ring.
 *
 * OpenSSL never touches the socket: each TLS socket's SSL reads from and
 * writes to two memory BIOs, and net.c moves the bytes through the ring.
 * A receive's CQE hands the ciphertext to the read BIO (ur_tls_feed); the
 * receive's continuation (ur_tls_result) drives the handshake and
 * decrypts straight into the socket's receive buffer, where every pattern,
 * lines, receive_head and the timeouts work as on plain TCP.  A send
 * encrypts a slice and sends the write BIO's bytes in memory the request
 * owns; what the kernel did not take (a short send, a timeout) goes back
 * first in line (ur_tls_sent), so the record stream never tears.
 *
 * - The handshake runs in the first receive or send (a server's accepted
 *   connection: in the task that serves it, never in accept), or at once
 *   in starttls and connect{tls}.  A receive and a send may each drive it.
 * - Only a receive decrypts: a send's completion leaves records in the
 *   BIO for the receiver, so a task parked in a receive is never starved
 *   of bytes another task took out of its sight.
 * - close() queues close_notify before the handle's close path cancels
 *   what is in flight; a peer that closes without one is reported as a
 *   truncation, never as a clean end of stream.
 * - Contexts: SSL_CTX with our extras in ex_data (ALPN list, SNI table,
 *   the client's session cache), freed with the last SSL_CTX reference, so
 *   a handshake in progress never outlives what its callbacks read.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "uring.h"

#define UR_TLSCTX_MT  "uring.tls.context"
#define TLS_SLICE     (64 * 1024)   /* plaintext encrypted per send */
#define TLS_READ      (16 * 1024)   /* one record's worth per SSL_read */
#define SESS_MAX      32            /* a client context remembers this many */
#define DEFAULT_KEY   "uring.tls.default_client"

/* --- contexts --- */

typedef struct sni_ent { char *name; SSL_CTX *ctx; } sni_ent;
typedef struct sess_ent { char *name; SSL_SESSION *sess; } sess_ent;

/* What an SSL_CTX carries besides OpenSSL's own state */
typedef struct ctx_extra {
  int server;
  int verify;                   /* the peer is checked */
  unsigned char *alpn;          /* wire format: length-prefixed names */
  unsigned alpnlen;
  sni_ent *sni;                 /* server: contexts by host name */
  int nsni;
  sess_ent sess[SESS_MAX];      /* client: last session per server name */
  int nsess, nextsess;
} ctx_extra;

typedef struct tls_ctxud { SSL_CTX *ctx; } tls_ctxud;

static int extra_idx = -1, ssl_idx = -1;
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

static void extra_free (void *parent, void *ptr, CRYPTO_EX_DATA *ad,
                        int idx, long argl, void *argp) {
  ctx_extra *x = (ctx_extra *)ptr;
  (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
  if (x == NULL) return;
  free(x->alpn);
  for (int i = 0; i < x->nsni; i++) {
    free(x->sni[i].name);
    SSL_CTX_free(x->sni[i].ctx);
  }
  free(x->sni);
  for (int i = 0; i < x->nsess; i++) {
    free(x->sess[i].name);
    SSL_SESSION_free(x->sess[i].sess);
  }
  free(x);
}

static void make_indexes (void) {
  extra_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, extra_free);
  ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static ctx_extra *extra_of (const SSL_CTX *ctx) {
  return (ctx_extra *)SSL_CTX_get_ex_data(ctx, extra_idx);
}

/* --- a TLS socket's state --- */

struct ur_tls {
  SSL *ssl;
  BIO *rbio, *wbio;             /* owned by ssl */
  char *out;                    /* ciphertext the kernel has yet to take:
                                   it goes before the write BIO's */
  size_t outlen;
  char *name;                   /* client: the server name (session cache) */
  unsigned hs_done:1, peer_eof:1, undecrypted:1, failed:1, notify_seen:1,
           close_on_fail:1;
};

static size_t pending_out (ur_tls *tls) {
  return tls->outlen + BIO_ctrl_pending(tls->wbio);
}

/* Everything waiting to go out, in one malloc'd block the send request
 * will own; NULL if out of memory. */
static char *take_out (ur_tls *tls, size_t *n) {
  size_t w = BIO_ctrl_pending(tls->wbio), len = tls->outlen + w;
  char *p = tls->out;
  if (w > 0) {
    p = (char *)realloc(tls->out, len ? len : 1);
    if (p == NULL) return NULL;
    BIO_read(tls->wbio, p + tls->outlen, (int)w);
  }
  tls->out = NULL;
  tls->outlen = 0;
  *n = len;
  return p;
}

int ur_tls_feed (ur_tls *tls, const char *p, size_t n) {
  tls->undecrypted = 1;
  return BIO_write(tls->rbio, p, (int)n) == (int)n;
}

/* A send of ours completed (in a continuation, before the request is
 * freed): the bytes the kernel did not take go back first in line. */
void ur_tls_sent (ur_tls *tls, ur_req *r) {
  size_t sent = r->res > 0 ? (size_t)r->res : 0, rest;
  char *p;
  if (r->mem == NULL || sent >= r->memlen) return;
  rest = r->memlen - sent;
  if (tls->outlen == 0) {       /* the usual case: the block comes back */
    p = (char *)r->mem;
    memmove(p, p + sent, rest);
    free(tls->out);
    r->mem = NULL;
  }
  else {
    p = (char *)malloc(rest + tls->outlen);
    if (p == NULL) {            /* the stream cannot be mended: end it */
      tls->failed = 1;
      return;
    }
    memcpy(p, (char *)r->mem + sent, rest);
    memcpy(p + rest, tls->out, tls->outlen);
    free(tls->out);
  }
  tls->out = p;
  tls->outlen += rest;
}

static void tls_free (ur_tls *tls) {
  SSL_free(tls->ssl);
  free(tls->out);
  free(tls->name);
  free(tls);
}

/* Why the last SSL call failed, in words; never key material (OpenSSL's
 * reason strings name what went wrong, not the data). */
static void describe (ur_tls *tls, char *buf, size_t len) {
  unsigned long e = ERR_peek_last_error();
  long vr = SSL_get_verify_result(tls->ssl);
  const char *why = e ? ERR_reason_error_string(e) : NULL;
  if (e && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED
      && vr != X509_V_OK)
    snprintf(buf, len, "certificate verify failed (%s)",
             X509_verify_cert_error_string(vr));
  else if (why)
    snprintf(buf, len, "%s", why);
  else if (e)
    ERR_error_string_n(e, buf, len);
  else if (tls->peer_eof)
    snprintf(buf, len, "connection closed by peer");
  else
    snprintf(buf, len, "protocol error");
  ERR_clear_error();
}

/* nil, "tls handshake: why" | "tls: why", EPROTO; the connection is over:
 * later receives see it closed, and no close_notify follows the alert */
static int tls_fail (lua_State *L, ur_sock *s, ur_tls *tls) {
  char why[200];
  describe(tls, why, sizeof why);
  luaL_pushfail(L);
  lua_pushfstring(L, "tls%s: %s", tls->hs_done ? "" : " handshake", why);
  lua_pushinteger(L, EPROTO);
  tls->failed = 1;
  ur_sock_set_eof(s);
  return UR_RECV_FAILED;
}

/* A fatal alert OpenSSL wrote for the peer (unknown CA, bad record...):
 * it goes out unwaited, so the peer learns why too */
static void send_alert (lua_State *L, ur_sock *s, ur_tls *tls) {
  ur_task *t = ur_task_of(L);
  size_t n;
  char *mem;
  if (t == NULL || ur_sock_busy(s, 1) || pending_out(tls) == 0) return;
  mem = take_out(tls, &n);
  if (mem) ur_sock_send_bg(t->loop, s, mem, n);
}

/* Decrypt what the read BIO holds into the receive buffer. */
static int decrypt (lua_State *L, ur_sock *s, ur_tls *tls) {
  size_t got = 0;
  for (;;) {
    char *dst = ur_sock_reserve(s, TLS_READ);
    size_t n = 0;
    int rc, e;
    if (dst == NULL) {
      ur_sock_set_eof(s);
      return luaL_error(L, "receive: not enough memory");
    }
    ERR_clear_error();
    rc = SSL_read_ex(tls->ssl, dst, TLS_READ, &n);
    if (rc == 1) {
      ur_sock_commit(s, n);
      got += n;
      continue;
    }
    e = SSL_get_error(tls->ssl, rc);
    tls->undecrypted = 0;
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_ZERO_RETURN) {      /* close_notify: a clean end */
      tls->notify_seen = 1;
      ur_sock_set_eof(s);
      break;
    }
    send_alert(L, s, tls);
    return tls_fail(L, s, tls);
  }
  if (got > 0) return UR_RECV_BYTES;
  if (tls->notify_seen) return UR_RECV_EOF;
  if (tls->peer_eof) {          /* FIN without close_notify */
    ur_sock_set_eof(s);
    tls->failed = 1;
    luaL_pushfail(L);
    lua_pushliteral(L, "tls: connection truncated (closed without "
                    "close_notify)");
    lua_pushinteger(L, ECONNRESET);
    return UR_RECV_FAILED;
  }
  return UR_RECV_AGAIN;
}

/* One of the socket's requests completed (after net.c's checks): drive
 * the handshake, then, in a receive, decrypt.  UR_RECV_AGAIN: call
 * ur_sock_recv again (it sends what is pending, or receives more). */
int ur_tls_result (lua_State *L, ur_sock *s, int res, int op, int flow) {
  ur_tls *tls = ur_sock_tls(s);
  if (res == -ENOMEM) {         /* the ciphertext could not be kept */
    ur_sock_set_eof(s);
    return luaL_error(L, "receive: not enough memory");
  }
  if (res < 0) {
    ur_sock_fail(L, s, res);
    return UR_RECV_FAILED;
  }
  if (op == IORING_OP_RECV && res == 0) tls->peer_eof = 1;
  if (tls->failed) {
    luaL_pushfail(L);
    lua_pushliteral(L, "tls: connection failed earlier");
    lua_pushinteger(L, EPROTO);
    return UR_RECV_FAILED;
  }
  if (!tls->hs_done) {
    int rc;
    ERR_clear_error();
    rc = SSL_do_handshake(tls->ssl);
    if (rc != 1) {
      if (SSL_get_error(tls->ssl, rc) == SSL_ERROR_WANT_READ
          && !tls->peer_eof)
        return UR_RECV_AGAIN;
      send_alert(L, s, tls);
      return tls_fail(L, s, tls);
    }
    tls->hs_done = 1;
  }
  if (flow == UR_TLS_SENDING) return UR_RECV_AGAIN;
  return decrypt(L, s, tls);
}

/* A receive on a TLS socket: first what must go out (a handshake flight,
 * the rest of a short send), then records a send's handshake left in the
 * BIO, else the network. */
int ur_tls_recv (lua_State *L, ur_sock *s, ur_task *t, lua_KContext ctx,
                 lua_KFunction k) {
  ur_tls *tls = ur_sock_tls(s);
  if (pending_out(tls) > 0 && !ur_sock_busy(s, 1)) {
    size_t n;
    char *mem = take_out(tls, &n);
    if (mem == NULL) return luaL_error(L, "receive: not enough memory");
    return ur_sock_send_mem(L, s, t, 0, mem, n, ctx, k);
  }
  if (tls->hs_done && tls->undecrypted)
    return ur_sock_kick(L, s, t, ctx, k);
  return ur_sock_recv_raw(L, s, t, 0, ctx, k);
}

/* --- sending: stack 1 socket, 2 data, 3 from, 4 to (as net.c's send) */

static int send_k (lua_State *L, int status, lua_KContext ctx);

static int send_failed (lua_State *L, size_t done) {
  lua_pushinteger(L, (lua_Integer)done);
  return 4;
}

static int send_step (lua_State *L, ur_sock *s, ur_task *t, size_t done) {
  ur_tls *tls = ur_sock_tls(s);
  size_t len, from = (size_t)lua_tointeger(L, 3);
  size_t total = (size_t)lua_tointeger(L, 4) - from;
  const char *data = lua_tolstring(L, 2, &len) + from;
  if (tls->failed) {
    luaL_pushfail(L);
    lua_pushliteral(L, "tls: connection failed earlier");
    lua_pushinteger(L, EPROTO);
    return send_failed(L, done);
  }
  if (!tls->hs_done) {          /* the handshake first */
    int rc;
    if (pending_out(tls) > 0) {
      size_t n;
      char *mem = take_out(tls, &n);
      if (mem == NULL) return luaL_error(L, "send: not enough memory");
      return ur_sock_send_mem(L, s, t, UR_TLS_SENDING, mem, n,
                              (lua_KContext)done, send_k);
    }
    ERR_clear_error();
    rc = SSL_do_handshake(tls->ssl);
    if (rc != 1) {
      if (SSL_get_error(tls->ssl, rc) != SSL_ERROR_WANT_READ) {
        tls_fail(L, s, tls);
        return send_failed(L, done);
      }
      if (pending_out(tls) > 0) return send_step(L, s, t, done);
      if (ur_sock_busy(s, 0))
        return luaL_error(L, "send: socket is busy (another task is "
                          "receiving its TLS handshake)");
      return ur_sock_recv_raw(L, s, t, UR_TLS_SENDING, (lua_KContext)done,
                              send_k);
    }
    tls->hs_done = 1;
  }
  if (done < total) {
    size_t n = total - done, w = 0;
    if (n > TLS_SLICE) n = TLS_SLICE;
    ERR_clear_error();
    if (SSL_write_ex(tls->ssl, data + done, n, &w) != 1) {
      tls_fail(L, s, tls);
      return send_failed(L, done);
    }
    done += w;
  }
  if (pending_out(tls) > 0) {
    size_t n;
    char *mem = take_out(tls, &n);
    if (mem == NULL) return luaL_error(L, "send: not enough memory");
    return ur_sock_send_mem(L, s, t, UR_TLS_SENDING, mem, n,
                            (lua_KContext)done, send_k);
  }
  lua_pushinteger(L, (lua_Integer)done);
  return 1;
}

static int send_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_sock *s;
  (void)status;
  if (ur_sock_recv_result(L, t, &s) == UR_RECV_FAILED)
    return send_failed(L, (size_t)ctx);
  return send_step(L, s, t, (size_t)ctx);
}

int ur_tls_send (lua_State *L, ur_sock *s, ur_task *t) {
  return send_step(L, s, t, 0);
}

/* --- closing --- */

/* Queue our close_notify (after what is still waiting to go out), once:
 * a later SSL_shutdown writes nothing more.  Its SQE, or NULL (nothing
 * queued: no handshake, a failed connection, another task sending). */
struct io_uring_sqe *ur_tls_notify (ur_loop *loop, ur_sock *s) {
  ur_tls *tls = ur_sock_tls(s);
  size_t n;
  char *mem;
  if (tls == NULL || !tls->hs_done || tls->failed || ur_sock_busy(s, 1))
    return NULL;
  ERR_clear_error();
  SSL_shutdown(tls->ssl);
  ERR_clear_error();
  mem = take_out(tls, &n);
  if (mem && n > 0) return ur_sock_send_bg(loop, s, mem, n);
  free(mem);
  return NULL;
}

/* close_notify, queued before the handle's close cancels the rest; then
 * the state goes (a task still parked on the socket wakes to "closed"). */
void ur_tls_close (ur_loop *loop, ur_sock *s) {
  ur_tls *tls = ur_sock_tls(s);
  if (tls == NULL) return;
  ur_tls_notify(loop, s);
  ur_sock_set_tls(s, NULL);
  tls_free(tls);
}

/* --- making TLS sockets --- */

static int is_ip (const char *name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name, buf) == 1
         || inet_pton(AF_INET6, name, buf) == 1;
}

/* Give s TLS state from ctx (an SSL_CTX).  A client names the server it
 * expects: sent as SNI (unless an address) and checked against the
 * certificate when the context verifies.  Bytes already received are the
 * peer's first flight (a STARTTLS upgrade): they go to OpenSSL. */
int ur_tls_attach (ur_sock *s, void *vctx, const char *servername) {
  SSL_CTX *ctx = (SSL_CTX *)vctx;
  ctx_extra *x = extra_of(ctx);
  ur_tls *tls = (ur_tls *)calloc(1, sizeof *tls);
  size_t buffered;
  const char *p;
  if (tls == NULL) return -ENOMEM;
  tls->ssl = SSL_new(ctx);
  tls->rbio = BIO_new(BIO_s_mem());
  tls->wbio = BIO_new(BIO_s_mem());
  if (servername) tls->name = strdup(servername);
  if (!tls->ssl || !tls->rbio || !tls->wbio || (servername && !tls->name)) {
    BIO_free(tls->rbio);
    BIO_free(tls->wbio);
    SSL_free(tls->ssl);
    free(tls->name);
    free(tls);
    return -ENOMEM;
  }
  BIO_set_mem_eof_return(tls->rbio, -1);   /* empty: "want more", not EOF */
  SSL_set_bio(tls->ssl, tls->rbio, tls->wbio);
  SSL_set_ex_data(tls->ssl, ssl_idx, tls);
  if (x->server)
    SSL_set_accept_state(tls->ssl);
  else {
    SSL_set_connect_state(tls->ssl);
    if (servername && *servername) {
      int ok = 1;
      if (is_ip(servername)) {
        if (x->verify)
          ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(tls->ssl),
                                             servername);
      }
      else {
        ok = SSL_set_tlsext_host_name(tls->ssl, servername);
        if (ok && x->verify) {
          SSL_set_hostflags(tls->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
          ok = SSL_set1_host(tls->ssl, servername);
        }
      }
      for (int i = 0; ok && i < x->nsess; i++)   /* resume if we can */
        if (strcmp(x->sess[i].name, servername) == 0) {
          SSL_set_session(tls->ssl, x->sess[i].sess);
          break;
        }
      if (!ok) {
        tls_free(tls);
        return -EINVAL;
      }
    }
  }
  p = ur_sock_buffered(s, &buffered);
  if (buffered > 0) {
    ur_tls_feed(tls, p, buffered);
    ur_sock_consume(s, buffered);
  }
  ur_sock_set_tls(s, tls);
  return 0;
}

void ur_tls_ctx_release (void **ctx) {
  SSL_CTX_free((SSL_CTX *)*ctx);
  *ctx = NULL;
}

/* The handshake of starttls and connect{tls}: ctx is the stack index of
 * the socket, returned when the handshake is done and its last flight
 * sent. */
static int hs_k (lua_State *L, int status, lua_KContext ctx);

static int hs_step (lua_State *L, ur_sock *s, ur_task *t, lua_KContext ctx) {
  ur_tls *tls = ur_sock_tls(s);
  if (tls->hs_done && pending_out(tls) == 0) {
    lua_pushvalue(L, (int)ctx);
    return 1;
  }
  return ur_tls_recv(L, s, t, ctx, hs_k);
}

static int hs_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_sock *s;
  (void)status;
  if (ur_sock_recv_result(L, t, &s) == UR_RECV_FAILED) {
    ur_tls *tls = s ? ur_sock_tls(s) : NULL;
    if (tls && tls->close_on_fail) {   /* connect{tls}: nobody has it */
      ur_tls_close(t->loop, s);
      ur_handle_close(t->loop, ur_sock_handle(s), NULL);
    }
    return 3;
  }
  return hs_step(L, s, t, ctx);
}

/* A client's first flight, then the handshake */
static int hs_start (lua_State *L, ur_sock *s, ur_task *t, int idx) {
  ur_tls *tls = ur_sock_tls(s);
  ERR_clear_error();
  if (SSL_do_handshake(tls->ssl) == 1) tls->hs_done = 1;
  ERR_clear_error();
  return hs_step(L, s, t, idx);
}

/* A context userdata at idx, or NULL */
static tls_ctxud *testctx (lua_State *L, int idx) {
  return (tls_ctxud *)luaL_testudata(L, idx, UR_TLSCTX_MT);
}

static SSL_CTX *default_client (lua_State *L);

/* The value at idx as a context for fname's argument arg: a context of
 * the given mode, or (clients) true for the default one. */
static SSL_CTX *ctx_arg (lua_State *L, int idx, int arg, const char *fname,
                         int server, const char *field) {
  tls_ctxud *c = testctx(L, idx);
  char why[96];
  if (c && extra_of(c->ctx)->server == server) return c->ctx;
  if (!server && lua_toboolean(L, idx) && lua_isboolean(L, idx))
    return default_client(L);
  if (c)
    snprintf(why, sizeof why, "%s%sa %s context expected, got a %s one",
             field ? field : "", field ? ": " : "",
             server ? "server" : "client", server ? "client" : "server");
  else
    snprintf(why, sizeof why, "%s%suring.tls.context%s expected, got %s",
             field ? field : "", field ? ": " : "",
             server ? "" : " or true", luaL_typename(L, idx));
  luaL_argerror(L, arg, why);
  (void)fname;
  return NULL;
}

/* opts.tls (and opts.servername) of connect and listen, opts at index
 * opts: the socket holds a reference to the context. */
void ur_tls_opts (lua_State *L, int opts, ur_sock *s, int listening,
                  const char *fname) {
  SSL_CTX *ctx;
  int ty = lua_getfield(L, opts, "tls");
  if (ty == LUA_TNIL || (ty == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
    lua_pop(L, 1);
    return;
  }
  ctx = ctx_arg(L, -1, 3, fname, listening, "tls");
  lua_pop(L, 1);
  if (!listening) {
    ty = lua_getfield(L, opts, "servername");
    if (ty != LUA_TNIL && ty != LUA_TSTRING)
      luaL_argerror(L, 3, lua_pushfstring(L, "servername: string expected, "
                    "got %s", luaL_typename(L, -1)));
    if (ty == LUA_TSTRING) ur_tocstr(L, -1, 3, "servername");
    lua_pop(L, 1);
  }
  SSL_CTX_up_ref(ctx);
  *ur_sock_tls_ctx(s) = ctx;
}

/* connect{tls}: stack 1 host, 2 port, 3 opts, 4 args, 5 the connected
 * socket.  The handshake, then the socket; or the fail and it closed. */
int ur_tls_connect (lua_State *L, ur_task *t, ur_sock *s) {
  void **held = ur_sock_tls_ctx(s);
  const char *name = NULL;
  int ret;
  if (lua_getfield(L, 3, "servername") == LUA_TSTRING)
    name = lua_tostring(L, -1);
  else if (lua_type(L, 1) == LUA_TSTRING)
    name = lua_tostring(L, 1);
  ret = ur_tls_attach(s, *held, name);
  lua_settop(L, 5);
  ur_tls_ctx_release(held);
  if (ret < 0) {
    ur_handle_close(t->loop, ur_sock_handle(s), NULL);
    return ur_pushfail(L, ret, "tls");
  }
  ur_sock_tls(s)->close_on_fail = 1;
  return hs_start(L, s, t, 5);
}

/* sock:starttls(ctx [, servername]) -> sock | fail
 * The socket speaks TLS from here on; the handshake is done when it
 * returns.  A client context that verifies needs the server's name. */
static int l_sock_starttls (lua_State *L) {
  ur_sock *s = ur_sock_check(L, 1);
  SSL_CTX *ctx;
  const char *name;
  ur_task *t;
  int ret;
  if (ur_sock_closed(s)) return luaL_error(L, "attempt to use a closed socket");
  /* either mode: a server's starttls answers a client's upgrade */
  ctx = ctx_arg(L, 2, 2, "starttls", testctx(L, 2) != NULL
                && extra_of(testctx(L, 2)->ctx)->server, NULL);
  name = ur_optcstr(L, 3, "servername", NULL);
  if (!extra_of(ctx)->server && extra_of(ctx)->verify && name == NULL)
    return luaL_argerror(L, 3, "servername expected (the context verifies "
                         "the peer's name; verify = false to skip)");
  t = ur_task_current(L, "starttls");
  if (ur_sock_listening(s)) return luaL_error(L, "starttls: socket is listening");
  if (ur_sock_tls(s)) return luaL_error(L, "starttls: socket already uses TLS");
  if (ur_sock_busy(s, 0) || ur_sock_busy(s, 1))
    return luaL_error(L, "starttls: socket is busy (another task is using it)");
  if ((ret = ur_tls_attach(s, ctx, extra_of(ctx)->server ? NULL : name)) < 0)
    return ur_pushfail(L, ret, "starttls");
  lua_settop(L, 1);
  return hs_start(L, s, t, 1);
}

/* --- what the peer showed --- */

static void push_bio (lua_State *L, BIO *b) {
  char *p;
  long n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, n > 0 ? (size_t)n : 0);
  BIO_free(b);
}

static void push_name (lua_State *L, const X509_NAME *nm) {
  BIO *b = BIO_new(BIO_s_mem());
  if (b == NULL) luaL_error(L, "getpeercert: not enough memory");
  X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253);
  push_bio(L, b);
}

static void push_time (lua_State *L, const ASN1_TIME *tm) {
  BIO *b = BIO_new(BIO_s_mem());
  if (b == NULL) luaL_error(L, "getpeercert: not enough memory");
  ASN1_TIME_print(b, tm);
  push_bio(L, b);
}

static ur_tls *checktls (lua_State *L, const char *fname) {
  ur_sock *s = ur_sock_check(L, 1);
  if (ur_sock_closed(s)) luaL_error(L, "attempt to use a closed socket");
  (void)fname;
  return ur_sock_tls(s);
}

/* sock:getpeercert() -> {subject=, issuer=, serial=, not_before=,
 * not_after=, dns = {...}, sha256=, pem=} | nil (no TLS, no certificate) */
static int l_sock_getpeercert (lua_State *L) {
  ur_tls *tls = checktls(L, "getpeercert");
  X509 *c = tls ? SSL_get1_peer_certificate(tls->ssl) : NULL;
  GENERAL_NAMES *sans;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  BIGNUM *bn;
  BIO *b;
  if (c == NULL) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 8);
  push_name(L, X509_get_subject_name(c));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(c));
  lua_setfield(L, -2, "issuer");
  bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL);
  if (bn) {
    char *h = BN_bn2hex(bn);
    if (h) lua_pushstring(L, h);
    else lua_pushnil(L);
    OPENSSL_free(h);
    BN_free(bn);
    lua_setfield(L, -2, "serial");
  }
  push_time(L, X509_get0_notBefore(c));
  lua_setfield(L, -2, "not_before");
  push_time(L, X509_get0_notAfter(c));
  lua_setfield(L, -2, "not_after");
  lua_newtable(L);
  sans = (GENERAL_NAMES *)X509_get_ext_d2i(c, NID_subject_alt_name, NULL, NULL);
  for (int i = 0, n = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
    if (g->type == GEN_DNS) {
      lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                      (size_t)ASN1_STRING_length(g->d.dNSName));
      lua_rawseti(L, -2, ++n);
    }
  }
  GENERAL_NAMES_free(sans);
  lua_setfield(L, -2, "dns");
  if (X509_digest(c, EVP_sha256(), md, &mdlen)) {
    for (unsigned i = 0; i < mdlen; i++)
      snprintf(hex + 2 * i, 3, "%02x", md[i]);
    lua_pushlstring(L, hex, 2 * mdlen);
    lua_setfield(L, -2, "sha256");
  }
  b = BIO_new(BIO_s_mem());
  if (b && PEM_write_bio_X509(b, c)) {
    push_bio(L, b);
    lua_setfield(L, -2, "pem");
  }
  else BIO_free(b);
  X509_free(c);
  return 1;
}

/* sock:tlsinfo() -> {version=, cipher=, alpn=, servername=, resumed=,
 * verified=} | nil (not TLS, or the handshake has not finished) */
static int l_sock_tlsinfo (lua_State *L) {
  ur_tls *tls = checktls(L, "tlsinfo");
  const unsigned char *alpn = NULL;
  unsigned alpnlen = 0;
  const char *sn;
  X509 *peer;
  if (tls == NULL || !tls->hs_done) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 6);
  lua_pushstring(L, SSL_get_version(tls->ssl));
  lua_setfield(L, -2, "version");
  lua_pushstring(L, SSL_get_cipher_name(tls->ssl));
  lua_setfield(L, -2, "cipher");
  SSL_get0_alpn_selected(tls->ssl, &alpn, &alpnlen);
  if (alpnlen > 0) {
    lua_pushlstring(L, (const char *)alpn, alpnlen);
    lua_setfield(L, -2, "alpn");
  }
  sn = SSL_get_servername(tls->ssl, TLSEXT_NAMETYPE_host_name);
  if (sn) {
    lua_pushstring(L, sn);
    lua_setfield(L, -2, "servername");
  }
  lua_pushboolean(L, SSL_session_reused(tls->ssl));
  lua_setfield(L, -2, "resumed");
  peer = SSL_get0_peer_certificate(tls->ssl);
  lua_pushboolean(L, peer != NULL
                  && SSL_get_verify_mode(tls->ssl) != SSL_VERIFY_NONE
                  && SSL_get_verify_result(tls->ssl) == X509_V_OK);
  lua_setfield(L, -2, "verified");
  return 1;
}

/* --- uring.tls.context{...} --- */

static int is_pem (const char *s) { return strncmp(s, "-----BEGIN", 10) == 0; }

/* The context's failure: nil, "tls.context: what: why", errno.  what
 * names the option and, for a file, its path; never PEM text. */
static int ctx_fail (lua_State *L, const char *opt, const char *val, int en) {
  char why[160];
  unsigned long e = ERR_peek_last_error();
  if (en == ENOENT || en == EACCES) snprintf(why, sizeof why, "%s", strerror(en));
  else if (e && ERR_reason_error_string(e))
    snprintf(why, sizeof why, "%s", ERR_reason_error_string(e));
  else snprintf(why, sizeof why, "invalid");
  ERR_clear_error();
  luaL_pushfail(L);
  if (val && !is_pem(val))
    lua_pushfstring(L, "tls.context: %s %s: %s", opt, val, why);
  else
    lua_pushfstring(L, "tls.context: %s (PEM text): %s", opt, why);
  lua_pushinteger(L, en);
  return 3;
}

/* a file the option names must exist: say so plainly */
static int file_errno (const char *val) {
  struct stat st;
  if (is_pem(val)) return 0;
  if (stat(val, &st) != 0) return errno;
  return 0;
}

static int load_cert (SSL_CTX *ctx, const char *val) {
  BIO *b;
  X509 *x;
  int ok;
  if (!is_pem(val)) return SSL_CTX_use_certificate_chain_file(ctx, val) == 1;
  b = BIO_new_mem_buf(val, -1);
  if (b == NULL) return 0;
  x = PEM_read_bio_X509(b, NULL, NULL, NULL);
  ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
  X509_free(x);
  while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
    if (!SSL_CTX_add0_chain_cert(ctx, x)) {
      X509_free(x);
      ok = 0;
    }
  BIO_free(b);
  ERR_clear_error();            /* the chain's end reads as an error */
  return ok;
}

static int load_key (SSL_CTX *ctx, const char *val) {
  BIO *b;
  EVP_PKEY *k;
  int ok;
  if (!is_pem(val))
    return SSL_CTX_use_PrivateKey_file(ctx, val, SSL_FILETYPE_PEM) == 1;
  b = BIO_new_mem_buf(val, -1);
  if (b == NULL) return 0;
  k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
  ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;
  EVP_PKEY_free(k);
  BIO_free(b);
  return ok;
}

static int load_ca (SSL_CTX *ctx, const char *val, int server) {
  struct stat st;
  if (is_pem(val)) {
    BIO *b = BIO_new_mem_buf(val, -1);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509 *x;
    int n = 0;
    if (b == NULL) return 0;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
      if (X509_STORE_add_cert(store, x)) n++;
      if (server) SSL_CTX_add_client_CA(ctx, x);
      X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    return n > 0;
  }
  if (stat(val, &st) == 0 && S_ISDIR(st.st_mode))
    return SSL_CTX_load_verify_locations(ctx, NULL, val) == 1;
  if (SSL_CTX_load_verify_locations(ctx, val, NULL) != 1) return 0;
  if (server) SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(val));
  return 1;
}

static int version_of (lua_State *L, const char *key, const char *v) {
  if (strcmp(v, "1.2") == 0 || strcmp(v, "TLSv1.2") == 0) return TLS1_2_VERSION;
  if (strcmp(v, "1.3") == 0 || strcmp(v, "TLSv1.3") == 0) return TLS1_3_VERSION;
  return luaL_argerror(L, 1, lua_pushfstring(L, "%s: \"1.2\" or \"1.3\" "
                       "expected, got \"%s\"", key, v));
}

/* ALPN, server side: the first of our names the client offers (our
 * preference); none in common is a fatal no_application_protocol alert,
 * as RFC 7301 asks. */
static int alpn_select (SSL *ssl, const unsigned char **out,
                        unsigned char *outlen, const unsigned char *in,
                        unsigned inlen, void *arg) {
  ctx_extra *x = extra_of(SSL_get_SSL_CTX(ssl));
  (void)arg;
  if (x == NULL || x->alpnlen == 0) return SSL_TLSEXT_ERR_NOACK;
  for (unsigned i = 0; i < x->alpnlen; i += 1u + x->alpn[i])
    for (unsigned j = 0; j < inlen; j += 1u + in[j])
      if (in[j] == x->alpn[i] && j + 1u + in[j] <= inlen
          && memcmp(in + j + 1, x->alpn + i + 1, in[j]) == 0) {
        *out = in + j + 1;
        *outlen = in[j];
        return SSL_TLSEXT_ERR_OK;
      }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* SNI, server side: the context named for the host the client asks for
 * ("*.example.org" matches one label); none: the default one. */
static int sni_select (SSL *ssl, int *alert, void *arg) {
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  ctx_extra *x = (ctx_extra *)arg;
  (void)alert;
  if (name == NULL) return SSL_TLSEXT_ERR_OK;
  for (int i = 0; i < x->nsni; i++) {
    const char *p = x->sni[i].name, *dot = strchr(name, '.');
    if (strcasecmp(p, name) == 0
        || (p[0] == '*' && p[1] == '.' && dot && strcasecmp(p + 1, dot) == 0)) {
      SSL_set_SSL_CTX(ssl, x->sni[i].ctx);
      break;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

/* A client's new session (a TLS 1.3 ticket arrives after the handshake):
 * kept by server name, for the next connection to resume. */
static int new_session (SSL *ssl, SSL_SESSION *sess) {
  ur_tls *tls = (ur_tls *)SSL_get_ex_data(ssl, ssl_idx);
  ctx_extra *x = extra_of(SSL_get_SSL_CTX(ssl));
  int i;
  char *name;
  if (tls == NULL || tls->name == NULL || x == NULL) return 0;
  for (i = 0; i < x->nsess; i++)
    if (strcmp(x->sess[i].name, tls->name) == 0) {
      SSL_SESSION_free(x->sess[i].sess);
      x->sess[i].sess = sess;
      return 1;                 /* we keep the reference */
    }
  if ((name = strdup(tls->name)) == NULL) return 0;
  if (x->nsess < SESS_MAX) i = x->nsess++;
  else {                        /* full: the oldest goes */
    i = x->nextsess;
    x->nextsess = (x->nextsess + 1) % SESS_MAX;
    free(x->sess[i].name);
    SSL_SESSION_free(x->sess[i].sess);
  }
  x->sess[i].name = name;
  x->sess[i].sess = sess;
  return 1;
}

static tls_ctxud *newctxud (lua_State *L) {
  tls_ctxud *c = (tls_ctxud *)lua_newuserdatauv(L, sizeof *c, 0);
  c->ctx = NULL;                /* closed first: __gc of a half-made one */
  luaL_setmetatable(L, UR_TLSCTX_MT);
  return c;
}

static const char *const ctx_keys[] = {
  "mode", "cert", "key", "ca", "verify", "alpn", "sni", "min_version",
  "max_version", "ciphers", "ciphersuites", "tickets", NULL
};

/* an optional string field of the options */
static const char *optfield (lua_State *L, const char *key) {
  const char *v = NULL;
  int ty = lua_getfield(L, 1, key);
  if (ty == LUA_TSTRING) v = ur_tocstr(L, -1, 1, key);
  else if (ty != LUA_TNIL)
    luaL_argerror(L, 1, lua_pushfstring(L, "%s: string expected, got %s",
                                        key, luaL_typename(L, -1)));
  lua_pop(L, 1);                /* the table still anchors the string */
  return v;
}

/* uring.tls.context{mode =, cert =, key =, ca =, verify =, alpn =, sni =,
 *   min_version =, max_version =, ciphers =, ciphersuites =, tickets =}
 *   -> context | nil, msg, errno (a file that cannot be loaded) */
static int l_tls_context (lua_State *L) {
  static const char *const modes[] = {"server", "client", NULL};
  tls_ctxud *c;
  ctx_extra *x;
  SSL_CTX *ctx;
  const char *cert, *key, *ca, *ciphers, *suites, *v;
  int server, verify, tickets, en;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushnil(L);               /* unknown options are typos: say so */
  while (lua_next(L, 1)) {
    int known = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      for (int i = 0; ctx_keys[i]; i++)
        if (strcmp(lua_tostring(L, -1), ctx_keys[i]) == 0) known = 1;
    if (!known)
      return luaL_argerror(L, 1, lua_pushfstring(L, "unknown option '%s'",
                           luaL_tolstring(L, -1, NULL)));
  }
  if (lua_getfield(L, 1, "mode") != LUA_TSTRING)
    return luaL_argerror(L, 1, "mode: \"server\" or \"client\" expected");
  server = 0;
  if (strcmp(lua_tostring(L, -1), modes[0]) == 0) server = 1;
  else if (strcmp(lua_tostring(L, -1), modes[1]) != 0)
    return luaL_argerror(L, 1, "mode: \"server\" or \"client\" expected");
  lua_pop(L, 1);
  cert = optfield(L, "cert");
  key = optfield(L, "key");
  ca = optfield(L, "ca");
  ciphers = optfield(L, "ciphers");
  suites = optfield(L, "ciphersuites");
  lua_getfield(L, 1, "verify");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    return luaL_argerror(L, 1, "verify: boolean expected");
  verify = lua_isnil(L, -1) ? !server : lua_toboolean(L, -1);
  lua_getfield(L, 1, "tickets");
  tickets = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 2);
  if (server && (cert == NULL || key == NULL))
    return luaL_argerror(L, 1, "a server context needs cert and key");
  if ((cert == NULL) != (key == NULL))
    return luaL_argerror(L, 1, "cert and key go together");
  if (server && verify && ca == NULL)
    return luaL_argerror(L, 1, "verify: a server that checks client "
                         "certificates needs ca");
  c = newctxud(L);                                        /* 2 */
  ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  x = (ctx_extra *)calloc(1, sizeof *x);
  if (ctx == NULL || x == NULL || !SSL_CTX_set_ex_data(ctx, extra_idx, x)) {
    SSL_CTX_free(ctx);
    free(x);
    return luaL_error(L, "tls.context: not enough memory");
  }
  c->ctx = ctx;                 /* from here __gc frees ctx, and x with it */
  x->server = server;
  x->verify = verify;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION
                      | (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if ((v = optfield(L, "min_version")) != NULL)
    SSL_CTX_set_min_proto_version(ctx, version_of(L, "min_version", v));
  if ((v = optfield(L, "max_version")) != NULL)
    SSL_CTX_set_max_proto_version(ctx, version_of(L, "max_version", v));
  if (ciphers && SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
    return ctx_fail(L, "ciphers", ciphers, EINVAL);
  if (suites && SSL_CTX_set_ciphersuites(ctx, suites) != 1)
    return ctx_fail(L, "ciphersuites", suites, EINVAL);
  if (cert && (en = file_errno(cert), en || !load_cert(ctx, cert)))
    return ctx_fail(L, "cert", cert, en ? en : EINVAL);
  if (key && (en = file_errno(key), en || !load_key(ctx, key)))
    return ctx_fail(L, "key", key, en ? en : EINVAL);
  if (key && SSL_CTX_check_private_key(ctx) != 1)
    return ctx_fail(L, "key", key, EINVAL);
  if (ca && (en = file_errno(ca), en || !load_ca(ctx, ca, server)))
    return ctx_fail(L, "ca", ca, en ? en : EINVAL);
  if (!ca && !server && verify && SSL_CTX_set_default_verify_paths(ctx) != 1)
    return ctx_fail(L, "ca", "(system store)", EINVAL);
  if (verify)
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ?
                       SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
  if (server) {
    /* resumption with client certificates needs an id context */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"uring", 5);
    if (!tickets) {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(ctx, 0);
    }
  }
  else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT
                                   | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session);
  }
  switch (lua_getfield(L, 1, "alpn")) {   /* to wire format */
    case LUA_TNIL: break;
    case LUA_TSTRING: case LUA_TTABLE: {
      int list = lua_istable(L, -1);
      int n = list ? (int)luaL_len(L, -1) : 1;
      size_t total = 0, len;
      for (int pass = 0; pass < 2; pass++) {   /* measure, then copy */
        if (pass == 1) {
          x->alpn = (unsigned char *)malloc(total ? total : 1);
          if (x->alpn == NULL)
            return luaL_error(L, "tls.context: not enough memory");
        }
        for (int i = 1; i <= n; i++) {
          const char *p;
          if (list) lua_rawgeti(L, -1, i);
          else lua_pushvalue(L, -1);
          p = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len)
                                              : NULL;
          if (p == NULL || len == 0 || len > 255)
            return luaL_argerror(L, 1, "alpn: names of 1 to 255 bytes "
                                 "expected");
          if (pass == 1) {
            x->alpn[x->alpnlen] = (unsigned char)len;
            memcpy(x->alpn + x->alpnlen + 1, p, len);
            x->alpnlen += 1u + (unsigned)len;
          }
          else total += 1 + len;
          lua_pop(L, 1);
        }
      }
      if (x->alpnlen == 0)
        return luaL_argerror(L, 1, "alpn: at least one name expected");
      if (server) SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
      else if (SSL_CTX_set_alpn_protos(ctx, x->alpn, x->alpnlen) != 0)
        return luaL_error(L, "tls.context: not enough memory");
      break;
    }
    default:
      return luaL_argerror(L, 1, "alpn: list of names expected");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "sni") != LUA_TNIL) {
    int n = 0;
    if (!server || !lua_istable(L, -1))
      return luaL_argerror(L, 1, "sni: a table of server contexts by host "
                           "name expected (server mode)");
    lua_pushnil(L);
    while (lua_next(L, -2)) { n++; lua_pop(L, 1); }
    x->sni = (sni_ent *)calloc((size_t)n + 1, sizeof *x->sni);
    if (x->sni == NULL) return luaL_error(L, "tls.context: not enough memory");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      tls_ctxud *sub = testctx(L, -1);
      if (lua_type(L, -2) != LUA_TSTRING || sub == NULL
          || !extra_of(sub->ctx)->server)
        return luaL_argerror(L, 1, "sni: a table of server contexts by "
                             "host name expected (server mode)");
      x->sni[x->nsni].name = strdup(lua_tostring(L, -2));
      if (x->sni[x->nsni].name == NULL)
        return luaL_error(L, "tls.context: not enough memory");
      SSL_CTX_up_ref(sub->ctx);
      x->sni[x->nsni++].ctx = sub->ctx;
      lua_pop(L, 1);
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_select);
    SSL_CTX_set_tlsext_servername_arg(ctx, x);
  }
  lua_pop(L, 1);
  lua_settop(L, 2);
  return 1;
}

/* The default client context (connect{tls = true}, https): verifies
 * against the system store; one per Lua state, made on first use. */
static SSL_CTX *default_client (lua_State *L) {
  tls_ctxud *c;
  if (lua_getfield(L, LUA_REGISTRYINDEX, DEFAULT_KEY) == LUA_TUSERDATA) {
    c = testctx(L, -1);
    lua_pop(L, 1);
    return c->ctx;
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_tls_context);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "client");
  lua_setfield(L, -2, "mode");
  lua_call(L, 1, 3);
  if (lua_isnil(L, -3)) luaL_error(L, "tls: %s", lua_tostring(L, -2));
  lua_pop(L, 2);
  c = testctx(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, DEFAULT_KEY);
  return c->ctx;
}

/* core._tls_mode(v) -> "server" | "client" | nil: for the Lua layers'
 * argument checks (uring.http) */
static int l_tls_mode (lua_State *L) {
  tls_ctxud *c = testctx(L, 1);
  if (c == NULL || c->ctx == NULL) lua_pushnil(L);
  else lua_pushstring(L, extra_of(c->ctx)->server ? "server" : "client");
  return 1;
}

static int l_ctx_gc (lua_State *L) {
  tls_ctxud *c = (tls_ctxud *)luaL_checkudata(L, 1, UR_TLSCTX_MT);
  SSL_CTX_free(c->ctx);         /* its SSLs hold their own references */
  c->ctx = NULL;
  return 0;
}

static int l_ctx_tostring (lua_State *L) {
  tls_ctxud *c = (tls_ctxud *)luaL_checkudata(L, 1, UR_TLSCTX_MT);
  lua_pushfstring(L, "uring.tls.context (%s)",
                  c->ctx == NULL ? "closed"
                  : extra_of(c->ctx)->server ? "server" : "client");
  return 1;
}

void ur_register_tls (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_tls_context", l_tls_context}, {"_tls_mode", l_tls_mode},
    {NULL, NULL}
  };
  static const luaL_Reg sock_methods[] = {
    {"starttls", l_sock_starttls}, {"getpeercert", l_sock_getpeercert},
    {"tlsinfo", l_sock_tlsinfo}, {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_ctx_gc}, {"__tostring", l_ctx_tostring}, {NULL, NULL}
  };
  pthread_once(&idx_once, make_indexes);
  luaL_newmetatable(L, UR_TLSCTX_MT);
  luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
  if (lua_getfield(L, -1, "socket_methods") != LUA_TTABLE)
    luaL_error(L, "uring: internal error: tls.c registered before net.c");
  ur_setfuncs(L, sock_methods);
  lua_pop(L, 1);
}
