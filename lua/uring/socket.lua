--- uring.socket: LuaSocket's API over the ring.
-- A stand-in for LuaSocket's C module `socket.core`: the same functions,
-- objects (tcp{master}/tcp{client}/tcp{server}, udp{unconnected}/
-- udp{connected}), return conventions and error strings, but every call
-- that would block yields the current task instead.  Debian's unmodified
-- socket.lua, socket.http, ltn12 ... load on top of it through
-- uring.install_socket().
--
-- The objects are Lua tables over the native sockets of net.c and udp.c:
-- receive patterns are taken from the native socket's buffer (_fill,
-- _take, _take_line) so that LuaSocket's partial results ("timeout" and
-- "closed" return what arrived, consumed) can be built here, while the
-- native API keeps unread bytes buffered.
local pack, unpack = table.pack, table.unpack
local fmt = string.format

local uring, core           -- set when init.lua registers the module

local M = {}
M._VERSION = "LuaSocket 3.0.0"   -- what Debian's LuaSocket 3.1 reports
M._SETSIZE = 1024
M._SOCKETINVALID = -1
M._DATAGRAMSIZE = 8192

local function ensure()
  if not uring then require "uring" end   -- registers M (init.lua)
end

local function now() return uring.now() end

-- Errno -> LuaSocket's message (its pierror.h / socket_strerror).
local ERRS = {
  [98] = "address already in use", [106] = "already connected",
  [13] = "permission denied", [111] = "connection refused",
  [103] = "closed", [104] = "closed", [32] = "closed", [9] = "closed",
  [110] = "timeout", [62] = "timeout",
}
local NOTFOUND = "host or service not provided, or not known"

local function lserr(msg, en)
  if en and ERRS[en] then return ERRS[en] end
  if msg == "closed" or msg == "timeout" then return msg end
  -- the native message names the address first: "127.0.0.1:80: ..."
  return (tostring(msg):gsub("^.*: ", ""))
end

local function family_of(addr)
  return addr:find(":", 1, true) and "inet6" or "inet"
end

local function is_numeric(host)
  return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil
    or (host:find(":", 1, true) ~= nil and host:match("^[%x:%.%[%]]+$") ~= nil)
end

