--- examples/trace_timeline.lua: see a batch happen -- a trace, and a
-- timeline to open in ui.perfetto.dev.
--
--   lua5.4 examples/trace_timeline.lua [trace.json]
--
-- 100 tasks each read 4 KiB of a file with f:pread, with uring.trace on.
-- The events show what batching is: each task prepares its SQE and
-- yields, and nothing reaches the kernel until one io_uring_enter hands
-- it all 100 (the "enter" event: submitted=100); the CQEs then come back
-- together.  uring.trace_export writes the same events as a Chrome/
-- Perfetto trace (default: trace.json in the temp directory): one track
-- per task, a slice per read from SQE to CQE, the enter as a line across
-- them.  Exits non-zero if the reads took more enters than the SQ size
-- requires (1 per ring_entries SQEs).
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local TASKS, LEN = 100, 4096
local out = arg[1] or ((os.getenv("TMPDIR") or "/tmp") .. "/trace.json")
local path = os.tmpname()

local events = {}
uring.run(function()
  assert(uring.writefile(path, string.rep("x", TASKS * LEN)))
  local f <close> = assert(uring.open(path))
  uring.trace(function(e) events[#events + 1] = e end)
  local tasks = {}
  for i = 1, TASKS do
    tasks[i] = uring.spawn(function() return f:pread(LEN, (i - 1) * LEN) end)
  end
  for i = 1, TASKS do assert(select(2, tasks[i]:join()) == string.rep("x", LEN)) end
  uring.trace(false)
end)
os.remove(path)

-- the reads' SQEs, the enters that submitted them, their CQEs, in order
local sqes, cqes, enters, first_cqe = 0, 0, {}, nil
local submitted_before_cqe = 0
for i, e in ipairs(events) do
  if e.op == "read" and e.event == "sqe" then sqes = sqes + 1 end
  if e.op == "read" and e.event == "cqe" then
    cqes = cqes + 1
    first_cqe = first_cqe or i
  end
  if e.event == "enter" and e.submitted > 0 and sqes > 0 and cqes < TASKS then
    enters[#enters + 1] = e
    if not first_cqe then submitted_before_cqe = submitted_before_cqe + e.submitted end
  end
end
local span = events[#events].time - events[1].time
print(("%d reads: %d SQEs prepared, then %d io_uring_enter call(s) submitting %s, then %d CQEs"):format(
  TASKS, sqes, #enters, table.concat((function()
    local t = {}
    for _, e in ipairs(enters) do t[#t + 1] = tostring(e.submitted) end
    return t
  end)(), "+"), cqes))
print(("%d events over %.0f us; the first CQE came after %d SQEs had gone in"):format(
  #events, span * 1e6, submitted_before_cqe))

local n, msg = uring.trace_export(out)
if not n then
  io.stderr:write("trace_timeline: ", msg, "\n")
  os.exit(1)
end
print(("wrote %d events to %s: open it in https://ui.perfetto.dev"):format(n, out))

local entries = uring.stats().entries
local most = (TASKS + entries - 1) // entries
if sqes ~= TASKS or cqes ~= TASKS or #enters > most then
  io.stderr:write(("trace_timeline: expected the %d reads in at most %d enter(s)\n"):format(TASKS, most))
  os.exit(1)
end
