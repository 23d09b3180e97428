--- examples/tour_restrictions.lua: tour step 18 — restrictions: a
--- sandboxed ring.
--
--   lua5.4 examples/tour_restrictions.lua
--
-- A ring created disabled (IORING_SETUP_R_DISABLED) can be given an
-- allow-list before it starts (io_uring_register_restrictions): which ops
-- its SQEs may use, which SQE flags, which io_uring_register calls.  Then
-- io_uring_enable_rings starts it, and the list cannot change.  The use
-- case: hand a ring to less trusted code (or a child process) that may
-- read and write the fds it was given, but not open files or sockets.
--
-- The script makes an unrestricted ring and a sandboxed one (allowed:
-- nop, read, write, close, async_cancel; the link flag; no registration),
-- tries the same requests on both, and prints a table.  Exits non-zero
-- unless everything allowed works on both, everything else works on the
-- open ring and fails with EACCES (13) on the sandboxed one.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local EACCES, EBADFD = 13, 77
local failed = {}
local function check(ok, what)
  if not ok then failed[#failed + 1] = what end
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p '" .. dir .. "'"))
local path = dir .. "/data.txt"
local f = assert(io.open(path, "w"))
f:write("sandbox\n")
f:close()

local open <close> = assert(uring.ring{entries = 8})
local box <close> = assert(uring.ring{entries = 8, disabled = true})

-- before enable_rings, a disabled ring does nothing at all
box:prep_nop()
local n, _, err = box:submit()
print(("disabled ring: submit -> %s, errno %s (EBADFD: not started)"):format(tostring(n), tostring(err)))
check(n == nil and err == EBADFD, "a disabled ring should refuse submit with EBADFD")

assert(box:register_restrictions{
  ops = { "nop", "read", "write", "close", "async_cancel" },
  sqe_flags = { "link" },
})
assert(box:enable_rings())
box:submit()                 -- the NOP still in the SQ goes in now
assert(box:wait_cqe(5) == 0)

-- the trusted side opens the file and hands the fd to both rings
local function run1(ring, method, ...)
  ring[method](ring, ...)
  ring:submit()
  return ring:wait_cqe(5)
end
local fd = run1(open, "prep_openat", nil, path, "r+", 0)
assert(fd >= 0)

local buf = uring.buffer(8)
local rows = {
  { "nop", true, function(r) return run1(r, "prep_nop") end },
  { "read the fd it was given", true, function(r) return run1(r, "prep_read", fd, buf, 8, 0) end },
  { "write the fd it was given", true, function(r) return run1(r, "prep_write", fd, "SANDBOX\n", nil, 0) end },
  { "nop linked to a nop (link flag)", true, function(r)
      r:prep_nop(1); r:link(); r:prep_nop(2); r:submit()
      local a, b = r:wait_cqe(5), r:wait_cqe(5)
      return a ~= 0 and a or b
    end },
  { "openat (a new file)", false, function(r) return run1(r, "prep_openat", nil, path, "r", 0) end },
  { "socket", false, function(r) return run1(r, "prep_socket", uring.AF_INET, uring.SOCK_STREAM, 0) end },
  { "unlinkat", false, function(r) return run1(r, "prep_unlinkat", nil, dir .. "/nope") end },
  { "nop with async() (flag not allowed)", false, function(r)
      r:prep_nop(); r:async(); r:submit()
      return r:wait_cqe(5)
    end },
  { "register_buffers (a register op)", false, function(r)
      local ok, _, e = r:register_buffers{ uring.buffer(4096) }
      if ok then r:unregister_buffers() return 0 end
      return -e
    end },
}

print(("%-38s %12s %12s"):format("request", "open ring", "sandboxed"))
for _, row in ipairs(rows) do
  local name, allowed, fn = row[1], row[2], row[3]
  local a, b = fn(open), fn(box)
  -- an fd the open ring made is closed at once
  if name:match("^openat") or name:match("^socket") then
    if a >= 0 then run1(open, "prep_close", a) end
    if b >= 0 then run1(open, "prep_close", b) end
  end
  local function show(res) return res >= 0 and "ok" or ("-" .. -res) end
  print(("%-38s %12s %12s"):format(name, show(a), show(b)))
  if name:match("^unlinkat") then a = (a == -2) and 0 or a end   -- ENOENT: it ran
  check(a >= 0, name .. ": failed on the open ring")
  if allowed then check(b >= 0, name .. ": refused in the sandbox")
  else check(b == -EACCES, name .. ": not refused with EACCES in the sandbox") end
end

run1(open, "prep_close", fd)
os.remove(path)
os.remove(dir)

if #failed > 0 then
  for _, x in ipairs(failed) do io.stderr:write("tour_restrictions: ", x, "\n") end
  os.exit(1)
end
print("ok: the sandboxed ring did what its allow-list says and got EACCES for everything else")
