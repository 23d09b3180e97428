-- spec/run.lua: run the busted suite and end with the one summary line
-- CI reads: "tests: N passed, N failed, N skipped" (CI greps the
-- "tests: N passed, N failed" prefix).  Exit status 1 on any failure.
--
-- The first run finds every *_spec.lua under spec/ (.busted: recursive),
-- spec/adversarial/ and spec/regress/ included.
--
-- With URING_MATRIX=1 the I/O tests run again under other ring setups
-- (a 4-entry ring, SQPOLL, both), as liburing runs its tests under
-- several setups: bugs in SQ-full flushing and CQ overflow only show
-- up with tiny rings.  Which tests: those tagged #io (a top-level
-- describe("... #io", ...) tags all it holds); the socket tests tagged
-- #net run once more with registered files and multishot receives.  A
-- new I/O spec joins the matrix by carrying the tag; nothing here lists
-- files.  The three longest stress loops run shorter there (STRESS
-- below): each round takes the same ring-level paths as the first
-- pass's full count.
--
-- A test that calls busted's pending("reason") is skipped: TAP says
-- "ok N - # SKIP reason"; it is counted apart and listed at the end with
-- its reason (a skip is a defect unless the machine lacks the feature).
--
-- With URING_FUZZ_SECONDS=N the fuzzer (spec/fuzz/run.lua) then runs
-- random programs for N seconds under ASan+UBSan (build-asan, built by
-- `make test`); it counts as one test, failed by any finding.
--
-- The passes are independent processes and mostly wait (sockets, disks,
-- timers, children), so they run in two lanes at once
-- (URING_TEST_LANES=1: one after the other; one CPU: one lane): the
-- first lane's output is shown as it comes, the second's, kept in
-- files, once it ends.  The two SQPOLL passes share a lane: each keeps
-- a kernel thread polling a CPU, and two at once would starve the rest.
-- bench/test_times.sh times each spec file in each pass, one at a time.
local busted = arg[1] or "lua5.4 /usr/bin/busted"
local cpath = os.getenv("URING_CPATH")
local passed, failed, skipped = 0, 0, 0
local skips = {}

-- A pass is a busted run (its TAP lines are counted) or a whole program
-- counted as one test (the fuzzer, the out-of-memory sweep: its output is
-- kept as comments, its summary line, matching `summary`, names the
-- test, its exit status passes or fails it).
local function busted_pass(env, args, knobs)
  return { env = env, cmd = env .. (knobs and " " .. knobs or "") .. " " .. busted .. " -o TAP"
    .. (cpath and (" --cpath='" .. cpath .. "'") or "")
    .. (args and (" " .. args) or "") .. " 2>&1" }
end

local function program_pass(cmd, summary)
  return { cmd = cmd, summary = summary }
end

