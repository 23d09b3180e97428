--- spec/oom/workload.lua: the mixed workload of the out-of-memory sweep.
--
--   build-asan/oomhost [--fail-at N | --core-fail-at N] spec/oom/workload.lua
--
-- Run by spec/helpers/oomhost.c (global `oom`), from the checkout, with
-- URING_OOM_DIR an empty scratch directory.  One uring.run drives files,
-- TCP and UDP sockets, processes (popen, exec), timers and cancels, the
-- teaching ring and uring.http (server and client) from a few tasks; the
-- host fails the Nth allocation of the Lua state (--fail-at) or of the
-- core (--core-fail-at) while it runs.  Afterwards, with the allocators
-- back to normal, a full collection, and one empty run to let closes
-- finish, it checks the invariants and prints one line:
--
--   @@oom outcome=O lua=N core=M failed=lua|core|none fds=ok|leak
--         inflight=I tasks=T err=<first line of the error, if any>
--
-- O is "memerr" (the run raised "not enough memory", or a task saw it and
-- said so), "enomem" (a core allocation failed and an op returned the
-- fail tuple with ENOMEM), "clean" (no allocation was failed: N is past
-- the run's last), "absorbed" (one was failed and the run still
-- succeeded), or "other" (any other error: a finding).  Exit status 0
-- when the outcome is acceptable and nothing leaked, 3 otherwise.
local uring = require "uring"
local core = require "uring.core"
local dir = assert(os.getenv("URING_OOM_DIR"), "URING_OOM_DIR: a scratch directory")

local faults = core._faults or function() return 0, false end

-- the handler errors the HTTP server swallowed (it answers 500): the
-- client raises them, so a memory error there is seen as one
local handler_errors = {}

local function joined(ok, err, ...)
  if not ok then error(err, 0) end
  return ...
end

local function files()
  local path = dir .. "/f.txt"
  assert(uring.writefile(path, "one\ntwo\nthree\n"))
  do
    local f <close> = assert(uring.open(path, "r"))
    local n = 0
    for _ in f:lines() do n = n + 1 end
    assert(n == 3, "lines")
    assert(f:pread(3, 4) == "two", "pread")
    assert(f:stat().size == 14, "stat")
  end
  do
    local g <close> = assert(uring.open(path, "a"))
    assert(g:write("four\n", 5, "\n"))
  end
  assert(uring.readfile(path) == "one\ntwo\nthree\nfour\n5\n", "readfile")
  assert(uring.stat(path).size == 21, "uring.stat")
  assert(uring.rename(path, path .. ".2"))
  assert(uring.unlink(path .. ".2"))
end

