--- bench/nop.lua: the per-op cost of uring.nop() through the loop.
--
--   lua5.4 bench/nop.lua tasks  [ops [ntasks]]   ntasks tasks (256), each
--                                                doing NOPs in a loop
--   lua5.4 bench/nop.lua single [ops]            one task doing NOPs
--
-- Prints "lua-tasks: X ns/op" or "lua-single: X ns/op", with the
-- io_uring_enter calls per op from uring.stats().  Run from the repo root;
-- URING_CPATH overrides the C module path.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local mode = arg[1] or "tasks"
local ops = math.tointeger(tonumber(arg[2] or "2000000"))
local ntasks = math.tointeger(tonumber(arg[3] or "256"))
if (mode ~= "tasks" and mode ~= "single") or not ops or ops < 1
   or not ntasks or ntasks < 1 then
  io.stderr:write("usage: lua5.4 bench/nop.lua tasks|single [ops [ntasks]]\n")
  os.exit(2)
end
if mode == "single" then ntasks = 1 end

local nop = uring.nop

-- ntasks tasks share ops NOPs; returns seconds and the stats deltas
local function round(n)
  return uring.run(function()
    local per, extra = n // ntasks, n % ntasks
    local tasks = {}
    local s0, t0 = uring.stats(), uring.now()
    if ntasks == 1 then
      for _ = 1, n do nop() end
    else
      for i = 1, ntasks do
        local k = per + (i <= extra and 1 or 0)
        tasks[i] = uring.spawn(function() for _ = 1, k do nop() end end)
      end
      for i = 1, ntasks do tasks[i]:join() end
    end
    local t1, s1 = uring.now(), uring.stats()
    return t1 - t0, s1.enters - s0.enters
  end)
end

round(ops // 20 + 1)                  -- warm up
local secs, enters = round(ops)
print(("lua-%s: %.1f ns/op (%d ops, %d tasks, %.3f enters/op)")
  :format(mode, secs / ops * 1e9, ops, ntasks, enters / ops))
