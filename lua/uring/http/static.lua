--- uring.http.static: a handler serving the files under a directory.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local check = require "uring.check"
local message = require "uring.http.message"
local server = require "uring.http.server"

local find, gsub, lower, match, sub = string.find, string.gsub, string.lower,
  string.match, string.sub
local argerror, typeerror = check.argerror, check.typeerror

local M = {}

local CHUNK = 256 * 1024

local PLAIN = { ["Content-Type"] = "text/plain; charset=utf-8" }
local function plain(res, code, text)
  return res:reply(code, text, PLAIN)
end

--- uring.http.static(root [, opts]) -> handler(req, res [, relpath]).
-- Serves files under root for GET and HEAD: the path is the handler's
-- first route capture if any, else req.path minus opts.prefix.  A ".."
-- segment, a NUL or a backslash is refused (403); a directory serves its
-- index.html; Content-Type from the extension (uring.http.MIME), a
-- Content-Length, and the bytes read with file:pread in 256 KiB pieces
-- and sent through the ring (no splice/zero copy).
function M.static(root, opts)
  if type(root) ~= "string" then typeerror(1, "static", "string", root) end
  if opts ~= nil and type(opts) ~= "table" then typeerror(2, "static", "table", opts) end
  opts = opts or {}
  root = gsub(root, "/+$", "")
  local prefix = opts.prefix
  if prefix ~= nil and type(prefix) ~= "string" then
    argerror(2, "static", "prefix must be a string, got " .. check.typename(prefix))
  end
  local index = opts.index
  if index == nil then index = "index.html"
  elseif index ~= false and type(index) ~= "string" then
    argerror(2, "static", "index must be a string or false, got " .. check.typename(index))
  end
  local chunk = opts.chunk
  if chunk == nil then chunk = CHUNK
  elseif math.type(chunk) ~= "integer" or chunk < 1 or chunk > 1 << 30 then
    argerror(2, "static", "chunk must be an integer in 1..1073741824")
  end
  return function(req, res, rel)
    if type(req) ~= "table" or type(req.method) ~= "string" or type(req.path) ~= "string" then
      typeerror(1, "static handler", "request", req)
    end
    if not server.is_response(res) then typeerror(2, "static handler", "response", res) end
    if res:sent() then check.error("static handler: the response is already sent") end
    check.intask("static handler")
    if req.method ~= "GET" and req.method ~= "HEAD" then
      res:header("Allow", "GET, HEAD")
      return plain(res, 405, "405 Method Not Allowed\n")
    end
    if type(rel) ~= "string" then
      rel = req.path
      if prefix then
        if sub(rel, 1, #prefix) ~= prefix then return plain(res, 404, "404 Not Found\n") end
        rel = sub(rel, #prefix + 1)
      end
    end
    rel = message.unescape(rel)
    if find(rel, "%z") or find(rel, "\\", 1, true) then
      return plain(res, 403, "403 Forbidden\n")
    end
    for seg in string.gmatch(rel, "[^/]+") do
      if seg == ".." then return plain(res, 403, "403 Forbidden\n") end
    end
    local path = root .. "/" .. gsub(rel, "^/+", "")
    local st = uring.stat(path)
    if st and st.type == "directory" then
      if not index then return plain(res, 403, "403 Forbidden\n") end
      if sub(req.path, -1) ~= "/" then
        res:header("Location", req.path .. "/")
        return plain(res, 301, "301 Moved Permanently\n")
      end
      path = gsub(path, "/*$", "/") .. index
      st = uring.stat(path)
    end
    if not st or st.type ~= "file" then return plain(res, 404, "404 Not Found\n") end
    local f = uring.open(path, "rb")
    if not f then return plain(res, 403, "403 Forbidden\n") end
    local ext = match(path, "%.([%w]+)$")
    res:header("Content-Type", (ext and message.MIME[lower(ext)]) or "application/octet-stream")
    local size = st.size
    res:header("Content-Length", size)
    local ok, err = pcall(function()
      if req.method == "HEAD" or size == 0 then return res:finish() end
      local off = 0
      while off < size do
        local data = f:pread(math.min(chunk, size - off), off)
        if not data then break end                 -- shrank meanwhile
        off = off + #data
        if not res:write(data) then break end
      end
      if off < size then res._keep = false end -- short: the peer must not reuse
      return res:finish()
    end)
    f:close()
    if not ok then error(err, 0) end
  end
end

return M