-- host -> {{family=, addr=}, ...} (IPv4 first), filtered by family | nil, err
local function lookup(host, family)
  if host == "*" then host = family == "inet6" and "::" or "0.0.0.0" end
  local list
  if is_numeric(host) then
    list = { { family = family_of(host), addr = host } }
  else
    local r = uring.resolve(host)
    if not r then return nil, NOTFOUND end
    list = r
  end
  if family then
    local out = {}
    for _, a in ipairs(list) do
      if a.family == family then out[#out + 1] = a end
    end
    list = out
  end
  if #list == 0 then return nil, NOTFOUND end
  return list
end

-- Run fn inside a task: as is in one, else in a private uring.run (which
-- also runs every other pending task to its end).
local function intask(fn, ...)
  if uring.current() then return fn(...) end
  return uring.run(fn, ...)
end

---------------------------------------------------------------------------
-- try / protect / skip (LuaSocket's except.c, with pcall: yields pass)
---------------------------------------------------------------------------
local TRYMT = { __tostring = function(e) return tostring(e[1]) end }

function M.newtry(finalizer)
  return function(...)
    if not (...) then
      if finalizer then finalizer() end
      error(setmetatable({ (select(2, ...)) }, TRYMT), 0)
    end
    return ...
  end
end

function M.protect(f)
  return function(...)
    local r = pack(pcall(f, ...))
    if r[1] then return unpack(r, 2, r.n) end
    local e = r[2]
    if getmetatable(e) == TRYMT then return nil, e[1] end
    error(e, 0)
  end
end

function M.skip(d, ...)
  -- as LuaSocket's C skip (luaL_checkinteger), not an arithmetic error here
  if math.type(d) ~= "integer" then
    if type(d) == "number" then
      error("bad argument #1 to 'skip' (number has no integer representation)", 2)
    end
    error("bad argument #1 to 'skip' (number expected, got "
      .. (d == nil and "no value" or type(d)) .. ")", 2)
  end
  if d >= select("#", ...) then return end
  if d < 0 then return ... end
  return select(d + 1, ...)
end

M.try = M.newtry()

function M.__unload() end

---------------------------------------------------------------------------
-- time
---------------------------------------------------------------------------
local epoch_offset   -- wall clock = monotonic + offset (set once: never jumps)

function M.gettime()
  ensure()
  if not epoch_offset then epoch_offset = os.time() - uring.now() end
  return uring.now() + epoch_offset
end

function M.sleep(s)
  ensure()
  s = tonumber(s)
  if not s then error("bad argument #1 to 'sleep' (number expected)", 2) end
  if s ~= s or s <= 0 then return end
  if s > 1e11 then s = 1e11 end
  intask(uring.sleep, s)
end

---------------------------------------------------------------------------
-- dns
---------------------------------------------------------------------------
local dns = {}
M.dns = dns

function dns.gethostname()
  local f = io.open("/proc/sys/kernel/hostname", "r")
  local name = f and f:read("l")
  if f then f:close() end
  if not name then return nil, "gethostname failed" end
  return name
end

local function toip(name)
  if type(name) ~= "string" and type(name) ~= "number" then
    error("bad argument #1 to 'toip' (string expected, got " .. type(name) .. ")", 3)
  end
  name = tostring(name)
  if name:match("^%d+%.%d+%.%d+%.%d+$") then
    return name, { name = name, alias = {}, ip = { name } }
  end
  if name == "" or name:find(":", 1, true) then return nil, "host not found" end
  local r = uring.resolve(name)
  if not r then return nil, "host not found" end
  local ips = {}
  for _, a in ipairs(r) do
    if a.family == "inet" then ips[#ips + 1] = a.addr end
  end
  if #ips == 0 then return nil, "host not found" end
  return ips[1], { name = name, alias = {}, ip = ips }
end

function dns.toip(name)
  ensure()
  return intask(toip, name)
end

function dns.getaddrinfo(host)
  ensure()
  if type(host) ~= "string" then
    error("bad argument #1 to 'getaddrinfo' (string expected)", 2)
  end
  return intask(function()
    local r = uring.resolve(host)
    if not r then return nil, NOTFOUND end
    local out = {}
    for i, a in ipairs(r) do out[i] = { family = a.family, addr = a.addr } end
    return out
  end)
end

local NOREVERSE = "reverse lookups are not supported by uring.socket"
function dns.tohostname() return nil, NOREVERSE end
function dns.getnameinfo() return nil, NOREVERSE end

---------------------------------------------------------------------------
-- TCP objects
---------------------------------------------------------------------------
local tcpm = {}        -- one method table, as LuaSocket's
local TCP = {}         -- class name -> metatable

local function tcp_tostring(self) return fmt("%s: %p", self.class, self) end
local function tcp_close_mm(self)
  local s = self.s
  self.s = nil
  if s then getmetatable(s).__close(s) end
end

for _, class in ipairs { "tcp{master}", "tcp{client}", "tcp{server}" } do
  TCP[class] = { __index = tcpm, __tostring = tcp_tostring, __name = class,
                 __close = tcp_close_mm }
end

local function setclass(self, class)
  self.class = class
  return setmetatable(self, TCP[class])
end

local function newtcp(class, family, s)
  return setclass({ s = s, family = family, block = -1, total = -1,
    armed = -1, opts = {}, rx = 0, tx = 0, born = now() }, class)
end

-- A checker of `self` for the methods of one kind (TCP or UDP): its
-- metatable must be one of `classes`, and its class one of `want` (a
-- string naming them; nil: any).  The error blames the method's caller.
local function checker(classes, any)
  return function(self, want, fname)
    local mt = getmetatable(self)
    local ok = false
    if mt and classes[mt.__name] == mt then
      ok = want == nil or want:find(self.class, 1, true) ~= nil
    end
    if not ok then
      error(fmt("bad argument #1 to '%s' (%s expected, got %s)", fname,
        want or any, mt and mt.__name or type(self)), 3)
    end
    return self
  end
end

local checktcp = checker(TCP, "tcp{any}")

-- The limit for the next wait of a call that started at `start`:
-- min(block, what is left of total); -1: none.
local function limit(self, start)
  local lim = -1
  if self.total >= 0 then
    lim = self.total - (now() - start)
    if lim < 0 then lim = 0 end
  end
  if self.block >= 0 and (lim < 0 or self.block < lim) then lim = self.block end
  return lim
end

local function arm(self, start)
  local lim = limit(self, start)
  if lim ~= self.armed then
    self.s:settimeout(lim >= 0 and lim or nil)
    self.armed = lim
  end
  return lim
end

-- Options: name -> {default, how to apply to a native socket (or nil)}
local TCPOPTS = {
  ["keepalive"] = { false, "keepalive" }, ["tcp-nodelay"] = { false, "nodelay" },
  ["reuseaddr"] = { false }, ["reuseport"] = { false }, ["linger"] = { nil },
  ["ipv6-v6only"] = { false }, ["tcp-keepidle"] = { 0 },
  ["tcp-keepcnt"] = { 0 }, ["tcp-keepintvl"] = { 0 },
  ["tcp-defer-accept"] = { 0 }, ["tcp-fastopen"] = { 0 },
  ["tcp-fastopen-connect"] = { false },
}

local function apply_opts(self)
  for name, v in pairs(self.opts) do
    local native = TCPOPTS[name][2]
    if native then self.s:setoption(native, v and true or false) end
  end
end

function tcpm:setoption(name, value)
  checktcp(self, nil, "setoption")
  local o = TCPOPTS[name]
  if not o then
    error(fmt("bad argument #2 to 'setoption' (unsupported option `%s')",
      tostring(name)), 2)
  end
  if name == "linger" then
    if type(value) ~= "table" then
      error("bad argument #3 to 'setoption' (table expected)", 2)
    end
    value = { on = value.on and true or false, timeout = tonumber(value.timeout) or 0 }
  end
  self.opts[name] = value
  if o[2] and self.s then
    local ok, msg, en = self.s:setoption(o[2], value and true or false)
    if not ok then return nil, lserr(msg, en) end
  end
  return 1
end

function tcpm:getoption(name)
  checktcp(self, nil, "getoption")
  local o = TCPOPTS[name]
  if not o then
    error(fmt("bad argument #2 to 'getoption' (unsupported option `%s')",
      tostring(name)), 2)
  end
  local v = self.opts[name]
  if v == nil then v = o[1] end
  if name == "linger" and v == nil then v = { on = false, timeout = 0 } end
  if name == "reuseaddr" and self.s and self.class ~= "tcp{client}" then v = true end
  return v
end

function tcpm:settimeout(value, mode)
  checktcp(self, nil, "settimeout")
  local t = tonumber(value) or -1
  if t ~= t then error("bad argument #2 to 'settimeout' (NaN)", 2) end
  if t < 0 then t = -1 elseif t > 1e11 then t = 1e11 end
  local m = type(mode) == "string" and mode:sub(1, 1) or "b"
  if m == "b" then self.block = t
  elseif m == "t" or m == "r" then self.total = t
  else error("bad argument #3 to 'settimeout' (invalid timeout mode)", 2) end
  return 1
end

function tcpm:gettimeout()
  checktcp(self, nil, "gettimeout")
  return self.block, self.total
end

function tcpm:getfd()
  checktcp(self, nil, "getfd")
  return self.s and self.s:fd() or -1
end

function tcpm:setfd()
  error("setfd: not supported by uring.socket (the ring owns its descriptors)", 2)
end

function tcpm:dirty()
  checktcp(self, nil, "dirty")
  return self.s ~= nil and self.class == "tcp{client}" and (self.s:_buffered()) > 0
end

function tcpm:getfamily()
  checktcp(self, nil, "getfamily")
  return self.family or "inet"
end

function tcpm:getstats()
  checktcp(self, nil, "getstats")
  return self.rx, self.tx, now() - self.born
end

function tcpm:setstats(received, sent, age)
  checktcp(self, nil, "setstats")
  self.rx = tonumber(received) or self.rx
  self.tx = tonumber(sent) or self.tx
  if tonumber(age) then self.born = now() - tonumber(age) end
  return 1
end

function tcpm:close()
  checktcp(self, nil, "close")
  local s = self.s
  self.s = nil
  if s then s:close() end
  return 1
end

function tcpm:shutdown(how)
  checktcp(self, "tcp{client}", "shutdown")
  how = how or "both"
  if how ~= "both" and how ~= "send" and how ~= "receive" then
    error("bad argument #2 to 'shutdown' (invalid shutdown method)", 2)
  end
  if not self.s then return nil, "closed" end
  local ok, msg, en = self.s:shutdown(how)
  if not ok then return nil, lserr(msg, en) end
  return 1
end

local function names(self, peer)
  if not self.s then return nil, "closed" end
  local host, port
  if peer then host, port = self.s:getpeername()
  else host, port = self.s:getsockname() end
  if not host then return nil, lserr(port) end
  return host, port, family_of(host)
end

function tcpm:getpeername()
  checktcp(self, nil, "getpeername")
  if self.class ~= "tcp{client}" then return nil, "not connected" end
  return names(self, true)
end

function tcpm:getsockname()
  checktcp(self, nil, "getsockname")
  if not self.s then
    return self.family == "inet6" and "::" or "0.0.0.0", 0, self.family or "inet"
  end
  return names(self, false)
end

function tcpm:connect(host, port)
  checktcp(self, "tcp{master}", "connect")
  ensure()
  if self.s then return nil, "bind before connect is not supported by uring.socket" end
  port = tonumber(port)
  if not port or port < 0 or port > 65535 then
    error("bad argument #3 to 'connect' (invalid port)", 2)
  end
  host = tostring(host)
  local start = now()
  local addrs, err = lookup(host, self.family)
  if not addrs then return nil, err end
  for _, a in ipairs(addrs) do
    local lim = limit(self, start)
    local s, msg, en
    if lim >= 0 then s, msg, en = uring.timeout(lim, core.connect, a.addr, port)
    else s, msg, en = core.connect(a.addr, port) end
    if s then
      self.s, self.family, self.armed = s, a.family, -1
      setclass(self, "tcp{client}")
      apply_opts(self)
      return 1
    end
    err = lserr(msg, en)
    if err == "timeout" then break end
  end
  return nil, err
end

function tcpm:bind(host, port)
  checktcp(self, "tcp{master}", "bind")
  ensure()
  if self.s then return nil, "already bound" end
  port = tonumber(port)
  if not port or port < 0 or port > 65535 then
    error("bad argument #3 to 'bind' (invalid port)", 2)
  end
  local addrs, err = lookup(tostring(host), self.family)
  if not addrs then return nil, err end
  -- bind and listen at once (the native listener): errors show here
  local s, msg, en = core.listen(addrs[1].addr, port,
    { reuseport = self.opts.reuseport and true or false })
  if not s then return nil, lserr(msg, en) end
  self.s, self.family, self.armed = s, addrs[1].family, -1
  return 1
end

function tcpm:listen(backlog)
  checktcp(self, "tcp{master}", "listen")
  if not self.s then
    local ok, err = self:bind(self.family == "inet6" and "::" or "0.0.0.0", 0)
    if not ok then return nil, err end
  end
  setclass(self, "tcp{server}")
  return 1
end

function tcpm:accept()
  checktcp(self, "tcp{server}", "accept")
  if not self.s then return nil, "closed" end
  local c = self.stash
  if c then
    self.stash = nil
  else
    arm(self, now())
    local msg, en
    c, msg, en = self.s:accept()
    if not c then return nil, lserr(msg, en) end
  end
  return newtcp("tcp{client}", self.family, c)
end

-- One wait for bytes: true | nil, err
local function fill(self, start)
  arm(self, start)
  local s = self.s
  local before = s:_buffered()
  local ok, msg, en = s:_fill()
  self.rx = self.rx + ((s:_buffered()) - before)   -- bytes off the wire
  if ok == nil then return nil, lserr(msg, en) end
  if ok == false then return nil, "closed" end
  return true
end

function tcpm:receive(pattern, prefix)
  checktcp(self, "tcp{client}", "receive")
  if prefix ~= nil and type(prefix) ~= "string" then
    if type(prefix) == "number" then prefix = tostring(prefix)
    else error("bad argument #3 to 'receive' (string expected, got " .. type(prefix) .. ")", 2) end
  end
  prefix = prefix or ""
  local s = self.s
  if not s then return nil, "closed", prefix end
  local start = now()
  local n = tonumber(pattern)
  if pattern == nil then pattern = "*l" end
  if n then
    if n < 0 then error("bad argument #2 to 'receive' (invalid receive pattern)", 2) end
    n = math.floor(n)
    while (s:_buffered()) < n do
      local ok, err = fill(self, start)
      if not ok then
        local part = s:_take(n)
        return nil, err, prefix .. part
      end
    end
    return prefix .. s:_take(n)
  end
  if type(pattern) ~= "string" then
    error("bad argument #2 to 'receive' (invalid receive pattern)", 2)
  end
  local p = pattern:gsub("^%*", ""):sub(1, 1)
  if p == "l" then
    while true do
      local line = s:_take_line(false, true)
      if line then return prefix .. line end
      local ok, err = fill(self, start)
      if not ok then
        return nil, err, prefix .. (s:_take():gsub("\r", ""))
      end
    end
  elseif p == "a" then
    local got = (s:_buffered()) > 0   -- LuaSocket: "closed" only if nothing came
    while true do
      local before = s:_buffered()
      local ok, err = fill(self, start)
      if not ok then
        local data = s:_take()
        if err == "closed" and got then return prefix .. data end
        return nil, err, prefix .. data
      end
      got = got or (s:_buffered()) > before
    end
  end
  error("bad argument #2 to 'receive' (invalid receive pattern)", 2)
end

local CHUNK = 64 * 1024   -- with a timeout, sends go in chunks: progress is known

function tcpm:send(data, i, j)
  checktcp(self, "tcp{client}", "send")
  if type(data) == "number" then data = tostring(data)
  elseif type(data) ~= "string" then
    error("bad argument #2 to 'send' (string expected, got " .. type(data) .. ")", 2)
  end
  local len = #data
  i = math.tointeger(tonumber(i) or 1) or 1
  j = math.tointeger(tonumber(j) or -1) or -1
  if i < 0 then i = len + i + 1 end
  if i < 1 then i = 1 end
  if j < 0 then j = len + j + 1 end
  if j > len then j = len end
  local pos = i - 1            -- the last index sent
  if not self.s then return nil, "closed", pos end
  local start = now()
  while pos < j do
    local lim = arm(self, start)
    local stop = lim >= 0 and math.min(j, pos + CHUNK) or j
    local n, msg, en, sent = self.s:send(data, pos + 1, stop)
    if not n then
      pos = pos + (sent or 0)   -- what went out before the failure
      self.tx = self.tx + (pos - i + 1)
      return nil, lserr(msg, en), pos
    end
    pos = stop
    if not self.s then break end
  end
  if pos >= i then self.tx = self.tx + (pos - i + 1) end
  return pos
end

local function newmaster(family)
  ensure()
  return newtcp("tcp{master}", family, nil)
end

function M.tcp() return newmaster(nil) end
function M.tcp4() return newmaster("inet") end
function M.tcp6() return newmaster("inet6") end

function M.connect(host, port, locaddr, locport, family)
  ensure()
  if (locaddr ~= nil and locaddr ~= "*" and locaddr ~= "0.0.0.0" and locaddr ~= "::")
    or (locport ~= nil and tonumber(locport) ~= 0) then
    return nil, "binding a local address before connect is not supported by uring.socket"
  end
  local sock = newmaster(family)
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

function M.connect4(host, port, la, lp) return M.connect(host, port, la, lp, "inet") end
function M.connect6(host, port, la, lp) return M.connect(host, port, la, lp, "inet6") end

function M.bind(host, port, backlog)
  ensure()
  if host == "*" then host = "0.0.0.0" end
  local sock = newmaster(family_of(tostring(host)) == "inet6" and "inet6" or nil)
  sock:setoption("reuseaddr", true)
  local ok, err = sock:bind(host, port)
  if ok then ok, err = sock:listen(backlog) end
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

---------------------------------------------------------------------------
-- UDP objects
---------------------------------------------------------------------------
local udpm = {}
local UDP = {}

local function udp_tostring(self) return fmt("%s: %p", self.class, self) end
local function udp_close_mm(self)
  local u = self.u
  self.u = nil
  if u then getmetatable(u).__close(u) end
end
for _, class in ipairs { "udp{unconnected}", "udp{connected}" } do
  UDP[class] = { __index = udpm, __tostring = udp_tostring, __name = class,
                 __close = udp_close_mm }
end

local checkudp = checker(UDP, "udp{any}")

local function udpclass(self, class)
  self.class = class
  return setmetatable(self, UDP[class])
end

-- the native socket, made on first use (it needs a task)
local function native_udp(self)
  if self.closed then return nil, "closed" end
  if not self.u then
    local u, msg, en
    if self.family == "inet6" then u, msg, en = core.udp("::", 0)
    else u, msg, en = core.udp() end
    if not u then return nil, lserr(msg, en) end
    self.u, self.armed = u, -1
  end
  return self.u
end

local function udp_arm(self)
  if self.timeout ~= self.armed then
    self.u:settimeout(self.timeout >= 0 and self.timeout or nil)
    self.armed = self.timeout
  end
end

local function newudp(family)
  ensure()
  return udpclass({ family = family, timeout = -1, armed = -1, opts = {} },
    "udp{unconnected}")
end

function M.udp() return newudp(nil) end
function M.udp4() return newudp("inet") end
function M.udp6() return newudp("inet6") end

function udpm:setsockname(host, port)
  checkudp(self, "udp{unconnected}", "setsockname")
  if self.closed then return nil, "closed" end
  if self.u then return nil, "already bound" end
  port = tonumber(port)
  if not port then error("bad argument #3 to 'setsockname' (number expected)", 2) end
  local addrs, err = lookup(tostring(host), self.family)
  if not addrs then return nil, err end
  local u, msg, en = core.udp(addrs[1].addr, port)
  if not u then return nil, lserr(msg, en) end
  self.u, self.family, self.armed = u, addrs[1].family, -1
  return 1
end

function udpm:setpeername(host, port)
  checkudp(self, nil, "setpeername")
  if self.closed then return nil, "closed" end
  if host == "*" then          -- LuaSocket: "*" disconnects
    self.peer = nil
    udpclass(self, "udp{unconnected}")
    return 1
  end
  port = tonumber(port)
  if not port then error("bad argument #3 to 'setpeername' (number expected)", 2) end
  local addrs, err = lookup(tostring(host), self.family)
  if not addrs then return nil, err end
  self.peer = { addrs[1].addr, port }
  udpclass(self, "udp{connected}")
  return 1
end

local function udp_send(self, data, host, port)
  if type(data) == "number" then data = tostring(data)
  elseif type(data) ~= "string" then
    error("bad argument #2 to 'sendto' (string expected, got " .. type(data) .. ")", 3)
  end
  local u, err = native_udp(self)
  if not u then return nil, err end
  if not is_numeric(host) then
    local addrs
    addrs, err = lookup(host, self.family)
    if not addrs then return nil, err end
    host = addrs[1].addr
  end
  local n, msg, en = u:sendto(data, host, port)
  if not n then return nil, lserr(msg, en) end
  return n
end

function udpm:sendto(data, host, port)
  checkudp(self, "udp{unconnected}", "sendto")
  port = tonumber(port)
  if not port then error("bad argument #4 to 'sendto' (number expected)", 2) end
  return udp_send(self, data, tostring(host), port)
end

function udpm:send(data)
  checkudp(self, "udp{connected}", "send")
  return udp_send(self, data, self.peer[1], self.peer[2])
end

local function udp_recv(self, size)
  size = math.tointeger(tonumber(size) or M._DATAGRAMSIZE) or M._DATAGRAMSIZE
  if size < 1 then size = 1 elseif size > 65536 then size = 65536 end
  local st = self.stash
  if st then
    self.stash = nil
    return st[1]:sub(1, size), st[2], st[3]
  end
  local u, err = native_udp(self)
  if not u then return nil, err end
  udp_arm(self)
  local data, host, port = u:recvfrom(size)
  if not data then return nil, lserr(host, port) end
  return data, host, port
end

function udpm:receivefrom(size)
  checkudp(self, nil, "receivefrom")
  return udp_recv(self, size)
end

function udpm:receive(size)
  checkudp(self, nil, "receive")
  while true do
    local data, host, port = udp_recv(self, size)
    if not data then return nil, host end
    -- a connected socket takes only its peer's datagrams
    if not self.peer or (host == self.peer[1] and port == self.peer[2]) then
      return data
    end
  end
end

function udpm:getsockname()
  checkudp(self, nil, "getsockname")
  if self.closed then return nil, "closed" end
  if not self.u then return self.family == "inet6" and "::" or "0.0.0.0", 0, self.family or "inet" end
  local host, port = self.u:getsockname()
  if not host then return nil, lserr(port) end
  return host, port, family_of(host)
end

function udpm:getpeername()
  checkudp(self, "udp{connected}", "getpeername")
  return self.peer[1], self.peer[2], family_of(self.peer[1])
end

function udpm:settimeout(value, mode)
  checkudp(self, nil, "settimeout")
  local t = tonumber(value) or -1
  if t ~= t then error("bad argument #2 to 'settimeout' (NaN)", 2) end
  if t < 0 then t = -1 elseif t > 1e11 then t = 1e11 end
  local m = type(mode) == "string" and mode:sub(1, 1) or "b"
  if m ~= "b" and m ~= "t" and m ~= "r" then
    error("bad argument #3 to 'settimeout' (invalid timeout mode)", 2)
  end
  self.timeout = t   -- one wait per call: block and total are the same
  return 1
end

function udpm:gettimeout()
  checkudp(self, nil, "gettimeout")
  return self.timeout, -1
end

local UDPOPTS = {
  ["broadcast"] = false, ["dontroute"] = false, ["reuseaddr"] = false,
  ["reuseport"] = false, ["ipv6-v6only"] = false, ["ip-multicast-loop"] = false,
  ["ip-multicast-ttl"] = 1, ["ip-multicast-if"] = "0.0.0.0",
  ["ipv6-unicast-hops"] = 64, ["ipv6-multicast-hops"] = 1,
  ["ipv6-multicast-loop"] = false, ["ip-add-membership"] = false,
  ["ip-drop-membership"] = false,
}

function udpm:setoption(name, value)
  checkudp(self, nil, "setoption")
  if UDPOPTS[name] == nil then
    error(fmt("bad argument #2 to 'setoption' (unsupported option `%s')", tostring(name)), 2)
  end
  self.opts[name] = value
  return 1
end

function udpm:getoption(name)
  checkudp(self, nil, "getoption")
  if UDPOPTS[name] == nil then
    error(fmt("bad argument #2 to 'getoption' (unsupported option `%s')", tostring(name)), 2)
  end
  local v = self.opts[name]
  if v == nil then v = UDPOPTS[name] end
  return v
end

function udpm:close()
  checkudp(self, nil, "close")
  self.closed = true
  local u = self.u
  self.u = nil
  if u then u:close() end
  return 1
end

function udpm:getfd()
  checkudp(self, nil, "getfd")
  return self.u and self.u:fd() or -1
end

function udpm:setfd()
  error("setfd: not supported by uring.socket (the ring owns its descriptors)", 2)
end

function udpm:dirty()
  checkudp(self, nil, "dirty")
  return self.stash ~= nil
end

function udpm:getfamily()
  checkudp(self, nil, "getfamily")
  return self.family or "inet"
end

---------------------------------------------------------------------------
-- select: wait by doing the read itself (one receive into the socket's
-- buffer, one accept, one datagram) in a helper task per socket; what was
-- read is kept for the next call.
---------------------------------------------------------------------------
local function kind(s)
  local mt = getmetatable(s)
  if mt and TCP[mt.__name] == mt then return s.class end
  if mt and UDP[mt.__name] == mt then return "udp" end
  return nil
end

local function ready_to_read(s)
  local k = kind(s)
  if k == "tcp{client}" then
    if not s.s or s.selready then return true end
    local n, eof = s.s:_buffered()
    return n > 0 or eof
  elseif k == "tcp{server}" then
    return s.stash ~= nil or not s.s or s.selready
  elseif k == "udp" then
    return s.stash ~= nil or s.closed or s.selready
  end
  return false
end

local function wait_one(s, waiter)
  local k = kind(s)
  if k == "tcp{client}" and s.s then
    s.armed = -1
    s.s:settimeout(nil)
    s.s:_fill()
  elseif k == "tcp{server}" and s.s then
    s.armed = -1
    s.s:settimeout(nil)
    local c = s.s:accept()
    if c then s.stash = c end
  elseif k == "udp" and not s.closed then
    if not native_udp(s) then return end
    s.armed = -1
    s.u:settimeout(nil)
    local d, h, p = s.u:recvfrom(65536)
    if d then s.stash = { d, h, p } end
  else
    return   -- master: never readable
  end
  s.selready = true
  waiter:cancel()
end

function M.select(recvt, sendt, timeout)
  ensure()
  recvt, sendt = recvt or {}, sendt or {}
  timeout = tonumber(timeout) or -1
  local r, w = {}, {}
  local function add(t, s)
    if t[s] then return end
    t[#t + 1] = s
    t[s] = #t
  end
  local function collect()
    for _, s in ipairs(recvt) do
      if ready_to_read(s) then s.selready = nil; add(r, s) end
    end
  end
  if #recvt + #sendt > M._SETSIZE then return nil, nil, "too many sockets" end
  for _, s in ipairs(sendt) do
    local k = kind(s)
    if (k == "tcp{client}" and s.s) or (k == "udp" and not s.closed) then add(w, s) end
  end
  collect()
  local waitable = 0
  for _, s in ipairs(recvt) do
    local k = kind(s)
    if k == "tcp{client}" or k == "tcp{server}" or k == "udp" then waitable = waitable + 1 end
  end
  if #r > 0 or #w > 0 then return r, w end
  if waitable == 0 then
    if timeout > 0 then intask(uring.sleep, math.min(timeout, 1e11)) end
    return r, w, "timeout"
  end
  if not uring.current() then error("select: not inside a task (use uring.run)", 2) end
  local waiter = uring.spawn(uring.sleep, timeout >= 0 and math.min(timeout, 1e11) or 1e11)
  local tasks = {}
  for _, s in ipairs(recvt) do tasks[#tasks + 1] = uring.spawn(wait_one, s, waiter) end
  waiter:join()
  for _, t in ipairs(tasks) do t:cancel() end
  for _, t in ipairs(tasks) do t:join() end
  collect()
  if #r == 0 then return r, w, "timeout" end
  return r, w
end

---------------------------------------------------------------------------
-- uring.install_socket(): Debian's socket.lua (and socket.http, ...) over M
---------------------------------------------------------------------------
local CAPTURED = { "socket.core", "socket", "socket.http", "socket.url",
  "socket.headers", "socket.tp", "socket.ftp", "socket.smtp", "socket.mbox" }
local saved

local function install_socket(on)
  ensure()
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
    return M
  end
  if saved and loaded["socket.core"] == M and loaded.socket then return loaded.socket end
  if not saved then
    saved = {}
    for _, name in ipairs(CAPTURED) do saved[name] = loaded[name] or false end
  end
  for _, name in ipairs(CAPTURED) do loaded[name] = nil end
  loaded["socket.core"] = M
  local ok, mod = pcall(require, "socket")
  if not ok then        -- no LuaSocket's socket.lua on this system: M alone
    loaded.socket = M
    mod = M
  end
  return mod
end

-- init.lua: require("uring.socket")(uring, core)
return setmetatable(M, {
  __call = function(_, u, c)
    uring, core = u, c
    u.socket = M
    u.install_socket = install_socket
  end,
})
