-- spec/adversarial/common.lua: what every adversarial case checks.
-- A case runs its body, then asserts that nothing leaked: the process's
-- open fds are the ones it had before, no request is in flight, no task
-- is alive and the request pool did not grow past what the body needed.
local uring = require "uring"
local helpers = require "helpers"
local assert = require "luassert"

local M = { helpers = helpers }

M.run = helpers.runner(20)   -- uring.run with a 20 s watchdog

-- the text of the error fn(...) raises; fails when it does not raise
function M.errmsg(fn, ...)
  local ok, e = pcall(fn, ...)
  assert(not ok, "expected an error, got success")
  return tostring(e)
end

-- fn(...) raises an error containing every plain text in texts
function M.raises(texts, fn, ...)
  local e = M.errmsg(fn, ...)
  if type(texts) == "string" then texts = { texts } end
  for _, text in ipairs(texts) do
    assert(e:find(text, 1, true),
      ("expected an error containing %q, got %q"):format(text, e))
  end
  return e
end

-- a fail triple: nil, a message matching msg, errno among errnos
function M.fails(msg, errnos, a, b, c)
  assert(a == nil, "expected a failure, got " .. tostring(a))
  assert(type(b) == "string", "expected a message, got " .. tostring(b))
  if msg then
    assert(b:find(msg), ("message %q does not match %q"):format(b, msg))
  end
  if type(errnos) == "number" then errnos = { errnos } end
  local found = false
  for _, e in ipairs(errnos) do found = found or e == c end
  assert(found, ("errno %s not among the expected (%s); message %q"):format(
    tostring(c), table.concat(errnos, ", "), b))
  return b, c
end

-- The fd listing, with " (deleted)" dropped: a file deleted by someone
-- else meanwhile (another test on this machine) is not a leak of ours.
function M.fds()
  return (helpers.fds():gsub(" %(deleted%)", ""))
end

-- Nothing left behind: the fd listing is back to `before`, no request
-- in flight, no task alive, nothing queued.
function M.settled(before)
  uring.features()          -- the loop's own ring is always up when listing
  local s = uring.stats()
  assert.equal(0, s.inflight, "requests still in flight")
  assert.equal(0, s.tasks, "tasks still alive")
  assert.equal(0, s.ready, "tasks still queued")
  if before then assert.equal(before, M.fds(), "fds leaked") end
end

-- it() whose body is followed by the leak checks.  With opts.lookups, the
-- body cancelled name lookups: their helper threads finish on their own
-- time (csrc/dns.c) and only then close their eventfd and resolver
-- socket, so the fds are given up to 10 s to come back.
function M.clean(body, opts)
  return function()
    uring.features()        -- set the loop's ring up: it lives on, not a leak
    local before = M.fds()
    body()
    if opts and opts.lookups then
      local t0 = uring.now()
      while M.fds() ~= before and uring.now() - t0 < 10 do
        uring.run(function() uring.sleep(0.05) end)
      end
    end
    M.settled(before)
  end
end

-- Run body with the loop's ring set to `entries` (whatever URING_TEST_RING
-- says), then put the size back.
function M.with_ring(entries, body)
  local saved = uring.stats().entries
  uring.configure { entries = entries }
  local ok, err = pcall(body)
  uring.configure { entries = saved }
  assert(ok, err)
end

-- A connected TCP pair over loopback (inside a task): client, server side.
function M.pair()
  local srv = assert(uring.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local t = uring.spawn(function() return assert(srv:accept()) end)
  local c = assert(uring.connect("127.0.0.1", port))
  local _, s = t:join()
  srv:close()
  return c, s
end

-- Both ends of a FIFO as uring files (inside a task): a read on r waits
-- until something is written to w.  The FIFO's name is gone at once.
function M.pipe()
  local d = helpers.tmpdir()
  assert(os.execute("mkfifo '" .. d .. "/p'"))
  local r = assert(uring.open(d .. "/p", "r+"))
  local w = assert(uring.open(d .. "/p", "w"))
  w:setvbuf("no")
  helpers.rmrf(d)
  return r, w
end

-- Run a Lua chunk in a child lua5.4 (same module paths and, under
-- `make asan`, the same sanitizer preload): output, exit status.
function M.child(code, prefix)
  local dir = helpers.tmpdir()
  local path = dir .. "/child.lua"
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local out, status = helpers.sh("timeout 30 " .. (prefix or "")
    .. helpers.lua_cmd() .. " " .. path)
  helpers.rmrf(dir)
  return out, status
end

-- The build directory of this run (build/, or build-asan/ under make asan).
function M.build_dir()
  local cpath = os.getenv("URING_CPATH") or "./build/?.so"
  return (cpath:match("^([^;]*)/%?%.so")) or "./build"
end

-- spec/helpers/testposix.c: fork, close, a signal handler (EINTR).
function M.posix()
  local path = M.build_dir() .. "/testposix.so"
  local open = assert(package.loadlib(path, "luaopen_testposix"),
    path .. " is missing: run make")
  return open()
end

-- Resident set size of this process, in KiB.
function M.rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

return M
