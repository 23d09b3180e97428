-- TLS sockets (csrc/tls.c): lua-uring against itself, then failure
-- cases.  Peers from Debian (openssl, python3, curl, nginx) are in
-- spec/tls_interop_spec.lua.
local uring = require "uring"
local helpers = require "helpers"
local tlsh = require "helpers.tls"
local run = helpers.runner(20)
local EPROTO, ECONNRESET, ETIME = uring.errno.EPROTO, uring.errno.ECONNRESET,
  uring.errno.ETIME

describe("uring.tls #io #net", function()
  local D
  setup(function() D = tlsh.certs() .. "/" end)
  teardown(function() tlsh.cleanup() end)
  helpers.leak_check(before_each, after_each)

  local function server_ctx(opts)
    opts = opts or {}
    opts.mode = "server"
    opts.cert = opts.cert or D .. "srv.pem"
    opts.key = opts.key or D .. "srv.key"
    return assert(uring.tls.context(opts))
  end
  local function client_ctx(opts)
    opts = opts or {}
    opts.mode = "client"
    if opts.ca == nil then opts.ca = D .. "ca.pem" end
    return assert(uring.tls.context(opts))
  end

  -- A TLS echo server for n connections (lines); returns the listener's
  -- port and the task, which returns what each handler ended with.
  local function echo(ctx, n, on_conn)
    local srv = assert(uring.listen("127.0.0.1", 0, { tls = ctx }))
    local _, port = srv:getsockname()
    local t = uring.spawn(function()
      local ends = {}
      local hs = {}
      for i = 1, n do
        local c = assert(srv:accept())
        hs[i] = uring.spawn(function()
          c:settimeout(5)
          if on_conn then on_conn(c) end
          while true do
            local l, e, en = c:receive("*l")
            if not l then ends[i] = { e, en } break end
            assert(c:send(l .. "\n"))
          end
          c:close()
        end)
      end
      srv:close()
      for i = 1, n do assert(hs[i]:join()) end
      return ends
    end)
    return port, t
  end

  it("echoes lines between a lua-uring client and server, TLS 1.3 then 1.2", function()
    run(function()
      for _, v in ipairs { "1.3", "1.2" } do
        local port, t = echo(server_ctx { max_version = v }, 1)
        local s = assert(uring.connect("localhost", port, { tls = client_ctx() }))
        local info = s:tlsinfo()
        assert.equal("TLSv" .. v, info.version)
        assert.is_true(info.verified)
        assert.equal("localhost", info.servername)
        assert(s:send("hello\n"))
        assert.equal("hello", s:receive("*l"))
        local big = helpers.random_bytes(300000):gsub("[\r\n]", "x")
        assert.equal(#big + 1, s:send(big .. "\n"))
        assert.equal(big, s:receive("*l"))
        s:close()
        local ends = select(2, assert(t:join()))
        assert.equal("closed", ends[1][1])   -- close_notify: a clean end
      end
    end)
  end)

  it("gives the peer's certificate and the negotiated ALPN", function()
    run(function()
      local port, t = echo(server_ctx { alpn = { "h2", "http/1.1" } }, 1)
      local s = assert(uring.connect("127.0.0.1", port,
        { tls = client_ctx { alpn = { "http/1.1", "x" } } }))
      local cert = s:getpeercert()
      assert.equal("CN=localhost", cert.subject)
      assert.equal("CN=test-ca", cert.issuer)
      assert.same({ "localhost" }, cert.dns)
      assert.matches("^%x+$", cert.sha256)
      assert.matches("BEGIN CERTIFICATE", cert.pem)
      assert.equal("http/1.1", s:tlsinfo().alpn)
      assert.is_nil(s:tlsinfo().servername)     -- an address: no SNI
      s:close()
      assert(t:join())
      local plain, srv_port = helpers.pair()
      assert.is_nil(plain:getpeercert())
      assert.is_nil(plain:tlsinfo())
      plain:close(); srv_port:close()
    end)
  end)

  it("fails the handshake when ALPN has nothing in common (RFC 7301)", function()
    run(function()
      local port, t = echo(server_ctx { alpn = { "h2" } }, 1)
      helpers.fails("^tls handshake: .*no application protocol", EPROTO,
        uring.connect("localhost", port, { tls = client_ctx { alpn = { "x" } } }))
      local ends = select(2, assert(t:join()))
      assert.matches("^tls handshake: ", ends[1][1])
    end)
  end)

  it("picks the server context by SNI and resumes sessions with tickets", function()
    run(function()
      local other = server_ctx { cert = D .. "other.pem", key = D .. "other.key" }
      local port, t = echo(server_ctx { sni = { ["other.test"] = other } }, 4)
      local cctx = client_ctx()
      local names = {}
      for i, name in ipairs { "localhost", "other.test", "other.test", "localhost" } do
        local s = assert(uring.connect("127.0.0.1", port, { tls = cctx, servername = name }))
        assert(s:send("x\n"))
        assert.equal("x", s:receive("*l"))    -- the tickets come with it
        names[i] = s:getpeercert().subject
        if i >= 3 then assert.is_true(s:tlsinfo().resumed) end
        if i == 1 then assert.is_false(s:tlsinfo().resumed) end
        s:close()
      end
      assert.same({ "CN=localhost", "CN=other.test", "CN=other.test", "CN=localhost" }, names)
      assert(t:join())
    end)
  end)

  it("asks for and checks client certificates", function()
    run(function()
      local sctx = server_ctx { verify = true, ca = D .. "ca.pem" }
      local port, t = echo(sctx, 2, function(c)
        local cert = c:getpeercert()
        if cert then assert.equal("CN=client", cert.subject) end
      end)
      local s = assert(uring.connect("localhost", port, { tls = client_ctx {
        cert = D .. "cli.pem", key = D .. "cli.key" } }))
      assert(s:send("me\n"))
      assert.equal("me", s:receive("*l"))
      s:close()
      -- TLS 1.3: the server checks the client's certificate after the
      -- client's handshake is over; the client hears of it at its read
      local s2 = uring.connect("localhost", port, { tls = client_ctx() })
      if s2 then
        s2:send("nobody\n")
        helpers.fails("^tls: .*certificate required", EPROTO, s2:receive("*l"))
        s2:close()
      end
      local ends = select(2, assert(t:join()))
      assert.matches("peer did not return a certificate", ends[2][1])
    end)
  end)

  describe("refuses", function()
    local cases = {
      { "a certificate from another CA", {}, { ca = "ca2.pem" }, "unable to get local issuer certificate" },
      { "an expired certificate", { cert = "exp.pem", key = "exp.key" }, {}, "certificate has expired" },
      { "a self-signed certificate", { cert = "self.pem", key = "self.key" }, {}, "self%-signed certificate" },
      { "a host name mismatch", {}, { servername = "wrong.test" }, "hostname mismatch" },
    }
    for _, case in ipairs(cases) do
      it(case[1] .. ", and the server keeps serving", function()
        run(function()
          local so, co = case[2], case[3]
          if so.cert then so = { cert = D .. so.cert, key = D .. so.key } end
          local port, t = echo(server_ctx(so), 2)
          local cctx = client_ctx { ca = co.ca and D .. co.ca or nil }
          local msg = helpers.fails("^tls handshake: certificate verify failed", EPROTO,
            uring.connect("localhost", port, { tls = cctx, servername = co.servername }))
          assert.matches(case[4], msg)
          -- the server heard an alert; the next client is served
          local good = client_ctx { verify = false }
          local s = assert(uring.connect("localhost", port, { tls = good }))
          assert(s:send("still\n"))
          assert.equal("still", s:receive("*l"))
          s:close()
          local ends = select(2, assert(t:join()))
          assert.matches("^tls handshake: .*alert", ends[1][1])
          assert.equal(EPROTO, ends[1][2])
        end)
      end)
    end

    it("a plaintext client on a TLS port", function()
      run(function()
        local port, t = echo(server_ctx(), 1)
        local c = assert(uring.connect("127.0.0.1", port))
        assert(c:send("GET / HTTP/1.0\r\n\r\n"))
        local _ = c:receive("*a")       -- an alert, then the close
        c:close()
        local ends = select(2, assert(t:join()))
        helpers.fails("^tls handshake: http request", EPROTO, nil, ends[1][1], ends[1][2])
      end)
    end)

    it("a TLS client on a plaintext port", function()
      run(function()
        local srv, port = helpers.listen()
        local t = uring.spawn(function()
          local c = assert(srv:accept())
          c:send("220 hello, plain text here\r\n")
          c:receive("*l")
          c:close()
        end)
        helpers.fails("^tls handshake: ", EPROTO,
          uring.connect("127.0.0.1", port, { tls = client_ctx() }))
        assert(t:join())
        srv:close()
      end)
    end)

    it("a truncation: the peer's FIN without close_notify (python3 ssl)", function()
      -- CPython's SSLSocket.close() sends no close_notify (unwrap() would)
      local script = D .. "trunc.py"
      helpers.writeall(script, [[
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + "srv.pem", sys.argv[1] + "srv.key")
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(10)
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
t = ctx.wrap_socket(c, server_side=True)
t.makefile("rb").readline()
t.sendall(b"partial data")
t.close()
]])
      run(function()
        local p = assert(uring.exec(tlsh.peer { "python3", script, D, stdout = "pipe" }))
        local port = tonumber(p.stdout:read("l"))
        local s = assert(uring.connect("localhost", port, { tls = client_ctx() }))
        s:send("go\n")
        helpers.fails("^tls: connection truncated", ECONNRESET, s:receive("*a"))
        -- said once; the bytes that did come (authenticated) stay readable
        assert.equal("partial data", s:receive("*a"))
        assert.same({ nil, "closed", "" }, { s:receive("*l") })
        s:close()
        p.stdout:close()
        assert.is_true((p:wait()))
      end)
    end)

    it("garbage records after the handshake", function()
      run(function()
        local port, t = echo(server_ctx(), 2)
        -- a TLS client in front of a plain socket: the handshake goes
        -- through a relay, then the relay writes garbage in its place
        local relay, rport = helpers.listen()
        local rt = uring.spawn(function()
          local a = assert(relay:accept())
          local b = assert(uring.connect("127.0.0.1", port))
          relay:close()
          local up = uring.spawn(function()
            while true do
              local d = a:recv(); if not d then break end
              if d:find("GARBAGE", 1, true) then break end
              b:send(d)
            end
          end)
          local down = uring.spawn(function()
            while true do
              local d = b:recv(); if not d then break end
              a:send(d)
            end
          end)
          uring.sleep(0.2)              -- the handshake is through
          up:cancel(); up:join()
          b:send("\23\3\3\0\16" .. string.rep("\0", 16))   -- a bad record
          down:join()
          a:close(); b:close()
        end)
        local s = assert(uring.connect("localhost", rport, { tls = client_ctx() }))
        s:receive(0)
        uring.sleep(0.3)
        s:close()
        rt:join()
        -- the server keeps serving
        local s2 = assert(uring.connect("localhost", port, { tls = client_ctx() }))
        assert(s2:send("ok\n"))
        assert.equal("ok", s2:receive("*l"))
        s2:close()
        local ends = select(2, assert(t:join()))
        helpers.fails("^tls: ", EPROTO, nil, ends[1][1], ends[1][2])
      end)
    end)

    it("a stalled handshake, with a timeout on either side", function()
      run(function()
        local port, t = echo(server_ctx(), 1, function(c) c:settimeout(0.2) end)
        local c = assert(uring.connect("127.0.0.1", port))   -- says nothing
        local ends = select(2, assert(t:join()))
        assert.same({ "timeout", ETIME }, ends[1])
        c:close()
        -- a server that never answers: the client gives up in time
        local srv, sport = helpers.listen()
        local at = uring.spawn(function() local x = srv:accept(); uring.sleep(0.5); x:close() end)
        assert.same({ nil, "timeout", ETIME }, { uring.timeout(0.2, uring.connect,
          "127.0.0.1", sport, { tls = client_ctx() }) })
        at:join()
        srv:close()
      end)
    end)
  end)

  it("decodes records split across any number of receives", function()
    run(function()
      local port, t = echo(server_ctx(), 1)
      -- a relay that passes the bytes on a few at a time
      local relay, rport = helpers.listen()
      local rt = uring.spawn(function()
        local a = assert(relay:accept())
        local b = assert(uring.connect("127.0.0.1", port))
        relay:close()
        a:setoption("nodelay", true); b:setoption("nodelay", true)
        local function pump(from, to)
          return uring.spawn(function()
            while true do
              local d = from:recv(); if not d then break end
              for i = 1, #d, 7 do
                to:send(d:sub(i, i + 6))
                uring.sleep(0.0005)
              end
            end
            to:shutdown("send")
          end)
        end
        local p1, p2 = pump(a, b), pump(b, a)
        p1:join(); p2:join()
        a:close(); b:close()
      end)
      local s = assert(uring.connect("localhost", rport, { tls = client_ctx() }))
      local line = string.rep("split ", 60)
      for _ = 1, 3 do
        assert(s:send(line .. "\n"))
        assert.equal(line, s:receive("*l"))
      end
      s:close()
      assert(t:join())
      rt:join()
    end)
  end)

  it("cancelled mid-handshake leaves nothing in flight", function()
    run(function()
      local srv, port = helpers.listen()
      local at = uring.spawn(function() local x = srv:accept(); uring.sleep(0.3); x:close() end)
      local ct = uring.spawn(uring.connect, "127.0.0.1", port, { tls = client_ctx() })
      uring.sleep(0.05)
      ct:cancel()
      assert.is_false((ct:join()))
      assert.equal("canceled", ct:status())
      at:join()
      srv:close()
    end)
  end)

  it("lets a server speak first: its send drives the handshake", function()
    run(function()
      local srv = assert(uring.listen("127.0.0.1", 0, { tls = server_ctx() }))
      local _, port = srv:getsockname()
      local t = uring.spawn(function()
        local c = assert(srv:accept())
        assert(c:send("220 banner\n"))        -- before any receive
        assert.equal("HELO", c:receive("*l"))
        c:send("250 ok\n")
        c:close()
      end)
      local s = assert(uring.connect("localhost", port, { tls = client_ctx() }))
      assert.equal("220 banner", s:receive("*l"))
      s:send("HELO\n")
      assert.equal("250 ok", s:receive("*l"))
      s:close()
      assert(t:join())
      srv:close()
    end)
  end)

  it("carries a reader task and a writer task on one socket at once", function()
    run(function()
      local port, t = echo(server_ctx(), 1)
      local s = assert(uring.connect("localhost", port, { tls = client_ctx() }))
      local line = string.rep("d", 4095)
      local n = 1024                       -- 4 MiB each way
      local w = uring.spawn(function()
        for _ = 1, n do assert(s:send(line .. "\n")) end
      end)
      for _ = 1, n do assert.equal(line, s:receive("*l")) end
      assert(w:join())
      s:close()
      assert(t:join())
    end)
  end)

  it("half-closes with shutdown(\"send\"): close_notify first, then the FIN", function()
    run(function()
      local srv = assert(uring.listen("127.0.0.1", 0, { tls = server_ctx() }))
      local _, port = srv:getsockname()
      local t = uring.spawn(function()
        local c = assert(srv:accept())
        local all = assert(c:receive("*a"))    -- a clean end, not a truncation
        c:send(#all .. " bytes\n")
        c:close()
      end)
      local s = assert(uring.connect("localhost", port, { tls = client_ctx() }))
      s:send(string.rep("q", 100000))
      assert(s:shutdown("send"))
      assert.equal("100000 bytes", s:receive("*l"))
      s:close()
      assert(t:join())
      srv:close()
    end)
  end)

  it("starttls upgrades a plain connection in the middle of a protocol", function()
    run(function()
      local srv, port = helpers.listen()
      local sctx = server_ctx()
      local t = uring.spawn(function()
        local c = assert(srv:accept())
        assert.equal("STARTTLS", c:receive("*l"))
        c:send("OK\n")
        assert.equal(c, assert(c:starttls(sctx)))
        assert.equal("secret", c:receive("*l"))
        c:send("done\n")
        c:close()
      end)
      local s = assert(uring.connect("127.0.0.1", port))
      s:send("STARTTLS\n")
      assert.equal("OK", s:receive("*l"))
      assert.equal(s, assert(s:starttls(client_ctx(), "localhost")))
      s:send("secret\n")
      assert.equal("done", s:receive("*l"))
      assert.is_nil(s:receive("*l"))   -- close_notify: "closed"
      s:close()
      assert(t:join())
      srv:close()
    end)
  end)

  it("raises on bad arguments", function()
    local B = helpers.badarg
    assert.matches(B(1, "context", "table expected, got no value"),
      helpers.errmsg(uring.tls.context))
    assert.matches(B(1, "context", "mode: \"server\" or \"client\" expected"),
      helpers.errmsg(uring.tls.context, { mode = "both" }))
    assert.matches(B(1, "context", "unknown option 'verfy'"),
      helpers.errmsg(uring.tls.context, { mode = "client", verfy = false }))
    assert.matches(B(1, "context", "a server context needs cert and key"),
      helpers.errmsg(uring.tls.context, { mode = "server" }))
    assert.matches(B(1, "context", "min_version: \"1.2\" or \"1.3\" expected, got \"1.1\""),
      helpers.errmsg(uring.tls.context, { mode = "client", min_version = "1.1" }))
    assert.matches(B(1, "context", "alpn: names of 1 to 255 bytes expected"),
      helpers.errmsg(uring.tls.context, { mode = "client", alpn = { "" } }))
    run(function()
      local cctx = client_ctx()
      assert.matches(B(3, "listen", "tls: a server context expected, got a client one"),
        helpers.errmsg(uring.listen, "127.0.0.1", 0, { tls = cctx }))
      assert.matches(B(3, "connect", "tls: uring.tls.context or true expected, got number"),
        helpers.errmsg(uring.connect, "127.0.0.1", 1, { tls = 1 }))
      local c, s = helpers.pair()
      -- a method call: Lua counts from after the socket
      assert.matches(B(2, "starttls") .. "servername expected %(the context verifies",
        helpers.errmsg(function() return c:starttls(cctx) end))
      assert.matches(B(1, "starttls", "uring.tls.context or true expected, got no value"),
        helpers.errmsg(function() return c:starttls() end))
      c:close(); s:close()
      assert.matches("attempt to use a closed socket",
        helpers.errmsg(function() return c:starttls(cctx, "x") end))
    end)
  end)

  it("returns a fail tuple for files it cannot load, and never prints a key", function()
    helpers.fails("^tls.context: cert /nonexistent/c.pem: No such file", uring.errno.ENOENT,
      uring.tls.context { mode = "server", cert = "/nonexistent/c.pem", key = D .. "srv.key" })
    -- a key that is not the certificate's: named by path only
    local msg = helpers.fails("^tls.context: key ", uring.errno.EINVAL,
      uring.tls.context { mode = "server", cert = D .. "srv.pem", key = D .. "other.key" })
    assert.matches("values mismatch", msg)
    local pem = helpers.readall(D .. "other.key")
    msg = helpers.fails("^tls.context: key %(PEM text%): ", uring.errno.EINVAL,
      uring.tls.context { mode = "server", cert = D .. "srv.pem", key = pem })
    assert.is_nil(msg:find("PRIVATE", 1, true))
    assert.is_nil(msg:find(pem:sub(40, 60), 1, true))
    -- PEM text works where a path does
    assert(uring.tls.context { mode = "server", cert = helpers.readall(D .. "srv.pem"),
      key = helpers.readall(D .. "srv.key"), ca = helpers.readall(D .. "ca.pem") })
  end)
end)
