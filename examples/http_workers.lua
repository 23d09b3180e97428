--- examples/http_workers.lua: one HTTP/1.1 keep-alive server on every core.
--
--   lua5.4 examples/http_workers.lua [port] [--workers N] [--seconds S] [--spin K]
--
-- uring.workers forks N processes (default: one per CPU); each runs its
-- own ring and listens on the same port with SO_REUSEPORT, so the kernel
-- spreads new connections over them.  Each answers "Hello from worker I
-- (pid P)\n" (so a client can see who served it) and prints
--   listening on 127.0.0.1:PORT (worker I, pid P)
-- once it listens.  With port 0 (the default) the parent first asks the
-- kernel for a free port.  SIGINT or SIGTERM to the parent is forwarded to
-- every worker; each closes its listener and connections (<close>) and
-- prints its summary; the parent waits for all and prints its own.
-- --seconds S (default 30) stops each worker after S seconds.
-- --spin K makes every request first run K rounds of a busy Lua loop, a
-- stand-in for an application's handler: with it the workers, not the
-- load generator, are what runs out of CPU, so the gain from more cores
-- shows (bench/http.sh's "workers-cpu" workload).
--
-- Try it:  lua5.4 examples/http_workers.lua 8080 --workers 2 &
--          curl http://127.0.0.1:8080/ http://127.0.0.1:8080/
--          wrk -t1 -c100 -d3s http://127.0.0.1:8080/ ; kill %1
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"
local byte, find, lower = string.byte, string.find, string.lower

local USAGE = "usage: lua5.4 examples/http_workers.lua [port] [--workers N] [--seconds S] [--spin K]\n"
local function usage(msg)
  io.stderr:write("http_workers: ", msg, "\n", USAGE)
  os.exit(2)
end

local function ncpus()
  local p = io.popen("nproc 2>/dev/null")
  local n = p and tonumber(p:read("l"))
  if p then p:close() end
  return n or 1
end

local port, nworkers, seconds, spin = 0, nil, 30, 0
do
  local i, positional = 1, 0
  while i <= #arg do
    local a = arg[i]
    if a == "--workers" or a == "--seconds" or a == "--spin" then
      local v = tonumber(arg[i + 1])
      if not v or v <= 0 then usage(a .. " needs a positive number") end
      if a == "--seconds" then seconds = v
      else
        v = math.tointeger(v) or usage(a .. " needs an integer")
        if a == "--workers" then nworkers = v else spin = v end
      end
      i = i + 2
    elseif positional == 0 and a:match("^%d+$") then
      port, positional = tonumber(a), 1
      i = i + 1
    else
      usage("unexpected argument '" .. a .. "'")
    end
  end
end
nworkers = nworkers or ncpus()

if port == 0 then            -- a free port for every worker to share
  uring.run(function()
    local s <close> = assert(uring.listen("127.0.0.1", 0))
    port = select(2, s:getsockname())
  end)
end

local function worker(i, pid)
  local BODY = ("Hello from worker %d (pid %d)\n"):format(i, pid)
  local function response(connection)
    return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
      .. "Content-Length: " .. #BODY .. "\r\nConnection: " .. connection
      .. "\r\n\r\n" .. BODY
  end
  local KEEP, CLOSE = response("keep-alive"), response("close")
  local BAD = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
  local requests, conns, active = 0, 0, {}
  local function work()        -- --spin: the application's share of a request
    local x = 0
    for k = 1, spin do x = x ~ (x * 31 + k) end
    return x
  end

  -- one task per connection: request line, headers, one send per answer
  local function serve(sock)
    local s <close> = sock
    active[sock] = true
    sock:setoption("nodelay", true)
    while true do
      local line = sock:receive("*l")
      if not line then break end
      if line ~= "" then
        if not find(line, " HTTP/1%.%d$") then sock:send(BAD); break end
        local keep, bodylen = line:sub(-8) ~= "HTTP/1.0", 0
        while true do
          local h = sock:receive("*l")
          if not h then goto done end
          if h == "" then break end
          local c = byte(h, 1)
          if c == 67 or c == 99 then                      -- "C" or "c"
            local lh = lower(h)
            if find(lh, "^connection:") then
              if find(lh, "close", 12, true) then keep = false
              elseif find(lh, "keep-alive", 12, true) then keep = true end
            elseif find(lh, "^content%-length:") then
              bodylen = tonumber(lh:match("(%d+)")) or 0
            end
          end
        end
        if bodylen > 0 and not sock:receive(bodylen) then break end
        requests = requests + 1
        if spin > 0 then work() end
        if not sock:send(keep and KEEP or CLOSE) or not keep then break end
      end
    end
    ::done::
    active[sock] = nil
  end

  -- closed however the worker ends: timer, SIGTERM/SIGINT, an error
  local server <close> = assert(uring.listen("127.0.0.1", port,
    { reuseport = true, backlog = 4096 }))
  local summary <close> = setmetatable({}, { __close = function()
    for sock in pairs(active) do sock:close() end
    io.stdout:write(("worker %d (pid %d): %d requests on %d connections\n")
      :format(i, pid, requests, conns))
    io.stdout:flush()
  end })
  io.stdout:write(("listening on 127.0.0.1:%d (worker %d, pid %d)\n"):format(port, i, pid))
  io.stdout:flush()
  local timer = uring.spawn(function() uring.sleep(seconds); server:close() end)
  while true do
    local sock = server:accept()
    if not sock then break end
    conns = conns + 1
    uring.spawn(serve, sock)
  end
  timer:cancel()
end

local ok, statuses = uring.workers(nworkers, worker)
io.stdout:write(("http_workers: %d workers ended%s, %s\n"):format(#statuses,
  statuses.signal and (" (signal %d forwarded)"):format(statuses.signal) or "",
  ok and "all cleanly" or "some failed"))
os.exit(ok and 0 or 1)
