--- uring.net: the Lua shape of sockets.  The C core (net.c) receives into
-- the socket's buffer and takes lines and counts out of it; here those
-- primitives become io-style views (read, write, lines, recv), and
-- uring.install_socket puts uring.socket in LuaSocket's place.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

local concat, select, type = table.concat, select, type
local argerror, typeerror = check.argerror, check.typeerror
local methods = core.socket_methods
local fill, take, take_line = methods._fill, methods._take, methods._take_line
local buffered, state = methods._buffered, methods._closed

local M = {}


-- These methods are plain Lua: check self as the C ones do, so
-- sock.read(other) raises a bad argument, not "attempt to call a nil
-- value (method '_take_line')", and a closed, listening or busy socket
-- raises at the caller's line, not inside this file.  how: "receive" or
-- "send", what the method will do.
local function checkself(self, name, how, level)
  level = (level or 1) + 1
  if not check.is(self, methods) then typeerror(1, name, "uring.socket", self, level) end
  local closed, listening, receiving, sending = state(self)
  if closed then check.error("attempt to use a closed socket", level) end
  if how == nil then return end
  if listening then check.error(name .. ": socket is listening", level) end
  if how == "receive" and receiving then
    check.error(name .. ": socket is busy (another task is receiving on it)", level)
  elseif how == "send" and sending then
    check.error(name .. ": socket is busy (another task is sending)", level)
  end
  check.intask(name, level)
end

