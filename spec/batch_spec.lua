-- spec/batch_spec.lua: batching, the issue's requirement measured directly.
-- "1,000 tasks each reading 4 KiB from a file finish in at most
--  1 + 1000/ring-size io_uring_enter calls (count from uring.stats())."
-- Run it under other ring sizes with URING_TEST_RING=4 / =64.
local uring = require "uring"

local READS, SIZE, LEN = 1000, 4 * 1024 * 1024, 4096

describe("batching #io", function()
  local path, data, offsets

  setup(function()
    math.randomseed(99)
    local w = {}
    for i = 1, SIZE // 4 do w[i] = string.pack("<I4", math.random(0, 0xffffffff)) end
    data = table.concat(w)
    path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    assert(f:write(data))
    assert(f:close())
    offsets = {}
    for i = 1, READS do offsets[i] = math.random(0, SIZE - LEN) end
  end)

  teardown(function() os.remove(path) end)

  after_each(function() assert.equal(0, uring.stats().inflight) end)

  -- open the file, then spawn and join READS readers; returns the
  -- uring.stats() deltas around the spawning and joining, and the data
  local function read_concurrently()
    return uring.run(function()
      local f = assert(uring.open(path, "rb"))
      local s0 = uring.stats()
      local tasks = {}
      for i = 1, READS do
        tasks[i] = uring.spawn(f.pread, f, LEN, offsets[i])
      end
      local got = {}
      for i = 1, READS do
        local ok, s = tasks[i]:join()
        assert(ok, s)
        got[i] = s
      end
      local s1 = uring.stats()
      f:close()
      return {
        enters = s1.enters - s0.enters, sqes = s1.sqes - s0.sqes,
        cqes = s1.cqes - s0.cqes, entries = s1.entries,
      }, got
    end)
  end

  it("1,000 tasks each reading 4 KiB finish in at most 1 + 1000/ring-size "
     .. "io_uring_enter calls", function()
    local d = read_concurrently()
    local bound = 1 + READS / d.entries
    assert.equal(READS, d.sqes)
    assert.equal(READS, d.cqes)
    assert(d.enters <= bound, ("%d io_uring_enter calls for %d reads with a "
      .. "%d-entry ring; the bound is %.2f"):format(d.enters, READS,
      d.entries, bound))
  end)

  it("requests no task waits on (an armed multishot receive) add no enter "
     .. "to a batch", function()
    -- the busy turns between the spawns and the joins look for
    -- completions every 16th turn only when a task waits on one; a
    -- request that wakes nobody (here a socket's multishot receive,
    -- armed with no reader; in a terminal the run's SIGINT poll) once
    -- made one batch in 8 cost a second enter
    uring.configure { recv_multishot = true }
    local ok, err = pcall(uring.run, function()
      local srv = assert(uring.listen("127.0.0.1", 0))
      local t = uring.spawn(function() return assert(srv:accept()) end)
      local c = assert(uring.connect("127.0.0.1", select(2, srv:getsockname())))
      local s = select(2, assert(t:join()))
      srv:close()
      for i = 1, 2 do                 -- the second wait arms the multishot
        assert(c:send(i .. "\n"))
        assert.equal(tostring(i), s:receive())
      end
      assert(uring.stats().inflight == 0)
      local f = assert(uring.open(path, "rb"))
      for round = 1, 20 do
        local s0 = uring.stats()
        local tasks = {}
        for i = 1, READS do tasks[i] = uring.spawn(f.pread, f, LEN, offsets[i]) end
        for i = 1, READS do assert(tasks[i]:join()) end
        local d = uring.stats().enters - s0.enters
        assert(d <= 1 + READS / s0.entries, ("round %d: %d io_uring_enter calls"):format(round, d))
      end
      f:close(); c:close(); s:close()
    end)
    uring.configure { recv_multishot = os.getenv("URING_TEST_RECV_MULTISHOT") == "1" }
    assert(ok, err)
  end)

  it("every concurrent read returns the bytes at its offset", function()
    local _, got = read_concurrently()
    for i = 1, READS do
      local off = offsets[i]
      assert(got[i] == data:sub(off + 1, off + LEN),
             ("read %d at offset %d differs"):format(i, off))
    end
  end)
end)
