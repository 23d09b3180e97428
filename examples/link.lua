--- examples/link.lua: linked SQEs — a write and an fsync as one chain.
--
--   lua5.4 examples/link.lua
--
-- Completions are unordered: a write and an fsync submitted together may
-- run in parallel, and the fsync can finish before the write started.
-- IOSQE_IO_LINK (ring:link()) on the write makes the next SQE wait for it:
-- the fsync starts only after the write succeeded, and if the write fails
-- the fsync completes with -ECANCELED instead of syncing nothing.  Both
-- go to the kernel in one submit, which is the point: ordering without a
-- round trip to user space in between.
--
-- It prints the two CQEs in the order they arrived and the number of
-- submit calls, checks them (write CQE first with every byte written,
-- fsync CQE second with 0, one submit), then shows a broken chain: a
-- write to a bad fd cancels the fsync linked to it.  Exits 0 when all
-- of that held, 1 otherwise.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local core = require "uring.core"

local WRITE, FSYNC = 1, 2
local names = { [WRITE] = "write", [FSYNC] = "fsync" }
local data = ("linked SQEs run in order\n"):rep(1000)

local ring <close> = assert(core.ring{entries = 4})
local path = os.tmpname()

-- open (a plain SQE + CQE, to get an fd without Lua's io library)
ring:prep_openat(nil, path, "w", tonumber("644", 8), 0)
ring:submit()
local fd = ring:wait_cqe()
assert(fd >= 0, "openat failed: " .. fd)

-- the chain: write -> (IO_LINK) -> fsync, one submit
local submits = 0
ring:prep_write(fd, data, #data, 0, WRITE)   -- the string is pinned, not copied
ring:link()                                  -- IOSQE_IO_LINK on the write
ring:prep_fsync(fd, false, FSYNC)
local n = ring:submit()
submits = submits + 1
print(("submitted %d SQEs with %d submit call"):format(n, submits))

local cqes = {}
for i = 1, 2 do
  local res, ud = ring:wait_cqe()
  cqes[i] = { res = res, ud = ud }
  print(("CQE %d: %-5s res = %d"):format(i, names[ud], res))
end

-- a broken chain: the write fails (bad fd), so the linked fsync is cancelled
ring:prep_write(-1, "x", 1, 0, WRITE)
ring:link()
ring:prep_fsync(fd, false, FSYNC)
ring:submit()
local broken = {}
for _ = 1, 2 do
  local res, ud = ring:wait_cqe()
  broken[ud] = res
  print(("broken chain: %-5s res = %d (%s)"):format(names[ud], res,
    res == -9 and "-EBADF" or res == -125 and "-ECANCELED" or "?"))
end

ring:prep_close(fd, 0)
ring:submit()
ring:wait_cqe()
local f = io.open(path, "rb")
local on_disk = f:read("a")
f:close()
os.remove(path)

local ok = n == 2 and submits == 1
  and cqes[1].ud == WRITE and cqes[1].res == #data
  and cqes[2].ud == FSYNC and cqes[2].res == 0
  and broken[WRITE] == -9 and broken[FSYNC] == -125
  and on_disk == data
print(ok and "ok: the write completed before the fsync, in one submit"
         or "unexpected result")
os.exit(ok and 0 or 1, true)
