--- uring.inspect([port]): a live view of the loop in the browser.
--
-- A uring.http server on 127.0.0.1 serves one page and a stream of
-- snapshots (server-sent events, /events; one snapshot as JSON at
-- /state.json): the tasks and what each waits on, the requests in flight
-- by op, the loop ring's indices as both sides see them (the mapped ring
-- and the kernel's /proc/self/fdinfo), enters per second and SQEs per
-- enter, and the newest trace events, which the page draws as a scrolling
-- timeline.
--
-- The inspector must not show itself: its tasks are untraced and so are
-- every task they spawn (core._untraced(true): the server's connection
-- tasks), and the page lists the user's tasks and requests only.  It ends
-- by itself once only its own tasks are left, so a script that calls it
-- still ends when its work does; srv:close() ends it sooner.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

-- private core functions, taken before init.lua removes them
local untraced, untraced_of = core._untraced, core._untraced_of
local loop_state, inflight_ops, tracing = core._loop_state, core._inflight_ops, core._tracing
local trace_log = core._trace_log

local format, concat = string.format, table.concat

local M = {}

local TICK = 0.5            -- seconds between snapshots on a stream
local STREAM_LIFE = 30      -- a stream ends after this; EventSource reconnects
local EVENTS = 400          -- newest trace events per snapshot, at most

---------------------------------------------------------------------------
-- JSON: only what a snapshot holds (tables of numbers, strings, booleans;
-- arrays are tables with [1] or marked empty)
---------------------------------------------------------------------------

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local ARRAY = {}            -- metatable marking an array that may be empty

