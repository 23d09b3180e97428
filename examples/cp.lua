--- examples/cp.lua: copy a file without blocking the loop, with progress.
--
--   lua5.4 examples/cp.lua SRC DST
--
-- uring.copyfile has the kernel copy, as cp does: copy_file_range on a
-- helper thread whose end the task waits for through the ring (an eventfd
-- READ), 16 MiB a call when progress is wanted; across file systems it
-- splices through a pipe with linked SQEs instead.  The
-- on_progress callback draws a bar on stderr when stderr is a terminal;
-- otherwise one line at the end: "copied N bytes in X s (Y MiB/s)".
--
-- With no arguments it demonstrates itself: it writes a 64 MiB temp file,
-- copies it, checks the copy (size and sampled regions) and cleans up.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local MiB = 1024 * 1024
local tty = os.execute("test -t 2") == true

local function progress_bar()
  local last = -1
  return function(done, total)
    if total <= 0 then return end
    local pct = math.floor(done * 100 / total)
    if pct == last then return end
    last = pct
    local width = 40
    local fill = math.floor(width * done / total)
    io.stderr:write(("\r[%s%s] %3d%% %.1f/%.1f MiB")
      :format(("#"):rep(fill), (" "):rep(width - fill), pct,
              done / MiB, total / MiB))
    if done >= total then io.stderr:write("\n") end
  end
end

-- copy src to dst, reporting as described above; returns bytes or fails
local function copy(src, dst)
  local t0 = uring.now()
  local n, msg, en = uring.copyfile(src, dst, tty and progress_bar() or nil)
  if not n then return nil, msg, en end
  local dt = uring.now() - t0
  io.stderr:write(("copied %d bytes in %.3f s (%.1f MiB/s)\n")
    :format(n, dt, n / MiB / math.max(dt, 1e-9)))
  return n
end

-- the no-argument demo: make, copy, verify, remove
local function demo()
  local src = os.tmpname()
  local dst = src .. ".copy"
  local size = 64 * MiB
  io.stderr:write("usage: lua5.4 examples/cp.lua SRC DST\n",
                  "(no arguments: copying a 64 MiB temp file ", src, ")\n")
  -- 1 MiB of pseudo-random bytes; each MiB of the file is stamped with
  -- its index so that a misplaced chunk cannot compare equal
  math.randomseed(42)
  local t = {}
  for i = 1, MiB // 4 do t[i] = string.pack("<I4", math.random(0, 0xffffffff)) end
  local block = table.concat(t)
  local f = assert(uring.open(src, "wb"))
  for i = 0, size // MiB - 1 do
    assert(f:write(("%016d"):format(i), block:sub(17)))
  end
  assert(f:close())

  local ok, err = copy(src, dst)
  local bad
  if not ok then bad = "copyfile failed: " .. tostring(err)
  else
    local s1, s2 = uring.stat(src), uring.stat(dst)
    if not (s1 and s2 and s1.size == size and s2.size == size) then
      bad = ("sizes differ: %s vs %s"):format(s1 and s1.size, s2 and s2.size)
    else
      local a, b = assert(uring.open(src, "rb")), assert(uring.open(dst, "rb"))
      local offsets = { 0, size - 4096, size // 2 - 100, MiB - 8 }
      for _ = 1, 12 do offsets[#offsets + 1] = math.random(0, size - 4096) end
      for _, off in ipairs(offsets) do
        if a:pread(4096, off) ~= b:pread(4096, off) then
          bad = ("copy differs in the 4 KiB at offset %d"):format(off)
          break
        end
      end
      a:close(); b:close()
      if not bad then
        io.stderr:write(("verified: sizes equal, %d sampled regions equal\n")
          :format(#offsets))
      end
    end
  end
  uring.unlink(src)
  uring.unlink(dst)
  if bad then return nil, bad end
  return true
end

local src, dst = ...
local ok, err = uring.run(function()
  if src == nil then return demo() end
  if dst == nil then return nil, "usage: lua5.4 examples/cp.lua SRC DST" end
  local n, msg = copy(src, dst)
  if not n then return nil, "cp: " .. tostring(msg) end
  return true
end)
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
