--- bench/http_uring.lua: HTTP/1.1 keep-alive hello world, hand-written
-- over lua-uring's sockets.
--
--   lua5.4 bench/http_uring.lua [port] [--seconds S] [--max-requests N] [--head]
--
-- The reference server of bench/http.sh ("lua-uring"): the luv, cqueues
-- and C servers are measured against it, and so is
-- examples/http_hello.lua, the same server on uring.http ("uring-http").
-- The protocol is the one every bench server shares (HEAD: headers only):
-- read the request line and the headers line by line with sock:receive()
-- (LuaSocket's default pattern, "*l"; so pipelined requests are answered
-- in order), skip a Content-Length body, answer "Hello, world!\n" with
-- Content-Length, keep the connection open unless the client said
-- "Connection: close" or spoke HTTP/1.0 without "Connection: keep-alive";
-- a malformed request line gets a 400 and a close.  What makes it fast is
-- what it does not do per request: the responses are built once; no table
-- is made per request; what a request line or a header line means is
-- worked out once per distinct line and remembered (a table probe with the
-- string receive returned, not C calls into the string library; the empty
-- line too); the socket's methods are looked up once per
-- connection, not per call (sock:receive goes through the socket's
-- metatable each time, ~100 instructions).  (Each receive is one C call.)
-- --head reads each head with sock:receive_head instead: one C call that
-- finds, checks and parses the whole head (the same answers,
-- bench/http_probe.lua checks); without it the server reads line by line
-- as its peers do.
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

-- What a request line or a header line means, worked out once per
-- distinct line and remembered: a server sees the same few lines again
-- and again (each request of a keep-alive client repeats its Host and
-- Accept lines; a load generator repeats its whole head), and a table
-- probe with a string Lua has already interned costs a tenth of the
-- byte/sub/find checks (each a C call).  The empty line is in each memo
-- from the start: between requests it is skipped (-1), after the headers
-- it ends the head (-4).  A memo starts again when it holds MEMO_MAX
-- lines, so endless distinct lines cost bounded memory.  The
-- luv and cqueues servers share this code.
local MEMO_MAX = 256
local line_memo, line_count = { [""] = -1 }, 0
local header_memo, header_count = { [""] = -4 }, 0

-- a request line: 1 HTTP/1.1, 2 HEAD on HTTP/1.1, 3 HTTP/1.0, 4 HEAD on
-- HTTP/1.0, 0 malformed (400): numbers, so `memo[line] or kind(line)` is
-- one test.  The version ends the line: the usual two are compared as
-- strings, any other is matched where it can only begin (a pattern tried
-- at every position costs ~1,300 instructions).
local function request_kind(line)
  local version = sub(line, -9)
  local http10 = version == " HTTP/1.0"
  local kind = 0
  if http10 or version == " HTTP/1.1"
     or find(line, " HTTP/1%.%d$", #line - 8) then
    kind = (http10 and 3 or 1)
           + ((byte(line, 1) == 72 and sub(line, 1, 5) == "HEAD ") and 1 or 0)
  end
  if line_count >= MEMO_MAX then line_memo, line_count = { [""] = -1 }, 0 end
  line_memo[line] = kind
  line_count = line_count + 1
  return kind
end

-- a header line: -1 "Connection: close", -2 "Connection: keep-alive", a
-- count >= 0 a Content-Length, -3 none of these (only a line starting
-- with "C"/"c" is looked at)
local function header_meaning(h)
  local v = -3
  local c = byte(h, 1)
  if c == 67 or c == 99 then                                  -- "C" or "c"
    local lh = lower(h)
    if find(lh, "^connection:") then
      if find(lh, "close", 12, true) then v = -1
      elseif find(lh, "keep-alive", 12, true) then v = -2 end
    elseif find(lh, "^content%-length:") then
      v = tonumber(lh:match("^content%-length:%s*(%d+)")) or 0
    end
  end
  if header_count >= MEMO_MAX then
    header_memo, header_count = { [""] = -4 }, 0
  end
  header_memo[h] = v
  header_count = header_count + 1
  return v
end

-- the answer by kind of request, kept open or closing
local KEEPS = { KEEP, HEAD_KEEP, KEEP, HEAD_KEEP }
local CLOSES = { CLOSE, HEAD_CLOSE, CLOSE, HEAD_CLOSE }
local limit = max_requests or math.maxinteger   -- done() at this many

-- the request loop: the luv and cqueues servers copy it
local function handle(sock)
  sock:setoption("nodelay", true)
  local receive, send = sock.receive, sock.send   -- looked up once
  while true do
    local line = receive(sock)         -- a line: LuaSocket's default "*l"
    if not line then break end
    local kind = line_memo[line] or request_kind(line)
    if kind > 0 then
      local keep, bodylen = kind < 3, 0
      while true do
        local h = receive(sock)
        if not h then goto done end
        local v = header_memo[h] or header_meaning(h)
        if v == -3 then                       -- (most headers: nothing to do)
        elseif v == -4 then break             -- the empty line ends the head
        elseif v >= 0 then bodylen = v
        else keep = v == -2 end
      end
      if bodylen > 0 and not receive(sock, bodylen) then break end
      served = served + 1
      local ok
      if keep then ok = send(sock, KEEPS[kind])
      else ok = send(sock, CLOSES[kind]) end
      -- counted before a close ends the loop, so churn stops at N too
      if served >= limit then done() end
      if not ok or not keep then break end
    elseif kind == 0 then                     -- malformed: 400, and close
      send(sock, BAD)
      break
    end                     -- (-1: an empty line between requests, allowed)
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
    if served >= limit then done() end
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
