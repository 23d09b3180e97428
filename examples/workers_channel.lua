-- examples/workers_channel.lua: one worker accepts, the others answer.
--
--   lua5.4 examples/workers_channel.lua [connections] [--workers N]
--
-- uring.workers forks N processes, each with its own ring.  Worker 1
-- listens on 127.0.0.1 (a free port) and hands every connection it
-- accepts to workers 2..N in turn with ch:send(j, sock): the socket
-- moves (the fd goes over a Unix socket with SCM_RIGHTS, the receiver is
-- woken by an IORING_OP_MSG_RING that posts a completion into its ring).
-- The answering worker reads the request line and replies on the same
-- connection.  A client task in worker 1 makes the connections, so the
-- example runs alone and stops by itself; it prints who answered what.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local function usage()
  io.stderr:write("usage: lua5.4 examples/workers_channel.lua [connections] [--workers N]\n")
  os.exit(2)
end

local conns, nworkers = 6, 3
do
  local i = 1
  while arg[i] do
    if arg[i] == "--workers" then
      nworkers = math.tointeger(tonumber(arg[i + 1] or ""))
      if not nworkers or nworkers < 2 then usage() end
      i = i + 2
    else
      conns = math.tointeger(tonumber(arg[i]))
      if not conns or conns < 1 then usage() end
      i = i + 1
    end
  end
end
io.stdout:setvbuf("line")

-- worker 1: accept `conns` connections, move each to the next worker
local function acceptor(ch)
  local server <close> = assert(uring.listen("127.0.0.1", 0))
  local _, port = server:getsockname()
  print(("worker 1 listens on 127.0.0.1:%d and hands connections to workers 2..%d")
    :format(port, ch.n))
  -- the client: real TCP connections to that port, made concurrently
  local client = uring.spawn(function()
    local tasks, t0 = {}, uring.now()
    for k = 1, conns do
      tasks[k] = uring.spawn(function()
        local c <close> = assert(uring.connect("127.0.0.1", port))
        assert(c:send("hello " .. k .. "\n"))
        return assert(c:receive("*l"))
      end)
    end
    for k, t in ipairs(tasks) do
      local ok, answer = t:join()
      assert(ok, answer)
      print(("connection %d: %s"):format(k, answer))
    end
    return uring.now() - t0
  end)
  local next = 2
  for _ = 1, conns do
    local sock = assert(server:accept())
    assert(ch:send(next, sock))      -- sock is closed here from now on
    next = next == ch.n and 2 or next + 1
  end
  local _, secs = client:join()
  for j = 2, ch.n do assert(ch:send(j, "stop")) end
  print(("%d connections answered in %.1f ms, each moved to another process")
    :format(conns, secs * 1e3))
end

-- workers 2..N: answer every connection that arrives, until "stop"
local function answerer(i, pid, ch)
  local answered = 0
  while true do
    local from, msg = ch:receive()
    if msg == "stop" then break end
    uring.spawn(function()
      local sock <close> = msg
      local line = sock:receive("*l")
      if line then
        sock:send(("worker %d (pid %d) got %q from worker %d's accept\n")
          :format(i, pid, line, from))
      end
    end)
    answered = answered + 1
  end
  print(("worker %d answered %d connection(s)"):format(i, answered))
end

local ok = uring.workers(nworkers, function(i, pid, ch)
  if i == 1 then acceptor(ch) else answerer(i, pid, ch) end
end)
print(ok and "all workers ended cleanly" or "a worker failed")
os.exit(ok and 0 or 1)
