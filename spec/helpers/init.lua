-- spec/helpers: the one module of test utilities every spec uses
-- (`local helpers = require "helpers"`).  A newcomer finds here:
--
--   running      runner(secs) -> run(fn [, secs])  uring.run with a watchdog
--   errors       errmsg(fn, ...)  raises(texts, fn, ...)  badarg(n, fname, msg)
--                fails(msg, errnos, ...)  (the nil, msg, errno tuple)
--   leaks        fds()  fd_count()  pipes()  settled(before)  clean(body [, opts])
--                leak_check(before_each, after_each)
--   sockets      listen([host [, opts]])  pair([host])  echo_server(srv, n)
--   files        tmpdir()  rmrf(path)  readall(path)  writeall(path, s)
--                exists(path)  pipe()  random_bytes(n)
--   processes    sh(cmd)  exec(cmd)  have(cmd)  shq(s)  lua_cmd()  child(code [, prefix])
--                build_dir()  posix()  pid()  rss_kib()  is_root()  under_valgrind()
--   test build   faulty(code [, env])  a child on build-asan's core, whose
--                fault hooks (spec/helpers/faults.c) the release build lacks
--
-- A test that cannot run on this machine (a file system without xattrs, a
-- kernel without an op) calls busted's `pending("reason")`: spec/run.lua
-- counts it as skipped and prints the reason.  A skip is a defect unless
-- the machine truly lacks the feature.
--
-- Specs that do I/O through the ring carry the busted tag #io in their
-- top-level describe: spec/run.lua runs every #io test again under other
-- ring setups (URING_TEST_RING=4, SQPOLL).  Socket specs also carry #net:
-- they run again with registered files and multishot receives
-- (URING_TEST_FIXED_FILES=8 URING_TEST_RECV_MULTISHOT=1).
local helpers = {}

--- This process's pid (the one /proc/self/stat names).
local pid
function helpers.pid()
  if not pid then
    local f = assert(io.open("/proc/self/stat"))
    pid = tostring(f:read("n"))
    f:close()
  end
  return pid
end

