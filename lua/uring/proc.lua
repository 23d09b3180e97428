--- uring.proc: the part of uring.popen that is a composition of core calls.
-- uring.popen (C) returns a uring.file over the parent's pipe end and
-- links the file to its child in core._popen_links (weak keys).  Here
-- file:close() learns to wait for that child and return what io.popen's
-- close returns: true | nil, "exit" | "signal", code.  The file's __close
-- calls its close method (csrc/fs.c), so `local f <close> =
-- uring.popen(...)` waits as io.popen's does.
local core = require "uring.core"
local check = require "uring.check"

local links = core._popen_links
local methods = core.file_methods
local wait, reap, current = core._wait, core._reap, core.current
local closed = methods._closed
local isyieldable = coroutine.isyieldable

local M = {}

-- In a task: wait through the ring.  Outside uring.run: block, as
-- io.popen's close does.  While a task unwinds (it cannot yield): take
-- the status if it is there; else the collector reaps the child later.
local function finish(h)
  if current() and isyieldable() then return wait(h) end
  return reap(h, current() == nil)
end

local close = methods.close   -- the C close
function methods:close(...)
  -- misuse raises here, so the message names the caller's line and not
  -- this wrapper's (the C close would)
  if not check.is(self, methods) then
    check.typeerror(1, "close", "uring.file", self)
  end
  if closed(self) then check.error("attempt to use a closed file") end
  local h = links[self]
  if h == nil then return close(self, ...) end
  local ok, msg, en = close(self)
  links[self] = nil
  local r1, r2, r3 = finish(h)
  if r2 == nil and not ok then return ok, msg, en end
  return r1, r2, r3
end

return M
