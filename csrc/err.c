/*
 * err.c: the one failure convention of lua-uring.
 *
 * An I/O failure returns the "fail tuple" nil, "what: strerror", errno, as
 * io.open and LuaSocket do.  liburing hands back -errno in cqe->res and in
 * its return values and never sets errno (io_uring_prep_read(3)), so every
 * helper here takes the negative result as it came.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>

#include "uring.h"

int ur_pushfail (lua_State *L, int res, const char *what) {
  int en = res < 0 ? -res : res;
  if (en >= UR_ENOOP_BASE) {    /* an op this kernel lacks (dispatch) */
    char text[96];
    ur_noop_text((unsigned)(en - UR_ENOOP_BASE), text, sizeof text);
    luaL_pushfail(L);
    if (what) lua_pushfstring(L, "%s: %s", what, text);
    else lua_pushstring(L, text);
    lua_pushinteger(L, EOPNOTSUPP);
    return 3;
  }
  luaL_pushfail(L);
  if (what)
    lua_pushfstring(L, "%s: %s", what, strerror(en));
  else
    lua_pushstring(L, strerror(en));
  lua_pushinteger(L, en);
  return 3;
}

/* An op ended by close() (its own or another task's): nil, "closed",
 * EBADF, for every kind of object. */
int ur_pushclosed (lua_State *L) {
  luaL_pushfail(L);
  lua_pushliteral(L, "closed");
  lua_pushinteger(L, EBADF);
  return 3;
}

/*
 * An integer option opts[key] of the table at index t, which is argument
 * arg: def when absent, else an integer in lo..hi.  luaL_checkinteger on
 * the field itself would blame argument "#-1".
 */
lua_Integer ur_intfield (lua_State *L, int t, int arg, const char *key,
                         lua_Integer def, lua_Integer lo, lua_Integer hi) {
  lua_Integer v = def;
  int isint;
  if (lua_getfield(L, t, key) != LUA_TNIL) {
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, arg, lua_pushfstring(L, "%s must be an integer, got %s",
                                            key, luaL_typename(L, -1)));
    if (v < lo || v > hi)
      luaL_argerror(L, arg, lua_pushfstring(L, "%s must be in %I..%I", key,
                                            (LUAI_UACINT)lo, (LUAI_UACINT)hi));
  }
  lua_pop(L, 1);
  return v;
}

/*
 * A path, name or mode the kernel or libc reads as a C string.  A Lua
 * string may hold a NUL, and the C side would stop there: unlink of
 * "keep\0.tmp" would delete "keep".  Refuse it, with one message.
 */
const char *ur_tocstr (lua_State *L, int idx, int arg, const char *what) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (s != NULL && strlen(s) != len)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s contains a NUL byte", what));
  return s;
}

const char *ur_checkcstr (lua_State *L, int arg, const char *what) {
  luaL_checkstring(L, arg);
  return ur_tocstr(L, arg, arg, what);
}

const char *ur_optcstr (lua_State *L, int arg, const char *what,
                        const char *def) {
  if (lua_isnoneornil(L, arg)) return def;
  return ur_checkcstr(L, arg, what);
}

const char *ur_checkpath (lua_State *L, int arg) {
  return ur_checkcstr(L, arg, "path");
}

/*
 * Seconds for a timer.  A timespec is made with a cast (ur_set_ts): NaN,
 * the infinities and values past what long long holds are undefined
 * behaviour there, so everything is checked here, once, for every timer
 * (sleep, timeout, settimeout, the ring's prep_timeout).  1e12 seconds
 * (31 000 years) is far past any real limit and keeps the nanoseconds
 * exact enough.  -0.0 is 0.  Numeric strings convert, as luaL_checknumber
 * converts them.
 */
const char *ur_seconds_problem (lua_State *L, int idx, double *out) {
  int isnum;
  lua_Number v = lua_tonumberx(L, idx, &isnum);
  if (!isnum)
    return lua_pushfstring(L, "number expected, got %s",
                           lua_isnoneornil(L, idx) ? "no value"
                                                   : luaL_typename(L, idx));
  if (!(v >= 0 && v < UR_SECONDS_MAX)) return UR_SECONDS_MSG;   /* NaN too */
  *out = v == 0 ? 0 : (double)v;
  return NULL;
}

