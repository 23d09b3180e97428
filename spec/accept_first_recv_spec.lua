-- Accept and first receive without a task switch (issue 17): when the
-- ACCEPT of a listener made with opts.first_recv completes, the core
-- queues the connection's first RECV at once (csrc/net.c, early_recv);
-- the socket accept() makes adopts it.  These check the bytes it brings
-- are whole and in order for every way of receiving, that a connection
-- never taken, closed, cancelled or moved leaves no fd, request or byte
-- behind, that a plain listener queues none, and that sock:fd() settles
-- it first, so a reader of the fd gets every byte sent after.
local uring = require "uring"
local core = require "uring.core"
local helpers = require "helpers"

local run = helpers.runner(30)
local ETIME = uring.errno.ETIME

-- a listener whose connections come with their first RECV queued
local function listen() return helpers.listen(nil, { first_recv = true }) end

-- the fd number, without settling the early RECV as sock:fd() does (a
-- test that needs that RECV still in flight)
local function fd_quietly(s) return tonumber(tostring(s):match("fd (%d+)")) end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- A client that sends `data` the moment it is connected; then, with
-- `hold`, waits for the server to close (so its FIN comes from us last).
local function client(port, data, hold)
  return uring.spawn(function()
    local c = assert(uring.connect("127.0.0.1", port))
    if data then assert(c:send(data)) end
    if hold then c:receive("*a") end
    c:close()
  end)
end

-- 100 KiB of a pattern whose every offset is visible: a reordered or lost
-- chunk cannot compare equal
-- Count the RECV SQEs prepared from now on, by fd, in the table returned
-- (the early one included: the reaper prepares it, for "task 0"); events
-- reach it at the start of the next loop turn.  stop() ends the count.
local function count_recvs()
  local by_fd = {}
  uring.trace(function(e)
    if e.event == "sqe" and e.op == "recv" then by_fd[e.fd] = (by_fd[e.fd] or 0) + 1 end
  end)
  return by_fd, function() uring.yield(); uring.trace(false) end
end

local function pattern(n)
  local t = {}
  for i = 1, n // 8 do t[i] = ("%07d\n"):format(i) end
  return table.concat(t)
end

