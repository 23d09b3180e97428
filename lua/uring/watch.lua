--- uring.watch: inotify events as tables, read through the ring.
-- The C half (csrc/watch.c) owns the inotify fd and reads raw events into
-- memory its request owns; here they are decoded, watch descriptors are
-- mapped back to paths, and the recursive option adds a watch for each
-- new subdirectory.
local uring = require "uring"
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

local new, entries, IN = core._watch, core._watch_entries, core._inotify
local methods = core._watch_methods
local add, fill, fd = methods._add, methods._fill, methods.fd
local EBADF = core.errno.EBADF
local sunpack, find, match, sub, gmatch = string.unpack, string.find, string.match,
  string.sub, string.gmatch
local argerror, typeerror = check.argerror, check.typeerror

local M = {}

-- the events a user may ask for, by the names w:read() reports; the
-- order is the order a mask is decoded in (one event bit per event)
local EVENTS = {
  { "create", IN.IN_CREATE }, { "modify", IN.IN_MODIFY },
  { "delete", IN.IN_DELETE }, { "move_from", IN.IN_MOVED_FROM },
  { "move_to", IN.IN_MOVED_TO }, { "attrib", IN.IN_ATTRIB },
  { "close_write", IN.IN_CLOSE_WRITE }, { "close_nowrite", IN.IN_CLOSE_NOWRITE },
  { "open", IN.IN_OPEN }, { "access", IN.IN_ACCESS },
  { "delete_self", IN.IN_DELETE_SELF }, { "move_self", IN.IN_MOVE_SELF },
  { "unmount", IN.IN_UNMOUNT },
}
local BIT = {}
for _, e in ipairs(EVENTS) do BIT[e[1]] = e[2] end
local DEFAULT = IN.IN_CREATE | IN.IN_MODIFY | IN.IN_DELETE | IN.IN_MOVED_FROM
  | IN.IN_MOVED_TO | IN.IN_ATTRIB | IN.IN_DELETE_SELF | IN.IN_MOVE_SELF
-- what recursion needs to see whatever the user asked for
local TREE = IN.IN_CREATE | IN.IN_MOVED_TO | IN.IN_MOVED_FROM
local ISDIR, IGNORED, OVERFLOW = IN.IN_ISDIR, IN.IN_IGNORED, IN.IN_Q_OVERFLOW
local SELF = IN.IN_DELETE_SELF | IN.IN_MOVE_SELF

-- watch -> its decoder state (the C object has no room for Lua values)
local state = setmetatable({}, { __mode = "k" })

local function eventmask(events)
  if events == nil then return DEFAULT end
  local mask = 0
  local function one(name)
    if name == "all" then mask = mask | DEFAULT | IN.IN_CLOSE_WRITE | IN.IN_CLOSE_NOWRITE
      | IN.IN_OPEN | IN.IN_ACCESS
    elseif BIT[name] and name ~= "unmount" then mask = mask | BIT[name]
    else argerror(2, "watch", "unknown event '" .. tostring(name) .. "'", 3) end
  end
  if type(events) == "string" then
    for name in gmatch(events, "[^%s,]+") do one(name) end
  elseif type(events) == "table" then
    for _, name in ipairs(events) do one(name) end
  else
    typeerror(2, "watch", "string or table", events, 2)
  end
  if mask == 0 then argerror(2, "watch", "no event named", 2) end
  return mask
end

local function push(st, ev)
  local t = st.qt + 1
  st.qt = t
  st.q[t] = ev
end

