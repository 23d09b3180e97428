-- spec/first_contact_spec.lua: what a new user meets first.  Loading the
-- module from the wrong Lua says why; the example servers stop cleanly
-- when told to (Ctrl-C on a terminal, SIGTERM from a supervisor): their
-- summary printed, exit status 0, no traceback.
local LUA = os.getenv("LUA") or "lua5.4"

local helpers = require "helpers"
local readall, shq = helpers.readall, helpers.shq

describe("first contact", function()
  it("require 'uring' from Lua 5.1 says lua-uring needs Lua 5.4", function()
    assert(helpers.have("lua5.1"), "lua5.1 is missing: run `make deps-test`")
    local out, code = helpers.sh("lua5.1 -e \"package.path='./lua/?.lua;./lua/?/init.lua;'"
      .. "..package.path; package.cpath='./build/?.so;'..package.cpath\" -e 'require \"uring\"'")
    assert.equal(1, code, out)
    assert.matches("lua%-uring needs Lua 5%.4 %(this is Lua 5%.1", out)
    assert.is_nil(out:find("undefined symbol", 1, true), out)
  end)

  it("the run's own errors name uring.run", function()
    local uring = require "uring"
    local ok, err = pcall(uring.run, function() uring.run(function() end) end)
    assert.is_false(ok)
    assert.matches(": uring%.run: the loop is already running", err)
    ok, err = pcall(uring.run, function()
      local a, b
      a = uring.spawn(function() uring.yield(); b:join() end)
      b = uring.spawn(function() uring.yield(); a:join() end)
      a:join()
    end)
    assert.is_false(ok)
    assert.matches("^uring%.run: deadlock", err)
  end)

  -- every server, with the arguments it needs and its summary line
  local servers = {
    { "echo_server.lua", "0", "echo_server: 0 connections" },
    { "chat_server.lua", "0", "chat_server: 0 clients" },
    { "http_hello.lua", "0", "http_hello: 0 requests" },
    { "http_server.lua", "0", "http_server: 0 requests" },
    { "tcp_proxy.lua", "0 127.0.0.1 9", "tcp_proxy: 0 connections" },
  }

  for _, s in ipairs(servers) do
    local script, args, summary = s[1], s[2], s[3]
    it(script .. " stops on SIGTERM: summary printed, exit status 0", function()
      local dir = helpers.tmpdir()
      -- started as a supervisor would; SIGTERM once it listens
      local cmd = ([[
%s examples/%s %s >%s/out 2>%s/err & pid=$!
i=0; until grep -q listening %s/out || [ $i -ge 300 ]; do sleep 0.05; i=$((i+1)); done
kill -TERM $pid; wait $pid; echo "exit $?"]]):format(LUA, script, args, dir, dir, dir)
      local status = helpers.sh("timeout 60 sh -c " .. shq(cmd))
      local out, err = readall(dir .. "/out"), readall(dir .. "/err")
      helpers.rmrf(dir)
      assert.matches("exit 0", status, ("%s\nstdout:\n%s\nstderr:\n%s"):format(status, out, err))
      assert.matches("^listening on 127%.0%.0%.1:%d+\n", out)
      assert.matches(summary, out, 1, true)
      assert.equal("", err)
    end)
  end

  for _, script in ipairs { "echo_server.lua", "http_hello.lua" } do
    it(script .. " stops on Ctrl-C at a terminal: summary printed, exit status 0", function()
      local path = os.tmpname()
      helpers.writeall(path, "expect listening on\nsleep 0.2\nsend \\x03\n")
      local out, code = helpers.sh(("python3 spec/helpers/pty_drive.py 30 %s examples/%s 0 < %s")
        :format(LUA, script, path))
      os.remove(path)
      assert.equal(0, code, out)
      assert.matches(script:match("^[^.]+") .. ": 0 ", out)
      assert.is_nil(out:find("traceback", 1, true), out)
      assert.is_nil(out:find("interrupted", 1, true), out)
    end)
  end
end)
