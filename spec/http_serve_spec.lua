-- spec/http_serve_spec.lua: uring.http's request loop in C (sock:_serve,
-- csrc/http_serve.c).  A request without a body is served there, with the
-- response's state held in C while only res:header and res:finish touch
-- it (and res:sent, res:sendfile); every other use of the response takes
-- the Lua path; req:has_header reads the head as it came.  These tests
-- check that both paths answer byte for byte as the Lua code defines,
-- across their hand-overs: on one connection, requests pipelined, with
-- and without bodies, the same answer again (its bytes reused) and a
-- different one, Lua methods after the C ones, handlers that wait, fail
-- or finish late.  Clients are our own sockets on 127.0.0.1, port 0.
local uring = require "uring"
local helpers = require "helpers"
local http = uring.http

local run = helpers.runner(20)

-- Start a server with `handler`; returns it, its port and its task.
local function start(handler, errors)
  local srv = assert(http.server { handler = handler,
    on_error = function(e) if errors then errors[#errors + 1] = tostring(e) end end })
  return srv, srv:port(), uring.spawn(srv.serve, srv)
end

-- Send `data` on a new connection and read until the server closes it
-- (or `want` bytes came); returns what came.
local function exchange(port, data, want)
  local c = assert(uring.connect("127.0.0.1", port))
  assert(c:send(data))
  local got = {}
  local n = 0
  while not want or n < want do
    local d = c:recv()
    if not d then break end
    got[#got + 1] = d
    n = n + #d
  end
  c:close()
  return table.concat(got)
end

local function ok(body, extra, close)
  return "HTTP/1.1 200 OK\r\n" .. (extra or "") .. "Content-Length: " .. #body
    .. "\r\nConnection: " .. (close and "close" or "keep-alive") .. "\r\n\r\n" .. body
end

describe("uring.http's request loop in C #io #net", function()
  local fds
  setup(function() uring.run(function() uring.nop() end) end)
  before_each(function() fds = helpers.fds() end)
  after_each(function()
    local s = uring.stats()
    assert.equal(0, s.inflight)
    assert.equal(0, s.tasks)
    assert.equal(fds, helpers.fds())
  end)

  it("answers pipelined requests, with and without bodies, HEAD and HTTP/1.0, in order", function()
    run(function()
      local srv, port, task = start(function(req, res)
        res:header("Content-Type", "text/plain")
        res:finish(req.method .. " " .. req.path .. " " .. req.body)
      end)
      local ct = "Content-Type: text/plain\r\n"
      local out = exchange(port,
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"                        -- the same again
        .. "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"           -- the Lua path
        .. "GET /a HTTP/1.1\r\n\r\n"
        .. "HEAD /h HTTP/1.1\r\n\r\n"
        .. "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
        .. "GET /z?q=1 HTTP/1.0\r\n\r\n")                                 -- closes
      assert.equal(ok("GET /a ", ct) .. ok("GET /a ", ct) .. ok("POST /p abc", ct)
        .. ok("GET /a ", ct)
        .. "HTTP/1.1 200 OK\r\n" .. ct .. "Content-Length: 8\r\nConnection: keep-alive\r\n\r\n"
        .. ok("POST /c xy", ct) .. ok("GET /z ", ct, true), out)
      assert.equal(7, srv.requests)
      srv:close()
      assert(task:join())
    end)
  end)

  it("never answers with the last response's bytes when a header or the body differs", function()
    run(function()
      local srv, port, task = start(function(req, res)
        local p = req.path
        local v = p == "/b2" and "/b" or p == "/nul" and "a\0b" or p
        if p ~= "/none" then res:header("X-Path", v) end
        if p == "/case" then res:header("x-path", "lower") end   -- replaces, name kept
        if p == "/empty" then return res:finish() end
        res:finish("body" .. #p)
      end)
      local reqs, want = {}, {}
      for _, p in ipairs { "/a", "/a", "/b", "/b2", "/b2", "/none", "/none", "/empty",
                           "/case", "/nul", "/a" } do
        reqs[#reqs + 1] = "GET " .. p .. " HTTP/1.1\r\n\r\n"
        local body = p == "/empty" and "" or "body" .. #p
        local h = p == "/none" and "" or ("X-Path: " .. (p == "/b2" and "/b"
          or p == "/case" and "lower" or p == "/nul" and "a\0b" or p) .. "\r\n")
        want[#want + 1] = ok(body, h)
      end
      reqs[#reqs + 1] = "GET /last HTTP/1.1\r\nConnection: close\r\n\r\n"
      want[#want + 1] = ok("body5", "X-Path: /last\r\n", true)
      assert.equal(table.concat(want), exchange(port, table.concat(reqs)))
      -- the last answer is remembered for every connection: a new one
      -- asking the same gets the same bytes, asking otherwise its own
      for _, p in ipairs { "/last", "/a", "/a" } do
        assert.equal(ok("body" .. #p, "X-Path: " .. p .. "\r\n", true),
          exchange(port, "GET " .. p .. " HTTP/1.1\r\nConnection: close\r\n\r\n"))
      end
      assert.equal(ok("body2", "X-Path: /a\r\n"),
        exchange(port, "GET /a HTTP/1.1\r\n\r\n", #ok("body2", "X-Path: /a\r\n")))
      srv:close()
      assert(task:join())
    end)
  end)

  it("replaces a header set again at the place the last response had it", function()
    run(function()
      -- the same strings at the same places are taken unchecked; a name
      -- set twice in one response is still one header
      local srv, port, task = start(function(req, res)
        local p = req.path
        if p == "/xy" then res:header("X-A", "1"); res:header("X-B", "2")
        elseif p == "/y" then res:header("X-B", "2")
        else res:header("X-B", "2"); res:header("X-B", "2"); res:header("X-C", "3") end
        res:finish("k")
      end)
      local reqs, want = {}, {}
      for _, p in ipairs { "/xy", "/y", "/yy", "/yy", "/xy" } do
        reqs[#reqs + 1] = "GET " .. p .. " HTTP/1.1\r\n\r\n"
        want[#want + 1] = ok("k", p == "/xy" and "X-A: 1\r\nX-B: 2\r\n"
          or p == "/y" and "X-B: 2\r\n" or "X-B: 2\r\nX-C: 3\r\n")
      end
      reqs[#reqs + 1] = "GET /y HTTP/1.1\r\nConnection: close\r\n\r\n"
      want[#want + 1] = ok("k", "X-B: 2\r\n", true)
      assert.equal(table.concat(want), exchange(port, table.concat(reqs)))
      srv:close()
      assert(task:join())
    end)
  end)

  it("hands the response to its Lua methods with what res:header set", function()
    run(function()
      local seen = {}
      local srv, port, task = start(function(req, res)
        res:header("X-A", "1")
        seen[#seen + 1] = res:get_header("x-a")
        seen[#seen + 1] = tostring(res:sent())
        if req.path == "/status" then
          res:status(201)
          res:header("X-B", "2")
          return res:finish("made")
        elseif req.path == "/many" then
          for i = 1, 10 do res:header("X-" .. i, tostring(i)) end   -- past what C holds
          res:header("X-A", nil)                                    -- removed
          return res:finish("m")
        elseif req.path == "/number" then
          res:header("X-N", 42)                                     -- a number: Lua's path
          return res:finish(7)
        elseif req.path == "/reply" then
          return 202, "r", { ["X-R"] = "r" }
        elseif req.path == "/stream" then
          res:write("ab")
          res:write("cd")
          return res:finish()
        end
        res:finish("plain")
      end)
      local many = {}
      for i = 1, 10 do many[#many + 1] = ("X-%d: %d\r\n"):format(i, i) end
      local out = exchange(port, "GET /status HTTP/1.1\r\n\r\nGET /many HTTP/1.1\r\n\r\n"
        .. "GET /number HTTP/1.1\r\n\r\nGET /reply HTTP/1.1\r\n\r\n"
        .. "GET /stream HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
      assert.equal("HTTP/1.1 201 Created\r\nX-A: 1\r\nX-B: 2\r\nContent-Length: 4\r\n"
        .. "Connection: keep-alive\r\n\r\nmade"
        .. ok("m", table.concat(many))
        .. ok("7", "X-A: 1\r\nX-N: 42\r\n")
        .. "HTTP/1.1 202 Accepted\r\nX-A: 1\r\nX-R: r\r\nContent-Length: 1\r\n"
        .. "Connection: keep-alive\r\n\r\nr"
        .. "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n"
        .. "Connection: keep-alive\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"
        .. ok("plain", "X-A: 1\r\n", true), out)
      for i = 1, #seen, 2 do
        assert.equal("1", seen[i])
        assert.equal("false", seen[i + 1])
      end
      assert.equal(12, #seen)
      srv:close()
      assert(task:join())
    end)
  end)

  it("serves handlers that wait, fail, forget to finish or finish twice", function()
    run(function()
      local errors, late = {}, nil
      local srv, port, task = start(function(req, res)
        local p = req.path
        if p == "/sleep" then
          uring.sleep(0.01)
          res:header("X-S", "1")
          uring.yield()
          return res:finish("slept")
        elseif p == "/fail" then
          res:header("X-F", "1")
          error("boom")
        elseif p == "/forget" then
          res:header("X-G", "1")
          return
        elseif p == "/twice" then
          assert(res:finish("one"))
          assert.is_true(res:finish("two"))      -- already done: nothing sent
          assert.is_true(res:sent())
          return
        elseif p == "/late" then
          res:finish("now")
          -- after the handler returned, from another task: nothing more goes out
          late = uring.spawn(function()
            uring.sleep(0.01)
            return res:finish("late"), res:sent()
          end)
          return
        end
        res:finish("x")
      end, errors)
      local out = exchange(port, "GET /sleep HTTP/1.1\r\n\r\nGET /forget HTTP/1.1\r\n\r\n"
        .. "GET /twice HTTP/1.1\r\n\r\nGET /fail HTTP/1.1\r\n\r\n"
        .. "GET /never HTTP/1.1\r\n\r\n")
      assert.equal(ok("slept", "X-S: 1\r\n") .. ok("", "X-G: 1\r\n") .. ok("one")
        .. "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
        .. "Content-Length: 26\r\nConnection: close\r\n\r\n500 Internal Server Error\n", out)
      assert.equal(1, #errors)
      assert.matches("boom", errors[1])
      -- the connection's last response, finished again by a task the
      -- handler left behind: it stays finished
      assert.equal(ok("now", nil, true),
        exchange(port, "GET /late HTTP/1.1\r\nConnection: close\r\n\r\n"))
      local jok, fin, sent = late:join()
      assert.is_true(jok)
      assert.is_true(fin)
      assert.is_true(sent)
      srv:close()
      assert(task:join())
    end)
  end)

  it("keeps a response finished after its connection ended, while new connections reuse its state", function()
    run(function()
      local kept = {}
      local srv, port, task = start(function(req, res)
        local p = req.path
        if p == "/keep" then
          res:header("X-K", "1")
          res:finish("kept")
          kept[#kept + 1] = res
          return
        end
        -- another connection, while the ended ones' responses are used
        local seen = {}
        for i, old in ipairs(kept) do
          seen[#seen + 1] = tostring(old:sent())
          seen[#seen + 1] = tostring(old:finish("again"))
          seen[#seen + 1] = old:get_header("x-k") or "nil"
          local okh, err = pcall(old.header, old, "X-New", "2")
          seen[#seen + 1] = okh and "set" or err:match("headers already sent") or err
          assert.is_false(rawequal(old, res), i)
        end
        res:header("X-Seen", table.concat(seen, ","))
        res:finish("fresh")
      end)
      for _ = 1, 3 do
        assert.equal(ok("kept", "X-K: 1\r\n", true),
          exchange(port, "GET /keep HTTP/1.1\r\nConnection: close\r\n\r\n"))
      end
      local one = "true,true,1,headers already sent"
      assert.equal(ok("fresh", "X-Seen: " .. one .. "," .. one .. "," .. one .. "\r\n", true),
        exchange(port, "GET /new HTTP/1.1\r\nConnection: close\r\n\r\n"))
      -- and the ended ones are still finished for the next connection too
      assert.equal(ok("fresh", "X-Seen: " .. one .. "," .. one .. "," .. one .. "\r\n", true),
        exchange(port, "GET /new HTTP/1.1\r\nConnection: close\r\n\r\n"))
      srv:close()
      assert(task:join())
    end)
  end)

  it("sends res:sendfile's response from the C state, then Lua's rules for the rest", function()
    local dir = helpers.tmpdir()
    local data = "0123456789abcdefghijklmnopqrstuvwxyz"
    helpers.writeall(dir .. "/f", data)
    run(function()
      local f = assert(uring.open(dir .. "/f", "rb"))
      local seen = {}
      local srv, port, task = start(function(req, res)
        local p = req.path
        seen[#seen + 1] = res:sent()
        res:header("X-F", "1")
        if p == "/status" then
          res:status(206)                               -- Lua's path
        elseif p == "/bad" then
          seen[#seen + 1] = select(2, pcall(res.sendfile, res, f, -1, 1))
          seen[#seen + 1] = select(2, pcall(res.sendfile, res, f, 0, 1.5))
        elseif p == "/short" then
          seen[#seen + 1] = select(2, res:sendfile(f, 30, 10))
          return
        end
        assert.is_true(res:sendfile(f, 3, 10))
        seen[#seen + 1] = res:sent()
        if p == "/after" then
          seen[#seen + 1] = res:get_header("content-length")
          seen[#seen + 1] = select(2, pcall(res.sendfile, res, f, 0, 1))
          assert.is_true(res:finish("more"))            -- done: nothing sent
        end
      end)
      local body = data:sub(4, 13)
      local out = exchange(port, "GET / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\n"
        .. "GET /status HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n"
        .. "GET /bad HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET /short HTTP/1.1\r\n\r\n"
        .. "GET /never HTTP/1.1\r\n\r\n")
      local head10 = ok("", "X-F: 1\r\n"):gsub("Content%-Length: 0", "Content-Length: 10")
      local partial = "HTTP/1.1 206 Partial Content\r\n" .. head10:match("\r\n(.*)$")
      local short = ok("", "X-F: 1\r\n"):gsub("Content%-Length: 0", "Content-Length: 10")
      assert.equal(head10 .. body .. head10 .. partial .. body .. head10 .. body
        .. head10 .. body .. head10 .. body .. short .. data:sub(31), out)
      assert.same({ false, true, false, true, false, true, false, true, "10",
        "sendfile: headers already sent", false,
        "bad argument #3 to 'sendfile' (offset must be a non-negative integer)",
        "bad argument #4 to 'sendfile' (length must be a non-negative integer)", true,
        false, true, false, "file shrank while it was sent" },
        (function()
          for i, v in ipairs(seen) do
            if type(v) == "string" then seen[i] = v:gsub("^.-:%d+: ", "") end
          end
          return seen
        end)())
      srv:close()
      assert(task:join())
      f:close()
    end)
    helpers.rmrf(dir)
  end)

  it("works out req's fields from the head when read; pairs(req) lists what the Lua path's holds", function()
    run(function()
      local seen, kept = {}, {}
      local function listing(req)
        local keys = {}
        for k, v in pairs(req) do
          -- (the head and socket slots, req[1] and req[2], are not listed)
          if k ~= "headers" then keys[#keys + 1] = k .. "=" .. tostring(v) end
        end
        table.sort(keys)
        return (table.concat(keys, " "):gsub("uring%.socket %b()", "sock"))
      end
      local srv, port, task = start(function(req, res)
        kept[#kept + 1] = req
        local p = rawget(req, 1):match("^%u+ (%S+)") or req.target
        if p == "/set" then                         -- path follows a target set
          req.target = "/other"
          seen[#seen + 1] = req.path .. " " .. req.method .. " " .. req.method
        elseif p == "/set?z" then
          req.target = "/mine"                       -- the handler's own, kept
          seen[#seen + 1] = table.concat({ tostring(req.query), req.target, req.path,
            req.method }, " ")
        elseif p:match("^/list") then
          seen[#seen + 1] = listing(req)
        else
          seen[#seen + 1] = table.concat({ req.method, req.target, req.path,
            tostring(req.query), req.version, "[" .. req.body .. "]", req.headers.host,
            tostring(req:header("HOST")), tostring(req:has_header("host")) }, " ")
        end
        res:finish("x")
      end)
      exchange(port, "GET /list?a=1 HTTP/1.1\r\nHost: h\r\n\r\n"
        .. "GET /list?a=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        .. "HEAD /list HTTP/1.1\r\n\r\n"
        .. "GET /p HTTP/1.1\r\nHost: a\r\n\r\n"
        .. "DELETE /p?q=%20x HTTP/1.1\r\nHost: b\r\n\r\n"
        .. "GET /set?z HTTP/1.1\r\n\r\n"
        .. "PUT /set HTTP/1.1\r\n\r\n"
        .. "GET /p HTTP/1.0\r\nHost: c\r\n\r\n")
      assert.same({
        "method=GET path=/list query=a=1 socket=sock target=/list?a=1",
        "method=GET path=/list query=a=1 socket=sock target=/list?a=1",
        "method=HEAD socket=sock target=/list",
        "GET /p /p nil 1.1 [] a a true",
        "DELETE /p?q=%20x /p q=%20x 1.1 [] b b true",
        "z /mine /set GET",
        "/other PUT PUT",
        "GET /p /p nil 1.0 [] c c true" }, seen)
      -- a request kept past its handler still reads its own head
      assert.equal(8, #kept)
      assert.equal("HEAD", kept[3].method)
      assert.equal("/p?q=%20x", kept[5].target)
      assert.equal("1.0", kept[8].version)
      assert.equal(kept[4].socket, kept[5].socket)
      local index = getmetatable(kept[1]).__index
      assert.equal("bad argument #1 to '__index' (request expected, got number)",
        select(2, pcall(index, 5, "method")))
      assert.equal(http.Request.header, kept[1].header)
      srv:close()
      assert(task:join())
    end)
  end)

  it("takes a head the same as the last one as its string again, unparsed only under the same max_header", function()
    run(function()
      local seen = {}
      local function handler(req, res)
        seen[#seen + 1] = table.concat({ req.method, req.target, req.version,
          tostring(req.headers["x-pad"] and #req.headers["x-pad"]) }, " ")
        res:finish(req.target)
      end
      local big = assert(http.server { handler = handler, max_header = 4096 })
      local small = assert(http.server { handler = handler, max_header = 64 })
      local t1, t2 = uring.spawn(big.serve, big), uring.spawn(small.serve, small)
      local pad = "X-Pad: " .. ("p"):rep(100) .. "\r\n"
      local h = "GET /same HTTP/1.1\r\n" .. pad .. "\r\n"
      local hh = "HEAD /same HTTP/1.1\r\n" .. pad .. "\r\n"
      local v10 = "GET /v HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
      -- the same head thrice (blank lines before the third), one of the
      -- same length with another byte, HEAD twice, HTTP/1.0 twice, and
      -- the first one last
      local want = ok("/same"):rep(3) .. ok("/samf") .. ok(""):gsub("0\r\n", "5\r\n", 1):rep(2)
        .. ok("/v"):rep(2) .. ok("/same")
      local got = exchange(big:port(), h .. h .. "\r\n\r\n" .. h
        .. h:gsub("same", "samf", 1) .. hh .. hh .. v10 .. v10 .. h, #want)
      local p100 = "GET /same 1.1 100"
      assert.same({ p100, p100, p100, "GET /samf 1.1 100", "HEAD /same 1.1 100",
        "HEAD /same 1.1 100", "GET /v 1.0 nil", "GET /v 1.0 nil", p100 }, seen)
      assert.equal(want, got)
      -- the head the big server took last is too big for the small one
      assert.matches("^HTTP/1.1 431 ", exchange(small:port(), h, 13))
      assert.equal(9, #seen)
      big:close(); small:close()
      assert(t1:join()); assert(t2:join())
    end)
  end)

  it("reads a head a handler put in req[1] itself within its bytes", function()
    run(function()
      local seen = {}
      local srv, port, task = start(function(req, res)
        assert.equal(req[2], req.socket)
        for _, head in ipairs { "GET x\n", "GET \n", "A b HTTP/1.0", "A  \nrest", "" } do
          req[1] = head
          seen[#seen + 1] = table.concat({ tostring(req.method), tostring(req.target),
            tostring(req.path), tostring(req.query), req.version }, " ")
        end
        req[1] = 42
        seen[#seen + 1] = tostring(req.method) .. " " .. tostring(req:has_header("x"))
        res:finish("x")
      end)
      exchange(port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
      assert.same({
        "GET x x nil 1.1", "GET   nil 1.1", "A b b nil 1.0",
        "A   nil 1.1", "nil nil nil nil 1.1", "nil false" }, seen)
      srv:close()
      assert(task:join())
    end)
  end)

  it("answers req:has_header from the head as it came, or from req.headers once made", function()
    run(function()
      local seen = {}
      local srv, port, task = start(function(req, res)
        local p = req.path
        if p == "/made" then
          local _ = req.headers                            -- made: it rules
          req.headers["x-late"] = "1"
        elseif p == "/own" then
          req.headers = { range = "bytes=0-1" }
        end
        seen[#seen + 1] = table.concat({
          tostring(req:has_header("Range")), tostring(req:has_header("range")),
          tostring(req:has_header("X-Nope")), tostring(req:has_header("X-Nope", "RANGE")),
          tostring(req:has_header("X-Late")), tostring(req:has_header("Rang")) }, " ")
        if p == "/bad" then
          seen[#seen + 1] = select(2, pcall(req.has_header, req))
          seen[#seen + 1] = select(2, pcall(req.has_header, req, "a", 1))
          seen[#seen + 1] = select(2, pcall(req.has_header, {}, "a"))
          seen[#seen + 1] = select(2, pcall(function() local r = req:has_header(1); return r end))
        end
        res:finish(p)
      end)
      exchange(port, "GET / HTTP/1.1\r\nrAnGe: bytes=0-1\r\n\r\n"
        .. "GET /other HTTP/1.1\r\nX-Range-Extra: range\r\nX-A: Range: x\r\n\r\n"
        .. "POST /body HTTP/1.1\r\nContent-Length: 2\r\nRange: bytes=1-\r\n\r\nab"
        .. "GET /made HTTP/1.1\r\nRange: x\r\n\r\nGET /own HTTP/1.1\r\n\r\n"
        .. "GET /bad HTTP/1.1\r\nConnection: close\r\n\r\n")
      for i, v in ipairs(seen) do seen[i] = v:gsub("^.-:%d+: ", "") end
      assert.same({
        "true true false true false false",
        "false false false false false false",
        "true true false true false false",
        "true true false true true false",
        "true true false true false false",
        "false false false false false false",
        "bad argument #2 to 'has_header' (string expected, got no value)",
        "bad argument #3 to 'has_header' (string expected, got number)",
        "bad argument #1 to 'has_header' (request expected, got table)",
        "bad argument #1 to 'has_header' (string expected, got number)" }, seen)
      srv:close()
      assert(task:join())
    end)
  end)

  it("ends the connection when close() comes while a request is under way", function()
    run(function()
      local srv
      local port, task
      srv, port, task = start(function(_, res)
        srv:close()                      -- as http_hello does at its last request
        res:header("X-Last", "1")
        res:finish("bye")
      end)
      -- the second request is never read: the first answer says close
      local out = exchange(port, "GET / HTTP/1.1\r\n\r\nGET /more HTTP/1.1\r\n\r\n")
      assert.equal(ok("bye", "X-Last: 1\r\n", true), out)
      assert(task:join())
      assert.equal(1, srv.requests)
    end)
  end)

  it("answers Connection: close when close() comes from another task while a handler waits", function()
    run(function()
      local srv, port, task = start(function(_, res)
        res:header("X-Wait", "1")
        uring.sleep(0.05)                -- meanwhile the server closes
        res:finish("late")
      end)
      local closer = uring.spawn(function()
        uring.sleep(0.02)
        srv:close()
      end)
      local out = exchange(port, "GET / HTTP/1.1\r\n\r\nGET /more HTTP/1.1\r\n\r\n")
      assert.equal(ok("late", "X-Wait: 1\r\n", true), out)
      assert(closer:join())
      assert(task:join())
      assert.equal(1, srv.requests)
    end)
  end)
end)
