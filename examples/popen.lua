-- popen.lua: one idea -- waiting for children costs the loop nothing.
-- Start 50 `sh -c "sleep 0.2; echo N"` children with uring.popen, each read
-- by its own task; the waits (IORING_OP_WAITID, or a polled pidfd) run in
-- the ring together, so the batch takes about one child's time, not 50.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = (os.getenv("URING_CPATH") or "./build/?.so") .. ";" .. package.cpath
local uring = require "uring"

local N, NAP = 50, 0.2
local t0 = uring.now()
local sum, statuses = uring.run(function()
  local tasks = {}
  for i = 1, N do
    tasks[i] = uring.spawn(function()
      local f = assert(uring.popen(("sleep %g; echo %d"):format(NAP, i)))
      local n = f:read("n")
      local ok, how, code = f:close()   -- waits for the child, as io.popen
      return n, ok and how == "exit" and code == 0
    end)
  end
  local total, good = 0, 0
  for i = 1, N do
    local _, n, ok = tasks[i]:join()
    total = total + n
    if ok then good = good + 1 end
  end
  return total, good
end)
local elapsed = uring.now() - t0
print(("popen: %d children, sum %d, %d exited 0"):format(N, sum, statuses))
print(("elapsed: %.3f s (one child sleeps %.1f s; sequential would be %.1f s)")
  :format(elapsed, NAP, N * NAP))
print(("wait op: %s"):format(uring.probe().waitid and os.getenv("URING_PROC_FALLBACK") ~= "1"
  and "IORING_OP_WAITID" or "pidfd + IORING_OP_POLL_ADD"))
