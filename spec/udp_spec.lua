-- spec/udp_spec.lua: uring.udp and its methods over loopback.  For each
-- API: it works; bad arguments raise the right message; an OS failure
-- returns nil, "msg", errno.  After each test nothing is in flight and no
-- descriptor leaked (a socket, an eventfd of a lookup).
local uring = require "uring"
local helpers = require "helpers"

local EBADF, EINVAL, EMSGSIZE, EADDRINUSE, ETIME, EHOSTUNREACH =
  9, 22, 90, 98, 62, 113

local fds = helpers.fds   -- collects garbage first (a dropped socket)
local errmsg, badarg = helpers.errmsg, helpers.badarg

-- A bound socket and the port the kernel gave it.
local function bound (host)
  local u = assert(uring.udp(host, 0))
  local _, port = u:getsockname()
  return u, port
end

describe("uring.udp #io #net", function()
  local before
  before_each(function()
    uring.run(function() end)   -- the ring's own fd is not a leak
    before = fds()
  end)
  after_each(function()
    assert.equal(0, uring.stats().inflight)
    assert.equal(before, fds())
  end)

  it("binds 127.0.0.1 port 0; getsockname gives the real port", function()
    uring.run(function()
      local u <close> = assert(uring.udp("127.0.0.1", 0))
      local host, port = u:getsockname()
      assert.equal("127.0.0.1", host)
      assert.is_true(port > 0 and port < 65536)
      assert.is_true(u:fd() >= 0)
      assert.matches("^uring%.udp %(inet, fd %d+%)$", tostring(u))
    end)
  end)

  it("makes an unbound IPv4 socket with no arguments", function()
    uring.run(function()
      local u = assert(uring.udp())
      assert.matches("inet,", tostring(u))
      local host, port = u:getsockname()
      assert.equal("0.0.0.0", host)
      assert.equal(0, port)
      u:close()
    end)
  end)

  for _, host in ipairs{"127.0.0.1", "::1"} do
    it("ping-pongs 1,000 datagrams between two tasks over " .. host, function()
      local got = uring.run(function()
        local srv, sport = bound(host)
        local cli, cport = bound(host)
        local echo = uring.spawn(function()
          for _ = 1, 1000 do
            local data, from, fport = srv:recvfrom()
            assert.equal(host, from)
            assert.equal(cport, fport)
            assert.equal(#data, srv:sendto(data, from, fport))
          end
        end)
        local n = 0
        for i = 1, 1000 do
          local msg = "ping " .. i
          assert.equal(#msg, cli:sendto(msg, host, sport))
          local data, from, fport = cli:recvfrom()
          assert.equal(msg, data)
          assert.equal(host, from)
          assert.equal(sport, fport)
          n = n + 1
        end
        assert.is_true(echo:join())
        srv:close()
        cli:close()
        return n
      end)
      assert.equal(1000, got)
    end)
  end

  it("sends from an IPv6 socket to an IPv4 address (::ffff:a.b.c.d)", function()
    uring.run(function()
      local v6 <close> = bound("::")
      local v4 <close>, p4 = bound("127.0.0.1")
      local _, p6 = v6:getsockname()
      assert.equal(6, v6:sendto("mapped", "127.0.0.1", p4))
      local data, from, port = v4:recvfrom()
      assert.equal("mapped", data)
      assert.equal("127.0.0.1", from)
      assert.equal(p6, port)
      assert.equal(4, v4:sendto("back", "127.0.0.1", p6))
      data, from = v6:recvfrom()
      assert.equal("back", data)
      assert.equal("::ffff:127.0.0.1", from)
    end)
  end)

  it("resolves names for bind and sendto", function()
    uring.run(function()
      local u <close>, port = bound("localhost")
      assert.equal("127.0.0.1", (u:getsockname()))
      local c <close> = assert(uring.udp())
      assert.equal(2, c:sendto("hi", "localhost", port))
      assert.equal("hi", (u:recvfrom()))
    end)
  end)

  it("cuts a datagram longer than max", function()
    uring.run(function()
      local u <close>, port = bound("127.0.0.1")
      assert(u:sendto("0123456789", "127.0.0.1", port))
      assert.equal("0123", (u:recvfrom(4)))
      assert(u:sendto("", "127.0.0.1", port))
      assert.equal("", (u:recvfrom()))     -- an empty datagram is data
    end)
  end)

  it("pins a string nobody else holds until the kernel has sent it", function()
    uring.run(function()
      local u <close>, port = bound("127.0.0.1")
      local tasks = {}
      for i = 1, 50 do
        tasks[i] = uring.spawn(function()
          -- the only reference is the argument: a GC meanwhile must not free it
          return u:sendto(("x"):rep(1000) .. i, "127.0.0.1", port)
        end)
      end
      collectgarbage()
      for i = 1, 50 do
        local ok, n = tasks[i]:join()
        assert.is_true(ok)
        assert.equal(1000 + #tostring(i), n)
      end
      local seen = 0
      for _ = 1, 50 do
        local d = u:recvfrom()
        assert.equal(("x"):rep(1000), d:sub(1, 1000))
        seen = seen + 1
      end
      assert.equal(50, seen)
    end)
  end)

  describe("recvfrom with settimeout", function()
    it("returns nil, 'timeout', ETIME promptly, and loses nothing", function()
      uring.run(function()
        local u <close>, port = bound("127.0.0.1")
        u:settimeout(0.05)
        local t0 = uring.now()
        local d, msg, code = u:recvfrom()
        local took = uring.now() - t0
        assert.is_nil(d)
        assert.equal("timeout", msg)
        assert.equal(ETIME, code)
        assert.is_true(took >= 0.04 and took < 0.5, "took " .. took)
        -- a datagram that arrives later is still delivered
        assert(u:sendto("late", "127.0.0.1", port))
        assert.equal("late", (u:recvfrom()))
        -- nil: no limit again (the datagram below is already queued)
        u:settimeout(nil)
        assert(u:sendto("more", "127.0.0.1", port))
        assert.equal("more", (u:recvfrom()))
      end)
    end)

    it("ends at a uring.timeout scope too", function()
      uring.run(function()
        local u <close> = bound("127.0.0.1")
        local d, msg, code = uring.timeout(0.02, u.recvfrom, u)
        assert.is_nil(d)
        assert.equal("timeout", msg)
        assert.equal(ETIME, code)
      end)
    end)

    it("raises on a bad timeout", function()
      uring.run(function()
        local u <close> = bound("127.0.0.1")
        assert.matches(badarg(1, "settimeout", "number expected, got string"),
                       errmsg(function() u:settimeout("x") end))
        assert.matches(badarg(1, "settimeout", "seconds must be a non-negative number below 1e12"),
                       errmsg(function() u:settimeout(0 / 0) end))
      end)
    end)
  end)

  describe("close", function()
    it("wakes a task waiting in recvfrom with nil, 'closed'", function()
      uring.run(function()
        local u = bound("127.0.0.1")
        local fd = u:fd()
        local waiter = uring.spawn(function() return u:recvfrom() end)
        uring.yield()           -- it parks in recvfrom
        assert.equal("recvfrom", waiter:waiting_on())
        assert.is_true(u:close())
        local ok, d, msg, code = waiter:join()
        assert.is_true(ok)
        assert.is_nil(d)
        assert.equal("closed", msg)
        assert.equal(EBADF, code)
        -- the descriptor is gone once the cancelled op's CQE is in
        assert.is_nil(io.open("/proc/self/fd/" .. fd))
      end)
    end)

    it("wakes several waiters, with a timeout armed or not", function()
      uring.run(function()
        local u = bound("::1")
        local ws = {}
        for i = 1, 5 do
          ws[i] = uring.spawn(function()
            if i % 2 == 0 then u:settimeout(10) end
            return u:recvfrom()
          end)
        end
        uring.yield()
        u:close()
        for i = 1, 5 do
          local ok, d, msg = ws[i]:join()
          assert.is_true(ok)
          assert.is_nil(d)
          assert.equal("closed", msg)
        end
      end)
    end)

    it("is idempotent; a closed socket raises on use", function()
      uring.run(function()
        local u = bound("127.0.0.1")
        assert.is_true(u:close())
        assert.is_true(u:close())
        assert.equal("uring.udp (closed)", tostring(u))
        for _, f in ipairs{
          function() return u:recvfrom() end,
          function() return u:sendto("x", "127.0.0.1", 9) end,
          function() return u:getsockname() end,
          function() return u:settimeout(1) end,
          function() return u:fd() end,
        } do
          assert.matches("attempt to use a closed socket", errmsg(f))
        end
      end)
    end)

    it("closes on <close> and on collection", function()
      uring.run(function()
        do local u <close> = bound("127.0.0.1") end
        do local _ = bound("127.0.0.1") end   -- dropped; __gc closes it
      end)
      -- after_each checks the fds
    end)
  end)

  it("a cancelled recvfrom ends its task and leaves nothing behind", function()
    uring.run(function()
      local u <close> = bound("127.0.0.1")
      local t = uring.spawn(function() return u:recvfrom() end)
      uring.yield()
      t:cancel()
      local ok, err = t:join()
      assert.is_false(ok)
      assert.equal("canceled", err)
      assert.equal("canceled", t:status())
      -- the socket still works
      local _, port = u:getsockname()
      assert(u:sendto("still", "127.0.0.1", port))
      assert.equal("still", (u:recvfrom()))
    end)
  end)

  describe("OS failures return nil, msg, errno", function()
    it("sendto to a port with nothing listening succeeds on loopback", function()
      -- UDP has no connection: the ICMP port-unreachable that comes back is
      -- not reported on an unconnected socket, so the send counts its bytes
      -- and a later recvfrom just finds nothing.
      uring.run(function()
        local dead, dport = bound("127.0.0.1")
        dead:close()            -- a port that was just free: nothing listens
        local c <close> = assert(uring.udp())
        assert.equal(5, c:sendto("hello", "127.0.0.1", dport))
        c:settimeout(0.02)
        local d, msg = c:recvfrom()
        assert.is_nil(d)
        assert.equal("timeout", msg)
        assert.equal(5, c:sendto("again", "127.0.0.1", dport))
      end)
    end)

    it("bind to a port in use: EADDRINUSE", function()
      uring.run(function()
        local u <close>, port = bound("127.0.0.1")
        local v, msg, code = uring.udp("127.0.0.1", port)
        assert.is_nil(v)
        assert.equal("127.0.0.1:" .. port .. ": Address already in use", msg)
        assert.equal(EADDRINUSE, code)
      end)
    end)

    it("a name that does not resolve: EHOSTUNREACH", function()
      uring.run(function()
        local v, msg, code = uring.udp("nonexistent.invalid", 0)
        assert.is_nil(v)
        assert.matches("^nonexistent%.invalid: ", msg)
        assert.equal(EHOSTUNREACH, code)
        local c <close> = assert(uring.udp())
        local n
        n, msg, code = c:sendto("x", "nonexistent.invalid", 9)
        assert.is_nil(n)
        assert.matches("^nonexistent%.invalid: ", msg)
        assert.equal(EHOSTUNREACH, code)
      end)
    end)

    it("a datagram too big: EMSGSIZE; port 0: EINVAL", function()
      uring.run(function()
        local c <close> = assert(uring.udp())
        local n, msg, code = c:sendto(("x"):rep(70000), "127.0.0.1", 9)
        assert.is_nil(n)
        assert.equal("Message too long", msg)
        assert.equal(EMSGSIZE, code)
        n, msg, code = c:sendto("x", "127.0.0.1", 0)
        assert.is_nil(n)
        assert.equal("Invalid argument", msg)
        assert.equal(EINVAL, code)
      end)
    end)
  end)

  it("raises on bad arguments", function()
    uring.run(function()
      local u <close> = bound("127.0.0.1")
      local function sendto (...) local a = table.pack(...)
        return function() return u:sendto(table.unpack(a, 1, a.n)) end end
      assert.matches(badarg(1, "udp", "string expected, got table"),
                     errmsg(uring.udp, {}, 0))
      assert.matches(badarg(1, "udp", "invalid host name"),
                     errmsg(uring.udp, "", 0))
      assert.matches(badarg(2, "udp", "port out of range"),
                     errmsg(uring.udp, "127.0.0.1", 65536))
      assert.matches(badarg(2, "udp", "number expected, got table"),
                     errmsg(uring.udp, "127.0.0.1", {}))
      assert.matches(badarg(1, "sendto", "string expected, got table"),
                     errmsg(sendto({}, "127.0.0.1", 9)))
      assert.matches(badarg(2, "sendto", "string expected, got nil"),
                     errmsg(sendto("x", nil, 9)))
      assert.matches(badarg(2, "sendto", "host contains a NUL byte"),
                     errmsg(sendto("x", "a\0b", 9)))
      assert.matches(badarg(3, "sendto", "number expected, got no value"),
                     errmsg(sendto("x", "127.0.0.1")))
      assert.matches(badarg(3, "sendto", "port out of range"),
                     errmsg(sendto("x", "127.0.0.1", -1)))
      -- an IPv6 address for an IPv4 socket is the caller's mistake
      assert.matches(badarg(2, "sendto", "inet6 address for an inet socket"),
                     errmsg(sendto("x", "::1", 9)))
      assert.matches(badarg(1, "recvfrom", "max out of range"),
                     errmsg(function() return u:recvfrom(0) end))
      assert.matches(badarg(1, "recvfrom", "max out of range"),
                     errmsg(function() return u:recvfrom(65537) end))
      assert.matches("uring.udp expected, got table",
                     errmsg(function() return u.recvfrom({}) end))
    end)
    assert.matches("udp: not inside a task %(use uring.run%)", errmsg(uring.udp))
  end)
end)
