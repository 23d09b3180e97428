--- examples/random_reads.lua: many tasks reading random blocks, three ways.
--
--   lua5.4 examples/random_reads.lua [MiB [reads [tasks]]]   (default 16 20000 32)
--
-- Writes a scratch file whose every 4 KiB block starts with its own
-- number, then TASKS tasks read READS random blocks of it, so TASKS reads
-- are in flight at once and the loop submits them together:
--   string    f:pread(4096, off): each read makes a new 4 KiB Lua string
--   buffer    f:pread(buf, 4096, off): the kernel reads into the task's own
--             uring.buffer; no string is made (buf:tostring(1, 8) copies
--             out only the 8 bytes we check)
--   fixed     f:pread(4096, off) after uring.configure{fixed_buffers =
--             TASKS}: the reads are READ_FIXED into buffers registered
--             with the ring once, so the kernel does not map each
--             destination (uring.stats().fixed_reads counts them; it
--             falls back to plain reads, and says why, if the registration
--             is refused, e.g. for lack of locked memory)
-- and prints reads per second and io_uring_enter calls for each.  Which
-- wins depends on the cache and the machine (bench/README.md measures
-- them against fio, luv and C); the script checks that every read
-- returned its block and exits non-zero otherwise.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local BS = 4096
local MIB = math.tointeger(tonumber(arg[1] or 16))
local READS = math.tointeger(tonumber(arg[2] or 20000))
local TASKS = math.tointeger(tonumber(arg[3] or 32))
if not (MIB and MIB > 0 and READS and READS > 0 and TASKS and TASKS > 0) then
  io.stderr:write("usage: lua5.4 examples/random_reads.lua [MiB [reads [tasks]]]\n")
  os.exit(2)
end
local BLOCKS = MIB * 1024 * 1024 // BS
local path = ("%s/random_reads.%d"):format(os.getenv("TMPDIR") or "/var/tmp",
  math.random(1, 1e9))

local function block(i)     -- block i's bytes: its number, then filler
  local head = ("%8d"):format(i)
  return head .. ("."):rep(BS - #head)
end

uring.run(function()
  local f <close> = assert(uring.open(path, "w"))
  local t = {}
  for i = 0, BLOCKS - 1 do
    t[#t + 1] = block(i)
    if #t == 256 then assert(f:write(table.concat(t))); t = {} end
  end
  assert(f:write(table.concat(t)))
end)

local wrong = 0
local function check(i, head)
  if head ~= ("%8d"):format(i) then wrong = wrong + 1 end
end

-- TASKS tasks share READS reads; read(f, i) reads block i in its own way
local function measure(name, read_with)
  local s0 = uring.stats()
  local secs = uring.run(function()
    local f <close> = assert(uring.open(path))
    local left, t0 = READS, uring.now()
    local tasks = {}
    for k = 1, TASKS do
      local read = read_with(f)
      tasks[k] = uring.spawn(function()
        while left > 0 do
          left = left - 1
          read(math.random(0, BLOCKS - 1))
        end
      end)
    end
    for _, task in ipairs(tasks) do assert(task:join()) end
    return uring.now() - t0
  end)
  local s1 = uring.stats()
  print(("%-7s %9.0f reads/s  %6d io_uring_enter  %6d fixed reads"):format(name,
    READS / secs, s1.enters - s0.enters, s1.fixed_reads - s0.fixed_reads))
end

print(("%d reads of 4 KiB at random offsets of a %d MiB file, %d tasks (warm cache)")
  :format(READS, MIB, TASKS))
measure("string", function(f)
  return function(i) check(i, f:pread(BS, i * BS):sub(1, 8)) end
end)
measure("buffer", function(f)
  local buf = uring.buffer(BS)          -- one per task
  return function(i)
    assert(f:pread(buf, BS, i * BS) == BS)
    check(i, buf:tostring(1, 8))
  end
end)
uring.configure{fixed_buffers = TASKS, fixed_buffer_size = BS}
measure("fixed", function(f)
  return function(i) check(i, f:pread(BS, i * BS):sub(1, 8)) end
end)
local fb = uring.features().fixed_buffers
print(("registered buffers: %d of %d%s"):format(fb.count, fb.wanted,
  fb.error and (" (" .. fb.error .. ")") or ""))
uring.configure{fixed_buffers = 0}

os.remove(path)
print(("reads with a wrong block: %d"):format(wrong))
if wrong > 0 then os.exit(1) end
print("ok: every read returned its block")
