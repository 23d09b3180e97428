-- Tasks working together: uring.queue, uring.semaphore, uring.event,
-- uring.select and uring.group -- every function, cancel and timeout on
-- every wait, FIFO order, the races that must have exactly one outcome,
-- and the errors each raises.
local uring = require "uring"
local helpers = require "helpers"

local EBADF = uring.errno.EBADF
local ETIME = uring.errno.ETIME

-- a <close> value that counts its closings in counts[i]
local function closer(counts, i)
  return setmetatable({}, { __close = function() counts[i] = (counts[i] or 0) + 1 end })
end

describe("tasks working together #io", function()
  uring.features()   -- the ring's own fd exists before the first count
  local fds
  before_each(function() fds = helpers.fds() end)
  after_each(function()
    assert.equal(0, uring.stats().inflight)
    assert.equal(0, uring.stats().tasks)
    assert.equal(fds, helpers.fds())
  end)

  describe("uring.queue", function()
    it("hands items over in order; #q, try_get, tostring", function()
      uring.run(function()
        local q = uring.queue()
        assert.equal(0, #q)
        assert.is_nil(q:try_get())
        for i = 1, 100 do assert.is_true(q:put(i)) end
        assert.equal(100, #q)
        assert.matches("uring.queue %(100 items%)", tostring(q))
        assert.equal(1, q:try_get())
        for i = 2, 100 do assert.equal(i, q:get()) end
        assert.equal(0, #q)
        -- false is an item like any other
        q:put(false)
        assert.is_false(q:get())
        local b = uring.queue(3)
        assert.matches("uring.queue %(0 of 3 items%)", tostring(b))
        assert.equal(uring.queue(math.huge):put(1), true)
      end)
    end)

    it("makes a getter wait until an item comes, without polling", function()
      uring.run(function()
        local q = uring.queue()
        local t = uring.spawn(function() return q:get() end)
        uring.yield()
        assert.equal("waiting", t:status())
        assert.equal("queue get", t:waiting_on())
        local r0 = uring.stats().resumes
        uring.sleep(0.02)                 -- it is not resumed meanwhile
        assert.is_true(uring.stats().resumes - r0 <= 2)
        q:put("x")
        assert.same({ true, "x" }, { t:join() })
      end)
    end)

    it("makes put wait while full, and keeps the items in order", function()
      uring.run(function()
        local q = uring.queue(2)
        local got = {}
        local producer = uring.spawn(function()
          for i = 1, 10 do q:put(i) end
          q:close()
        end)
        uring.yield()
        assert.equal("queue put", producer:waiting_on())
        assert.equal(2, #q)
        while true do
          local v = q:get()
          if v == nil then break end
          got[#got + 1] = v
        end
        assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, got)
        assert.is_true((producer:join()))
      end)
    end)

    it("serves waiting getters first come, first served", function()
      uring.run(function()
        local q, order = uring.queue(), {}
        local ts = {}
        for i = 1, 5 do
          ts[i] = uring.spawn(function()
            local v = q:get()
            order[#order + 1] = { i, v }
          end)
        end
        uring.yield()
        for i = 1, 5 do q:put("item" .. i) end
        -- a getter arriving now does not overtake the ones waiting
        assert.is_nil(q:try_get())
        for i = 1, 5 do ts[i]:join() end
        for i = 1, 5 do assert.same({ i, "item" .. i }, order[i]) end
      end)
    end)

    it("serves waiting putters first come, first served", function()
      uring.run(function()
        local q = uring.queue(1)
        q:put(0)
        local ts = {}
        for i = 1, 5 do ts[i] = uring.spawn(function() return q:put(i) end) end
        uring.yield()
        local got = {}
        for i = 0, 5 do got[#got + 1] = q:get() end
        assert.same({ 0, 1, 2, 3, 4, 5 }, got)
        for i = 1, 5 do assert.same({ true, true }, { ts[i]:join() }) end
      end)
    end)

    it("close wakes every waiter; getters drain what is left first", function()
      uring.run(function()
        local q = uring.queue(1)
        local getters = {}
        for i = 1, 3 do getters[i] = uring.spawn(function() return q:get() end) end
        uring.yield()
        q:close()
        for i = 1, 3 do
          assert.same({ true, nil, "closed", EBADF }, { getters[i]:join() })
        end
        -- putters waiting on a full queue
        local f = uring.queue(1)
        f:put("kept")
        local putters = {}
        for i = 1, 3 do putters[i] = uring.spawn(function() return f:put(i) end) end
        uring.yield()
        f:close()
        for i = 1, 3 do
          assert.same({ true, nil, "closed", EBADF }, { putters[i]:join() })
        end
        assert.is_true(f:closed())
        f:close()                          -- twice: harmless
        assert.equal("kept", f:get())      -- what was put before close stays
        assert.same({ nil, "closed", EBADF }, { f:get() })
        assert.same({ nil, "closed", EBADF }, { f:put("late") })
        assert.equal(0, #f)
        assert.is_nil(f:try_get())
      end)
    end)

    it("cancels a waiting get and a waiting put", function()
      uring.run(function()
        local q = uring.queue(1)
        local g = uring.spawn(function() return q:get() end)
        uring.yield()
        assert.is_true(g:cancel())
        assert.same({ false, "canceled" }, { g:join() })
        q:put(1)
        local p = uring.spawn(function() return q:put(2) end)
        uring.yield()
        p:cancel()
        assert.same({ false, "canceled" }, { p:join() })
        assert.equal(1, #q)
        assert.equal(1, q:get())
        assert.is_nil(q:try_get())        -- the cancelled put left nothing
      end)
    end)

    it("times out a waiting get and put, leaving the queue as it was", function()
      uring.run(function()
        local q = uring.queue(1)
        assert.same({ nil, "timeout", ETIME }, { uring.timeout(0.01, q.get, q) })
        q:put("a")
        assert.same({ nil, "timeout", ETIME }, { uring.timeout(0.01, q.put, q, "b") })
        assert.equal(1, #q)
        assert.equal("a", q:get())
      end)
    end)

    it("gives an item promised to a cancelled getter to the next one", function()
      uring.run(function()
        local q = uring.queue()
        local g1 = uring.spawn(function() return q:get() end)
        local g2 = uring.spawn(function() return q:get() end)
        uring.yield()
        q:put("only")                     -- promised to g1 ...
        g1:cancel()                       -- ... which is cancelled before it runs
        assert.same({ false, "canceled" }, { g1:join() })
        assert.same({ true, "only" }, { g2:join() })
        assert.equal(0, #q)
      end)
    end)

    it("forgets a getter whose coroutine was closed from outside", function()
      uring.run(function()
        local q, co = uring.queue(), nil
        local t = uring.spawn(function() co = coroutine.running(); return q:get() end)
        uring.yield()
        assert.is_true(coroutine.close(co))
        q:put("kept")                    -- nobody takes it: the getter is gone
        local ok, err = t:join()
        assert.is_false(ok)
        assert.matches("closed from outside", err)
        assert.equal(1, #q)
        assert.equal("kept", q:get())
        -- handed an item, then closed before it ran: the item is not lost
        local t2 = uring.spawn(function() co = coroutine.running(); return q:get() end)
        uring.yield()
        q:put("promised")
        assert.equal(0, #q)              -- promised to t2
        assert.is_true(coroutine.close(co))
        assert.equal(1, #q)
        assert.is_false((t2:join()))
        assert.equal("promised", q:get())
      end)
    end)

    it("a get nobody can answer is the deadlock uring.run reports", function()
      local closed = false
      local ok, err = pcall(uring.run, function()
        local guard <close> = setmetatable({}, { __close = function() closed = true end })
        uring.queue():get()
      end)
      assert.is_false(ok)
      assert.matches("deadlock: 1 task%(s%) wait on each other", err)
      assert.is_true(closed)
    end)

    it("works outside a task where it need not wait, and says why where it would", function()
      local q = uring.queue(1)
      assert.is_true(q:put(1))
      assert.equal(1, q:get())
      assert.has_error(function() q:get() end, "get: not inside a task (use uring.run)")
      q:put(2)
      assert.has_error(function() q:put(3) end, "put: not inside a task (use uring.run)")
      assert.equal(2, q:try_get())
    end)

    it("race: put vs close, 10,000 rounds, exactly one outcome each", function()
      uring.run(function()
        math.randomseed(13)
        local accepted, refused = 0, 0
        for round = 1, 10000 do
          local q = uring.queue(1)
          q:put("first")
          local p = uring.spawn(function() return q:put(round) end)
          uring.yield()                   -- p waits: the queue is full
          local how = math.random(4)
          if how == 1 then q:close()
          elseif how == 2 then q:get(); q:close()           -- room, then close
          elseif how == 3 then q:get(); uring.yield(); q:close()
          else q:close(); q:get() end
          local ok, put_ok, msg = p:join()
          assert.is_true(ok)
          local items = {}
          while true do
            local v = q:get()
            if v == nil then break end
            items[#items + 1] = v
          end
          local seen = 0
          for _, v in ipairs(items) do if v == round then seen = seen + 1 end end
          if put_ok then
            accepted = accepted + 1
            assert.equal(1, seen)
          else
            refused = refused + 1
            assert.equal("closed", msg)
            assert.equal(0, seen)
          end
        end
        -- both outcomes happened
        assert.is_true(accepted > 0 and refused > 0)
      end)
    end)

    it("raises on bad arguments", function()
      assert.has_error(function() uring.queue(0) end,
        "bad argument #1 to 'queue' (capacity must be at least 1)")
      assert.has_error(function() uring.queue(1.5) end,
        "bad argument #1 to 'queue' (number has no integer representation)")
      assert.has_error(function() uring.queue("x") end,
        "bad argument #1 to 'queue' (number expected, got string)")
      local q = uring.queue()
      assert.has_error(function() q:put(nil) end,
        "bad argument #1 to 'put' (a value expected (nil cannot be queued))")
      assert.has_error(function() q:put() end,
        "bad argument #1 to 'put' (a value expected (nil cannot be queued))")
      assert.has_error(function() q.get({}) end,
        "bad argument #1 to 'get' (uring.queue expected, got table)")
      assert.has_error(function() q.close(uring.event()) end,
        "bad argument #1 to 'close' (uring.queue expected, got uring.event)")
    end)
  end)

  describe("uring.semaphore", function()
    it("counts permits: acquire, release, available, tostring", function()
      uring.run(function()
        local s = uring.semaphore(3)
        assert.equal(3, s:available())
        assert.is_true(s:acquire())
        assert.is_true(s:acquire(2))
        assert.equal(0, s:available())
        assert.matches("uring.semaphore %(0 of 3 free%)", tostring(s))
        s:release(2)
        s:release()
        assert.equal(3, s:available())
      end)
    end)

    it("bounds how many tasks run at once", function()
      uring.run(function()
        local s, running, most = uring.semaphore(3), 0, 0
        local ts = {}
        for i = 1, 20 do
          ts[i] = uring.spawn(function()
            s:with(function()
              running = running + 1
              if running > most then most = running end
              uring.sleep(0.001)
              running = running - 1
            end)
          end)
        end
        for i = 1, 20 do assert.is_true((ts[i]:join())) end
        assert.equal(3, most)
        assert.equal(3, s:available())
      end)
    end)

    it("serves waiters in order: a big request holds back later small ones", function()
      uring.run(function()
        local s, order = uring.semaphore(3), {}
        s:acquire(3)
        local big = uring.spawn(function() s:acquire(3); order[#order + 1] = "big"; s:release(3) end)
        local small = uring.spawn(function() s:acquire(1); order[#order + 1] = "small"; s:release() end)
        uring.yield()
        s:release(1)                      -- enough for small, not for big
        uring.yield(); uring.yield()
        assert.same({}, order)            -- small waits behind big
        s:release(2)
        big:join(); small:join()
        assert.same({ "big", "small" }, order)
      end)
    end)

    it("cancels and times out a waiting acquire; permits given then cancelled come back", function()
      uring.run(function()
        local s = uring.semaphore(1)
        s:acquire()
        local a = uring.spawn(function() return s:acquire() end)
        uring.yield()
        a:cancel()
        assert.same({ false, "canceled" }, { a:join() })
        assert.same({ nil, "timeout", ETIME }, { uring.timeout(0.01, s.acquire, s) })
        local b = uring.spawn(function() return s:acquire() end)
        local c = uring.spawn(function() s:acquire(); s:release(); return "c" end)
        uring.yield()
        s:release()                       -- granted to b ...
        b:cancel()                        -- ... cancelled before it ran: to c
        assert.same({ false, "canceled" }, { b:join() })
        assert.same({ true, "c" }, { c:join() })
        assert.equal(1, s:available())
      end)
    end)

    it("race: acquire vs cancel, 10,000 rounds: a permit is held or free, never lost", function()
      uring.run(function()
        math.randomseed(2013)
        local s = uring.semaphore(1)
        local held, canceled = 0, 0
        for _ = 1, 10000 do
          s:acquire()
          local t = uring.spawn(function() s:acquire(); return "held" end)
          uring.yield()                   -- t waits for the permit
          local how = math.random(3)
          if how == 1 then s:release(); t:cancel()
          elseif how == 2 then t:cancel(); s:release()
          else s:release(); uring.yield(); t:cancel() end
          local ok = t:join()
          if ok then
            held = held + 1
            assert.equal(0, s:available())
            s:release()                   -- on t's behalf
          else
            canceled = canceled + 1
          end
          assert.equal(1, s:available())
        end
        assert.is_true(held > 0 and canceled > 0)
      end)
    end)

    it("with releases whatever fn does, and returns its results", function()
      uring.run(function()
        local s = uring.semaphore(1)
        assert.same({ 1, nil, 3, n = 3 }, table.pack(s:with(function(...) return ... end, 1, nil, 3)))
        local ok, err = pcall(s.with, s, function() error("inside", 0) end)
        assert.is_false(ok); assert.equal("inside", err)
        assert.equal(1, s:available())
      end)
    end)

    it("raises on bad arguments and on releasing more than was taken", function()
      local s = uring.semaphore(2)
      assert.has_error(function() uring.semaphore(0) end,
        "bad argument #1 to 'semaphore' (permits must be at least 1)")
      assert.has_error(function() uring.semaphore() end,
        "bad argument #1 to 'semaphore' (number expected, got no value)")
      assert.has_error(function() s:acquire(0) end,
        "bad argument #1 to 'acquire' (permits must be in 1..2)")
      assert.has_error(function() s:acquire(3) end,
        "bad argument #1 to 'acquire' (permits must be in 1..2)")
      assert.has_error(function() s:release() end,
        "release: 1 permit(s) released but only 0 taken (a semaphore of 2)")
      s:acquire()
      assert.has_error(function() s:release(2) end,
        "release: 2 permit(s) released but only 1 taken (a semaphore of 2)")
      s:release()
      assert.has_error(function() s:with(42) end,
        "bad argument #1 to 'with' (function expected, got number)")
      assert.has_error(function() s.with(42, print) end,
        "bad argument #1 to 'with' (uring.semaphore expected, got number)")
      s:acquire(); s:acquire()
      assert.has_error(function() s:acquire() end, "acquire: not inside a task (use uring.run)")
    end)
  end)

  describe("uring.event", function()
    it("wakes every waiter when set; stays set until cleared", function()
      uring.run(function()
        local e = uring.event()
        assert.is_false(e:is_set())
        assert.equal("uring.event (clear)", tostring(e))
        local ts = {}
        for i = 1, 5 do ts[i] = uring.spawn(function() return e:wait(), i end) end
        uring.yield()
        assert.equal("event", ts[1]:waiting_on())
        e:set()
        for i = 1, 5 do assert.same({ true, true, i }, { ts[i]:join() }) end
        assert.is_true(e:is_set())
        assert.is_true(e:wait())          -- set: no wait
        e:clear()
        assert.is_false(e:is_set())
        assert.same({ nil, "timeout", ETIME }, { uring.timeout(0.01, e.wait, e) })
      end)
    end)

    it("cancels a waiting wait", function()
      uring.run(function()
        local e = uring.event()
        local t = uring.spawn(function() return e:wait() end)
        uring.yield()
        t:cancel()
        assert.same({ false, "canceled" }, { t:join() })
      end)
    end)

    it("waits only inside a task, and raises on a bad self", function()
      local e = uring.event()
      assert.has_error(function() e:wait() end, "wait: not inside a task (use uring.run)")
      e:set()
      assert.is_true(e:wait())
      assert.has_error(function() e.set(uring.queue()) end,
        "bad argument #1 to 'set' (uring.event expected, got uring.queue)")
    end)
  end)

  describe("uring.select", function()
    it("returns the first task to end with its join results; the others run on", function()
      uring.run(function()
        local slow = uring.spawn(function() uring.sleep(0.05); return "slow" end)
        local fast = uring.spawn(function() uring.sleep(0.005); return "fast", 2 end)
        assert.same({ 2, true, "fast", 2 }, { uring.select(slow, fast) })
        assert.equal("waiting", slow:status())
        assert.same({ true, "slow" }, { slow:join() })
        -- a failed task wins with join's false, err, and counts as joined
        local long = uring.spawn(uring.sleep, 30)
        local bad = uring.spawn(function() error("bad", 0) end)
        assert.same({ 1, false, "bad" }, { uring.select(bad, long) })
        long:cancel()
        long:join()
      end)
    end)

    it("takes an item from the winning queue only", function()
      uring.run(function()
        local a, b, e = uring.queue(), uring.queue(), uring.event()
        local t = uring.spawn(function() return uring.select(a, b, e) end)
        uring.yield()
        assert.equal("select", t:waiting_on())
        b:put("for b")
        a:put("for a")                    -- after b won: stays in a
        assert.same({ true, 2, "for b" }, { t:join() })
        assert.equal(1, #a)
        assert.equal(0, #b)
        assert.is_false(e:is_set())
        assert.same({ 1, "for a" }, { uring.select(a, b) })
      end)
    end)

    it("returns an event's true, and the first ready argument when several are", function()
      uring.run(function()
        local q, e = uring.queue(), uring.event()
        local t = uring.spawn(function() return uring.select(q, e) end)
        uring.yield()
        e:set()
        assert.same({ true, 2, true }, { t:join() })
        q:put(1)
        assert.same({ 1, 1 }, { uring.select(q, e) })   -- both ready: the first
        assert.same({ 2, true }, { uring.select(q, e) })
        q:close()
        assert.same({ 1, nil, "closed", EBADF }, { uring.select(q, e) })
      end)
    end)

    it("is cancelled and timed out like any wait, and leaves every argument as it was", function()
      uring.run(function()
        local q, e = uring.queue(), uring.event()
        local long = uring.spawn(uring.sleep, 30)
        local t = uring.spawn(function() return uring.select(q, e, long) end)
        uring.yield()
        t:cancel()
        assert.same({ false, "canceled" }, { t:join() })
        assert.same({ nil, "timeout", ETIME }, { uring.timeout(0.01, uring.select, q, e, long) })
        assert.equal("waiting", long:status())
        q:put("x")
        assert.equal("x", q:try_get())
        long:cancel()
        long:join()
      end)
    end)

    it("race: select vs cancel, 10,000 rounds, exactly one outcome each", function()
      uring.run(function()
        math.randomseed(1013)
        local took, canceled = 0, 0
        local q, e = uring.queue(), uring.event()
        for round = 1, 10000 do
          local t = uring.spawn(function() return uring.select(e, q) end)
          uring.yield()                   -- t waits in select
          local how = math.random(3)
          if how == 1 then q:put(round); t:cancel()
          elseif how == 2 then t:cancel(); q:put(round)
          else q:put(round); uring.yield(); t:cancel() end
          local ok, i, v = t:join()
          if ok then
            took = took + 1
            assert.equal(2, i); assert.equal(round, v)
            assert.equal(0, #q)
          else
            canceled = canceled + 1
            assert.equal("canceled", i)
            assert.equal(round, q:try_get())   -- the item is still there
          end
        end
        assert.is_true(took > 0 and canceled > 0)
      end)
    end)

    it("raises with no arguments, a foreign object, or itself", function()
      assert.has_error(function() uring.select() end,
        "bad argument #1 to 'select' (task, queue or event expected, got no value)")
      assert.has_error(function() uring.select(uring.queue(), {}) end,
        "bad argument #2 to 'select' (task, queue or event expected, got table)")
      assert.has_error(function() uring.select(uring.semaphore(1)) end,
        "bad argument #1 to 'select' (task, queue or event expected, got uring.semaphore)")
      assert.has_error(function() uring.select(uring.queue()) end,
        "select: not inside a task (use uring.run)")
      uring.run(function()
        local ok, err = pcall(uring.select, uring.queue(), uring.current())
        assert.is_false(ok)
        assert.matches("bad argument #2 to '[%w.]*select' %(a task cannot select itself%)", err)
      end)
    end)
  end)

  describe("uring.group", function()
    it("returns the body's results once every child has ended", function()
      local done = {}
      local a, b = uring.run(function()
        return uring.group(function(g)
          for i = 1, 5 do
            g:spawn(function(n) uring.sleep(0.002 * n); done[#done + 1] = n end, i)
          end
          return "a", "b"
        end)
      end)
      assert.equal("a", a); assert.equal("b", b)
      assert.same({ 1, 2, 3, 4, 5 }, done)
    end)

    it("waits for children spawned by children, however many came and went", function()
      local ended = 0
      uring.run(function()
        uring.group(function(g)
          for i = 1, 300 do
            g:spawn(function()
              g:spawn(function() uring.sleep(0.001 * (i % 5)); ended = ended + 1 end)
              ended = ended + 1
            end)
            if i % 50 == 0 then uring.yield() end   -- some end while others start
          end
        end)
        assert.equal(600, ended)
      end)
    end)

    it("1,000 children, the 500th fails: 999 cancelled, each <close> once, error and traceback raised", function()
      local counts, tasks, t0 = {}, {}, uring.now()
      local ok, err = uring.run(function()
        local started = uring.event()
        local n = 0
        return pcall(uring.group, function(g)
          for i = 1, 1000 do
            tasks[i] = g:spawn(function()
              local c <close> = closer(counts, i)
              n = n + 1
              if n == 1000 then started:set() end
              if i == 500 then
                started:wait()            -- every child is inside its <close>
                error("child 500 failed")
              end
              uring.sleep(30)
            end)
          end
        end)
      end)
      assert.is_false(ok)
      assert.matches("sync_spec.lua:%d+: child 500 failed", err)
      assert.matches("stack traceback:", err)
      local canceled = 0
      for i = 1, 1000 do
        assert.equal(1, counts[i], "close of child " .. i)
        if tasks[i]:status() == "canceled" then canceled = canceled + 1 end
      end
      assert.equal(999, canceled)
      assert.equal("failed", tasks[500]:status())
      assert.is_true(uring.now() - t0 < 10)
    end)

    it("a child's failure interrupts a body that waits", function()
      local closed = false
      local ok, err = uring.run(function()
        return pcall(uring.group, function(g)
          local guard <close> = setmetatable({}, { __close = function() closed = true end })
          g:spawn(function() uring.sleep(0.005); error("child", 0) end)
          uring.queue():get()             -- would wait forever
        end)
      end)
      assert.is_false(ok)
      assert.matches("^child\nstack traceback:\n", err)
      assert.is_true(closed)
    end)

    it("the body's error cancels the children and is raised with its traceback", function()
      local counts = {}
      local ok, err = uring.run(function()
        return pcall(uring.group, function(g)
          for i = 1, 3 do
            g:spawn(function() local c <close> = closer(counts, i); uring.sleep(30) end)
          end
          uring.yield()
          error("body failed")
        end)
      end)
      assert.is_false(ok)
      assert.matches("body failed\nstack traceback:", err)
      assert.same({ 1, 1, 1 }, counts)
    end)

    it("g:cancel cancels the children; the group returns the body's results", function()
      local counts, late = {}, nil
      local r = uring.run(function()
        return uring.group(function(g)
          for i = 1, 3 do
            g:spawn(function() local c <close> = closer(counts, i); uring.sleep(30) end)
          end
          uring.yield()
          g:cancel()
          late = g:spawn(function() counts.late = true end)   -- cancelled too
          return "body"
        end)
      end)
      assert.equal("body", r)
      assert.same({ 1, 1, 1 }, counts)
      assert.equal("canceled", late:status())
    end)

    it("works inside uring.timeout as a deadline for the whole group", function()
      local counts, t0 = {}, uring.now()
      local r = { uring.run(function()
        return uring.timeout(0.02, uring.group, function(g)
          for i = 1, 3 do
            g:spawn(function() local c <close> = closer(counts, i); uring.sleep(30) end)
          end
          uring.sleep(30)
        end)
      end) }
      assert.same({ nil, "timeout", ETIME }, r)
      assert.same({ 1, 1, 1 }, counts)
      assert.is_true(uring.now() - t0 < 5)
    end)

    it("cancelling the task that runs it unwinds the children first", function()
      local counts, order = {}, {}
      uring.run(function()
        local t = uring.spawn(function()
          local mine <close> = setmetatable({}, { __close = function() order[#order + 1] = "group task" end })
          uring.group(function(g)
            for i = 1, 2 do
              g:spawn(function()
                local c <close> = setmetatable({}, { __close = function()
                  counts[i] = true; order[#order + 1] = "child" end })
                uring.sleep(30)
              end)
            end
            uring.sleep(30)
          end)
        end)
        uring.sleep(0.005)
        t:cancel()
        assert.same({ false, "canceled" }, { t:join() })
      end)
      assert.same({ "child", "child", "group task" }, order)
    end)

    it("raises when used after it ended, and on bad arguments", function()
      uring.run(function()
        local kept
        uring.group(function(g) kept = g end)
        assert.has_error(function() kept:spawn(print) end,
          "spawn: the group has ended (uring.group returned)")
        assert.has_error(function() kept:cancel() end,
          "cancel: the group has ended (uring.group returned)")
        assert.has_error(function() uring.group(42) end,
          "bad argument #1 to 'group' (function expected, got number)")
        uring.group(function(g)
          assert.has_error(function() g:spawn("x") end,
            "bad argument #1 to 'spawn' (function expected, got string)")
          assert.has_error(function() g.spawn({}, print) end,
            "bad argument #1 to 'spawn' (uring.group expected, got table)")
        end)
      end)
      assert.has_error(function() uring.group(print) end,
        "group: not inside a task (use uring.run)")
    end)
  end)
end)
