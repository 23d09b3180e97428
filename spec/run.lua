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
-- #net run once more with registered files and multishot receives.  A new I/O spec joins the
-- matrix by carrying the tag; nothing here lists files.
--
-- A test that calls busted's pending("reason") is skipped: TAP says
-- "ok N - # SKIP reason"; it is counted apart and listed at the end with
-- its reason (a skip is a defect unless the machine lacks the feature).
--
-- With URING_FUZZ_SECONDS=N the fuzzer (spec/fuzz/run.lua) then runs
-- random programs for N seconds under ASan+UBSan (build-asan, built by
-- `make test`); it counts as one test, failed by any finding.
local busted = arg[1] or "lua5.4 /usr/bin/busted"
local cpath = os.getenv("URING_CPATH")
local passed, failed, skipped = 0, 0, 0
local skips = {}

local function run(env, args)
  local cmd = env .. " " .. busted .. " -o TAP"
    .. (cpath and (" --cpath='" .. cpath .. "'") or "")
    .. (args and (" " .. args) or "") .. " 2>&1"
  io.write("# ", cmd, "\n")
  local p = assert(io.popen(cmd))
  local n, failed0 = 0, failed
  for line in p:lines() do
    io.write(line, "\n")
    io.flush()
    local reason = line:match("^ok %d+ %- # SKIP (.*)")
    if reason then
      skipped = skipped + 1; n = n + 1
      skips[#skips + 1] = (env ~= "" and "[" .. env .. "] " or "") .. reason
    elseif line:match("^ok %d+") then passed = passed + 1; n = n + 1
    elseif line:match("^not ok %d+") then failed = failed + 1; n = n + 1 end
  end
  local ok, _, code = p:close()
  if not ok and n == 0 then
    failed = failed + 1
    io.write("# the runner exited with status ", tostring(code), " and ran no test\n")
  elseif not ok and failed == failed0 then
    failed = failed + 1
    io.write("# the runner exited with status ", tostring(code), "\n")
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

run("", nil)
if os.getenv("URING_MATRIX") == "1" then
  -- the races and faults of spec/adversarial carry #io too; its storms
  -- set their own 4-entry ring
  local io_specs = tagged("io")
  for _, env in ipairs { "URING_TEST_RING=4", "URING_TEST_SQPOLL=1",
                         "URING_TEST_SQPOLL=1 URING_TEST_RING=4" } do
    run("env " .. env, "--tags=io " .. io_specs)
  end
  -- the sockets again with registered files, 8 slots: fixed and plain mixed;
  -- and with multishot receives (configure{recv_multishot}), in the same
  -- pass: a second one would cost as much again
  run("env URING_TEST_FIXED_FILES=8 URING_TEST_RECV_MULTISHOT=1", "--tags=net " .. tagged("net"))
end
-- A whole program counted as one test (the fuzzer, the out-of-memory
-- sweep): its output is kept as comments, its summary line (matching
-- summary_pattern) names the test, its exit status passes or fails it.
local function one_test(cmd, summary_pattern)
  io.write("# ", cmd, "\n")
  local p = assert(io.popen(cmd))
  local summary = "no summary"
  for line in p:lines() do
    io.write("# ", line, "\n")
    io.flush()
    summary = line:match(summary_pattern) or summary
  end
  if p:close() then
    passed = passed + 1
    io.write("ok - ", summary, "\n")
  else
    failed = failed + 1
    io.write("not ok - ", summary, "\n")
  end
end

local fuzz = tonumber(os.getenv("URING_FUZZ_SECONDS") or "")
if fuzz and fuzz > 0 then
  one_test(("lua5.4 spec/fuzz/run.lua --seconds %d --cpath 'build-asan/?.so' 2>&1"):format(fuzz),
    "^fuzz: %d+ programs.*")
end
-- With URING_OOM_SAMPLE=K, K points of the out-of-memory sweep
-- (spec/oom/run.lua: an allocation of the Lua state or of the core fails,
-- each point in its own process under ASan+UBSan); one test, failed by
-- any finding.  `make oom` runs every point.
local oom = tonumber(os.getenv("URING_OOM_SAMPLE") or "")
if oom and oom > 0 then
  one_test(("lua5.4 spec/oom/run.lua --sample %d 2>&1"):format(oom), "^oom: %d+ points.*")
end
for _, s in ipairs(skips) do io.write("# skipped: ", s, "\n") end
io.write(("tests: %d passed, %d failed, %d skipped\n"):format(passed, failed, skipped))
os.exit(failed == 0 and passed > 0 and 0 or 1)
