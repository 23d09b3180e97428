--- uring.socket: LuaSocket's API over the ring.
-- A stand-in for LuaSocket's C module `socket.core`: the same functions,
-- objects (tcp{master}/tcp{client}/tcp{server}, udp{unconnected}/
-- udp{connected}), return conventions and error strings, but every call
-- that would block yields the current task instead.  Debian's unmodified
-- socket.lua, socket.http, ltn12 ... load on top of it through
-- uring.install_socket() (lua/uring/net.lua).
--
-- The objects are Lua tables over the native sockets of net.c and udp.c:
-- receive patterns are taken from the native socket's buffer (_fill,
-- _take, _take_line) so that LuaSocket's partial results ("timeout" and
-- "closed" return what arrived, consumed) can be built here, while the
-- native API keeps unread bytes buffered.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

local pack, unpack = table.pack, table.unpack
local fmt = string.format
local type, tostring, tonumber, rawget, getmetatable, select =
  type, tostring, tonumber, rawget, getmetatable, select
local argerror, typeerror, typename = check.argerror, check.typeerror, check.typename
local smethods = core.socket_methods
local nfill, ntake, ntake_line = smethods._fill, smethods._take, smethods._take_line
local nbuffered, nstate = smethods._buffered, smethods._closed
local strerror = core._strerror
local E = core.errno

local M = {}
M._VERSION = "LuaSocket 3.0.0"   -- what Debian's LuaSocket 3.1 reports
M._SETSIZE = 1024
M._SOCKETINVALID = -1
M._DATAGRAMSIZE = 8192

local function now() return uring.now() end

-- Errno -> LuaSocket's message (its pierror.h / socket_strerror); any
-- other errno: strerror, as LuaSocket gives it.
local ERRS = {
  [E.EADDRINUSE] = "address already in use", [E.EISCONN] = "already connected",
  [E.EACCES] = "permission denied", [E.ECONNREFUSED] = "connection refused",
  [E.ECONNABORTED] = "closed", [E.ECONNRESET] = "closed", [E.EPIPE] = "closed",
  [E.EBADF] = "closed", [E.ETIMEDOUT] = "timeout", [E.ETIME] = "timeout",
}
local NOTFOUND = "host or service not provided, or not known"

-- a native fail tuple's message and errno, in LuaSocket's words (the
-- native message names the address first: "127.0.0.1:80: ..."); without
-- an errno the message is the native API's own word ("closed")
local function lserr(msg, en)
  if math.type(en) == "integer" then
    if ERRS[en] then return ERRS[en] end
    if en > 0 and en < 4096 then return strerror(en) end
  end
  return tostring(msg)
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

-- a host argument: a string (a number is taken as one, as
-- luaL_checkstring does)
local function checkhost(arg, name, host, level)
  if type(host) == "number" then return tostring(host) end
  if type(host) ~= "string" then typeerror(arg, name, "string", host, (level or 1) + 1) end
  return host
end

-- a port argument: an integer in 0..65535 (or a string of one)
local function checkport(arg, name, port, level)
  local p = math.tointeger(tonumber(port))
  if not p or p < 0 or p > 65535 then argerror(arg, name, "invalid port", (level or 1) + 1) end
  return p
end

-- an optional number argument, as luaL_optnumber
local function optnumber(arg, name, v, def, level)
  if v == nil then return def end
  local n = tonumber(v)
  if n == nil then typeerror(arg, name, "number", v, (level or 1) + 1) end
  return n
end

-- Run fn inside a task: as is in one, else in a private uring.run (which
-- also runs every other pending task to its end).
local function intask(name, fn, ...)
  if uring.current() then
    check.intask(name, 2)
    return fn(...)
  end
  return uring.run(fn, ...)
end

