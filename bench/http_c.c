/*
 * bench/http_c.c: HTTP/1.1 keep-alive hello world on raw liburing: the
 * ceiling the Lua servers are measured against.
 *
 *   build/bench/http_c [port] [--seconds S] [--max-requests N] [--fixed]
 *
 * The protocol of the Lua bench servers (bench/http_uring.lua,
 * bench/http_luv.lua, bench/http_cqueues.lua, examples/http_hello.lua):
 * the request line and the headers are taken line by line out of the
 * connection's buffer (CRs dropped; pipelined requests answered in
 * order), a Content-Length body is skipped, "Hello, world!\n" goes back
 * with Content-Length, and the connection stays open unless the client
 * said "Connection: close" or spoke HTTP/1.0 without keep-alive; a
 * malformed request line (or a line longer than the buffer) gets a 400
 * and a close.  Prints "listening on 127.0.0.1:PORT" first (port 0: any).
 *
 * The ring is set up as the core's (ur_setup_ring in csrc/loop.c):
 * SUBMIT_ALL | COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN, CQ = 2 x SQ,
 * dropping flags on EINVAL.  One multishot ACCEPT; per connection one
 * RECV into its own buffer, then one SEND of every response the bytes
 * completed (a batch only when the client pipelines), then RECV again.
 * One io_uring_submit_and_wait per loop turn, CQEs reaped in a batch.
 *
 * --fixed: registered files.  A sparse file table; the multishot accept
 * puts each connection straight into it (IORING_FILE_INDEX_ALLOC: a direct
 * descriptor, no fd), RECV and SEND name it with IOSQE_FIXED_FILE, and
 * IORING_OP_CLOSE with the index closes it.  A direct descriptor has no fd
 * for setsockopt, so this mode leaves Nagle on (one response per request:
 * nothing waits on it).  bench/http.sh measures what the mode buys.
 */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ENTRIES 4096
#define RBUF    4096

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_TIMER };
enum { ST_LINE, ST_HEAD, ST_BODY };

typedef struct conn {
  int fd;
  int state, keep, head, closing;
  long clen;                  /* body bytes still to skip */
  size_t len;                 /* bytes in buf */
  char buf[RBUF];
  char *out;                  /* responses to send: out[sent..olen) */
  size_t olen, ocap, sent;
} conn;

static struct io_uring ring;
static int listen_fd;
static long served, max_requests = -1;
static int fixed;             /* --fixed: direct descriptors */

static const char BODY[] = "Hello, world!\n";
static char KEEP[160], CLOSE[160];
static size_t keep_len, close_len, body_len;
static const char BAD[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n";

static void *ud (void *p, int op) { return (void *)((uintptr_t)p | (uintptr_t)op); }

static struct io_uring_sqe *sqe_get (void) {
  struct io_uring_sqe *sqe;
  while ((sqe = io_uring_get_sqe(&ring)) == NULL) io_uring_submit(&ring);
  return sqe;
}

static void done (void) {
  printf("served %ld requests\n", served);
  fflush(stdout);
  exit(0);
}

static void arm_accept (void) {
  struct io_uring_sqe *sqe = sqe_get();
  if (fixed) io_uring_prep_multishot_accept_direct(sqe, listen_fd, NULL, NULL, 0);
  else io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data(sqe, ud(NULL, OP_ACCEPT));
}

static void post_recv (conn *c) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_recv(sqe, c->fd, c->buf + c->len, RBUF - c->len, 0);
  if (fixed) sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data(sqe, ud(c, OP_RECV));
}

static void post_send (conn *c) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_send(sqe, c->fd, c->out + c->sent, c->olen - c->sent,
                     MSG_NOSIGNAL);
  if (fixed) sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data(sqe, ud(c, OP_SEND));
}

static void conn_free (conn *c) {
  if (fixed) {                /* its CQE (user_data 0) is ignored */
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_close_direct(sqe, (unsigned)c->fd);
    io_uring_sqe_set_data(sqe, NULL);
  }
  else close(c->fd);
  free(c->out);
  free(c);
}

