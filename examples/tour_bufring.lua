--- examples/tour_bufring.lua: tour step 17 — multishot receive with a
--- provided buffer ring.
--
--   lua5.4 examples/tour_bufring.lua
--
-- A multishot recv is one SQE that posts a CQE per arrival.  It names no
-- buffer: each CQE says which buffer of a group the kernel picked
-- (IORING_CQE_F_BUFFER, the id in flags >> 16).  The group is a ring of
-- buffers we hand to the kernel; a buffer we got back in a CQE stays ours
-- until we return it.  When the kernel finds the ring empty the recv ends
-- with -ENOBUFS (no F_MORE); the bytes stay in the socket, and we re-arm.
--
-- On the teaching ring, outside uring.run, over a TCP connection the ring
-- made itself.  Three phases:
--   1. exhaustion: 4 buffers of 1 KiB, 16 KiB waiting: 4 CQEs, -ENOBUFS;
--   2. recycle and re-arm: return buffers, re-arm, until all 16 KiB came;
--   3. steady stream: 32 messages, each received and its buffer returned
--      at once: one SQE for all of them, buffers reused over and over.
-- Exits non-zero unless each phase does exactly that and every byte
-- arrives in order.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local F_MORE, F_BUFFER, ENOBUFS = uring.IORING_CQE_F_MORE, uring.IORING_CQE_F_BUFFER, 105
local GROUP, NBUFS, SIZE = 0, 4, 1024
local failed = {}
local function check(ok, what)
  if not ok then failed[#failed + 1] = what end
end

local ring <close> = assert(uring.ring{entries = 8})

local function one(method, ...)
  ring[method](ring, ...)
  ring:submit()
  return ring:wait_cqe(5)
end

-- a TCP connection on 127.0.0.1, made by SQEs
local lfd = one("prep_socket", uring.AF_INET, uring.SOCK_STREAM | uring.SOCK_CLOEXEC, 0)
assert(one("prep_bind", lfd, "127.0.0.1", 0) == 0, "bind")
assert(one("prep_listen", lfd, 4) == 0, "listen")
local _, port = ring:getsockname(lfd)
local cfd = one("prep_socket", uring.AF_INET, uring.SOCK_STREAM | uring.SOCK_CLOEXEC, 0)
assert(one("prep_connect", cfd, "127.0.0.1", port) == 0, "connect")
local sfd = one("prep_accept", lfd, 0, uring.SOCK_CLOEXEC)
assert(sfd >= 0, "accept")
assert(ring:setup_buf_ring(GROUP, NBUFS, SIZE))

local RECV, SEND = 10, 20
local function payload(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char(97 + (i * 7 + seed) % 26) end
  return table.concat(t)
end

-- 1. exhaustion
local data = payload(16 * 1024, 1)
assert(one("prep_send", cfd, data, nil, 0, SEND) == #data, "send")
ring:prep_recv_multishot(sfd, GROUP, 0, RECV)
ring:submit()
local got, held, cqes, ended = {}, {}, 0, nil
while not ended do
  local res, _, flags, bytes, bid = ring:wait_cqe(5)
  cqes = cqes + 1
  if res > 0 then
    got[#got + 1] = bytes
    held[#held + 1] = bid
    check(flags & F_BUFFER ~= 0 and flags & F_MORE ~= 0, "a data CQE without F_BUFFER/F_MORE")
  end
  if flags & F_MORE == 0 then ended = res end
end
print(("1. %d buffers of %d bytes, 16 KiB waiting: %d CQEs with data (buffers %s), then res = %d (-ENOBUFS), no F_MORE: the recv ended")
  :format(NBUFS, SIZE, #held, table.concat(held, ","), ended))
check(#held == NBUFS and ended == -ENOBUFS, "phase 1: expected 4 buffers then -ENOBUFS")

-- 2. recycle and re-arm until everything came
local sqes = 1
local total = 0
for _, b in ipairs(got) do total = total + #b end
while total < #data do
  for _, bid in ipairs(held) do ring:return_buf(GROUP, bid) end
  held = {}
  ring:prep_recv_multishot(sfd, GROUP, 0, RECV)
  ring:submit()
  sqes = sqes + 1
  repeat
    local res, _, flags, bytes, bid = ring:wait_cqe(5)
    cqes = cqes + 1
    if res > 0 then
      got[#got + 1] = bytes
      held[#held + 1] = bid
      total = total + res
    elseif res ~= -ENOBUFS then
      check(false, "phase 2: recv res " .. res)
      total = #data
    end
  until flags & F_MORE == 0 or total >= #data
end
local intact = table.concat(got) == data
print(("2. returning the buffers and re-arming: %d recv SQEs, %d CQEs, %d bytes, intact: %s")
  :format(sqes, cqes, total, intact))
check(intact and sqes >= 4, "phase 2: bytes lost, or fewer re-arms than 16 KiB / 4 KiB")

-- the recv still armed (or not): cancel it so phase 3 starts clean
if ring:inflight() > 0 then
  ring:prep_cancel(RECV, 99)
  ring:submit()
  while ring:inflight() > 0 do
    local res, ud, _, _, bid = ring:wait_cqe(5)
    if ud == RECV and bid then held[#held + 1] = bid end
    local _ = res
  end
end
for _, bid in ipairs(held) do ring:return_buf(GROUP, bid) end

-- 3. steady stream: one message at a time, each buffer returned at once
ring:prep_recv_multishot(sfd, GROUP, 0, RECV)
ring:submit()
local used, msgs, stream, more = {}, 32, {}, true
for i = 1, msgs do
  local m = payload(100, i)
  ring:prep_send(cfd, m, nil, 0, SEND)
  ring:submit()
  local need = 100
  local sent = false
  while need > 0 or not sent do
    local res, ud, flags, bytes, bid = ring:wait_cqe(5)
    if ud == SEND then sent = true
    else
      check(res > 0, "phase 3: recv res " .. res)
      if res <= 0 then need, sent = 0, true break end
      stream[#stream + 1] = bytes
      used[bid] = (used[bid] or 0) + 1
      ring:return_buf(GROUP, bid)
      need = need - res
      more = more and flags & F_MORE ~= 0
    end
  end
end
local distinct, uses = 0, 0
for _, n in pairs(used) do distinct, uses = distinct + 1, uses + n end
local expect = {}
for i = 1, msgs do expect[i] = payload(100, i) end
print(("3. %d messages, 1 recv SQE still armed (F_MORE on every CQE: %s): %d CQEs used %d distinct buffers, each %.0f times on average")
  :format(msgs, more, uses, distinct, uses / distinct))
check(more and table.concat(stream) == table.concat(expect), "phase 3: the stream was cut or bytes lost")
check(distinct <= NBUFS and uses >= msgs, "phase 3: buffers were not recycled")

ring:prep_cancel(RECV, 99)
ring:submit()
while ring:inflight() > 0 do ring:wait_cqe(5) end
for _, fd in ipairs { sfd, cfd, lfd } do one("prep_close", fd) end

if #failed > 0 then
  for _, f in ipairs(failed) do io.stderr:write("tour_bufring: ", f, "\n") end
  os.exit(1)
end
print("ok: the kernel picked buffers, ran out with -ENOBUFS, and one SQE kept receiving once they were recycled")
