-- bin/uring-repl driven as a user would: through a pipe, and on a
-- pseudo-terminal (spec/helpers/pty_drive.py) with line editing and Ctrl-C.
local helpers = require "helpers"

local function repl_cmd()
  local cpath = os.getenv("URING_CPATH")
  return (cpath and ("env URING_CPATH='" .. cpath .. "' ") or "") .. "./bin/uring-repl"
end

-- Write `input` to a file and run the REPL on it through a pipe.
local function run_piped(input)
  local path = os.tmpname()
  local f = assert(io.open(path, "w")); f:write(input); f:close()
  local out, code = helpers.sh("timeout 30 " .. repl_cmd() .. " < " .. path)
  os.remove(path)
  return out, code
end

-- Drive the REPL on a pseudo-terminal: steps as spec/helpers/pty_drive.py
-- reads them; env: extra "K=V" words (HOME=...).  Returns the transcript
-- (carriage returns dropped) and the exit status.
local function run_pty(steps, env, args)
  local path = os.tmpname()
  local f = assert(io.open(path, "w")); f:write(table.concat(steps, "\n"), "\n"); f:close()
  local out, code = helpers.sh("python3 spec/helpers/pty_drive.py 30 env TERM=dumb "
    .. (env or "") .. " " .. repl_cmd() .. " " .. (args or "") .. " < " .. path)
  os.remove(path)
  return (out:gsub("\r", "")), code
end

