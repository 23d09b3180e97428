/*
 * embed.c: the loop driven from another one (luv, cqueues, an editor).
 *
 * uring.run owns the thread until every task has ended.  A host loop
 * instead watches uring.pollfd() -- an eventfd registered with the ring
 * (io_uring_register_eventfd), so the kernel makes it readable when a
 * completion is posted -- and calls uring.step() when it is: one turn of
 * the same loop uring.run turns (ur_loop_turn), waiting at most the
 * given time.  Tasks are started with uring.spawn outside any task (it
 * queues them; the next step runs them).
 *
 * Level, not edge: step empties the eventfd before its turn, and writes
 * it again after a turn that left tasks runnable (one that yielded, or
 * woken by another), so "pollfd readable" always means "call step".
 *
 * A step, unlike uring.run, touches no signal (the host owns them), has
 * no main task, and gives no deadlock verdict (the host may still wake a
 * task).  A task error nobody joins is raised by the step that saw it.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "uring.h"

static void pollfd_drain (ur_loop *loop) {
  uint64_t n;
  if (loop->pollfd >= 0)
    while (read(loop->pollfd, &n, sizeof n) < 0 && errno == EINTR) {}
}

static void pollfd_kick (ur_loop *loop) {
  uint64_t one = 1;
  if (loop->pollfd >= 0)
    while (write(loop->pollfd, &one, sizeof one) < 0 && errno == EINTR) {}
}

static int step_body (lua_State *L) {
  ur_loop *loop = (ur_loop *)lua_touserdata(L, 1);
  double wait = lua_tonumber(L, 2);
  lua_settop(L, 1);             /* ur_loop_turn keeps the stack at 1 */
  if (ur_foreign(loop)) ur_foreign_error(L, loop);
  ur_loop_turn(L, loop, wait);
  return 0;
}

/* uring.step([timeout]) -> busy: true while tasks live or the loop still
 * has its own requests to finish */
static int l_step (lua_State *L) {
  ur_loop *loop;
  double wait = lua_isnoneornil(L, 1) ? 0 : ur_checkseconds(L, 1);
  int st;
  loop = ur_loop_ready(L);
  if (loop->pid != getpid()) return ur_foreign_error(L, loop);
  if (loop->running)
    return luaL_error(L, "step: the loop is already running (inside "
                      "uring.run or a task); step drives it from outside");
  pollfd_drain(loop);
  /* no main task, but its slot holds false as in run: a task that fails
   * unjoined is then kept for us to raise (task.c), like run's */
  lua_pushboolean(L, 0);
  loop->main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  loop->running = 1;
  lua_pushcfunction(L, step_body);
  lua_pushlightuserdata(L, loop);
  lua_pushnumber(L, wait);
  st = lua_pcall(L, 2, 0, 0);
  loop->running = 0;
  luaL_unref(L, LUA_REGISTRYINDEX, loop->main_ref);
  loop->main_ref = LUA_NOREF;
  if (st != LUA_OK) return lua_error(L);   /* the loop itself failed */
  if (loop->runq_len > 0) pollfd_kick(loop);
  if (loop->error_ref == LUA_REFNIL) {     /* a task's, lost for memory */
    loop->error_ref = LUA_NOREF;
    return luaL_error(L, "not enough memory");
  }
  if (loop->error_ref != LUA_NOREF) {      /* a task failed, unjoined */
    lua_rawgeti(L, LUA_REGISTRYINDEX, loop->error_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, loop->error_ref);
    loop->error_ref = LUA_NOREF;
    return lua_error(L);
  }
  lua_pushboolean(L, loop->live_tasks > 0 || loop->canceling > 0
                     || loop->fd_closing > 0);
  return 1;
}

static int pollfd_register (ur_loop *loop) {
  return io_uring_register_eventfd(&loop->ring, loop->pollfd);
}

/* uring.pollfd() -> fd, readable when uring.step has something to do */
static int l_pollfd (lua_State *L) {
  ur_loop *loop = ur_loop_ready(L);
  int ret;
  if (loop->pid != getpid()) return ur_foreign_error(L, loop);
  if (loop->pollfd < 0) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return ur_pushfail(L, -errno, "pollfd: eventfd");
    loop->pollfd = fd;
    if ((ret = pollfd_register(loop)) < 0) {
      close(fd);
      loop->pollfd = -1;
      return ur_pushfail(L, ret, "pollfd: io_uring_register_eventfd");
    }
    /* tasks queued before the host looked: it should step at once */
    if (loop->runq_len > 0) pollfd_kick(loop);
  }
  lua_pushinteger(L, loop->pollfd);
  return 1;
}

/* a ring set up again (configure) keeps telling the same fd */
static void embed_ring_setup (lua_State *L, ur_loop *loop) {
  (void)L;
  if (loop->pollfd >= 0) pollfd_register(loop);
}

static void embed_close (ur_loop *loop) {
  if (loop->pollfd >= 0) close(loop->pollfd);   /* the ring is gone */
  loop->pollfd = -1;
}

void ur_register_embed (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"step", l_step}, {"pollfd", l_pollfd},
    {NULL, NULL}
  };
  static const ur_hooks hooks = {
    embed_ring_setup, NULL, NULL, embed_close, embed_close, NULL
  };
  ur_loop_hook(L, &hooks);
  ur_setfuncs(L, funcs);
}
