-- spec/adversarial/faults_spec.lua: the world misbehaves.  An fd closed
-- behind the core's back with an op pending on it; a peer that resets
-- mid-send and mid-receive, or dies; provided buffers running out
-- (ENOBUFS); a full disk (a 1 MiB tmpfs mounted here); a read-only file
-- system; a signal with a handler interrupting io_uring_enter (EINTR);
-- fork() with the ring open.  Each ends with nothing in flight and the
-- fds it started with.
local uring = require "uring"
local adv = require "helpers"

local run, raises, fails = adv.runner(20), adv.raises, adv.fails
local ENOSPC, EROFS, EBADF, EPIPE, ECONNRESET, ENOBUFS = 28, 30, 9, 32, 104, 105

-- mount a small tmpfs at a fresh directory; the spec fails loudly when it
-- cannot (we are root here: a failure is a real problem, not a skip)
local function tmpfs(size)
  local d = adv.tmpdir()
  local out, code = adv.sh(("mount -t tmpfs -o size=%s tmpfs '%s'"):format(size, d))
  assert(code == 0, "cannot mount a tmpfs (needed for the full-disk case): " .. out)
  return d, function()
    local o, c = adv.sh("umount '" .. d .. "'")
    assert(c == 0, "umount failed: " .. o)
    adv.rmrf(d)
  end
end

