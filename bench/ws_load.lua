--- bench/ws_load.lua: WebSocket echo load for bench/ws.sh, on the uring
-- client (uring.http.websocket): CONNS connections, each keeping DEPTH
-- messages of SIZE bytes in flight, for SECONDS.  Every echo is checked against what was sent.
--   lua5.4 bench/ws_load.lua PORT CONNS DEPTH SIZE SECONDS
-- Prints "messages N".
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local port, conns, depth, size, seconds = tonumber(arg[1]), tonumber(arg[2]),
  tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5])
local total = 0

uring.run(function()
  local deadline = uring.now() + seconds
  local tasks = {}
  for c = 1, conns do
    tasks[c] = uring.spawn(function()
      local ws = assert(uring.http.websocket("ws://127.0.0.1:" .. port .. "/",
        { max_message = 64 << 20 }))
      local msg = ("%08d"):format(c) .. ("x"):rep(size - 8)
      -- DEPTH messages out at first, then one more per echo back
      for _ = 1, depth do assert(ws:send(msg, "binary")) end
      local n = 0
      while uring.now() < deadline do
        local m = assert(ws:receive())
        assert(m == msg, "a wrong echo")
        n = n + 1
        assert(ws:send(msg, "binary"))
      end
      total = total + n
      ws:close()
    end)
  end
  for _, t in ipairs(tasks) do assert(t:join()) end
end)
print("messages " .. total)
