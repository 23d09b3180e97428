--- bench/queue.lua: what handing an item from one task to another costs.
--
--   lua5.4 bench/queue.lua queue   [items [idle]]   uring.queue(1): a producer
--                                            task puts, a consumer gets
--   lua5.4 bench/queue.lua nop     [items]   one task, one uring.nop() per
--                                            item: the ring's round trip
--   lua5.4 bench/queue.lua poll    [items]   copas-style: a one-slot box,
--                                            both sides uring.yield() while
--                                            it is full / empty
--   lua5.4 bench/queue.lua cqueues [items]   cqueues: a one-slot box and two
--                                            cqueues.condition variables
--
-- Every mode moves `items` integers from producer to consumer (nop: does
-- `items` NOPs) and prints "<mode>: X ns/item" plus the resumptions and
-- io_uring_enter calls per item where the loop is ours.  A one-slot queue
-- makes every item a real hand-off: each side waits for the other.
-- `idle` (default 0; not for nop) more tasks wait meanwhile for something
-- that comes only at the end, each in the mode's own way (a get on an
-- empty queue, a yield loop, a condition): what waiting costs the others.
-- bench/queue.sh runs the modes in alternation and prints the ratios.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path

local mode = arg[1] or "queue"
local items = math.tointeger(tonumber(arg[2] or "1000000"))
local idle = math.tointeger(tonumber(arg[3] or "0"))
if not items or items < 1 or not idle or idle < 0 then
  io.stderr:write("usage: lua5.4 bench/queue.lua queue|nop|poll|cqueues [items [idle]]\n")
  os.exit(2)
end

local modes = {}

-- the three that run on our loop; each returns when the items are through
function modes.queue(uring, n)
  local stop = uring.queue()
  for _ = 1, idle do uring.spawn(stop.get, stop) end
  local q = uring.queue(1)
  local consumer = uring.spawn(function()
    local sum = 0
    for _ = 1, n do sum = sum + q:get() end
    return sum
  end)
  for i = 1, n do q:put(i) end
  local _, sum = consumer:join()
  assert(sum == n * (n + 1) // 2)
  stop:close()
end

function modes.nop(uring, n)
  local nop = uring.nop
  for _ = 1, n do nop() end
end

function modes.poll(uring, n)
  local yield = uring.yield
  local box, full, stopped = nil, false, false
  for _ = 1, idle do
    uring.spawn(function() while not stopped do yield() end end)
  end
  local consumer = uring.spawn(function()
    local sum = 0
    for _ = 1, n do
      while not full do yield() end
      sum = sum + box
      full = false
    end
    return sum
  end)
  for i = 1, n do
    while full do yield() end
    box, full = i, true
  end
  local _, sum = consumer:join()
  assert(sum == n * (n + 1) // 2)
  stopped = true
end

local function on_uring(fn, n)
  local uring = require "uring"
  return uring.run(function()
    local s0, t0 = uring.stats(), uring.now()
    fn(uring, n)
    local t1, s1 = uring.now(), uring.stats()
    return t1 - t0, s1.resumes - s0.resumes, s1.enters - s0.enters
  end)
end

-- cqueues: the same one-slot box, each side waiting on a condition
local function on_cqueues(n)
  local cqueues = require "cqueues"
  local condition = require "cqueues.condition"
  local cq = cqueues.new()
  local box, full = nil, false
  local nonempty, nonfull = condition.new(), condition.new()
  local sum = 0
  local stop, stopped = condition.new(), false
  for _ = 1, idle do
    cq:wrap(function() while not stopped do stop:wait() end end)
  end
  cq:wrap(function()
    for _ = 1, n do
      while not full do nonempty:wait() end
      sum = sum + box
      full = false
      nonfull:signal()
    end
  end)
  cq:wrap(function()
    for i = 1, n do
      while full do nonfull:wait() end
      box, full = i, true
      nonempty:signal()
    end
    stopped = true
    stop:signal()                      -- every idle waiter
  end)
  local t0 = cqueues.monotime()
  assert(cq:loop())
  local secs = cqueues.monotime() - t0
  assert(sum == n * (n + 1) // 2)
  return secs
end

local function measure(n)
  if mode == "cqueues" then return on_cqueues(n) end
  local fn = modes[mode]
  if not fn then
    io.stderr:write("bench/queue.lua: unknown mode '", mode, "'\n")
    os.exit(2)
  end
  return on_uring(fn, n)
end

measure(items // 20 + 1)                -- warm up
local secs, resumes, enters = measure(items)
if resumes then
  print(("%s: %.1f ns/item (%d items, %.2f resumes/item, %.4f enters/item)")
    :format(mode, secs / items * 1e9, items, resumes / items, enters / items))
else
  print(("%s: %.1f ns/item (%d items)"):format(mode, secs / items * 1e9, items))
end