-- sock:sendfile on a TLS socket: the kernel's splice would put the file's
-- bytes on the wire in the clear, so they are read here and go through
-- the socket's TLS send, 64 KiB at a time, with the same results as the C
-- method.  The arguments are checked here for both (as the C method would
-- word it), so no error names the local it is called through.
local c_sendfile, is_tls = methods.sendfile, methods._tls
local PIECE = 65536
function methods.sendfile(self, ...)
  local file, offset, len, head = ...
  if not check.is(self, methods) then typeerror(1, "sendfile", "uring.socket", self) end
  if not check.is(file, core.file_methods) then
    typeerror(2, "sendfile", "uring.file", file, 1, select("#", ...) == 0 and "no value" or nil)
  end
  if offset ~= nil then offset = check.integer(3, "sendfile", offset) end
  if len ~= nil then len = check.integer(4, "sendfile", len) end
  if offset and offset < 0 then argerror(3, "sendfile", "offset must be non-negative") end
  if len and len < 0 then argerror(4, "sendfile", "length must be non-negative") end
  if head ~= nil and type(head) ~= "string" then typeerror(5, "sendfile", "string", head) end
  if not is_tls(self) then return c_sendfile(self, file, offset, len, head) end
  checkself(self, "sendfile", "send")
  offset = offset or 0
  if not len then
    local st, msg, en = file:stat()
    if not st then return nil, msg, en, 0 end
    len = math.max(st.size - offset, 0)
  end
  local sent = 0
  head = head or ""
  while sent < len or head ~= "" do
    local piece = ""
    if sent < len then
      local s, msg, en = file:pread(math.min(PIECE, len - sent), offset + sent)
      if not s then return nil, msg, en, sent end
      if s == "" then len = sent end             -- the file is shorter
      piece = s
    end
    local ok, msg, en, part = self:send(head .. piece)
    if not ok then
      return nil, msg, en, sent + math.max((part or 0) - #head, 0)
    end
    sent, head = sent + #piece, ""
  end
  return sent
end

-- Wait until n bytes are buffered; fill() as needed.  Returns true when
-- they are, false at EOF, or nil, msg, errno.
local function fill_until(self, n)
  while (buffered(self)) < n do
    local ok, msg, en = fill(self)
    if ok == nil then return nil, msg, en end
    if ok == false then return false end
  end
  return true
end

-- sock:receive([pattern [, prefix]]) is C (net.c): the hot path of
-- every line protocol takes its line with no Lua frame around it.

--- sock:recv([max]) -> string | nil, "closed" | fail
-- Whatever has arrived (at most max bytes), waiting only if nothing has.
function methods:recv(max)
  checkself(self, "recv", "receive")
  if max ~= nil and (math.type(max) ~= "integer" or max <= 0) then
    argerror(2, "recv", "positive integer expected")
  end
  if (buffered(self)) == 0 then
    local ok, msg, en = fill(self)
    if ok == nil then return nil, msg, en end
    if ok == false then return nil, "closed" end
  end
  return take(self, max or -1)
end

-- a format of sock:read: a count, or "l", "L", "a" (with or without
-- "*").  Returns the count or the format's letter, or nil and what is
-- wrong with it.
local function format_of(f)
  if type(f) == "number" then
    local n = math.tointeger(f)
    if n == nil then return nil, "number has no integer representation" end
    if n < 0 then return nil, "invalid count" end
    return n
  end
  if type(f) ~= "string" then return nil, "string expected, got " .. check.typename(f) end
  local p = f:gsub("^%*", "", 1):sub(1, 1)
  if p ~= "l" and p ~= "L" and p ~= "a" then return nil, "invalid format" end
  return p
end

--- sock:read(...) -- io-style formats "l", "L", "a", n; nil at EOF
function methods:read(...)
  local n = select("#", ...)
  local fmts = n == 0 and { "l" } or { ... }
  if n == 0 then n = 1 end
  checkself(self, "read", "receive")
  for i = 1, n do
    local f, msg = format_of(fmts[i])
    if f == nil then argerror(i + 1, "read", msg) end
    fmts[i] = f
  end
  local out = {}
  for i = 1, n do
    local f = fmts[i]
    local v, msg, en
    if type(f) == "number" then
      local ok
      ok, msg, en = fill_until(self, f)
      if ok == nil then return nil, msg, en end
      v = take(self, f)
      if v == "" and f > 0 then v = nil end
    elseif f == "l" or f == "L" then
      while true do
        v = take_line(self, f == "L", false)
        if v then break end
        local ok
        ok, msg, en = fill(self)
        if ok == nil then return nil, msg, en end
        if ok == false then
          v = take(self)
          if v == "" then v = nil end
          break
        end
      end
    else                                    -- "a"
      while true do
        local ok
        ok, msg, en = fill(self)
        if ok == nil then return nil, msg, en end
        if ok == false then break end
      end
      v = take(self)
    end
    out[i] = v
    if v == nil then return table.unpack(out, 1, i) end
  end
  return table.unpack(out, 1, n)
end

--- sock:write(...) -> sock | fail  (strings and numbers, as file:write)
function methods:write(...)
  local n = select("#", ...)
  local parts = { ... }
  checkself(self, "write", "send")
  for i = 1, n do
    local v = parts[i]
    if type(v) == "number" then parts[i] = tostring(v)
    elseif type(v) ~= "string" then typeerror(i + 1, "write", "string", v)
    end
  end
  local ok, msg, en = self:send(n == 1 and parts[1] or concat(parts, "", 1, n))
  if not ok then return nil, msg, en end
  return self
end

--- sock:lines([fmt]) -> iterator over sock:read(fmt or "l"); a bad
-- format is raised by the iterator, as io's lines does
function methods:lines(fmt)
  checkself(self, "lines")
  if fmt == nil then fmt = "l" end
  local f, badmsg = format_of(fmt)
  local sock = self
  return function()
    -- the iterator is called by the for loop: errors name its line
    if f == nil then argerror(2, "for iterator", badmsg) end
    checkself(sock, "lines", "receive")
    local v, msg = sock:read(fmt)
    if v == nil and msg and msg ~= "closed" then error(msg, 2) end
    return v
  end
end

---------------------------------------------------------------------------
-- uring.install_socket(): Debian's socket.lua (and socket.http, ...) over
-- uring.socket
---------------------------------------------------------------------------
local CAPTURED = { "socket.core", "socket", "socket.http", "socket.url",
  "socket.headers", "socket.tp", "socket.ftp", "socket.smtp", "socket.mbox" }
local saved

function M.install_socket(on)
  if on ~= nil and type(on) ~= "boolean" then
    typeerror(1, "install_socket", "boolean", on)
  end
  local S = require "uring.socket"
  local loaded = package.loaded
  if on == false then
    if saved then
      for _, name in ipairs(CAPTURED) do
        local v = saved[name]
        if v == false then v = nil end
        loaded[name] = v
      end
      saved = nil
    end
    return S
  end
  if saved and loaded["socket.core"] == S and loaded.socket then return loaded.socket end
  if not saved then
    saved = {}
    for _, name in ipairs(CAPTURED) do saved[name] = loaded[name] or false end
  end
  for _, name in ipairs(CAPTURED) do loaded[name] = nil end
  loaded["socket.core"] = S
  local ok, mod = pcall(require, "socket")
  if not ok then        -- no LuaSocket's socket.lua on this system: S alone
    loaded.socket = S
    mod = S
  end
  return mod
end

return M
