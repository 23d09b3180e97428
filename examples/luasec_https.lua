-- examples/luasec_https.lua: LuaSec's ssl.https, unmodified, concurrent.
--
-- uring.install_ssl() puts a LuaSec-compatible `ssl` module (over
-- uring.tls) where require "ssl" finds it, and uring.socket where LuaSocket
-- would be, so Debian's own ssl/https.lua loads on top: every handshake,
-- send and receive it makes yields the task instead of blocking the
-- process, and N ssl.https.request calls in N tasks overlap.  The local
-- HTTPS server (a throwaway self-signed certificate, made with openssl
-- req) answers each request after 50 ms (or MS): one by one they take
-- N x 50 ms plus N handshakes, together about 50 ms plus the handshakes.
--
--   lua5.4 examples/luasec_https.lua [N [MS]]
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local N = tonumber(arg and arg[1]) or 20
local DELAY = (tonumber(arg and arg[2]) or 50) / 1000

-- a certificate for this run only
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir .. " && openssl req -x509 -newkey ec "
  .. "-pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost "
  .. "-keyout " .. dir .. "/key.pem -out " .. dir .. "/cert.pem 2>/dev/null"))
local ctx = assert(uring.tls.context { mode = "server", cert = dir .. "/cert.pem",
  key = dir .. "/key.pem" })
os.execute("rm -rf " .. dir)

local function body_for(path) return "page " .. path .. "\n" end

uring.run(function()
  local srv = assert(uring.http.server { tls = ctx, handler = function(req)
    uring.sleep(DELAY)
    return 200, body_for(req.path)
  end })
  uring.spawn(srv.serve, srv)

  uring.install_ssl()                    -- before the first require "ssl"
  local https = require "ssl.https"      -- Debian's file, unmodified
  local function fetch(i)
    local path = "/page/" .. i
    local body, code = https.request(("https://localhost:%d%s"):format(srv:port(), path))
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

  print(("%d requests through ssl.https, %d ms each on the server"):format(N, DELAY * 1000))
  print(("sequential  %.3f s"):format(seq))
  print(("concurrent  %.3f s  (%.1fx faster)"):format(conc, seq / conc))
  srv:close()
  uring.install_ssl(false)               -- package.loaded as it was
end)
