--- uring.trace_export(path): what uring.trace saw, as a Chrome/Perfetto
-- trace (the JSON "Trace Event Format" that ui.perfetto.dev and
-- chrome://tracing open).
--
-- The core logs every traced event (csrc/stats.c, the newest 262,144);
-- this file only shapes them: one track per task (and per teaching ring,
-- uring.ring), each request a slice
-- from its SQE (prepared) to its last CQE (reaped), the CQEs of a
-- multishot request that say "more" as marks on its track, and each
-- io_uring_enter as an instant across the process, so a batch reads as
-- SQEs stacking up, one enter, and CQEs fanning out.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

local trace_log = core._trace_log
local RING_TRACK = 1000000          -- teaching rings' tracks: after the tasks'

local M = {}

local format, concat = string.format, table.concat

-- a JSON number for microseconds: three decimals (nanoseconds) at most
local function us(seconds)
  return format("%.3f", seconds * 1e6)
end

-- args objects: keys are ours (identifiers), values integers or strings
-- without quotes or backslashes (op names, hex user_data)
local function args(t, keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    if v ~= nil then
      if type(v) == "string" then v = '"' .. v .. '"' end
      parts[#parts + 1] = format('"%s":%s', k, tostring(v))
    end
  end
  return "{" .. concat(parts, ",") .. "}"
end

local function request_args(sqe, cqe, extra)
  local a = {
    user_data = format("0x%x", (sqe or cqe).user_data),
    fd = (sqe or cqe).fd,
    len = sqe and sqe.len or nil,
    res = cqe and cqe.res or nil,
    errno = cqe and cqe.errno or nil,
    flags = cqe and cqe.flags or nil,
  }
  for k, v in pairs(extra or {}) do a[k] = v end
  return args(a, { "user_data", "fd", "len", "res", "errno", "flags", "cqes", "in_flight" })
end

--- uring.trace_export(path) -> number of events written | nil, msg, errno
function M.trace_export(path)
  path = check.string(1, "trace_export", path, 1, true)
  local log, dropped = trace_log()
  local f, msg, en = io.open(path, "w")
  if not f then return nil, msg, en end
  local t0 = log[1] and log[1].time or 0
  local last = log[#log] and log[#log].time or t0
  local out = {}
  local function put(s) out[#out + 1] = s end
  local tracks = { [0] = true }     -- track id -> its name (0: the loop itself)
  local open = {}                   -- request key -> {{sqe =, cqes =}, ...}, oldest first
  -- a task's track is its id; a teaching ring's, RING_TRACK + its fd
  local function track(e)
    if e.ring then
      tracks[RING_TRACK + e.ring] = ("ring (fd %d)"):format(e.ring)
      return RING_TRACK + e.ring
    end
    tracks[e.task] = tracks[e.task] or ("task " .. e.task)
    return e.task
  end
  -- a ring's user_data is the user's: the same value may be in flight
  -- twice, and on two rings
  local function key(e) return (e.ring or 0) .. ":" .. e.user_data end
  local function slice(name, task, from, to, a)
    put(format('{"name":"%s","cat":"request","ph":"X","pid":1,"tid":%d,"ts":%s,"dur":%s,"args":%s}',
      name, task, us(from - t0), us(math.max(to - from, 0)), a))
  end
  local function instant(name, task, at, scope, a)
    put(format('{"name":"%s","ph":"i","s":"%s","pid":1,"tid":%d,"ts":%s,"args":%s}',
      name, scope, task, us(at - t0), a))
  end
  local enter_keys = { "to_submit", "min_complete", "submitted", "ready" }
  for _, e in ipairs(log) do
    if e.event == "enter" and e.ring then   -- a teaching ring's: on its track
      instant("io_uring_enter", track(e), e.time, "t", args(e, enter_keys))
    elseif e.event == "enter" then          -- the loop's: across the process
      instant("io_uring_enter", 0, e.time, "p", args(e, enter_keys))
    elseif e.event == "sqe" then
      track(e)
      local k = key(e)
      open[k] = open[k] or {}
      table.insert(open[k], { sqe = e, cqes = 0 })
    else
      local tid, k = track(e), key(e)
      local o = open[k] and open[k][1]
      if o then o.cqes = o.cqes + 1 end
      if e.more then
        instant(e.op .. " cqe (more)", tid, e.time, "t", request_args(nil, e))
      elseif o then
        table.remove(open[k], 1)
        slice(e.op, track(o.sqe), o.sqe.time, e.time, request_args(o.sqe, e, { cqes = o.cqes }))
      else                          -- prepared before tracing began
        instant(e.op .. " cqe", tid, e.time, "t", request_args(nil, e))
      end
    end
  end
  -- requests still in flight when the log was taken: up to its end
  for _, list in pairs(open) do
    for _, o in ipairs(list) do
      slice(o.sqe.op, track(o.sqe), o.sqe.time, last,
        request_args(o.sqe, nil, { cqes = o.cqes, in_flight = true }))
    end
  end
  put('{"name":"process_name","ph":"M","pid":1,"args":{"name":"lua-uring"}}')
  tracks[0] = "loop (no task)"
  for id, name in pairs(tracks) do
    put(format('{"name":"thread_name","ph":"M","pid":1,"tid":%d,"args":{"name":"%s"}}', id, name))
    put(format('{"name":"thread_sort_index","ph":"M","pid":1,"tid":%d,"args":{"sort_index":%d}}', id, id))
  end
  local ok, werr, wen = f:write('{"displayTimeUnit":"ns","otherData":{"dropped_events":',
    tostring(dropped), '},"traceEvents":[\n', concat(out, ",\n"), "\n]}\n")
  local cok, cerr, cen = f:close()
  if not ok then return nil, werr, wen end
  if not cok then return nil, cerr, cen end
  return #log
end

return M
