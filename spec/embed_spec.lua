-- uring.step and uring.pollfd: the loop driven from another one (luv),
-- tasks started with uring.spawn outside any task.
local uring = require "uring"
local helpers = require "helpers"
local uv = require "luv"

-- Drive lua-uring from luv until no task is left or `secs` pass: a luv
-- poll on uring.pollfd() calls uring.step() whenever it is readable.
-- Returns the steps taken; raises what a step raised.
local function drive(secs)
  local poll = uv.new_poll(uring.pollfd())
  local watchdog = uv.new_timer()
  local steps, err, timed_out = 0, nil, false
  local function stop()
    poll:stop(); poll:close()
    watchdog:stop(); watchdog:close()
  end
  poll:start("r", function()
    steps = steps + 1
    local ok, busy = pcall(uring.step)
    if not ok then err = busy; stop()
    elseif not busy then stop() end
  end)
  watchdog:start(math.floor(secs * 1000), 0, function()
    timed_out = true
    stop()
  end)
  uv.run()
  if err then error(err, 0) end
  assert(not timed_out, "the tasks did not end within " .. secs .. " s")
  return steps
end

describe("uring.step and uring.pollfd #io #net", function()
  uring.pollfd()       -- made once, kept for the state's life: not a leak
  do                   -- luv keeps an fd or two of its own once it listens
    local s = uv.new_tcp()
    assert(s:bind("127.0.0.1", 0)); s:listen(1, function() end); s:close()
    uv.run("nowait")
  end
  helpers.leak_check(before_each, after_each)

  it("pollfd is one fd for the loop's life", function()
    local fd = uring.pollfd()
    assert.is_true(math.type(fd) == "integer" and fd > 2)
    assert.equal(fd, uring.pollfd())
  end)

  it("step with nothing to do returns false at once", function()
    local t0 = uring.now()
    assert.is_false(uring.step())
    assert.is_false(uring.step(0.5))
    assert.is_true(uring.now() - t0 < 0.4)
  end)

  it("runs tasks spawned outside a task, a turn at a time", function()
    local trail = {}
    local t = uring.spawn(function(a)
      trail[#trail + 1] = a
      uring.yield()
      trail[#trail + 1] = "after yield"
      return "result"
    end, "first turn")
    assert.equal("ready", t:status())
    assert.is_true(uring.step())
    assert.same({ "first turn" }, trail)
    assert.is_false(uring.step())
    assert.same({ "first turn", "after yield" }, trail)
    assert.same({ true, "result" }, { t:join() })
  end)

  it("step(timeout) waits at most that long for a completion", function()
    local t = uring.spawn(uring.sleep, 30)
    uring.step()                       -- the sleep is in the kernel now
    local t0 = uring.now()
    assert.is_true(uring.step(0.05))
    local took = uring.now() - t0
    assert.is_true(took >= 0.04 and took < 2, "step waited " .. took .. " s")
    t:cancel()
    while uring.step(1) do end
    assert.equal("canceled", t:status())
  end)

  it("raises the error of a task nobody joins", function()
    uring.spawn(function() error("oops from a task") end)
    assert.matches("oops from a task", helpers.errmsg(uring.step))
    assert.is_false(uring.step())
  end)

  it("raises inside uring.run, and for a bad timeout", function()
    uring.run(function()
      assert.matches("step: the loop is already running",
        helpers.errmsg(uring.step))
    end)
    assert.matches(helpers.badarg(1, "step"), helpers.errmsg(uring.step, -1))
    assert.matches(helpers.badarg(1, "step"), helpers.errmsg(uring.step, "x"))
  end)

  it("drives 100 tasks doing file and socket I/O from luv's loop", function()
    local dir = helpers.tmpdir()
    -- luv's own echo server on the same thread: both loops must turn
    local server = uv.new_tcp()
    assert(server:bind("127.0.0.1", 0))
    local port = server:getsockname().port
    server:unref()                     -- drive's uv.run ends with the tasks
    local conns = 0
    server:listen(128, function()
      local c = uv.new_tcp()
      server:accept(c)
      conns = conns + 1
      c:read_start(function(err, data)
        if data then c:write(data) else c:close() end
      end)
    end)
    local results = {}
    for i = 1, 100 do
      uring.spawn(function()
        local path = dir .. "/f" .. i
        uring.writefile(path, ("line %d\n"):format(i):rep(100))
        local f <close> = assert(uring.open(path))
        local first = f:read("l")
        local sock <close> = assert(uring.connect("127.0.0.1", port))
        assert(sock:send(first .. "\n"))
        local echoed = assert(sock:receive("*l"))
        uring.sleep(0.001 * (i % 10))
        results[i] = echoed
      end)
    end
    local steps = drive(20)
    server:close()
    uv.run("nowait")                   -- let luv close its handles
    helpers.rmrf(dir)
    for i = 1, 100 do assert.equal("line " .. i, results[i]) end
    assert.equal(100, conns)
    assert.is_true(steps > 1)
  end)

  it("a task can wait on a thread while luv drives the loop", function()
    local got
    uring.spawn(function()
      got = uring.thread(function(n) return n * n end, 12)
    end)
    drive(10)
    assert.equal(144, got)
  end)

  it("uring.run still works after embedding", function()
    assert.equal(3, uring.run(function() uring.sleep(0.001); return 3 end))
  end)
end)
