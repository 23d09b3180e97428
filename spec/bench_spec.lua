-- spec/bench_spec.lua: the benches still build and run (their quick modes:
-- one tiny round).  Not timing tests: they assert the figures are printed,
-- not what they are; `make bench` measures.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

describe("bench/run.sh quick", function()
  it("builds bench/nop.c, runs the four contenders and prints the ratios", function()
    local code, out = run("BENCH_QUICK=1 timeout 60 sh bench/run.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("round 1: c%-batched [%d.]+  c%-single [%d.]+  "
      .. "lua%-tasks [%d.]+  lua%-single [%d.]+", out)
    assert.matches("median ns/op:", out)
    assert.matches("ratio lua%-tasks/c%-batched: [%d.]+", out)
    assert.matches("ratio lua%-tasks/c%-single: [%d.]+", out)
    assert.matches("ratio lua%-single/c%-single: [%d.]+", out)
  end)
end)

describe("bench/http.sh quick", function()
  it("builds bench/http_c.c, probes the four servers alike, runs wrk and prints the ratios", function()
    local code, out = run("BENCH_QUICK=1 timeout 120 sh bench/http.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    assert.matches("probe: all four answer", out)
    assert.matches("round 1 c50:  lua%-uring [%d]+ req/s [%d.]+s cpu [%d]+/cpu%-s  "
      .. "luv [%d]+ req/s [%d.]+s cpu [%d]+/cpu%-s  "
      .. "cqueues [%d]+ req/s [%d.]+s cpu [%d]+/cpu%-s  "
      .. "c [%d]+ req/s [%d.]+s cpu [%d]+/cpu%-s", out)
    assert.matches("median c50 req/s:", out)
    assert.matches("median c50 req/server%-cpu%-s:", out)
    assert.matches("ratio lua%-uring/luv c50: [%d.]+ req/server%-cpu%-s", out)
    assert.matches("ratio lua%-uring/cqueues c50: [%d.]+ req/server%-cpu%-s", out)
    assert.matches("ratio lua%-uring/c c50: [%d.]+ req/server%-cpu%-s", out)
    -- nothing left running: every server it started (their pids are in
    -- build/bench/http_pids.txt) was killed after its run
    local f = assert(io.open("build/bench/http_pids.txt"))
    local pids = f:read("a")
    f:close()
    local n = 0
    for pid in pids:gmatch("%d+") do
      n = n + 1
      local st = io.open("/proc/" .. pid .. "/cmdline")
      local cmd = st and st:read("a") or ""
      if st then st:close() end
      assert.is_nil(cmd:find("http_", 1, true), "server " .. pid .. " still running")
    end
    assert.is_true(n >= 8)      -- 4 probe runs + 4 wrk runs
  end)
end)