---------------------------------------------------------------------------
-- try / protect / skip (LuaSocket's except.c, with pcall: yields pass)
---------------------------------------------------------------------------
local TRYMT = { __tostring = function(e)
  return type(e) == "table" and tostring(rawget(e, 1)) or typename(e)
end }

function M.newtry(finalizer)
  if finalizer ~= nil and not check.callable(finalizer) then
    typeerror(1, "newtry", "function", finalizer)
  end
  return function(...)
    if not (...) then
      if finalizer then finalizer() end
      error(setmetatable({ (select(2, ...)) }, TRYMT), 0)
    end
    return ...
  end
end

function M.protect(f)
  if not check.callable(f) then typeerror(1, "protect", "function", f) end
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
      argerror(1, "skip", "number has no integer representation")
    end
    typeerror(1, "skip", "number", d, 1, d == nil and "no value" or nil)
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
  if not epoch_offset then epoch_offset = os.time() - uring.now() end
  return uring.now() + epoch_offset
end

function M.sleep(s)
  s = check.number(1, "sleep", s)
  if s ~= s or s <= 0 then return end
  if s > 1e11 then s = 1e11 end
  intask("sleep", uring.sleep, s)
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
  name = checkhost(1, "toip", name)
  local ip, info = intask("toip", toip, name)
  return ip, info
end

local function getaddrinfo(host)
  if host == "" then return nil, NOTFOUND end
  local r = uring.resolve(host)
  if not r then return nil, NOTFOUND end
  local out = {}
  for i, a in ipairs(r) do out[i] = { family = a.family, addr = a.addr } end
  return out
end

function dns.getaddrinfo(host)
  host = checkhost(1, "getaddrinfo", host)
  local list, err = intask("getaddrinfo", getaddrinfo, host)
  return list, err
end

local NOREVERSE = "reverse lookups are not supported by uring.socket"
function dns.tohostname() return nil, NOREVERSE end
function dns.getnameinfo() return nil, NOREVERSE end

---------------------------------------------------------------------------
-- TCP and UDP objects: tables made here, known by a weak set (a table
-- given one of their metatables is not one of them)
---------------------------------------------------------------------------
local OBJS = setmetatable({}, { __mode = "k" })

local tcpm = {}        -- one method table, as LuaSocket's
local TCP = {}         -- class name -> metatable
local udpm = {}
local UDP = {}

-- `self` of a method of one kind (TCP or UDP): made here, of that kind,
-- and of a class in `want` (a string naming them; nil: any).  The error
-- blames the method's caller.
local function checker(classes, any)
  return function(self, want, fname, level)
    if not (OBJS[self] and classes[self.class]
        and (want == nil or want:find(self.class, 1, true))) then
      typeerror(1, fname, want or any, self, (level or 1) + 1)
    end
    return self
  end
end

local checktcp = checker(TCP, "tcp{any}")
local checkudp = checker(UDP, "udp{any}")

-- __tostring and __close of every class
local function tostr(self)
  if not OBJS[self] then typeerror(1, "__tostring", "tcp{any} or udp{any}", self) end
  return fmt("%s: %p", self.class, self)
end

local function closemm(self)
  if not OBJS[self] then typeerror(1, "__close", "tcp{any} or udp{any}", self) end
  if UDP[self.class] then
    local u = self.u
    self.u, self.closed = nil, true
    if u then u:close() end
  else
    local s, c = self.s, self.stash
    -- its received count outlives the socket (getstats)
    if s then self.rx = select(3, nbuffered(s)) - (self.rx_base or 0) end
    self.s, self.stash = nil, nil
    if s then s:close() end
    if c then c:close() end
  end
end

for _, class in ipairs { "tcp{master}", "tcp{client}", "tcp{server}" } do
  TCP[class] = { __index = tcpm, __tostring = tostr, __name = class,
                 __close = closemm }
end
for _, class in ipairs { "udp{unconnected}", "udp{connected}" } do
  UDP[class] = { __index = udpm, __tostring = tostr, __name = class,
                 __close = closemm }
end

local function setclass(self, class)
  self.class = class
  return setmetatable(self, TCP[class] or UDP[class])
end

local function newtcp(class, family, s)
  local self = setclass({ s = s, family = family, block = -1, total = -1,
    armed = -1, opts = {}, rx = 0, tx = 0, born = now() }, class)
  OBJS[self] = true
  return self
end

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

-- a method that waits on the native socket s: in a task that can yield,
-- and (how: "receive" or "send") no other task doing the same on it; as
-- the native methods check, but at the caller's line
local function checkwait(s, name, how)
  check.intask(name, 2)
  local _, _, receiving, sending = nstate(s)
  if (how == "receive" and receiving) or (how == "send" and sending) then
    check.error(name .. ": socket is busy (another task is using it)", 2)
  end
end

-- settimeout(value [, mode]) of both kinds: seconds (-1: none) and the
-- mode's letter
local function timeout_args(value, mode)
  local t = optnumber(2, "settimeout", value, -1, 2)
  if t ~= t then argerror(2, "settimeout", "NaN", 2) end
  if t < 0 then t = -1 elseif t > 1e11 then t = 1e11 end
  if mode ~= nil and type(mode) ~= "string" then
    typeerror(3, "settimeout", "string", mode, 2)
  end
  local m = mode and mode:sub(1, 1) or "b"
  if m ~= "b" and m ~= "t" and m ~= "r" then
    argerror(3, "settimeout", "invalid timeout mode", 2)
  end
  return t, m
end

-- an option name: a string that `opts` knows
local function checkoption(opts, name, fname)
  if type(name) ~= "string" then typeerror(2, fname, "string", name, 2) end
  if opts[name] == nil then
    argerror(2, fname, fmt("unsupported option `%s'", name), 2)
  end
  return opts[name]
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
  local o = checkoption(TCPOPTS, name, "setoption")
  if name == "linger" then
    if type(value) ~= "table" then typeerror(3, "setoption", "table", value) end
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
  local o = checkoption(TCPOPTS, name, "getoption")
  local v = self.opts[name]
  if v == nil then v = o[1] end
  if name == "linger" and v == nil then v = { on = false, timeout = 0 } end
  if name == "reuseaddr" and self.s and self.class ~= "tcp{client}" then v = true end
  return v
end

function tcpm:settimeout(value, mode)
  checktcp(self, nil, "settimeout")
  local t, m = timeout_args(value, mode)
  if m == "b" then self.block = t else self.total = t end
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
  checktcp(self, nil, "setfd")
  check.error("setfd: not supported by uring.socket (the ring owns its descriptors)")
end

function tcpm:dirty()
  checktcp(self, nil, "dirty")
  return self.s ~= nil and self.class == "tcp{client}" and (nbuffered(self.s)) > 0
end

function tcpm:getfamily()
  checktcp(self, nil, "getfamily")
  return self.family or "inet"
end

-- bytes received: the core's count (bytes may come in with no fill
-- waiting: the RECV queued at accept), less what setstats took off
local function received(self)
  if not self.s then return self.rx end
  return select(3, nbuffered(self.s)) - (self.rx_base or 0)
