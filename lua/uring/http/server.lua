--- uring.http.server: the HTTP/1.1 server: requests, responses, and one
-- task per connection.
--
-- One task per connection takes each request head whole from the socket's
-- buffer (received as needed, checked and split by the C parser in
-- csrc/http.c; the bytes of pipelined requests simply wait in the buffer,
-- so requests on a connection are answered in order), calls the handler
-- (the common request without a body: all in C, csrc/http_serve.c),
-- and sends each response with one send when its length is known (chunked
-- streaming otherwise).  The per-request path makes one small table (req)
-- and nothing else when the answer repeats the last one:
-- examples/http_hello.lua on it stays close to the hand-written
-- bench/http_uring.lua (bench/http.sh).
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"
local message = require "uring.http.message"
local router = require "uring.http.router"

local find, lower, format = string.find, string.lower, string.format
local concat = table.concat
local tostring, type, pcall, setmetatable, rawget, next =
  tostring, type, pcall, setmetatable, rawget, next
local current = core.current
local argerror, typeerror, intask = check.argerror, check.typeerror, check.intask
local REASONS, STATUS_LINE, HEADERS_MT = message.REASONS, message.STATUS_LINE,
  message.HEADERS_MT
local read_chunked, TOO_BIG, BAD = message.read_chunked, message.TOO_BIG, message.BAD
-- a response's state held in C (csrc/http_serve.c) written back into it:
-- every Lua method of a response calls it first
local sync, http_conn = core._http_sync, core._http_conn
-- is a connection idle (false: a request is under way; the sweeper's
-- stamp), held in C (csrc/http_serve.c): no field written per request
local http_idle, http_busy = core._http_idle, core._http_busy
local tls_mode = core._tls_mode
local smethods = core.socket_methods
local serve, sock_state = smethods._serve, smethods._closed
local sock_send, sock_sendfile, sock_close = smethods.send, smethods.sendfile,
  smethods.close

local M = {}

---------------------------------------------------------------------------
-- Responses
---------------------------------------------------------------------------

local Response = {}
Response.__index = Response
M.Response = Response

-- A response's state as a new connection has it.  The fields live here
-- until the server or a method first sets them in the response: a
-- connection's response table then holds ~10 fields, not ~22 (under
-- churn, every request its own connection, each field made per
-- connection cost ~150 instructions, and 17 or more of them double the
-- table's hash part).  A request the C loop serves (csrc/http_serve.c)
-- keeps this state in C and never writes it here.
Response._code, Response._hn, Response._len = 200, 0, false
Response._sent, Response._done, Response._err, Response._mode = false, false, false, false
Response._head_only, Response._keep, Response._v10 = false, true, false
Response._killed, Response._ws = false, false

-- the fast methods of every connection's response (made once, below);
-- the responses the server made (one per connection) hold fast_finish
-- as their own finish field, so a table given Response as its metatable
-- is not one.  (A weak set of them cost each connection ~2,000
-- instructions of the collector's weak-table work under churn, a private
-- key in each ~150.)
local fast_header, fast_finish, fast_sent, fast_sendfile
local SERVERS       -- the servers (weak keys), set below
local function is_res(v)
  return type(v) == "table" and rawget(v, "finish") == fast_finish
end

--- is_response(v) -> true when v is a response of the server
function M.is_response(v) return is_res(v) end

--- on_error_of(res) -> the on_error of the server whose connection res
-- answers (a WebSocket upgraded from it logs its faults there), or nil
function M.on_error_of(res)
  local sock = is_res(res) and rawget(res, "_sock")
  for srv in pairs(SERVERS) do
    if sock and srv._conns[sock] == res then return srv.on_error end
  end
end

local function checkres(self, name, level)
  if not is_res(self) then typeerror(1, name, "response", self, (level or 1) + 1) end
  sync(self)
end

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

local function checkcode(arg, name, code, level)
  if math.type(code) ~= "integer" or code < 100 or code > 999 then
    argerror(arg, name, "HTTP status code expected", (level or 1) + 1)
  end
end

