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
-- to show what "full" means.  Exits non-zero unless: 5 SQEs ready before
-- the submit, submit() == 5, 0 ready after it, 5 CQEs ready, each with
-- res 0 and its own user_data.
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

local n = ring:submit()                 -- one io_uring_enter
local after_sq, after_cq = ring:sq_ready(), ring:cq_ready()
print(("submit() -> %d:     sq_ready = %d  cq_ready = %d   (one io_uring_enter)")
  :format(n, after_sq, after_cq))

local seen, ok_res = {}, true
for _ = 1, N do
  local res, ud = ring:wait_cqe()       -- already there: no system call
  seen[#seen + 1] = ("%d:%d"):format(ud, res)
  if res ~= 0 then ok_res = false end
end
print("CQEs (user_data:res): " .. table.concat(seen, " "))
print(("after %d wait_cqe:  cq_ready = %d"):format(N, ring:cq_ready()))

-- a full SQ: 8 entries, the 9th prep raises until submit makes room
for i = 1, 8 do ring:prep_nop(i) end
local okfull, err = pcall(ring.prep_nop, ring, 9)
print(("9th prep on an 8-entry SQ: %s"):format(okfull and "accepted?!" or err))
local m = ring:submit()
for _ = 1, m do ring:wait_cqe() end

local ok = before_sq == N and before_cq == 0 and n == N and after_sq == 0
  and after_cq == N and ok_res and not okfull and m == 8
  and seen[1] == "101:0" and seen[N] == ("%d:0"):format(100 + N)
print(ok and ("ok: %d SQEs went in with one submit and %d CQEs came back"):format(n, after_cq)
         or "unexpected result")
os.exit(ok and 0 or 1, true)
