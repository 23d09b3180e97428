--- examples/tour_security.lua: tour step 11 — the security side of io_uring.
--
--   lua5.4 examples/tour_security.lua
--
-- io_uring is a large kernel attack surface and it bypasses syscall
-- filters: one io_uring_enter can open, read, connect, ... without a
-- separate openat/read/connect syscall for seccomp to see.  So:
--   * sysctl kernel.io_uring_disabled (Linux 6.6+): 0 allowed, 1 only for
--     CAP_SYS_ADMIN or the group kernel.io_uring_group, 2 off for everyone;
--   * container runtimes block io_uring_setup with seccomp (Docker's
--     default profile since 25.0, many Kubernetes set-ups, ChromeOS,
--     Android), and so do sandboxes.
-- When io_uring_setup fails lua-uring says which of these it was and how
-- to fix it.  build/noring (spec/helpers/noring.c) installs a seccomp
-- filter that makes io_uring_setup fail with EPERM (or ENOSYS), as a
-- container runtime would, then runs a command; this script runs lua5.4
-- under it and prints the error and uring.features().reason.
-- Exits non-zero unless the child failed with the seccomp message and
-- features() reported available = false without raising.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path

local NORING = "build/noring"
if not io.open(NORING) then
  assert(os.execute("cc -O2 -o " .. NORING .. " spec/helpers/noring.c"),
    "cannot build " .. NORING)
end

local sysctl = io.open("/proc/sys/kernel/io_uring_disabled")
local disabled = sysctl and sysctl:read("l")
if sysctl then sysctl:close() end
print(("kernel.io_uring_disabled = %s%s"):format(disabled or "(absent: kernel < 6.6)",
  disabled == "0" and " (allowed for everyone)" or ""))
local st = io.open("/proc/self/status"):read("a")
print(("this process: Seccomp: %s, NoNewPrivs: %s"):format(
  st:match("Seccomp:%s*(%d+)") or "?", st:match("NoNewPrivs:%s*(%d+)") or "?"))

local lua = arg[-1] or "lua5.4"
local prelude = ("package.cpath=%q..package.cpath;package.path='./lua/?.lua;./lua/?/init.lua;'..package.path;")
  :format((os.getenv("URING_CPATH") or "./build/?.so") .. ";")
local function under(errno, code)
  local cmd = ("%s %s %s -e %q 2>&1"):format(NORING, errno, lua, prelude .. code)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local _, _, status = p:close()
  return out, status
end

print("\n$ build/noring EPERM lua5.4 -e 'require\"uring\".run(print)'")
local out1, status1 = under("EPERM", 'require"uring".run(print)')
io.write(out1)
print(("(exit status %d)"):format(status1))

print("\n$ build/noring EPERM lua5.4 -e 'local f = require\"uring\".features() print(f.available, f.reason)'")
local out2, status2 = under("EPERM", 'local f = require"uring".features() print(f.available, f.reason)')
io.write(out2)

print("\n$ build/noring ENOSYS lua5.4 -e 'print(require\"uring\".ring{})'")
local out3 = under("ENOSYS", 'print(require"uring".ring{})')
io.write(out3)

local ok = status1 ~= 0 and out1:match("io_uring_setup%(%d+ entries%)")
  and out1:match("seccomp") and out1:match("fix:")
  and status2 == 0 and out2:match("^false\t") and out2:match("seccomp")
  and out3:match("ENOSYS")
print(ok and "\nok: blocked by seccomp, lua-uring named the cause and the fix"
         or "\nunexpected result")
os.exit(ok and 0 or 1, true)
