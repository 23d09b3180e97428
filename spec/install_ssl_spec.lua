-- uring.install_ssl(): LuaSec's ssl API over uring.tls (lua/uring/ssl.lua),
-- with Debian's unmodified ssl/https.lua on top, concurrent in the loop.
local uring = require "uring"
local helpers = require "helpers"
local tlsh = require "helpers.tls"
local run = helpers.runner(20)

describe("uring.install_ssl #io #net", function()
  local D
  setup(function() D = tlsh.certs() .. "/" end)
  teardown(function()
    uring.install_ssl(false)
    tlsh.cleanup()
  end)
  helpers.leak_check(before_each, after_each)

  -- an https server whose handler takes 0.2 s; it counts the most
  -- handlers running at once
  local busy, most = 0, 0
  local function start()
    local ctx = assert(uring.tls.context { mode = "server", cert = D .. "srv.pem", key = D .. "srv.key" })
    busy, most = 0, 0
    local srv = assert(uring.http.server { tls = ctx, handler = function(req)
      busy = busy + 1
      most = math.max(most, busy)
      uring.sleep(0.2)
      busy = busy - 1
      return 200, "hi " .. req.path
    end })
    return srv, uring.spawn(srv.serve, srv)
  end

  it("runs Debian's ssl.https.request, many at once", function()
    run(function()
      local srv, task = start()
      local ssl = uring.install_ssl()
      assert.equal(ssl, require "ssl")
      local https = require "ssl.https"
      local tasks = {}
      for i = 1, 8 do
        tasks[i] = uring.spawn(https.request, "https://localhost:" .. srv:port() .. "/n" .. i)
      end
      for i = 1, 8 do
        local ok, body, code = tasks[i]:join()
        assert.is_true(ok)
        assert.equal("hi /n" .. i, body)
        assert.equal(200, code)
      end
      -- the requests overlapped: their handlers ran at the same time
      assert.is_true(most >= 2, "at most " .. most .. " handler(s) at once")
      assert.is_nil(package.loaded["ssl.core"])   -- LuaSec's C never loaded
      srv:close()
      assert(task:join())
    end)
  end)

  it("wraps a LuaSocket tcp object, verifies the peer, and says why not", function()
    run(function()
      local srv, task = start()
      local ssl = uring.install_ssl()
      local socket = require "socket"
      local function try(cafile)
        local tcp = assert(socket.tcp())
        assert(tcp:connect("127.0.0.1", srv:port()))
        local conn = assert(ssl.wrap(tcp, { mode = "client", verify = "peer", cafile = cafile,
          protocol = "tlsv1_2" }))
        conn:sni("localhost")
        local ok, err = conn:dohandshake()
        return conn, ok, err
      end
      local conn, ok = try(D .. "ca.pem")
      assert.is_true(ok)
      assert.equal("TLSv1.2", conn:info("protocol"))
      assert.equal("localhost", conn:getpeercertificate():subject()[1].value)
      assert.is_true((conn:getpeerverification()))
      assert.equal(19, conn:send("GET /x HTTP/1.0\r\n\r\n"))
      assert.matches("\r\n\r\nhi /x$", conn:receive("*a"))
      conn:close()
      local bad, ok2, err = try(D .. "ca2.pem")
      assert.is_nil(ok2)
      assert.matches("certificate verify failed", err)
      bad:close()
      srv:close()
      assert(task:join())
    end)
  end)

  it("runs examples/luasec_https.lua", function()
    -- 5 requests answered after 200 ms: the handshakes, which do not
    -- overlap (one process does both ends), may take 160 ms each before
    -- the check below fails (10 x 50 ms left them 45 ms: a loaded machine
    -- took more)
    local out, code = helpers.sh("timeout 60 " .. helpers.lua_cmd() .. " examples/luasec_https.lua 5 200")
    assert.equal(0, code, out)
    local seq = tonumber(out:match("sequential%s+([%d.]+)"))
    local conc = tonumber(out:match("concurrent%s+([%d.]+)"))
    assert(seq and conc, out)
    assert.is_true(seq >= 5 * 0.2, out)
    -- one after another they cannot take less than 5 x 200 ms: under that,
    -- they overlapped (a ratio to the sequential time would be a timing
    -- test, at the mercy of the machine's load)
    assert.is_true(conc < 5 * 0.2, out)
  end)

  it("checks its arguments as LuaSec does", function()
    local ssl = uring.install_ssl()
    assert.matches(helpers.badarg(1, "newcontext", "table expected, got number"),
      helpers.errmsg(ssl.newcontext, 1))
    assert.same({ nil, "invalid mode" }, { ssl.newcontext { mode = "both" } })
    assert.same({ nil, "unsupported protocol 'sslv3'" }, { ssl.newcontext { mode = "client", protocol = "sslv3" } })
    local ctx, err = ssl.newcontext { mode = "server", key = D .. "srv.key" }
    assert.is_nil(ctx)
    assert.equal("a server context needs cert and key", err)
    assert.same({ nil, "ssl.wrap: a connected uring.socket tcp object expected" },
      { ssl.wrap({}, { mode = "client" }) })
    uring.install_ssl(false)
    assert.is_nil(package.loaded.ssl)
    assert.matches("call uring.install_ssl%(%) first", helpers.errmsg(function() return ssl.https end))
  end)
end)
