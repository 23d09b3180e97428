--- examples/fixed_files.lua: registered files for every kind of socket
-- (uring.configure{fixed_files = N}).
--
--   lua5.4 examples/fixed_files.lua [connections]
--
-- Each SQE on a plain fd makes the kernel look the number up in the
-- process's file table and take a reference on the file.  With
-- fixed_files the loop registers a table of N slots once, installs every
-- socket it makes (accepted, connected, Unix, UDP, TLS) into a free slot,
-- and its ops name the slot (IOSQE_FIXED_FILE).  Installing and emptying
-- a slot are IORING_OP_FILES_UPDATE SQEs that ride on the loop's next
-- io_uring_enter: no system call of their own.
--
-- It makes a TCP pair, a Unix stream pair and two UDP sockets, shows the
-- slots they took, has each pair talk both ways, and counts the slots
-- given back at close.  (spec/fixed_files_spec.lua proves the kernel uses
-- the slots: it closes the fd numbers behind the sockets' backs and they
-- still talk.)  Then it opens and closes `connections` TCP
-- connections with and without slots and prints SQEs and enters per
-- connection (the two slot updates per socket are SQEs, the enters stay
-- the same).  Exits non-zero if a byte went wrong or a slot was not
-- given back.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"
local N = tonumber(arg[1] or "200")

local function kinds()
  local dir = os.tmpname()
  os.remove(dir)
  local unix_path = dir .. ".sock"
  local out = {}
  -- TCP: connect (client) and accept (server)
  local srv = assert(uring.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local t = uring.spawn(function() return assert(srv:accept()) end)
  local c = assert(uring.connect("127.0.0.1", port))
  local _, s = assert(t:join())
  srv:close()
  out[#out + 1] = { "TCP", c, s }
  -- Unix stream sockets
  local usrv = assert(uring.listen_unix(unix_path))
  t = uring.spawn(function() return assert(usrv:accept()) end)
  local uc = assert(uring.connect_unix(unix_path))
  local _, us = assert(t:join())
  usrv:close()
  os.remove(unix_path)
  out[#out + 1] = { "Unix", uc, us }
  -- UDP
  local u1 = assert(uring.udp("127.0.0.1", 0))
  local u2 = assert(uring.udp("127.0.0.1", 0))
  out[#out + 1] = { "UDP", u1, u2 }
  return out
end

local function talk(name, a, b)
  if name == "UDP" then
    local _, p2 = b:getsockname()
    assert(a:sendto("ping", "127.0.0.1", p2))
    return assert(b:recvfrom()) == "ping"
  end
  assert(a:send("ping\n"))
  return b:receive("*l") == "ping"
end

-- n connections opened and closed; SQEs and enters per connection
local function churn(n)
  local srv = assert(uring.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local st0 = uring.stats()
  for _ = 1, n do
    local t = uring.spawn(function()
      local s = assert(srv:accept())
      assert(s:send(assert(s:receive("*l")) .. "\n"))
      s:close()
    end)
    local c = assert(uring.connect("127.0.0.1", port))
    assert(c:send("x\n"))
    assert(c:receive("*l") == "x")
    c:close()
    assert(t:join())
  end
  local st = uring.stats()
  srv:close()
  return (st.sqes - st0.sqes) / n, (st.enters - st0.enters) / n
end

local ok = true
uring.configure{ fixed_files = 16 }
uring.run(function()
  local ff = uring.features().fixed_files
  print(("fixed_files: %d slots registered, installed by %s"):format(
    ff.count, ff.install == "sqe" and "IORING_OP_FILES_UPDATE SQEs"
              or "io_uring_register calls"))
  local ks = kinds()
  print(("%d sockets made, %d slots in use"):format(#ks * 2, uring.stats().fixed_files))
  for _, k in ipairs(ks) do
    local name, a, b = k[1], k[2], k[3]
    local fine = talk(name, a, b) and talk(name, b, a)
    print(("%-4s both ways through their slots: %s"):format(name, fine and "ok" or "WRONG"))
    ok = ok and fine
    a:close(); b:close()
  end
  uring.sleep(0)                -- the removals ride on this enter
  local free = uring.features().fixed_files.free
  print(("after close: %d slots in use, %d free"):format(uring.stats().fixed_files, free))
  ok = ok and free == 16
  local sqes, enters = churn(N)
  print(("%d connections with slots: %.1f SQEs and %.2f enters per connection"):format(N, sqes, enters))
end)
uring.configure{ fixed_files = 0 }
uring.run(function()
  local sqes, enters = churn(N)
  print(("%d connections without:    %.1f SQEs and %.2f enters per connection"):format(N, sqes, enters))
end)
os.exit(ok and 0 or 1)
