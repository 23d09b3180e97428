--- examples/serve_dir.lua: a static file server for a directory, like
-- `python3 -m http.server`, on uring.http.static.
--
--   lua5.4 examples/serve_dir.lua [port] [--dir D] [--seconds S] [--no-listing]
--
-- Serves D (default: the current directory) on 127.0.0.1.  The bytes of
-- each file go from the page cache to the socket in the kernel
-- (sock:sendfile), never through Lua.  Ranges
-- (`curl -r 0-99`), ETag / Last-Modified and 304, and a listing of a
-- directory with no index.html (--no-listing turns it off: 403).
--
-- The first line on stdout is "listening on 127.0.0.1:PORT" (port 0, the
-- default here as in the other example servers, lets the kernel choose;
-- python's default is 8000).  Stops after S seconds (default 30), then
-- prints how many requests it served.
--
-- Try it:  lua5.4 examples/serve_dir.lua 8000 &
--          curl -s http://127.0.0.1:8000/            (the listing)
--          curl -r 0-99 http://127.0.0.1:8000/README.md
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local USAGE = "usage: lua5.4 examples/serve_dir.lua [port] [--dir D] [--seconds S] [--no-listing]\n"

local function usage(msg)
  io.stderr:write("serve_dir: ", msg, "\n", USAGE)
  os.exit(2)
end

local port, dir, seconds, listing = 0, ".", 30, true
do
  local i, positional = 1, 0
  while i <= #arg do
    local a = arg[i]
    if a == "--seconds" then
      seconds = tonumber(arg[i + 1])
      if not seconds or seconds <= 0 then usage("--seconds needs a positive number") end
      i = i + 2
    elseif a == "--dir" then
      dir = arg[i + 1] or usage("--dir needs a directory")
      i = i + 2
    elseif a == "--no-listing" then
      listing, i = false, i + 1
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      os.exit(0)
    elseif positional == 0 and a:match("^%d+$") then
      port, positional, i = tonumber(a), 1, i + 1
    else
      usage("unexpected argument '" .. a .. "'")
    end
  end
end

local st = uring.run(uring.stat, dir)
if not st or st.type ~= "directory" then usage(dir .. " is not a directory") end

-- the handler itself: bench/static.sh measures this server, and a
-- wrapper asking each response its Content-Length cost 6% of a 4 KiB
-- request's instructions (callgrind)
local handler = uring.http.static(dir, { listing = listing })

local srv
uring.run(function()
  srv = assert(uring.http.server { host = "127.0.0.1", port = port, handler = handler })
  io.stdout:write(("listening on 127.0.0.1:%d (serving %s)\n"):format(srv:port(), dir))
  io.stdout:flush()
  local timer = uring.spawn(function()
    uring.sleep(seconds)
    srv:close()
  end)
  srv:serve()
  timer:cancel()
end)
io.stdout:write(("serve_dir: %d requests (their files sent in the kernel)\n")
  :format(srv.requests))
