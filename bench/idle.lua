--- bench/idle.lua: what 10,000 idle connections cost a uring server.
--
--   lua5.4 bench/idle.lua           10,000 connections (asserts < 64 MiB)
--   lua5.4 bench/idle.lua quick     1,000 connections (also BENCH_QUICK=1)
--   lua5.4 bench/idle.lua N         N connections
--
-- Three processes: this driver; the server, examples/echo_server.lua
-- (one task per connection, each parked in sock:receive, i.e. one RECV
-- SQE in the ring with no buffer of its own: the kernel picks a provided
-- buffer only when bytes arrive); and a client, this script again with
-- --client, which opens the N connections through uring.connect (256 at
-- a time) and holds them.  Both run under `ulimit -n` raised to fit.
--
-- The driver reads the server's VmRSS (/proc/PID/status) once it is
-- listening, and again once /proc/PID/fd shows all N connections accepted
-- and the server has settled; it prints both, the growth per connection,
-- and the client's own VmRSS as it reported it.  Then it ends the client;
-- the server sees N EOFs, has served its --max-conns and exits.
--
-- Exits non-zero if the server's VmRSS with the connections held is
-- 64 MiB or more (the bound is asserted in every mode).  Writes the ratio
-- line (64 MiB over the RSS) to $BENCH_RESULTS/idle.tsv (bench/results,
-- or build/bench/results when quick).
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path

local LUA = os.getenv("LUA") or "lua5.4"
local LIMIT_MIB = 64
local BATCH = 256            -- connects in flight at a time

-- --- the client: lua5.4 bench/idle.lua --client PORT N HOLD_SECONDS DONE_PATH
-- holds the connections until DONE_PATH exists (or HOLD_SECONDS pass)
if arg[1] == "--client" then
  local uring = require "uring"
  local port, n, hold = tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
  local done_path = arg[5]
  local socks = {}
  local t0 = uring.now()
  uring.run(function()
    local next_i = 0
    local function opener()
      while next_i < n do
        next_i = next_i + 1
        local i = next_i
        local s, msg = uring.connect("127.0.0.1", port)
        if not s then error("connect #" .. i .. ": " .. tostring(msg), 0) end
        socks[i] = s
      end
    end
    local tasks = {}
    for k = 1, math.min(BATCH, n) do tasks[k] = uring.spawn(opener) end
    for _, t in ipairs(tasks) do
      local ok, err = t:join()
      if not ok then error(err, 0) end
    end
    local rss = io.open("/proc/self/status"):read("a"):match("VmRSS:%s*(%d+)")
    io.stdout:write(("connected %d in %.2f s; client VmRSS %d kB\n")
      :format(#socks, uring.now() - t0, tonumber(rss)))
    io.stdout:flush()
    local until_t = uring.now() + hold
    while uring.now() < until_t and not uring.stat(done_path) do uring.sleep(0.05) end
    for _, s in ipairs(socks) do s:close() end
  end)
  return
end

-- --- the driver ---
local n = 10000
local quick = arg[1] == "quick" or (os.getenv("BENCH_QUICK") or "0") ~= "0"
if quick then n = 1000
elseif arg[1] then
  n = math.tointeger(tonumber(arg[1]))
  if not n or n < 1 then
    io.stderr:write("usage: lua5.4 bench/idle.lua [quick | N]\n")
    os.exit(2)
  end
end
local nofile = n + 1000      -- each process holds n sockets

local function vmrss(pid)   -- kB, or nil once the process is gone
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function sockets(pid)  -- the process's open sockets
  local p = io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null | grep -c socket:")
  local c = tonumber(p:read("a")) or 0
  p:close()
  return c
end

local function listening(port)   -- is anything listening on 127.0.0.1:port?
  local f = io.open("/proc/net/tcp")
  local s = f:read("a")
  f:close()
  return s:find((":%04X 00000000:0000 0A"):format(port)) ~= nil
end

local function sleep(s) os.execute("sleep " .. s) end

-- sh prints its pid, then execs the command under the raised fd limit
local function start(cmd)
  local p = assert(io.popen(("sh -c 'ulimit -n %d 2>/dev/null || ulimit -n "
    .. "$(ulimit -Hn); echo $$ && exec %s'"):format(nofile, cmd), "r"))
  local pid = p:read("l")
  if not pid or not pid:match("^%d+$") then
    error("could not start: " .. cmd, 0)
  end
  return p, pid
end

local done_path = os.tmpname()   -- created by tmpname: remove until done
os.remove(done_path)

local function kill(pid)
  if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
end

local server, spid, client, cpid
local ok, err = pcall(function()
  -- bounded by itself: it exits after n connections, or after 120 s
  server, spid = start(("%s examples/echo_server.lua 0 --max-conns %d --seconds 120")
    :format(LUA, n))
  local first = server:read("l") or ""
  local port = first:match("^listening on 127%.0%.0%.1:(%d+)$")
  if not port then error("server said: " .. first, 0) end
  sleep(0.2)
  local before = vmrss(spid)

  client, cpid = start(("%s bench/idle.lua --client %s %d 120 %s")
    :format(LUA, port, n, done_path))
  local said = client:read("l") or ""
  local ccount, csecs, crss = said:match("^connected (%d+) in ([%d.]+) s; client VmRSS (%d+) kB")
  if not ccount then error("client said: " .. said, 0) end

  -- wait until the server holds every connection, then let it settle
  -- (the server closes its listener once it has accepted n: --max-conns)
  local held, waited = 0, 0
  repeat
    held = sockets(spid)
    if listening(tonumber(port)) then held = held - 1 end
    if held >= n then break end
    sleep(0.1)
    waited = waited + 0.1
  until waited > 30
  if held < n then error(("server holds %d of %d connections"):format(held, n), 0) end
  sleep(0.5)
  local after = vmrss(spid)
  sleep(0.5)
  after = math.max(after, vmrss(spid))

  io.open(done_path, "w"):close()    -- the client lets go and exits
  client:close()
  client, cpid = nil, nil
  local summary = server:read("a")
  server:close()
  server = nil

  print(("idle: %d connections held (client connected them in %s s)"):format(n, csecs))
  print(("server VmRSS: before %.1f MiB, with %d idle connections %.1f MiB "
    .. "(+%.2f KiB per connection)"):format(before / 1024, n, after / 1024,
    (after - before) / n))
  print(("client VmRSS: %.1f MiB"):format(tonumber(crss) / 1024))
  io.write(summary)
  -- the ratio line for bench/report.lua: the bound over the RSS (> 1: met)
  local dir = os.getenv("BENCH_RESULTS") or (quick and "build/bench/results" or "bench/results")
  os.execute("mkdir -p " .. dir)
  local tsv = assert(io.open(dir .. "/idle.tsv", "w"))
  tsv:write(("idle %d conns: %d MiB / server RSS\t%.3f\t1\tserver VmRSS %.1f MiB with %d idle connections (%.1f before; +%.2f KiB each)\n")
    :format(n, LIMIT_MIB, LIMIT_MIB * 1024 / after, after / 1024, n, before / 1024, (after - before) / n))
  tsv:close()
  if after >= LIMIT_MIB * 1024 then
    error(("server VmRSS %.1f MiB is over the %d MiB bound"):format(after / 1024, LIMIT_MIB), 0)
  end
end)
-- nothing outlives the bench
os.remove(done_path)
kill(cpid)
if client then client:close() end
if server then kill(spid); server:close() end
if not ok then
  io.stderr:write("idle: ", tostring(err), "\n")
  os.exit(1)
end
