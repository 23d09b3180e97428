-- sock:send through IORING_OP_SEND_ZC (csrc/send_zc.c): with
-- uring.configure{send_zc = N}, a send of N bytes or more lends the kernel
-- the string's own pages.  Two CQEs come back: the result, which resumes
-- the task, and the notification, until which the core keeps the string
-- pinned, whatever became of the task, the socket or the string.
local uring = require "uring"
local helpers = require "helpers"

local run = helpers.runner(20)
local fails, pair = helpers.fails, helpers.pair
local EBADF = uring.errno.EBADF

-- n bytes that a reordering, a loss or an overwrite cannot leave alike
-- (a 251-byte block: a prime, so pieces of any power-of-two size differ)
local function pattern(n, seed)
  local block = {}
  for i = 0, 250 do block[i + 1] = string.char((i * 7 + seed) % 256) end
  block = table.concat(block)
  return block:rep(n // 251 + 1):sub(1, n)
end

-- Wait until the kernel gave back every page it was lent (the
-- notifications came), at most 5 s: a notification waits for the peer.
local function settle()
  run(function()
    local t0 = uring.now()
    while uring.stats().send_zc_held > 0 and uring.now() - t0 < 5 do
      uring.sleep(0.005)
    end
  end)
  assert.equal(0, uring.stats().send_zc_held)
end

describe("sock:send with configure{send_zc} #io #net", function()
  -- (before the leak check's: configure sets the ring up anew)
  before_each(function() uring.configure{send_zc = 4096} end)
  helpers.leak_check(before_each, after_each)
  after_each(function()
    settle()
    uring.configure{send_zc = false}
  end)

  it("sends big strings intact, the small ones as before", function()
    local sizes = { 4096, 4095, 65536, (1 << 20) + 7, 3 << 20, 100 }
    local z0 = uring.stats().send_zc
    run(function()
      local c, s = pair()
      local sent = {}
      local reader = uring.spawn(function() return s:receive("*a") end)
      for i, n in ipairs(sizes) do
        sent[i] = pattern(n, i)
        assert.equal(n, c:send(sent[i]))
      end
      -- a slice of a big string: only data[i..j] goes, pinned whole
      local big = pattern(200000, 99)
      assert.equal(150000, c:send(big, 20001, 170000))
      sent[#sent + 1] = big:sub(20001, 170000)
      -- with a timeout set, the SEND_ZC carries a linked timeout
      c:settimeout(5)
      sent[#sent + 1] = pattern(70000, 42)
      assert.equal(70000, c:send(sent[#sent]))
      c:close()
      local ok, got = reader:join()
      assert(ok, got)
      assert.is_true(got == table.concat(sent), "the bytes differ")
      s:close()
    end)
    -- 4096, 65536, 1 MiB + 7, 3 MiB, the slice, the timed one; not 4095, 100
    assert.equal(6, uring.stats().send_zc - z0)
  end)

  it("keeps a string the task let go of pinned until the notification", function()
    local N = 1 << 20
    run(function()
      -- glibc serves a big malloc with mmap until an mmapped block is
      -- freed: then it raises its threshold and such strings come from
      -- the heap, where a freed one is reused by the next of its size
      do local warm = ("w"):rep(2 * N) end
      collectgarbage(); collectgarbage()
      local c, s = pair()
      local go = uring.event()
      local reader = uring.spawn(function()
        go:wait()                 -- the peer reads only once the string is gone
        return s:receive(N)
      end)
      assert.equal(N, c:send(pattern(N, 7)))   -- nobody else holds that string
      -- the peer has read nothing: the kernel still holds the pages
      assert.is_true(uring.stats().send_zc_held >= 1)
      collectgarbage(); collectgarbage()
      local junk = {}
      for i = 1, 8 do junk[i] = string.char(64 + i):rep(N) end   -- reuse its memory
      go:set()
      local ok, got = reader:join()
      assert(ok, got)
      assert.is_true(got == pattern(N, 7), "the peer got other bytes than were sent")
      c:close(); s:close()
      junk = nil
    end)
  end)

  it("a close by another task ends a queued zero-copy send with 'closed'", function()
    run(function()
      local c, s = pair()
      local N = 32 << 20                  -- more than the socket buffers take
      local sender = uring.spawn(function() return c:send(pattern(N, 3)) end)
      uring.sleep(0.05)                   -- the peer reads nothing: it waits
      assert.equal("waiting", sender:status())
      c:close()
      local ok, a, b, en, done = sender:join()
      assert(ok, a)
      fails("closed", EBADF, a, b, en)
      assert.is_true(done > 0 and done < N, "bytes sent: " .. tostring(done))
      s:close()                           -- unread bytes: a reset frees the rest
    end)
  end)

  it("closing right after a zero-copy send: the fd goes at once, the peer gets every byte", function()
    run(function()
      local c, s = pair()
      local N = 1 << 20
      local data = pattern(N, 5)
      local fd = c:fd()
      assert.is_truthy(("\n" .. helpers.fds()):find("\n" .. fd .. " %-> socket:"))
      assert.equal(N, c:send(data))
      assert.is_true(uring.stats().send_zc_held >= 1)   -- the peer read nothing yet
      c:close()
      -- the close goes through the ring (an SQPOLL thread may take a moment)
      local t0, open = uring.now(), true
      while open and uring.now() - t0 < 2 do
        uring.sleep(0.01)
        -- (io.open cannot open a socket's /proc link: list the fds)
        open = ("\n" .. helpers.fds()):find("\n" .. fd .. " %-> socket:") ~= nil
      end
      -- (if not, the peer's close resets the connection: the notification
      -- comes, and the fd closes, so the test fails instead of hanging)
      if open then s:close() end
      assert.is_false(open, "the fd stays open while the notification is due")
      assert.is_true(uring.stats().send_zc_held >= 1)   -- and the pages are still lent
      local got = s:receive("*a")
      assert.is_true(got == data, "the bytes differ")
      s:close()
    end)
  end)

  it("a send timeout ends a zero-copy send the peer does not read", function()
    run(function()
      local c, s = pair()
      local N = 32 << 20
      c:settimeout(0.05)
      local a, b, en, done = c:send(pattern(N, 9))
      fails("timeout", uring.errno.ETIME, a, b, en)
      assert.is_true(done > 0 and done < N, "bytes sent: " .. tostring(done))
      c:close(); s:close()
    end)
  end)

  it("task:cancel() of a task in a zero-copy send raises 'canceled' in it", function()
    run(function()
      local c, s = pair()
      local sender = uring.spawn(function() return c:send(pattern(32 << 20, 4)) end)
      uring.sleep(0.05)                   -- the peer reads nothing: it waits
      sender:cancel()
      local ok, err = sender:join()
      assert.is_false(ok)
      assert.matches("canceled", tostring(err))
      -- the socket is not left busy: the next send goes (and waits its turn)
      c:settimeout(0.05)
      local a, b = c:send(pattern(1 << 20, 5))
      assert.is_true(a == 1 << 20 or b == "timeout", tostring(b))
      c:close(); s:close()
    end)
  end)

  it("Unix sockets, which have no zero copy, send as before", function()
    local path = helpers.tmpdir() .. "/s"
    local z0 = uring.stats().send_zc
    run(function()
      local srv = assert(uring.listen_unix(path))
      local acc = uring.spawn(function() return assert(srv:accept()) end)
      local c = assert(uring.connect_unix(path))
      local _, s = acc:join()
      srv:close()
      local data = pattern(1 << 20, 6)
      local reader = uring.spawn(function() return s:receive("*a") end)
      assert.equal(#data, c:send(data))
      c:close()
      local ok, got = reader:join()
      assert.is_true(ok and got == data, "the bytes differ")
      s:close()
    end)
    helpers.rmrf(path:match("^(.*)/s$"))
    assert.equal(z0, uring.stats().send_zc)
  end)

  it("send_zc = true means 64 KiB and up; false turns it off", function()
    local function count(opt, n)
      uring.configure{send_zc = opt}
      local z0 = uring.stats().send_zc
      run(function()
        local c, s = pair()
        local reader = uring.spawn(function() return s:receive(n) end)
        assert.equal(n, c:send(pattern(n, 1)))
        local ok, got = reader:join()
        assert(ok and got == pattern(n, 1))
        c:close(); s:close()
      end)
      settle()
      return uring.stats().send_zc - z0
    end
    assert.equal(1, count(true, 65536))
    assert.equal(0, count(true, 65535))
    assert.equal(0, count(false, 1 << 20))
    assert.equal(0, count(0, 1 << 20))
    assert.equal(1, count(1, 1))
  end)

  it("reports whether the kernel copied anyway (loopback: it does)", function()
    local z0, c0 = uring.stats().send_zc, uring.stats().send_zc_copied
    run(function()
      local c, s = pair()
      local reader = uring.spawn(function() return s:receive("*a") end)
      assert.equal(1 << 20, c:send(pattern(1 << 20, 2)))
      c:close()
      assert(#select(2, reader:join()) == 1 << 20)
      s:close()
    end)
    settle()
    assert.equal(1, uring.stats().send_zc - z0)
    -- loopback hands the pages to the receiving socket, which must copy
    -- them; a 6.0 or 6.1 kernel cannot say (the count stays)
    local copied = uring.stats().send_zc_copied - c0
    assert.is_true(copied == 1 or (copied == 0 and uring.features().kernel:match("^6%.[01]%.")))
  end)

  it("a traced notification says its flags in res, not an errno", function()
    local cqes = {}
    run(function()
      uring.trace(function(ev)
        if ev.event == "cqe" and ev.op == "send_zc" then cqes[#cqes + 1] = ev end
      end)
      local c, s = pair()
      local reader = uring.spawn(function() return s:receive("*a") end)
      assert.equal(1 << 20, c:send(pattern(1 << 20, 3)))
      c:close()
      assert(#select(2, reader:join()) == 1 << 20)
      s:close()
    end)
    settle()
    run(function() uring.sleep(0) end)   -- the events come at a loop turn
    uring.trace(false)
    assert.is_true(#cqes >= 2, "a result and a notification")
    for _, ev in ipairs(cqes) do
      -- bit 31 (ZC_COPIED) made res INT_MIN: negated, it was no errno
      assert.is_true(ev.errno == nil or (ev.errno >= 1 and ev.errno <= 4095),
                     tostring(ev.errno))
    end
  end)

  it("bad send_zc options raise", function()
    local function bad(v, msg)
      assert.matches(helpers.badarg(1, "configure", msg),
                     helpers.errmsg(uring.configure, {send_zc = v}))
    end
    bad("big", "send_zc must be a byte count, true or false, got string")
    bad({}, "send_zc must be a byte count, true or false, got table")
    bad(1.5, "send_zc must be a byte count, true or false, got a fraction")
    bad(-1, "send_zc must be in 0..2147483647 (0: off)")
    bad(1 << 31, "send_zc must be in 0..2147483647 (0: off)")
    -- a bad field changes nothing, not even the good ones beside it
    local entries = uring.stats().entries
    helpers.errmsg(uring.configure, {entries = 8, send_zc = "x"})
    assert.equal(entries, uring.stats().entries)
  end)

  it("a kernel without SEND_ZC gets plain SENDs (test build)", function()
    local out, status = helpers.faulty([=[
      local uring = require "uring"
      local helpers = require "helpers"
      uring.configure{send_zc = 4096}
      assert(uring.features().ops.send_zc == nil)
      uring.run(function()
        local c, s = helpers.pair()
        local data = ("0123456789abcdef"):rep(1 << 16)
        local reader = uring.spawn(function() return s:receive("*a") end)
        assert(c:send(data) == #data)
        c:close()
        local ok, got = reader:join()
        assert(ok and got == data, "the bytes differ")
        s:close()
      end)
      assert(uring.stats().send_zc == 0, "a SEND_ZC went out")
      assert(uring.stats().inflight == 0)
      print("ok")
    ]=], "URING_FAULT_MASK_OPS=send_zc")
    assert(status == 0 and out:match("ok\n$"), out)
  end)
end)