--- res:status(code) -> res
function Response:status(code)
  checkres(self, "status")
  checkcode(2, "status", code)
  if self._sent then check.error("status: headers already sent") end
  self._code = code
  return self
end

-- header names (to their lower case) and values already checked, as
-- handlers set the same few again and again
local checked_n = 0
local NAMES, CLEAN = {}, {}

-- a header's name and value as res:header takes them: the value as a
-- string, nil to remove
local function checkheader(name, value, fname, arg, level)
  level = (level or 1) + 1
  if type(name) ~= "string" then typeerror(arg, fname, "string", name, level) end
  if name == "" or find(name, "[%c%s:]") then
    argerror(arg, fname, "invalid header name", level)
  end
  if value ~= nil then
    if type(value) == "number" then value = tostring(value)
    elseif type(value) ~= "string" then typeerror(arg + 1, fname, "string", value, level)
    end
    if find(value, "\n", 1, true) or find(value, "\r", 1, true) then
      argerror(arg + 1, fname, "CR or LF in value", level)
    end
  end
  return value
end

local set_header

-- res:header's checks, for a name or value not seen before: then the
-- header is set by set_header with both cached
local function header_checked(self, name, value)
  -- (res:header, which is set_header -> here)
  if not is_res(self) then typeerror(1, "header", "response", self, 2) end
  value = checkheader(name, value, "header", 2, 2)
  if self._sent then check.error("header: headers already sent", 2) end
  local l = LOWER[name]
  -- framing headers are the server's: never cached, so the fast path in
  -- set_header needs no test for them
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
  return set_header(self, name, value)
end

--- res:header(name, value) -> res: sets a header, replacing one of the
-- same name in any case; value nil removes it.  Content-Length is taken as
-- the body's length; Transfer-Encoding is the server's choice (ignored).
-- A name and value seen before (handlers set the same few) take the fast
-- path; anything else, a wrong self included, is checked first.  One
-- function, not a checking wrapper around it: a Lua call per header is
-- ~900 instructions of a ~15,000 instruction request.
function set_header(self, name, value)
  sync(self)
  local l = NAMES[name]
  if not l or not is_res(self) or self._sent
      or (value ~= nil and not CLEAN[value]) then
    local r = header_checked(self, name, value)
    return r
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

Response.header = set_header

--- res:get_header(name) -> value | nil (any case)
function Response:get_header(name)
  checkres(self, "get_header")
  if type(name) ~= "string" then typeerror(2, "get_header", "string", name) end
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

-- res:write without its checks: data is a string
local function write(self, data)
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

--- res:sendfile(file, offset, len) -> true | nil, err: the whole response,
-- its body len bytes of file from offset, sent in the kernel
-- (sock:sendfile: the head and the bytes in one send when small, else
-- the head then SPLICE through a pipe).  Sets Content-Length; the bytes
-- never become a Lua string.  A short send (the peer went away, the file
-- shrank) ends the connection.
function Response:sendfile(file, offset, len)
  checkres(self, "sendfile")
  if math.type(offset) ~= "integer" or offset < 0 then
    argerror(3, "sendfile", "offset must be a non-negative integer")
  end
  if math.type(len) ~= "integer" or len < 0 then
    argerror(4, "sendfile", "length must be a non-negative integer")
  end
  if self._sent then check.error("sendfile: headers already sent") end
  check.intask("sendfile")
  self._len = len
  self._sent, self._done, self._mode = true, true, "length"
  local h = head(self, "Content-Length: " .. len .. "\r\n")
  local sent, msg
  if self._head_only or self._code == 304 or self._code == 204 then
    sent, msg = self._sock:send(h)
    if sent then return true end
  else
    sent, msg = self._sock:sendfile(file, offset, len, h)
    if sent == len then return true end
    msg = msg or "file shrank while it was sent"
  end
  self._keep = false
  self._err = msg
  return nil, msg
end

-- a body argument: a string, a number (as a string) or nil
local function checkbody(arg, name, body, level)
  if body == nil or type(body) == "string" then return body end
  if type(body) == "number" then return tostring(body) end
  typeerror(arg, name, "string", body, (level or 1) + 1)
