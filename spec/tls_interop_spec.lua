-- TLS against independent implementations from Debian, all on
-- 127.0.0.1: lua-uring's client against openssl s_server, python3's ssl
-- and nginx; lua-uring's server against curl, openssl s_client and
-- python3's ssl; TLS 1.2 and 1.3, SNI and ALPN; and a bulk echo hashed
-- on both ends.  Every peer is started and stopped here, bounded in time.
local uring = require "uring"
local helpers = require "helpers"
local tlsh = require "helpers.tls"
local run = helpers.runner(30)

-- the bulk echo's size: 16 MiB here; bench/tls.sh asks for 256
local BULK_MIB = tonumber(os.getenv("URING_TLS_BULK_MIB") or "16")

describe("TLS interop #io #net", function()
  local D, tmp
  setup(function()
    D = tlsh.certs() .. "/"
    tmp = helpers.tmpdir() .. "/"
  end)
  teardown(function()
    tlsh.cleanup()
    helpers.rmrf(tmp)
  end)
  helpers.leak_check(before_each, after_each)

  local function client_ctx(opts)
    opts = opts or {}
    opts.mode = "client"
    opts.ca = opts.ca or D .. "ca.pem"
    return assert(uring.tls.context(opts))
  end
  local function server_ctx(opts)
    opts = opts or {}
    opts.mode, opts.cert, opts.key = "server", D .. "srv.pem", D .. "srv.key"
    return assert(uring.tls.context(opts))
  end

  -- a peer program; its stdout is read line by line until want matches
  local function start(argv, want)
    argv.stdout = "pipe"
    argv.stderr = "null"
    local p = assert(uring.exec(tlsh.peer(argv)))
    if want then
      while true do
        local l = p.stdout:read("l")
        assert(l, "peer ended before saying " .. want)
        local cap = l:match(want)
        if cap then return p, cap end
      end
    end
    return p
  end
  local function finish(p)
    local rest = p.stdout:read("a")
    p.stdout:close()
    local ok, how, code = p:wait()
    return rest, ok, how, code
  end

  describe("lua-uring client", function()
    for _, v in ipairs { "1.2", "1.3" } do
      it("against openssl s_server, TLS " .. v .. ", with ALPN", function()
        run(function()
          local p, port = start({ "openssl", "s_server", "-accept", "127.0.0.1:0",
            "-naccept", "1", "-rev", "-cert", D .. "srv.pem", "-key", D .. "srv.key",
            "-tls" .. v:gsub("%.", "_"), "-alpn", "http/1.1" }, "^ACCEPT 127%.0%.0%.1:(%d+)")
          local s = assert(uring.connect("localhost", tonumber(port),
            { tls = client_ctx { alpn = { "h2", "http/1.1" } } }))
          local info = s:tlsinfo()
          assert.equal("TLSv" .. v, info.version)
          assert.equal("http/1.1", info.alpn)
          assert.is_true(info.verified)
          assert(s:send("hello, s_server\n"))
          assert.equal("revres_s ,olleh", s:receive("*l"))
          s:close()
          local _, ok = finish(p)
          assert.is_true(ok)
        end)
      end)
    end

    it("against python3's ssl server, with SNI, both versions", function()
      local script = tmp .. "pysrv.py"
      helpers.writeall(script, [[
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + "srv.pem", sys.argv[1] + "srv.key")
names = []
ctx.sni_callback = lambda s, name, c: names.append(name)
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(10)
print(srv.getsockname()[1], flush=True)
for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    ctx.maximum_version = v
    c, _ = srv.accept()
    with ctx.wrap_socket(c, server_side=True) as t:
        line = t.makefile("rb").readline()
        t.sendall(b"%s %s %s\n" % (t.version().encode(), names[-1].encode(), line.strip().upper()))
        t.unwrap()
]])
      run(function()
        local p, port = start({ "python3", script, D }, "^(%d+)$")
        for _, v in ipairs { "1.2", "1.3" } do
          local s = assert(uring.connect("127.0.0.1", tonumber(port),
            { tls = client_ctx(), servername = "localhost" }))
          assert(s:send("from uring\n"))
          assert.equal("TLSv" .. v .. " localhost FROM URING", s:receive("*l"))
          assert.is_nil(s:receive("*l"))      -- unwrap: close_notify
          s:close()
        end
        local _, ok = finish(p)
        assert.is_true(ok)
      end)
    end)

    it("against nginx with a TLS listener", function()
      local port = run(function()
        local srv, p = helpers.listen(); srv:close(); return p
      end)
      local prefix = tmp .. "nginx/"
      os.execute("mkdir -p " .. prefix .. "logs")
      helpers.writeall(prefix .. "nginx.conf", ([[
daemon off; master_process off; worker_processes 1;
error_log %slogs/error.log; pid %slogs/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;
  uwsgi_temp_path %s; scgi_temp_path %s;
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %ssrv.pem; ssl_certificate_key %ssrv.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "hello from nginx over $ssl_protocol\n"; }
  }
}
]]):format(prefix, prefix, prefix, prefix, prefix, prefix, prefix, port, D, D))
      run(function()
        local p = assert(uring.exec(tlsh.peer { "nginx", "-p", prefix, "-c", prefix .. "nginx.conf",
          stdout = "null", stderr = "null" }))
        local s
        for _ = 1, 100 do              -- until it listens (at most 5 s)
          s = uring.connect("localhost", port, { tls = client_ctx() })
          if s then break end
          uring.sleep(0.05)
        end
        assert(s, "nginx did not come up")
        assert(s:send("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
        local body = s:receive("*a")
        assert.matches("^HTTP/1.1 200", body)
        assert.matches("hello from nginx over TLSv1.3\n$", body)
        s:close()
        p:kill()
        p:wait()
      end)
    end)
  end)

  describe("lua-uring server", function()
    -- answers n HTTP/1.1 requests (one per connection) with what it saw
    local function https_once(ctx, n)
      local srv = assert(uring.listen("127.0.0.1", 0, { tls = ctx }))
      srv:settimeout(15)
      local _, port = srv:getsockname()
      local t = uring.spawn(function()
        for _ = 1, n do
          local c = assert(srv:accept())
          c:settimeout(10)
          local line = c:receive("*l")
          repeat local h = c:receive("*l") until h == "" or h == nil
          local info = c:tlsinfo() or {}
          local body = ("%s %s %s %s\n"):format(line, info.version, info.alpn, info.servername)
          c:send("HTTP/1.1 200 OK\r\nContent-Length: " .. #body
            .. "\r\nConnection: close\r\n\r\n" .. body)
          c:close()
        end
        srv:close()
      end)
      return port, t
    end

    for _, v in ipairs { "1.2", "1.3" } do
      it("answers curl --cacert over TLS " .. v .. " with ALPN and SNI", function()
        run(function()
          local port, t = https_once(server_ctx { alpn = { "http/1.1" } }, 1)
          local p = start { "curl", "-sS", "--max-time", "10", "--cacert", D .. "ca.pem",
            "--tlsv" .. v, "--tls-max", v, "--resolve", "localhost:" .. port .. ":127.0.0.1",
            "https://localhost:" .. port .. "/hi" }
          local out, ok = finish(p)
          assert.is_true(ok)
          assert.equal("GET /hi HTTP/1.1 TLSv" .. v .. " http/1.1 localhost\n", out)
          assert(t:join())
        end)
      end)
    end

    it("answers openssl s_client, which verifies it", function()
      run(function()
        local srv = assert(uring.listen("127.0.0.1", 0, { tls = server_ctx { alpn = { "echo" } } }))
        local _, port = srv:getsockname()
        local t = uring.spawn(function()
          local c = assert(srv:accept())
          local l = c:receive("*l")
          c:send("echo: " .. l .. " " .. c:tlsinfo().alpn .. "\n")
          c:close()
          srv:close()
        end)
        local p = assert(uring.exec(tlsh.peer { "openssl", "s_client", "-connect", "127.0.0.1:" .. port,
          "-servername", "localhost", "-verify_hostname", "localhost", "-CAfile", D .. "ca.pem",
          "-verify_return_error", "-alpn", "echo", "-quiet",
          stdin = "pipe", stdout = "pipe", stderr = "null" }))
        p.stdin:write("line from s_client\n")
        p.stdin:close()
        local out, ok = finish(p)
        assert.equal("echo: line from s_client echo\n", out)
        assert.is_true(ok)
        assert(t:join())
      end)
    end)

    it("answers python3's ssl client, with a client certificate", function()
      local script = tmp .. "pycli.py"
      helpers.writeall(script, [[
import socket, ssl, sys
d, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(cafile=d + "ca.pem")
ctx.load_cert_chain(d + "cli.pem", d + "cli.key")
ctx.set_alpn_protocols(["x", "y"])
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as t:
        t.sendall(b"hi from python\n")
        print(t.makefile("rb").readline().decode().strip(), t.version(), t.selected_alpn_protocol())
]])
      run(function()
        local ctx = server_ctx { verify = true, ca = D .. "ca.pem", alpn = { "y" } }
        local srv = assert(uring.listen("127.0.0.1", 0, { tls = ctx }))
        local _, port = srv:getsockname()
        local t = uring.spawn(function()
          local c = assert(srv:accept())
          local l = c:receive("*l")
          c:send(l:upper() .. " " .. c:getpeercert().subject .. "\n")
          c:close()
          srv:close()
        end)
        local p = start { "python3", script, D, tostring(port) }
        local out, ok = finish(p)
        assert.equal("HI FROM PYTHON CN=client TLSv1.3 y\n", out)
        assert.is_true(ok)
        assert(t:join())
      end)
    end)

    it(BULK_MIB .. " MiB through a TLS echo, hashed on both ends (python3 ssl client)", function()
      local script = tmp .. "pybulk.py"
      helpers.writeall(script, [[
import hashlib, os, socket, ssl, sys
d, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20
ctx = ssl.create_default_context(cafile=d + "ca.pem")
raw = socket.create_connection(("127.0.0.1", port), timeout=60)
t = ctx.wrap_socket(raw, server_hostname="localhost")
# one SSL object is not for two threads: a slice out, its echo back
sent, got, n, left = hashlib.sha256(), hashlib.sha256(), 0, total
while left:
    block = os.urandom(min(left, 1 << 20))
    sent.update(block)
    t.sendall(block)
    left -= len(block)
    want = n + len(block)
    while n < want:
        b = t.recv(1 << 18)
        if not b: break
        got.update(b); n += len(b)
t.unwrap()
print(n, sent.hexdigest() == got.hexdigest(), sent.hexdigest())
]])
      run(function()
        local srv = assert(uring.listen("127.0.0.1", 0, { tls = server_ctx() }))
        local _, port = srv:getsockname()
        local t = uring.spawn(function()
          local c = assert(srv:accept())
          local n = 0
          while true do
            local d = c:recv()
            if not d then break end
            n = n + #d
            assert(c:send(d))
          end
          c:close()
          srv:close()
          return n
        end)
        local p = start { "python3", script, D, tostring(port), tostring(BULK_MIB) }
        local out, ok = finish(p)
        assert.is_true(ok)
        local n, same = out:match("^(%d+) (%a+) %x+\n$")
        assert.equal(BULK_MIB << 20, tonumber(n))
        assert.equal("True", same)
        assert.same({ true, BULK_MIB << 20 }, { t:join() })
      end, 120)
    end)
  end)
end)
