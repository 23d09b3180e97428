--- examples/udp_ping.lua: UDP round trips through the ring.
--
--   lua5.4 examples/udp_ping.lua [count]        (default 1000 pings)
--
-- An echo task binds 127.0.0.1 port 0 (the kernel picks the port;
-- getsockname tells us which) and sends every datagram back to whoever
-- sent it.  A client task, in the same loop, sends `count` numbered pings
-- one at a time and waits for each echo: sendto is an IORING_OP_SENDMSG,
-- recvfrom an IORING_OP_RECVMSG, both with the peer address in memory the
-- request owns.  It prints the round-trip times (min, median, p99, max in
-- microseconds) and how many io_uring_enter calls the whole exchange cost:
-- both tasks' SQEs of a loop turn go in with one enter, so a round trip
-- costs two system calls where blocking sockets make four (a sendto and a
-- recvfrom on each side).  The SQE count includes the link timeout that
-- client:settimeout arms with each of its recvfroms.
--
-- Exits non-zero if an echo is lost or garbled.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local COUNT = tonumber(arg[1]) or 1000
assert(COUNT >= 1 and COUNT == math.floor(COUNT), "count must be a positive integer")

local rtts, enters, sqes = uring.run(function()
  local server <close> = assert(uring.udp("127.0.0.1", 0))
  local host, port = server:getsockname()
  local echo = uring.spawn(function()
    for _ = 1, COUNT do
      local data, from, fport = assert(server:recvfrom())
      assert(server:sendto(data, from, fport))
    end
  end)

  local client <close> = assert(uring.udp("127.0.0.1", 0))
  client:settimeout(1)          -- a lost datagram fails the run, not hangs it
  local rtt = {}
  local s0 = uring.stats()
  for i = 1, COUNT do
    local msg = "ping " .. i
    local t0 = uring.now()
    assert(client:sendto(msg, host, port))
    local data, err = client:recvfrom()
    if data ~= msg then
      error(("ping %d: got %s"):format(i, tostring(data or err)), 0)
    end
    rtt[i] = (uring.now() - t0) * 1e6
  end
  local s1 = uring.stats()
  assert(echo:join())
  return rtt, s1.enters - s0.enters, s1.sqes - s0.sqes
end)

table.sort(rtts)
local function pct (p) return rtts[math.max(1, math.ceil(#rtts * p))] end
print(("udp_ping: %d round trips over 127.0.0.1"):format(COUNT))
print(("  rtt us: min %.1f  median %.1f  p99 %.1f  max %.1f")
  :format(rtts[1], pct(0.5), pct(0.99), rtts[#rtts]))
print(("  io_uring_enter calls: %d (%.2f per round trip), SQEs: %d")
  :format(enters, enters / COUNT, sqes))