local function sockets()
  local srv <close> = assert(uring.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local echo = uring.spawn(function()
    local c <close> = assert(srv:accept())
    local line = assert(c:receive("*l"))
    assert(c:send(line:upper() .. "\n"))
  end)
  do
    local c <close> = assert(uring.connect("127.0.0.1", port))
    assert(c:send("hello\n"))
    assert(c:receive("*l") == "HELLO", "echo")
  end
  joined(echo:join())
  local u <close> = assert(uring.udp("127.0.0.1", 0))
  local uh, up = u:getsockname()
  assert(u:sendto("ping", uh, up))
  assert(u:recvfrom() == "ping", "udp")
end

local function processes()
  do
    local f <close> = assert(uring.popen("echo hi"))
    assert(f:read("l") == "hi", "popen read")
  end
  local p = assert(uring.exec{"cat", stdin = "pipe", stdout = "pipe"})
  local ok, err = pcall(function()
    assert(p.stdin:write("x\n"))
    p.stdin:close()
    assert(p.stdout:read("a") == "x\n", "exec read")
  end)
  -- whatever happened, the child ends and is waited for
  if not ok then p:kill("KILL") end
  if io.type(p.stdin) ~= "closed file" then pcall(p.stdin.close, p.stdin) end
  pcall(p.stdout.close, p.stdout)
  local w = { p:wait() }
  if not ok then error(err, 0) end
  assert(w[1], "exec wait")
end

local function timers()
  uring.sleep(0.001)
  assert(uring.timeout(0.001, uring.sleep, 5) == nil, "timeout")
  local t = uring.spawn(uring.sleep, 5)
  uring.yield()
  t:cancel()
  local ok, err = t:join()
  if not ok and err ~= "canceled" then error(err, 0) end
  assert(uring.nop())
end

local function ring()
  local r <close> = assert(uring.ring{ entries = 4 })
  local f <close> = assert(uring.open("/proc/self/stat", "r"))
  local buf = uring.buffer(64)
  r:prep_nop(7)
  r:prep_read(f:fd(), buf, 64, 0, 8)
  assert(r:submit() == 2, "submit")
  local seen = {}
  for _ = 1, 2 do
    local res, ud = r:wait_cqe()
    seen[ud] = res
  end
  assert(seen[7] == 0 and seen[8] > 0, "ring cqes")
end

local function http()
  local srv = assert(uring.http.server{
    port = 0, idle_timeout = 0,
    handler = function(req) return 200, "hi " .. req.path end,
    on_error = function(err) handler_errors[#handler_errors + 1] = err end,
  })
  local serving = uring.spawn(srv.serve, srv)
  local ok, res, msg = pcall(uring.http.request,
    "http://127.0.0.1:" .. srv:port() .. "/x")
  srv:close()
  joined(serving:join())
  if not ok then error(res, 0) end
  if handler_errors[1] then error(handler_errors[1], 0) end
  assert(res, msg)
  assert(res.status == 200 and res.body == "hi /x", "http response")
end

local function main()
  local tasks = {
    uring.spawn(files), uring.spawn(sockets), uring.spawn(processes),
    uring.spawn(timers), uring.spawn(ring),
  }
  http()
  for _, t in ipairs(tasks) do joined(t:join()) end
end

-- warm up: the loop's ring, and whatever the loop makes once and keeps
uring.run(main)
collectgarbage(); collectgarbage()
local fds0 = oom.fds()

oom.arm()
faults(oom.core_fail_at)
local ok, err = pcall(uring.run, main)
local ncore, cfailed = faults()
local nlua, lfailed = oom.disarm()

-- closes that wait for their last completion finish in a later run
collectgarbage(); collectgarbage()
uring.run(function() end)
collectgarbage(); collectgarbage()

local stats = uring.stats()
local fds1 = oom.fds()
local leaked = {}
for fd, target in pairs(fds1) do
  if fds0[fd] ~= target then leaked[#leaked + 1] = fd .. "->" .. target end
end
for fd, target in pairs(fds0) do
  if fds1[fd] == nil then leaked[#leaked + 1] = fd .. "->(closed) " .. target end
end
table.sort(leaked)

local msg = ok and "" or tostring(err)
local outcome
if not lfailed and not cfailed then outcome = ok and "clean" or "other"
elseif ok then outcome = "absorbed"
elseif msg:find("not enough memory", 1, true) then outcome = "memerr"
elseif cfailed and msg:find("Cannot allocate memory", 1, true) then outcome = "enomem"
else outcome = "other" end

io.write(("@@oom outcome=%s lua=%d core=%d failed=%s fds=%s inflight=%d tasks=%d err=%s\n"):format(
  outcome, nlua, ncore, lfailed and "lua" or cfailed and "core" or "none",
  #leaked == 0 and "ok" or "leak:" .. table.concat(leaked, ","),
  stats.inflight, stats.tasks, (msg:match("^[^\n]*"))))
if not ok then io.write(msg, "\n") end
io.flush()
local good = outcome ~= "other" and #leaked == 0 and stats.inflight == 0
  and stats.tasks == 0
os.exit(good and 0 or 3, true)
