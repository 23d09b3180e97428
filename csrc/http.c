/*
 * http.c: HTTP/1.x request heads for uring.http and sock:receive_head:
 * the parser, and the socket methods that feed it.
 *
 * sock:_take_request (uring.http's reader) and sock:receive_head (for a
 * hand-written server) find a whole head in the socket's buffer
 * (head_len) and have it checked and parsed (push_head) into what the
 * server needs: a request table (method, target, path, query, version),
 * the keep-alive verdict and the body framing.  One call per request
 * instead of a Lua call per line.  The socket is net.c's: these methods
 * see its receive buffer and receive op through the ur_sock_* functions
 * only, and join its method table at registration.  The headers table
 * is made only when a handler asks for req.headers (core._http_headers):
 * a hello-world handler never pays for it.  Input is untrusted: every
 * byte is checked, nothing is read past the head, and a malformed head
 * yields a status code (400, 414, 431), not an error.
 */
#include <errno.h>
#include <string.h>

#include "uring.h"

/* RFC 9110 tchar: the bytes of a method or a header name */
static const unsigned char tchar[256] = {
  ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
  ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
  ['`'] = 1, ['|'] = 1, ['~'] = 1,
  ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
  ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
  ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
  ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
  ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
  ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
  ['Y'] = 1, ['Z'] = 1,
  ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
  ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
  ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
  ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
  ['y'] = 1, ['z'] = 1,
};

/* the bytes a header value may not hold: controls but HT, and DEL (one
 * table lookup a byte: every value of every head is checked) */
static const unsigned char vbad[256] = {
  [0 ... 8] = 1, [10 ... 31] = 1, [127] = 1
};

