--- uring.http.router: routes by method and Lua pattern, for the server.
local check = require "uring.check"

local find, upper = string.find, string.upper
local concat, pack, unpack = table.concat, table.pack, table.unpack
local argerror, typeerror = check.argerror, check.typeerror

local M = {}

local Router = {}
Router.__index = Router
M.Router = Router

-- routers made by uring.http.router (a table given Router as metatable
-- is not one)
local ROUTERS = setmetatable({}, { __mode = "k" })

--- is(v) -> true when v is a router
function M.is(v) return ROUTERS[v] == true end

local function checkrouter(self, name, level)
  if not ROUTERS[self] then typeerror(1, name, "router", self, (level or 1) + 1) end
end

local function route(self, method, pattern, handler, name, first)
  if type(pattern) ~= "string" then typeerror(first, name, "string", pattern, 2) end
  if not check.callable(handler) then typeerror(first + 1, name, "function", handler, 2) end
  local rs = self._routes
  rs[#rs + 1] = { method = method, pattern = pattern, handler = handler }
  return self
end

--- router:route(method, pattern, handler) -> router.  pattern: a Lua
-- pattern matched against req.path; its captures are passed to the
-- handler after (req, res) and stored in req.params.
function Router:route(method, pattern, handler)
  checkrouter(self, "route")
  if method ~= nil and type(method) ~= "string" then
    typeerror(2, "route", "string", method)
  end
  method = (method == nil or method == "*") and "*" or upper(method)
  local r = route(self, method, pattern, handler, "route", 3)
  return r
end

for _, m in ipairs { "get", "post", "put", "delete", "patch", "head", "options", "any" } do
  local method = m == "any" and "*" or upper(m)
  Router[m] = function(self, pattern, handler)
    checkrouter(self, m)
    local r = route(self, method, pattern, handler, m, 2)
    return r
  end
end

-- router:dispatch and router(req, res): name is the one errors give
local function dispatch(self, req, res, name)
  checkrouter(self, name, 2)
  if type(req) ~= "table" then typeerror(2, name, "request", req, 2) end
  local path, method = req.path, req.method
  if type(path) ~= "string" then argerror(2, name, "request without a path", 2) end
  if type(res) ~= "table" or type(res.reply) ~= "function" or type(res.sent) ~= "function" then
    typeerror(3, name, "response", res, 2)
  end
  if res:sent() then check.error(name .. ": the response is already sent", 2) end
  local allow
  for _, rt in ipairs(self._routes) do
    local m = rt.method
    local caps = pack(find(path, rt.pattern))
    if caps[1] then
      if m == "*" or m == method or (m == "GET" and method == "HEAD") then
        if caps.n > 2 then
          req.params = { unpack(caps, 3, caps.n) }
          return rt.handler(req, res, unpack(caps, 3, caps.n))
        end
        req.params = {}
        return rt.handler(req, res)
      end
      allow = allow or {}
      allow[m] = true
      if m == "GET" then allow.HEAD = true end
    end
  end
  if allow then
    local list = {}
    for k in pairs(allow) do list[#list + 1] = k end
    table.sort(list)
    res:header("Allow", concat(list, ", "))
    return res:reply(405, "405 Method Not Allowed\n", { ["Content-Type"] = "text/plain" })
  end
  return res:reply(404, "404 Not Found\n", { ["Content-Type"] = "text/plain" })
end

--- router:dispatch(req, res): the handler of the first route whose method
-- and pattern match; 405 (with Allow) if only the pattern matched; 404.
-- GET routes also answer HEAD.
function Router:dispatch(req, res)
  local a, b, c = dispatch(self, req, res, "dispatch")
  return a, b, c
end

--- router(req, res): a router is a handler
function Router.__call(self, req, res)
  local a, b, c = dispatch(self, req, res, "__call")
  return a, b, c
end

-- routes as router{} and server{routes =} take them: a list of {method,
-- pattern, handler}; errors name argument `arg` of `name`, prefixed
local function check_routes(routes, name, arg, prefix, level)
  level = (level or 1) + 1
  for i, t in ipairs(routes) do
    local what
    if type(t) ~= "table" then
      what = ("route %d is a %s, not a table"):format(i, check.typename(t))
    elseif t[1] ~= nil and type(t[1]) ~= "string" then
      what = ("route %d: method must be a string"):format(i)
    elseif type(t[2]) ~= "string" then
      what = ("route %d: pattern must be a string"):format(i)
    elseif not check.callable(t[3]) then
      what = ("route %d: handler must be a function"):format(i)
    end
    if what then argerror(arg, name, prefix .. what, level) end
  end
end
M.check_routes = check_routes

--- uring.http.router([routes]) -> router.  routes: a list of
-- {method, pattern, handler} (method "*" or nil: any)
function M.router(routes)
  if routes ~= nil then
    if type(routes) ~= "table" then typeerror(1, "router", "table", routes) end
    check_routes(routes, "router", 1, "")
  end
  local r = setmetatable({ _routes = {} }, Router)
  ROUTERS[r] = true
  if routes then
    for _, t in ipairs(routes) do Router.route(r, t[1], t[2], t[3]) end
  end
  return r
end

return M
