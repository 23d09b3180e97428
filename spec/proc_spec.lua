-- uring.popen, uring.exec and proc:wait/kill: processes waited for through
-- the ring (IORING_OP_WAITID, or a polled pidfd with URING_PROC_FALLBACK=1;
-- the last test runs this whole file again on that path).
local uring = require "uring"
local helpers = require "helpers"

local FALLBACK = os.getenv("URING_PROC_FALLBACK") == "1"

-- our children in state Z (zombies), from /proc
local function zombies()
  local me, n = helpers.pid(), 0
  local p = io.popen("cat /proc/[0-9]*/stat 2>/dev/null")
  for line in p:lines() do
    local state, ppid = line:match("%) (%a) (%d+)")
    if state == "Z" and ppid == me then n = n + 1 end
  end
  p:close()
  return n
end

local pipes = helpers.pipes

-- every opcode prepared while fn runs, as a set
local function ops_of(fn)
  local seen = {}
  uring.trace(function(e) if e.event == "sqe" then seen[e.op] = true end end)
  local r = table.pack(uring.run(fn))
  uring.trace(false)
  return seen, table.unpack(r, 1, r.n)
end

describe("uring.popen #io", function()
  after_each(function() assert.equal(0, uring.stats().inflight) end)

  it("reads seq 1 100000 with :lines() exactly as io.popen does", function()
    local p = io.popen("seq 1 100000")
    local want = {}
    for l in p:lines() do want[#want + 1] = l end
    local w1, w2, w3 = p:close()
    local got, r = uring.run(function()
      local f = assert(uring.popen("seq 1 100000"))
      local t = {}
      for l in f:lines() do t[#t + 1] = l end
      return t, table.pack(f:close())
    end)
    assert.equal(100000, #got)
    assert.same(want, got)
    assert.same({ w1, w2, w3 }, { r[1], r[2], r[3] })
  end)

  it("feeds a child in \"w\" mode (wc -c)", function()
    local tmp = os.tmpname()
    local r = uring.run(function()
      local f = assert(uring.popen("wc -c > " .. tmp, "w"))
      assert.equal(f, f:write(string.rep("x", 100000), "\n"))
      return table.pack(f:close())
    end)
    assert.same({ true, "exit", 0 }, { r[1], r[2], r[3] })
    local h = io.open(tmp); local n = h:read("n"); h:close(); os.remove(tmp)
    assert.equal(100001, n)
  end)

  it("reports a signal and exit codes as io.popen's close", function()
    for _, cmd in ipairs { "kill -TERM $$", "kill -KILL $$", "exit 0", "exit 3", "exit 255" } do
      local p = io.popen(cmd)
      local want = table.pack(p:close())
      local got = uring.run(function()
        return table.pack(assert(uring.popen(cmd)):close())
      end)
      assert.same({ want[1], want[2], want[3] }, { got[1], got[2], got[3] }, cmd)
    end
    local p = io.popen("kill -TERM $$")
    assert.same({ nil, "signal", 15 }, { p:close() })
  end)

  it("waits in <close> and blocks (as io.popen) outside a task", function()
    local tmp = os.tmpname()
    uring.run(function()
      local f <close> = assert(uring.popen("cat > " .. tmp, "w"))
      f:write("closed by <close>\n")
    end)
    local h = io.open(tmp); assert.equal("closed by <close>\n", h:read("a")); h:close()
    local f = uring.run(function() return assert(uring.popen("exit 7")) end)
    assert.same({ nil, "exit", 7 }, { f:close() })   -- outside the run
    os.remove(tmp)
    assert.equal(0, zombies())
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() uring.popen() end,
      "bad argument #1 to 'popen' (string expected, got no value)")
    assert.has_error(function() uring.popen("true", "rw") end,
      "bad argument #2 to 'popen' (invalid mode)")
    assert.has_error(function() uring.popen("true", "r+") end)
  end)

  it("uses IORING_OP_WAITID when the kernel has it, else a pidfd poll", function()
    local seen = ops_of(function()
      return uring.exec{ "sh", "-c", "sleep 0.05" }:wait()
    end)
    if FALLBACK or not uring.probe().waitid then
      assert.is_nil(seen.waitid); assert.is_true(seen.poll_add)
    else
      assert.is_true(seen.waitid); assert.is_nil(seen.poll_add)
    end
  end)
end)

describe("uring.exec #io", function()
  after_each(function() assert.equal(0, uring.stats().inflight) end)

  it("returns a process with pid; wait gives ok, how, code as os.execute", function()
    local r = uring.run(function()
      local p = assert(uring.exec{ "sh", "-c", "exit 4" })
      assert.is_number(p.pid)
      assert.matches("^uring.process %d+", tostring(p))
      return { p:wait() }
    end)
    assert.same({ nil, "exit", 4 }, r)
    assert.same({ true, "exit", 0 }, uring.run(function()
      return { uring.exec{ "true" }:wait() } end))
  end)

  it("pipes stdin, stdout and stderr", function()
    local out, err, st = uring.run(function()
      local p = assert(uring.exec{ "sh", "-c", "tr a-z A-Z; echo oops >&2",
        stdin = "pipe", stdout = "pipe", stderr = "pipe" })
      p.stdin:write("hello\n"); p.stdin:close()
      local o, e = p.stdout:read("a"), p.stderr:read("a")
      p.stdout:close(); p.stderr:close()
      return o, e, { p:wait() }
    end)
    assert.equal("HELLO\n", out); assert.equal("oops\n", err)
    assert.same({ true, "exit", 0 }, st)
  end)

  it("takes \"null\" and an existing uring.file", function()
    local tmp = os.tmpname()
    uring.run(function()
      local f = assert(uring.open(tmp, "w"))
      assert(uring.exec{ "echo", "to a file", stdout = f, stdin = "null" }:wait())
      f:close()
      local p = assert(uring.exec{ "cat", stdin = "null", stdout = "pipe" })
      assert.equal("", p.stdout:read("a")); p.stdout:close(); p:wait()
    end)
    local h = io.open(tmp); assert.equal("to a file\n", h:read("a")); h:close()
    os.remove(tmp)
  end)

  it("sets env (replacing the environment) and cwd", function()
    local out = uring.run(function()
      local p = assert(uring.exec{ "sh", "-c", "echo \"$A|$HOME|$(pwd)\"",
        env = { A = "x y", PATH = "/usr/bin:/bin" }, cwd = "/tmp", stdout = "pipe" })
      local s = p.stdout:read("a"); p.stdout:close(); p:wait()
      return s
    end)
    assert.equal("x y||/tmp\n", out)
  end)

  it("kills (SIGTERM by default, or a named signal)", function()
    local a, b, c = uring.run(function()
      local p1 = uring.exec{ "sleep", "10" }
      local p2 = uring.exec{ "sleep", "10" }
      assert.is_true(p1:kill())
      assert.is_true(p2:kill("KILL"))
      local r1, r2 = { p1:wait() }, { p2:wait() }
      return r1, r2, { p1:kill() }
    end)
    assert.same({ nil, "signal", 15 }, a)
    assert.same({ nil, "signal", 9 }, b)
    assert.is_nil(c[1]); assert.equal(3, c[3])   -- ESRCH once reaped
  end)

  it("lets several tasks wait for one process", function()
    local r = uring.run(function()
      local p = uring.exec{ "sh", "-c", "sleep 0.05; exit 2" }
      local ts = {}
      for i = 1, 3 do ts[i] = uring.spawn(function() return p:wait() end) end
      local out = {}
      for i = 1, 3 do out[i] = { select(2, ts[i]:join()) } end
      return out
    end)
    for i = 1, 3 do assert.same({ nil, "exit", 2 }, r[i]) end
  end)

  it("runs 200 concurrent children with no zombie and no fd left", function()
    local fds0, pipes0 = helpers.fds(), pipes()
    local ok = uring.run(function()
      local ts = {}
      for i = 1, 200 do
        ts[i] = uring.spawn(function()
          local p = assert(uring.exec{ "sh", "-c", "echo " .. i .. "; exit " .. (i % 5),
            stdout = "pipe" })
          local s = p.stdout:read("l"); p.stdout:close()
          local _, how, code = p:wait()
          return s == tostring(i) and how == "exit" and code == i % 5
        end)
      end
      local n = 0
      for i = 1, 200 do local _, good = ts[i]:join(); if good then n = n + 1 end end
      return n
    end)
    assert.equal(200, ok)
    assert.equal(0, zombies())
    assert.equal(fds0, helpers.fds())
    assert.equal(pipes0, pipes())
  end)

  it("fails clearly for a missing program and raises on bad arguments", function()
    local p, msg, en = uring.exec{ "no-such-program-xyz" }
    assert.is_nil(p); assert.equal("no-such-program-xyz: No such file or directory", msg)
    assert.equal(2, en)
    local p2, msg2 = uring.exec{ "true", cwd = "/nonexistent-dir" }
    assert.is_nil(p2); assert.matches("No such file", msg2)
    assert.has_error(function() uring.exec() end,
      "bad argument #1 to 'exec' (table expected, got no value)")
    assert.has_error(function() uring.exec{} end,
      "bad argument #1 to 'exec' (argv[1], the program, is missing)")
    assert.has_error(function() uring.exec{ "true", stdout = "file" } end,
      "bad argument #1 to 'exec' (stdout must be \"pipe\", \"null\", \"inherit\" or a uring.file)")
    assert.has_error(function() uring.exec{ "true", env = "x" } end)
    assert.has_error(function() uring.exec{ "true", cwd = 1 } end)
    assert.has_error(function() uring.exec{ "true", {} } end)
    local proc = uring.exec{ "true" }
    assert.has_error(function() proc.wait({}) end,
      "bad argument #1 to 'wait' (uring.process expected, got table)")
    assert.has_error(function() proc:kill("NOPE") end,
      "bad argument #1 to 'kill' (unknown signal name)")
    assert.has_error(function() proc:wait() end,
      "wait: not inside a task (use uring.run)")
    uring.run(function() proc:wait() end)
  end)

  it("reports every exec failure synchronously, with no zombie and no fd left", function()
    local fds0, pipes0 = helpers.fds(), pipes()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local noexec = dir .. "/noexec"
    assert(io.open(noexec, "w")):close()               -- mode 0644: not executable
    local p, msg, en = uring.exec{ noexec }
    assert.is_nil(p); assert.equal(noexec .. ": Permission denied", msg); assert.equal(13, en)
    p, msg, en = uring.exec{ dir .. "/missing" }
    assert.is_nil(p); assert.equal(dir .. "/missing: No such file or directory", msg)
    assert.equal(2, en)
    -- searched in PATH: found only where it cannot run is EACCES (as
    -- execvp); the search goes on past that directory to a runnable one
    assert(io.open(dir .. "/true", "w")):close()        -- a "true" that cannot run
    local cp = (os.getenv("URING_CPATH") or "./build/?.so")
    local script = "package.cpath = '" .. cp .. ";' .. package.cpath; "
      .. "package.path = './lua/?.lua;./lua/?/init.lua;' .. package.path; "
      .. "local u = require 'uring'; "
      .. "local p, m, e = u.exec{ 'noexec' }; io.write(m, ' ', e, ';'); "
      .. "p, m, e = u.exec{ 'no-such-program-xyz' }; io.write(m, ' ', e, ';'); "
      .. "p = u.exec{ 'true' }; u.run(function() io.write(select(2, p:wait())) end)"
    local out, code = helpers.sh("PATH='" .. dir .. ":" .. os.getenv("PATH")
      .. "' lua5.4 -e \"" .. script .. "\" 2>&1")
    assert.equal(0, code, out)
    assert.equal("noexec: Permission denied 13;"
      .. "no-such-program-xyz: No such file or directory 2;exit0", out)
    p, msg, en = uring.exec{ "true", cwd = noexec }       -- chdir to a file
    assert.is_nil(p); assert.equal("true: Not a directory", msg); assert.equal(20, en)
    -- and a good one right after still runs, in the directory asked for
    local pwd = uring.run(function()
      local q = assert(uring.exec{ "pwd", cwd = dir, stdout = "pipe" })
      local s = q.stdout:read("a"); q.stdout:close()
      assert.same({ true, "exit", 0 }, { q:wait() })
      return s
    end)
    assert.equal(dir .. "\n", pwd)
    os.remove(noexec); os.remove(dir .. "/true"); os.remove(dir)
    assert.equal(0, zombies())
    assert.equal(fds0, helpers.fds())
    assert.equal(pipes0, pipes())
  end)

  it("leaves no zombie when a task in proc:wait is cancelled", function()
    uring.run(function()
      local p = uring.exec{ "sleep", "10" }
      local t = uring.spawn(function() return p:wait() end)
      uring.sleep(0.02)
      assert.equal("wait", t:waiting_on())
      t:cancel()
      assert.same({ false, "canceled" }, { t:join() })
      p:kill()
      assert.same({ nil, "signal", 15 }, { p:wait() })   -- still waitable
    end)
    assert.equal(0, zombies())
  end)

  it("reaps a process collected without wait", function()
    uring.run(function()
      uring.exec{ "true" }                 -- exits at once
      local p = uring.exec{ "sleep", "10" }
      p:kill()
      local s = uring.exec{ "sleep", "0.1" }   -- still running when collected
      p, s = nil, nil
      uring.sleep(0.02)
      collectgarbage(); collectgarbage()
      uring.sleep(0.2)                     -- the loop's reaper completes
    end)
    assert.equal(0, zombies())
  end)

  if not FALLBACK then
    it("passes this whole file on the pidfd fallback path", function()
      local cmd = "URING_PROC_FALLBACK=1 " .. (os.getenv("URING_CPATH")
        and ("URING_CPATH='" .. os.getenv("URING_CPATH") .. "' ") or "")
        .. "lua5.4 /usr/bin/busted " .. (os.getenv("URING_CPATH")
        and ("--cpath='" .. os.getenv("URING_CPATH") .. "' ") or "")
        .. "spec/proc_spec.lua 2>&1"
      local out, code = helpers.sh(cmd)
      assert(code == 0, out)
      assert.matches("0 failures / 0 errors", out)
    end)
  end
end)