end

function tcpm:getstats()
  checktcp(self, nil, "getstats")
  return received(self), self.tx, now() - self.born
end

function tcpm:setstats(received, sent, age)
  checktcp(self, nil, "setstats")
  received = optnumber(2, "setstats", received, nil)
  sent = optnumber(3, "setstats", sent, self.tx)
  age = optnumber(4, "setstats", age, nil)
  if received then
    self.rx = received
    if self.s then self.rx_base = select(3, nbuffered(self.s)) - received end
  end
  self.tx = sent
  if age then self.born = now() - age end
  return 1
end

function tcpm:close()
  checktcp(self, nil, "close")
  local s, c = self.s, self.stash
  self.s, self.stash = nil, nil
  if s then s:close() end
  if c then c:close() end       -- a connection select accepted for us
  return 1
end

local SHUTDOWN = { both = true, send = true, receive = true }

function tcpm:shutdown(how)
  checktcp(self, "tcp{client}", "shutdown")
  if how == nil then how = "both"
  elseif type(how) ~= "string" then typeerror(2, "shutdown", "string", how)
  elseif not SHUTDOWN[how] then argerror(2, "shutdown", "invalid shutdown method")
  end
  if not self.s then return nil, "closed" end
  local ok, msg, en = self.s:shutdown(how)
  if not ok then return nil, lserr(msg, en) end
  return 1
