--- bench/randread.lua: random 4 KiB reads from Lua, three ways.
--
--   lua5.4 bench/randread.lua uring FILE QD OPS [direct]
--       QD tasks, each calling file:pread(4096, off) in a loop (QD reads
--       in flight); "direct" opens FILE with {direct = true} (O_DIRECT)
--   lua5.4 bench/randread.lua uring-fixed FILE QD OPS [direct]
--       the same with uring.configure{fixed_buffers = QD}: each read is a
--       READ_FIXED into a registered buffer, still returned as a string
--   lua5.4 bench/randread.lua uring-buf FILE QD OPS [direct]
--       each task reads into its own uring.buffer(4096) with
--       file:pread(buf, 4096, off): no string is made per read
--   lua5.4 bench/randread.lua luv FILE QD OPS
--       luv's uv.fs_read with QD requests in flight (each callback
--       issues the next read); libuv runs them on its thread pool
--   lua5.4 bench/randread.lua io FILE 1 OPS
--       plain blocking io: f:seek("set", off) then f:read(4096)
--
-- Offsets are random 4 KiB blocks of FILE (math.random, the same for all
-- three).  Prints "NAME-qdN: X iops (...)".  Run from the repo root;
-- URING_CPATH overrides the C module path.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path

local BS = 4096
local mode, path = arg[1], arg[2]
local qd = math.tointeger(tonumber(arg[3] or ""))
local ops = math.tointeger(tonumber(arg[4] or ""))
local direct = arg[5] == "direct"
local variant = mode and mode:match("^uring%-(%a+)$")
if variant == "fixed" or variant == "buf" then mode = "uring"
elseif variant then mode = nil end
if (mode ~= "uring" and mode ~= "luv" and mode ~= "io") or not path
   or not qd or qd < 1 or not ops or ops < qd or (mode == "io" and qd ~= 1) then
  io.stderr:write("usage: lua5.4 bench/randread.lua uring|uring-fixed|uring-buf|luv|io FILE QD OPS [direct]\n")
  os.exit(2)
end

local size
do
  local f = assert(io.open(path, "rb"))
  size = f:seek("end")
  f:close()
end
local blocks = size // BS
assert(blocks > 0, path .. ": smaller than 4 KiB")
local random = math.random
math.randomseed(42)

local function report (name, secs)
  print(("%s-qd%d: %.0f iops (%d ops%s)"):format(name, qd, ops / secs, ops,
    direct and ", O_DIRECT" or ""))
end

if mode == "uring" then
  local uring = require "uring"
  if variant == "fixed" then uring.configure { fixed_buffers = qd } end
  local secs = uring.run(function()
    local f = assert(uring.open(path, "r", { direct = direct }))
    local left = ops
    -- each task takes the next read while any is left, so QD reads stay
    -- in flight to the end (as fio and the C program keep them)
    local function reader ()
      local pread = f.pread
      while left > 0 do
        left = left - 1
        local s = pread(f, BS, (random(blocks) - 1) * BS)
        if not s or #s ~= BS then error("short read") end
      end
    end
    if variant == "buf" then
      reader = function ()
        local pread, buf = f.pread, uring.buffer(BS)
        while left > 0 do
          left = left - 1
          if pread(f, buf, BS, (random(blocks) - 1) * BS) ~= BS then
            error("short read")
          end
        end
      end
    end
    local t0 = uring.now()
    if qd == 1 then
      reader()
    else
      local tasks = {}
      for i = 1, qd do tasks[i] = uring.spawn(reader) end
      for i = 1, qd do assert(tasks[i]:join()) end
    end
    local t = uring.now() - t0
    if variant == "fixed" and uring.stats().fixed_reads < ops then
      error("fixed_buffers: only " .. uring.stats().fixed_reads .. " of "
        .. ops .. " reads were READ_FIXED")
    end
    f:close()
    return t
  end)
  report(variant and "uring-" .. variant or "uring", secs)

elseif mode == "luv" then
  local uv = require "luv"
  local fd = assert(uv.fs_open(path, "r", 0))
  local issued, done = 0, 0
  local function issue ()
    issued = issued + 1
    uv.fs_read(fd, BS, (random(blocks) - 1) * BS, function(err, data)
      if err or #data ~= BS then error("read failed: " .. tostring(err)) end
      done = done + 1
      if issued < ops then issue() end
    end)
  end
  local t0 = uv.hrtime()
  for _ = 1, qd do issue() end
  uv.run()
  local secs = (uv.hrtime() - t0) / 1e9
  assert(done == ops)
  uv.fs_close(fd)
  report("luv", secs)

else
  local now = require("luv").hrtime   -- wall clock (os.clock would not
                                      -- count time blocked on the disk)
  local f = assert(io.open(path, "rb"))
  local t0 = now()
  for _ = 1, ops do
    f:seek("set", (random(blocks) - 1) * BS)
    local s = f:read(BS)
    if not s or #s ~= BS then error("short read") end
  end
  local secs = (now() - t0) / 1e9
  f:close()
  report("io", secs)
end