double ur_checkseconds (lua_State *L, int arg) {
  double v = 0;
  const char *why = ur_seconds_problem(L, arg, &v);
  if (why) luaL_argerror(L, arg, why);
  return v;
}

/* settimeout's argument: LuaSocket's meaning, where nil and a negative
 * number mean "block"; math.huge does too (no timer that long is
 * needed).  NaN has no meaning and raises ur_checkseconds' message. */
double ur_checklimit (lua_State *L, int arg) {
  int isnum;
  lua_Number v;
  if (lua_isnoneornil(L, arg)) return -1;
  v = lua_tonumberx(L, arg, &isnum);
  if (isnum && (v < 0 || v >= UR_SECONDS_MAX)) return -1;
  return ur_checkseconds(L, arg);
}

/* First line of /proc/sys/kernel/io_uring_disabled, or -1 (before 6.6). */
static int read_sysctl (void) {
  FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
  int v = -1;
  if (f) {
    if (fscanf(f, "%d", &v) != 1) v = -1;
    fclose(f);
  }
  return v;
}

/* The "Seccomp:" mode from /proc/self/status: 0 none, 1 strict, 2 filter. */
static int seccomp_mode (void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int mode = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Seccomp: %d", &mode) == 1) break;
  fclose(f);
  return mode;
}

/*
 * Why io_uring_setup failed, in words a user can act on.  The causes are
 * the ones containers and distributions really produce: the sysctl
 * kernel.io_uring_disabled (6.6+), a seccomp profile (Docker >= 25 answers
 * EPERM, some sandboxes ENOSYS), an old kernel, or RLIMIT_MEMLOCK.
 */
const char *ur_setup_reason (int res, char *buf, size_t len) {
  int en = res < 0 ? -res : res;
  struct utsname u;
  if (uname(&u) != 0) strcpy(u.release, "?");
  if (en >= UR_ENOOP_BASE) {    /* the probe: an op the loop stands on */
    char text[96];
    ur_noop_text((unsigned)(en - UR_ENOOP_BASE), text, sizeof text);
    snprintf(buf, len, "%s, and lua-uring needs it (kernel %s); fix: "
             "Linux >= 5.19", text, u.release);
    return buf;
  }
  switch (en) {
    case EPERM: {
      int sysctl = read_sysctl(), sc = seccomp_mode();
      if (sysctl == 2)
        snprintf(buf, len, "io_uring is disabled system-wide "
                 "(sysctl kernel.io_uring_disabled=2); "
                 "fix: sysctl -w kernel.io_uring_disabled=0");
      else if (sysctl == 1)
        snprintf(buf, len, "io_uring is restricted to CAP_SYS_ADMIN or the "
                 "group in kernel.io_uring_group "
                 "(sysctl kernel.io_uring_disabled=1); fix: add the user to "
                 "that group or set the sysctl to 0");
      else
        snprintf(buf, len, "io_uring_setup is blocked by a seccomp or "
                 "container policy (Seccomp: %d; Docker's default profile "
                 "does this); fix: allow io_uring_setup/io_uring_enter/"
                 "io_uring_register in the profile", sc);
      break;
    }
    case ENOSYS:
      snprintf(buf, len, "io_uring is not available: the kernel (%s) lacks "
               "it, or a seccomp filter answers ENOSYS; fix: Linux >= 5.19 "
               "with CONFIG_IO_URING, or allow the io_uring syscalls",
               u.release);
      break;
    case ENOMEM: {
      struct rlimit rl;
      getrlimit(RLIMIT_MEMLOCK, &rl);
      snprintf(buf, len, "not enough locked memory for the ring "
               "(RLIMIT_MEMLOCK soft %llu, hard %llu bytes); fix: a smaller "
               "ring (uring.configure{entries = ...}) or ulimit -l",
               (unsigned long long)rl.rlim_cur,
               (unsigned long long)rl.rlim_max);
      break;
    }
    case EMFILE: case ENFILE:
      snprintf(buf, len, "out of file descriptors (%s); fix: ulimit -n",
               strerror(en));
      break;
    default:
      snprintf(buf, len, "%s (kernel %s)", strerror(en), u.release);
  }
  return buf;
}