end

local function names(self, peer)
  if not self.s then return nil, "closed" end
  local host, port, en
  if peer then host, port, en = self.s:getpeername()
  else host, port, en = self.s:getsockname() end
  if not host then return nil, lserr(port, en) end
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

local function connect(self, host, port)
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
    if en == E.ETIME then break end
  end
  return nil, err
end

function tcpm:connect(host, port)
  checktcp(self, "tcp{master}", "connect")
  host = checkhost(2, "connect", host)
  port = checkport(3, "connect", port)
  if self.s then return nil, "bind before connect is not supported by uring.socket" end
  check.intask("connect")
  local ok, err = connect(self, host, port)
  return ok, err
end

local function bind(self, host, port)
  local addrs, err = lookup(host, self.family)
  if not addrs then return nil, err end
  -- bind and listen at once (the native listener): errors show here
  local s, msg, en = core.listen(addrs[1].addr, port,
    { reuseport = self.opts.reuseport and true or false })
  if not s then return nil, lserr(msg, en) end
  self.s, self.family, self.armed = s, addrs[1].family, -1
  return 1
end

function tcpm:bind(host, port)
  checktcp(self, "tcp{master}", "bind")
  host = checkhost(2, "bind", host)
  port = checkport(3, "bind", port)
  if self.s then return nil, "already bound" end
  return bind(self, host, port)
end

local function listen(self)
  if not self.s then
    local ok, err = bind(self, self.family == "inet6" and "::" or "0.0.0.0", 0)
    if not ok then return nil, err end
  end
  setclass(self, "tcp{server}")
  return 1
end

function tcpm:listen(backlog)
  checktcp(self, "tcp{master}", "listen")
  optnumber(2, "listen", backlog, 32)      -- as LuaSocket's; the ring's is 511
  return listen(self)
end

function tcpm:accept()
  checktcp(self, "tcp{server}", "accept")
  if not self.s then return nil, "closed" end
  local c = self.stash
  if c then
    self.stash = nil
  else
    checkwait(self.s, "accept", "receive")
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
  local ok, msg, en = nfill(s)
  if ok == nil then return nil, lserr(msg, en) end
  if ok == false then return nil, "closed" end
  return true
end

-- receive's pattern: a count (an integer: what LuaSocket's size_t cast
-- would keep), or "l" or "a"
local function pattern_of(pattern)
  local n = tonumber(pattern)
  if n then
    if n ~= n or n < 0 then argerror(2, "receive", "invalid receive pattern", 2) end
    if n >= math.maxinteger then return math.maxinteger end
    return math.tointeger(math.floor(n))
  end
  if type(pattern) == "string" then
    local p = pattern:gsub("^%*", "", 1):sub(1, 1)
    if p == "l" or p == "a" then return p end
  end
  argerror(2, "receive", "invalid receive pattern", 2)
end

function tcpm:receive(pattern, prefix)
  checktcp(self, "tcp{client}", "receive")
  local p = pattern == nil and "l" or pattern_of(pattern)
  if prefix ~= nil and type(prefix) ~= "string" then
    if type(prefix) == "number" then prefix = tostring(prefix)
    else typeerror(3, "receive", "string", prefix) end
  end
  prefix = prefix or ""
  local s = self.s
  if not s then return nil, "closed", prefix end
  checkwait(s, "receive", "receive")
  local start = now()
  if p == "l" then
    while true do
      local line = ntake_line(s, false, true)
      if line then return prefix .. line end
      local ok, err = fill(self, start)
      if not ok then
        return nil, err, prefix .. (ntake(s):gsub("\r", ""))
      end
    end
  elseif p == "a" then
    local got = (nbuffered(s)) > 0   -- LuaSocket: "closed" only if nothing came
    while true do
      local before = nbuffered(s)
      local ok, err = fill(self, start)
      if not ok then
        local data = ntake(s)
        if err == "closed" and got then return prefix .. data end
        return nil, err, prefix .. data
      end
      got = got or (nbuffered(s)) > before
    end
  end
  while (nbuffered(s)) < p do
    local ok, err = fill(self, start)
    if not ok then return nil, err, prefix .. ntake(s, p) end
  end
  return prefix .. ntake(s, p)
