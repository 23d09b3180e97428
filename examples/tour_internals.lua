--- examples/tour_internals.lua: tour step 13 — inside the rings: head,
--- tail, mask, and who writes which.
--
--   lua5.4 examples/tour_internals.lua
--
-- Each queue is an array of 2^k slots and two free-running 32-bit
-- indices.  The producer writes the tail, the consumer the head; neither
-- writes the other's.  For the SQ we produce (sq_tail) and the kernel
-- consumes (sq_head); for the CQ the kernel produces (cq_tail) and we
-- consume (cq_head).  An entry's slot is index & mask: the indices only
-- grow, and tail - head is how many entries are in the queue.
--
-- After each step the script prints ring:state() (the mapped memory, as
-- we see it) beside ring:fdinfo() (the kernel's own account of the same
-- indices) and checks that both say what the step claims.  Exits
-- non-zero if an index moved that should not have, or if our view and
-- the kernel's ever differ.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local ring <close> = assert(uring.ring{entries = 4})   -- CQ: 8 entries
local failed = {}

local function kernel_view()
  local t = assert(ring:fdinfo())
  return {
    sq_head = tonumber(t:match("\nSqHead:%s*(%d+)")),
    sq_tail = tonumber(t:match("\nSqTail:%s*(%d+)")),
    cq_head = tonumber(t:match("\nCqHead:%s*(%d+)")),
    cq_tail = tonumber(t:match("\nCqTail:%s*(%d+)")),
  }
end

print(("%-38s %7s %7s %8s %7s %7s   %s"):format("step", "sq_head", "sq_tail",
  "sqe_tail", "cq_head", "cq_tail", "fdinfo (kernel's view)"))

-- print one step; want = {index = value}; every index must also match
-- what /proc/self/fdinfo says
local function step(what, want)
  local s, k = ring:state(), kernel_view()
  print(("%-38s %7d %7d %8d %7d %7d   %d %d %d %d"):format(what, s.sq_head,
    s.sq_tail, s.sqe_tail, s.cq_head, s.cq_tail, k.sq_head, k.sq_tail,
    k.cq_head, k.cq_tail))
  for name, v in pairs(want) do
    if s[name] ~= v then
      failed[#failed + 1] = ("after %s, %s is %d, not %d"):format(what, name, s[name], v)
    end
  end
  for _, name in ipairs { "sq_head", "sq_tail", "cq_head", "cq_tail" } do
    if s[name] ~= k[name] then
      failed[#failed + 1] = ("after %s, state().%s = %d but fdinfo says %d")
        :format(what, name, s[name], k[name])
    end
  end
  return s
end

local s0 = step("new ring (SQ 4, CQ 8)", { sq_head = 0, sq_tail = 0, sqe_tail = 0,
                                           cq_head = 0, cq_tail = 0 })
print(("masks: sq_mask = %d, cq_mask = %d (entries - 1: slot = index & mask)")
  :format(s0.sq_mask, s0.cq_mask))

for i = 1, 3 do ring:prep_nop(i) end
-- only our private copy moved: the kernel cannot see these SQEs yet
step("3 x prep_nop (private sqe_tail)", { sqe_tail = 3, sq_tail = 0, sq_head = 0 })

ring:submit()
-- we stored sq_tail = 3 (a release store: the SQE contents are visible
-- before the index that announces them); the kernel, inside this
-- io_uring_enter, consumed them (sq_head), ran the NOPs and posted three
-- CQEs (cq_tail, again a release store after the CQE contents)
step("submit (we: sq_tail; kernel: the rest)", { sq_tail = 3, sq_head = 3, cq_tail = 3,
                                                 cq_head = 0 })

ring:wait_cqe(nil, true)          -- read the CQE at the head, keep it
step("wait_cqe(keep): read, not consumed", { cq_head = 0, cq_tail = 3 })
ring:cqe_seen()                   -- now we store cq_head: the slot is free
step("cqe_seen (we: cq_head)", { cq_head = 1 })
ring:wait_cqe(); ring:wait_cqe()
step("2 x wait_cqe", { cq_head = 3, cq_tail = 3 })

-- ten more rounds: the indices run past the queue sizes; slots wrap
for r = 1, 10 do
  for i = 1, 3 do ring:prep_nop(100 * r + i) end
  ring:submit()
  for _ = 1, 3 do ring:wait_cqe() end
end
local s = step("10 more rounds of 3", { sq_head = 33, sq_tail = 33, cq_head = 33,
                                        cq_tail = 33 })
print(("the next SQE goes in SQ slot %d & %d = %d; the next CQE in CQ slot %d & %d = %d")
  :format(s.sq_tail, s.sq_mask, s.sq_tail & s.sq_mask, s.cq_tail, s.cq_mask,
          s.cq_tail & s.cq_mask))
if (s.sq_tail & s.sq_mask) ~= 1 or (s.cq_tail & s.cq_mask) ~= 1 then
  failed[#failed + 1] = "slots are not index & mask"
end

-- who writes: between our calls nothing moves (no SQPOLL thread here);
-- an index the kernel owns only changed inside submit
local a = ring:state()
for _ = 1, 1000 do local _ = ring:sq_ready() end
local b = ring:state()
if a.sq_head ~= b.sq_head or a.cq_tail ~= b.cq_tail then
  failed[#failed + 1] = "a kernel index moved while we made no system call"
end

if #failed > 0 then
  for _, f in ipairs(failed) do io.stderr:write("tour_internals: ", f, "\n") end
  os.exit(1)
end
print("ok: we wrote sq_tail and cq_head, the kernel sq_head and cq_tail; fdinfo agreed at every step")
