--- spec/oom/run.lua: the out-of-memory sweep (make oom; make test samples it).
--
--   lua5.4 spec/oom/run.lua [--host PATH] [--sample K] [--seed S]
--                           [--timeout SECS] [--jobs J] [--keep DIR]
--
-- Runs spec/oom/workload.lua under PATH (default build-asan/oomhost: the
-- ASan+UBSan host, whose core fails its own allocations on request) once
-- per failure point, each in its own process under a watchdog (--timeout,
-- 8 s; the workload itself names what waits after 4 s).  A point is "the
-- Nth allocation of the Lua state fails" (N = 1 .. the count a clean run
-- makes, and a few past it) or "the Nth allocation of the core fails",
-- under each ring setup (the default ring, and a 4-entry one whose full SQ
-- is flushed often).  --sample K runs K of them, drawn with seed S.
--
-- A point passes when the run raised "not enough memory" (in a task or
-- from uring.run), or an op returned the ENOMEM fail tuple, or the failure
-- was absorbed (a degraded path that needed no memory), or no failure was
-- reached; and it exited by itself, with no sanitizer report (ASan,
-- UBSan, LeakSanitizer at exit), no warning
-- (an error in a __gc), the fds it started with, nothing in flight, no
-- task alive and no task stalled.  Anything else is a finding, printed
-- with the core functions that asked for the memory and the command that
-- repeats it.
--
-- Prints "oom: P points, M raised a memory error, ..." and exits 1 on a
-- finding.
local host, sample, seed, watchdog, jobs, keep =
  "build-asan/oomhost", nil, nil, 8, 1, "/tmp"
local i = 1
while i <= #arg do
  local a, v = arg[i], arg[i + 1]
  if a == "--host" then host = v
  elseif a == "--sample" then sample = assert(math.tointeger(tonumber(v)), "--sample K")
  elseif a == "--seed" then seed = assert(math.tointeger(tonumber(v)), "--seed S")
  elseif a == "--timeout" then watchdog = assert(tonumber(v), "--timeout SECS")
  elseif a == "--jobs" then jobs = assert(math.tointeger(tonumber(v)), "--jobs J")
  elseif a == "--keep" then keep = v
  else
    io.stderr:write("usage: lua5.4 spec/oom/run.lua [--host PATH] [--sample K] [--seed S] ",
      "[--timeout SECS] [--jobs J] [--keep DIR]\n")
    os.exit(2)
  end
  i = i + 2
end
seed = seed or os.time()

local SETUPS = {
  { name = "default", env = "" },
  { name = "ring4", env = "URING_TEST_RING=4 " },
}

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local uring = require "uring"

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

-- the sanitizer runtime is linked into the asan host; its options:
-- URING_OOM_STACK=1: the host and the core print where the failed
-- allocation was asked for (symbolized by ASan), which names the function;
-- LeakSanitizer checks at exit that the core freed what it allocated
local SAN = "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 "
  .. "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 URING_OOM_STACK=1 "
local work = sh("mktemp -d /tmp/uring-oom.XXXXXX")

local function command(setup, kind, n, scratch)
  local flag = kind == "lua" and "--fail-at" or "--core-fail-at"
  return ("env %s%sURING_OOM_DIR='%s' %s %s %d spec/oom/workload.lua"):format(
    SAN, setup.env, scratch, host, flag, n)
end

-- run one point; returns its record {out =, code =, how =}
local function run_point(setup, kind, n, slot)
  local scratch = ("%s/%d"):format(work, slot)
  local cmd = ("rm -rf '%s' && mkdir -p '%s' && exec timeout -k 2 %d %s 2>&1"):format(
    scratch, scratch, watchdog, command(setup, kind, n, scratch))
  local p = assert(uring.exec{ "sh", "-c", cmd, stdout = "pipe", stdin = "null" })
  local out = p.stdout:read("a") or ""
  p.stdout:close()
  local ok, how, code = p:wait()
  return { out = out, how = ok and "exit" or how, code = ok and 0 or code }
end

