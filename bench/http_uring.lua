--- bench/http_uring.lua: HTTP/1.1 keep-alive hello world, hand-written
-- over lua-uring's sockets.
--
--   lua5.4 bench/http_uring.lua [port] [--seconds S] [--max-requests N] [--head]
--
-- The reference server of bench/http.sh ("lua-uring"): the luv, cqueues
-- and C servers are measured against it, and so is examples/http_hello.lua,
-- the same server on uring.http ("uring-http").  The protocol is the one
-- every bench server shares (HEAD: headers only): read the request line
-- and the headers line by line with sock:receive("*l") (so pipelined
-- requests are answered in order), skip a Content-Length body, answer
-- "Hello, world!\n" with Content-Length, keep the connection open unless
-- the client said "Connection: close" or spoke HTTP/1.0 without
-- "Connection: keep-alive"; a malformed request line gets a 400 and a
-- close.  What makes it fast is what it does not do per request: the
-- responses are built once; no table is made per request; a header is
-- inspected only if it starts with "C"/"c"; the socket's methods are
-- looked up once per connection, not per call (sock:receive goes through
-- the socket's metatable each time, ~100 instructions).  (Each receive
-- is one C call.)  --head reads each head with sock:receive_head instead: one C
-- call that finds, checks and parses the whole head (about half the
-- instructions per request; the same answers, bench/http_probe.lua
-- checks); without it the server reads line by line as its peers do.
-- Prints "listening on 127.0.0.1:PORT" first (port 0: any free).
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"
local byte, find, lower, sub = string.byte, string.find, string.lower, string.sub

local port, seconds, max_requests, by_head = 8080, nil, nil, false
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--seconds" then seconds = tonumber(arg[i + 1]); i = i + 2
    elseif a == "--max-requests" then max_requests = tonumber(arg[i + 1]); i = i + 2
    elseif a == "--head" then by_head = true; i = i + 1
    elseif tonumber(a) then port = math.tointeger(tonumber(a)); i = i + 1
    else
      io.stderr:write("usage: lua5.4 bench/http_uring.lua [port] "
                      .. "[--seconds S] [--max-requests N] [--head]\n")
      os.exit(2)
    end
  end
end

-- the responses, built once (uring.http's answers are byte for byte these)
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

local served = 0
local function done()
  io.stdout:write("served ", served, " requests\n")
  io.stdout:flush()
  os.exit(0)
end

-- the request loop: the luv and cqueues servers copy it
local function handle(sock)
  sock:setoption("nodelay", true)
  local receive, send = sock.receive, sock.send   -- looked up once
  while true do
    local line = receive(sock, "*l")
    if not line then break end
    if line ~= "" then       -- (blank lines between requests are allowed)
      -- the version ends the line: the usual two are compared as strings,
      -- any other is matched where it can only begin (a pattern tried at
      -- every position costs ~1,300 instructions, a compare ~20)
      local version = sub(line, -9)
      local http10 = version == " HTTP/1.0"
      local keep = not http10
      local head = byte(line, 1) == 72 and sub(line, 1, 5) == "HEAD "   -- "H"
      local bodylen = 0
      if not http10 and version ~= " HTTP/1.1"
         and not find(line, " HTTP/1%.%d$", #line - 8) then
        send(sock, BAD)
        break
      end
      while true do
        local h = receive(sock, "*l")
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
      if bodylen > 0 and not receive(sock, bodylen) then break end
      served = served + 1
      local ok
      if head then ok = send(sock, keep and HEAD_KEEP or HEAD_CLOSE)
      else ok = send(sock, keep and KEEP or CLOSE) end
      -- counted before a close ends the loop, so churn stops at N too
      if max_requests and served >= max_requests then done() end
      if not ok or not keep then break end
    end
  end
  ::done::
  sock:close()
end

-- --head: the same protocol with the head parsed in C (a bad head, or one
-- over 16 KiB, gets the 400 and a close, as a bad request line does)
local function handle_heads(sock)
  sock:setoption("nodelay", true)
  local receive_head, receive, send = sock.receive_head, sock.receive, sock.send
  while true do
    local method, err, _, _, _, _, keep, length = receive_head(sock)
    if not method then
      if err == "bad request" then send(sock, BAD) end
      break
    end
    if length and length > 0 and not receive(sock, length) then break end
    served = served + 1
    local ok
    if method == "HEAD" then ok = send(sock, keep and HEAD_KEEP or HEAD_CLOSE)
    else ok = send(sock, keep and KEEP or CLOSE) end
    if max_requests and served >= max_requests then done() end
    if not ok or not keep then break end
  end
  sock:close()
end
if by_head then handle = handle_heads end

uring.run(function()
  local server = assert(uring.listen("127.0.0.1", port))
  local _, p = server:getsockname()
  io.stdout:write("listening on 127.0.0.1:", p, "\n")
  io.stdout:flush()
  if seconds then
    uring.spawn(function() uring.sleep(seconds); done() end)
  end
  while true do
    local sock = server:accept()
    if sock then uring.spawn(handle, sock) end
  end
end)
