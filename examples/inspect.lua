--- examples/inspect.lua: watch the ring work, live, in a browser.
--
--   lua5.4 examples/inspect.lua [--seconds S] [--port P]
--
-- Starts uring.inspect (port P, default 0: the kernel picks one) and a
-- small workload for S seconds (default 30): every 50 ms a batch of 200
-- tasks each read 4 KiB of a file at a random offset, one task sleeps in
-- a loop, and three wait on pipes nobody writes to until the end.  Open
-- the printed address: the tasks and what each waits on, the three reads
-- that stay in flight, the ring's head and tail moving by 200 at a time,
-- the SQEs per enter near 200, and the batches in the trace timeline as
-- stripes.  At the end it reads its own /state.json, as the page does,
-- and prints what it saw there; the inspector then stops with the work.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local seconds, port = 30, 0
local i = 1
while arg[i] do
  local v = tonumber(arg[i + 1])
  if arg[i] == "--seconds" and v and v > 0 then seconds = v
  elseif arg[i] == "--port" and math.tointeger(v) then port = math.tointeger(v)
  else
    io.stderr:write("usage: lua5.4 examples/inspect.lua [--seconds S] [--port P]\n")
    os.exit(2)
  end
  i = i + 2
end

local BATCH, LEN, SIZE = 200, 4096, 1024 * 1024
local path = os.tmpname()

uring.run(function()
  local insp = assert(uring.inspect(port))
  print(("inspector at %s for %g s (open it in a browser)"):format(insp:url(), seconds))
  io.stdout:flush()
  assert(uring.writefile(path, string.rep("x", SIZE)))
  local f <close> = assert(uring.open(path))
  local stop = uring.now() + seconds

  -- three tasks that wait on pipes: requests that stay in flight
  local writers, waiters = {}, {}
  for k = 1, 3 do
    local r, w = uring.pipe()
    writers[k] = w
    waiters[k] = uring.spawn(function()
      local s = r:read(1)
      r:close()
      return s
    end)
  end
  local sleeper = uring.spawn(function()
    while uring.now() < stop do uring.sleep(0.2) end
  end)

  -- the batches
  local batches = 0
  while uring.now() < stop do
    local tasks = {}
    for k = 1, BATCH do
      tasks[k] = uring.spawn(function()
        return f:pread(LEN, math.random(0, SIZE // LEN - 1) * LEN)
      end)
    end
    for k = 1, BATCH do assert(select(2, tasks[k]:join()) == string.rep("x", LEN)) end
    batches = batches + 1
    uring.sleep(0.05)
  end

  -- what the page would show now: one snapshot, as JSON
  local res = assert(uring.http.request(insp:url() .. "state.json"))
  local body = res.body
  local reads = tonumber(body:match('"inflight_ops":{[^}]*"read":(%d+)')) or 0
  local waiting = select(2, body:match('"tasks":(%b[])'):gsub('"waiting_on":"read"', ""))
  print(("%d batches of %d reads; state.json: %d tasks waiting on a read, %d reads in flight")
    :format(batches, BATCH, waiting, reads))
  print(("stats: %d enters for %d SQEs (%.1f per enter); the page was updated %d times")
    :format(uring.stats().enters, uring.stats().sqes,
      uring.stats().sqes / math.max(uring.stats().enters, 1), insp.updates))

  for k = 1, 3 do writers[k]:write("x"); writers[k]:close() end
  for k = 1, 3 do waiters[k]:join() end
  sleeper:join()
  if reads ~= 3 or waiting ~= 3 then
    io.stderr:write("inspect: expected the 3 pipe reads in flight on the page\n")
    os.exit(1)
  end
end)
os.remove(path)
print("inspector stopped with the work")
