--- examples/http_server.lua: a small routed HTTP server on uring.http.
--
--   lua5.4 examples/http_server.lua [port] [--seconds S] [--root DIR]
--
-- Routes by method and Lua pattern (captures become handler arguments),
-- a JSON-ish echo of a POST body (Content-Length or chunked), a streamed
-- chunked response, static files under DIR (default ./docs) at /files/,
-- and a handler error that becomes a 500 while the server keeps going.
-- First line: "listening on 127.0.0.1:PORT"; after S seconds (default 30)
-- server:close() stops accepting, lets requests in flight finish, and the
-- script prints what it served.
--
-- Try it:  lua5.4 examples/http_server.lua 8080 &
--          curl http://127.0.0.1:8080/hello/you
--          curl --data-binary 'some bytes' http://127.0.0.1:8080/echo
--          curl http://127.0.0.1:8080/count/5
--          curl -I http://127.0.0.1:8080/files/api.md
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"
local http = uring.http

local port, seconds, root = 0, 30, "./docs"
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--seconds" then seconds = assert(tonumber(arg[i + 1]), "--seconds S"); i = i + 2
    elseif a == "--root" then root = assert(arg[i + 1], "--root DIR"); i = i + 2
    elseif a:match("^%d+$") then port = tonumber(a); i = i + 1
    else io.stderr:write("usage: lua5.4 examples/http_server.lua [port] [--seconds S] [--root DIR]\n"); os.exit(2) end
  end
end

local app = http.router()

app:get("^/$", function(req, res)
  res:header("Content-Type", "text/plain")
  res:finish("routes: /hello/NAME /echo (POST) /count/N /files/... /boom\n")
end)

app:get("^/hello/(%w+)$", function(req, res, name)
  return 200, "hello, " .. name .. "\n", { ["Content-Type"] = "text/plain" }
end)

app:post("^/echo$", function(req, res)
  res:header("Content-Type", "text/plain")
  res:finish(("%d bytes (%s), %s\n"):format(#req.body,
    req.headers["Transfer-Encoding"] and "chunked" or "Content-Length",
    req.headers["content-type"] or "no type"))
end)

app:get("^/count/(%d+)$", function(req, res, n)
  res:header("Content-Type", "text/plain")      -- no length: sent chunked
  for i = 1, math.min(tonumber(n), 1000) do
    res:write(i .. "\n")
    uring.sleep(0.01)
  end
  res:finish()
end)

app:get("^/files(/.*)$", http.static(root))

app:get("^/boom$", function() error("this handler fails: the client gets a 500") end)

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

local srv
uring.run(function()
  srv = assert(http.server { host = "127.0.0.1", port = port, handler = app })
  io.stdout:write(("listening on 127.0.0.1:%d\n"):format(srv:port()))
  io.stdout:flush()
  local timer = uring.spawn(function() uring.sleep(seconds); srv:close() end)
  local unsignal = stop_on_signals(function() srv:close() end)
  srv:serve()
  timer:cancel()
  unsignal()
end)
io.stdout:write(("http_server: %d requests on %d connections\n")
  :format(srv.requests, srv.connections))
