--- uring.http.client: HTTP/1.1 requests over uring sockets, http:// and
-- https:// (TLS, csrc/tls.c); one connection per request unless a client
-- object (uring.http.client()) keeps them.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"
local message = require "uring.http.message"

local find, lower, sub, match, gsub, upper = string.find, string.lower,
  string.sub, string.match, string.gsub, string.upper
local concat = table.concat
local tonumber, tostring, type, pcall, setmetatable, rawget =
  tonumber, tostring, type, pcall, setmetatable, rawget
local argerror, typeerror = check.argerror, check.typeerror
local HEADERS_MT, readline, read_chunked = message.HEADERS_MT, message.readline,
  message.read_chunked
local TOO_BIG, BAD = message.TOO_BIG, message.BAD
local E = core.errno
local tls_mode = core._tls_mode
local DEFAULT_PORT = { http = 80, https = 443 }

local M = {}

-- a url, parsed: {scheme, host, port, path, authority} | nil, err
local function parse_url(url)
  local scheme, rest = match(url, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "invalid url: " .. url end
  scheme = lower(scheme)
  if not DEFAULT_PORT[scheme] then
    return nil, "unsupported scheme '" .. scheme .. "' (uring.http speaks http:// and https://)"
  end
  local authority, path = match(rest, "^([^/?#]*)(.*)$")
  path = gsub(path, "#.*$", "")
  if path == "" then path = "/" elseif sub(path, 1, 1) == "?" then path = "/" .. path end
  -- a request line cannot carry these: the url is not one to send
  if find(path, "[%c ]") then return nil, "invalid url: " .. url end
  authority = gsub(authority, "^.*@", "")      -- userinfo is not supported: dropped
  local host, port = match(authority, "^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = match(authority, "^([^:]+):?(%d*)$") end
  if not host or host == "" or find(host, "[%c ]") then return nil, "invalid url: " .. url end
  port = port ~= "" and tonumber(port) or DEFAULT_PORT[scheme]
  if port > 65535 then return nil, "invalid url: " .. url end
  return { scheme = scheme, host = host, port = math.tointeger(port), path = path,
    authority = authority }
end

--- uring.http.parse_url(url) -> {scheme, host, port, path, authority} | nil, err
function M.parse_url(url)
  if type(url) ~= "string" then typeerror(1, "parse_url", "string", url) end
  return parse_url(url)
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
    local n = match(cl, "^%d+$") and math.tointeger(tonumber(cl))
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
  for k, v in pairs(hs) do                 -- checked by checkopts
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

-- a request's options, checked before anything is sent: a table of
-- method (a token), headers (names and string or number values without
-- CR or LF), body, timeout, redirects
local function checkopts(opts, name, arg, level)
  level = (level or 1) + 1
  if opts == nil then return {} end
  if type(opts) ~= "table" then typeerror(arg, name, "table", opts, level) end
  local function bad(msg) argerror(arg, name, msg, level + 1) end
  local m = opts.method
  if m ~= nil and (type(m) ~= "string" or not match(m, "^[%w!#$%%&'*+.^_`|~-]+$")) then
    bad("method must be a token string, got " .. (type(m) == "string" and "'" .. m .. "'" or check.typename(m)))
  end
  local hs = opts.headers
  if hs ~= nil then
    if type(hs) ~= "table" then bad("headers must be a table, got " .. check.typename(hs)) end
    for k, v in pairs(hs) do
      if type(k) ~= "string" or k == "" or find(k, "[%c%s:]") then bad("headers: invalid header name") end
      if type(v) ~= "string" and type(v) ~= "number" then
        bad("headers: " .. k .. " must be a string, got " .. check.typename(v))
      end
      if find(tostring(v), "[\r\n]") then bad("headers: CR or LF in " .. k) end
    end
  end
  local b = opts.body
  if b ~= nil and type(b) ~= "string" and type(b) ~= "number" then
    bad("body must be a string, got " .. check.typename(b))
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t ~= t or t < 0 or t >= 1e12) then
    bad("timeout must be a non-negative number")
  end
  local r = opts.redirects
  if r ~= nil and (math.type(r) ~= "integer" or r < 0) then
    bad("redirects must be a non-negative integer")
  end
  local tls = opts.tls
  if tls ~= nil and tls ~= true and tls_mode(tls) ~= "client" then
    bad("tls must be true or a client uring.tls.context, got " .. check.typename(tls))
  end
  return opts
end

local Client = {}
Client.__index = Client
M.Client = Client

local CLIENTS = setmetatable({}, { __mode = "k" })

local function checkclient(self, name, level)
  if not CLIENTS[self] then typeerror(1, name, "client", self, (level or 1) + 1) end
end

--- uring.http.client([opts]) -> client: keeps idle connections per
-- host:port (at most opts.max_idle each, default 4) for client:request;
-- client:close() closes them.  Idle connections hold no task and nothing
-- in flight, so they never keep uring.run going; close the client before
-- the run ends (or use <close>) so their sockets go at once.
function M.client(opts)
  if opts == nil then opts = {}
  elseif type(opts) ~= "table" then typeerror(1, "client", "table", opts) end
  local max_idle = opts.max_idle
  if max_idle == nil then max_idle = 4
  elseif math.type(max_idle) ~= "integer" or max_idle < 0 then
    argerror(1, "client", "max_idle must be a non-negative integer")
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t ~= t or t < 0 or t >= 1e12) then
    argerror(1, "client", "timeout must be a non-negative number")
  end
  local tls = opts.tls
  if tls ~= nil and tls ~= true and tls_mode(tls) ~= "client" then
    argerror(1, "client", "tls must be true or a client uring.tls.context, got "
      .. check.typename(tls))
  end
  local c = setmetatable({ _idle = {}, max_idle = max_idle,
    timeout = t, connections = 0, tls = tls }, Client)
  CLIENTS[c] = true
  return c
