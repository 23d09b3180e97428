--- spec/soak.lua: the HTTP and echo examples under load for a bounded time.
--
--   lua5.4 spec/soak.lua [--seconds N]          (make soak SOAK_SECONDS=N)
--
-- Starts examples/http_hello.lua and examples/echo_server.lua on port 0,
-- each bounded by its own --seconds so it stops by itself, and loads them
-- at the same time for N seconds (default 60):
--   - wrk keep-alive on the HTTP server (-c 50);
--   - wrk with "Connection: close" (a new connection per request: churn);
--   - an echo client (this file, --echo-client): 40 connections, each
--     sending batches of lines and checking every echo byte for byte,
--     reconnecting after every 200 lines.
-- A warm-up of a few seconds with the same clients comes first.  Printed
-- for each server: requests (or lines) served, errors, RSS after the
-- warm-up and at the end of the load, and open fds before the load and
-- after it stopped (from /proc/PID).  Fails (exit 1) on any error
-- (wrk's non-2xx responses and socket errors, a wrong or missing echo),
-- RSS growth of 2 MiB or more, or fds not back to their baseline.
local LUA = "lua5.4"

local function usage()
  io.stderr:write("usage: lua5.4 spec/soak.lua [--seconds N]\n")
  os.exit(2)
end

--------------------------------------------------------- the echo client
if arg[1] == "--echo-client" then
  local cp = os.getenv("URING_CPATH") or "./build/?.so"
  package.cpath = cp .. ";" .. package.cpath
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  local uring = require "uring"
  local port, secs, conns = tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
  local lines, errors, connects, first_error = 0, 0, 0, nil
  local function fail(msg)
    errors = errors + 1
    first_error = first_error or msg
  end
  uring.run(function()
    local deadline = uring.now() + secs
    local tasks = {}
    for c = 1, conns do
      tasks[c] = uring.spawn(function()
        local round = 0
        while uring.now() < deadline do
          local s, err = uring.connect("127.0.0.1", port)
          if not s then
            fail("connect: " .. tostring(err))
            uring.sleep(0.05)
          else
            connects = connects + 1
            for _ = 1, 20 do                     -- 20 batches of 10 lines
              round = round + 1
              local batch = {}
              for i = 1, 10 do
                -- lengths vary so lines straddle the server's reads
                batch[i] = ("c%d r%d l%d %s"):format(c, round, i, ("x"):rep((round * 7 + i * 13) % 300))
              end
              local ok, serr = s:send(table.concat(batch, "\n") .. "\n")
              if not ok then fail("send: " .. tostring(serr)); break end
              for i = 1, 10 do
                local got, rerr = s:receive("*l")
                if got ~= batch[i] then
                  fail(("echo %q, want %q (%s)"):format(tostring(got), batch[i], tostring(rerr)))
                  break
                end
                lines = lines + 1
              end
              if uring.now() >= deadline then break end
            end
            s:close()
          end
        end
      end)
    end
    for _, t in ipairs(tasks) do
      local ok, err = t:join()
      if not ok then fail("task: " .. tostring(err)) end
    end
  end)
  print(("echo-client lines=%d connections=%d errors=%d%s"):format(lines, connects, errors,
    first_error and (" first=" .. first_error) or ""))
  os.exit(errors == 0 and 0 or 1)
end

--------------------------------------------------------------- the soak
local seconds = 60
do
  local i = 1
  while i <= #arg do
    if arg[i] == "--seconds" then
      seconds = tonumber(arg[i + 1]) or usage()
      i = i + 2
    else usage() end
  end
end
local WARMUP = math.min(5, math.max(1, seconds // 10))

local function readall(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function sleep(s) os.execute("sleep " .. s) end

local function rss_kib(pid)
  return tonumber(readall("/proc/" .. pid .. "/status"):match("VmRSS:%s*(%d+)")) or -1
end

local function fd_count(pid)
  local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

-- a server: its lua5.4 process (exec'd, so the pid is the server's own)
local function start(script, secs)
  local errfile = os.tmpname()
  local p = assert(io.popen(("sh -c 'echo $$; exec %s examples/%s 0 --seconds %d' 2>%s")
    :format(LUA, script, secs, errfile)))
  local srv = { p = p, errfile = errfile, name = script }
  srv.pid = p:read("l")
  local first = p:read("l") or ""
  srv.port = tonumber(first:match("listening on 127%.0%.0%.1:(%d+)"))
  if not srv.port then
    error(script .. " did not start: " .. first .. "\n" .. readall(errfile))
  end
  return srv
end

local function finish(srv)
  local out = srv.p:read("a")
  local ok, _, code = srv.p:close()
  local err = readall(srv.errfile)
  os.remove(srv.errfile)
  return out, ok, code, err
end

-- the load: every client at once, for secs; returns their results
local function load(http, echo, secs)
  local url = ("http://127.0.0.1:%d/"):format(http.port)
  local keep = io.popen(("env -u LD_PRELOAD wrk -t1 -c50 -d%ds %s 2>&1"):format(secs, url))
  local churn = io.popen(("env -u LD_PRELOAD wrk -t1 -c10 -d%ds -H 'Connection: close' %s 2>&1")
    :format(secs, url))
  local echoc = io.popen(("%s spec/soak.lua --echo-client %d %d 40 2>&1"):format(LUA, echo.port, secs))
  local res = { keep = keep:read("a"), churn = churn:read("a"), echo = echoc:read("a") }
  keep:close(); churn:close()
  local eok = echoc:close()
  res.echo_ok = eok
  return res
end

-- wrk's figures: requests, and errors (non-2xx plus every socket error)
local function wrk_figures(out)
  local req = tonumber(out:match("(%d+) requests in")) or -1
  local errs = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)")) or 0
  local c, r, w, t = out:match("Socket errors: connect (%d+), read (%d+), write (%d+), timeout (%d+)")
  if c then errs = errs + c + r + w + t end
  if req < 0 then errs = errs + 1 end
  return req, errs
end

local total = WARMUP + seconds + 15
io.write(("soak: %d s of load after a %d s warm-up (servers stop by themselves after %d s)\n")
  :format(seconds, WARMUP, total))
io.flush()
local http = start("http_hello.lua", total)
local echo = start("echo_server.lua", total)
sleep(0.3)
local fds0 = { http = fd_count(http.pid), echo = fd_count(echo.pid) }

local warm = load(http, echo, WARMUP)
local rss1 = { http = rss_kib(http.pid), echo = rss_kib(echo.pid) }
local main = load(http, echo, seconds)
local rss2 = { http = rss_kib(http.pid), echo = rss_kib(echo.pid) }

-- after the load: connections close; fds must come back to the baseline
local fds1
for _ = 1, 50 do
  sleep(0.2)
  fds1 = { http = fd_count(http.pid), echo = fd_count(echo.pid) }
  if fds1.http == fds0.http and fds1.echo == fds0.echo then break end
end

local failures = {}
local function check(cond, msg) if not cond then failures[#failures + 1] = msg end end

local kreq, kerr = wrk_figures(main.keep)
local creq, cerr = wrk_figures(main.churn)
local wkreq, wkerr = wrk_figures(warm.keep)
local wcreq, wcerr = wrk_figures(warm.churn)
local elines = tonumber(main.echo:match("lines=(%d+)")) or -1
local econns = tonumber(main.echo:match("connections=(%d+)")) or -1
local eerr = tonumber(main.echo:match("errors=(%d+)")) or 1
local welines = tonumber(warm.echo:match("lines=(%d+)")) or -1
local weerr = tonumber(warm.echo:match("errors=(%d+)")) or 1

check(kerr == 0 and wkerr == 0, "wrk keep-alive errors: " .. (kerr + wkerr) .. "\n" .. main.keep)
check(cerr == 0 and wcerr == 0, "wrk churn errors: " .. (cerr + wcerr) .. "\n" .. main.churn)
check(kreq > 0 and creq > 0, "wrk served nothing")
check(eerr == 0 and weerr == 0 and main.echo_ok and warm.echo_ok, "echo errors:\n" .. main.echo .. warm.echo)
check(elines > 0, "echo served nothing")
for _, k in ipairs { "http", "echo" } do
  check(rss2[k] - rss1[k] < 2048, ("%s RSS grew by %d KiB (limit 2048)"):format(k, rss2[k] - rss1[k]))
  check(fds1[k] == fds0[k], ("%s fds %d after the load, %d before"):format(k, fds1[k], fds0[k]))
end

io.write(("http_hello:  %d requests served (keep-alive %d, churn %d new connections), "
  .. "%d errors (warm-up: %d requests, %d errors)\n"):format(kreq + creq, kreq, creq,
  kerr + cerr, wkreq + wcreq, wkerr + wcerr))
io.write(("             RSS %d KiB after warm-up, %d KiB at the end (%+d KiB); fds %d before, %d after\n")
  :format(rss1.http, rss2.http, rss2.http - rss1.http, fds0.http, fds1.http))
io.write(("echo_server: %d lines echoed and checked on %d connections, %d errors "
  .. "(warm-up: %d lines, %d errors)\n"):format(elines, econns, eerr, welines, weerr))
io.write(("             RSS %d KiB after warm-up, %d KiB at the end (%+d KiB); fds %d before, %d after\n")
  :format(rss1.echo, rss2.echo, rss2.echo - rss1.echo, fds0.echo, fds1.echo))
io.flush()

-- the servers stop by themselves at their deadline; their summaries
for _, srv in ipairs { http, echo } do
  local out, ok, code, err = finish(srv)
  io.write("  ", (out:gsub("\n$", "")), "\n")
  check(ok, ("%s exited with %s\n%s"):format(srv.name, tostring(code), err))
end

if #failures > 0 then
  io.write("soak FAILED:\n  ", table.concat(failures, "\n  "), "\n")
  os.exit(1)
end
io.write("soak: ok\n")
