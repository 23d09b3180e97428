--- uring: Lua coroutines over Linux io_uring.
-- The C core (uring.core) owns the ring, the scheduler and every buffer the
-- kernel touches; this file gives the public table its shape and adds the
-- few functions that are plain compositions of core calls.
local core = require "uring.core"

local uring = {}
for k, v in pairs(core) do
  if type(k) == "string" and k:sub(1, 1) ~= "_" then uring[k] = v end
end
uring.file_methods = nil
uring.socket_methods = nil
uring.TIMEOUT = nil
-- a copy: the core's own table stays as it was for the Lua files
local errno = {}
for k, v in pairs(core.errno) do errno[k] = v end
uring.errno = errno

local pack, unpack = table.pack, table.unpack

--- uring.timeout(seconds, fn, ...) -> fn's results | nil, "timeout", ETIME
-- Runs fn in the current task; at expiry the op it waits on is cancelled
-- in the kernel and fn is unwound.  Nothing already read is lost: it stays
-- buffered in the file or socket for the next call.
function uring.timeout(seconds, fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #2 to 'timeout' (function expected, got "
      .. type(fn) .. ")", 2)
  end
  -- as uring.sleep: NaN and >= 1e12 (past what a timespec takes) too;
  -- else the core's check would raise from '_scope_open' in this file
  if type(seconds) ~= "number" or seconds < 0 or seconds ~= seconds
      or seconds >= 1e12 then
    error("bad argument #1 to 'timeout' (seconds must be a non-negative number)", 2)
  end
  local depth = core._scope_open(seconds)
  local r = pack(pcall(fn, ...))
  local expired = core._scope_close(depth)
  if r[1] then return unpack(r, 2, r.n) end
  if expired and r[2] == core.TIMEOUT then
    return nil, "timeout", core.ETIME
  end
  error(r[2], 0)
end

require("uring.file")(uring, core)
require("uring.net")(uring, core)
require("uring.proc")(uring, core)
require("uring.socket")(uring, core)
require("uring.workers")(uring, core)

-- uring.http is a plain module over the public table: it may require
-- "uring" while this file is still running
package.loaded.uring = uring
uring.http = require "uring.http"

return uring
