--- examples/tour_multishot.lua: tour step 8 — multishot accept, provided buffers.
--
--   lua5.4 examples/tour_multishot.lua
--
-- A classic server re-arms accept after each connection: one request per
-- connection.  A multishot IORING_OP_ACCEPT is submitted once and posts a
-- CQE for every connection, each with IORING_CQE_F_MORE ("more will
-- come") until it is cancelled.  uring.listen arms one; server:accept()
-- takes the next CQE's connection.
--
-- Receives use provided buffers (IOSQE_BUFFER_SELECT from a buffer ring
-- the core registered): the kernel picks a buffer only when data arrives,
-- so 100 idle connections hold no receive buffer.
--
-- It opens 100 connections to a listener, each sends one line, and counts
-- with uring.trace the accept SQEs and CQEs (and the recv ones).
-- Exits non-zero unless 100 connections arrived through exactly one
-- accept SQE, with 100 accept CQEs all flagged more = true.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local CONNS = 100
local count = { sqe = {}, cqe = {}, more = {} }
local function tally(e)
  if e.event == "enter" then return end   -- counted by op: SQEs and CQEs only
  local t = count[e.event]
  t[e.op] = (t[e.op] or 0) + 1
  if e.event == "cqe" and e.more then count.more[e.op] = (count.more[e.op] or 0) + 1 end
end

local got = uring.run(function()
  uring.trace(tally)                  -- from here on: every SQE and CQE
  local server = assert(uring.listen("127.0.0.1", 0))
  local _, port = server:getsockname()
  local lines = {}
  local acceptor = uring.spawn(function()
    local handlers = {}
    for i = 1, CONNS do
      local c = assert(server:accept())
      handlers[i] = uring.spawn(function()
        local l, e = c:receive()
        if not l then io.stderr:write("recv: ", tostring(e), "\n") end
        lines[#lines + 1] = l
        c:close()
      end)
    end
    for _, h in ipairs(handlers) do assert(h:join()) end
  end)
  local clients = {}
  for i = 1, CONNS do
    clients[i] = uring.spawn(function()
      local s = assert(uring.connect("127.0.0.1", port))
      assert(s:send(("hello %d\n"):format(i)))
      s:receive("a")                  -- until the server closes
      s:close()
    end)
  end
  for _, c in ipairs(clients) do assert(c:join()) end
  assert(acceptor:join())
  server:close()
  uring.yield()                       -- deliver the last trace events
  uring.trace(false)
  return #lines
end)

local ops = {}
for op in pairs(count.sqe) do ops[#ops + 1] = op end
for op in pairs(count.cqe) do if not count.sqe[op] then ops[#ops + 1] = op end end
table.sort(ops)
print(("%d connections to one listener; uring.trace counts:\n"):format(CONNS))
print(("%-14s %6s %6s %12s"):format("op", "SQEs", "CQEs", "CQEs more"))
for _, op in ipairs(ops) do
  print(("%-14s %6d %6d %12d"):format(op, count.sqe[op] or 0, count.cqe[op] or 0,
    count.more[op] or 0))
end
local a_sqe, a_cqe, a_more = count.sqe.accept or 0, count.cqe.accept or 0, count.more.accept or 0
print(("\naccept: %d SQE, %d CQEs (%d with more = true); lines received: %d")
  :format(a_sqe, a_cqe, a_more, got))
local ok = got == CONNS and a_sqe == 1 and a_cqe >= CONNS and a_more >= CONNS
print(ok and ("ok: one multishot accept SQE brought %d connections"):format(a_more)
         or "unexpected result")
os.exit(ok and 0 or 1, true)
