-- spec/integrity_spec.lua: nothing is lost or misplaced on the way to the
-- disk or through a socket.  256 MiB go through uring.open in random chunk
-- sizes: 32 tasks pwriting their own regions at once, a sequential
-- file:write stream, and the same stream with file:sync after every write;
-- each file must hash (sha256sum) like the same bytes written through io.
-- Then 256 MiB cross examples/tcp_proxy.lua (a child process) to a sink
-- that hashes what it received; the sender hashes what it sent and the
-- two must agree.
--
-- The bytes are a function of their offset (a slice of a fixed random
-- pool whose length is a prime, so a chunk written at the wrong offset
-- does not hash the same), made chunk by chunk: no 256 MiB string is
-- ever held.  Under `make valgrind` (URING_VALGRIND=1) the sizes shrink
-- to 16 MiB: the same code paths, at memcheck's pace; URING_INTEGRITY_MIB
-- sets them (spec/run.lua's matrix passes: 64).
local uring = require "uring"
local helpers = require "helpers"

local MiB = 1024 * 1024
local TOTAL = (tonumber(os.getenv("URING_INTEGRITY_MIB"))
  or os.getenv("URING_VALGRIND") and 16 or 256) * MiB
local TASKS = 32
local run = helpers.runner(120)

-- the pool: P pseudo-random bytes, P prime, deterministic
local P = 1048573
local POOL
do
  local rng = 0x9E3779B9
  local parts, word = {}, {}
  for i = 1, P do
    rng = (rng * 1103515245 + 12345) & 0x7fffffff
    word[#word + 1] = (rng >> 16) & 0xff
    if #word == 4096 or i == P then
      parts[#parts + 1] = string.char(table.unpack(word))
      word = {}
    end
  end
  POOL = table.concat(parts)
  assert(#POOL == P)
  POOL = POOL:rep(3)              -- a chunk of up to 2 MiB never wraps
end

-- the n bytes at offset off (n <= 2 MiB)
local function bytes_at(off, n)
  local s = off % P + 1
  return POOL:sub(s, s + n - 1)
end

-- random chunk sizes: mostly small or medium, some large, a few odd
local function chunk_size(rand, left)
  local r = rand(100)
  local n
  if r <= 30 then n = rand(1, 4096)
  elseif r <= 80 then n = rand(4097, 256 * 1024)
  else n = rand(256 * 1024, 2 * MiB) end
  return math.min(n, left)
end

local function sha256(path)
  local p = assert(io.popen("sha256sum '" .. path .. "'"))
  local h = p:read("a"):match("^(%x+)")
  p:close()
  return h
end

local dir, REF_HASH

describe("data integrity #io", function()
  setup(function()
    uring.run(function() end)     -- the loop's ring: open for the whole run
    dir = helpers.tmpdir()
    -- the reference: the same bytes through io, in 1 MiB writes
    local f = assert(io.open(dir .. "/ref", "wb"))
    for off = 0, TOTAL - 1, MiB do f:write(bytes_at(off, MiB)) end
    f:close()
    REF_HASH = sha256(dir .. "/ref")
    os.remove(dir .. "/ref")
  end)

  teardown(function()
    helpers.rmrf(dir)
    collectgarbage()
  end)

  local function check_file(path)
    local h = sha256(path)
    os.remove(path)
    assert.equal(REF_HASH, h)
  end

  it("32 tasks pwrite their regions in random chunks: every byte lands", function()
    local path = dir .. "/pwrite"
    local fds = helpers.fd_count()
    local t0 = uring.now()
    run(function()
      local f <close> = assert(uring.open(path, "w"))
      local region = TOTAL // TASKS
      local tasks = {}
      for t = 1, TASKS do
        tasks[t] = uring.spawn(function()
          local rand = math.random
          local off, stop = (t - 1) * region, t * region
          local writes = 0
          while off < stop do
            local n = chunk_size(rand, stop - off)
            assert.equal(n, f:pwrite(bytes_at(off, n), off))
            off = off + n
            writes = writes + 1
          end
          return writes
        end)
      end
      for _, t in ipairs(tasks) do assert(t:join()) end
    end)
    assert.equal(TOTAL, uring.run(function() return uring.stat(path).size end))
    check_file(path)
    assert.equal(0, uring.stats().inflight)
    assert.equal(fds, helpers.fd_count())
    io.write(("# pwrite by %d tasks: %d MiB in %.2f s\n"):format(TASKS, TOTAL // MiB, uring.now() - t0))
  end)

  local function stream(path, sync)
    local t0 = uring.now()
    local writes = 0
    run(function()
      local f <close> = assert(uring.open(path, "w"))
      local off = 0
      while off < TOTAL do
        local n = chunk_size(math.random, TOTAL - off)
        assert.equal(f, f:write(bytes_at(off, n)))
        if sync then assert.is_true(f:sync(writes % 2 == 1)) end
        off = off + n
        writes = writes + 1
      end
      assert.equal(TOTAL, f:seek())
    end)
    return uring.now() - t0, writes
  end

  it("a sequential file:write stream in random chunk sizes", function()
    local fds = helpers.fd_count()
    local dt, writes = stream(dir .. "/stream", false)
    check_file(dir .. "/stream")
    assert.equal(0, uring.stats().inflight)
    assert.equal(fds, helpers.fd_count())
    io.write(("# stream: %d MiB in %d writes, %.2f s\n"):format(TOTAL // MiB, writes, dt))
  end)

  it("the same stream with sync (fsync/fdatasync) after every write", function()
    local fds = helpers.fd_count()
    local dt, writes = stream(dir .. "/synced", true)
    check_file(dir .. "/synced")
    assert.equal(0, uring.stats().inflight)
    assert.equal(fds, helpers.fd_count())
    io.write(("# synced stream: %d MiB in %d writes and syncs, %.2f s\n"):format(TOTAL // MiB, writes, dt))
  end)

  it(TOTAL // MiB .. " MiB through examples/tcp_proxy.lua hash the same on both ends", function()
    local fds = helpers.fd_count()
    local t0 = uring.now()
    local sent_hash, recv_hash, answer
    run(function()
      local sink = assert(uring.listen("127.0.0.1", 0))
      local _, sink_port = sink:getsockname()
      -- the proxy: a child process, one connection, bounded in time
      local proxy = assert(uring.exec { "sh", "-c", ("exec %s examples/tcp_proxy.lua 0 127.0.0.1 %d "
        .. "--max-conns 1 --seconds 100"):format(helpers.lua_cmd(), sink_port), stdout = "pipe" })
      local first = proxy.stdout:read("l")
      local proxy_port = tonumber(first and first:match("listening on 127%.0%.0%.1:(%d+)"))
      assert(proxy_port, "tcp_proxy did not start: " .. tostring(first))

      -- the sink: hash what arrives (sha256sum reads it from a pipe), then
      -- answer with the hash once the sender's FIN came through the proxy
      local receiver = uring.spawn(function()
        local c = assert(sink:accept())
        local hashfile = dir .. "/recv.sha"
        local h = assert(uring.popen("sha256sum > '" .. hashfile .. "'", "w"))
        local got = 0
        while true do
          local data, err = c:recv(256 * 1024)
          if not data then assert.equal("closed", err); break end
          got = got + #data
          assert(h:write(data))
        end
        assert(h:close())
        recv_hash = assert(uring.readfile(hashfile)):match("^(%x+)")
        assert(c:send(recv_hash .. " " .. got .. "\n"))
        c:close()
        sink:close()
      end)

      -- the sender: the same bytes to the proxy and to its own sha256sum
      local s = assert(uring.connect("127.0.0.1", proxy_port))
      local hashfile = dir .. "/sent.sha"
      local h = assert(uring.popen("sha256sum > '" .. hashfile .. "'", "w"))
      local off = 0
      while off < TOTAL do
        local n = chunk_size(math.random, TOTAL - off)
        local data = bytes_at(off, n)
        assert.equal(n, s:send(data))
        assert(h:write(data))
        off = off + n
      end
      assert(h:close())
      sent_hash = assert(uring.readfile(hashfile)):match("^(%x+)")
      assert(s:shutdown("send"))               -- FIN: the sink may answer
      answer = s:receive("*l")
      s:close()
      assert(receiver:join())
      assert.is_true(proxy.stdout:read("a"):find("tcp_proxy: 1 connections %(0 failed%)") ~= nil)
      proxy.stdout:close()
      assert.is_true(proxy:wait())
    end)
    assert.equal(REF_HASH, sent_hash)
    assert.equal(sent_hash, recv_hash)
    assert.equal(recv_hash .. " " .. TOTAL, answer)
    assert.equal(0, uring.stats().inflight)
    assert.equal(fds, helpers.fd_count())
    io.write(("# tcp_proxy: %d MiB relayed and hashed in %.2f s\n"):format(TOTAL // MiB, uring.now() - t0))
  end)
end)