static void out_add (conn *c, const char *p, size_t n) {
  if (c->olen + n > c->ocap) {
    size_t cap = c->ocap ? c->ocap * 2 : 1024;
    while (cap < c->olen + n) cap *= 2;
    c->out = realloc(c->out, cap);
    if (c->out == NULL) { perror("realloc"); exit(1); }
    c->ocap = cap;
  }
  memcpy(c->out + c->olen, p, n);
  c->olen += n;
}

static void respond (conn *c) {
  size_t cut = c->head ? body_len : 0;       /* HEAD: headers only */
  if (c->keep) out_add(c, KEEP, keep_len - cut);
  else {
    out_add(c, CLOSE, close_len - cut);
    c->closing = 1;
  }
  served++;
  if (max_requests >= 0 && served >= max_requests) done();
  c->state = ST_LINE;
}

/* The checks of examples/http_hello.lua: a request line must end in
 * " HTTP/1.d"; "HTTP/1.0" means no keep-alive unless asked; "HEAD " gets
 * headers only. */
static int request_line (conn *c, const char *p, size_t n) {
  if (n < 9 || memcmp(p + n - 9, " HTTP/1.", 8) != 0 ||
      p[n - 1] < '0' || p[n - 1] > '9') return -1;
  c->keep = p[n - 1] != '0';
  c->head = n >= 5 && memcmp(p, "HEAD ", 5) == 0;
  c->clen = 0;
  return 0;
}

static const char *find_ci (const char *p, size_t n, const char *w, size_t wn) {
  for (size_t i = 0; i + wn <= n; i++)
    if (strncasecmp(p + i, w, wn) == 0) return p + i;
  return NULL;
}

/* Only a header starting with 'C'/'c' is looked at: Connection (close or
 * keep-alive anywhere in its value) and Content-Length. */
static void header (conn *c, const char *p, size_t n) {
  if (p[0] != 'C' && p[0] != 'c') return;
  if (n >= 11 && strncasecmp(p, "connection:", 11) == 0) {
    if (find_ci(p + 11, n - 11, "close", 5)) c->keep = 0;
    else if (find_ci(p + 11, n - 11, "keep-alive", 10)) c->keep = 1;
  }
  else if (n >= 15 && strncasecmp(p, "content-length:", 15) == 0) {
    size_t i = 15;
    long v = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
    while (i < n && p[i] >= '0' && p[i] <= '9' && v < 1L << 40)
      v = v * 10 + (p[i++] - '0');
    c->clen = v;
  }
}

/* Take every complete line (and body) out of c->buf; responses go to
 * c->out.  Returns 0, or -1 for a malformed request (400 queued). */
static int parse (conn *c) {
  size_t pos = 0;
  while (pos < c->len && !c->closing) {
    if (c->state == ST_BODY) {
      size_t have = c->len - pos;
      if ((long)have < c->clen) {
        c->clen -= (long)have;
        pos = c->len;
        break;
      }
      pos += (size_t)c->clen;
      c->clen = 0;
      respond(c);
      continue;
    }
    char *p = c->buf + pos, *nl = memchr(p, '\n', c->len - pos);
    if (nl == NULL) break;
    size_t n = (size_t)(nl - p);
    pos += n + 1;
    /* drop CRs as LuaSocket's "*l" does (in place; usually just the last) */
    if (n && p[n - 1] == '\r') n--;
    if (memchr(p, '\r', n)) {
      size_t k = 0;
      for (size_t i = 0; i < n; i++) if (p[i] != '\r') p[k++] = p[i];
      n = k;
    }
    if (c->state == ST_LINE) {
      if (n == 0) continue;                 /* blank lines between requests */
      if (request_line(c, p, n) < 0) {
        out_add(c, BAD, sizeof BAD - 1);
        c->closing = 1;
        return -1;
      }
      c->state = ST_HEAD;
    }
    else if (n == 0) {                      /* end of the headers */
      if (c->clen > 0) c->state = ST_BODY;
      else respond(c);
    }
    else header(c, p, n);
  }
  if (pos > 0) {
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
  }
  if (c->len == RBUF && !c->closing) {       /* a line longer than the buffer */
    out_add(c, BAD, sizeof BAD - 1);
    c->closing = 1;
    return -1;
  }
  return 0;
}