-- Watch the directory rel (under the root) and, recursively, the ones
-- below it.  report: also queue a "create" for every entry found (it was
-- made before its directory's watch existed, so inotify did not say).
-- Returns true, or the fail tuple.
local function watch_tree(w, st, rel, report)
  local path = st.root .. "/" .. rel
  local wd, msg, en = add(w, path, st.kmask | IN.IN_ONLYDIR)
  if not wd then
    if en == core.errno.ENOENT or en == core.errno.ENOTDIR then return true end  -- gone again
    return nil, msg, en
  end
  st.wds[wd] = rel
  local list = entries(path)
  if not list then return true end                -- removed meanwhile
  local names = {}
  for name in pairs(list) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local child = rel .. "/" .. name
    if report and st.umask & IN.IN_CREATE ~= 0 then
      push(st, { event = "create", name = child, path = st.root .. "/" .. child,
        dir = list[name] })
    end
    if list[name] then
      local ok, m2, e2 = watch_tree(w, st, child, report)
      if not ok then return nil, m2, e2 end
    end
  end
  return true
end

-- A subdirectory left the tree (moved away, or its name is being
-- reused): forget its watches; a move back in adds them again.
local function unwatch_tree(w, st, rel)
  local prefix = rel .. "/"
  for wd, r in pairs(st.wds) do
    if r == rel or sub(r, 1, #prefix) == prefix then
      st.wds[wd] = nil
      methods._rm(w, wd)   -- its IN_IGNORED comes later and is dropped
    end
  end
end

-- Turn the raw events of one read into tables on st's queue.
local function decode(w, st, raw)
  local pos, n = 1, #raw
  while pos + 15 <= n do
    local wd, mask, cookie, len = sunpack("=i4I4I4I4", raw, pos)
    local name = len > 0 and match(raw, "^[^%z]*", pos + 16) or nil
    pos = pos + 16 + len
    if mask & OVERFLOW ~= 0 then
      push(st, { event = "overflow" })
    else
      local rel = st.wds[wd]
      if rel == nil then
        -- a watch already forgotten (unwatch_tree): nothing to say
      elseif mask & IGNORED ~= 0 then
        st.wds[wd] = nil
        if wd == st.rootwd then st.gone = true end   -- the watched path is gone
      elseif mask & SELF ~= 0 and wd ~= st.rootwd then
        -- a subdirectory's own delete or move: its parent reports it
      else
        local full = name
        if rel ~= "" then full = name and rel .. "/" .. name or rel end
        local isdir = mask & ISDIR ~= 0
        if st.recursive and isdir and full then
          if mask & IN.IN_MOVED_FROM ~= 0 then unwatch_tree(w, st, full) end
          if mask & (IN.IN_CREATE | IN.IN_MOVED_TO) ~= 0 then
            -- its events from now on; what it already holds is queued
            -- after this event (watch_tree, report)
            st.later = full
          end
        end
        if mask & st.umask ~= 0 then
          local ev
          for _, e in ipairs(EVENTS) do
            if mask & e[2] ~= 0 then ev = e[1]; break end
          end
          push(st, { event = ev, name = full, dir = isdir,
            path = full and st.root .. "/" .. full or st.root,
            cookie = cookie ~= 0 and cookie or nil })
        end
        if st.later then
          local later = st.later
          st.later = nil
          local ok, msg, en = watch_tree(w, st, later, true)
          if not ok then push(st, { event = "error", name = later, message = msg, errno = en }) end
        end
      end
    end
  end
end

--- uring.watch(path [, events [, opts]]) -> w | nil, msg, errno
function M.watch(path, events, opts)
  if type(path) ~= "string" then typeerror(1, "watch", "string", path) end
  local umask = eventmask(events)
  if opts ~= nil and type(opts) ~= "table" then typeerror(3, "watch", "table", opts) end
  local recursive = opts and opts.recursive or false
  if find(path, "%z") then argerror(1, "watch", "path contains a NUL byte") end
  if path == "" then argerror(1, "watch", "path is empty") end
  local w, msg, en = new()
  if not w then return nil, msg, en end
  local root = path ~= "/" and (match(path, "^(.-)/*$")) or path
  local st = { root = root, umask = umask, kmask = umask | (recursive and TREE or 0),
    recursive = recursive and true, wds = {}, q = {}, qh = 1, qt = 0, gone = false }
  local wd
  wd, msg, en = add(w, path, st.kmask)
  if not wd then w:close(); return nil, msg, en end
  st.rootwd = wd
  st.wds[wd] = ""
  if recursive then
    local list = entries(path)
    if list then
      for name, isdir in pairs(list) do
        if isdir then
          local ok
          ok, msg, en = watch_tree(w, st, name, false)
          if not ok then w:close(); return nil, msg, en end
        end
      end
    end
  end
  state[w] = st
  return w
end

--- w:read() -> event | nil, "closed", EBADF | nil, msg, errno
-- event = {event =, name =, path =, dir =, cookie =}
function methods.read(w)
  fd(w)                               -- raises on a closed watch
  local st = state[w]
  while true do
    local h = st.qh
    if h <= st.qt then
      local ev = st.q[h]
      st.q[h] = nil
      st.qh = h + 1
      return ev
    end
    st.qh, st.qt = 1, 0
    if st.gone then return nil, "closed", EBADF end
    local raw, msg, en = fill(w)
    if not raw then return nil, msg, en end
    decode(w, st, raw)
  end
end

return M
