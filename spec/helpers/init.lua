-- spec/helpers: shared test utilities (fd counts, temp paths, child runs).
local helpers = {}

--- Open fds of this process, as a sorted "fd -> target" list (leak checks:
-- compare before and after; the popen pipe of the listing itself is left out).
function helpers.fds()
  -- io handles a spec forgot to close are closed by the collector at
  -- unpredictable times: collect first so they cannot flicker the count
  collectgarbage(); collectgarbage()
  local p = io.popen("cd /proc/" .. helpers.pid() .. "/fd && for f in *; do "
    .. "echo \"$f -> $(readlink $f)\"; done")
  local list = {}
  for l in p:lines() do
    if not l:match("pipe:") and not l:match("-> $") then list[#list + 1] = l end
  end
  p:close()
  table.sort(list)
  return table.concat(list, "\n")
end

function helpers.fd_count()
  local n = 0
  for _ in helpers.fds():gmatch("[^\n]+") do n = n + 1 end
  return n
end

local pid
function helpers.pid()
  if not pid then
    local f = io.open("/proc/self/stat")
    -- /proc/self is the reader; the parent pid of a sh -c is us
    f:close()
    local p = io.popen("echo $PPID")
    pid = p:read("l")
    p:close()
  end
  return pid
end

--- A uring.run with a watchdog: runner(secs) returns run(fn [, secs]),
-- where a test that hangs past its limit fails ("test timed out") instead
-- of hanging the suite (the main task's failure cancels every other task).
function helpers.runner(default_secs)
  local uring = require "uring"
  return function(fn, secs)
    return uring.run(function()
      local res = table.pack(uring.timeout(secs or default_secs, function()
        return true, fn()
      end))
      if res[1] == nil then error("test timed out: " .. tostring(res[2]), 0) end
      return table.unpack(res, 2, res.n)
    end)
  end
end

--- A fresh temp directory, removed by the caller with helpers.rmrf.
function helpers.tmpdir()
  local p = io.popen("mktemp -d /tmp/uring-spec.XXXXXX")
  local d = p:read("l")
  p:close()
  return d
end

--- A whole file's bytes; "" when it cannot be read (a log not written).
function helpers.readall(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

function helpers.rmrf(path)
  os.execute("rm -rf '" .. path .. "'")
end

--- Run a shell command; return its stdout, and exit status.
function helpers.sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, how, code = p:close()
  return out, code, ok
end

--- The lua5.4 command a child script should use, with our paths.
function helpers.lua_cmd()
  local cpath = os.getenv("URING_CPATH") or "./build/?.so"
  return ("env LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='%s;;' lua5.4"):format(cpath)
end

--- Run Lua source under build/oomhost (build-asan/oomhost when the suite
-- runs the asan core): a state whose allocator fails the fail_at'th
-- allocation made after the script calls oom.arm() (spec/helpers/oomhost.c).
-- With core = true, build-asan/oomhost (its core is built with UR_FAULTS)
-- and core._faults(oom.core_fail_at) in the script fails the core's own
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
