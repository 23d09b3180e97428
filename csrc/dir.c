/*
 * dir.c: reading directories, for uring.dir and uring.walk.
 *
 * io_uring has no getdents op, so a directory is read by a job on the
 * helper pool (jobs.c): open it, getdents64 into a 128 KiB buffer until
 * the end (hundreds of names a call, not one call per name), and keep
 * each name with its d_type.  The kind comes from d_type without a stat;
 * only DT_UNKNOWN (some file systems never fill it) costs a statx.  Asked
 * to (walk's opts.stat), the job also statx-es every entry, right there
 * on the same thread: a batch of syscalls without a trip through the
 * loop per name.  With opts.follow, a symbolic link is statted through;
 * one that leads nowhere (dangling, a loop) stays a "link".
 *
 * The directory's fd is the job's own and closed by it: the ring never
 * names it.  Lua gets, per directory, one table of full paths (or names),
 * one of kinds and, when asked, one of stat tables (statx.c's vocabulary)
 * plus the directory's dev and ino, with which walk refuses to enter a
 * directory twice (symlink cycles).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uring.h"

#define DENTS_BUF (128 * 1024)
enum { SCAN_STAT = 1, SCAN_FOLLOW = 2, SCAN_FULL = 4, SCAN_SIZE = 8 };

typedef struct scan_ent {
  uint32_t off, len;      /* the name, in names */
  int8_t stat_ok;         /* st[i] holds a statx */
  uint8_t dtype;          /* DT_*, or from the statx */
} scan_ent;

/* One directory's read. */
typedef struct scan_dir {
  int err;                /* errno that ended the read, or 0 */
  uint64_t dev, ino;      /* the directory itself */
  scan_ent *ents;
  struct statx *st;       /* per entry, when stat tables are wanted */
  uint64_t *size;         /* per entry, when sizes alone are */
  size_t n, cap;
  char *names;            /* every name, NUL-terminated, one after another */
  size_t nlen, ncap;
  size_t plen;            /* strlen(path) */
  char *path;
} scan_dir;

/* A job: one or more directories, read one after the other on the same
 * thread (a walk hands each job a share of its queue, so a thousand small
 * directories cost a few dozen trips between threads, not a thousand). */
typedef struct scan_job {
  ur_job job;
  int flags;              /* SCAN_* */
  size_t ndirs;
  size_t taken;           /* dirs already handed to Lua (loop side) */
  size_t pos;             /* of dirs[taken], the entries handed already */
  scan_dir dirs[];
} scan_job;

static void scan_drop (ur_job *j) {
  scan_job *s = (scan_job *)j;
  for (size_t i = 0; i < s->ndirs; i++) {
    free(s->dirs[i].ents);
    free(s->dirs[i].st);
    free(s->dirs[i].size);
    free(s->dirs[i].names);
    free(s->dirs[i].path);
  }
  free(s);
}

static int scan_grow (scan_dir *s, size_t namelen) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    scan_ent *e = (scan_ent *)realloc(s->ents, cap * sizeof *e);
    if (e == NULL) return -ENOMEM;
    s->ents = e;
    s->cap = cap;
  }
  if (s->nlen + namelen + 1 > s->ncap) {
    size_t cap = s->ncap ? s->ncap * 2 : 4096;
    char *p;
    while (cap < s->nlen + namelen + 1) cap *= 2;
    if ((p = (char *)realloc(s->names, cap)) == NULL) return -ENOMEM;
    s->names = p;
    s->ncap = cap;
  }
  return 0;
}

/* A statx for entry i (at dirfd), kept whole or its size alone, and the
 * entry's kind from it. */
