package = "lua-uring"
version = "scm-1"
source = { url = "git+https://example.invalid/lua-uring.git" }
description = {
  summary = "Linux io_uring for Lua 5.4: coroutines over batched, completion-based I/O",
  detailed = [[
    A C core on liburing owns the ring, every buffer the kernel may touch and
    the reaping of completions; Lua coroutines map onto in-flight SQEs, so
    scripts write plain sequential file and network code.
  ]],
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = {
  LIBURING = { header = "liburing.h", library = "uring" },
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
}
build = {
  type = "builtin",
  install = { bin = { ["uring-repl"] = "bin/uring-repl",
                      ["uring-timeline"] = "bin/uring-timeline" } },
  modules = {
    ["uring.core"] = {
      sources = {
        -- the engine
        "csrc/core.c", "csrc/loop.c", "csrc/process.c", "csrc/req.c",
        "csrc/handle.c", "csrc/task.c", "csrc/err.c",
        -- the areas
        "csrc/fs.c", "csrc/copy.c", "csrc/buffer.c", "csrc/ring.c", "csrc/probe.c",
        "csrc/stats.c", "csrc/addr.c", "csrc/bufring.c", "csrc/dns.c",
        "csrc/thread.c", "csrc/net.c", "csrc/signal.c", "csrc/proc.c",
        "csrc/udp.c", "csrc/workers.c", "csrc/http.c", "csrc/fixedbuf.c",
        "csrc/fixedfile.c", "csrc/ring_req.c", "csrc/ring_prep.c", "csrc/ring_net.c",
        "csrc/statx.c", "csrc/jobs.c", "csrc/dir.c", "csrc/fsmeta.c",
        "csrc/failwatch.c", "csrc/tls.c",
        "csrc/wire.c", "csrc/threadpool.c", "csrc/embed.c",
        "csrc/websocket.c",
        "csrc/watch.c",
        "csrc/sync.c",
        "csrc/inspect.c",
        "csrc/send_zc.c",
        "csrc/http_serve.c",
        "csrc/msg_ring.c", "csrc/strcache.c", "csrc/recv_multishot.c",
      },
      defines = { "_GNU_SOURCE" },
      incdirs = { "csrc", "$(LIBURING_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(LIBURING_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      libraries = { "uring", "pthread", "ssl", "crypto" },
    },
    ["uring.readline"] = {
      sources = { "csrc/rl/readline.c" },
      libraries = { "readline" },
    },
    ["uring"] = "lua/uring/init.lua",
    ["uring.check"] = "lua/uring/check.lua",
    ["uring.file"] = "lua/uring/file.lua",
    ["uring.fs"] = "lua/uring/fs.lua",
    ["uring.net"] = "lua/uring/net.lua",
    ["uring.http"] = "lua/uring/http.lua",
    ["uring.http.message"] = "lua/uring/http/message.lua",
    ["uring.http.router"] = "lua/uring/http/router.lua",
    ["uring.http.server"] = "lua/uring/http/server.lua",
    ["uring.http.static"] = "lua/uring/http/static.lua",
    ["uring.http.client"] = "lua/uring/http/client.lua",
    ["uring.http.websocket"] = "lua/uring/http/websocket.lua",
    ["uring.proc"] = "lua/uring/proc.lua",
    ["uring.socket"] = "lua/uring/socket.lua",
    ["uring.repl"] = "lua/uring/repl.lua",
    ["uring.workers"] = "lua/uring/workers.lua",
    ["uring.trace"] = "lua/uring/trace.lua",
    ["uring.tls"] = "lua/uring/tls.lua",
    ["uring.ssl"] = "lua/uring/ssl.lua",
    ["uring.watch"] = "lua/uring/watch.lua",
    ["uring.sync"] = "lua/uring/sync.lua",
    ["uring.inspect"] = "lua/uring/inspect.lua",
    ["uring.inspect_page"] = "lua/uring/inspect_page.lua",
  },
}
