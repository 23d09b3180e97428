--- bench/https_uring.lua: the HTTPS server bench/tls.sh measures: uring.http
-- with tls = uring.tls.context, answering "Hello, world!\n" as
-- examples/http_hello.lua does.
--
--   lua5.4 bench/https_uring.lua PORT CERT KEY [--seconds S]
--
-- TLS 1.3 with TLS_AES_128_GCM_SHA256 only, and no session tickets: the
-- nginx it is compared with is set up alike, so every Connection: close
-- request is a full handshake on both.  First line: "listening on
-- 127.0.0.1:PORT".
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local port, cert, key = tonumber(arg[1]), arg[2], arg[3]
local seconds = arg[4] == "--seconds" and tonumber(arg[5]) or 600
if not (port and cert and key) then
  io.stderr:write("usage: lua5.4 bench/https_uring.lua PORT CERT KEY [--seconds S]\n")
  os.exit(2)
end

local ctx = assert(uring.tls.context { mode = "server", cert = cert, key = key,
  min_version = "1.3", ciphersuites = "TLS_AES_128_GCM_SHA256", tickets = false })
local HEADERS = { ["Content-Type"] = "text/plain" }

uring.run(function()
  local srv = assert(uring.http.server { port = port, tls = ctx, backlog = 4096,
    on_error = function() end,
    handler = function() return 200, "Hello, world!\n", HEADERS end })
  print("listening on 127.0.0.1:" .. srv:port())
  io.stdout:flush()
  -- bench/tls.sh ends it with SIGTERM; else it stops by itself
  local serving = uring.spawn(srv.serve, srv)
  uring.sleep(seconds)
  srv:close()
  serving:join()
end)