static int lower_ascii (int c) {
  return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* does v[0..n) contain word (lower case), in any case? */
static int has_word (const char *v, size_t n, const char *word) {
  size_t w = strlen(word);
  for (size_t i = 0; i + w <= n; i++) {
    size_t k = 0;
    while (k < w && lower_ascii((unsigned char)v[i + k]) == word[k]) k++;
    if (k == w) return 1;
  }
  return 0;
}

/* The length of the head at buf[0..len) through its blank line, or 0 if
 * it has not all arrived.  A line ends with LF (a CR before it is
 * dropped later).  *scan is the start of the first line not yet seen
 * whole: a later call resumes there rather than rescanning; *first gets
 * the request line's length (LF included) once it is complete, else 0. */
static size_t head_len (const char *buf, size_t len, size_t *scan,
                        size_t *first) {
  size_t off = *scan;
  const char *nl = memchr(buf, '\n', len);
  *first = nl ? (size_t)(nl - buf) + 1 : 0;
  if (off == 0) {
    if (nl == NULL) return 0;
    off = *first;
  }
  while (off < len) {
    size_t line;
    nl = memchr(buf + off, '\n', len - off);
    if (nl == NULL) break;
    line = (size_t)(nl - (buf + off));
    if (line == 0 || (line == 1 && buf[off] == '\r')) {
      *scan = 0;
      return off + line + 1;
    }
    off += line + 1;
  }
  *scan = off;
  return 0;
}

/* The status for a head still incomplete at len bytes, given the request
 * line's length (first, 0 if not whole): 414 for a request line over max
 * bytes, 431 for a header section over max, 0 to wait for more. */
static int too_big (size_t len, size_t first, size_t max) {
  if (first == 0) return len > max + 2 ? 414 : 0;
  if (first > max + 2) return 414;
  return len - first > max + 2 ? 431 : 0;
}

/* One header line p[0..end) (no CR LF): the name's length, or 0 if the
 * line is malformed (obs-fold, no colon, a non-token name, a control
 * byte but HT in the value); *v, *ve: the value, trimmed. */
static size_t header_line (const char *p, const char *end, const char **v,
                           const char **ve) {
  size_t n = 0;
  const char *a, *b;
  while (p + n < end && tchar[(unsigned char)p[n]]) n++;
  if (n == 0 || p + n == end || p[n] != ':') return 0;
  a = p + n + 1;
  while (a < end && (*a == ' ' || *a == '\t')) a++;
  b = end;
  while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
  for (const unsigned char *c = (const unsigned char *)a;
       c < (const unsigned char *)b; c++)
    if (vbad[*c]) return 0;
  *v = a;
  *ve = b;
  return n;
}

/* the name p[0..n) is `lname` (lower case), in any case */
static int name_is (const char *p, size_t n, const char *lname, size_t ln) {
  if (n != ln) return 0;
  for (size_t i = 0; i < n; i++)
    if (lower_ascii((unsigned char)p[i]) != lname[i]) return 0;
  return 1;
}

/* A header the server reads itself (Transfer-Encoding, Expect): its
 * value, and whether the name came more than once (then the values are
 * joined for Lua, as req.headers joins them) */
typedef struct seen { const char *v; size_t n; int again; } seen;

static void see (seen *f, const char *v, size_t n) {
  if (f->v == NULL) { f->v = v; f->n = n; }
  else f->again = 1;
}

/* push the value of f (nil if absent); a repeated name: every value of
 * lname in the header lines h[0..n), joined with ", " */
static void push_seen (lua_State *L, const seen *f, const char *h,
                       size_t n, const char *lname, size_t ln) {
  const char *e = h + n;
  int parts = 0;
  if (f->v == NULL) { lua_pushnil(L); return; }
  if (!f->again) { lua_pushlstring(L, f->v, f->n); return; }
  while (h < e) {
    const char *nl = (const char *)memchr(h, '\n', (size_t)(e - h));
    const char *end = nl ? nl : e, *v, *ve;
    size_t nlen;
    if (end > h && end[-1] == '\r') end--;
    nlen = header_line(h, end, &v, &ve);
    if (nlen > 0 && name_is(h, nlen, lname, ln)) {
      if (parts++ > 0) lua_pushliteral(L, ", ");
      lua_pushlstring(L, v, (size_t)(ve - v));
      if (parts > 1) lua_concat(L, 3);
    }
    if (!nl) break;
    h = nl + 1;
  }
}

/* What parse_head found in a head p[0..n): where the request line's
 * parts end, and what the server itself needs of the header lines. */
typedef struct head_info {
  size_t sp1, sp2, q;           /* method | target | version; q: '?' or sp2 */
  const char *h, *e;            /* the header lines, blank line included */
  int v10, keep;
  lua_Integer clen;             /* Content-Length, -1 if none */
  seen te, expect;
} head_info;

/* Check the head p[0..n) (n from head_len: whole) and find its parts: 0,
 * or the status for a head that is malformed (400) or too big (414,
 * 431).  Every header line is checked here, so a bad one is refused
 * before the handler runs.  Not whole: p[0..n) are the bytes buffered,
 * where a whole head usually is (one receive brings it); 0 when a good
 * head ends there (hi->e is its end), else -1, and head_len then finds
 * the end (resuming where it left off, so a head that comes in pieces is
 * not scanned again from its start) and this parses the head whole, so
 * the status is the same either way.  One pass instead of two. */
#define BAD(status) return whole ? (status) : -1
static int parse_head (const char *p, size_t n, size_t max, head_info *hi,
                       int whole) {
  int saw_close = 0, saw_keep = 0;
  size_t sp1, sp2, line, q;
  const char *e = p + n, *lf = (const char *)memchr(p, '\n', n), *h;
  hi->te.v = hi->expect.v = NULL;
  hi->te.again = hi->expect.again = 0;
  hi->clen = -1;
  /* the request line: METHOD SP target SP HTTP/1.d */
  if (lf == NULL) return -1;                 /* (whole: never) */
  line = (size_t)(lf - p);
  if (line > 0 && p[line - 1] == '\r') line--;
  if (line > max) BAD(414);
  for (sp1 = 0; sp1 < line && tchar[(unsigned char)p[sp1]]; sp1++) {}
  if (sp1 == 0 || sp1 >= line || p[sp1] != ' ') BAD(400);
  for (sp2 = sp1 + 1; sp2 < line; sp2++) {
    unsigned char c = (unsigned char)p[sp2];
    if (c <= ' ' || c == 0x7f) break;
  }
  if (sp2 == sp1 + 1 || sp2 + 9 != line || p[sp2] != ' '
      || memcmp(p + sp2 + 1, "HTTP/1.", 7) != 0
      || p[line - 1] < '0' || p[line - 1] > '9')
    BAD(400);
  hi->v10 = p[line - 1] == '0';
  h = lf + 1;
  if (whole && (size_t)(e - h) > max + 2) return 431;
  /* the header lines, up to the blank one: checked, and the few the
   * server itself needs read */
  for (const char *l = h;;) {
    const char *nl = (const char *)memchr(l, '\n', (size_t)(e - l));
    const char *end = nl, *v, *ve;
    size_t nlen;
    if (nl == NULL) return -1;                 /* (whole: never) */
    if (end > l && end[-1] == '\r') end--;
    if (end == l) {                                    /* the blank line */
      e = nl + 1;
      break;
    }
    nlen = header_line(l, end, &v, &ve);
    if (nlen == 0) BAD(400);
    switch (nlen) {
      case 14:
        if (name_is(l, nlen, "content-length", 14)) {
          lua_Integer len = 0;
          if (v == ve) BAD(400);
          for (const char *c = v; c < ve; c++) {
            if (*c < '0' || *c > '9') BAD(400);
            if (len < ((lua_Integer)1 << 52)) len = len * 10 + (*c - '0');
          }
          if (hi->clen >= 0 && hi->clen != len) BAD(400);
          hi->clen = len;
        }
        break;
      case 10:
        if (name_is(l, nlen, "connection", 10)) {
          if (has_word(v, (size_t)(ve - v), "close")) saw_close = 1;
          else if (has_word(v, (size_t)(ve - v), "keep-alive")) saw_keep = 1;
        }
        break;
      case 17:
        if (name_is(l, nlen, "transfer-encoding", 17))
          see(&hi->te, v, (size_t)(ve - v));
        break;
      case 6:
        if (name_is(l, nlen, "expect", 6))
          see(&hi->expect, v, (size_t)(ve - v));
        break;
      default: break;
    }
    l = nl + 1;
  }
  if (!whole && (size_t)(e - h) > max + 2) return -1;      /* 431 */
  q = sp1 + 1;
  while (q < sp2 && p[q] != '?') q++;
  hi->sp1 = sp1;
  hi->sp2 = sp2;
  hi->q = q;
  hi->h = h;
  hi->e = e;
  hi->keep = saw_close ? 0 : saw_keep ? 1 : !hi->v10;
  return 0;
}
#undef BAD

/* Push what parse_head found in the head p[...]:
 *   method, target, path|nil, query|nil, v10, lines, keep, length|nil,
 *   transfer-encoding|nil, expect|nil
 * (path and query only when the target has a "?") where lines are the
 * header lines as they came (uring.http makes req.headers of them when
 * first asked, with core._http_headers).  (Ten results rather than a
 * request table: Lua's table constructor builds it for less than
 * lua_setfield would.) */
static int push_head (lua_State *L, const char *p, const head_info *hi) {
  size_t sp1 = hi->sp1, sp2 = hi->sp2, q = hi->q;
  const char *h = hi->h, *e = hi->e;
  luaL_checkstack(L, 14, NULL);
  lua_pushlstring(L, p, sp1);                          /* method */
  lua_pushlstring(L, p + sp1 + 1, sp2 - sp1 - 1);      /* target */
  if (q == sp2) {                  /* no query: the path is the target */
    lua_pushnil(L);
    lua_pushnil(L);
  }
  else {
    lua_pushlstring(L, p + sp1 + 1, q - sp1 - 1);
    lua_pushlstring(L, p + q + 1, sp2 - q - 1);
  }
  lua_pushboolean(L, hi->v10);
  lua_pushlstring(L, h, (size_t)(e - h));              /* header lines */
  lua_pushboolean(L, hi->keep);
  if (hi->clen >= 0) lua_pushinteger(L, hi->clen);
  else lua_pushnil(L);
  push_seen(L, &hi->te, h, (size_t)(e - h), "transfer-encoding", 17);
  push_seen(L, &hi->expect, h, (size_t)(e - h), "expect", 6);
  return 10;
}

/* A head's text as sock:_serve leaves it in req[1] starts with the
 * request line (METHOD SP ...); the Lua loop's holds the header lines
 * alone.  In a checked head a request line's method ends at a space and a
 * header line's name at a colon, so the two tell apart.  The header lines
 * of p[0..*n) returned, *n updated. */
static const char *header_lines (const char *p, size_t *n) {
  size_t i = 0;
  const char *lf;
  while (i < *n && tchar[(unsigned char)p[i]]) i++;
  if (i == 0 || i == *n || p[i] != ' ') return p;
  lf = (const char *)memchr(p + i, '\n', *n - i);
  if (lf == NULL) { *n = 0; return p + i; }
  *n -= (size_t)(lf + 1 - p);
  return lf + 1;
}

/* Push the table of header lines p[0..n) (checked by parse_head): names
 * lower-cased, values trimmed, a repeated name's values joined with ", "
 * (Content-Length's, all equal, kept once); the metatable at index mt.
 * Lines that do not parse are skipped (none do, coming from a checked
 * head). */
static void push_headers (lua_State *L, const char *p, size_t n, int mt) {
  const char *e = p + n;
  char name[64];
  int t;
  lua_createtable(L, 0, 8);
  t = lua_gettop(L);
  while (p < e) {
    const char *nl = (const char *)memchr(p, '\n', (size_t)(e - p));
    const char *end = nl ? nl : e, *v, *ve;
    size_t nlen;
    if (end > p && end[-1] == '\r') end--;
    nlen = header_line(p, end, &v, &ve);
    if (nlen > 0) {
      if (nlen <= sizeof name) {
        for (size_t i = 0; i < nlen; i++) name[i] = (char)lower_ascii((unsigned char)p[i]);
        lua_pushlstring(L, name, nlen);
      }
      else {                   /* a long name: lower-cased by Lua's rules */
        luaL_Buffer b;
        char *d = luaL_buffinitsize(L, &b, nlen);
        for (size_t i = 0; i < nlen; i++) d[i] = (char)lower_ascii((unsigned char)p[i]);
        luaL_pushresultsize(&b, nlen);
      }
      lua_pushvalue(L, -1);
      if (lua_rawget(L, t) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_rawset(L, t);
      }
      else if (nlen == 14 && name_is(p, nlen, "content-length", 14))
        lua_pop(L, 2);
      else {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
        lua_rawset(L, t);
      }
    }
    if (!nl) break;
    p = nl + 1;
  }
  lua_pushvalue(L, mt);
  lua_setmetatable(L, t);
}

/* core._http_headers(lines, mt) -> headers: the table of a head's header
 * lines (a request line before them skipped), metatable mt */
static int l_http_headers (lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  p = header_lines(p, &n);
  push_headers(L, p, n, 2);
  return 1;
}

/* --- a request's fields, worked out when first read ---
 *
 * sock:_serve makes a request with two values, in its array part: [1]
 * the head's text (request line first) and [2] the socket
 * (UR_REQ_HEAD, UR_REQ_SOCKET).  Everything else a handler may read is
 * worked out from the head by Request.__index, here: a request whose
 * handler reads nothing (a hello world) pays a table and its two array
 * slots, where setting method and target cost two more interned strings
 * and two more keys (~1,000 instructions of ~8,400, bench/README.md),
 * and two named keys ~300 more than the two slots.  The rule: a field a
 * request does not hold is worked out from its head when read. */

/* upvalues of Request.__index and of the fields function: the Request
 * table, req.headers' metatable, then the keys (pushed from here: a C
 * string would be looked up in Lua's string cache each time) */
enum { RQ_REQUEST = 1, RQ_HEADERS_MT, RQ_SOCKET, RQ_METHOD, RQ_TARGET,
       RQ_PATH, RQ_QUERY, RQ_VERSION, RQ_COUNT = RQ_VERSION };
static const char *const rq_keys[] = {
  "socket", "method", "target", "path", "query", "version"
};

/* req[key], pushed; its type returned */
static int rq_get (lua_State *L, int req, int key) {
  lua_pushvalue(L, lua_upvalueindex(key));
  return lua_rawget(L, req);
}

/* req[key] = the value on top (popped) unless req holds one */
static void rq_set_absent_top (lua_State *L, int req, int key) {
  if (rq_get(L, req, key) == LUA_TNIL) {
    lua_pushvalue(L, lua_upvalueindex(key));
    lua_pushvalue(L, -3);
    lua_rawset(L, req);
  }
  lua_pop(L, 2);
}

/* req[key] = p[0..n) unless req holds it */
static void rq_set_absent (lua_State *L, int req, int key, const char *p,
                           size_t n) {
  lua_pushlstring(L, p, n);
  rq_set_absent_top(L, req, key);
}

/* The request line at the start of req's head (pushed, as the parts'
 * anchor): METHOD SP target SP HTTP/1.d, as parse_head checked it.
 * NULL (nothing pushed) for a request without one: the Lua loop's,
 * which holds the line's parts as fields.  The scans stay inside the
 * line: a handler may have put any string in req[1]. */
typedef struct req_line { size_t sp1, sp2, q; int v10; } req_line;

static const char *request_line (lua_State *L, int req, req_line *rl) {
  size_t n, all, line, sp1 = 0, sp2, q;
  const char *p;
  if (lua_rawgeti(L, req, UR_REQ_HEAD) != LUA_TSTRING) {
    lua_pop(L, 1);
    return NULL;
  }
  p = lua_tolstring(L, -1, &all);
  n = all;
  if (header_lines(p, &n) == p) { lua_pop(L, 1); return NULL; }
  line = all - n;                         /* the request line, LF included */
  if (line > 0 && p[line - 1] == '\n') line--;
  if (line > 0 && p[line - 1] == '\r') line--;
  while (sp1 < line && p[sp1] != ' ') sp1++;
  for (sp2 = sp1 + 1; sp2 < line && p[sp2] != ' '; sp2++) {}
  for (q = sp1 + 1; q < sp2 && p[q] != '?'; q++) {}
  rl->sp1 = sp1;
  rl->sp2 = sp2;
  rl->q = q;
  rl->v10 = sp2 + 8 < line && p[sp2 + 8] == '0';
  return p;
}

/* For pairs(req): what req lacks of the request line's parts set as the
 * Lua loop once set them (method, target; path and query for a target
 * with '?'; version "1.0" for HTTP/1.0), and socket; what it holds (the
 * handler's own) kept. */
static void request_fields (lua_State *L, int req) {
  req_line rl;
  const char *p;
  lua_rawgeti(L, req, UR_REQ_SOCKET);
  rq_set_absent_top(L, req, RQ_SOCKET);
  if ((p = request_line(L, req, &rl)) == NULL) return;
  rq_set_absent(L, req, RQ_METHOD, p, rl.sp1);
  rq_set_absent(L, req, RQ_TARGET, p + rl.sp1 + 1, rl.sp2 - rl.sp1 - 1);
  if (rl.q < rl.sp2) {
    rq_set_absent(L, req, RQ_PATH, p + rl.sp1 + 1, rl.q - rl.sp1 - 1);
    rq_set_absent(L, req, RQ_QUERY, p + rl.q + 1, rl.sp2 - rl.q - 1);
  }
  if (rl.v10) rq_set_absent(L, req, RQ_VERSION, "1.0", 3);
  lua_pop(L, 1);                                       /* the head */
}

/* fields(req): request_fields, for Request.__pairs, so pairs(req) lists
 * what a request made by the Lua loop holds */
static int l_request_fields (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  request_fields(L, 1);
  return 0;
}

/* Request.__index(req, k): a field req does not hold: method, target,
 * path (the target when it has no query), query, version ("1.1" unless
 * HTTP/1.0), from the request line; body (""); socket (req[2]); headers
 * (made from the head, then held); anything else from Request (its
 * methods).  The line's
 * parts are worked out per read and not stored: a table that grows costs
 * more than a handler reading a field once or twice (a router: method
 * and path). */
static int l_request_index (lua_State *L) {
  size_t kl;
  const char *k, *p;
  req_line rl;
  if (!lua_istable(L, 1))
    return luaL_error(L, "bad argument #1 to '__index' (request expected, got %s)",
                      luaL_typename(L, 1));
  lua_settop(L, 2);
  if (lua_type(L, 2) != LUA_TSTRING) goto methods;
  k = lua_tolstring(L, 2, &kl);
  switch (kl) {
    case 4:
      if (memcmp(k, "path", 4) == 0) {
        p = request_line(L, 1, &rl);
        if (p != NULL && rl.q < rl.sp2)         /* before the query */
          lua_pushlstring(L, p + rl.sp1 + 1, rl.q - rl.sp1 - 1);
        else if (rq_get(L, 1, RQ_TARGET) == LUA_TNIL && p != NULL)
          lua_pushlstring(L, p + rl.sp1 + 1, rl.sp2 - rl.sp1 - 1);
        return 1;                               /* (else the target) */
      }
      if (memcmp(k, "body", 4) == 0) {
        lua_pushliteral(L, "");
        return 1;
      }
      break;
    case 5:
      if (memcmp(k, "query", 5) == 0) {
        p = request_line(L, 1, &rl);
        if (p != NULL && rl.q < rl.sp2)
          lua_pushlstring(L, p + rl.q + 1, rl.sp2 - rl.q - 1);
        else lua_pushnil(L);
        return 1;
      }
      break;
    case 6:
      if (memcmp(k, "method", 6) == 0) {
        if ((p = request_line(L, 1, &rl)) != NULL) lua_pushlstring(L, p, rl.sp1);
        else lua_pushnil(L);
        return 1;
      }
      if (memcmp(k, "socket", 6) == 0) {
        lua_rawgeti(L, 1, UR_REQ_SOCKET);
        return 1;
      }
      if (memcmp(k, "target", 6) == 0) {
        if ((p = request_line(L, 1, &rl)) != NULL)
          lua_pushlstring(L, p + rl.sp1 + 1, rl.sp2 - rl.sp1 - 1);
        else lua_pushnil(L);
        return 1;
      }
      break;
    case 7:
      if (memcmp(k, "version", 7) == 0) {
        p = request_line(L, 1, &rl);
        if (p != NULL && rl.v10) lua_pushliteral(L, "1.0");
        else lua_pushliteral(L, "1.1");
        return 1;
      }
      if (memcmp(k, "headers", 7) == 0) {
        size_t n = 0;
        p = "";
        if (lua_rawgeti(L, 1, UR_REQ_HEAD) == LUA_TSTRING) {
          p = lua_tolstring(L, -1, &n);
          p = header_lines(p, &n);
        }
        push_headers(L, p, n, lua_upvalueindex(RQ_HEADERS_MT));
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -2);
        lua_rawset(L, 1);
        return 1;
      }
      break;
    default: break;
  }
methods:
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(RQ_REQUEST));
  return 1;
}