-- where the failed allocation was asked for: the core's frames, innermost
-- first ("newfile fs.c:86 < l_fdopen fs.c:1469 < ..."), up to the loop;
-- none: Lua code running in a task asked for it
local function where(out)
  local stack = out:match("@@oom failed [^\n]*\n(.-)\n\n") or out:match("@@oom failed [^\n]*\n(.*)") or ""
  local chain = {}
  for fn, file in stack:gmatch(" in ([%w_]+) csrc/([%w_]+%.c:%d+)") do
    if fn == "resume_task" or fn == "loop_turn" or fn == "l_run" then break end
    chain[#chain + 1] = fn .. " " .. file
  end
  if #chain > 0 then return table.concat(chain, " < ") end
  if stack:match(" in resume_task csrc/") then return "Lua code in a task" end
  return stack:match(" in (lua[L]?_[%w_]+)") or "?"
end

-- the output without the stack of the failed allocation
local function strip(out)
  return (out:gsub("@@oom failed [^\n]*\n.-\n\n", ""))
end

local function tail(s, n)
  local lines = {}
  for l in s:gmatch("[^\n]*") do lines[#lines + 1] = l end
  return table.concat(lines, "\n", math.max(1, #lines - n))
end

local counts = {
  points = 0, memerr = 0, enomem = 0, absorbed = 0, clean = 0, other = 0,
  hang = 0, stall = 0, gc = 0, crash = 0, sanitizer = 0, warning = 0, leak = 0,
  inflight = 0, tasks = 0,
}
local findings, quiet = {}, {}

local function judge(setup, kind, n, r)
  local out = r.out
  local line = out:match("@@oom outcome=[^\n]*")
  local what = {}     -- findings
  local after = {}    -- what a leaked fd explains: its peer waits (a stall),
                      -- its child lives on (its wait is left in flight)
  counts.points = counts.points + 1
  if r.how == "exit" and (r.code == 124 or r.code == 137) then
    counts.hang = counts.hang + 1
    what[#what + 1] = ("hang: still running after %d s"):format(watchdog)
  elseif out:match("ERROR: AddressSanitizer") or out:match("runtime error:")
      or out:match("ERROR: LeakSanitizer") then
    counts.sanitizer = counts.sanitizer + 1
    what[#what + 1] = "sanitizer report"
  elseif r.how ~= "exit" or not line or out:match("@@oom PANIC") then
    counts.crash = counts.crash + 1
    what[#what + 1] = ("crash (%s %s)"):format(r.how, tostring(r.code))
  end
  if out:match("@@oom collected garbage") and not out:match("@@oom stalled") then
    counts.gc = counts.gc + 1   -- ended once garbage was collected
  end
  if out:match("@@oom stalled") then
    after[#after + 1] = { "stall", out:match("@@oom (stalled[^\n]*)") }
  end
  if out:match("@@oom warning") then
    counts.warning = counts.warning + 1
    what[#what + 1] = "warning: " .. out:match("@@oom warning: ([^\n]*)")
  end
  if line then
    local outcome = line:match("outcome=(%S+)")
    local err = line:match("err=(.*)")
    if outcome == "other" and err == "canceled" and out:match("@@oom stalled") then
      -- the stall watch cancelled it: counted with the stall
      after[#after + 1] = { "other", "canceled by the stall watch" }
    else
      counts[outcome] = counts[outcome] + 1
      if outcome == "other" then what[#what + 1] = "other error: " .. err end
    end
    if outcome == "absorbed" or outcome == "enomem" then
      -- not findings, but say where: a degraded path, or a fail tuple
      local w = outcome .. " in " .. where(out)
      quiet[w] = quiet[w] or {}
      table.insert(quiet[w], ("%s %s %d"):format(setup.name, kind, n))
    end
    local infl, tasks = tonumber(line:match("inflight=(%d+)")), tonumber(line:match("tasks=(%d+)"))
    if infl and infl > 0 then after[#after + 1] = { "inflight", "inflight=" .. infl } end
    if tasks and tasks > 0 then counts.tasks = counts.tasks + 1; what[#what + 1] = "tasks=" .. tasks end
    local leak = line:match("fds=leak:(%S+)")
    if leak then
      counts.leak = counts.leak + 1
      what[#what + 1] = ("fd leak %s (raised in %s)"):format(leak, where(out))
    end
  end
  for _, a in ipairs(after) do
    counts[a[1]] = counts[a[1]] + 1
    what[#what + 1] = a[2]
  end
  if #what > 0 then
    local kept = ("%s/uring-oom-%s-%s-%d.log"):format(keep, setup.name, kind, n)
    local f = io.open(kept, "w")
    if f then f:write(command(setup, kind, n, "DIR"), "\n", out); f:close() end
    findings[#findings + 1] = ("FINDING %s %s fail-at %d: %s\n  failed allocation in: %s\n"
      .. "  log: %s\n  again: mkdir -p /tmp/d && %s\n%s\n"):format(
      setup.name, kind, n, table.concat(what, "; "), where(out), kept,
      command(setup, kind, n, "/tmp/d"), tail(strip(out), 12))
    io.write(findings[#findings])
    io.flush()
  end
end

local t0
uring.run(function()
  t0 = uring.now()
  -- calibrate: a clean run per setup counts the allocations to sweep
  local points = {}
  for _, setup in ipairs(SETUPS) do
    local r = run_point(setup, "lua", 0, 0)
    local line = r.out:match("@@oom outcome=clean[^\n]*")
    if not line then
      io.write("oom: the clean run failed under ", setup.name, ":\n", r.out, "\n")
      os.exit(1)
    end
    local nlua = tonumber(line:match("lua=(%d+)"))
    local ncore = tonumber(line:match("core=(%d+)"))
    io.write(("oom: %s: %d Lua allocations, %d core allocations in a clean run\n"):format(
      setup.name, nlua, ncore))
    -- a few past the end: runs vary a little (thread timing, CQE order)
    for n = 1, nlua + math.max(3, nlua // 20) do points[#points + 1] = { setup, "lua", n } end
    for n = 1, ncore + math.max(3, ncore // 20) do points[#points + 1] = { setup, "core", n } end
  end
  if sample and sample < #points then
    math.randomseed(seed)
    for k = #points, 2, -1 do
      local j = math.random(k)
      points[k], points[j] = points[j], points[k]
    end
    for k = #points, sample + 1, -1 do points[k] = nil end
    io.write(("oom: %d points sampled with seed %d\n"):format(sample, seed))
  end
  io.flush()
  -- J workers take points in turn
  local next_point = 1
  local workers = {}
  for w = 1, jobs do
    workers[w] = uring.spawn(function()
      while next_point <= #points do
        local pt = points[next_point]
        next_point = next_point + 1
        judge(pt[1], pt[2], pt[3], run_point(pt[1], pt[2], pt[3], w))
      end
    end)
  end
  for _, w in ipairs(workers) do assert(w:join()) end
end)
os.execute("rm -rf '" .. work .. "'")

local qs = {}
for w, pts in pairs(quiet) do
  qs[#qs + 1] = ("%s (%d: %s%s)"):format(w, #pts, table.concat(pts, ", ", 1, math.min(3, #pts)),
    #pts > 3 and ", ..." or "")
end
table.sort(qs)
for _, q in ipairs(qs) do io.write("passed, ", q, "\n") end
local c = counts
local bad = #findings
io.write(("oom: %d points, %d raised a memory error, %d ENOMEM fail tuples, %d absorbed, "
  .. "%d not reached (%d went on only after a GC); %d other errors, %d hangs, %d stalls, "
  .. "%d fd leaks, %d left in flight, "
  .. "%d left tasks, %d warnings, %d sanitizer reports, %d crashes; %.0f s%s\n"):format(
  c.points, c.memerr, c.enomem, c.absorbed, c.clean, c.gc, c.other, c.hang, c.stall, c.leak,
  c.inflight, c.tasks, c.warning, c.sanitizer, c.crash, uring.now() - t0,
  sample and (", seed " .. seed) or ""))
os.exit(bad == 0 and 0 or 1)
