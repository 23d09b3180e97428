-- examples/close_in_flight.lua: closing a socket while a send is in flight.
--
-- A queued SQE names its file by number, and the kernel looks the number
-- up only when it runs the SQE.  If close(2) freed the number at once, the
-- next socket would get it and the queued send would deliver one
-- connection's bytes to another.  So lua-uring closes the fd only when the
-- last request naming it has completed: close() cancels the send, the
-- sender learns how many bytes really went out, and the number stays
-- taken until then.
--
--   lua5.4 examples/close_in_flight.lua
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local uring = require "uring"

uring.run(function()
  local server = assert(uring.listen("127.0.0.1", 0))
  local _, port = server:getsockname()
  local client = assert(uring.connect("127.0.0.1", port))
  local peer = assert(server:accept())
  server:close()

  -- 64 MiB: far more than loopback buffers hold, and the peer reads
  -- nothing yet, so the send waits in the kernel
  local payload = ("x"):rep(64 << 20)
  local sender = uring.spawn(function() return table.pack(client:send(payload)) end)
  while sender:waiting_on() ~= "send" do uring.sleep(0.001) end

  local number = client:fd()
  client:close()                         -- cancels the send
  -- a new fd made at once: the closed number is still the kernel's
  local r, w = assert(uring.pipe())
  print(("closed fd %d; a pipe made right after got fds %d and %d"):format(
    number, r:fd(), w:fd()))
  assert(r:fd() ~= number and w:fd() ~= number)

  local res = select(2, sender:join())
  print(("the sender got: %s, %q, %s, and %d bytes had gone out"):format(
    tostring(res[1]), res[2], tostring(res[3]), res[4]))
  local got = peer:receive("*a")         -- until the FIN of the close
  print(("the peer received %d bytes: %s"):format(#got,
    #got == res[4] and "exactly what the sender was told" or "A MISMATCH"))
  assert(#got == res[4])
  peer:close(); r:close(); w:close()
end)