/* next(req, k) for pairs(req): the two array slots are the request's
 * own (its head and socket), not fields: skipped */
static int l_request_next (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  while (lua_next(L, 1)) {
    if (lua_isinteger(L, -2)) {
      lua_Integer i = lua_tointeger(L, -2);
      if (i == UR_REQ_HEAD || i == UR_REQ_SOCKET) {
        lua_pop(L, 1);
        continue;
      }
    }
    return 2;
  }
  lua_pushnil(L);
  return 1;
}

/* core._request_index(Request, headers_mt) -> Request.__index, fields,
 * next: the three functions above, over those tables */
static int l_request_index_new (lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  for (int i = 0; i < RQ_COUNT - RQ_HEADERS_MT; i++)
    lua_pushstring(L, rq_keys[i]);
  lua_pushcclosure(L, l_request_index, RQ_COUNT);
  for (int i = 1; i <= RQ_COUNT; i++) lua_getupvalue(L, -i, i);
  lua_pushcclosure(L, l_request_fields, RQ_COUNT);
  lua_pushcfunction(L, l_request_next);
  return 3;
}

/* --- the socket entry points: a head taken from a socket's buffer ---
 *
 * They reach the socket only through net.c's ur_sock_* functions (its
 * receive buffer and its receive op), so the socket stays net.c's. */

