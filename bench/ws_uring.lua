--- bench/ws_uring.lua: a WebSocket echo server on uring.http (req:upgrade),
-- for bench/ws.sh.  lua5.4 bench/ws_uring.lua [port] [--seconds S]
-- First line: "listening on 127.0.0.1:PORT".
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local port, seconds = tonumber(arg[1] or 0), 600
if arg[2] == "--seconds" then seconds = assert(tonumber(arg[3])) end

uring.run(function()
  local srv = assert(uring.http.server{ port = port, handler = function(req)
    local ws = req:upgrade{ max_message = 64 << 20 }
    if not ws then return end
    while true do
      local m, kind = ws:receive()
      if not m or not ws:send(m, kind) then break end
    end
  end })
  print("listening on 127.0.0.1:" .. srv:port())
  io.stdout:flush()
  uring.spawn(function() uring.sleep(seconds); srv:close() end)
  srv:serve()
end)