end

--- res:write(chunk) -> true | nil, err: streams a part of the body.  With
-- no Content-Length set, the body is sent chunked (HTTP/1.1) or delimited
-- by closing the connection (HTTP/1.0).
function Response:write(data)
  checkres(self, "write")
  data = checkbody(2, "write", data)
  if data == nil then return true end
  if self._done then check.error("write: response already finished") end
  check.intask("write")
  local ok, err = write(self, data)
  return ok, err
end

-- the last response finish() built whole: code, body argument, _len,
-- keep, head only, header count, first header's name and value, bytes
-- (upvalues, not a table: the check runs per request)
local mo_code, mo_body, mo_len, mo_keep, mo_head, mo_hn, mo_n1, mo_v1, mo_out

--- res:finish([body]) -> true | nil, err: ends the response.  Before any
-- write, the whole response goes out in one send with a Content-Length.
-- Its checks are its own first lines (see res:header).
local function finish(self, body)
  if not is_res(self) then typeerror(1, "finish", "response", self) end
  sync(self)
  -- the same response as the last one (a hello server, a health check):
  -- its bytes are sent again as they are.  One memo for every connection:
  -- their answers then share one string, which stays in the cache.  (A
  -- body equal to the memo's is a string: checked when it was made.)
  if mo_body == body and mo_code == self._code and not self._sent
      and mo_keep == self._keep and mo_head == self._head_only and mo_len == self._len
      and mo_hn == self._hn and (mo_hn == 0 or (mo_n1 == self[1] and mo_v1 == self[2])) then
    intask("finish")
    self._done, self._sent = true, true
    local ok, msg = sock_send(self._sock, mo_out)
    if ok then return true end
    self._keep = false
    self._err = msg or "send failed"
    return nil, msg
  end
  if body ~= nil and type(body) ~= "string" and type(body) ~= "number" then
    typeerror(2, "finish", "string", body)
  end
  if self._done then return true end
  intask("finish")
  local arg = body
  if type(body) == "number" then body = tostring(body) end
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
      mo_code, mo_body, mo_len, mo_keep, mo_head, mo_hn = code, arg, self._len,
        self._keep, self._head_only, hn
      mo_n1, mo_v1, mo_out = hh[1], hh[2], out
    end
    return send(self, out)
  end
  if body and body ~= "" then
    local ok, err = write(self, body)
    if not ok then self._done = true; return nil, err end
  end
  self._done = true
  if self._err then return nil, self._err end
  if self._mode == "chunked" then return send(self, "0\r\n\r\n") end
  return true
end

Response.finish = finish

--- res:reply(status, body [, headers]) -> true | nil, err
function Response:reply(code, body, headers)
  checkres(self, "reply")
  checkcode(2, "reply", code)
  body = checkbody(3, "reply", body)
  if headers ~= nil then
    if type(headers) ~= "table" then typeerror(4, "reply", "table", headers) end
    for k, v in pairs(headers) do
      if type(k) ~= "string" or k == "" or find(k, "[%c%s:]") then
        argerror(4, "reply", "invalid header name")
      end
      if type(v) ~= "string" and type(v) ~= "number" then
        argerror(4, "reply", "header " .. k .. ": string expected, got " .. check.typename(v))
      end
      if find(tostring(v), "[\r\n]") then argerror(4, "reply", "CR or LF in value") end
    end
  end
  if self._sent then check.error("reply: headers already sent") end
  check.intask("reply")
  self._code = code
  if headers then for k, v in pairs(headers) do set_header(self, k, v) end end
  local ok, err = finish(self, body)
  return ok, err
end

--- res:sent() -> true once the head has gone out
function Response:sent()
  checkres(self, "sent")
  return self._sent == true
end

---------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------

local Request = {}
M.Request = Request

-- A request table holds what every request has in its array part
-- ([1] the head as it came, checked by the C parser; [2] the socket: two
-- slots cost less than two named keys) and the rest only when it is set
-- or differs from the usual.  sock:_serve's requests hold just those
-- two: method, target, path, query and version are worked out from the
-- request line at the start of the head each time one is read (not
-- stored: a table that grows costs more than a read or two), body ("")
-- and socket too, and headers when first read, then held (csrc/http.c:
-- core._request_index).  A field the handler set is what is read.  Each
-- field a request holds costs every request, and a hello-world handler
-- reads none.  pairs(req) sets the request line's fields and socket
-- first, so it lists what it did when every request held them (method,
-- target, socket; path and query for a target with "?"; version for
-- HTTP/1.0), and skips the two slots.
local request_fields, request_next
Request.__index, request_fields, request_next = core._request_index(Request, HEADERS_MT)

function Request.__pairs(req)
  if type(req) ~= "table" then typeerror(1, "__pairs", "request", req) end
  request_fields(req)
  return request_next, req, nil
end

-- the response object of the open connection on sock: its server's
-- _conns holds it (one lookup per server, and only for req:upgrade: a
-- map kept for it cost every connection an insert and a delete)
local function response_of(sock)
  for srv in pairs(SERVERS) do
    local res = srv._conns[sock]
    if res then return res end
  end
end

--- req:upgrade([opts]) -> ws | nil, err: the WebSocket handshake
-- (lua/uring/http/websocket.lua); the connection is the ws's until the
-- handler returns
function Request:upgrade(opts)
  if getmetatable(self) ~= Request then typeerror(1, "upgrade", "request", self) end
  local res = response_of(rawget(self, 2))          -- its socket
  sync(res)
  local ws, err, en = require("uring.http.websocket").upgrade(self, res, opts, 1)
  return ws, err, en
end

--- req:header(name) -> value | nil (any case)
function Request:header(name)
  if getmetatable(self) ~= Request then typeerror(1, "header", "request", self) end
  if type(name) ~= "string" then typeerror(2, "header", "string", name) end
  local h = self.headers
  if type(h) ~= "table" then return nil end
  return rawget(h, lower(name))
end

--- req:has_header(name, ...) -> boolean: does the request carry a header
-- of that name (any case), or of any of the names given?  Read from the
-- head as it came, without making req.headers (csrc/http.c)
Request.has_header = core._request_has_header

---------------------------------------------------------------------------
-- Server
---------------------------------------------------------------------------

local Server = {}
Server.__index = Server
M.Server = Server

SERVERS = setmetatable({}, { __mode = "k" })

local function checkserver(self, name, level)
  if not SERVERS[self] then typeerror(1, name, "server", self, (level or 1) + 1) end
end

local function plain_error(code)
  local body = code .. " " .. (REASONS[code] or "Error") .. "\n"
  return STATUS_LINE[code] .. "Content-Type: text/plain\r\nContent-Length: "
    .. #body .. "\r\nConnection: close\r\n\r\n" .. body
end
local ERR = setmetatable({}, { __index = function(t, code)
  local s = plain_error(code); t[code] = s; return s
end })
local CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n"

-- req is nil for a connection that failed before any request (a TLS
-- handshake)
local function default_on_error(err, req)
  io.stderr:write("uring.http: ", req and "handler error: " or "",
    tostring(err), "\n")
end

-- an option of server{}: nil (def), or a number in lo..hi (integer: an
-- integer); errors name argument #1
local function numopt(opts, key, def, lo, hi, integer)
  local v = opts[key]
  if v == nil then return def end
  if type(v) ~= "number" or v ~= v or v < lo or v > hi
      or (integer and math.tointeger(v) == nil) then
    argerror(1, "server", format("%s must be a%s number in %s..%s, got %s", key,
      integer and "n integer" or "", tostring(lo), tostring(hi),
      type(v) == "number" and tostring(v) or check.typename(v)), 2)
  end
  return integer and math.tointeger(v) or v
end

--- uring.http.server(opts) -> server.  opts: host (default "127.0.0.1"),
-- port (default 0), handler = fn(req, res) | router | routes = {{method,
-- pattern, fn}, ...}; max_body (bytes, default 8 MiB: larger is 413),
-- max_header (bytes of the request line, larger is 414, and of the header
-- lines together, larger is 431; default 16 KiB),
-- idle_timeout (seconds a kept-alive connection may wait for its next
-- request, default 60), grace (seconds close() lets requests in flight
-- finish, default 5), on_error(err, req) (default: a line on stderr;
-- req is nil for a TLS handshake that failed), backlog, reuseport,
-- tls (a server uring.tls.context: https).
function M.server(opts)
  if type(opts) ~= "table" then typeerror(1, "server", "table", opts) end
  local handler = opts.handler
  if handler == nil and opts.routes ~= nil then
    local routes = opts.routes
    if router.is(routes) then handler = routes
    elseif type(routes) ~= "table" then
      argerror(1, "server", "routes must be a table or a router, got " .. check.typename(routes))
    else
      router.check_routes(routes, "server", 1, "routes: ")
      handler = router.router(routes)
    end
  end
  if handler == nil then argerror(1, "server", "handler or routes expected") end
  if not check.callable(handler) then
    argerror(1, "server", "handler must be a function or a router, got " .. check.typename(handler))
  end
  if router.is(handler) then
    local r = handler
    handler = function(req, res) return r:dispatch(req, res) end
  end
  local host = opts.host
  if host == nil then host = "127.0.0.1"
  elseif type(host) ~= "string" then
    argerror(1, "server", "host must be a string, got " .. check.typename(host))
  end
  local port = numopt(opts, "port", 0, 0, 65535, true)
  local backlog = numopt(opts, "backlog", 1024, 0, 0x7fffffff, true)
  local max_body = numopt(opts, "max_body", 8 * 1024 * 1024, 0, math.huge)
  local max_header = numopt(opts, "max_header", 16 * 1024, 1, math.maxinteger, true)
  local idle = numopt(opts, "idle_timeout", 60, 0, math.huge)
  local grace = numopt(opts, "grace", 5, 0, math.huge)
  local on_error = opts.on_error
  if on_error == nil then on_error = default_on_error
  elseif not check.callable(on_error) then
    argerror(1, "server", "on_error must be a function, got " .. check.typename(on_error))
  end
  local tls = opts.tls
  if tls ~= nil and tls_mode(tls) ~= "server" then
    argerror(1, "server", "tls must be a server uring.tls.context, got " .. check.typename(tls))
  end
  check.intask("server")
  -- first_recv: the server reads its connections itself, so each one's
  -- first RECV may go out as its ACCEPT completes (no SQE of its own in
  -- the serving task; skipped by the core for TLS)
  local lsock, msg, en = uring.listen(host, port,
    { backlog = backlog, reuseport = opts.reuseport and true or false, tls = tls,
      first_recv = true })
  if not lsock then return nil, msg, en end
  -- accepted sockets inherit TCP_NODELAY from the listener (Linux): one
  -- setsockopt here rather than a system call per connection
  local ok, err, eno = lsock:setoption("nodelay", true)
  if not ok then lsock:close(); return nil, err, eno end
  local self = setmetatable({
    _lsock = lsock, _handler = handler, _conns = {},
    max_body = max_body, max_header = max_header, idle_timeout = idle,
    grace = grace, on_error = on_error, requests = 0, connections = 0,
    tls_failures = 0, _closing = false,   -- read by every connection loop: a field, not __index
  }, Server)
  SERVERS[self] = true
  self._host, self._port = lsock:getsockname()
  return self
end

--- server:port() -> the port listened on (port 0 lets the kernel choose)
function Server:port()
  checkserver(self, "port")
  return self._port
end

--- server:getsockname() -> host, port
function Server:getsockname()
  checkserver(self, "getsockname")
  return self._host, self._port
end

-- After a handler: what the connection does next.  ok, r1..r3: pcall's
-- results.  Returns true to go on with the next request.
local function after_handler(st, sock, on_error, req, ok, r1, r2, r3)
  local res = st
  local ws = res._ws
  if ws then                 -- upgraded: the connection was the ws's
    res._ws = false
    if not ok and not st._killed then pcall(on_error, r1, req) end
    if not st._killed then require("uring.http.websocket").handler_done(ws, ok) end
    return false
  end
  if ok and not res._done then
    if not res._sent and math.type(r1) == "integer" then
      -- return status, body [, headers]: checked as res:reply checks
      -- them, and a bad one is the handler's error
      ok, r1 = pcall(Response.reply, res, r1, r2, r3)
    else
      finish(res)
    end
  end
  if not ok then
    if st._killed then return false end        -- past close()'s grace
    pcall(on_error, r1, req)
    if not res._sent then
      st._keep = false
      sock:send(ERR[500])
    end
    return false
  end
  return st._keep and not res._err
end

-- one connection: requests in order until close, error or shutdown.  The
-- common request (no body) is served by sock:_serve (csrc/http_serve.c)
-- without coming back here: it takes the head whole from the socket's
-- buffer (the C parser: pipelined requests are simply the next heads),
-- builds req, resets res, calls the handler and goes on while the
-- handler finished its response and the connection stays open.  What it
-- hands back is handled here: a head with a body, a handler that did not
-- finish, failed or upgraded, the end of the connection.
-- the fast methods of every connection's response (csrc/http_serve.c:
-- C, finding the response's state in res._hc; they fall back to these
-- Lua ones), made once rather than per connection
fast_header, fast_finish, fast_sent, fast_sendfile = core._http_methods(
  set_header, finish, Response.sent, Response.sendfile, sock_send, sock_sendfile)