end

local CHUNK = 64 * 1024   -- with a timeout, sends go in chunks: progress is known

-- an index of send: luaL_optnumber's, as an integer
local function index(arg, v, def)
  local n = optnumber(arg, "send", v, def, 2)
  if n ~= n then return def end
  if n >= math.maxinteger then return math.maxinteger end
  if n <= math.mininteger then return math.mininteger end
  return math.tointeger(n >= 0 and math.floor(n) or math.ceil(n))
end

function tcpm:send(data, i, j)
  checktcp(self, "tcp{client}", "send")
  if type(data) == "number" then data = tostring(data)
  elseif type(data) ~= "string" then typeerror(2, "send", "string", data)
  end
  local len = #data
  i, j = index(3, i, 1), index(4, j, -1)
  if i < 0 then i = len + i + 1 end
  if i < 1 then i = 1 end
  if j < 0 then j = len + j + 1 end
  if j > len then j = len end
  local pos = i - 1            -- the last index sent
  if not self.s then return nil, "closed", pos end
  if pos < j then checkwait(self.s, "send", "send") end
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

local FAMILIES = { inet = "inet", inet6 = "inet6", unspec = false }

local function newmaster(family)
  return newtcp("tcp{master}", family, nil)
end

function M.tcp() return newmaster(nil) end
function M.tcp4() return newmaster("inet") end
function M.tcp6() return newmaster("inet6") end

