-- spec/sendfile_spec.lua: sock:sendfile, a file to a socket in the kernel,
-- over loopback TCP, with the bytes checked (hashed) at a real peer.
local uring = require "uring"
local helpers = require "helpers"

local EBADF = 9
local run = helpers.runner(30)
local badarg, errmsg = helpers.badarg, helpers.errmsg

-- a file of n random bytes, and its path and contents
local function make_file(dir, name, n)
  local s = n > 0 and helpers.random_bytes(n) or ""
  local path = dir .. "/" .. name
  helpers.writeall(path, s)
  return path, s
end

-- sha256 of s by sha256sum (the peer's view is hashed the same way)
local function sha(s)
  local tmp = os.tmpname()
  helpers.writeall(tmp, s)
  local out = helpers.sh("sha256sum " .. tmp)
  os.remove(tmp)
  return out:match("^(%x+)")
end

describe("sock:sendfile #io #net", function()
  local dir
  helpers.leak_check(before_each, after_each)
  before_each(function() dir = helpers.tmpdir() end)
  after_each(function() helpers.rmrf(dir) end)

  for _, n in ipairs { 0, 1, 64 * 1024 + 1, 10 * 1024 * 1024 } do
    it(("sends a file of %d bytes to a python peer that hashes it"):format(n), function()
      local path, data = make_file(dir, "f", n)
      local want = sha(data)
      run(function()
        local srv, port = helpers.listen()
        -- the peer: a separate program reading to EOF and printing the hash
        local peer = uring.popen(("timeout 20 python3 -c %s"):format(helpers.shq(([[
import hashlib, socket
s = socket.create_connection(("127.0.0.1", %d))
h = hashlib.sha256(); n = 0
while True:
    b = s.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())
]]):format(port))), "r")
        local c = assert(srv:accept())
        local f = assert(uring.open(path, "rb"))
        assert.equal(n, c:sendfile(f))
        c:close()
        f:close()
        srv:close()
        local line = peer:read("l")
        peer:close()
        assert.equal(n .. " " .. want, line)
      end)
    end)
  end

  it("sends a range: offset and length, past the end, a head in front", function()
    local path, data = make_file(dir, "f", 200000)
    run(function()
      local c, s = helpers.pair()
      local f <close> = assert(uring.open(path, "rb"))
      local reader = uring.spawn(function() return s:receive("a") end)
      assert.equal(10, c:sendfile(f, 5, 10))              -- small: READ + SEND
      assert.equal(100000, c:sendfile(f, 1000, 100000))    -- splice
      assert.equal(3, c:sendfile(f, #data - 3))            -- to the end
      assert.equal(0, c:sendfile(f, #data + 7))            -- past it: nothing
      assert.equal(0, c:sendfile(f, 0, 0))
      assert.equal(4, c:sendfile(f, 0, 4, "HEAD"))         -- the head is not counted
      assert.equal(70000, c:sendfile(f, 1, 70000, "H2"))   -- head, then splice
      assert.equal(0, c:sendfile(f, 0, 0, "only"))
      assert.equal(2, c:sendfile(f, #data - 2, 50, "x"))   -- shorter than asked
      assert.equal(70000, c:sendfile(f, #data - 70000, 100000, "y"))   -- so, by splice
      c:close()
      local ok, got = reader:join()
      assert.is_true(ok)
      local want = data:sub(6, 15) .. data:sub(1001, 101000) .. data:sub(-3)
        .. "HEAD" .. data:sub(1, 4) .. "H2" .. data:sub(2, 70001) .. "only"
        .. "x" .. data:sub(-2) .. "y" .. data:sub(-70000)
      assert.equal(#want, #got)
      assert.is_true(want == got)
      s:close()
    end)
  end)

  it("leaves the file position alone and interleaves with send", function()
    local path, data = make_file(dir, "f", 5000)
    run(function()
      local c, s = helpers.pair()
      local f <close> = assert(uring.open(path, "rb"))
      assert.equal(data:sub(1, 2), f:read(2))
      c:send("<")
      c:sendfile(f)
      c:send(">")
      c:close()
      assert.equal("<" .. data .. ">", s:receive("a"))
      assert.equal(data:sub(3, 5), f:read(3))
      s:close()
    end)
  end)

  it("goes after a send still in flight, small and large", function()
    local path, data = make_file(dir, "f", 300000)
    run(function()
      local c, s = helpers.pair()
      local f <close> = assert(uring.open(path, "rb"))
      local reader = uring.spawn(function() return s:receive("a") end)
      -- a small send returns before its SEND is even submitted
      for _, n in ipairs { 100, #data } do
        assert(c:send("<"))
        assert.equal(n, c:sendfile(f, 0, n))
        assert(c:send(">"))
      end
      c:close()
      local ok, got = reader:join()
      assert.is_true(ok)
      assert.is_true(got == "<" .. data:sub(1, 100) .. "><" .. data .. ">")
      s:close()
    end)
  end)

  it("sends small ranges to a full socket once there is room", function()
    local path, data = make_file(dir, "f", 60000)
    run(function()
      local c, s = helpers.pair()
      local f <close> = assert(uring.open(path, "rb"))
      -- nobody reads yet: the socket fills, and a send then parks
      local done = 0
      local sender = uring.spawn(function()
        for i = 1, 400 do
          assert.equal(60000, c:sendfile(f, 0, 60000, i == 400 and "end" or nil))
          done = i
        end
      end)
      local last, deadline = -1, uring.now() + 20
      repeat                       -- until it makes no progress: full
        last = done
        uring.sleep(0.1)
      until done == last or uring.now() > deadline
      assert.is_true(done < 400, "the socket never filled")
      assert.equal("waiting", sender:status())
      local reader = uring.spawn(function() return s:receive("a") end)
      assert(sender:join())
      c:close()
      local _, got = reader:join()
      assert.equal(400 * 60000 + 3, #got)
      assert.is_true(got == data:rep(399) .. "end" .. data)
      s:close()
    end)
  end)

  it("returns the fail tuple and the bytes sent when the peer closes mid-transfer", function()
    local path = make_file(dir, "big", 10 * 1024 * 1024)
    run(function()
      local c, s = helpers.pair()
      local f <close> = assert(uring.open(path, "rb"))
      local closer = uring.spawn(function()
        assert(s:receive(1000))    -- some of it arrived: then go away
        s:close()
      end)
      local n, msg, en, sent
      -- the socket buffers may swallow a whole file: send until it fails
      for _ = 1, 100 do
        n, msg, en, sent = c:sendfile(f)
        if not n then break end
      end
      assert.is_nil(n)
      assert.is_string(msg)
      assert.is_true(en == 32 or en == 104, "errno " .. tostring(en))   -- EPIPE, ECONNRESET
      assert.is_true(math.type(sent) == "integer" and sent >= 0 and sent < 10 * 1024 * 1024)
      assert(closer:join())
      c:close()
    end)
  end)

  it("wakes with nil, \"closed\" when another task closes the socket", function()
    local path = make_file(dir, "big", 10 * 1024 * 1024)
    run(function()
      local c, s = helpers.pair()
      local f <close> = assert(uring.open(path, "rb"))
      -- nobody reads s: the send blocks once the socket buffers are full
      local sender = uring.spawn(function()
        local n, msg, en, sent
        for _ = 1, 100 do
          n, msg, en, sent = c:sendfile(f)
          if not n then break end
        end
        return n, msg, en, sent
      end)
      uring.sleep(0.05)
      assert.equal("waiting", sender:status())
      c:close()
      local ok, n, msg, en, sent = sender:join()
      assert.is_true(ok)
      assert.is_nil(n)
      assert.equal("closed", msg)
      assert.equal(EBADF, en)
      assert.is_true(sent >= 0)
      s:close()
    end)
  end)

  -- sendfile(2) needs a non-blocking socket while it runs; the socket is
  -- blocking again after the call, whichever way it ends
  local O_NONBLOCK = 0x800
  local function nonblocking(sock)
    local info = helpers.readall("/proc/self/fdinfo/" .. sock:fd())
    return tonumber(info:match("flags:%s*(%d+)"), 8) & O_NONBLOCK ~= 0
  end

  it("leaves the socket blocking after a send, a wait for room and a cancel", function()
    local path, data = make_file(dir, "big", 4 * 1024 * 1024)
    run(function()
      local c, s = helpers.pair()
      local f <close> = assert(uring.open(path, "rb"))
      local reader = uring.spawn(function() return s:receive(#data) end)
      assert.is_false(nonblocking(c))
      assert.equal(#data, c:sendfile(f))
      assert.is_false(nonblocking(c))
      local ok, got = reader:join()
      assert.is_true(ok)
      assert.is_true(got == data)
      -- nobody reads now: the sender waits for room, non-blocking meanwhile
      local sender = uring.spawn(function()
        for _ = 1, 100 do assert(c:sendfile(f)) end
      end)
      local deadline = uring.now() + 20
      repeat uring.sleep(0.05) until sender:status() == "waiting" or uring.now() > deadline
      assert.equal("waiting", sender:status())
      assert.is_true(nonblocking(c))
      sender:cancel()
      local sok, err = sender:join()
      assert.is_false(sok)
      assert.matches("canceled", err)
      assert.is_false(nonblocking(c))
      c:close()
      s:close()
    end)
  end)

  it("splices in a loop driven by uring.step (SIGPIPE not blocked there)", function()
    local path, data = make_file(dir, "f", 300000)
    local got, sent
    local task = uring.spawn(function()
      local c, s = helpers.pair()
      local f <close> = assert(uring.open(path, "rb"))
      local reader = uring.spawn(function() return s:receive("a") end)
      sent = c:sendfile(f, 1, 200000, "H")
      c:close()
      got = select(2, reader:join())
      s:close()
    end)
    local deadline = os.time() + 20
    while uring.step(0.1) and os.time() < deadline do end
    assert.equal("done", task:status())
    assert.equal(200000, sent)
    assert.is_true(got == "H" .. data:sub(2, 200001))
  end)

  it("refuses a second sender while one is sending", function()
    local path = make_file(dir, "big", 10 * 1024 * 1024)
    run(function()
      local c, s = helpers.pair()
      local f <close> = assert(uring.open(path, "rb"))
      local sender = uring.spawn(function() return c:sendfile(f) end)
      uring.sleep(0.02)
      assert.matches("busy", errmsg(c.send, c, "x"))
      assert.matches("busy", errmsg(c.sendfile, c, f))
      c:close()
      sender:join()
      s:close()
    end)
  end)

  it("raises on bad arguments and closed objects", function()
    local path = make_file(dir, "f", 10)
    run(function()
      local c, s = helpers.pair()
      local f = assert(uring.open(path, "rb"))
      local function call(...)
        local args = table.pack(...)
        return errmsg(function() local _ = c:sendfile(table.unpack(args, 1, args.n)) end)
      end
      assert.matches(badarg(1, "sendfile", "uring.file expected, got no value"), call())
      assert.matches(badarg(1, "sendfile", "uring.file expected, got string"), call(path))
      assert.matches(badarg(2, "sendfile", "offset must be non-negative"), call(f, -1))
      assert.matches(badarg(3, "sendfile", "length must be non-negative"), call(f, 0, -1))
      assert.matches(badarg(4, "sendfile", "string expected, got table"), call(f, 0, 1, {}))
      assert.matches(badarg(2, "sendfile", "number expected, got string"), call(f, "x"))
      local srv = helpers.listen()
      assert.matches("socket is listening", errmsg(srv.sendfile, srv, f))
      srv:close()
      f:close()
      assert.matches("attempt to use a closed file", errmsg(c.sendfile, c, f))
      c:close()
      assert.matches("attempt to use a closed socket", errmsg(c.sendfile, c, f))
      s:close()
    end)
    local f = assert(uring.run(uring.open, path, "rb"))
    local c = uring.run(function() local a, b = helpers.pair(); b:close(); return a end)
    assert.matches("not inside a task", errmsg(c.sendfile, c, f))
    c:close()
    f:close()
  end)
end)
