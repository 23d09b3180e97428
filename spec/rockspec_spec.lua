-- The rockspec must build what the Makefile builds: every csrc/*.c and
-- every lua/uring/*.lua is listed, so `luarocks make` installs it all.
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
    for _, f in ipairs(ls("lua/uring/*.lua")) do
      local name = f:match("lua/uring/(.-)%.lua$")
      local mod = name == "init" and "uring" or "uring." .. name
      assert.equal(f, env.build.modules[mod], mod .. " missing from the rockspec")
    end
  end)
end)
