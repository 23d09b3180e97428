--- examples/batch.lua: batching — many operations, few system calls.
--
--   lua5.4 examples/batch.lua          (also: make demo)
--
-- 1,000 tasks each read 4 KiB at a random offset of a 4 MiB file with
-- f:pread.  Each task prepares one SQE and yields; the loop runs every
-- ready task before it enters the kernel, so all 1,000 reads go in with
-- one io_uring_enter (or one per full SQ: ring_entries SQEs at a time).
-- The same reads from one task, one after another, cost an enter each;
-- through Lua's blocking io library, two system calls each (lseek + read).  The io_uring_enter count comes from
-- uring.stats() deltas around the spawning and joining of the tasks.
--
-- Exits non-zero if it took more than 1 + 1000/ring_entries enters.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local READS, SIZE, LEN = 1000, 4 * 1024 * 1024, 4096

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

-- 1. io_uring: 1,000 concurrent tasks, one uring.run
local ring = uring.run(function()
  assert(uring.writefile(path, data))
  local f = assert(uring.open(path, "rb"))
  local s0, t0 = uring.stats(), uring.now()
  local tasks = {}
  for i = 1, READS do
    tasks[i] = uring.spawn(function() return f:pread(LEN, offsets[i]) end)
  end
  local results = {}
  for i = 1, READS do
    local ok, s = tasks[i]:join()
    if not ok then error(s, 0) end
    results[i] = s
  end
  local t1, s1 = uring.now(), uring.stats()
  for i = 1, READS do check(i, results[i]) end
  -- for contrast: the same reads from one task, one at a time
  local s2, t2 = uring.stats(), uring.now()
  for i = 1, READS do results[i] = f:pread(LEN, offsets[i]) end
  local t3, s3 = uring.now(), uring.stats()
  f:close()
  for i = 1, READS do check(i, results[i]) end
  return {
    enters = s1.enters - s0.enters, sqes = s1.sqes - s0.sqes,
    flushes = s1.flushes - s0.flushes, time = t1 - t0,
    entries = s1.entries,
    seq_enters = s3.enters - s2.enters, seq_sqes = s3.sqes - s2.sqes,
    seq_time = t3 - t2,
  }
end)

-- 2. blocking Lua io: the same reads, one after another
local f = assert(io.open(path, "rb"))
local t0 = uring.now()
local results = {}
for i = 1, READS do
  f:seek("set", offsets[i])
  results[i] = f:read(LEN)
end
local io_time = uring.now() - t0
f:close()
for i = 1, READS do check(i, results[i]) end
os.remove(path)

local bound = 1 + READS / ring.entries
print(("%d random 4 KiB reads of a 4 MiB file (ring: %d SQ entries)\n")
  :format(READS, ring.entries))
print(("%-24s %6s %8s %11s %10s"):format("", "reads", "enters", "SQEs/enter", "wall ms"))
print(("%-24s %6d %8d %11.1f %10.2f"):format("uring: 1000 tasks", READS,
  ring.enters, ring.sqes / math.max(ring.enters, 1), ring.time * 1e3))
print(("%-24s %6d %8d %11.1f %10.2f"):format("uring: 1 task, in turn", READS,
  ring.seq_enters, ring.seq_sqes / math.max(ring.seq_enters, 1),
  ring.seq_time * 1e3))
print(("%-24s %6d %8s %11s %10.2f"):format("io: seek+read loop", READS,
  "-", "-", io_time * 1e3))
print(("\n(the io loop makes ~%d system calls: an lseek and a read per read)")
  :format(2 * READS))
print(("SQ-full flushes: %d; bound: 1 + %d/%d = %.2f enters\n")
  :format(ring.flushes, READS, ring.entries, bound))
print(("enters: %d"):format(ring.enters))
if ring.enters > bound then
  io.stderr:write(("batch: %d io_uring_enter calls exceed the bound %.2f\n")
    :format(ring.enters, bound))
  os.exit(1)
end