local function connection(self, sock)
  local conns = self._conns
  local handler, on_error = self._handler, self.on_error
  local max_header, max_body = self.max_header, self.max_body
  -- one response object per connection, reset for each request; it also
  -- holds the connection's state (_keep, _v10, _task, _killed, and _hc:
  -- the state in C, which also says whether it is idle, http_idle) for
  -- the sweeper and close(): one table to touch per request.  The rest
  -- of its state starts as Response holds it.
  -- (7 fields with the one http_conn sets: a hash part of 8 slots; and
  -- an array part for two headers, which res:header keeps in res[1..])
  local res = setmetatable({ nil, nil, _sock = sock, _task = current(),
    -- the methods every handler calls, found in the table itself rather
    -- than through the metatable: a lookup less per call
    header = fast_header, finish = fast_finish, sent = fast_sent,
    sendfile = fast_sendfile }, Response)
  -- the response's state held in C while sock:_serve runs a request
  -- (res._hc)
  local hc = http_conn(res, sock)
  local st = res
  conns[sock] = st
  while not self._closing do
    local method, target, path, query, v10, lines, keep, cl, te, expect =
      serve(sock, max_header, st, self, handler, Request, hc)
    if method == true then           -- the handler ran; its end is ours
      -- target: ok, path: req, query, v10, lines: r1, r2, r3 (or err)
      if not after_handler(st, sock, on_error, path, target, query, v10, lines) then
        break
      end
    elseif not method then
      -- false: the peer closed, or the connection ended (close, a failed
      -- send, the server closing); nil: a failed receive (target: why).
      -- A TLS connection that never got as far as a request (a bad
      -- certificate, a plaintext client, garbage): said once, and the
      -- server goes on serving the others
      if method == nil and find(target, "^tls") then
        self.tls_failures = self.tls_failures + 1
        local h, p = sock:getpeername()
        pcall(on_error, format("%s (from %s:%s)", target, tostring(h), tostring(p)), nil)
      end
      break
    elseif not target then           -- a bad head: its status
      http_busy(hc)
      sock:send(ERR[method])
      break
    else
      -- a head with a body: read here, then the handler
      sync(res)
      http_busy(hc)
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
      local req = setmetatable({ lines, sock, method = method, target = target }, Request)
      if path then req.path, req.query = path, query end
      if v10 then req.version = "1.0" end
      if body ~= "" then req.body = body end
      -- the response, reset (false, not nil: the fields stay in the table, so setting them is
      -- the VM's fast path)
      res._code, res._hn, res._len, res._sent, res._done = 200, 0, false, false, false
      res._err, res._mode, res._head_only = false, false, method == "HEAD"
      self.requests = self.requests + 1
      if not after_handler(st, sock, on_error, req, pcall(handler, req, res)) then
        break
      end
    end
  end
end

-- the connection's task: its loop, then the clean-up whatever happened (a
-- socket close() closed under it, the sweeper's or server:close()'s, ends
-- it with an error; past the grace deadline the task is cancelled).  It
-- returns nothing: the task then ends without a record of results.
local function connection_task(self, sock)
  local ok, err = pcall(connection, self, sock)
  local conns = self._conns
  local st = conns[sock]
  if st then conns[sock] = nil end
  if ok then sock_close(sock); return end    -- (closing twice is harmless)
  local closed_under = (sock_state(sock))
  if not closed_under then sock_close(sock) end
  if not (st and st._killed) and not self._closing and not closed_under then
    error(err, 0)
  end