/* Find and parse a whole request head in the buffer (blank lines before
 * it are skipped): its length, with *pp at it and hi filled; 0 for part
 * of one (fill and call again), with *status set for a head too big
 * already (414, 431), or for a bad one (400, 414, 431: hi not filled);
 * -1 for nothing buffered.  known (NULL: none): a good head's text,
 * checked with this max: when the buffer starts with it, it is the head
 * (its end is its first blank line), hi is not filled, *status is -1. */
static long take_head (ur_sock *s, size_t max, const char **pp,
                       int *status, head_info *hi, const char *known,
                       size_t known_n) {
  size_t len, head, first, *mark;
  const char *p = ur_sock_buffered(s, &len);
  *status = 0;
  while (len > 0) {             /* blank lines between requests */
    if (p[0] == '\n') ur_sock_consume(s, 1);
    else if (p[0] == '\r' && len > 1 && p[1] == '\n') ur_sock_consume(s, 2);
    else break;
    p = ur_sock_buffered(s, &len);
  }
  if (len == 0) return -1;
  *pp = p;
  mark = ur_sock_mark(s);
  /* a keep-alive client's usual: the head it sent last time, again */
  if (known != NULL && len >= known_n && memcmp(p, known, known_n) == 0) {
    *mark = 0;
    *status = -1;
    return (long)known_n;
  }
  /* the usual: a good head, whole, in what the receive brought (not when
   * an earlier look found a part of it: head_len resumes there) */
  if (*mark == 0 && parse_head(p, len, max, hi, 0) == 0)
    return (long)(hi->e - p);
  head = head_len(p, len, mark, &first);
  if (head == 0) {
    *status = too_big(len, first, max);
    return 0;
  }
  *status = parse_head(p, head, max, hi, 1);
  return *status ? 0 : (long)head;
}

