--- examples/tour_link_timeout.lua: tour step 4 — a linked timeout cuts a read short.
--
--   lua5.4 examples/tour_link_timeout.lua
--
-- IORING_OP_LINK_TIMEOUT is linked to the SQE before it (ring:link() on
-- that SQE, then ring:prep_link_timeout(seconds)): if the read has not
-- completed when the time is up, the kernel cancels it.  The read's CQE is
-- -ECANCELED (-125) and the timeout's is -ETIME (-62).  If the read wins,
-- it is the timeout that completes with -ECANCELED.  One submit, no timer
-- in user space, no second system call to cancel.  (examples/link.lua
-- shows the other classic chain: write then fsync.)
--
-- The empty "pipe" is a FIFO opened O_RDWR (the teaching ring has no
-- pipe op; O_RDWR on a FIFO gives both ends without blocking).
-- Exits non-zero unless the read of the empty FIFO was cut at ~0.1 s with
-- read -125 / timeout -62, and a read with data waiting returned it with
-- the timeout -125.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local LIMIT = 0.1
local READ, TIMEOUT = 1, 2
local name = { [READ] = "read", [TIMEOUT] = "link_timeout" }
local errname = { [-125] = "-ECANCELED", [-62] = "-ETIME" }

local fifo = os.tmpname()
os.remove(fifo)
assert(os.execute("mkfifo " .. fifo), "mkfifo failed")

local ring <close> = assert(uring.ring{entries = 8})
ring:prep_openat(nil, fifo, uring.O_RDWR | uring.O_CLOEXEC)
ring:submit()
local fd = ring:wait_cqe()
assert(fd >= 0, "openat: " .. fd)
local buf = uring.buffer(64)

local function read_with_timeout(label)
  local t0 = uring.now()
  ring:prep_read(fd, buf, 64, -1, READ)
  ring:link()                                   -- IOSQE_IO_LINK on the read
  ring:prep_link_timeout(LIMIT, TIMEOUT)        -- ...guarded by this timer
  local n = ring:submit()
  local res = {}
  for _ = 1, 2 do
    local r, ud = ring:wait_cqe()
    res[ud] = r
    print(("  %-13s CQE res = %-5d %-11s at %6.1f ms")
      :format(name[ud], r, errname[r] or (r >= 0 and "(bytes)" or ""), (uring.now() - t0) * 1e3))
  end
  return res, uring.now() - t0, n
end

print(("1. read an empty FIFO, linked timeout %.0f ms:"):format(LIMIT * 1e3))
local empty, t_empty, n1 = read_with_timeout()

print("2. the same, with 6 bytes already in the FIFO:")
ring:prep_write(fd, "hello\n", 6, -1, 3)
ring:submit()
assert(ring:wait_cqe() == 6)
local full, t_full = read_with_timeout()
local got = full[READ] > 0 and buf:tostring(1, full[READ]) or ""
print(("  read returned \"%s\" in %.2f ms"):format(got:gsub("\n", "\\n"), t_full * 1e3))

ring:prep_close(fd)
ring:submit()
ring:wait_cqe()
os.remove(fifo)

local ok = n1 == 2 and empty[READ] == -125 and empty[TIMEOUT] == -62
  and t_empty >= LIMIT * 0.9 and t_empty < LIMIT + 0.5
  and full[READ] == 6 and got == "hello\n" and full[TIMEOUT] == -125
  and t_full < LIMIT
print(ok and ("ok: the empty read was cut after %.1f ms (read -ECANCELED, timeout -ETIME)")
  :format(t_empty * 1e3) or "unexpected result")
os.exit(ok and 0 or 1, true)
