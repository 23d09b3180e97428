-- spec/examples_spec.lua: every example runs, exits 0 and prints what it
-- teaches.  Each runs as a user would, from the repo root:
--   timeout 60 lua5.4 examples/x.lua ...
-- URING_CPATH, when set (the ASan build), reaches the examples through
-- the environment.
local LUA = os.getenv("LUA") or "lua5.4"

local helpers = require "helpers"
local readall, exists = helpers.readall, helpers.exists

-- run an example; returns exit code, stdout, stderr
local function run(script, args)
  local out, err, code = helpers.exec(("timeout 60 %s examples/%s %s")
    :format(LUA, script, args or ""))
  return code, out, err
end

local function expect_ok(code, out, err)
  assert(code == 0, ("exit status %s\nstdout:\n%s\nstderr:\n%s")
    :format(tostring(code), out, err))
end

describe("examples", function()
  describe("cat.lua", function()
    it("reproduces its files byte for byte and reports on stderr", function()
      local bin = os.tmpname()
      local t = {}
      for i = 0, 200000 do t[#t + 1] = string.char(i % 256, (i * 7) % 256) end
      local f = assert(io.open(bin, "wb"))
      f:write(table.concat(t))
      f:close()
      local code, out, err = run("cat.lua", "spec/run.lua " .. bin)
      local want = readall("spec/run.lua") .. readall(bin)
      os.remove(bin)
      expect_ok(code, out, err)
      assert(out == want, ("output differs: %d bytes, want %d"):format(#out, #want))
      local n, enters = err:match("cat: (%d+) bytes, (%d+) io_uring_enter calls")
      assert.equal(#want, tonumber(n))
      assert(tonumber(enters) >= 1)
    end)

    it("with no arguments prints usage and cats its own source", function()
      local code, out, err = run("cat.lua")
      expect_ok(code, out, err)
      assert.equal(readall("examples/cat.lua"), out)
      assert.matches("usage:", err)
    end)

    it("exits non-zero for a missing file", function()
      local code, _, err = run("cat.lua", "/nonexistent/x")
      assert.equal(1, code)
      assert.matches("No such file", err)
    end)
  end)

  describe("cp.lua", function()
    it("copies a file and reports the rate", function()
      local src, dst = os.tmpname(), os.tmpname()
      local f = assert(io.open(src, "wb"))
      f:write(("0123456789abcdef"):rep(300000), "tail")
      f:close()
      local code, out, err = run("cp.lua", src .. " " .. dst)
      local a, b = readall(src), readall(dst)
      os.remove(src); os.remove(dst)
      expect_ok(code, out, err)
      assert(a == b, "the copy differs")
      assert.matches("copied " .. #a .. " bytes in [%d.]+ s %([%d.]+ MiB/s%)", err)
    end)

    it("with no arguments copies and verifies a 64 MiB temp file", function()
      local code, out, err = run("cp.lua")
      expect_ok(code, out, err)
      assert.matches("copied 67108864 bytes", err)
      assert.matches("verified: sizes equal", err)
    end)
  end)

  describe("tree.lua", function()
    it("counts files and bytes by extension, as the shell counts them", function()
      local d = helpers.tmpdir()
      local function put (name, n)
        local f = assert(io.open(d .. "/" .. name, "wb"))
        f:write(("x"):rep(n))
        f:close()
      end
      assert(os.execute("mkdir -p " .. d .. "/a/b " .. d .. "/c"))
      put("a/one.lua", 10); put("a/b/two.lua", 20); put("c/three.txt", 300)
      put("four.txt", 4); put("README", 7)
      assert(os.execute("ln -s a/one.lua " .. d .. "/link.lua"))
      local code, out, err = run("tree.lua", d)
      helpers.rmrf(d)
      expect_ok(code, out, err)
      assert.matches("%.txt%s+2 files%s+304 bytes", out)
      assert.matches("%.lua%s+2 files%s+30 bytes", out)   -- the link is not a file
      assert.matches("%(none%)%s+1 files%s+7 bytes", out)
      assert.matches("total 5 files, 341 bytes, 3 directories, 0 unreadable, in [%d.]+ s; ticks kept %d+/%d+", out)
      -- .txt has the most bytes: listed first
      assert(out:find(".txt", 1, true) < out:find(".lua", 1, true), out)
    end)
  end)

  describe("batch.lua", function()
    it("prints enters: N within 1 + 1000/ring_entries", function()
      local code, out, err = run("batch.lua")
      expect_ok(code, out, err)
      local entries = tonumber(out:match("ring: (%d+) SQ entries"))
      local enters = tonumber(out:match("\nenters: (%d+)"))
      assert(entries and enters, "missing lines in:\n" .. out)
      assert(enters <= 1 + 1000 / entries,
             ("enters: %d > 1 + 1000/%d"):format(enters, entries))
    end)
  end)

  describe("popen.lua", function()
    it("runs 50 children concurrently and reaps every one", function()
      local code, out, err = run("popen.lua")
      expect_ok(code, out, err)
      assert.matches("50 children, sum 1275, 50 exited 0", out)
    end)
  end)

  describe("close_in_flight.lua", function()
    it("closes a socket under a send: the fd stays taken, the count is what the peer got", function()
      local code, out, err = run("close_in_flight.lua")
      expect_ok(code, out, err)
      local fd, a, b = out:match("closed fd (%d+); a pipe made right after got fds (%d+) and (%d+)")
      assert(fd, out)
      assert.is_true(fd ~= a and fd ~= b)
      local sent = out:match("the sender got: nil, \"closed\", 9, and (%d+) bytes had gone out")
      assert(sent, out)
      assert.matches("the peer received " .. sent .. " bytes: exactly what the sender was told", out)
    end)
  end)

  describe("http_server.lua", function()
    it("serves a route to curl, then stops by itself", function()
      local p = assert(io.popen("timeout 30 " .. LUA .. " examples/http_server.lua 0 --seconds 2 2>&1"))
      local first = p:read("l") or ""
      local port = first:match("listening on 127%.0%.0%.1:(%d+)")
      assert(port, "first line: " .. first)
      local c = assert(io.popen("env -u LD_PRELOAD curl -s -m 5 http://127.0.0.1:" .. port .. "/hello/you"))
      local body = c:read("a"); c:close()
      local rest = p:read("a")
      local ok = p:close()
      assert.matches("you", body)
      assert.is_true(ok, rest)
    end)
  end)

  describe("random_reads.lua", function()
    it("reads every block right three ways; the fixed way through registered buffers", function()
      local code, out, err = run("random_reads.lua", "4 3000 8")
      expect_ok(code, out, err)
      for _, way in ipairs { "string", "buffer", "fixed" } do
        assert.matches("\n" .. way .. " +%d+ reads/s +%d+ io_uring_enter +%d+ fixed reads", out)
      end
      -- 8 buffers of 4 KiB fit under any usual RLIMIT_MEMLOCK: all 3000 fixed
      assert.matches("\nstring .- 0 fixed reads\n", out)
      assert.matches("\nbuffer .- 0 fixed reads\n", out)
      assert.matches("\nfixed .- 3000 fixed reads\nregistered buffers: 8 of 8\n", out)
      assert.matches("reads with a wrong block: 0\nok: every read returned its block\n$", out)
    end)

    it("refuses a bad argument with its usage line and status 2", function()
      local code, _, err = run("random_reads.lua", "0")
      assert.equal(2, code)
      assert.matches("usage: lua5%.4 examples/random_reads%.lua", err)
    end)
  end)

  describe("http_workers.lua", function()
    it("forks two workers on one port, answers curl, and all stop by themselves", function()
      -- (--spin: each request runs the stand-in handler work first)
      local p = assert(io.popen("timeout 30 " .. LUA .. " examples/http_workers.lua 0 --workers 2 --seconds 2 --spin 100 2>&1"))
      local port, pids = nil, {}
      for _ = 1, 2 do
        local line = p:read("l") or ""
        local pt, i, pid = line:match("^listening on 127%.0%.0%.1:(%d+) %(worker (%d), pid (%d+)%)$")
        assert(pt, "line: " .. line)
        port = port or pt
        assert.equal(port, pt)           -- one port, shared (SO_REUSEPORT)
        pids[tonumber(i)] = pid
      end
      local c = assert(io.popen("env -u LD_PRELOAD curl -s -m 5 http://127.0.0.1:" .. port .. "/"))
      local body = c:read("a"); c:close()
      local rest = p:read("a")
      local ok = p:close()
      assert.matches("^Hello from worker %d %(pid %d+%)\n$", body)
      assert.is_true(ok, rest)
      assert.matches("worker 1 %(pid " .. pids[1] .. "%): %d+ requests", rest)
      assert.matches("worker 2 %(pid " .. pids[2] .. "%): %d+ requests", rest)
      assert.matches("http_workers: 2 workers ended, all cleanly", rest)
    end)

    it("refuses a bad --spin with its usage line and status 2", function()
      local p = assert(io.popen(LUA .. " examples/http_workers.lua 0 --spin 1.5 2>&1"))
      local out = p:read("a")
      local _, _, code = p:close()
      assert.equal(2, code)
      assert.matches("%-%-spin needs an integer", out)
      assert.matches("usage: lua5%.4 examples/http_workers%.lua", out)
    end)
  end)

  if exists("examples/link.lua") then
    describe("link.lua", function()
      it("runs and exits 0", function()
        local code, out, err = run("link.lua")
        expect_ok(code, out, err)
        assert(#out > 0, "printed nothing")
      end)
    end)
  end
  describe("trace_timeline.lua", function()
    it("shows 100 reads in one enter and writes a trace JSON", function()
      local out_path = os.tmpname()
      local code, out, err = run("trace_timeline.lua", out_path)
      local json = readall(out_path)
      os.remove(out_path)
      expect_ok(code, out, err)
      assert.matches("100 reads: 100 SQEs prepared, then 1 io_uring_enter call%(s%) submitting 100, then 100 CQEs", out)
      assert.matches("wrote %d+ events to " .. out_path:gsub("%p", "%%%0"), out)
      assert.matches('^{"displayTimeUnit":"ns"', json)
      assert.matches('"name":"io_uring_enter","ph":"i"', json)
      assert.matches('"name":"read","cat":"request","ph":"X"', json)
    end)
  end)

  describe("ring_state.lua", function()
    it("shows each index move as the steps say", function()
      local code, out, err = run("ring_state.lua")
      expect_ok(code, out, err)
      assert.matches("prep_nop x2 %(ours, not published%) +0 +0 +2 ", out)
      assert.matches("submit %(published, consumed%) +2 +2 +2 +0 +2 ", out)
      assert.matches("12 NOPs into a CQ of 8 +14 +14 +14 +2 +10 +2\n", out)
      assert.matches("taken all 12 ", out)
    end)
  end)

  describe("inspect.lua", function()
    it("serves the inspector while its workload runs, and stops with it", function()
      local code, out, err = run("inspect.lua", "--seconds 1")
      expect_ok(code, out, err)
      assert.matches("inspector at http://127%.0%.0%.1:%d+/ for 1 s", out)
      assert.matches("%d+ batches of 200 reads; state.json: 3 tasks waiting on a read, 3 reads in flight", out)
      assert.matches("inspector stopped with the work\n$", out)
      code, out, err = run("inspect.lua", "--port")
      assert.equal(2, code)
      assert.matches("usage:", err)
    end)
  end)
end)
