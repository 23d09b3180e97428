-- spec/bench_spec.lua: the benches still build and run (their quick modes:
-- one tiny round).  Not timing tests: they assert the figures are printed,
-- not what they are; `make bench` measures.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

-- rows of a results tsv: label, ratio, target, note
local function read_tsv(path)
  local rows = {}
  for line in io.lines(path) do
    local row = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do row[#row + 1] = field end
    rows[#rows + 1] = row
  end
  return rows
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
    local tsv = read_tsv("bench/results/nop.tsv")
    assert.equal(3, #tsv)
    assert.equal("nop-tasks vs c-batched", tsv[1][1])
  end)
end)

describe("bench/files.sh quick", function()
  it("builds bench/randread.c, runs every file contender and writes the ratios", function()
    local code, out = run("BENCH_QUICK=1 timeout 120 sh bench/files.sh")
    assert(code == 0, ("exit status %s:\n%s"):format(tostring(code), out))
    for _, name in ipairs { "uring-qd1", "luv-qd1", "io-qd1", "fio-uring-qd1",
        "fio-psync-qd1", "c-qd1", "uring-qd32", "luv-qd32", "fio-uring-qd32",
        "c-qd32", "d-uring-qd1", "d-fio-uring-qd1", "d-fio-psync-qd1",
        "d-c-qd1", "cold-io-qd1", "d-uring-qd32", "d-fio-uring-qd32",
        "d-c-qd32", "cold-luv-qd32", "cp", "uring-copyfile" } do
      assert.matches("median " .. name:gsub("%-", "%%-") .. " +[%d.]+ ", out)
    end
    assert.matches("ratio randread%-cache%-qd32 vs fio: [%d.]+", out)
    assert.matches("ratio randread%-disk%-qd32 vs fio: [%d.]+", out)
    assert.matches("ratio copy vs cp: [%d.]+", out)
    local tsv = read_tsv("bench/results/files.tsv")
    assert.equal(14, #tsv)
    for _, row in ipairs(tsv) do
      assert.equal(4, #row)
      assert.is_number(tonumber(row[2]))
    end
    assert.same({ "randread-cache-qd32 vs fio", "0.8" }, { tsv[1][1], tsv[1][3] })
    -- the copy was checked byte for byte and removed
    assert.is_nil(io.open("build/bench/files.copy"))
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
