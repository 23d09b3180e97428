--- bench/http_cqueues.lua: HTTP/1.1 keep-alive hello world on cqueues.
--
--   lua5.4 bench/http_cqueues.lua [port] [--seconds S] [--max-requests N]
--
-- The same protocol as bench/http_uring.lua (its request loop, copied;
-- the responses byte for byte):
-- the request line and headers are read line by line (pipelined requests
-- are answered in order), a Content-Length body is skipped, "Hello,
-- world!\n" goes back with Content-Length, and the connection stays open
-- unless the client said "Connection: close" or spoke HTTP/1.0 without
-- keep-alive; a malformed request line gets a 400 and a close.  One
-- coroutine per connection, like the lua-uring server.  Prints
-- "listening on 127.0.0.1:PORT" first (port 0: any free).
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
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
      io.stderr:write("usage: lua5.4 bench/http_cqueues.lua [port] "
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

-- "*l" in binary mode keeps any CR; drop them as LuaSocket's "*l" does
local function receive_line(con, read)
  local line = read(con)      -- a line ("*l", the default)
  if line and line:find("\r", 1, true) then line = line:gsub("\r", "") end
  return line
end

local function quiet(_, _, why) return why end

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

-- the request loop of bench/http_uring.lua, line for line
local function handle(con)
  con:setmode("b", "bf")       -- binary; output fully buffered, flushed per response
  con:onerror(quiet)           -- a peer's reset is a nil return, not a raise
  -- the methods looked up once per connection (as http_uring.lua does)
  local read, write, flush = con.read, con.write, con.flush
  while true do
    local line = receive_line(con, read)
    if not line then break end
    local kind = line_memo[line] or request_kind(line)
    if kind > 0 then
      local keep, bodylen = kind < 3, 0
      while true do
        local h = receive_line(con, read)
        if not h then goto done end
        local v = header_memo[h] or header_meaning(h)
        if v == -3 then                       -- (most headers: nothing to do)
        elseif v == -4 then break             -- the empty line ends the head
        elseif v >= 0 then bodylen = v
        else keep = v == -2 end
      end
      if bodylen > 0 and not read(con, bodylen) then break end
      served = served + 1
      local ok
      if keep then ok = write(con, KEEPS[kind])
      else ok = write(con, CLOSES[kind]) end
      if not ok or not flush(con) or not keep then break end
      if served >= limit then done() end
    elseif kind == 0 then                     -- malformed: 400, and close
      write(con, BAD)
      flush(con)
      break
    end                     -- (-1: an empty line between requests, allowed)
  end
  ::done::
  con:close()
end

local cq = cqueues.new()
local srv = assert(socket.listen{ host = "127.0.0.1", port = port,
                                  nodelay = true, reuseaddr = true })
assert(srv:listen())
local _, _, p = srv:localname()
io.stdout:write("listening on 127.0.0.1:", p, "\n")
io.stdout:flush()
cq:wrap(function()
  for con in srv:clients() do
    cq:wrap(handle, con)
  end
end)
if seconds then
  cq:wrap(function() cqueues.sleep(seconds); done() end)
end
while true do
  local ok, err = cq:loop()
  if ok then break end
  io.stderr:write("http_cqueues: ", tostring(err), "\n")   -- a handler's error: go on
end
