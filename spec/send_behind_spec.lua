-- A small send on a plain socket does not park its task (csrc/net.c,
-- "send-behind"): the core owns the bytes until the kernel's answer, the
-- next send waits for it, and a failure is reported by the next send.
local uring = require "uring"
local helpers = require "helpers"

local EPIPE, ECONNRESET = 32, 104
local run = helpers.runner(10)
local fails, pair = helpers.fails, helpers.pair

-- did another task run while fn did? (a send that parks lets it)
local function switched(fn)
  local ran = false
  local t = uring.spawn(function() ran = true end)
  local r = table.pack(fn())
  local during = ran
  t:join()
  return during, table.unpack(r, 1, r.n)
end

describe("sock:send without a task switch #io #net", function()
  helpers.leak_check(before_each, after_each)

  it("a small send returns at once, and the peer gets the bytes", function()
    run(function()
      local c, s = pair()
      local during, n = switched(function() return c:send("hello\n") end)
      assert.is_false(during)
      assert.equal(6, n)
      assert.equal("hello", s:receive())
      -- with a timeout set, a send waits for the kernel as before
      c:settimeout(5)
      during, n = switched(function() return c:send("again\n") end)
      assert.is_true(during)
      assert.equal(6, n)
      assert.equal("again", s:receive())
      c:close(); s:close()
    end)
  end)

  it("keeps the order of back-to-back sends, small and big", function()
    run(function()
      local c, s = pair()
      local reader = uring.spawn(function() return s:receive("*a") end)
      local expect = {}
      for i = 1, 300 do
        local piece = i % 50 == 0 and ("%d"):format(i):rep(100000)
          or ("%d:"):format(i):rep(i % 7 + 1)
        expect[#expect + 1] = piece
        assert.equal(#piece, c:send(piece))
      end
      c:close()
      local ok, got = reader:join()
      assert(ok, got)
      assert.is_true(got == table.concat(expect), "the bytes came out of order")
      s:close()
    end)
  end)

  it("a slow reader pushes back: the next send waits for the one in flight", function()
    run(function()
      local c, s = pair()
      local chunk = ("w"):rep(60 * 1024)
      local writer = uring.spawn(function()
        for _ = 1, 600 do assert.equal(#chunk, c:send(chunk)) end
        return true
      end)
      uring.sleep(0.05)
      assert.equal("send", writer:waiting_on())   -- 35 MiB do not fit
      local got = assert(s:receive(600 * #chunk))
      assert.equal(600 * #chunk, #got)
      assert(writer:join())
      c:close(); s:close()
    end)
  end)

  it("a failure is reported by the next send, and later sends ask the kernel", function()
    run(function()
      local c, s = pair()
      assert.equal(6, c:send("unread"))
      uring.sleep(0.02)
      s:close()                       -- with unread data: the kernel sends RST
      uring.sleep(0.02)
      assert.equal(1, c:send("a"))    -- queued; the kernel refuses it
      uring.sleep(0.02)
      local a, b, e, sent = c:send("b")
      fails("", { ECONNRESET, EPIPE }, a, b, e)
      assert.equal(0, sent)
      a, b, e, sent = c:send("c")
      fails("", { ECONNRESET, EPIPE }, a, b, e)
      assert.equal(0, sent)
      c:close()
    end)
  end)

  it("shutdown and close go after the bytes already sent", function()
    run(function()
      local c, s = pair()
      assert.equal(4, c:send("one\n"))
      assert.is_true(c:shutdown("send"))
      assert.equal("one\n", s:receive("*a"))
      c:close(); s:close()
      -- the usual end of an HTTP/1.0 answer: send, then close at once
      c, s = pair()
      assert.equal(4, c:send("bye\n"))
      c:close()
      assert.equal("bye\n", s:receive("*a"))
      s:close()
    end)
  end)

  it("a second task sending meanwhile is told the socket is busy", function()
    run(function()
      local c, s = pair()
      local chunk = ("x"):rep(60 * 1024)
      local writer = uring.spawn(function()
        for _ = 1, 600 do c:send(chunk) end
      end)
      uring.sleep(0.05)
      assert.equal("send", writer:waiting_on())
      local ok, err = pcall(c.send, c, "y")
      assert.is_false(ok)
      assert.matches("send: socket is busy", err)
      assert(s:receive(600 * #chunk))
      writer:join()
      c:close(); s:close()
    end)
  end)
end)

describe("uring.http: one task switch per request #io #net", function()
  helpers.leak_check(before_each, after_each)

  it("a keep-alive request costs its server one resume and its client one", function()
    run(function()
      local srv = assert(uring.http.server { port = 0, handler = function(_, res)
        res:header("Content-Type", "text/plain")
        res:finish("hi\n")
      end })
      local serving = uring.spawn(srv.serve, srv)
      local c = assert(uring.connect("127.0.0.1", srv:port()))
      local function get()
        assert(c:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert.equal("HTTP/1.1 200 OK", c:receive("*l"))
        repeat local l = assert(c:receive("*l")) until l == ""
        assert.equal("hi", c:receive("*l"))
      end
      for _ = 1, 5 do get() end      -- the connection and its task are set up
      local n, r0 = 200, uring.stats().resumes
      for _ = 1, n do get() end
      local per = (uring.stats().resumes - r0) / n
      -- 2: the server's wait for the request, the client's for the
      -- answer (the sends park neither; 4 before)
      assert.is_true(per < 2.5, ("%.2f resumes per request"):format(per))
      c:close()
      srv:close()
      assert(serving:join())
    end)
  end)

  it("idle_timeout closes a connection idle between requests, not one whose handler is busy", function()
    run(function()
      local srv = assert(uring.http.server { port = 0, idle_timeout = 0.2,
        handler = function(req, res)
          if req.path == "/slow" then uring.sleep(0.6) end
          res:finish("done\n")
        end })
      local serving = uring.spawn(srv.serve, srv)
      local function answer(c, path)
        assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert.equal("HTTP/1.1 200 OK", c:receive("*l"))
        repeat local l = assert(c:receive("*l")) until l == ""
        return c:receive("*l")
      end
      local c = assert(uring.connect("127.0.0.1", srv:port()))
      assert.equal("done", answer(c, "/slow"))    -- busy 3 times the timeout
      local t0 = uring.now()
      assert.same({ nil, "closed", "" }, { c:receive("*l") })   -- then idle
      local waited = uring.now() - t0
      assert.is_true(waited >= 0.15 and waited < 3, ("closed after %.2f s"):format(waited))
      c:close()
      srv:close()
      assert(serving:join())
    end)
  end)
end)
