--- examples/pipeline.lua: producer -> N workers -> collector, on queues.
--
--   lua5.4 examples/pipeline.lua [FILE] [--workers N] [--capacity C]
--
-- A producer reads FILE line by line (default: a temp file of 20,000
-- lines it writes first) and puts each line, numbered, on a bounded
-- `jobs` queue; N workers (default 4) take lines, turn each into
-- "length checksum" and put it on a `results` queue; a collector takes
-- the results and writes them to an output file in input order.
--
-- The idea: backpressure.  `jobs` holds at most C items (default 16):
-- when the workers fall behind, the producer's q:put waits -- it does
-- not read the whole file into memory -- and when the producer is slow,
-- idle workers wait in q:get.  Every wait parks the task in the core:
-- nothing polls.  Closing a queue is how the end travels down the line:
-- the producer closes `jobs`; each worker's get then returns nil,
-- "closed"; the last worker to stop closes `results`.
--
-- Prints the deepest `jobs` ever was (never above C), how often the
-- producer had to wait, and checks the output against a plain loop.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local USAGE = "usage: lua5.4 examples/pipeline.lua [FILE] [--workers N] [--capacity C]\n"
local function usage(msg)
  io.stderr:write("pipeline: ", msg, "\n", USAGE)
  os.exit(2)
end

local input, nworkers, capacity
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--workers" or a == "--capacity" then
      local v = math.tointeger(tonumber(arg[i + 1]))
      if not v or v < 1 then usage(a .. " needs a positive integer") end
      if a == "--workers" then nworkers = v else capacity = v end
      i = i + 2
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      os.exit(0)
    elseif not input and a:sub(1, 1) ~= "-" then
      input, i = a, i + 1
    else
      usage("unexpected argument '" .. a .. "'")
    end
  end
end
nworkers, capacity = nworkers or 4, capacity or 16

-- the work each worker does on a line: its length and a small checksum
local function transform(line)
  local sum = 0
  for k = 1, #line do sum = (sum * 31 + line:byte(k)) % 65521 end
  return ("%d %d"):format(#line, sum)
end

local made
if not input then
  input = os.tmpname()
  local f = assert(io.open(input, "w"))
  for k = 1, 20000 do
    f:write(("line %d: %s\n"):format(k, ("abcdefghij"):rep(k % 7 + 1)))
  end
  f:close()
  made = input
end
local output = os.tmpname()

local deepest, producer_waits, lines = 0, 0, 0
local t0 = uring.now()
local ok, err = pcall(uring.run, function()
  local jobs = uring.queue(capacity)
  local results = uring.queue(capacity)

  local producer = uring.spawn(function()
    local f <close> = assert(uring.open(input, "r"))
    local n = 0
    for line in f:lines() do
      n = n + 1
      if #jobs == capacity then producer_waits = producer_waits + 1 end
      jobs:put({ n = n, line = line })        -- waits while jobs is full
      if #jobs > deepest then deepest = #jobs end
    end
    jobs:close()                              -- no more: workers drain, then stop
    return n
  end)

  local running = nworkers
  for _ = 1, nworkers do
    uring.spawn(function()
      while true do
        local job = jobs:get()
        if job == nil then break end          -- closed and drained
        results:put({ n = job.n, text = transform(job.line) })
      end
      running = running - 1
      if running == 0 then results:close() end
    end)
  end

  -- the collector: results come in any order; write them in input order
  local out <close> = assert(uring.open(output, "w"))
  local pending, next_n = {}, 1
  while true do
    local r = results:get()
    if r == nil then break end
    pending[r.n] = r.text
    while pending[next_n] do
      assert(out:write(pending[next_n], "\n"))
      pending[next_n] = nil
      next_n = next_n + 1
    end
  end
  local _, n = producer:join()
  lines = n
  assert(next_n == n + 1, "lines lost between the stages")
end)
if made then os.remove(made) end
if not ok then
  os.remove(output)
  io.stderr:write("pipeline: ", tostring(err), "\n")
  os.exit(1)
end
local secs = uring.now() - t0

-- the same work in a plain loop, to check the pipeline's output
local want = {}
if made then                      -- the temp input is gone: make its lines again
  for k = 1, 20000 do
    want[k] = transform(("line %d: %s"):format(k, ("abcdefghij"):rep(k % 7 + 1)))
  end
else
  for line in io.lines(input) do want[#want + 1] = transform(line) end
end
local got = {}
for line in io.lines(output) do got[#got + 1] = line end
os.remove(output)
local same = #got == #want
for k = 1, #want do if got[k] ~= want[k] then same = false; break end end

print(("pipeline: %d lines through %d workers in %.3f s; jobs queue capacity %d, "
  .. "deepest %d, producer waited %d times"):format(lines, nworkers, secs,
  capacity, deepest, producer_waits))
print(("pipeline: output %s"):format(same and "verified: in order, every line"
  or "WRONG"))
os.exit(same and 0 or 1)