--- Open fds of this process, as a sorted "fd -> target" list (leak checks:
-- compare before and after).  The listing is written to a file by a
-- child: a popen pipe of our own would be in it, both of its ends for a
-- moment, and it would hide pipe leaks if pipes were left out.
function helpers.fds()
  -- io handles a spec forgot to close are closed by the collector at
  -- unpredictable times: collect first so they cannot flicker the count
  collectgarbage(); collectgarbage()
  local tmp = os.tmpname()
  os.execute("cd /proc/" .. helpers.pid() .. "/fd && for f in *; do "
    .. "echo \"$f -> $(readlink $f)\"; done > " .. tmp .. " 2>/dev/null")
  local list = {}
  for l in io.lines(tmp) do
    if not l:match("-> $") then list[#list + 1] = l end
  end
  os.remove(tmp)
  table.sort(list)
  return table.concat(list, "\n")
end

--- How many of this process's fds are pipes.
function helpers.pipes()
  return select(2, helpers.fds():gsub("pipe:", ""))
end

function helpers.fd_count()
  local n = 0
  for _ in helpers.fds():gmatch("[^\n]+") do n = n + 1 end
  return n
end

--- A uring.run with a watchdog: runner(secs) returns run(fn [, secs]),
-- where a test that hangs past its limit fails ("test timed out") instead
-- of hanging the suite (the main task's failure cancels every other task).
-- Under `make valgrind` the limit is 4 times longer: it catches hangs, and
-- valgrind runs a sweep of thousands of calls 20-50 times slower.
function helpers.runner(default_secs)
  local uring = require "uring"
  local scale = os.getenv("URING_VALGRIND") == "1" and 4 or 1
  return function(fn, secs)
    return uring.run(function()
      local res = table.pack(uring.timeout((secs or default_secs) * scale, function()
        return true, fn()
      end))
      if res[1] == nil then error("test timed out: " .. tostring(res[2]), 0) end
      return table.unpack(res, 2, res.n)
    end)
  end
end

-- --- errors ------------------------------------------------------------

--- The text of the error fn(...) raises; fails when it does not raise.
function helpers.errmsg(fn, ...)
  local ok, e = pcall(fn, ...)
  assert(not ok, "expected an error, got success")
  return tostring(e)
end

--- fn(...) raises an error containing every plain text in texts (a
-- string or a list); returns the message.
function helpers.raises(texts, fn, ...)
  local e = helpers.errmsg(fn, ...)
  if type(texts) == "string" then texts = { texts } end
  for _, text in ipairs(texts) do
    assert(e:find(text, 1, true),
      ("expected an error containing %q, got %q"):format(text, e))
  end
  return e
end

--- A pattern for "bad argument #n to 'fname' (msg)", msg plain (nil: any
-- message).  Lua names a core function 'open', 'uring.open' or
-- 'uring.core.open' depending on where it finds it: any dotted prefix
-- matches.
function helpers.badarg(n, fname, msg)
  local p = "bad argument #" .. n .. " to '[%w%._]*" .. fname .. "' %("
  if msg == nil then return p end
  return p .. msg:gsub("%p", "%%%0") .. "%)"
end

--- A fail tuple (DESIGN.md): nil, a message equal to msg or matching it
-- as a pattern (nil: any), an errno among errnos (a number or a list).
-- Returns the message, the errno and whatever came after the tuple (a
-- failed write's count of bytes that went out) for the caller to check.
function helpers.fails(msg, errnos, a, b, c, ...)
  assert(a == nil, "expected a failure, got " .. tostring(a))
  assert(type(b) == "string", "expected a message, got " .. tostring(b))
  if msg and b ~= msg then
    assert(b:find(msg), ("message %q does not match %q"):format(b, msg))
  end
  if type(errnos) == "number" then errnos = { errnos } end
  local found = false
  for _, e in ipairs(errnos) do found = found or e == c end
  assert(found, ("errno %s not among the expected (%s); message %q"):format(
    tostring(c), table.concat(errnos, ", "), b))
  return b, c, ...
end

-- --- leaks -------------------------------------------------------------

-- The fd listing for the leak checks of settled and clean: a file deleted
-- by someone else meanwhile (another test on this machine) loses its
-- " (deleted)", as it is not a leak of ours.
local function fds_kept()
  return (helpers.fds():gsub(" %(deleted%)", ""))
end

--- Nothing left behind: the fd listing is back to `before` (if given), no
-- request in flight, no task alive, nothing queued.
function helpers.settled(before)
  local uring = require "uring"
  uring.features()          -- the loop's own ring is always up when listing
  local s = uring.stats()
  assert(s.inflight == 0, "requests still in flight: " .. s.inflight)
  assert(s.tasks == 0, "tasks still alive: " .. s.tasks)
  assert(s.ready == 0, "tasks still queued: " .. s.ready)
  if before then
    local now = fds_kept()
    assert(before == now, "fds leaked:\nbefore:\n" .. before .. "\nafter:\n" .. now)
  end
end

--- An it() body followed by the leak checks.  With opts.lookups, the body
-- cancelled name lookups: their helper threads finish on their own time
-- (csrc/dns.c) and only then close their eventfd and resolver socket, so
-- the fds are given up to 10 s to come back.
function helpers.clean(body, opts)
  local uring = require "uring"
  return function()
    uring.features()        -- set the loop's ring up: it lives on, not a leak
    local before = fds_kept()
    body()
    if opts and opts.lookups then
      local t0 = uring.now()
      while fds_kept() ~= before and uring.now() - t0 < 10 do
        uring.run(function() uring.sleep(0.05) end)
      end
    end
    helpers.settled(before)
  end
end

--- Every test of the enclosing describe ends with nothing in flight, no
-- live task and no new descriptor (the baseline is taken after a warm-up
-- run, so the ring's own fd is in it).  Pass busted's before_each and
-- after_each: `helpers.leak_check(before_each, after_each)`.
function helpers.leak_check(before_each, after_each)
  local uring = require "uring"
  local fds
  before_each(function()
    uring.run(function() end)
    fds = helpers.fds()
  end)
  after_each(function()
    local la = require "luassert"   -- busted's assert is not global here
    collectgarbage(); collectgarbage()
    la.equal(0, uring.stats().inflight)
    la.equal(0, uring.stats().tasks)
    la.equal(fds, helpers.fds())
  end)
end

--- Run body with the loop's ring set to `entries` (whatever
-- URING_TEST_RING says), then put the size back.
function helpers.with_ring(entries, body)
  local uring = require "uring"
  local saved = uring.stats().entries
  uring.configure { entries = entries }
  local ok, err = pcall(body)
  uring.configure { entries = saved }
  assert(ok, err)
end

-- --- sockets (inside a task) ------------------------------------------

--- A listener on host (default 127.0.0.1), port 0: server, port.  opts
-- as uring.listen's (first_recv, ...).
function helpers.listen(host, opts)
  local uring = require "uring"
  local srv = assert(uring.listen(host or "127.0.0.1", 0, opts))
  local _, port = srv:getsockname()
  assert(math.type(port) == "integer" and port > 0, "no port")
  return srv, port
end

--- A connected pair over loopback: client, server side.  The listener is
-- closed before returning (its multishot accept is cancelled).
function helpers.pair(host)
  local uring = require "uring"
  local srv, port = helpers.listen(host)
  local t = uring.spawn(function() return assert(srv:accept()) end)
  local c = assert(uring.connect(host or "127.0.0.1", port))
  local ok, s = t:join()
  assert(ok, s)
  srv:close()
  return c, s
end

--- Serve n connections: each echoes lines until the peer closes; then the
-- listener closes.  Returns the server task (joins every handler).
function helpers.echo_server(srv, n)
  local uring = require "uring"
  return uring.spawn(function()
    local handlers = {}
    for i = 1, n do
      local c = assert(srv:accept())
      handlers[i] = uring.spawn(function()
        while true do
          local l = c:receive("*l")
          if not l then break end
          assert(c:send(l .. "\n"))
        end
        c:close()
      end)
    end
    srv:close()
    for i = 1, n do assert(handlers[i]:join()) end
    return n
  end)
end

-- --- files --------------------------------------------------------------

--- A fresh temp directory, removed by the caller with helpers.rmrf.
function helpers.tmpdir()
  local p = io.popen("mktemp -d /tmp/uring-spec.XXXXXX")
  local d = p:read("l")
  p:close()
  return d
end

function helpers.rmrf(path)
  os.execute("rm -rf '" .. path .. "'")
end

--- A whole file's bytes; "" when it cannot be read (a log not written).
function helpers.readall(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

function helpers.writeall(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

function helpers.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

function helpers.random_bytes(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local s = f:read(n)
  f:close()
  return s
end

--- Both ends of a FIFO as uring files (inside a task): a read on r waits
-- until something is written to w.  The FIFO's name is gone at once.
function helpers.pipe()
  local uring = require "uring"
  local d = helpers.tmpdir()
  assert(os.execute("mkfifo '" .. d .. "/p'"))
  local r = assert(uring.open(d .. "/p", "r+"))
  local w = assert(uring.open(d .. "/p", "w"))
  w:setvbuf("no")
  helpers.rmrf(d)
  return r, w
end

-- --- processes ----------------------------------------------------------

--- Run a shell command; return its stdout and stderr, exit status, and
-- whether it succeeded.
function helpers.sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, code, ok
end

--- Run a shell command with its stderr kept apart: stdout, stderr, exit
-- status.
function helpers.exec(cmd)
  local errfile = os.tmpname()
  local p = assert(io.popen(cmd .. " 2>" .. errfile, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = helpers.readall(errfile)
  os.remove(errfile)
  return out, err, code
end

--- Whether a command is on PATH.
function helpers.have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

--- s quoted for sh.
function helpers.shq(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

function helpers.is_root()
  local p = io.popen("id -u")
  local id = p:read("l")
  p:close()
  return id == "0"
end

--- The lua5.4 command a child script should use, with our paths.
function helpers.lua_cmd()
  local cpath = os.getenv("URING_CPATH") or "./build/?.so"
  return ("env LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='%s;;' lua5.4"):format(cpath)
end

--- Run a Lua chunk in a child lua5.4 (same module paths and, under
-- `make asan`, the same sanitizer preload): output, exit status.
function helpers.child(code, prefix)
  local dir = helpers.tmpdir()
  local path = dir .. "/child.lua"
  helpers.writeall(path, code)
  -- (a hang's bound; valgrind, which the prefix may be, runs 20-50x slower)
  local secs = os.getenv("URING_VALGRIND") == "1" and 120 or 30
  local out, status = helpers.sh("timeout " .. secs .. " " .. (prefix or "")
    .. helpers.lua_cmd() .. " " .. path)
  helpers.rmrf(dir)
  return out, status
end

--- Run a Lua chunk in a child lua5.4 on the test build's core
-- (build-asan/: ASan+UBSan, and the fault hooks of spec/helpers/faults.c,
-- require "uring.faults", which only a -DUR_FAULTS build has), with
-- `env` ("VAR=value ...") set for it.  The chunk may require "helpers".
-- The ring setup of the matrix (URING_TEST_*) is passed on.  A sanitizer
-- finding, a leak at exit included, ends the child with a report and a
-- non-zero status.  Returns its output (stdout and stderr) and status.
local sanitizers
function helpers.faulty(code, env)
  local probe = io.open("build-asan/uring/core.so")
  assert(probe, "build-asan/uring/core.so is missing: make asan-build (make test builds it)")
  probe:close()
  if not sanitizers then
    local function lib(name)
      local p = io.popen("cc -print-file-name=" .. name)
      local path = p:read("l")
      p:close()
      return path
    end
    sanitizers = lib("libasan.so") .. " " .. lib("libubsan.so")
  end
  local dir = helpers.tmpdir()
  local path = dir .. "/child.lua"
  -- the sanitizers are for the child itself: the commands it runs
  -- (mktemp, sh) would inherit them and abort at exit on their own leaks
  helpers.writeall(path, 'require("helpers").posix().setenv("LD_PRELOAD", nil) ' .. code)
  local out, status = helpers.sh(("env LD_PRELOAD=%s "
    .. "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 "
    .. "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "
    .. "LUA_PATH='./lua/?.lua;./lua/?/init.lua;./spec/?.lua;./spec/?/init.lua;;' "
    .. "LUA_CPATH='build-asan/?.so;;' %s timeout -k 2 60 lua5.4 %s")
    :format(helpers.shq(sanitizers), env or "", path))
  helpers.rmrf(dir)
  return out, status
end

--- The build directory of this run (build/, or build-asan/ under make asan).
function helpers.build_dir()
  local cpath = os.getenv("URING_CPATH") or "./build/?.so"
  return (cpath:match("^([^;]*)/%?%.so")) or "./build"
end

--- spec/helpers/testposix.c: fork, close, a signal handler (EINTR).
function helpers.posix()
  local path = helpers.build_dir() .. "/testposix.so"
  local open = assert(package.loadlib(path, "luaopen_testposix"),
    path .. " is missing: run make")
  return open()
end

--- Whether this process runs under valgrind (`make valgrind` sets
-- URING_VALGRIND=1; a valgrind run by hand maps its vgpreload library).
function helpers.under_valgrind()
  return os.getenv("URING_VALGRIND") == "1"
    or (helpers.readall("/proc/self/maps"):find("vgpreload", 1, true)) ~= nil
end

--- Resident set size of this process, in KiB.
function helpers.rss_kib()
  local s = helpers.readall("/proc/self/status")
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

--- Run Lua source under build/oomhost (build-asan/oomhost when the suite
-- runs the asan core): a state whose allocator fails the fail_at'th
-- allocation made after the script calls oom.arm() (spec/helpers/oomhost.c).
-- With core = true, build-asan/oomhost (its core is built with UR_FAULTS)
-- and require("uring.faults")(oom.core_fail_at) in the script fails the core's own
-- fail_at'th allocation instead.  Returns its stdout and stderr, and its
-- exit status; a hang is cut at 10 s (status 124).
function helpers.oom(source, fail_at, core)
  local asan = core or (os.getenv("URING_CPATH") or ""):match("asan")
  local host = asan and "build-asan/oomhost" or "build/oomhost"
  local probe = io.open(host)
  assert(probe, host .. " is missing: make all asan-build (make test builds both)")
  probe:close()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  local out, code = helpers.sh(("env -u LD_PRELOAD ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "
    .. "timeout -k 2 10 %s %s %d %s"):format(host, core and "--core-fail-at" or "--fail-at",
    fail_at, path))
  os.remove(path)
  return out, code
end

return helpers
