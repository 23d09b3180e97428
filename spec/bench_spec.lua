-- spec/bench_spec.lua: the NOP bench still builds and runs (its quick mode:
-- one tiny round).  Not a timing test: it asserts the figures are printed,
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
