--- examples/batch.lua: batching — many operations, few system calls.
--
--   lua5.4 examples/batch.lua          (also: make demo)
--
-- 1,000 tasks each read 4 KiB at a random offset of a 4 MiB file with
-- f:pread.  Each task prepares one SQE and yields; the loop runs every
-- ready task before it enters the kernel, so all 1,000 reads go in with
-- one io_uring_enter (or one per full SQ: ring_entries SQEs at a time).
-- The same reads from one task, one after another, cost an enter each;
-- through Lua's blocking io library, two system calls each (lseek + read).
-- The io_uring_enter and wait counts come from uring.stats() deltas around
-- each way.
--
-- Exits non-zero if any round of the tasks took more than
-- 1 + 1000/ring_entries enters ("enters:" is the worst round).
--
--   lua5.4 examples/batch.lua --trace trace.json
--
-- also runs the tasks once more, after the measured rounds, with
-- uring.trace on, and writes that round with uring.trace_export; draw it
-- with bin/uring-timeline trace.json batch.svg: 1,000 bars, one enter.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local READS, SIZE, LEN = 1000, 4 * 1024 * 1024, 4096
local trace_path = arg[1] == "--trace" and arg[2] or nil
if arg[1] and not trace_path then
  io.stderr:write("usage: lua5.4 examples/batch.lua [--trace trace.json]\n")
  os.exit(2)
end

-- the file: 4 MiB of pseudo-random bytes, kept in memory to check reads
math.randomseed(1234)
local words = {}
for i = 1, SIZE // 4 do words[i] = string.pack("<I4", math.random(0, 0xffffffff)) end
local data = table.concat(words)
words = nil
local path = os.tmpname()
local offsets = {}
for i = 1, READS do offsets[i] = math.random(0, SIZE - LEN) end

local function check(i, s)
  local off = offsets[i]
  if s ~= data:sub(off + 1, off + LEN) then
    error(("read %d at offset %d returned the wrong bytes"):format(i, off), 0)
  end
end

-- Each way runs ROUNDS times after one warm-up, the three ways taking
-- turns, each after a full garbage collection: otherwise the first
-- way measured pays for the 4 MiB of strings made above (a collection
-- inside the timed loop made the io row look 10x slower than it is).
-- The table gives the median of the rounds.
local ROUNDS = 5

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

-- one way, timed: returns the wall seconds and the stats delta
local function measure(fn)
  collectgarbage("collect")
  local s0, t0 = uring.stats(), uring.now()
  local results = fn()
  local t1, s1 = uring.now(), uring.stats()
  for i = 1, READS do check(i, results[i]) end
  return t1 - t0, {
    enters = s1.enters - s0.enters, waits = s1.waits - s0.waits,
    sqes = s1.sqes - s0.sqes, flushes = s1.flushes - s0.flushes,
  }
end

-- 1. io_uring: 1,000 concurrent tasks, each one pread
local function tasks_way(f)
  local tasks, results = {}, {}
  for i = 1, READS do
    tasks[i] = uring.spawn(function() return f:pread(LEN, offsets[i]) end)
  end
  for i = 1, READS do
    local ok, s = tasks[i]:join()
    if not ok then error(s, 0) end
    results[i] = s
  end
  return results
end

-- 2. io_uring: the same reads from one task, one at a time
local function sequential_way(f)
  local results = {}
  for i = 1, READS do results[i] = f:pread(LEN, offsets[i]) end
  return results
end

-- 3. blocking Lua io: seek + read
local function io_way(f)
  local results = {}
  for i = 1, READS do
    f:seek("set", offsets[i])
    results[i] = f:read(LEN)
  end
  return results
end

local rows = { tasks = {}, seq = {}, io = {} }
local entries, worst = 0, 0
uring.run(function()
  assert(uring.writefile(path, data))
  local f = assert(uring.open(path, "rb"))
  local g = assert(io.open(path, "rb"))
  for round = 0, ROUNDS do          -- round 0: the warm-up, not counted
    local tt, ts = measure(function() return tasks_way(f) end)
    local st, ss = measure(function() return sequential_way(f) end)
    local it = measure(function() return io_way(g) end)
    if round > 0 then
      rows.tasks[#rows.tasks + 1] = { tt, ts }
      rows.seq[#rows.seq + 1] = { st, ss }
      rows.io[#rows.io + 1] = { it }
    end
    worst = math.max(worst, ts.enters)
  end
  entries = uring.stats().entries
  if trace_path then              -- one more round, traced: not measured
    collectgarbage("collect")
    uring.trace(function() end)
    tasks_way(f)
    uring.trace(false)
  end
  f:close()
  g:close()
end)
os.remove(path)

-- the medians of a row: time, and each counter
local function summary(row)
  local times, counters = {}, {}
  for i, r in ipairs(row) do
    times[i] = r[1]
    for k, v in pairs(r[2] or {}) do
      counters[k] = counters[k] or {}
      counters[k][i] = v
    end
  end
  local m = { time = median(times) }
  for k, v in pairs(counters) do m[k] = median(v) end
  return m
end

local bound = 1 + READS / entries
local tasks, seq, io_ = summary(rows.tasks), summary(rows.seq), summary(rows.io)
print(("%d random 4 KiB reads of a 4 MiB file (ring: %d SQ entries)")
  :format(READS, entries))
print(("median of %d rounds after a warm-up, each after a full GC\n"):format(ROUNDS))
print(("%-24s %6s %8s %6s %11s %10s"):format("", "reads", "enters", "waits", "SQEs/enter", "wall ms"))
local function row(name, m)
  print(("%-24s %6d %8d %6d %11.1f %10.2f"):format(name, READS, m.enters, m.waits,
    m.sqes / math.max(m.enters, 1), m.time * 1e3))
end
row("uring: 1000 tasks", tasks)
row("uring: 1 task, in turn", seq)
print(("%-24s %6d %8s %6s %11s %10.2f"):format("io: seek+read loop", READS,
  "-", "-", "-", io_.time * 1e3))
print(("\n(the io loop makes ~%d system calls: an lseek and a read per read;")
  :format(2 * READS))
print(" waits: enters that also asked to sleep until a completion came,")
print(" io_uring_submit_and_wait; a task that waits on one read needs one each)")
print(("SQ-full flushes: %d; bound: 1 + %d/%d = %.2f enters\n")
  :format(tasks.flushes, READS, entries, bound))
print(("enters: %d"):format(worst))
if trace_path then
  local n, msg = uring.trace_export(trace_path)
  if not n then
    io.stderr:write("batch: ", msg, "\n")
    os.exit(1)
  end
  print(("traced round: %d events in %s (draw it: bin/uring-timeline %s batch.svg)")
    :format(n, trace_path, trace_path))
end
if worst > bound then
  io.stderr:write(("batch: %d io_uring_enter calls exceed the bound %.2f\n")
    :format(worst, bound))
  os.exit(1)
end
