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
end)
