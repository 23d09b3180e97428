--- examples/tour_sq_cq.lua: tour step 1 — the SQ, the CQ, and one io_uring_enter.
--
--   lua5.4 examples/tour_sq_cq.lua
--
-- An io_uring is two rings shared with the kernel: the submission queue
-- (SQ), where user space writes requests (SQEs), and the completion queue
-- (CQ), where the kernel writes results (CQEs).  Preparing an SQE is a
-- memory write: the kernel does not know about it yet.  One io_uring_enter
-- (ring:submit()) hands it every prepared SQE at once; NOPs complete inside
-- that very call, so their CQEs are already waiting when it returns, and
-- taking them (ring:wait_cqe()) is again a plain memory read.
--
-- With the teaching ring (uring.ring{entries = 8}) it prepares 5 NOPs and
-- prints sq_ready / cq_ready at each stage, then overfills the 8-entry SQ
-- to show what "full" means, then puts 24 NOPs in flight without
-- reaping to show that the SQ's size is not a bound on requests in flight
-- and what happens when the CQ overflows.  Exits non-zero unless: 5 SQEs
-- ready before the submit, submit() == 5, 0 ready after it, 5 CQEs ready,
-- each with res 0 and its own user_data; 24 submitted, 16 in the CQ, 24
-- reaped.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local N = 5
local ring <close> = assert(uring.ring{entries = 8})
print(("ring: %s, SQ space left %d"):format(tostring(ring), ring:sq_space_left()))

for i = 1, N do ring:prep_nop(100 + i) end
local before_sq, before_cq = ring:sq_ready(), ring:cq_ready()
print(("after %d prep_nop:  sq_ready = %d  cq_ready = %d   (nothing sent yet)")
  :format(N, before_sq, before_cq))

-- uring.trace sees the teaching ring too: an "enter" event per
-- io_uring_enter it makes, so the system calls are counted, not assumed
local enters = 0
uring.trace(function(e) if e.event == "enter" then enters = enters + 1 end end)
local n = ring:submit()                 -- one io_uring_enter
local submit_enters = enters
local after_sq, after_cq = ring:sq_ready(), ring:cq_ready()
print(("submit() -> %d:     sq_ready = %d  cq_ready = %d   (%d io_uring_enter)")
  :format(n, after_sq, after_cq, submit_enters))

local seen, ok_res = {}, true
for _ = 1, N do
  local res, ud = ring:wait_cqe()       -- already there: no system call
  seen[#seen + 1] = ("%d:%d"):format(ud, res)
  if res ~= 0 then ok_res = false end
end
local reap_enters = enters - submit_enters
uring.trace(false)
print("CQEs (user_data:res): " .. table.concat(seen, " "))
print(("after %d wait_cqe:  cq_ready = %d   (%d io_uring_enter: the CQEs were read from memory)")
  :format(N, ring:cq_ready(), reap_enters))

-- a full SQ: 8 entries, the 9th prep raises until submit makes room
for i = 1, 8 do ring:prep_nop(i) end
local okfull, err = pcall(ring.prep_nop, ring, 9)
print(("9th prep on an 8-entry SQ: %s"):format(okfull and "accepted?!" or err))
local m = ring:submit()
for _ = 1, m do ring:wait_cqe() end

-- The SQ's size bounds the SQEs *prepared and not yet submitted*, not the
-- requests in flight: submit empties the SQ at once.  Three batches of 8
-- go in without reaping anything: 24 completions for a CQ of 16 entries
-- (twice the SQ, the default).  The kernel keeps the 8 that do not fit on
-- an overflow list (IORING_FEAT_NODROP) and moves them into the CQ as it
-- empties: nothing is lost, but an application that never reaps makes
-- the kernel hold memory for it (and with a full overflow list, submit
-- fails with -EBUSY until it reaps).
local cq_size = 2 * 8
local submitted = 0
for _ = 1, 3 do
  for i = 1, 8 do ring:prep_nop(200 + submitted + i) end
  submitted = submitted + ring:submit()
end
local in_cq = ring:cq_ready()
local reaped = 0
while reaped < submitted do
  local res = ring:wait_cqe(1)
  if res == nil then break end
  reaped = reaped + 1
end
print(("3 x 8 NOPs on the 8-entry SQ, nothing reaped: submitted %d; CQ (%d entries) holds %d; reaped %d (the other %d waited on the overflow list)")
  :format(submitted, cq_size, in_cq, reaped, reaped - in_cq))

local ok = before_sq == N and before_cq == 0 and n == N and after_sq == 0
  and submit_enters == 1 and reap_enters == 0
  and after_cq == N and ok_res and not okfull and m == 8
  and seen[1] == "101:0" and seen[N] == ("%d:0"):format(100 + N)
  and submitted == 24 and in_cq == cq_size and reaped == 24
print(ok and ("ok: %d SQEs went in with one submit and %d CQEs came back"):format(n, after_cq)
         or "unexpected result")
os.exit(ok and 0 or 1, true)
