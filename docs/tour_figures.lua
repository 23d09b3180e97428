--- docs/tour_figures.lua: every tour step that measures something, drawn
-- (make tour; PNGs by gnuplot, timelines by bin/uring-timeline, the
-- inspector by headless Chromium), into docs/img/.
--
--   lua5.4 docs/tour_figures.lua [step...]     (steps by figure name;
--                                               default: all of them)
--
-- Each figure runs its step's script as docs/tour.md says to, reads the
-- figures the script printed, and plots them: the picture shows what was
-- measured on this machine, and the script still asserts its own claim
-- (a script that fails fails the figure).  A script whose output no
-- longer has a line a figure reads is named with the line expected.
local cpath = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cpath .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path

local IMG = os.getenv("TOUR_IMG") or "docs/img"     -- the spec draws elsewhere
local LUA = "lua5.4"

local function die(msg)
  io.stderr:write("tour_figures: ", msg, "\n")
  os.exit(1)
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok, code
end

-- run examples/<script> and return its output; a failing script stops us
local function run(script, args)
  local cmd = ("env URING_CPATH='%s' timeout 300 %s examples/%s %s"):format(cpath, LUA, script, args or "")
  local out, ok, code = sh(cmd)
  if not ok then die(("%s exited with %s:\n%s"):format(script, tostring(code), out)) end
  return out
end

-- the captures of pattern in out, or a clear stop
local function grab(out, script, pattern)
  local r = table.pack(out:match(pattern))
  if r[1] == nil then
    die(("%s: no line matching %q in its output (did it change?):\n%s"):format(script, pattern, out))
  end
  return table.unpack(r, 1, r.n)
end

local function num(s) return assert(tonumber(s), "not a number: " .. tostring(s)) end

---------------------------------------------------------------------------
-- gnuplot: bar charts, one series or several side by side
---------------------------------------------------------------------------

local COLORS = { "#3b6fc4", "#d4803c", "#2a9d55", "#a04ac4" }

