--- uring.ssl: LuaSec's `ssl` module API over uring.tls.
-- uring.install_ssl() puts it where require "ssl" finds it, with
-- uring.socket in LuaSocket's place (uring.install_socket), so Debian's
-- unmodified ssl/https.lua (ssl.https.request) runs inside the loop and
-- many requests go on at once, one task each.
--
-- A LuaSec context becomes a uring.tls.context; ssl.wrap(sock, ctx) keeps
-- the uring.socket tcp object and, at dohandshake, turns its native
-- socket into a TLS one (sock:starttls), so its receive and send (the
-- tcp object's, LuaSocket's patterns and partial results) carry the TLS
-- stream with no code of their own.  What LuaSec's C does that has no
-- meaning here (setfd, blocking modes, "wantread") is left out.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

local type, pairs, ipairs, setmetatable, getmetatable, tostring =
  type, pairs, ipairs, setmetatable, getmetatable, tostring
local argerror, typeerror = check.argerror, check.typeerror
local tls_context, tls_mode = core._tls_context, core._tls_mode

local M = { _VERSION = "1.2.0 (uring.tls)", _COPYRIGHT = "lua-uring" }

-- LuaSec's protocol names -> uring.tls versions (TLS 1.2 is the floor)
local PROTOCOLS = {
  any = {}, tlsv1_2 = { "1.2", "1.2" }, tlsv1_3 = { "1.3", "1.3" },
}

local CONTEXTS = setmetatable({}, { __mode = "k" })
local Context = { __name = "SSL context" }
Context.__index = Context

local function verify_of(v)
  if v == nil or v == "none" then return false end
  if v == "peer" then return true end
  if type(v) == "table" then
    for _, x in ipairs(v) do if x == "peer" or x == "fail_if_no_peer_cert" then return true end end
    return false
  end
  return nil
end

--- ssl.newcontext(cfg) -> context | nil, err
-- cfg: mode ("client" | "server"), protocol ("any", "tlsv1_2",
-- "tlsv1_3"), key, certificate, cafile, capath, verify ("none", "peer",
-- or a list with "peer"), ciphers, ciphersuites, alpn (a name or a
-- list); options, depth and curve are accepted and left to OpenSSL's
-- defaults.
function M.newcontext(cfg)
  if type(cfg) ~= "table" then typeerror(1, "newcontext", "table", cfg) end
  local mode = cfg.mode
  if mode ~= "client" and mode ~= "server" then return nil, "invalid mode" end
  local proto = PROTOCOLS[cfg.protocol or "any"]
  if not proto then return nil, "unsupported protocol '" .. tostring(cfg.protocol) .. "'" end
  local verify = verify_of(cfg.verify)
  if verify == nil then return nil, "invalid verify option (" .. tostring(cfg.verify) .. ")" end
  if cfg.password ~= nil then return nil, "password-protected keys are not supported" end
  local ok, ctx, err = pcall(tls_context, {
    mode = mode, cert = cfg.certificate, key = cfg.key, ca = cfg.cafile or cfg.capath,
    verify = verify, min_version = proto[1], max_version = proto[2],
    ciphers = cfg.ciphers, ciphersuites = cfg.ciphersuites, alpn = cfg.alpn,
  })
  if not ok then return nil, (tostring(ctx):gsub("^.-%((.*)%)$", "%1")) end
  if not ctx then return nil, err end
  local c = setmetatable({ ctx = ctx, mode = mode, verify = verify }, Context)
  CONTEXTS[c] = true
  return c
end

-- A wrapped connection: the tcp object it came from, and the TLS to start
local CONNS = setmetatable({}, { __mode = "k" })
local Conn = { __name = "SSL connection" }
Conn.__index = Conn

local function checkconn(self, name)
  if not CONNS[self] then typeerror(1, name, "SSL connection", self, 2) end
  return self
end

-- the uring.socket tcp object's own method, for this connection
local function tcp_method(self, name)
  return getmetatable(self.tcp).__index[name]
end

--- ssl.wrap(sock, cfg | context) -> conn | nil, err
-- sock: a connected tcp object of uring.socket (what socket.tcp() gives
-- under uring.install_socket).
function M.wrap(sock, cfg)
  local ctx = cfg
  if not CONTEXTS[ctx] then
    if type(cfg) ~= "table" then typeerror(2, "wrap", "table or SSL context", cfg) end
    local err
    ctx, err = M.newcontext(cfg)
    if not ctx then return nil, err end
  end
  if type(sock) ~= "table" or type(rawget(sock, "s")) ~= "userdata" then
    return nil, "ssl.wrap: a connected uring.socket tcp object expected"
  end
  local c = setmetatable({ tcp = sock, ctx = ctx, servername = nil, done = false }, Conn)
  CONNS[c] = true
  return c
end

--- conn:sni(name): the server name to send (client) and to check
function Conn:sni(name)
  checkconn(self, "sni")
  if type(name) == "string" then self.servername = name end
end

