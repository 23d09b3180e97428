-- Docs coverage (luv's docscov idea): every public function of the module
-- and every method of a file, task, ring and buffer has a heading in
-- docs/api.md or docs/ring.md, and no heading names something that is
-- gone.  A heading documents a name when a "### " line contains
-- `uring.name(  `file:name(  `task:name(  `ring:name(  `buf:name(
-- `sock:name(  or  `server:name(, and for uring.http's objects `ws:name(
-- and `req:name(
-- (ring.md puts several names on one heading; that counts for each).
local uring = require "uring"

-- the repository root, from this file's path (busted runs from the root,
-- but a path given on the command line may be absolute)
local root = (debug.getinfo(1, "S").source:match("^@(.*)spec/docs_spec%.lua$")) or ""
if root == "" then root = "./" end

local DOCS = { "docs/api.md", "docs/ring.md" }

local function readdoc (name)
  local f = assert(io.open(root .. name, "r"))
  local s = f:read("a")
  f:close()
  return s
end

-- prefix used in headings -> registry name of the metatable
local KINDS = {
  { prefix = "file", mt = "uring.file" },
  { prefix = "task", mt = "uring.task" },
  { prefix = "ring", mt = "uring.ring" },
  { prefix = "buf", mt = "uring.buffer" },
  { prefix = "sock", mt = "uring.socket" },
  { prefix = "server", mt = "uring.socket" },   -- a listening socket
  { prefix = "sig", mt = "uring.signal" },
  { prefix = "udp", mt = "uring.udp" },
  { prefix = "proc", mt = "uring.process" },
  { prefix = "w", mt = "uring.watch" },
  { prefix = "q", mt = "uring.queue" },
  { prefix = "s", mt = "uring.semaphore" },
  { prefix = "e", mt = "uring.event" },
  { prefix = "g", mt = "uring.group" },
  { prefix = "inspector", mt = "uring.inspector" },   -- uring.inspect's
}

-- objects whose methods are Lua tables (uring.http's), by heading prefix
local LUA_KINDS = {
  { prefix = "ws", methods = uring.http.WebSocket },
  { prefix = "req", methods = uring.http.Request },
  -- uring.workers' channel: its __index serves ch.id and ch.n too
  { prefix = "ch", methods = debug.getregistry()["uring.channel"].methods },
}

--- Every documented name, "uring.open" / "file:read" / ..., from the
-- "### " lines of the given texts: {name = "docs/x.md"}.
local function headings (texts)
  local found = {}
  for file, text in pairs(texts) do
    for line in text:gmatch("[^\n]+") do
      if line:match("^###%s") then
        -- `uring.version` (a field) has no parenthesis: allow it for uring.
        for name in line:gmatch("`uring%.([%w_]+)") do
          found["uring." .. name] = file
        end
        for obj, name in line:gmatch("`(%a+):([%w_]+)%(") do
          found[obj .. ":" .. name] = file
        end
      end
    end
  end
  return found
end

--- The public names that have no heading, sorted.
local function missing (names, found)
  local out = {}
  for _, n in ipairs(names) do
    if not found[n] then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

local function is_public (k)
  return type(k) == "string" and not k:match("^_")
    and not k:match("^%u[%u%d_]*$")   -- constants: O_RDONLY, IORING_*, ETIME
end

local function method_names (prefix, methods, out)
  for k, v in pairs(methods) do
    if is_public(k) and type(v) == "function" then
      out[#out + 1] = prefix .. ":" .. k
    end
  end
end

--- Every public name: the module's functions and each object's methods.
local function public_names ()
  local names = {}
  for k, v in pairs(uring) do
    if is_public(k) and type(v) == "function" then
      names[#names + 1] = "uring." .. k
    end
  end
  local reg = debug.getregistry()
  for _, kind in ipairs(KINDS) do
    local mt = assert(reg[kind.mt], "no metatable " .. kind.mt)
    assert(type(mt.__index) == "table", kind.mt .. ".__index is not a table")
    -- a socket's methods are documented once, as sock: (accept as server:)
    if kind.prefix ~= "server" then method_names(kind.prefix, mt.__index, names) end
  end
  for _, kind in ipairs(LUA_KINDS) do method_names(kind.prefix, kind.methods, names) end
  for i, n in ipairs(names) do
    if n == "sock:accept" then names[i] = "server:accept" end
  end
  table.sort(names)
  return names
end

describe("docs", function()
  local texts = {}
  for _, d in ipairs(DOCS) do texts[d] = readdoc(d) end
  local found = headings(texts)

  it("reach the method tables through real objects", function()
    -- the registry's metatables are the ones objects really carry
    local reg = debug.getregistry()
    local fmt, tmt = uring.run(function()
      local f = assert(uring.open(root .. "spec/docs_spec.lua"))
      local m = getmetatable(f)
      f:close()
      return m, getmetatable(uring.current())
    end)
    assert.equal(reg["uring.file"], fmt)
    assert.equal(reg["uring.task"], tmt)
    assert.equal(reg["uring.buffer"], getmetatable(uring.buffer(1)))
    -- lines() is added in Lua (file.lua): it must be in the same table
    assert.is_function(fmt.__index.lines)
  end)

  it("have a heading for every public function and method", function()
    local names = public_names()
    assert.is_true(#names > 40, "found only " .. #names .. " public names")
    local miss = missing(names, found)
    assert(#miss == 0, "no heading in docs/api.md or docs/ring.md for: "
      .. table.concat(miss, ", "))
  end)

  it("name nothing that does not exist", function()
    local reg = debug.getregistry()
    local methods = {}
    for _, kind in ipairs(KINDS) do methods[kind.prefix] = reg[kind.mt].__index end
    for _, kind in ipairs(LUA_KINDS) do methods[kind.prefix] = kind.methods end
    local stale = {}
    for name, file in pairs(found) do
      local obj, sep, key = name:match("^(%a+)([.:])([%w_]+)$")
      local exists
      if sep == "." then exists = obj == "uring" and uring[key] ~= nil
      else exists = methods[obj] ~= nil and methods[obj][key] ~= nil end
      if not exists then stale[#stale + 1] = name .. " (" .. file .. ")" end
    end
    table.sort(stale)
    assert(#stale == 0, "headings for names that do not exist: "
      .. table.concat(stale, ", "))
  end)

  it("check would fail for an undocumented function", function()
    -- the checker itself: a name added without a heading is reported,
    -- every one of them, and a documented one is not
    local fake = headings({ x = "### `uring.open(path)`\n### `file:read(...)`, `file:write(...)`\n" })
    local miss = missing({ "uring.open", "uring.brand_new", "file:write", "task:other" }, fake)
    assert.same({ "task:other", "uring.brand_new" }, miss)
    -- ALL_CAPS constants and _private names are not public
    assert.is_false(is_public("O_RDONLY"))
    assert.is_false(is_public("IORING_ASYNC_CANCEL_ANY"))
    assert.is_false(is_public("_scope_open"))
    assert.is_true(is_public("copyfile"))
  end)
end)
