-- spec/bench_spec.lua: the benches still build and run (their quick modes:
-- one tiny round), and bench/report.lua still turns their ratio lines
-- into the README table and the chart script.  Not timing tests: they
-- assert the figures are printed, not what they are; `make bench`
-- measures.  (bench/idle.lua quick runs in spec/net_examples_spec.lua.)
-- Results go to a temp dir (BENCH_RESULTS), never to bench/results.
local helpers = require "helpers"

local function run(cmd)
  local out, code = helpers.sh(cmd)
  return code, out
end

local readall = helpers.readall

-- label<TAB>ratio<TAB>target<TAB>note lines of a .tsv
local function tsv_lines(path)
  local rows = {}
  for line in io.lines(path) do
    local label, ratio, target, note = line:match("^([^\t]+)\t([%d.]+)\t([%d.]*)\t(.+)$")
    assert(label, "bad tsv line in " .. path .. ": " .. line)
    rows[#rows + 1] = { label = label, ratio = tonumber(ratio), target = target, note = note }
  end
  return rows
end

local results = helpers.tmpdir()
teardown(function() helpers.rmrf(results) end)
local ENV = "BENCH_QUICK=1 BENCH_RESULTS=" .. results .. " "

describe("bench/msgring.lua quick", function()
  it("builds bench/handoff.c, runs the channel and its alternatives, writes the ratios", function()
    local handoff = results .. "/handoff"
    local code, out = run("cc -O2 -o " .. handoff .. " bench/handoff.c")
    assert(code == 0, out)
    code, out = run(ENV .. "HANDOFF=" .. handoff .. " timeout 120 lua5.4 bench/msgring.lua --quick")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("round 1 stream +channel +[%d.]+ msg/s +unix socket +[%d.]+ msg/s", out)
    assert.matches("round 1 handoff +channel +[%d.]+ us/move +C SCM_RIGHTS +[%d.]+ us/move", out)
    local rows = tsv_lines(results .. "/msgring.tsv")
    assert.equal(3, #rows)
    assert.equal("workers channel handoff vs C SCM_RIGHTS", rows[3].label)
  end)
end)

describe("bench/run.sh quick", function()
  it("builds bench/nop.c, runs the four contenders, prints and writes the ratios", function()
    local code, out = run(ENV .. "timeout 60 sh bench/run.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("round 1: c%-batched [%d.]+  c%-single [%d.]+  "
      .. "lua%-tasks [%d.]+  lua%-single [%d.]+", out)
    assert.matches("median ns/op:", out)
    assert.matches("ratio lua%-tasks/c%-batched: [%d.]+", out)
    assert.matches("ratio lua%-tasks/c%-single: [%d.]+", out)
    assert.matches("ratio lua%-single/c%-single: [%d.]+", out)
    local rows = tsv_lines(results .. "/nop.tsv")
    assert.equal(2, #rows)
    assert.equal("0.2", rows[1].target)
    assert.is_true(rows[1].ratio > 0)
  end)
end)

describe("bench/queue.sh quick", function()
  it("runs the queue, nop, polling and cqueues contenders and writes the ratios", function()
    local code, out = run(ENV .. "timeout 60 sh bench/queue.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("round 1: queue [%d.]+  nop [%d.]+  poll [%d.]+  cqueues [%d.]+  |  "
      .. "%+100 idle: queue [%d.]+  poll [%d.]+  cqueues [%d.]+", out)
    assert.matches("ratio queue/nop: [%d.]+ %(target <= 2%)", out)
    local rows = tsv_lines(results .. "/queue.tsv")
    assert.equal(5, #rows)
    assert.equal("0.5", rows[1].target)
    for _, r in ipairs(rows) do assert.is_true(r.ratio > 0) end
  end)
end)

describe("bench/sendzc.sh quick", function()
  it("serves 1 MiB answers with SEND_ZC off and on, and writes the ratio", function()
    local code, out = run(ENV .. "timeout 60 sh bench/sendzc.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("round 1 size 1048576:  off %d+ req/s [%d.]+s cpu %d+/cpu%-s  "
      .. "on %d+ req/s [%d.]+s cpu %d+/cpu%-s %(zc %d+, copied %d+%)", out)
    assert.matches("ratio send_zc on/off 1 MiB: [%d.]+ req/server%-cpu%-s", out)
    local rows = tsv_lines(results .. "/sendzc.tsv")
    assert.equal(1, #rows)
    assert.equal("knob send_zc 1 MiB: on/off", rows[1].label)
    assert.is_true(rows[1].ratio > 0)
  end)
end)

describe("bench/files.sh quick", function()
  it("builds bench/randread.c, runs every file contender and writes the ratios", function()
    local code, out = run(ENV .. "timeout 120 sh bench/files.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    for _, name in ipairs { "uring-qd1", "luv-qd1", "io-qd1", "fio-uring-qd1",
        "fio-psync-qd1", "c-qd1", "uring-qd32", "luv-qd32", "fio-uring-qd32",
        "c-qd32", "uring-fixed-qd32", "uring-buf-qd32",
        "d-uring-qd1", "d-fio-uring-qd1", "d-fio-psync-qd1",
        "d-c-qd1", "cold-io-qd1", "d-uring-qd32", "d-fio-uring-qd32",
        "d-uring-fixed-qd32", "d-uring-buf-qd32",
        "d-c-qd32", "cold-luv-qd32", "cp", "uring-copyfile" } do
      assert.matches("median " .. name:gsub("%-", "%%-") .. " +[%d.]+ ", out)
    end
    assert.matches("ratio randread%-cache%-qd32 vs fio: [%d.]+", out)
    assert.matches("ratio randread%-disk%-qd32 vs fio: [%d.]+", out)
    assert.matches("ratio randread%-cache%-qd32 fixed/plain: [%d.]+", out)
    assert.matches("ratio randread%-cache%-qd32 buf vs luv: [%d.]+", out)
    assert.matches("ratio randread%-disk%-qd32 fixed/plain: [%d.]+", out)
    assert.matches("ratio randread%-disk%-qd32 buf vs fio: [%d.]+", out)
    assert.matches("ratio copy vs cp: [%d.]+", out)
    local rows = tsv_lines(results .. "/files.tsv")
    assert.equal(24, #rows)
    assert.same({ "randread-cache-qd32 vs fio", "0.8" }, { rows[1].label, rows[1].target })
    -- the copy was checked byte for byte and removed
    assert.is_nil(io.open("build/bench/files.copy"))
  end)
end)

describe("bench/walk.lua quick", function()
  it("walks its small tree with every contender and writes the ratios", function()
    local code, out = run(ENV .. "timeout 120 lua5.4 bench/walk.lua")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    -- every contender saw every entry: 2,000 files and 1,110 directories
    assert.matches("uring [%d.]+s %(3111 entries, ticks %d+/%d+%)", out)
    assert.matches("luv [%d.]+s %(3111 entries, ticks %d+/%d+%)", out)
    assert.matches("luv%-sync [%d.]+s %(3111 entries", out)
    assert.matches("uring%-size [%d.]+s %(3111 entries", out)
    assert.matches("find [%d.]+s", out)
    assert.matches("ratio find/uring: [%d.]+ %([%d.]+%.%.[%d.]+%)", out)
    assert.matches("ratio luv/uring: [%d.]+", out)
    assert.matches("ticks kept: uring %d+%%", out)
    local rows = tsv_lines(results .. "/walk.tsv")
    assert.equal(5, #rows)
    assert.same({ "walk vs find", "1" }, { rows[1].label, rows[1].target })
    assert.same({ "walk ticks kept", "0.9" }, { rows[5].label, rows[5].target })
  end)
end)

describe("bench/http.sh quick", function()
  it("probes the servers alike, runs every workload and contender, and leaves nothing running", function()
    local code, out = run(ENV .. "timeout 180 sh bench/http.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("probe: all four answer", out)
    local case = " ([%w-]+) [%d]+ req/s [%d.]+s cpu [%d]+/cpu%-s"
    local want = {
      c50 = { "lua-uring", "luv", "cqueues", "c", "uring-head", "uring-http", "nginx", "nginx-lua",
              "sqpoll", "fixed", "fixed-reg", "c-fixed", "mshot" },
      c500 = { "lua-uring", "luv", "cqueues", "c", "uring-head", "uring-http", "nginx", "nginx-lua", "ring64",
               "mshot" },
      close50 = { "lua-uring", "luv", "cqueues", "c", "uring-http", "nginx", "nginx-lua", "fixed", "fixed-reg", "mshot" },
      workers = { "w1", "w2" },
      ["workers-cpu"] = { "w1-spin", "w2-spin" },
    }
    for w, names in pairs(want) do
      local line = out:match("round 1 " .. w:gsub("%-", "%%-") .. ":([^\n]*)")
      assert(line, "no round line for " .. w .. ":\n" .. out)
      local got = {}
      for name in line:gmatch(case) do got[#got + 1] = name end
      assert.same(names, got)
      assert.matches("median " .. w:gsub("%-", "%%-") .. " req/server%-cpu%-s:", out)
    end
    for _, w in ipairs { "c50", "c500" } do
      for _, o in ipairs { "luv", "cqueues", "c" } do
        assert.matches(("ratio lua%%-uring/%s %s: [%%d.]+ req/server%%-cpu%%-s %%(target >= [%%d.]+%%)")
          :format(o, w), out)
      end
    end
    assert.matches("ratio lua%-uring/c close50: [%d.]+ req/server%-cpu%-s", out)
    assert.matches("ratio sqpoll/lua%-uring c50: [%d.]+", out)
    assert.matches("ratio c%-fixed/c c50: [%d.]+", out)
    assert.matches("ratio fixed/lua%-uring c50: [%d.]+", out)
    assert.matches("ratio fixed/lua%-uring close50: [%d.]+", out)
    assert.matches("ratio fixed%-reg/lua%-uring close50: [%d.]+", out)
    assert.matches("ratio ring64/lua%-uring c500: [%d.]+", out)
    for _, w in ipairs { "c50", "c500", "close50" } do
      assert.matches("ratio mshot/lua%-uring " .. w .. ": [%d.]+", out)
    end
    assert.matches("ratio w2/w1 workers: [%d.]+ req/s", out)
    assert.matches("ratio w2%-spin/w1%-spin workers%-cpu: [%d.]+ req/s", out)
    assert.matches("ratio uring%-head/c c50: [%d.]+ req/server%-cpu%-s", out)
    assert.matches("ratio uring%-head/c c500: [%d.]+ req/server%-cpu%-s", out)
    for _, w in ipairs { "c50", "c500", "close50" } do
      assert.matches("median " .. w .. " latency p50/p99 us:  lua%-uring %d+/%d+", out)
      for _, o in ipairs { "c", "nginx", "nginx%-lua" } do
        assert.matches(("ratio uring%%-http/%s %s: [%%d.]+ req/server%%-cpu%%-s %%(target >= [%%d.]+%%)")
          :format(o, w), out)
      end
      assert.matches("ratio c/uring%-http " .. w .. ": [%d.]+ us p99", out)
    end
    -- the ratio lines for the report: 39 of them (3 the recv_multishot
    -- knob's, 2 fixed-reg's); targets on keep-alive, and on churn for
    -- uring.http against C and nginx
    local rows = tsv_lines(results .. "/http.tsv")
    assert.equal(39, #rows)
    local targets = 0
    for _, r in ipairs(rows) do
      if r.target ~= "" then targets = targets + 1 end
      assert.is_true(r.ratio > 0, r.label)
    end
    assert.equal(19, targets)
    -- nothing left running: every server (and worker) it started, listed
    -- in build/bench/http_pids.txt, was stopped after its run
    local pids = readall("build/bench/http_pids.txt")
    local n = 0
    for pid in pids:gmatch("%d+") do
      n = n + 1
      local st = io.open("/proc/" .. pid .. "/cmdline")
      local cmd = st and st:read("a") or ""
      if st then st:close() end
      assert.is_nil(cmd:find("http_", 1, true), "server " .. pid .. " still running")
    end
    -- 6 probe runs + 28 wrk runs + the 3 workers of w1 and w2
    assert.is_true(n >= 37, "only " .. n .. " pids listed")
  end)
end)

describe("bench/http_callgrind.sh quick", function()
  it("counts instructions per request of every server and writes the budget rows", function()
    local code, out = run(ENV .. "timeout 300 sh bench/http_callgrind.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    for _, n in ipairs { "uring%-http", "lua%-uring", "uring%-head", "c" } do
      assert.matches("\n" .. n .. ": %d+ instructions per request", out)
    end
    local rows = tsv_lines(results .. "/callgrind.tsv")
    assert.equal(2, #rows)
    for _, r in ipairs(rows) do
      assert.equal("1.0", r.target)
      local per = tonumber(r.note:match("^(%d+) instructions"))
      assert.is_true(per > 100, r.note)      -- a server's work, not a stray count
    end
  end)

  it("with CHURN=1 counts them under Connection: close and writes no rows", function()
    local code, out = run(ENV .. "CHURN=1 SERVERS='uring-http c' timeout 300 sh bench/http_callgrind.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("wrk %-t1 %-c50 close\n", out)
    local per = {}
    for _, n in ipairs { "uring%-http", "c" } do
      per[n] = tonumber(out:match("\n" .. n .. ": (%d+) instructions per request"))
      assert.is_true(per[n] ~= nil and per[n] > 100, out)
    end
    -- a Lua task, socket and response per connection: more than C does
    assert.is_true(per["uring%-http"] > per.c, out)
    assert.is_nil(out:find("ratios written", 1, true), out)
  end)

  it("with DISTINCT=1 counts them with no two heads alike and writes no rows", function()
    local code, out = run(ENV .. "DISTINCT=1 SERVERS='uring-http' timeout 300 sh bench/http_callgrind.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("wrk %-t1 %-c50 distinct\n", out)
    local per = tonumber(out:match("\nuring%-http: (%d+) instructions per request"))
    assert.is_true(per ~= nil and per > 100, out)
    assert.is_nil(out:find("ratios written", 1, true), out)
  end)
end)

describe("bench/http_callgrind.sh CONNS=500", function()
  it("counts them at 500 connections and leaves the budget rows alone", function()
    local tsv = results .. "/callgrind.tsv"
    local f = assert(io.open(tsv, "w"))
    f:write("kept\t1.0\t1.0\tnot rewritten at c500\n")
    f:close()
    local code, out = run(ENV .. "CONNS=500 SERVERS='uring-http c' timeout 300 sh bench/http_callgrind.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("wrk %-t1 %-c500 keep%-alive\n", out)
    for _, n in ipairs { "uring%-http", "c" } do
      local per = tonumber(out:match("\n" .. n .. ": (%d+) instructions per request\n"))
      assert.is_true(per ~= nil and per > 100, out)
    end
    assert.is_nil(out:find("budget", 1, true), out)      -- budgets are for c50
    assert.is_nil(out:find("ratios written", 1, true), out)
    assert.equal(1, #tsv_lines(tsv))
  end)
end)

describe("bench/http_split.sh quick", function()
  it("splits each server's CPU per request into user and system time", function()
    local code, out = run(ENV .. "CONNS=50 SERVERS='uring-http c' timeout 120 sh bench/http_split.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("wrk %-t1 %-c50 %-d1s, 1 round", out)
    for _, n in ipairs { "uring%-http", "c" } do
      local q = tonumber(out:match("round 1 " .. n .. " +(%d+) requests"))
      assert.is_true(q ~= nil and q > 0, out)
      local u, s, c = out:match("\n" .. n .. " +user +([%d.]+) +system +([%d.]+) +on CPU +([%d.]+) us/request")
      assert.is_not_nil(c, out)
      -- a request costs the server some CPU, and no more than a second
      assert.is_true(tonumber(c) > 0 and tonumber(c) < 1e6, out)
      assert.is_true(tonumber(u) + tonumber(s) < 1e6, out)
    end
  end)
end)

describe("bench/lua_sym.c (make -C bench lua-sym)", function()
  it("runs a script as lua5.4 does: arg, its arguments as ..., errors with exit status 1", function()
    local code, out = run("make -s -C bench lua-sym 2>&1")
    assert(code == 0, out)
    local dir = helpers.tmpdir()
    local script = dir .. "/s.lua"
    local f = assert(io.open(script, "w"))
    f:write('print(arg[0] == ... and "no" or arg[0], select("#", ...), ..., arg[2], #arg)\n',
      'if ... == "fail" then error("boom") end\n')
    f:close()
    code, out = run("build/bench/lua_sym " .. script .. " a b 2>&1")
    assert.equal(0, code, out)
    assert.equal(script .. "\t2\ta\tb\t2\n", out)      -- (... in the middle: its first)
    code, out = run("build/bench/lua_sym " .. script .. " fail 2>&1")
    assert.equal(1, code, out)
    assert.matches("boom\nstack traceback:", out)
    helpers.rmrf(dir)
  end)
end)

describe("bench/ws.sh quick", function()
  it("runs both WebSocket echo servers under the same load and writes the ratios", function()
    local code, out = run(ENV .. "timeout 120 sh bench/ws.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    for _, w in ipairs { "small", "4k" } do
      assert.matches("round 1 " .. w .. ":  uring %d+ msg/server%-cpu%-s %(%d+ msgs, %d+ ticks%)"
        .. "  python %d+ msg/server%-cpu%-s", out)
      assert.matches("median " .. w .. ": uring %d+, python %d+ msg/server%-cpu%-s; ratio uring/python: [%d.]+ %(per round [%d.]+%-[%d.]+%)", out)
    end
    local rows = tsv_lines(results .. "/ws.tsv")
    assert.equal(2, #rows)
    assert.equal("3", rows[1].target)
    assert.is_true(rows[1].ratio > 0)
  end)
end)

describe("bench/report.lua", function()
  local readme, png
  before_each(function()
    readme = os.tmpname()
    png = results .. "/ratios.png"
    local f = assert(io.open(readme, "w"))
    f:write("# bench\n\nintro\n\n<!-- bench-table:begin -->\nold table\n<!-- bench-table:end -->\n\ntail text\n")
    f:close()
  end)
  after_each(function() os.remove(readme) end)

  it("puts every .tsv line into the README between the markers, known benches first", function()
    -- a bench the report does not know yet (as the file-I/O benches)
    local f = assert(io.open(results .. "/zz_extra.tsv", "w"))
    f:write("extra: one\t1.500\t1.2\tsomething measured\nextra: two\t0.5\t\tno target\n")
    f:close()
    local code, out = run(("lua5.4 bench/report.lua %s %s %s"):format(results, readme, png))
    os.remove(results .. "/zz_extra.tsv")
    assert(code == 0, out)
    local text = readall(readme)
    assert.matches("^# bench\n\nintro\n\n<!%-%- bench%-table:begin %-%->\n", text)
    assert.matches("\n<!%-%- bench%-table:end %-%->\n\ntail text\n$", text)
    assert.is_nil(text:find("old table", 1, true))
    local rows = {}
    for label, ratio, target, met in text:gmatch("\n| ([^|\n]+) | ([%d.]+) | ([%d.]*) | ([^|\n]*) |") do
      rows[#rows + 1] = { label = label, ratio = ratio, target = target, met = met }
    end
    -- nop (2), http (34) and callgrind (2) from the runs above (idle.tsv only if there), extra last
    assert.is_true(#rows >= 20, #rows .. " rows")
    assert.matches("^nop: ", rows[1].label)
    assert.equal("extra: two", rows[#rows].label)
    assert.same({ label = "extra: one", ratio = "1.50", target = "1.20", met = "yes" }, rows[#rows - 1])
    assert.equal("", rows[#rows].met)
    assert.matches("%d+ of %d+ targets met", text)
    -- the chart: gnuplot's script and data always, the PNG when gnuplot is there
    assert.matches("plot \"build/bench/ratios.dat\"", readall("build/bench/ratios.gp"))
    if os.execute("command -v gnuplot >/dev/null 2>&1") then
      assert.equal("\137PNG", readall(png):sub(1, 4))
    else
      assert.matches("gnuplot not installed", out)
    end
  end)

  it("rejects a malformed line with a message naming the file", function()
    local dir = helpers.tmpdir()
    local f = assert(io.open(dir .. "/bad.tsv", "w"))
    f:write("label without a ratio\n")
    f:close()
    local code, out = run(("lua5.4 bench/report.lua %s %s %s/x.png"):format(dir, readme, dir))
    helpers.rmrf(dir)
    assert.equal(1, code)
    assert.matches("report: bad%.tsv: bad line", out)
    assert.matches("old table", readall(readme))      -- untouched
  end)
end)

describe("bench/thread.lua, one round", function()
  it("runs uring.thread and luv's work queue side by side and prints the ratios", function()
    local code, out = run("timeout 120 lua5.4 bench/thread.lua 1")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("roundtrip +[%d.]+ +[%d.]+ +[%d.]+", out)
    assert.matches("cpu +[%d.]+ +[%d.]+ +[%d.]+", out)
  end)
end)

describe("bench/static.sh quick", function()
  it("checks both servers' bytes, runs uring.http.static and nginx, writes its ratios", function()
    local code, out = run(ENV .. "timeout 120 sh bench/static.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("check: both serve f4k and f1m byte for byte", out)
    for _, f in ipairs { "f4k", "f1m" } do
      assert.matches("round 1 " .. f .. ":  uring %d+ req/s [%d.]+s cpu %d+/cpu%-s  nginx %d+ req/s", out)
      assert.matches("median " .. f .. ": .* ratio uring/nginx per server%-cpu%-s [%d.]+ %(target >= 0%.[89]%)", out)
    end
    local rows = tsv_lines(results .. "/static.tsv")
    assert.equal(2, #rows)
    assert.same({ "static 4 KiB: uring.http.static/nginx", "0.9" }, { rows[1].label, rows[1].target })
    assert.same({ "static 1 MiB: uring.http.static/nginx", "0.8" }, { rows[2].label, rows[2].target })
    -- nothing left running: no nginx of ours, no temp dir
    -- (without the sanitizer preload of make asan: pgrep hangs under it)
    assert.equal("", (helpers.sh("env -u LD_PRELOAD pgrep -f '[u]ring-static-bench' || true")))
    assert.equal("", (helpers.sh("env -u LD_PRELOAD ls -d /tmp/uring-static-bench.* 2>/dev/null || true")))
  end)
end)
