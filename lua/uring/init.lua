--- uring: Lua coroutines over Linux io_uring.
-- The C core (uring.core) owns the ring, the scheduler and every buffer the
-- kernel touches; this file gives the public table its shape and adds the
-- few functions that are plain compositions of core calls.
--
-- One convention for every file in lua/uring/ (init.lua aside):
--
--   local uring = require "uring"         -- the public table: this file
--                                         -- publishes it before loading any
--   if package.loaded[...] then return package.loaded[...] end
--                                         -- required before uring: the
--                                         -- line above loaded it already
--   local core = require "uring.core"     -- the C core
--   local check = require "uring.check"   -- argument errors, worded as C's
--   local M = {}
--   ...
--   return M
--
-- A file takes the C core's private `_` functions into locals when it
-- loads: once every file has loaded, this file removes them from
-- uring.core, so no script reaches them (core._workers_stop() cancels
-- every task).  Methods are added only to the method tables the core
-- exports for it (core.file_methods, core.socket_methods), never to a
-- metatable.  A file's table M holds either functions of the public table
-- (init.lua copies them onto `uring`) or, for uring.http and uring.socket,
-- the module itself (init.lua stores it as uring.http, uring.socket).

-- before the C core: built against Lua 5.4, it fails to load in another
-- Lua with a bare "undefined symbol" (this file parses in 5.1 too)
if _VERSION ~= "Lua 5.4" then
  error("lua-uring needs Lua 5.4 (this is " .. tostring(_VERSION)
    .. "; run lua5.4)", 2)
end
local core = require "uring.core"
if core._scope_open == nil then
  -- an earlier load of this file took the private names out of this
  -- table (package.loaded.uring was cleared, uring.core was not): the C
  -- module opens again, as it does when both are cleared
  package.loaded["uring.core"] = nil
  core = require "uring.core"
end

local check = require "uring.check"
local argerror = check.argerror

local uring = {}
for k, v in pairs(core) do
  if type(k) == "string" and k:sub(1, 1) ~= "_" then uring[k] = v end
end
uring.file_methods = nil
uring.socket_methods = nil
uring.queue_methods, uring.semaphore_methods, uring.group_methods = nil, nil, nil
uring.TIMEOUT = nil
-- a copy: the core's own table stays as it was for the Lua files
local errno = {}
for k, v in pairs(core.errno) do errno[k] = v end
uring.errno = errno

local pack, unpack = table.pack, table.unpack
local scope_open, scope_close = core._scope_open, core._scope_close
local TIMEOUT, ETIME = core.TIMEOUT, core.errno.ETIME

--- uring.timeout(seconds, fn, ...) -> fn's results | nil, "timeout", ETIME
-- Runs fn in the current task; at expiry the op it waits on is cancelled
-- in the kernel and fn is unwound.  Nothing already read is lost: it stays
-- buffered in the file or socket for the next call.
function uring.timeout(seconds, fn, ...)
  if not check.callable(fn) then check.typeerror(2, "timeout", "function", fn) end
  check.intask("timeout")
  -- the core checks seconds as it does for every timer (csrc/err.c) and
  -- says why; raised here, the error names 'timeout' and the caller's line
  local depth, why = scope_open(seconds)
  if not depth then argerror(1, "timeout", why) end
  local r = pack(pcall(fn, ...))
  local expired = scope_close(depth)
  if r[1] then return unpack(r, 2, r.n) end
  if expired and r[2] == TIMEOUT then
    return nil, "timeout", ETIME
  end
  error(r[2], 0)
end

-- the areas: before them, the public table is what require "uring" gives
package.loaded.uring = uring

local function area(name)
  for k, v in pairs(require(name)) do uring[k] = v end
end
area "uring.file"      -- readfile, writefile, copyfile; file:lines
area "uring.fs"        -- dir, walk, tmpfile, mkdtemp; file:truncate, lock
area "uring.net"       -- install_socket; sock:recv, read, write, lines
area "uring.proc"      -- popen's close
area "uring.workers"   -- workers
area "uring.trace"     -- trace_export
area "uring.watch"     -- watch; w:read
area "uring.sync"      -- group; s:with
area "uring.inspect"   -- inspect
uring.socket = require "uring.socket"
uring.http = require "uring.http"
uring.tls = require "uring.tls"
do  -- LuaSec's ssl API over uring.tls; its installer is ours, not LuaSec's
  local ssl = require "uring.ssl"
  uring.install_ssl, ssl.install_ssl = ssl.install_ssl, nil
end
require "uring.repl"   -- takes the failure watch, _untraced and _sigint_wait

-- every file has taken what it uses: the private names go
for k in pairs(core) do
  if type(k) == "string" and k:sub(1, 1) == "_" then core[k] = nil end
end

return uring
