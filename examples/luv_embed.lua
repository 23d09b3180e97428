--- examples/luv_embed.lua: lua-uring driven from another event loop (luv).
--
--   lua5.4 examples/luv_embed.lua
--
-- luv owns the thread: uv.run() is the program's loop.  lua-uring does
-- not run its own; luv watches uring.pollfd() (an eventfd the ring
-- signals for every completion) and calls uring.step() when it is
-- readable.  Tasks are started with uring.spawn outside any task.
--
-- Here luv runs a TCP echo server and a 50 ms timer, and lua-uring runs
-- 20 tasks that each write a file, read it back and send its first line
-- through luv's server, all on one thread.  It prints how many steps and
-- timer ticks that took, and exits non-zero if a reply was wrong.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"
local uv = require "luv"

-- luv's side: an echo server, and a timer to show luv keeps its own pace
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
local port = server:getsockname().port
server:listen(64, function()
  local c = uv.new_tcp()
  server:accept(c)
  c:read_start(function(_, data)
    if data then c:write(data) else c:close() end
  end)
end)
local ticks = 0
local timer = uv.new_timer()
timer:start(50, 50, function() ticks = ticks + 1 end)

-- lua-uring's side: tasks queued now, run by the steps below
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir " .. dir))
local TASKS, replies = 20, {}
for i = 1, TASKS do
  uring.spawn(function()
    local path = ("%s/%d.txt"):format(dir, i)
    uring.writefile(path, ("hello %d\nmore\n"):format(i))
    local f <close> = assert(uring.open(path))
    local line = f:read("l")
    local sock <close> = assert(uring.connect("127.0.0.1", port))
    sock:send(line .. "\n")
    replies[i] = sock:receive("*l")
    assert(uring.unlink(path))
  end)
end

-- the glue: step whenever the ring has something for us
local steps = 0
local poll = uv.new_poll(uring.pollfd())
local t0 = uv.hrtime()
poll:start("r", function()
  steps = steps + 1
  if not uring.step() then          -- every task has ended
    poll:close(); timer:close(); server:close()
  end
end)
uv.run()

os.remove(dir)
local bad = 0
for i = 1, TASKS do
  if replies[i] ~= "hello " .. i then bad = bad + 1 end
end
print(("%d tasks: file write, read and a TCP round trip through luv's server, "
  .. "in %d uring.step calls over %.1f ms (%d luv timer ticks meanwhile)")
  :format(TASKS, steps, (uv.hrtime() - t0) / 1e6, ticks))
if bad > 0 then
  io.stderr:write(bad, " wrong replies\n")
  os.exit(1)
end
