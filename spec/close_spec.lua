-- Close with requests queued (issue 11): for each kind of object that owns
-- an fd, a task queues I/O on it, the object is closed while that I/O is
-- still queued (in the same loop turn, before any submit) or in flight,
-- and new fds are opened at once, as many as it takes to reuse the closed
-- number if it were free.  The new fds are duplicates of a "victim"
-- (uring.fdopen dups to the lowest free number), so an SQE that ran on a
-- reused number would move the victim's bytes: every round checks they
-- are where they belong, and that the queued op ended exactly once with
-- a truthful result.
local uring = require "uring"
local helpers = require "helpers"

local ROUNDS = tonumber(os.getenv("URING_CLOSE_ROUNDS") or "") or 10000
local EBADF = uring.errno.EBADF
local run = helpers.runner(600)

-- Duplicate the victim's fd until a duplicate lands on `num` (or a few
-- tries); close them all.  Returns true if one took the number.
local function reuse(num, victim)
  local dups, hit = {}, false
  for _ = 1, 4 do
    local d = assert(uring.fdopen(victim:fd(), "r"))
    dups[#dups + 1] = d
    if d:fd() == num then hit = true; break end
  end
  for _, d in ipairs(dups) do assert(d:close()) end
  return hit
end

-- The queued op runs in task t; close in this (the same) turn, or once t
-- has submitted it (odd rounds).
local function close_while_queued(i, obj, fn)
  local t = uring.spawn(fn)
  uring.yield()                 -- t runs first in this turn: its SQE is queued
  if i % 2 == 1 then uring.yield() end   -- submitted, in flight
  local num = obj:fd()
  assert(obj:close())
  return t, num
end

local function joined(t)
  local ok, r = t:join()
  assert(ok, r)
  return r
end

-- nil, "closed", EBADF [, done]
local function is_closed(r)
  return r[1] == nil and r[2] == "closed" and r[3] == EBADF
end

local stats
local function note(kind, reused, outcome)
  stats[kind] = stats[kind] or { rounds = 0, reused = 0 }
  local s = stats[kind]
  s.rounds = s.rounds + 1
  if reused then s.reused = s.reused + 1 end
  s[outcome] = (s[outcome] or 0) + 1
end

describe("close with requests queued #io #net", function()
  setup(function() stats = {} end)
  teardown(function()
    for kind, s in pairs(stats) do
      local parts = {}
      for k, v in pairs(s) do if k ~= "rounds" and k ~= "reused" then parts[#parts + 1] = k .. " " .. v end end
      table.sort(parts)
      io.stderr:write(("close_spec: %s: %d rounds, closed number reused by a dup in %d; %s\n")
        :format(kind, s.rounds, s.reused, table.concat(parts, ", ")))
    end
  end)
  after_each(function() assert.equal(0, uring.stats().inflight) end)

  -- A stream server: each connection says who it is in its first line
  -- ("victim" or "a<i>"), then everything it sends is kept under that name.
  local function sink(listener)
    local got = {}
    local t = uring.spawn(function()
      while true do
        local c = listener:accept()
        if not c then return end
        uring.spawn(function()
          local who = c:receive("*l")
          local rest = c:receive("*a")
          if who then got[who] = rest or "" end
          c:close()
        end)
      end
    end)
    return got, t
  end

  for _, family in ipairs { "tcp", "unix" } do
    local function server()
      if family == "tcp" then
        local l = assert(uring.listen("127.0.0.1", 0))
        local _, port = l:getsockname()
        return l, function() return assert(uring.connect("127.0.0.1", port)) end
      end
      local path = os.tmpname()
      os.remove(path)
      local l = assert(uring.listen_unix(path))
      return l, function() return assert(uring.connect_unix(path)) end, path
    end

    it(family .. ": a send queued at close never reaches the socket that takes its number", function()
      run(function()
        local l, connect, path = server()
        local got, acceptor = sink(l)
        local victim = connect()
        assert(victim:send("victim\n"))
        local want = {}
        for i = 1, ROUNDS do
          local a = connect()
          assert(a:send("a" .. i .. "\n"))
          local secret = ("%d:"):format(i):rep(i % 50 == 0 and 100000 or 8)
          local t, num = close_while_queued(i, a, function()
            return table.pack(a:send(secret))
          end)
          local hit = reuse(num, victim)
          local r = joined(t)
          if r[1] == #secret then
            want["a" .. i] = secret
            note(family .. " send", hit, "sent")
          else
            assert(is_closed(r), tostring(r[2]))
            assert(math.type(r[4]) == "integer" and r[4] >= 0 and r[4] < #secret)
            want["a" .. i] = secret:sub(1, r[4])   -- what went out, and only that
            note(family .. " send", hit, "closed")
          end
        end
        assert(victim:close())
        uring.sleep(0.05)
        local deadline = uring.now() + 30
        while (got.victim == nil or got["a" .. ROUNDS] == nil) and uring.now() < deadline do
          uring.sleep(0.01)
        end
        l:close()
        acceptor:join()
        if path then os.remove(path) end
        assert.equal("", got.victim, "bytes of a closed socket reached the victim")
        for i = 1, ROUNDS do
          local k = "a" .. i
          if got[k] ~= want[k] then
            error(("round %d: the peer got %d bytes, the sender was told %d"):format(
              i, #(got[k] or ""), #want[k]))
          end
        end
      end)
    end)

    it(family .. ": a receive queued at close never takes the bytes of the socket that takes its number", function()
      run(function()
        local l, connect, path = server()
        local peers = {}
        local acceptor = uring.spawn(function()
          while true do
            local c = l:accept()
            if not c then return end
            peers[#peers + 1] = c
          end
        end)
        local victim = connect()
        while #peers < 1 do uring.yield() end
        local vpeer = peers[1]
        for i = 1, ROUNDS do
          local a = connect()
          assert(vpeer:send("v"))       -- one byte waits for the victim
          local t, num = close_while_queued(i, a, function()
            return table.pack(a:receive(1))
          end)
          local hit = reuse(num, victim)
          local r = joined(t)
          assert(is_closed(r), tostring(r[2]))
          note(family .. " receive", hit, "closed")
          assert.equal("v", victim:receive(1))   -- still there, not stolen
          while #peers > 1 do table.remove(peers):close() end
        end
        victim:close()
        for _, p in ipairs(peers) do p:close() end
        l:close()
        acceptor:join()
        if path then os.remove(path) end
      end)
    end)
  end

  it("an object closed and collected before its cancelled requests are back: their completions touch nothing freed", function()
    -- found by ASan: a listener closed in a task (its multishot accept
    -- cancelled, its CQE still to come) and collected at once; the CQE
    -- then wrote into the freed socket
    run(function()
      for _ = 1, 500 do
        local l = assert(uring.listen("127.0.0.1", 0))
        local u = assert(uring.udp("127.0.0.1", 0))
        local r, w = assert(uring.pipe())
        local reader = uring.spawn(function() return r:read(1) end)
        uring.yield()                 -- the reader's read is in flight
        l:close(); u:close(); r:close()
        l, u, r = nil, nil, nil
        collectgarbage(); collectgarbage()
        local ok, res = reader:join()
        assert(ok, res)
        assert.equal(nil, res)          -- r:read(1) -> nil, "closed", 9
        assert.same({ true, nil, "closed", EBADF }, { reader:join() })
        w:close()
      end
    end)
  end)

  it("listener: an accept armed at close never takes the connections of the listener that takes its number", function()
    run(function()
      local victim = assert(uring.listen("127.0.0.1", 0))
      local _, vport = victim:getsockname()
      for i = 1, ROUNDS do
        local a = assert(uring.listen("127.0.0.1", 0))
        local t, num = close_while_queued(i, a, function()
          return table.pack(a:accept())
        end)
        local hit = reuse(num, victim)
        local r = joined(t)
        assert(is_closed(r), tostring(r[2]))
        note("listener accept", hit, "closed")
        local c = assert(uring.connect("127.0.0.1", vport))
        local s = uring.timeout(5, victim.accept, victim)
        assert(s, "the victim lost a connection")
        s:close(); c:close()
      end
      victim:close()
    end)
  end)

  it("file: a write queued at close never reaches the file that takes its number", function()
    local dir = helpers.tmpdir()
    run(function()
      local vpath = dir .. "/victim"
      local victim = assert(uring.open(vpath, "w"))
      local path = dir .. "/a"
      for i = 1, ROUNDS do
        local a = assert(uring.open(path, "w"))
        local big = i % 2 == 0
        local data = ("%d:"):format(i):rep(big and 20000 or 8)
        local t, num = close_while_queued(i, a, function()
          -- a big write goes straight from the string; pwrite says how
          -- much reached the file
          if big then return table.pack(a:write(data)) end
          return table.pack(a:pwrite(data, 0))
        end)
        local hit = reuse(num, victim)
        local r = joined(t)
        local size = assert(uring.stat(path)).size
        if r[1] == a or r[1] == #data then
          assert.equal(#data, size)
          note("file write", hit, "written")
        else
          assert(is_closed(r), tostring(r[2]))
          if not big then assert.equal(r[4], size) end
          note("file write", hit, "closed")
        end
      end
      assert.equal(0, assert(uring.stat(vpath)).size, "bytes of a closed file reached the victim")
      victim:close()
    end)
    helpers.rmrf(dir)
  end)

  it("pipe: a write queued at close never reaches the pipe that takes its number", function()
    run(function()
      local vr, vw = assert(uring.pipe())
      for i = 1, ROUNDS do
        local r, w = assert(uring.pipe())
        -- more than a pipe holds: the write waits for a reader
        local data = ("p"):rep(i % 10 == 0 and 200000 or 70000)
        local t, num = close_while_queued(i, w, function()
          return table.pack(w:write(data))
        end)
        local hit = reuse(num, vw)
        local res = joined(t)
        assert(is_closed(res), tostring(res[2]))
        note("pipe write", hit, "closed")
        r:close()
      end
      vw:close()
      assert.equal("", vr:read("a"), "bytes of a closed pipe reached the victim")
      vr:close()
    end)
  end)

  it("signal: a wait queued at close wakes with \"closed\" and reads nothing of the fd that takes its number", function()
    run(function()
      local vr, vw = assert(uring.pipe())
      for i = 1, ROUNDS do
        assert(vw:write("x"):flush())   -- one byte waits for the victim
        local sig = assert(uring.signal("USR1"))
        local t0 = uring.now()
        local t, num = close_while_queued(i, sig, function()
          return table.pack(sig:wait())
        end)
        local hit = reuse(num, vr)
        local r = joined(t)
        assert(uring.now() - t0 < 2, "the waiter was not woken promptly")
        assert(is_closed(r), tostring(r[2]))
        note("signal wait", hit, "closed")
        assert.equal("x", vr:read(1))
      end
      vw:close(); vr:close()
    end)
  end)

  it("udp: sends and receives queued at close never touch the socket that takes its number", function()
    run(function()
      local sink = assert(uring.udp("127.0.0.1", 0))
      local _, sport = sink:getsockname()
      local victim = assert(uring.udp("127.0.0.1", 0))
      local _, vport = victim:getsockname()
      local feeder = assert(uring.udp())
      for i = 1, ROUNDS do
        local a = assert(uring.udp("127.0.0.1", 0))
        local _, aport = a:getsockname()
        assert(feeder:sendto("v" .. i, "127.0.0.1", vport))   -- waits for the victim
        local recv = i % 2 == 0
        local t, num = close_while_queued(i, a, function()
          if recv then return table.pack(a:recvfrom()) end
          return table.pack(a:sendto("a" .. i, "127.0.0.1", sport))
        end)
        local hit = reuse(num, victim)
        local r = joined(t)
        if recv then
          assert(is_closed(r), tostring(r[2]))
          note("udp recvfrom", hit, "closed")
        elseif r[1] then
          note("udp sendto", hit, "sent")
          local d, _, from = sink:recvfrom()
          assert.equal("a" .. i, d)
          assert.equal(aport, from, "a datagram left from another socket")
        else
          assert(is_closed(r), tostring(r[2]))
          note("udp sendto", hit, "closed")
        end
        assert.equal("v" .. i, (victim:recvfrom()))   -- still there, not stolen
      end
      sink:close(); victim:close(); feeder:close()
    end)
  end)
end)
