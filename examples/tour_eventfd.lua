--- examples/tour_eventfd.lua: tour step 16 — eventfd notification.
--
--   lua5.4 examples/tour_eventfd.lua
--
-- A ring can signal an eventfd each time it posts CQEs
-- (io_uring_register_eventfd).  Anything that can wait on an fd -- epoll,
-- another event loop, another ring -- then learns "this ring has
-- completions" without knowing about io_uring.  Here a second ring (the
-- "watcher", standing in for someone else's event loop) keeps a read on
-- the first ring's eventfd.  With register_eventfd(true) the signal comes
-- only for requests an io-wq worker completed, not for inline ones.
--
-- Exits non-zero unless: the watcher's read stays pending while the ring
-- is idle; a 100 ms timeout on the ring wakes it after >= 90 ms (not
-- before); the count read says how many signals came; with the async
-- variant, inline NOPs leave it asleep and an IOSQE_ASYNC read wakes it.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local failed = {}
local function check(ok, what)
  if not ok then failed[#failed + 1] = what end
end

local watcher <close> = assert(uring.ring{entries = 4})
local buf = uring.buffer(8)

-- arm one 8-byte read of efd on the watcher
local function arm(efd)
  watcher:prep_read(efd, buf, 8, 0, 1)
  watcher:submit()
end
local function asleep(seconds)                 -- the read did not complete
  return watcher:wait_cqe(seconds) == nil
end
local function count()
  return string.unpack("<I8", buf:tostring(1, 8))
end

-- 1. every CQE posting signals
do
  local ring <close> = assert(uring.ring{entries = 8})
  local efd = assert(ring:register_eventfd())
  arm(efd)
  local idle = asleep(0.05)
  local t0 = uring.now()
  ring:prep_timeout(0.1, 0, 7)
  ring:submit()
  local res = watcher:wait_cqe(5)              -- wakes when the CQE posts
  local waited = (uring.now() - t0) * 1000
  local n = count()
  print(("idle ring: watcher's read pending: %s; a 100 ms timeout woke it after %.1f ms (read %d byte(s), count %d)")
    :format(idle, waited, res or -1, n))
  check(idle, "the eventfd fired with nothing posted")
  check(res == 8 and n >= 1 and waited >= 90, "the timeout's CQE should wake the watcher, not before")
  assert(ring:wait_cqe() == -62)               -- the timeout's own CQE: -ETIME
  -- five NOPs in one submit: their CQEs are posted in one go
  arm(efd)
  for i = 1, 5 do ring:prep_nop(i) end
  ring:submit()
  watcher:wait_cqe(5)
  local five = count()
  for _ = 1, 5 do ring:wait_cqe() end
  print(("5 NOPs in one submit: eventfd count %d (the kernel signals per batch of CQEs it posts; below 5, CQEs shared a signal)")
    :format(five))
  check(five >= 1 and five <= 5, "five NOPs should signal between 1 and 5 times")
end

-- 2. the async variant: only completions from io-wq signal
do
  local ring <close> = assert(uring.ring{entries = 4})
  local efd = assert(ring:register_eventfd(true))
  arm(efd)
  for i = 1, 3 do ring:prep_nop(i) end
  ring:submit()
  for _ = 1, 3 do ring:wait_cqe() end
  local slept = asleep(0.05)
  ring:prep_openat(nil, "/proc/self/stat", "r", 0, 4)
  ring:submit()
  local fd = ring:wait_cqe()
  local data = uring.buffer(64)
  ring:prep_read(fd, data, 64, 0, 5)
  ring:async()                                  -- to an io-wq worker
  ring:submit()
  local res = watcher:wait_cqe(5)
  print(("register_eventfd(true): 3 inline NOPs left the watcher asleep: %s; an async() read woke it: %s")
    :format(slept, res == 8))
  check(slept, "inline NOPs signalled an async eventfd")
  check(res == 8, "the io-wq read did not signal")
  assert(ring:wait_cqe() > 0)
  ring:prep_close(fd)
  ring:submit()
  ring:wait_cqe()
end

if #failed > 0 then
  for _, f in ipairs(failed) do io.stderr:write("tour_eventfd: ", f, "\n") end
  os.exit(1)
end
print("ok: the eventfd slept while the ring was idle and woke when CQEs were posted")
