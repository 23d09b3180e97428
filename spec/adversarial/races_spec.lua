-- spec/adversarial/races_spec.lua: two things racing, many times, with an
-- "exactly one outcome" invariant (liburing's cancel-race: each request
-- either completed or was cancelled, never both, never neither) and
-- nothing left in flight.
local uring = require "uring"
local adv = require "helpers"

local run = adv.runner(20)   -- uring.run with a 20 s watchdog

describe("adversarial races #io #net", function()
  it("cancel racing a NOP's completion, 10,000 times: exactly one outcome each", adv.clean(function()
    local N = 10000
    local done, canceled = 0, 0
    run(function()
      for i = 1, N do
        local t = uring.spawn(function() return uring.nop() end)
        -- shift the cancel across the op's life: before it runs, after it
        -- prepared its SQE, after the SQE went in, after the CQE came
        for _ = 1, i % 4 do uring.yield() end
        -- under SQPOLL on a busy machine the kernel thread may not run
        -- within three yields: every 100th round waits for the CQE
        while i % 100 == 0 and (t:status() == "waiting" or t:status() == "ready") do
          uring.sleep(0.001)
        end
        local live = t:cancel()
        local ok, v = t:join()
        local st = t:status()
        if ok then
          assert(v == true and st == "done", "a result and a cancel: " .. st)
          done = done + 1
        else
          assert(v == "canceled" and st == "canceled" and live,
            "neither result nor cancel: " .. tostring(v))
          canceled = canceled + 1
        end
        assert(uring.stats().tasks == 1, "a task is still alive")
      end
    end, 60)
    assert.equal(N, done + canceled)
    -- both outcomes happened (the result at least in the rounds that wait)
    assert.is_true(done > 0 and canceled > 0, ("done %d, canceled %d"):format(done, canceled))
  end))

  it("cancel racing an open, 2,000 times: a file is either handed over or closed by the core", adv.clean(function()
    local dir = adv.tmpdir()
    local got, canceled = 0, 0
    run(function()
      assert(uring.writefile(dir .. "/f", "x"))
      for i = 1, 2000 do
        local t = uring.spawn(function() return assert(uring.open(dir .. "/f")) end)
        for _ = 1, i % 3 do uring.yield() end
        t:cancel()
        local ok, f = t:join()
        if ok then
          assert.is_true(f:close())
          got = got + 1
        else
          assert.equal("canceled", f)
          canceled = canceled + 1
        end
      end
    end, 60)
    adv.rmrf(dir)
    assert.equal(2000, got + canceled)
    assert.is_true(canceled > 0)
    -- adv.clean checks that no opened fd was left behind
  end))

  it("uring.timeout(0) racing a NOP, 10,000 times: the result or the timeout, never both", adv.clean(function()
    local ok_n, to_n = 0, 0
    run(function()
      for _ = 1, 10000 do
        local a, b, c = uring.timeout(0, uring.nop)
        if a == true then
          assert(b == nil, "a result and more")
          ok_n = ok_n + 1
        else
          assert(a == nil and b == "timeout" and c == 62,
            "neither: " .. tostring(a) .. " " .. tostring(b))
          to_n = to_n + 1
        end
      end
    end, 60)
    assert.equal(10000, ok_n + to_n)
  end))

  it("close racing a receive in another task, 2,000 times: the line or 'closed', never both", adv.clean(function()
    local lines, closed = 0, 0
    run(function()
      local srv = assert(uring.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      for i = 1, 2000 do
        local c = assert(uring.connect("127.0.0.1", port))
        local s = assert(srv:accept())
        local t = uring.spawn(function() return s:receive() end)
        if i % 2 == 0 then uring.yield() end
        c:send("hello\n")
        uring.yield()   -- the receive is under way (a small send does not yield)
        for _ = 1, i % 3 do uring.yield() end
        s:close()
        local ok, a, b, e = t:join()
        assert.is_true(ok)
        if a then
          assert.equal("hello", a)
          lines = lines + 1
        else
          assert.equal("closed", b)
          assert(e == 9 or e == "", "errno " .. tostring(e))
          closed = closed + 1
        end
        c:close()
      end
      srv:close()
    end, 60)
    assert.equal(2000, lines + closed)
  end))

  it("cancel racing accept, 1,000 times: no connection is lost", adv.clean(function()
    run(function()
      local srv = assert(uring.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local accepted, clients = {}, {}
      for i = 1, 1000 do
        local t = uring.spawn(function() return srv:accept() end)
        if i % 2 == 0 then uring.yield() end
        clients[i] = assert(uring.connect("127.0.0.1", port))
        for _ = 1, i % 3 do uring.yield() end
        t:cancel()
        local ok, s = t:join()
        if ok then accepted[#accepted + 1] = s end
      end
      -- what the cancelled accepts did not take is still queued
      while #accepted < 1000 do
        local s = uring.timeout(2, srv.accept, srv)
        assert(s, "a connection was lost after " .. #accepted)
        accepted[#accepted + 1] = s
      end
      for i = 1, 1000 do clients[i]:close(); accepted[i]:close() end
      srv:close()
    end, 60)
  end))
end)
