-- SIGINT during uring.run: the main task and every other task are
-- cancelled, their <close> handlers run, and run raises "interrupted" so
-- the script exits non-zero, as plain lua does on Ctrl-C.
local helpers = require "helpers"

local SCRIPT = [[
local uring = require "uring"
uring.run(function()
  local guard <close> = setmetatable({}, { __close = function()
    io.write("main closed\n"); io.flush() end })
  uring.spawn(function()
    local g <close> = setmetatable({}, { __close = function()
      io.write("background closed\n"); io.flush() end })
    uring.sleep(60)
  end)
  io.write("ready\n"); io.flush()
  uring.sleep(60)
end)
io.write("not reached\n")
]]

describe("SIGINT in uring.run", function()
  it("cancels every task, runs <close> handlers and raises \"interrupted\"", function()
    local path = os.tmpname()
    local f = io.open(path, "w"); f:write(SCRIPT); f:close()
    local out = os.tmpname()
    -- env execs lua5.4, so $! is the script's pid; we wait for "ready"
    local pidf = io.popen(helpers.lua_cmd() .. " " .. path .. " > " .. out
      .. " 2>&1 & echo $!")
    local pid = pidf:read("l")
    pidf:close()
    local t0, text = os.time(), ""
    repeat
      local h = io.open(out); text = h and h:read("a") or ""; if h then h:close() end
      if not text:find("ready") then os.execute("sleep 0.05") end
    until text:find("ready") or os.time() - t0 > 10
    assert.matches("ready", text)
    local start = os.clock()
    os.execute("kill -INT " .. pid)
    -- wait for it to end (it is not our child: poll /proc)
    local t1 = os.time()
    while os.time() - t1 < 10 do
      local h = io.open("/proc/" .. pid .. "/stat")
      if not h then break end
      local st = h:read("a"); h:close()
      if st:match("%) Z") then break end
      os.execute("sleep 0.05")
    end
    assert(os.time() - t1 < 5, "did not end promptly")
    local h = io.open(out); text = h:read("a"); h:close()
    os.remove(path); os.remove(out)
    assert.matches("main closed", text)
    assert.matches("background closed", text)
    assert.matches("interrupted", text)
    assert.not_matches("not reached", text)
    assert.is_true(os.clock() - start < 5)
  end)

  it("exits with a non-zero status", function()
    local path = os.tmpname()
    -- the script signals itself; through io.popen, not os.execute: the C
    -- library's system() ignores SIGINT in the parent while its child
    -- runs (plain lua loses that Ctrl-C too; the child gets it)
    local f = io.open(path, "w")
    f:write((SCRIPT:gsub('io.write%("ready\\n"%); io.flush%(%)',
      'local s = io.open("/proc/self/stat"):read("l"); '
      .. 'io.popen("kill -INT " .. s:match("^(%%d+)")):close()')))
    f:close()
    local out, code, ok = helpers.sh("timeout 10 " .. helpers.lua_cmd() .. " " .. path)
    os.remove(path)
    assert.is_nil(ok)
    assert.equal(1, code)
    assert.matches("interrupted", out)
    assert.matches("main closed", out)
  end)

  it("leaves SIGINT alone when the script already blocks it", function()
    -- a uring.signal("INT") made before run owns SIGINT: run does not
    -- take it, and the script's own handler sees the signal
    local script = [[
local uring = require "uring"
local sig = uring.signal("INT")
print(uring.run(function()
  local s = io.open("/proc/self/stat"):read("l")
  os.execute("kill -INT " .. s:match("^(%d+)"))
  return "got", sig:wait()
end))
]]
    local path = os.tmpname()
    local f = io.open(path, "w"); f:write(script); f:close()
    local out, code = helpers.sh("timeout 10 " .. helpers.lua_cmd() .. " " .. path)
    os.remove(path)
    assert.equal(0, code)
    assert.matches("got\t2", out)
  end)

  -- Ctrl-C typed on a terminal (spec/helpers/pty_drive.py): the terminal
  -- sends SIGINT to the foreground program, which is busy in Lua
  local function on_pty(steps, cmd)
    local path = os.tmpname()
    local f = assert(io.open(path, "w")); f:write(table.concat(steps, "\n"), "\n"); f:close()
    local out, code = helpers.sh("python3 spec/helpers/pty_drive.py 30 env TERM=dumb "
      .. cmd .. " < " .. path)
    os.remove(path)
    return out:gsub("\r", ""), code
  end

  it("interrupts a task busy in `while true do end`", function()
    local path = os.tmpname()
    local f = io.open(path, "w")
    f:write([[
local uring = require "uring"
uring.run(function()
  local guard <close> = setmetatable({}, { __close = function()
    io.write("main closed\n"); io.flush() end })
  local bg = uring.spawn(function()
    local g <close> = setmetatable({}, { __close = function()
      io.write("background closed\n"); io.flush() end })
    uring.sleep(60)
  end)
  uring.yield()                        -- bg is asleep in the kernel now
  io.write("busy\n"); io.flush()
  while true do end
end)
io.write("not reached\n")
]])
    f:close()
    local t0 = os.time()
    local out, code = on_pty({ "expect busy", "sleep 0.2", [[send \x03]] },
      helpers.lua_cmd() .. " " .. path)
    os.remove(path)
    assert.equal(1, code, out)
    assert.matches("main closed", out)
    assert.matches("background closed", out)
    assert.matches("interrupted", out)
    assert.not_matches("not reached", out)
    assert.is_true(os.time() - t0 < 15)
  end)

  it("interrupts `while true do end` at the REPL, which survives with its server", function()
    local cpath = os.getenv("URING_CPATH")
    local repl = (cpath and ("env URING_CPATH='" .. cpath .. "' ") or "") .. "./bin/uring-repl"
    local out, code = on_pty({
      [[expect \n> ]],
      [[send srv = uring.listen("127.0.0.1", 0); port = select(2, srv:getsockname()); ]]
        .. [[uring.spawn(function() while true do local c = srv:accept(); ]]
        .. [[uring.spawn(function() c:send("served\\n"); c:close() end) end end)\r]],
      [[expect \n> ]], [[send while true do end\r]],
      "sleep 0.3", [[send \x03]],
      "expect interrupted",
      [[expect \n> ]], [[send c = uring.connect("127.0.0.1", port)\r]],
      [[expect \n> ]], [[send =c:receive()\r]],
      "expect served",
      [[expect \n> ]], [[send =1 + 1\r]],
      "expect 2",
      [[expect \n> ]], [[send \x04]],
    }, repl)
    assert.equal(0, code, out)
    assert.matches("while true do end\n%^?C?interrupted\n", out)
    assert.matches("served\n", out)
  end)
end)
