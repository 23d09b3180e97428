-- spec/run.lua: run the busted suite and end with the one summary line
-- CI reads: "tests: N passed, N failed".  Exit status 1 on any failure.
--
-- The first run finds every *_spec.lua under spec/ (.busted: recursive),
-- spec/adversarial/ included.
-- With URING_MATRIX=1 the I/O specs run again under other ring setups
-- (a 4-entry ring, SQPOLL, both), as liburing runs its tests under
-- several setups: bugs in SQ-full flushing and CQ overflow only show
-- up with tiny rings.
--
-- With URING_FUZZ_SECONDS=N the fuzzer (spec/fuzz/run.lua) then runs
-- random programs for N seconds under ASan+UBSan (build-asan, built by
-- `make test`); it counts as one test, failed by any finding.
local busted = arg[1] or "lua5.4 /usr/bin/busted"
local cpath = os.getenv("URING_CPATH")
local passed, failed = 0, 0

local function run(env, files)
  local cmd = env .. " " .. busted .. " -o TAP"
    .. (cpath and (" --cpath='" .. cpath .. "'") or "")
    .. (files and (" " .. files) or "") .. " 2>&1"
  io.write("# ", cmd, "\n")
  local p = assert(io.popen(cmd))
  local n = 0
  for line in p:lines() do
    io.write(line, "\n")
    io.flush()
    if line:match("^ok %d+") then passed = passed + 1; n = n + 1
    elseif line:match("^not ok %d+") then failed = failed + 1; n = n + 1 end
  end
  local ok, _, code = p:close()
  if not ok and n == 0 then
    failed = failed + 1
    io.write("# the runner exited with status ", tostring(code), " and ran no test\n")
  elseif not ok and failed == 0 then
    failed = failed + 1
    io.write("# the runner exited with status ", tostring(code), "\n")
  end
end

run("", nil)
if os.getenv("URING_MATRIX") == "1" then
  local io_specs = "spec/task_spec.lua spec/lifetime_spec.lua spec/batch_spec.lua "
    .. "spec/file_spec.lua spec/ring_spec.lua spec/net_spec.lua spec/udp_spec.lua "
    -- the races and faults of spec/adversarial (found by the first run's
    -- recursive search) under the other setups too; its storms set their
    -- own 4-entry ring
    .. "spec/adversarial/races_spec.lua spec/adversarial/faults_spec.lua"
  for _, env in ipairs { "URING_TEST_RING=4", "URING_TEST_SQPOLL=1",
                         "URING_TEST_SQPOLL=1 URING_TEST_RING=4" } do
    run("env " .. env, io_specs)
  end
  -- the sockets again with registered files, 8 slots: fixed and plain mixed
  run("env URING_TEST_FIXED_FILES=8", "spec/net_spec.lua spec/http_spec.lua "
    .. "spec/adversarial/races_spec.lua")
end
local fuzz = tonumber(os.getenv("URING_FUZZ_SECONDS") or "")
if fuzz and fuzz > 0 then
  local cmd = ("lua5.4 spec/fuzz/run.lua --seconds %d --cpath 'build-asan/?.so' 2>&1"):format(fuzz)
  io.write("# ", cmd, "\n")
  local p = assert(io.popen(cmd))
  local summary = "no summary"
  for line in p:lines() do
    io.write("# ", line, "\n")
    io.flush()
    summary = line:match("^fuzz: %d+ programs.*") or summary
  end
  if p:close() then
    passed = passed + 1
    io.write("ok - ", summary, "\n")
  else
    failed = failed + 1
    io.write("not ok - ", summary, "\n")
  end
end
-- With URING_OOM_SAMPLE=K, K points of the out-of-memory sweep
-- (spec/oom/run.lua: an allocation of the Lua state or of the core fails,
-- each point in its own process under ASan+UBSan); one test, failed by
-- any finding.  `make oom` runs every point.
local oom = tonumber(os.getenv("URING_OOM_SAMPLE") or "")
if oom and oom > 0 then
  local cmd = ("lua5.4 spec/oom/run.lua --sample %d 2>&1"):format(oom)
  io.write("# ", cmd, "\n")
  local p = assert(io.popen(cmd))
  local summary = "no summary"
  for line in p:lines() do
    io.write("# ", line, "\n")
    io.flush()
    summary = line:match("^oom: %d+ points.*") or summary
  end
  if p:close() then
    passed = passed + 1
    io.write("ok - ", summary, "\n")
  else
    failed = failed + 1
    io.write("not ok - ", summary, "\n")
  end
end
io.write(("tests: %d passed, %d failed\n"):format(passed, failed))
os.exit(failed == 0 and passed > 0 and 0 or 1)
