--- examples/https_get.lua: fetch a URL over HTTPS, and show what the
-- TLS handshake settled.
--
--   lua5.4 examples/https_get.lua URL [--cacert FILE] [--insecure]
--
-- By default the server is checked against the system's CAs (Debian's
-- ca-certificates) and the URL's host name; --cacert trusts FILE instead
-- (a self-signed server, examples/https_server.lua); --insecure checks
-- nothing, and says so.  It connects once with uring.connect{tls} to
-- print the certificate and the handshake, then fetches with
-- uring.http.request, whose https:// uses the same context.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local url, cacert, insecure
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--cacert" then cacert = arg[i + 1]; i = i + 2
    elseif a == "--insecure" then insecure = true; i = i + 1
    elseif not url then url = a; i = i + 1
    else url = nil; break end
  end
  if not url or not url:match("^https://") then
    io.stderr:write("usage: lua5.4 examples/https_get.lua https://HOST[:PORT]/PATH [--cacert FILE] [--insecure]\n")
    os.exit(2)
  end
end

local ctx = assert(uring.tls.context { mode = "client", ca = cacert,
  verify = not insecure, alpn = { "http/1.1" } })
if insecure then print("warning: --insecure: the server is not checked") end

local ok = uring.run(function()
  local u = assert(uring.http.parse_url(url))
  local s, err = uring.connect(u.host, u.port, { tls = ctx })
  if not s then
    print("handshake failed: " .. err)
    return false
  end
  local info, cert = s:tlsinfo(), s:getpeercert()
  print(("%s, %s, ALPN %s, verified %s"):format(info.version, info.cipher,
    tostring(info.alpn), tostring(info.verified)))
  print("server certificate: " .. cert.subject .. ", issued by " .. cert.issuer
    .. ", valid until " .. cert.not_after)
  s:close()
  local res, msg = uring.http.request(url, { tls = ctx, timeout = 10 })
  if not res then
    print("request failed: " .. msg)
    return false
  end
  print(("HTTP %d %s, %d bytes:"):format(res.status, res.reason, #res.body))
  io.write(res.body)
  return res.status == 200
end)
os.exit(ok and 0 or 1)
