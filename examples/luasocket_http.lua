-- examples/luasocket_http.lua: an unmodified LuaSocket library, concurrent.
--
-- uring.install_socket() puts uring.socket where LuaSocket's C module
-- (socket.core) would be, so Debian's own socket.lua and socket.http load
-- on top of it.  Every connect, send and receive socket.http makes then
-- yields the task instead of blocking the process: N http.request calls in
-- N tasks overlap.  The local server answers each request after 50 ms, so
-- one by one they take N x 50 ms, together about 50 ms.
--
--   lua5.4 examples/luasocket_http.lua [N]
local uring = require "uring"

local N = tonumber(arg and arg[1]) or 50
local DELAY = 0.05

local function body_for(path) return "page " .. path .. "\n" end

-- a slow HTTP server: every answer waits DELAY seconds
local function serve(srv)
  while true do
    local c = srv:accept()
    if not c then return end
    uring.spawn(function()
      local line = c:receive()
      local path = line and line:match("^GET (%S+)") or "/"
      repeat local h = c:receive() until h == "" or h == nil
      uring.sleep(DELAY)
      local body = body_for(path)
      c:send("HTTP/1.1 200 OK\r\nContent-Length: " .. #body
        .. "\r\nConnection: close\r\n\r\n" .. body)
      c:close()
    end)
  end
end

uring.run(function()
  local srv = assert(uring.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  uring.spawn(serve, srv)

  uring.install_socket()                 -- before the first require "socket"
  local http = require "socket.http"     -- Debian's file, unmodified
  local function fetch(i)
    local path = "/page/" .. i
    local body, code = http.request(("http://127.0.0.1:%d%s"):format(port, path))
    assert(code == 200 and body == body_for(path), "bad answer for " .. path)
  end

  local t0 = uring.now()
  for i = 1, N do fetch(i) end                      -- one after another
  local seq = uring.now() - t0

  t0 = uring.now()
  local tasks = {}
  for i = 1, N do tasks[i] = uring.spawn(fetch, i) end   -- all at once
  for _, t in ipairs(tasks) do assert(t:join()) end
  local conc = uring.now() - t0

  print(("%d requests through socket.http, %d ms each on the server"):format(N, DELAY * 1000))
  print(("sequential  %.3f s"):format(seq))
  print(("concurrent  %.3f s  (%.1fx faster)"):format(conc, seq / conc))
  srv:close()
  uring.install_socket(false)            -- package.loaded as it was
end)
