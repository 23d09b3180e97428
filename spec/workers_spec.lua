-- spec/workers_spec.lua: uring.workers forks real processes that serve
-- real connections; signals to the parent stop all of them cleanly.
--
-- The server is examples/http_workers.lua, started from the repo root as
--   sh -c 'echo $$; exec lua5.4 examples/http_workers.lua 0 --workers N ...'
-- so the pid read first is the supervising parent's own.  Every test
-- bounds the server (--seconds) and its `finally` kills what is left.
local helpers = require "helpers"
local uring = require "uring"
local LUA = os.getenv("LUA") or "lua5.4"
local EXT = "env -u LD_PRELOAD timeout 10 "     -- curl without the ASan preload

local readall, shq = helpers.readall, helpers.shq

-- state of a process ("R", "S", "Z", ...), or nil if it is gone
local function pstate(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a")     -- nil: it went between the open and the read
  f:close()
  return s and s:match("^%d+ %b() (%a)")
end

local function gone(pid)
  for _ = 1, 100 do
    local st = pstate(pid)
    if st == nil then return true end
    os.execute("sleep 0.05")
  end
  return false, pstate(pid)
end

-- start the example with n workers; wait until every worker listens
local function start(n, seconds)
  local errfile = os.tmpname()
  local cmd = ("sh -c %s 2>%s"):format(shq(("echo $$; exec %s examples/http_workers.lua 0 --workers %d --seconds %d")
    :format(LUA, n, seconds or 20)), errfile)
  local srv = { p = assert(io.popen(cmd, "r")), errfile = errfile, workers = {} }
  srv.pid = assert(tonumber(srv.p:read("l")))
  for _ = 1, n do
    local line = srv.p:read("l") or ""
    local port, i, pid = line:match("^listening on 127%.0%.0%.1:(%d+) %(worker (%d+), pid (%d+)%)$")
    if not port then
      srv.p:close()
      error(("worker did not start: %q\nstderr:\n%s"):format(line, readall(errfile)))
    end
    srv.port = tonumber(port)
    srv.workers[tonumber(i)] = tonumber(pid)
  end
  return srv
end

local function stop(srv)
  if srv and srv.p then
    os.execute("kill -KILL " .. srv.pid .. " 2>/dev/null")
    for _, pid in pairs(srv.workers) do os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    srv.p:close()
    srv.p = nil
    os.remove(srv.errfile)
  end
end

-- the rest of stdout, exit status and stderr once the parent exits
local function finish(srv)
  local out = srv.p:read("a")
  local _, _, code = srv.p:close()
  srv.p = nil
  local err = readall(srv.errfile)
  os.remove(srv.errfile)
  return out, code, err
end

describe("uring.workers", function()
  it("serves connections from several worker processes; SIGTERM stops them all, no orphan or zombie", function()
    local srv
    finally(function() stop(srv) end)
    srv = start(2)
    assert.are_not.equal(srv.workers[1], srv.workers[2])
    for _, pid in pairs(srv.workers) do
      assert.equal(tostring(srv.pid), io.open("/proc/" .. pid .. "/stat"):read("a"):match("^%d+ %b() %a (%d+)"))
    end
    -- new connections (one curl each) are spread over the workers by
    -- SO_REUSEPORT; 24 connections all landing on one of two workers
    -- would be a 1 in 8 million chance
    local answered = {}
    local url = ("http://127.0.0.1:%d/"):format(srv.port)
    for _ = 1, 24 do
      local out = helpers.sh(EXT .. "curl -s " .. url)
      local i, pid = out:match("^Hello from worker (%d+) %(pid (%d+)%)\n$")
      assert(i, "unexpected answer: " .. out)
      assert.equal(srv.workers[tonumber(i)], tonumber(pid))
      answered[pid] = (answered[pid] or 0) + 1
    end
    local distinct = 0
    for _ in pairs(answered) do distinct = distinct + 1 end
    assert.equal(2, distinct)
    -- keep-alive: several requests on one connection, one worker
    local out = helpers.sh(EXT .. "curl -s " .. url .. " " .. url .. " " .. url)
    assert.matches("^(Hello from worker %d %(pid %d+%)\n)%1%1$", out)

    os.execute("kill -TERM " .. srv.pid)
    local rest, code, err = finish(srv)
    assert(code == 0, ("exit %s\n%s\n%s"):format(tostring(code), rest, err))
    -- each worker's <close> handler ran (its summary), then the parent's
    for i = 1, 2 do
      assert.matches(("worker %d %%(pid %d%%): %%d+ requests on %%d+ connections")
        :format(i, srv.workers[i]), rest)
    end
    assert.matches("http_workers: 2 workers ended %(signal 15 forwarded%), all cleanly", rest)
    assert.equal("", err)
    for _, pid in pairs(srv.workers) do assert.is_true(gone(pid)) end
    assert.is_true(gone(srv.pid))
  end)

  it("SIGINT to the parent is forwarded too", function()
    local srv
    finally(function() stop(srv) end)
    srv = start(3)
    os.execute("kill -INT " .. srv.pid)
    local rest, code = finish(srv)
    assert.equal(0, code)
    assert.matches("3 workers ended %(signal 2 forwarded%), all cleanly", rest)
    for _, pid in pairs(srv.workers) do assert.is_true(gone(pid)) end
  end)

  it("reports a worker that dies; the others go on serving", function()
    local srv
    finally(function() stop(srv) end)
    srv = start(2)
    os.execute("kill -KILL " .. srv.workers[2])
    assert.is_true(gone(srv.workers[2]))      -- reaped by the parent: no zombie
    local out = helpers.sh(EXT .. "curl -s http://127.0.0.1:" .. srv.port .. "/")
    assert.equal(("Hello from worker 1 (pid %d)\n"):format(srv.workers[1]), out)
    os.execute("kill -TERM " .. srv.pid)
    local rest, code, err = finish(srv)
    assert.equal(1, code)
    assert.matches(("uring.workers: worker 2 %%(pid %d%%) was killed by signal 9 %%(unasked%%)")
      :format(srv.workers[2]), err)
    assert.matches("2 workers ended %(signal 15 forwarded%), some failed", rest)
    assert.is_true(gone(srv.workers[1]))
  end)

  it("workers that return end the call: ok and every status", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
local uring = require "uring"
local ok, st = uring.workers(3, function(i, pid)
  uring.sleep(0.05)
  if i == 3 then os.exit(7) end
end)
print(ok, #st, st.signal, st[1].how, st[1].code, st[3].how, st[3].code, st[2].pid ~= st[1].pid)
local ok2, st2 = uring.workers(1, function() error("boom") end)
print(ok2, st2[1].how, st2[1].code)
]])
    f:close()
    local out, code = helpers.sh(helpers.lua_cmd() .. " " .. path)
    os.remove(path)
    assert.equal(0, code, out)
    assert.matches("false\t3\tnil\texit\t0\texit\t7\ttrue\n", out)
    assert.matches("uring.workers: worker 3 %(pid %d+%) exited with status 7 %(unasked%)", out)
    assert.matches("uring.workers: worker 1 %(pid %d+%): [^\n]*boom", out)
    assert.matches("false\texit\t1\n$", out)
  end)

  it("raises on bad arguments and inside uring.run", function()
    assert.has_error(function() uring.workers(0, print) end,
      "bad argument #1 to 'workers' (n must be an integer in 1..1024)")
    assert.has_error(function() uring.workers(1.5, print) end,
      "bad argument #1 to 'workers' (n must be an integer in 1..1024)")
    assert.has_error(function() uring.workers("2", print) end,
      "bad argument #1 to 'workers' (n must be an integer in 1..1024)")
    assert.has_error(function() uring.workers(2) end,
      "bad argument #2 to 'workers' (function expected, got nil)")
    local ok, err = pcall(uring.run, function() uring.workers(2, print) end)
    assert.is_false(ok)
    assert.matches("workers: call it outside uring.run", err)
  end)
end)
