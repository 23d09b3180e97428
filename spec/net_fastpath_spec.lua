-- sock:receive and sock:send take short cuts for their common cases
-- (csrc/net.c: a line already buffered; a small send nobody waits for).
-- The cut must answer and raise exactly as the general path does, for
-- every argument shape that reaches it.
local uring = require "uring"
local helpers = require "helpers"

local run = helpers.runner(10)
local pair = helpers.pair

describe("sock:receive and sock:send short cuts #io #net", function()
  helpers.leak_check(before_each, after_each)

  it("every spelling of the line pattern takes the buffered line, CRs dropped", function()
    run(function()
      local c, s = pair()
      local text = "one\r\ntwo\nth\rree\r\nfour\nfive\r\n"
      assert.equal(#text, c:send(text))
      assert.equal("one", s:receive())
      assert.equal("two", s:receive("*l"))
      assert.equal("three", s:receive("l"))
      -- a pattern built at run time is the same string
      local star = "*"
      assert.equal("four", s:receive(star .. "l"))
      -- a prefix goes the general way, and still takes the buffered line
      assert.equal(">five", s:receive("*l", ">"))
      c:close(); s:close()
    end)
  end)

  -- issue 17: a closed socket's first receive buffer goes to the next
  -- socket's first bytes (csrc/net.c, rbuf_drop): it must hold nothing of
  -- the last owner's, whichever way that one ended
  it("receive buffers handed on from closed sockets hold only their new owner's bytes", function()
    run(function()
      local ends = {
        function(s) s:close() end,                        -- through the ring
        function(s)                                       -- a receive in flight
          local t = uring.spawn(function() return s:receive("*l") end)
          uring.yield()
          s:close()
          local ok, got, err = t:join()
          assert.same({ true, nil, "closed" }, { ok, got, err })
        end,
        function() end,                                   -- collected (below)
      }
      for i = 1, 24 do
        local c, s = pair()
        local fill = string.char(65 + i % 26)
        -- lines that fit a fresh 4 KiB buffer and ones that do not, then
        -- a tail with no newline yet
        local line = fill:rep(i * 350 % 6000 + 1)
        assert(c:send(line .. "\n" .. i))
        assert.equal(line, s:receive("*l"))
        assert.equal(tostring(i), s:receive(#tostring(i)))
        if i % 3 == 0 then        -- then more than the buffer holds
          local big = ("%d,"):format(i):rep(9000)
          assert(c:send(big))
          assert.equal(big, s:receive(#big))
        end
        ends[i % #ends + 1](s)
        s = nil
        c:close()
        collectgarbage()
      end
    end)
  end)

  it("a number is a count and a numeric string a bad pattern, as before", function()
    run(function()
      local c, s = pair()
      c:send("abcdef\n")
      assert.equal("abc", s:receive(3))
      assert.has_error(function() s:receive("3") end,
        "bad argument #1 to 'receive' (invalid receive pattern)")
      assert.has_error(function() s:receive({}) end,
        "bad argument #1 to 'receive' (invalid receive pattern)")
      assert.has_error(function() s:receive("*l", {}) end,
        "bad argument #2 to 'receive' (string expected, got table)")
      assert.equal("def", s:receive("*l"))
      c:close(); s:close()
    end)
  end)

  it("waits for a line that is not there yet, with and without a pattern", function()
    run(function()
      local c, s = pair()
      local got = uring.spawn(function() return s:receive(), s:receive("*l") end)
      uring.sleep(0.01)
      c:send("late")
      uring.sleep(0.01)
      c:send(" one\nlater\n")
      local ok, a, b = got:join()
      assert(ok, a)
      assert.equal("late one", a)
      assert.equal("later", b)
      c:close(); s:close()
    end)
  end)

  it("raises for what is not an open socket, even with a line buffered", function()
    run(function()
      local c, s = pair()
      c:send("x\ny\n")
      assert.equal("x", s:receive())
      local receive, send = s.receive, s.send
      assert.has_error(function() receive(io.stdout, "*l") end,
        "bad argument #1 to 'receive' (uring.socket expected, got FILE*)")
      assert.has_error(function() receive({}) end,
        "bad argument #1 to 'receive' (uring.socket expected, got table)")
      assert.has_error(function() send(io.stdout, "z") end,
        "bad argument #1 to 'send' (uring.socket expected, got FILE*)")
      s:close()
      assert.has_error(function() s:receive("*l") end,
        "attempt to use a closed socket")
      assert.has_error(function() s:receive() end,
        "attempt to use a closed socket")
      assert.has_error(function() s:send("z") end,
        "attempt to use a closed socket")
      c:close()
    end)
  end)

  it("sends what string.sub(data, i, j) would, small, pinned or waited for", function()
    run(function()
      local c, s = pair()
      assert.equal(3, c:send("hello", 2, 4))
      assert.equal(2, c:send("hello", -2))
      assert.equal(0, c:send("hello", 4, 2))
      assert.equal(5, c:send(12345))                 -- a number is its string
      local big = ("b"):rep(5000)                    -- pinned, not copied
      assert.equal(4999, c:send(big .. "\n", 2, 5000))
      c:send("\n")
      local huge = ("h"):rep(100000)                 -- too big to go behind
      assert.equal(100000, c:send(huge))
      c:send("\n")
      assert.equal("ell" .. "lo" .. "12345" .. ("b"):rep(4999), s:receive())
      assert.equal(huge, s:receive())
      assert.has_error(function() c:send({}) end)
      assert.has_error(function() c:send("x", "y") end)
      c:close(); s:close()
    end)
  end)

  -- csrc/strcache.c: a line seen lately comes back as the string made last
  -- time (two slots per hash of its length and three bytes); whatever
  -- shares or steals a slot, each receive must still give its own bytes
  it("lines that come again, and lines that crowd each other's slots, come back as sent", function()
    run(function()
      local c, s = pair()
      local lines, seed = {}, 7
      local function rnd(n)                    -- a fixed sequence: repeatable
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
      end
      for i = 1, 300 do
        local len = rnd(90)                    -- some beyond the 64 kept
        local t = {}
        for k = 1, len do t[k] = string.char(97 + rnd(26)) end
        lines[i] = table.concat(t)
      end
      lines[1], lines[2] = "", "GET / HTTP/1.1"
      local order = {}
      for round = 1, 3 do
        for i = 1, #lines do order[#order + 1] = lines[1 + rnd(#lines)] end
        order[#order + 1] = lines[round]
      end
      local sender = uring.spawn(function()
        for k = 1, #order, 50 do
          c:send(table.concat(order, "\r\n", k, math.min(k + 49, #order)) .. "\r\n")
        end
      end)
      for k = 1, #order do assert.equal(order[k], s:receive("*l")) end
      -- the io-style "L" keeps the LF; a CR inside is kept by "L", dropped by "*l"
      c:send("GET / HTTP/1.1\nGET / HTTP/1.1\r\nab\rc\r\n\n")
      assert.equal("GET / HTTP/1.1\n", s:read("L"))
      assert.equal("GET / HTTP/1.1\r\n", s:read("L"))
      assert.equal("abc", s:receive())
      assert.equal("", s:receive())
      assert(sender:join())
      c:close(); s:close()
    end)
  end)

  -- csrc/strcache.c: a small send is pinned through one of 16 slots, or
  -- copied when its slot is still being read; the bytes must arrive either
  -- way, the strings collected or not
  it("small sends in flight at once, pinned or copied, arrive whole", function()
    run(function()
      local n, rounds = 24, 4
      local pairs_ = {}
      for i = 1, n do pairs_[i] = { pair() } end
      local shared = ("s"):rep(100) .. "\n"     -- one string on every socket
      for r = 1, rounds do
        -- every socket's send goes behind in this one turn: slots are busy
        for i = 1, n do
          local msg = string.format("%d-%d-%s\n", r, i, ("x"):rep((i * r) % 900))
          assert.equal(#msg, pairs_[i][1]:send(msg))
          assert.equal(#shared, pairs_[i][1]:send(shared))
        end
        collectgarbage()                     -- the strings now live in slots only
        for i = 1, n do
          local s = pairs_[i][2]
          assert.equal(string.format("%d-%d-%s", r, i, ("x"):rep((i * r) % 900)),
                       s:receive())
          assert.equal(("s"):rep(100), s:receive())
        end
      end
      for i = 1, n do pairs_[i][1]:close(); pairs_[i][2]:close() end
    end)
  end)

  -- csrc/net.c: the socket receive or send last checked skips the
  -- metatable check on the next call (loop->sock_hot); its __gc forgets it,
  -- so nothing that takes its memory later passes for it
  it("a socket checked last, then closed or collected, is never taken for another object", function()
    run(function()
      local c, s = pair()
      c:send("a\nb\n")
      assert.equal("a", s:receive("*l"))       -- s is the last checked now
      local receive, send = s.receive, s.send
      s:close()
      assert.has_error(function() receive(s, "*l") end, "attempt to use a closed socket")
      assert.has_error(function() send(s, "x") end, "attempt to use a closed socket")
      local c2, s2 = pair()
      c2:send("x\n")
      assert.equal("x", receive(s2, "*l"))     -- s2 is the last checked now
      local kept = {}
      for i = 1, 100 do kept[i] = false end  -- room first: no allocation below
      local open = uring.open
      c2:close(); s2:close()
      c2, s2 = nil, nil
      collectgarbage(); collectgarbage()
      -- files, made at once: the first mostly takes the collected socket's
      -- memory (not under ASan, whose quarantine delays reuse)
      for i = 1, 100 do kept[i] = open("/dev/null") end
      for _, f in ipairs(kept) do
        assert.has_error(function() receive(f, "*l") end,
          "bad argument #1 to 'receive' (uring.socket expected, got uring.file)")
        assert.has_error(function() send(f, "x") end,
          "bad argument #1 to 'send' (uring.socket expected, got uring.file)")
      end
      for _, f in ipairs(kept) do f:close() end
      c:close()
    end)
  end)

  -- csrc/net.c line_k: the short cut's own continuation, for a line that
  -- had to be waited for; whatever the bytes bring must end as the
  -- general path ends it
  it("a line waited for by the short cut: in pieces, cut by the peer, timed out, cancelled", function()
    run(function()
      local c, s = pair()
      local receive = s.receive
      -- pieces: the first bytes bring no whole line
      local got = uring.spawn(function() return receive(s, "*l"), receive(s) end)
      uring.sleep(0.01)
      c:send("par")
      uring.sleep(0.01)
      c:send("t\r\nnext")
      uring.sleep(0.01)
      c:send("\n")
      local ok, a, b = got:join()
      assert(ok, a)
      assert.equal("part", a)
      assert.equal("next", b)
      -- a timeout keeps what came; the next call takes the whole line
      s:settimeout(0.02)
      c:send("hal")
      local r, err, en = receive(s, "*l")
      assert.is_nil(r); assert.equal("timeout", err); assert.equal(uring.errno.ETIME, en)
      s:settimeout(nil)
      c:send("f\n")
      assert.equal("half", receive(s, "*l"))
      -- cancelled while waiting: "canceled" raised in the task
      local w = uring.spawn(function() return receive(s, "*l") end)
      uring.sleep(0.01)
      w:cancel()
      local wok, werr = w:join()
      assert.is_false(wok); assert.matches("canceled", tostring(werr))
      -- the peer closes with half a line buffered: nil, "closed", the rest
      c:send("tail")
      uring.sleep(0.01)
      c:close()
      local line, why, partial = receive(s, "*l")
      assert.is_nil(line); assert.equal("closed", why); assert.equal("tail", partial)
      s:close()
    end)
  end)
end)