end

-- Closes connections idle for idle_timeout.  A connection going idle
-- marks itself (in C: no clock read per request); the first step that
-- sees the mark stamps it with the step's time (http_idle), no earlier than the
-- connection went idle, so a connection is closed only once it is surely
-- idle long enough (and at most two steps later).
local function sweeper(self)
  local idle = self.idle_timeout
  local step = math.max(0.05, math.min(1, idle / 4))
  while true do
    uring.sleep(step)
    local now = uring.now()
    local t = now - idle
    for sock, st in pairs(self._conns) do
      local since = http_idle(st._hc, now)
      if since and since < t then sock:close() end
    end
  end
end

--- server:serve(): accepts and serves until server:close(); then waits
-- for the connections to end (at most `grace` seconds after close) and
-- returns.  Run it as a task to keep the REPL or script going:
-- uring.spawn(srv.serve, srv).
function Server:serve()
  checkserver(self, "serve")
  if self._serving then check.error("serve: the server is already serving") end
  check.intask("serve")
  self._serving = true
  local sweep
  -- the connection accepted and not yet handed to its task
  local accepted
  -- However serve ends, its sweeper ends with it (an error here left it
  -- sleeping forever, and uring.run with it); if it ends by an error (out
  -- of memory, a cancel) the server closes: a listener nobody accepts on
  -- leaves its clients hanging.  A connection whose task could not be
  -- spawned is closed here too, at once (not left to the collector and
  -- the client to its timeout): no pcall per connection (~300
  -- instructions under churn) to catch that error.
  local _ <close> = setmetatable({}, { __close = function(_, err)
    if accepted then accepted:close() end
    if sweep then sweep:cancel() end
    if err ~= nil then self:close() end
  end })
  if self.idle_timeout > 0 then
    sweep = uring.spawn(sweeper, self)
  end
  local lsock = self._lsock
  local accept = lsock.accept
  local delay = 0
  -- closed before this task first ran: no accept on the closed listener
  while not self._closing do
    local sock, msg = accept(lsock)
    if sock then
      delay = 0
      if self._closing then sock:close(); break end
      self.connections = self.connections + 1
      accepted = sock
      uring.spawn(connection_task, self, sock)
      accepted = nil
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
      local idle = http_idle(st._hc)
      if late and not idle and not st._killed then
        st._killed = true                           -- its handler is cut short
        if st._task and st._task ~= uring.current() then st._task:cancel() end
      end
      if idle or late then sock:close() end
      if st._killed then self._conns[sock] = nil end
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
  checkserver(self, "close")
  if self._closing and self._lsock_closed then return true end
  self._closing = true
  self._lsock_closed = true
  self._lsock:close()
  -- idle connections: closed now (busy ones close after their response)
  for sock, st in pairs(self._conns) do
    -- (sync: _keep may be held in C while a request is under way)
    if not http_idle(st._hc) then sync(st); st._keep = false else sock:close() end
    -- a WebSocket's handler ends when its peer answers "going away"
    if st._ws then pcall(uring.spawn, st._ws.close, st._ws, 1001, "going away") end
  end
  return true
end

function Server:__close()
  checkserver(self, "__close")
  Server.close(self)
end

return M
