--- uring.http.static: a handler serving the files under a directory.
-- The bytes go from the page cache to the socket in the kernel
-- (sock:sendfile); Lua sees only the head.  With
-- Range (206, 416), validators (ETag, Last-Modified) and 304 for a client
-- that has the file already, and a directory listing when asked for.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"
local message = require "uring.http.message"
local server = require "uring.http.server"

local find, format, gsub, lower, match, sub = string.find, string.format, string.gsub,
  string.lower, string.match, string.sub
local argerror, typeerror, intask = check.argerror, check.typeerror, check.intask
local is_response = server.is_response
local entries = core._watch_entries   -- readdir of one directory (csrc/watch.c)
local file_meta = core._file_meta     -- fstat of an open file (csrc/copy.c)
local path_meta = core._path_meta     -- stat of a path, on this thread (csrc/copy.c)

local M = {}

local PLAIN = { ["Content-Type"] = "text/plain; charset=utf-8" }
local function plain(res, code, text)
  return res:reply(code, text, PLAIN)
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7,
  Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
-- days_from_civil): os.time would read it as local time
local function days(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- An HTTP date (RFC 9110's IMF-fixdate, the only form we send) as seconds
-- since the epoch; nil if it is not one.
local function parsedate(s)
  local d, mon, y, h, mi, sec = match(s, "^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  mon = MONTHS[mon or ""]
  if not mon then return nil end
  return days(tonumber(y), mon, tonumber(d)) * 86400 + tonumber(h) * 3600
    + tonumber(mi) * 60 + tonumber(sec)
end
M._parsedate = parsedate

local function httpdate(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
end

-- Does If-None-Match's list name etag?  Weak comparison (RFC 9110
-- 13.1.2): W/ is ignored on either side.
local function etag_matches(list, etag)
  if match(list, "^%s*%*%s*$") then return true end
  local bare = gsub(etag, "^W/", "")
  for tag in list:gmatch('[^,%s]+') do
    if gsub(tag, "^W/", "") == bare then return true end
  end
  return false
end

-- The one range of a "Range: bytes=..." header, clamped to size:
-- first, last (inclusive); false if none of it is in the file (416); nil
-- to ignore the header (not bytes, malformed, or several ranges: the
-- whole file is then sent, as RFC 9110 14.2 allows).
local function byterange(h, size)
  local spec = match(h, "^%s*bytes%s*=%s*(.-)%s*$")
  if not spec or find(spec, ",", 1, true) then return nil end
  local a, b = match(spec, "^(%d*)%s*%-%s*(%d*)$")
  if not a or (a == "" and b == "") then return nil end
  if #a > 18 or #b > 18 then return nil end   -- beyond any file
  if a == "" then                           -- the last b bytes
    local n = tonumber(b)
    if n == 0 or size == 0 then return false end
    if n > size then n = size end
    return size - n, size - 1
  end
  local first = tonumber(a)
  if b == "" and first >= size then return false end
  local last = b == "" and size - 1 or tonumber(b)
  if last < first then return nil end       -- malformed: ignored
  if first >= size then return false end
  if last >= size then last = size - 1 end
  return first, last
end
M._byterange = byterange

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }
local function html(s) return (gsub(s, "[&<>\"']", ESC)) end
local function urlpart(s)
  return (gsub(s, "[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end

-- A directory's names as an HTML page: subdirectories with a slash.
local function listing(res, path, urlpath)
  local list = entries(path)
  if not list then return plain(res, 403, "403 Forbidden\n") end
  local names = {}
  for name, isdir in pairs(list) do
    names[#names + 1] = isdir and name .. "/" or name
  end
  table.sort(names)
  local t = html(urlpath)
  local out = { "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ",
    t, "</title></head>\n<body><h1>Index of ", t, "</h1>\n<ul>\n" }
  if urlpath ~= "/" then out[#out + 1] = "<li><a href=\"../\">../</a></li>\n" end
  for _, n in ipairs(names) do
    local dir = sub(n, -1) == "/"
    local href = urlpart(dir and sub(n, 1, -2) or n) .. (dir and "/" or "")
    out[#out + 1] = format("<li><a href=\"%s\">%s</a></li>\n", href, html(n))
  end
  out[#out + 1] = "</ul></body></html>\n"
  return res:reply(200, table.concat(out), { ["Content-Type"] = "text/html; charset=utf-8" })
end

-- Does the request carry one of the headers serve_file reads
-- (If-None-Match, If-Modified-Since, If-Range, Range)?  Most carry none,
-- and making req.headers for them cost 14,000 of a 4 KiB request's 74,000
-- instructions (callgrind): req:has_header answers from the head as it
-- came, and the table is made only when one is there.  A request table
-- of the caller's own making (no Request): its headers.
local Request = server.Request
local has_header = Request.has_header
local function may_be_conditional(req)
  if getmetatable(req) ~= Request then return true end
  return has_header(req, "If-None-Match", "If-Modified-Since", "If-Range", "Range")
end

local NONE = {}

-- The validators, 304, the range, then the bytes by res:sendfile, for
-- an entry of the open-file cache (below).
local function serve_file(req, res, e)
  local etag, modified, size = e.etag, e.date, e.size
  res:header("ETag", etag)
  res:header("Last-Modified", modified)
  res:header("Accept-Ranges", "bytes")
  -- req.headers (lower-case names) read directly: one table rather than
  -- a method call and a lower() per header asked for
  local hs = may_be_conditional(req) and req.headers
  if type(hs) ~= "table" then hs = NONE end
  -- validators first (RFC 9110 13.2.2): If-None-Match wins over
  -- If-Modified-Since
  local inm = hs["if-none-match"]
  local fresh
  if inm then fresh = etag_matches(inm, etag)
  else
    local ims = hs["if-modified-since"]
    local t = ims and parsedate(ims)
    fresh = t ~= nil and e.mtime <= t
  end
  if fresh then return res:reply(304) end
  local first, last
  local range = hs.range
  if range then
    first, last = byterange(range, size)
    local ifr = hs["if-range"]
    if ifr and ifr ~= etag and ifr ~= modified then first = nil end
    if first == false then
      res:header("Content-Range", "bytes */" .. size)
      return plain(res, 416, "416 Range Not Satisfiable\n")
    end
  end
  res:header("Content-Type", e.type)
  local n = size
  if first then
    res:status(206)
    res:header("Content-Range", format("bytes %d-%d/%d", first, last, size))
    n = last - first + 1
  else
    first = 0
  end
  return res:sendfile(e.f, first, n)
end

-- The open-file cache, nginx's open_file_cache idea: a file served once
-- stays open, with its validators formatted, under the request's path.
-- Every request checks it with one stat(2) of the path on the loop
-- thread (core._path_meta): the same inode and device, it is the same
-- file (its size and mtime then current, so a file rewritten in place
-- gets new validators at once); another, or none, and the entry goes.
-- That replaces an OPENAT and a CLOSE through the ring and a task resume
-- per request.  At most CACHE_MAX files stay open; an entry dropped while
-- requests still send from it is closed (by the one close path,
-- file:close) when the last of them is done; the rest close when the
-- handler is collected.
local CACHE_MAX = 64

-- etag and date for the entry's size and mtime: formatting a date per
-- request cost more than the rest of the Lua of a 4 KiB answer
local function validators(e, size, mtime)
  e.size, e.mtime = size, mtime
  e.etag = format('"%x-%x"', mtime, size)
  e.date = httpdate(mtime)
end

--- uring.http.static(root [, opts]) -> handler(req, res [, relpath]).
-- Serves files under root for GET and HEAD: the path is the handler's
-- first route capture if any, else req.path minus opts.prefix.  A ".."
-- segment, a NUL or a backslash is refused (403); a directory serves its
-- index.html, or with opts.listing its names; Content-Type from the
-- extension (uring.http.MIME); ETag and Last-Modified, 304 for
-- If-None-Match / If-Modified-Since; one byte range (206, 416).
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
  local listing_on = opts.listing
  if listing_on ~= nil and type(listing_on) ~= "boolean" then
    argerror(2, "static", "listing must be a boolean, got " .. check.typename(listing_on))
  end
  local chunk = opts.chunk        -- accepted for compatibility: sendfile needs none
  if chunk ~= nil and (math.type(chunk) ~= "integer" or chunk < 1 or chunk > 1 << 30) then
    argerror(2, "static", "chunk must be an integer in 1..1073741824")
  end
  local cache, ncache = {}, 0      -- request path -> entry

  local function drop(key, e)
    if cache[key] == e then cache[key], ncache = nil, ncache - 1 end
    e.dead = true
    if e.users == 0 then e.f:close() end
  end

  -- A path not in the cache: a file is opened and its entry returned;
  -- anything else (a directory's redirect, index or listing, 403, 404)
  -- is answered here, and nil returned.
  local function lookup(req, res, rel)
    rel = message.unescape(rel)
    if find(rel, "%z") or find(rel, "\\", 1, true) then
      plain(res, 403, "403 Forbidden\n") return nil
    end
    for seg in string.gmatch(rel, "[^/]+") do
      if seg == ".." then plain(res, 403, "403 Forbidden\n") return nil end
    end
    local path = root .. "/" .. gsub(rel, "^/+", "")
    local st = uring.stat(path)
    if st and st.type == "directory" then
      if sub(req.path, -1) ~= "/" then
        res:header("Location", req.path .. "/")
        plain(res, 301, "301 Moved Permanently\n") return nil
      end
      local ist = index and uring.stat(gsub(path, "/*$", "/") .. index)
      if ist and ist.type == "file" then
        path, st = gsub(path, "/*$", "/") .. index, ist
      elseif listing_on then
        listing(res, path, req.path) return nil
      else
        plain(res, index and 404 or 403, index and "404 Not Found\n" or "403 Forbidden\n") return nil
      end
    end
    -- only a regular file is opened: opening a fifo would wait for a writer
    if not st or st.type ~= "file" then plain(res, 404, "404 Not Found\n") return nil end
    local f = uring.open(path, "rb")
    if not f then plain(res, 403, "403 Forbidden\n") return nil end
    local kind, size, mtime, ino, dev = file_meta(f)   -- the file as opened
    if kind ~= "file" then f:close(); plain(res, 404, "404 Not Found\n") return nil end
    local ext = match(path, "%.([%w]+)$")
    local e = { f = f, path = path, ino = ino, dev = dev, users = 0, dead = false,
      type = (ext and message.MIME[lower(ext)]) or "application/octet-stream" }
    validators(e, size, mtime)
    return e
  end

  return function(req, res, rel)
    -- each field read once: req.path is worked out per access (server.lua)
    local method, path = type(req) == "table" and req.method, type(req) == "table" and req.path
    if type(method) ~= "string" or type(path) ~= "string" then
      typeerror(1, "static handler", "request", req)
    end
    if not is_response(res) then typeerror(2, "static handler", "response", res) end
    if res:sent() then check.error("static handler: the response is already sent") end
    intask("static handler")
    if method ~= "GET" and method ~= "HEAD" then
      res:header("Allow", "GET, HEAD")
      return plain(res, 405, "405 Method Not Allowed\n")
    end
    if type(rel) ~= "string" then
      rel = path
      if prefix then
        if sub(rel, 1, #prefix) ~= prefix then return plain(res, 404, "404 Not Found\n") end
        rel = sub(rel, #prefix + 1)
      end
    end
    local e = cache[rel]
    if e then
      local kind, size, mtime, ino, dev = path_meta(e.path)
      if kind ~= "file" or ino ~= e.ino or dev ~= e.dev then
        drop(rel, e)
        e = nil
      elseif size ~= e.size or mtime ~= e.mtime then
        validators(e, size, mtime)
      end
    end
    if not e then
      e = lookup(req, res, rel)
      if not e then return end
      -- another task may have opened it meanwhile (lookup waits)
      if cache[rel] then drop(rel, cache[rel]) end
      if ncache >= CACHE_MAX then
        for k, old in pairs(cache) do drop(k, old) end
      end
      cache[rel], ncache = e, ncache + 1
    end
    e.users = e.users + 1
    local ok, err = pcall(serve_file, req, res, e)
    e.users = e.users - 1
    if e.dead and e.users == 0 then e.f:close() end
    if not ok then error(err, 0) end
  end
end

return M