--- conn:dohandshake() -> true | nil, err
function Conn:dohandshake()
  checkconn(self, "dohandshake")
  if self.done then return true end
  local s = rawget(self.tcp, "s")
  if not s then return nil, "closed" end
  local name = self.servername
  if self.ctx.mode == "client" and self.ctx.verify and not name then
    name = s:getpeername()      -- LuaSec checks no name: the address, at least
  end
  -- the tcp object's timeout bounds the handshake as it bounds a receive
  local block, total = tcp_method(self, "gettimeout")(self.tcp)
  local lim = (block >= 0 and total >= 0) and math.min(block, total)
    or (block >= 0 and block or total)
  s:settimeout(lim >= 0 and lim or nil)
  local ok, err = s:starttls(self.ctx.ctx, self.ctx.mode == "client" and name or nil)
  if not ok then return nil, err end
  self.done = true
  return true
end

-- the tcp object's methods, for a wrapped connection (LuaSec's
-- connection has them too): receive and send now carry TLS
for _, name in ipairs { "receive", "send", "settimeout", "gettimeout", "getfd",
    "getpeername", "getsockname", "getstats", "setstats", "shutdown", "setoption" } do
  Conn[name] = function(self, ...)
    checkconn(self, name)
    return tcp_method(self, name)(self.tcp, ...)
  end
end

function Conn:close()
  checkconn(self, "close")
  return tcp_method(self, "close")(self.tcp)     -- close_notify first
end

function Conn:dirty()
  checkconn(self, "dirty")
  return tcp_method(self, "dirty")(self.tcp)
end

function Conn:getalpn()
  checkconn(self, "getalpn")
  local s = rawget(self.tcp, "s")
  local info = s and s:tlsinfo()
  return info and info.alpn
end

--- conn:info([field]) -> {protocol =, cipher =, ...} | a field
function Conn:info(field)
  checkconn(self, "info")
  local s = rawget(self.tcp, "s")
  local i = s and s:tlsinfo()
  if not i then return nil end
  local t = { protocol = i.version, cipher = i.cipher, alpn = i.alpn,
    resumed = i.resumed, servername = i.servername }
  if field then return t[field] end
  return t
end

-- LuaSec's certificate object, the part of it that has a meaning here
local Cert = { __name = "X509 certificate" }
Cert.__index = Cert
local function dn(s)   -- "CN=x,O=y" -> {{name = "CN", value = "x"}, ...}
  local out = {}
  for k, v in s:gmatch("([^=,]+)=([^,]*)") do out[#out + 1] = { name = k, value = v } end
  return out
end
function Cert:pem() return self._c.pem end
function Cert:subject() return dn(self._c.subject) end
function Cert:issuer() return dn(self._c.issuer) end
function Cert:notbefore() return self._c.not_before end
function Cert:notafter() return self._c.not_after end
function Cert:serial() return self._c.serial end
function Cert:digest(alg)
  if alg ~= nil and alg ~= "sha256" then return nil, "only sha256" end
  return self._c.sha256
end
function Cert:extensions()
  return { ["2.5.29.17"] = { dNSName = self._c.dns } }
end

--- conn:getpeercertificate() -> cert | nil
function Conn:getpeercertificate()
  checkconn(self, "getpeercertificate")
  local s = rawget(self.tcp, "s")
  local c = s and s:getpeercert()
  return c and setmetatable({ _c = c }, Cert) or nil
end

--- conn:getpeerverification() -> true | false, {reason}
function Conn:getpeerverification()
  checkconn(self, "getpeerverification")
  local s = rawget(self.tcp, "s")
  local i = s and s:tlsinfo()
  if i and i.verified then return true end
  return false, { "not verified" }
end

M.loadcertificate = function(pem)
  return nil, "loadcertificate: not supported by uring.ssl"
end

-- ssl.https: Debian's ssl/https.lua, loaded on first use over this
-- module: only once it is installed (else https.lua's require "ssl" would
-- load LuaSec's own, over the real LuaSocket)
setmetatable(M, { __index = function(t, k)
  if k == "https" then
    if package.loaded.ssl ~= t then
      check.error("ssl.https: call uring.install_ssl() first", 2)
    end
    local https = require "ssl.https"
    rawset(t, "https", https)
    return https
  end
end })

--- uring.install_ssl([on]) -> ssl: require "ssl" then gives this module
-- (and LuaSocket's modules uring.socket, as install_socket does);
-- install_ssl(false) puts back what was there.  init.lua moves it to
-- uring.install_ssl: it is not part of LuaSec's API.
local saved
function M.install_ssl(on)
  if on ~= nil and type(on) ~= "boolean" then typeerror(1, "install_ssl", "boolean", on) end
  local loaded = package.loaded
  if on == false then
    if saved then
      loaded.ssl, loaded["ssl.https"] = saved.ssl or nil, saved.https or nil
      saved = nil
    end
    uring.install_socket(false)
    return M
  end
  uring.install_socket()
  if not saved then saved = { ssl = loaded.ssl or false, https = loaded["ssl.https"] or false } end
  loaded.ssl = M
  if loaded["ssl.https"] and loaded["ssl.https"] ~= rawget(M, "https") then
    loaded["ssl.https"] = nil      -- LuaSec's own, over the real LuaSocket
  end
  rawset(M, "https", nil)
  return M
end

return M
