--- bench/sendzc_server.lua: an HTTP/1.1 keep-alive server whose every
-- answer is one body of --size bytes, sent with one sock:send (the head
-- and body are one string, built once), with uring.configure{send_zc}
-- as --zc says.
--
--   lua5.4 bench/sendzc_server.lua [port] --size BYTES [--zc BYTES|off] [--seconds S]
--
-- bench/sendzc.sh runs it under wrk with --zc off and on, in turn.  Prints
-- "listening on 127.0.0.1:PORT" first; on SIGTERM (the bench's stop) it
-- prints "served N send_zc Z copied C" (sends that went out as SEND_ZC,
-- and notifications saying the kernel copied the bytes after all) and
-- exits.
package.cpath = (os.getenv("URING_CPATH") or "./build/?.so") .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local port, size, zc, seconds = 8080, nil, false, nil
do
  local i = 1
  while arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == "--size" then size = math.tointeger(tonumber(v)); i = i + 2
    elseif a == "--zc" then zc = v ~= "off" and math.tointeger(tonumber(v)); i = i + 2
    elseif a == "--seconds" then seconds = tonumber(v); i = i + 2
    elseif math.tointeger(tonumber(a)) then port = math.tointeger(tonumber(a)); i = i + 1
    else size = nil; break end
  end
  if not size or size < 0 or zc == nil then
    io.stderr:write("usage: lua5.4 bench/sendzc_server.lua [port] --size BYTES "
                    .. "[--zc BYTES|off] [--seconds S]\n")
    os.exit(2)
  end
end
uring.configure{send_zc = zc}

local ANSWER = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
  .. "Content-Length: " .. size .. "\r\nConnection: keep-alive\r\n\r\n"
  .. ("x"):rep(size)
local CLOSE = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

local served = 0
local function report()
  local st = uring.stats()
  io.stdout:write(("served %d send_zc %d copied %d\n"):format(served, st.send_zc,
                                                           st.send_zc_copied))
  io.stdout:flush()
  os.exit(0)
end

local function handle(sock)
  while true do
    local method, _, _, _, _, _, keep, length = sock:receive_head()
    if not method then
      if _ == "bad request" then sock:send(CLOSE) end
      break
    end
    if length and length > 0 and not sock:receive(length) then break end
    if not sock:send(ANSWER) then break end
    served = served + 1
    if not keep then break end
  end
  sock:close()
end

uring.run(function()
  local srv = assert(uring.listen("127.0.0.1", port))
  local _, p = srv:getsockname()
  io.stdout:write("listening on 127.0.0.1:", p, "\n")
  io.stdout:flush()
  uring.spawn(function()
    uring.signal("TERM"):wait()
    report()
  end)
  if seconds then uring.spawn(function() uring.sleep(seconds); report() end) end
  while true do
    local c = srv:accept()
    if c then uring.spawn(handle, c) end
  end
end)
