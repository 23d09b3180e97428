--- uring.http.websocket: RFC 6455 WebSocket connections over uring
-- sockets: req:upgrade() in a server's handler, uring.http.websocket(url)
-- as a client; both give the same ws object.
--
-- Frames go through the socket's public methods only (receive(n), send),
-- so a TLS socket carries them unchanged.  The byte work (masking, the
-- handshake's SHA-1, random keys) is csrc/websocket.c's.  One task at a
-- time receives (the socket allows no more); any number may send: their
-- frames join one queue, a message's frames together, which a writer
-- task sends under a lock (the receiving task's pongs and close frames
-- too).
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"
local message = require "uring.http.message"

local byte, sub, find, lower, match, format = string.byte, string.sub,
  string.find, string.lower, string.match, string.format
local pack, unpack = string.pack, string.unpack
local concat = table.concat
local utf8len = utf8.len
local type, pcall, error, setmetatable, tostring = type, pcall, error,
  setmetatable, tostring
local argerror, typeerror = check.argerror, check.typeerror
local ws_accept, ws_mask, ws_unmask, ws_key, ws_lock = core._ws_accept,
  core._ws_mask, core._ws_unmask, core._ws_key, core._ws_lock
local readline, TOO_BIG = message.readline, message.TOO_BIG
local ETIME, EBADF = core.errno.ETIME, core.errno.EBADF

local M = {}

-- opcodes (RFC 6455 5.2)
local CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
local KIND = { [TEXT] = "text", [BINARY] = "binary" }

-- close codes a peer may send (7.4.1, and the IANA registry up to 1014);
-- 1005, 1006 and 1015 are for reports, never for the wire
local function valid_code(c)
  return (c >= 1000 and c <= 1003) or (c >= 1007 and c <= 1014)
    or (c >= 3000 and c <= 4999)
end

local WebSocket = {}
WebSocket.__index = WebSocket
M.WebSocket = WebSocket

local SOCKETS = setmetatable({}, { __mode = "k" })

local function checkws(self, name)
  if not SOCKETS[self] then typeerror(1, name, "websocket", self, 2) end
end

-- options both ends take: max_message (bytes of one message, default
-- 16 MiB: more is closed with 1009), fragment (split sent messages into
-- frames of at most this many bytes; default: one frame), close_timeout
-- (seconds the close handshake may take, default 2)
local function numopt(opts, key, def, name, arg, integer, level)
  local v = opts[key]
  if v == nil then return def end
  if type(v) ~= "number" or v ~= v or v <= 0 or v >= 2^53
      or (integer and math.tointeger(v) == nil) then
    argerror(arg, name, format("%s must be a positive %s", key,
      integer and "integer" or "number"), level + 1)
  end
  return integer and math.tointeger(v) or v
end

local function common_opts(opts, name, arg, level)
  level = level + 1
  return numopt(opts, "max_message", 16 * 1024 * 1024, name, arg, true, level),
    numopt(opts, "fragment", false, name, arg, true, level),
    numopt(opts, "close_timeout", 2, name, arg, false, level)
end

-- protocols: nil, a string or a list of tokens
local function protocols_opt(opts, name, arg, level)
  local p = opts.protocols
  if p == nil then return nil end
  if type(p) == "string" then p = { p } end
  if type(p) ~= "table" then
    argerror(arg, name, "protocols must be a string or a list of strings, got "
      .. check.typename(p), level + 1)
  end
  for i = 1, #p do
    if type(p[i]) ~= "string" or not match(p[i], "^[%w!#$%%&'*+.^_`|~-]+$") then
      argerror(arg, name, "protocols: each must be a token string", level + 1)
    end
  end
  return p
end

local function new(sock, client, opts, protocol, level)
  local max_message, fragment, close_timeout = common_opts(opts, "websocket", 1, level + 1)
  local self = setmetatable({
    _sock = sock, _client = client, _lock = ws_lock(),
    max_message = max_message, fragment = fragment, close_timeout = close_timeout,
    protocol = protocol,
    _kind = false, _parts = false, _size = 0,   -- the message being received
    _mid = false,        -- inside a frame: a receive cut short there leaves
                         -- the stream out of step
    _q = {}, _qn = 0, _qbytes = 0, _writer = false, _err = false, _err_en = false,
    _sent_close = false, _done = false, _receiver = false, _watch = false,
    pongs = 0,
    close_code = false, close_reason = false,
  }, WebSocket)
  SOCKETS[self] = true
  return self
end

---------------------------------------------------------------------------
-- Frames
---------------------------------------------------------------------------

-- the frame's head: FIN, opcode, MASK, the length in 7, 7+16 or 7+64 bits
local function head(op, n, fin, masked)
  local b1 = fin and (0x80 | op) or op
  local m = masked and 0x80 or 0
  if n < 126 then return pack("BB", b1, m | n) end
  if n < 65536 then return pack(">BBI2", b1, m | 126, n) end
  return pack(">BBI8", b1, m | 127, n)
end

-- Outgoing frames wait in a queue (self._q, self._qn pieces, _qbytes
-- bytes) and a writer task sends what has gathered in as few sends as it
-- can: an echo loop that finds eight messages buffered answers them with
-- one send, not eight ring round trips.  ws:send returns once its frames
-- are queued; past HIGH bytes queued it sends them itself and waits (a
-- big message waits for its send, as a small one does under load).  The
-- lock keeps one task sending at a time; the queue keeps each message's
-- frames together.  A failed send is kept in _err and every later send
-- returns it.
local HIGH = 256 * 1024
local BIG = 65536             -- a piece sent alone, pinned, not copied

-- everything queued, sent; the caller holds the lock
local function flush_locked(self)
  local sock = self._sock
  while self._qn > 0 do
    local q, n = self._q, self._qn
    self._q, self._qn, self._qbytes = {}, 0, 0
    local i = 1
    while i <= n do
      local j, size = i, 0
      if #q[i] > BIG then j = i + 1
      else
        while j <= n and #q[j] <= BIG and size < HIGH do size = size + #q[j]; j = j + 1 end
      end
      -- (one frame's head and payload: `..` copies once, concat's buffer
      -- grows by doubling)
      local ok, err, en = sock:send(j == i + 1 and q[i]
        or j == i + 2 and q[i] .. q[i + 1] or concat(q, "", i, j - 1))
      if not ok then
        self._err, self._err_en = err, en
        self._q, self._qn, self._qbytes = {}, 0, 0
        return nil, err, en
      end
      i = j
    end
  end
  return true
end

-- flush under the lock, released whatever happens (a cancel, a timeout
-- scope): a sender cut short never stalls the others
local function flush(self)
  local lock = self._lock
  lock:acquire()
  local ok, r1, r2, r3 = pcall(flush_locked, self)
  lock:release()
  if not ok then error(r1, 0) end
  if r1 == nil and self._err then return nil, self._err, self._err_en end
  return r1, r2, r3
end

local function writer(self)
  pcall(flush, self)
  self._writer = false
end

local function put(self, s)
  local n = self._qn + 1
  self._q[n] = s
  self._qn = n
  self._qbytes = self._qbytes + #s
end

-- one frame into the queue: a client's masked with a fresh key (5.3)
local function put_frame(self, op, payload, fin)
  if self._client then
    local masked, key = ws_mask(payload)
    if not masked then return nil, key end
    put(self, head(op, #payload, fin, true) .. key)
    put(self, masked)
  else
    put(self, head(op, #payload, fin, false))
    put(self, payload)
  end
  return true
end

-- after put_frame: the writer is on its way, or past HIGH the caller
-- sends the queue itself
local function queued(self)
  if self._qbytes > HIGH then return flush(self) end
  if not self._writer then
    self._writer = true
    uring.spawn(writer, self)
  end
  return true
end

local function send_frame(self, op, payload, fin)
  if self._err then return nil, self._err, self._err_en end
  local ok, err = put_frame(self, op, payload, fin)
  if not ok then return nil, err end
  return queued(self)
end

-- a message in frames of at most `fragment` bytes
local function send_message(self, op, msg)
  if self._err then return nil, self._err, self._err_en end
  local frag, n = self.fragment, #msg
  if not frag or n <= frag then return send_frame(self, op, msg, true) end
  local i = 1
  while i <= n do
    local j = i + frag - 1
    local ok, err = put_frame(self, i == 1 and op or CONT, sub(msg, i, j), j >= n)
    if not ok then return nil, err end
    i = j + 1
  end
  return queued(self)
end

local function close_payload(code, reason)
  if code == nil or code == 1005 then return "" end
  return pack(">I2", code) .. (reason or "")
end

-- the close frame, once, after what is queued; sent before this returns
local function send_close(self, code, reason)
  if self._sent_close then return true end
  self._sent_close = true
  if self._err then return nil, self._err, self._err_en end
  put_frame(self, CLOSE, close_payload(code, reason), true)
  return flush(self)
end

-- the end of the connection: our close frame has gone (or could not),
-- the peer's came or will not; FIN, then what the peer still sends is
-- read and dropped until its FIN (a close with unread bytes would be a
-- reset, which can destroy our close frame before the peer reads it),
-- for at most close_timeout seconds.  A task receiving elsewhere is
-- woken by the close with "closed".
local function finish(self)
  if self._done then return end
  self._done = true
  if self._watch then self._watch:cancel(); self._watch = false end
  local sock = self._sock
  local me = uring.current()
  if not self._receiver or self._receiver == me then
    pcall(uring.timeout, self.close_timeout, function()
      sock:shutdown("send")
      while sock:recv() do end
    end)
  end
  sock:close()
end

-- failing the connection (7.1.7): our close frame with the code, then the
-- end; the receive that found the fault reports it
local function fail(self, code, reason)
  self.close_code, self.close_reason = code, reason
  if self._on_error then           -- a server's: the peer broke the protocol
    pcall(self._on_error, "websocket: " .. reason .. " (closed with " .. code .. ")", self._req)
  end
  pcall(send_close, self, code, reason)
  finish(self)
  return nil, "closed", code, reason
end

-- One frame in: op, fin, payload | false, code, reason (a protocol
-- fault) | nil, err, errno (the socket's failure; "closed" at its end)
local function read_frame(self)
  local sock = self._sock
  local h, err, en = sock:receive(2)
  if not h then return nil, err, en end
  self._mid = true
  local b1, b2 = byte(h, 1, 2)
  local op, len = b1 & 0x0f, b2 & 0x7f
  local fin, masked = b1 >= 0x80, b2 >= 0x80
  if b1 & 0x70 ~= 0 then return false, 1002, "reserved bits set" end
  if masked == self._client then
    return false, 1002, self._client and "masked frame from the server"
      or "unmasked frame from the client"
  end
  if op >= 8 then
    if op > PONG then return false, 1002, "reserved opcode " .. op end
    if not fin then return false, 1002, "fragmented control frame" end
    if len > 125 then return false, 1002, "control frame over 125 bytes" end
  elseif op > BINARY then
    return false, 1002, "reserved opcode " .. op
  end
  if len < 126 and op < 8 and self._size + len > self.max_message then
    return false, 1009, "message over " .. self.max_message .. " bytes"
  end
  local payload = ""
  if len < 126 then
    -- a small frame: key and payload in one receive (a client's frame
    -- has a key even when empty)
    if masked then
      payload, err, en = sock:receive(4 + len)
      if not payload then return nil, err, en end
      payload = ws_unmask(payload)
    elseif len > 0 then
      payload, err, en = sock:receive(len)
      if not payload then return nil, err, en end
    end
  else
    local ext
    ext, err, en = sock:receive(len == 126 and 2 or 8)
    if not ext then return nil, err, en end
    if len == 126 then len = unpack(">I2", ext)
    else
      len = unpack(">i8", ext)
      if len < 0 then return false, 1002, "frame length over 2^63" end
    end
    if op < 8 and self._size + len > self.max_message then
      return false, 1009, "message over " .. self.max_message .. " bytes"
    end
    -- the key with the payload, as for a small frame
    payload, err, en = sock:receive(masked and 4 + len or len)
    if not payload then return nil, err, en end
    if masked then payload = ws_unmask(payload) end
  end
  self._mid = false
  return op, fin, payload
end

-- the peer's close frame: its code and reason checked (7.4, 5.5.1), our
-- answer, the end
local function peer_closed(self, payload)
  local code, reason = 1005, ""
  if #payload == 1 then return fail(self, 1002, "close frame of 1 byte") end
  if #payload >= 2 then
    code = unpack(">I2", payload)
    reason = sub(payload, 3)
    if not valid_code(code) then
      return fail(self, 1002, "close code " .. code .. " out of range")
    end
    if not utf8len(reason) then return fail(self, 1007, "close reason not UTF-8") end
  end
  self.close_code, self.close_reason = code, reason
  pcall(send_close, self, code)           -- the echo (5.5.1); harmless twice
  finish(self)
  return nil, "closed", code, reason
end

-- the socket failed or ended under a receive: no close handshake (1006)
local function dropped(self, err)
  if not self.close_code then self.close_code, self.close_reason = 1006, err end
  self._sent_close = true
  if not self._done then
    self._done = true
    if self._watch then self._watch:cancel(); self._watch = false end
    self._sock:close()
  end
  return nil, "closed", self.close_code, self.close_reason
end

local function receive(self)
  while true do
    local op, fin, payload = read_frame(self)
    if op == nil then
      -- a timeout (sock:settimeout) between frames loses nothing
      if fin == "timeout" and not self._mid then return nil, "timeout", ETIME end
      return dropped(self, fin == "closed" and "connection closed without a close frame"
        or tostring(fin))
    elseif op == false then
      return fail(self, fin, payload)
    elseif op == CLOSE then
      return peer_closed(self, payload)
    elseif op == PING then
      if not self._sent_close then
        local ok, err = send_frame(self, PONG, payload, true)
        if not ok then return dropped(self, err) end
      end
    elseif op == PONG then
      self.pongs = self.pongs + 1
    else
      if op == CONT then
        if not self._kind then return fail(self, 1002, "continuation frame outside a message") end
      else
        if self._kind then return fail(self, 1002, "new message inside a fragmented one") end
        self._kind = op
      end
      local msg
      if fin and not self._parts then
        msg = payload
      else
        local parts = self._parts or {}
        parts[#parts + 1] = payload
        self._parts = parts
        self._size = self._size + #payload
        if fin then msg = concat(parts) end
      end
      if fin then
        local kind = self._kind
        self._kind, self._parts, self._size = false, false, 0
        if kind == TEXT and not utf8len(msg) then
          return fail(self, 1007, "text message not UTF-8")
        end
        -- a message after our close frame is dropped (5.5.1): the
        -- answer to it is all that counts now
        if not self._sent_close then return msg, KIND[kind] end
      end
    end
  end
end

--- ws:receive() -> msg, "text" | "binary" | nil, "closed", code, reason
-- The next whole message (fragments joined).  Pings are answered and
-- pongs counted on the way.  At the end: nil, "closed" and the close code
-- (the peer's, ours when it broke the protocol: 1002, 1007, 1009; 1006
-- when the connection dropped without a close frame) and reason.
function WebSocket:receive()
  checkws(self, "receive")
  check.intask("receive")
  if self._done then
    return nil, "closed", self.close_code or 1006, self.close_reason or ""
  end
  if self._receiver then check.error("receive: websocket is busy (another task is receiving on it)") end
  if self._mid then return dropped(self, "a receive was cut short inside a frame") end
  self._receiver = uring.current()
  local ok, r1, r2, r3, r4 = pcall(receive, self)
  self._receiver = false
  if not ok then error(r1, 0) end
  return r1, r2, r3, r4
end

local function checkmsg(msg, name, arg, level)
  if type(msg) == "number" then return tostring(msg) end
  if type(msg) ~= "string" then typeerror(arg, name, "string", msg, level + 1) end
  return msg
end

--- ws:send(msg [, "text" | "binary"]) -> bytes | nil, err, errno
-- kind defaults to "text" for valid UTF-8 and "binary" otherwise; "text"
-- with bytes that are not UTF-8 raises.
function WebSocket:send(msg, kind)
  checkws(self, "send")
  msg = checkmsg(msg, "send", 2, 1)
  local op
  if kind == nil then op = utf8len(msg) and TEXT or BINARY
  elseif kind == "text" then
    if not utf8len(msg) then argerror(2, "send", "text message not UTF-8") end
    op = TEXT
  elseif kind == "binary" then op = BINARY
  else argerror(3, "send", "'text' or 'binary' expected") end
  check.intask("send")
  if self._sent_close then return nil, "closed", EBADF end
  local ok, err, en = send_message(self, op, msg)
  if not ok then return nil, err, en end
  return #msg
end

--- ws:ping([data]) -> true | nil, err, errno: a ping (at most 125 bytes);
-- its pong is counted in ws.pongs by the task receiving
function WebSocket:ping(data)
  checkws(self, "ping")
  if data == nil then data = "" end
  data = checkmsg(data, "ping", 2, 1)
  if #data > 125 then argerror(2, "ping", "at most 125 bytes") end
  check.intask("ping")
  if self._sent_close then return nil, "closed", EBADF end
  local ok, err, en = send_frame(self, PING, data, true)
  if not ok then return nil, err, en end
  return true
end

-- the close handshake from our side: our frame, then the peer's answer
-- read here (dropping messages) unless another task is receiving, which
-- then ends the connection when the answer comes (or a watchdog after
-- close_timeout)
local function close(self, code, reason)
  if self._done then return true end
  if self._sent_close then
    if not self._receiver then finish(self) end
    return true
  end
  self.close_code, self.close_reason = code, reason
  local ok = pcall(send_close, self, code, reason)
  if not ok or self._done then finish(self); return true end
  if self._receiver then
    self._watch = uring.spawn(function()
      uring.sleep(self.close_timeout)
      self._watch = false
      if not self._done then self._done = true; self._sock:close() end
    end)
    return true
  end
  self._receiver = uring.current()
  pcall(uring.timeout, self.close_timeout, function()
    while true do
      local op, _, payload = read_frame(self)
      if not op then return end
      if op == CLOSE then
        if #payload >= 2 then
          self.close_code, self.close_reason = unpack(">I2", payload), sub(payload, 3)
        end
        return
      end
    end
  end)
  self._receiver = false
  finish(self)
  return true
end

--- ws:close([code [, reason]]) -> true: the close handshake (code default
-- 1000; reason at most 123 bytes of UTF-8), then the connection ends
function WebSocket:close(code, reason)
  checkws(self, "close")
  if code == nil then code = 1000
  elseif math.type(code) ~= "integer" or not (code == 1000 or (code >= 1001 and code <= 1003)
      or (code >= 1007 and code <= 1014) or (code >= 3000 and code <= 4999)) then
    argerror(2, "close", "close code out of range")
  end
  if reason == nil then reason = ""
  elseif type(reason) ~= "string" then typeerror(3, "close", "string", reason)
  elseif #reason > 123 then argerror(3, "close", "reason over 123 bytes")
  elseif not utf8len(reason) then argerror(3, "close", "reason not UTF-8") end
  check.intask("close")
  return close(self, code, reason)
end

WebSocket.__close = function(self) if SOCKETS[self] then pcall(close, self, 1000, "") end end

--- ws:socket() -> the uring socket under the connection
function WebSocket:socket()
  checkws(self, "socket")
  return self._sock
end

---------------------------------------------------------------------------
-- The server's side: req:upgrade()
---------------------------------------------------------------------------

-- does a comma-separated header value hold token (any case)?
local function has_token(v, token)
  if type(v) ~= "string" then return false end
  for t in v:gmatch("[^,]+") do
    if lower(match(t, "^%s*(.-)%s*$")) == token then return true end
  end
  return false
end

local function refuse(res, code, why, extra)
  if res and not res:sent() then
    res:status(code)
    if extra then for k, v in pairs(extra) do res:header(k, v) end end
    res:header("Content-Type", "text/plain")
    res:header("Connection", "close")
    res:finish("websocket handshake: " .. why .. "\n")
  end
  return nil, "websocket handshake: " .. why
end

--- upgrade(req, res, opts) -> ws | nil, err: the handshake's checks (4.2.1)
-- and the 101 answer; req:upgrade in server.lua calls it
function M.upgrade(req, res, opts, level)
  level = (level or 1) + 1
  if opts == nil then opts = {}
  elseif type(opts) ~= "table" then typeerror(2, "upgrade", "table", opts, level) end
  local offered = protocols_opt(opts, "upgrade", 2, level)
  local hs = opts.headers
  if hs ~= nil and type(hs) ~= "table" then
    argerror(2, "upgrade", "headers must be a table, got " .. check.typename(hs), level)
  end
  common_opts(opts, "upgrade", 2, level)
  check.intask("upgrade", level)
  if not res or res:sent() then check.error("upgrade: the response has already been sent", level) end
  local h = req.headers
  if req.method ~= "GET" then return refuse(res, 400, "method must be GET") end
  if req.version ~= "1.1" then return refuse(res, 400, "HTTP/1.1 required") end
  if not has_token(h["upgrade"], "websocket") then
    return refuse(res, 400, "no Upgrade: websocket")
  end
  if not has_token(h["connection"], "upgrade") then
    return refuse(res, 400, "no Connection: Upgrade")
  end
  if h["sec-websocket-version"] ~= "13" then
    return refuse(res, 426, "version 13 required", { ["Sec-WebSocket-Version"] = "13" })
  end
  local key = h["sec-websocket-key"]
  -- 16 bytes in base64: 22 characters, the last with its low bits clear
  if type(key) ~= "string" or #key ~= 24 or not match(key, "^[%w+/]+[AQgw]==$") then
    return refuse(res, 400, "bad Sec-WebSocket-Key")
  end
  local protocol
  if offered then
    local want = {}
    for _, p in ipairs(offered) do want[p] = true end
    for p in (h["sec-websocket-protocol"] or ""):gmatch("[^,%s]+") do
      if want[p] then protocol = p; break end
    end
  end
  local parts = { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n",
    "Connection: Upgrade\r\nSec-WebSocket-Accept: ", ws_accept(key), "\r\n" }
  if protocol then parts[#parts + 1] = "Sec-WebSocket-Protocol: " .. protocol .. "\r\n" end
  if hs then
    for k, v in pairs(hs) do
      if type(k) ~= "string" or find(k, "[%c%s:]") or find(tostring(v), "[\r\n]") then
        argerror(2, "upgrade", "headers: invalid header", level)
      end
      parts[#parts + 1] = k .. ": " .. tostring(v) .. "\r\n"
    end
  end
  parts[#parts + 1] = "\r\n"
  -- the response is the server's no more: the connection is the ws's
  res._sent, res._done, res._keep = true, true, false
  local sock = req.socket
  local ok, err, en = sock:send(concat(parts))
  if not ok then return nil, err, en end
  local ws = new(sock, false, opts, protocol, level)
  ws._on_error, ws._req = require("uring.http.server").on_error_of(res), req
  res._ws = ws
  return ws
end

-- The handler returned (or raised) with its ws still open: the close
-- handshake, 1000 or 1011 (an internal error)
function M.handler_done(ws, ok)
  if not ws._done then pcall(close, ws, ok and 1000 or 1011, ok and "" or "internal error") end
end

---------------------------------------------------------------------------
-- The client's side: uring.http.websocket(url [, opts])
---------------------------------------------------------------------------

-- ws://host[:port]/path?query -> {host, port, path, authority, tls}
local function parse(url)
  local scheme, rest = match(url, "^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and lower(scheme)
  if scheme ~= "ws" and scheme ~= "wss" then
    return nil, "invalid websocket url (ws:// or wss:// expected): " .. url
  end
  local authority, path = match(rest, "^([^/?#]*)(.*)$")
  path = path:gsub("#.*$", "")
  if path == "" then path = "/" elseif sub(path, 1, 1) == "?" then path = "/" .. path end
  if find(path, "[%c ]") then return nil, "invalid url: " .. url end
  local host, port = match(authority, "^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = match(authority, "^([^:@]+):?(%d*)$") end
  if not host or host == "" or find(host, "[%c ]") then return nil, "invalid url: " .. url end
  port = port ~= "" and math.tointeger(tonumber(port)) or (scheme == "wss" and 443 or 80)
  if port > 65535 then return nil, "invalid url: " .. url end
  return { host = host, port = port, path = path, authority = authority, tls = scheme == "wss" }
end

-- the server's answer to our handshake (4.1, steps 1-6 of the client's
-- checks): ws's protocol | nil, err
local function read_answer(sock, key, offered)
  local line = readline(sock, 16384)
  if line == nil then return nil, "websocket handshake: connection closed" end
  if line == TOO_BIG then return nil, "websocket handshake: status line too long" end
  local status = match(line, "^HTTP/1%.%d (%d%d%d)")
  local h = {}
  local total = 0
  while true do
    local l = readline(sock, 16384)
    if l == nil then return nil, "websocket handshake: connection closed" end
    if l == TOO_BIG then return nil, "websocket handshake: header too long" end
    total = total + #l
    if total > 65536 then return nil, "websocket handshake: headers too long" end
    if l == "" then break end
    local name, value = match(l, "^([^:%s]+):%s*(.-)%s*$")
    if name then
      name = lower(name)
      h[name] = h[name] and (h[name] .. ", " .. value) or value
    end
  end
  if status ~= "101" then
    return nil, "websocket handshake: the server answered " .. (status or ("'" .. line .. "'"))
  end
  if not has_token(h.upgrade, "websocket") then return nil, "websocket handshake: no Upgrade: websocket" end
  if not has_token(h.connection, "upgrade") then return nil, "websocket handshake: no Connection: Upgrade" end
  if h["sec-websocket-accept"] ~= ws_accept(key) then
    return nil, "websocket handshake: wrong Sec-WebSocket-Accept"
  end
  if h["sec-websocket-extensions"] then
    return nil, "websocket handshake: an extension nobody asked for"
  end
  local p = h["sec-websocket-protocol"]
  if p then
    local ok = false
    for _, o in ipairs(offered or {}) do if o == p then ok = true end end
    if not ok then return nil, "websocket handshake: a subprotocol nobody asked for: " .. p end
  end
  return p or false
end

local function connect(u, opts, offered, state)
  local sock, err, en
  if u.tls then
    -- wss:// is TLS's connect with the host name for SNI and checks;
    -- this build has none yet
    if not uring.tls then
      return nil, "wss:// needs TLS, which this build of uring does not have"
    end
    sock, err, en = uring.connect(u.host, u.port, { tls = opts.tls or true, servername = u.host })
  else
    sock, err, en = uring.connect(u.host, u.port)
  end
  if not sock then return nil, err, en end
  state.sock = sock
  sock:setoption("nodelay", true)
  local key
  key, err, en = ws_key()
  if not key then return nil, err, en end
  local parts = { "GET ", u.path, " HTTP/1.1\r\nHost: ", u.authority,
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", key,
    "\r\nSec-WebSocket-Version: 13\r\n" }
  if offered then
    parts[#parts + 1] = "Sec-WebSocket-Protocol: " .. concat(offered, ", ") .. "\r\n"
  end
  if opts.origin then parts[#parts + 1] = "Origin: " .. opts.origin .. "\r\n" end
  for k, v in pairs(opts.headers or {}) do
    parts[#parts + 1] = k .. ": " .. tostring(v) .. "\r\n"
  end
  parts[#parts + 1] = "\r\n"
  local ok
  ok, err, en = sock:send(concat(parts))
  if not ok then return nil, err, en end
  local protocol
  protocol, err = read_answer(sock, key, offered)
  if protocol == nil then return nil, err end
  return protocol or nil
end

--- uring.http.websocket(url [, opts]) -> ws | nil, err [, errno]
-- opts: protocols (a token or list of them, offered), origin, headers,
-- timeout (seconds for the connect and handshake, default 30),
-- max_message, fragment, close_timeout
function M.websocket(url, opts)
  if type(url) ~= "string" then typeerror(1, "websocket", "string", url) end
  if opts == nil then opts = {}
  elseif type(opts) ~= "table" then typeerror(2, "websocket", "table", opts) end
  local offered = protocols_opt(opts, "websocket", 2, 1)
  common_opts(opts, "websocket", 2, 1)
  local t = numopt(opts, "timeout", 30, "websocket", 2, false, 1)
  if opts.origin ~= nil and (type(opts.origin) ~= "string" or find(opts.origin, "[\r\n]")) then
    argerror(2, "websocket", "origin must be a string without CR or LF")
  end
  if opts.headers ~= nil then
    if type(opts.headers) ~= "table" then
      argerror(2, "websocket", "headers must be a table, got " .. check.typename(opts.headers))
    end
    for k, v in pairs(opts.headers) do
      if type(k) ~= "string" or k == "" or find(k, "[%c%s:]") then
        argerror(2, "websocket", "headers: invalid header name")
      end
      if (type(v) ~= "string" and type(v) ~= "number") or find(tostring(v), "[\r\n]") then
        argerror(2, "websocket", "headers: " .. k .. " must be a string without CR or LF")
      end
    end
  end
  check.intask("websocket")
  local u, err = parse(url)
  if not u then return nil, err end
  local state = {}
  local protocol, en
  protocol, err, en = uring.timeout(t, connect, u, opts, offered, state)
  if protocol == nil and (err ~= nil) then
    if state.sock then state.sock:close() end
    return nil, err, en
  end
  return new(state.sock, true, opts, protocol, 1)
end

return M
