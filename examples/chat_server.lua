--- examples/chat_server.lua: many clients, one broadcast.
--
--   lua5.4 examples/chat_server.lua [port] [--max-conns N] [--seconds S]
--
-- Every client gets a name (name1, name2, ...) and a reader task; each
-- line a client sends goes to every other client as "nameN: text".
--
-- The idea: a reader per client, a writer per client, a uring.queue
-- between them.  A broadcast must not wait for the slowest client, and a
-- socket takes one send at a time, so a broadcast only puts the line on
-- each client's outbox queue (unbounded: put never waits).  The client's
-- writer task waits in outbox:get() -- parked in the core, costing
-- nothing while the client is quiet -- and sends what has piled up
-- meanwhile (try_get) as one send.  A slow client therefore costs its own
-- queue, not everyone's latency.  When the client leaves, its reader
-- closes the outbox: later broadcasts to it get nil, "closed" and are
-- dropped, and the writer sends what is left, then ends.
--
-- Also sent: "* you are nameN" to a client when it joins, and
-- "* nameN joined" / "* nameN left" to the others.
--
-- The first line on stdout is "listening on 127.0.0.1:PORT" (port 0, the
-- default, lets the kernel choose).  It stops after N clients have come
-- and gone, or after S seconds (default 30), and prints what it relayed.
--
-- Try it:  lua5.4 examples/chat_server.lua 7001 &
--          nc 127.0.0.1 7001        (in two or three terminals)
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"
local concat = table.concat

local USAGE = "usage: lua5.4 examples/chat_server.lua [port] [--max-conns N] [--seconds S]\n"

local function usage(msg)
  io.stderr:write("chat_server: ", msg, "\n", USAGE)
  os.exit(2)
end

local port, max_conns, seconds = 0, nil, 30
do
  local i, positional = 1, 0
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
    elseif positional == 0 and a:match("^%d+$") then
      port, positional = tonumber(a), 1
      i = i + 1
    else
      usage("unexpected argument '" .. a .. "'")
    end
  end
end

local clients = {}           -- client -> true, while connected
local stats = { joined = 0, lines = 0, deliveries = 0, sends = 0 }

-- A client's writer: wait for its outbox, send what is there as one send.
local function writer(c)
  local batch = {}
  while true do
    local msg = c.outbox:get()           -- nil once closed and drained
    if msg == nil then break end
    batch[1] = msg
    for more in function() return c.outbox:try_get() end do
      batch[#batch + 1] = more
    end
    stats.sends = stats.sends + 1
    if not c.sock:send(concat(batch)) then break end
    for i = #batch, 1, -1 do batch[i] = nil end
  end
  c.outbox:close()                       -- a failed send: take no more
end

-- Queue msg for c; a client that has left (outbox closed) is skipped.
local function deliver(c, msg)
  if c.outbox:put(msg) then stats.deliveries = stats.deliveries + 1 end
end

local function broadcast(from, msg)
  for c in pairs(clients) do
    if c ~= from then deliver(c, msg) end
  end
end

-- A client's reader: every line it sends, to everyone else.
local function serve(c)
  local w = uring.spawn(writer, c)
  deliver(c, "* you are " .. c.name .. "\n")
  broadcast(c, "* " .. c.name .. " joined\n")
  clients[c] = true
  while true do
    local line = c.sock:receive("*l")
    if not line then break end
    stats.lines = stats.lines + 1
    broadcast(c, c.name .. ": " .. line .. "\n")
  end
  clients[c] = nil
  broadcast(c, "* " .. c.name .. " left\n")
  c.outbox:close()           -- the writer sends what is queued, then ends
  w:join()
  c.sock:close()
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
local enters = uring.run(function()
  local server = assert(uring.listen("127.0.0.1", port))
  local _, p = server:getsockname()
  io.stdout:write(("listening on 127.0.0.1:%d\n"):format(p))
  io.stdout:flush()
  local e0 = uring.stats().enters
  local readers = {}

  local function stop()
    server:close()
    for c in pairs(clients) do
      c.sock:close()         -- its reader and writer wake with "closed"
    end
  end
  local timer = uring.spawn(function() uring.sleep(seconds); stop() end)
  local unsignal = stop_on_signals(stop)

  while not max_conns or stats.joined < max_conns do
    local sock = server:accept()
    if not sock then break end
    stats.joined = stats.joined + 1
    local c = { sock = sock, name = "name" .. stats.joined, outbox = uring.queue() }
    readers[#readers + 1] = uring.spawn(serve, c)
  end
  server:close()
  for _, task in ipairs(readers) do task:join() end
  timer:cancel()
  unsignal()
  return uring.stats().enters - e0
end)

io.stdout:write(("chat_server: %d clients, %d lines relayed as %d deliveries "
  .. "in %d sends, %.2f s, %d io_uring_enter calls\n"):format(stats.joined,
  stats.lines, stats.deliveries, stats.sends, uring.now() - t0, enters))
io.stdout:flush()