/* Take a whole request head from the buffer: > 1, the results of
 * push_head pushed; 1, a bad head's status (400, 414, 431) pushed, the
 * head left buffered; 0, part of a head (fill and call again); -1,
 * nothing buffered.  Pushes nothing for 0 and -1. */
int ur_http_take_request (lua_State *L, ur_sock *s, size_t max) {
  const char *p = NULL;
  head_info hi;
  int status;
  long head = take_head(s, max, &p, &status, &hi, NULL, 0);
  if (head <= 0) {
    if (status == 0) return head < 0 ? -1 : 0;
    lua_pushinteger(L, status);
    return 1;
  }
  push_head(L, p, &hi);
  ur_sock_consume(s, (size_t)head);        /* parsed: the head is taken */
  return 10;
}

/* The same for sock:_serve (http_serve.c), which builds a request of a
 * head without a body itself: for one, UR_HEAD_BARE with the head's text
 * pushed (the request line and the header lines, as they came: the
 * Request metatable works out method, target and the rest from it when
 * a handler asks, so a request that asks for none makes one string)
 * and *r filled; a head with a body is push_head's, as above.  A text
 * the same as r->last is not pushed (r->same): a keep-alive client
 * sends the same head again and again, and the string the caller kept
 * of it costs no allocation, copy or collection (a memcmp instead);
 * found at the start of the buffer, it is not even parsed again (its
 * flags are r's already). */