-- bars(name, {title =, ylabel =, logscale =, series = {"a", "b"}},
--      rows = {{"label", va, vb}, ...}) -> writes IMG/name.png
local function bars(name, spec, rows)
  local series = spec.series or { spec.ylabel }
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w"))
  for _, r in ipairs(rows) do
    local cells = { ('"%s"'):format(r[1]:gsub('"', "'")) }
    for i = 2, #series + 1 do cells[#cells + 1] = ("%.6g"):format(r[i]) end
    f:write(table.concat(cells, " "), "\n")
  end
  f:close()
  local plots = {}
  for i, s in ipairs(series) do
    plots[#plots + 1] = ("'%s' using %d:xtic(1) title '%s' lc rgb '%s'"):format(tmp, i + 1, s:gsub("'", ""), COLORS[i])
  end
  -- the values over the bars: one label per bar, at its cluster offset
  local n = #series
  local width = 0.8 / n
  for i = 1, n do
    local off = (i - (n + 1) / 2) * width
    plots[#plots + 1] = ("'%s' using ($0+%.3f):%d:(sprintf('%%g', $%d)) with labels font ',9' offset 0,0.7 notitle")
      :format(tmp, off, i + 1, i + 1)
  end
  local gp = {
    ("set terminal pngcairo size %s font 'sans,10' noenhanced"):format(spec.size or "820,420"),
    ("set output '%s/%s.png'"):format(IMG, name),
    ("set title \"%s\""):format(spec.title:gsub('"', "'")),
    ("set ylabel '%s'"):format(spec.ylabel:gsub("'", "")),
    "set style data histograms",
    "set style histogram clustered gap 1",
    "set style fill solid 0.85 border -1",
    ("set boxwidth %.2f"):format(0.9),
    "set grid ytics",
    "set yrange [0:*]",
    "set offsets 0,0,graph 0.12,0",
    n > 1 and "set key top left" or "unset key",
    spec.logscale and "set logscale y; set yrange [*:*]" or "",
    "plot " .. table.concat(plots, ", \\\n     "),
  }
  local gpf = tmp .. ".gp"
  local g = assert(io.open(gpf, "w"))
  g:write(table.concat(gp, "\n"), "\n")
  g:close()
  local out, ok = sh("gnuplot " .. gpf)
  os.remove(tmp); os.remove(gpf)
  if not ok then die(name .. ": gnuplot failed:\n" .. out) end
end

-- a trace_export JSON drawn by bin/uring-timeline, as png and svg
local function timeline(name, json, title)
  for _, ext in ipairs { "png", "svg" } do
    local out, ok = sh(("%s bin/uring-timeline %s %s/%s.%s '%s'"):format(LUA, json, IMG, name, ext, title))
    if not ok then die(name .. ": uring-timeline failed:\n" .. out) end
  end
end

---------------------------------------------------------------------------
-- the figures, in the tour's order
---------------------------------------------------------------------------

local FIGURES = {}
local ORDER = {}
local function figure(name, fn) FIGURES[name] = fn; ORDER[#ORDER + 1] = name end

-- 1: five NOPs on a teaching ring, one submit, five CQEs: its trace
figure("step1_sq_cq", function()
  local uring = require "uring"
  run("tour_sq_cq.lua")                         -- the step's own claim first
  local json = os.tmpname()
  uring.trace(function() end)
  local ring = assert(uring.ring{ entries = 8 })
  for i = 1, 5 do ring:prep_nop(100 + i) end
  ring:submit()
  for _ = 1, 5 do ring:wait_cqe() end
  ring:close()
  uring.trace(false)
  assert(uring.trace_export(json))
  timeline("step1_sq_cq", json, "step 1: five NOPs on an 8-entry teaching ring, one submit, five CQEs")
  os.remove(json)
end)

-- 2: examples/batch.lua: the 1,000 reads' timeline, and the table
figure("step2_batch", function()
  local json = os.tmpname()
  local out = run("batch.lua", "--trace " .. json)
  timeline("step2_batch_timeline", json, "step 2: examples/batch.lua, 1,000 tasks each reading 4 KiB")
  os.remove(json)
  local t_enters = num(grab(out, "batch.lua", "uring: 1000 tasks%s+%d+%s+(%d+)"))
  local s_enters = num(grab(out, "batch.lua", "uring: 1 task, in turn%s+%d+%s+(%d+)"))
  local calls = num(grab(out, "batch.lua", "the io loop makes ~(%d+) system calls"))
  bars("step2_batch", { title = "1,000 random 4 KiB reads: system calls (examples/batch.lua)",
    ylabel = "system calls (log scale)", logscale = true }, {
    { "uring: 1000 tasks (io_uring_enter)", t_enters },
    { "uring: 1 task, in turn (io_uring_enter)", s_enters },
    { "io: seek+read loop (lseek + read)", calls },
  })
end)

-- 3: readiness versus completion on a cold file
figure("step3_completion", function()
  local out = run("tour_completion.lua")
  local poll = num(grab(out, "tour_completion.lua", "poll_add%b() CQE: res = %S+ %b() after%s+([%d.]+) ms"))
  local read = num(grab(out, "tour_completion.lua", "read CQE:%s+res = %d+ bytes%s+after%s+([%d.]+) ms"))
  bars("step3_completion", { title = "a cold 4 MiB file: when each CQE came (examples/tour_completion.lua)",
    ylabel = "ms after submit" }, {
    { "poll_add: 'ready'", poll }, { "read: the data is here", read },
  })
end)

-- 4: a read cut by its linked timeout, and one that won
figure("step4_link_timeout", function()
  local out = run("tour_link_timeout.lua")
  local cut = num(grab(out, "tour_link_timeout.lua", "read%s+CQE res = %-125%s+%-ECANCELED%s+at%s+([%d.]+) ms"))
  local won = num(grab(out, "tour_link_timeout.lua", "read%s+CQE res = 6%s+%(bytes%)%s+at%s+([%d.]+) ms"))
  bars("step4_link_timeout", { title = "read linked to a 100 ms timeout (examples/tour_link_timeout.lua)",
    ylabel = "ms until the read's CQE" }, {
    { "empty FIFO: cut by the timeout", cut }, { "6 bytes waiting: read at once", won },
  })
end)

-- 5: a 10 s sleep cancelled
figure("step5_cancel", function()
  local out = run("tour_cancel.lua")
  local to_join = num(grab(out, "tour_cancel.lua", "([%d.]+) ms from cancel%(%) to join"))
  local elapsed = num(grab(out, "tour_cancel.lua", "elapsed ([%d.]+) ms %(the sleep was 10 s%)"))
  bars("step5_cancel", { title = "cancelling a 10 s sleep (examples/tour_cancel.lua)",
    ylabel = "ms (log scale)", logscale = true }, {
    { "the sleep asked for", 10000 }, { "it lasted (cancelled)", elapsed },
    { "cancel() to join", to_join },
  })
end)

-- 6: SQPOLL: enters per phase
figure("step6_sqpoll", function()
  local out = run("tour_sqpoll.lua")
  local rows = {}
  for _, phase in ipairs { "wake", "burst", "idle", "asleep", "rewake", "plain" } do
    rows[#rows + 1] = { phase, num(grab(out, "tour_sqpoll.lua", "\n" .. phase .. "%s+(%d+)")) }
  end
  rows[6][1] = "plain ring, same burst"
  bars("step6_sqpoll", { title = "io_uring_enter calls per phase, SQPOLL ring (examples/tour_sqpoll.lua)",
    ylabel = "io_uring_enter calls" }, rows)
end)

-- 7: registered buffers and files: us per read
figure("step7_fixed", function()
  local out = run("tour_fixed.lua")
  local bp, bf = grab(out, "tour_fixed.lua", "buffered %(warm cache%)%s+%d+%s+([%d.]+)%s+([%d.]+)%s+[%d.]+\n")
  local dp, df = grab(out, "tour_fixed.lua", "O_DIRECT%s+%d+%s+([%d.]+)%s+([%d.]+)%s+[%d.]+\n")
  bars("step7_fixed", { title = "random 4 KiB reads: plain versus registered buffers (examples/tour_fixed.lua)",
    ylabel = "us per read", series = { "prep_read", "read_fixed" } }, {
    { "buffered (warm cache)", num(bp), num(bf) }, { "O_DIRECT", num(dp), num(df) },
  })
end)

-- 8: multishot accept: SQEs and CQEs per op
figure("step8_multishot", function()
  local out = run("tour_multishot.lua")
  local rows = {}
  for _, op in ipairs { "accept", "connect", "recv", "send" } do
    local s, c = grab(out, "tour_multishot.lua", "\n" .. op .. "%s+(%d+)%s+(%d+)")
    rows[#rows + 1] = { op, num(s), num(c) }
  end
  bars("step8_multishot", { title = "100 connections: SQEs and CQEs by op (examples/tour_multishot.lua)",
    ylabel = "count", series = { "SQEs", "CQEs" } }, rows)
end)

-- 9: zero-copy send
figure("step9_zerocopy", function()
  local out = run("tour_zerocopy.lua")
  local rows = {}
  for _, size in ipairs { "64 KiB", "1 MiB" } do
    local s, z = grab(out, "tour_zerocopy.lua", "\n" .. size .. "%s+%d+%s+(%d+)%s+(%d+)")
    rows[#rows + 1] = { size, num(s), num(z) }
  end
  bars("step9_zerocopy", { title = "loopback TCP: send versus send_zc (examples/tour_zerocopy.lua)",
    ylabel = "MiB/s", series = { "send", "send_zc" } }, rows)
end)

-- 12: the drill
figure("step12_drill", function()
  local out = run("tour_drill.lua")
  local rows = {}
  for _, way in ipairs { "uring: 1000 tasks", "blocking pread loop", "threads: 8 x pread %(C%)" } do
    local cold = grab(out, "tour_drill.lua", "cold%s+" .. way .. "%s+([%d.]+)")
    local warm = grab(out, "tour_drill.lua", "warm%s+" .. way .. "%s+([%d.]+)")
    rows[#rows + 1] = { (way:gsub("%%", "")), num(cold), num(warm) }
  end
  bars("step12_drill", { title = "1,000 random 4 KiB reads, three ways: wall ms, medians (examples/tour_drill.lua)",
    ylabel = "wall ms", series = { "cold cache", "warm cache" } }, rows)
end)

-- the live inspector, as headless Chromium draws it
figure("inspect", function()
  local uring = require "uring"
  local browser = require "helpers.browser"
  if not browser.available() then die("inspect: chromium is not installed (make deps-test)") end
  local png = IMG .. "/inspect.png"
  local ok
  uring.run(function()
    local insp = assert(uring.inspect(0))
    local path = os.tmpname()
    assert(uring.writefile(path, string.rep("x", 1024 * 1024)))
    local f <close> = assert(uring.open(path))
    local ws = {}
    for i = 1, 3 do                              -- reads that stay in flight
      local r, w = uring.pipe()
      ws[i] = w
      uring.spawn(function() r:read(1); r:close() end)
    end
    local busy = true
    local worker = uring.spawn(function()        -- batches of 200 reads
      while busy do
        local t = {}
        for i = 1, 200 do t[i] = uring.spawn(function() return f:pread(4096, (i - 1) * 4096) end) end
        for i = 1, 200 do t[i]:join() end
        uring.sleep(0.1)
      end
    end)
    -- the page stops listening after 8 snapshots; chromium then draws it
    local page = browser.start(insp:url() .. "?updates=8", png, { size = "1200,820" })
    ok = page:finish(90, true) ~= nil
    insp:close()
    busy = false
    worker:join()
    for i = 1, 3 do ws[i]:write("x"); ws[i]:close() end
    os.remove(path)
  end)
  if not ok then die("inspect: chromium did not finish") end
end)

local wanted = #arg > 0 and arg or ORDER
assert(os.execute("mkdir -p " .. IMG))
for _, name in ipairs(wanted) do
  if not FIGURES[name] then die("no figure " .. name .. " (have: " .. table.concat(ORDER, " ") .. ")") end
  local t0 = os.time()
  FIGURES[name]()
  print(("%-22s done (%d s)"):format(name, os.time() - t0))
end
