--- uring.trace_export(path): what uring.trace saw, as a Chrome/Perfetto
-- trace (the JSON "Trace Event Format" that ui.perfetto.dev and
-- chrome://tracing open).
--
-- The core logs every traced event (csrc/stats.c, the newest 262,144);
-- this file only shapes them: one track per task, each request a slice
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
  local tracks = { [0] = true }     -- task id -> seen (0: the loop itself)
  local open = {}                   -- user_data -> {sqe =, cqes =}
  local function slice(name, task, from, to, a)
    put(format('{"name":"%s","cat":"request","ph":"X","pid":1,"tid":%d,"ts":%s,"dur":%s,"args":%s}',
      name, task, us(from - t0), us(math.max(to - from, 0)), a))
  end
  local function instant(name, task, at, scope, a)
    put(format('{"name":"%s","ph":"i","s":"%s","pid":1,"tid":%d,"ts":%s,"args":%s}',
      name, scope, task, us(at - t0), a))
  end
  for _, e in ipairs(log) do
    if e.event == "enter" then
      instant("io_uring_enter", 0, e.time, "p",
        args(e, { "to_submit", "min_complete", "submitted", "ready" }))
    elseif e.event == "sqe" then
      tracks[e.task] = true
      open[e.user_data] = { sqe = e, cqes = 0 }
    else
      tracks[e.task] = true
      local o = open[e.user_data]
      if o then o.cqes = o.cqes + 1 end
      if e.more then
        instant(e.op .. " cqe (more)", e.task, e.time, "t", request_args(nil, e))
      elseif o then
        open[e.user_data] = nil
        slice(e.op, o.sqe.task, o.sqe.time, e.time, request_args(o.sqe, e, { cqes = o.cqes }))
      else                          -- prepared before tracing began
        instant(e.op .. " cqe", e.task, e.time, "t", request_args(nil, e))
      end
    end
  end
  -- requests still in flight when the log was taken: up to its end
  for _, o in pairs(open) do
    slice(o.sqe.op, o.sqe.task, o.sqe.time, last,
      request_args(o.sqe, nil, { cqes = o.cqes, in_flight = true }))
  end
  put('{"name":"process_name","ph":"M","pid":1,"args":{"name":"lua-uring"}}')
  for id in pairs(tracks) do
    put(format('{"name":"thread_name","ph":"M","pid":1,"tid":%d,"args":{"name":"%s"}}',
      id, id == 0 and "loop (no task)" or ("task " .. id)))
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
