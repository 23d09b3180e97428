--- examples/ring_state.lua: inside the ring -- who moves which index.
--
--   lua5.4 examples/ring_state.lua
--
-- A teaching ring of 4 SQ entries (its CQ holds 8), looked at with
-- ring:state() after each step.  prep_* only moves our private sqe_tail;
-- submit publishes it as sq_tail and the kernel, consuming the SQEs,
-- moves sq_head; the kernel posts CQEs by moving cq_tail, and taking one
-- (wait_cqe) moves cq_head.  Then 12 NOPs into a CQ of 8: the CQ fills,
-- the kernel keeps the rest aside (sq_flags gets IORING_SQ_CQ_OVERFLOW)
-- and hands them over as room is made.  Exits non-zero if an index did
-- not move as described.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local r <close> = uring.ring { entries = 4 }
local failed = false

print(("%-34s %7s %7s %8s %7s %7s %8s"):format("step", "sq_head", "sq_tail",
  "sqe_tail", "cq_head", "cq_tail", "sq_flags"))
-- print the state after a step, and check the indices it names
local function step(what, want)
  local s = r:state()
  print(("%-34s %7d %7d %8d %7d %7d %8d"):format(what, s.sq_head, s.sq_tail,
    s.sqe_tail, s.cq_head, s.cq_tail, s.sq_flags))
  for k, v in pairs(want) do
    if s[k] ~= v then
      io.stderr:write(("ring_state: after %s, %s is %d, not %d\n"):format(what, k, s[k], v))
      failed = true
    end
  end
  return s
end

step("a new ring", { sq_head = 0, sq_tail = 0, sqe_tail = 0, cq_head = 0, cq_tail = 0 })
r:prep_nop(1); r:prep_nop(2)
step("prep_nop x2 (ours, not published)", { sqe_tail = 2, sq_tail = 0, sq_head = 0 })
r:submit()
step("submit (published, consumed)", { sq_tail = 2, sq_head = 2, cq_tail = 2, cq_head = 0 })
r:wait_cqe()
step("wait_cqe (one taken)", { cq_head = 1 })
r:wait_cqe()
step("wait_cqe (both taken)", { cq_head = 2 })

local cq = r:state().cq_entries
for _ = 1, 3 do
  for i = 1, 4 do r:prep_nop(i) end
  r:submit()
end
local s = step(("12 NOPs into a CQ of %d"):format(cq), { cq_tail = 2 + cq })
if s.sq_flags & 2 == 0 and s.overflow == 0 then
  io.stderr:write("ring_state: the CQ overflow did not show\n")
  failed = true
end
local got = 0
while r:inflight() > 0 do r:wait_cqe(); got = got + 1 end
step(("taken all %d"):format(got), { cq_head = 14, cq_tail = 14, sq_flags = 0 })
print(("the CQ held %d; the kernel kept %d aside and posted them as room was made"):format(
  cq, 12 - cq))
if failed then os.exit(1) end
