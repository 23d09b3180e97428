--- examples/recv_multishot.lua: one RECV armed per connection
-- (uring.configure{recv_multishot = true}).
--
--   lua5.4 examples/recv_multishot.lua [requests]
--
-- A kept-alive connection answered request by request: with plain
-- receives each request costs a RECV SQE (the kernel tries it, finds
-- nothing, arms a poll, then completes it when the request comes).  With
-- recv_multishot the socket's receive is one IORING_OP_RECV with
-- IORING_RECV_MULTISHOT from its second wait on: every request that
-- arrives posts a CQE with IORING_CQE_F_MORE, and its bytes land in the
-- socket's buffer even when no task is waiting.  This script runs the same
-- exchange both ways, counts the RECV SQEs and the CQEs that said "more
-- to come" (uring.trace), and shows requests that arrived while nobody
-- was receiving being found without a wait.
package.cpath = (os.getenv("URING_CPATH") or "./build/?.so") .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local N = math.tointeger(tonumber(arg[1] or 200)) or 200

-- N request/answer rounds on one loopback connection; returns the RECV
-- SQEs, the RECV CQEs with F_MORE, and the seconds it took
local function exchange()
  return uring.run(function()
    local srv = assert(uring.listen("127.0.0.1", 0))
    local _, port = srv:getsockname()
    local acc = uring.spawn(function() return assert(srv:accept()) end)
    local c = assert(uring.connect("127.0.0.1", port))
    local _, s = acc:join()
    srv:close()
    local server = uring.spawn(function()
      while true do
        local line = s:receive()
        if not line then break end
        assert(s:send("answer " .. line:sub(9) .. "\n"))
      end
      s:close()
    end)
    local sqes, more = 0, 0
    uring.trace(function(e)
      if e.op == "recv" and e.event == "sqe" then sqes = sqes + 1 end
      if e.op == "recv" and e.event == "cqe" and e.more then more = more + 1 end
    end)
    local t0 = uring.now()
    for i = 1, N do
      assert(c:send("request " .. i .. "\n"))
      assert(c:receive() == "answer " .. i, "answer " .. i .. " differs")
    end
    local secs = uring.now() - t0
    c:close()
    assert(server:join())
    uring.nop()
    uring.trace(false)
    return sqes, more, secs
  end)
end

uring.configure{recv_multishot = false}
local sqes0, more0, secs0 = exchange()
uring.configure{recv_multishot = true}
if not uring.features().recv_multishot.supported then
  print("this kernel has no multishot receive (Linux 6.0+): receives stay single shots")
  os.exit(0)
end
local sqes1, more1, secs1 = exchange()
print(("%d requests, both ends on one ring: plain receives %d RECV SQEs (%d CQEs with F_MORE); "
  .. "recv_multishot %d RECV SQEs (%d CQEs with F_MORE)"):format(N, sqes0, more0, sqes1, more1))

-- bytes that come while nobody receives are buffered by the CQE handler
uring.run(function()
  local srv = assert(uring.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local acc = uring.spawn(function() return assert(srv:accept()) end)
  local c = assert(uring.connect("127.0.0.1", port))
  local _, s = acc:join()
  srv:close()
  assert(c:send("hello\n"))
  assert(s:receive() == "hello")              -- first wait: a plain receive
  local t = uring.spawn(function() return s:receive() end)
  assert(c:send("again\n"))
  assert(select(2, t:join()) == "again")      -- second: the multishot is armed
  for i = 1, 3 do assert(c:send("pipelined " .. i .. "\n")) end
  uring.sleep(0.01)                           -- nobody is receiving
  local waiting = s:_buffered()
  local sqes = uring.stats().sqes
  for i = 1, 3 do assert(s:receive() == "pipelined " .. i) end
  print(("%d bytes arrived while no task received; three receives took them with %d new SQEs")
    :format(waiting, uring.stats().sqes - sqes))
  print(("armed now: %d multishot receive(s)"):format(uring.features().recv_multishot.armed))
  c:close(); s:close()
end)
print(("time for %d exchanges: plain %.1f ms, multishot %.1f ms (one process both ends: "
  .. "bench/http.sh measures a real server)"):format(N, secs0 * 1000, secs1 * 1000))
