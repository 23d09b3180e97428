--- examples/http_hello.lua: a minimal HTTP/1.1 keep-alive server on uring.http.
--
--   lua5.4 examples/http_hello.lua [port] [--seconds S] [--max-requests N]
--
-- Answers every request with 200 "Hello, world!\n" (text/plain).  The
-- handler is two calls; uring.http does the rest: one task per connection,
-- each request head taken whole from the socket's buffer by the C parser
-- (so pipelined requests are simply the next heads, answered in order),
-- Content-Length and chunked request bodies read before the handler runs,
-- keep-alive by default ("Connection: close", or HTTP/1.0 without
-- "Connection: keep-alive", closes after the answer), HEAD answered with
-- the headers only, 400 for a malformed request and 431 for a head too
-- big.  The answer goes out in one send; the same answer again on a
-- connection reuses its bytes.
--
-- bench/http.sh runs it against bench/http_uring.lua, the same server
-- written by hand over the sockets (the reference), and the luv, cqueues
-- and C servers: both answer byte for byte alike.
--
-- The first line on stdout is "listening on 127.0.0.1:PORT" (port 0, the
-- default, lets the kernel choose).  Stops after S seconds (default 30)
-- or N answered requests, then prints requests, connections, req/s and
-- io_uring_enter calls.
--
-- Try it:  lua5.4 examples/http_hello.lua 8080 &
--          curl -v http://127.0.0.1:8080/ http://127.0.0.1:8080/again
--          wrk -t1 -c100 -d3s http://127.0.0.1:8080/
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local USAGE = "usage: lua5.4 examples/http_hello.lua [port] [--seconds S] [--max-requests N]\n"

local function usage(msg)
  io.stderr:write("http_hello: ", msg, "\n", USAGE)
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
local function hello(_, res)
  res:header("Content-Type", "text/plain")
  res:finish(BODY)
  -- the last answer: stop accepting; serve() returns once it is sent
  if max_requests and srv.requests >= max_requests then srv:close() end
end

-- Ctrl-C and SIGTERM stop the server as its deadline does: the summary
-- is printed and the exit status is 0.  The signals are blocked from
-- this call on (uring.signal), so a kill sent once "listening" shows is
-- never lost.  Returns a function that stops waiting for them.
local function stop_on_signals(stop)
  local waiters = {}
  for _, name in ipairs { "INT", "TERM" } do
    local sig = uring.signal(name)
    waiters[#waiters + 1] = uring.spawn(function()
      local got = pcall(sig.wait, sig)   -- false: the server ended first
      sig:close()
      if got then stop() end
    end)
  end
  return function()
    for _, t in ipairs(waiters) do t:cancel() end
  end
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
  local unsignal = stop_on_signals(function() srv:close() end)
  srv:serve()                  -- until closed, then the connections drain
  timer:cancel()
  unsignal()
  return uring.stats().enters - e0
end)

local dt = uring.now() - t0
io.stdout:write(("http_hello: %d requests on %d connections in %.2f s up (%.0f req/s), "
  .. "%d io_uring_enter calls\n"):format(srv.requests, srv.connections, dt,
  srv.requests / dt, enters))
io.stdout:flush()