static void scan_stat (scan_dir *s, int flags, int dfd, size_t i) {
  scan_ent *e = &s->ents[i];
  const char *name = s->names + e->off;
  struct statx tmp, *st = s->st ? &s->st[i] : &tmp;
  unsigned mask = STATX_BASIC_STATS | STATX_BTIME;
  int ok;
  if ((flags & SCAN_FOLLOW) && (e->dtype == DT_LNK || e->dtype == DT_UNKNOWN)) {
    ok = statx(dfd, name, 0, mask, st) == 0;
    /* a link that leads nowhere: the link itself */
    if (!ok) ok = statx(dfd, name, AT_SYMLINK_NOFOLLOW, mask, st) == 0;
  }
  else ok = statx(dfd, name, AT_SYMLINK_NOFOLLOW, mask, st) == 0;
  if (!ok) return;              /* gone meanwhile: d_type's word stands */
  if (s->size) s->size[i] = st->stx_size;
  e->stat_ok = s->st != NULL || s->size != NULL;
  e->dtype = (uint8_t)IFTODT(st->stx_mode);
}

static void scan_one (ur_job *j, scan_dir *s, int flags, char *buf) {
  int fd, err = 0;
  struct stat dst;
  fd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    s->err = errno;
    return;
  }
  if (fstat(fd, &dst) == 0) {
    s->dev = (uint64_t)dst.st_dev;
    s->ino = (uint64_t)dst.st_ino;
  }
  while (err == 0 && !ur_job_stopped(j)) {
    ssize_t got = getdents64(fd, buf, DENTS_BUF), pos = 0;
    if (got < 0) {
      if (errno != EINTR) err = errno;
      continue;
    }
    if (got == 0) break;
    while (pos < got) {
      struct dirent64 *d = (struct dirent64 *)(buf + pos);
      size_t len = strlen(d->d_name);
      pos += d->d_reclen;
      if (d->d_name[0] == '.' && (len == 1 || (len == 2 && d->d_name[1] == '.')))
        continue;
      if (scan_grow(s, len) < 0) {
        err = ENOMEM;
        break;
      }
      s->ents[s->n].off = (uint32_t)s->nlen;
      s->ents[s->n].len = (uint32_t)len;
      s->ents[s->n].dtype = d->d_type;
      s->ents[s->n].stat_ok = 0;
      memcpy(s->names + s->nlen, d->d_name, len + 1);
      s->nlen += len + 1;
      s->n++;
    }
  }
  /* the stats after the names: getdents64 runs over the directory once,
   * and their array is made once, of the right size (growing it with the
   * names copied 256-byte records to fresh pages over and over); sizes
   * alone take 8 bytes an entry */
  if ((flags & SCAN_STAT) && s->n > 0 && err == 0) {
    if (flags & SCAN_SIZE) s->size = (uint64_t *)malloc(s->n * sizeof *s->size);
    else s->st = (struct statx *)malloc(s->n * sizeof *s->st);
    if (s->size == NULL && s->st == NULL) err = ENOMEM;
  }
  for (size_t i = 0; i < s->n && err == 0 && !ur_job_stopped(j); i++) {
    uint8_t t = s->ents[i].dtype;
    if ((flags & SCAN_STAT) || t == DT_UNKNOWN
        || ((flags & SCAN_FOLLOW) && t == DT_LNK))
      scan_stat(s, flags, fd, i);
  }
  close(fd);                    /* ours alone: no SQE ever named it */
  s->err = err;
}

static void scan_run (ur_job *j) {
  scan_job *s = (scan_job *)j;
  char *buf = (char *)malloc(DENTS_BUF);
  for (size_t i = 0; i < s->ndirs; i++) {
    if (buf == NULL) s->dirs[i].err = ENOMEM;
    else if (ur_job_stopped(j)) s->dirs[i].err = ECANCELED;
    else scan_one(j, &s->dirs[i], s->flags, buf);
  }
  free(buf);
}

/* core._jobset() -> set | fail: a set to queue scans on */
static int l_jobset (lua_State *L) {
  ur_jobset *s;
  int ret = ur_jobset_new(L, &s);
  if (ret < 0) return ur_pushfail(L, ret, NULL);
  return 1;
}