describe("adversarial faults #io", function()
  describe("an fd closed behind the core's back", function()
    it("a FIFO read pending when close(2) hits its fd: it completes, the file's close fails cleanly", adv.clean(function()
      local px = adv.posix()
      run(function()
        local r, w = adv.pipe()
        local t = uring.spawn(function() return r:read(5) end)
        uring.yield(); uring.yield()
        assert.equal("waiting", t:status())
        assert.is_true(px.close(r:fd()))   -- as a C library would
        -- the kernel's read holds its own reference to the pipe: it goes on
        w:write("hello")
        -- (under SQPOLL the kernel may not have taken the SQE yet: then it
        -- meets the closed fd, EBADF; either way exactly one outcome)
        local ok, a, b, c = t:join()
        assert.is_true(ok)
        if a ~= "hello" then fails("Bad file descriptor", EBADF, a, b, c) end
        -- the core's close now meets EBADF: a fail, never a crash
        fails("Bad file descriptor", EBADF, r:close())
        w:close()
      end)
    end))

    it("a socket receive pending when close(2) hits its fd", adv.clean(function()
      local px = adv.posix()
      run(function()
        local c, s = adv.pair()
        local t = uring.spawn(function() return s:receive() end)
        uring.yield(); uring.yield()
        assert.is_true(px.close(s:fd()))
        c:send("line\n")
        local ok, a, b, e = t:join()
        assert.is_true(ok)
        if a ~= "line" then fails("Bad file descriptor", EBADF, a, b, e) end
        s:close()          -- closes fd -1... or whatever: must not raise
        c:close()
      end)
    end))
  end)

  describe("a peer that goes away", function()
    it("resets mid-send: the sender gets EPIPE or ECONNRESET, not SIGPIPE", adv.clean(function()
      run(function()
        local c, s = adv.pair()
        local sender = uring.spawn(function() return c:send(("x"):rep(16 << 20)) end)
        assert(s:receive(1000))
        -- unread data in its buffer: closing sends an RST, not a FIN
        s:close()
        local ok, n, msg, en = sender:join()
        assert.is_true(ok)
        fails(nil, { EPIPE, ECONNRESET }, n, msg, en)
        c:close()
      end)
    end))

    it("resets mid-receive: the receiver gets ECONNRESET, bytes before it are kept", adv.clean(function()
      run(function()
        local c, s = adv.pair()
        local receiver = uring.spawn(function() return s:receive(1 << 20) end)
        c:send(("y"):rep(1000))
        s:send("unread by c")          -- c never reads it: its close is a reset
        uring.sleep(0.02)
        c:close()
        local ok, a, b, partial = receiver:join()
        assert.is_true(ok)
        assert.is_nil(a)
        -- either the reset or the end of stream, with what arrived
        assert.is_true(b == "Connection reset by peer" or b == "closed", tostring(b))
        if b == "closed" then assert.equal(("y"):rep(1000), partial) end
        s:close()
      end)
    end))

    it("a child process peer killed mid-transfer", adv.clean(function()
      run(function()
        local srv = assert(uring.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        local p = assert(uring.exec { "python3", "-c", ([[
import socket, time
s = socket.create_connection(("127.0.0.1", %d))
s.sendall(b"z" * 100000)
time.sleep(30)]]):format(port), stdout = "null", stderr = "null" })
        local s = assert(srv:accept())
        srv:close()
        assert.equal(100000, #assert(s:receive(100000)))
        local sender = uring.spawn(function()
          local total = 0
          while true do
            local n, msg, en = s:send(("q"):rep(1 << 20))
            if not n then return msg, en, total end
            total = total + n
          end
        end)
        uring.sleep(0.05)
        assert.is_true(p:kill("KILL"))
        assert.same({ nil, "signal", 9 }, { p:wait() })
        local ok, msg, en = sender:join()
        assert.is_true(ok)
        assert.is_string(msg)
        assert.is_true(en == EPIPE or en == ECONNRESET, tostring(en))
        s:close()
      end)
    end))
  end)

  it("ENOBUFS: 600 receives complete at once on 256 provided buffers; no byte lost", adv.clean(function()
    -- all 600 receives must reach the kernel in one submit: a ring large
    -- enough, whatever URING_TEST_RING says (a 4-entry ring reaps, and
    -- so returns buffers, between every 4)
    adv.with_ring(1024, function() run(function()
      local N = 600
      local srv = assert(uring.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local clients, servers = {}, {}
      for i = 1, N do
        clients[i] = assert(uring.connect("127.0.0.1", port))
        servers[i] = assert(srv:accept())
      end
      srv:close()
      -- every peer's data is there before any receive is submitted, so
      -- all N receives find data at once and want a buffer each
      for i = 1, N do assert(clients[i]:send(("%05d"):format(i) .. ("d"):rep(1995))) end
      uring.sleep(0.05)
      local enobufs = 0
      uring.trace(function(e)
        if e.event == "cqe" and e.errno == ENOBUFS then enobufs = enobufs + 1 end
      end)
      local tasks = {}
      for i = 1, N do
        tasks[i] = uring.spawn(function() return servers[i]:receive(2000) end)
      end
      for i = 1, N do
        local ok, data = tasks[i]:join()
        assert.is_true(ok)
        assert.equal(("%05d"):format(i) .. ("d"):rep(1995), data)
      end
      uring.nop()   -- deliver the last trace events
      uring.trace(false)
      assert.is_true(enobufs > 0, "the kernel never ran out of provided buffers")
      for i = 1, N do clients[i]:close(); servers[i]:close() end
    end) end)
  end))

  describe("a full disk (1 MiB tmpfs)", function()
    local d, unmount
    setup(function() d, unmount = tmpfs("1m") end)
    teardown(function() unmount() end)

    it("write, flush, close, pwrite, writefile and copyfile return ENOSPC", adv.clean(function()
      run(function()
        local f = assert(uring.open(d .. "/big", "w"))
        local chunk = ("f"):rep(64 << 10)
        local got
        for _ = 1, 40 do                    -- 2.5 MiB into 1 MiB
          local ok, msg, en = f:write(chunk)
          if not ok then got = { msg, en }; break end
        end
        if not got then
          local ok, msg, en = f:flush()
          assert.is_nil(ok)
          got = { msg, en }
        end
        assert.equal(ENOSPC, got[2])
        assert.matches("No space left on device", got[1])
        -- the file is still usable, and closes (with the error if
        -- something was left buffered)
        local ok, msg, en = f:close()
        assert.is_true(ok == true or en == ENOSPC, tostring(msg))
        local g = assert(uring.open(d .. "/p", "w"))
        fails("No space left on device", ENOSPC, g:pwrite(("p"):rep(2 << 20), 0))
        assert.is_true(g:close())
        fails("No space left on device", ENOSPC, uring.writefile(d .. "/w", ("w"):rep(2 << 20)))
        assert(uring.unlink(d .. "/big")); assert(uring.unlink(d .. "/p"))
        assert(uring.unlink(d .. "/w"))
        -- a source larger than the disk
        local src = adv.tmpdir()
        assert(uring.writefile(src .. "/src", ("c"):rep(3 << 20)))
        fails("No space left on device", ENOSPC, uring.copyfile(src .. "/src", d .. "/copy"))
        adv.rmrf(src)
        assert(uring.unlink(d .. "/copy"))
        -- and once space is back, writing works again
        assert.is_true(uring.writefile(d .. "/ok", "fine"))
        assert.equal("fine", uring.readfile(d .. "/ok"))
      end)
    end))
  end)

  describe("read-only files", function()
    local d, unmount
    setup(function()
      d, unmount = tmpfs("1m")
      local f = assert(io.open(d .. "/ro", "w")); f:write("data"); f:close()
      assert(os.execute("mkdir '" .. d .. "/sub'"))
      local out, code = adv.sh("mount -o remount,ro '" .. d .. "'")
      assert(code == 0, "cannot remount read-only: " .. out)
    end)
    teardown(function() unmount() end)

    it("opening for writing on a read-only file system fails with EROFS", adv.clean(function()
      run(function()
        for _, mode in ipairs { "w", "a", "r+", "w+", "a+" } do
          fails("Read%-only file system", EROFS, uring.open(d .. "/ro", mode))
        end
        fails("Read%-only file system", EROFS, uring.writefile(d .. "/ro", "x"))
        fails("Read%-only file system", EROFS, uring.unlink(d .. "/ro"))
        fails("Read%-only file system", EROFS, uring.mkdir(d .. "/new"))
        fails("Read%-only file system", EROFS, uring.rename(d .. "/ro", d .. "/ro2"))
        fails("Read%-only file system", EROFS, uring.rmdir(d .. "/sub"))
        assert.equal("data", uring.readfile(d .. "/ro"))
      end)
    end))

    it("writing to a file opened for reading fails with EBADF, reading still works", adv.clean(function()
      run(function()
        local f = assert(uring.open(d .. "/ro", "r"))
        fails("Bad file descriptor", EBADF, f:write("x"))
        fails("Bad file descriptor", EBADF, f:pwrite("x", 0))
        assert.equal(f, f:write(""))        -- as io: an empty write is fine
        assert.equal("data", f:read("a"))
        assert.is_true(f:close())
        local w = assert(uring.open(adv.tmpdir() .. "/wo", "w"))
        fails("Bad file descriptor", EBADF, w:read("a"))
        local path = w:close() and nil
        assert.is_nil(path)
      end)
    end))
  end)

  it("EINTR: 50 signals with a handler hit io_uring_enter; nothing is cut short or lost", adv.clean(function()
    local px = adv.posix()
    local hits = px.catch(10)      -- SIGUSR1, no SA_RESTART
    local me = px.getpid()
    local n0 = hits()
    run(function()
      -- a child that signals us while we wait in the kernel
      local p = assert(uring.exec { "sh", "-c",
        ("for i in $(seq 50); do kill -USR1 %d; sleep 0.005; done"):format(me) })
      local t0 = uring.now()
      local sleeper = uring.spawn(function() uring.sleep(0.6); return uring.now() end)
      local count = 0
      local waiter = uring.spawn(function() return p:wait() end)
      while waiter:status() ~= "done" and uring.now() - t0 < 10 do
        assert.is_true(uring.nop())
        count = count + 1
        uring.sleep(0.002)
      end
      assert.is_true(select(2, waiter:join()))
      local _, woke = sleeper:join()
      assert.is_true(woke - t0 >= 0.6 - 1e-3, "a sleep was cut short by EINTR")
      assert.is_true(count > 0)
    end)
    -- every kill was sent before the child ended, and a pending signal is
    -- delivered at our next return from the kernel: none is on its way
    px.uncatch(10)
    -- standard signals coalesce while pending: not all 50 need be seen
    assert.is_true(hits() - n0 >= 10, "only " .. (hits() - n0) .. " signals handled")
  end))

  describe("fork() with the ring open", function()
    it("regression: a forked child's uring.nop segfaulted; now a clear error, and the parent's ring is intact", adv.clean(function()
      local px = adv.posix()
      run(function()
        local r, w = adv.pipe()
        local reader = uring.spawn(function() return r:read(6) end)
        local sleeper = uring.spawn(function() uring.sleep(0.1); return "slept" end)
        uring.yield(); uring.yield()
        local pid = px.fork()
        if pid == 0 then
          -- the child: still inside this task, with the parent's loop
          local code = 0
          local ok, err = pcall(uring.nop)
          if ok or not err:find("a forked child must not use its parent's ring", 1, true) then
            code = 10
          end
          ok, err = pcall(uring.sleep, 0)
          if ok then code = 11 end
          ok, err = pcall(reader.cancel, reader)   -- cancels are dropped
          if not ok then code = 12 end
          px._exit(code)
        end
        assert.same({ "exit", 0 }, { px.waitpid(pid) })
        -- the parent's requests in flight across the fork complete
        w:write("parent")
        assert.same({ true, "parent" }, { reader:join() })
        assert.same({ true, "slept" }, { sleeper:join() })
        assert.is_true(uring.nop())
        r:close(); w:close()
      end)
    end))

    it("regression: a forked child leaving uring.run segfaulted in loop_turn; now run raises the fork error", adv.clean(function()
      local px = adv.posix()
      local pid
      local ok, err = pcall(uring.run, function()
        local t = uring.spawn(uring.sleep, 0.05)
        pid = px.fork()
        if pid == 0 then
          error("child task fails")     -- the child's loop goes on: run raises
        end
        t:join()
      end)
      if pid == 0 then
        -- the child, out of uring.run: exit 20 if it got the fork error
        local good = not ok and tostring(err):find("forked child", 1, true)
        -- lua_close runs every __gc; none may touch the parent's ring
        if good then os.exit(20, true) else os.exit(21, true) end
      end
      assert.is_true(ok, tostring(err))
      assert.same({ "exit", 20 }, { px.waitpid(pid) })
      assert.equal(42, uring.run(function() uring.nop(); return 42 end))
    end))

    it("the teaching ring in a forked child refuses to submit", adv.clean(function()
      local px = adv.posix()
      local r = assert(uring.ring { entries = 4 })
      r:prep_nop(1)
      local pid = px.fork()
      if pid == 0 then
        local ok = pcall(r.submit, r)
        px._exit(ok and 1 or 0)
      end
      assert.same({ "exit", 0 }, { px.waitpid(pid) })
      assert.equal(1, r:submit())
      local res, ud = r:wait_cqe()
      assert.equal(0, res); assert.equal(1, ud)
      r:close()
    end))

    it("a forked child closing the teaching ring lets its copies go; the parent's read goes on", adv.clean(function()
      local px = adv.posix()
      local d = adv.tmpdir()
      assert(os.execute("mkfifo '" .. d .. "/p'"))
      local r = assert(uring.ring { entries = 4 })
      r:prep_openat(nil, d .. "/p", uring.O_RDWR, 0, 1)
      r:submit()
      local fd = r:wait_cqe()
      assert.is_true(fd >= 0)
      local b = uring.buffer(8)
      r:prep_read(fd, b, 8, -1, 2)            -- waits on the empty FIFO
      assert.equal(1, r:submit())
      local pid = px.fork()
      if pid == 0 then
        -- the kernel works on the parent's memory, not on the child's copy:
        -- the child's close gives its copies back at once, leaks nothing
        local t0 = uring.now()
        r:close()
        local ok = b:pinned() == 0 and uring.now() - t0 < 0.5
                   and tostring(r) == "uring.ring (closed)"
        px._exit(ok and 0 or 1)
      end
      assert.same({ "exit", 0 }, { px.waitpid(pid) })
      assert.equal(1, b:pinned())             -- the parent's is intact
      r:prep_write(fd, "parent", nil, -1, 3)
      r:submit()
      local got = {}
      for _ = 1, 2 do
        local res, ud = r:wait_cqe()
        got[ud] = res
      end
      assert.same({ [2] = 6, [3] = 6 }, got)
      assert.equal("parent", b:tostring(1, 6))
      r:prep_close(fd, 4)
      r:submit()
      assert.equal(0, (r:wait_cqe()))
      r:close()
      adv.rmrf(d)
    end))
  end)
end)
