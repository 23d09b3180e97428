--- spec/oom/workload.lua: the mixed workload of the out-of-memory sweep.
--
--   build-asan/oomhost [--fail-at N | --core-fail-at N] spec/oom/workload.lua
--
-- Run by spec/helpers/oomhost.c (global `oom`), from the checkout, with
-- URING_OOM_DIR an empty scratch directory.  One uring.run drives files,
-- TCP and UDP sockets, processes (popen, exec), timers and cancels, the
-- teaching ring, uring.http (server and client) and the queue, semaphore,
-- group, event and select tasks work together with, from a few tasks; the
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

-- the test build's fault injector (spec/helpers/faults.c)
local has, faults = pcall(require, "uring.faults")
faults = has and faults.alloc or function() return 0, false end

local function memerr(e)
  return tostring(e):find("not enough memory", 1, true) ~= nil
    or tostring(e):find("Cannot allocate memory", 1, true) ~= nil
end

-- The first of several outcomes to raise: a memory error wins over what
-- may be only its consequence (a peer whose task died sees "closed").
local function settle(...)
  local errs = table.pack(...)
  for k = 1, errs.n do
    if errs[k] ~= nil and memerr(errs[k]) then error(errs[k], 0) end
  end
  for k = 1, errs.n do
    if errs[k] ~= nil then error(errs[k], 0) end
  end
end