/* core._scan(set, paths, flags): queue one job reading the directories
 * of the list paths (or the one path), in order; flags: 1 stat every
 * entry, 2 follow links, 4 full paths, 8 sizes rather than stat tables */
static int l_scan (lua_State *L) {
  ur_jobset *set = ur_jobset_check(L, 1);
  lua_Integer flags = luaL_checkinteger(L, 3);
  int list = lua_type(L, 2) == LUA_TTABLE;
  size_t n = 1;
  scan_job *s;
  if (list) {
    n = (size_t)lua_rawlen(L, 2);
    luaL_argcheck(L, n > 0 && n <= 4096, 2, "1 to 4096 paths");
  }
  else ur_checkpath(L, 2);
  s = (scan_job *)calloc(1, sizeof *s + n * sizeof s->dirs[0]);
  if (s == NULL) return luaL_error(L, "not enough memory");
  s->flags = (int)flags;
  s->job.run = scan_run;
  s->job.drop = scan_drop;
  s->ndirs = n;
  for (size_t i = 0; i < n; i++) {
    const char *p;
    size_t len;
    if (list) lua_rawgeti(L, 2, (lua_Integer)i + 1);
    else lua_pushvalue(L, 2);
    p = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (p == NULL || strlen(p) != len) {
      scan_drop(&s->job);       /* not queued yet: ours to free */
      return luaL_argerror(L, 2, "paths must be strings without NUL");
    }
    s->dirs[i].path = (char *)malloc(len + 1);
    if (s->dirs[i].path == NULL) {
      scan_drop(&s->job);
      return luaL_error(L, "not enough memory");
    }
    memcpy(s->dirs[i].path, p, len + 1);
    s->dirs[i].plen = len;
    lua_pop(L, 1);
  }
  ur_job_submit(set, &s->job);
  return 0;
}

static void setfield_int (lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* Entries [from, from + n) of one directory read, as {n =, path =,
 * paths =, kinds =, stats =, dev =, ino =, first =, err =, errno =}
 * (first: the directory's opening piece, which alone carries its error). */
static void push_dir (lua_State *L, scan_dir *s, int flags, size_t from, size_t n) {
  int full = flags & SCAN_FULL;
  int slash = s->plen > 0 && s->path[s->plen - 1] != '/';
  /* a full path is the directory's, a slash and the name: the first two
   * are copied once a piece, each name after them (a luaL_Buffer a path
   * cost ~900 instructions, most of a walk's per-entry work without
   * stats); a name is at most NAME_MAX bytes */
  char small[4096], *buf = small;
  size_t head = s->plen + (size_t)slash;
  if (full && head + NAME_MAX + 1 > sizeof small)
    buf = (char *)lua_newuserdatauv(L, head + NAME_MAX + 1, 0);   /* popped below */
  if (full) {
    memcpy(buf, s->path, s->plen);
    if (slash) buf[s->plen] = '/';
  }
  lua_createtable(L, 0, 9);
  setfield_int(L, "n", (lua_Integer)n);
  setfield_int(L, "dev", (lua_Integer)s->dev);
  setfield_int(L, "ino", (lua_Integer)s->ino);
  lua_pushboolean(L, from == 0);
  lua_setfield(L, -2, "first");
  lua_pushlstring(L, s->path, s->plen);
  lua_setfield(L, -2, "path");
  if (s->err && from == 0) {
    lua_pushfstring(L, "%s: %s", s->path, strerror(s->err));
    lua_setfield(L, -2, "err");
    setfield_int(L, "errno", s->err);
  }
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    const scan_ent *e = &s->ents[from + i];
    const char *name = s->names + e->off;
    if (full) {
      memcpy(buf + head, name, e->len);
      lua_pushlstring(L, buf, head + e->len);
    }
    else lua_pushlstring(L, name, e->len);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "paths");
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, ur_file_type(DTTOIF(s->ents[from + i].dtype)));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "kinds");
  if (flags & SCAN_STAT) {
    int names = flags & SCAN_SIZE ? 0 : ur_statx_names(L);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      size_t k = from + i;
      if (s->ents[k].stat_ok) {
        /* the size alone: a du-like sum needs no table per entry (a
         * table is most of the Lua-side cost of a walk with stats) */
        if (s->size) lua_pushinteger(L, (lua_Integer)s->size[k]);
        else {
          ur_kernel_wrote(&s->st[k], sizeof s->st[k]);
          ur_push_statx_with(L, &s->st[k], names);
        }
      }
      else lua_pushboolean(L, 0);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (names) {                /* the stats under the names: drop these */
      lua_replace(L, names);
      lua_settop(L, names);
    }
    lua_setfield(L, -2, "stats");
  }
  if (buf != small) lua_remove(L, -2);    /* the long path's buffer */
}

