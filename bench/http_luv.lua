--- bench/http_luv.lua: HTTP/1.1 keep-alive hello world on luv (libuv).
--
--   lua5.4 bench/http_luv.lua [port] [--seconds S] [--max-requests N]
--
-- The same protocol as bench/http_uring.lua (its request loop, copied;
-- the responses byte for byte):
-- the request line and headers are taken line by line out of a per-
-- connection buffer (pipelined requests are answered in order), a
-- Content-Length body is skipped, "Hello, world!\n" goes back with
-- Content-Length, and the connection stays open unless the client said
-- "Connection: close" or spoke HTTP/1.0 without keep-alive; a malformed
-- request line gets a 400 and a close.  libuv is callback-driven, so the
-- parser is a small state machine fed by read_start.  Prints
-- "listening on 127.0.0.1:PORT" first (port 0: any free).
local uv = require "luv"
local byte, find, lower, sub = string.byte, string.find, string.lower, string.sub

local port, seconds, max_requests = 8080, nil, nil
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--seconds" then seconds = tonumber(arg[i + 1]); i = i + 2
    elseif a == "--max-requests" then max_requests = tonumber(arg[i + 1]); i = i + 2
    elseif tonumber(a) then port = math.tointeger(tonumber(a)); i = i + 1
    else
      io.stderr:write("usage: lua5.4 bench/http_luv.lua [port] "
                      .. "[--seconds S] [--max-requests N]\n")
      os.exit(2)
    end
  end
end

-- the responses, built once, byte for byte those of bench/http_uring.lua
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
-- lines, so endless distinct lines cost bounded memory.  (The
-- code of bench/http_uring.lua, word for word.)
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

local function close(c)
  if not c:is_closing() then c:close() end
end

-- the request loop of bench/http_uring.lua turned into a state machine
-- fed by read_start: the same checks, in the same order
local function handle(c)
  c:nodelay(true)
  local write = c.write   -- looked up once (as http_uring.lua does)
  local buf, pos = "", 1
  -- state: "line" (waiting for a request line), "head" (headers),
  -- "body" (skipping bodylen bytes)
  local state, keep, kind, bodylen = "line", true, 1, 0
  local closing = false

  -- one line out of the buffer (LuaSocket "*l": CRs dropped), or nil
  local function take_line()
    local nl = find(buf, "\n", pos, true)
    if not nl then return nil end
    local line = sub(buf, pos, nl - 1)
    pos = nl + 1
    if find(line, "\r", 1, true) then line = line:gsub("\r", "") end
    return line
  end

  local function finish()
    closing = true
    c:shutdown(function() close(c) end)
  end

  local function respond()
    served = served + 1
    if keep then write(c, KEEPS[kind]) else write(c, CLOSES[kind]) end
    if not keep then finish() end
    if served >= limit then done() end
    state = "line"
  end

  c:read_start(function(err, data)
    if err or not data then close(c); return end
    if closing then return end
    if pos > #buf then buf, pos = data, 1
    else buf = sub(buf, pos) .. data; pos = 1 end
    while not closing do
      if state == "line" then
        local line = take_line()
        if not line then break end
        kind = line_memo[line] or request_kind(line)
        if kind > 0 then
          keep, bodylen = kind < 3, 0
          state = "head"
        elseif kind == 0 then                 -- malformed: 400, and close
          c:write(BAD)
          finish()
          break
        end                 -- (-1: an empty line between requests, allowed)
      elseif state == "head" then
        local h = take_line()
        if not h then break end
        local v = header_memo[h] or header_meaning(h)
        if v == -3 then                       -- (most headers: nothing to do)
        elseif v == -4 then                   -- the empty line ends the head
          if bodylen > 0 then state = "body" else respond() end
        elseif v >= 0 then bodylen = v
        else keep = v == -2 end
      else -- body
        local have = #buf - pos + 1
        if have < bodylen then
          bodylen = bodylen - have
          pos = #buf + 1
          break
        end
        pos = pos + bodylen
        bodylen = 0
        respond()
      end
    end
  end)
end

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))
assert(server:listen(511, function(err)
  if err then return end
  local c = uv.new_tcp()
  if server:accept(c) then handle(c) else c:close() end
end))
io.stdout:write("listening on 127.0.0.1:", server:getsockname().port, "\n")
io.stdout:flush()
if seconds then
  local t = uv.new_timer()
  t:start(math.floor(seconds * 1000), 0, done)
end
uv.run()
