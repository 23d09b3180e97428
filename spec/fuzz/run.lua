--- spec/fuzz/run.lua: run random lua-uring programs until time is up.
--
--   lua5.4 spec/fuzz/run.lua [--seconds N] [--seed S] [--cpath PATTERN]
--                            [--timeout SECS] [--keep DIR]
--
-- Each program (spec/fuzz/program.lua, seeds S, S+1, ...) runs in a fresh
-- lua5.4 process, under ASan+UBSan when --cpath names the build-asan core
-- (as `make fuzz` does): libasan and libubsan are preloaded into the child
-- only, and every sanitizer finding aborts it.  A program that exits
-- non-zero (a crash, a sanitizer report), reports a leaked fd or request
-- (exit 3), or runs past --timeout (a hang) is a finding: its seed and the
-- tail of its output are printed and its full log is kept.
--
-- Prints one summary line, "fuzz: P programs, C API calls, T s, F findings",
-- then what the tracked objects did (spec/fuzz/tracked.lua: closes with
-- an op queued, closed numbers retaken), and exits 1 if there was any
-- finding.  `make fuzz SECONDS=N [SEED=s]`.
local seconds, seed, cpath, watchdog, keep = 30, nil, "./build/?.so", 30, nil
local i = 1
while i <= #arg do
  local a, v = arg[i], arg[i + 1]
  if a == "--seconds" then seconds = assert(tonumber(v), "--seconds N")
  elseif a == "--seed" then seed = assert(math.tointeger(tonumber(v)), "--seed S")
  elseif a == "--cpath" then cpath = v
  elseif a == "--timeout" then watchdog = assert(tonumber(v), "--timeout SECS")
  elseif a == "--keep" then keep = v
  else
    io.stderr:write("usage: lua5.4 spec/fuzz/run.lua [--seconds N] [--seed S] ",
      "[--cpath PATTERN] [--timeout SECS] [--keep DIR]\n")
    os.exit(2)
  end
  i = i + 2
end
seed = seed or os.time()

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function monotonic()
  local f = io.open("/proc/uptime")
  local t = f:read("n")
  f:close()
  return t
end

-- the sanitizer runtime goes into the child only (it must come first in
-- the process; lua5.4 itself is not instrumented)
local preload = ""
if cpath:match("asan") then
  local cc = os.getenv("CC") or "cc"
  preload = ("LD_PRELOAD='%s %s' "):format(sh(cc .. " -print-file-name=libasan.so"),
    sh(cc .. " -print-file-name=libubsan.so"))
    .. "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 "
    .. "LSAN_OPTIONS=exitcode=23 "
    .. "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "
end

local work = sh("mktemp -d /tmp/uring-fuzz.XXXXXX")
-- A program does whatever its random calls say (unlink, rename, mkdir,
-- open for writing...): as root, it runs as nobody, so no path outside
-- its scratch directory can be hurt whatever a generator slip names.
local drop = ""
if sh("id -u") == "0" and os.execute("command -v setpriv >/dev/null 2>&1") then
  drop = "setpriv --reuid=65534 --regid=65534 --clear-groups "
  os.execute("chmod 777 '" .. work .. "'")
end
local root = sh("pwd")
local function abs(path) return path:sub(1, 1) == "/" and path or root .. "/" .. path:gsub("^%./", "") end
keep = keep or "/tmp"

local function tail(s, n)
  local lines = {}
  for l in s:gmatch("[^\n]*") do lines[#lines + 1] = l end
  local from = math.max(1, #lines - n)
  return table.concat(lines, "\n", from)
end

local programs, calls, findings = 0, 0, 0
-- tracked objects (spec/fuzz/tracked.lua): made, ops, closes with an op
-- queued, closed numbers a new fd took at once, ops that said "closed"
local tracked = { tracked = 0, tops = 0, cq = 0, reused = 0, closed = 0, cq_closed = 0,
  cq_done = 0, cq_failed = 0, cq_raised = 0 }
local t0 = monotonic()
io.write(("fuzz: seeds from %d, %d s, core %s%s%s\n"):format(seed, seconds, cpath,
  preload ~= "" and " under ASan+UBSan" or "", drop ~= "" and ", as nobody" or ""))
io.flush()
local s = seed
repeat
  local pdir = work .. "/" .. s
  local log = work .. "/" .. s .. ".log"
  os.execute("mkdir -p '" .. pdir .. "'")
  -- the program runs inside its scratch directory: a relative path made
  -- of a random value ("1", "-nan") lands there, not in the checkout
  os.execute("chmod 777 '" .. pdir .. "'")
  local cmd = ("cd '%s' && timeout -k 5 %d %senv %sURING_CPATH='%s' LUA_PATH='%s' "
    .. "lua5.4 '%s/spec/fuzz/program.lua' %d '%s' </dev/null >'%s' 2>&1"):format(pdir, watchdog,
    drop, preload, abs(cpath), root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;", root, s, pdir, log)
  local _, how, code = os.execute(cmd)
  local f = io.open(log)
  local out = f and f:read("a") or ""
  if f then f:close() end
  programs = programs + 1
  local n = out:match("@@fuzz calls=(%d+)")
  local what
  if how == "signal" then what = "killed by signal " .. code
  elseif code == 124 or code == 137 then what = ("hang: still running after %d s (watchdog)"):format(watchdog)
  elseif out:match("@@fuzz FINDING") then what = out:match("@@fuzz FINDING [^\n]*")
  elseif code == 3 then what = "finding"
  elseif code == 23 then what = "LeakSanitizer: memory leaked"
  elseif code ~= 0 then what = "exit status " .. code
  elseif not n then what = "ended without its final report"
  elseif out:match("ERROR: AddressSanitizer") or out:match("runtime error:") then
    what = "sanitizer report"
  end
  if n then calls = calls + tonumber(n) end
  for k, v in (out:match("@@fuzz calls=[^\n]*") or ""):gmatch("([%w_]+)=(%d+)") do
    if tracked[k] then tracked[k] = tracked[k] + tonumber(v) end
  end
  if what then
    findings = findings + 1
    local kept = ("%s/uring-fuzz-%d.log"):format(keep, s)
    os.execute(("cp '%s' '%s'"):format(log, kept))
    io.write(("FINDING seed=%d: %s\n  log: %s\n  again: make fuzz SECONDS=1 SEED=%d\n"
      .. "  program: lua5.4 spec/fuzz/program.lua %d DIR --print\n%s\n"):format(
      s, what, kept, s, s, tail((out:gsub("%[uring%][^\n]*\n", "")), 25)))
    io.flush()
  end
  os.execute("rm -rf '" .. pdir .. "' '" .. log .. "'")
  s = s + 1
until monotonic() - t0 >= seconds
os.execute("rm -rf '" .. work .. "'")
io.write(("fuzz: %d programs, %d API calls, %.0f s, %d findings (seeds %d..%d)\n"):format(
  programs, calls, monotonic() - t0, findings, seed, s - 1))
io.write(("fuzz: tracked: %d objects, %d ops (%d ended \"closed\"), %d closes with an op "
  .. "queued (the op: %d closed, %d done first, %d failed, %d raised), %d closed numbers "
  .. "retaken at once\n"):format(tracked.tracked, tracked.tops, tracked.closed, tracked.cq,
  tracked.cq_closed, tracked.cq_done, tracked.cq_failed, tracked.cq_raised, tracked.reused))
os.exit(findings == 0 and 0 or 1)
