-- spec/adversarial/args_spec.lua: wrong types and out-of-range values for
-- every public function and method (the list is docs/api.md's and
-- docs/ring.md's).  Two kinds of table:
--   * documented messages: each bad call raises the message the docs give;
--   * a sweep: every function and method gets each hostile value in each
--     of its first three argument positions.  Whatever happens, it is a
--     clean outcome: a result, a fail triple, or a raised *string* that
--     names the mistake ("bad argument", "expected", a documented
--     message) — never a crash, an internal Lua error from lua/uring
--     ("attempt to index a nil value"), or a leaked fd or request.
local uring = require "uring"
local adv = require "helpers"

local run, raises = adv.runner(20), adv.raises
local problems

-- values no function expects
local hostile = {
  { "nil", nil }, { "true", true }, { "table", {} }, { "function", print },
  { "-1", -1 }, { "0.001", 0.001 }, { "1e300", 1e300 }, { "nan", 0 / 0 },
  { "mininteger", math.mininteger }, { "maxinteger", math.maxinteger },
  { "empty string", "" }, { "5000 bytes", ("x"):rep(5000) },
  { "NUL string", "a\0b" }, { "thread", coroutine.create(print) },
  { "io file", io.stderr },
}

-- An error is clean when it is a string that says what was wrong.  An
-- internal error from our Lua files (a nil indexed, arithmetic on a
-- string) means an argument went unchecked.
local internal = { "attempt to index", "attempt to call", "attempt to perform",
  "attempt to concatenate", "attempt to compare", "bad argument #%-" }
local function clean_error(where, e)
  if type(e) ~= "string" then error(where .. ": raised a " .. type(e), 0) end
  for _, p in ipairs(internal) do
    if e:find(p) then error(where .. ": internal error: " .. e, 0) end
  end
  return e
end

problems = {}

-- call fn(args) with a deadline (a hostile value may make it wait, e.g.
-- accept or recvfrom); every outcome but an unclean error is fine
local function try(where, fn, ...)
  local args = table.pack(...)
  local r = table.pack(uring.timeout(0.02, function()
    local res = table.pack(pcall(fn, table.unpack(args, 1, args.n)))
    -- the deadline unwinds with a private table: let it through
    if res[1] == false and type(res[2]) == "table"
        and tostring(res[2]) == "timeout" then error(res[2], 0) end
    return table.unpack(res, 1, res.n)
  end))
  if r[1] == nil and r[2] == "timeout" then return "timeout" end
  if r[1] == false then
    local ok, e = pcall(clean_error, where, r[2])
    if not ok then problems[#problems + 1] = tostring(e) end
    return e
  end
  return r
end

-- every unclean outcome of a sweep, reported all at once at its end
local function no_problems()
  local list = table.concat(problems, "\n")
  problems = {}
  assert(list == "", "unclean errors:\n" .. list)
end

-- every value in positions 1..3 of fn, the others nil (self first for
-- methods)
local function sweep(label, fn, self, skip)
  local n = 0
  for pos = 1, 3 do
    for _, h in ipairs(hostile) do
      if not (skip and skip(pos, h[2])) then
        local args = {}
        args[pos] = h[2]
        if self ~= nil then
          try(("%s(arg %d = %s)"):format(label, pos, h[1]), fn, self,
              args[1], args[2], args[3])
        else
          try(("%s(arg %d = %s)"):format(label, pos, h[1]), fn,
              args[1], args[2], args[3])
        end
        n = n + 1
      end
    end
  end
  return n
end

-- methods of an object, sorted (private "_" helpers included: they are
-- reachable from Lua, so they must be as safe)
local function methods(obj)
  local idx = getmetatable(obj).__index
  local names = {}
  for k, v in pairs(type(idx) == "table" and idx or obj) do
    if type(v) == "function" then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

describe("adversarial arguments", function()
  -- the sweep calls uring.pollfd, whose eventfd is the loop's for the
  -- state's life: made now, it is in every leak check's baseline
  uring.pollfd()
  local dir
  setup(function() dir = adv.tmpdir() end)
  teardown(function() adv.rmrf(dir) end)

  it("documented messages for out-of-range values of the uring.* functions", adv.clean(function()
    run(function()
      local f = dir .. "/f"
      local rows = {
        { "seconds must be a non-negative number", uring.sleep, -1 },
        { "seconds must be a non-negative number", uring.sleep, 0 / 0 },
        { "seconds must be a non-negative number", uring.sleep, 1e12 },
        { "seconds must be a non-negative number", uring.timeout, -1, print },
        { "seconds must be a non-negative number", uring.timeout, 0 / 0, print },
        { "function expected, got number", uring.timeout, 1, 2 },
        { "loop is running", uring.configure, {} },
        { "already running", uring.run, print },
        { "function expected, got nil", uring.spawn },
        { "invalid mode", uring.open, f, "rw" },
        { "invalid mode", uring.open, f, "" },
        { "invalid permissions", uring.open, f, "w", 99999 },
        { "invalid permissions", uring.open, f, "w", -1 },
        { "number or table expected, got string", uring.open, f, "w", "x" },
        { "invalid file descriptor", uring.fdopen, -1 },
        { "invalid mode", uring.fdopen, 0, "x" },
        { "string expected, got no value", uring.readfile },
        { "string expected, got number", uring.writefile, f, 5 },
        { 'mode must be "w" or "a"', uring.writefile, f, "", "r" },
        { "string expected, got nil", uring.stat, nil },
        { "string expected, got nil", uring.unlink, nil },
        { "string expected, got nil", uring.rename, f },
        { "invalid permissions", uring.mkdir, dir .. "/d", 8 ^ 5 },
        { "string expected, got table", uring.rmdir, {} },
        { "function expected, got number", uring.copyfile, f, f .. "2", 3 },
        { "port out of range", uring.listen, "127.0.0.1", 65536 },
        { "port out of range", uring.connect, "127.0.0.1", -1 },
        { "table expected, got number", uring.listen, "127.0.0.1", 0, 5 },
        { "path too long for a Unix socket", uring.listen_unix, ("x"):rep(200) },
        { "path too long for a Unix socket", uring.connect_unix, ("x"):rep(200) },
        { "port out of range", uring.udp, "127.0.0.1", 1e9 },
        { "string expected, got nil", uring.resolve },
        { "invalid mode", uring.popen, "true", "rw" },
        { "table expected, got nil", uring.exec },
        { "argv[1], the program, is missing", uring.exec, {} },
        { "stdout must be", uring.exec, { "true", stdout = "bogus" } },
        { "env must map names to strings", uring.exec, { "true", env = { "x" } } },
        { "cwd must be a string, got number", uring.exec, { "true", cwd = 5 } },
        { "unknown signal name", uring.signal, "NOPE" },
        { "invalid signal number", uring.signal, 9 },
        { "invalid signal number", uring.signal, 65 },
        { "invalid file descriptor", uring.poll, -1 },
        { 'events must be "r", "w" or "rw"', uring.poll, 0, "x" },
        { "function or boolean expected, got number", uring.trace, 1 },
        { "size must be in 1..1073741824", uring.buffer, 0 },
        { "size must be in 1..1073741824", uring.buffer, 2 ^ 31 },
        { "entries must be in 1..32768", uring.ring, { entries = 0 } },
        { "number expected, got string", uring.opname, "x" },
        { "string expected, got table", uring.opcode, {} },
      }
      for i, row in ipairs(rows) do
        local ok, e = pcall(row[2], table.unpack(row, 3, 5))
        assert(not ok, ("row %d (%s): did not raise"):format(i, row[1]))
        clean_error("row " .. i, e)
        assert(e:find(row[1], 1, true),
          ("row %d: expected %q, got %q"):format(i, row[1], e))
      end
    end)
  end))

  it("regression: configure{entries = \"x\"} blamed argument #-1; sqpoll's message; sq_thread_idle = -1 accepted", adv.clean(function()
    raises({ "#1", "entries must be in 1..32768" }, uring.configure, { entries = 0 })
    raises({ "#1", "entries must be in 1..32768" }, uring.configure, { entries = 32769 })
    raises({ "#1", "entries" }, uring.configure, { entries = "x" })
    raises({ "#1", "entries" }, uring.configure, { entries = 0.5 })
    raises({ "#1", "boolean sqpoll expected, got string" }, uring.configure, { sqpoll = "x" })
    raises({ "#1", "sq_thread_idle" }, uring.configure, { sq_thread_idle = "x" })
    raises({ "#1", "sq_thread_idle" }, uring.configure, { sq_thread_idle = -1 })
    raises({ "#1", "sq_thread_idle" }, uring.configure, { sq_thread_idle = 2 ^ 40 })
    raises({ "#1", "table expected, got number" }, uring.configure, 4)
    -- a rejected call changed nothing: the loop still runs as before
    assert.equal(42, uring.run(function() uring.nop(); return 42 end))
  end))

  it("regression: listen's backlog = \"x\" blamed argument #-1, 2^40 was truncated", adv.clean(function()
    run(function()
      raises({ "#3", "backlog" }, uring.listen, "127.0.0.1", 0, { backlog = "x" })
      raises({ "#3", "backlog" }, uring.listen, "127.0.0.1", 0, { backlog = 2 ^ 40 })
      raises({ "#2", "backlog" }, uring.listen_unix, dir .. "/s", { backlog = {} })
    end)
  end))

  it("regression: exec{\"tr\\0ue\"} ran tr (a NUL byte in argv, env or cwd)", adv.clean(function()
    run(function()
      -- "tr\0ue" must not run tr: a C string would stop at the NUL
      raises("argv[1] contains a NUL byte", uring.exec, { "tr\0ue" })
      raises("argv[2] contains a NUL byte", uring.exec, { "echo", "a\0b" })
      raises("env value contains a NUL byte", uring.exec,
        { "true", env = { A = "x\0y" } })
      raises("cwd contains a NUL byte", uring.exec, { "true", cwd = "/\0tmp" })
    end)
  end))

  it("regression: uring.timeout(1e300, fn) raised from '_scope_open' at lua/uring/init.lua", adv.clean(function()
    run(function()
      for _, secs in ipairs { 1e12, 1e300, math.huge } do
        local e = raises("bad argument #1 to 'timeout' (seconds must be a non-negative number below 1e12)",
          function() local r = uring.timeout(secs, print); return r end)
        assert.not_matches("_scope_open", e)
        assert.matches("args_spec%.lua:%d+:", e)
      end
    end)
  end))

  it("documented messages for file methods; regression: closing twice blamed lua/uring/proc.lua", adv.clean(function()
    run(function()
      local f = assert(uring.open(dir .. "/m", "w+"))
      raises("invalid format", function() return f:read("x") end)
      raises("string expected, got table", function() return f:read({}) end)
      raises("count out of range", function() return f:pread(-1, 0) end)
      raises("count out of range", function() return f:pread(2 ^ 31, 0) end)
      raises("offset must be non-negative", function() return f:pread(1, -1) end)
      raises("offset must be non-negative", function() return f:pwrite("x", -1) end)
      raises("string expected, got nil", function() return f:pwrite(nil, 0) end)
      raises("invalid option 'x'", function() return f:seek("x") end)
      raises("invalid option 'x'", function() return f:setvbuf("x") end)
      raises("string expected, got table", function() return f:write({}) end)
      raises("uring.file expected, got number", f.read, 5)
      local many = {}
      for i = 1, 300 do many[i] = "l" end
      raises("too many arguments", function() return f:lines(table.unpack(many)) end)
      -- offsets the kernel refuses are failures, not errors
      adv.fails("Invalid argument", 22, f:pwrite("x", math.maxinteger))
      adv.fails("Invalid argument", 22, f:seek("set", math.mininteger))
      assert.is_true(f:close())
      -- closing twice raises as io does, at the caller's line, not inside
      -- lua/uring (the popen wrapper of close once claimed the error)
      local e = raises("attempt to use a closed file", function()
        local r = f:close()   -- not a tail call: this line is the caller
        return r
      end)
      assert.not_matches("lua/uring/", e)
      assert.matches("args_spec%.lua:%d+:", e)
    end)
  end))

  it("regression #11: sock:read(1.5), read(0/0), read(math.huge) and a negative count waited or named '_take'", adv.clean(function()
    run(function()
      local c, s = adv.pair()
      for _, case in ipairs {
        { 1.5, "number has no integer representation" },
        { 0 / 0, "number has no integer representation" },
        { math.huge, "number has no integer representation" },
        { -1, "invalid count" },
        { math.mininteger, "invalid count" },
      } do
        local e = raises("bad argument #1 to 'read' (" .. case[2] .. ")", function()
          local r = s:read(case[1])   -- not a tail call: this line is the caller
          return r
        end)
        assert.matches("args_spec%.lua:%d+:", e)
        assert.not_matches("lua/uring/", e)
        assert.not_matches("'_", e)
      end
      -- nothing was waited for or taken: the bytes are all still there
      c:send("abc")
      assert.equal("abc", s:read(3))
      c:close(); s:close()
    end)
  end))

  it("regression #12: private helpers of the core are out of reach once uring is loaded", adv.clean(function()
    local core = require "uring.core"
    for k in pairs(core) do
      assert(type(k) ~= "string" or k:sub(1, 1) ~= "_", "uring.core." .. tostring(k) .. " is reachable")
    end
    assert.is_nil(core._workers_stop)
    -- the public tables hold no _ functions either (LuaSocket's own
    -- _VERSION, _SETSIZE ... are values, and __unload is LuaSocket's)
    local function walk(t, path, seen)
      seen[t] = true
      for k, v in pairs(t) do
        if type(k) == "string" and k:match("^_%a") and type(v) == "function" then
          error(path .. "." .. k .. " is a private function on a public table")
        end
        if type(v) == "table" and not seen[v] then walk(v, path .. "." .. tostring(k), seen) end
      end
    end
    walk(uring, "uring", {})
    -- uring.socket is a plain table: calling it reset the module once
    assert.is_nil(getmetatable(uring.socket))
    -- uring.errno comes from C, and is a copy
    assert.equal(62, uring.errno.ETIME)
    assert.equal(9, uring.errno.EBADF)
    assert.equal(111, uring.errno.ECONNREFUSED)
    uring.errno.EBADF = 0
    assert.equal(9, core.errno.EBADF)
    uring.errno.EBADF = 9
    assert.equal(2, select(3, run(function() return uring.open(dir .. "/none") end)))
    assert.equal(uring.errno.ENOENT, 2)
  end))

  it("regression #12: functions written in Lua raise at the caller's line, naming their argument", adv.clean(function()
    run(function()
      local http, socket = uring.http, uring.socket
      local function at_caller(expect, fn)
        local e = raises(expect, fn)
        assert.matches("^[^:]*args_spec%.lua:%d+: ", e)
        return e
      end
      at_caller("bad argument #3 to 'writefile' (string expected, got number)", function()
        local r = uring.writefile(dir .. "/w", "x", 5); return r end)
      at_caller("bad argument #1 to 'select' (table expected, got number)", function()
        local r = socket.select(5); return r end)
      at_caller("bad argument #1 to 'client' (table expected, got number)", function()
        local r = http.client(5); return r end)
      at_caller("bad argument #2 to 'request' (method must be a token string", function()
        local r = http.request("http://127.0.0.1:1/", { method = "G T" }); return r end)
      local router = http.router()
      at_caller("bad argument #1 to 'get' (router expected, got string)", function()
        local r = router.get("^/", print); return r end)
      at_caller("bad argument #1 to 'get' (string expected, got number)", function()
        local r = router:get(5, print); return r end)
      local tcp, udp = socket.tcp(), socket.udp()
      at_caller("bad argument #1 to 'getfd' (tcp{any} expected, got udp{unconnected})", function()
        local r = tcp.getfd(udp); return r end)
      at_caller("bad argument #1 to 'settimeout' (udp{any} expected, got tcp{master})", function()
        local r = udp.settimeout(tcp, 1); return r end)
      local other = { settimeout = udp.settimeout }
      at_caller("calling 'settimeout' on bad self (udp{any} expected, got table)", function()
        local r = other:settimeout(1); return r end)
      -- with ':', the first argument after self is #1, as for C methods
      at_caller("bad argument #1 to 'settimeout' (number expected, got table)", function()
        local r = udp:settimeout({}); return r end)
      at_caller("bad argument #2 to 'settimeout' (number expected, got table)", function()
        local r = udp.settimeout(udp, {}); return r end)
      at_caller("bad argument #1 to '__tostring' (tcp{any} or udp{any} expected, got number)", function()
        local r = getmetatable(tcp).__tostring(5); return r end)
      local c = http.client()
      at_caller("bad argument #1 to 'close' (client expected, got table)", function()
        local r = c.close({}); return r end)
      at_caller("bad argument #1 to 'request' (client expected, got number)", function()
        local r = c.request(5, "http://x/"); return r end)
      at_caller("bad argument #1 to '__close' (client expected, got number)", function()
        local r = getmetatable(c).__close(5); return r end)
      tcp:close(); udp:close(); c:close()
    end)
  end))

  it("regression: sock.read(other) and a table receive prefix raised internal errors in net.lua", adv.clean(function()
    run(function()
      local c, s = adv.pair()
      local b = uring.buffer(8)
      for _, m in ipairs { "read", "receive", "recv", "write", "lines" } do
        local e = raises("uring.socket expected, got uring.buffer", s[m], b)
        assert.not_matches("attempt to", e)
      end
      raises("bad argument #2 to 'receive' (string expected, got boolean)",
        function() return s:receive("*l", true) end)
      c:send("x\n")
      assert.equal("7x", s:receive("*l", 7))   -- a number prefix, as LuaSocket
      c:close(); s:close()
    end)
  end))

  it("documented messages for buffer, ring, task, signal and process methods", adv.clean(function()
    run(function()
      local b = uring.buffer(16)
      raises("byte must be in 0..255", function() return b:fill(256) end)
      raises("overflow a buffer of 16 bytes", function() return b:write("abc", 15) end)
      raises("position out of range", function() return b:write("abc", 0) end)
      raises("position out of range", function() return b:write("abc", math.mininteger) end)
      raises("uring.buffer expected", b.size, {})
      local r <close> = assert(uring.ring { entries = 4 })
      raises("uring.buffer expected", function() return r:prep_read(0, "x", 1, 0) end)
      raises("uring.ring expected", r.submit, b)
      local t = uring.spawn(function() end)
      raises("a task cannot join itself", function() return uring.current():join() end)
      raises("uring.task expected", t.join, {})
      t:join()
      local s <close> = assert(uring.signal("USR2"))
      raises("uring.signal expected", s.wait, 1)
      local p = assert(uring.exec { "true" })
      raises("unknown signal name", function() return p:kill("NOPE") end)
      assert.is_true(p:wait())
      adv.fails("No such process", 3, p:kill())
    end)
  end))

  -- the sweep: every function of the module
  it("sweeps every uring.* function with hostile values", adv.clean(function()
    local calls = 0
    run(function()
      local names = {}
      for k, v in pairs(uring) do
        if type(v) == "function" then names[#names + 1] = k end
      end
      table.sort(names)
      for _, name in ipairs(names) do
        local skip
        if name == "install_socket" or name == "run" then
          -- swaps package.loaded / nests the loop: covered by name below
          skip = function() return true end
        elseif name == "configure" or name == "trace" then
          skip = function(_, v) return type(v) == "table" or type(v) == "boolean"
            or type(v) == "function" end
        elseif name == "popen" or name == "exec" then
          -- a string would be run as a command
          skip = function(_, v) return type(v) == "string" or type(v) == "table"
            or type(v) == "number" end
        elseif ({ mkdir = 1, writefile = 1, rename = 1, unlink = 1, rmdir = 1,
                  copyfile = 1, listen_unix = 1, open = 1, readfile = 1,
                  trace_export = 1, symlink = 1, link = 1, chmod = 1, chown = 1,
                  utime = 1, truncate = 1, tmpfile = 1, mkdtemp = 1 })[name] then
          -- numbers and strings are paths in the current directory
          skip = function(_, v) return type(v) == "number" or type(v) == "string" end
        elseif name == "signal" then
          skip = function(_, v) return math.type(v) == "integer" and v > 0 and v < 65 end
        elseif name == "spawn" or name == "group" then
          skip = function(_, v) return type(v) == "function" end   -- print: noise
        elseif name == "sleep" then
          skip = function(_, v) return v == 0.001 or v == math.maxinteger end
        end
        calls = calls + sweep("uring." .. name, uring[name], nil, skip)
      end
      -- run and install_socket with what cannot change global state
      for _, h in ipairs(hostile) do
        if type(h[2]) ~= "function" then try("uring.run(" .. h[1] .. ")", uring.run, h[2]) end
      end
      uring.trace(false)
    end)
    no_problems()
    assert.is_true(calls > 500, "only " .. calls .. " calls")
  end, { lookups = true }))

  it("regression: socket.skip(nil) raised an arithmetic error inside socket.lua", adv.clean(function()
    local socket = uring.socket
    raises("bad argument #1 to 'skip' (number expected, got no value)", socket.skip)
    raises("bad argument #1 to 'skip' (number expected, got table)", socket.skip, {})
    raises("number has no integer representation", socket.skip, 0.5)
    assert.same({ "b", "c" }, { socket.skip(1, "a", "b", "c") })
    assert.same({}, { socket.skip(math.maxinteger, "a") })
    assert.same({}, { socket.skip(3, "a", "b", "c") })
  end))

  -- LuaSocket's API over the ring is plain Lua: the same sweep
  it("sweeps uring.socket (LuaSocket's API) and its objects' methods", adv.clean(function()
    local calls = 0
    run(function()
      local socket = uring.socket
      local names = {}
      for k, v in pairs(socket) do
        if type(v) == "function" then names[#names + 1] = k end
      end
      table.sort(names)
      for _, name in ipairs(names) do
        -- try raises a wrapped error table by design (LuaSocket's)
        if name ~= "try" then
          calls = calls + sweep("socket." .. name, socket[name], nil)
        end
      end
      for _, dname in ipairs { "toip", "getaddrinfo", "gethostname", "tohostname", "getnameinfo" } do
        if socket.dns[dname] then
          calls = calls + sweep("socket.dns." .. dname, socket.dns[dname], nil,
            function(_, v) return type(v) == "string" end)   -- real lookups
        end
      end
      local master = socket.tcp()
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      local client = assert(socket.connect("127.0.0.1", port))
      local peer = assert(server:accept())
      client:close()        -- peer's receives see the end at once
      local udp = socket.udp()
      local objs = { master = master, server = server, client = peer, udp = udp }
      for _, kind in ipairs { "client", "master", "server", "udp" } do
        local obj = objs[kind]
        local ms = {}
        local idx = getmetatable(obj).__index
        for k, v in pairs(type(idx) == "table" and idx or {}) do
          if type(v) == "function" and k ~= "close" then ms[#ms + 1] = k end
        end
        table.sort(ms)
        for _, m in ipairs(ms) do
          calls = calls + sweep(kind .. ":" .. m, obj[m], obj)
          for _, other in pairs(objs) do
            if other ~= obj then try(kind .. "." .. m .. "(other)", obj[m], other) end
          end
        end
      end
      for _, o in pairs(objs) do o:close() end
    end)
    no_problems()
    assert.is_true(calls > 300, "only " .. calls .. " calls")
  end, { lookups = true }))

  -- the sweep over each object's methods, with the object itself as self
  -- and with objects of every other kind as self
  it("sweeps every method of every object kind", adv.clean(function()
    local calls = 0
    run(function()
      local file = assert(uring.open(dir .. "/sweep", "w+"))
      local c, s = adv.pair()
      local server = assert(uring.listen("127.0.0.1", 0))
      local udp = assert(uring.udp("127.0.0.1", 0))
      local sig = assert(uring.signal("USR2"))
      local ring = assert(uring.ring { entries = 4 })
      local buf = uring.buffer(64)
      local proc = assert(uring.exec { "true" })
      assert.is_true(proc:wait())
      local task = uring.spawn(function() end)
      task:join()
      c:close()                -- s sees EOF: its receives return at once
      local objs = { file = file, sock = s, server = server, udp = udp,
        signal = sig, ring = ring, buffer = buf, proc = proc, task = task }
      local kinds = {}
      for k in pairs(objs) do kinds[#kinds + 1] = k end
      table.sort(kinds)
      for _, kind in ipairs(kinds) do
        local obj = objs[kind]
        for _, m in ipairs(methods(obj)) do
          local skip
          if kind == "ring" and (m == "wait_cqe" or m == "submit_and_wait"
              or m == "submit") then
            -- they block the whole state by design, or would hand the
            -- kernel the junk SQEs the sweep prepared; checked below
            skip = function() return true end
          elseif m == "close" then
            skip = function() return true end   -- closed last
          end
          calls = calls + sweep(kind .. ":" .. m, obj[m], obj, skip)
          -- a method called on an object of every other kind
          for _, other in ipairs(kinds) do
            if other ~= kind and not (m == "close" or m == "wait_cqe"
                or m == "submit_and_wait" or m == "submit") then
              try(("%s.%s(self = %s)"):format(kind, m, other), obj[m], objs[other])
              calls = calls + 1
            end
          end
        end
      end
      raises("bad argument", ring.wait_cqe, ring, "x")
      raises("bad argument", ring.submit_and_wait, ring, -1)
      -- nothing the sweep prepared in the teaching ring is submitted
      ring:close()
      for _, o in ipairs { file, s, server, udp, sig } do o:close() end
    end)
    no_problems()
    assert.is_true(calls > 1000, "only " .. calls .. " calls")
  end))
end)

-- The Lua layers (lua/uring/*.lua): every function and method written in
-- Lua that a script can reach from require "uring" -- the uring.*
-- functions, uring.socket and its objects, uring.http and its objects,
-- the methods Lua adds to files and sockets, every metamethod, and the
-- functions they return (iterators, try/protect, the static handler) --
-- gets a hostile value in every position, and every object of another
-- kind (and every hostile value) as self.  Stricter than the sweeps
-- above: an error must be raised at the caller's line and be
-- "bad argument #N to 'name' (...)" naming that function (N within the
-- arguments given), or a documented one ("name: ...", "attempt to use a
-- closed file"); a failure returned must be a fail tuple.  No "attempt to
-- index/call/...", no position inside lua/uring, no '_helper' name.
describe("adversarial arguments: the Lua layers", function()
  local dir
  setup(function() dir = adv.tmpdir() end)
  teardown(function() adv.rmrf(dir) end)

  local core = require "uring.core"
  local TIMEOUT = core.TIMEOUT
  local pack, unpack = table.pack, table.unpack

  -- every error of a swept call must name this line (the caller's)
  local CALL_AT
  local function call(fn, ...)
    local r = pack(fn(...))   -- CALL_AT
    return r
  end
  CALL_AT = debug.getinfo(1, "S").short_src .. ":"
    .. (debug.getinfo(call, "S").linedefined + 1) .. ": "

  local function from_lua_layer(f)
    if type(f) ~= "function" then return false end
    local src = debug.getinfo(f, "S").source
    return src:find("lua/uring/", 1, true) ~= nil
  end

  local HUGE = ("x"):rep(1 << 20)
  local SCALARS = {
    { "nil", nil }, { "true", true }, { "false", false }, { "0", 0 },
    { "-0.0", -0.0 }, { "1", 1 }, { "-1", -1 }, { "1.5", 1.5 },
    { "0.001", 0.001 }, { "-1.5", -1.5 }, { "nan", 0 / 0 },
    { "inf", math.huge }, { "-inf", -math.huge }, { "1e300", 1e300 },
    { "maxinteger", math.maxinteger }, { "mininteger", math.mininteger },
    { "2^53", 2 ^ 53 }, { "empty string", "" }, { "NUL string", "a\0b" },
    { "1 MiB string", HUGE }, { "table", {} }, { "nested table", { {} } },
    { "C function", os.clock }, { "Lua function", function() end },
    { "coroutine", coroutine.create(print) }, { "io file", io.stderr },
  }

  -- (patterns) an internal error, a position inside the Lua layers, a
  -- private helper's name ('_take'; metamethods are '__x'), a C argument
  -- error of a field (#-1)
  local BLACKLIST = { "attempt to index", "attempt to call", "attempt to perform",
    "attempt to concatenate", "attempt to compare", "attempt to get length",
    "lua/uring/", "'_%a", "#%-", "table index is", "stack overflow" }

  it("sweeps every function and method written in Lua, asserting each message's shape", adv.clean(function()
    local stats = { calls = 0, badarg = 0, documented = 0, returned = 0,
      timedout = 0, functions = 0 }
    local problems = {}
    local function problem(where, what)
      problems[#problems + 1] = where .. ": " .. what
    end

    -- one call: fn(args[1..n]) through `call`, cut short after 10 ms;
    -- the outcome is checked against what entry allows
    local function try(entry, where, n, args)
      stats.calls = stats.calls + 1
      local r = pack(uring.timeout(0.01, function()
        local res = pack(pcall(call, entry.fn, unpack(args, 1, n)))
        -- the deadline unwinds with the core's sentinel: let it through
        if res[1] == false and res[2] == TIMEOUT then error(TIMEOUT, 0) end
        return unpack(res, 1, res.n)
      end))
      if r[1] == nil and r[2] == "timeout" then
        stats.timedout = stats.timedout + 1
        return
      end
      if r[1] == true then
        local res = r[2]
        stats.returned = stats.returned + 1
        -- an object the call made (socket.bind's, http.server's): closed
        local made = res[1]
        if (type(made) == "table" or type(made) == "userdata") and not entry.fixtures[made] then
          local ok, close = pcall(function() return made.close end)
          if ok and type(close) == "function" then pcall(close, made) end
        end
        if res[1] == nil and res.n >= 2 and res[2] ~= nil and type(res[2]) ~= "string" then
          problem(where, "returned nil and a " .. type(res[2]) .. ", not a fail tuple")
        end
        return
      end
      local e = r[2]
      if type(e) ~= "string" then
        if entry.table_errors and type(e) == "table" and getmetatable(e)
            and getmetatable(e).__tostring then
          stats.documented = stats.documented + 1     -- LuaSocket's try
        else
          problem(where, "raised a " .. type(e))
        end
        return
      end
      for _, bad in ipairs(BLACKLIST) do
        if e:find(bad) then return problem(where, "internal error: " .. e) end
      end
      if e:sub(1, #CALL_AT) ~= CALL_AT then
        if e == "file is already closed" then          -- io's iterator, as io
          stats.documented = stats.documented + 1
          return
        end
        return problem(where, "not raised at the caller's line: " .. e)
      end
      local msg = e:sub(#CALL_AT + 1)
      local num, name = msg:match("^bad argument #(%d+) to '([^']+)' %(.+%)$")
      if num then
        num = tonumber(num)
        if not entry.names[name] then
          return problem(where, "names '" .. name .. "': " .. e)
        end
        if num < 1 or num > math.max(n, 1) + 1 then
          return problem(where, "argument #" .. num .. " of " .. n .. " given: " .. e)
        end
        stats.badarg = stats.badarg + 1
        return
      end
      local prefix = msg:match("^([%w_ ]+): .")
      if (prefix and entry.names[prefix]) or msg:match("^attempt to use a closed %a+$") then
        stats.documented = stats.documented + 1
        return
      end
      problem(where, "an error of no documented shape: " .. e)
    end

    run(function()
      -- objects of every kind: the C core's, and the Lua layers'
      local socket, http = uring.socket, uring.http
      local objs = {}
      objs.file = assert(uring.open(dir .. "/sweep", "w+"))
      do
        local c, s = adv.pair()
        c:close()                           -- s sees EOF: reads end at once
        objs.sock = s
      end
      objs.listener = assert(uring.listen("127.0.0.1", 0))
      objs.udp = assert(uring.udp("127.0.0.1", 0))
      objs.signal = assert(uring.signal("USR2"))
      objs.ring = assert(uring.ring { entries = 4 })
      objs.buffer = uring.buffer(64)
      objs.proc = assert(uring.exec { "true" })
      assert.is_true(objs.proc:wait())
      objs.task = uring.spawn(function() end)
      objs.task:join()
      -- LuaSocket's
      objs["tcp{master}"] = socket.tcp()
      objs["tcp{server}"] = assert(socket.bind("127.0.0.1", 0))
      do
        local _, port = objs["tcp{server}"]:getsockname()
        local c = assert(socket.connect("127.0.0.1", port))
        objs["tcp{client}"] = assert(objs["tcp{server}"]:accept())
        c:close()
      end
      objs["udp{unconnected}"] = socket.udp()
      objs["udp{connected}"] = socket.udp()
      assert(objs["udp{connected}"]:setpeername("127.0.0.1", 9))
      -- uring.http's: a router, a server that served one request (its
      -- request and its response, finished), a client, a header table
      objs.router = http.router()
      local seen = {}
      objs.server = assert(http.server { handler = function(req, res)
        if req.path == "/ws" then          -- a WebSocket peer: echoes
          local ws = assert(req:upgrade())
          while true do
            local m, kind = ws:receive()
            if not m then return end
            ws:send(m, kind)
          end
        end
        seen.req, seen.res = req, res
        return 200, "ok"
      end })
      local serving = uring.spawn(objs.server.serve, objs.server)
      objs.client = http.client()
      local got = assert(objs.client:request("http://127.0.0.1:" .. objs.server:port() .. "/x"))
      assert.equal("ok", got.body)
      objs.request, objs.response = seen.req, seen.res
      objs.ws = assert(http.websocket("ws://127.0.0.1:" .. objs.server:port() .. "/ws"))
      objs.headers = setmetatable({}, http.HEADERS_MT)

      local kinds = {}
      for k in pairs(objs) do kinds[#kinds + 1] = k end
      table.sort(kinds)

      -- the functions: {label, fn, names (those an error may give), self
      -- (an object, or nil for a plain function), last (changes its self:
      -- swept after the others)}
      local entries, byfn = {}, {}
      local function add(label, fn, name, self, extra)
        if not from_lua_layer(fn) then return end
        local e = { label = label, fn = fn, self = self, names = { [name] = true } }
        for k, v in pairs(extra or {}) do e[k] = v end
        entries[#entries + 1] = e
        byfn[fn] = true
      end
      local MUTATES = { close = true, __close = true, __gc = true, shutdown = true,
        listen = true, connect = true, bind = true, setpeername = true,
        setsockname = true, serve = true }
      -- what a function on a module table is named in errors
      local function module(prefix, t)
        local keys = {}
        for k in pairs(t) do keys[#keys + 1] = k end
        table.sort(keys)
        for _, k in ipairs(keys) do
          local extra
          if k == "try" then extra = { table_errors = true }   -- LuaSocket's try
          elseif prefix == "uring." and (k == "trace_export" or k == "mkdtemp" or k == "tmpfile") then
            -- a path would be written (a file named "a" or "-1" here)
            extra = { skip = function(v) return type(v) == "string" or type(v) == "number" end }
          elseif prefix == "uring.socket.dns." then
            -- a name would be looked up (the network): not swept
            extra = { skip = function(v) return type(v) == "string" and v ~= ""
              or type(v) == "number" end }
          end
          add(prefix .. k, t[k], k, nil, extra)
        end
      end
      module("uring.", uring)
      module("uring.socket.", socket)
      module("uring.socket.dns.", socket.dns)
      module("uring.http.", http)
      module("uring.repl.", require "uring.repl")
      -- methods and metamethods, with their object as self
      for _, kind in ipairs(kinds) do
        local obj = objs[kind]
        local mt = getmetatable(obj)
        if type(mt) == "table" then
          local fns = {}
          for k, v in pairs(mt) do fns[k] = v end
          if type(mt.__index) == "table" then
            for k, v in pairs(mt.__index) do fns[k] = v end
          end
          local keys = {}
          for k in pairs(fns) do keys[#keys + 1] = k end
          table.sort(keys)
          for _, k in ipairs(keys) do
            add(kind .. ":" .. k, fns[k], k, obj, { last = MUTATES[k], kind = kind })
          end
        end
      end
      -- what the functions return
      add("socket.try (newtry)", socket.newtry(function() end), "try", nil, { table_errors = true })
      add("socket.protect(fn)", socket.protect(function() end), "protect")
      add("static handler", http.static(dir), "static handler")
      add("file:lines() iterator", objs.file:lines(), "for iterator")
      add("sock:lines() iterator", objs.sock:lines(), "for iterator")
      -- these raise "name:" errors of the function they call for them
      for _, e in ipairs(entries) do
        if e.label:match("iterator") then e.names.lines = true end
        if e.label == "uring.http.request" then e.names.request = true end
      end

      -- nothing written in Lua that a script reaches is left out
      local missed = {}
      local function walk(t, path, depth)
        if depth > 3 then return end
        for k, v in pairs(t) do
          if type(v) == "function" and from_lua_layer(v) and not byfn[v] then
            missed[#missed + 1] = path .. "." .. tostring(k)
          elseif type(v) == "table" and type(k) == "string" and v ~= t then
            walk(v, path .. "." .. k, depth + 1)
          end
        end
      end
      walk(uring, "uring", 1)
      table.sort(missed)
      assert(#missed == 0, "reachable Lua functions the sweep does not call: "
        .. table.concat(missed, ", "))

      local fixtures = {}
      for _, o in pairs(objs) do fixtures[o] = true end
      for _, e in ipairs(entries) do e.fixtures = fixtures end

      -- valid arguments, so that each hostile one is also met where the
      -- others are right (only the hostile one is wrong); skip: values
      -- that would act outside the test (a number or string as a path in
      -- the current directory, a name to look up on the network)
      local function fn() end
      local port = objs.server:port()
      local refused
      do                               -- a port nothing listens on
        local l = assert(uring.listen("127.0.0.1", 0))
        refused = select(2, l:getsockname())
        l:close()
      end
      local url = "http://127.0.0.1:" .. port .. "/t"
      local cwd_path = function(pos) return function(p, v)
        return p == pos and (type(v) == "string" or type(v) == "number") end end
      local host_at = cwd_path
      local T = {
        ["uring.timeout"] = { 0.05, fn },
        ["uring.readfile"] = { dir .. "/sweep" },
        ["uring.writefile"] = { dir .. "/w", "data", "w", skip = cwd_path(1) },
        ["uring.copyfile"] = { dir .. "/sweep", dir .. "/c", fn, skip = function(p, v)
          return (p == 1 or p == 2) and (type(v) == "string" or type(v) == "number") end },
        ["uring.workers"] = { 1, fn },
        ["uring.install_socket"] = { false },
        ["uring.socket.connect"] = { "127.0.0.1", refused, "*", 0, "inet", skip = host_at(1) },
        ["uring.socket.connect4"] = { "127.0.0.1", refused, skip = host_at(1) },
        ["uring.socket.connect6"] = { "::1", refused, skip = host_at(1) },
        ["uring.socket.bind"] = { "127.0.0.1", 0, 5, skip = host_at(1) },
        ["uring.socket.sleep"] = { 0.001 },
        ["uring.socket.select"] = { {}, {}, 0 },
        ["uring.socket.skip"] = { 1, "a", "b" },
        ["uring.socket.newtry"] = { fn },
        ["uring.socket.protect"] = { fn },
        ["uring.http.server"] = { { handler = fn, port = 0 } },
        ["uring.http.router"] = { { { "GET", "^/", fn } } },
        ["uring.http.static"] = { dir, { prefix = "/", index = "index.html", chunk = 1024 } },
        ["uring.http.request"] = { url, { method = "GET", headers = { A = "b" }, body = "x",
          timeout = 1, redirects = 0 } },
        ["uring.http.client"] = { { max_idle = 1, timeout = 1 } },
        ["uring.http.parse_url"] = { url },
        ["uring.http.escape"] = { "a b" },
        ["uring.http.unescape"] = { "a%20b" },
        ["file:lines"] = { "l", "n" },
        ["sock:recv"] = { 10 }, ["sock:read"] = { "l", 5, "a" },
        ["sock:write"] = { "a", 1 }, ["sock:lines"] = { "l" },
        ["listener:recv"] = { 10 }, ["listener:read"] = { "l" },
        ["tcp{client}:send"] = { "x", 1, 1 }, ["tcp{client}:receive"] = { "*l", "p" },
        ["tcp{client}:setoption"] = { "tcp-nodelay", true },
        ["tcp{client}:getoption"] = { "keepalive" },
        ["tcp{client}:settimeout"] = { 1, "b" },
        ["tcp{client}:setstats"] = { 1, 2, 3 },
        ["tcp{client}:shutdown"] = { "send" },
        ["tcp{master}:connect"] = { "127.0.0.1", refused, skip = host_at(1) },
        ["tcp{master}:bind"] = { "127.0.0.1", 0, skip = host_at(1) },
        ["tcp{master}:listen"] = { 5 },
        ["tcp{master}:setoption"] = { "linger", { on = true, timeout = 1 } },
        ["tcp{server}:settimeout"] = { 0, "t" },
        ["udp{unconnected}:sendto"] = { "x", "127.0.0.1", 9, skip = host_at(2) },
        ["udp{unconnected}:setsockname"] = { "127.0.0.1", 0, skip = host_at(1) },
        ["udp{unconnected}:setpeername"] = { "127.0.0.1", 9, skip = host_at(1) },
        ["udp{unconnected}:receivefrom"] = { 10 },
        ["udp{unconnected}:setoption"] = { "broadcast", true },
        ["udp{unconnected}:getoption"] = { "broadcast" },
        ["udp{unconnected}:settimeout"] = { 1, "b" },
        ["udp{connected}:send"] = { "x" }, ["udp{connected}:receive"] = { 10 },
        ["udp{connected}:setpeername"] = { "*", skip = host_at(1) },
        ["router:route"] = { "GET", "^/x", fn }, ["router:get"] = { "^/x", fn },
        ["router:any"] = { "^/x", fn },
        ["router:dispatch"] = { objs.request, objs.response },
        ["router:__call"] = { objs.request, objs.response },
        ["response:status"] = { 200 }, ["response:header"] = { "X-A", "b" },
        ["response:get_header"] = { "x-a" }, ["response:write"] = { "x" },
        ["response:finish"] = { "x" }, ["response:reply"] = { 200, "x", { A = "b" } },
        ["request:header"] = { "host" }, ["request:__index"] = { "path" },
        ["headers:__index"] = { "a" },
        ["client:request"] = { url, { method = "GET" } },
        ["static handler"] = { objs.request, objs.response, "x" },
      }
      for _, e in ipairs(entries) do e.template = T[e.label] end

      -- the sweep: the functions that leave their self as it was first
      table.sort(entries, function(a, b)
        if (a.last or false) ~= (b.last or false) then return not a.last end
        return a.label < b.label
      end)
      if os.getenv("URING_SWEEP_LIST") then
        for _, e in ipairs(entries) do io.stderr:write(e.label, "\n") end
      end
      for _, e in ipairs(entries) do
        stats.functions = stats.functions + 1
        local info = debug.getinfo(e.fn, "u")
        local declared = info.nparams - (e.self ~= nil and 1 or 0)
        local positions = math.min(math.max(declared, 1) + 1, 5)
        local base = e.self ~= nil and 1 or 0
        local t = e.template
        if t then positions = math.max(positions, #t) end
        for pos = 1, positions do
          for _, h in ipairs(SCALARS) do
            -- the others nil, then (with a template) the others valid
            if not (e.skip and e.skip(h[2])) then
              local args = {}
              if e.self ~= nil then args[1] = e.self end
              args[base + pos] = h[2]
              try(e, ("%s(arg %d = %s)"):format(e.label, pos, h[1]), base + positions, args)
            end
            if t and not (t.skip and t.skip(pos, h[2])) then
              local args = {}
              if e.self ~= nil then args[1] = e.self end
              for i = 1, #t do args[base + i] = t[i] end
              args[base + pos] = h[2]
              try(e, ("%s(arg %d = %s, others valid)"):format(e.label, pos, h[1]),
                base + positions, args)
            end
          end
        end
        if e.self ~= nil then
          -- self: every object of another kind, every hostile value
          for _, kind in ipairs(kinds) do
            if objs[kind] ~= e.self then
              try(e, ("%s(self = %s)"):format(e.label, kind), 1, { objs[kind] })
            end
          end
          for _, h in ipairs(SCALARS) do
            try(e, ("%s(self = %s)"):format(e.label, h[1]), 1, { h[2] })
          end
        end
      end

      -- LuaSocket's install_socket(true) above: put package.loaded back
      uring.install_socket(false)
      -- the rest, closed
      pcall(objs.ws.close, objs.ws)
      objs.server:close()
      serving:join()
      objs.client:close()
      for _, kind in ipairs { "file", "sock", "listener", "udp", "signal", "ring" } do
        pcall(objs[kind].close, objs[kind])
      end
      for _, kind in ipairs { "tcp{master}", "tcp{server}", "tcp{client}",
          "udp{unconnected}", "udp{connected}" } do
        objs[kind]:close()
      end
    end, 120)

    print(("args_spec: the Lua layers: %d internal errors across %d calls "
      .. "(%d functions and methods; %d bad argument, %d other documented "
      .. "errors, %d returned, %d cut short at 10 ms)"):format(#problems,
      stats.calls, stats.functions, stats.badarg, stats.documented,
      stats.returned, stats.timedout))
    assert(#problems == 0, #problems .. " unclean outcomes:\n"
      .. table.concat(problems, "\n", 1, math.min(#problems, 60)))
    assert.is_true(stats.functions > 100, "only " .. stats.functions .. " functions")
  end, { lookups = true }))
end)