static void on_cqe (struct io_uring_cqe *cqe) {
  uintptr_t u = (uintptr_t)io_uring_cqe_get_data(cqe);
  int op = (int)(u & 7), res = cqe->res;
  conn *c = (conn *)(u & ~(uintptr_t)7);
  switch (op) {
  case OP_ACCEPT:
    if (res >= 0) {
      int one = 1;
      conn *n = calloc(1, sizeof *n);
      if (n == NULL) { if (!fixed) close(res); break; }
      if (!fixed) setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      n->fd = res;
      post_recv(n);
    }
    if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept();
    break;
  case OP_RECV:
    if (res == -EINTR || res == -EAGAIN) { post_recv(c); break; }
    if (res <= 0) { conn_free(c); break; }
    c->len += (size_t)res;
    parse(c);
    if (c->olen > c->sent) post_send(c);
    else post_recv(c);
    break;
  case OP_SEND:
    if (res == -EINTR || res == -EAGAIN) { post_send(c); break; }
    if (res < 0) { conn_free(c); break; }
    c->sent += (size_t)res;
    if (c->sent < c->olen) { post_send(c); break; }   /* short send */
    c->sent = c->olen = 0;
    if (c->closing) { conn_free(c); break; }
    post_recv(c);
    break;
  case OP_TIMER:
    done();
  }
}

static int setup_ring (void) {
  static const unsigned ladder[] = {
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
      IORING_SETUP_SINGLE_ISSUER,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_SUBMIT_ALL,
    0,
  };
  int ret = -EINVAL;
  for (size_t i = 0; i < sizeof ladder / sizeof ladder[0]; i++) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = ladder[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
    p.cq_entries = ENTRIES * 2;
    ret = io_uring_queue_init_params(ENTRIES, &ring, &p);
    if (ret != -EINVAL) return ret;
  }
  return ret;
}

int main (int argc, char **argv) {
  int port = 8080, ret, one = 1;
  double seconds = -1;
  struct sockaddr_in sa;
  socklen_t sl = sizeof sa;
  static struct __kernel_timespec ts;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
      seconds = atof(argv[++i]);
    else if (strcmp(argv[i], "--max-requests") == 0 && i + 1 < argc)
      max_requests = atol(argv[++i]);
    else if (strcmp(argv[i], "--fixed") == 0) fixed = 1;
    else if (argv[i][0] >= '0' && argv[i][0] <= '9') port = atoi(argv[i]);
    else {
      fprintf(stderr, "usage: http_c [port] [--seconds S] [--max-requests N] [--fixed]\n");
      return 2;
    }
  }
  /* byte for byte the responses of examples/http_hello.lua */
  body_len = sizeof BODY - 1;
  keep_len = (size_t)snprintf(KEEP, sizeof KEEP,
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
    "Connection: keep-alive\r\n\r\n%s", body_len, BODY);
  close_len = (size_t)snprintf(CLOSE, sizeof CLOSE,
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
    "Connection: close\r\n\r\n%s", body_len, BODY);

  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) { perror("socket"); return 1; }
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      listen(listen_fd, 511) != 0 ||
      getsockname(listen_fd, (struct sockaddr *)&sa, &sl) != 0) {
    perror("bind/listen");
    return 1;
  }
  if ((ret = setup_ring()) < 0) {
    fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
    return 1;
  }
  if (fixed && (ret = io_uring_register_files_sparse(&ring, 4096)) < 0) {
    fprintf(stderr, "io_uring_register_files_sparse: %s\n", strerror(-ret));
    return 1;
  }
  printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
  fflush(stdout);

  arm_accept();
  if (seconds >= 0) {
    struct io_uring_sqe *sqe = sqe_get();
    ts.tv_sec = (long long)seconds;
    ts.tv_nsec = (long long)((seconds - (double)ts.tv_sec) * 1e9);
    io_uring_prep_timeout(sqe, &ts, 0, 0);
    io_uring_sqe_set_data(sqe, ud(NULL, OP_TIMER));
  }
  for (;;) {
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    ret = io_uring_submit_and_wait(&ring, 1);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
      fprintf(stderr, "io_uring_submit_and_wait: %s\n", strerror(-ret));
      return 1;
    }
    /* handlers only prepare SQEs (submitted next turn), never reap */
    io_uring_for_each_cqe(&ring, head, cqe) {
      on_cqe(cqe);
      n++;
    }
    io_uring_cq_advance(&ring, n);
  }
}
