--- bench/thread.lua: uring.thread against luv's work queue (uv.new_work),
-- side by side, in alternation.
--
--   lua5.4 bench/thread.lua [rounds]
--
-- Two measures, each run by both in turn, `rounds` times (default 5):
--   roundtrip  2,000 trivial jobs one after another (x -> x): the cost of
--              handing work to a thread and getting the answer back
--   cpu        16 jobs of 2 million additions at once, on a pool of the
--              CPU count: throughput of CPU-bound Lua
-- uring.thread makes a fresh lua_State per job; luv keeps one per worker.
-- Prints the median of each and uring/luv as a ratio (below 1: faster).
package.cpath = (os.getenv("URING_CPATH") or "./build/?.so") .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"
local uv = require "luv"

local ROUNDS = tonumber(arg[1]) or 5
local TRIPS, JOBS, ADDS = 2000, 16, 2000000

local function echo(x) return x end
local function adds(n) local s = 0 for i = 1, n do s = s + i end return s end

local uring_runs = {
  roundtrip = function()
    return uring.run(function()
      local t0 = uring.now()
      for i = 1, TRIPS do assert(uring.thread(echo, i) == i) end
      return uring.now() - t0
    end)
  end,
  cpu = function()
    return uring.run(function()
      local t0, tasks = uring.now(), {}
      for i = 1, JOBS do tasks[i] = uring.spawn(uring.thread, adds, ADDS) end
      for i = 1, JOBS do assert(select(2, tasks[i]:join()) == ADDS * (ADDS + 1) // 2) end
      return uring.now() - t0
    end)
  end,
}

local luv_runs = {
  roundtrip = function()
    local i, t0 = 0, uv.hrtime()
    local work
    work = uv.new_work(echo, function(x)
      assert(x == i)
      if i < TRIPS then i = i + 1; work:queue(i) end
    end)
    i = 1
    work:queue(i)
    uv.run()
    return (uv.hrtime() - t0) / 1e9
  end,
  cpu = function()
    local t0, done = uv.hrtime(), 0
    local work = uv.new_work(adds, function(s)
      assert(s == ADDS * (ADDS + 1) // 2)
      done = done + 1
    end)
    for _ = 1, JOBS do work:queue(ADDS) end
    uv.run()
    assert(done == JOBS)
    return (uv.hrtime() - t0) / 1e9
  end,
}

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

print(("%-10s %12s %12s %10s"):format("measure", "uring (ms)", "luv (ms)", "uring/luv"))
for _, m in ipairs { "roundtrip", "cpu" } do
  local a, b = {}, {}
  for r = 1, ROUNDS do     -- alternate, so load on the machine hits both
    if r % 2 == 1 then
      a[#a + 1] = uring_runs[m](); b[#b + 1] = luv_runs[m]()
    else
      b[#b + 1] = luv_runs[m](); a[#a + 1] = uring_runs[m]()
    end
  end
  local ma, mb = median(a), median(b)
  print(("%-10s %12.1f %12.1f %10.2f"):format(m, ma * 1000, mb * 1000, ma / mb))
end
