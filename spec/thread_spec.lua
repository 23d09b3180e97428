-- uring.thread: plain Lua in a lua_State of its own on a worker thread;
-- arguments and results copied, the answer read through the ring.
local uring = require "uring"
local helpers = require "helpers"

local run = helpers.runner(20)

-- Iterations of a bare loop that take about `secs` of CPU here, measured
-- on the loop's own thread before anything else runs.
local function calibrate(secs)
  local n, took = 100000, 0
  while took < 0.05 do
    n = n * 2
    local t0 = uring.now()
    local x = 0
    for i = 1, n do x = x + i end
    took = uring.now() - t0
  end
  return math.floor(n * secs / took)
end

describe("uring.thread #io", function()
  helpers.leak_check(before_each, after_each)

  it("copies arguments and results both ways, types kept", function()
    local a, b, c, d, e = run(function()
      return uring.thread(function(i, f, s, t, z)
        return i + 1, f * 2, s .. "!", { t[1], t.k, inner = t.inner }, z
      end, 41, 1.25, "a\0b", { "x", k = true, inner = { [1.5] = false } }, nil)
    end)
    assert.equal(42, a)
    assert.is_true(math.type(a) == "integer")
    assert.equal(2.5, b)
    assert.is_true(math.type(b) == "float")
    assert.equal("a\0b!", c)
    assert.same({ "x", true, inner = { [1.5] = false } }, d)
    assert.is_nil(e)
  end)

  it("runs chunk text with its arguments in ...", function()
    assert.same({ "xy", 3 }, { run(function()
      return uring.thread("local a, b = ... return a .. b, #(a .. b) + 1", "x", "y")
    end) })
    -- an empty chunk, an empty string argument: nothing to copy is fine
    assert.same({ n = 1, "" }, table.pack(run(function()
      assert.equal(0, select("#", uring.thread("")))
      return uring.thread(function(s) return s end, "")
    end)))
  end)

  it("gives the thread the standard libraries and globals of its own", function()
    GLOBAL_IN_CALLER = 1
    local r = run(function()
      return uring.thread(function()
        return string.rep("a", 3) .. tostring(GLOBAL_IN_CALLER) .. type(require)
      end)
    end)
    GLOBAL_IN_CALLER = nil
    assert.equal("aaanilfunction", r)
  end)

  it("returns nil and the error with its traceback when the thread fails", function()
    local r, msg = run(function()
      return uring.thread(function() local t = nil; return t.field end)
    end)
    assert.is_nil(r)
    assert.matches("attempt to index a nil value", msg)
    assert.matches("stack traceback", msg)
    local r2, msg2 = run(function() return uring.thread("this is not lua") end)
    assert.is_nil(r2)
    assert.matches("syntax error", msg2)
  end)

  it("returns nil, msg for a result that cannot be copied", function()
    local r, msg = run(function()
      return uring.thread(function() return 1, io.stdout end)
    end)
    assert.is_nil(r)
    assert.matches("result #2: a userdata cannot be copied", msg)
  end)

  it("raises for a function with upvalues, a C function, or a bad argument", function()
    local up = 1
    run(function()
      assert.matches(helpers.badarg(1, "thread", nil) .. ".*upvalue 'up'",
        helpers.errmsg(uring.thread, function() return up end))
      assert.matches(helpers.badarg(1, "thread", "a C function cannot be copied"),
        helpers.errmsg(uring.thread, print))
      assert.matches(helpers.badarg(1, "thread") .. "function or string expected",
        helpers.errmsg(uring.thread, 42))
      assert.matches(helpers.badarg(2, "thread",
        "a userdata cannot be copied to another Lua state"),
        helpers.errmsg(uring.thread, function() end, io.stdout))
      assert.matches(helpers.badarg(3, "thread",
        "a function cannot be copied to another Lua state"),
        helpers.errmsg(uring.thread, function() end, 1, { f = print }))
      local cyc = {}
      cyc.self = { cyc }
      assert.matches(helpers.badarg(2, "thread",
        "a table that contains itself cannot be copied"),
        helpers.errmsg(uring.thread, function() end, cyc))
      local deep = {}
      for _ = 1, 200 do deep = { deep } end
      assert.matches("nested deeper than 100",
        helpers.errmsg(uring.thread, function() end, deep))
    end)
    assert.matches("not inside a task",
      helpers.errmsg(uring.thread, function() end))
  end)

  it("a shared, acyclic table is copied once per place it appears", function()
    local r = run(function()
      local s = { 1 }
      return uring.thread(function(t) return t[1] == t[2], t[1][1] end, { s, s })
    end)
    assert.is_false(r)
  end)

  it("cancelling the waiting task stops a thread that never ends", helpers.clean(function()
    uring.configure { threads = 1 }   -- the next job needs that one worker back
    local took, after = run(function()
      local t = uring.spawn(uring.thread, function() while true do end end)
      uring.sleep(0.05)                 -- it is running on the worker now
      local t0 = uring.now()
      t:cancel()
      local ok, err = t:join()
      assert.is_false(ok)
      assert.equal("canceled", err)
      local took = uring.now() - t0
      return took, uring.thread(function(x) return x end, "worker is free")
    end)
    uring.configure { threads = 0 }
    assert.is_true(took < 1, "cancel took " .. took .. " s")
    assert.equal("worker is free", after)
  end, { lookups = true }))

  it("stops a never-ending thread also when the program owns the stop signal", function()
    -- the pool signals a worker with SIGRTMAX - 2 (62 on Linux); a program
    -- that handles that signal itself keeps it, and jobs look now and then
    local out, code = helpers.child([[
package.path = "./spec/?.lua;./spec/?/init.lua;" .. package.path
local caught = require("helpers").posix().catch(62)
local uring = require "uring"
uring.configure { threads = 1 }
uring.run(function()
  local t = uring.spawn(uring.thread, function() while true do end end)
  uring.sleep(0.05)
  t:cancel()
  print(t:join())
  print(uring.thread(function(x) return x end, "worker is free"))
end)
print("caught", caught())
]])
    assert.equal(0, code, out)
    assert.matches("false\tcanceled\nworker is free\ncaught\t0\n", out)
  end)

  it("closing the Lua state while a thread runs forever stops it and exits", function()
    -- driven by steps, so the state is closed (os.exit(0, true)) with the
    -- task still waiting and the job still running
    local t0 = uring.now()
    local out, code = helpers.child([[
local uring = require "uring"
local t = uring.spawn(uring.thread, function() while true do end end)
for _ = 1, 5 do uring.step(0.01) end
print(t:status())
os.exit(0, true)
]])
    assert.equal(0, code, out)
    assert.equal("waiting\n", out)
    assert.is_true(uring.now() - t0 < 10)
  end)

  it("uring.timeout ends the wait for a thread stuck in C; run does not wait for it",
    helpers.clean(function()
      local t0 = uring.now()
      local r, msg = run(function()
        return uring.timeout(0.1, uring.thread, function()
          os.execute("sleep 1")         -- no hook runs inside a C call
          return "late"
        end)
      end)
      assert.is_nil(r)
      assert.equal("timeout", msg)
      assert.is_true(uring.now() - t0 < 0.9, "run waited for the thread")
    end, { lookups = true }))

  it("many threads at once, more than the pool has workers", function()
    local sum = run(function()
      local tasks = {}
      for i = 1, 40 do
        tasks[i] = uring.spawn(uring.thread, function(n)
          local s = 0
          for k = 1, n do s = s + k end
          return s
        end, i * 100)
      end
      local sum = 0
      for i = 1, 40 do
        local ok, s = tasks[i]:join()
        assert.is_true(ok)
        assert.equal((i * 100) * (i * 100 + 1) // 2, s)
        sum = sum + 1
      end
      return sum
    end)
    assert.equal(40, sum)
  end)

  it("keeps the loop responsive: a 10 ms ticker ticks while 4 threads burn 200 ms each", function()
    local n = calibrate(0.2)
    -- without SQPOLL even in the SQPOLL pass of the matrix: its kernel
    -- thread spins on one of this machine's two cores for as long as the
    -- ticker submits, and the figure would measure it, not uring.thread
    local sqpoll = os.getenv("URING_TEST_SQPOLL")
    sqpoll = sqpoll ~= nil and sqpoll ~= "" and sqpoll ~= "0"
    uring.configure { sqpoll = false }
    local ticks, expected, elapsed = run(function()
      local busy = {}
      for i = 1, 4 do
        busy[i] = uring.spawn(uring.thread, function(iters)
          local x = 0
          for k = 1, iters do x = x + k end
          return x
        end, n)
      end
      local done, ticks = false, 0
      local ticker = uring.spawn(function()
        while not done do uring.sleep(0.01); ticks = ticks + 1 end
      end)
      local t0 = uring.now()
      for i = 1, 4 do assert.is_true((busy[i]:join())) end
      local elapsed = uring.now() - t0
      done = true
      ticker:join()
      return ticks, elapsed / 0.01, elapsed
    end)
    uring.configure { sqpoll = sqpoll }
    uring.run(function() end)            -- the ring the leak check counted
    local ratio = ticks / expected
    print(("\n  thread responsiveness: %d of %.0f ticks (%.0f%%) in %.0f ms "
      .. "while 4 threads ran ~200 ms of Lua each"):format(ticks, expected,
      ratio * 100, elapsed * 1000))
    -- the issue's figure is >= 90%; the bound is loose because this
    -- machine's two cores are shared, and valgrind runs one thread at a
    -- time (the loop then shares one CPU with four workers): a loop that
    -- waited for the Lua to finish would tick 0 times
    local bound = helpers.under_valgrind() and 0.2 or 0.5
    assert.is_true(ratio >= bound, ("only %d of %.0f ticks"):format(ticks, expected))
    assert.is_true(elapsed >= 0.15, "the threads did not run for their 200 ms")
  end)

  it("configure{threads} checks its value", function()
    assert.matches(helpers.badarg(1, "configure", "threads must be in 0..256"),
      helpers.errmsg(uring.configure, { threads = 1000 }))
    assert.matches("threads must be an integer",
      helpers.errmsg(uring.configure, { threads = "x" }))
  end)
end)
