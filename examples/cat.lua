--- examples/cat.lua: cat(1) through io_uring.
--
--   lua5.4 examples/cat.lua FILE...
--
-- Each file is opened with IORING_OP_OPENAT and read 64 KiB at a time with
-- IORING_OP_READ (f:read(65536) yields the task until the CQE arrives); the
-- bytes go to stdout unchanged.  The one idea: sequential code, completion
-- I/O underneath.  What it measured goes to stderr, so stdout stays the
-- files' bytes:  "cat: N bytes, M io_uring_enter calls".
-- With no arguments it prints its usage (stderr) and cats its own source.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local files = { ... }
if #files == 0 then
  io.stderr:write("usage: lua5.4 examples/cat.lua FILE...\n",
                  "(no FILE given: catting this script's own source)\n")
  files[1] = arg and arg[0] or "examples/cat.lua"
end

local CHUNK = 65536

-- cat one file; returns bytes written, or nil, message
local function cat(path)
  local f, msg = uring.open(path, "rb")
  if not f then return nil, msg end
  local n = 0
  while true do
    local chunk, err = f:read(CHUNK)
    if chunk == nil then
      f:close()
      if err then return nil, path .. ": " .. err end
      return n
    end
    n = n + #chunk
    io.stdout:write(chunk)
  end
end

local before = uring.stats().enters
local total, failed = 0, false
uring.run(function()
  for _, path in ipairs(files) do
    local n, err = cat(path)
    if n then total = total + n
    else
      io.stderr:write("cat: ", err, "\n")
      failed = true
    end
  end
end)
io.stdout:flush()
io.stderr:write(("cat: %d bytes, %d io_uring_enter calls\n")
  :format(total, uring.stats().enters - before))
os.exit(failed and 1 or 0)
