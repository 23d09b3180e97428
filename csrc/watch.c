/*
 * watch.c: the C half of uring.watch, an inotify instance read through
 * the ring.
 *
 * The watch object owns the inotify fd through the handle layer
 * (handle.c), like a socket: close() cancels a read in flight and the fd
 * is closed only after its last CQE.  A read is an ordinary request: the
 * kernel writes the raw events into memory the request owns (r->mem,
 * freed with the request whatever happens to the watch), and the
 * continuation hands them to Lua as one string.  Decoding the events,
 * the map from watch descriptors to paths and the recursive option live
 * in lua/uring/watch.lua: here are only the calls the kernel needs.
 *
 * inotify_add_watch and inotify_rm_watch are plain syscalls (io_uring has
 * no op for them); they are set-up, like bind and listen, and never wait.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uring.h"

#define UR_WATCH_MT "uring.watch"
/* room for ~2,000 events of short names a read: a burst (the 10,000
 * events of a build) goes through in a few round trips */
#define WATCH_READ (64 * 1024)

typedef struct ur_watch {
  ur_handle h;            /* the inotify fd; -1 once closed */
  int busy;               /* a task is reading */
} ur_watch;

static ur_watch *checkwatch (lua_State *L, int idx) {
  return (ur_watch *)luaL_checkudata(L, idx, UR_WATCH_MT);
}

static ur_watch *towatch (lua_State *L) {
  ur_watch *w = checkwatch(L, 1);
  if (w->h.fd < 0) luaL_error(L, "attempt to use a closed watch");
  return w;
}

/* core._watch() -> watch | fail: a new inotify instance, no paths yet */
static int l_watch_new (lua_State *L) {
  ur_watch *w = (ur_watch *)lua_newuserdatauv(L, sizeof *w, 0);
  int fd, ret;
  ur_handle_init(&w->h);        /* closed first */
  w->busy = 0;
  luaL_setmetatable(L, UR_WATCH_MT);
  /* non-blocking: the ring arms a poll and reads once events are queued */
  fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  ret = fd < 0 ? -errno : ur_handle_adopt(ur_loop_of(L), &w->h, fd);
  if (ret < 0) return ur_pushfail(L, ret, "watch");
  return 1;
}

/* w:_add(path, mask) -> wd | fail.  max_user_watches reached: ENOSPC,
 * worded as inotify(7) says it. */
static int l_watch_add (lua_State *L) {
  ur_watch *w = towatch(L);
  const char *path = ur_checkpath(L, 2);
  lua_Integer mask = luaL_checkinteger(L, 3);
  int wd;
  luaL_argcheck(L, mask > 0 && mask <= UINT32_MAX, 3, "invalid event mask");
  wd = inotify_add_watch(w->h.fd, path, (uint32_t)mask);
  if (wd < 0 && errno == ENOSPC) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: inotify watch limit reached "
                    "(fs.inotify.max_user_watches)", path);
    lua_pushinteger(L, ENOSPC);
    return 3;
  }
  if (wd < 0) return ur_pushfail(L, -errno, path);
  lua_pushinteger(L, wd);
  return 1;
}

