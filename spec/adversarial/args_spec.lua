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
                  copyfile = 1, listen_unix = 1, open = 1, readfile = 1 })[name] then
          -- numbers and strings are paths in the current directory
          skip = function(_, v) return type(v) == "number" or type(v) == "string" end
        elseif name == "signal" then
          skip = function(_, v) return math.type(v) == "integer" and v > 0 and v < 65 end
        elseif name == "spawn" then
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
