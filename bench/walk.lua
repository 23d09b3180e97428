--- bench/walk.lua: list a tree of 100,000 files with each one's size.
--
--   lua5.4 bench/walk.lua [quick]        (from the repository root; make -C bench walk)
--
-- Contenders, each a process of its own writing one size per line to
-- /dev/null, run in alternation (the order rotates each round):
--   uring     uring.walk(dir, {stat = true}): directories read and every
--             entry statx-ed in batches on the helper pool; a stat table
--             per entry
--   uring-size  the same with {stat = "size"}: the size alone, no table
--   find      find DIR -printf '%s\n'
--   luv       a luv fs_scandir / fs_lstat recursion with callbacks (the
--             loop stays free, as uring's does)
--   luv-sync  the same recursion with luv's synchronous calls (blocks
--             its loop: no ticks; for scale only)
-- The uring and luv processes also run a 10 ms ticker meanwhile and say
-- in how many of the elapsed time's 10 ms slots it ran ("ticks kept").
-- Ratios (seconds of the other / seconds of uring: above 1 is faster)
-- go to $BENCH_RESULTS/walk.tsv (bench/results by default).
-- The tree is made once, in $BENCH_WALK_DIR (/tmp/uring-walk-bench-N),
-- and kept for the next run.  ROUNDS=n rounds (5); WALK_PARALLEL=n sets
-- the uring contenders' opts.parallel (default 4).
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = (os.getenv("URING_CPATH") or "./build/?.so") .. ";" .. package.cpath

local mode, who, dir = ...

-- --- one contender (a child process) ---------------------------------------

local function emit_sizes (sizes, n)
  io.write(table.concat(sizes, "\n", 1, n), "\n")
end

