-- spec/dns_spec.lua: uring.resolve and the helper-thread lookups behind
-- every name given to connect, listen, udp and sendto.  A lookup runs
-- getaddrinfo on a detached thread and wakes its task through an eventfd
-- READ on the ring; these specs check that it answers, that the loop keeps
-- running meanwhile, and that a task cancelled mid-lookup leaves neither a
-- request nor the eventfd behind.  No network is needed: "localhost" comes
-- from /etc/hosts and ".invalid" never resolves (RFC 6761).
local uring = require "uring"
local helpers = require "helpers"

local EHOSTUNREACH, ETIME = 113, 62

-- Open fds after collecting garbage (a dropped lookup hold, a socket).
local fds = helpers.fds
local errmsg, badarg = helpers.errmsg, helpers.badarg

-- A cancelled lookup's thread ends on its own time; its eventfd closes
-- when it does.  Wait (bounded) for the fd list to come back: up to 20 s,
-- as a resolver whose nameserver drops a query waits 5 s per attempt.
local function settled (before)
  local now = fds()
  for _ = 1, 2000 do
    if now == before then break end
    os.execute("sleep 0.01")
    now = fds()
  end
  return now
end

describe("uring.resolve", function()
  local before
  before_each(function()
    uring.run(function() end)   -- the ring's own fd is not a leak
    before = fds()
  end)
  after_each(function()
    assert.equal(0, uring.stats().inflight)
    assert.equal(before, settled(before))
  end)

  it("resolves localhost to 127.0.0.1, IPv4 first, with the port", function()
    local list = uring.run(uring.resolve, "localhost", 8080)
    assert.is_table(list)
    assert.is_true(#list >= 1)
    assert.same({family = "inet", addr = "127.0.0.1", port = 8080}, list[1])
    local seen = {}
    for _, e in ipairs(list) do
      assert.is_nil(seen[e.addr], "duplicate address " .. e.addr)
      seen[e.addr] = true
    end
  end)

  it("defaults the port to 0", function()
    local list = uring.run(uring.resolve, "localhost")
    assert.equal(0, list[1].port)
  end)

  it("answers numeric hosts without the resolver", function()
    local v4 = uring.run(uring.resolve, "127.0.0.1", 1)
    assert.same({{family = "inet", addr = "127.0.0.1", port = 1}}, v4)
    local v6 = uring.run(uring.resolve, "::1", 2)
    assert.same({{family = "inet6", addr = "::1", port = 2}}, v6)
    local br = uring.run(uring.resolve, "[::1]", 3)
    assert.same({{family = "inet6", addr = "::1", port = 3}}, br)
  end)

  it("returns nil, msg, EHOSTUNREACH for a name that does not resolve", function()
    local r, msg, code = uring.run(uring.resolve, "nonexistent.invalid", 80)
    assert.is_nil(r)
    assert.matches("^nonexistent%.invalid: ", msg)
    assert.equal(EHOSTUNREACH, code)
  end)

  it("does not stall other tasks while a lookup runs", function()
    local ticks, stop = 0, false
    local during
    uring.run(function()
      local ticker = uring.spawn(function()
        while not stop do
          uring.yield()
          ticks = ticks + 1
        end
      end)
      uring.yield()             -- let the ticker start
      local t0 = ticks
      local r = uring.resolve("nonexistent.invalid")
      during = ticks - t0
      stop = true
      ticker:join()
      assert.is_nil(r)
    end)
    -- a blocking lookup would let the ticker run at most once
    assert.is_true(during > 1, "ticks during the lookup: " .. during)
  end)

  it("keeps a 1 ms sleeper ticking through lookups", function()
    local ticks, stop = 0, false
    uring.run(function()
      local ticker = uring.spawn(function()
        while not stop do
          uring.sleep(0.001)
          ticks = ticks + 1
        end
      end)
      local t0 = uring.now()
      repeat                    -- at least 20 ms of lookups
        uring.resolve("nonexistent.invalid")
      until uring.now() - t0 > 0.02
      stop = true
      ticker:join()
    end)
    assert.is_true(ticks > 0)
  end)

  it("a task cancelled mid-lookup leaves no request and no eventfd", function()
    for _ = 1, 20 do
      local ok, err, state = uring.run(function()
        local t = uring.spawn(uring.resolve, "nonexistent.invalid")
        uring.yield()           -- it starts its lookup and parks
        local st = t:waiting_on()
        t:cancel()
        local ok, e = t:join()
        return ok, e, st
      end)
      assert.is_false(ok)
      assert.equal("canceled", err)
      assert.equal("resolve", state)
    end
    -- the threads finish later and close their eventfds (after_each)
  end)

  it("gives up at a uring.timeout expiry", function()
    -- A 0.1 ms timeout against a lookup that takes about a millisecond:
    -- the timeout wins unless this thread is held off the CPU between
    -- starting the lookup and submitting its timer for longer than the
    -- lookup takes (it happens on a loaded machine, under valgrind).  So
    -- ten tries: each ends either way cleanly, and the timeout must win
    -- at least once.
    local timeouts = 0
    for _ = 1, 10 do
      local r, msg, code = uring.run(uring.timeout, 0.0001, uring.resolve,
                                     "nonexistent.invalid")
      assert.is_nil(r)
      if msg == "timeout" then
        assert.equal(ETIME, code)
        timeouts = timeouts + 1
      else
        assert.matches("^nonexistent%.invalid: ", msg)   -- the resolver's own answer
      end
    end
    assert.is_true(timeouts >= 1, "the lookup beat a 0.1 ms timeout ten times")
  end)

  it("runs 200 concurrent lookups of localhost", function()
    local ok = uring.run(function()
      local tasks = {}
      for i = 1, 200 do
        tasks[i] = uring.spawn(uring.resolve, "localhost", i)
      end
      local n = 0
      for i = 1, 200 do
        local done, list = tasks[i]:join()
        assert.is_true(done)
        assert.equal("127.0.0.1", list[1].addr)
        assert.equal(i, list[1].port)
        n = n + 1
      end
      return n
    end)
    assert.equal(200, ok)
  end)

  it("raises on bad arguments", function()
    uring.run(function()
      local r = uring.resolve
      assert.matches(badarg(1, "resolve", "string expected, got no value"),
                     errmsg(r))
      assert.matches(badarg(1, "resolve", "string expected, got table"),
                     errmsg(r, {}))
      assert.matches(badarg(1, "resolve", "invalid host name"), errmsg(r, ""))
      assert.matches(badarg(1, "resolve", "host contains a NUL byte"),
                     errmsg(r, "a\0b"))
      assert.matches(badarg(2, "resolve", "port out of range"),
                     errmsg(r, "localhost", 70000))
      assert.matches(badarg(2, "resolve", "number has no integer representation"),
                     errmsg(r, "localhost", 1.5))
    end)
  end)

  it("raises outside a task", function()
    assert.matches("resolve: not inside a task %(use uring.run%)",
                   errmsg(uring.resolve, "localhost"))
  end)
end)
