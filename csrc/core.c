/*
 * core.c: luaopen_uring_core, the module table of the C core.
 *
 * Each area registers its own functions and metatables (ur_register_*), so
 * a reader finds sock:send in net.c and file:read in fs.c.  The public
 * module is lua/uring/init.lua, which shapes this table for users.
 */
#include "uring.h"

/* the one exported symbol: the Makefile builds with -fvisibility=hidden */
__attribute__((visibility("default"))) int luaopen_uring_core (lua_State *L);

int luaopen_uring_core (lua_State *L) {
  lua_newtable(L);
  ur_register_loop(L);
  ur_register_fixedbuf(L);
  ur_register_fixedfile(L);
  ur_register_bufring(L);
  ur_register_err(L);
  ur_register_task(L);
  ur_register_fs(L);
  ur_register_copy(L);
  ur_register_net(L);
  ur_register_http(L);
  ur_register_http_serve(L);
  ur_register_dns(L);
  ur_register_udp(L);
  ur_register_signal(L);
  ur_register_proc(L);
  ur_register_buffer(L);
  ur_register_ring(L);
  ur_register_probe(L);
  ur_register_stats(L);
  ur_register_workers(L);
  ur_register_jobs(L);
  ur_register_dir(L);
  ur_register_fsmeta(L);
  ur_register_failwatch(L);
  ur_register_tls(L);
  ur_register_threadpool(L);
  ur_register_embed(L);
  ur_register_process(L);
  ur_register_websocket(L);
  ur_register_watch(L);
  ur_register_sync(L);
  ur_register_inspect(L);
  ur_register_msg_ring(L);
  ur_register_strcache(L);
  ur_register_recv_mshot(L);
#ifdef UR_FAULTS
  ur_register_faults(L);      /* core._faults: test builds only */
#endif
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
