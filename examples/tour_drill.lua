--- examples/tour_drill.lua: tour step 12 — the classic drill: 1,000 random reads.
--
--   lua5.4 examples/tour_drill.lua
--
-- 1,000 random 4 KiB reads of a 256 MiB file, three ways:
--   uring     1,000 tasks, each f:pread(4096, offset): all in flight at once
--             through the ring, from one thread;
--   blocking  one Lua loop, seek + read (unbuffered) one after another;
--   threads   bench/drill.c: 8 pthreads pread from a shared index, the way
--             a thread pool (libuv's) does blocking file I/O.
-- Each runs with a cold page cache (sync; echo 3 > /proc/sys/vm/drop_caches,
-- which needs root: without it the cold rows are skipped, with a note) and
-- warm (the same offsets read again).  Wall time is uring.now() (the
-- drill's own CLOCK_MONOTONIC); CPU time is os.clock() (all the process's
-- threads, including io_uring's kernel workers) or getrusage in the drill.
--
-- Cold, the disk's latency dominates and what counts is how many reads are
-- in flight: one (blocking), 8 (threads) or 1,000 (uring).  Warm, every
-- read is a memory copy and what counts is the cost per read.
-- Builds build/drill with cc if it is missing.
-- Each row is the median of several rounds (3 cold, 5 warm), the three
-- ways taking turns in each round, with the range of the wall times.
-- Exits non-zero if any read returned the wrong block, or if (when the
-- cache could be dropped) the cold uring median was not below the cold
-- blocking loop's.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local READS, LEN, SIZE, THREADS = 1000, 4096, 256 * 1024 * 1024, 8
local BLOCKS = SIZE // LEN
local DRILL = "build/drill"
local dir = os.getenv("TMPDIR") or "/var/tmp"
local path = ("%s/tour_drill.%d"):format(dir, math.random(1, 1e9))

if not io.open(DRILL) then
  assert(os.execute("cc -O2 -pthread -o " .. DRILL .. " bench/drill.c"),
    "cannot build " .. DRILL .. " (cc -O2 -pthread -o build/drill bench/drill.c)")
end

-- the file: each 4 KiB block starts with its number
do
  local f = assert(io.open(path, "wb"))
  local pad = ("\0"):rep(LEN - 4)
  local chunk = {}
  for b = 0, BLOCKS - 1 do
    chunk[#chunk + 1] = string.pack("<I4", b) .. pad
    if #chunk == 1024 then f:write(table.concat(chunk)); chunk = {} end
  end
  f:write(table.concat(chunk))
  f:close()
end

math.randomseed(2024)
local blocks, want_sum = {}, 0
for i = 1, READS do
  blocks[i] = math.random(0, BLOCKS - 1)
  want_sum = want_sum + blocks[i]
end
local offsets_file = os.tmpname()
do
  local f = assert(io.open(offsets_file, "w"))
  for i = 1, READS do f:write(blocks[i] * LEN, "\n") end
  f:close()
end

local function blockno(s) return s and #s == LEN and string.unpack("<I4", s) or -1 end

local function via_uring()
  return uring.run(function()
    local f = assert(uring.open(path, "rb"))
    local c0, w0 = os.clock(), uring.now()
    local tasks = {}
    for i = 1, READS do
      tasks[i] = uring.spawn(function() return f:pread(LEN, blocks[i] * LEN) end)
    end
    local sum = 0
    for i = 1, READS do
      local ok, s = tasks[i]:join()
      sum = sum + (ok and blockno(s) or -1)
    end
    local w, c = uring.now() - w0, os.clock() - c0
    f:close()
    return { wall = w, cpu = c, sum = sum }
  end)
end

local function via_blocking()
  local f = assert(io.open(path, "rb"))
  f:setvbuf("no")
  local c0, w0 = os.clock(), uring.now()
  local sum = 0
  for i = 1, READS do
    f:seek("set", blocks[i] * LEN)
    sum = sum + blockno(f:read(LEN))
  end
  local w, c = uring.now() - w0, os.clock() - c0
  f:close()
  return { wall = w, cpu = c, sum = sum }
end

local function via_threads()
  local p = assert(io.popen(("%s %s %d < %s"):format(DRILL, path, THREADS, offsets_file)))
  local line = p:read("a")
  p:close()
  local wall, cpu, sum = line:match("wall_ms=([%d.]+) cpu_ms=([%d.]+) sum=(%d+)")
  assert(wall, "drill printed: " .. line)
  return { wall = tonumber(wall) / 1e3, cpu = tonumber(cpu) / 1e3, sum = tonumber(sum) }
end

local function drop_caches()
  local f = io.open("/proc/sys/vm/drop_caches", "w")
  if not f then return false end
  os.execute("sync")
  local ok = f:write("3\n") and f:close()
  return ok and true or false
end

local contenders = {
  { "uring: 1000 tasks", via_uring },
  { "blocking pread loop", via_blocking },
  { ("threads: %d x pread (C)"):format(THREADS), via_threads },
}

-- Several samples per row, the contenders taking turns within each round
-- so that drift hits all alike; the table gives the median and the range.
local COLD_ROUNDS, WARM_ROUNDS = 3, 5
local samples, wrong, can_drop = {}, 0, true
local function add(cache, c, r)
  local key = cache .. "\0" .. c[1]
  samples[key] = samples[key] or { name = c[1], cache = cache, runs = {} }
  table.insert(samples[key].runs, r)
end
for _ = 1, COLD_ROUNDS do
  for _, c in ipairs(contenders) do
    if can_drop and drop_caches() then add("cold", c, c[2]())
    else can_drop = false end
  end
end
for _, c in ipairs(contenders) do c[2]() end          -- warm them all up
for _ = 1, WARM_ROUNDS do
  for _, c in ipairs(contenders) do add("warm", c, c[2]()) end
end

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end
local rows = {}
for _, cache in ipairs { "cold", "warm" } do
  for _, c in ipairs(contenders) do
    local s = samples[cache .. "\0" .. c[1]]
    if s then
      local walls, cpus, sum = {}, {}, want_sum
      for i, r in ipairs(s.runs) do
        walls[i], cpus[i] = r.wall, r.cpu
        if r.sum ~= want_sum then sum = r.sum end
      end
      local lo, hi = math.min(table.unpack(walls)), math.max(table.unpack(walls))
      rows[#rows + 1] = { name = s.name, cache = cache, n = #walls, wall = median(walls),
        cpu = median(cpus), lo = lo, hi = hi, sum = sum }
    end
  end
end
os.remove(path)
os.remove(offsets_file)

print(("%d random 4 KiB reads of a %d MiB file (%d CPUs)\n")
  :format(READS, SIZE >> 20, tonumber(io.popen("nproc"):read("l")) or 0))
print(("medians of %d cold and %d warm rounds (wall range in brackets)\n"):format(COLD_ROUNDS, WARM_ROUNDS))
print(("%-5s %-26s %10s %10s %10s  %s"):format("cache", "", "wall ms", "CPU ms", "us/read", "wall range ms"))
local cold = {}
for _, r in ipairs(rows) do
  if r.sum ~= want_sum then wrong = wrong + 1 end
  print(("%-5s %-26s %10.2f %10.2f %10.2f  [%.2f-%.2f]%s"):format(r.cache, r.name, r.wall * 1e3,
    r.cpu * 1e3, r.wall * 1e6 / READS, r.lo * 1e3, r.hi * 1e3,
    r.sum == want_sum and "" or "  WRONG BLOCKS"))
  if r.cache == "cold" then cold[r.name] = r end
end
if not can_drop then
  print("\n(note: could not write /proc/sys/vm/drop_caches (needs root): cold rows skipped)")
end

local ok = wrong == 0
if can_drop then
  local u, b = cold["uring: 1000 tasks"], cold["blocking pread loop"]
  print(("\ncold, medians: uring %.2f ms vs blocking %.2f ms: %.1fx"):format(u.wall * 1e3,
    b.wall * 1e3, b.wall / u.wall))
  ok = ok and u.wall < b.wall
end
print(ok and "ok: every read returned its block" or "unexpected result")
os.exit(ok and 0 or 1, true)
