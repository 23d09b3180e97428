-- Lifetimes: memory the kernel holds is never freed under it, whatever Lua
-- does meanwhile (collect, cancel, close, fail, exit).
local uring = require "uring"
local helpers = require "helpers"

local function mkfifo(dir, name)
  local path = dir .. "/" .. name
  assert(os.execute("mkfifo '" .. path .. "'"))
  return path
end

describe("lifetimes #io", function()
  local dir, fds
  uring.features()
  before_each(function()
    dir = helpers.tmpdir()
    fds = helpers.fds()
  end)
  after_each(function()
    assert.equal(0, uring.stats().inflight)
    assert.equal(0, uring.stats().tasks)
    assert.equal(fds, helpers.fds())
    helpers.rmrf(dir)
  end)

  it("keeps a read's buffer alive through collectgarbage while in flight", function()
    local fifo = mkfifo(dir, "f")
    local got = uring.run(function()
      local reader = uring.spawn(function()
        -- the only reference to the file is this task's stack
        return uring.open(fifo, "r+"):read(11)
      end)
      for _ = 1, 5 do uring.yield(); collectgarbage(); collectgarbage() end
      local w = assert(uring.open(fifo, "r+"))
      w:write("hello world"); w:flush()
      local ok, data = reader:join()
      collectgarbage()
      w:close()
      return data
    end)
    assert.equal("hello world", got)
    collectgarbage(); collectgarbage()   -- the reader's file is closed by __gc
  end)

  it("keeps strings being written pinned while nothing else refers to them", function()
    local path = dir .. "/pinned"
    local expect = {}
    uring.run(function()
      local f = assert(uring.open(path, "w+"))
      local ts = {}
      for i = 1, 200 do
        local chunk = string.rep(string.char(65 + i % 26), 1000) .. i
        expect[i] = chunk
        ts[i] = uring.spawn(function() return f:pwrite(chunk .. "", (i - 1) * 1100) end)
      end
      collectgarbage(); collectgarbage()
      for i = 1, 200 do assert.is_true((ts[i]:join())) end
      for i = 1, 200 do
        local s = f:pread(#expect[i], (i - 1) * 1100)
        assert.equal(expect[i], s)
      end
      f:close()
    end)
  end)

  it("cancels a read in the kernel; the fd and buffer are released", function()
    local fifo = mkfifo(dir, "c")
    local status = uring.run(function()
      local f = assert(uring.open(fifo, "r+"))
      local reader = uring.spawn(function() return f:read("l") end)
      uring.sleep(0.01)
      assert.equal("read", reader:waiting_on())
      reader:cancel()
      local ok, err = reader:join()
      assert.is_false(ok); assert.equal("canceled", err)
      f:close()
      return reader:status()
    end)
    assert.equal("canceled", status)
  end)

  it("cleans up when a task fails with ops in flight in other tasks", function()
    local fifo = mkfifo(dir, "e")
    local ok, err = pcall(uring.run, function()
      local f = assert(uring.open(fifo, "r+"))
      for _ = 1, 20 do uring.spawn(uring.sleep, 30) end
      uring.spawn(function() f:read("a") end)
      uring.spawn(function()
        local g <close> = f
        uring.sleep(30)
      end)
      uring.sleep(0.01)
      error("failed with 22 ops in flight")
    end)
    assert.is_false(ok)
    assert.matches("failed with 22 ops in flight", err)
  end)

  it("closes the loop with 1,000 requests in flight at exit", function()
    local fifo = mkfifo(dir, "x")
    local script = dir .. "/exit.lua"
    local f = io.open(script, "w")
    f:write(([[
      local uring = require "uring"
      uring.run(function()
        local files = {}
        for i = 1, 100 do
          files[i] = assert(uring.open(%q, "r+"))
          uring.spawn(function() files[i]:read(4096) end)
        end
        for i = 1, 900 do uring.spawn(uring.sleep, 60) end
        uring.sleep(0.05)
        io.write("inflight ", uring.stats().inflight, "\n")
        os.exit(0, true)   -- lua_close with everything in flight
      end)
    ]]):format(fifo))
    f:close()
    local t0 = uring.now()
    local out, code = helpers.sh("timeout 30 " .. helpers.lua_cmd() .. " " .. script)
    assert.equal(0, code, out)
    assert.matches("inflight 1000", out)
    assert.is_true(uring.now() - t0 < 20)
  end)

  it("keeps pread's uring.buffers and registered buffers alive until the loop lets go at exit", function()
    local fifo = mkfifo(dir, "b")
    local script = dir .. "/bufexit.lua"
    local f = io.open(script, "w")
    f:write(([[
      local uring = require "uring"
      uring.configure { fixed_buffers = 8, fixed_buffer_size = 4096 }
      uring.run(function()
        local file = assert(uring.open(%q, "r+"))
        for i = 1, 50 do
          -- the buffer's only references: this task's stack, the request
          uring.spawn(function() file:pread(uring.buffer(4096), 4096, 0) end)
        end
        for i = 1, 20 do uring.spawn(file.pread, file, 4096, 0) end  -- 8 fixed
        uring.sleep(0.05)
        collectgarbage(); collectgarbage()
        io.write("inflight ", uring.stats().inflight, " fixed ",
                 uring.stats().fixed_reads, "\n")
        os.exit(0, true)   -- lua_close with the reads in flight
      end)
    ]]):format(fifo))
    f:close()
    local out, code = helpers.sh("timeout 30 " .. helpers.lua_cmd() .. " " .. script)
    assert.equal(0, code, out)
    assert.matches("inflight 70 fixed 8", out)
  end)

  it("exits promptly when a script's main task fails with sleepers in flight", function()
    local t0 = uring.now()
    local out, code = helpers.sh("timeout 30 " .. helpers.lua_cmd() .. [[ -e '
      local uring = require "uring"
      uring.run(function()
        for i = 1, 100 do uring.spawn(uring.sleep, 60) end
        uring.sleep(0.01)
        error("main gave up")
      end)' ]])
    assert.equal(1, code, out)
    assert.matches("main gave up", out)
    assert.is_true(uring.now() - t0 < 10)
  end)
end)
