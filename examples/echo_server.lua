--- examples/echo_server.lua: one task per connection.
--
--   lua5.4 examples/echo_server.lua [port] [--max-conns N] [--seconds S]
--
-- A line echo server on 127.0.0.1.  The main task accepts; every
-- connection gets a task of its own that reads a line with
-- sock:receive("*l") and sends it back, written as plain blocking code.
-- While a task waits, its receive is an SQE in the ring, so a thousand
-- idle clients cost a thousand parked coroutines and no thread, no poll
-- set and no receive buffer (the kernel picks one from the loop's
-- provided buffers only when bytes arrive).
--
-- Port 0 (the default) lets the kernel choose; the first line on stdout
-- is "listening on 127.0.0.1:PORT".  The server stops by itself after N
-- connections have been served, or after S seconds (default 30), and
-- prints how many connections and lines it served and how many
-- io_uring_enter calls that took (uring.stats().enters).
--
-- Try it:  lua5.4 examples/echo_server.lua 7000 --max-conns 1 &
--          printf 'hi\nthere\n' | nc -N 127.0.0.1 7000
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local USAGE = "usage: lua5.4 examples/echo_server.lua [port] [--max-conns N] [--seconds S]\n"

local function usage(msg)
  io.stderr:write("echo_server: ", msg, "\n", USAGE)
  os.exit(2)
end

-- arguments: [port] [--max-conns N] [--seconds S]
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

local conns, lines, bytes = 0, 0, 0
local active = {}            -- sock -> its task, while the connection lasts

-- The per-connection task: plain sequential code.
local function serve(sock)
  while true do
    local line, err, partial = sock:receive("*l")
    if not line then
      -- "closed": the peer's EOF (or our own close at the deadline); a
      -- last line without "\n" comes back as the partial result
      if err == "closed" and partial and partial ~= "" then
        lines, bytes = lines + 1, bytes + #partial
        sock:send(partial)
      end
      break
    end
    lines = lines + 1
    bytes = bytes + #line + 1
    if not sock:send(line .. "\n") then break end
  end
  sock:close()
  active[sock] = nil
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

  -- the deadline: stop accepting and hang up on whoever is still here
  local function stop()
    server:close()           -- wakes the accept below with nil, "closed"
    for sock in pairs(active) do sock:close() end
  end
  local timer = uring.spawn(function() uring.sleep(seconds); stop() end)
  local unsignal = stop_on_signals(stop)

  while not max_conns or conns < max_conns do
    local sock = server:accept()
    if not sock then break end
    conns = conns + 1
    active[sock] = uring.spawn(serve, sock)
  end
  server:close()
  for _, task in pairs(active) do task:join() end   -- let them finish
  timer:cancel()
  unsignal()
  return uring.stats().enters - e0
end)

io.stdout:write(("echo_server: %d connections, %d lines (%d bytes) in %.2f s, "
  .. "%d io_uring_enter calls\n"):format(conns, lines, bytes, uring.now() - t0, enters))
io.stdout:flush()