end

local function close(self)
  for key, list in pairs(self._idle) do
    for i = #list, 1, -1 do list[i]:close(); list[i] = nil end
    self._idle[key] = nil
  end
  return true
end

--- client:close() -> true: closes the idle connections
function Client:close()
  checkclient(self, "close")
  return close(self)
end

function Client:__close()
  checkclient(self, "__close")
  close(self)
end

function Client:__gc()
  if CLIENTS[self] then close(self) end
end

-- idle connections are kept per scheme, host and port: an https
-- connection is never reused for http:// and the reverse
local function poolkey(u) return u.scheme .. "|" .. u.host .. "|" .. u.port end

local function exchange(self, u, method, opts, state)
  local key = poolkey(u)
  local pool = self and self._idle[key]
  local data = build_request(u, method, opts, self ~= nil)
  for _ = 1, 2 do
    local sock, reused
    if pool and #pool > 0 then
      sock = table.remove(pool)
      state.sock = sock
      reused = true
    else
      local err, en
      if u.scheme == "https" then
        -- the system CAs and the url's host name check the server
        -- unless the caller gives a context of its own
        sock, err, en = uring.connect(u.host, u.port, { servername = u.host,
          tls = opts.tls or (self and self.tls) or true })
      else
        sock, err, en = uring.connect(u.host, u.port)
      end
      if not sock then return nil, err, en end
      state.sock = sock
      sock:setoption("nodelay", true)
      if self then self.connections = self.connections + 1 end
    end
    local ok, err, en = sock:send(data)
    local res, reusable
    if ok then
      res, reusable = read_response(sock, method, 64 * 1024)
      if not res then err, en = reusable, nil end
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
    if not (reused and (err == "closed" or en == E.EPIPE or en == E.ECONNRESET)) then
      return nil, err, en
    end
  end
end

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

local function request(self, url, opts, state)
  local method = upper(opts.method or (opts.body and "POST" or "GET"))
  local redirects = opts.redirects or 0
  local u, err = parse_url(url)
  if not u then return nil, err end
  if self then self._idle[poolkey(u)] = self._idle[poolkey(u)] or {} end
  while true do
    local res, msg, en = exchange(self, u, method, opts, state)
    if not res then return nil, msg, en end
    local loc = res.headers.location
    if not (REDIRECT[res.status] and loc and redirects > 0) then
      res.url = url
      return res
    end
    redirects = redirects - 1
    -- an absolute location may change the scheme (http -> https and
    -- back); a relative one keeps this request's
    local base = u.scheme .. "://" .. u.authority
    if find(loc, "^%a[%w+.-]*://") then url = loc
    elseif sub(loc, 1, 2) == "//" then url = u.scheme .. ":" .. loc
    elseif sub(loc, 1, 1) == "/" then url = base .. loc
    else url = base .. gsub(u.path, "[^/]*$", "") .. loc end
    if res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST") then
      method = method == "HEAD" and "HEAD" or "GET"
      opts = { headers = opts.headers }
    end
    u, err = parse_url(url)
    if not u then return nil, err end
    if self then self._idle[poolkey(u)] = self._idle[poolkey(u)] or {} end
  end
end

-- request and client:request: url is argument `arg` (2 for the method)
local function timed(self, url, opts, name, arg)
  if type(url) ~= "string" then typeerror(arg, name, "string", url, 2) end
  opts = checkopts(opts, name, arg + 1, 2)
  check.intask(name, 2)
  local t = opts.timeout or (self and self.timeout)
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
-- version, url} | nil, err.  http:// and https://.  opts: method (default
-- GET, POST with a body), headers, body, timeout (seconds for the whole
-- exchange), redirects (how many to follow; default 0), tls (https: a
-- client uring.tls.context; default: the system CAs, the host checked).  Each call uses
-- its own connection and sends Connection: close; for keep-alive reuse
-- use a client object.
function M.request(url, opts)
  local res, err, en = timed(nil, url, opts, "request", 1)
  return res, err, en
end

--- client:request(url [, opts]): as uring.http.request, reusing the
-- client's idle connections to the same host:port.
function Client:request(url, opts)
  checkclient(self, "request")
  local res, err, en = timed(self, url, opts, "request", 2)
  return res, err, en
end

return M