if mode == "run" and (who == "uring" or who == "uring-size") then
  local uring = require "uring"
  uring.run(function()
    -- the ticker wakes at each 10 ms boundary; a slot counts as kept when
    -- it ran inside it (sleep's own drift is not held against the loop)
    local ticks, stop, last = 0, false, -1
    local t0 = uring.now()
    uring.spawn(function()
      while not stop do
        local slot = (uring.now() - t0) // 0.01
        if slot ~= last then ticks = ticks + 1; last = slot end
        uring.sleep((slot + 1) * 0.01 - (uring.now() - t0))
      end
    end)
    local sizes, n, total = {}, 0, 0
    local size_only = who == "uring-size"
    for _, _, st in uring.walk(dir, { stat = size_only and "size" or true,
        parallel = tonumber(os.getenv("WALK_PARALLEL")) }) do
      n = n + 1
      if size_only then sizes[n] = st or 0 else sizes[n] = st and st.size or 0 end
      if n == 4096 then emit_sizes(sizes, n); total = total + n; n = 0 end
    end
    emit_sizes(sizes, n)
    local el = uring.now() - t0
    stop = true
    local of = math.floor(el / 0.01) + 1   -- the slots the run touched
    io.stderr:write(("entries %d ticks %d of %d\n"):format(total + n, math.min(ticks, of), of))
  end)
  return
end

if mode == "run" and (who == "luv" or who == "luv-sync") then
  local uv = require "luv"
  local sizes, n, total = {}, 0, 0
  local function add (size)
    n = n + 1
    sizes[n] = size
    if n == 4096 then emit_sizes(sizes, n); total = total + n; n = 0 end
  end
  local ticks, pending, last = 0, 0, -1
  local timer = uv.new_timer()
  local t0 = uv.hrtime()
  timer:start(10, 10, function()
    local slot = (uv.hrtime() - t0) // 10000000
    if slot ~= last then ticks = ticks + 1; last = slot end
  end)
  if who == "luv-sync" then
    local function walk (path)
      local req = assert(uv.fs_scandir(path))
      while true do
        local name = uv.fs_scandir_next(req)
        if not name then break end
        local p = path .. "/" .. name
        local st = uv.fs_lstat(p)
        add(st and st.size or 0)
        if st and st.type == "directory" then walk(p) end
      end
    end
    walk(dir)
  else
    local done
    local function walk (path)
      pending = pending + 1
      uv.fs_scandir(path, function(err, req)
        pending = pending - 1
        if not err then
          while true do
            local name = uv.fs_scandir_next(req)
            if not name then break end
            local p = path .. "/" .. name
            pending = pending + 1
            uv.fs_lstat(p, function(e, st)
              pending = pending - 1
              add(st and st.size or 0)
              if st and st.type == "directory" then walk(p) end
              if pending == 0 then done() end
            end)
          end
        end
        if pending == 0 then done() end
      end)
    end
    done = function() timer:stop(); timer:close() end
    walk(dir)
    uv.run()
  end
  emit_sizes(sizes, n)
  local el = (uv.hrtime() - t0) / 1e9
  if not timer:is_closing() then timer:stop(); timer:close(); uv.run() end
  local of = math.floor(el / 0.01) + 1   -- the slots the run touched
    io.stderr:write(("entries %d ticks %d of %d\n"):format(total + n, math.min(ticks, of), of))
  return
end

-- --- the orchestrator --------------------------------------------------------

local uring = require "uring"
local quick = mode == "quick" or os.getenv("BENCH_QUICK") == "1"
local NFILES = quick and 2000 or 100000
local ROUNDS = tonumber(os.getenv("ROUNDS")) or (quick and 1 or 5)
local results = os.getenv("BENCH_RESULTS") or "bench/results"
-- quick (the test suite's run) makes its small tree beside its results,
-- which the suite removes
local tree = os.getenv("BENCH_WALK_DIR")
  or (quick and results .. "/walk-tree" or ("/tmp/uring-walk-bench-" .. NFILES))

-- 10 x 10 x 10 directories, the files spread over the 1,000 leaves
local function make_tree ()
  local mark = io.open(tree .. "/.complete")
  if mark then mark:close(); return end
  print(("making %s: %d files (once)"):format(tree, NFILES))
  assert(os.execute("rm -rf '" .. tree .. "' && mkdir -p '" .. tree .. "'"))
  local dirs = {}
  for a = 0, 9 do
    for b = 0, 9 do
      for c = 0, 9 do dirs[#dirs + 1] = ("%s/a%d/b%d/c%d"):format(tree, a, b, c) end
    end
  end
  for i = 1, #dirs, 100 do
    assert(os.execute("mkdir -p " .. table.concat(dirs, " ", i, math.min(i + 99, #dirs))))
  end
  for i = 1, NFILES do
    local f = assert(io.open(("%s/f%d.%s"):format(dirs[i % #dirs + 1], i,
      ({ "txt", "lua", "c", "md", "json" })[i % 5 + 1]), "wb"))
    f:write(string.rep("x", i % 4000))
    f:close()
  end
  assert(io.open(tree .. "/.complete", "w")):close()
end

local function sh_quote (s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local CMDS = {
  uring = "lua5.4 bench/walk.lua run uring " .. sh_quote(tree),
  ["uring-size"] = "lua5.4 bench/walk.lua run uring-size " .. sh_quote(tree),
  find = "find " .. sh_quote(tree) .. " -printf '%s\\n'",
  luv = "lua5.4 bench/walk.lua run luv " .. sh_quote(tree),
  ["luv-sync"] = "lua5.4 bench/walk.lua run luv-sync " .. sh_quote(tree),
}
local ORDER = { "uring", "find", "uring-size", "luv", "luv-sync" }

local errfile = os.tmpname()
local function once (name)
  local t0 = uring.now()
  local ok = os.execute(CMDS[name] .. " > /dev/null 2> " .. errfile)
  local el = uring.now() - t0
  local f = io.open(errfile)
  local err = f:read("a")
  f:close()
  assert(ok, name .. " failed: " .. err)
  local entries, ticks, of = err:match("entries (%d+) ticks (%d+) of (%d+)")
  return el, tonumber(entries), tonumber(ticks), tonumber(of)
end

make_tree()
local times, kept = {}, {}
for _, name in ipairs(ORDER) do times[name] = {}; kept[name] = {} end
once("uring"); once("find")            -- warm the caches for everyone
for round = 1, ROUNDS do
  local line = { "round " .. round .. ":" }
  for k = 0, #ORDER - 1 do
    local name = ORDER[(round + k - 1) % #ORDER + 1]
    local el, entries, ticks, of = once(name)
    table.insert(times[name], el)
    if ticks and of > 0 then table.insert(kept[name], ticks / of) end
    line[#line + 1] = ("%s %.3fs%s"):format(name, el,
      ticks and (" (%d entries, ticks %d/%d)"):format(entries, ticks, of) or "")
  end
  print(table.concat(line, "  "))
end
os.remove(errfile)

local function median (t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return 0 end
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local m = {}
for _, name in ipairs(ORDER) do m[name] = median(times[name]) end
print(("median seconds: uring %.3f  uring-size %.3f  find %.3f  luv %.3f  luv-sync %.3f")
  :format(m.uring, m["uring-size"], m.find, m.luv, m["luv-sync"]))
-- each ratio: the median of the rounds' own ratios (a slow spell of the
-- shared machine hits both sides of a round alike), with min..max
local function ratio (other, mine)
  local r = {}
  for i = 1, #times[mine] do r[i] = times[other][i] / times[mine][i] end
  local lo, hi = math.huge, 0
  for _, v in ipairs(r) do lo = math.min(lo, v); hi = math.max(hi, v) end
  return median(r), lo, hi
end
local R = {
  { "find/uring", "find", "uring" }, { "find/uring-size", "find", "uring-size" },
  { "luv/uring", "luv", "uring" }, { "luv-sync/uring", "luv-sync", "uring" },
}
for _, x in ipairs(R) do
  local r, lo, hi = ratio(x[2], x[3])
  x[4] = r
  print(("ratio %s: %.2f (%.2f..%.2f)"):format(x[1], r, lo, hi))
end
local tick = median(kept.uring)
print(("ticks kept: uring %.0f%%  uring-size %.0f%%  luv %.0f%%"):format(tick * 100,
  median(kept["uring-size"]) * 100, median(kept.luv) * 100))

os.execute("mkdir -p " .. sh_quote(results))
local out = assert(io.open(results .. "/walk.tsv", "w"))
local files = NFILES // 1000 .. "k files"
out:write(("walk vs find\t%.2f\t1\tlist %s with sizes: uring.walk{stat} vs find -printf %%s\n")
  :format(R[1][4], files))
out:write(("walk size-only vs find\t%.2f\t\tlist %s with sizes: uring.walk{stat = \"size\"} (no table per entry) vs find -printf %%s\n")
  :format(R[2][4], files))
out:write(("walk vs luv\t%.2f\t3\tlist %s with sizes: uring.walk{stat} vs luv fs_scandir/fs_lstat callbacks\n")
  :format(R[3][4], files))
out:write(("walk vs luv-sync\t%.2f\t\tlist %s with sizes: vs luv's blocking fs_scandir/fs_lstat (loop frozen)\n")
  :format(R[4][4], files))
out:write(("walk ticks kept\t%.2f\t0.9\tshare of 10 ms ticks a task kept while uring.walk ran\n")
  :format(tick))
out:close()
