--- uring.http: a small HTTP/1.1 server and client over uring sockets, for
-- prototyping servers from a script or the REPL.
--
-- Server: one task per connection takes each request head whole from the
-- socket's buffer with sock:_take_request (checked and split by the C
-- parser in csrc/http.c; the bytes of pipelined requests simply wait in
-- the buffer, so requests on a connection are answered in order), calls
-- the handler, and sends each response with one send when its length is
-- known (chunked streaming otherwise).  The per-request path makes one
-- small table (req) and nothing else when the answer repeats the last
-- one: examples/http_hello.lua on it stays close to the hand-written
-- bench/http_uring.lua (bench/http.sh).  Client: http:// only; one
-- connection per request unless a client object (uring.http.client())
-- keeps them.
local uring = require "uring"
local core = require "uring.core"

local byte, find, lower, sub, format, match, gsub, upper =
  string.byte, string.find, string.lower, string.sub, string.format,
  string.match, string.gsub, string.upper
local concat, pack, unpack = table.concat, table.pack, table.unpack
local tonumber, tostring, type, pcall, setmetatable, rawget, next =
  tonumber, tostring, type, pcall, setmetatable, rawget, next

local http = {}

http.REASONS = {
  [100] = "Continue", [101] = "Switching Protocols",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout",
  [409] = "Conflict", [411] = "Length Required", [413] = "Content Too Large",
  [414] = "URI Too Long", [415] = "Unsupported Media Type",
  [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
}
local REASONS = http.REASONS

-- "HTTP/1.1 200 OK\r\n", built once per status code
local STATUS_LINE = setmetatable({}, { __index = function(t, code)
  local s = format("HTTP/1.1 %d %s\r\n", code, REASONS[code] or "Status")
  t[code] = s
  return s
end })

-- headers tables: keys are lower case; any case finds them
local HEADERS_MT = { __index = function(t, k)
  if type(k) == "string" then return rawget(t, lower(k)) end
end }
http.HEADERS_MT = HEADERS_MT

http.MIME = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  txt = "text/plain; charset=utf-8", css = "text/css; charset=utf-8",
  js = "text/javascript; charset=utf-8", mjs = "text/javascript; charset=utf-8",
  json = "application/json", xml = "application/xml", csv = "text/csv",
  md = "text/markdown; charset=utf-8", lua = "text/plain; charset=utf-8",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  svg = "image/svg+xml", ico = "image/x-icon", webp = "image/webp",
  wasm = "application/wasm", pdf = "application/pdf", zip = "application/zip",
  gz = "application/gzip", tar = "application/x-tar", mp4 = "video/mp4",
  mp3 = "audio/mpeg", woff = "font/woff", woff2 = "font/woff2",
}

