-- spec/net_examples_spec.lua: the network examples run as real servers,
-- talked to by clients that are not ours (curl, nc, wrk) and by Lua
-- clients in child processes.
--
-- Each server starts as a user would, from the repo root, on port 0:
--   sh -c 'echo $$; exec timeout 60 lua5.4 examples/x.lua 0 --seconds S ...'
-- The spec reads the PID (the shell's, which exec's timeout), then the port
-- from the first stdout line "listening on 127.0.0.1:PORT".  Every server
-- is bounded (--max-conns, --max-requests, --seconds) so it exits by
-- itself once the test is done, and its summary line is checked; a
-- `finally` kills whatever is still running, so no server outlives its
-- test.  URING_CPATH reaches the examples through the environment.
local LUA = os.getenv("LUA") or "lua5.4"

local helpers = require "helpers"
local readall, have, shq = helpers.readall, helpers.have, helpers.shq

-- a shell command's stdout (stderr left alone), and whether it exited 0
local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok, code
end

-- curl, nc and wrk run without the ASan preload of `make asan` (curl
-- hangs with libasan preloaded); our own processes keep it
local EXT = "env -u LD_PRELOAD timeout "

-- Start a server; returns {p =, pid =, port =, errfile =}.
local function start(script, args)
  local errfile = os.tmpname()
  local cmd = ("sh -c %s 2>%s"):format(shq(("echo $$; exec timeout 60 %s examples/%s %s")
    :format(LUA, script, args)), errfile)
  local srv = { p = assert(io.popen(cmd, "r")), errfile = errfile, name = script }
  srv.pid = srv.p:read("l")
  local first = srv.p:read("l") or ""
  srv.port = tonumber(first:match("^listening on 127%.0%.0%.1:(%d+)$"))
  if not srv.port then
    srv.p:close()
    error(("%s did not start: %q\nstderr:\n%s"):format(script, first, readall(errfile)))
  end
  return srv
end

-- Wait for a server to exit by itself; returns the rest of its stdout.
local function finish(srv)
  local out = srv.p:read("a")
  local ok, _, code = srv.p:close()
  srv.p = nil
  local err = readall(srv.errfile)
  os.remove(srv.errfile)
  assert(ok, ("%s exited with %s\nstdout:\n%s\nstderr:\n%s")
    :format(srv.name, tostring(code), out, err))
  return out
end

-- Kill a server that is still running (the `finally` of every test).
local function stop(srv)
  if srv and srv.p then
    os.execute("kill " .. srv.pid .. " 2>/dev/null")
    srv.p:close()
    srv.p = nil
    os.remove(srv.errfile)
  end
end

-- Run Lua code in a child process from the repo root (args appended);
-- returns its stdout, and stderr on failure.
local function lua_child(code, args)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write([[
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
]], code)
  f:close()
  local out, err, rc = helpers.exec(("timeout 30 %s %s %s"):format(LUA, path, args or ""))
  os.remove(path)
  assert(rc == 0, ("Lua client exited with %s\nstdout:\n%s\nstderr:\n%s")
    :format(tostring(rc), out, err))
  return out
end

local function note(s) io.write("# ", (s:gsub("\n", "\n# ")), "\n") end

