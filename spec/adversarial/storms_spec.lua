-- spec/adversarial/storms_spec.lua: more work than the ring holds.
-- Submission storms into a 4-entry SQ (flushed, never an error) and
-- completion storms into its 8-entry CQ (the kernel keeps what overflows,
-- IORING_FEAT_NODROP, and the loop fetches it back): nothing is lost, and
-- the counters show the flushes actually happened.
local uring = require "uring"
local adv = require "helpers"

local run = adv.runner(20)   -- uring.run with a 20 s watchdog

local with_ring = adv.with_ring

describe("adversarial storms on a 4-entry ring", function()
  it("the ring really is 4 entries with an 8-entry CQ", adv.clean(function()
    with_ring(4, function()
      local f = uring.features()
      assert.equal(4, f.entries)
      assert.equal(8, f.cq_entries)
    end)
  end))

  it("SQ storm: 1,000 tasks x 10 NOPs; every one completes, the SQ is flushed", adv.clean(function()
    with_ring(4, function()
      local s0 = uring.stats()
      local total = run(function()
        local ts = {}
        for i = 1, 1000 do
          ts[i] = uring.spawn(function()
            local n = 0
            for _ = 1, 10 do if uring.nop() then n = n + 1 end end
            return n
          end)
        end
        local sum = 0
        for i = 1, 1000 do sum = sum + select(2, ts[i]:join()) end
        return sum
      end, 60)
      assert.equal(10000, total)
      local s1 = uring.stats()
      assert.is_true(s1.flushes - s0.flushes >= 1000 / 4, "SQ never filled")
      assert.equal(s1.sqes - s0.sqes, s1.cqes - s0.cqes)
    end)
  end))

  it("CQ storm: 2,000 timers expiring at once overflow the 8-entry CQ; all fire", adv.clean(function()
    with_ring(4, function()
      local s0 = uring.stats()
      local woke = run(function()
        local ts = {}
        for i = 1, 2000 do ts[i] = uring.spawn(uring.sleep, 0.05) end
        local n = 0
        for i = 1, 2000 do if ts[i]:join() then n = n + 1 end end
        return n
      end, 60)
      assert.equal(2000, woke)
      local s1 = uring.stats()
      assert.is_true(s1.overflow_flushes > s0.overflow_flushes,
        "the CQ never overflowed: the storm did not storm")
      assert.equal(0, s1.stale_cqes - s0.stale_cqes)
    end)
  end))

  it("CQ storm of multishot CQEs: 300 connections at once to one listener", adv.clean(function()
    with_ring(4, function()
      run(function()
        local srv = assert(uring.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        local clients = {}
        local conn = uring.spawn(function()
          for i = 1, 300 do clients[i] = assert(uring.connect("127.0.0.1", port)) end
        end)
        local got = {}
        for i = 1, 300 do got[i] = assert(uring.timeout(10, srv.accept, srv)) end
        conn:join()
        -- every accepted socket works: one byte each way
        for i = 1, 300 do assert(clients[i]:send("k")) end
        for i = 1, 300 do assert.equal("k", got[i]:receive(1)) end
        for i = 1, 300 do clients[i]:close(); got[i]:close() end
        srv:close()
      end, 60)
    end)
  end))

  it("linked timeouts under a full SQ: 200 receives with settimeout, half answered", adv.clean(function()
    with_ring(4, function()
      run(function()
        local pairs_ = {}
        for i = 1, 200 do pairs_[i] = { adv.pair() } end
        local ts = {}
        for i = 1, 200 do
          local s = pairs_[i][2]
          s:settimeout(0.2)
          ts[i] = uring.spawn(function() return s:receive() end)
        end
        uring.yield()
        for i = 1, 200, 2 do pairs_[i][1]:send("hi\n") end
        for i = 1, 200 do
          local ok, a, b, c = ts[i]:join()
          assert.is_true(ok)
          if i % 2 == 1 then
            assert.equal("hi", a)
          else
            assert.same({ nil, "timeout", 62 }, { a, b, c })
          end
        end
        for i = 1, 200 do pairs_[i][1]:close(); pairs_[i][2]:close() end
      end, 60)
    end)
  end))

  it("regression: a 1-entry ring hung forever on a linked pair (receive + timeout, write + fsync)", adv.clean(function()
    with_ring(1, function()
      assert.equal(2, uring.features().entries)
      local dir = adv.tmpdir()
      run(function()
        local c, s = adv.pair()
        s:settimeout(0.02)
        assert.same({ nil, "timeout", 62 }, { s:receive() })
        c:send("x\n")
        assert.equal("x", s:receive())
        local f = assert(uring.open(dir .. "/f", "w"))
        assert(f:write("data"))
        assert.is_true(f:sync())
        assert.is_true(f:close())
        local ts = {}
        for i = 1, 100 do ts[i] = uring.spawn(uring.timeout, 1, uring.nop) end
        for i = 1, 100 do assert.same({ true, true }, { ts[i]:join() }) end
        c:close(); s:close()
      end, 10)
      adv.rmrf(dir)
    end)
  end))

  it("the teaching ring: 40 NOPs into an 8-entry CQ without reaping, all 40 come back", adv.clean(function()
    local r <close> = assert(uring.ring { entries = 4 })
    for round = 1, 10 do
      for j = 1, 4 do r:prep_nop(round * 10 + j) end
      assert.equal(4, r:submit())
    end
    local seen = {}
    for _ = 1, 40 do
      local res, ud = r:wait_cqe(1)
      assert.equal(0, res)
      assert.is_nil(seen[ud], "a CQE came twice")
      seen[ud] = true
    end
    assert.is_nil(r:peek_cqe())
    for round = 1, 10 do
      for j = 1, 4 do assert.is_true(seen[round * 10 + j]) end
    end
  end))
end)
