--- uring.workers(n, fn): n processes, each with its own ring, running fn.
-- The fork and the supervision are C (csrc/workers.c); here each child
-- runs fn as the main task of its own uring.run and turns INT/TERM into
-- "cancel every task", so <close> variables run and the child exits 0.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

local fork, wait, stop = core._workers_fork, core._workers_wait, core._workers_stop
local chan_open = core._chan_open

local M = {}

-- a child: fn(i, pid, ch) as the main task, ch its channel to the
-- others (csrc/msg_ring.c); INT/TERM (blocked since the fork, so none is
-- lost) stop it cleanly
local function child(fn, i, pid, n)
  local stopped = false
  local ok, err = pcall(uring.run, function()
    local watchers = {}
    for _, name in ipairs{"INT", "TERM"} do
      local sig = assert(uring.signal(name))
      watchers[#watchers + 1] = uring.spawn(function()
        local s <close> = sig
        if s:wait() then
          stopped = true
          stop()                  -- every task is cancelled, main too
        end
      end)
    end
    local ch <close> = chan_open(i, n)
    fn(i, pid, ch)
    for _, w in ipairs(watchers) do w:cancel() end
  end)
  if not ok and not stopped then
    io.stderr:write("uring.workers: worker ", i, " (pid ", pid, "): ",
      tostring(err), "\n")
    io.stderr:flush()
    os.exit(1, true)
  end
  os.exit(0, true)
end

function M.workers(n, fn)
  if math.type(n) ~= "integer" or n < 1 or n > 1024 then
    check.argerror(1, "workers", "n must be an integer in 1..1024")
  end
  if not check.callable(fn) then check.typeerror(2, "workers", "function", fn) end
  -- the C fork's own checks, made here so they name the caller's line
  local st = uring.stats()
  if uring.current() then
    check.error("workers: call it outside uring.run (each worker runs its own loop)")
  elseif st.tasks > 0 or st.inflight > 0 then
    check.error(("workers: %d task(s) still pending; the loop must be idle to fork")
      :format(st.tasks))
  end
  local i, pids, en = fork(n)
  if i == nil then return nil, pids, en end
  if i > 0 then child(fn, i, pids, n) end   -- never returns
  local statuses, sig = wait(pids)
  local ok = true
  for _, s in ipairs(statuses) do
    if s.how ~= "exit" or s.code ~= 0 then ok = false end
  end
  statuses.signal = sig
  return ok, statuses
end

return M
