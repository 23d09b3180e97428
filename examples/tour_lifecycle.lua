--- examples/tour_lifecycle.lua: tour step 14 — the life of a request.
--
--   lua5.4 examples/tour_lifecycle.lua [phase]
--
-- io_uring_enter tries each SQE at once, without blocking (inline).  What
-- cannot finish then goes one of two ways: if the file can tell when it
-- is ready (a socket, a pipe), the request is armed on its poll queue and
-- retried by task_work, in this thread, when the wakeup comes; if not (an
-- fsync, or anything marked IOSQE_ASYNC), it is handed to an io-wq worker
-- thread (iou-wrk-N).  Its CQE is posted by whoever finished it; with
-- IORING_SETUP_DEFER_TASKRUN the task_work waits until we next wait.
--
-- Four phases, each counted from the kernel's own view: CQEs ready right
-- after submit (no wait), /proc/self/fdinfo's PollList, iou-wrk threads in
-- /proc/self/task, and, when perf can read the io_uring:* tracepoints (as
-- root), the tracepoint counts of each phase run in a process of its own.
-- Exits non-zero if a request took another road than the one claimed.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local PID = io.open("/proc/self/stat"):read("n")
local failed = {}
local function check(ok, what)
  if not ok then failed[#failed + 1] = what end
end

-- io-wq worker threads of this process, from /proc/self/task
local function iowq_threads()
  local n = 0
  local p = io.popen("cat /proc/" .. PID .. "/task/*/comm 2>/dev/null")
  for comm in p:lines() do
    if comm:match("^iou%-wrk") then n = n + 1 end
  end
  p:close()
  return n
end

-- requests armed on a poll queue, from the ring's fdinfo
local function armed(ring)
  local list = ring:fdinfo():match("\nPollList:\n(.-)\n%a") or ""
  local n = 0
  for _ in list:gmatch("op=") do n = n + 1 end
  return n
end

-- a connected TCP pair on 127.0.0.1, made by the ring's own SQEs
local function tcp_pair(ring)
  local function one(method, ...)
    ring[method](ring, ...)
    ring:submit()
    return ring:wait_cqe(5)
  end
  local l = one("prep_socket", uring.AF_INET, uring.SOCK_STREAM | uring.SOCK_CLOEXEC, 0)
  assert(one("prep_bind", l, "127.0.0.1", 0) == 0)
  assert(one("prep_listen", l, 4) == 0)
  local _, port = ring:getsockname(l)
  local c = one("prep_socket", uring.AF_INET, uring.SOCK_STREAM | uring.SOCK_CLOEXEC, 0)
  assert(one("prep_connect", c, "127.0.0.1", port) == 0)
  local s = one("prep_accept", l, 0, uring.SOCK_CLOEXEC)
  assert(s >= 0 and one("prep_close", l) == 0)
  return c, s
end

local function close_all(ring, ...)
  for _, fd in ipairs { ... } do ring:prep_close(fd) end
  ring:submit_and_wait(select("#", ...))
  for _ = 1, select("#", ...) do ring:wait_cqe() end
end

local phases = {}

-- 1. inline: NOPs, and reads of a file in the page cache, complete inside
-- the io_uring_enter that submits them
function phases.inline()
  local ring <close> = assert(uring.ring{entries = 16})
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(string.rep("x", 8 * 4096))
  f:close()                                   -- just written: in the cache
  ring:prep_openat(nil, path, "r", 0, 1)
  ring:submit()
  local fd = ring:wait_cqe()
  local buf = uring.buffer(8 * 4096)
  for i = 0, 7 do ring:prep_nop(10 + i) end
  for i = 0, 7 do ring:prep_read(fd, buf, 4096, i * 4096, 20 + i, i * 4096 + 1) end
  ring:submit()
  local ready = ring:cq_ready()               -- no wait: what the enter did
  for _ = 1, 16 do assert(ring:wait_cqe() >= 0) end
  close_all(ring, fd)
  os.remove(path)
  print(("inline : 8 NOPs + 8 cached reads, CQEs ready when submit returned: %d of 16")
    :format(ready))
  check(ready == 16, "inline: not every request completed inside submit")
  return { threads = iowq_threads() }
end

-- 2. poll-armed: a recv on an empty socket cannot finish; it is armed on
-- the socket's wait queue (no thread) and completes when data comes
function phases.poll()
  local ring <close> = assert(uring.ring{entries = 8})
  local c, s = tcp_pair(ring)
  local buf = uring.buffer(64)
  ring:prep_recv(s, buf, 64, 0, 1)
  ring:submit()
  local ready, polls, threads = ring:cq_ready(), armed(ring), iowq_threads()
  ring:prep_send(c, "hello", nil, 0, 2)
  ring:submit()
  local got = {}
  for _ = 1, 2 do local res, ud = ring:wait_cqe(5); got[ud] = res end
  print(("poll   : recv on an empty socket: %d CQE after submit, %d armed in fdinfo's PollList, %d io-wq threads; after the send: recv res = %d")
    :format(ready, polls, threads, got[1]))
  check(ready == 0 and polls == 1 and got[1] == 5, "poll: the recv was not armed and retried")
  check(threads == 0, "poll: an io-wq thread was made for a pollable recv")
  close_all(ring, c, s)
  return { threads = iowq_threads() }
end

-- 3. io-wq: an fsync cannot be tried without blocking, and IOSQE_ASYNC
-- skips the inline try: both go to a worker thread
function phases.iowq()
  local ring <close> = assert(uring.ring{entries = 8})
  local before = iowq_threads()
  local path = os.tmpname()
  ring:prep_openat(nil, path, "w", 420, 1)
  ring:submit()
  local fd = ring:wait_cqe()
  ring:prep_write(fd, "data\n", nil, 0, 2)
  ring:async()
  ring:prep_fsync(fd, false, 3)
  ring:submit()
  local ready = ring:cq_ready()
  local got = {}
  for _ = 1, 2 do local res, ud = ring:wait_cqe(5); got[ud] = res end
  local after = iowq_threads()               -- idle workers linger ~5 s
  print(("io-wq  : write with async() + fsync: %d CQEs after submit; io-wq threads %d before, %d after")
    :format(ready, before, after))
  check(got[2] == 5 and got[3] == 0, "io-wq: the write or fsync failed")
  check(before == 0 and after >= 1, "io-wq: no worker thread appeared")
  close_all(ring, fd)
  os.remove(path)
  return { threads = after }
end

-- 4. task_work: the poll-armed recv's completion runs as task_work in
-- this thread.  A plain ring runs it on our next return from any system
-- call; a DEFER_TASKRUN ring only when we wait on that ring
function phases.taskwork()
  local helper <close> = assert(uring.ring{entries = 8})
  local function seen_before_wait(opts)
    local ring <close> = assert(uring.ring(opts))
    local c, s = tcp_pair(ring)
    local buf = uring.buffer(64)
    ring:prep_recv(s, buf, 64, 0, 1)
    ring:submit()
    helper:prep_send(c, "hi", nil, 0)        -- sent through the other ring
    helper:submit()
    helper:wait_cqe()
    helper:prep_timeout(0.02)                -- and a system call returns
    helper:submit()
    helper:wait_cqe()
    local peeked = ring:peek_cqe()           -- no system call on this ring
    local res = peeked or ring:wait_cqe(5)   -- waiting runs the task_work
    close_all(ring, c, s)
    return peeked ~= nil, res
  end
  local plain, r1 = seen_before_wait { entries = 8 }
  local deferred, r2 = seen_before_wait { entries = 8, single_issuer = true,
                                          defer_taskrun = true }
  print(("taskwork: CQE visible to peek_cqe before waiting: plain ring %s, DEFER_TASKRUN ring %s (recv res %d, %d)")
    :format(plain, deferred, r1, r2))
  check(plain and not deferred and r1 == 2 and r2 == 2,
        "taskwork: the deferred completion showed before the wait, or the plain one did not")
  return { threads = iowq_threads() }
end

local order = { "inline", "poll", "iowq", "taskwork" }

-- With perf and the io_uring tracepoints, count each phase alone.
local EVENTS = { "io_uring_submit_req", "io_uring_poll_arm", "io_uring_queue_async_work",
                 "io_uring_task_add", "io_uring_local_work_run" }
local function perf_counts(phase)
  local ev = {}
  for i, e in ipairs(EVENTS) do ev[i] = "io_uring:" .. e end
  local cmd = ("perf stat -x, -e %s -- %s %s %s 2>&1 >/dev/null")
    :format(table.concat(ev, ","), arg[-1] or "lua5.4", arg[0], phase)
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok = p:close()
  local counts = {}
  for n, e in out:gmatch("\n?(%d+),[^,]*,io_uring:([%w_]+)") do counts[e] = tonumber(n) end
  if not ok or not counts.io_uring_submit_req then return nil end
  return counts
end

if arg[1] then                                -- one phase (under perf)
  phases[arg[1]]()
  os.exit(#failed == 0 and 0 or 1)
end

for _, name in ipairs(order) do phases[name]() end

local have_perf = os.execute("command -v perf >/dev/null 2>&1")
local counts = {}
if have_perf then
  for _, name in ipairs(order) do counts[name] = perf_counts(name) end
end
if counts.inline then
  print()
  print("kernel tracepoints per phase (perf stat -e io_uring:*), each in a process of its own:")
  print(("%-10s %10s %10s %16s %10s %15s"):format("phase", "submit_req", "poll_arm",
    "queue_async_work", "task_add", "local_work_run"))
  for _, name in ipairs(order) do
    local c = counts[name] or {}
    print(("%-10s %10d %10d %16d %10d %15d"):format(name, c.io_uring_submit_req or -1,
      c.io_uring_poll_arm or -1, c.io_uring_queue_async_work or -1,
      c.io_uring_task_add or -1, c.io_uring_local_work_run or -1))
  end
  local i, p, w, t = counts.inline, counts.poll, counts.iowq, counts.taskwork
  check(i.io_uring_queue_async_work == 0 and i.io_uring_poll_arm == 0,
        "perf: the inline phase armed a poll or used io-wq")
  check(p and p.io_uring_poll_arm >= 1 and p.io_uring_queue_async_work == 0,
        "perf: the poll phase did not arm a poll, or used io-wq")
  check(w and w.io_uring_queue_async_work >= 2, "perf: the io-wq phase queued no async work")
  check(t and t.io_uring_local_work_run >= 1, "perf: no deferred task_work ran")
else
  print("(perf cannot read the io_uring tracepoints here: run as root with linux-perf for the kernel's counts)")
end

if #failed > 0 then
  for _, f in ipairs(failed) do io.stderr:write("tour_lifecycle: ", f, "\n") end
  os.exit(1)
end
print("ok: inline in submit, armed on a poll queue, handed to io-wq, finished by task_work — each seen from the kernel's side")
