-- spec/luasocket_spec.lua: uring.socket, LuaSocket's API over the ring.
-- First the unit behaviour LuaSocket users rely on (send's last index,
-- receive's partial results, timeout modes, error strings, dns, udp,
-- try/protect, select), then Debian's UNMODIFIED socket.http loaded over
-- uring.socket (uring.install_socket) fetching 100 slow pages at once,
-- timed against the real LuaSocket doing the same one by one in a child
-- process (the real socket.core and uring.socket never share a Lua state).
local uring = require "uring"
local helpers = require "helpers"
local socket = uring.socket

local run = helpers.runner(20)   -- uring.run with a 20 s watchdog

-- a connected pair of tcp{client} objects over loopback
local function pair()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local host, port = srv:getsockname()
  local c = assert(socket.connect(host, port))
  local a = assert(srv:accept())
  srv:close()
  return c, a
end

local function have_luasocket()
  local f = io.open("/usr/share/lua/5.4/socket/http.lua")
  if f then f:close() end
  return f ~= nil
end

-- the ring's own descriptor is made by the first run: before any snapshot
uring.run(function() end)

describe("uring.socket", function()
  local fds
  before_each(function()
    collectgarbage(); collectgarbage()
    fds = helpers.fds()
  end)
  after_each(function()
    collectgarbage(); collectgarbage()
    assert.equal(0, uring.stats().inflight)
    assert.equal(0, #uring.tasks())
    assert.equal(fds, helpers.fds())
  end)

  it("is uring.socket, with LuaSocket's fields", function()
    assert.equal(socket, require "uring.socket")
    assert.equal("LuaSocket 3.0.0", socket._VERSION)
    assert.equal(1024, socket._SETSIZE)
    for _, name in ipairs { "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6",
      "connect", "bind", "gettime", "sleep", "select", "newtry", "protect",
      "skip", "try" } do
      assert.is_function(socket[name], name)
    end
    for _, name in ipairs { "toip", "gethostname", "getaddrinfo", "tohostname" } do
      assert.is_function(socket.dns[name], name)
    end
  end)

  it("names its objects as LuaSocket does", function()
    run(function()
      local m = socket.tcp()
      assert.matches("^tcp{master}: 0x%x+$", tostring(m))
      assert.equal("tcp{master}", m.class)
      assert.equal(-1, m:getfd())
      local c, a = pair()
      assert.matches("^tcp{client}: 0x%x+$", tostring(c))
      assert.is_true(c:getfd() >= 0)
      assert.equal(c:getfd(), c.s:fd())
      local srv = assert(socket.bind("127.0.0.1", 0))
      assert.matches("^tcp{server}: 0x%x+$", tostring(srv))
      local u = socket.udp()
      assert.matches("^udp{unconnected}: 0x%x+$", tostring(u))
      for _, o in ipairs { c, a, srv, u, m } do assert.equal(1, o:close()) end
      assert.equal(-1, c:getfd())
      assert.has_error(function() c:setfd(3) end)
    end)
  end)

  it("send returns the last index sent, as LuaSocket", function()
    run(function()
      local c, a = pair()
      assert.equal(7, c:send("hello world", 3, 7))
      assert.equal(4, c:send("abc", 5))           -- nothing: i - 1
      assert.equal(3, c:send("abc", -2))          -- "bc"
      assert.equal(11, c:send("hello world"))
      assert.equal("llo wbchello world", a:receive(18))
      local r, s = a:getstats()
      assert.equal(18, r)
      assert.equal(18, select(2, c:getstats()))
      assert.equal(1, c:setstats(1, 2, 0))
      local rx, tx = c:getstats()
      assert.same({ 1, 2 }, { rx, tx })
      a:close()
      -- the peer is gone: sooner or later "closed", with the last index
      local n, err, last
      for _ = 1, 50 do
        n, err, last = c:send(("x"):rep(65536))
        if not n then break end
      end
      assert.is_nil(n)
      assert.equal("closed", err)
      assert.is_number(last)
      c:close()
      assert.same({ nil, "closed", 0 }, { c:send("x") })
    end)
  end)

  it("receive: patterns, prefix, and the partial result of timeout and closed", function()
    run(function()
      local c, a = pair()
      c:send("one\r\ntw\ro\nthree")
      assert.equal("one", a:receive())
      assert.equal(">two", a:receive("*l", ">"))   -- every CR dropped
      assert.equal(1, a:settimeout(0.05))
      assert.same({ nil, "timeout", "three" }, { a:receive("*l") })
      c:send("abcdef")
      assert.same({ nil, "timeout", "pre:abcdef" }, { a:receive(10, "pre:") })
      c:send("12345")
      assert.equal("123", a:receive(3))
      assert.equal("45", a:receive("2"))          -- a numeric string is a count
      assert.is_false(a:dirty())
      c:send("xy\n")
      uring.sleep(0.02)
      assert.equal("x", a:receive(1))
      assert.is_true(a:dirty())
      assert.equal("y", a:receive())
      c:send("tail")
      assert.same({ nil, "timeout", "tail" }, { a:receive("*a") })
      c:send("rest")
      c:close()
      assert.equal("rest", a:receive("*a"))        -- closed: all of it
      assert.same({ nil, "closed", "" }, { a:receive("*a") })
      assert.same({ nil, "closed", "p" }, { a:receive(5, "p") })
      assert.same({ nil, "closed", "" }, { a:receive() })
      assert.has_error(function() a:receive("*x") end)
      a:close()
      assert.same({ nil, "closed", "" }, { a:receive() })
    end)
  end)

  it("partial line at close", function()
    run(function()
      local c, a = pair()
      c:send("no newline\r")
      c:close()
      assert.same({ nil, "closed", "no newline" }, { a:receive() })
      a:close()
    end)
  end)

  it("settimeout: block, total and the default", function()
    run(function()
      local c, a = pair()
      assert.same({ -1, -1 }, { a:gettimeout() })
      -- a byte every 30 ms: each wait is short, the whole call is long
      local function trickle(n)
        return uring.spawn(function()
          for i = 1, n do uring.sleep(0.03); c:send(tostring(i % 10)) end
        end)
      end
      a:settimeout(0.2)                             -- "b": per wait
      local t = trickle(6)
      assert.equal("123456", a:receive(6))
      assert(t:join())
      a:settimeout(nil)
      a:settimeout(0.1, "t")                        -- "t": per call
      assert.same({ -1, 0.1 }, { a:gettimeout() })
      t = trickle(10)
      local t0 = uring.now()
      local n, err, part = a:receive(10)
      local el = uring.now() - t0
      assert.is_nil(n)
      assert.equal("timeout", err)
      assert.is_true(#part >= 1 and #part <= 5, part)
      assert.is_true(el >= 0.09 and el < 0.3, el)
      assert(t:join())
      a:settimeout(-1, "r")                         -- "r" is "t"
      assert.same({ -1, -1 }, { a:gettimeout() })
      assert.equal(10, #(part .. a:receive(10 - #part)))
      -- 0: poll, never wait
      a:settimeout(0)
      t0 = uring.now()
      assert.same({ nil, "timeout", "" }, { a:receive() })
      assert.is_true(uring.now() - t0 < 0.05)
      assert.has_error(function() a:settimeout(1, "x") end)
      c:close(); a:close()
    end)
  end)

  it("connect: LuaSocket's error strings", function()
    run(function()
      -- a port just freed: nobody listens there (port 1 is not safe on a
      -- shared machine: anything running as root may listen on it)
      local l = assert(uring.listen("127.0.0.1", 0))
      local _, free = l:getsockname()
      l:close()
      assert.same({ nil, "connection refused" }, { socket.connect("127.0.0.1", free) })
      local m = socket.tcp()
      assert.same({ nil, "connection refused" }, { m:connect("127.0.0.1", free) })
      m:close()
      assert.same({ nil, "host or service not provided, or not known" },
        { socket.connect("nonexistent.invalid", 80) })
      -- a name is resolved without blocking the loop
      local srv = assert(socket.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local c = assert(socket.connect("localhost", port))
      assert.equal("127.0.0.1", (c:getpeername()))
      assert.equal("inet", select(3, c:getpeername()))
      assert.equal("inet", c:getfamily())
      local a = assert(srv:accept())
      assert.equal(1, c:shutdown("send"))
      assert.same({ nil, "closed", "" }, { a:receive() })
      a:close(); c:close(); srv:close()
    end)
  end)

  it("bind, listen, accept (with a timeout) and options", function()
    run(function()
      local m = socket.tcp()
      assert.equal(1, m:setoption("reuseaddr", true))
      assert.equal(1, m:bind("127.0.0.1", 0))
      assert.equal(1, m:listen(32))
      assert.equal("tcp{server}", m.class)
      local host, port, fam = m:getsockname()
      assert.equal("127.0.0.1", host); assert.is_true(port > 0); assert.equal("inet", fam)
      m:settimeout(0.05)
      local t0 = uring.now()
      assert.same({ nil, "timeout" }, { m:accept() })
      assert.is_true(uring.now() - t0 >= 0.04)
      local c = socket.tcp()
      assert.equal(1, c:setoption("tcp-nodelay", true))
      assert.equal(1, c:connect(host, port))
      assert.is_true(c:getoption("tcp-nodelay"))
      assert.is_false(c:getoption("keepalive"))
      assert.equal(1, c:setoption("keepalive", true))
      assert.is_true(c:getoption("keepalive"))
      assert.has_error(function() c:setoption("bogus", 1) end)
      local a = assert(m:accept())
      assert.equal("tcp{client}", a.class)
      assert.same({ -1, -1 }, { a:gettimeout() })  -- not inherited
      local _, cport = c:getsockname()
      assert.equal(cport, select(2, a:getpeername()))
      -- in use: LuaSocket's string
      local again = socket.tcp()
      assert.same({ nil, "address already in use" }, { again:bind("127.0.0.1", port) })
      again:close(); a:close(); c:close(); m:close()
    end)
  end)

  it("dns: toip, getaddrinfo, gethostname", function()
    run(function()
      local ip, info = socket.dns.toip("localhost")
      assert.equal("127.0.0.1", ip)
      assert.equal("localhost", info.name)
      assert.equal("127.0.0.1", info.ip[1])
      assert.same({ nil, "host not found" }, { socket.dns.toip("nonexistent.invalid") })
      assert.equal("10.1.2.3", (socket.dns.toip("10.1.2.3")))
      local list = assert(socket.dns.getaddrinfo("localhost"))
      assert.equal("inet", list[1].family)
      assert.is_nil((socket.dns.getaddrinfo("nonexistent.invalid")))
      assert.is_string(socket.dns.gethostname())
    end)
    -- outside a task, a lookup runs in a private loop
    assert.equal("127.0.0.1", (socket.dns.toip("localhost")))
  end)

  it("gettime is monotonic and near the wall clock; sleep yields", function()
    run(function()
      local a = socket.gettime()
      local b = socket.gettime()
      assert.is_true(b >= a)
      assert.is_true(math.abs(a - os.time()) <= 2)
      local ran = false
      local t = uring.spawn(function() ran = true end)
      local t0 = uring.now()
      socket.sleep(0.05)
      assert.is_true(ran)                           -- the other task ran
      assert.is_true(uring.now() - t0 >= 0.045)
      assert(t:join())
      socket.sleep(-1)                              -- nothing
      assert.is_true(socket.gettime() - a >= 0.045)
    end)
  end)

  it("udp: sendto/receivefrom, setpeername/send/receive, timeout", function()
    run(function()
      local u = socket.udp()
      assert.equal(-1, u:getfd())
      assert.equal(1, u:setsockname("127.0.0.1", 0))
      local host, port, fam = u:getsockname()
      assert.equal("127.0.0.1", host); assert.equal("inet", fam)
      local v = socket.udp()
      assert.equal(5, v:sendto("hello", host, port))
      local d, h, p = u:receivefrom()
      assert.equal("hello", d); assert.equal("127.0.0.1", h)
      assert.equal(p, select(2, v:getsockname()))
      assert.equal(1, v:setpeername(host, port))
      assert.matches("^udp{connected}", tostring(v))
      assert.equal(host, (v:getpeername()))
      assert.equal(3, v:send("abc"))
      assert.equal("abc", u:receive())
      -- a connected socket drops datagrams from others
      assert.equal(6, u:sendto("from u", v:getsockname()))
      local w = socket.udp()
      w:sendto("stranger", v:getsockname())
      uring.sleep(0.02)
      u:sendto("peer", v:getsockname())
      assert.equal("from u", v:receive())
      assert.equal("peer", v:receive())
      u:settimeout(0.05)
      assert.same({ nil, "timeout" }, { u:receivefrom() })
      assert.same({ nil, "timeout" }, { u:receive() })
      assert.has_error(function() v:sendto("x", host, port) end)  -- connected
      for _, s in ipairs { u, v, w } do assert.equal(1, s:close()) end
      assert.same({ nil, "closed" }, { u:receivefrom() })
    end)
  end)

  it("try, newtry and protect, with pcall semantics across yields", function()
    run(function()
      local closed = false
      local f = socket.protect(function(x)
        local try = socket.newtry(function() closed = true end)
        uring.sleep(0)                              -- yields inside protect
        try(x, "went wrong")
        return "fine", x
      end)
      assert.same({ "fine", 1 }, { f(1) })
      assert.is_false(closed)
      assert.same({ nil, "went wrong" }, { f(nil) })
      assert.is_true(closed)
      assert.same({ nil, "plain" }, { socket.protect(function() socket.try(nil, "plain") end)() })
      -- other errors pass through
      assert.has_error(socket.protect(function() error("boom") end), nil)
      assert.same({ "b", "c" }, { socket.skip(1, "a", "b", "c") })
    end)
  end)

  it("select: readable clients, servers and udp; timeout", function()
    run(function()
      local c, a = pair()
      local r, w, err = socket.select({ a }, nil, 0.05)
      assert.same({}, r); assert.equal("timeout", err)
      uring.spawn(function() uring.sleep(0.02); c:send("ping\n") end)
      r, w = socket.select({ a }, { c }, 1)
      assert.equal(c, w[1])                         -- writable at once
      r, w, err = socket.select({ a }, nil, 1)
      assert.is_nil(err)
      assert.equal(a, r[1]); assert.equal(1, r[a])
      assert.equal("ping", a:receive())
      local srv = assert(socket.bind("127.0.0.1", 0))
      local u = socket.udp(); u:setsockname("127.0.0.1", 0)
      uring.spawn(function()
        uring.sleep(0.02)
        local x = assert(socket.connect("127.0.0.1", (select(2, srv:getsockname()))))
        uring.sleep(0.02)
        x:close()
      end)
      r = socket.select({ a, srv, u }, nil, 1)
      assert.equal(srv, r[1])
      local x = assert(srv:accept())                 -- the one select took
      assert.equal("tcp{client}", x.class)
      uring.spawn(function()
        local q = socket.udp()
        q:sendto("dg", u:getsockname())
        q:close()
      end)
      r = socket.select({ a, srv, u }, nil, 1)
      assert.equal(u, r[1])
      assert.equal("dg", (u:receivefrom()))
      for _, s in ipairs { a, c, srv, u, x } do s:close() end
      uring.sleep(0.05)
    end)
  end)

  it("install_socket: require 'socket' gives uring.socket under socket.lua", function()
    assert(have_luasocket(), "Debian's lua-socket is required (make deps installs it)")
    local before = package.loaded.socket
    local s = uring.install_socket()
    finally(function() uring.install_socket(false) end)
    assert.equal(socket, s)
    assert.equal(socket, require "socket")
    assert.equal(socket, require "socket.core")
    assert.is_function(s.sink)                     -- from socket.lua
    assert.is_function(s.source)
    assert.is_table(s.sourcet)
    assert.equal(s, uring.install_socket())        -- twice: the same
    uring.install_socket(false)
    assert.equal(before, package.loaded.socket)
    assert.is_nil(package.loaded["socket.http"])
  end)

  it("runs examples/luasocket_http.lua", function()
    assert(have_luasocket(), "Debian's lua-socket is required (make deps installs it)")
    local out, code = helpers.sh("timeout 60 " .. helpers.lua_cmd()
      .. " examples/luasocket_http.lua 20")
    assert.equal(0, code, out)
    local seq = tonumber(out:match("sequential%s+([%d.]+)"))
    local conc = tonumber(out:match("concurrent%s+([%d.]+)"))
    assert(seq and conc, out)
    assert.is_true(seq >= 20 * 0.05, out)
    assert.is_true(conc < seq / 4, out)
  end)
end)

describe("unmodified socket.http over uring.socket", function()
  local N, DELAY, PAD = 100, 0.05, 1000
  local fds
  before_each(function()
    collectgarbage(); collectgarbage()
    fds = helpers.fds()
  end)
  after_each(function()
    collectgarbage(); collectgarbage()
    assert.equal(0, uring.stats().inflight)
    assert.equal(0, #uring.tasks())
    assert.equal(fds, helpers.fds())
  end)

  local function body_for(path)
    return "page " .. path .. "\n" .. ("x"):rep(PAD)
  end

  -- a slow server: each response after DELAY; ends when srv is closed
  local function serve(srv, counter)
    while true do
      local c = srv:accept()
      if not c then return end
      uring.spawn(function()
        local line = c:receive()
        local path = line and line:match("^GET (%S+)") or "/"
        repeat local h = c:receive() until h == "" or h == nil
        counter.n = counter.n + 1
        uring.sleep(DELAY)
        local body = body_for(path)
        c:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
          .. #body .. "\r\nConnection: close\r\n\r\n" .. body)
        c:close()
      end)
    end
  end

  it("fetches 100 slow pages concurrently; the real LuaSocket, sequentially", function()
    assert(have_luasocket(), "Debian's lua-socket is required (make deps installs it)")
    local dir = helpers.tmpdir()
    finally(function()
      uring.install_socket(false)
      helpers.rmrf(dir)
    end)
    local conc, seq
    run(function()
      local srv = assert(uring.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local counter = { n = 0 }
      local server = uring.spawn(serve, srv, counter)

      -- 1. uring.socket under Debian's socket.http, one task per page
      uring.install_socket()
      local http = require "socket.http"
      assert.equal(socket, require "socket")
      local t0 = uring.now()
      local tasks = {}
      for i = 1, N do
        tasks[i] = uring.spawn(function()
          local path = "/page/" .. i
          local body, code, headers = http.request("http://127.0.0.1:" .. port .. path)
          assert(code == 200, tostring(code))
          assert(headers["content-type"] == "text/plain")
          assert(body == body_for(path), "wrong body for " .. path)
          return #body
        end)
      end
      for i = 1, N do
        local ok, n = tasks[i]:join()
        assert(ok, n)
        assert.equal(#body_for("/page/" .. i), n)
      end
      conc = uring.now() - t0
      assert.equal(N, counter.n)
      -- errors keep LuaSocket's strings through socket.http; a port just
      -- freed, not port 1: a sweep of hostile arguments in this process
      -- may hold a listener there until it is collected
      local l = assert(uring.listen("127.0.0.1", 0))
      local _, closed_port = l:getsockname()
      l:close()
      assert.same({ nil, "connection refused" },
        { http.request("http://127.0.0.1:" .. closed_port .. "/") })

      -- 2. the real LuaSocket in a child, against the same server
      local script = dir .. "/seq.lua"
      local f = assert(io.open(script, "w"))
      f:write(([[
local http = require "socket.http"
local socket = require "socket"
assert(not package.loaded.uring, "the real LuaSocket must run alone")
local t0 = socket.gettime()
for i = 1, %d do
  local path = "/page/" .. i
  local body, code = http.request("http://127.0.0.1:%d" .. path)
  assert(code == 200 and body == "page " .. path .. "\n" .. ("x"):rep(%d), "bad " .. path)
end
io.write(string.format("%%.4f\n", socket.gettime() - t0))
]]):format(N, port, PAD))
      f:close()
      -- in the background (a blocking popen would stall the server's loop)
      os.execute(("(lua5.4 %s > %s/out 2>&1; echo $? > %s/rc) &"):format(script, dir, dir))
      local rc
      for _ = 1, 600 do
        uring.sleep(0.05)
        local r = io.open(dir .. "/rc")
        if r then
          rc = r:read("l")
          r:close()
          if rc then break end
        end
      end
      local o = assert(io.open(dir .. "/out"))
      local out = o:read("a")
      o:close()
      assert.equal("0", rc, out)
      seq = assert(tonumber(out:match("^([%d.]+)")), out)
      assert.equal(2 * N, counter.n)
      srv:close()
      assert(server:join())
    end, 90)
    print(("\nluasocket_spec: %d pages, %d ms each: uring.socket + socket.http "
      .. "concurrent %.3f s; real LuaSocket sequential %.3f s; ratio %.1fx")
      :format(N, DELAY * 1000, conc, seq, seq / conc))
    assert.is_true(seq >= N * DELAY)
    assert.is_true(conc < 1.0, conc)
    assert.is_true(seq / conc > 10, seq / conc)
  end)
end)