/* w:_rm(wd) -> true | fail */
static int l_watch_rm (lua_State *L) {
  ur_watch *w = towatch(L);
  lua_Integer wd = luaL_checkinteger(L, 2);
  luaL_argcheck(L, wd >= 0 && wd <= INT32_MAX, 2, "invalid watch descriptor");
  if (inotify_rm_watch(w->h.fd, (int)wd) != 0)
    return ur_pushfail(L, -errno, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int fill_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_req *r = ur_resumed(L, t);
  ur_watch *w = (ur_watch *)lua_touserdata(L, 1);   /* on our stack: alive */
  int res = r->res;
  (void)status; (void)ctx;
  w->busy = 0;
  if (res > 0) {
    ur_kernel_wrote(r->mem, (size_t)res);
    lua_pushlstring(L, (const char *)r->mem, (size_t)res);
  }
  ur_req_free(t->loop, r);
  ur_check_interrupt(L, t);
  if (res > 0) return 1;
  if (w->h.fd < 0 || res == -ECANCELED) return ur_pushclosed(L);
  if (res == 0) return ur_pushfail(L, -EIO, "watch");   /* never, per inotify(7) */
  return ur_pushfail(L, res, "watch");
}

/* w:_fill() -> raw inotify events (a string) | fail; waits for at least
 * one.  nil, "closed" when the watch is closed meanwhile. */
static int l_watch_fill (lua_State *L) {
  ur_watch *w = towatch(L);
  ur_task *t = ur_task_current(L, "read");
  ur_req *r;
  struct io_uring_sqe *sqe;
  if (w->busy)
    return luaL_error(L, "read: watch is busy (another task is reading it)");
  lua_settop(L, 1);
  r = ur_req_new(L, t->loop, IORING_OP_READ);
  r->mem = malloc(WATCH_READ);  /* the request's: freed with it */
  if (r->mem == NULL) {
    ur_req_free(t->loop, r);
    return luaL_error(L, "read: not enough memory");
  }
  r->memlen = WATCH_READ;
  sqe = ur_get_sqe(t->loop);
  io_uring_prep_read(sqe, w->h.fd, r->mem, WATCH_READ, 0);
  ur_handle_sqe(t->loop, &w->h, r, sqe);
  ur_req_submitted(t->loop, r, sqe);
  w->busy = 1;
  return ur_await(L, t, r, "watch", 0, fill_k);
}

/* core._watch_subdirs(path) -> {name = is_dir, ...} | fail: the entries
 * of a directory, for the recursive option (a new subdirectory's
 * contents, made before its watch was added, are reported as created).
 * readdir on this thread: it is small and run once per new directory. */
static int l_watch_entries (lua_State *L) {
  const char *path = ur_checkpath(L, 1);
  DIR *d = opendir(path);
  struct dirent *e;
  if (d == NULL) return ur_pushfail(L, -errno, path);
  lua_newtable(L);
  while ((e = readdir(d)) != NULL) {
    int isdir;
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    isdir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {   /* some file systems do not say */
      struct stat st;
      isdir = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0
              && S_ISDIR(st.st_mode);
    }
    lua_pushboolean(L, isdir);
    lua_setfield(L, -2, e->d_name);
  }
  closedir(d);
  return 1;
}

/* w:close(), __close, __gc: a task in w:read() wakes with nil, "closed" */
static int l_watch_close (lua_State *L) {
  ur_watch *w = checkwatch(L, 1);
  if (w->h.fd >= 0) ur_handle_close(ur_loop_of(L), &w->h, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* w:fd() -> the inotify fd (for leak checks and trace) */
static int l_watch_fd (lua_State *L) {
  lua_pushinteger(L, towatch(L)->h.fd);
  return 1;
}

static int l_watch_tostring (lua_State *L) {
  ur_watch *w = checkwatch(L, 1);
  if (w->h.fd < 0) lua_pushliteral(L, "uring.watch (closed)");
  else lua_pushfstring(L, "uring.watch (fd %d)", w->h.fd);
  return 1;
}

void ur_register_watch (lua_State *L) {
  static const luaL_Reg methods[] = {
    {"close", l_watch_close}, {"fd", l_watch_fd},
    {"_add", l_watch_add}, {"_rm", l_watch_rm}, {"_fill", l_watch_fill},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_watch_close}, {"__close", l_watch_close},
    {"__tostring", l_watch_tostring}, {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"_watch", l_watch_new}, {"_watch_entries", l_watch_entries},
    {NULL, NULL}
  };
  static const struct { const char *name; uint32_t bit; } masks[] = {
    {"IN_ACCESS", IN_ACCESS}, {"IN_MODIFY", IN_MODIFY},
    {"IN_ATTRIB", IN_ATTRIB}, {"IN_CLOSE_WRITE", IN_CLOSE_WRITE},
    {"IN_CLOSE_NOWRITE", IN_CLOSE_NOWRITE}, {"IN_OPEN", IN_OPEN},
    {"IN_MOVED_FROM", IN_MOVED_FROM}, {"IN_MOVED_TO", IN_MOVED_TO},
    {"IN_CREATE", IN_CREATE}, {"IN_DELETE", IN_DELETE},
    {"IN_DELETE_SELF", IN_DELETE_SELF}, {"IN_MOVE_SELF", IN_MOVE_SELF},
    {"IN_UNMOUNT", IN_UNMOUNT}, {"IN_Q_OVERFLOW", IN_Q_OVERFLOW},
    {"IN_IGNORED", IN_IGNORED}, {"IN_ISDIR", IN_ISDIR},
    {"IN_ONLYDIR", IN_ONLYDIR}, {"IN_DONT_FOLLOW", IN_DONT_FOLLOW},
    {"IN_EXCL_UNLINK", IN_EXCL_UNLINK},
  };
  luaL_newmetatable(L, UR_WATCH_MT);
  ur_setfuncs(L, meta);
  lua_newtable(L);
  ur_setfuncs(L, methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "_watch_methods");  /* watch.lua adds read */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  ur_setfuncs(L, funcs);
  /* the kernel's bits, for watch.lua's decoder (private: "_" names) */
  lua_newtable(L);
  for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
    lua_pushinteger(L, masks[i].bit);
    lua_setfield(L, -2, masks[i].name);
  }
  lua_setfield(L, -2, "_inotify");
}
