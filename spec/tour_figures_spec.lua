-- make tour (docs/tour_figures.lua): the figures docs/tour.md shows exist,
-- and the drawing works: a few quick steps drawn again into a temp dir.
local helpers = require "helpers"

local PNG = "\137PNG\r\n\26\n"

describe("make tour", function()
  it("has every figure docs/tour.md embeds, as a PNG in docs/img/", function()
    local tour = helpers.readall("docs/tour.md")
    local n = 0
    for path in tour:gmatch("!%[[^%]]*%]%((img/[^)]+)%)") do
      n = n + 1
      local bytes = helpers.readall("docs/" .. path)
      assert(bytes:sub(1, 8) == PNG, "docs/" .. path .. " is missing or not a PNG")
    end
    assert.is_true(n >= 11, "only " .. n .. " figures embedded")
  end)

  it("draws a trace, a bar chart and a clustered one from the steps' scripts", function()
    local dir = helpers.tmpdir()
    local out, code = helpers.sh("TOUR_IMG=" .. dir .. " timeout 120 " .. helpers.lua_cmd()
      .. " docs/tour_figures.lua step1_sq_cq step5_cancel step8_multishot")
    assert.equal(0, code, out)
    for _, name in ipairs { "step1_sq_cq.png", "step1_sq_cq.svg", "step5_cancel.png", "step8_multishot.png" } do
      local bytes = helpers.readall(dir .. "/" .. name)
      assert(#bytes > 1000, name .. " was not drawn")
      if name:match("png$") then assert.equal(PNG, bytes:sub(1, 8)) end
    end
    -- the five NOPs of step 1: five bars, and the submit that sent them
    local svg = helpers.readall(dir .. "/step1_sq_cq.svg")
    assert.equal(5, select(2, svg:gsub('<rect class="request" data%-op="nop"', "")))
    assert.matches('<line class="enter" data%-ts="[%d.]+" data%-submitted="5"', svg)
    out, code = helpers.sh("TOUR_IMG=" .. dir .. " " .. helpers.lua_cmd() .. " docs/tour_figures.lua nosuch")
    assert.equal(1, code)
    assert.matches("no figure nosuch %(have: step1_sq_cq ", out)
    helpers.rmrf(dir)
  end)
end)