describe("network examples", function()
  setup(function()
    for _, cmd in ipairs { "curl", "nc", "wrk" } do
      assert(have(cmd), cmd .. " is missing: run `make deps` (apt-get install curl netcat-openbsd wrk)")
    end
  end)

  describe("http_hello.lua", function()
    it("answers curl with 200 and the body, twice on one kept-alive connection", function()
      local srv = start("http_hello.lua", "0 --max-requests 2 --seconds 10")
      finally(function() stop(srv) end)
      local url = "http://127.0.0.1:" .. srv.port
      local out, ok = sh((EXT .. "10 curl -sS -w '%%{http_code} %%{num_connects}\\n' %s/ %s/two")
        :format(url, url))
      assert(ok, "curl failed: " .. out)
      -- num_connects: 1 for the first URL, 0 for the second (reused)
      assert.equal("Hello, world!\n200 1\nHello, world!\n200 0\n", out)
      local summary = finish(srv)
      assert.matches("http_hello: 2 requests on 1 connections", summary)
    end)

    it("answers pipelined requests in order and honours Connection: close", function()
      local srv = start("http_hello.lua", "0 --max-requests 3 --seconds 10")
      finally(function() stop(srv) end)
      local req = "GET /a HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
        .. "HEAD /b HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
        .. "GET /c HTTP/1.1\\r\\nHost: x\\r\\nconnection: Close\\r\\n\\r\\n"
      local out = sh(("printf '%s' | " .. EXT .. "10 nc -N 127.0.0.1 %d"):format(req, srv.port))
      local _, n200 = out:gsub("HTTP/1%.1 200 OK\r\n", "")
      local _, bodies = out:gsub("Hello, world!\n", "")
      assert.equal(3, n200)
      assert.equal(2, bodies)               -- HEAD has none
      assert.matches("Connection: close\r\n\r\nHello, world!\n$", out)
      assert.matches("3 requests on 1 connections", finish(srv))
    end)

    it("serves wrk -t1 -c100 -d3s with no socket errors", function()
      local srv = start("http_hello.lua", "0 --seconds 5")
      finally(function() stop(srv) end)
      local out, ok = sh((EXT .. "20 wrk -t1 -c100 -d3s http://127.0.0.1:%d/"):format(srv.port))
      assert(ok, "wrk failed:\n" .. out)
      local reqs = tonumber(out:match("(%d+) requests in"))
      local rps = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
      assert(reqs and reqs > 0, "no requests:\n" .. out)
      assert(rps and rps > 0, "no Requests/sec:\n" .. out)
      local errs = out:match("Socket errors:([^\n]*)")
      if errs then
        for n in errs:gmatch("%d+") do
          assert(tonumber(n) == 0, "wrk saw socket errors:\n" .. out)
        end
      end
      assert.is_nil(out:match("Non%-2xx"), "wrk saw non-2xx answers:\n" .. out)
      note(("wrk -t1 -c100 -d3s: %d requests, Requests/sec: %.0f"):format(reqs, rps))
      local summary = finish(srv)
      assert.matches("http_hello: %d+ requests", summary)
      note(summary:gsub("\n$", ""))
    end)
  end)

  describe("echo_server.lua", function()
    it("echoes nc's lines back and stops after --max-conns", function()
      local srv = start("echo_server.lua", "0 --max-conns 1 --seconds 10")
      finally(function() stop(srv) end)
      local out, ok = sh(("printf 'hi\\nthere\\n' | " .. EXT .. "10 nc -N 127.0.0.1 %d")
        :format(srv.port))
      assert(ok, "nc failed")
      assert.equal("hi\nthere\n", out)
      local summary = finish(srv)
      assert.matches("echo_server: 1 connections, 2 lines %(9 bytes%)", summary)
      assert.matches("%d+ io_uring_enter calls", summary)
    end)

    it("stops by itself after --seconds with a client still connected", function()
      local srv = start("echo_server.lua", "0 --seconds 0.5")
      finally(function() stop(srv) end)
      -- nc stays connected (stdin open for 2 s); the server hangs up at 0.5 s
      local t0 = os.time()
      local out = sh(("(sleep 2) | " .. EXT .. "10 nc 127.0.0.1 %d"):format(srv.port))
      assert.equal("", out)
      assert.matches("echo_server: 1 connections, 0 lines", finish(srv))
      assert(os.time() - t0 <= 5)
    end)
  end)

  describe("chat_server.lua", function()
    it("broadcasts each line to every other client as nameN: text", function()
      local srv = start("chat_server.lua", "0 --max-conns 3 --seconds 10")
      finally(function() stop(srv) end)
      local out = lua_child([[
local uring = require "uring"
local port = tonumber(arg[1])
uring.run(function()
  local cs = {}
  local function expect(i, want)
    local got = assert(cs[i]:receive())
    if got ~= want then error(("client %d got %q, want %q"):format(i, got, want), 0) end
  end
  for i = 1, 3 do              -- joins, in order, seen by those already in
    cs[i] = assert(uring.connect("127.0.0.1", port))
    expect(i, "* you are name" .. i)
    for j = 1, i - 1 do expect(j, "* name" .. i .. " joined") end
  end
  for i = 1, 3 do
    assert(cs[i]:send("hello from " .. i .. "\n"))
    for j = 1, 3 do
      if j ~= i then expect(j, "name" .. i .. ": hello from " .. i) end
    end
  end
  cs[3]:close()
  expect(1, "* name3 left")
  expect(2, "* name3 left")
  cs[1]:close()
  cs[2]:close()
  print("ok")
end)
]], tostring(srv.port))
      assert.equal("ok\n", out)
      local summary = finish(srv)
      assert.matches("chat_server: 3 clients, 3 lines relayed", summary)
    end)
  end)

  describe("tcp_proxy.lua", function()
    it("relays nc and 1 MiB both ways to echo_server.lua, half-close included", function()
      local echo = start("echo_server.lua", "0 --max-conns 2 --seconds 15")
      finally(function() stop(echo) end)
      local proxy = start("tcp_proxy.lua", ("0 127.0.0.1 %d --max-conns 2 --seconds 15")
        :format(echo.port))
      finally(function() stop(proxy) end)
      -- nc -N: shutdown(SHUT_WR) after stdin's EOF, then reads to the end
      local out = sh(("printf 'through\\nthe proxy\\n' | " .. EXT .. "10 nc -N 127.0.0.1 %d")
        :format(proxy.port))
      assert.equal("through\nthe proxy\n", out)
      out = lua_child([[
local uring = require "uring"
local t = {}
for i = 1, 16384 do t[i] = ("%063d\n"):format(i) end
local data = table.concat(t)
assert(#data == 1024 * 1024)
uring.run(function()
  local c = assert(uring.connect("127.0.0.1", tonumber(arg[1])))
  local w = uring.spawn(function()
    assert(c:send(data))
    assert(c:shutdown("send"))   -- our EOF travels through the proxy
  end)
  local back = assert(c:receive("*a"))
  assert(w:join())
  c:close()
  print(#back, back == data)
end)
]], tostring(proxy.port))
      assert.equal("1048576\ttrue\n", out)
      local n = 1048576 + #"through\nthe proxy\n"
      assert.matches(("tcp_proxy: 2 connections %%(0 failed%%), %d bytes client%%->target, "
        .. "%d bytes target%%->client"):format(n, n), finish(proxy))
      assert.matches("echo_server: 2 connections, 16386 lines", finish(echo))
    end)
  end)

  describe("bench/idle.lua quick", function()
    it("holds 1,000 idle connections and prints the server's RSS", function()
      local errfile = os.tmpname()
      local out, ok, code = sh(("timeout 60 %s bench/idle.lua quick 2>%s"):format(LUA, errfile))
      local err = readall(errfile)
      os.remove(errfile)
      assert(ok, ("bench/idle.lua quick exited with %s\nstdout:\n%s\nstderr:\n%s")
        :format(tostring(code), out, err))
      local before, after = out:match(
        "server VmRSS: before ([%d.]+) MiB, with 1000 idle connections ([%d.]+) MiB")
      assert(before and after, "no RSS line:\n" .. out)
      assert(tonumber(after) < 64, "over 64 MiB:\n" .. out)
      assert.matches("echo_server: 1000 connections", out)
      note(out:match("server VmRSS[^\n]*"))
    end)
  end)
end)