local function json(v, out)
  local t = type(v)
  if t == "table" then
    if getmetatable(v) == ARRAY or v[1] ~= nil then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        json(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)              -- stable output, easy to diff
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        json(k, out)
        out[#out + 1] = ":"
        json(v[k], out)
      end
      out[#out + 1] = "}"
    end
  elseif t == "string" then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', function(c)
      return ESC[c] or format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    elseif math.type(v) == "integer" then out[#out + 1] = tostring(v)
    else out[#out + 1] = format("%.6f", v) end     -- times: microseconds kept
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  else
    out[#out + 1] = "null"
  end
  return out
end

local function encode(v) return concat(json(v, {})) end

---------------------------------------------------------------------------
-- A snapshot
---------------------------------------------------------------------------

-- /proc/self/fdinfo/<ring fd>: the kernel's view of the same ring
-- (SqHead, CqTail, ...; CqOverflowList's entries counted)
local function fdinfo(fd)
  local f = io.open("/proc/self/fdinfo/" .. fd)
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local t, in_overflow = {}, false
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^(%w+):%s*(.-)%s*$")
    if k then
      in_overflow = (k == "CqOverflowList")
      if in_overflow then t.CqOverflowList = 0
      else t[k] = math.tointeger(tonumber(v)) or v end
    elseif in_overflow then
      t.CqOverflowList = t.CqOverflowList + 1
    end
  end
  return t
end

-- the newest trace events after `since` (uring.now() seconds), as
-- {kind, time, task, op, user_data}: what the page's timeline draws
local function recent_events(since)
  local out = setmetatable({}, ARRAY)
  if not tracing() then return out, since end
  local log = trace_log(EVENTS)
  for _, e in ipairs(log) do
    if e.time > since and not e.ring then
      if e.event == "enter" then
        out[#out + 1] = { "enter", e.time, e.submitted or 0, e.ready or 0 }
      else
        out[#out + 1] = { e.event, e.time, e.task or 0, e.op or "?", format("%x", e.user_data) }
      end
      since = e.time
    end
  end
  return out, since
end

-- One snapshot; `st` is the stream's own memory: the counters and time of
-- its last snapshot (the rates are over the interval since) and the last
-- trace event it sent.
local function snapshot(st)
  local now, s = uring.now(), uring.stats()
  local snap = { time = now, stats = s }
  if st.time then
    local dt = now - st.time
    local de, dq = s.enters - st.enters, s.sqes - st.sqes
    snap.enters_per_s = dt > 0 and de / dt or 0
    snap.sqes_per_enter = de > 0 and dq / de or 0
  end
  st.time, st.enters, st.sqes = now, s.enters, s.sqes
  local tasks, own = setmetatable({}, ARRAY), 0
  for _, t in ipairs(uring.tasks()) do
    local u = untraced_of(t)
    if u == 2 then own = own + 1
    elseif u == 0 then                  -- not the REPL prompt's own either
      tasks[#tasks + 1] = { id = t:id(), status = t:status(), waiting_on = t:waiting_on() or "" }
    end
  end
  table.sort(tasks, function(a, b) return a.id < b.id end)
  snap.tasks, snap.own_tasks = tasks, own
  -- the server's sockets: their requests may wait in no task (a
  -- listener's multishot accept), so the core is told which fds are ours
  local fds = { [st.lfd] = true }
  for sock in pairs(st.server._conns) do
    local ok, fd = pcall(sock.fd, sock)     -- closed by now: not in flight
    if ok then fds[fd] = true end
  end
  local ops, own_reqs = inflight_ops(fds)
  snap.inflight_ops, snap.own_requests = ops, own_reqs
  local ring = loop_state()
  if ring then
    snap.ring = ring
    snap.fdinfo = fdinfo(ring.ring_fd)
  end
  snap.tracing = tracing()
  snap.events, st.since = recent_events(st.since or 0)
  return snap
end

---------------------------------------------------------------------------
-- The server
---------------------------------------------------------------------------

local PAGE = require "uring.inspect_page"   -- HTML, CSS and script in one

local function stream(self, res)
  res:header("Content-Type", "text/event-stream")
  res:header("Cache-Control", "no-cache")
  -- EventSource reconnects after `retry` ms when a stream ends
  if not res:write("retry: 500\n\n") then return end
  local st, deadline = { server = self.server, lfd = self.lfd }, uring.now() + STREAM_LIFE
  while not self._stopping and uring.now() < deadline do
    if not res:write("data: " .. encode(snapshot(st)) .. "\n\n") then return end
    self.updates = self.updates + 1
    -- short naps: close() is seen at once, the "end" goes out in its grace
    local next_tick = uring.now() + TICK
    while not self._stopping and uring.now() < next_tick do uring.sleep(TICK / 5) end
  end
  if self._stopping then
    -- one last snapshot, then "end": the page stops reconnecting
    res:write("data: " .. encode(snapshot(st)) .. "\n\n")
    self.updates = self.updates + 1
    res:write("event: end\ndata: {}\n\n")
  end
  res:finish()
end

local function handler(self)
  return function(req, res)
    if req.path == "/" then
      res:header("Content-Type", "text/html; charset=utf-8")
      return 200, PAGE
    elseif req.path == "/events" then
      return stream(self, res)
    elseif req.path == "/state.json" then
      res:header("Content-Type", "application/json")
      return 200, encode(snapshot({ server = self.server, lfd = self.lfd }))
    end
    return 404, "not found\n"
  end
end

local Inspector = {}
Inspector.__index = Inspector
-- named in the registry as luaL_newmetatable names the core's (the docs
-- check finds every kind's methods there)
debug.getregistry()["uring.inspector"] = Inspector

local function checkself(self, name)
  if getmetatable(self) ~= Inspector then check.typeerror(1, name, "uring.inspector", self, 2) end
end

--- inspector:port() -> the port it listens on
function Inspector:port()
  checkself(self, "port")
  return self.server:port()
end

--- inspector:url() -> "http://127.0.0.1:PORT/"
function Inspector:url()
  checkself(self, "url")
  return format("http://127.0.0.1:%d/", self.server:port())
end

--- inspector:close(): stops serving (streams send "end" at once)
function Inspector:close()
  checkself(self, "close")
  if self._stopping then return true end
  self._stopping = true
  self.server:close()                   -- serve() then turns tracing off
  return true
end
Inspector.__close = Inspector.close

-- only the inspector's own tasks are left (or none): the user's work is
-- over, and a script that called inspect() would otherwise never end
local function alone()
  for _, t in ipairs(uring.tasks()) do
    if untraced_of(t) ~= 2 then return false end
  end
  return true
end

--- uring.inspect([port]) -> inspector
function M.inspect(port)
  if port ~= nil then
    port = check.integer(1, "inspect", port)
    if port < 0 or port > 65535 then
      check.argerror(1, "inspect", "port must be in 0..65535, got " .. port)
    end
  end
  check.intask("inspect")
  local self = setmetatable({ _stopping = false, updates = 0 }, Inspector)
  -- the timeline needs the trace log: on, quietly, unless the user has it
  -- on; on before the server is made, so its requests are marked untraced
  if not tracing() then
    uring.trace(function() end)
    self._traced = true
  end
  -- Everything is made in a task of the inspector's own: a listener arms
  -- its accept when it is made, and that request must be untraced too.
  local boot = uring.spawn(function()
    untraced(true)                        -- this task, and all it spawns
    local srv, msg, en = uring.http.server{ host = "127.0.0.1", port = port or 0,
      handler = handler(self), grace = 2, idle_timeout = 10 }
    if not srv then return nil, msg, en end
    self.server = srv
    self.lfd = srv._lsock:fd()
    uring.spawn(function()
      srv:serve()
      -- after the streams' last snapshots, which still show the trace
      if self._traced and tracing() then uring.trace(false) end
    end)
    uring.spawn(function()
      while not self._stopping do
        uring.sleep(TICK / 5)
        if alone() then self:close() end
      end
    end)
    return true
  end)
  local ok, made, msg, en = boot:join()
  if not ok or not made then
    if self._traced then uring.trace(false) end
    if not ok then error(made, 0) end
    return nil, msg, en
  end
  return self
end

return M
