--- examples/http_hello.lua: a fast minimal HTTP/1.1 keep-alive server.
--
--   lua5.4 examples/http_hello.lua [port] [--seconds S] [--max-requests N]
--
-- Answers every request with 200 "Hello, world!\n".  One task per
-- connection reads the request line and headers with sock:receive("*l"):
-- the socket's buffer holds whatever arrived, so pipelined requests (many
-- in one packet) are simply the next lines, and each answer is one send.
--
-- What makes it fast is what it does not do per request: the two possible
-- responses are built once at start-up; no table is made per request; a
-- header is inspected only if it starts with "C"/"c" (Connection:);
-- TCP_NODELAY is set so a small response leaves at once.  The ring does
-- the rest: a thousand connections' receives and sends go to the kernel
-- in one io_uring_enter per loop turn.
--
-- Keep-alive is the HTTP/1.1 default; "Connection: close" from the client
-- (or HTTP/1.0 without "Connection: keep-alive") closes after the answer.
-- A request body is not expected (GET/HEAD); Content-Length bodies are
-- skipped.
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
local byte, find, lower, sub = string.byte, string.find, string.lower, string.sub

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

-- the responses, built once
local BODY = "Hello, world!\n"
local function response(connection)
  return "HTTP/1.1 200 OK\r\n"
    .. "Content-Type: text/plain\r\n"
    .. "Content-Length: " .. #BODY .. "\r\n"
    .. "Connection: " .. connection .. "\r\n"
    .. "\r\n" .. BODY
end
local KEEP, CLOSE = response("keep-alive"), response("close")
local HEAD_KEEP = sub(KEEP, 1, #KEEP - #BODY)     -- HEAD: headers only
local HEAD_CLOSE = sub(CLOSE, 1, #CLOSE - #BODY)
local BAD = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

local requests, conns = 0, 0
local active = {}            -- sock -> true
local server
local stopping = false

local function stop()
  if stopping then return end
  stopping = true
  server:close()             -- wakes the accept loop with "closed"
  for sock in pairs(active) do sock:close() end
end

local function serve(sock)
  sock:setoption("nodelay", true)
  while true do
    local line = sock:receive("*l")
    if not line then break end
    if line ~= "" then       -- (blank lines between requests are allowed)
      -- "METHOD target HTTP/x.y"
      local http10 = sub(line, -8) == "HTTP/1.0"
      local keep = not http10
      local head = byte(line, 1) == 72 and sub(line, 1, 5) == "HEAD "   -- "H"
      local bodylen = 0
      if not find(line, " HTTP/1%.%d$") then
        sock:send(BAD)
        break
      end
      -- headers, up to the blank line
      while true do
        local h = sock:receive("*l")
        if not h then goto done end
        if h == "" then break end
        local c = byte(h, 1)
        if c == 67 or c == 99 then                            -- "C" or "c"
          local lh = lower(h)
          if find(lh, "^connection:") then
            if find(lh, "close", 12, true) then keep = false
            elseif find(lh, "keep-alive", 12, true) then keep = true end
          elseif find(lh, "^content%-length:") then
            bodylen = tonumber(lh:match("^content%-length:%s*(%d+)")) or 0
          end
        end
      end
      if bodylen > 0 and not sock:receive(bodylen) then break end
      requests = requests + 1
      local ok
      if head then ok = sock:send(keep and HEAD_KEEP or HEAD_CLOSE)
      else ok = sock:send(keep and KEEP or CLOSE) end
      if max_requests and requests >= max_requests then
        stop()
        break
      end
      if not ok or not keep then break end
    end
  end
  ::done::
  active[sock] = nil
  sock:close()
end

local t0 = uring.now()
local enters = uring.run(function()
  server = assert(uring.listen("127.0.0.1", port, { backlog = 4096 }))
  local _, p = server:getsockname()
  io.stdout:write(("listening on 127.0.0.1:%d\n"):format(p))
  io.stdout:flush()
  local e0 = uring.stats().enters
  local timer = uring.spawn(function()
    uring.sleep(seconds)
    stop()
  end)
  while true do
    local sock = server:accept()
    if not sock then break end
    if stopping then sock:close(); break end
    conns = conns + 1
    active[sock] = true
    uring.spawn(serve, sock)
  end
  stop()
  timer:cancel()
  return uring.stats().enters - e0
end)

local dt = uring.now() - t0
io.stdout:write(("http_hello: %d requests on %d connections in %.2f s up (%.0f req/s), "
  .. "%d io_uring_enter calls\n"):format(requests, conns, dt, requests / dt, enters))
io.stdout:flush()
