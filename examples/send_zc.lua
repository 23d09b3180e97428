--- examples/send_zc.lua: sock:send without the copy (IORING_OP_SEND_ZC).
--
--   lua5.4 examples/send_zc.lua [MiB]
--
-- uring.configure{send_zc = 65536}: every sock:send of 64 KiB or more
-- lends the kernel the Lua string's own pages instead of copying them into
-- socket buffers.  The send returns at the first CQE (the bytes are
-- queued); the kernel gives the pages back later, with a second CQE, the
-- notification, and until then the core keeps the string pinned, even if
-- the script has let go of it.  This script streams MiB 1-MiB messages
-- (default 64) over loopback with plain SEND and with SEND_ZC, checks
-- every byte, shows a string still held by the kernel after its send
-- returned, and what the notifications said.
--
-- On loopback the receiving socket must own its bytes, so the kernel
-- copies them on the way in after all (the notification says so):
-- zero copy pays only out of a real NIC.  bench/sendzc.sh measures it.
package.cpath = (os.getenv("URING_CPATH") or "./build/?.so") .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local MIB = math.tointeger(tonumber(arg[1] or 64)) or 64
local SIZE = 1 << 20

if not uring.features().ops.send_zc then
  print("this kernel has no IORING_OP_SEND_ZC (Linux 6.0+): sends stay plain SENDs")
  os.exit(0)
end

-- message i: its number in every 8 bytes, so a lost or reordered one shows
local function message(i)
  return ("%08d"):format(i):rep(SIZE // 8)
end

-- A connected loopback pair, then MIB messages one way; the receiver
-- checks them.  Returns MiB/s.
local function stream()
  return uring.run(function()
    local srv = assert(uring.listen("127.0.0.1", 0))
    local _, port = srv:getsockname()
    local acc = uring.spawn(function() return assert(srv:accept()) end)
    local c = assert(uring.connect("127.0.0.1", port))
    local _, s = acc:join()
    srv:close()
    local msgs = {}
    for i = 1, MIB do msgs[i] = message(i) end
    local reader = uring.spawn(function()
      for i = 1, MIB do
        assert(s:receive(SIZE) == msgs[i], "message " .. i .. " differs")
      end
      s:close()
    end)
    local t0 = uring.now()
    for i = 1, MIB do assert(c:send(msgs[i]) == SIZE) end
    assert(reader:join())
    local secs = uring.now() - t0
    c:close()
    return MIB / secs
  end)
end

uring.configure{send_zc = false}
local plain = stream()
uring.configure{send_zc = 65536}
local s0 = uring.stats()
local zc = stream()
-- the notifications of the last sends may still be on their way
uring.run(function()
  while uring.stats().send_zc_held > 0 do uring.sleep(0.001) end
end)
local s1 = uring.stats()
print(("send_zc: %d sends of 1 MiB went out as SEND_ZC, every byte arrived;"
  .. " %d notifications said the kernel copied anyway (loopback)")
  :format(s1.send_zc - s0.send_zc, s1.send_zc_copied - s0.send_zc_copied))

-- the pin: a send returns while the kernel still holds the pages
uring.run(function()
  local srv = assert(uring.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local acc = uring.spawn(function() return assert(srv:accept()) end)
  local c = assert(uring.connect("127.0.0.1", port))
  local _, s = acc:join()
  srv:close()
  assert(c:send(message(0)) == SIZE)     -- nobody else holds that string
  collectgarbage()
  local held = uring.stats().send_zc_held
  assert(s:receive(SIZE) == message(0))
  c:close(); s:close()
  while uring.stats().send_zc_held > 0 do uring.sleep(0.001) end
  print(("right after the send returned, before the peer read: %d send(s) held by"
    .. " the kernel, the string pinned though the script dropped it; after: %d")
    :format(held, uring.stats().send_zc_held))
end)
print(("MiB/s over loopback: SEND %.0f, SEND_ZC %.0f"):format(plain, zc))
