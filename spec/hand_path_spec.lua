-- The hand-written server's path (issue 17): the core's cuts on a line
-- receive and a send must answer exactly as before.  A line seen lately
-- is handed out from the line cache without a scan for stray CRs, so a
-- line the io-style reader kept with its CRs must never come back from
-- sock:receive with them; the loop is found through the task being
-- resumed, so a plain coroutine inside a task still gets the socket's
-- answers and errors; a socket's metatable check is skipped only for the
-- socket its task's receive just completed on.
local uring = require "uring"
local helpers = require "helpers"

local run = helpers.runner(10)
local pair = helpers.pair

describe("the hand-written server's path #io #net", function()
  helpers.leak_check(before_each, after_each)

  it("a line kept with its CRs by read('l') comes back from receive without them", function()
    run(function()
      local c, s = pair()
      -- the io-style view keeps CRs: these bytes land in the line cache
      assert.equal(6, c:send("abc\r\r\n"))
      assert.equal("abc\r\r", s:read("l"))
      -- the same bytes before the last CR and LF: a hit would keep them
      c:send("abc\r\r\r\n")
      assert.equal("abc", s:receive())
      -- and the other way round: a line receive stored first
      c:send("xyz\r\nxyz\r\n")
      assert.equal("xyz", s:receive())
      assert.equal("xyz\r", s:read("l"))
      -- repeated lines come back equal, stray CRs dropped each time
      for _ = 1, 3 do
        c:send("GET / HTTP/1.1\r\nHo\rst: x\r\n\r\n")
        assert.equal("GET / HTTP/1.1", s:receive())
        assert.equal("Host: x", s:receive())
        assert.equal("", s:receive())
      end
      -- a line longer than the cache keeps (64 bytes) and an empty one
      local long = string.rep("l", 100)
      c:send(long .. "\r\n\n")
      assert.equal(long, s:receive())
      assert.equal("", s:receive())
      c:close(); s:close()
    end)
  end)

  it("a plain coroutine inside a task reads a buffered line and cannot wait", function()
    run(function()
      local c, s = pair()
      -- both lines arrive in one receive: the second is then buffered
      c:send("zero\r\none\r\n")
      assert.equal("zero", s:receive())
      local co = coroutine.wrap(function()
        local line = s:receive()
        local ok, err = pcall(s.receive, s)
        return line, ok, err
      end)
      local line, ok, err = co()
      assert.equal("one", line)
      assert.is_false(ok)
      assert.matches("receive: not inside a task", err)
      -- the task itself still waits and gets the next line
      c:send("two\n")
      assert.equal("two", s:receive())
      c:close(); s:close()
    end)
  end)

  it("interleaved connections keep their own lines and answers", function()
    run(function()
      local srv = helpers.listen()
      local _, port = srv:getsockname()
      local n, rounds = 6, 20
      local served = 0
      local server = uring.spawn(function()
        for _ = 1, n do
          local sock = srv:accept()
          uring.spawn(function()
            local receive, send = sock.receive, sock.send
            for _ = 1, rounds do
              local line = receive(sock)
              local host = receive(sock)
              assert.equal("", receive(sock))
              assert.equal(#line + #host + 1, send(sock, line .. " " .. host))
              served = served + 1
            end
            sock:close()
          end)
        end
      end)
      local clients = {}
      for i = 1, n do
        clients[i] = uring.spawn(function()
          local c = assert(uring.connect("127.0.0.1", port))
          for r = 1, rounds do
            local line, host = "GET /" .. i .. " HTTP/1.1", "Host: " .. r
            c:send(line .. "\r\n" .. host .. "\r\n\r\n")
            local want = line .. " " .. host
            assert.equal(want, c:receive(#want))
          end
          c:close()
        end)
      end
      for i = 1, n do assert.is_true((clients[i]:join())) end
      assert.is_true((server:join()))
      while served < n * rounds do uring.sleep(0.001) end
      srv:close()
    end)
  end)

  it("after a socket is collected, receive and send still check their argument", function()
    run(function()
      local c, s = pair()
      c:send("x\n")
      assert.equal("x", s:receive())       -- s is the socket last checked
      assert.equal(1, s:send("y"))
      local receive, send = s.receive, s.send
      c:close(); s:close()
      s, c = nil, nil
      collectgarbage(); collectgarbage()
      local b = uring.buffer(64)
      assert.has_error(function() receive(b) end,
        "bad argument #1 to 'receive' (uring.socket expected, got uring.buffer)")
      assert.has_error(function() send(b, "z") end,
        "bad argument #1 to 'send' (uring.socket expected, got uring.buffer)")
      assert.has_error(function() receive(nil) end,
        "bad argument #1 to 'receive' (uring.socket expected, got nil)")
    end)
  end)
end)
