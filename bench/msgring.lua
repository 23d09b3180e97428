-- bench/msgring.lua: the workers' channel (csrc/msg_ring.c) against the
-- obvious alternative, a Unix stream socket between the two workers
-- through the same rings, in alternation, medians of the rounds.
--
--   lua5.4 bench/msgring.lua [rounds] [--quick]
--
-- stream:    worker 2 sends N 64-byte messages to worker 1 (ch:send, or
--            one sock:send of a line each); messages per second received
-- pingpong:  round trips per second (a message there, one back)
-- handoff:   a TCP connection moved to the other worker and back again
--            (ch:send(j, sock)); microseconds per move.  Its alternative,
--            SCM_RIGHTS over a socketpair with a blocking recvmsg, has no
--            Lua API: bench/handoff.c measures that floor in C, in the
--            same alternation (build it first: make -C bench msgring).
-- Ratios are written to $BENCH_RESULTS/msgring.tsv (bench/results).
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local rounds, quick = 5, false
for _, a in ipairs(arg) do
  if a == "--quick" then quick = true else rounds = assert(math.tointeger(tonumber(a)), "rounds") end
end
if quick then rounds = 1 end
local N = quick and 2000 or 100000        -- stream messages
local RT = quick and 500 or 20000         -- round trips
local MOVES = quick and 100 or 5000       -- handoff round trips (2 moves each)
local MSG = ("m"):rep(63)

local function tmpname() local p = os.tmpname() os.remove(p) return p end

-- run fn(i, pid, ch, sock) in two workers; sock: a connected Unix stream
-- socket between them (made after the fork); worker 1's result, a number
local function measure(fn)
  local out, path = tmpname(), tmpname()
  local ok = uring.workers(2, function(i, pid, ch)
    local sock
    if i == 1 then
      local srv <close> = assert(uring.listen_unix(path))
      assert(ch:send(2, "listening"))
      sock = assert(srv:accept())
    else
      assert(ch:receive())
      sock = assert(uring.connect_unix(path))
    end
    local r = fn(i, pid, ch, sock)
    sock:close()
    if i == 1 then
      local f = assert(io.open(out, "w"))
      f:write(string.format("%.17g\n", r))
      f:close()
    end
  end)
  os.remove(path)
  assert(ok, "a worker failed")
  local f = assert(io.open(out))
  local v = tonumber(f:read("l"))
  f:close()
  os.remove(out)
  return v
end

local function send_retry(ch, j, m)
  while true do
    local ok, err, en = ch:send(j, m)
    if ok then return end
    assert(en == 11, err)                 -- mailbox full: let it drain
    uring.sleep(0.0002)
  end
end

local cases = {
  { name = "stream", unit = "msg/s", ours = function(i, _, ch)
      if i == 2 then for _ = 1, N do send_retry(ch, 1, MSG) end return 0 end
      local t0
      for k = 1, N do
        local _, m = ch:receive()
        if k == 1 then t0 = uring.now() end
        assert(#m == 63)
      end
      return (N - 1) / (uring.now() - t0)
    end,
    theirs = function(i, _, _, sock)
      if i == 2 then for _ = 1, N do assert(sock:send(MSG .. "\n")) end return 0 end
      local t0
      for k = 1, N do
        local m = sock:receive("*l")
        if k == 1 then t0 = uring.now() end
        assert(#m == 63)
      end
      return (N - 1) / (uring.now() - t0)
    end },
  { name = "pingpong", unit = "rt/s", ours = function(i, _, ch)
      local t0 = uring.now()
      for _ = 1, RT do
        if i == 1 then assert(ch:send(2, MSG)) assert(ch:receive())
        else assert(ch:receive()) assert(ch:send(1, MSG)) end
      end
      return RT / (uring.now() - t0)
    end,
    theirs = function(i, _, _, sock)
      local t0 = uring.now()
      for _ = 1, RT do
        if i == 1 then assert(sock:send(MSG .. "\n")) assert(sock:receive("*l"))
        else assert(sock:receive("*l")) assert(sock:send(MSG .. "\n")) end
      end
      return RT / (uring.now() - t0)
    end },
  { name = "handoff", unit = "us/move", cost = true, ours = function(i, _, ch)
      local conn
      if i == 1 then      -- one TCP connection, moved there and back
        local srv <close> = assert(uring.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        local peer = uring.spawn(function() return assert(uring.connect("127.0.0.1", port)) end)
        conn = assert(srv:accept())
        local _, c = peer:join()
        local t0 = uring.now()
        for _ = 1, MOVES do
          assert(ch:send(2, conn))
          local _
          _, conn = ch:receive()
        end
        local us = (uring.now() - t0) / (2 * MOVES) * 1e6
        assert(conn:send("still the same connection\n"))
        assert(c:receive("*l") == "still the same connection")
        conn:close()
        c:close()
        return us
      end
      for _ = 1, MOVES do
        local _, s = ch:receive()
        assert(ch:send(1, s))
      end
      return 0
    end,
    -- the floor in C (bench/handoff.c, built by `make -C bench msgring`)
    theirs_cmd = (os.getenv("HANDOFF") or "build/handoff") .. " " .. (2 * MOVES) },
}

local function run_cmd(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  assert(p:close(), cmd .. " failed")
  return assert(tonumber(out:match("^([%d.]+) us/move")), out)
end

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

io.stdout:setvbuf("line")
print(("msgring bench: %d round(s), alternating; stream %d msgs, pingpong %d, handoff %d moves")
  :format(rounds, N, RT, 2 * MOVES))
local results = {}
for _, c in ipairs(cases) do results[c.name] = { ours = {}, theirs = {} } end
for r = 1, rounds do
  for _, c in ipairs(cases) do
    local a = measure(c.ours)
    local b = c.theirs and measure(c.theirs) or c.theirs_cmd and run_cmd(c.theirs_cmd)
    table.insert(results[c.name].ours, a)
    if b then table.insert(results[c.name].theirs, b) end
    print(("round %d %-8s channel %12.1f %s%s"):format(r, c.name, a, c.unit,
      b and ("   %s %12.1f %s"):format(c.theirs and "unix socket" or "C SCM_RIGHTS",
                                        b, c.unit) or ""))
  end
end

local dir = os.getenv("BENCH_RESULTS") or "bench/results"
os.execute("mkdir -p " .. dir)
local tsv = assert(io.open(dir .. "/msgring.tsv", "w"))
for _, c in ipairs(cases) do
  local a = median(results[c.name].ours)
  if c.cost then            -- a cost: theirs over ours
    local b = median(results[c.name].theirs)
    print(("median %-8s channel %.2f %s, C SCM_RIGHTS floor %.2f %s: %.2fx")
      :format(c.name, a, c.unit, b, c.unit, b / a))
    tsv:write(("workers channel %s vs C SCM_RIGHTS\t%.2f\t\tmedian of %d: %.1f vs %.1f %s\n")
      :format(c.name, b / a, rounds, a, b, c.unit))
  elseif c.theirs then
    local b = median(results[c.name].theirs)
    print(("median %-8s channel %.1f %s, unix socket %.1f %s: %.2fx")
      :format(c.name, a, c.unit, b, c.unit, a / b))
    tsv:write(("workers channel %s vs unix socket\t%.2f\t\tmedian of %d: %.0f vs %.0f %s\n")
      :format(c.name, a / b, rounds, a, b, c.unit))
  else
    print(("median %-8s channel %.2f %s"):format(c.name, a, c.unit))
  end
end
tsv:close()
