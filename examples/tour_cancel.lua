--- examples/tour_cancel.lua: tour step 5 — cancelling an operation in flight.
--
--   lua5.4 examples/tour_cancel.lua
--
-- A task calls uring.sleep(10): one IORING_OP_TIMEOUT SQE is in the
-- kernel and the task is parked on it.  task:cancel() submits an
-- IORING_OP_ASYNC_CANCEL naming that SQE; the kernel completes the
-- timeout at once with -ECANCELED (-125), and only then (the kernel no
-- longer holds anything of the request) is the task resumed, with the
-- error "canceled" raised at its uring.sleep.
--
-- uring.trace(fn) shows the SQE and the CQE.
--
-- Then the same on the teaching ring, where every CQE is visible: the
-- cancel is a request of its own and posts its own CQE (0: found and
-- cancelled), beside the target's -ECANCELED; a second cancel of the same
-- target finds nothing (-ENOENT: it already completed).  (A request the
-- kernel is already executing and cannot interrupt answers -EALREADY
-- instead, and then completes on its own: a cancel is a request, not a
-- guarantee.)
--
-- Exits non-zero unless the sleep's CQE is -125, the task ended
-- "canceled", it all took < 1 s, and the teaching ring's CQEs are
-- target -125, cancel 0, second cancel -2.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local events = {}
local result = uring.run(function()
  uring.trace(function(e) events[#events + 1] = e end)
  local t0 = uring.now()
  local sleeper = uring.spawn(function()
    uring.sleep(10)
    return "woke up"                      -- never reached
  end)
  uring.sleep(0.05)                       -- let it start sleeping
  print(("task %d: %s"):format(sleeper:id(), tostring(sleeper)))
  local tc = uring.now()
  sleeper:cancel()
  local ok, err = sleeper:join()
  local elapsed, after_cancel = uring.now() - t0, uring.now() - tc
  uring.yield()                           -- deliver the last trace events
  uring.trace(false)
  return { ok = ok, err = err, status = sleeper:status(),
           id = sleeper:id(), elapsed = elapsed, after_cancel = after_cancel }
end)

local cqe
for _, e in ipairs(events) do
  if e.op == "timeout" then
    print(("trace: %s %-8s task=%d res=%d%s%s"):format(e.event, e.op, e.task,
      e.res or 0, e.errno and (" errno=" .. e.errno) or "",
      e.elapsed and (" after %.1f ms"):format(e.elapsed * 1e3) or ""))
    if e.event == "cqe" and e.task == result.id then cqe = e end
  end
end
print(("join -> %s, %s; status %s; %.3f ms from cancel() to join; elapsed %.1f ms (the sleep was 10 s)")
  :format(tostring(result.ok), tostring(result.err), result.status,
    result.after_cancel * 1e3, result.elapsed * 1e3))

-- the teaching ring: the cancel's own CQE
local ring <close> = assert(uring.ring{entries = 8})
ring:prep_timeout(10, 0, 1)                -- a 10 s timeout, user_data 1
ring:submit()
ring:prep_cancel(1, 2)                     -- cancel user_data 1; its own user_data 2
ring:submit()
local got = {}
for _ = 1, 2 do
  local res, ud = ring:wait_cqe(1)
  got[ud] = res
end
ring:prep_cancel(1, 3)                     -- again: the target is gone
ring:submit()
local res3, ud3 = ring:wait_cqe(1)
got[ud3] = res3
print(("teaching ring: timeout (ud 1) res = %s; its cancel (ud 2) res = %s; a second cancel (ud 3) res = %s")
  :format(tostring(got[1]), tostring(got[2]), tostring(got[3])))

local ok = cqe and cqe.res == -125 and result.ok == false
  and got[1] == -125 and got[2] == 0 and got[3] == -2
  and result.err == "canceled" and result.status == "canceled"
  and result.elapsed < 1
print(ok and ("ok: the 10 s sleep ended with -ECANCELED after %.1f ms")
  :format(result.elapsed * 1e3) or "unexpected result")
os.exit(ok and 0 or 1, true)
