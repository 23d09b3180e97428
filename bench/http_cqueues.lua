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
  local line = read(con, "*l")
  if line and line:find("\r", 1, true) then line = line:gsub("\r", "") end
  return line
end

local function quiet(_, _, why) return why end

-- the request loop of bench/http_uring.lua, line for line
local function handle(con)
  con:setmode("b", "bf")       -- binary; output fully buffered, flushed per response
  con:onerror(quiet)           -- a peer's reset is a nil return, not a raise
  -- the methods looked up once per connection (as http_uring.lua does)
  local read, write, flush = con.read, con.write, con.flush
  while true do
    local line = receive_line(con, read)
    if not line then break end
    if line ~= "" then       -- (blank lines between requests are allowed)
      -- (the version checked as bench/http_uring.lua does)
      local version = sub(line, -9)
      local http10 = version == " HTTP/1.0"
      local keep = not http10
      local head = byte(line, 1) == 72 and sub(line, 1, 5) == "HEAD "   -- "H"
      local bodylen = 0
      if not http10 and version ~= " HTTP/1.1"
         and not find(line, " HTTP/1%.%d$", #line - 8) then
        write(con, BAD)
        flush(con)
        break
      end
      while true do
        local h = receive_line(con, read)
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
      if bodylen > 0 and not read(con, bodylen) then break end
      served = served + 1
      local ok
      if head then ok = write(con, keep and HEAD_KEEP or HEAD_CLOSE)
      else ok = write(con, keep and KEEP or CLOSE) end
      if not ok or not flush(con) or not keep then break end
      if max_requests and served >= max_requests then done() end
    end
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
