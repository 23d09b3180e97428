-- Tasks and time: run, spawn, join, cancel, status, sleep, yield, nop,
-- timeout, now, configure; and the errors each raises.
local uring = require "uring"
local helpers = require "helpers"

describe("tasks #io", function()
  uring.features()   -- the ring's own fd exists before the first count
  local fds
  before_each(function() fds = helpers.fds() end)
  after_each(function()
    assert.equal(0, uring.stats().inflight)
    assert.equal(0, uring.stats().tasks)
    assert.equal(fds, helpers.fds())
  end)

  describe("uring.run", function()
    it("returns the main function's results", function()
      local a, b, c = uring.run(function(x, y) return x + y, nil, "z" end, 1, 2)
      assert.equal(3, a); assert.is_nil(b); assert.equal("z", c)
    end)

    it("waits for every task before returning", function()
      local done = {}
      uring.run(function()
        for i = 1, 10 do
          uring.spawn(function() uring.sleep(0.001 * i); done[#done + 1] = i end)
        end
      end)
      assert.equal(10, #done)
    end)

    it("raises the main task's error with its traceback", function()
      local ok, err = pcall(uring.run, function() error("boom") end)
      assert.is_false(ok)
      assert.matches("boom", err)
      assert.matches("stack traceback", err)
    end)

    it("raises the error of a task nobody joined", function()
      local ok, err = pcall(uring.run, function()
        uring.spawn(function() uring.nop(); error("child failed") end)
      end)
      assert.is_false(ok)
      assert.matches("child failed", err)
    end)

    it("does not raise an error that a join saw", function()
      local ok, msg = uring.run(function()
        local t = uring.spawn(function() error("seen", 0) end)
        uring.sleep(0.01)
        return t:join()
      end)
      assert.is_false(ok); assert.equal("seen", msg)
    end)

    it("keeps a non-string error object", function()
      local e = {}
      local ok, err = pcall(uring.run, function() error(e) end)
      assert.is_false(ok); assert.equal(e, err)
      local ok2, err2 = pcall(uring.run, function() error(nil) end)
      assert.is_false(ok2); assert.matches("nil", tostring(err2))
    end)

    it("cancels the other tasks when the main task fails", function()
      local child
      local ok = pcall(uring.run, function()
        child = uring.spawn(function() uring.sleep(30) end)
        uring.sleep(0.01)
        error("main failed")
      end)
      assert.is_false(ok)
      assert.equal("canceled", child:status())
    end)

    it("reports a deadlock instead of hanging", function()
      local ok, err = pcall(uring.run, function()
        local me = uring.current()
        local t = uring.spawn(function() me:join() end)
        t:join()
      end)
      assert.is_false(ok)
      assert.matches("deadlock", err)
    end)

    it("raises on a bad argument and inside a running loop", function()
      assert.has_error(function() uring.run(42) end,
        "bad argument #1 to 'run' (function expected, got number)")
      local ok, err = pcall(uring.run, function() uring.run(function() end) end)
      assert.is_false(ok); assert.matches("already running", err)
    end)
  end)

  describe("spawn and join", function()
    it("returns true and the results", function()
      local r = { uring.run(function()
        local t = uring.spawn(function(a, b) uring.yield(); return a, b end, "x", 2)
        return t:join()
      end) }
      assert.same({ true, "x", 2 }, r)
    end)

    it("joins a task that already ended, many times", function()
      uring.run(function()
        local t = uring.spawn(function() return 7 end)
        uring.yield(); uring.yield()
        assert.equal("done", t:status())
        assert.same({ true, 7 }, { t:join() })
        assert.same({ true, 7 }, { t:join() })
      end)
    end)

    it("lets many tasks join one", function()
      local n = uring.run(function()
        local t = uring.spawn(function() uring.sleep(0.01); return 5 end)
        local sum = 0
        local js = {}
        for i = 1, 20 do
          js[i] = uring.spawn(function() local _, v = t:join(); sum = sum + v end)
        end
        for i = 1, 20 do js[i]:join() end
        return sum
      end)
      assert.equal(100, n)
    end)

    it("refuses to join itself and bad arguments", function()
      local ok, err = pcall(uring.run, function() uring.current():join() end)
      assert.is_false(ok); assert.matches("cannot join itself", err)
      assert.has_error(function() uring.spawn("x") end,
        "bad argument #1 to 'spawn' (function expected, got string)")
      local t = uring.run(function() return uring.spawn(function() end) end)
      assert.has_error(function() t.join(nil) end)
      assert.has_error(function() t.join({}) end)
    end)

    it("runs 10,000 tasks", function()
      local count = uring.run(function()
        local c, ts = 0, {}
        for i = 1, 10000 do ts[i] = uring.spawn(function() uring.nop(); c = c + 1 end) end
        for i = 1, 10000 do ts[i]:join() end
        return c
      end)
      assert.equal(10000, count)
    end)
  end)

  describe("coroutines of ended tasks, reused", function()
    it("runs a new task in the coroutine of one that returned, clean", function()
      local same, results = uring.run(function()
        local t1 = uring.spawn(function() uring.nop(); return coroutine.running() end)
        local _, co1 = t1:join()
        -- pooled: it looks like any coroutine that ended
        assert.equal("dead", coroutine.status(co1))
        local closed = {}
        local t2 = uring.spawn(function(a)
          local _ <close> = setmetatable({}, { __close = function() closed[#closed + 1] = a end })
          assert.is_nil(debug.getinfo(3))       -- nothing left of t1's frames
          uring.sleep(0.001)
          return coroutine.running(), uring.current(), a
        end, "x")
        local r = { t2:join() }
        assert.same({ "x" }, closed)
        assert.equal(t2, r[3])
        return rawequal(r[2], co1), r[4]
      end)
      assert.is_true(same)
      assert.equal("x", results)
    end)

    it("cancels a task in a reused coroutine, its <close> variables closed", function()
      local st, closed = uring.run(function()
        -- (a task that returns nothing joins as true alone, before and after it ended)
        local none = uring.spawn(function() end)
        assert.same({ true }, { none:join() })
        assert.same({ true }, { none:join() })
        assert.same({ true }, { uring.spawn(function() return nil end):join() })
        local closed = false
        local t = uring.spawn(function()
          local _ <close> = setmetatable({}, { __close = function() closed = true end })
          uring.sleep(60)
        end)
        uring.yield()
        t:cancel()
        assert.same({ false, "canceled" }, { t:join() })
        -- and the pool still hands out working coroutines
        assert.same({ true, 3 }, { uring.spawn(function(a, b) uring.nop(); return a + b end, 1, 2):join() })
        return t:status(), closed
      end)
      assert.equal("canceled", st)
      assert.is_true(closed)
    end)

    it("does not reuse the coroutine of a task that failed, was cancelled or set a hook", function()
      uring.run(function()
        local cos = {}
        local failed = uring.spawn(function() cos.failed = coroutine.running(); error("x", 0) end)
        assert.same({ false, "x" }, { failed:join() })
        local canceled = uring.spawn(function() cos.canceled = coroutine.running(); uring.sleep(60) end)
        uring.yield()
        canceled:cancel()
        canceled:join()
        local hooked = uring.spawn(function()
          cos.hooked = coroutine.running()
          debug.sethook(function() end, "c")
        end)
        assert.is_true((hooked:join()))
        for _ = 1, 100 do
          local _, co, hook = uring.spawn(function()
            return coroutine.running(), debug.gethook()
          end):join()
          assert.is_nil(hook)
          for why, old in pairs(cos) do
            assert.is_false(rawequal(co, old), why)
          end
        end
      end)
    end)
  end)

  describe("status and cancel", function()
    it("walks ready, waiting, done", function()
      uring.run(function()
        local t = uring.spawn(function() uring.sleep(0.01) end)
        assert.equal("ready", t:status())
        uring.yield()
        assert.equal("waiting", t:status())
        assert.equal("sleep", t:waiting_on())
        assert.matches("waiting: sleep", tostring(t))
        t:join()
        assert.equal("done", t:status())
        local f = uring.spawn(function() error("x") end)
        f:join()
        assert.equal("failed", f:status())
      end)
    end)

    it("cancels a sleep in the kernel and raises canceled in the task", function()
      local t0 = uring.now()
      local ok, err, st = uring.run(function()
        local t = uring.spawn(function() uring.sleep(30) end)
        uring.yield()
        assert.is_true(t:cancel())
        local ok, err = t:join()
        return ok, err, t:status()
      end)
      assert.is_false(ok); assert.equal("canceled", err); assert.equal("canceled", st)
      assert.is_true(uring.now() - t0 < 5)
    end)

    it("lets pcall see the cancel and <close> variables close", function()
      local closed, seen = false, nil
      uring.run(function()
        local t = uring.spawn(function()
          local guard <close> = setmetatable({}, { __close = function() closed = true end })
          local ok, e = pcall(uring.sleep, 30)
          seen = e
          uring.sleep(30)     -- still canceled: raises again
        end)
        uring.yield()
        t:cancel()
        t:join()
      end)
      assert.equal("canceled", seen)
      assert.is_true(closed)
    end)

    it("cancels a task before it runs, twice, after it ended, and itself", function()
      uring.run(function()
        local ran = false
        local t = uring.spawn(function() ran = true end)
        assert.is_true(t:cancel())
        assert.is_true(t:cancel())
        assert.same({ false, "canceled" }, { t:join() })
        assert.is_false(ran)
        assert.is_false(t:cancel())
        local s = uring.spawn(function() uring.current():cancel(); return "not reached" end)
        assert.same({ false, "canceled" }, { s:join() })
      end)
    end)

    it("cancels a task waiting in join", function()
      uring.run(function()
        local long = uring.spawn(function() uring.sleep(0.05) end)
        local j = uring.spawn(function() return long:join() end)
        uring.yield()
        j:cancel()
        assert.same({ false, "canceled" }, { j:join() })
        assert.is_true((long:join()))
      end)
    end)
  end)

  describe("sleep, yield, nop, now", function()
    it("sleeps about the time asked", function()
      local dt = uring.run(function()
        local t0 = uring.now(); uring.sleep(0.05); return uring.now() - t0
      end)
      assert.is_true(dt >= 0.045 and dt < 2, "slept " .. dt)
    end)

    it("runs sleepers concurrently", function()
      local dt = uring.run(function()
        local t0, ts = uring.now(), {}
        for i = 1, 50 do ts[i] = uring.spawn(uring.sleep, 0.05) end
        for i = 1, 50 do ts[i]:join() end
        return uring.now() - t0
      end)
      assert.is_true(dt < 1, "50 sleeps took " .. dt)
    end)

    it("interleaves yielding tasks", function()
      local log = {}
      uring.run(function()
        local a = uring.spawn(function() for i = 1, 3 do log[#log + 1] = "a" .. i; uring.yield() end end)
        local b = uring.spawn(function() for i = 1, 3 do log[#log + 1] = "b" .. i; uring.yield() end end)
        a:join(); b:join()
      end)
      assert.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
    end)

    it("counts a nop as one SQE and one CQE", function()
      uring.run(function()
        local s0 = uring.stats()
        assert.is_true(uring.nop())
        local s1 = uring.stats()
        assert.equal(1, s1.sqes - s0.sqes)
        assert.equal(1, s1.cqes - s0.cqes)
      end)
    end)

    it("raises outside a task and on bad arguments", function()
      for _, name in ipairs { "sleep", "yield", "nop" } do
        assert.has_error(function() uring[name](0) end,
          name .. ": not inside a task (use uring.run)")
      end
      assert.has_error(function() uring.run(uring.sleep, -1) end)
      assert.has_error(function() uring.run(uring.sleep, "x") end)
      assert.has_error(function() uring.run(uring.sleep, 0 / 0) end)
      assert.is_number(uring.now())
    end)

    it("refuses to yield inside a plain coroutine or a metamethod", function()
      local ok, err = pcall(uring.run, function()
        local co = coroutine.wrap(function() uring.sleep(0) end)
        co()
      end)
      assert.is_false(ok); assert.matches("not inside a task", err)
      ok, err = pcall(uring.run, function()
        return string.gsub("a", "a", function() uring.sleep(0) end)
      end)
      assert.is_false(ok); assert.matches("cannot wait here", err)
    end)

    it("treats a bare coroutine.yield in a task as uring.yield", function()
      assert.equal(3, uring.run(function() coroutine.yield(); coroutine.yield(1); return 3 end))
    end)

    it("refuses a resume from outside the loop", function()
      local ok, err = pcall(uring.run, function()
        local co
        local t = uring.spawn(function() co = coroutine.running(); uring.sleep(0.02) end)
        uring.yield()
        local rok, rerr = coroutine.resume(co)
        assert.is_false(rok)
        assert.matches("only be resumed by the uring loop", rerr)
        t:join()
      end)
      -- the task died from the foreign resume; nobody crashed
      assert.is_true(ok or err ~= nil)
    end)
  end)

  describe("uring.timeout", function()
    it("returns fn's results when in time", function()
      assert.same({ 1, 2 }, { uring.run(uring.timeout, 1, function() uring.sleep(0.001); return 1, 2 end) })
    end)

    it("returns nil, 'timeout', ETIME and cancels the SQE in flight", function()
      local r = { uring.run(function()
        local t0 = uring.now()
        local a, b, c = uring.timeout(0.02, uring.sleep, 30)
        return a, b, c, uring.now() - t0
      end) }
      assert.is_nil(r[1]); assert.equal("timeout", r[2]); assert.equal(62, r[3])
      assert.is_true(r[4] < 5)
    end)

    it("nests: the outer expiry passes through the inner scope", function()
      local r = { uring.run(function()
        return uring.timeout(0.02, function()
          local x, y = uring.timeout(10, uring.sleep, 30)
          return "inner returned", x, y
        end)
      end) }
      assert.same({ nil, "timeout", 62 }, r)
    end)

    it("an inner expiry is seen by the inner scope only", function()
      local r = { uring.run(function()
        return uring.timeout(10, function()
          local x, y = uring.timeout(0.01, uring.sleep, 30)
          return "outer goes on", x, y
        end)
      end) }
      assert.same({ "outer goes on", nil, "timeout" }, r)
    end)

    it("propagates other errors", function()
      local ok, err = pcall(uring.run, uring.timeout, 1, function() error("inner", 0) end)
      assert.is_false(ok); assert.matches("inner", err)
    end)

    it("raises on bad arguments", function()
      assert.has_error(function() uring.run(uring.timeout, 1, 2) end)
      assert.has_error(function() uring.run(uring.timeout, -1, function() end) end)
      assert.has_error(function() uring.timeout(1, function() end) end)
    end)
  end)

  -- regression #12: out of memory just as a task ended left it never
  -- marked ended (ur_task_finished raised half-way), and uring.run spun at
  -- 100% CPU forever.  Each case fails the first allocation after
  -- oom.arm(), which is the one that keeps the task's results or error.
  describe("regression #12: out of memory while a task ends", function()
    local function oom(body)
      local out, code = helpers.oom('local uring = require "uring"\n' .. body
        .. '\nlocal s = uring.stats()\nprint("left", s.tasks, s.inflight)\n', 1)
      assert.equal(0, code, out)
      assert.matches("left\t0\t0", out)
      return out
    end

    it("a joined task that returned fails with the memory error", function()
      local out = oom([[
        uring.run(function()
          local t = uring.spawn(function() oom.arm(); return 1, 2, 3 end)
          local ok, err = t:join()
          print(ok, err, select(2, oom.disarm()), t:status())
        end)]])
      assert.matches("false\tnot enough memory\ttrue\tfailed", out)
    end)

    it("the main task's results: uring.run raises it, and the loop runs again", function()
      local out = oom([[
        print(pcall(uring.run, function() oom.arm(); return "x" end))
        oom.disarm()
        print(uring.run(function() return "again" end))]])
      assert.matches("false\tnot enough memory\nagain", out)
    end)

    it("a failed task nobody joins: uring.run raises the memory error", function()
      local out = oom([[
        print(pcall(uring.run, function()
          uring.spawn(function() oom.arm(); error("boom", 0) end)
        end))]])
      assert.matches("false\tnot enough memory", out)
    end)

    it("its <close> variables still run", function()
      local out = oom([[
        local closed = false
        uring.run(function()
          local t = uring.spawn(function()
            local x <close> = setmetatable({}, { __close = function() closed = true end })
            oom.arm(); error("boom", 0)
          end)
          print(t:join())
        end)
        print("closed", closed)]])
      assert.matches("false\tnot enough memory\nclosed\ttrue", out)
    end)

    it("uring.run with no memory for its SIGINT request: it runs, without SIGINT handling", function()
      -- the first run's SIGINT poll is the loop's first request, so it
      -- grows the request slab: that failing raised from uring.run with
      -- the run marked running (every later run: "already running"),
      -- SIGINT blocked and the signalfd open
      local out, code = helpers.oom([[
        local uring = require "uring"
        local core = require "uring.core"
        local n = 0
        for _ in pairs(oom.fds()) do n = n + 1 end
        require("uring.faults").alloc(oom.core_fail_at)
        print(pcall(uring.run, function() return "first" end))
        print(select(2, require("uring.faults").alloc()))
        print(pcall(uring.run, function() return "next" end))
        for _ in pairs(oom.fds()) do n = n - 1 end
        print("fds", n, "tasks", uring.stats().tasks)]], 1, true)
      assert.equal(0, code, out)
      -- one fd more: the ring's own
      assert.equal("true\tfirst\ntrue\ntrue\tnext\nfds\t-1\ttasks\t0\n", out)
    end)

    it("a task cancelled before it ran", function()
      local out = oom([[
        uring.run(function()
          local t = uring.spawn(function() end)
          t:cancel()
          oom.arm()
          print(t:join())
        end)]])
      assert.matches("false\tnot enough memory", out)
    end)
  end)

  describe("configure, stats, features", function()
    it("sets the ring size for the next run", function()
      uring.configure { entries = 8 }
      uring.run(function()
        local ts = {}
        for i = 1, 100 do ts[i] = uring.spawn(uring.nop) end
        for i = 1, 100 do ts[i]:join() end
      end)
      assert.equal(8, uring.stats().entries)
      uring.configure { entries = tonumber(os.getenv("URING_TEST_RING")) or 4096 }
      assert.has_error(function() uring.configure { entries = 0 } end)
      assert.has_error(function() uring.configure(5) end)
      local ok, err = pcall(uring.run, function() uring.configure {} end)
      assert.is_false(ok); assert.matches("running", err)
    end)

    it("reports the kernel, the ops and the flags", function()
      local f = uring.features()
      assert.is_true(f.available)
      assert.matches("^%d+%.%d+", f.kernel)
      assert.is_true(f.ops.read and f.ops.nop and f.ops.timeout and true)
      assert.is_true(f.flags.CQSIZE)
      local s = uring.stats()
      for _, k in ipairs { "enters", "sqes", "cqes", "inflight", "tasks" } do
        assert.is_number(s[k], k)
      end
    end)
  end)
end)
