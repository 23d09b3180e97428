-- uring.http over TLS: server{tls = ctx}, request("https://..."), the
-- keep-alive client over TLS, redirects across schemes.
local uring = require "uring"
local http = uring.http
local helpers = require "helpers"
local tlsh = require "helpers.tls"
local run = helpers.runner(20)

describe("uring.http over TLS #io #net", function()
  local D
  setup(function() D = tlsh.certs() .. "/" end)
  teardown(function() tlsh.cleanup() end)
  helpers.leak_check(before_each, after_each)

  local function server_ctx()
    return assert(uring.tls.context { mode = "server", cert = D .. "srv.pem",
      key = D .. "srv.key", alpn = { "http/1.1" } })
  end
  local function client_ctx()
    return assert(uring.tls.context { mode = "client", ca = D .. "ca.pem" })
  end

  -- an https server (and, with plain, an http one beside it); handlers
  -- see the connection's TLS state through req.socket
  local function start(opts)
    opts = opts or {}
    local errors = {}
    local tls
    if not opts.plain then tls = server_ctx() end
    local srv = assert(http.server { tls = tls,
      on_error = function(e) errors[#errors + 1] = e end,
      routes = {
        { "GET", "/hello", function(req)
          local info = req.socket:tlsinfo()
          return 200, "hello over " .. (info and info.version or "plain") .. "\n"
        end },
        { "GET", "/to", function(req)
          return 302, "", { location = req.query:match("url=(.*)") }
        end },
        { "POST", "/echo", function(req) return 200, req.body end },
        { "GET", "/echows", function(req)     -- for python3-websockets
          local ws = assert(req:upgrade { protocols = "chat" })
          while true do
            local msg, kind = ws:receive()
            if not msg then break end
            ws:send(msg, kind)
          end
        end },
        { "GET", "/ws", function(req)
          local ws = assert(req:upgrade())
          while true do
            local msg, kind = ws:receive()
            if not msg then break end
            ws:send(msg .. " over " .. req.socket:tlsinfo().version, kind)
          end
        end },
      } })
    local task = uring.spawn(srv.serve, srv)
    return srv, srv:port(), task, errors
  end

  it("serves curl, keeping the TLS connection alive across requests", function()
    run(function()
      local srv, port, task = start()
      local url = "https://localhost:" .. port
      local p = assert(uring.exec(tlsh.peer { "curl", "-sS", "--max-time", "10", "--cacert", D .. "ca.pem",
        "--resolve", "localhost:" .. port .. ":127.0.0.1", url .. "/hello", url .. "/hello",
        -- --next: the POST is the third url's alone; the connection stays
        "--next", "--cacert", D .. "ca.pem", "--resolve", "localhost:" .. port .. ":127.0.0.1",
        "-d", "posted", url .. "/echo", stdout = "pipe", stderr = "pipe" }))
      local out = p.stdout:read("a")
      local err = p.stderr:read("a")
      p.stdout:close(); p.stderr:close()
      assert.is_true((p:wait()))
      assert.equal("", err)
      assert.equal("hello over TLSv1.3\nhello over TLSv1.3\nposted", out)
      assert.equal(3, srv.requests)
      assert.equal(1, srv.connections)   -- keep-alive: one handshake
      srv:close()
      assert(task:join())
    end)
  end)

  it("requests https:// urls, once and through a keep-alive client", function()
    run(function()
      local srv, port, task = start()
      local url = "https://localhost:" .. port
      local res = assert(http.request(url .. "/hello", { tls = client_ctx() }))
      assert.equal(200, res.status)
      assert.equal("hello over TLSv1.3\n", res.body)
      local c <close> = http.client { tls = client_ctx() }
      for i = 1, 3 do
        res = assert(c:request(url .. "/echo", { body = "n" .. i }))
        assert.equal("n" .. i, res.body)
      end
      assert.equal(1, c.connections)
      c:close()
      srv:close()
      assert(task:join())
      assert.equal(2, srv.connections)
    end)
  end)

  it("carries WebSocket over TLS: wss:// with the server's CA, refused with another", function()
    run(function()
      local srv, port, task, errors = start()
      local url = "wss://localhost:" .. port .. "/ws"
      local ws = assert(http.websocket(url, { tls = client_ctx() }))
      assert(ws:send("hi"))
      assert.same({ "hi over TLSv1.3", "text" }, { ws:receive() })
      local big = ("x"):rep(300000)          -- frames over many TLS records
      assert(ws:send(big, "binary"))
      assert.same({ big .. " over TLSv1.3", "binary" }, { ws:receive() })
      ws:close()
      -- the system CAs do not know the test CA: refused, nothing upgraded
      local bad, msg = http.websocket(url)
      assert.is_nil(bad)
      assert.matches("certificate verify failed", msg)
      -- and the server keeps serving
      ws = assert(http.websocket(url, { tls = client_ctx() }))
      assert(ws:send("again"))
      assert.same({ "again over TLSv1.3", "text" }, { ws:receive() })
      ws:close()
      srv:close()
      assert(task:join())
      assert.equal(1, srv.tls_failures)          -- the refused handshake, counted
      assert.equal(1, #errors)                   -- and logged
    end)
  end)

  it("speaks wss:// with python3-websockets, an independent client: 4 MiB hashed both ways", function()
    run(function()
      local srv, port, task = start()
      local p = assert(uring.exec { "env", "-u", "LD_PRELOAD", "WS_CA=" .. D .. "ca.pem",
        "timeout", "60", "/usr/bin/python3", "spec/helpers/ws_peer.py", "client",
        "wss://localhost:" .. port .. "/echows", "4", stdout = "pipe" })
      local out = p.stdout:read("a")
      p.stdout:close()
      assert.is_true((p:wait()), out)
      local function field(k) return out:match('"' .. k .. '": "?([^,"}]*)') end
      assert.equal("chat", field("protocol"), out)
      for _, k in ipairs { "text", "binary", "fragmented", "pong" } do
        assert.equal("true", field(k), k .. " in " .. out)
      end
      assert.equal(tostring(4 * 1024 * 1024), field("bytes"))
      assert.equal(field("sent_sha"), field("recv_sha"))
      assert.equal("1000", field("close_code"))
      srv:close()
      assert(task:join())
    end)
  end)

  it("serves files over TLS: sendfile reads and encrypts what splice would send in the clear", function()
    local dir = helpers.tmpdir()
    local small, big = ("s"):rep(10000), {}
    for i = 1, 30000 do big[i] = ("%07d\n"):format(i) end
    big = table.concat(big)                  -- 240,000 bytes: the splice size class
    helpers.writeall(dir .. "/small.txt", small)
    helpers.writeall(dir .. "/big.txt", big)
    run(function()
      local srv = assert(http.server { tls = server_ctx(), routes = {
        { "GET", "/f/(.*)", http.static(dir) } } })
      local task = uring.spawn(srv.serve, srv)
      local c <close> = http.client { tls = client_ctx() }
      local url = "https://localhost:" .. srv:port() .. "/f/"
      local res = assert(c:request(url .. "small.txt"))
      assert.equal(small, res.body)
      res = assert(c:request(url .. "big.txt"))
      assert.equal(#big, #res.body)
      assert.equal(big, res.body)
      res = assert(c:request(url .. "big.txt", { headers = { range = "bytes=100000-100015" } }))
      assert.equal(206, res.status)
      assert.equal(big:sub(100001, 100016), res.body)
      c:close()
      -- and sock:sendfile itself: the count of file bytes, the head not counted
      local l = assert(uring.listen("127.0.0.1", 0, { tls = server_ctx() }))
      local got = uring.spawn(function()
        local s = assert(l:accept())
        local data = assert(s:receive("*a"))
        s:close()
        return data
      end)
      local cs = assert(uring.connect("127.0.0.1", select(2, l:getsockname()),
        { tls = client_ctx(), servername = "localhost" }))
      local f <close> = assert(uring.open(dir .. "/big.txt"))
      assert.equal(1000, cs:sendfile(f, 8, 1000, "HEAD"))
      assert.equal(#big - 16, cs:sendfile(f, 16))
      -- close_notify and FIN, then read to the end (the server's session
      -- tickets: closing with them unread would reset the connection)
      assert(cs:shutdown("send"))
      cs:receive("*a")
      cs:close()
      local ok, data = got:join()
      assert(ok, data)
      assert.equal("HEAD" .. big:sub(9, 1008) .. big:sub(17), data)
      l:close()
      srv:close()
      assert(task:join())
    end)
    helpers.rmrf(dir)
  end)

  it("verifies against the system CAs by default", function()
    run(function()
      local srv, port, task, errors = start()
      -- the test CA is not among the system's: refused, and said why
      local res, err = http.request("https://localhost:" .. port .. "/hello")
      assert.is_nil(res)
      assert.matches("^tls handshake: certificate verify failed %(unable to get local issuer", err)
      -- the server logged its side and keeps serving
      res = assert(http.request("https://localhost:" .. port .. "/hello", { tls = client_ctx() }))
      assert.equal(200, res.status)
      srv:close()
      assert(task:join())
      assert.equal(1, srv.tls_failures)
      assert.matches("^tls handshake: .*unknown ca %(from 127%.0%.0%.1:%d+%)$", errors[1])
    end)
  end)

  it("follows redirects across schemes", function()
    run(function()
      local tsrv, tport, ttask = start()
      local psrv, pport, ptask = start { plain = true }
      local https = "https://localhost:" .. tport
      local plain = "http://127.0.0.1:" .. pport
      -- http -> https -> http
      local res = assert(http.request(plain .. "/to?url=" .. https .. "/to?url=" .. plain .. "/hello",
        { redirects = 2, tls = client_ctx() }))
      assert.equal("hello over plain\n", res.body)
      res = assert(http.request(plain .. "/to?url=" .. https .. "/hello",
        { redirects = 1, tls = client_ctx() }))
      assert.equal("hello over TLSv1.3\n", res.body)
      assert.equal(https .. "/hello", res.url)
      -- a relative location keeps the scheme
      res = assert(http.request(https .. "/to?url=/hello", { redirects = 1, tls = client_ctx() }))
      assert.equal("hello over TLSv1.3\n", res.body)
      tsrv:close(); psrv:close()
      assert(ttask:join()); assert(ptask:join())
    end)
  end)

  it("checks its tls options", function()
    run(function()
      local cctx = client_ctx()
      assert.matches(helpers.badarg(1, "server", "tls must be a server uring.tls.context, got uring.tls.context"),
        helpers.errmsg(http.server, { tls = cctx, handler = function() end }))
      assert.matches(helpers.badarg(2, "request", "tls must be true or a client uring.tls.context, got number"),
        helpers.errmsg(http.request, "https://x/", { tls = 1 }))
      assert.matches(helpers.badarg(1, "client", "tls must be true or a client uring.tls.context, got string"),
        helpers.errmsg(http.client, { tls = "yes" }))
    end)
  end)
end)
