--- Tasks working together: s:with and uring.group, over the C core's
-- waits (csrc/sync.c: queue, semaphore, event, select; csrc/task.c:
-- join, cancel, timeout scopes).  Nothing here polls or sleeps: every
-- wait is one of the core's.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

local pack, unpack = table.pack, table.unpack
local traceback = debug.traceback
local type, tostring, error, pcall, xpcall, setmetatable =
  type, tostring, error, pcall, xpcall, setmetatable
local typename, typeerror, callable = check.typename, check.typeerror, check.callable
local spawn, current = core.spawn, core.current
local scope_open, scope_close = core._scope_open, core._scope_close
local scope_expire, join_shielded = core._scope_expire, core._join_shielded
local TIMEOUT = core.TIMEOUT

local M = {}

--- s:with(fn, ...) -> fn's results: fn runs holding one permit, which is
-- given back however fn ends.
function core.semaphore_methods.with(self, fn, ...)
  if typename(self) ~= "uring.semaphore" then
    typeerror(1, "with", "uring.semaphore", self)
  end
  if not callable(fn) then typeerror(2, "with", "function", fn) end
  self:acquire()
  local r = pack(pcall(fn, ...))
  self:release()
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

-- uring.group ---------------------------------------------------------------
--
-- A group is a table: _tasks (its children not yet known to have ended
-- cleanly: a long-lived group, a server's, does not keep every
-- connection's task), _compact_at (when to drop the ended ones), _err (the
-- first failure: {raw =, tb =}), _parent and _depth (the task running
-- the body and the timer-less timeout scope around the body, while it
-- runs: a child's failure expires that scope, so a body stuck in a wait
-- is interrupted the way uring.timeout interrupts it), _ended.

local group_mt = core._group_mt
local Group = core.group_methods

-- a cancel or an expired timeout scope, as the core raises them
local function is_interrupt(e)
  return e == "canceled" or e == TIMEOUT
end

-- xpcall's handler: the error, and where it came from while the stack is
-- still there (an interrupt needs no traceback: it is not reported)
local function catch(e)
  if is_interrupt(e) then return { raw = e } end
  if type(e) == "string" or type(e) == "number" then
    return { raw = e, tb = traceback(tostring(e), 2) }
  end
  return { raw = e }
end

-- a child's: its traceback ends where its function began (below are only
-- this file's frames)
local function catch_child(e)
  local rec = catch(e)
  if rec.tb then
    rec.tb = rec.tb:gsub("\n%s*%[C%]: in function 'xpcall'.*$", "")
  end
  return rec
end

local function cancel_children(g)
  local me = current()
  for _, t in ipairs(g._tasks) do
    if t ~= me then t:cancel() end   -- a finished one says false
  end
end

-- the first failure: kept, the others cancelled, the body interrupted
local function fail(g, rec)
  if g._err then return end
  g._err = rec
  cancel_children(g)
  if g._depth then scope_expire(g._parent, g._depth) end
end

-- xpcall's second result when it failed: the handler's record, or, if
-- the handler itself failed (out of memory), what xpcall says instead
local function record(e)
  if type(e) == "table" then return e end
  return { raw = e }
end

-- every child runs in this: its failure is the group's
local function child(g, fn, ...)
  local r = pack(xpcall(fn, catch_child, ...))
  if r[1] then return unpack(r, 2, r.n) end
  local rec = record(r[2])
  if not is_interrupt(rec.raw) then fail(g, rec) end
  error(rec.raw, 0)                  -- the task ends failed (or canceled)
end

local function checkgroup(g, name)
  if typename(g) ~= "uring.group" then typeerror(1, name, "uring.group", g, 2) end
  if g._ended then
    check.error(name .. ": the group has ended (uring.group returned)", 2)
  end
end

-- drop the children that ended without an error to report (a failed one
-- stays: the group joins it, which marks its error as handled)
local function compact(tasks)
  local j = 0
  for i = 1, #tasks do
    local t = tasks[i]
    local st = t:status()
    if st ~= "done" and st ~= "canceled" then
      j = j + 1
      tasks[j] = t
    end
  end
  for i = #tasks, j + 1, -1 do tasks[i] = nil end
end

--- g:spawn(fn, ...) -> task: a child of the group.
function Group.spawn(self, fn, ...)
  checkgroup(self, "spawn")
  if not callable(fn) then typeerror(2, "spawn", "function", fn) end
  local t = spawn(child, self, fn, ...)
  local tasks = self._tasks
  if #tasks >= self._compact_at then     -- amortised: O(1) per spawn
    compact(tasks)
    self._compact_at = 2 * #tasks > 64 and 2 * #tasks or 64
  end
  tasks[#tasks + 1] = t
  -- a group that is failing or cancelled lets no new child run
  if self._err or self._cancelled then t:cancel() end
  return t
end

--- g:cancel(): cancel every child (the body goes on; the group then
-- returns the body's results once they have unwound).
function Group.cancel(self)
  checkgroup(self, "cancel")
  self._cancelled = true
  cancel_children(self)
end

--- uring.group(fn) -> fn's results: fn(g) runs in this task and spawns
-- with g:spawn; the group returns when every child has ended.  The first
-- error (a child's or fn's) cancels the rest and is raised, with its
-- traceback, after they have unwound.
function M.group(fn)
  if not callable(fn) then typeerror(1, "group", "function", fn) end
  check.intask("group")
  local g = setmetatable({ _tasks = {}, _compact_at = 64, _parent = current() },
    group_mt)
  g._depth = scope_open(false)
  local r = pack(xpcall(fn, catch, g))
  local expired = scope_close(g._depth)
  g._depth = nil
  local interrupt            -- a cancel or an outer timeout: raised last
  if not r[1] then
    local rec = record(r[2])
    if expired and rec.raw == TIMEOUT then
      -- our own scope: a child failed (g._err says how)
    elseif is_interrupt(rec.raw) then
      interrupt = rec.raw
      cancel_children(g)
    else
      fail(g, rec)
    end
  end
  -- wait for every child, those spawned meanwhile too (the last first);
  -- once interrupted, wait on regardless: the children must unwind
  -- before the group ends
  local tasks = g._tasks
  while #tasks > 0 do
    local t = tasks[#tasks]
    local ok, e
    if interrupt then
      ok, e = join_shielded(t)
    else
      local fine
      fine, ok, e = pcall(t.join, t)
      if not fine then
        interrupt = ok
        cancel_children(g)
        ok, e = join_shielded(t)
      end
    end
    -- an error that never reached child()'s handler (out of memory as
    -- the task began) is the group's all the same
    if not ok and t:status() == "failed" then fail(g, { raw = e }) end
    -- joined; where it is now (children spawn and compact meanwhile)
    for k = #tasks, 1, -1 do
      if tasks[k] == t then table.remove(tasks, k); break end
    end
  end
  g._ended = true
  if interrupt then error(interrupt, 0) end
  if g._err then error(g._err.tb or g._err.raw, 0) end
  return unpack(r, 2, r.n)
end

return M
