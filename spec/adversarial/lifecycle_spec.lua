-- spec/adversarial/lifecycle_spec.lua: objects and tasks used at the wrong
-- time.  Use after close of every object kind; a coroutine from outside
-- the loop resuming (or closing) a task's coroutine; waiting from __gc and
-- from metamethods; tasks whose error is a table, nil or a table whose
-- __tostring raises; cancelling twice, after the end, and oneself;
-- 100,000 tasks at once; the loop ended with reads, sends, accepts and
-- timers in flight.  Each case ends with nothing in flight, no task
-- alive and the fds it started with.
local uring = require "uring"
local adv = require "helpers"

local run, raises, fails = adv.runner(20), adv.raises, adv.fails

describe("adversarial lifecycle #io", function()
  local dir
  setup(function() dir = adv.tmpdir() end)
  teardown(function() adv.rmrf(dir) end)

  describe("use after close", function()
    it("a file: every method raises 'attempt to use a closed file'", adv.clean(function()
      run(function()
        local f = assert(uring.open(dir .. "/closed", "w+"))
        local it = f:lines()
        assert.is_true(f:close())
        for _, m in ipairs { "read", "write", "lines", "seek", "setvbuf", "flush",
                             "pread", "pwrite", "sync", "stat", "fd", "close" } do
          raises("attempt to use a closed file", f[m], f, "x", 0)
        end
        raises("file is already closed", it)
        assert.equal("uring.file (closed)", tostring(f))
      end)
    end))

    it("a socket, a listener and a UDP socket raise 'attempt to use a closed socket' (regression: at net.lua's line)", adv.clean(function()
      run(function()
        local c, s = adv.pair()
        local srv = assert(uring.listen("127.0.0.1", 0))
        local u = assert(uring.udp("127.0.0.1", 0))
        c:close(); s:close(); srv:close(); u:close()
        for _, m in ipairs { "send", "receive", "recv", "read", "write", "lines",
                             "settimeout", "shutdown", "getpeername", "getsockname",
                             "setoption", "fd", "accept" } do
          raises("attempt to use a closed socket", s[m], s)
          raises("attempt to use a closed socket", srv[m], srv)
        end
        for _, m in ipairs { "sendto", "recvfrom", "settimeout", "getsockname", "fd" } do
          raises("attempt to use a closed socket", u[m], u, "x", "127.0.0.1", 9)
        end
        -- the Lua-level methods raise at the caller's line too
        local e = raises("attempt to use a closed socket", function()
          local r = s:write("x")
          return r
        end)
        assert.matches("lifecycle_spec%.lua:%d+:", e)
        -- closing again does nothing, as documented
        assert.is_true(s:close()); assert.is_true(srv:close()); assert.is_true(u:close())
      end)
    end))

    it("a signal, a ring, a popen file and a process", adv.clean(function()
      run(function()
        local g = assert(uring.signal("USR2"))
        g:close()
        raises("attempt to use a closed signal", g.wait, g)
        g:close()
        local r = assert(uring.ring { entries = 4 })
        r:prep_nop(1)          -- prepared, never submitted: dropped by close
        r:close()
        for _, m in ipairs { "prep_nop", "submit", "submit_and_wait", "wait_cqe",
                             "peek_cqe", "sq_space_left", "cq_ready", "probe",
                             "register_files", "flags", "inflight", "link" } do
          raises("attempt to use a closed ring", r[m], r)
        end
        assert.is_true(r:close())
        local p = assert(uring.popen("echo hi"))
        assert.equal("hi", p:read("l"))
        assert.is_true(p:close())
        raises("attempt to use a closed file", p.read, p)
        raises("attempt to use a closed file", p.close, p)
        local pr = assert(uring.exec { "true" })
        assert.is_true(pr:wait())
        assert.is_true(pr:wait())   -- the same answer again
        fails("No such process", 3, pr:kill())
      end)
    end))

    it("a ring closed with a read in flight into a buffer: the buffer outlives it", adv.clean(function()
      local b = uring.buffer(64)
      run(function()
        local rd, w = adv.pipe()
        local r = assert(uring.ring { entries = 4 })
        r:prep_read(rd:fd(), b, 64, -1, 7)   -- an empty FIFO: stays pending
        assert.equal(1, r:submit())
        assert.equal(1, b:pinned())
        r:close()                            -- cancels it and waits
        assert.equal(0, b:pinned())
        rd:close(); w:close()
      end)
      collectgarbage(); collectgarbage()
      assert.equal(64, b:size())
      b:fill(65)
      assert.equal(("A"):rep(64), b:tostring())
    end))
  end)

  describe("coroutines from outside the loop", function()
    it("regression: a coroutine.resume from outside killed the task, which then failed with 'cannot resume dead coroutine' and leaked its request", adv.clean(function()
      local got = run(function()
        local co
        local t = uring.spawn(function()
          co = coroutine.running()
          uring.sleep(0.02)
          return "slept"
        end)
        uring.yield()
        local ok, err = coroutine.resume(co, "forged", "values")
        assert.is_false(ok)
        assert.matches("only be resumed by the uring loop", err)
        ok, err = coroutine.resume(co)
        assert.is_false(ok)
        assert.matches("dead coroutine", err)
        -- the loop ends the task with the first error when the sleep's
        -- CQE arrives, and frees the request no continuation will free
        return table.pack(t:join())
      end)
      assert.is_false(got[1])
      assert.matches("only be resumed by the uring loop", got[2])
      -- from a plain coroutine in another task, too
      got = run(function()
        local co
        local t = uring.spawn(function()
          co = coroutine.running()
          uring.nop()
        end)
        uring.yield()
        local ok, err = coroutine.wrap(function() return coroutine.resume(co) end)()
        assert.is_false(ok)
        assert.matches("only be resumed by the uring loop", err)
        return table.pack(t:join())
      end)
      assert.is_false(got[1])
    end))

    it("regression: coroutine.close on a waiting task's coroutine failed it with a nil error and leaked its request", adv.clean(function()
      local got = run(function()
        local co
        local t = uring.spawn(function()
          co = coroutine.running()
          local _ <close> = setmetatable({}, { __close = function() end })
          uring.sleep(0.02)
          return 1
        end)
        uring.yield()
        assert.is_true(coroutine.close(co))
        assert.equal("dead", coroutine.status(co))
        return table.pack(t:join())
      end)
      assert.is_false(got[1])
      assert.matches("closed from outside", got[2])
    end))

    it("resuming after the loop ended does not revive the task", adv.clean(function()
      local co
      run(function()
        uring.spawn(function() co = coroutine.running(); uring.yield() end):join()
      end)
      assert.equal("dead", coroutine.status(co))
      local ok, err = coroutine.resume(co)
      assert.is_false(ok)
      assert.matches("dead coroutine", err)
    end))
  end)

  describe("waiting where a task cannot yield", function()
    it("a __gc that waits gets a clean error (delivered as a warning), the loop goes on", adv.clean(function()
      local seen = {}
      run(function()
        for i = 1, 20 do
          setmetatable({}, { __gc = function()
            local ok, err = pcall(uring.nop)
            seen[#seen + 1] = ok and "waited" or err
            if i % 2 == 0 then uring.sleep(1) end    -- raises inside __gc
          end })
        end
        collectgarbage(); collectgarbage()
        uring.nop()
      end)
      collectgarbage(); collectgarbage()
      assert.equal(20, #seen)
      for _, e in ipairs(seen) do
        assert(e:find("cannot wait here", 1, true) or e:find("not inside a task", 1, true),
          "unexpected: " .. e)
      end
    end))

    it("__tostring, __lt (sort) and __concat called from C cannot wait", adv.clean(function()
      run(function()
        local mt = { __tostring = function() uring.nop(); return "x" end }
        raises("nop: cannot wait here", tostring, setmetatable({}, mt))
        raises("sleep: cannot wait here", table.sort, { 3, 1, 2 }, function(a, b)
          uring.sleep(0); return a < b
        end)
        raises("yield: cannot wait here", string.gsub, "abc", "%w", function()
          uring.yield()
        end)
        uring.nop()   -- the task is fine afterwards
      end)
    end))

    it("__index, __close and __call called from Lua may wait", adv.clean(function()
      local out = run(function()
        local lazy = setmetatable({}, { __index = function(_, k)
          uring.sleep(0); return k .. "!"
        end })
        local log = {}
        do
          local _ <close> = setmetatable({}, { __close = function()
            uring.nop(); log[#log + 1] = "closed"
          end })
        end
        local callable = setmetatable({}, { __call = function(_, x)
          uring.yield(); return x * 2
        end })
        return lazy.a .. log[1] .. callable(21)
      end)
      assert.equal("a!closed42", out)
    end))

    it("__close waiting while a task unwinds from an error", adv.clean(function()
      local order = {}
      local ok, err = pcall(run, function()
        local _ <close> = setmetatable({}, { __close = function(_, e)
          uring.nop()           -- waits during the unwind
          order[#order + 1] = "closed with " .. tostring(e):match("boom") 
        end })
        error("boom")
      end)
      assert.is_false(ok)
      assert.matches("boom", err)
      assert.same({ "closed with boom" }, order)
    end))
  end)

  describe("Lua that runs in the loop's own frame", function()
    it("a trace function that waits, nests uring.run or yields is turned off; the loop goes on", adv.clean(function()
      run(function()
        for _, bad in ipairs {
          function() uring.nop() end,
          function() uring.run(print) end,
          function() coroutine.yield() end,
          function() uring.configure { entries = 8 } end,
          function() error(setmetatable({}, { __tostring = function() error("x") end })) end,
        } do
          local calls = 0
          uring.trace(function(e) calls = calls + 1; bad(e) end)
          for _ = 1, 5 do assert.is_true(uring.nop()) end
          assert.equal(1, calls, "a failing trace function was called again")
        end
        uring.trace(false)
      end)
    end))

    it("a __gc that spawns a task during the run: the task runs", adv.clean(function()
      local ran = false
      run(function()
        setmetatable({}, { __gc = function()
          uring.spawn(function() uring.nop(); ran = true end)
        end })
        collectgarbage(); collectgarbage()
        uring.sleep(0.01)
      end)
      assert.is_true(ran)
    end))

    it("a task overflowing the Lua stack fails alone", adv.clean(function()
      local ok, e = run(function()
        local function rec(n) return 1 + rec(n + 1) end
        local t = uring.spawn(rec, 1)
        local other = uring.spawn(function() uring.sleep(0.01); return "fine" end)
        assert.same({ true, "fine" }, { other:join() })
        return t:join()
      end)
      assert.is_false(ok)
      assert.matches("stack overflow", e)
    end))

    it("uring.timeout nested past Lua's C-stack limit fails cleanly; later scopes work", adv.clean(function()
      run(function()
        for _, d in ipairs { 150, 190, 195, 200, 260, 1100 } do
          local function deep(k)
            if k == 0 then return uring.sleep(0) end
            return uring.timeout(5, deep, k - 1)
          end
          local ok, e = pcall(deep, d)
          assert(ok or e:find("stack overflow") or e:find("too many nested scopes"),
            "depth " .. d .. ": " .. tostring(e))
          -- the task's scope stack is consistent afterwards
          assert.equal("ok", uring.timeout(1, function() return "ok" end))
          assert.same({ nil, "timeout", 62 }, { uring.timeout(0.001, uring.sleep, 1) })
        end
      end)
    end))
  end)

  describe("task errors that are not strings", function()
    it("a table error reaches join and run as the same table", adv.clean(function()
      local obj = { code = 7 }
      local ok, e = run(function()
        return uring.spawn(function() error(obj) end):join()
      end)
      assert.is_false(ok)
      assert.equal(obj, e)
      local rok, rerr = pcall(uring.run, function() error(obj) end)
      assert.is_false(rok)
      assert.equal(obj, rerr)
      -- an unjoined task's table error too
      rok, rerr = pcall(uring.run, function() uring.spawn(error, obj) end)
      assert.is_false(rok)
      assert.equal(obj, rerr)
    end))

    it("a nil error: join gives false, nil; run raises and does not crash", adv.clean(function()
      local r = run(function()
        return table.pack(uring.spawn(function() error(nil) end):join())
      end)
      assert.is_false(r[1])
      assert.is_nil(r[2])
      local ok = pcall(uring.run, function() error(nil) end)
      assert.is_false(ok)
      ok = pcall(uring.run, function() uring.spawn(error) end)
      assert.is_false(ok)
    end))

    it("an error object whose __tostring raises or waits", adv.clean(function()
      local bad = setmetatable({}, { __tostring = function() error("tostring broke") end })
      local waits = setmetatable({}, { __tostring = function() uring.nop(); return "w" end })
      for _, obj in ipairs { bad, waits } do
        local ok, err = pcall(uring.run, function() error(obj) end)
        assert.is_false(ok)
        assert.equal(obj, err)
        ok, err = pcall(uring.run, function() uring.spawn(error, obj) end)
        assert.is_false(ok)
        assert.equal(obj, err)
      end
    end))
  end)

  describe("cancel", function()
    it("twice while waiting on an SQE, then after it ended, then itself", adv.clean(function()
      run(function()
        local r, w = adv.pipe()
        local t = uring.spawn(function() return r:read(10) end)
        uring.yield(); uring.yield()
        assert.equal("waiting", t:status())
        assert.is_true(t:cancel())
        assert.is_true(t:cancel())     -- still live: one ASYNC_CANCEL only
        assert.same({ false, "canceled" }, { t:join() })
        assert.is_false(t:cancel())
        assert.is_false(t:cancel())
        assert.equal("canceled", t:status())
        r:close(); w:close()
        local me = uring.current()
        local ok, e = pcall(me.cancel, me)
        assert.is_false(ok)
        assert.equal("canceled", e)
        -- sticky: every later wait raises, but the task may finish
        assert.has_error(uring.nop, "canceled")
      end)
    end))

    it("regression: a cancelled task whose __close raised looked merely 'canceled' (the error was lost)", adv.clean(function()
      run(function()
        local t = uring.spawn(function()
          local _ <close> = setmetatable({}, { __close = function() error("close broke", 0) end })
          uring.sleep(30)
        end)
        local u = uring.spawn(function()
          local _ <close> = setmetatable({}, { __close = function() uring.nop() end })
          uring.sleep(30)
        end)
        uring.yield(); uring.yield()
        t:cancel(); u:cancel()
        assert.same({ false, "close broke" }, { t:join() })
        assert.equal("failed", t:status())
        -- its <close> runs after the task ended (not in a pcall): it
        -- cannot wait, and says so instead of vanishing
        local ok, e = u:join()
        assert.is_false(ok)
        assert.matches("nop: cannot wait here: the <close> variables of a task", e)
        assert.equal("failed", u:status())
        -- inside a pcall the unwinding is the task's own: waiting works
        local v = uring.spawn(function()
          pcall(function()
            local _ <close> = setmetatable({}, { __close = function() uring.nop() end })
            uring.sleep(30)
          end)
          return "cleaned"
        end)
        uring.yield(); uring.yield()
        v:cancel()
        assert.same({ true, "cleaned" }, { v:join() })
      end)
    end))

    it("cancel from inside a metamethod and from a __gc of another task's object", adv.clean(function()
      run(function()
        local t = uring.spawn(uring.sleep, 30)
        uring.yield()
        local victim = setmetatable({}, { __index = function() return t:cancel() end })
        assert.is_true(victim.anything)
        assert.same({ false, "canceled" }, { t:join() })
        local t2 = uring.spawn(uring.sleep, 30)
        uring.yield()
        setmetatable({}, { __gc = function() t2:cancel() end })
        collectgarbage(); collectgarbage()
        assert.same({ false, "canceled" }, { t2:join() })
      end)
    end))

    it("a task cancelled before it ever ran, and one that finished", adv.clean(function()
      run(function()
        local ran = false
        local t = uring.spawn(function() ran = true end)
        assert.is_true(t:cancel())
        assert.same({ false, "canceled" }, { t:join() })
        assert.is_false(ran)
        local d = uring.spawn(function() return 5 end)
        assert.same({ true, 5 }, { d:join() })
        assert.is_false(d:cancel())
        assert.same({ true, 5 }, { d:join() })
        assert.equal("done", d:status())
      end)
    end))
  end)

  it("100,000 tasks spawned at once, each waiting once", adv.clean(function()
    local N = 100000
    local before = uring.stats()
    local sum = run(function()
      local tasks = {}
      for i = 1, N do
        tasks[i] = uring.spawn(function(x) uring.yield(); return x end, i)
      end
      assert.equal(N + 1, uring.stats().tasks)
      local s = 0
      for i = 1, N do
        local ok, v = tasks[i]:join()
        s = s + v
      end
      return s
    end, 60)
    assert.equal(N * (N + 1) // 2, sum)
    local after = uring.stats()
    assert.equal(N + 1, after.spawned - before.spawned)
    -- a second storm of tasks that each do one nop reuses the request
    -- pool: it does not grow by one record per task
    local kib = collectgarbage("count")
    run(function()
      local ts = {}
      for i = 1, 20000 do ts[i] = uring.spawn(uring.nop) end
      for i = 1, 20000 do assert(ts[i]:join()) end
    end, 60)
    collectgarbage(); collectgarbage()
    assert.is_true(uring.stats().requests <= 20000 + 256)
    assert.is_true(collectgarbage("count") < kib + 4096,
      "Lua memory grew by " .. (collectgarbage("count") - kib) .. " KiB")
  end))

  it("memory is stable over 12 rounds of failing runs with everything in flight", adv.clean(function()
    local asan = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil
    local function round()
      pcall(uring.run, function()
        local c, s = adv.pair()
        local r, w = adv.pipe()
        for _ = 1, 50 do uring.spawn(uring.sleep, 30) end
        uring.spawn(function() return s:receive("*a") end)
        uring.spawn(function() return r:read("a") end)
        uring.spawn(function() return c:send(("m"):rep(1 << 20)) end)
        uring.sleep(0.005)
        error("round over")
      end)
      collectgarbage(); collectgarbage()
      run(function() uring.sleep(0.005) end)   -- reap the collectors' cancels
    end
    for _ = 1, 4 do round() end            -- warm up: pools, buffers
    collectgarbage(); collectgarbage()
    local kib, rss, reqs = collectgarbage("count"), adv.rss_kib(), uring.stats().requests
    for _ = 1, 8 do round() end
    collectgarbage(); collectgarbage()
    assert.is_true(collectgarbage("count") - kib < 256,
      ("Lua heap grew %.0f KiB"):format(collectgarbage("count") - kib))
    assert.equal(reqs, uring.stats().requests)      -- the pool did not grow
    -- ASan keeps freed memory in quarantine: RSS says little there
    local limit = asan and 64 * 1024 or 2 * 1024
    assert.is_true(adv.rss_kib() - rss < limit,
      ("RSS grew %d KiB"):format(adv.rss_kib() - rss))
  end))

  describe("ending the loop with everything in flight", function()
    it("the main task fails: reads, sends, accepts, timers, waits are all cancelled", adv.clean(function()
      local state = {}
      local ok, err = pcall(uring.run, function()
        local r, w = adv.pipe()
        local c, s = adv.pair()
        local c2, s2 = adv.pair()     -- nobody reads s2: c2's send waits
        local srv = assert(uring.listen("127.0.0.1", 0))
        local u = assert(uring.udp("127.0.0.1", 0))
        local sig = assert(uring.signal("USR2"))
        local p = assert(uring.exec { "sleep", "5" })
        local big = ("x"):rep(8 << 20)   -- more than the socket buffers hold
        local tasks = {
          read = function() return r:read("a") end,
          recv = function() return s:receive("*a") end,
          send = function() return c2:send(big) end,
          accept = function() return srv:accept() end,
          sleep = function() return uring.sleep(30) end,
          udp = function() return u:recvfrom() end,
          signal = function() return sig:wait() end,
          proc = function() return p:wait() end,
          timeout = function() return uring.timeout(30, uring.sleep, 60) end,
        }
        for name, fn in pairs(tasks) do
          uring.spawn(function()
            local res = table.pack(pcall(fn))
            state[name] = res[1] and "returned" or res[2]
          end)
        end
        uring.sleep(0.05)
        for name in pairs(tasks) do state[name] = state[name] or "pending" end
        state.inflight = uring.stats().inflight
        -- the fds these objects hold are closed by the collector later
        p:kill("KILL")
        error("main gives up")
      end)
      assert.is_false(ok)
      assert.matches("main gives up", err)
      assert.is_true(state.inflight >= 9, "only " .. tostring(state.inflight) .. " in flight")
      for _, name in ipairs { "read", "recv", "send", "accept", "sleep", "udp",
                              "signal", "proc", "timeout" } do
        assert.equal("canceled", state[name], name)
      end
      -- what the dead tasks left (a listener's armed accept, the killed
      -- child's wait) goes when the collector closes the objects: the
      -- next turns reap the cancels and the detached wait
      collectgarbage(); collectgarbage()
      run(function() uring.sleep(0.05) end)
    end))

    it("lua_close (os.exit(0, true)) with every kind of op in flight, in a child", function()
      local out, code = adv.child([[
        local uring = require "uring"
        uring.run(function()
          local srv = assert(uring.listen("127.0.0.1", 0))
          local _, port = srv:getsockname()
          local c = assert(uring.connect("127.0.0.1", port))
          local s = assert(srv:accept())
          local u = assert(uring.udp("127.0.0.1", 0))
          local p = assert(uring.popen("sleep 5"))
          uring.spawn(function() c:receive("*a") end)
          uring.spawn(function() c:send(("x"):rep(8 << 20)) end)   -- s never reads
          uring.spawn(function() srv:accept() end)
          uring.spawn(function() u:recvfrom() end)
          uring.spawn(function() p:read("a") end)
          for i = 1, 100 do uring.spawn(uring.sleep, 60) end
          -- copies over and over: most of the time one's helper thread
          -- is inside copy_file_range (csrc/copy.c)
          local dir = os.tmpname()
          local src = dir .. ".src"
          local f = assert(io.open(src, "wb"))
          f:write(("c"):rep(16 << 20))
          f:close()
          uring.spawn(function()
            while true do uring.copyfile(src, dir .. ".dst") end
          end)
          uring.sleep(0.05)
          os.remove(src); os.remove(dir .. ".dst"); os.remove(dir)
          io.write("inflight ", uring.stats().inflight, "\n")
          io.flush()
          os.exit(0, true)
        end)
      ]])
      assert.equal(0, code, out)
      local n = tonumber(out:match("inflight (%d+)"))
      assert.is_true(n and n >= 105, out)
    end)
  end)
end)
