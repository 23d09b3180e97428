--- uring.check: argument errors for the functions written in Lua, worded
-- as luaL_argerror and luaL_typeerror word them for the C functions, and
-- raised at the line that called the public function.
--
-- `level` is where that public function is, counted from the caller of
-- these helpers: 1 (the default) when a public function calls a helper
-- directly, 2 when it calls a local function that calls the helper.
-- Arguments are numbered as the C functions number their stack: a
-- method's self is #1.  As luaL_argerror does, a call written with ':'
-- counts from the first argument after self, and a bad self then reads
-- "calling 'name' on bad self".  A public function must not reach these
-- helpers through a tail call of its own (its frame would be gone):
-- `local r = f(); return r`.
local getinfo, getlocal, getmetatable = debug.getinfo, debug.getlocal, debug.getmetatable
local type, rawget, error, format, tostring, tonumber =
  type, rawget, error, string.format, tostring, tonumber
local mtype = math.type

local M = {}

--- check.typename(v) -> what luaL_typeerror calls v: its metatable's
-- __name when that is a string (uring.file, tcp{client}, ...), else its
-- type.
function M.typename(v)
  local mt = getmetatable(v)
  if mt ~= nil then
    local n = rawget(mt, "__name")
    if type(n) == "string" then return n end
  end
  return type(v)
end
local typename = M.typename

--- check.argerror(arg, name, msg [, level]): raises "bad argument #arg to
-- 'name' (msg)" at the line that called the public function.
function M.argerror(arg, name, msg, level)
  level = (level or 1) + 1           -- the public function, from here
  local ar = getinfo(level, "nt")
  local method = ar and ar.namewhat == "method"
  -- a tail call (`return sock:recv(0)`) keeps no name (a C function's
  -- keeps its caller's): a method (its first parameter is self) is taken
  -- as called with ':', the usual way, unless self is what is wrong
  -- (`return f.close("x")`: argument #1 reads right either way)
  if ar and ar.istailcall and not method and arg > 1 then
    method = getlocal(level, 1) == "self"
  end
  if method then
    arg = arg - 1
    if arg == 0 then
      error(format("calling '%s' on bad self (%s)", name, msg), level + 1)
    end
  end
  error(format("bad argument #%d to '%s' (%s)", arg, name, msg), level + 1)
end
local argerror = M.argerror

--- check.typeerror(arg, name, expected, v [, level]): "<expected>
-- expected, got <typename(v)>"; got may be given instead of v's name
-- (nil as "no value" where the argument was left out).
function M.typeerror(arg, name, expected, v, level, got)
  argerror(arg, name, format("%s expected, got %s", expected, got or typename(v)),
    (level or 1) + 1)
end
local typeerror = M.typeerror

--- check.error(msg [, level]): a programming error that is not about one
-- argument ("attempt to use a closed socket", "serve: the server is
-- already serving"), at the line that called the public function.
function M.error(msg, level)
  error(msg, (level or 1) + 2)
end

--- check.intask(name [, level]): a function that waits is called in a
-- task that can yield; else the error the C functions raise, here at the
-- caller's line rather than inside a Lua file of uring.
M.intask = require("uring.core")._intask   -- the core's own check, in C:
                                          -- one call on hot paths

--- check.is(v, methods) -> true when v is a userdata of the core whose
-- methods are `methods` (core.file_methods, core.socket_methods): the
-- tables the core exports, never the registry.
function M.is(v, methods)
  if type(v) ~= "userdata" then return false end
  local mt = getmetatable(v)
  return mt ~= nil and rawget(mt, "__index") == methods
end

--- check.callable(v): a function, or a value whose metatable has __call.
function M.callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return mt ~= nil and rawget(mt, "__call") ~= nil
end

--- check.string(arg, name, v [, level [, absent]]) -> v: a string (numbers
-- are taken as luaL_checkstring takes them, converted).  absent: say "no
-- value" for nil (an argument left out).
function M.string(arg, name, v, level, absent)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  typeerror(arg, name, "string", v, (level or 1) + 1,
    (absent and v == nil) and "no value" or nil)
end

--- check.integer(arg, name, v [, level]) -> v: an integer, or a float
-- with an integer value (converted), as luaL_checkinteger.
function M.integer(arg, name, v, level)
  if mtype(v) == "integer" then return v end
  if type(v) == "number" then
    local i = math.tointeger(v)
    if i then return i end
    argerror(arg, name, "number has no integer representation", (level or 1) + 1)
  end
  typeerror(arg, name, "number", v, (level or 1) + 1)
end

--- check.number(arg, name, v [, level]) -> v: a number (a numeric string
-- converted), as luaL_checknumber.
function M.number(arg, name, v, level)
  if type(v) == "number" then return v end
  local n = type(v) == "string" and tonumber(v) or nil
  if n then return n end
  typeerror(arg, name, "number", v, (level or 1) + 1)
end

--- check.table(arg, name, v [, level]) -> v
function M.table(arg, name, v, level)
  if type(v) ~= "table" then typeerror(arg, name, "table", v, (level or 1) + 1) end
  return v
end

--- check.opttable(arg, name, v [, level]) -> v or {}
function M.opttable(arg, name, v, level)
  if v == nil then return {} end
  if type(v) ~= "table" then typeerror(arg, name, "table", v, (level or 1) + 1) end
  return v
end

return M