--- uring.http.unescape(s) -> s with %XX decoded (and "+" kept)
function http.unescape(s)
  return (gsub(s, "%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- uring.http.escape(s) -> s with every byte but unreserved ones %XX-encoded
function http.escape(s)
  return (gsub(s, "[^%w%-%._~/]", function(c) return format("%%%02X", byte(c)) end))
end

---------------------------------------------------------------------------
-- Responses (server side)
---------------------------------------------------------------------------

local Response = {}
Response.__index = Response

-- lower-case names, remembered (handlers set the same few names)
local lower_n = 0
local LOWER = setmetatable({}, { __index = function(t, k)
  local l = lower(k)
  if lower_n >= 1024 then
    for key in pairs(t) do t[key] = nil end
    lower_n = 0
  end
  t[k] = l
  lower_n = lower_n + 1
  return l
end })

--- res:status(code) -> res
function Response:status(code)
  if math.type(code) ~= "integer" or code < 100 or code > 999 then
    error("bad argument #1 to 'status' (HTTP status code expected)", 2)
  end
  if self._sent then error("status: headers already sent", 2) end
  self._code = code
  return self
end

-- header names (to their lower case) and values already checked, as
-- handlers set the same few again and again
local checked_n = 0
local NAMES, CLEAN = {}, {}

-- res:header's checks, for a name or value not seen before: then the
-- header is set by Response.header with both cached
local function header_checked(self, name, value)
  if type(name) ~= "string" then
    error("bad argument #1 to 'header' (string expected, got " .. type(name) .. ")", 3)
  end
  if self._sent then error("header: headers already sent", 3) end
  if value ~= nil then
    if type(value) ~= "string" then value = tostring(value) end
    if find(value, "\n", 1, true) or find(value, "\r", 1, true) then
      error("bad argument #2 to 'header' (CR or LF in value)", 3)
    end
  end
  local l = LOWER[name]
  -- framing headers are the server's: never cached, so the fast path in
  -- Response.header needs no test for them
  if l == "content-length" then self._len = value and tonumber(value) or false; return self end
  if l == "connection" then
    if value and find(lower(value), "close", 1, true) then self._keep = false end
    return self
  end
  if l == "transfer-encoding" then return self end
  if checked_n >= 1024 then NAMES, CLEAN, checked_n = {}, {}, 0 end
  NAMES[name] = l
  if value ~= nil then CLEAN[value] = true end
  checked_n = checked_n + 1
  return Response.header(self, name, value)
end

--- res:header(name, value) -> res: sets a header, replacing one of the
-- same name in any case; value nil removes it.  Content-Length is taken as
-- the body's length; Transfer-Encoding is the server's choice (ignored).
function Response:header(name, value)
  local l = NAMES[name]
  if not l or self._sent or (value ~= nil and not CLEAN[value]) then
    return header_checked(self, name, value)
  end
  -- the response's array part holds name, value pairs in its first
  -- 2 * _hn slots (reused per connection: no table per response)
  local h, n = self, self._hn
  for i = 1, 2 * n, 2 do
    if LOWER[h[i]] == l then
      if value == nil then
        table.move(h, i + 2, 2 * n, i)
        h[2 * n - 1], h[2 * n] = nil, nil
        self._hn = n - 1
      else h[i + 1] = value end
      return self
    end
  end
  if value ~= nil then
    h[2 * n + 1], h[2 * n + 2] = name, value
    self._hn = n + 1
  end
  return self
end

--- res:get_header(name) -> value | nil (any case)
function Response:get_header(name)
  local h, l = self, lower(name)
  if l == "content-length" then return self._len and tostring(self._len) or nil end
  for i = 1, 2 * self._hn, 2 do if lower(h[i]) == l then return h[i + 1] end end
  return nil
end

-- the head of the response: status line, headers, framing, Connection
local function head(self, framing)
  local h, n = self, self._hn
  local t = STATUS_LINE[self._code]
  local conn = self._keep and "Connection: keep-alive\r\n\r\n" or "Connection: close\r\n\r\n"
  if n == 1 then return t .. h[1] .. ": " .. h[2] .. "\r\n" .. framing .. conn end
  if n == 0 then return t .. framing .. conn end
  local parts = { t }
  for i = 1, 2 * n, 2 do
    parts[#parts + 1] = h[i] .. ": " .. h[i + 1] .. "\r\n"
  end
  parts[#parts + 1] = framing
  parts[#parts + 1] = conn
  return concat(parts)
end

local function send(self, data)
  local ok, msg = self._sock:send(data)
  if not ok then
    self._keep = false
    self._err = msg or "send failed"
    return nil, msg
  end
  return true
end

--- res:write(chunk) -> true | nil, err: streams a part of the body.  With
-- no Content-Length set, the body is sent chunked (HTTP/1.1) or delimited
-- by closing the connection (HTTP/1.0).
function Response:write(data)
  if data == nil then return true end
  if type(data) == "number" then data = tostring(data) end
  if type(data) ~= "string" then
    error("bad argument #1 to 'write' (string expected, got " .. type(data) .. ")", 2)
  end
  if self._done then error("write: response already finished", 2) end
  if self._err then return nil, self._err end
  local nobody = self._head_only or self._code == 204 or self._code == 304
  if not self._sent then
    self._sent = true
    local framing
    if self._len then
      framing = "Content-Length: " .. self._len .. "\r\n"
      self._mode = "length"
    elseif nobody then
      framing = ""
      self._mode = "length"
    elseif self._v10 then
      self._keep = false
      framing = ""
      self._mode = "close"
    else
      framing = "Transfer-Encoding: chunked\r\n"
      self._mode = "chunked"
    end
    local h = head(self, framing)
    if nobody or data == "" then return send(self, h) end
    if self._mode == "chunked" then
      return send(self, h .. format("%x\r\n", #data) .. data .. "\r\n")
    end
    return send(self, h .. data)
  end
  if nobody or data == "" then return true end
  if self._mode == "chunked" then
    return send(self, format("%x\r\n", #data) .. data .. "\r\n")
  end
  return send(self, data)
end

-- the last response finish() built whole: code, body argument, _len,
-- keep, head only, header count, first header's name and value, bytes
local MEMO = {}

--- res:finish([body]) -> true | nil, err: ends the response.  Before any
-- write, the whole response goes out in one send with a Content-Length.
function Response:finish(body)
  if self._done then return true end
  local m = MEMO
  -- the same response as the last one (a hello server, a health check):
  -- its bytes are sent again as they are.  One memo for every connection:
  -- their answers then share one string, which stays in the cache
  if m[2] == body and m[1] == self._code and not self._sent
      and m[4] == self._keep and m[5] == self._head_only and m[3] == self._len
      and m[6] == self._hn and (m[6] == 0 or (m[7] == self[1] and m[8] == self[2])) then
    self._done, self._sent = true, true
    local ok, msg = self._sock:send(m[9])
    if ok then return true end
    self._keep = false
    self._err = msg or "send failed"
    return nil, msg
  end
  local arg = body
  if body ~= nil and type(body) ~= "string" then
    if type(body) == "number" then body = tostring(body)
    else error("bad argument #1 to 'finish' (string expected, got " .. type(body) .. ")", 2) end
  end
  if not self._sent then
    self._done = true
    self._sent = true
    body = body or ""
    local code = self._code
    if code == 204 or code == 304 or (code >= 100 and code < 200) then
      return send(self, head(self, ""))
    end
    local len = self._len or #body
    local hn, hh = self._hn, self
    local out = head(self, "Content-Length: " .. len .. "\r\n")
    if not self._head_only then out = out .. body end
    if hn <= 1 and #body <= 4096 and type(arg) ~= "number" then
      m[1], m[2], m[3], m[4], m[5], m[6] = code, arg, self._len, self._keep, self._head_only, hn
      m[7], m[8], m[9] = hh[1], hh[2], out
    end
    return send(self, out)
  end
  if body and body ~= "" then
    local ok, err = self:write(body)
    if not ok then self._done = true; return nil, err end
  end
  self._done = true
  if self._err then return nil, self._err end
  if self._mode == "chunked" then return send(self, "0\r\n\r\n") end
  return true
end

--- res:reply(status, body [, headers]) -> true | nil, err
function Response:reply(code, body, headers)
  self:status(code)
  if headers then for k, v in pairs(headers) do self:header(k, v) end end
  return self:finish(body)
end

function Response:sent() return self._sent == true end

http.Response = Response

---------------------------------------------------------------------------
-- Requests (server side)
---------------------------------------------------------------------------

local Request = {}
local http_headers = core._http_headers

-- A request table holds what every request has (method, target, socket,
-- _head: the header lines as they came, checked by the C parser) and the
-- rest only when it differs from the usual: path and query (a target with
-- "?"), version ("1.0"), body (not empty).  The rest is worked out here
-- when a handler asks: each field a table holds costs every request, and
-- a hello-world handler asks for none.
function Request.__index(req, k)
  if k == "path" then return rawget(req, "target")
  elseif k == "version" then return "1.1"
  elseif k == "body" then return ""
  elseif k == "headers" then
    local h = http_headers(rawget(req, "_head") or "", HEADERS_MT)
    req.headers = h
    return h
  end
  return Request[k]
end

--- req:header(name) -> value | nil (any case)
function Request:header(name) return self.headers[lower(name)] end

http.Request = Request

---------------------------------------------------------------------------
-- Reading a request from a socket
---------------------------------------------------------------------------

local TOO_BIG = {}       -- sentinels
local BAD = {}

-- a line of at most `max` bytes; nil at EOF/close; TOO_BIG
local function readline(sock, max)
  while true do
    local line = sock:_take_line(false, true)
    if line then return line end
    if sock:_buffered() > max then return TOO_BIG end
    local ok = sock:_fill()
    if not ok then return nil end
  end
end

local function readn(sock, n)
  return sock:receive(n)
end

-- the body of a chunked message, decoded (trailers are read and dropped)
local function read_chunked(sock, max, maxline)
  local parts, total = {}, 0
  while true do
    local line = readline(sock, maxline)
    if line == nil then return nil end
    if line == TOO_BIG then return BAD end
    local size = tonumber(match(line, "^%s*(%x+)"), 16)
    if not size then return BAD end
    if size == 0 then break end
    total = total + size
    if total > max then return TOO_BIG end
    local data = readn(sock, size)
    if not data then return nil end
    parts[#parts + 1] = data
    local crlf = readline(sock, maxline)
    if crlf ~= "" then return crlf == nil and nil or BAD end
  end
  while true do                 -- trailer section, up to the blank line
    local line = readline(sock, maxline)
    if line == nil then return nil end
    if line == TOO_BIG then return BAD end
    if line == "" then break end
  end
  return concat(parts)
end

---------------------------------------------------------------------------
-- Router
---------------------------------------------------------------------------

local Router = {}
Router.__index = Router

--- uring.http.router([routes]) -> router.  routes: a list of
-- {method, pattern, handler} (method "*" or nil: any)
function http.router(routes)
  local r = setmetatable({ _routes = {} }, Router)
  if routes then
    for _, t in ipairs(routes) do r:route(t[1], t[2], t[3]) end
  end
  return r
end

--- router:route(method, pattern, handler) -> router.  pattern: a Lua
-- pattern matched against req.path; its captures are passed to the
-- handler after (req, res) and stored in req.params.
function Router:route(method, pattern, handler)
  if method ~= nil and type(method) ~= "string" then
    error("bad argument #1 to 'route' (method string expected)", 2)
  end
  if type(pattern) ~= "string" then
    error("bad argument #2 to 'route' (pattern string expected)", 2)
  end
  if type(handler) ~= "function" and not (type(handler) == "table" and
      getmetatable(handler) and getmetatable(handler).__call) then
    error("bad argument #3 to 'route' (function expected)", 2)
  end
  method = (method == nil or method == "*") and "*" or upper(method)
  local rs = self._routes
  rs[#rs + 1] = { method = method, pattern = pattern, handler = handler }
  return self
end

for _, m in ipairs { "get", "post", "put", "delete", "patch", "head", "options" } do
  Router[m] = function(self, pattern, handler)
    return self:route(upper(m), pattern, handler)
  end
end
function Router:any(pattern, handler) return self:route("*", pattern, handler) end

--- router:dispatch(req, res): the handler of the first route whose method
-- and pattern match; 405 (with Allow) if only the pattern matched; 404.
-- GET routes also answer HEAD.
function Router:dispatch(req, res)
  local path, method = req.path, req.method
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

Router.__call = function(self, req, res) return self:dispatch(req, res) end

---------------------------------------------------------------------------
-- Static files
---------------------------------------------------------------------------

local CHUNK = 256 * 1024

--- uring.http.static(root [, opts]) -> handler(req, res [, relpath]).
-- Serves files under root for GET and HEAD: the path is the handler's
-- first route capture if any, else req.path minus opts.prefix.  A ".."
-- segment, a NUL or a backslash is refused (403); a directory serves its
-- index.html; Content-Type from the extension (uring.http.MIME), a
-- Content-Length, and the bytes read with file:pread in 256 KiB pieces
-- and sent through the ring (no splice/zero copy).
function http.static(root, opts)
  if type(root) ~= "string" then
    error("bad argument #1 to 'static' (string expected, got " .. type(root) .. ")", 2)
  end
  opts = opts or {}
  root = gsub(root, "/+$", "")
  local prefix = opts.prefix
  local index = opts.index == nil and "index.html" or opts.index
  local chunk = opts.chunk or CHUNK
  local function plain(res, code, text)
    return res:reply(code, text, { ["Content-Type"] = "text/plain; charset=utf-8" })
  end
  return function(req, res, rel)
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
    rel = http.unescape(rel)
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
    res:header("Content-Type", (ext and http.MIME[lower(ext)]) or "application/octet-stream")
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

---------------------------------------------------------------------------
-- Server
---------------------------------------------------------------------------

local Server = {}
Server.__index = Server

local function plain_error(code)
  local body = code .. " " .. (REASONS[code] or "Error") .. "\n"
  return STATUS_LINE[code] .. "Content-Type: text/plain\r\nContent-Length: "
    .. #body .. "\r\nConnection: close\r\n\r\n" .. body
end
local ERR = setmetatable({}, { __index = function(t, code)
  local s = plain_error(code); t[code] = s; return s
end })
local CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n"

local function default_on_error(err)
  io.stderr:write("uring.http: handler error: ", tostring(err), "\n")
end

--- uring.http.server(opts) -> server.  opts: host (default "127.0.0.1"),
-- port (default 0), handler = fn(req, res) | router | routes = {{method,
-- pattern, fn}, ...}; max_body (bytes, default 8 MiB: larger is 413),
-- max_header (bytes of the request line, larger is 414, and of the header
-- lines together, larger is 431; default 16 KiB),
-- idle_timeout (seconds a kept-alive connection may wait for its next
-- request, default 60), grace (seconds close() lets requests in flight
-- finish, default 5), on_error(err, req) (default: a line on stderr),
-- backlog, reuseport.
function http.server(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'server' (table expected, got " .. type(opts) .. ")", 2)
  end
  local handler = opts.handler
  if handler == nil and opts.routes then
    handler = getmetatable(opts.routes) == Router and opts.routes or http.router(opts.routes)
  end
  if handler == nil then error("bad argument #1 to 'server' (handler or routes expected)", 2) end
  if getmetatable(handler) == Router then
    local r = handler
    handler = function(req, res) return r:dispatch(req, res) end
  end
  local lsock, msg, en = uring.listen(opts.host or "127.0.0.1", opts.port or 0,
    { backlog = opts.backlog or 1024, reuseport = opts.reuseport })
  if not lsock then return nil, msg, en end
  local self = setmetatable({
    _lsock = lsock, _handler = handler, _conns = {}, _nconns = 0,
    max_body = opts.max_body or 8 * 1024 * 1024,
    max_header = opts.max_header or 16 * 1024,
    idle_timeout = opts.idle_timeout == nil and 60 or opts.idle_timeout,
    grace = opts.grace or 5,
    on_error = opts.on_error or default_on_error,
    requests = 0, connections = 0,
  }, Server)
  self._host, self._port = lsock:getsockname()
  return self
end

--- server:port() -> the port listened on (port 0 lets the kernel choose)
function Server:port() return self._port end

--- server:getsockname() -> host, port
function Server:getsockname() return self._host, self._port end

-- one connection: requests in order until close, error or shutdown.  Each
-- request head is taken whole from the socket's buffer by the C parser
-- (sock:_take_request, csrc/http.c): pipelined requests are simply the
-- next heads in the buffer.
local function connection(self, sock)
  local conns = self._conns
  local handler, on_error = self._handler, self.on_error
  local max_header, max_body = self.max_header, self.max_body
  local take, fill = sock._take_request, sock._fill
  -- one response object per connection, reset for each request; it also
  -- holds the connection's state (_keep, _v10, _busy, _last, _task,
  -- _killed) for the sweeper and close(): one table to touch per request
  local res = setmetatable({ _code = 200, _sock = sock, _hn = 0,
    _len = false, _sent = false, _done = false, _err = false, _mode = false,
    _head_only = false, _keep = true, _v10 = false, _busy = false,
    _last = self._clock, _task = uring.current(), _killed = false }, Response)
  local st = res
  conns[sock] = st
  self._nconns = self._nconns + 1
  sock:setoption("nodelay", true)
  while not self._closing do
    local method, target, path, query, v10, lines, keep, cl, te, expect =
      take(sock, max_header)
    if not method then
      -- nil: nothing of a request yet (idle: the sweeper and close() may
      -- end it); false: part of a head (busy)
      if method == nil then st._busy = false; st._last = self._clock end
      if not fill(sock) then break end
    elseif not target then           -- a bad head: its status
      st._busy = true
      sock:send(ERR[method])
      break
    else
      st._busy = true
      -- the body
      local body = ""
      if te then
        if lower(te) ~= "chunked" then sock:send(ERR[501]); break end
        if expect and lower(expect) == "100-continue" then
          sock:send(CONTINUE)
        end
        body = read_chunked(sock, max_body, max_header)
        if body == nil then break end
        if body == BAD then sock:send(ERR[400]); break end
        if body == TOO_BIG then sock:send(ERR[413]); break end
      elseif cl then
        if cl > max_body then sock:send(ERR[413]); break end
        if cl > 0 then
          if expect and lower(expect) == "100-continue" then
            sock:send(CONTINUE)
          end
          body = sock:receive(cl)
          if not body then break end
        end
      end
      if self._closing then keep = false end
      st._keep, st._v10 = keep, v10
      local req = setmetatable({ method = method, target = target, _head = lines,
        socket = sock }, Request)
      if path then req.path, req.query = path, query end
      if v10 then req.version = "1.0" end
      if body ~= "" then req.body = body end
      -- the response, reset (false, not nil: the fields stay in the table, so setting them is
      -- the VM's fast path)
      res._code, res._hn, res._len, res._sent, res._done = 200, 0, false, false, false
      res._err, res._mode, res._head_only = false, false, method == "HEAD"
      self.requests = self.requests + 1
      local ok, r1, r2, r3 = pcall(handler, req, res)
      if not ok then
        if st._killed then break end               -- past close()'s grace
        pcall(on_error, r1, req)
        if not res._sent then
          st._keep = false
          sock:send(ERR[500])
        end
        break
      end
      if not res._done then
        if not res._sent and math.type(r1) == "integer" then
          -- return status, body [, headers]
          if r3 then for k, v in pairs(r3) do res:header(k, v) end end
          res._code = r1
          res:finish(r2)
        else
          res:finish()
        end
      end
      if not st._keep or res._err then break end
    end
  end
end

-- the connection's task: its loop, then the clean-up whatever happened (a
-- socket close() closed under it raises "attempt to use a closed socket";
-- past the grace deadline the task is cancelled)
local function connection_task(self, sock)
  local ok, err = pcall(connection, self, sock)
  local conns = self._conns
  local st = conns[sock]
  if st then conns[sock] = nil; self._nconns = self._nconns - 1 end
  sock:close()
  if not ok and not (st and st._killed) and not self._closing
      and not find(tostring(err), "closed socket", 1, true) then
    error(err, 0)
  end
end

-- Closes connections idle for idle_timeout.  It also keeps self._clock,
-- the time at its last step, which connections stamp themselves with when
-- they go idle (no clock call per request): a stamp is at most one step
-- old, so a connection is closed only once it is surely idle long enough.
local function sweeper(self)
  local idle = self.idle_timeout
  local step = math.max(0.05, math.min(1, idle / 4))
  while true do
    uring.sleep(step)
    local now = uring.now()
    self._clock = now
    local t = now - idle - step
    for sock, st in pairs(self._conns) do
      if not st._busy and st._last < t then sock:close() end
    end
  end
end

--- server:serve(): accepts and serves until server:close(); then waits
-- for the connections to end (at most `grace` seconds after close) and
-- returns.  Run it as a task to keep the REPL or script going:
-- uring.spawn(srv.serve, srv).
function Server:serve()
  if self._serving then error("serve: the server is already serving", 2) end
  self._serving = true
  local sweep
  -- However serve ends, its sweeper ends with it (an error here left it
  -- sleeping forever, and uring.run with it); if it ends by an error (out
  -- of memory, a cancel) the server closes: a listener nobody accepts on
  -- leaves its clients hanging.
  local _ <close> = setmetatable({}, { __close = function(_, err)
    if sweep then sweep:cancel() end
    if err ~= nil then self:close() end
  end })
  self._clock = uring.now()
  if self.idle_timeout and self.idle_timeout > 0 then
    sweep = uring.spawn(sweeper, self)
  end
  local lsock = self._lsock
  -- closed before this task first ran: no accept on the closed listener
  local delay = 0
  while not self._closing do
    local sock, msg = lsock:accept()
    if sock then
      delay = 0
      if self._closing then sock:close(); break end
      self.connections = self.connections + 1
      local ok, err = pcall(uring.spawn, connection_task, self, sock)
      if not ok then sock:close(); error(err, 0) end
    elseif self._closing or msg == "closed" then
      break
    else
      -- a failure that may pass (no memory, no free fd; it used to end
      -- serve without a word): report it, back off, accept again
      pcall(self.on_error, msg)
      delay = math.min(1, math.max(0.005, delay * 2))
      uring.sleep(delay)
    end
  end
  if sweep then sweep:cancel() end
  self._closing = true
  -- idle kept-alive connections go now; busy ones may finish
  local deadline = uring.now() + self.grace
  while next(self._conns) do
    local late = uring.now() >= deadline
    for sock, st in pairs(self._conns) do
      if late and st._busy and not st._killed then
        st._killed = true                           -- its handler is cut short
        if st._task and st._task ~= uring.current() then st._task:cancel() end
      end
      if not st._busy or late then sock:close() end
      if st._killed then self._conns[sock] = nil; self._nconns = self._nconns - 1 end
    end
    if not next(self._conns) then break end
    uring.sleep(0.01)
  end
  self._serving = false
  return true
end

--- server:close(): stops accepting at once; serve() then lets requests
-- in flight finish (with Connection: close) for at most opts.grace seconds,
-- closes the rest and returns.  Does not wait; calling it again is harmless.
function Server:close()
  if self._closing and self._lsock_closed then return true end
  self._closing = true
  self._lsock_closed = true
  self._lsock:close()
  -- idle connections: closed now (busy ones close after their response)
  for sock, st in pairs(self._conns) do
    if st._busy then st._keep = false else sock:close() end
  end
  return true
end

function Server:__close() self:close() end

http.Server = Server

---------------------------------------------------------------------------
-- Client
---------------------------------------------------------------------------

--- uring.http.parse_url(url) -> {host, port, path, authority} | nil, err
function http.parse_url(url)
  if type(url) ~= "string" then return nil, "url must be a string" end
  local scheme, rest = match(url, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "invalid url: " .. url end
  scheme = lower(scheme)
  if scheme ~= "http" then
    return nil, "unsupported scheme '" .. scheme .. "' (uring.http speaks http:// only)"
  end
  local authority, path = match(rest, "^([^/?#]*)(.*)$")
  path = gsub(path, "#.*$", "")
  if path == "" then path = "/" elseif sub(path, 1, 1) == "?" then path = "/" .. path end
  authority = gsub(authority, "^.*@", "")      -- userinfo is not supported: dropped
  local host, port = match(authority, "^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = match(authority, "^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil, "invalid url: " .. url end
  port = port ~= "" and tonumber(port) or 80
  return { host = host, port = port, path = path, authority = authority }
end

-- read a response from sock; returns res table, reusable | nil, err
local function read_response(sock, method, maxline)
  local line
  repeat
    line = readline(sock, maxline)
    if line == nil then return nil, "closed" end
    if line == TOO_BIG then return nil, "status line too long" end
  until line ~= ""
  local minor, status, reason = match(line, "^HTTP/1%.(%d) (%d%d%d) ?(.*)$")
  if not status then return nil, "bad status line: " .. line end
  status = tonumber(status)
  local headers = setmetatable({}, HEADERS_MT)
  while true do
    local h = readline(sock, maxline)
    if h == nil then return nil, "closed" end
    if h == TOO_BIG then return nil, "header too long" end
    if h == "" then break end
    local name, value = match(h, "^([^:%s]+):%s*(.-)%s*$")
    if name then
      name = lower(name)
      local old = rawget(headers, name)
      headers[name] = old and (old .. ", " .. value) or value
    end
  end
  if status >= 100 and status < 200 then               -- interim: the next one
    return read_response(sock, method, maxline)
  end
  local reusable = minor ~= "0"
  local conn = headers.connection
  if conn then
    conn = lower(conn)
    if find(conn, "close", 1, true) then reusable = false
    elseif find(conn, "keep-alive", 1, true) then reusable = true end
  end
  local body = ""
  local te, cl = headers["transfer-encoding"], headers["content-length"]
  if method == "HEAD" or status == 204 or status == 304 then
    body = ""
  elseif te and find(lower(te), "chunked", 1, true) then
    body = read_chunked(sock, math.huge, maxline)
    if body == nil then return nil, "closed" end
    if body == BAD or body == TOO_BIG then return nil, "bad chunked body" end
  elseif cl then
    local n = tonumber(cl)
    if not n then return nil, "bad Content-Length" end
    if n > 0 then
      local b, err = sock:receive(n)
      if not b then return nil, err end
      body = b
    end
  else
    local b, err = sock:receive("*a")
    if not b then return nil, err end
    body = b
    reusable = false
  end
  return { status = status, reason = reason, headers = headers, body = body,
           version = "1." .. minor }, reusable
end

local function build_request(u, method, opts, keep)
  local hs = opts.headers or {}
  local have = {}
  local parts = { method, " ", u.path, " HTTP/1.1\r\n" }
  for k, v in pairs(hs) do
    have[lower(k)] = true
    parts[#parts + 1] = k .. ": " .. tostring(v) .. "\r\n"
  end
  if not have.host then parts[#parts + 1] = "Host: " .. u.authority .. "\r\n" end
  if not have["user-agent"] then parts[#parts + 1] = "User-Agent: lua-uring\r\n" end
  local body = opts.body
  if body ~= nil and type(body) ~= "string" then body = tostring(body) end
  if body and not have["content-length"] and not have["transfer-encoding"] then
    parts[#parts + 1] = "Content-Length: " .. #body .. "\r\n"
  elseif not body and (method == "POST" or method == "PUT") and not have["content-length"] then
    parts[#parts + 1] = "Content-Length: 0\r\n"
  end
  if not have.connection then
    parts[#parts + 1] = keep and "Connection: keep-alive\r\n" or "Connection: close\r\n"
  end
  parts[#parts + 1] = "\r\n"
  if body then parts[#parts + 1] = body end
  return concat(parts)
end

local Client = {}
Client.__index = Client

--- uring.http.client([opts]) -> client: keeps idle connections per
-- host:port (at most opts.max_idle each, default 4) for client:request;
-- client:close() closes them.  Idle connections hold no task and nothing
-- in flight, so they never keep uring.run going; close the client before
-- the run ends (or use <close>) so their sockets go at once.
function http.client(opts)
  opts = opts or {}
  return setmetatable({ _idle = {}, max_idle = opts.max_idle or 4,
    timeout = opts.timeout, connections = 0 }, Client)
end

function Client:close()
  for key, list in pairs(self._idle) do
    for i = #list, 1, -1 do list[i]:close(); list[i] = nil end
    self._idle[key] = nil
  end
  return true
end
Client.__close = Client.close
Client.__gc = Client.close

local function exchange(self, u, method, opts, state)
  local key = u.host .. "|" .. u.port
  local pool = self and self._idle[key]
  local data = build_request(u, method, opts, self ~= nil)
  for attempt = 1, 2 do
    local sock, reused
    if pool and #pool > 0 then
      sock = table.remove(pool)
      state.sock = sock
      reused = true
    else
      local err, en
      sock, err, en = uring.connect(u.host, u.port)
      if not sock then return nil, err, en end
      state.sock = sock
      sock:setoption("nodelay", true)
      if self then self.connections = self.connections + 1 end
    end
    local ok, err = sock:send(data)
    local res, reusable
    if ok then
      res, reusable = read_response(sock, method, 64 * 1024)
      if not res then err = reusable end
    end
    state.sock = nil
    if res then
      if self and reusable and #self._idle[key] < self.max_idle then
        local p = self._idle[key]
        p[#p + 1] = sock
      else
        sock:close()
      end
      return res
    end
    sock:close()
    -- a kept connection the server had closed: once more on a fresh one
    if not (reused and (err == "closed" or err == "Broken pipe"
        or err == "Connection reset by peer")) then
      return nil, err
    end
  end
end

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

local function request(self, url, opts, state)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #2 to 'request' (table expected, got " .. type(opts) .. ")", 3)
  end
  local method = upper(opts.method or (opts.body and "POST" or "GET"))
  local redirects = opts.redirects or 0
  local u, err = http.parse_url(url)
  if not u then return nil, err end
  if self then
    self._idle[u.host .. "|" .. u.port] = self._idle[u.host .. "|" .. u.port] or {}
  end
  while true do
    local res, msg, en = exchange(self, u, method, opts, state)
    if not res then return nil, msg, en end
    local loc = res.headers.location
    if not (REDIRECT[res.status] and loc and redirects > 0) then
      res.url = url
      return res
    end
    redirects = redirects - 1
    if find(loc, "^%a[%w+.-]*://") then url = loc
    elseif sub(loc, 1, 2) == "//" then url = "http:" .. loc
    elseif sub(loc, 1, 1) == "/" then url = "http://" .. u.authority .. loc
    else url = "http://" .. u.authority .. gsub(u.path, "[^/]*$", "") .. loc end
    if res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST") then
      method = method == "HEAD" and "HEAD" or "GET"
      opts = { headers = opts.headers }
    end
    u, err = http.parse_url(url)
    if not u then return nil, err end
    if self then
      self._idle[u.host .. "|" .. u.port] = self._idle[u.host .. "|" .. u.port] or {}
    end
  end
end

local function timed(self, url, opts)
  local t = (opts and opts.timeout) or (self and self.timeout)
  local state = {}
  if t then
    local res, err, en = uring.timeout(t, request, self, url, opts, state)
    if state.sock then state.sock:close() end    -- cut short mid-exchange
    return res, err, en
  end
  local ok, res, err, en = pcall(request, self, url, opts, state)
  if state.sock then state.sock:close() end
  if not ok then error(res, 0) end
  return res, err, en
end

--- uring.http.request(url [, opts]) -> res {status, reason, headers, body,
-- version, url} | nil, err.  http:// only.  opts: method (default GET,
-- POST with a body), headers, body, timeout (seconds for the whole
-- exchange), redirects (how many to follow; default 0).  Each call uses
-- its own connection and sends Connection: close; for keep-alive reuse
-- use a client object.
function http.request(url, opts)
  return timed(nil, url, opts)
end

--- client:request(url [, opts]): as uring.http.request, reusing the
-- client's idle connections to the same host:port.
function Client:request(url, opts)
  return timed(self, url, opts)
end

http.Client = Client

return http
