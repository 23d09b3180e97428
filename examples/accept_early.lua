--- examples/accept_early.lua: accept and first receive without a task
-- switch.
--
--   lua5.4 examples/accept_early.lua [connections]
--
-- A listener made with {first_recv = true} (uring.http's are): when its
-- multishot ACCEPT completes, the core queues the new connection's first
-- IORING_OP_RECV at once, from the completion handler,
-- before any task runs (into a provided buffer: a connection that never
-- speaks holds none).  The socket server:accept() returns adopts it: the
-- first receive takes what it brought, or waits on it, with no SQE of its
-- own.  Here N clients connect and send a line at once; the server
-- accepts them all, then answers each.  uring.trace records each RECV
-- SQE's fd and time: every server connection's one RECV was prepared
-- before accept() handed the connection over.
package.cpath = (os.getenv("URING_CPATH") or "./build/?.so") .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local N = math.tointeger(tonumber(arg[1] or 20)) or 20

local early, answered, recvs = 0, 0, 0
uring.run(function()
  local prepped = {}                  -- fd -> times of its RECV SQEs
  uring.trace(function(e)
    if e.event == "sqe" and e.op == "recv" then
      prepped[e.fd] = prepped[e.fd] or {}
      table.insert(prepped[e.fd], e.time)
    end
  end)
  local srv = assert(uring.listen("127.0.0.1", 0, { first_recv = true }))
  local _, port = srv:getsockname()
  local clients = {}
  for i = 1, N do
    clients[i] = uring.spawn(function()
      local c = assert(uring.connect("127.0.0.1", port))
      assert(c:send(("hello %d\n"):format(i)))
      assert(c:receive("*l") == ("hi %d"):format(i))
      c:close()
    end)
  end
  local conns = {}
  for i = 1, N do
    local s = assert(srv:accept())
    conns[i] = { sock = s, taken = uring.now() }
  end
  for _, conn in ipairs(conns) do
    local line = assert(conn.sock:receive("*l"))
    -- its number only now: fd() settles a first RECV still in flight
    -- (cancels it, for whoever reads the fd by other means)
    conn.fd = conn.sock:fd()
    assert(conn.sock:send(line:gsub("hello", "hi") .. "\n"))
    answered = answered + 1
  end
  uring.yield()                       -- the last trace events are delivered
  uring.trace(false)
  for _, conn in ipairs(conns) do
    local times = prepped[conn.fd] or {}
    recvs = recvs + #times
    if times[1] and times[1] <= conn.taken then early = early + 1 end
    conn.sock:close()
  end
  for _, t in ipairs(clients) do assert(t:join()) end
  srv:close()
end)

print(("%d connections, %d answered: %d RECV SQEs on the server's sockets, "
  .. "%d of them queued by the core before accept() returned the connection")
  :format(N, answered, recvs, early))
os.exit(early == N and recvs == N and answered == N and 0 or 1)
