--- uring.workers(n, fn): n processes, each with its own ring, running fn.
-- The fork and the supervision are C (csrc/workers.c); here each child
-- runs fn as the main task of its own uring.run and turns INT/TERM into
-- "cancel every task", so <close> variables run and the child exits 0.
return function(uring, core)
  local fork, wait, stop = core._workers_fork, core._workers_wait, core._workers_stop

  -- a child: fn(i, pid) as the main task; INT/TERM (blocked since the
  -- fork, so none is lost) stop it cleanly
  local function child(fn, i, pid)
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
      fn(i, pid)
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

  function uring.workers(n, fn)
    if math.type(n) ~= "integer" or n < 1 or n > 1024 then
      error("bad argument #1 to 'workers' (n must be an integer in 1..1024)", 2)
    end
    if type(fn) ~= "function" then
      error("bad argument #2 to 'workers' (function expected, got "
        .. type(fn) .. ")", 2)
    end
    local i, pids, en = fork(n)
    if i == nil then return nil, pids, en end
    if i > 0 then child(fn, i, pids) end      -- never returns
    local statuses, sig = wait(pids)
    local ok = true
    for _, s in ipairs(statuses) do
      if s.how ~= "exit" or s.code ~= 0 then ok = false end
    end
    statuses.signal = sig
    return ok, statuses
  end
end
