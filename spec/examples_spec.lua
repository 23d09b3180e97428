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

  describe("https_server.lua and https_get.lua", function()
    it("make a self-signed certificate, serve HTTPS, fetch it verified, refuse it unverified", function()
      local dir = helpers.tmpdir()
      local p = assert(io.popen("timeout 30 " .. LUA .. " examples/https_server.lua 0 --seconds 3 --dir "
        .. dir .. " 2>&1"))
      local port, made
      repeat
        local line = p:read("l") or ""
        made = made or line:match("made a self%-signed certificate")
        port = line:match("^listening on https://127%.0%.0%.1:(%d+) %(certificate .*/cert%.pem%)$")
      until port or line == ""
      assert(made, "no certificate made on the first run")
      assert(port, "no listening line")
      local url = "https://localhost:" .. port .. "/x"
      local code, out, err = run("https_get.lua", url .. " --cacert " .. dir .. "/cert.pem")
      expect_ok(code, out, err)
      assert.matches("^TLSv1%.3, [%w_]+, ALPN http/1%.1, verified true\n", out)
      assert.matches("server certificate: CN=localhost, issued by CN=localhost", out)
      assert.matches("HTTP 200 OK, %d+ bytes:\nhello over TLSv1%.3 %([%w_]+%), you asked for /x\n$", out)
      -- the system's CAs do not know it
      code, out = run("https_get.lua", url)
      assert.equal(1, code)
      assert.matches("handshake failed: tls handshake: certificate verify failed %(self%-signed certificate%)", out)
      local c = assert(io.popen("env -u LD_PRELOAD curl -s -m 5 --cacert " .. dir .. "/cert.pem " .. url))
      assert.matches("^hello over TLSv1%.3", c:read("a")); c:close()
      local rest = p:read("a")
      assert.is_true((p:close()), rest)
      -- https_get: 2 (its handshake, its request), 1 refused; curl: 1
      assert.matches("served 2 requests on 4 connections; 1 TLS handshakes failed", rest)
      helpers.rmrf(dir)
    end)

    it("https_get.lua refuses a url that is not https with its usage line", function()
      local code, _, err = run("https_get.lua", "http://x/")
      assert.equal(2, code)
      assert.matches("usage: lua5%.4 examples/https_get%.lua", err)
    end)
  end)

  describe("watch.lua", function()
    it("runs the command at start and once per burst of changes, then stops", function()
      local dir = helpers.tmpdir()
      local log = dir .. "/../" .. dir:match("[^/]+$") .. ".log"
      -- two bursts, a second apart, once the first run is done (the
      -- watch is set by then), while the example watches for 4 s
      local code = os.execute(("timeout 60 %s examples/watch.lua --dir %s --seconds 4 -- 'ls %s | wc -l' > %s 2>&1 & pid=$!; "
        .. "i=0; until grep -qs 'watch. ok' %s || [ $i -ge 200 ]; do sleep 0.05; i=$((i+1)); done; "
        .. "echo a > %s/x; echo b > %s/y; mkdir %s/sub; sleep 1; echo c > %s/sub/z; wait $pid")
        :format(LUA, dir, dir, log, log, dir, dir, dir, dir))
      local out = readall(log)
      os.remove(log)
      helpers.rmrf(dir)
      assert(code == true, out)
      assert.matches("%[watch%] start: ls", out)
      assert.matches("%[watch%] create x and %d+ more: ls", out)
      assert.matches("%[watch%] create sub/z", out)   -- the new subdirectory is watched
      assert.matches("\n3\n%[watch%] ok\n", out)
      assert.matches("watch: %d+ events, 3 runs in 4 s\n$", out)
    end)

    it("refuses a missing command with its usage line and status 2", function()
      local code, _, err = run("watch.lua", "--dir .")
      assert.equal(2, code)
      assert.matches("usage: lua5%.4 examples/watch%.lua", err)
    end)
  end)

  describe("serve_dir.lua", function()
    it("serves a directory to curl (a listing, a range), then stops by itself", function()
      local dir = helpers.tmpdir()
      helpers.writeall(dir .. "/hello.txt", "hello, world\n")
      local p = assert(io.popen("timeout 30 " .. LUA .. " examples/serve_dir.lua 0 --dir " .. dir .. " --seconds 2 2>&1"))
      local first = p:read("l") or ""
      local port = first:match("listening on 127%.0%.0%.1:(%d+)")
      assert(port, "first line: " .. first)
      local function curl(args)
        local c = assert(io.popen("env -u LD_PRELOAD curl -s -m 5 " .. args))
        local body = c:read("a"); c:close()
        return body
      end
      local listing = curl("http://127.0.0.1:" .. port .. "/")
      local range = curl("-r 7-11 http://127.0.0.1:" .. port .. "/hello.txt")
      local rest = p:read("a")
      local ok = p:close()
      helpers.rmrf(dir)
      assert.matches('<a href="hello.txt">hello.txt</a>', listing, 1, true)
      assert.equal("world", range)
      assert.is_true(ok, rest)
      assert.matches("serve_dir: 2 requests", rest)
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

  describe("workers_channel.lua", function()
    it("moves every accepted connection to another worker, which answers it", function()
      local code, out, err = run("workers_channel.lua", "6 --workers 3")
      expect_ok(code, out, err)
      assert.matches("worker 1 listens on 127%.0%.0%.1:%d+ and hands connections to workers 2%.%.3", out)
      for k = 1, 6 do
        assert.matches("connection " .. k .. ": worker [23] %(pid %d+%) got \"hello " .. k
          .. "\" from worker 1's accept", out)
      end
      assert.matches("worker 2 answered 3 connection%(s%)", out)
      assert.matches("worker 3 answered 3 connection%(s%)", out)
      assert.matches("6 connections answered in [%d.]+ ms", out)
      assert.matches("all workers ended cleanly", out)
    end)

    it("refuses a bad argument with its usage line and status 2", function()
      local code, _, err = run("workers_channel.lua", "--workers 1")
      assert.equal(2, code)
      assert.matches("usage: lua5%.4 examples/workers_channel%.lua", err)
    end)
  end)

  describe("luv_embed.lua", function()
    it("runs lua-uring tasks inside luv's loop and gets every reply", function()
      local code, out, err = run("luv_embed.lua")
      expect_ok(code, out, err)
      local steps = out:match("^20 tasks: file write, read and a TCP round trip "
        .. "through luv's server, in (%d+) uring%.step calls")
      assert(steps and tonumber(steps) >= 2, out)
    end)
  end)

  describe("thread.lua", function()
    it("keeps the ticker ticking while a worker sums", function()
      local code, out, err = run("thread.lua")
      expect_ok(code, out, err)
      assert.matches("inline, in the task: +sum 200000010000000", out)
      assert.matches("uring%.thread: +sum 200000010000000 in +%d+ ms; the 10 ms "
        .. "ticker ticked %d+ times", out)
    end)
  end)

  describe("ws_chat.lua", function()
    it("serves its page and relays each message to every WebSocket client", function()
      -- (spec/ws_chat_spec.lua does the same with two tabs of Chromium)
      local uring = require "uring"
      local out = uring.run(function()
        local p = assert(uring.exec{ LUA, "examples/ws_chat.lua", "0", "--seconds", "2",
          stdout = "pipe" })
        local first = p.stdout:read("l") or ""
        local port = first:match("^ws_chat: listening on http://127%.0%.0%.1:(%d+)/$")
        assert(port, "first line: " .. first)
        local page = assert(uring.http.request("http://127.0.0.1:" .. port .. "/"))
        assert.matches("new WebSocket", page.body, 1, true)
        local url = "ws://127.0.0.1:" .. port .. "/chat"
        local ann = assert(uring.http.websocket(url))
        local bob = assert(uring.http.websocket(url))
        ann:send("ann: hi")
        assert.same({ "ann: hi", "text" }, { bob:receive() })
        assert.same({ "ann: hi", "text" }, { ann:receive() })
        bob:send("bob: hello")
        assert.same({ "bob: hello", "text" }, { ann:receive() })
        assert.same({ "bob: hello", "text" }, { bob:receive() })
        -- at --seconds the server says "going away" to everyone
        assert.same({ nil, "closed", 1001, "going away" }, { ann:receive() })
        assert.same({ nil, "closed", 1001, "going away" }, { bob:receive() })
        local rest = p.stdout:read("a")
        p.stdout:close()
        assert.is_true(p:wait())
        return rest
      end)
      assert.matches("ws_chat: 2 clients, 2 messages relayed", out)
    end)
  end)

  describe("pipeline.lua", function()
    it("moves every line through the workers in order, never over the queue's capacity", function()
      local code, out, err = run("pipeline.lua")
      expect_ok(code, out, err)
      local lines, workers, cap, deepest, waits = out:match(
        "pipeline: (%d+) lines through (%d+) workers in [%d.]+ s; jobs queue capacity (%d+), "
        .. "deepest (%d+), producer waited (%d+) times")
      assert(lines, out)
      assert.equal("20000", lines); assert.equal("4", workers); assert.equal("16", cap)
      assert.is_true(tonumber(deepest) <= 16)
      assert.is_true(tonumber(waits) > 0)       -- the producer was held back
      assert.matches("pipeline: output verified: in order, every line", out)
    end)

    it("takes a file, --workers and --capacity; refuses a bad one with status 2", function()
      local code, out, err = run("pipeline.lua", "spec/run.lua --workers 3 --capacity 2")
      expect_ok(code, out, err)
      local n = 0
      for _ in io.lines("spec/run.lua") do n = n + 1 end
      assert.matches("pipeline: " .. n .. " lines through 3 workers", out)
      assert.matches("capacity 2, deepest [012],", out)   -- 0: workers were waiting
      assert.matches("output verified", out)
      code, out, err = run("pipeline.lua", "--workers 0")
      assert.equal(2, code)
      assert.matches("%-%-workers needs a positive integer", err)
    end)
  end)

  describe("crawl.lua", function()
    it("fetches the whole local site as one group, never more than K requests at once", function()
      local code, out, err = run("crawl.lua", "--pages 40 --concurrency 3")
      expect_ok(code, out, err)
      assert.matches("crawl: 40 pages fetched %(%d+ bytes%), 4 dead links, in [%d.]+ s", out)
      local most = tonumber(out:match("at most (%d+) requests at once %(semaphore of 3%)"))
      assert(most, out)
      assert.is_true(most >= 1 and most <= 3)
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

  describe("fixed_files.lua", function()
    it("puts every socket kind into a slot, gives the slots back, and counts the SQEs they cost", function()
      local code, out, err = run("fixed_files.lua", "50")
      expect_ok(code, out, err)
      assert.matches("fixed_files: 16 slots registered, installed by IORING_OP_FILES_UPDATE SQEs\n", out)
      assert.matches("6 sockets made, 6 slots in use\n", out)
      for _, kind in ipairs { "TCP ", "Unix", "UDP " } do
        assert.matches(kind .. " both ways through their slots: ok\n", out)
      end
      assert.matches("after close: 0 slots in use, 16 free\n", out)
      local with = tonumber(out:match("50 connections with slots: ([%d.]+) SQEs"))
      local without = tonumber(out:match("50 connections without: +([%d.]+) SQEs"))
      assert.equal(4, with - without)       -- install and removal, two sockets
    end)
  end)

  describe("accept_early.lua", function()
    it("shows each connection's first RECV queued before accept() returned it", function()
      local code, out, err = run("accept_early.lua", "30")
      expect_ok(code, out, err)
      assert.matches("30 connections, 30 answered: 30 RECV SQEs on the server's sockets, "
        .. "30 of them queued by the core before accept%(%) returned the connection", out)
    end)
  end)

  describe("recv_multishot.lua", function()
    it("counts RECV SQEs with and without the multishot, and finds bytes that came unasked", function()
      local code, out, err = run("recv_multishot.lua", "50")
      expect_ok(code, out, err)
      local plain, multi, more = out:match("50 requests, both ends on one ring: plain receives (%d+) RECV SQEs "
        .. "%(0 CQEs with F_MORE%); recv_multishot (%d+) RECV SQEs %((%d+) CQEs with F_MORE%)")
      assert(plain, out)
      assert.is_true(tonumber(plain) >= 100, out)      -- one per wait, each end
      assert.equal("4", multi)                         -- per end: one plain, one armed
      assert.is_true(tonumber(more) >= 96, out)
      assert.matches("36 bytes arrived while no task received; three receives took them with 0 new SQEs", out)
      assert.matches("armed now: 1 multishot receive%(s%)", out)
      assert.matches("time for 50 exchanges: plain [%d.]+ ms, multishot [%d.]+ ms", out)
    end)
  end)

  describe("send_zc.lua", function()
    it("streams through SEND_ZC intact and shows the string held until the notification", function()
      local code, out, err = run("send_zc.lua", "16")
      expect_ok(code, out, err)
      assert.matches("send_zc: 16 sends of 1 MiB went out as SEND_ZC, every byte arrived; "
        .. "%d+ notifications said the kernel copied anyway %(loopback%)", out)
      local held, after = out:match("before the peer read: (%d+) send%(s%) held by the kernel, "
        .. "the string pinned though the script dropped it; after: (%d+)")
      assert.is_true(tonumber(held) >= 1, out)
      assert.equal("0", after)
      assert.matches("MiB/s over loopback: SEND %d+, SEND_ZC %d+\n$", out)
    end)
  end)
end)
