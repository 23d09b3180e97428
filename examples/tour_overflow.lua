--- examples/tour_overflow.lua: tour step 15 — SQ size versus requests in
--- flight, and what a full CQ does.
--
--   lua5.4 examples/tour_overflow.lua
--
-- The SQ bounds what is *prepared and not yet submitted*: submit empties
-- it, so a 4-entry SQ can feed any number of requests in flight.  The CQ
-- is where they land: when more CQEs come than it has room for, the
-- kernel (IORING_FEAT_NODROP, Linux 5.5) keeps the rest on an overflow
-- list in kernel memory, raises IORING_SQ_CQ_OVERFLOW in sq_flags, and
-- moves them into the CQ as we make room.  ring:state().overflow counts
-- CQEs *dropped* (only when that list cannot be allocated): it stays 0.
-- Old kernels (5.5 - 5.19) answered a submit with -EBUSY while the list
-- was non-empty; the script says what this kernel does.
--
-- Exits non-zero unless: 64 requests in flight on a 4-entry SQ; the CQ
-- full with the rest on the overflow list (fdinfo's CqOverflowList shows
-- them, the flag is up); every CQE reaped, none dropped; the flag down.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local SQ_CQ_OVERFLOW = 2                  -- IORING_SQ_CQ_OVERFLOW
local ring <close> = assert(uring.ring{entries = 4, cq_entries = 8})
local failed = {}
local function check(ok, what)
  if not ok then failed[#failed + 1] = what end
end

local function overflow_list()
  local list = ring:fdinfo():match("\nCqOverflowList:\n(.-)\n%a") or ""
  local n = 0
  for _ in list:gmatch("user_data") do n = n + 1 end
  return n
end

-- 1. 16 rounds of 4 long timeouts: 64 requests in flight, SQ empty
for r = 1, 16 do
  for i = 1, 4 do ring:prep_timeout(60, 0, 100 * r + i) end
  ring:submit()
end
local inflight, space = ring:inflight(), ring:sq_space_left()
print(("SQ of %d entries: %d requests in flight, SQ space left %d")
  :format(ring:state().sq_entries, inflight, space))
check(inflight == 64 and space == 4, "64 requests should be in flight with the SQ empty")

-- 2. cancel them all at once: 65 CQEs (64 -ECANCELED + the cancel's own)
-- for a CQ of 8
ring:prep_cancel(0, 1, uring.IORING_ASYNC_CANCEL_ANY | uring.IORING_ASYNC_CANCEL_ALL)
ring:submit()
local s = ring:state()
local listed = overflow_list()
print(("cancel all: CQ holds %d of %d, fdinfo's CqOverflowList holds %d, sq_flags = %d (CQ_OVERFLOW %s), overflow (dropped) = %d")
  :format(s.cq_ready, s.cq_entries, listed, s.sq_flags,
          s.sq_flags & SQ_CQ_OVERFLOW ~= 0 and "set" or "clear", s.overflow))
check(s.cq_ready == 8 and listed == 57, "the CQ should be full and 57 CQEs on the overflow list")
check(s.sq_flags & SQ_CQ_OVERFLOW ~= 0, "IORING_SQ_CQ_OVERFLOW should be set")

-- 3. submit while the overflow list is not empty
ring:prep_nop(2)
local n, msg, err = ring:submit()
print(n and ("submit with CQEs on the overflow list: accepted (%d SQE): this kernel no longer answers -EBUSY"):format(n)
        or ("submit with CQEs on the overflow list: %s (errno %d)"):format(msg, err))
check(n == 1 or err == 16, "submit should succeed or fail with EBUSY")

-- 4. reap: the kernel refills the CQ from its list; nothing is lost
local reaped, canceled, cancel_res = 0, 0, nil
while ring:inflight() > 0 do
  local res, ud = ring:wait_cqe(5)
  if res == nil then break end
  reaped = reaped + 1
  if res == -125 then canceled = canceled + 1 end
  if ud == 1 then cancel_res = res end
end
s = ring:state()
print(("reaped %d CQEs: %d timeouts -ECANCELED, the cancel's res = %d (how many it cancelled), the NOP; overflow (dropped) = %d, CQ_OVERFLOW %s")
  :format(reaped, canceled, cancel_res or -1, s.overflow,
          s.sq_flags & SQ_CQ_OVERFLOW ~= 0 and "set" or "clear"))
check(reaped == 66 and canceled == 64 and cancel_res == 64, "every CQE should come back")
check(s.overflow == 0 and s.sq_flags & SQ_CQ_OVERFLOW == 0, "nothing dropped, flag cleared")

if #failed > 0 then
  for _, f in ipairs(failed) do io.stderr:write("tour_overflow: ", f, "\n") end
  os.exit(1)
end
print("ok: a 4-entry SQ fed 64 requests; 57 CQEs waited on the overflow list and none was lost")
