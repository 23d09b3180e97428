-- spec/fixed_files_spec.lua: uring.configure{fixed_files = N}: accepted
-- TCP sockets go into registered file slots and their receives and sends
-- name the slot (IOSQE_FIXED_FILE).  Slots are taken and given back,
-- sockets past N use plain fds, a socket from an earlier ring keeps
-- working, and the proof that the slot is what the kernel uses: a
-- receive still works after the fd number was closed behind its back.
-- (spec/run.lua also runs net_spec with URING_TEST_FIXED_FILES=8.)
local uring = require "uring"
local helpers = require "helpers"

local EBADF = 9
local run = helpers.runner(10)

-- n accepted (server side) and connected (client side) sockets
local function pairs_of(srv, port, n)
  local out = {}
  for i = 1, n do
    local t = uring.spawn(function() return srv:accept() end)
    local c = assert(uring.connect("127.0.0.1", port))
    local ok, s = t:join()
    assert(ok and s, s)
    out[i] = { c = c, s = s }
  end
  return out
end

local listen = helpers.listen

describe("configure{fixed_files}", function()
  local fds0
  before_each(function()
    uring.configure{ fixed_files = 0 }   -- no ring left by an earlier spec:
    fds0 = helpers.fd_count()            -- after_each tears ours down too
  end)
  after_each(function()
    uring.configure{ fixed_files = 0 }
    collectgarbage()
    assert.equal(0, uring.stats().inflight)
    assert.equal(fds0, helpers.fd_count())
  end)

  it("puts accepted sockets into slots, uses plain fds past N, gives slots back on close", function()
    uring.configure{ fixed_files = 3 }
    run(function()
      local ff = uring.features().fixed_files
      assert.same({ count = 3, wanted = 3, free = 3 }, ff)
      local srv, port = listen()
      local ps = pairs_of(srv, port, 5)
      assert.equal(3, uring.stats().fixed_files)     -- 2 sockets went plain
      for i, p in ipairs(ps) do                      -- both kinds work
        assert(p.c:send(("line %d\n"):format(i)))
        assert.equal(("line %d"):format(i), p.s:receive("*l"))
        assert(p.s:send(("back %d\n"):format(i)))
        assert.equal(("back %d"):format(i), p.c:receive("*l"))
      end
      ps[1].s:close()                                -- through the ring
      assert.equal(2, uring.stats().fixed_files)
      local q = pairs_of(srv, port, 1)[1]            -- takes the freed slot
      assert.equal(3, uring.stats().fixed_files)
      q.s:close(); q.c:close()
      ps[2].s = nil
      collectgarbage()                               -- __gc gives it back
      assert.equal(1, uring.stats().fixed_files)
      for i = 1, 5 do
        if ps[i].s then ps[i].s:close() end
        ps[i].c:close()
      end
      assert.equal(0, uring.stats().fixed_files)
      assert.equal(3, uring.features().fixed_files.free)
      srv:close()
    end)
  end)

  it("receives through the slot even after the fd number is closed behind its back", function()
    local posix = helpers.posix()
    for _, n in ipairs { 4, 0 } do
      uring.configure{ fixed_files = n }
      run(function()
        local srv, port = listen()
        local p = pairs_of(srv, port, 1)[1]
        local fd = p.s:fd()
        assert(p.c:send("through the slot\n"))
        uring.sleep(0.01)
        assert(posix.close(fd))                      -- the fd is gone
        if n > 0 then                                -- the slot holds the file
          assert.equal("through the slot", p.s:receive("*l"))
        else
          local a, msg, errno = p.s:receive("*l")
          assert.is_nil(a)
          assert.equal("string", type(msg))
          assert.equal(EBADF, errno)
        end
        -- (its close now meets EBADF on the fd, which nothing reuses here)
        pcall(p.s.close, p.s)
        p.c:close()
        srv:close()
      end)
    end
  end)

  it("leaves a socket from an earlier ring on its plain fd", function()
    uring.configure{ fixed_files = 2 }
    local old
    run(function()
      local srv, port = listen()
      old = pairs_of(srv, port, 1)[1]
      assert.equal(1, uring.stats().fixed_files)
      srv:close()
    end)
    uring.configure{ fixed_files = 2 }               -- a new ring, new slots
    run(function()
      local srv, port = listen()
      local new = pairs_of(srv, port, 1)[1]
      assert.equal(1, uring.stats().fixed_files)     -- the new socket's
      assert(old.c:send("old\n"))
      assert.equal("old", old.s:receive("*l"))       -- by its fd
      old.s:close()                                  -- frees no new slot
      assert.equal(1, uring.stats().fixed_files)
      assert(new.c:send("new\n"))
      assert.equal("new", new.s:receive("*l"))
      new.s:close(); new.c:close(); old.c:close()
      assert.equal(0, uring.stats().fixed_files)
      srv:close()
    end)
  end)

  it("echoes 100 connections with 16 slots, fixed and plain mixed", function()
    uring.configure{ fixed_files = 16 }
    run(function()
      local srv, port = listen()
      local server = uring.spawn(function()
        for _ = 1, 100 do
          local s = assert(srv:accept())
          uring.spawn(function()
            for line in s:lines() do assert(s:send(line .. "\n")) end
            s:close()
          end)
        end
      end)
      local clients = {}
      for i = 1, 100 do
        clients[i] = uring.spawn(function()
          local c = assert(uring.connect("127.0.0.1", port))
          for j = 1, 20 do
            assert(c:send(("%d.%d\n"):format(i, j)))
            assert.equal(("%d.%d"):format(i, j), c:receive("*l"))
          end
          c:close()
        end)
      end
      for i = 1, 100 do assert(clients[i]:join()) end
      assert(server:join())
      srv:close()
      while uring.stats().fixed_files > 0 do uring.sleep(0.01) end
    end)
  end)

  it("takes its default from URING_TEST_FIXED_FILES (bench/http.sh, spec/run.lua)", function()
    local out, code = helpers.sh("URING_TEST_FIXED_FILES=5 " .. helpers.lua_cmd()
      .. [[ -e 'local u = require "uring"; local f = u.features().fixed_files;]]
      .. [[ print(f.wanted, f.count, f.free)']])
    assert.equal(0, code, out)
    assert.equal("5\t5\t5\n", out)
  end)

  it("raises on a bad fixed_files", function()
    for bad, why in pairs { [-1] = "must be in 0%.%.65536", [65537] = "must be in 0%.%.65536",
                            [1.5] = "must be an integer", ["8"] = "must be an integer" } do
      local ok, e = pcall(uring.configure, { fixed_files = bad })
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[%w.]*configure' %(fixed_files " .. why, e)
    end
  end)
end)
