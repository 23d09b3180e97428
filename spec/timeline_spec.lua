-- bin/uring-timeline: a trace_export JSON drawn as SVG (or PNG), where a
-- batch shows as SQEs stacking up, one enter, CQEs fanning out.  The
-- pictures are read back: every bar and enter line carries its figures.
local uring = require "uring"
local helpers = require "helpers"

local TOOL = "lua5.4 bin/uring-timeline"

-- the requests and enters an SVG of uring-timeline draws
local function read_svg(path)
  local svg = helpers.readall(path)
  assert(svg:find("^<svg"), "not an SVG: " .. path)
  local bars, enters = {}, {}
  for attrs in svg:gmatch('<rect class="request" ([^>]*)>') do
    bars[#bars + 1] = { op = attrs:match('data%-op="([^"]*)"'),
      track = tonumber(attrs:match('data%-track="([^"]*)"')),
      ts = tonumber(attrs:match('data%-ts="([^"]*)"')),
      dur = tonumber(attrs:match('data%-dur="([^"]*)"')) }
  end
  for attrs in svg:gmatch('<line class="enter" ([^>]*)>') do
    enters[#enters + 1] = { ts = tonumber(attrs:match('data%-ts="([^"]*)"')),
      submitted = tonumber(attrs:match('data%-submitted="([^"]*)"')) }
  end
  return bars, enters
end

describe("bin/uring-timeline", function()
  local dir
  before_each(function() dir = helpers.tmpdir() end)
  after_each(function() helpers.rmrf(dir) end)

  it("draws examples/batch.lua's 1,000 reads going in with one enter", function()
    local json, svg = dir .. "/batch.json", dir .. "/batch.svg"
    local out, code = helpers.sh("timeout 120 " .. helpers.lua_cmd() .. " examples/batch.lua --trace " .. json)
    assert.equal(0, code, out)
    out, code = helpers.sh(TOOL .. " " .. json .. " " .. svg)
    assert.equal(0, code, out)
    assert.matches("1000 requests on 1000 tracks, 1 io_uring_enter calls; biggest batch: 1000 SQEs in one enter", out, 1, true)
    local bars, enters = read_svg(svg)
    local reads, last_start, first_end, tracks = 0, -math.huge, math.huge, {}
    for _, b in ipairs(bars) do
      if b.op == "read" then
        reads = reads + 1
        last_start = math.max(last_start, b.ts)
        first_end = math.min(first_end, b.ts + b.dur)
        tracks[b.track] = true
      end
    end
    assert.equal(1000, reads)
    local ntracks = 0
    for _ in pairs(tracks) do ntracks = ntracks + 1 end
    assert.equal(1000, ntracks)                      -- a row per task
    -- every SQE was prepared before any read completed, and exactly one
    -- enter lies between: it submitted all of them
    assert.is_true(last_start <= first_end)
    local between = {}
    for _, e in ipairs(enters) do
      if e.ts >= last_start and e.ts <= first_end then between[#between + 1] = e end
    end
    assert.equal(1, #between)
    assert.is_true(between[1].submitted >= 1000)
  end)

  it("draws a track per task, a bar per request and every enter of a small trace", function()
    local json, svg = dir .. "/t.json", dir .. "/t.svg"
    uring.trace(function() end)
    local ids = uring.run(function()
      local t = {}
      for i = 1, 3 do
        t[i] = uring.spawn(function() uring.nop(); uring.nop() end)
      end
      for i = 1, 3 do t[i]:join() end
      return { t[1]:id(), t[2]:id(), t[3]:id() }
    end)
    uring.trace(false)
    assert(uring.trace_export(json))
    local enters_in_log = select(2, helpers.readall(json):gsub('"name":"io_uring_enter"', ""))
    local out, code = helpers.sh(TOOL .. " " .. json .. " " .. svg)
    assert.equal(0, code, out)
    local bars, enters = read_svg(svg)
    local per = {}
    for _, b in ipairs(bars) do
      if b.op == "nop" then per[b.track] = (per[b.track] or 0) + 1 end
      assert.is_true(b.dur >= 0)
    end
    for _, id in ipairs(ids) do assert.equal(2, per[id]) end
    assert.equal(enters_in_log, #enters)
    assert.is_true(#enters >= 2)                     -- two rounds of nops at least
  end)

  it("writes a PNG through gnuplot", function()
    local json, png = dir .. "/t.json", dir .. "/t.png"
    uring.trace(function() end)
    uring.run(function() uring.nop() end)
    uring.trace(false)
    assert(uring.trace_export(json))
    local out, code = helpers.sh(TOOL .. " " .. json .. " " .. png)
    assert.equal(0, code, out)
    local bytes = helpers.readall(png)
    assert.equal("\137PNG\r\n\26\n", bytes:sub(1, 8))
    assert.is_true(#bytes > 2000)
  end)

  it("says what is wrong: usage, a missing file, a file that is not a trace", function()
    local out, code = helpers.sh(TOOL)
    assert.equal(2, code)
    assert.matches("usage: uring-timeline trace.json out.svg|out.png [title]", out, 1, true)
    out, code = helpers.sh(TOOL .. " x.json out.gif")
    assert.equal(2, code)
    assert.matches("must end in .svg or .png", out, 1, true)
    out, code = helpers.sh(TOOL .. " " .. dir .. "/none.json " .. dir .. "/o.svg")
    assert.equal(1, code)
    assert.matches("No such file or directory", out, 1, true)
    helpers.writeall(dir .. "/bad.json", '{"traceEvents": [1, 2')
    out, code = helpers.sh(TOOL .. " " .. dir .. "/bad.json " .. dir .. "/o.svg")
    assert.equal(1, code)
    assert.matches("bad JSON at byte", out, 1, true)
    helpers.writeall(dir .. "/other.json", '{"a": 1}')
    out, code = helpers.sh(TOOL .. " " .. dir .. "/other.json " .. dir .. "/o.svg")
    assert.equal(1, code)
    assert.matches("not a trace", out, 1, true)
  end)
end)