-- pcall's error, or nil
local function try(fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then return err end
end

-- a task's error, or nil; waits for it
local function join(t)
  local ok, err = t:join()
  if not ok and err ~= "canceled" then return err end
end

-- A task whose failure must not leave its peer waiting: a task that runs
-- out of memory before its first line (its first call frame) can close
-- nothing, so a second task watches it and runs on_fail.  (One
-- allocation fails per run: they cannot both die.)
local function watched(on_fail, fn, ...)
  local t = uring.spawn(fn, ...)
  uring.spawn(function()
    if not t:join() then on_fail() end
  end)
  return t
end

local function files()
  local path = dir .. "/f.txt"
  assert(uring.writefile(path, "one\ntwo\nthree\n"))
  do
    local f <close> = assert(uring.open(path, "r"))
    local n = 0
    for _ in f:lines() do n = n + 1 end
    assert(n == 3, "lines")
    assert(f:seek("set", 4) == 4, "seek")
    assert(f:read(3) == "two", "read")
    assert(f:pread(3, 4) == "two", "pread")
    assert(f:stat().size == 14, "stat")
  end
  do
    local g <close> = assert(uring.open(path, "a"))
    assert(g:write("four\n", 5, "\n"))
  end
  assert(uring.readfile(path) == "one\ntwo\nthree\nfour\n5\n", "readfile")
  assert(uring.stat(path).size == 21, "uring.stat")
  assert(uring.copyfile(path, path .. ".2"))
  assert(uring.unlink(path))
  assert(uring.mkdir(dir .. "/d"))
  assert(uring.rename(path .. ".2", dir .. "/d/g"))
  assert(uring.unlink(dir .. "/d/g"))
  assert(uring.rmdir(dir .. "/d"))
end

local function sockets()
  local srv <close> = assert(uring.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local echo = watched(function() srv:close() end, function()
    local c <close> = assert(srv:accept())
    local line = assert(c:receive("*l"))
    assert(c:send(line:upper() .. "\n"))
  end)
  local err = try(function()
    local c <close> = assert(uring.connect("127.0.0.1", port))
    c:settimeout(5)
    assert(c:send("hello\n"))
    assert(c:receive("*l") == "HELLO", "echo")
  end)
  srv:close()                   -- an accept still waiting ends
  settle(join(echo), err)
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
  local stdin_open = true
  local errs = {}
  errs[1] = try(function()
    assert(p.stdin:write("x\n"))
    stdin_open = false
    p.stdin:close()
    assert(p.stdout:read("a") == "x\n", "exec read")
  end)
  -- whatever happened, the child ends and is waited for; what the
  -- clean-up raises counts too
  if errs[1] then errs[#errs + 1] = try(p.kill, p, "KILL") end
  if stdin_open then errs[#errs + 1] = try(p.stdin.close, p.stdin) end
  errs[#errs + 1] = try(p.stdout.close, p.stdout)
  local ok, how, code = p:wait()
  if not ok and #errs == 0 then errs[1] = ("exec wait: %s %s"):format(how, code) end
  settle(table.unpack(errs))
end

local function timers()
  uring.sleep(0.001)
  assert(uring.timeout(0.001, uring.sleep, 5) == nil, "timeout")
  local t = uring.spawn(uring.sleep, 5)
  uring.yield()
  t:cancel()
  settle(join(t))
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
  local handler_err
  local srv <close> = assert(uring.http.server{
    port = 0, idle_timeout = 5,
    handler = function(req) return 200, "hi " .. req.path end,
    on_error = function(e) handler_err = handler_err or e end,
  })
  local serving = watched(function() srv:close() end, srv.serve, srv)
  local err = try(function()
    local res = assert(uring.http.request("http://127.0.0.1:" .. srv:port() .. "/x",
      { timeout = 5 }))
    assert(res.status == 200 and res.body == "hi /x", "http response")
  end)
  srv:close()
  -- a connection task's own error is raised by uring.run (nobody joins it)
  settle(join(serving), handler_err, err)
end

-- tasks working together: a bounded queue, a semaphore, a group, an
-- event and a select
local function together()
  local q = uring.queue(2)
  local prod = watched(function() q:close() end, function()
    for i = 1, 5 do q:put(i) end
    q:close()
  end)
  local sum = 0
  local err = try(function()
    while true do
      local v = q:get()
      if v == nil then break end
      sum = sum + v
    end
  end)
  if err then q:close() end     -- the producer must not wait for nobody
  settle(join(prod), err)
  assert(sum == 15, "queue sum")
  local s = uring.semaphore(1)
  local r = uring.group(function(g)
    for _ = 1, 3 do g:spawn(function() s:with(uring.sleep, 0.001) end) end
    return "grouped"
  end)
  assert(r == "grouped" and s:available() == 1, "group")
  local e = uring.event()
  local w = uring.spawn(function() return e:wait() end)
  uring.yield()
  e:set()
  assert(uring.select(w) == 1, "select")
  settle(join(w))
end

-- A memory error is raised; any other failure is returned, not raised:
-- it may be the consequence of a memory error in a task nobody joins (an
-- HTTP connection's), which uring.run raises once main has returned.
-- A wait that outlives the whole workload's normal time.  First collect
-- garbage, as a program short of memory would: a task that died of the
-- memory error as it started (its first call frame could not be made)
-- never ran the code that closes what it was given, and only __gc closes
-- it (an accepted socket: the client waits for it).  If that does not
-- end the wait, name what every task waits on, then cancel them all so
-- the checks still run.
local COLLECT, STALL = 1.5, 4
local function stall_watch()
  uring.sleep(COLLECT)
  io.write(("@@oom collected garbage after %g s\n"):format(COLLECT))
  io.flush()
  collectgarbage()
  collectgarbage()
  uring.sleep(STALL - COLLECT)
  local list = {}
  for _, t in ipairs(uring.tasks()) do
    if t ~= uring.current() then
      list[#list + 1] = ("task %d %s"):format(t:id(), t:waiting_on() or t:status())
    end
  end
  io.write(("@@oom stalled after %d s: %s\n"):format(STALL, table.concat(list, ", ")))
  io.flush()
  for _, t in ipairs(uring.tasks()) do
    if t ~= uring.current() then t:cancel() end
  end
end

local function main()
  local watch = uring.spawn(stall_watch)
  local _ <close> = setmetatable({}, { __close = function() watch:cancel() end })
  local tasks = {
    uring.spawn(files), uring.spawn(sockets), uring.spawn(processes),
    uring.spawn(timers), uring.spawn(ring), uring.spawn(together),
  }
  local errs = { try(http) }
  for k, t in ipairs(tasks) do errs[k + 1] = join(t) end
  local ok, err = pcall(settle, table.unpack(errs, 1, #tasks + 1))
  if not ok and memerr(err) then error(err, 0) end
  return err
end

-- warm up: the loop's ring, and whatever the loop makes once and keeps
uring.run(main)
collectgarbage(); collectgarbage()
local fds0 = oom.fds()

oom.arm()
faults(oom.core_fail_at)
local ok, err = pcall(uring.run, main)
if ok and err ~= nil then ok = false end  -- main's complaint
local ncore, cfailed = faults()
local nlua, lfailed = oom.disarm()

-- closes that wait for their last completion finish in a later run
collectgarbage(); collectgarbage()
uring.run(function() end)
collectgarbage(); collectgarbage()
-- a process collected before it ended (its task died before it could
-- wait) is reaped by a request of its own once it exits: give it 1 s
for _ = 1, 100 do
  if uring.stats().inflight == 0 then break end
  uring.run(uring.sleep, 0.01)
end

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