int ur_http_take_serve (lua_State *L, ur_sock *s, size_t max,
                        ur_http_head *r) {
  const char *p = NULL;
  head_info hi;
  int status;
  long head = take_head(s, max, &p, &status, &hi,
                        r->last_max == max ? r->last : NULL, r->last_n);
  if (status < 0) {             /* the last head again: r's flags hold */
    r->same = 1;
    ur_sock_consume(s, (size_t)head);
    return UR_HEAD_BARE;
  }
  if (head <= 0) {
    if (status == 0) return head < 0 ? -1 : 0;
    lua_pushinteger(L, status);
    return 1;
  }
  if (hi.te.v != NULL || hi.clen > 0) {    /* a body: the Lua loop's */
    push_head(L, p, &hi);
    ur_sock_consume(s, (size_t)head);
    return 10;
  }
  r->same = r->last != NULL && r->last_n == (size_t)head
            && memcmp(r->last, p, (size_t)head) == 0;
  if (!r->same) lua_pushlstring(L, p, (size_t)head);
  r->v10 = hi.v10;
  r->keep = hi.keep;
  r->head_only = hi.sp1 == 4 && memcmp(p, "HEAD", 4) == 0;
  ur_sock_consume(s, (size_t)head);
  return UR_HEAD_BARE;
}

