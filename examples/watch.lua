--- examples/watch.lua: rerun a command whenever files under a directory
-- change (a tiny `entr` / `watchexec`), on uring.watch.
--
--   lua5.4 examples/watch.lua [--dir D] [--seconds S] [--quiet MS] -- command...
--
-- Watches D (default: the current directory) and every directory below it
-- (new ones too: opts.recursive), runs the command once, then again after
-- each burst of changes: events are gathered until none has come for MS
-- milliseconds (default 100), so saving ten files runs it once.  The
-- inotify events are read through the ring like any other I/O: the
-- command's output is read by another task meanwhile.  Stops after S
-- seconds (default 30), then prints how many events came and how many
-- runs they caused.
--
-- Try it:  lua5.4 examples/watch.lua --dir lua -- make -s all
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local USAGE = "usage: lua5.4 examples/watch.lua [--dir D] [--seconds S] [--quiet MS] -- command...\n"

local function usage(msg)
  io.stderr:write("watch: ", msg, "\n", USAGE)
  os.exit(2)
end

local dir, seconds, quiet, command = ".", 30, 0.1, nil
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--dir" then
      dir = arg[i + 1] or usage("--dir needs a directory")
      i = i + 2
    elseif a == "--seconds" or a == "--quiet" then
      local v = tonumber(arg[i + 1])
      if not v or v <= 0 then usage(a .. " needs a positive number") end
      if a == "--seconds" then seconds = v else quiet = v / 1000 end
      i = i + 2
    elseif a == "--" then
      command = table.concat(arg, " ", i + 1)
      break
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      os.exit(0)
    else
      usage("unexpected argument '" .. a .. "'")
    end
  end
end
if not command or command == "" then usage("no command given") end

local function runcmd(why)
  io.stdout:write(("[watch] %s: %s\n"):format(why, command))
  io.stdout:flush()
  local p = assert(uring.popen(command .. " 2>&1", "r"))
  io.stdout:write(p:read("a"))
  local ok, how, code = p:close()
  io.stdout:write(("[watch] %s\n"):format(ok and "ok" or ("failed: " .. tostring(how) .. " " .. tostring(code))))
  io.stdout:flush()
end

local events, runs = 0, 0
uring.run(function()
  local w, msg = uring.watch(dir, "create,modify,delete,move_from,move_to,attrib", { recursive = true })
  if not w then usage(msg) end
  local watcher = uring.spawn(function()
    runcmd("start")
    runs = 1
    while true do
      local ev = assert(w:read())               -- waits in the ring
      events = events + 1
      local first = ev.event .. " " .. (ev.name or dir)
      -- the rest of the burst: whatever comes within `quiet` of the last
      local more = 0
      while true do
        local e = uring.timeout(quiet, w.read, w)
        if not e then break end
        more = more + 1
      end
      events = events + more
      runs = runs + 1
      runcmd(more > 0 and ("%s and %d more"):format(first, more) or first)
    end
  end)
  uring.sleep(seconds)
  watcher:cancel()
  watcher:join()
  w:close()
end)
io.stdout:write(("watch: %d events, %d runs in %g s\n"):format(events, runs, seconds))
