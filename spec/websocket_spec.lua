-- spec/websocket_spec.lua: RFC 6455 in uring.http (req:upgrade and
-- uring.http.websocket) against a WebSocket implementation not written
-- here, python3-websockets (spec/helpers/ws_peer.py, run with Debian's
-- /usr/bin/python3 under `timeout 60`), against itself, and against
-- frames made by hand on a plain socket for every fault the protocol
-- names: the close code it requires, the server serving on, nothing
-- leaked.  Everything listens on 127.0.0.1 port 0.
local uring = require "uring"
local helpers = require "helpers"
local http = uring.http

local run = helpers.runner(40)
local PEER = { "env", "-u", "LD_PRELOAD", "timeout", "60", "/usr/bin/python3",
  "spec/helpers/ws_peer.py" }
-- MiB through each echo in make test; `make -C bench ws-256` sets
-- WS_MIB=256
local MIB = math.tointeger(tonumber(os.getenv("WS_MIB") or "")) or 16

local function peer(args, opts)
  local argv = table.move(PEER, 1, #PEER, 1, {})
  table.move(args, 1, #args, #argv + 1, argv)
  for k, v in pairs(opts or {}) do argv[k] = v end
  return assert(uring.exec(argv))
end

-- sha256 by sha256sum(1) fed through a pipe: the uring end of "hashed on
-- both ends" (a hash in Lua would be the slowest part of the test)
local function hasher()
  local p = assert(uring.exec{ "sha256sum", stdin = "pipe", stdout = "pipe" })
  return {
    update = function(_, s) assert(p.stdin:write(s)) end,
    hex = function()
      p.stdin:close()
      local out = p.stdout:read("a")
      p.stdout:close()
      assert(p:wait())
      return out:match("^(%x+)")
    end,
  }
end

-- An echo server: each connection upgraded with opts and echoed until it
-- ends; what each ended with goes to log (ws:receive's code and reason,
-- or upgrade's error).  /plain answers without upgrading.
local function echo_server(opts, each)
  local log = { errors = {} }
  local srv = assert(http.server{ handler = function(req, res)
    if req.path == "/plain" then return 200, "plain" end
    local ws, err = req:upgrade(opts)
    if not ws then log[#log + 1] = err; return end
    while true do
      local m, kind, code, reason = ws:receive()
      if not m then log[#log + 1] = { kind = kind, code = code, reason = reason }; break end
      if each then each(m, kind) end
      assert(ws:send(m, kind))
    end
  end, on_error = function(e) table.insert(log.errors, tostring(e)) end })
  uring.spawn(srv.serve, srv)
  return srv, log
end

-- the handler's entry in log, once it is there (the handler logs after
-- its close handshake, which ends after the peer has seen the close)
local function entry(log, i)
  i = i or 1
  local t0 = uring.now()
  while log[i] == nil and uring.now() - t0 < 10 do uring.sleep(0.005) end
  return log[i]
end

-- frames by hand ------------------------------------------------------------

local function mask(s, key)
  local out = {}
  for i = 1, #s do
    out[i] = string.char(s:byte(i) ~ key:byte((i - 1) % 4 + 1))
  end
  return table.concat(out)
end

-- a frame: b1 (FIN, RSV, opcode) as given; masked unless unmasked; len
-- overrides the length field
local function frame(b1, payload, unmasked)
  local n = #payload
  local m = unmasked and 0 or 0x80
  local h
  if n < 126 then h = string.pack("BB", b1, m | n)
  elseif n < 65536 then h = string.pack(">BBI2", b1, m | 126, n)
  else h = string.pack(">BBI8", b1, m | 127, n) end
  if unmasked then return h .. payload end
  local key = "\x12\x34\x56\x78"
  return h .. key .. mask(payload, key)
end

-- a server frame (unmasked): op, fin, payload | nil at EOF
local function read_frame(sock)
  local h = sock:receive(2)
  if not h then return nil end
  local b1, b2 = h:byte(1, 2)
  local len = b2 & 0x7f
  assert(b2 & 0x80 == 0, "a server frame was masked")
  if len == 126 then len = string.unpack(">I2", sock:receive(2))
  elseif len == 127 then len = string.unpack(">I8", sock:receive(8)) end
  return b1 & 0x0f, b1 >= 0x80, len > 0 and sock:receive(len) or ""
end

local HANDSHAKE = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
  .. "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
  .. "Sec-WebSocket-Version: 13\r\n\r\n"

-- a connection upgraded by hand: the socket, and the answer's head
local function raw(port, request)
  local sock = assert(uring.connect("127.0.0.1", port))
  assert(sock:send(request or HANDSHAKE))
  local head = {}
  while true do
    local l = sock:receive("*l")
    if not l or l == "" then break end
    head[#head + 1] = l
  end
  return sock, table.concat(head, "\n")
end

-- the close frame the server answers with: code, reason; then EOF
local function close_of(sock)
  while true do
    local op, _, payload = read_frame(sock)
    assert(op, "connection ended without a close frame")
    if op == 8 then
      local code = #payload >= 2 and string.unpack(">I2", payload) or nil
      assert.is_nil(sock:receive(1))         -- the server closed after it
      return code, payload:sub(3)
    end
  end
end

-- the server still serves: a plain request and a fresh echo
local function serves(port)
  local r = assert(http.request("http://127.0.0.1:" .. port .. "/plain"))
  assert.equal("plain", r.body)
  local ws = assert(http.websocket("ws://127.0.0.1:" .. port .. "/"))
  assert.equal(5, ws:send("again"))
  assert.same({ "again", "text" }, { ws:receive() })
  ws:close()
end

describe("websocket #io #net", function()
  helpers.leak_check(before_each, after_each)

  it("a uring server with a python3-websockets client: text, binary, fragments, ping, "
    .. MIB .. " MiB hashed on both ends", function()
    run(function()
      -- the bulk: MIB messages of 1 MiB each, hashed here as they came
      local h = hasher()
      local srv, log = echo_server({ protocols = { "other", "chat" } },
        function(m, kind) if kind == "binary" and #m == 1 << 20 then h:update(m) end end)
      local p = peer({ "client", "ws://127.0.0.1:" .. srv:port() .. "/", tostring(MIB) },
        { stdout = "pipe" })
      local out = p.stdout:read("a")
      p.stdout:close()
      assert.is_true(p:wait())
      srv:close()
      local function field(k) return out:match('"' .. k .. '": "?([^,"}]*)') end
      assert.equal("chat", field("protocol"))
      for _, k in ipairs { "text", "binary", "fragmented", "pong" } do
        assert.equal("true", field(k), k .. " in " .. out)
      end
      assert.equal(tostring(MIB * 1024 * 1024), field("bytes"))
      assert.equal(64, #field("sent_sha"))
      assert.equal(field("sent_sha"), field("recv_sha"))   -- python's two ends
      assert.equal(field("sent_sha"), h:hex())             -- and ours
      assert.equal("1000", field("close_code"))
      assert.same({ kind = "closed", code = 1000, reason = "done" }, entry(log))
    end)
  end)

  it("a uring client with a python3-websockets server: subprotocol, fragments from the peer, "
    .. MIB .. " MiB hashed, its close code", function()
    run(function()
      local p = peer({ "server" }, { stdin = "pipe", stdout = "pipe" })
      local port = assert(p.stdout:read("l"))
      local url = "ws://127.0.0.1:" .. port .. "/"
      local ws = assert(http.websocket(url, { protocols = { "x", "chat" }, fragment = 7 }))
      assert.equal("chat", ws.protocol)
      assert.equal(19, ws:send("hello there, python"))   -- 3 frames of 7
      assert.same({ "hello there, python", "text" }, { ws:receive() })
      ws:send("fragment-me")                              -- 3 frames back
      assert.same({ "abc", "text" }, { ws:receive() })
      ws.fragment = false             -- the bulk in one frame a message
      local h = hasher()
      local rnd = helpers.random_bytes(1024 * 1024)
      for i = 1, MIB do
        local m = rnd:sub(i) .. rnd:sub(1, i - 1)
        h:update(m)
        assert.equal(#m, ws:send(m, "binary"))
        local back, kind = ws:receive()
        assert.equal("binary", kind)
        assert.is_true(back == m)
      end
      ws:send("sha?")
      assert.equal(h:hex(), (ws:receive()))
      assert.is_true(ws:ping("hi"))
      ws:send("after the ping")       -- the pong comes first, counted
      assert.same({ "after the ping", "text" }, { ws:receive() })
      assert.equal(1, ws.pongs)
      ws:send("close-me")
      assert.same({ nil, "closed", 4001, "asked to" }, { ws:receive() })
      helpers.fails("closed", uring.errno.EBADF, ws:send("late"))
      -- our close, answered
      local ws2 = assert(http.websocket(url))
      assert.is_nil(ws2.protocol)
      assert.is_true(ws2:close(3001, "bye"))
      assert.equal(3001, ws2.close_code)
      p.stdin:close(); p.stdout:close()
      assert.is_true(p:wait())
    end)
  end)

  it("a uring client with a uring server: one task receives while two send; frames never interleave", function()
    run(function()
      local srv, log = echo_server({ max_message = 1 << 20 })
      local ws = assert(http.websocket("ws://127.0.0.1:" .. srv:port() .. "/",
        { fragment = 1000 }))
      local n, size = 200, 5000           -- 5 frames a message, 2 senders
      local reader = uring.spawn(function()
        local seen = {}
        for _ = 1, 2 * n do
          local m = assert(ws:receive())
          local who = m:match("^(%a) +%d+ ")
          assert(who and #m == size and m:sub(13) == who:rep(size - 12),
            "a message came back mixed: " .. m:sub(1, 40))
          seen[who] = (seen[who] or 0) + 1
        end
        return seen
      end)
      local function sender(who)
        for i = 1, n do
          local m = ("%s %9d "):format(who, i)
          m = m .. who:rep(size - #m)
          assert.equal(size, ws:send(m))
          if i % 7 == 0 then uring.yield() end
        end
      end
      local a, b = uring.spawn(sender, "a"), uring.spawn(sender, "b")
      assert(a:join()); assert(b:join())
      local ok, seen = reader:join()
      assert(ok, seen)
      assert.same({ a = n, b = n }, seen)
      ws:close()
      srv:close()
      assert.equal(1000, entry(log).code)
    end)
  end)

  it(MIB .. " MiB uring to uring, hashed on both ends", function()
    run(function()
      local server_got = hasher()
      local srv = echo_server(nil, function(m) server_got:update(m) end)
      local ws = assert(http.websocket("ws://127.0.0.1:" .. srv:port() .. "/"))
      local sent, got = hasher(), hasher()
      local rnd = helpers.random_bytes(1 << 20)
      local w = uring.spawn(function()
        for i = 1, MIB do
          local m = rnd:sub(i * 7) .. rnd:sub(1, i * 7 - 1)
          sent:update(m)
          assert(ws:send(m, "binary"))
        end
      end)
      local total = 0
      while total < MIB << 20 do
        local m = assert(ws:receive())
        got:update(m)
        total = total + #m
      end
      assert(w:join())
      ws:close()
      srv:close()
      local a, b, c = sent:hex(), got:hex(), server_got:hex()
      assert.equal(a, b)
      assert.equal(a, c)
    end)
  end)

  describe("a server meeting a faulty client closes with the code RFC 6455 names, and serves on", function()
    local cases = {
      { "an unmasked frame", 1002, frame(0x81, "hi", true) },
      { "text that is not UTF-8", 1007, frame(0x81, "ok \xff\xfe") },
      { "a surrogate in UTF-8 text", 1007, frame(0x81, "\xed\xa0\x80") },
      { "text not UTF-8 across fragments", 1007,
        frame(0x01, "\xe2\x82") .. frame(0x80, "\xff") },
      { "close code 999", 1002, frame(0x88, string.pack(">I2", 999)) },
      { "close code 1005 on the wire", 1002, frame(0x88, string.pack(">I2", 1005)) },
      { "close code 1006 on the wire", 1002, frame(0x88, string.pack(">I2", 1006)) },
      { "close code 2000", 1002, frame(0x88, string.pack(">I2", 2000)) },
      { "close code 5000", 1002, frame(0x88, string.pack(">I2", 5000)) },
      { "a 1-byte close payload", 1002, frame(0x88, "\3") },
      { "a close reason not UTF-8", 1007, frame(0x88, string.pack(">I2", 1000) .. "\xc0\x80") },
      { "a frame over max_message", 1009, frame(0x82, ("x"):rep(2000)) },
      { "fragments over max_message", 1009,
        frame(0x02, ("x"):rep(800)) .. frame(0x80, ("x"):rep(800)) },
      { "a reserved bit", 1002, frame(0xC1, "x") },
      { "reserved opcode 3", 1002, frame(0x83, "x") },
      { "reserved opcode 11", 1002, frame(0x8B, "") },
      { "a ping over 125 bytes", 1002, frame(0x89, ("p"):rep(126)) },
      { "a fragmented ping", 1002, frame(0x09, "p") },
      { "a continuation with no message", 1002, frame(0x80, "x") },
      { "a new message inside a fragmented one", 1002,
        frame(0x01, "a") .. frame(0x81, "b") },
      { "a valid close 4000 is echoed", 4000, frame(0x88, string.pack(">I2", 4000) .. "why") },
      { "an empty close is answered empty", false, frame(0x88, "") },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " -> " .. tostring(c[2]), function()
        run(function()
          local srv, log = echo_server({ max_message = 1000 })
          local sock = raw(srv:port())
          -- a ping before the fault: answered with its payload
          assert(sock:send(frame(0x89, "ping!")))
          local op, fin, payload = read_frame(sock)
          assert.same({ 10, true, "ping!" }, { op, fin, payload })
          assert(sock:send(c[3]))
          local code = close_of(sock)
          sock:close()
          assert.equal(c[2] or nil, code)
          local want = c[2] or 1005
          -- the handler's receive reported it, with a reason
          local e = entry(log)
          assert.equal("closed", e.kind)
          assert.equal(want, e.code)
          assert.is_string(e.reason)
          -- a fault of the peer's is logged through the server's on_error
          if want == 1002 or want == 1007 or want == 1009 then
            assert.equal("websocket: " .. e.reason .. " (closed with " .. want .. ")",
              log.errors[1])
          else
            assert.is_nil(log.errors[1])
          end
          serves(srv:port())
          srv:close()
        end)
      end)
    end
  end)

  describe("a handshake the server refuses", function()
    local H = "GET / HTTP/1.1\r\nHost: t\r\n"
    local cases = {
      { "version 8", 426, H .. "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        "version 13 required" },
      { "no key", 400, H .. "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        .. "Sec-WebSocket-Version: 13\r\n\r\n", "bad Sec-WebSocket-Key" },
      { "a key of 15 bytes", 400, H .. "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "bad Sec-WebSocket-Key" },
      { "no Upgrade", 400, H .. "Connection: Upgrade\r\n"
        .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "no Upgrade: websocket" },
      { "no Connection: Upgrade", 400, H .. "Upgrade: websocket\r\nConnection: keep-alive\r\n"
        .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "no Connection: Upgrade" },
      { "POST", 400, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nUpgrade: websocket\r\n"
        .. "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        .. "Sec-WebSocket-Version: 13\r\n\r\n", "method must be GET" },
      { "HTTP/1.0", 400, "GET / HTTP/1.0\r\nHost: t\r\nUpgrade: websocket\r\n"
        .. "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        .. "Sec-WebSocket-Version: 13\r\n\r\n", "HTTP/1.1 required" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. ": " .. c[2] .. ", upgrade returns nil and why", function()
        run(function()
          local srv, log = echo_server()
          local sock, head = raw(srv:port(), c[3])
          sock:close()
          assert.matches("^HTTP/1.1 " .. c[2], head)
          if c[2] == 426 then assert.matches("Sec%-WebSocket%-Version: 13", head) end
          assert.equal("websocket handshake: " .. c[4], entry(log))
          serves(srv:port())
          srv:close()
        end)
      end)
    end

    it("extra headers in the 101; a second upgrade raises", function()
      run(function()
        local second
        local srv = assert(http.server{ handler = function(req)
          local ws = assert(req:upgrade{ headers = { ["X-Served-By"] = "uring" } })
          second = helpers.errmsg(req.upgrade, req)
          ws:close()
        end })
        uring.spawn(srv.serve, srv)
        local sock, head = raw(srv:port())
        assert.matches("\nX%-Served%-By: uring", head)
        assert.equal(1000, (close_of(sock)))
        sock:close()
        srv:close()
        assert.matches("upgrade: the response has already been sent", second)
      end)
    end)

    it("the accept key is RFC 6455's example's", function()
      run(function()
        local srv = echo_server()
        local sock, head = raw(srv:port())
        assert.matches("^HTTP/1.1 101 Switching Protocols", head)
        assert.matches("Sec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=", head)
        assert(sock:send(frame(0x88, string.pack(">I2", 1000))))
        assert.equal(1000, (close_of(sock)))
        sock:close()
        srv:close()
      end)
    end)
  end)

  describe("a client meeting a faulty server", function()
    -- a listener answering one connection with `answer` (a function of
    -- the request's key), then frames
    local function fake(answer, frames, hangup)
      local l, port = helpers.listen()
      local t = uring.spawn(function()
        local s = assert(l:accept())
        l:close()
        local key
        while true do
          local line = s:receive("*l")
          if not line or line == "" then break end
          key = line:match("^Sec%-WebSocket%-Key: (%S+)") or key
        end
        s:send(answer(key))
        if frames then s:send(frames) end
        if not hangup then s:receive("*a") end
        s:close()
      end)
      return port, t
    end
    local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    local function accept(key)
      -- the client's own check: computed here with sha1sum, independently
      local p = io.popen("printf %s " .. helpers.shq(key .. GUID)
        .. " | env -u LD_PRELOAD openssl dgst -sha1 -binary | base64")
      local a = p:read("l"); p:close()
      return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        .. "Connection: Upgrade\r\nSec-WebSocket-Accept: " .. a .. "\r\n\r\n"
    end

    it("a masked frame from the server: 1002", function()
      run(function()
        local port, t = fake(accept, frame(0x81, "masked"))
        local ws = assert(http.websocket("ws://127.0.0.1:" .. port .. "/"))
        local m, err, code, reason = ws:receive()
        assert.same({ nil, "closed", 1002, "masked frame from the server" },
          { m, err, code, reason })
        assert(t:join())
      end)
    end)

    it("a dropped connection: nil, 'closed', 1006", function()
      run(function()
        local port, t = fake(accept, "\x81\x05hel", true)
        local ws = assert(http.websocket("ws://127.0.0.1:" .. port .. "/"))
        local m, err, code = ws:receive()
        assert.same({ nil, "closed", 1006 }, { m, err, code })
        assert(t:join())
      end)
    end)

    it("a wrong Sec-WebSocket-Accept, a 200, an extension, a subprotocol not offered", function()
      run(function()
        local answers = {
          { function() return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            .. "Connection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n" end,
            "websocket handshake: wrong Sec%-WebSocket%-Accept" },
          { function() return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" end,
            "websocket handshake: the server answered 200" },
          { function(k) return accept(k):gsub("\r\n\r\n$", "\r\nSec-WebSocket-Extensions: x\r\n\r\n") end,
            "extension nobody asked for" },
          { function(k) return accept(k):gsub("\r\n\r\n$", "\r\nSec-WebSocket-Protocol: y\r\n\r\n") end,
            "subprotocol nobody asked for: y" },
        }
        for _, a in ipairs(answers) do
          local port, t = fake(a[1])
          local ws, err = http.websocket("ws://127.0.0.1:" .. port .. "/")
          assert.is_nil(ws)
          assert.matches(a[2], err)
          assert(t:join())
        end
      end)
    end)

    it("wss:// is refused until uring has TLS; bad urls; a refused connection", function()
      run(function()
        local ws, err = http.websocket("wss://127.0.0.1:1/")
        assert.is_nil(ws)
        if not uring.tls then
          assert.equal("wss:// needs TLS, which this build of uring does not have", err)
        end
        ws, err = http.websocket("http://x/")
        assert.is_nil(ws)
        assert.equal("invalid websocket url (ws:// or wss:// expected): http://x/", err)
        local a, b, c = http.websocket("ws://127.0.0.1:1/")
        assert.is_nil(a)
        assert.matches("refused", b)
        assert.equal(uring.errno.ECONNREFUSED, c)
      end)
    end)
  end)

  it("a server that never answers the handshake: nil, 'timeout' after opts.timeout", function()
    run(function()
      local l, port = helpers.listen()
      local t = uring.spawn(function()
        local s = assert(l:accept())
        s:receive("*a")                  -- until the client gives up
        s:close()
      end)
      local t0 = uring.now()
      helpers.fails("timeout", uring.errno.ETIME,
        http.websocket("ws://127.0.0.1:" .. port .. "/", { timeout = 0.2 }))
      assert.is_true(uring.now() - t0 < 5)
      assert(t:join())
      l:close()
    end)
  end)

  it("a ping between fragments is answered at once; empty messages go both ways", function()
    run(function()
      local srv = echo_server()
      local sock = raw(srv:port())
      assert(sock:send(frame(0x01, "frag") .. frame(0x89, "mid") .. frame(0x80, "ment")
        .. frame(0x81, "") .. frame(0x82, "")))
      assert.same({ 10, true, "mid" }, { read_frame(sock) })
      assert.same({ 1, true, "fragment" }, { read_frame(sock) })
      assert.same({ 1, true, "" }, { read_frame(sock) })
      assert.same({ 2, true, "" }, { read_frame(sock) })
      assert(sock:send(frame(0x88, string.pack(">I2", 1000))))
      assert.equal(1000, (close_of(sock)))
      sock:close()
      srv:close()
    end)
  end)

  it("a receive under uring.timeout between frames loses nothing", function()
    run(function()
      local srv = echo_server()
      local ws = assert(http.websocket("ws://127.0.0.1:" .. srv:port() .. "/"))
      assert.same({ nil, "timeout", uring.errno.ETIME }, { uring.timeout(0.05, ws.receive, ws) })
      ws:send("still here")
      assert.same({ "still here", "text" }, { ws:receive() })
      ws:close()
      srv:close()
    end)
  end)

  it("close() while another task receives: the receiver sees the close", function()
    run(function()
      local srv = echo_server()
      local ws = assert(http.websocket("ws://127.0.0.1:" .. srv:port() .. "/"))
      local r = uring.spawn(function() return ws:receive() end)
      uring.sleep(0.01)
      assert.is_true(ws:close(4002, "done here"))
      local ok, m, err, code = r:join()
      assert.is_true(ok)
      assert.same({ nil, "closed", 4002 }, { m, err, code })
      srv:close()
    end)
  end)

  it("a handler that returns leaves with a close handshake (1000), one that raises with 1011", function()
    run(function()
      local errors = {}
      local srv = assert(http.server{ handler = function(req)
        local ws = assert(req:upgrade())
        local m = ws:receive()
        if m == "raise" then error("boom") end
      end, on_error = function(e) errors[#errors + 1] = tostring(e) end })
      uring.spawn(srv.serve, srv)
      local url = "ws://127.0.0.1:" .. srv:port() .. "/"
      local ws = assert(http.websocket(url))
      ws:send("return")
      assert.same({ nil, "closed", 1000, "" }, { ws:receive() })
      ws = assert(http.websocket(url))
      ws:send("raise")
      assert.same({ nil, "closed", 1011, "internal error" }, { ws:receive() })
      assert.matches("boom", errors[1])
      srv:close()
    end)
  end)

  it("server:close() tells each WebSocket 1001, going away, and its handler ends", function()
    run(function()
      local srv, log = echo_server()
      local ws = assert(http.websocket("ws://127.0.0.1:" .. srv:port() .. "/"))
      ws:send("x"); assert(ws:receive())
      local t0 = uring.now()
      srv:close()
      assert.same({ nil, "closed", 1001, "going away" }, { ws:receive() })
      assert.same({ kind = "closed", code = 1001, reason = "" }, entry(log))   -- the echo
      assert.is_true(uring.now() - t0 < 2, "it waited for the grace period")
    end)
  end)

  it("a send that fails after its call returned is kept: every later send returns it", function()
    run(function()
      local got = {}
      local srv = assert(http.server{ handler = function(req)
        local ws = assert(req:upgrade())
        local chunk = ("z"):rep(60000)
        for _ = 1, 10000 do
          local ok, err, en = ws:send(chunk, "binary")
          if not ok then got[1] = { err, en }; break end
        end
        got[2] = { select(2, ws:send("again")) }
      end })
      uring.spawn(srv.serve, srv)
      local sock = raw(srv:port())
      sock:close()                      -- gone, no close frame: a reset
      local t0 = uring.now()
      while not got[2] and uring.now() - t0 < 10 do uring.sleep(0.01) end
      srv:close()
      local E = uring.errno
      assert(got[1], "the sends never failed")
      assert.is_true(got[1][2] == E.EPIPE or got[1][2] == E.ECONNRESET, tostring(got[1][1]))
      assert.same(got[1], got[2])
    end)
  end)

  it("raises on bad arguments", function()
    run(function()
      local badarg = helpers.badarg
      assert.matches(badarg(1, "websocket", "string expected, got number"),
        helpers.errmsg(http.websocket, 1))
      assert.matches(badarg(2, "websocket", "max_message must be a positive integer"),
        helpers.errmsg(http.websocket, "ws://127.0.0.1:1/", { max_message = -1 }))
      assert.matches(badarg(2, "websocket", "protocols: each must be a token string"),
        helpers.errmsg(http.websocket, "ws://127.0.0.1:1/", { protocols = { "a b" } }))
      local srv, log = echo_server()
      local ws = assert(http.websocket("ws://127.0.0.1:" .. srv:port() .. "/"))
      assert.matches(badarg(1, "send", "string expected, got table"),
        helpers.errmsg(function() return ws:send({}) end))
      assert.matches(badarg(2, "send", "'text' or 'binary' expected"),
        helpers.errmsg(function() return ws:send("x", "json") end))
      assert.matches(badarg(1, "send", "text message not UTF-8"),
        helpers.errmsg(function() return ws:send("\xff", "text") end))
      assert.matches(badarg(1, "close", "close code out of range"),
        helpers.errmsg(function() return ws:close(1005) end))
      assert.matches(badarg(1, "ping", "at most 125 bytes"),
        helpers.errmsg(function() return ws:ping(("x"):rep(126)) end))
      assert.matches(badarg(1, "receive", "websocket expected, got table"),
        helpers.errmsg(function() return ws.receive({}) end))
      -- kind by content when not given: "\xff" goes as binary
      assert.equal(1, ws:send("\xff"))
      assert.same({ "\xff", "binary" }, { ws:receive() })
      ws:close()
      srv:close()
      assert.equal(1000, entry(log).code)
    end)
    assert.matches("not inside a task", helpers.errmsg(http.websocket, "ws://127.0.0.1:1/"))
  end)
end)