/* sock:_take_request(max) -> method, target, path, query, v10, lines,
 *   keep, length, transfer_encoding, expect (see push_head)
 *   | nil (nothing buffered) | false (part of a head: fill and call again)
 *   | status (400, 414, 431: a bad head, left buffered)
 * uring.http's request reader: a whole head taken from the buffer in one
 * call. */
static int l_sock_take_request (lua_State *L) {
  ur_sock *s = ur_sock_check(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  int n;
  luaL_argcheck(L, max > 0, 2, "positive size expected");
  n = ur_http_take_request(L, s, (size_t)max);
  if (n < 0) lua_pushnil(L);
  else if (n == 0) lua_pushboolean(L, 0);
  return n > 0 ? n : 1;
}

/* sock:receive_head([max]): take_request, receiving until a whole head
 * (or a bad one) is buffered.  Stack: 1 the socket; ctx: max. */
static int receive_head_k (lua_State *L, int status, lua_KContext ctx);

static int receive_head_step (lua_State *L, ur_sock *s, lua_KContext ctx) {
  int n = ur_http_take_request(L, s, (size_t)ctx);
  if (n > 1) return n;
  if (n == 1) {                 /* a bad head: the fail tuple, then status */
    luaL_pushfail(L);
    lua_pushliteral(L, "bad request");
    lua_pushinteger(L, EBADMSG);
    lua_rotate(L, -4, 3);       /* status last */
    return 4;
  }
  if (ur_sock_eof(s)) {         /* as receive: nil, "closed", partial */
    size_t len;
    const char *p = ur_sock_buffered(s, &len);
    luaL_pushfail(L);
    lua_pushliteral(L, "closed");
    lua_pushlstring(L, p, len);
    ur_sock_consume(s, len);
    return 3;
  }
  return ur_sock_recv(L, s, ur_sock_recv_task(L, s), ctx, receive_head_k);
}

static int receive_head_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_sock *s;
  (void)status;
  switch (ur_sock_recv_result(L, t, &s)) {
    case UR_RECV_FAILED: return 3;
    case UR_RECV_AGAIN: return ur_sock_recv(L, s, t, ctx, receive_head_k);
    default: return receive_head_step(L, s, ctx);
  }
}

/* sock:receive_head([max]) -> method, target, path, query, v10, lines,
 *   keep, length, transfer_encoding, expect
 *   | nil, "bad request", EBADMSG, status | nil, "closed", partial | fail
 * An HTTP/1.x request head, parsed here in one call: what a hand-written
 * server needs, without a Lua call per header line. */
static int l_sock_receive_head (lua_State *L) {
  ur_sock *s = ur_sock_check(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 16 * 1024);
  if (ur_sock_closed(s))
    return luaL_error(L, "attempt to use a closed socket");
  luaL_argcheck(L, max > 0, 2, "positive size expected");
  lua_settop(L, 1);
  return receive_head_step(L, s, (lua_KContext)max);
}

/* does one of the header lines push_head checked carry one of the names
 * at stack first..last (strings), in any case? */