describe("accept's early receive #io #net", function()
  helpers.leak_check(before_each, after_each)

  it("gives receive('*l') and receive(n) the bytes sent at connect, in order", function()
    run(function()
      local srv, port = listen()
      local big = pattern(100000)
      local t = client(port, "first line\r\n" .. big .. "tail", true)
      uring.sleep(0.05)           -- the ACCEPT and its early RECV both back
      local s = assert(srv:accept())
      assert.equal("first line", s:receive("*l"))
      assert.equal(big, s:receive(#big))
      assert.equal("tail", s:receive(4))
      s:close()
      srv:close()
      assert(t:join())
    end)
  end)

  it("buffers the first bytes before accept: the first receive queues no SQE", function()
    run(function()
      local srv, port = listen()
      local t = client(port, "hello\nworld!", true)
      local recvs, stop = count_recvs()
      uring.sleep(0.05)
      local s = assert(srv:accept())
      uring.yield()
      local before = copy(recvs)
      assert.equal("hello", s:receive("*l"))
      assert.equal("world!", s:receive(6))
      stop()
      assert.equal(1, before[s:fd()])   -- queued when the ACCEPT completed
      assert.equal(1, recvs[s:fd()])    -- and no other
      s:close()
      srv:close()
      assert(t:join())
    end)
  end)

  it("lets the first receive wait on the early RECV when the client speaks late", function()
    run(function()
      local srv, port = listen()
      local t = uring.spawn(function()
        local c = assert(uring.connect("127.0.0.1", port))
        uring.sleep(0.05)
        assert(c:send("late\n"))
        assert.equal("bye", c:receive("*l"))
        c:close()
      end)
      local recvs, stop = count_recvs()
      local s = assert(srv:accept())
      uring.sleep(0.01)           -- its early RECV is in flight, no bytes yet
      local before = copy(recvs)
      assert.equal("late", s:receive("*l"))
      stop()
      assert.equal(1, before[s:fd()])
      assert.equal(1, recvs[s:fd()])   -- it waited on that RECV
      assert(s:send("bye\n"))
      s:close()
      srv:close()
      assert(t:join())
    end)
  end)

  it("gives receive_head the request sent at connect", function()
    run(function()
      local srv, port = listen()
      local t = client(port, "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz", true)
      uring.sleep(0.05)
      local s = assert(srv:accept())
      local method, target, path, query, v10, _, keep, length = s:receive_head()
      assert.same({ "GET", "/a?b=1", "/a", "b=1", false, true, 3 },
        { method, target, path, query, v10, keep, length })
      assert.equal("xyz", s:receive(3))
      s:close()
      srv:close()
      assert(t:join())
    end)
  end)

  it("serves uring.http requests sent at connect, one per connection", function()
    run(function()
      local http = uring.http
      local r = http.router()
      r:get("^/n/(%d+)$", function(_, _, n) return 200, "n=" .. n end)
      local srv = assert(http.server { routes = r })
      local st = uring.spawn(srv.serve, srv)
      for i = 1, 20 do
        local c = assert(uring.connect("127.0.0.1", srv:port()))
        assert(c:send(("GET /n/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):format(i)))
        local resp = c:receive("*a")
        assert.matches("^HTTP/1.1 200", resp)
        assert.matches("n=" .. i .. "$", resp)
        c:close()
      end
      srv:close()
      assert(st:join())
    end)
  end)

  it("finds EOF in the first receive when the peer closes at once", function()
    run(function()
      local srv, port = listen()
      local t = client(port, nil, false)
      assert(t:join())
      uring.sleep(0.02)
      local s = assert(srv:accept())
      local a, msg, partial = s:receive("*l")
      assert.same({ nil, "closed", "" }, { a, msg, partial })
      s:close()
      srv:close()
    end)
  end)

  it("a client that never speaks: the RECV in flight ends with the server's close", function()
    run(function()
      local base = uring.stats().inflight
      local srv, port = listen()
      local t = client(port, nil, true)
      local s = assert(srv:accept())
      uring.sleep(0.01)
      assert.is_true(uring.stats().inflight > base + 1)   -- ACCEPT and RECV
      s:close()
      assert(t:join())
      srv:close()
      uring.sleep(0.01)
      assert.equal(base, uring.stats().inflight)
    end)
  end)

  it("a settimeout'd first receive times out and loses nothing", function()
    run(function()
      local srv, port = listen()
      local t = uring.spawn(function()
        local c = assert(uring.connect("127.0.0.1", port))
        uring.sleep(0.15)
        assert(c:send("after the timeout\n"))
        c:receive("*a")
        c:close()
      end)
      local s = assert(srv:accept())
      s:settimeout(0.05)
      helpers.fails("timeout", ETIME, s:receive("*l"))
      s:settimeout(nil)
      assert.equal("after the timeout", s:receive("*l"))
      s:close()
      srv:close()
      assert(t:join())
    end)
  end)

  it("closes connections never taken, with their early RECVs, when the listener closes", function()
    run(function()
      local srv, port = listen()
      local fds = helpers.fd_count()
      local ts = {}
      for i = 1, 6 do     -- half speak first, half never do
        ts[i] = client(port, i % 2 == 0 and "unread bytes" or nil, true)
      end
      uring.sleep(0.05)          -- six accepted, none taken
      assert.is_true(helpers.fd_count() >= fds + 12)
      srv:close()
      for _, t in ipairs(ts) do assert(t:join()) end   -- each saw its FIN
      uring.sleep(0.01)
      assert.equal(fds - 1, helpers.fd_count())
    end)
  end)

  it("a collected listener closes its untaken connections too", function()
    run(function()
      local _, port
      do
        local srv
        srv, port = listen()
        local ts = { client(port, "x", true), client(port, nil, true) }
        uring.sleep(0.05)
        srv = nil                 -- never closed, never accepted
        collectgarbage(); collectgarbage()
        for _, t in ipairs(ts) do assert(t:join()) end
      end
    end)
  end)

  it("cancel of the accepting task leaves the connection to the next accept", function()
    run(function()
      local srv, port = listen()
      local acceptor = uring.spawn(function() uring.sleep(10); return srv:accept() end)
      uring.yield()
      local t = client(port, "for whoever takes it\n", true)
      uring.sleep(0.05)
      acceptor:cancel()
      assert.equal("canceled", select(2, acceptor:join()))
      local s = assert(srv:accept())
      assert.equal("for whoever takes it", s:receive("*l"))
      s:close()
      srv:close()
      assert(t:join())
    end)
  end)

  it("cancel of a task waiting on the early RECV: the next receive still gets the bytes", function()
    run(function()
      local srv, port = listen()
      local t = uring.spawn(function()
        local c = assert(uring.connect("127.0.0.1", port))
        uring.sleep(0.08)
        assert(c:send("later\n"))
        c:receive("*a")
        c:close()
      end)
      local s = assert(srv:accept())
      local r = uring.spawn(function() return s:receive("*l") end)
      uring.sleep(0.02)
      r:cancel()
      assert.equal("canceled", select(2, r:join()))
      assert.equal("later", s:receive("*l"))
      s:close()
      srv:close()
      assert(t:join())
    end)
  end)

  it("a connection closed with its early RECV in flight: its fd's next owner gets its own bytes", function()
    run(function()
      local srv, port = listen()
      local reused = 0
      for round = 1, 100 do
        local a = client(port, nil, true)      -- A never speaks
        local sa = assert(srv:accept())
        local num = fd_quietly(sa)
        if round % 3 == 1 then uring.yield() end   -- its RECV submitted
        sa:close()                 -- with its early RECV in flight
        if round % 3 == 2 then uring.sleep(0.002) end   -- the number freed
        local b = client(port, "B" .. round .. "\n", true)
        local sb = assert(srv:accept())
        if fd_quietly(sb) == num then reused = reused + 1 end
        -- a RECV left on the number would take these and hang this
        assert.equal("B" .. round, sb:receive("*l"))
        sb:close()
        assert(a:join())
        assert(b:join())
      end
      srv:close()
      print(("accept_first_recv_spec: fd reuse: 100 rounds, closed number reused in %d")
        :format(reused))
    end)
  end)

  it("an accepted socket moved to another worker takes its early bytes along, or its RECV is settled first", function()
    local out, status = helpers.child([[
      local uring = require "uring"
      io.stdout:setvbuf("line")
      local ok = uring.workers(3, function(i, pid, ch)
        if i == 1 then                          -- accepts, moves at once
          local srv = assert(uring.listen("127.0.0.1", 0, { first_recv = true }))
          local _, port = srv:getsockname()
          assert(ch:send(3, tostring(port)))
          local a = assert(srv:accept())        -- its client spoke at once
          uring.sleep(0.05)                     -- the early RECV is back
          assert(ch:send(2, a))
          local b = assert(srv:accept())        -- its client waits for "moved"
          uring.sleep(0.02)                     -- the early RECV in flight
          assert(ch:send(2, b))
          assert(ch:send(3, "moved"))
          srv:close()
        elseif i == 2 then                      -- reads both
          for _ = 1, 2 do
            local _, c = ch:receive()
            local line = assert(c:receive("*l"))
            assert(c:send("got " .. line .. "\n"))
            c:close()
          end
        else                                    -- the clients
          local _, port = ch:receive()
          local a <close> = assert(uring.connect("127.0.0.1", tonumber(port)))
          assert(a:send("spoke first\n"))
          local b <close> = assert(uring.connect("127.0.0.1", tonumber(port)))
          assert(select(2, ch:receive()) == "moved")
          assert(b:send("spoke after the move\n"))
          io.write(assert(a:receive("*l")), "\n", assert(b:receive("*l")), "\n")
        end
      end)
      io.write("all ", tostring(ok), "\n")
    ]])
    assert(status == 0, "child failed:\n" .. out)
    assert.matches("got spoke first\ngot spoke after the move\nall true", out)
  end)
  it("is opt-in: a plain listener queues no RECV before the first receive", function()
    run(function()
      local srv, port = helpers.listen()
      local recvs, stop = count_recvs()
      assert(client(port, "hello\n", false):join())
      uring.sleep(0.05)           -- an early RECV would be back by now
      local s = assert(srv:accept())
      uring.sleep(0.01)
      local before = copy(recvs)
      assert.equal("hello", s:receive("*l"))
      stop()
      assert.same({}, before)     -- none, on any fd
      assert.equal(1, recvs[s:fd()])
      s:close()
      srv:close()
    end)
  end)

  it("raises for a first_recv that is not a boolean", function()
    run(function()
      local e = helpers.errmsg(uring.listen, "127.0.0.1", 0, { first_recv = 1 })
      assert.matches(helpers.badarg(3, "listen", "first_recv must be a boolean, got number"), e)
    end)
  end)

  it("sock:fd() settles the early RECV: a ring reading the fd gets every byte sent after", function()
    run(function()
      local srv, port = listen()
      local ring = assert(core.ring { entries = 8 })
      for round = 1, 20 do
        local c = assert(uring.connect("127.0.0.1", port))
        local s = assert(srv:accept())
        -- its early RECV not yet submitted, or submitted and waiting
        if round % 2 == 0 then uring.sleep(0.001) end
        local fd = s:fd()
        -- the client's bytes go through the ring too: a send of the loop's
        -- own would wait for its next enter, and this thread blocks below
        local data = pattern(3000) .. round
        local buf = core.buffer(#data)
        ring:prep_send(c:fd(), data, #data, 0, 1)
        ring:prep_recv(fd, buf, #data, core.MSG_WAITALL, 2)
        assert.equal(2, ring:submit())
        local got = {}
        for _ = 1, 2 do
          local res, ud = ring:wait_cqe(5)  -- a byte taken would hang it
          assert(res, ud)
          got[ud] = res
        end
        assert.same({ #data, #data }, got)
        assert.equal(data, buf:tostring())
        c:close()
        s:close()
      end
      ring:close()
      srv:close()
    end)
  end)

  it("sock:fd() while a receive with a time limit waits on the early RECV leaves that receive whole", function()
    run(function()
      local srv, port = listen()
      local c = assert(uring.connect("127.0.0.1", port))
      local s = assert(srv:accept())
      s:settimeout(2)
      -- r cancels the early RECV (for its timer) and waits for its CQE;
      -- f runs in that same turn: the RECV is r's now, not fd()'s
      local r = uring.spawn(function() return s:receive("*l") end)
      local f = uring.spawn(function() return s:fd() end)
      local _, fd = assert(f:join())
      assert.is_true(fd >= 0)
      uring.sleep(0.05)
      assert(c:send("late\n"))
      assert.same({ true, "late" }, { r:join() })
      c:close()
      s:close()
      srv:close()
    end)
  end)

  it("sock:fd() leaves what the early RECV brought to receive", function()
    run(function()
      local srv, port = listen()
      local c = assert(uring.connect("127.0.0.1", port))
      assert(c:send("before fd\n"))
      local s = assert(srv:accept())
      uring.sleep(0.05)           -- the early RECV has the line
      local fd = s:fd()
      local ring = assert(core.ring { entries = 8 })
      local buf = core.buffer(5)
      ring:prep_send(c:fd(), "after", 5, 0, 1)
      ring:prep_recv(fd, buf, 5, core.MSG_WAITALL, 2)
      assert.equal(2, ring:submit())
      local got = {}
      for _ = 1, 2 do
        local res, ud = ring:wait_cqe(5)
        assert(res, ud)
        got[ud] = res
      end
      assert.same({ 5, 5 }, got)
      assert.equal("after", buf:tostring())
      ring:close()
      assert.equal("before fd", s:receive("*l"))
      c:close()
      s:close()
      srv:close()
    end)
  end)

  it("sock:fd() outside uring.run settles it too: 1 MiB through a ring, MSG_WAITALL", function()
    local c, s, srv = run(function()
      local srv, port = listen()
      local t = uring.spawn(function() return srv:accept() end)
      local c = assert(uring.connect("127.0.0.1", port))
      local _, s = assert(t:join())
      return c, s, srv
    end)
    -- uring.run has returned with s's early RECV in flight (and the
    -- listener's ACCEPT): fd() cancels the RECV and waits for its CQE
    local inflight = uring.stats().inflight
    local a, b = c:fd(), s:fd()
    assert.equal(inflight - 1, uring.stats().inflight)
    local N = 1 << 20
    local data = pattern(N)
    local out, into = core.buffer(N), core.buffer(N)
    out:write(data)
    local ring = assert(core.ring { entries = 8 })
    ring:prep_send(a, out, N, 0, 1)
    ring:prep_recv(b, into, N, core.MSG_WAITALL, 2)
    assert.equal(2, ring:submit())
    local got = {}
    for _ = 1, 2 do
      local res, ud = ring:wait_cqe(5)
      assert(res, ud)
      got[ud] = res
    end
    assert.same({ N, N }, got)
    assert.equal(data, into:tostring())
    ring:close()
    run(function() c:close(); s:close(); srv:close() end)
  end)

  it("sock:fd() on a closed socket raises, its early RECV settled by the close", function()
    run(function()
      local srv, port = listen()
      local c = assert(uring.connect("127.0.0.1", port))
      local s = assert(srv:accept())
      s:close()
      assert.matches("attempt to use a closed socket", helpers.errmsg(s.fd, s))
      c:close()
      srv:close()
    end)
  end)
  it("early RECVs that find the group dry at its cap: the first receive brings its own buffer, nothing lost", function()
    -- the child (build-asan): the group may hold 16 buffers and every one
    -- the core gives back is kept (uring.faults.bufring), so of N early
    -- RECVs whose clients spoke at once, the ones after the 16th are
    -- answered ENOBUFS; their first receive must bring a buffer of its
    -- own, not ask the dry group again and again
    local out, status = helpers.faulty([=[
      local uring = require "uring"
      local helpers = require "helpers"
      local N, LEN = 40, 40000
      local function stream(i)
        local parts = {}
        for k = 1, LEN // 20 do parts[k] = ("%05d:%013d|"):format(i, k) end
        return table.concat(parts)
      end
      uring.configure { entries = 256 }
      require("uring.faults").bufring { max = 16, hold = true }
      local enobufs, recvs = 0, 0
      helpers.runner(10)(function()
        uring.trace(function(e)
          if e.event == "cqe" and e.op == "recv" then
            recvs = recvs + 1
            if e.errno == uring.errno.ENOBUFS then enobufs = enobufs + 1 end
          end
        end)
        local srv = assert(uring.listen("127.0.0.1", 0, { first_recv = true }))
        local _, port = srv:getsockname()
        local cs = {}
        for i = 1, N do
          cs[i] = assert(uring.connect("127.0.0.1", port))
          assert(cs[i]:send(stream(i)))
        end
        uring.sleep(0.1)            -- every early RECV back, none taken
        uring.nop()
        local early = enobufs
        local ss = {}
        for i = 1, N do ss[i] = assert(srv:accept()) end
        srv:close()
        local rs = {}
        for i = 1, N do rs[i] = uring.spawn(function() return ss[i]:receive(LEN) end) end
        for i = 1, N do
          local ok, got = rs[i]:join()
          assert(ok and got == stream(i), "socket " .. i .. ": bytes lost or out of order")
        end
        uring.nop()
        uring.trace(false)
        print("early enobufs", early, "enobufs", enobufs, "recvs", recvs)
        assert(early > 0, "no early RECV found the group dry")
        -- at most one ENOBUFS per receive that then brought its own buffer
        assert(enobufs <= recvs - enobufs, "receives were answered ENOBUFS again and again")
        for i = 1, N do cs[i]:close(); ss[i]:close() end
        -- the consumer lets go (the hook's list of held buffers is freed)
        require("uring.faults").bufring { hold = false }
      end)
      assert(uring.stats().inflight == 0)
      print("ok")
    ]=])
    assert(status == 0 and out:match("\nok\n?$"), "the child failed:\n" .. out)
    assert.matches("early enobufs\t[1-9]", out)
  end)
  it("a TLS listener queues none, even with first_recv: OpenSSL reads the first bytes", function()
    local tlsh = require "helpers.tls"
    local D = tlsh.certs() .. "/"
    finally(tlsh.cleanup)
    run(function()
      local sctx = assert(uring.tls.context { mode = "server", cert = D .. "srv.pem", key = D .. "srv.key" })
      local cctx = assert(uring.tls.context { mode = "client", ca = D .. "ca.pem" })
      local srv = assert(uring.listen("127.0.0.1", 0, { tls = sctx, first_recv = true }))
      local _, port = srv:getsockname()
      local recvs, stop = count_recvs()
      local t = uring.spawn(function()
        local c = assert(uring.connect("127.0.0.1", port, { tls = cctx, servername = "localhost" }))
        assert(c:send("over tls\n"))
        assert.equal("back", c:receive("*l"))
        c:close()
      end)
      local s = assert(srv:accept())
      uring.sleep(0.05)           -- the ClientHello is there: an early RECV would have it
      local before = copy(recvs)
      assert.is_nil(before[fd_quietly(s)])
      assert.equal("over tls", s:receive("*l"))
      assert(s:send("back\n"))
      stop()
      assert(t:join())
      s:close()
      srv:close()
    end)
  end)
end)
