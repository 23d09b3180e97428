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

describe("uring-repl", function()
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
end)
