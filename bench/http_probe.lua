--- bench/http_probe.lua: do the bench's servers speak the same HTTP?
--
--   lua5.4 bench/http_probe.lua PORT
--
-- Connects (with luv, a client independent of every server) and sends, in
-- one write, a pipelined batch: a GET, a HEAD, a POST with a
-- Content-Length body, a blank line, a GET with mixed-case
-- "connection: Keep-Alive" on HTTP/1.0, then a GET with
-- "Connection: close".  Reads until the server closes and writes what came
-- back to stdout, so bench/http.sh can check that every server answers
-- byte for byte alike.  Exit status 1 if nothing came back in 5 s.
local uv = require "luv"
local port = tonumber(arg[1])
if not port then
  io.stderr:write("usage: lua5.4 bench/http_probe.lua PORT\n")
  os.exit(2)
end

local PROBE = table.concat{
  "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: probe\r\n\r\n",
  "HEAD /head HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  "POST /post HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 11\r\n\r\nhello=world",
  "\r\n",
  "GET /old HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n",
  "GET /last HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
}

local got, ok = {}, false
local c = uv.new_tcp()
local timer = uv.new_timer()
timer:start(5000, 0, function() c:close(); timer:close() end)
c:connect("127.0.0.1", port, function(err)
  if err then io.stderr:write("probe: ", err, "\n"); c:close(); timer:close(); return end
  c:write(PROBE)
  c:read_start(function(rerr, data)
    if data then got[#got + 1] = data; return end
    ok = not rerr
    c:close()
    timer:stop(); timer:close()
  end)
end)
uv.run()
io.stdout:write(table.concat(got))
os.exit(ok and #got > 0 and 0 or 1)
