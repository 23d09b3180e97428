--- examples/thread.lua: CPU-heavy Lua on a worker thread, the loop free.
--
--   lua5.4 examples/thread.lua
--
-- A 10 ms ticker runs while a sum of 20 million numbers is computed twice:
-- first inline in a task (the loop is frozen: no tick), then with
-- uring.thread (the sum runs in its own lua_State on a worker; the
-- ticker keeps ticking).  Prints both tick counts.  The function given to
-- uring.thread may use globals but no upvalues; its arguments and results
-- are copied.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local function sum(n)
  local s = 0
  for i = 1, n do s = s + i end
  return s
end

local N = 20000000

local function measure(label, work)
  return uring.run(function()
    local ticks, done = 0, false
    local ticker = uring.spawn(function()
      while not done do uring.sleep(0.01); ticks = ticks + 1 end
    end)
    uring.sleep(0.02)
    ticks = 0
    local t0 = uring.now()
    local s = work()
    local took = uring.now() - t0
    done = true
    ticker:join()
    print(("%-28s sum %d in %4.0f ms; the 10 ms ticker ticked %d times (%d expected)")
      :format(label, s, took * 1000, ticks, math.floor(took / 0.01)))
    return ticks, took
  end)
end

measure("inline, in the task:", function() return sum(N) end)
local ticks, took = measure("uring.thread:", function() return uring.thread(sum, N) end)
if ticks < took / 0.01 * 0.3 then
  io.stderr:write("the loop was frozen while the thread ran\n")
  os.exit(1)
end
