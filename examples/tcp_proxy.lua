--- examples/tcp_proxy.lua: two sockets, two tasks, and a half-close.
--
--   lua5.4 examples/tcp_proxy.lua LISTEN_PORT TARGET_HOST TARGET_PORT
--                                 [--max-conns N] [--seconds S]
--
-- Listens on 127.0.0.1:LISTEN_PORT (0: the kernel chooses; the first line
-- on stdout is "listening on 127.0.0.1:PORT") and relays every connection
-- to TARGET_HOST:TARGET_PORT.  Each connection has two sockets and two
-- copying tasks, one per direction: recv from one side, send to the other.
-- A socket receives in one task while another sends on it; the two never
-- share an operation.
--
-- TCP is two independent byte streams, so EOF is per direction: when one
-- side stops sending (recv says "closed") the task passes that on with
-- shutdown("send") on the other socket, which sends a FIN and keeps the
-- other direction open; a client that sends a request, half-closes and
-- then reads the whole answer works through the proxy.  The connection
-- is closed when both directions are done, or at once on an error.
--
-- Stops after N connections have been relayed, or after S seconds
-- (default 30); prints the bytes moved each way.
--
-- Try it:  lua5.4 examples/echo_server.lua 7000 &
--          lua5.4 examples/tcp_proxy.lua 7002 127.0.0.1 7000 &
--          printf 'through\nthe proxy\n' | nc -N 127.0.0.1 7002
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local USAGE = "usage: lua5.4 examples/tcp_proxy.lua LISTEN_PORT TARGET_HOST TARGET_PORT "
  .. "[--max-conns N] [--seconds S]\n"

local function usage(msg)
  io.stderr:write("tcp_proxy: ", msg, "\n", USAGE)
  os.exit(2)
end

local max_conns, seconds = nil, 30
local pos = {}
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--max-conns" or a == "--seconds" then
      local v = tonumber(arg[i + 1])
      if not v or v <= 0 then usage(a .. " needs a positive number") end
      if a == "--max-conns" then max_conns = math.tointeger(v) or usage(a .. " needs an integer")
      else seconds = v end
      i = i + 2
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      os.exit(0)
    else
      pos[#pos + 1] = a
      i = i + 1
    end
  end
end
if #pos ~= 3 then usage("expected LISTEN_PORT TARGET_HOST TARGET_PORT") end
local listen_port, target_host, target_port = tonumber(pos[1]), pos[2], tonumber(pos[3])
if not listen_port or not target_port then usage("ports are numbers") end

local CHUNK = 64 * 1024
local stats = { conns = 0, failed = 0, up = 0, down = 0 }
local active = {}            -- connection -> true
local stopping = false

-- Copy from -> to until from's EOF, then half-close `to`.  `dir` names the
-- counter.  On an error both sockets are closed, which wakes the other
-- direction's task with "closed".
local function pump(conn, from, to, dir)
  while true do
    local data, err = from:recv(CHUNK)
    if not data then
      if err == "closed" and not conn.dead then
        to:shutdown("send")  -- our FIN: "no more from this side"
        return
      end
      break
    end
    if not to:send(data) then break end
    stats[dir] = stats[dir] + #data
  end
  -- an error (reset, or our own close): end both directions now
  if not conn.dead then
    conn.dead = true
    conn.client:close()
    conn.target:close()
  end
end

local function relay(client)
  local target, msg = uring.connect(target_host, target_port)
  if not target then
    stats.failed = stats.failed + 1
    io.stderr:write("tcp_proxy: ", tostring(msg), "\n")
    client:close()
    return
  end
  if stopping then           -- the deadline passed while we connected
    client:close()
    target:close()
    return
  end
  local conn = { client = client, target = target }
  active[conn] = true
  local up = uring.spawn(pump, conn, client, target, "up")
  pump(conn, target, client, "down")     -- this task is the other direction
  up:join()
  conn.dead = true
  client:close()
  target:close()
  active[conn] = nil
end

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

local t0 = uring.now()
uring.run(function()
  local server = assert(uring.listen("127.0.0.1", listen_port))
  local _, p = server:getsockname()
  io.stdout:write(("listening on 127.0.0.1:%d\n"):format(p))
  io.stdout:flush()
  local tasks = {}

  local function stop()
    stopping = true
    server:close()
    for conn in pairs(active) do
      conn.dead = true
      conn.client:close()
      conn.target:close()
    end
  end
  local timer = uring.spawn(function() uring.sleep(seconds); stop() end)
  local unsignal = stop_on_signals(stop)

  while not max_conns or stats.conns < max_conns do
    local client = server:accept()
    if not client then break end
    stats.conns = stats.conns + 1
    tasks[#tasks + 1] = uring.spawn(relay, client)
  end
  server:close()
  for _, task in ipairs(tasks) do task:join() end
  timer:cancel()
  unsignal()
end)

io.stdout:write(("tcp_proxy: %d connections (%d failed), %d bytes client->target, "
  .. "%d bytes target->client, %.2f s\n"):format(stats.conns, stats.failed,
  stats.up, stats.down, uring.now() - t0))
io.stdout:flush()
