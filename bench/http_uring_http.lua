--- bench/http_uring_http.lua: the bench's hello server on uring.http.
--
--   lua5.4 bench/http_uring_http.lua [port] [--seconds S] [--max-requests N]
--
-- The same answers, byte for byte, as examples/http_hello.lua (the
-- hand-written server): a uring.http.server whose handler sets one header
-- and finishes the body.  bench/http.sh runs it as "uring-http" to show
-- what the general server (request/response objects, header tables, the
-- handler call) costs over the hand-written loop.  First line:
-- "listening on 127.0.0.1:PORT"; the last one sums up.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local USAGE = "usage: lua5.4 bench/http_uring_http.lua [port] [--seconds S] [--max-requests N]\n"

local function usage(msg)
  io.stderr:write("http_uring_http: ", msg, "\n", USAGE)
  os.exit(2)
end

local port, seconds, max_requests = 0, 30, nil
do
  local i, positional = 1, 0
  while i <= #arg do
    local a = arg[i]
    if a == "--max-requests" or a == "--seconds" then
      local v = tonumber(arg[i + 1])
      if not v or v <= 0 then usage(a .. " needs a positive number") end
      if a == "--max-requests" then
        max_requests = math.tointeger(v) or usage(a .. " needs an integer")
      else seconds = v end
      i = i + 2
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      os.exit(0)
    elseif positional == 0 and a:match("^%d+$") then
      port, positional = tonumber(a), 1
      i = i + 1
    else
      usage("unexpected argument '" .. a .. "'")
    end
  end
end

local BODY = "Hello, world!\n"
local srv
local function hello(req, res)
  res:header("Content-Type", "text/plain")
  res:finish(BODY)
  if max_requests and srv.requests >= max_requests then srv:close() end
end

local t0 = uring.now()
local enters = uring.run(function()
  srv = assert(uring.http.server { host = "127.0.0.1", port = port,
    handler = hello, backlog = 4096 })
  io.stdout:write(("listening on 127.0.0.1:%d\n"):format(srv:port()))
  io.stdout:flush()
  local e0 = uring.stats().enters
  local timer = uring.spawn(function()
    uring.sleep(seconds)
    srv:close()
  end)
  srv:serve()                  -- until closed, then the connections drain
  timer:cancel()
  return uring.stats().enters - e0
end)

local dt = uring.now() - t0
io.stdout:write(("http_uring_http: %d requests on %d connections in %.2f s up (%.0f req/s), "
  .. "%d io_uring_enter calls\n"):format(srv.requests, srv.connections, dt,
  srv.requests / dt, enters))
io.stdout:flush()
