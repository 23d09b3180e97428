--- examples/https_server.lua: an HTTPS server on uring.http, with a
-- self-signed certificate made on first run.
--
--   lua5.4 examples/https_server.lua [port] [--seconds S] [--dir DIR]
--
-- The first run makes DIR/cert.pem and DIR/key.pem (DIR defaults to
-- $TMPDIR/lua-uring-https) with `openssl req`: an EC key, a certificate
-- for localhost and 127.0.0.1 that is its own CA.  TLS is one option of
-- the server, tls = uring.tls.context{...}; each connection's handshake
-- runs in the task that serves it, so a client that stalls or fails holds
-- up nobody else (the server counts those in tls_failures).
-- First line: "listening on https://127.0.0.1:PORT (certificate FILE)";
-- after S seconds (default 30) it stops and prints what it served.
--
-- Try it:  lua5.4 examples/https_server.lua 8443 &
--          curl --cacert /tmp/lua-uring-https/cert.pem https://localhost:8443/
--          lua5.4 examples/https_get.lua https://localhost:8443/ --cacert /tmp/lua-uring-https/cert.pem
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local port, seconds = 0, 30
local dir = (os.getenv("TMPDIR") or "/tmp") .. "/lua-uring-https"
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--seconds" then seconds = assert(tonumber(arg[i + 1]), "--seconds S"); i = i + 2
    elseif a == "--dir" then dir = assert(arg[i + 1], "--dir DIR"); i = i + 2
    elseif a:match("^%d+$") then port = tonumber(a); i = i + 1
    else
      io.stderr:write("usage: lua5.4 examples/https_server.lua [port] [--seconds S] [--dir DIR]\n")
      os.exit(2)
    end
  end
end

-- the certificate, made once: the next runs reuse it (clients that were
-- told to trust it keep trusting it)
local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
if not io.open(cert) then
  os.execute("mkdir -p '" .. dir .. "'")
  local ok = os.execute(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
    .. "-nodes -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
    .. "-keyout '%s' -out '%s' 2>/dev/null"):format(key, cert))
  if not ok then io.stderr:write("https_server: openssl req failed\n"); os.exit(1) end
  io.stderr:write("https_server: made a self-signed certificate: ", cert, "\n")
end

local ctx = assert(uring.tls.context { mode = "server", cert = cert, key = key,
  alpn = { "http/1.1" } })

uring.run(function()
  local srv = assert(uring.http.server { port = port, tls = ctx,
    on_error = function(err) io.stderr:write("https_server: ", tostring(err), "\n") end,
    handler = function(req)
      -- the request's socket is a TLS socket: what did the handshake settle?
      local info = req.socket:tlsinfo()
      return 200, ("hello over %s (%s), you asked for %s\n")
        :format(info.version, info.cipher, req.path), { ["Content-Type"] = "text/plain" }
    end })
  print(("listening on https://127.0.0.1:%d (certificate %s)"):format(srv:port(), cert))
  io.stdout:flush()
  local serving = uring.spawn(srv.serve, srv)
  uring.sleep(seconds)
  srv:close()
  serving:join()
  print(("served %d requests on %d connections; %d TLS handshakes failed")
    :format(srv.requests, srv.connections, srv.tls_failures))
end)
