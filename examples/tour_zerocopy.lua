--- examples/tour_zerocopy.lua: tour step 9 — zero-copy send.
--
--   lua5.4 examples/tour_zerocopy.lua
--
-- IORING_OP_SEND copies the bytes into the socket; IORING_OP_SEND_ZC
-- (ring:prep_send_zc, Linux 6.0) lets the kernel send from the buffer's
-- own pages.  The price: two CQEs per send.  The first is the result
-- (res = bytes, flags has IORING_CQE_F_MORE); the second, the
-- notification (IORING_CQE_F_NOTIF), comes when the kernel no longer
-- references the pages.  Only then may the buffer be written again, and
-- only then does the ring drop its pin: buf:pinned() tells you.
--
-- Over a loopback TCP pair (made with uring.listen/uring.connect, then
-- driven by fd from the teaching ring), it sends many 64 KiB and 1 MiB
-- messages with prep_send and with prep_send_zc, each message received
-- whole (prep_recv with MSG_WAITALL) and checked.  Two send buffers take
-- turns; a send_zc buffer is reused only once its notification came.
-- Rounds alternate; it prints the median MiB/s of each and the CQE
-- pattern it saw.
--
-- On loopback zero copy is not expected to win: the receiving socket
-- must not see the sender's pages, so the kernel copies them on the way
-- in anyway, and the notification waits for the ACK.  The gain is for
-- large sends out of a real NIC.  The script asserts correctness (every
-- message arrived intact; one result CQE with F_MORE and one notification
-- per send_zc; no pin left), not a speed-up.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

if not uring.probe().send_zc then
  print("this kernel has no IORING_OP_SEND_ZC (Linux 6.0+); nothing to show")
  os.exit(0)
end

local F_MORE, F_NOTIF = uring.IORING_CQE_F_MORE, uring.IORING_CQE_F_NOTIF
local ROUNDS = 3

-- a connected loopback pair, from the task loop; the ring uses the fds
local csock, ssock, server = uring.run(function()
  local srv = assert(uring.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local t = uring.spawn(function() return srv:accept() end)
  local c = assert(uring.connect("127.0.0.1", port))
  local _, s = assert(t:join())
  return c, s, srv
end)
local tx, rx = csock:fd(), ssock:fd()

local ring <close> = assert(uring.ring{entries = 16})
local bad, pattern = 0, {}

-- one run: count messages from the two buffers of sbufs (their size),
-- send or send_zc; returns seconds and what the CQEs said
local function run(zc, sbufs, rbuf, count)
  local size = #rbuf
  local seen = { more = 0, notifs = 0, wait = 0, waits = 0 }
  local t_result = {}
  local function take()               -- one CQE: the recv, a result or a notif
    local res, ud, flags = ring:wait_cqe()
    if flags & F_NOTIF ~= 0 then
      seen.notifs = seen.notifs + 1
      seen.wait = seen.wait + (uring.now() - t_result[ud])
      seen.waits = seen.waits + 1
    elseif ud < 0 then
      if res ~= size then bad = bad + 1 end
      return "recv"
    else
      if flags & F_MORE ~= 0 then seen.more = seen.more + 1; t_result[ud] = uring.now() end
      if res ~= size then bad = bad + 1 end
      return "send"
    end
  end
  local t0 = uring.now()
  for i = 1, count do
    local b = sbufs[i % 2 + 1]
    -- a zero-copy buffer may be written only after its notification
    while b:pinned() > 0 do take() end
    b:write(string.pack("<I4", i)); b:write(string.pack("<I4", i), size - 3)
    if zc then ring:prep_send_zc(tx, b, size, uring.MSG_WAITALL, i)
    else ring:prep_send(tx, b, size, uring.MSG_WAITALL, i) end
    ring:prep_recv(rx, rbuf, size, uring.MSG_WAITALL, -i)
    ring:submit()
    local got = {}
    while not (got.send and got.recv) do
      local what = take()
      if what then got[what] = true end
    end
    if string.unpack("<I4", rbuf:tostring(1, 4)) ~= i
        or string.unpack("<I4", rbuf:tostring(size - 3, size)) ~= i then
      bad = bad + 1
    end
    if i == 1 and rbuf:tostring(5, size - 4) ~= pattern[size] then bad = bad + 1 end
  end
  while ring:inflight() > 0 do take() end     -- the last notifications
  local dt = uring.now() - t0
  for _, b in ipairs(sbufs) do if b:pinned() ~= 0 then bad = bad + 1 end end
  return dt, seen
end

local function median(t) table.sort(t) return t[(#t + 1) // 2] end
local function label(n) return n >= 1 << 20 and (n >> 20) .. " MiB" or (n >> 10) .. " KiB" end

local rows = {}
for _, m in ipairs{ { 64 * 1024, 2000 }, { 1024 * 1024, 200 } } do
  local size, count = m[1], m[2]
  -- the body: bytes that are not all the same, checked on the first message
  local body = {}
  for j = 1, size - 8 do body[j] = string.char((j * 31 + (j >> 9)) % 251) end
  pattern[size] = table.concat(body)
  local mib = size * count / (1024 * 1024)
  local r = { size = size, count = count, send = {}, zc = {} }
  local sbufs = { uring.buffer(size), uring.buffer(size) }
  for _, b in ipairs(sbufs) do b:write(pattern[size], 5) end
  local rbuf = uring.buffer(size)
  run(false, sbufs, rbuf, 20); run(true, sbufs, rbuf, 20)   -- warm up
  for k = 1, ROUNDS do
    local dt = run(false, sbufs, rbuf, count)
    r.send[k] = mib / dt
    local dz, seen = run(true, sbufs, rbuf, count)
    r.zc[k] = mib / dz
    r.seen = seen
  end
  rows[#rows + 1] = r
end

uring.run(function() csock:close(); ssock:close(); server:close() end)

print("loopback TCP, one message in flight, each received whole and checked; "
  .. ("median of %d rounds\n"):format(ROUNDS))
print(("%-10s %6s %12s %14s %8s"):format("message", "count", "send MiB/s", "send_zc MiB/s", "zc/send"))
for _, r in ipairs(rows) do
  local s, z = median(r.send), median(r.zc)
  print(("%-10s %6d %12.0f %14.0f %8.2f"):format(
    label(r.size), r.count, s, z, z / s))
end
print("\nCQE pattern of the last send_zc round:")
local ok_pattern = true
for _, r in ipairs(rows) do
  local seen = r.seen
  print(("  %-6s: %d send_zc SQEs -> %d results with F_MORE + %d notifications with F_NOTIF;\n"
    .. "          the notification came %.0f us after its result, on average"):format(
    label(r.size), r.count, seen.more, seen.notifs, seen.wait / math.max(seen.waits, 1) * 1e6))
  if seen.more ~= r.count or seen.notifs ~= r.count then ok_pattern = false end
end
print(("\nmessages with a wrong result: %d"):format(bad))
local ok = bad == 0 and ok_pattern and ring:inflight() == 0
print(ok and "ok: every message arrived intact; every send_zc gave a result and a notification"
  or "unexpected result")
os.exit(ok and 0 or 1, true)