local function connect_any(name, host, port, locaddr, locport, family)
  host = checkhost(1, name, host, 2)
  port = checkport(2, name, port, 2)
  if family ~= nil then
    if type(family) ~= "string" then typeerror(5, name, "string", family, 2) end
    if FAMILIES[family] == nil then
      argerror(5, name, fmt("invalid option '%s'", family), 2)
    end
    family = FAMILIES[family] or nil
  end
  if (locaddr ~= nil and locaddr ~= "*" and locaddr ~= "0.0.0.0" and locaddr ~= "::")
    or (locport ~= nil and tonumber(locport) ~= 0) then
    return nil, "binding a local address before connect is not supported by uring.socket"
  end
  check.intask(name, 2)
  local sock = newmaster(family)
  local ok, err = connect(sock, host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

function M.connect(host, port, locaddr, locport, family)
  local r1, r2 = connect_any("connect", host, port, locaddr, locport, family)
  return r1, r2
end

function M.connect4(host, port, la, lp)
  local r1, r2 = connect_any("connect4", host, port, la, lp, "inet")
  return r1, r2
end

function M.connect6(host, port, la, lp)
  local r1, r2 = connect_any("connect6", host, port, la, lp, "inet6")
  return r1, r2
end

function M.bind(host, port, backlog)
  host = checkhost(1, "bind", host)
  port = checkport(2, "bind", port)
  optnumber(3, "bind", backlog, 32)
  if host == "*" then host = "0.0.0.0" end
  local sock = newmaster(family_of(host) == "inet6" and "inet6" or nil)
  sock.opts.reuseaddr = true
  local ok, err = bind(sock, host, port)
  if ok then ok, err = listen(sock) end
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

---------------------------------------------------------------------------
-- UDP objects
---------------------------------------------------------------------------

-- the native socket, made on first use
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
  local self = setclass({ family = family, timeout = -1, armed = -1, opts = {} },
    "udp{unconnected}")
  OBJS[self] = true
  return self
end

function M.udp() return newudp(nil) end
function M.udp4() return newudp("inet") end
function M.udp6() return newudp("inet6") end

function udpm:setsockname(host, port)
  checkudp(self, "udp{unconnected}", "setsockname")
  host = checkhost(2, "setsockname", host)
  port = checkport(3, "setsockname", port)
  if self.closed then return nil, "closed" end
  if self.u then return nil, "already bound" end
  local addrs, err = lookup(host, self.family)
  if not addrs then return nil, err end
  local u, msg, en = core.udp(addrs[1].addr, port)
  if not u then return nil, lserr(msg, en) end
  self.u, self.family, self.armed = u, addrs[1].family, -1
  return 1
end

function udpm:setpeername(host, port)
  checkudp(self, nil, "setpeername")
  host = checkhost(2, "setpeername", host)
  if self.closed then return nil, "closed" end
  if host == "*" then          -- LuaSocket: "*" disconnects
    self.peer = nil
    setclass(self, "udp{unconnected}")
    return 1
  end
  port = checkport(3, "setpeername", port)
  local addrs, err = lookup(host, self.family)
  if not addrs then return nil, err end
  self.peer = { addrs[1].addr, port }
  setclass(self, "udp{connected}")
  return 1
end

local function udp_send(self, data, host, port)
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

-- a datagram argument: a string (or a number, as a string)
local function checkdata(name, data)
  if type(data) == "number" then return tostring(data) end
  if type(data) ~= "string" then typeerror(2, name, "string", data, 2) end
  return data
end

function udpm:sendto(data, host, port)
  checkudp(self, "udp{unconnected}", "sendto")
  data = checkdata("sendto", data)
  host = checkhost(3, "sendto", host)
  port = checkport(4, "sendto", port)
  check.intask("sendto")
  return udp_send(self, data, host, port)
end

function udpm:send(data)
  checkudp(self, "udp{connected}", "send")
  data = checkdata("send", data)
  check.intask("send")
  return udp_send(self, data, self.peer[1], self.peer[2])
end

local function udp_recv(self, size)
  size = math.tointeger(size) or M._DATAGRAMSIZE
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

-- receive's size: luaL_optnumber's
local function checksize(name, size)
  local n = optnumber(2, name, size, M._DATAGRAMSIZE, 2)
  if n ~= n then return M._DATAGRAMSIZE end
  return math.tointeger(math.floor(math.max(math.min(n, 65536), 1)))
end

function udpm:receivefrom(size)
  checkudp(self, nil, "receivefrom")
  size = checksize("receivefrom", size)
  check.intask("receivefrom")
  return udp_recv(self, size)
end

function udpm:receive(size)
  checkudp(self, nil, "receive")
  size = checksize("receive", size)
  check.intask("receive")
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
  local host, port, en = self.u:getsockname()
  if not host then return nil, lserr(port, en) end
  return host, port, family_of(host)
end

function udpm:getpeername()
  checkudp(self, "udp{connected}", "getpeername")
  return self.peer[1], self.peer[2], family_of(self.peer[1])
end

function udpm:settimeout(value, mode)
  checkudp(self, nil, "settimeout")
  self.timeout = timeout_args(value, mode)   -- one wait per call: block and total are the same
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
  checkoption(UDPOPTS, name, "setoption")
  self.opts[name] = value
  return 1
end

function udpm:getoption(name)
  checkudp(self, nil, "getoption")
  checkoption(UDPOPTS, name, "getoption")
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
  checkudp(self, nil, "setfd")
  check.error("setfd: not supported by uring.socket (the ring owns its descriptors)")
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
  if not OBJS[s] then return nil end
  if TCP[s.class] then return s.class end
  return "udp"
end

local function ready_to_read(s)
  local k = kind(s)
  if k == "tcp{client}" then
    if not s.s or s.selready then return true end
    local n, eof = nbuffered(s.s)
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
    nfill(s.s)
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
  if recvt ~= nil and type(recvt) ~= "table" then typeerror(1, "select", "table", recvt) end
  if sendt ~= nil and type(sendt) ~= "table" then typeerror(2, "select", "table", sendt) end
  timeout = optnumber(3, "select", timeout, -1)
  if timeout ~= timeout then timeout = -1 end
  recvt, sendt = recvt or {}, sendt or {}
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
    if timeout > 0 then intask("select", uring.sleep, math.min(timeout, 1e11)) end
    return r, w, "timeout"
  end
  check.intask("select")
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

return M
