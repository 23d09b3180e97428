--- examples/tour_completion.lua: tour step 3 — completion versus readiness.
--
--   lua5.4 examples/tour_completion.lua
--
-- epoll and poll answer "would a read block?" and, for a regular file, the
-- answer is always "no": a file is always readable, even when its data is
-- on disk and the read will sleep for it (epoll_ctl refuses regular files
-- outright with EPERM).  So readiness-based event loops cannot overlap
-- file I/O; they push it to a thread pool.  io_uring is completion-based:
-- you ask for the read and the CQE comes when the bytes are in your
-- buffer.
--
-- It writes a 4 MiB file, syncs it and drops its pages from the page cache
-- (POSIX_FADV_DONTNEED, itself an io_uring op), then on the teaching ring:
--   1. prep_poll_add(fd, POLLIN): the readiness question;
--   2. prep_read of the whole (cold) file: the completion.
-- and prints how long each CQE took.  If python3 is installed it also shows
-- epoll_ctl failing with EPERM on the same file.
-- Exits non-zero unless the poll reports POLLIN at once (before any data
-- was read) and the read completes with every byte, later than the poll.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local SIZE = 4 * 1024 * 1024
local dir = os.getenv("TMPDIR") or "/var/tmp"
local path = ("%s/tour_completion.%d"):format(dir, math.random(1, 1e9))
local data = ("completion, not readiness\n"):rep(SIZE // 26 + 1):sub(1, SIZE)

local ring <close> = assert(uring.ring{entries = 8})
local function op(what)                   -- submit what's prepared, take 1 CQE
  local t0 = uring.now()
  ring:submit()
  local res, ud, flags = ring:wait_cqe()
  return res, uring.now() - t0
end

ring:prep_openat(nil, path, "w+")
local fd = op()
assert(fd >= 0, "openat: " .. fd)
ring:prep_write(fd, data, SIZE, 0)
assert(op() == SIZE)
ring:prep_fsync(fd)
assert(op() == 0)
ring:prep_fadvise(fd, 0, SIZE, "dontneed")  -- evict its pages: a cold file
local fadv = op()
print(("a %d MiB file, synced, its pages dropped (fadvise DONTNEED res = %d)")
  :format(SIZE >> 20, fadv))

-- 1. readiness: is it readable?
ring:prep_poll_add(fd, uring.POLLIN, 1)
local revents, t_poll = op()
local names = {}
for _, k in ipairs{"POLLIN", "POLLOUT", "POLLPRI", "POLLERR", "POLLHUP"} do
  if revents > 0 and revents & uring[k] ~= 0 then names[#names + 1] = k end
end
print(("poll_add(POLLIN) CQE: res = 0x%x (%s) after %8.3f ms   <- 'ready', yet no byte is in memory")
  :format(revents, table.concat(names, "|"), t_poll * 1e3))

-- 2. completion: read it
local buf = uring.buffer(SIZE)
ring:prep_read(fd, buf, SIZE, 0, 2)
local got, t_read = op()
local same = got == SIZE and buf:tostring() == data
print(("read CQE:             res = %d bytes       after %8.3f ms   <- the data is in the buffer%s")
  :format(got, t_read * 1e3, same and "" or " (WRONG BYTES)"))
ring:prep_close(fd)
op()
os.remove(path)

-- epoll's answer, for contrast (needs python3; lua-uring has no epoll)
local py = io.popen([[python3 -c '
import select, os, sys
e = select.epoll(); fd = os.open("/etc/hostname", os.O_RDONLY)
try:
    e.register(fd, select.EPOLLIN); print("registered?!")
except OSError as x:
    print("epoll_ctl(ADD, regular file) -> errno %d (%s)" % (x.errno, os.strerror(x.errno)))
' 2>/dev/null]])
local ep = py and py:read("a") or ""
if py then py:close() end
print(ep ~= "" and ep:gsub("\n$", "") or "epoll_ctl on a regular file: EPERM (python3 not found to show it)")

local ok = revents > 0 and revents & uring.POLLIN ~= 0 and same and t_read > t_poll
print(ok and ("ok: readiness said yes in %.3f ms; the completion came when the data did, %.3f ms")
  :format(t_poll * 1e3, t_read * 1e3) or "unexpected result")
os.exit(ok and 0 or 1, true)