static int lines_have (lua_State *L, const char *p, size_t n, int first,
                       int last) {
  const char *e = p + n;
  while (p < e) {
    const char *nl = (const char *)memchr(p, '\n', (size_t)(e - p));
    const char *colon = (const char *)memchr(p, ':', (size_t)((nl ? nl : e) - p));
    if (colon != NULL) {
      size_t nlen = (size_t)(colon - p);
      for (int i = first; i <= last; i++) {
        size_t ln, k;
        const char *name = lua_tolstring(L, i, &ln);
        if (ln != nlen) continue;
        for (k = 0; k < ln; k++)
          if (lower_ascii((unsigned char)p[k]) != lower_ascii((unsigned char)name[k]))
            break;
        if (k == ln) return 1;
      }
    }
    if (!nl) break;
    p = nl + 1;
  }
  return 0;
}

/* req:has_header(name, ...) -> boolean (uring.http.server's Request):
 * does the request carry one of the names, in any case?  Answered from
 * the header lines as they came (req[UR_REQ_HEAD]), without building
 * req.headers: most requests carry none of the few headers a handler
 * such as uring.http.static asks about, and the table is the largest
 * cost of a small request.  Once req.headers exists it is asked.  In C:
 * a Lua method with varargs cost ~7,000 instructions for four names.  A
 * request is a table whose metatable holds this very method. */
static int has_header_typeerror (lua_State *L, int arg, const char *expected) {
  const char *got = arg > lua_gettop(L) ? "no value" : luaL_typename(L, arg);
  lua_Debug ar;
  /* numbered as uring.check numbers them: after self when called with ':' */
  if (lua_getstack(L, 0, &ar) && (lua_getinfo(L, "n", &ar), ar.namewhat != NULL)
      && strcmp(ar.namewhat, "method") == 0 && --arg == 0)
    return luaL_error(L, "calling 'has_header' on bad self (%s expected, got %s)",
                      expected, got);
  return luaL_error(L, "bad argument #%d to 'has_header' (%s expected, got %s)",
                    arg, expected, got);
}

static int l_request_has_header (lua_State *L) {
  int top = lua_gettop(L), found = 0, isreq;
  isreq = lua_getmetatable(L, 1)
          && lua_getfield(L, -1, "has_header") == LUA_TFUNCTION
          && lua_tocfunction(L, -1) == l_request_has_header;
  lua_settop(L, top);
  if (!isreq) return has_header_typeerror(L, 1, "request");
  if (top < 2) return has_header_typeerror(L, 2, "string");
  for (int i = 2; i <= top; i++)
    if (lua_type(L, i) != LUA_TSTRING) return has_header_typeerror(L, i, "string");
  lua_pushliteral(L, "headers");
  if (lua_rawget(L, 1) == LUA_TNIL) {
    size_t n;
    const char *lines;
    lines = lua_rawgeti(L, 1, UR_REQ_HEAD) == LUA_TSTRING
            ? lua_tolstring(L, -1, &n) : NULL;
    if (lines != NULL) {
      lines = header_lines(lines, &n);
      lua_pushboolean(L, lines_have(L, lines, n, 2, top));
      return 1;
    }
    lua_pop(L, 2);
    lua_getfield(L, 1, "headers");        /* made now (Request.__index) */
  }
  if (lua_istable(L, -1)) {
    int h = lua_gettop(L);
    for (int i = 2; i <= top && !found; i++) {
      size_t ln;
      const char *name = lua_tolstring(L, i, &ln);
      luaL_Buffer b;
      char *d = luaL_buffinitsize(L, &b, ln);
      for (size_t k = 0; k < ln; k++) d[k] = (char)lower_ascii((unsigned char)name[k]);
      luaL_pushresultsize(&b, ln);
      found = lua_rawget(L, h) != LUA_TNIL;
      lua_pop(L, 1);
    }
  }
  lua_pushboolean(L, found);
  return 1;
}

/* The socket methods join net.c's socket_methods (the __index of every
 * uring.socket), which ur_register_net made before this runs. */
void ur_register_http (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_http_headers", l_http_headers}, {"_request_has_header", l_request_has_header},
    {"_request_index", l_request_index_new},
    {NULL, NULL}
  };
  static const luaL_Reg sock_methods[] = {
    {"receive_head", l_sock_receive_head},
    {"_take_request", l_sock_take_request},
    {NULL, NULL}
  };
  ur_setfuncs(L, funcs);
  if (lua_getfield(L, -1, "socket_methods") != LUA_TTABLE)
    luaL_error(L, "uring: internal error: http.c registered before net.c");
  ur_setfuncs(L, sock_methods);
  lua_pop(L, 1);
}
