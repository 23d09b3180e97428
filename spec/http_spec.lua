-- spec/http_spec.lua: uring.http against clients and servers not written
-- here.  The server runs in this process (inside uring.run) and is driven
-- by curl, nc and wrk started in the background (`timeout 60`, their pid
-- kept and killed in a `finally`), whose exit the test polls for with
-- uring.sleep so the loop keeps serving meanwhile.  The client fetches
-- from `python3 -m http.server` serving a temp dir, and from our own
-- server for chunked bodies, keep-alive and timeouts.  Everything listens
-- on 127.0.0.1 port 0.  after_each: nothing in flight, no task, no fd
-- leaked.
local uring = require "uring"
local helpers = require "helpers"
local http = uring.http

local have, shq = helpers.have, helpers.shq
local readall, writeall = helpers.readall, helpers.writeall

local run = helpers.runner(20)   -- uring.run with a 20 s watchdog

-- External commands, run without the ASan preload (as net_examples_spec)
local EXT = "env -u LD_PRELOAD "
local children = {}

-- Start `cmd` in the background (bounded by timeout 60); returns a handle.
local function bg(cmd)
  local h = { out = os.tmpname(), rc = os.tmpname(), pidf = os.tmpname() }
  os.remove(h.rc)
  local inner = ("echo $$ > %s; exec %stimeout 60 %s"):format(h.pidf, EXT, cmd)
  assert(os.execute(("(sh -c %s > %s 2>&1 < /dev/null; echo $? > %s) &")
    :format(shq(inner), h.out, h.rc)))
  children[#children + 1] = h
  return h
end

-- Wait (inside a task, the loop serving meanwhile) for a background
-- command; returns its output and exit status.
local function wait(h, secs)
  local t0 = uring.now()
  while true do
    local rc = readall(h.rc)
    if rc and rc:match("%d") then
      h.done = true
      return readall(h.out), tonumber(rc:match("%d+"))
    end
    if uring.now() - t0 > (secs or 15) then error("background command did not end", 2) end
    uring.sleep(0.02)
  end
end

local function kill_children()
  for _, h in ipairs(children) do
    local pid = readall(h.pidf)
    if not h.done and pid and pid:match("%d") then
      os.execute("kill " .. pid:match("%d+") .. " 2>/dev/null")
    end
    os.remove(h.out); os.remove(h.rc); os.remove(h.pidf)
  end
  children = {}
end

-- a server with routes for the tests, serving in a task
local function start(opts)
  opts = opts or {}
  local r = http.router()
  r:get("^/$", function(_, res)
    res:header("Content-Type", "text/plain")
    res:finish("Hello, world!\n")
  end)
  r:get("^/users/(%d+)$", function(req, res, id)
    return 200, "user " .. id .. " " .. tostring(req.params[1] == id) .. "\n"
  end)
  r:post("^/echo$", function(req, res)
    res:header("X-TE", req.headers["Transfer-Encoding"] or "none")
    res:header("X-Len", #req.body)
    res:finish(req.body)
  end)
  r:get("^/headers$", function(req, res)
    res:finish(("%s|%s|%s"):format(req.headers["x-custom"], req.headers["X-CUSTOM"],
      req:header("X-Custom")))
  end)
  r:get("^/stream$", function(_, res)
    for i = 1, 5 do
      res:write(("part %d\n"):format(i))
      uring.yield()
    end
    res:finish()
  end)
  r:get("^/slow$", function(_, res)
    uring.sleep(opts.slow or 0.3)
    res:finish("slow done\n")
  end)
  r:get("^/boom$", function() error("boom in handler") end)
  r:get("^/redirect$", function(_, res)
    res:header("Location", "/users/7")
    return 302, ""
  end)
  if opts.root then r:get("^/static(/.*)$", http.static(opts.root)) end
  local errors = {}
  local srv = assert(http.server { routes = r, max_body = opts.max_body,
    grace = opts.grace, on_error = function(e) errors[#errors + 1] = tostring(e) end })
  local task = uring.spawn(srv.serve, srv)
  return srv, "http://127.0.0.1:" .. srv:port(), task, errors
end

local function curl(args) return bg("curl -sS " .. args) end

describe("uring.http #net", function()
  local fds
  setup(function()
    for _, cmd in ipairs { "curl", "nc", "wrk", "python3" } do
      assert(have(cmd), cmd .. " is missing (apt-get install curl netcat-openbsd wrk python3)")
    end
    uring.run(function() uring.nop() end)     -- the ring exists before the fd counts
  end)
  before_each(function() fds = helpers.fds() end)
  after_each(function()
    kill_children()
    local s = uring.stats()
    assert.equal(0, s.inflight)
    assert.equal(0, s.tasks)
    assert.equal(fds, helpers.fds())
  end)

  describe("server, against curl, nc and wrk", function()
    it("answers GET and HEAD with Content-Length, keeping the connection", function()
      run(function()
        local srv, url, task = start()
        local out, rc = wait(curl("-i " .. url .. "/"))
        assert.equal(0, rc, out)
        assert.equal("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
          .. "Connection: keep-alive\r\n\r\nHello, world!\n", out)
        out, rc = wait(curl("-I " .. url .. "/users/12"))
        assert.equal(0, rc, out)
        assert.matches("^HTTP/1.1 200 OK\r\n", out)
        assert.matches("Content%-Length: 13\r\n", out)
        assert.matches("\r\n\r\n$", out)                  -- no body
        srv:close()
        assert(task:join())
      end)
    end)

    it("routes by pattern with captures; 404, 405 with Allow, 500 and keeps running", function()
      run(function()
        local srv, url, task, errors = start()
        local out = wait(curl(("-w ' %%{http_code}\\n' %s/users/42 %s/nothing %s/boom %s/users/1")
          :format(url, url, url, url)))
        assert.equal("user 42 true\n 200\n404 Not Found\n 404\n"
          .. "500 Internal Server Error\n 500\nuser 1 true\n 200\n", out)
        assert.equal(1, #errors)
        assert.matches("boom in handler", errors[1])
        out = wait(curl("-i -X DELETE " .. url .. "/echo"))
        assert.matches("^HTTP/1.1 405 Method Not Allowed\r\n", out)
        assert.matches("Allow: POST\r\n", out)
        out = wait(curl("-i -X POST " .. url .. "/users/3"))
        assert.matches("Allow: GET, HEAD\r\n", out)
        srv:close()
        assert(task:join())
      end)
    end)

    it("reads case-insensitive headers", function()
      run(function()
        local srv, url, task = start()
        local out = wait(curl("-H 'X-Custom: v1' " .. url .. "/headers"))
        assert.equal("v1|v1|v1", out)
        srv:close()
        assert(task:join())
      end)
    end)

    it("takes POST bodies by Content-Length and chunked (curl --data-binary)", function()
      local dir = helpers.tmpdir()
      finally(function() helpers.rmrf(dir) end)
      local t = {}
      for i = 1, 20000 do t[i] = ("line %06d\n"):format(i) end    -- 240 KB
      local data = table.concat(t)
      writeall(dir .. "/up.bin", data)
      run(function()
        local srv, url, task = start()
        -- Content-Length (curl sends Expect: 100-continue for this size)
        local out, rc = wait(curl(("-D %s/h1 -o %s/b1 --data-binary @%s/up.bin %s/echo")
          :format(dir, dir, dir, url)))
        assert.equal(0, rc, out)
        assert.equal(data, readall(dir .. "/b1"))
        assert.matches("X%-TE: none\r\n", readall(dir .. "/h1"))
        -- chunked upload
        out, rc = wait(curl(("-D %s/h2 -o %s/b2 --data-binary @%s/up.bin "
          .. "-H 'Transfer-Encoding: chunked' %s/echo"):format(dir, dir, dir, url)))
        assert.equal(0, rc, out)
        assert.equal(data, readall(dir .. "/b2"))
        local h2 = readall(dir .. "/h2")
        assert.matches("X%-TE: chunked\r\n", h2)
        assert.matches("X%-Len: " .. #data .. "\r\n", h2)
        srv:close()
        assert(task:join())
      end)
    end)

    it("refuses a body over max_body with 413 and a bad request with 400", function()
      run(function()
        local srv, url, task = start { max_body = 1000 }
        local out = wait(curl("-i --data-binary " .. ("x"):rep(2000) .. " " .. url .. "/echo"))
        assert.matches("^HTTP/1.1 413 ", out)
        local port = srv:port()
        out = wait(bg(("printf 'NONSENSE\\r\\n\\r\\n' | nc -N 127.0.0.1 %d"):format(port)))
        assert.matches("^HTTP/1.1 400 Bad Request\r\n", out)
        srv:close()
        assert(task:join())
      end)
    end)

    it("streams a chunked response (res:write without a length)", function()
      run(function()
        local srv, url, task = start()
        local out = wait(curl("--raw -i " .. url .. "/stream"))
        assert.matches("Transfer%-Encoding: chunked\r\n", out)
        assert.matches("\r\n\r\n7\r\npart 1\n\r\n7\r\npart 2\n\r\n", out)
        assert.matches("0\r\n\r\n$", out)
        out = wait(curl(url .. "/stream"))
        assert.equal("part 1\npart 2\npart 3\npart 4\npart 5\n", out)
        srv:close()
        assert(task:join())
      end)
    end)

    it("keeps a curl connection alive across two URLs", function()
      run(function()
        local srv, url, task = start()
        local out = wait(curl(("-w ' %%{num_connects}\\n' %s/users/1 %s/users/2"):format(url, url)))
        assert.equal("user 1 true\n 1\nuser 2 true\n 0\n", out)
        assert.equal(1, srv.connections)
        srv:close()
        assert(task:join())
      end)
    end)

    it("answers pipelined requests (two in one write) in order", function()
      run(function()
        local srv, _, task = start()
        local req = "GET /users/1 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
          .. "GET /users/2 HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n"
        local out = wait(bg(("printf '%s' | nc -N 127.0.0.1 %d"):format(req, srv:port())))
        local a = out:find("user 1 true", 1, true)
        local b = out:find("user 2 true", 1, true)
        assert(a and b and a < b, out)
        local _, n = out:gsub("HTTP/1%.1 200 OK\r\n", "")
        assert.equal(2, n)
        assert.matches("Connection: close\r\n\r\nuser 2 true\n$", out)
        -- and with our own raw socket: both requests in one send
        local s = assert(uring.connect("127.0.0.1", srv:port()))
        assert(s:send("GET /users/3 HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\n"
          .. "Host: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"))
        local all = assert(s:receive("*a"))
        s:close()
        assert.matches("user 3 true\n.*\r\n\r\nhello$", all)
        assert.equal(2, srv.connections)
        srv:close()
        assert(task:join())
      end)
    end)

    it("serves wrk -t1 -c200 -d3s with no socket errors", function()
      run(function()
        local srv, url, task = start()
        local out, rc = wait(bg("wrk -t1 -c200 -d3s " .. url .. "/"), 30)
        assert.equal(0, rc, out)
        local reqs = tonumber(out:match("(%d+) requests in"))
        assert(reqs and reqs > 1000, out)
        assert.is_nil(out:match("Socket errors"), out)
        assert.is_nil(out:match("Non%-2xx"), out)
        io.write("# wrk -t1 -c200 -d3s: ", out:match("Requests/sec:%s*[%d.]+") or "?", "\n")
        srv:close()
        assert(task:join())
      end, 40)
    end)

    it("serves static files: types, lengths, big files, HEAD, traversal refused", function()
      local dir = helpers.tmpdir()
      finally(function() helpers.rmrf(dir) end)
      os.execute("mkdir -p " .. dir .. "/www/sub")
      writeall(dir .. "/secret.txt", "secret\n")
      writeall(dir .. "/www/index.html", "<h1>hi</h1>\n")
      writeall(dir .. "/www/sub/a.css", "body{}\n")
      os.execute("head -c 3000000 /dev/urandom > " .. dir .. "/www/big.bin")
      run(function()
        local srv, url, task = start { root = dir .. "/www" }
        local s = url .. "/static"
        local out = wait(curl(("-o %s/got.bin -w '%%{http_code} %%{content_type} %%{size_download}' %s/big.bin")
          :format(dir, s)))
        assert.equal("200 application/octet-stream 3000000", out)
        assert.equal(readall(dir .. "/www/big.bin"), readall(dir .. "/got.bin"))
        out = wait(curl("-i " .. s .. "/sub/a.css"))
        assert.matches("Content%-Type: text/css", out)
        assert.matches("Content%-Length: 7\r\n", out)
        assert.matches("\r\n\r\nbody{}\n$", out)
        out = wait(curl("-w ' %{content_type}' " .. s .. "/"))
        assert.equal("<h1>hi</h1>\n text/html; charset=utf-8", out)
        out = wait(curl("-I " .. s .. "/big.bin"))
        assert.matches("Content%-Length: 3000000\r\n", out)
        for _, p in ipairs { "/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt" } do
          out = wait(curl("--path-as-is -w ' %{http_code}' " .. s .. p))
          assert.matches(" 403$", out)
          assert.is_nil(out:find("secret", 1, true))
        end
        out = wait(curl("-w ' %{http_code}' " .. s .. "/missing.txt"))
        assert.matches(" 404$", out)
        srv:close()
        assert(task:join())
      end)
    end)

    it("closes gracefully: in-flight requests finish, idle connections close", function()
      run(function()
        local srv, url, task = start { slow = 0.4 }
        -- an idle kept-alive connection of ours
        local idle = assert(uring.connect("127.0.0.1", srv:port()))
        assert(idle:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        local first = assert(idle:receive("*l"))
        assert.equal("HTTP/1.1 200 OK", first)
        local h = curl("-i " .. url .. "/slow")
        uring.sleep(0.15)                     -- the slow request is in flight
        srv:close()
        local out = wait(h)
        assert.matches("^HTTP/1.1 200 OK\r\n", out)
        assert.matches("Connection: close\r\n", out)
        assert.matches("slow done\n$", out)
        -- the idle connection was closed: the rest of its answer, then EOF
        local rest = idle:receive("*a")
        assert.matches("Hello, world!\n$", rest)
        idle:close()
        assert(task:join())
        -- no longer accepting
        local c, err = uring.connect("127.0.0.1", srv:port())
        assert.is_nil(c)
        assert.matches("refused", err)
      end)
    end)

    it("cuts requests still running at the grace deadline", function()
      run(function()
        local srv, url, task = start { slow = 30, grace = 0.2 }
        local h = curl(url .. "/slow")
        uring.sleep(0.15)
        local t0 = uring.now()
        srv:close()
        assert(task:join())
        assert(uring.now() - t0 < 2)
        local _, rc = wait(h)
        assert.are_not.equal(0, rc)            -- curl saw the connection cut
      end)
    end)
  end)

  describe("request heads, parsed in C (sock:_take_request)", function()
    -- a connected pair: our client socket and the server's side
    local function pair()
      local lsock = assert(uring.listen("127.0.0.1", 0))
      local _, port = lsock:getsockname()
      local t = uring.spawn(function() return assert(lsock:accept()) end)
      local c = assert(uring.connect("127.0.0.1", port))
      local _, s = t:join()
      lsock:close()
      return c, s
    end

    -- take one head out of s, filling until it is whole; returns what
    -- _take_request returned (packed)
    local function take(s, max)
      while true do
        local r = table.pack(s:_take_request(max or 16384))
        if r[1] then return r end              -- nil, false: not all here yet
        assert(s:_fill())
      end
    end

    it("takes a head whole: parts, lines, keep-alive and framing", function()
      run(function()
        local c, s = pair()
        assert(c:send("\r\n\r\nPOST /a/b?x=1&y HTTP/1.1\r\nHost: h\r\n"
          .. "X-A: 1\r\nx-a:  2 \r\nContent-Length: 5\r\ncontent-length: 5\r\n"
          .. "Connection: Keep-Alive, Upgrade\r\nExpect: 100-continue\r\n\r\nhello"
          .. "GET / HTTP/1.0\nTransfer-Encoding: gzip\nTransfer-Encoding: chunked\n\n"))
        local r = take(s)
        assert.equal(10, r.n)
        assert.same({ "POST", "/a/b?x=1&y", "/a/b", "x=1&y", false }, { r[1], r[2], r[3], r[4], r[5] })
        assert.equal(true, r[7])                 -- keep
        assert.equal(5, r[8])                    -- length (repeated, equal: once)
        assert.is_nil(r[9])
        assert.equal("100-continue", r[10])
        -- the header table a handler's req.headers is, built from the lines
        -- by the C parser when first asked
        local h = setmetatable({ r[6] }, http.Request).headers   -- [1]: the head
        assert.same({ host = "h", ["x-a"] = "1, 2", ["content-length"] = "5",
          connection = "Keep-Alive, Upgrade", expect = "100-continue" }, h)
        assert.equal("1, 2", h["X-A"])
        assert.equal("hello", s:_take(5))
        r = take(s)                              -- bare LF lines; HTTP/1.0
        assert.same({ "GET", "/", nil, nil, true }, { r[1], r[2], r[3], r[4], r[5] })
        assert.equal(false, r[7])                -- 1.0 without keep-alive
        assert.is_nil(r[8])
        assert.equal("gzip, chunked", r[9])      -- repeated: joined
        assert.is_nil(s:_take_request(100))      -- nothing left
        c:close(); s:close()
      end)
    end)

    it("answers malformed heads with a status, never a crash", function()
      run(function()
        local cases = {
          { "NONSENSE\r\n\r\n", 400 }, { "GET\r\n\r\n", 400 },
          { "GET / HTTP/2.0\r\n\r\n", 400 }, { "GET  / HTTP/1.1\r\n\r\n", 400 },
          { "GET / HTTP/1.1 \r\n\r\n", 400 }, { "GET / HTTP/1.x\r\n\r\n", 400 },
          { " GET / HTTP/1.1\r\n\r\n", 400 }, { "G\0T / HTTP/1.1\r\n\r\n", 400 },
          { "GET /\0 HTTP/1.1\r\n\r\n", 400 }, { "GET /a b HTTP/1.1\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\n folded: x\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\n: empty\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\nX: a\r\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\nX: \127\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400 },
          { "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400 },
          { "\r\r\n\r\n", 400 },
        }
        local c, s = pair()
        for _, case in ipairs(cases) do
          assert(c:send(case[1]))
          local r = take(s)
          assert.equal(1, r.n, case[1])
          assert.equal(case[2], r[1], case[1])
          s:_take()                              -- a bad head stays: drop it
        end
        -- random bytes, with and without a blank line: a status, a
        -- request, or (no end yet) false -- and the core still works
        local seed = 42
        local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
        local alphabet = "GET /HTP1.0\r\n:\t \0\127\255aZ-?"
        for _ = 1, 2000 do
          local t = {}
          for i = 1, rnd(60) do
            local k = rnd(#alphabet + 20)
            t[i] = k < #alphabet and alphabet:sub(k + 1, k + 1) or string.char(rnd(256))
          end
          if rnd(2) == 0 then t[#t + 1] = "\r\n\r\n" end
          assert(c:send(table.concat(t)))
          while s:_buffered() < #table.concat(t) do assert(s:_fill()) end
          local r = table.pack(s:_take_request(64))
          assert(r[1] == nil or r[1] == false or math.type(r[1]) == "integer" or r.n == 10)
          if math.type(r[1]) == "integer" then
            assert(r[1] == 400 or r[1] == 414 or r[1] == 431, tostring(r[1]))
          end
          s:_take()
        end
        c:close(); s:close()
      end)
    end)

    it("refuses heads too big: 414 for the request line, 431 for the headers", function()
      run(function()
        local c, s = pair()
        -- complete heads
        assert(c:send("GET /" .. ("a"):rep(200) .. " HTTP/1.1\r\n\r\n"))
        assert.same({ n = 1, 414 }, take(s, 100)); s:_take()
        assert(c:send("GET / HTTP/1.1\r\nX: " .. ("b"):rep(200) .. "\r\n\r\n"))
        assert.same({ n = 1, 431 }, take(s, 100)); s:_take()
        -- heads that never end: refused once past the limit, not waited for
        assert(c:send(("c"):rep(300)))
        assert.same({ n = 1, 414 }, take(s, 100)); s:_take()
        assert(c:send("GET / HTTP/1.1\r\n" .. ("X: y\r\n"):rep(100)))
        assert.same({ n = 1, 431 }, take(s, 100)); s:_take()
        -- just within: taken
        assert(c:send("GET /" .. ("a"):rep(84) .. " HTTP/1.1\r\nX: " .. ("b"):rep(95) .. "\r\n\r\n"))
        assert.equal(10, take(s, 100).n)
        c:close(); s:close()
      end)
    end)

    it("serves heads split across packets, byte by byte and pipelined", function()
      run(function()
        local srv, _, task = start()
        local c = assert(uring.connect("127.0.0.1", srv:port()))
        c:setoption("nodelay", true)
        local one = "GET /users/5 HTTP/1.1\r\nHost: x\r\nX-Long: " .. ("z"):rep(100) .. "\r\n\r\n"
        for i = 1, #one do                     -- one byte per packet
          assert(c:send(one:sub(i, i)))
          uring.sleep(0.001)
        end
        local function answer()
          local status = assert(c:receive("*l"))
          local len
          while true do
            local l = assert(c:receive("*l"))
            if l == "" then break end
            len = tonumber(l:match("^Content%-Length: (%d+)$")) or len
          end
          return status, assert(c:receive(len))
        end
        assert.same({ "HTTP/1.1 200 OK", "user 5 true\n" }, { answer() })
        -- three requests cut at every place in turn, CR and LF apart
        local three = "GET /users/1 HTTP/1.1\r\nHost: x\r\n\r\n"
          .. "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
          .. "GET /users/3 HTTP/1.1\r\n\r\n"
        for cut = 1, #three - 1, 7 do
          assert(c:send(three:sub(1, cut)))
          uring.sleep(0.002)
          assert(c:send(three:sub(cut + 1)))
          assert.same({ "HTTP/1.1 200 OK", "user 1 true\n" }, { answer() })
          assert.same({ "HTTP/1.1 200 OK", "abc" }, { answer() })
          assert.same({ "HTTP/1.1 200 OK", "user 3 true\n" }, { answer() })
        end
        c:close()
        srv:close()
        assert(task:join())
      end)
    end)

    it("answers bad and oversized heads on the wire, then closes; HTTP/1.0 closes", function()
      run(function()
        local srv, _, task = start()
        -- everything the server sent until it closed (a reset, when it
        -- closes with our bytes unread, ends the reading too)
        local function exchange(data)
          local c = assert(uring.connect("127.0.0.1", srv:port()))
          assert(c:send(data))
          local got = {}
          while true do
            local d = c:recv()
            if not d then break end
            got[#got + 1] = d
          end
          c:close()
          return table.concat(got)
        end
        assert.matches("^HTTP/1.1 400 Bad Request\r\n.*Connection: close\r\n",
          exchange("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"))
        assert.matches("^HTTP/1.1 414 ", exchange("GET /" .. ("a"):rep(20000) .. " HTTP/1.1\r\n\r\n"))
        assert.matches("^HTTP/1.1 431 ", exchange("GET / HTTP/1.1\r\n" .. ("X-Pad: 0123456789\r\n"):rep(1200)))
        assert.matches("^HTTP/1.1 501 ", exchange("POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"))
        -- HTTP/1.0: one answer, then close; with keep-alive: two
        local out = exchange("GET /users/1 HTTP/1.0\r\n\r\nGET /users/2 HTTP/1.0\r\n\r\n")
        local _, n = out:gsub("HTTP/1%.1 200 OK", "")
        assert.equal(1, n)
        assert.matches("Connection: close\r\n", out)
        out = exchange("GET /users/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
          .. "GET /users/2 HTTP/1.0\r\n\r\n")
        _, n = out:gsub("HTTP/1%.1 200 OK", "")
        assert.equal(2, n)
        srv:close()
        assert(task:join())
      end)
    end)
  end)

  describe("regressions", function()
    -- everything a server sent until it closed
    local function exchange(port, data)
      local c = assert(uring.connect("127.0.0.1", port))
      assert(c:send(data))
      local got = {}
      while true do
        local d = c:recv()
        if not d then break end
        got[#got + 1] = d
      end
      c:close()
      return table.concat(got)
    end

    it("regression #12: a chunk size of 16+ hex digits is 400; a bad (status, body, headers) returned is 500; the server keeps serving", function()
      run(function()
        local errors, checked = {}, {}
        local srv = assert(http.server { on_error = function(e) errors[#errors + 1] = e end,
          handler = function(req, res)
            if req.path == "/status" then return 5, "x" end
            if req.path == "/headers" then return 200, "x", { ["X\r\nEvil"] = "1" } end
            if req.path == "/name" then
              checked[#checked + 1] = select(2, pcall(res.header, res, "X\r\nEvil", "1"))
              checked[#checked + 1] = select(2, pcall(res.header, res, "X-A", "a\r\nEvil: 1"))
            end
            return 200, "ok"
          end })
        local task = uring.spawn(srv.serve, srv)
        local port = srv:port()
        -- the size wrapped to a negative integer and raised in sock:receive,
        -- which ended the connection's task with an error
        assert.matches("^HTTP/1.1 400 ", exchange(port, "POST / HTTP/1.1\r\n"
          .. "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nx\r\n0\r\n\r\n"))
        assert.matches("^HTTP/1.1 500 ", exchange(port, "GET /status HTTP/1.1\r\n\r\n"))
        assert.matches("^HTTP/1.1 500 ", exchange(port, "GET /headers HTTP/1.1\r\n\r\n"))
        assert.equal(2, #errors)
        assert.matches("bad argument #2 to 'reply' %(HTTP status code expected%)", errors[1])
        assert.matches("bad argument #4 to 'reply' %(invalid header name%)", errors[2])
        local out = exchange(port, "GET /name HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert.matches("^HTTP/1.1 200 ", out)
        assert.not_matches("Evil", out)
        assert.matches("invalid header name", checked[1])
        assert.matches("CR or LF in value", checked[2])
        srv:close()
        assert(task:join())
      end)
    end)

    it("regression #12: a response with a bad Content-Length or chunk size is a failure, not an error", function()
      run(function()
        local answers = {
          "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
          "HTTP/1.1 200 OK\r\nContent-Length: 1e400\r\n\r\n",
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
        }
        local lsock = assert(uring.listen("127.0.0.1", 0))
        local _, port = lsock:getsockname()
        local server = uring.spawn(function()
          for _, answer in ipairs(answers) do
            local s = assert(lsock:accept())
            s:receive_head()
            s:send(answer)
            s:close()
          end
        end)
        local url = "http://127.0.0.1:" .. port .. "/"
        local res, err = http.request(url)
        assert.is_nil(res); assert.equal("bad Content-Length", err)
        res, err = http.request(url)
        assert.is_nil(res); assert.equal("bad Content-Length", err)
        res, err = http.request(url)
        assert.is_nil(res); assert.equal("bad chunked body", err)
        assert(server:join())
        lsock:close()
      end)
    end)
  end)

  describe("client", function()
    local py, py_pid, pyport, dir
    setup(function()
      dir = helpers.tmpdir()
      writeall(dir .. "/hello.txt", "hello from python\n")
      os.execute("mkdir " .. dir .. "/sub")
      writeall(dir .. "/sub/x.json", '{"x": 1}\n')
      os.execute("head -c 2000000 /dev/urandom > " .. dir .. "/big.bin")
      py = io.popen(("sh -c %s 2>/dev/null"):format(shq(("echo $$; exec %stimeout 60 "
        .. "python3 -u -m http.server 0 --bind 127.0.0.1 --directory %s"):format(EXT, dir))))
      py_pid = py:read("l")
      local first = py:read("l") or ""
      pyport = tonumber(first:match("port (%d+)"))
      assert(pyport, "python3 -m http.server did not start: " .. first)
    end)
    teardown(function()
      if py then
        os.execute("kill " .. py_pid .. " 2>/dev/null")
        py:close()
      end
      helpers.rmrf(dir)
    end)

    it("fetches files from python3 -m http.server", function()
      run(function()
        local base = "http://127.0.0.1:" .. pyport
        local res = assert(http.request(base .. "/hello.txt"))
        assert.equal(200, res.status)
        assert.equal("hello from python\n", res.body)
        assert.equal("18", res.headers["Content-Length"])
        res = assert(http.request(base .. "/big.bin"))
        assert.equal(readall(dir .. "/big.bin"), res.body)
        res = assert(http.request(base .. "/sub/x.json", { headers = { Accept = "*/*" } }))
        assert.equal('{"x": 1}\n', res.body)
        assert.equal("application/json", res.headers["content-type"])
        res = assert(http.request(base .. "/missing"))
        assert.equal(404, res.status)
        res = assert(http.request(base .. "/hello.txt", { method = "HEAD" }))
        assert.equal(200, res.status)
        assert.equal("", res.body)
        -- redirects: off by default, followed when asked
        res = assert(http.request(base .. "/sub"))
        assert.equal(301, res.status)
        res = assert(http.request(base .. "/sub", { redirects = 2 }))
        assert.equal(200, res.status)
        assert.matches("x.json", res.body)
        assert.equal(base .. "/sub/", res.url)
      end)
    end)

    it("reads our chunked responses and reuses connections in a client object", function()
      run(function()
        local srv, url, task = start()
        local res = assert(http.request(url .. "/stream"))
        assert.equal("part 1\npart 2\npart 3\npart 4\npart 5\n", res.body)
        assert.equal("chunked", res.headers["transfer-encoding"])
        local c <close> = http.client()
        for i = 1, 3 do
          res = assert(c:request(url .. "/users/" .. i))
          assert.equal("user " .. i .. " true\n", res.body)
        end
        res = assert(c:request(url .. "/echo", { body = "abc" }))
        assert.equal("abc", res.body)
        res = assert(c:request(url .. "/stream"))
        assert.equal(5, select(2, res.body:gsub("part", "")))
        assert.equal(1, c.connections)
        assert.equal(2, srv.connections)         -- the plain request, then the client's
        -- redirects off by default; followed when asked
        res = assert(c:request(url .. "/redirect"))
        assert.equal(302, res.status)
        res = assert(c:request(url .. "/redirect", { redirects = 1 }))
        assert.equal("user 7 true\n", res.body)
        c:close()
        srv:close()
        assert(task:join())
      end)
    end)

    it("retries once when a kept connection was closed by the server", function()
      run(function()
        local srv, url, task = start()
        local c <close> = http.client()
        assert.equal(200, assert(c:request(url .. "/users/1")).status)
        -- the server drops its idle connections (as an idle timeout would)
        for sock in pairs(srv._conns) do sock:close() end
        uring.sleep(0.05)
        assert.equal("user 2 true\n", assert(c:request(url .. "/users/2")).body)
        assert.equal(2, c.connections)
        c:close()
        srv:close()
        assert(task:join())
      end)
    end)

    it("times out, refuses other schemes and reports connection errors", function()
      run(function()
        local srv, url, task = start { slow = 5, grace = 0.2 }
        local res, err = http.request(url .. "/slow", { timeout = 0.2 })
        assert.is_nil(res)
        assert.equal("timeout", err)
        res, err = http.request("ftp://127.0.0.1:1/")
        assert.is_nil(res)
        assert.matches("http:// and https://", err)
        res, err = http.request("https://127.0.0.1:1/")   -- spec/https_spec.lua
        assert.is_nil(res)
        assert.matches("refused", err)
        srv:close()
        assert(task:join())
        res, err = http.request(url .. "/")
        assert.is_nil(res)
        assert.matches("refused", err)
      end)
    end)
  end)

  -- regression #12 (found by the out-of-memory sweep, make oom): serve's
  -- ways of ending left the server half alive
  describe("regression #12: how serve ends", function()
    local function server(opts)
      opts = opts or {}
      opts.handler = opts.handler or function(req) return 200, "ok " .. req.path end
      return assert(http.server(opts))
    end

    it("a server closed before its serve task ran: serve returns true", function()
      run(function()
        local srv = server()
        local t = uring.spawn(srv.serve, srv)
        srv:close()
        -- it called accept on the closed listener: "attempt to use a closed socket"
        assert.same({ true, true }, { t:join() })
      end)
    end)

    it("serve that raises ends its sweeper and closes the server", function()
      run(function()
        local srv = server({ idle_timeout = 5 })
        local real = uring.spawn
        -- serve's first spawn (its sweeper) fails, as out of memory would
        uring.spawn = function(f, ...)
          if f ~= srv.serve then error("not enough memory", 0) end
          return real(f, ...)
        end
        local t = uring.spawn(srv.serve, srv)
        uring.yield()
        uring.spawn = real
        assert.same({ false, "not enough memory" }, { t:join() })
        -- closed, not a listener nobody accepts on (and the sweeper, left
        -- sleeping, kept uring.run from ever returning)
        local res, err = http.request("http://127.0.0.1:" .. srv:port() .. "/", { timeout = 2 })
        assert.is_nil(res)
        assert.matches("refused", err)
      end)
    end)

    it("a connection task that cannot be spawned: its socket is closed, not left to the client's timeout", function()
      run(function()
        local srv = server({ idle_timeout = 0 })
        local t = uring.spawn(srv.serve, srv)
        uring.yield()
        local real = uring.spawn
        uring.spawn = function() error("not enough memory", 0) end
        local t0 = uring.now()
        local res = http.request("http://127.0.0.1:" .. srv:port() .. "/", { timeout = 5 })
        uring.spawn = real
        assert.is_nil(res)
        assert.is_true(uring.now() - t0 < 2)
        assert.same({ false, "not enough memory" }, { t:join() })
      end)
    end)

    it("an accept that fails (EMFILE, ENOMEM) is reported and serve goes on", function()
      run(function()
        local errors = {}
        local srv = server({ idle_timeout = 0,
          on_error = function(err, req) errors[#errors + 1] = { err, req } end })
        local lsock, failed = srv._lsock, false
        srv._lsock = {   -- its first accept fails, as accept(2) can
          accept = function()
            if not failed then
              failed = true
              return nil, "accept: Too many open files", 24
            end
            return lsock:accept()
          end,
          close = function() return lsock:close() end,
        }
        local t = uring.spawn(srv.serve, srv)
        -- serve used to end at the first failed accept, silently
        local res = assert(http.request("http://127.0.0.1:" .. srv:port() .. "/x", { timeout = 5 }))
        assert.equal("ok /x", res.body)
        assert.same({ { "accept: Too many open files" } }, errors)
        srv:close()
        assert.same({ true, true }, { t:join() })
      end)
    end)
  end)
end)