static int scan_wait_k (lua_State *L, int status, lua_KContext ctx);

static int scan_wait (lua_State *L, ur_task *t, ur_jobset *set) {
  return ur_jobset_wait(L, t, set, "walk", 0, scan_wait_k);
}

/* A job has finished: true.  None yet (the eventfd's count was for jobs
 * already taken): wait again. */
static int scan_wait_k (lua_State *L, int status, lua_KContext ctx) {
  ur_task *t = ur_task_of(L);
  ur_jobset *set = ur_jobset_check(L, 1);
  int res = ur_jobset_woken(L, t);
  (void)status; (void)ctx;
  if (res < 0) return ur_pushfail(L, res, NULL);
  if (ur_jobset_peek(set) == NULL) return scan_wait(L, t, set);
  lua_pushboolean(L, 1);
  return 1;
}

/* core._scan_wait(set) -> true | fail: waits until a job has finished
 * (returns at once if one has and is not all taken) */
static int l_scan_wait (lua_State *L) {
  ur_jobset *set = ur_jobset_check(L, 1);
  ur_task *t;
  lua_settop(L, 1);
  t = ur_task_current(L, "walk");
  if (ur_jobset_peek(set)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (ur_jobset_pending(set) == 0)
    return luaL_error(L, "walk: nothing to wait for");
  return scan_wait(L, t, set);
}

/* core._scan_take(set [, max]) -> piece, last | nil: the next piece of a
 * finished job's directories, as a table (never waits): the rest of the
 * current directory, at most max entries of it (all by default); last:
 * it was the job's last.  A piece a call: the tables for a job's
 * thousands of entries are made as the walk reaches them, between its
 * yields, not in one go (and a directory of 100,000 names in steps). */
static int l_scan_take (lua_State *L) {
  ur_jobset *set = ur_jobset_check(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 0);
  scan_job *s = (scan_job *)ur_jobset_peek(set);
  scan_dir *d;
  size_t n;
  int last;
  luaL_argcheck(L, max >= 0, 2, "not a count");
  if (s == NULL) return 0;
  d = &s->dirs[s->taken];
  /* a directory whose read failed is one piece, its error, without the
   * entries read before the failure */
  n = d->err ? 0 : d->n - s->pos;
  if (max > 0 && (size_t)max < n) n = (size_t)max;
  push_dir(L, d, s->flags, s->pos, n);
  s->pos += n;
  if (d->err || s->pos >= d->n) {         /* the directory is all out: the next */
    s->pos = 0;
    s->taken++;
  }
  last = s->taken == s->ndirs;
  if (last) ur_jobset_drop(set, &s->job);
  lua_pushboolean(L, last);
  return 2;
}

void ur_register_dir (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_jobset", l_jobset}, {"_scan", l_scan}, {"_scan_wait", l_scan_wait},
    {"_scan_take", l_scan_take},
    {NULL, NULL}
  };
  ur_setfuncs(L, funcs);
}