-- the SQE and CQE lines of out from the trace (stderr, "[uring] sqe ..."),
-- and how many enter lines there were
local function trace_lines(out)
  local t, enters = {}, 0
  for l in out:gmatch("[^\n]+") do
    if l:match("^%[uring%] [sc]qe ") then t[#t + 1] = l end
    if l:match("^%[uring%] enter ") then enters = enters + 1 end
  end
  return t, enters
end

describe("uring-repl", function()
  it(":inspect serves the live view until :inspect off; :tasks leaves it out", function()
    -- a port free a moment ago: the chunk must know where to ask
    local uring = require "uring"
    local port = uring.run(function()
      local l = assert(uring.listen("127.0.0.1", 0))
      local _, p = l:getsockname()
      l:close()
      return p
    end)
    local url = ("http://127.0.0.1:%d/"):format(port)
    local out, code = run_piped(table.concat({
      ":inspect " .. port,
      ":inspect",
      ":tasks",
      ('r = uring.http.request("%sstate.json"); print(r.status, r.body:match(\'"tasks":(%%b[])\'))'):format(url),
      ":inspect off",
      ('print(uring.http.request("%s"))'):format(url),
      ":inspect 70000",
      "",
    }, "\n"))
    assert.equal(0, code, out)
    assert.matches("inspector at " .. url:gsub("%p", "%%%0"), out)
    assert.matches("inspector already at ", out, 1, true)
    assert.matches("no tasks\n", out, 1, true)          -- its own are not listed
    -- the snapshot lists the chunk that asked for it, waiting on its recv
    assert.matches('200\t%[{"id":%d+,"status":"waiting","waiting_on":"recv"}%]', out)
    assert.matches("inspector closed\nnil\t[^\n]*refused", out)
    assert.matches("usage: :inspect [port]", out, 1, true)
  end)

  it("runs an echo server started at the prompt and talks to it from the next chunk", function()
    local out, code = run_piped(table.concat({
      'srv = assert(uring.listen("127.0.0.1", 0)); _, port = srv:getsockname()',
      'server = uring.spawn(function() while true do local c = srv:accept() if not c then return end '
        .. 'uring.spawn(function() for l in c:lines() do c:send(l .. "\\n") end c:close() end) end end)',
      '=port > 0',
      'c = assert(uring.connect("127.0.0.1", port)); c:send("ping\\n"); return c:receive()',
      ':tasks',
      'c:close()',
      ':stats',
      ':features',
      '',
    }, "\n"))
    assert.equal(0, code, out)
    assert.matches("true\nping\n", out)
    assert.matches("waiting%s+accept", out)   -- :tasks shows the server
    assert.matches("enters%s+%d+", out)       -- :stats
    assert.matches("flags%s+.*CQSIZE", out)   -- :features
    assert.matches("ops%s+.*accept", out)
  end)

  it("prints expressions, =expr, errors with tracebacks, and multi-line chunks", function()
    local out, code = run_piped(table.concat({
      "1 + 1", "=2 * 3", "return 'a', nil, 3", "for i = 1, 2 do", "  io.write(i, ' ')", "end",
      "error('boom')", "x =", "7", "=x", "uring.sleep(0.01)", ":cancel 999", ":nope", "",
    }, "\n"))
    assert.equal(0, code, out)
    assert.matches("^2\n6\na\tnil\t3\n1 2 ", out)
    assert.matches("stdin:1: boom\nstack traceback:", out)
    assert.matches("\n7\n", out)                -- "x =" was continued by "7"
    assert.matches("no task 999", out)
    assert.matches("unknown command :nope", out)
  end)

  it("edits lines on a terminal, and Ctrl-C cancels only the running chunk", function()
    -- each line is typed once the prompt shows (spec/helpers/pty_drive.py);
    -- no shell in between: a non-interactive sh dies of the Ctrl-C itself
    local steps = table.concat({
      [[expect \n> ]],
      [[send count = 0; uring.spawn(function() while true do uring.sleep(0.01); count = count + 1 end end)\r]],
      [[expect \n> ]], [[send print(12\x7f3)\r]],       -- a backspace edit
      [[expect \n> ]], [[send uring.sleep(100)\r]],
      "sleep 0.3", [[send \x03]],                    -- Ctrl-C
      "expect interrupted",
      [[expect \n> ]], [[send c1 = count\r]],
      [[expect \n> ]], "sleep 0.1", [[send =count > c1\r]],
      [[expect \n> ]], [[send \x04]],                    -- Ctrl-D
    }, "\n")
    local path = os.tmpname()
    local f = assert(io.open(path, "w")); f:write(steps, "\n"); f:close()
    local t0 = os.time()
    local out, code = helpers.sh("python3 spec/helpers/pty_drive.py 30 env TERM=dumb "
      .. repl_cmd() .. " < " .. path)
    os.remove(path)
    assert.equal(0, code, ("exit %s after %d s:\n%s"):format(code, os.time() - t0, out))
    out = out:gsub("\r", "")
    assert.matches("[^%d]13\n", out)              -- print(12<BS>3) ran as print(13)
    assert.matches("interrupted", out)            -- the sleep(100) was cancelled
    assert.matches("true\n", out)                 -- the background task kept counting
    assert.is_true(os.time() - t0 < 20)           -- and not after 100 s
  end)

  it("prints the error of a task spawned at the prompt when it fails, with its id", function()
    local out, code = run_piped(table.concat({
      't = uring.spawn(function() uring.sleep(0.02) error("late boom") end)',
      '=t:id()',
      'uring.sleep(0.3)',
      'print("after the failure")',
      '',
    }, "\n"))
    assert.equal(0, code, out)                  -- not raised at Ctrl-D
    local id = assert(out:match("^(%d+)\n"), out)
    local at = assert(out:find("task " .. id .. " failed: stdin:1: late boom\nstack traceback:", 1, true), out)
    assert.is_true(at < assert(out:find("after the failure", 1, true)))   -- when it happened
    assert.is_nil(out:find("lua5.4:", 1, true), out)
  end)

  it("shows tracebacks without the REPL's own frames", function()
    local out, code = run_piped(table.concat({
      "local function inner() error('deep') end inner()",
      "uring.spawn(function() error('bg') end)", "uring.sleep(0.05)", "",
    }, "\n"))
    assert.equal(0, code, out)
    assert.matches("stdin:1: deep\nstack traceback:\n", out)
    assert.matches("in main chunk\n", out)           -- the user's frames stay
    assert.is_nil(out:find("repl.lua", 1, true), out)
    assert.is_nil(out:find("xpcall", 1, true), out)
    assert.is_nil(out:find("uring-repl", 1, true), out)
  end)

  it(":trace on traces the user's work, not the prompt's reading of stdin", function()
    local out, code = run_piped(table.concat({
      ":trace on", "uring.nop()", "uring.nop()", "uring.sleep(0.01)", ":trace off", "uring.nop()", "",
    }, "\n"))
    assert.equal(0, code, out)
    local lines, enters = trace_lines(out)
    assert.equal(6, #lines, out)                     -- 3 SQEs and 3 CQEs, nothing else
    assert.equal(3, enters, out)                     -- one enter each, none of the prompt's
    for _, l in ipairs(lines) do
      assert.matches("^%[uring%] [sc]qe (%a+)", l)
      local op = l:match("^%[uring%] [sc]qe (%a+)")
      assert.is_true(op == "nop" or op == "timeout", l)
    end
  end)

  it("on a terminal: :trace leaves out the prompt's poll of stdin", function()
    local out, code = run_pty({
      [[expect \n> ]], [[send :trace on\r]],
      [[expect \n> ]], [[send uring.nop()\r]],
      [[expect \n> ]], [[send :trace off\r]],
      [[expect \n> ]], [[send \x04]],
    })
    assert.equal(0, code, out)
    local lines, enters = trace_lines(out)
    assert.equal(2, #lines, out)
    for _, l in ipairs(lines) do assert.matches("^%[uring%] [sc]qe nop ", l) end
    -- each keystroke woke the loop through an enter: only the nop's shows
    assert.equal(1, enters, out)
  end)

  it("draws a background task's output above the half-typed line, which survives", function()
    local out, code = run_pty({
      [[expect \n> ]], [[send uring.spawn(function() uring.sleep(0.4) print("tick from the background") end)\r]],
      [[expect \n> ]], [[send x = 12]],               -- typed, no Enter yet
      "expect tick from the background",
      "sleep 0.2", [[send 3\r]],
      [[expect x = 123\r\n> ]], [[send =x\r]],   -- the redrawn line, completed
      [[expect \n123]],
      [[expect \n> ]], [[send \x04]],
    })
    assert.equal(0, code, out)
    -- the output starts on a cleared line and the prompt with "x = 12" is
    -- drawn again after it
    assert.matches("tick from the background\n> x = 12", out)
    assert.matches("\n123\n", out)
  end)

  it("completes names with Tab: module fields, table fields, methods", function()
    local out, code = run_pty({
      [[expect \n> ]], [[send t = {alpha_beta = 42}; f = assert(uring.open("/dev/null"))\r]],
      [[expect \n> ]], [[send =t.alpha_\t]], "sleep 0.2", [[send \r]],
      "expect 42",
      [[expect \n> ]], [[send uring.sle\t]], "sleep 0.2", [[send (0.01); print("slept")\r]],
      "expect slept",
      [[expect \n> ]], [[send f:clo\t]], "sleep 0.2", [[send ()\r]],
      [[expect \n> ]], [[send =io.type(f) or tostring(f)\r]],
      [[expect \n> ]], [[send \x04]],
    })
    assert.equal(0, code, out)
    assert.matches("=t%.alpha_beta\n42\n", out)
    assert.matches("uring%.sleep%(0%.01%)", out)
    assert.matches("f:close%(%)", out)
    assert.matches("closed", out)
  end)

  it("completion works from the value, and never calls an __index function", function()
    local repl = require "uring.repl"
    local called = false
    _G.uring = require "uring"                  -- as the prompt has it
    _G.repl_obj = setmetatable({ field_b = 1 }, { __index = { method_a = function() end } })
    _G.repl_lazy = setmetatable({}, { __index = function() called = true end })
    assert.same({ "uring.sleep" }, repl.complete("uring.sle"))
    assert.same({ "string.format" }, repl.complete("string.form"))
    assert.same({ "repl_obj:method_a" }, repl.complete("repl_obj:"))
    assert.same({ "repl_obj.field_b", "repl_obj.method_a" }, repl.complete("repl_obj."))
    assert.same({}, repl.complete("repl_lazy.x"))
    assert.same({}, repl.complete("nosuchname.x"))
    assert.same({}, repl.complete("a..b"))
    assert.same({ "while" }, repl.complete("whil"))
    assert.is_false(called)
    _G.repl_obj, _G.repl_lazy, _G.uring = nil, nil, nil
  end)

  it("keeps history in $HOME/.uring_history across sessions", function()
    local home = helpers.tmpdir()
    local env = "HOME=" .. home
    local _, code = run_pty({
      [[expect \n> ]], [[send marker = 6 * 7\r]],
      [[expect \n> ]], [[send \x04]],
    }, env)
    assert.equal(0, code)
    assert.matches("marker = 6 %* 7\n", helpers.readall(home .. "/.uring_history"))
    local out, code2 = run_pty({
      [[expect \n> ]], [[send \x10\r]],                -- Ctrl-P: the previous line
      [[expect \n> ]], [[send =marker\r]],
      [[expect \n> ]], [[send \x04]],
    }, env)
    helpers.rmrf(home)
    assert.equal(0, code2, out)
    assert.matches("> marker = 6 %* 7\n", out)
    assert.matches("=marker\n42\n", out)
  end)
end)

describe("uring-repl's command line, as lua5.4's", function()
  local function run(args, input)
    local path = os.tmpname()
    local f = assert(io.open(path, "w")); f:write(input or ""); f:close()
    local out, err, code = helpers.exec("timeout 30 " .. repl_cmd() .. " " .. args .. " < " .. path)
    os.remove(path)
    return out, err, code
  end

  it("--help prints the usage; an unknown option is an error", function()
    local out, _, code = run("--help")
    assert.equal(0, code)
    assert.matches("^usage: uring%-repl %[options%] %[script %[args%]%]", out)
    assert.matches("%-e stat", out)
    local _, err, code2 = run("-z")
    assert.equal(1, code2)
    assert.matches("unrecognized option '%-z'", err)
    local _, err3, code3 = run("-e")
    assert.equal(1, code3)
    assert.matches("'%-e' needs argument", err3)
  end)

  it("-e runs code as a task (yielding calls work) and exits", function()
    local out, err, code = run("-e 'uring.sleep(0.01); print(\"e ran\")' -e 'print(uring.current() ~= nil)'")
    assert.equal(0, code, err)
    assert.equal("e ran\ntrue\n", out)
  end)

  it("-W turns warnings on", function()
    local _, err, code = run("-W -e 'warn(\"careful\")'")
    assert.equal(0, code, err)
    assert.matches("Lua warning: careful", err)
  end)

  it("Ctrl-C during a script: exit status 130, quietly", function()
    local out, code = run_pty({ "expect ready", "sleep 0.2", [[send \x03]] }, nil,
      [[-e 'print("ready"); uring.sleep(30); print("not reached")']])
    assert.equal(130, code, out)
    assert.is_nil(out:find("traceback", 1, true), out)
    assert.is_nil(out:find("not reached", 1, true), out)
  end)

  it("-l requires a module into a global", function()
    local out, err, code = run("-l string -e 'print(string.rep(\"a\", 3))'")
    assert.equal(0, code, err)
    assert.equal("aaa\n", out)
  end)

  it("runs script.lua with its arguments in arg and ...", function()
    local dir = helpers.tmpdir()
    helpers.writeall(dir .. "/s.lua", 'uring.sleep(0.01)\nprint(arg[0]:match("s%.lua$"), arg[1], arg[2], #arg, ...)\n')
    local out, err, code = run(dir .. "/s.lua one two")
    helpers.rmrf(dir)
    assert.equal(0, code, err)
    assert.equal("s.lua\tone\ttwo\t2\tone\ttwo\n", out)
  end)

  it("an error in the script: message and traceback on stderr, exit status 1", function()
    local dir = helpers.tmpdir()
    helpers.writeall(dir .. "/bad.lua", 'local x = 1\nerror("script failed")\n')
    local out, err, code = run(dir .. "/bad.lua")
    helpers.rmrf(dir)
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("^uring%-repl: [^\n]*bad%.lua:2: script failed\nstack traceback:", err)
    assert.is_nil(err:find("repl.lua", 1, true), err)
  end)

  it("-i enters the prompt after -e, with what -e made; - runs stdin as a script", function()
    local out, err, code = run("-e 'greeting = \"hi\"' -i", "=greeting .. '!'\n")
    assert.equal(0, code, err)
    assert.matches("^lua%-uring [^\n]*\nhi!\n$", out)
    local out2, err2, code2 = run("-", "print('from stdin', ...)\n")
    assert.equal(0, code2, err2)
    assert.equal("from stdin\n", out2)
  end)
end)
