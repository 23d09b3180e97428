-- The rockspec must build what the Makefile builds: every csrc/*.c and
-- every lua/uring/*.lua and lua/uring/*/*.lua is listed, so `luarocks
-- make` installs it all.
local function ls(pattern)
  local p = io.popen("ls " .. pattern)
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

describe("rockspec", function()
  local env = {}
  local chunk = assert(loadfile("rockspec/lua-uring-scm-1.rockspec", "t", env))
  chunk()

  it("lists every C source of the core", function()
    local listed = {}
    for _, s in ipairs(env.build.modules["uring.core"].sources) do listed[s] = true end
    for _, c in ipairs(ls("csrc/*.c")) do
      assert.is_true(listed[c] or false, c .. " missing from the rockspec")
    end
  end)

  it("lists every Lua module", function()
    local files = ls("lua/uring/*.lua lua/uring/*/*.lua")
    assert.is_true(#files > 10, "found only " .. #files .. " Lua files")
    for _, f in ipairs(files) do
      local name = f:match("lua/(.-)%.lua$"):gsub("/init$", ""):gsub("/", ".")
      assert.equal(f, env.build.modules[name], name .. " missing from the rockspec")
    end
  end)

  it("lists no Lua file that is not there", function()
    for name, v in pairs(env.build.modules) do
      if type(v) == "string" then
        local f = io.open(v)
        assert(f, name .. ": " .. v .. " does not exist")
        f:close()
      end
    end
  end)
end)