int ur_pushsetupfail (lua_State *L, int res, unsigned entries) {
  char why[512];
  int en = res < 0 ? -res : res;
  ur_setup_reason(res, why, sizeof why);
  if (en >= UR_ENOOP_BASE) en = EOPNOTSUPP;
  luaL_pushfail(L);
  lua_pushfstring(L, "io_uring_setup(%d entries): %s", (int)entries, why);
  lua_pushinteger(L, en);
  return 3;
}

/*
 * uring.errno: the errno values of this system by name (uring.errno.ETIME,
 * .EBADF, .ECONNREFUSED, ...), so the Lua files compare a fail tuple's
 * third value with a name and hard-code no number.  Only names the C
 * library defines are set.  core._strerror(en) is strerror for the Lua
 * files that must word a failure themselves (LuaSocket's messages).
 */
#define ERRNO(e) {#e, e}
static const struct { const char *name; int value; } errnos[] = {
  ERRNO(EPERM), ERRNO(ENOENT), ERRNO(ESRCH), ERRNO(EINTR), ERRNO(EIO),
  ERRNO(ENXIO), ERRNO(E2BIG), ERRNO(ENOEXEC), ERRNO(EBADF), ERRNO(ECHILD),
  ERRNO(EAGAIN), ERRNO(EWOULDBLOCK), ERRNO(ENOMEM), ERRNO(EACCES),
  ERRNO(EFAULT), ERRNO(EBUSY), ERRNO(EEXIST), ERRNO(EXDEV), ERRNO(ENODEV),
  ERRNO(ENOTDIR), ERRNO(EISDIR), ERRNO(EINVAL), ERRNO(ENFILE),
  ERRNO(EMFILE), ERRNO(ENOTTY), ERRNO(ETXTBSY), ERRNO(EFBIG), ERRNO(ENOSPC),
  ERRNO(ESPIPE), ERRNO(EROFS), ERRNO(EMLINK), ERRNO(EPIPE), ERRNO(EDOM),
  ERRNO(ERANGE), ERRNO(EDEADLK), ERRNO(ENAMETOOLONG), ERRNO(ENOLCK),
  ERRNO(ENOSYS), ERRNO(ENOTEMPTY), ERRNO(ELOOP), ERRNO(ENOMSG),
  ERRNO(ETIME), ERRNO(EOVERFLOW), ERRNO(EILSEQ), ERRNO(ENOTSOCK),
  ERRNO(EDESTADDRREQ), ERRNO(EMSGSIZE), ERRNO(EPROTOTYPE),
  ERRNO(ENOPROTOOPT), ERRNO(EPROTONOSUPPORT), ERRNO(EOPNOTSUPP),
  ERRNO(ENOTSUP), ERRNO(EAFNOSUPPORT), ERRNO(EADDRINUSE),
  ERRNO(EADDRNOTAVAIL), ERRNO(ENETDOWN), ERRNO(ENETUNREACH),
  ERRNO(ENETRESET), ERRNO(ECONNABORTED), ERRNO(ECONNRESET),
  ERRNO(ENOBUFS), ERRNO(EISCONN), ERRNO(ENOTCONN), ERRNO(ESHUTDOWN),
  ERRNO(ETIMEDOUT), ERRNO(ECONNREFUSED), ERRNO(EHOSTDOWN),
  ERRNO(EHOSTUNREACH), ERRNO(EALREADY), ERRNO(EINPROGRESS),
  ERRNO(ECANCELED), ERRNO(EBADFD), ERRNO(ENODATA), ERRNO(EPROTO),
};

static int l_strerror (lua_State *L) {
  lua_Integer en = luaL_checkinteger(L, 1);
  luaL_argcheck(L, en > 0 && en < 4096, 1, "errno must be in 1..4095");
  lua_pushstring(L, strerror((int)en));
  return 1;
}

void ur_register_err (lua_State *L) {
  lua_createtable(L, 0, (int)(sizeof errnos / sizeof errnos[0]));
  for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++) {
    lua_pushinteger(L, errnos[i].value);
    lua_setfield(L, -2, errnos[i].name);
  }
  lua_setfield(L, -2, "errno");
  lua_pushcfunction(L, l_strerror);
  lua_setfield(L, -2, "_strerror");
}
