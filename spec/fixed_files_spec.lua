-- spec/fixed_files_spec.lua: uring.configure{fixed_files = N}: every
-- socket kind (TCP accepted and connected, Unix stream, UDP, TLS) goes
-- into a registered file slot and its ops name the slot
-- (IOSQE_FIXED_FILE).  The proof that the slot is what the kernel uses: a
-- socket still sends and receives after its fd number was closed behind
-- its back.  Slots are taken and given back (features().fixed_files.free),
-- by IORING_OP_FILES_UPDATE SQEs or, where the kernel lacks the op, by
-- io_uring_register calls; sockets past N, or on a ring whose table could
-- not be registered, use plain fds; a slot given to a new socket never
-- receives what was meant for the old one.
-- (spec/run.lua also runs the #net specs with URING_TEST_FIXED_FILES=8.)
local uring = require "uring"
local helpers = require "helpers"
local tlsh = require "helpers.tls"

local EBADF = 9
local run = helpers.runner(20)

-- n accepted (server side) and connected (client side) sockets
local function pairs_of(srv, port, n)
  local out = {}
  for i = 1, n do
    local t = uring.spawn(function() return srv:accept() end)
    local c = assert(uring.connect("127.0.0.1", port))
    local ok, s = t:join()
    assert(ok and s, s)
    out[i] = { c = c, s = s }
  end
  return out
end

local listen = helpers.listen

local function free_slots() return uring.features().fixed_files.free end

-- Each kind: make(ctx) -> a, b, cleanup: two ends that talk through
-- a:send/b:receive("*l") and back.  UDP ends are wrapped to look alike.
local function udp_end(u, peer_port)
  return {
    send = function(_, s) return u:sendto(s, "127.0.0.1", peer_port) end,
    receive = function() return (u:recvfrom()):gsub("\n$", "") end,
    fd = function() return u:fd() end,
    close = function() return u:close() end,
  }
end

local kinds = {
  { "TCP", function()
      local srv, port = listen()
      local p = pairs_of(srv, port, 1)[1]
      srv:close()
      return p.c, p.s
    end },
  { "Unix stream", function(ctx)
      local path = ctx.dir .. "/s.sock"
      local srv = assert(uring.listen_unix(path))
      local t = uring.spawn(function() return assert(srv:accept()) end)
      local c = assert(uring.connect_unix(path))
      local _, s = assert(t:join())
      srv:close()
      os.remove(path)
      return c, s
    end },
  { "UDP", function()
      local u1 = assert(uring.udp("127.0.0.1", 0))
      local u2 = assert(uring.udp("127.0.0.1", 0))
      local _, p1 = u1:getsockname()
      local _, p2 = u2:getsockname()
      return udp_end(u1, p2), udp_end(u2, p1)
    end },
  { "TLS", function(ctx)
      local srv = assert(uring.listen("127.0.0.1", 0, { tls = ctx.server }))
      local _, port = srv:getsockname()
      local ct = uring.spawn(function()
        return assert(uring.connect("127.0.0.1", port,
          { tls = ctx.client, servername = "localhost" }))
      end)
      local s = assert(srv:accept())
      srv:close()
      assert(s:send("hello\n"))   -- the server's handshake runs in it
      local _, c = assert(ct:join())
      assert.equal("hello", c:receive("*l"))
      return s, c
    end },
}

describe("configure{fixed_files} #io #net", function()
  local fds0, ctx
  setup(function()
    local D = tlsh.certs() .. "/"
    ctx = {
      server = assert(uring.tls.context{ mode = "server", cert = D .. "srv.pem",
                                         key = D .. "srv.key" }),
      client = assert(uring.tls.context{ mode = "client", ca = D .. "ca.pem" }),
    }
  end)
  teardown(function()
    ctx = nil
    collectgarbage()
    tlsh.cleanup()
  end)
  before_each(function()
    helpers.posix().setenv("URING_TEST_FFILES_REGISTER", nil)
    uring.configure{ fixed_files = 0 }   -- no ring left by an earlier spec:
    fds0 = helpers.fd_count()            -- after_each tears ours down too
  end)
  after_each(function()
    helpers.posix().setenv("URING_TEST_FFILES_REGISTER", nil)
    uring.configure{ fixed_files = 0 }
    collectgarbage()
    assert.equal(0, uring.stats().inflight)
    assert.equal(fds0, helpers.fd_count())
  end)

  for _, mode in ipairs { "sqe", "register" } do
    for _, kind in ipairs(kinds) do
      local name, make = kind[1], kind[2]
      it(("%s: both ends use their slots (installed by %s) and give them back"):format(name, mode), function()
        helpers.posix().setenv("URING_TEST_FFILES_REGISTER", mode == "register" and "1" or nil)
        uring.configure{ fixed_files = 4 }
        local dir = helpers.tmpdir()
        ctx.dir = dir
        run(function()
          assert.equal(mode, uring.features().fixed_files.install)
          assert.equal(4, free_slots())
          local a, b = make(ctx)
          assert.equal(2, uring.stats().fixed_files)
          assert.equal(2, free_slots())
          assert(a:send("one\n"))
          assert.equal("one", b:receive("*l"))
          -- the slots hold the files: close both fd numbers behind the
          -- sockets' backs, and they still talk, both ways
          local posix = helpers.posix()
          local fa, fb = a:fd(), b:fd()
          assert(posix.close(fa)); assert(posix.close(fb))
          assert(a:send("two\n"))
          assert.equal("two", b:receive("*l"))
          assert(b:send("three\n"))
          assert.equal("three", a:receive("*l"))
          -- (their closes meet EBADF on the fds, which nothing took since)
          pcall(a.close, a); pcall(b.close, b)
          uring.sleep(0)                  -- the removals ride on an enter
          assert.equal(0, uring.stats().fixed_files)
          assert.equal(4, free_slots())
        end)
        helpers.rmrf(dir)
      end)
    end
  end

  it("without slots an op on a closed fd number fails with EBADF (the control)", function()
    run(function()
      local srv, port = listen()
      local p = pairs_of(srv, port, 1)[1]
      assert(p.c:send("x\n"))
      uring.sleep(0.01)
      assert(helpers.posix().close(p.s:fd()))
      local a, msg, errno = p.s:receive("*l")
      assert.is_nil(a)
      assert.equal("string", type(msg))
      assert.equal(EBADF, errno)
      pcall(p.s.close, p.s)
      p.c:close()
      srv:close()
    end)
  end)

  it("sendfile, SEND_ZC and shutdown go through the slot", function()
    uring.configure{ fixed_files = 4, send_zc = 65536 }
    local dir = helpers.tmpdir()
    local body = helpers.random_bytes(300000)
    helpers.writeall(dir .. "/f", body)
    run(function()
      local srv, port = listen()
      local p = pairs_of(srv, port, 1)[1]
      srv:close()
      local f = assert(uring.open(dir .. "/f"))
      local got = uring.spawn(function() return p.c:receive("*a") end)
      -- small: one sendmsg(2) on the fd, or a READ linked to a SEND on the
      -- slot; large: sendfile(2) on the fd
      assert.equal(100, p.s:sendfile(f, 0, 100))
      assert.equal(#body - 100, p.s:sendfile(f, 100))
      assert(helpers.posix().close(p.s:fd()))   -- only the slot is left
      -- sendfile(2) cannot name a slot: SPLICE pairs into the slot
      assert.equal(#body, p.s:sendfile(f, 0))
      local zc = uring.stats().send_zc
      assert.equal(#body, p.s:send(body))
      assert.is_true(uring.stats().send_zc > zc)
      assert(p.s:shutdown("send"))             -- the FIN, through the slot too
      local _, data = assert(got:join())
      pcall(p.s.close, p.s)
      assert.equal(#body * 3, #data)
      assert.is_true(data == body .. body .. body)
      f:close(); p.c:close()
    end)
    uring.configure{ send_zc = false }
    helpers.rmrf(dir)
  end)

  it("takes connected and accepted sockets into slots, uses plain fds past N, gives slots back on close", function()
    uring.configure{ fixed_files = 3 }
    run(function()
      local ff = uring.features().fixed_files
      assert.same({ count = 3, wanted = 3, free = 3, install = "sqe" }, ff)
      local srv, port = listen()
      local ps = pairs_of(srv, port, 5)
      assert.equal(3, uring.stats().fixed_files)     -- 7 sockets went plain
      assert.equal(0, free_slots())
      for i, p in ipairs(ps) do                      -- both kinds work
        assert(p.c:send(("line %d\n"):format(i)))
        assert.equal(("line %d"):format(i), p.s:receive("*l"))
        assert(p.s:send(("back %d\n"):format(i)))
        assert.equal(("back %d"):format(i), p.c:receive("*l"))
      end
      ps[1].c:close()                                -- through the ring
      assert.equal(2, uring.stats().fixed_files)
      local q = pairs_of(srv, port, 1)[1]            -- takes the freed slot
      assert.equal(3, uring.stats().fixed_files)
      q.s:close(); q.c:close()
      ps[1].s:close()
      ps[2].c = nil
      collectgarbage()                               -- __gc gives it back
      for i = 1, 5 do
        if ps[i].s then ps[i].s:close() end
        if ps[i].c then ps[i].c:close() end
      end
      uring.sleep(0)
      assert.equal(0, uring.stats().fixed_files)
      assert.equal(3, free_slots())
      srv:close()
    end)
  end)

  -- The fd-reuse flaw in slot form: a socket closed while its receive is
  -- in flight keeps its slot until that receive's last CQE; the next
  -- socket gets the slot only after, and the old peer's bytes never
  -- reach it.
  for _, mode in ipairs { "sqe", "register" } do
    it("a slot reused by a new socket never gets the old socket's bytes (" .. mode .. ")", function()
      helpers.posix().setenv("URING_TEST_FFILES_REGISTER", mode == "register" and "1" or nil)
      uring.configure{ fixed_files = 1 }
      run(function()
        local srv, port = listen()
        for round = 1, 40 do
          local p = pairs_of(srv, port, 1)[1]      -- p.c took the one slot
          assert.equal(0, free_slots())
          local r = uring.spawn(function() return p.c:receive(5) end)
          uring.yield()                            -- the receive is in flight
          p.c:close()                              -- cancels it
          assert(p.s:send("OLD!!" .. round))       -- may race the cancel
          local _, got, msg = r:join()
          assert.is_true(got == nil and msg == "closed" or got == "OLD!!", tostring(got))
          while free_slots() == 0 do uring.sleep(0.001) end
          local q = pairs_of(srv, port, 1)[1]      -- q.c takes the slot now
          assert.equal(0, free_slots())
          assert(q.s:send("new " .. round .. "\n"))
          pcall(p.s.send, p.s, "late\n")           -- to the closed socket
          assert.equal("new " .. round, q.c:receive("*l"))
          q.s:close()
          assert.equal("", q.c:receive("*a"))      -- nothing else came
          p.s:close(); q.c:close()
        end
        srv:close()
        uring.sleep(0)
        assert.equal(1, free_slots())
      end)
    end)
  end

  it("a forked child closing the sockets leaves the parent's slots alone", function()
    uring.configure{ fixed_files = 4 }
    local px = helpers.posix()
    run(function()
      local srv, port = listen()
      local p = pairs_of(srv, port, 1)[1]
      srv:close()
      assert.equal(2, uring.stats().fixed_files)
      assert(p.c:send("hi\n"))         -- (the installs went in with it)
      assert.equal("hi", p.s:receive("*l"))
      local pid = px.fork()
      if pid == 0 then                  -- the child: its copies of the fds
        pcall(p.c.close, p.c); pcall(p.s.close, p.s)
        p.c, p.s = nil, nil
        collectgarbage()
        px._exit(0)
      end
      assert.same({ "exit", 0 }, { px.waitpid(pid) })
      -- only the slots are left: had the child emptied them, EBADF
      assert(px.close(p.c:fd())); assert(px.close(p.s:fd()))
      assert(p.c:send("still here\n"))
      assert.equal("still here", p.s:receive("*l"))
      pcall(p.c.close, p.c); pcall(p.s.close, p.s)
    end)
  end)

  it("works with the loop driven by uring.step (closing in a task, and outside one)", function()
    uring.configure{ fixed_files = 4 }
    local done = {}
    local t = uring.spawn(function()
      local srv, port = listen()
      local p = pairs_of(srv, port, 2)
      srv:close()
      for i, q in ipairs(p) do
        assert(q.c:send("step " .. i .. "\n"))
        assert.equal("step " .. i, q.s:receive("*l"))
      end
      p[1].s:close()                     -- through the ring, in a task
      assert.equal("", p[1].c:receive("*a"))
      p[1].c:close()
      done.p2 = p[2]
      return "ok"
    end)
    local deadline = uring.now() + 10
    while t:status() ~= "done" and t:status() ~= "failed" and uring.now() < deadline do
      uring.step(0.05)
    end
    assert.same({ true, "ok" }, { t:join() })
    assert.equal(2, uring.stats().fixed_files)
    done.p2.s:close()                    -- outside any task: submitted at once
    assert.equal(1, uring.stats().fixed_files)
    local r = uring.spawn(function() return done.p2.c:receive("*a") end)
    deadline = uring.now() + 10
    while r:status() ~= "done" and r:status() ~= "failed" and uring.now() < deadline do
      uring.step(0.05)
    end
    assert.same({ true, "" }, { r:join() })
    done.p2.c:close()
    while uring.step(0.01) do end
    assert.equal(0, uring.stats().fixed_files)
    assert.equal(4, free_slots())
  end)

  it("leaves a socket from an earlier ring on its plain fd", function()
    uring.configure{ fixed_files = 2 }
    local old
    run(function()
      local srv, port = listen()
      old = pairs_of(srv, port, 1)[1]
      assert.equal(2, uring.stats().fixed_files)
      srv:close()
    end)
    uring.configure{ fixed_files = 2 }               -- a new ring, new slots
    run(function()
      local srv, port = listen()
      local new = pairs_of(srv, port, 1)[1]
      assert.equal(2, uring.stats().fixed_files)     -- the new sockets'
      assert(old.c:send("old\n"))
      assert.equal("old", old.s:receive("*l"))       -- by its fd
      old.s:close(); old.c:close()                   -- free no new slot
      uring.sleep(0)
      assert.equal(2, uring.stats().fixed_files)
      assert(new.c:send("new\n"))
      assert.equal("new", new.s:receive("*l"))
      new.s:close(); new.c:close()
      uring.sleep(0)
      assert.equal(0, uring.stats().fixed_files)
      srv:close()
    end)
  end)

  it("echoes 100 connections with 16 slots, fixed and plain mixed", function()
    uring.configure{ fixed_files = 16 }
    run(function()
      local srv, port = listen()
      local server = uring.spawn(function()
        for _ = 1, 100 do
          local s = assert(srv:accept())
          uring.spawn(function()
            for line in s:lines() do assert(s:send(line .. "\n")) end
            s:close()
          end)
        end
      end)
      local clients = {}
      for i = 1, 100 do
        clients[i] = uring.spawn(function()
          local c = assert(uring.connect("127.0.0.1", port))
          for j = 1, 20 do
            assert(c:send(("%d.%d\n"):format(i, j)))
            assert.equal(("%d.%d"):format(i, j), c:receive("*l"))
          end
          c:close()
        end)
      end
      for i = 1, 100 do assert(clients[i]:join()) end
      assert(server:join())
      srv:close()
      while uring.stats().fixed_files > 0 do uring.sleep(0.01) end
      assert.equal(16, free_slots())
    end)
  end)

  local ECHO = [[
    local uring = require "uring"
    uring.run(function()
      local f = uring.features().fixed_files
      local srv = assert(uring.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local t = uring.spawn(function() return assert(srv:accept()) end)
      local c = assert(uring.connect("127.0.0.1", port))
      local _, s = assert(t:join())
      assert(c:send("hi\n")); assert(s:receive("*l") == "hi")
      print(f.count, f.free, f.install, f.error, uring.stats().fixed_files)
      c:close(); s:close(); srv:close()
    end)
  ]]

  it("uses plain fds when the table cannot be registered, and features() says why", function()
    -- the kernel refuses a table larger than RLIMIT_NOFILE (EMFILE)
    local out, code = helpers.sh("ulimit -n 64 && URING_TEST_FIXED_FILES=100 "
      .. helpers.lua_cmd() .. " -e " .. helpers.shq(ECHO))
    assert.equal(0, code, out)
    assert.equal("0\t0\tnil\tToo many open files\t0\n", out)
  end)

  it("installs by io_uring_register where the kernel lacks IORING_OP_FILES_UPDATE", function()
    local out, code = helpers.faulty(ECHO,
      "URING_TEST_FIXED_FILES=5 URING_FAULT_MASK_OPS=files_update")
    assert.equal(0, code, out)
    assert.equal("5\t5\tregister\tnil\t2\n", out)
  end)

  it("takes its default from URING_TEST_FIXED_FILES (bench/http.sh, spec/run.lua)", function()
    local out, code = helpers.sh("URING_TEST_FIXED_FILES=5 " .. helpers.lua_cmd()
      .. [[ -e 'local u = require "uring"; local f = u.features().fixed_files;]]
      .. [[ print(f.wanted, f.count, f.free)']])
    assert.equal(0, code, out)
    assert.equal("5\t5\t5\n", out)
  end)

  it("raises on a bad fixed_files", function()
    for bad, why in pairs { [-1] = "must be in 0%.%.65536", [65537] = "must be in 0%.%.65536",
                            [1.5] = "must be an integer", ["8"] = "must be an integer" } do
      local ok, e = pcall(uring.configure, { fixed_files = bad })
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[%w.]*configure' %(fixed_files " .. why, e)
    end
  end)
end)
