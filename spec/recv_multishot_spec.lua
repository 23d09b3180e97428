-- uring.configure{recv_multishot = true} (csrc/recv_multishot.c): a
-- socket's receive is one multishot RECV kept armed from the socket's
-- second wait on.  Each arrival posts a CQE with IORING_CQE_F_MORE and
-- its bytes land in the socket's buffer whether or not a task waits.
-- These tests check what that must not change (order, no loss, errors,
-- close, cancel, timeouts) and what it must (no RECV SQE per message).
local uring = require "uring"
local helpers = require "helpers"

local run = helpers.runner(20)
local fails, pair, raises = helpers.fails, helpers.pair, helpers.raises
local ETIME = uring.errno.ETIME

-- n bytes that a reordering or a loss cannot leave alike (a 251-byte
-- block: a prime, so pieces of any power-of-two size differ)
local function pattern(n, seed)
  local block = {}
  for i = 0, 250 do block[i + 1] = string.char((i * 7 + seed) % 256) end
  block = table.concat(block)
  return block:rep(n // 251 + 1):sub(1, n)
end

-- Count the loop's RECV SQEs and CQEs while fn runs (in a task); the
-- CQEs with IORING_CQE_F_MORE are the armed multishot's.
local function recv_counts(fn)
  local c = { sqes = 0, cqes = 0, more = 0, enobufs = 0 }
  uring.trace(function(e)
    if e.op == "recv" then
      if e.event == "sqe" then c.sqes = c.sqes + 1
      elseif e.event == "cqe" then
        c.cqes = c.cqes + 1
        if e.more then c.more = c.more + 1 end
        if e.errno == uring.errno.ENOBUFS then c.enobufs = c.enobufs + 1 end
      end
    end
  end)
  local ok, err = pcall(fn)
  uring.nop()                   -- the last events are delivered
  uring.trace(false)
  assert(ok, err)
  return c
end

-- A pair whose server side has had its first (single-shot) wait: its
-- next wait arms the multishot.
local function warm_pair()
  local c, s = pair()
  assert(c:send("warm\n"))
  assert.equal("warm", s:receive())
  return c, s
end

-- a child on the test build (fault hooks) must end with status 0 and "ok"
local function child_ok(out, status)
  assert(status == 0 and out:match("ok\n?$"), "the child failed (status "
    .. tostring(status) .. "):\n" .. out)
  return out
end

describe("configure{recv_multishot} #io #net", function()
  -- (before the leak check's: configure sets the ring up anew)
  before_each(function() uring.configure{recv_multishot = true} end)
  helpers.leak_check(before_each, after_each)
  after_each(function()
    uring.configure{recv_multishot = os.getenv("URING_TEST_RECV_MULTISHOT") == "1"}
  end)

  it("shows in features(); bad values raise", function()
    local f = uring.features().recv_multishot
    assert.is_true(f.wanted)
    assert.is_true(f.supported)      -- kernel 6.18
    assert.equal(0, f.armed)
    raises({ "bad argument #1 to", "configure' (boolean recv_multishot expected, got string)" },
      uring.configure, { recv_multishot = "yes" })
    raises("boolean recv_multishot expected, got number", uring.configure, { recv_multishot = 1 })
    uring.configure{recv_multishot = false}
    assert.is_false(uring.features().recv_multishot.wanted)
  end)

  it("keeps one RECV armed: twenty exchanges cost two RECV SQEs, not twenty", function()
    run(function()
      local c, s
      local n = recv_counts(function()
        c, s = pair()
        for i = 1, 20 do
          assert(c:send("request " .. i .. "\n"))
          assert.equal("request " .. i, s:receive())
          assert(s:send("response " .. i .. "\n"))
          assert.equal("response " .. i, c:receive())
        end
      end)
      -- each side: one single shot (its first wait), then one multishot
      assert.equal(4, n.sqes)
      assert.is_true(n.more >= 38, "CQEs with F_MORE: " .. n.more)
      assert.equal(2, uring.features().recv_multishot.armed)
      c:close(); s:close()
      assert.equal(0, uring.features().recv_multishot.armed)
    end)
  end)

  it("buffers what arrives while no task waits: receive finds it without waiting", function()
    run(function()
      local c, s = warm_pair()
      local t = uring.spawn(function() return s:receive() end)
      assert(c:send("one\n"))
      assert.equal("one", select(2, t:join()))   -- the multishot is armed now
      assert(c:send("two\nthree\n"))
      assert(c:send("four"))
      uring.sleep(0.02)                          -- nobody receives meanwhile
      assert.equal(14, (s:_buffered()))
      local n = recv_counts(function()
        assert.equal("two", s:receive())
        assert.equal("three", s:receive())
        assert.equal("four", s:receive(4))
      end)
      assert.equal(0, n.sqes)
      c:close(); s:close()
    end)
  end)

  it("pipelined requests come out whole and in order", function()
    run(function()
      local c, s = warm_pair()
      local N = 500
      local server = uring.spawn(function()
        for i = 1, N do
          local line = assert(s:receive())
          assert(s:send(line:upper() .. "\n"))
        end
      end)
      local burst = {}
      for i = 1, N do burst[i] = ("get %d %s\n"):format(i, ("x"):rep(i % 97)) end
      -- in pieces cut anywhere, so lines straddle CQEs
      local all, at = table.concat(burst), 1
      while at <= #all do
        local n = 1 + (at * 7919) % 3000
        assert(c:send(all, at, at + n - 1))
        at = at + n
      end
      for i = 1, N do
        assert.equal(("GET %d %s"):format(i, ("X"):rep(i % 97)), c:receive())
      end
      assert(server:join())
      c:close(); s:close()
    end)
  end)

  it("a slow reader pushes back: the multishot is cancelled past the bound, re-armed, nothing lost", function()
    run(function()
      local c, s = warm_pair()
      local N = 16 << 20
      local data = pattern(N, 3)
      local writer = uring.spawn(function() return c:send(data) end)
      local got, peak, n = {}, 0, 0
      local counts = recv_counts(function()
        while n < N do
          uring.sleep(0.001)                    -- the reader is slow
          peak = math.max(peak, (s:_buffered()))
          local piece = assert(s:receive(math.min(128 << 10, N - n)))
          got[#got + 1] = piece
          n = n + #piece
        end
      end)
      assert.equal(N, select(2, writer:join()))
      assert.is_true(table.concat(got) == data, "bytes lost or out of order")
      -- what piles up in user space is the bound (64 KiB) plus what the
      -- kernel had ready when the cancel landed (its socket buffer, which
      -- TCP autotuning grows to a few MiB here), not the whole stream
      assert.is_true(peak < N // 2, "buffered at most " .. peak)
      assert.is_true(counts.sqes >= 3, "re-armed " .. counts.sqes .. " times")
      c:close(); s:close()
    end)
  end)

  it("the peer's EOF: what came first is received, then nil, \"closed\"", function()
    run(function()
      local c, s = warm_pair()
      local t = uring.spawn(function() return s:receive() end)
      uring.yield()
      assert(c:send("last line\npartial"))
      c:close()
      assert.equal("last line", select(2, t:join()))
      assert.same({ nil, "closed", "partial" }, { s:receive() })
      assert.same({ nil, "closed", "" }, { s:receive(10) })
      s:close()
      -- "*a" through EOF, with the multishot armed
      c, s = warm_pair()
      local reader = uring.spawn(function() return s:receive("*a") end)
      for i = 1, 50 do assert(c:send(("chunk %d;"):format(i))) end
      c:close()
      local expect = {}
      for i = 1, 50 do expect[i] = ("chunk %d;"):format(i) end
      assert.equal(table.concat(expect), select(2, reader:join()))
      s:close()
    end)
  end)

  it("a cancelled receiver raises \"canceled\"; what arrived stays for the next receive", function()
    run(function()
      local c, s = warm_pair()
      local t = uring.spawn(function() return s:receive() end)
      uring.yield()                                -- t waits on the multishot
      assert(c:send("first\n"))
      t:cancel()
      local ok, err = t:join()
      assert.is_false(ok)
      assert.matches("canceled", err)
      assert.equal("first", s:receive())
      assert(c:send("second\n"))
      assert.equal("second", s:receive())
      -- cancelled with nothing arrived, then bytes come: kept too
      t = uring.spawn(function() return s:receive() end)
      uring.sleep(0.01)
      t:cancel()
      assert.is_false((t:join()))
      assert(c:send("third\n"))
      assert.equal("third", s:receive())
      c:close(); s:close()
    end)
  end)

  it("uring.timeout around a receive: the scope expires, the next receive gets every byte", function()
    run(function()
      local c, s = warm_pair()
      local t = uring.spawn(function() return s:receive() end)
      assert(c:send("armed\n"))
      assert.equal("armed", select(2, t:join()))
      assert(c:send("par"))
      assert.same({ nil, "timeout", ETIME }, { uring.timeout(0.02, s.receive, s) })
      assert(c:send("tial\n"))
      assert.equal("partial", s:receive())
      for i = 1, 5 do
        assert(c:send(i .. "\n"))
        assert.equal(tostring(i), s:receive())
      end
      c:close(); s:close()
    end)
  end)

  it("settimeout: the wait times out, the multishot stays armed, no byte is lost", function()
    run(function()
      local c, s = warm_pair()
      s:settimeout(0.03)
      assert(c:send("he"))
      fails("timeout", ETIME, s:receive())        -- half a line, then silence
      assert.equal(1, uring.features().recv_multishot.armed)
      assert(c:send("llo\n"))
      assert.equal("hello", s:receive())
      local n = recv_counts(function()
        for i = 1, 10 do
          assert(c:send(i .. "\n"))
          assert.equal(tostring(i), s:receive())
        end
      end)
      assert.equal(0, n.sqes)                      -- still the same multishot
      s:settimeout(nil)
      c:close(); s:close()
    end)
  end)

  it("close while armed: the fd number stays taken until the last CQE, the peer sees the end", function()
    local dir = helpers.tmpdir()
    local victim_path = dir .. "/victim"
    helpers.writeall(victim_path, "")
    run(function()
      local victim = assert(uring.open(victim_path, "w"))
      for round = 1, 20 do
        local c, s = warm_pair()
        local waiter
        if round % 2 == 0 then                     -- a task waiting on it, or none
          waiter = uring.spawn(function() return s:receive() end)
          uring.yield()
        else
          local t = uring.spawn(function() return s:receive() end)
          assert(c:send("armed\n"))
          assert.equal("armed", select(2, t:join()))
        end
        local num = s:fd()
        if waiter then
          s:close()                                -- from another task: cancels, closes later
          -- the number is the kernel's until the multishot's last CQE
          local d = assert(uring.fdopen(victim:fd(), "w"))
          assert.are_not.equal(num, d:fd())
          assert(d:close())
          assert.same({ nil, "closed", uring.errno.EBADF }, { select(2, waiter:join()) })
        else
          s:close()                                -- in a task: ends it, then closes
        end
        assert(c:send("after close\n"))            -- must reach no other file
        assert.is_nil((c:receive()))              -- closed, or reset (unread bytes)
        c:close()
      end
      victim:close()
    end)
    assert.equal("", helpers.readall(victim_path))
    helpers.rmrf(dir)
  end)

  it("a socket collected while armed: its later CQEs touch nothing freed", function()
    run(function()
      local peers = {}
      for i = 1, 20 do
        local c, s = warm_pair()
        local t = uring.spawn(function() return s:receive() end)
        assert(c:send("armed\n"))
        assert(t:join())
        peers[i] = c
        s = nil                                    -- luacheck: ignore
      end
      collectgarbage(); collectgarbage()           -- __gc cancels, forgets
      for i = 1, 20 do assert(peers[i]:send(("late bytes %d\n"):format(i))) end
      uring.sleep(0.02)
      assert.equal(0, uring.features().recv_multishot.armed)   -- collected: cancelled
      for i = 1, 20 do
        assert.is_nil((peers[i]:receive()))       -- closed, or reset (unread bytes)
        peers[i]:close()
      end
    end)
  end)

  it("a receive of its own per socket still works beside it: TLS keeps single shots", function()
    -- a socket that starts TLS after its multishot was armed: the armed
    -- one is ended at the first TLS read, and every byte reaches OpenSSL
    local certs = helpers.tmpdir()
    assert(helpers.exec(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      .. "-keyout %s/key.pem -out %s/cert.pem 2>/dev/null"):format(certs, certs)))
    run(function()
      local sctx = uring.tls.context{ mode = "server", cert = certs .. "/cert.pem", key = certs .. "/key.pem" }
      local cctx = uring.tls.context{ mode = "client", verify = false }
      local c, s = warm_pair()
      local t = uring.spawn(function() return s:receive() end)
      assert(c:send("STARTTLS\n"))
      assert.equal("STARTTLS", select(2, t:join()))
      assert.equal(1, uring.features().recv_multishot.armed)
      local up = uring.spawn(function() return assert(s:starttls(sctx)) end)
      assert(c:starttls(cctx))
      assert(up:join())
      local n = recv_counts(function()
        for i = 1, 5 do
          assert(c:send("secret " .. i .. "\n"))
          assert.equal("secret " .. i, s:receive())
        end
      end)
      assert.equal(0, n.more)
      assert.equal(0, uring.features().recv_multishot.armed)
      c:close(); s:close()
    end)
    helpers.rmrf(certs)
  end)

  it("ENOBUFS from a tiny group ends the multishot; it is re-armed, nothing lost, no spin (a child)", function()
    local out = child_ok(helpers.faulty([=[
      local uring = require "uring"
      local helpers = require "helpers"
      uring.configure { recv_multishot = true }
      require("uring.faults").bufring { max = 2 }   -- the group: 2 buffers
      local N = 1 << 20
      local enobufs, sqes, more = 0, 0, 0
      helpers.runner(20)(function()
        local c, s = helpers.pair()
        assert(c:send("warm\n")); assert(s:receive() == "warm")
        local data = ("0123456789abcdef"):rep(N // 16)
        uring.trace(function(e)
          if e.op == "recv" and e.event == "cqe" then
            if e.errno == uring.errno.ENOBUFS then enobufs = enobufs + 1 end
            if e.more then more = more + 1 end
          elseif e.op == "recv" and e.event == "sqe" then sqes = sqes + 1 end
        end)
        local w = uring.spawn(function() return c:send(data) end)
        local got = assert(s:receive(N))
        assert(got == data, "bytes lost or out of order")
        assert(w:join())
        uring.nop()
        uring.trace(false)
        c:close(); s:close()
      end)
      assert(uring.stats().inflight == 0)
      print("enobufs", enobufs, "sqes", sqes, "more", more)
      assert(enobufs > 0, "the group never ran dry")
      assert(more > 0, "no multishot CQE")
      -- each ENOBUFS ends one multishot, the next wait arms one: no storm
      assert(enobufs <= sqes, "ENOBUFS answered again and again")
      print("ok")
    ]=]))
    assert.truthy(out:match("enobufs\t%d+"), out)
  end)

  it("a kernel without it (the probe masked) gets single shots (a child)", function()
    child_ok(helpers.faulty([=[
      local uring = require "uring"
      local helpers = require "helpers"
      uring.configure { recv_multishot = true }
      local f = uring.features().recv_multishot
      assert(f.wanted and not f.supported, "supported with the probe masked")
      local more, sqes = 0, 0
      helpers.runner(10)(function()
        local c, s = helpers.pair()
        uring.trace(function(e)
          if e.op == "recv" and e.event == "cqe" and e.more then more = more + 1 end
          if e.op == "recv" and e.event == "sqe" then sqes = sqes + 1 end
        end)
        for i = 1, 10 do
          assert(c:send(i .. "\n"))
          assert(s:receive() == tostring(i))
        end
        uring.nop()
        uring.trace(false)
        c:close(); s:close()
      end)
      assert(more == 0 and sqes == 10, more .. " " .. sqes)
      print("ok")
    ]=], "URING_FAULT_MASK_OPS=send_zc"))
  end)
end)
