--- examples/tour_sqpoll.lua: tour step 6 — SQPOLL: submitting without system calls.
--
--   lua5.4 examples/tour_sqpoll.lua
--
-- With IORING_SETUP_SQPOLL the kernel starts a thread (iou-sqp-PID, one of
-- this process's threads) that polls the SQ: user space writes SQEs and
-- bumps the tail, and the poller picks them up, so submit() makes no
-- io_uring_enter while the poller is awake.  Completions are read from
-- the CQ in shared memory (peek_cqe), also without a system call.  After
-- sq_thread_idle ms without work the poller sleeps and sets
-- IORING_SQ_NEED_WAKEUP; the next submit then costs one io_uring_enter
-- (IORING_ENTER_SQ_WAKEUP) to wake it.
--
-- The price: a CPU core spinning in the kernel while the poller is awake,
-- even when there is nothing to do.  The script reads that thread's CPU
-- time from /proc/self/task/*/stat.
--
-- To count system calls exactly it re-runs itself under
--   strace -o FILE -e trace=io_uring_enter,write
-- and counts the io_uring_enter calls between the phase markers it prints.
-- Phases: wake (first submit: the poller starts asleep), burst (N NOPs
-- with a busy peek_cqe loop), idle (the process sleeps, the poller spins),
-- asleep (after sq_thread_idle the poller sleeps: 0 CPU), rewake (a
-- submit now needs one enter).  A plain ring does the same burst for
-- contrast.
-- Exits non-zero if the burst made any io_uring_enter (where SQPOLL is
-- allowed; without strace or SQPOLL it says so and exits 0).
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local N, ENTRIES, IDLE_MS = 20000, 64, 400

-- CPU seconds of this process's SQPOLL thread (utime + stime)
local TICK = 100   -- USER_HZ
local function poller_cpu()
  local p = io.popen("grep -l '^iou-sqp' /proc/" .. (io.open("/proc/self/stat"):read("n") or "self") .. "/task/*/comm 2>/dev/null")
  local total, found = 0, false
  for comm in p:lines() do
    local f = io.open((comm:gsub("comm$", "stat")))
    if f then
      local s = f:read("a"); f:close()
      local rest = s:match("%) (.*)$")
      local fields = {}
      for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
      -- fields after "(comm) ": state is 1st, utime 12th, stime 13th
      total = total + (tonumber(fields[12]) + tonumber(fields[13])) / TICK
      found = true
    end
  end
  p:close()
  return found and total or nil
end

local function burst(ring)
  local done, sub = 0, 0
  while done < N do
    local k = math.min(ring:sq_space_left(), N - sub)
    for i = 1, k do ring:prep_nop(i) end
    sub = sub + k
    if k > 0 then ring:submit() end
    while ring:peek_cqe() do done = done + 1 end
  end
end

local function marker(name)
  io.write("== phase ", name, "\n"); io.flush()
end

local function sleep(s)                 -- no io_uring_enter in this process
  os.execute("sleep " .. s)
end

local function child()
  local ring, err = uring.ring{entries = ENTRIES, sqpoll = true, sq_thread_idle = IDLE_MS}
  if not ring then
    print("SQPOLL refused: " .. tostring(err))
    os.exit(3)
  end
  local cpu = { poller_cpu() }
  local wall, clk = { uring.now() }, { os.clock() }
  local function mark(name)
    marker(name)
    cpu[#cpu + 1], wall[#wall + 1], clk[#clk + 1] = poller_cpu(), uring.now(), os.clock()
  end
  local function nop()
    ring:prep_nop(0); ring:submit()
    while not ring:peek_cqe() do end
  end
  marker("wake")
  nop()
  -- the measurement forks a grep: on a loaded machine that can outlast
  -- the poller's idle window, and the burst's first submit would then
  -- need an enter to wake it.  So measure, make sure the poller is awake
  -- (its enter, if any, counts for "wake"), and only then start the burst.
  cpu[#cpu + 1], wall[#wall + 1], clk[#clk + 1] = poller_cpu(), uring.now(), os.clock()
  nop()
  marker("burst")
  burst(ring)
  mark("idle")
  sleep(IDLE_MS / 2000)                          -- half the idle window
  mark("asleep")
  sleep(IDLE_MS / 1000 + 0.6)                    -- past the idle window
  mark("rewake")
  ring:prep_nop(0); ring:submit()
  while not ring:peek_cqe() do end
  mark("end")
  ring:close()
  local plain = assert(uring.ring{entries = ENTRIES})
  marker("plain")
  local t0 = uring.now()
  burst(plain)
  local tp = uring.now() - t0
  marker("plainend")
  plain:close()
  local names = { "wake", "burst", "idle", "asleep", "rewake" }
  for i = 2, #names do
    local dc = cpu[i + 1] and cpu[i] and (cpu[i + 1] - cpu[i])
    print(("cpu %-7s wall %7.1f ms  poller thread CPU %7.1f ms  process CPU %7.1f ms")
      :format(names[i], (wall[i + 1] - wall[i]) * 1e3, dc and dc * 1e3 or -1,
        (clk[i + 1] - clk[i]) * 1e3))
  end
  print(("plain ring burst: wall %.1f ms (under strace, which stops the process at each of its enters)"):format(tp * 1e3))
end

if arg[1] == "--child" then child() os.exit(0, true) end

-- parent: run the child under strace and count enters per phase
local has_strace = os.execute("command -v strace >/dev/null 2>&1")
local trace = os.tmpname()
local lua = arg[-1] or "lua5.4"
local cmd = has_strace
  and ("strace -qq -o %s -e trace=io_uring_enter,write %s %s --child"):format(trace, lua, arg[0])
  or ("%s %s --child"):format(lua, arg[0])
local p = io.popen(cmd)
local out = p:read("a")
local _, _, code = p:close()
if code == 3 or out:match("SQPOLL refused") then
  io.write(out)
  print("SQPOLL is not allowed here: nothing to measure (exit 0)")
  os.exit(0)
end
assert(code == 0, "child failed: " .. tostring(code) .. "\n" .. out)

local rows = {}
for line in out:gmatch("[^\n]+") do
  if line:match("^cpu ") or line:match("^plain ring") then rows[#rows + 1] = line end
end

if not has_strace then
  print(table.concat(rows, "\n"))
  print("strace not found: io_uring_enter calls not counted (exit 0)")
  os.exit(0)
end

local enters, phase, order = {}, nil, {}
for line in io.lines(trace) do
  local m = line:match('^write%(1, "== phase (%a+)')
  if m then phase = m; enters[m] = 0; order[#order + 1] = m
  elseif phase and line:match("^io_uring_enter%(") then
    enters[phase] = enters[phase] + 1
  end
end
os.remove(trace)

print(("SQPOLL ring, %d entries, sq_thread_idle %d ms; %d NOPs per burst\n")
  :format(ENTRIES, IDLE_MS, N))
local what = {
  wake = "first submit: the poller starts asleep (and a NOP to be sure it is awake)",
  burst = N .. " NOPs submitted and reaped (busy peek_cqe)",
  idle = "process sleeps " .. IDLE_MS // 2 .. " ms; the poller spins",
  asleep = "sleeps past sq_thread_idle: the poller sleeps",
  rewake = "one NOP: NEED_WAKEUP costs one enter",
  plain = "plain ring (no SQPOLL), same " .. N .. " NOPs",
}
print(("%-7s %7s  %s"):format("phase", "enters", "what"))
for _, k in ipairs(order) do
  if what[k] then print(("%-7s %7d  %s"):format(k, enters[k], what[k])) end
end
print()
print(table.concat(rows, "\n"))
print(("\nenters during burst: %d"):format(enters.burst or -1))
local ok = enters.burst == 0 and (enters.plain or 0) > 0
if not ok then
  io.stderr:write("tour_sqpoll: expected 0 io_uring_enter during the SQPOLL burst\n")
end
os.exit(ok and 0 or 1, true)
