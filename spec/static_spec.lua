-- spec/static_spec.lua: uring.http.static over loopback, driven by curl
-- and wrk (real clients, run as child processes through uring.popen):
-- whole files and ranges byte for byte, 206/416, validators and 304,
-- listings on and off, traversal refused.
local uring = require "uring"
local helpers = require "helpers"

local run = helpers.runner(60)
local shq = helpers.shq
local CURL = "env -u LD_PRELOAD curl -s -m 10 "

-- a client's output, read through the ring (the server runs meanwhile)
local function cmd(line)
  local p = assert(uring.popen(line .. " 2>&1", "r"))
  local out = p:read("a")
  p:close()
  return out
end

-- curl -i: status, headers (lower-case names), body
local function get(port, path, args)
  local tmp = os.tmpname()
  local out = cmd(CURL .. "-D " .. tmp .. " " .. (args or "") .. " "
    .. shq("http://127.0.0.1:" .. port .. path))
  local head = helpers.readall(tmp)
  os.remove(tmp)
  local status = tonumber(head:match("^HTTP/1%.1 (%d+)"))
  local h = {}
  for name, value in head:gmatch("\n([^:\r\n]+): ([^\r\n]*)") do h[name:lower()] = value end
  return status, h, out
end

describe("uring.http.static #io #net", function()
  local dir, data, big
  helpers.leak_check(before_each, after_each)
  before_each(function()
    dir = helpers.tmpdir()
    data = helpers.random_bytes(100000)
    big = helpers.random_bytes(3 * 1024 * 1024 + 7)
    helpers.writeall(dir .. "/data.bin", data)
    helpers.writeall(dir .. "/big.bin", big)
    helpers.writeall(dir .. "/small.txt", "hello\n")
    helpers.writeall(dir .. "/empty", "")
    helpers.writeall(dir .. "/a<b>&c.txt", "x")
    os.execute("mkdir " .. dir .. "/sub " .. dir .. "/site && echo s > " .. dir
      .. "/sub/s.txt && echo '<p>home</p>' > " .. dir .. "/site/index.html")
  end)
  after_each(function() helpers.rmrf(dir) end)

  -- a server on port 0 serving dir with opts; fn(port) runs as a task
  local function serve(opts, fn)
    return run(function()
      local srv = assert(uring.http.server { host = "127.0.0.1", port = 0,
        handler = uring.http.static(dir, opts) })
      local serving = uring.spawn(srv.serve, srv)
      local ok, err = pcall(fn, srv:port())
      srv:close()
      assert(serving:join())
      assert(ok, err)
    end)
  end

  it("serves whole files byte for byte, with validators and a length", function()
    serve(nil, function(port)
      local status, h, body = get(port, "/data.bin")
      assert.equal(200, status)
      assert.equal(#data, #body)
      assert.is_true(body == data)
      assert.equal("100000", h["content-length"])
      assert.equal("bytes", h["accept-ranges"])
      assert.matches('^"%x+%-186a0"$', h.etag)          -- mtime-size, as nginx
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", h["last-modified"])
      assert.equal("application/octet-stream", h["content-type"])
      status, h, body = get(port, "/small.txt")
      assert.equal("hello\n", body)
      assert.matches("^text/plain", h["content-type"])
      status, h, body = get(port, "/empty")
      assert.equal(200, status)
      assert.equal("0", h["content-length"])
      assert.equal("", body)
      -- 3 MiB: head, then splice; hashed on both sides
      local out = cmd(CURL .. shq("http://127.0.0.1:" .. port .. "/big.bin") .. " | sha256sum")
      local want = helpers.sh("sha256sum " .. shq(dir .. "/big.bin"))
      assert.equal(want:match("^%x+"), out:match("^%x+"))
      -- HEAD: the same head, no body
      status, h, body = get(port, "/big.bin", "-I")
      assert.equal(200, status)
      assert.equal(tostring(#big), h["content-length"])
    end)
  end)

  it("answers curl -r ranges with 206 and Content-Range", function()
    serve(nil, function(port)
      local cases = {
        { "0-99", 0, 99 }, { "100-", 100, #data - 1 }, { "-500", #data - 500, #data - 1 },
        { "99990-200000", 99990, #data - 1 }, { "5-5", 5, 5 },
        { "0-70000", 0, 70000 },             -- beyond the small path: splice
      }
      for _, c in ipairs(cases) do
        local status, h, body = get(port, "/data.bin", "-r " .. c[1])
        assert.equal(206, status, c[1])
        assert.equal(("bytes %d-%d/%d"):format(c[2], c[3], #data), h["content-range"])
        assert.equal(tostring(c[3] - c[2] + 1), h["content-length"])
        assert.is_true(body == data:sub(c[2] + 1, c[3] + 1), c[1])
      end
      local _, _, body = get(port, "/big.bin", "-r 1048576-2097152")
      assert.is_true(body == big:sub(1048577, 2097153))
    end)
  end)

  it("answers 416 for a range past the end, and ignores what it cannot honour", function()
    serve(nil, function(port)
      local status, h, body = get(port, "/data.bin", "-r 100000-")
      assert.equal(416, status)
      assert.equal("bytes */100000", h["content-range"])
      assert.matches("416", body)
      status = get(port, "/empty", "-r 0-0")
      assert.equal(416, status)
      status = get(port, "/data.bin", "-r -0")
      assert.equal(416, status)
      -- several ranges, or a malformed one: the whole file (RFC 9110 14.2)
      status, h, body = get(port, "/data.bin", "-r 0-1,5-6")
      assert.equal(200, status)
      assert.is_true(body == data)
      status, h, body = get(port, "/data.bin", "-H 'Range: bytes=9-3'")
      assert.equal(200, status)
      status, h, body = get(port, "/data.bin", "-H 'Range: items=0-3'")
      assert.equal(200, status)
      assert.equal(#data, #body)
    end)
  end)

  it("answers 304 to a client holding the file, by ETag or by date", function()
    serve(nil, function(port)
      local _, h = get(port, "/data.bin", "-I")
      local etag, lm = h.etag, h["last-modified"]
      local status, h2, body = get(port, "/data.bin", "-H " .. shq("If-None-Match: " .. etag))
      assert.equal(304, status)
      assert.equal("", body)
      assert.equal(etag, h2.etag)
      status = get(port, "/data.bin", "-H " .. shq('If-None-Match: "x", W/' .. etag))
      assert.equal(304, status)
      status = get(port, "/data.bin", "-H 'If-None-Match: *'")
      assert.equal(304, status)
      status, _, body = get(port, "/data.bin", "-H 'If-None-Match: \"other\"'")
      assert.equal(200, status)
      assert.equal(#data, #body)
      status = get(port, "/data.bin", "-H " .. shq("If-Modified-Since: " .. lm))
      assert.equal(304, status)
      status = get(port, "/data.bin", "-H 'If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT'")
      assert.equal(200, status)
      status = get(port, "/data.bin", "-H 'If-Modified-Since: yesterday'")
      assert.equal(200, status)
      -- If-None-Match decides when both are there
      status = get(port, "/data.bin", "-H 'If-None-Match: \"other\"' -H " .. shq("If-Modified-Since: " .. lm))
      assert.equal(200, status)
      -- a changed file has a new validator
      uring.sleep(0.01)
      helpers.writeall(dir .. "/data.bin", data .. "more")
      status = get(port, "/data.bin", "-H " .. shq("If-None-Match: " .. etag))
      assert.equal(200, status)
      -- If-Range: the range only for the current validator
      _, h = get(port, "/data.bin", "-I")
      status = get(port, "/data.bin", "-r 0-9 -H " .. shq("If-Range: " .. h.etag))
      assert.equal(206, status)
      status = get(port, "/data.bin", "-r 0-9 -H " .. shq("If-Range: " .. etag))
      assert.equal(200, status)
      -- header names in any case
      status = get(port, "/data.bin", "-H " .. shq("IF-NONE-MATCH: " .. h.etag))
      assert.equal(304, status)
      status = get(port, "/data.bin", "-H 'rAnGe: bytes=0-1'")
      assert.equal(206, status)
    end)
  end)

  it("lists a directory only when asked, names escaped; index.html first", function()
    serve(nil, function(port)
      local status = get(port, "/sub/")
      assert.equal(404, status)
      local _, _, body = get(port, "/site/")
      assert.equal("<p>home</p>\n", body)
    end)
    serve({ listing = true }, function(port)
      local status, h, body = get(port, "/")
      assert.equal(200, status)
      assert.matches("^text/html", h["content-type"])
      assert.matches('<a href="sub/">sub/</a>', body, 1, true)
      assert.matches('<a href="a%3Cb%3E%26c.txt">a&lt;b&gt;&amp;c.txt</a>', body, 1, true)
      assert.matches('<a href="data.bin">data.bin</a>', body, 1, true)
      assert.is_nil(body:find("a<b>", 1, true))
      _, _, body = get(port, "/sub/")
      assert.matches('<a href="../">', body, 1, true)
      assert.matches('s.txt', body, 1, true)
      status, h = get(port, "/sub")
      assert.equal(301, status)
      assert.equal("/sub/", h.location)
      local _, _, page = get(port, "/site/")
      assert.equal("<p>home</p>\n", page)      -- an index still wins
    end)
    serve({ index = false }, function(port)
      assert.equal(403, (get(port, "/sub/")))
    end)
  end)

  it("refuses paths that leave the root", function()
    serve({ listing = true }, function(port)
      for _, p in ipairs { "/../etc/passwd", "/sub/../../etc/passwd", "/%2e%2e/etc/passwd",
          "/sub/%2E%2E/%2e%2e/etc/passwd", "/..%2fetc/passwd", "/a%00b", "/sub%5c..%5cdata.bin" } do
        local status, _, body = get(port, p, "--path-as-is")
        assert.equal(403, status, p)
        assert.is_nil(body:find("root:", 1, true), p)
      end
      assert.equal(404, (get(port, "/nope")))
      assert.equal(405, (get(port, "/data.bin", "-X POST")))
    end)
  end)

  it("serves wrk clean: keep-alive, 4 KiB and 1 MiB files, no errors", function()
    if not helpers.have("wrk") then pending("wrk is not installed") return end
    helpers.writeall(dir .. "/f4k", helpers.random_bytes(4096))
    helpers.writeall(dir .. "/f1m", helpers.random_bytes(1024 * 1024))
    serve(nil, function(port)
      for _, f in ipairs { "f4k", "f1m" } do
        local out = cmd("env -u LD_PRELOAD wrk -t1 -c8 -d1s " .. shq("http://127.0.0.1:" .. port .. "/" .. f))
        local n = tonumber(out:match("(%d+) requests in"))
        assert(n and n > 20, out)
        assert.is_nil(out:find("Socket errors", 1, true), out)
        assert.is_nil(out:find("Non%-2xx"), out)
        -- every answer whole: what wrk read covers n bodies
        local amount, unit = out:match("requests in [%d.]+%a+, ([%d.]+)(%a+) read")
        local bytes = tonumber(amount) * ({ B = 1, KB = 1024, MB = 1024 ^ 2, GB = 1024 ^ 3 })[unit]
        local size = f == "f4k" and 4096 or 1024 * 1024
        assert(bytes >= n * size * 0.99, out)
      end
    end)
  end)

  -- this process's fds open on path, or (gone) on a file unlinked or
  -- renamed over since: its link then reads "path (deleted)"
  local function held(path, gone)
    local n = 0
    for line in helpers.fds():gmatch("[^\n]+") do
      local target = line:match("^%d+ %-> (.*)$")
      if target == path .. " (deleted)" or (not gone and target == path) then n = n + 1 end
    end
    return n
  end

  it("keeps a served file open, and sees it replaced, rewritten or gone", function()
    serve(nil, function(port)
      local path = dir .. "/small.txt"
      assert.equal(0, held(path))
      assert.equal("hello\n", select(3, get(port, "/small.txt")))
      assert.equal(1, held(path))                     -- kept open
      local before = helpers.fds()
      assert.equal("hello\n", select(3, get(port, "/small.txt")))
      assert.equal(before, helpers.fds())              -- the same fd served it
      -- replaced by a rename: the new file at once, the old one closed
      helpers.writeall(dir .. "/new", "replaced\n")
      assert(os.rename(dir .. "/new", path))
      assert.equal("replaced\n", select(3, get(port, "/small.txt")))
      assert.equal(1, held(path))
      -- rewritten in place: new bytes, a new ETag (the size changed)
      local _, h1 = get(port, "/small.txt")
      helpers.writeall(path, "rewritten in place\n")
      local _, h2, body = get(port, "/small.txt")
      assert.equal("rewritten in place\n", body)
      assert.are_not.equal(h1.etag, h2.etag)
      assert.equal("19", h2["content-length"])
      -- gone: 404, and no fd left on it
      assert(os.remove(path))
      assert.equal(404, (get(port, "/small.txt")))
      assert.equal(0, held(path))
    end)
  end)

  it("holds at most 64 files open however many it serves", function()
    local urls = {}
    for i = 1, 100 do
      helpers.writeall(("%s/n%03d"):format(dir, i), tostring(i))
    end
    serve(nil, function(port)
      for i = 1, 100 do urls[i] = shq(("http://127.0.0.1:%d/n%03d"):format(port, i)) end
      local out = cmd(CURL .. table.concat(urls, " "))
      local want = {}
      for i = 1, 100 do want[i] = tostring(i) end
      assert.equal(table.concat(want), out)
      local open = 0
      for line in helpers.fds():gmatch("[^\n]+") do
        if line:find(dir .. "/n", 1, true) then open = open + 1 end
      end
      assert.is_true(open >= 1 and open <= 64, open .. " open")
    end)
  end)

  it("finishes a response from a file replaced while it was being sent", function()
    local path = dir .. "/huge.bin"
    local huge = ("0123456789abcdef"):rep(1 << 20)      -- 16 MiB: more than the socket buffers hold
    helpers.writeall(path, huge)
    serve(nil, function(port)
      local c = assert(uring.connect("127.0.0.1", port))
      assert(c:send("GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert.matches("^HTTP/1%.1 200", c:receive("*l"))
      uring.sleep(0.05)                  -- the server waits for room meanwhile
      helpers.writeall(dir .. "/new", "new\n")
      assert(os.rename(dir .. "/new", path))
      assert.equal("new\n", select(3, get(port, "/huge.bin")))
      -- the old file is still open: its response is not over
      assert.equal(1, held(path, "gone"))
      repeat local line = c:receive("*l") until line == ""
      local body = c:receive(#huge)
      assert.is_true(body == huge)
      c:close()
      uring.sleep(0.05)
      assert.equal(0, held(path, "gone"))         -- closed once its last response ended
    end)
  end)

  it("raises on bad arguments", function()
    local errmsg, badarg = helpers.errmsg, helpers.badarg
    assert.matches(badarg(1, "static", "string expected, got nil"), errmsg(uring.http.static))
    assert.matches(badarg(2, "static", "listing must be a boolean, got string"),
      errmsg(uring.http.static, dir, { listing = "yes" }))
    assert.matches(badarg(2, "static", "index must be a string or false, got number"),
      errmsg(uring.http.static, dir, { index = 1 }))
  end)
end)