-- Reads a pass's output, writes it out and counts it; ok, code: how its
-- command ended.  Returns a function taking them after the last line.
local function counter(pass)
  local n, failed0, summary = 0, failed, "no summary"
  local function line(l)
    if pass.summary then
      io.write("# ", l, "\n")
      summary = l:match(pass.summary) or summary
    else
      io.write(l, "\n")
      local reason = l:match("^ok %d+ %- # SKIP (.*)")
      if reason then
        skipped = skipped + 1; n = n + 1
        skips[#skips + 1] = (pass.env ~= "" and "[" .. pass.env .. "] " or "") .. reason
      elseif l:match("^ok %d+") then passed = passed + 1; n = n + 1
      elseif l:match("^not ok %d+") then failed = failed + 1; n = n + 1 end
    end
    io.flush()
  end
  local function finish(ok, code)
    if pass.summary then
      if ok then passed = passed + 1; io.write("ok - ", summary, "\n")
      else failed = failed + 1; io.write("not ok - ", summary, "\n") end
    elseif not ok and n == 0 then
      failed = failed + 1
      io.write("# the runner exited with status ", tostring(code), " and ran no test\n")
    elseif not ok and failed == failed0 then
      failed = failed + 1
      io.write("# the runner exited with status ", tostring(code), "\n")
    end
  end
  return line, finish
end

-- Runs a pass here, its output shown as it comes.
local function run_now(pass)
  io.write("# ", pass.cmd, "\n")
  local line, finish = counter(pass)
  local p = assert(io.popen(pass.cmd))
  for l in p:lines() do line(l) end
  local ok, _, code = p:close()
  finish(ok, code)
end

-- Starts passes one after the other in the background, each writing its
-- output and exit status to files; returns a function that waits for
-- them and then shows and counts them as run_now would have.
local function run_behind(passes)
  local p = assert(io.popen("mktemp -d /tmp/uring-run.XXXXXX"))
  local dir = p:read("l")
  p:close()
  local script = {}
  for i, pass in ipairs(passes) do
    script[#script + 1] = ("( %s ) >%s/%d.out 2>&1 </dev/null; echo $? >%s/%d.rc"):format(
      pass.cmd, dir, i, dir, i)
  end
  -- the pipe only says when the lane ended: its passes write to files
  local lane = assert(io.popen("{ " .. table.concat(script, "; ") .. "; } >/dev/null 2>&1; echo end"))
  return function()
    lane:read("a")
    lane:close()
    for i, pass in ipairs(passes) do
      io.write("# ", pass.cmd, "\n")
      local line, finish = counter(pass)
      for l in io.lines(("%s/%d.out"):format(dir, i)) do line(l) end
      local f = io.open(("%s/%d.rc"):format(dir, i))
      local code = f and f:read("n")
      if f then f:close() end
      finish(code == 0, code)
    end
    os.execute("rm -rf '" .. dir .. "'")
  end
end

-- The spec files whose text carries the busted tag #name in a describe
-- or it title: only they are loaded for a tagged run.
local function tagged(name)
  local files = {}
  local p = assert(io.popen("find spec -name '*_spec.lua' | sort"))
  for path in p:lines() do
    local f = assert(io.open(path))
    local text = f:read("a")
    f:close()
    for title in text:gmatch("[%w_]+%(%s*\"([^\"\n]*)\"") do
      if (" " .. title .. " "):find("[^%w_]#" .. name .. "[^%w_]") then
        files[#files + 1] = path
        break
      end
    end
  end
  p:close()
  return table.concat(files, " ")
end

local function cpus()
  local p = io.popen("nproc 2>/dev/null")
  local n = p and tonumber(p:read("l") or "")
  if p then p:close() end
  return n or 1
end

local lanes = { { busted_pass("", nil) }, {} }
if os.getenv("URING_MATRIX") == "1" then
  -- the races and faults of spec/adversarial carry #io too; its storms
  -- set their own 4-entry ring
  local io_specs = tagged("io")
  -- the matrix repeats these for their ring-level paths (a full SQ, the
  -- SQPOLL thread, registered files), which every round takes; the
  -- first pass keeps the full counts for their breadth: close_spec's
  -- rounds (10,000), io_diff_spec's sequences (2,500, 800 under
  -- valgrind), integrity_spec's MiB (256, 16 under valgrind)
  local STRESS = "URING_CLOSE_ROUNDS=2500 IODIFF_N=800 URING_INTEGRITY_MIB=64"
  local function io_pass(env) return busted_pass("env " .. env, "--tags=io " .. io_specs, STRESS) end
  table.insert(lanes[1], io_pass("URING_TEST_RING=4"))
  table.insert(lanes[2], io_pass("URING_TEST_SQPOLL=1"))
  table.insert(lanes[2], io_pass("URING_TEST_SQPOLL=1 URING_TEST_RING=4"))
  -- the sockets again with registered files, 8 slots: fixed and plain mixed;
  -- and with multishot receives (configure{recv_multishot}), in the same
  -- pass: a second one would cost as much again
  table.insert(lanes[2], busted_pass("env URING_TEST_FIXED_FILES=8 URING_TEST_RECV_MULTISHOT=1",
    "--tags=net " .. tagged("net"), STRESS))
end

local fuzz = tonumber(os.getenv("URING_FUZZ_SECONDS") or "")
if fuzz and fuzz > 0 then
  table.insert(lanes[1], program_pass(
    ("lua5.4 spec/fuzz/run.lua --seconds %d --cpath 'build-asan/?.so' 2>&1"):format(fuzz),
    "^fuzz: %d+ programs.*"))
end
-- With URING_OOM_SAMPLE=K, K points of the out-of-memory sweep
-- (spec/oom/run.lua: an allocation of the Lua state or of the core fails,
-- each point in its own process under ASan+UBSan); one test, failed by
-- any finding.  `make oom` runs every point.
local oom = tonumber(os.getenv("URING_OOM_SAMPLE") or "")
if oom and oom > 0 then
  table.insert(lanes[1], program_pass(("lua5.4 spec/oom/run.lua --sample %d 2>&1"):format(oom),
    "^oom: %d+ points.*"))
end

if os.getenv("URING_TEST_LANES") == "1" or cpus() < 2 then
  for _, pass in ipairs(lanes[2]) do table.insert(lanes[1], pass) end
  lanes[2] = {}
end
local behind = #lanes[2] > 0 and run_behind(lanes[2])
for _, pass in ipairs(lanes[1]) do run_now(pass) end
if behind then behind() end

for _, s in ipairs(skips) do io.write("# skipped: ", s, "\n") end
io.write(("tests: %d passed, %d failed, %d skipped\n"):format(passed, failed, skipped))
os.exit(failed == 0 and passed > 0 and 0 or 1)
