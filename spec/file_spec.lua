-- spec/file_spec.lua: uring.open and the file methods, the whole-file
-- helpers and the path operations.  For each API: it works; bad arguments
-- raise the right message; an OS failure returns nil, "msg", errno.  Every
-- describe ends by checking that nothing is left in flight and that no
-- file descriptor leaked.
local uring = require "uring"

local helpers = require "helpers"

local PID = helpers.pid()
local fdcount = helpers.fd_count
local slurp, spit = helpers.readall, helpers.writeall
local random_bytes = helpers.random_bytes
local errmsg, raises, fails = helpers.errmsg, helpers.raises, helpers.fails
local helpers_is_root = helpers.is_root

-- a failed write: the fail tuple, then the bytes that did reach the file
local function wfails (msg, errno, done, a, b, c, d, ...)
  fails(msg, errno, a, b, c)
  assert.equal(done, d)
  assert.equal(0, select("#", ...))
end

local run = uring.run

-- Temp dir per test, and the leak check every describe ends with.
local dir
local function setup_teardown ()
  local before
  before_each(function()
    run(function() end)       -- the ring's own fd exists from here on
    local base = os.tmpname()
    os.remove(base)
    dir = base .. ".d"
    assert(os.execute("mkdir '" .. dir .. "'"))
    before = fdcount()
  end)
  after_each(function()
    os.execute("rm -rf '" .. dir .. "'")
    assert.equal(0, uring.stats().inflight)
    assert.equal(before, fdcount(), "file descriptors leaked")
  end)
end

describe("uring.open #io", function()
  setup_teardown()

  it("opens in each io mode with io's semantics", function()
    local p = dir .. "/f"
    spit(p, "hello\n")
    run(function()
      local f = assert(uring.open(p))                 -- default "r"
      assert.equal("hello", f:read())
      assert.is_true(f:close())
      f = assert(uring.open(p, "a"))                  -- appends
      assert.equal(6, f:seek())                       -- "a" starts at the end
      f:write("more\n"); f:close()
      assert.equal("hello\nmore\n", slurp(p))
      f = assert(uring.open(p, "a+"))
      assert.equal(0, f:seek())                       -- "a+" reads from the start
      assert.equal("hello", f:read("l"))
      f:seek("cur", 0)
      f:write("x")                                    -- but writes at the end
      assert.equal(12, f:seek("cur", 0))
      f:close()
      assert.equal("hello\nmore\nx", slurp(p))
      f = assert(uring.open(p, "r+"))                 -- overwrites in place
      f:write("J")
      f:close()
      assert.equal("Jello\nmore\nx", slurp(p))
      f = assert(uring.open(p, "w+b"))                -- truncates; reads back
      assert.equal(0, #slurp(p))
      f:write("abc")
      f:seek("set")
      assert.equal("abc", f:read("a"))
      f:close()
      f = assert(uring.open(dir .. "/new", "w"))      -- creates
      f:close()
      assert.equal("", slurp(dir .. "/new"))
    end)
  end)

  it("takes a permission number or an options table", function()
    run(function()
      local f = assert(uring.open(dir .. "/p1", "w", 384))        -- 0600
      f:close()
      assert.equal(384, uring.stat(dir .. "/p1").mode)
      f = assert(uring.open(dir .. "/p2", "w", { perm = 416 }))  -- 0640
      f:close()
      assert.equal(416, uring.stat(dir .. "/p2").mode)
      fails(dir .. "/p2: File exists", 17,
            uring.open(dir .. "/p2", "w", { exclusive = true }))
      f = assert(uring.open(dir .. "/p3", "w", { exclusive = true, sync = true }))
      f:write("synced"); f:close()
      assert.equal("synced", slurp(dir .. "/p3"))
    end)
  end)

  it("raises on bad arguments", function()
    local p = dir .. "/f"
    run(function()
      -- core functions are named 'open', 'uring.open' or 'uring.core.open'
      -- by Lua, depending on where it finds them
      assert.matches("bad argument #2 to '[%w%.]*open' %(string expected, got table%)",
                     errmsg(uring.open, 1, {}))
      assert.matches("bad argument #1 to '[%w%.]*open' %(string expected, got no value%)",
                     errmsg(uring.open))
      assert.matches("bad argument #2 to '[%w%.]*open' %(invalid mode%)",
                     errmsg(uring.open, p, "rw"))
      assert.matches("invalid mode", errmsg(uring.open, p, "x"))
      assert.matches("invalid mode", errmsg(uring.open, p, "r+x"))
      assert.matches("bad argument #3 to '[%w%.]*open' %(number or table expected, got string%)",
                     errmsg(uring.open, p, "w", "x"))
      assert.matches("bad argument #3 to '[%w%.]*open' %(invalid permissions%)",
                     errmsg(uring.open, p, "w", 99999))
      assert.matches("bad argument #3 to '[%w%.]*open' %(perm must be an integer%)",
                     errmsg(uring.open, p, "w", { perm = "x" }))
      -- a coroutine that is not a task cannot wait
      raises("open: not inside a task (use uring.run)", coroutine.wrap(function()
        return uring.open(p, "w")
      end))
    end)
    raises("open: not inside a task (use uring.run)", uring.open, p)
    assert.is_nil(io.open(p))                          -- nothing was created
  end)

  it("returns nil, msg, errno when the OS refuses", function()
    run(function()
      fails(dir .. "/missing: No such file or directory", 2, uring.open(dir .. "/missing"))
      fails(dir .. "/missing: No such file or directory", 2, uring.open(dir .. "/missing", "r+"))
      fails(dir .. "/no/such: No such file or directory", 2, uring.open(dir .. "/no/such", "w"))
      fails(dir .. ": Is a directory", 21, uring.open(dir, "w"))
      fails(dir .. ": Is a directory", 21, uring.open(dir, "a+"))
    end)
    -- the same triples io.open gives
    local _, msg, en = io.open(dir, "w")
    assert.equal(dir .. ": Is a directory", msg)
    assert.equal(21, en)
  end)
end)

describe("file:read #io", function()
  setup_teardown()

  it("reads every format: n, l, L, a, counts, old style, several at once", function()
    local p = dir .. "/f"
    spit(p, "line one\nline two\r\n0x1F -3.5e2 .5 12\n  7 tail\nabcdefghij\nend")
    run(function()
      local f = assert(uring.open(p))
      assert.equal("line one", f:read("l"))
      assert.equal("line two\r\n", f:read("L"))
      local a, b, c, d = f:read("n", "n", "n", "*n")
      assert.equal(31, a); assert.equal("integer", math.type(a))
      assert.equal(-350.0, b); assert.equal("float", math.type(b))
      assert.equal(0.5, c)
      assert.equal(12, d)
      assert.equal("", f:read("l"))                   -- rest of the line
      local n, l = f:read("n", "l")                   -- n, then the rest
      assert.equal(7, n)
      assert.equal(" tail", l)
      assert.equal("abc", f:read(3))
      assert.equal("", f:read(0))                     -- not at EOF
      assert.equal("defghij", f:read("*l"))
      assert.equal("end", f:read("*a"))
      assert.is_nil(f:read(0))                        -- at EOF
      assert.is_nil(f:read("l"))
      assert.is_nil(f:read(1))
      assert.is_nil(f:read("n"))
      assert.equal("", f:read("a"))                   -- "a" never fails
      f:close()
    end)
  end)

  it("stops at the first failing format and returns nil for it", function()
    local p = dir .. "/f"
    spit(p, "12 abc\nrest\n")
    run(function()
      local f = assert(uring.open(p))
      local r = table.pack(f:read("n", "n", "l"))
      assert.same({ 12, nil, n = 2 }, r)
      assert.equal("abc", f:read("l"))                -- "n" consumed only the space
      local io_f = assert(io.open(p))
      local ri = table.pack(io_f:read("n", "n", "l"))
      assert.same(ri, r)
      io_f:close()
      f:close()
    end)
  end)

  it("reads lines and numbers across the read-ahead boundary, as io", function()
    local p = dir .. "/big"
    local parts = {}
    for i = 1, 30000 do parts[i] = tostring(i * 7919 % 100003) end
    local long = string.rep("9", 199)                 -- a 199-digit numeral
    local s = table.concat(parts, "\n") .. "\n" .. long .. " " .. string.rep("z", 100000) .. "\n"
    spit(p, s)
    run(function()
      local f = assert(uring.open(p))
      local h = assert(io.open(p))
      for i = 1, 30000 do
        local fmt = i % 3 == 0 and "n" or "l"
        local x, y = f:read(fmt), h:read(fmt)
        assert(x == y and math.type(x) == math.type(y), "line " .. i)
      end
      assert.equal(h:read("n"), f:read("n"))         -- 199 digits
      assert.equal(h:read("a"), f:read("a"))
      f:close(); h:close()
    end)
  end)

  it("sees data appended after it reached EOF, as io does", function()
    local p = dir .. "/grow"
    spit(p, "one\n")
    run(function()
      local f = assert(uring.open(p))
      assert.equal("one\n", f:read("a"))
      assert.is_nil(f:read("l"))
      local w = assert(io.open(p, "ab")); w:write("two\n"); w:close()
      assert.equal("two", f:read("l"))
      f:close()
    end)
  end)

  it("raises on bad arguments", function()
    local p = dir .. "/f"
    local f2
    spit(p, "x\n")
    run(function()
      local f = assert(uring.open(p))
      raises("bad argument #1 to 'read' (invalid format)", function() return f:read("x") end)
      raises("bad argument #2 to 'read' (invalid format)", function() return f:read("l", "q") end)
      raises("bad argument #1 to 'read' (string expected, got table)", function() return f:read({}) end)
      raises("bad argument #1 to 'read' (number has no integer representation)",
             function() return f:read(1.5) end)
      raises("bad argument #1 to 'read' (uring.file expected, got nil)", function() return f.read(nil) end)
      assert.equal("x", f:read())                      -- nothing was consumed
      f:close()
      raises("attempt to use a closed file", function() return f:read() end)
      f = assert(uring.open(p))
      f2 = f
    end)
    raises("read: not inside a task (use uring.run)", function() return f2:read() end)
    f2:close()                                        -- outside a task: plain close
    f2 = nil
  end)

  it("returns nil, msg, errno on failure, as io does", function()
    local p = dir .. "/f"
    spit(p, "data\n")
    run(function()
      local f = assert(uring.open(p, "w"))
      fails("Bad file descriptor", 9, f:read("l"))    -- write-only
      fails("Bad file descriptor", 9, f:read("a"))
      f:close()
      local h = assert(io.open(p, "w"))
      fails("Bad file descriptor", 9, h:read("l"))
      h:close()
      local d = assert(uring.open(dir))               -- a directory opens "r"
      fails("Is a directory", 21, d:read("l"))
      d:close()
    end)
  end)
end)

describe("file:write #io", function()
  setup_teardown()

  it("writes strings and numbers as io does and returns the file", function()
    local p, q = dir .. "/u", dir .. "/i"
    local vals = { "a", 1, -2, 2.5, -0.0, 1e100, 1 / 3, math.mininteger, "\0\n", "" }
    run(function()
      local f = assert(uring.open(p, "w"))
      assert.equal(f, f:write(table.unpack(vals)))
      assert.equal(f, f:write("x"):write("y"))        -- chains
      assert.equal(f, f:write())
      f:close()
    end)
    local h = assert(io.open(q, "w"))
    h:write(table.unpack(vals)); h:write("x"):write("y"); h:close()
    assert.equal(slurp(q), slurp(p))
  end)

  it("writes strings larger than its buffer, in order", function()
    local p = dir .. "/big"
    local big = random_bytes(200000)
    run(function()
      local f = assert(uring.open(p, "w"))
      f:write("head", big, "mid", big:sub(1, 70000), 42)
      f:close()
    end)
    assert.equal("head" .. big .. "mid" .. big:sub(1, 70000) .. "42", slurp(p))
  end)

  it("raises on bad arguments", function()
    run(function()
      local f = assert(uring.open(dir .. "/f", "w"))
      raises("bad argument #1 to 'write' (string expected, got table)", function() return f:write({}) end)
      raises("bad argument #2 to 'write' (string expected, got nil)", function() return f:write("a", nil) end)
      raises("bad argument #1 to 'write' (string expected, got boolean)", function() return f:write(true) end)
      f:close()
      raises("attempt to use a closed file", function() return f:write("x") end)
    end)
    assert.equal("", slurp(dir .. "/f"))
  end)

  it("returns nil, msg, errno on failure, as io does", function()
    local p = dir .. "/f"
    spit(p, "ro")
    run(function()
      local f = assert(uring.open(p, "r"))
      fails("Bad file descriptor", 9, f:write("x"))
      fails("Bad file descriptor", 9, f:write(1))
      assert.equal(f, f:write(""))                    -- nothing to write: as io
      f:close()
      -- a device with no room: the buffered write fails when it is flushed
      f = assert(uring.open("/dev/full", "w"))
      f:setvbuf("no")
      fails("No space left on device", 28, f:write("x"))
      f:close()
    end)
    assert.equal("ro", slurp(p))
  end)
end)

describe("file:lines #io", function()
  setup_teardown()

  it("iterates like io's lines, with formats, and leaves the file open", function()
    local p = dir .. "/f"
    spit(p, "a\nb\n\nc")
    run(function()
      local f = assert(uring.open(p))
      local got = {}
      for l in f:lines() do got[#got + 1] = l end
      assert.same({ "a", "b", "", "c" }, got)
      assert.equal(0, select("#", f:lines()()))       -- at EOF: no values, as io
      f:seek("set")
      got = {}
      for l in f:lines("L") do got[#got + 1] = l end
      assert.same({ "a\n", "b\n", "\n", "c" }, got)
      f:seek("set")
      local it = f:lines(1, "l")
      local c, rest = it()
      assert.equal("a", c); assert.equal("", rest)
      f:close()
      spit(p, "1 2\n3 x")
      f = assert(uring.open(p))
      local nums = {}
      for n in f:lines("n") do nums[#nums + 1] = n end
      assert.same({ 1, 2, 3 }, nums)
      f:close()
    end)
  end)

  it("raises on bad arguments and closed files", function()
    local p = dir .. "/f"
    spit(p, "a\nb\n")
    run(function()
      local f = assert(uring.open(p))
      local it = f:lines()
      assert.equal("a", it())
      raises("too many arguments", function() return f:lines(table.unpack({}, 1, 251)) end)
      raises("invalid format", f:lines("x"))
      f:close()
      raises("file is already closed", it)
      raises("attempt to use a closed file", function() return f:lines() end)
    end)
  end)

  it("raises the read error, as io's iterator does", function()
    run(function()
      local f = assert(uring.open(dir .. "/f", "w"))
      assert.equal("Bad file descriptor", errmsg(f:lines()))
      f:close()
    end)
    local h = assert(io.open(dir .. "/f", "w"))
    assert.equal("Bad file descriptor", errmsg(h:lines()))
    h:close()
  end)
end)

describe("file:seek #io", function()
  setup_teardown()

  it("moves with set, cur and end, and reports the position", function()
    local p = dir .. "/f"
    spit(p, "0123456789")
    run(function()
      local f = assert(uring.open(p, "r+"))
      assert.equal(0, f:seek())
      assert.equal(4, f:seek("set", 4))
      assert.equal("45", f:read(2))
      assert.equal(6, f:seek())
      assert.equal(3, f:seek("cur", -3))
      assert.equal("3", f:read(1))
      assert.equal(10, f:seek("end"))
      assert.equal(8, f:seek("end", -2))
      assert.equal("89", f:read("a"))
      assert.equal(0, f:seek("set"))
      f:write("ab")
      assert.equal(2, f:seek("cur"))                  -- flushes, then reports
      assert.equal(15, f:seek("set", 15))             -- past EOF
      assert.is_nil(f:read(1))
      f:write("Z")                                    -- leaves a hole
      f:close()
    end)
    assert.equal("ab23456789\0\0\0\0\0Z", slurp(p))
  end)

  it("raises on bad arguments", function()
    run(function()
      local f = assert(uring.open(dir .. "/f", "w"))
      raises("bad argument #1 to 'seek' (invalid option 'bad')", function() return f:seek("bad") end)
      raises("bad argument #2 to 'seek' (number has no integer representation)",
             function() return f:seek("set", 1.5) end)
      raises("bad argument #2 to 'seek' (number expected, got table)",
             function() return f:seek("set", {}) end)
      f:close()
      raises("attempt to use a closed file", function() return f:seek() end)
    end)
  end)

  it("returns nil, msg, errno on failure, as io does", function()
    local p, fifo = dir .. "/f", dir .. "/fifo"
    spit(p, "abc")
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    run(function()
      local f = assert(uring.open(p))
      assert.equal(1, f:seek("set", 1))
      fails("Invalid argument", 22, f:seek("set", -1))
      fails("Invalid argument", 22, f:seek("cur", -2))
      fails("Invalid argument", 22, f:seek("end", -4))
      assert.equal(1, f:seek())                        -- unchanged
      f:close()
      local q = assert(uring.open(fifo, "r+"))
      fails("Illegal seek", 29, q:seek())
      q:close()
    end)
    local h = assert(io.open(p))
    fails("Invalid argument", 22, h:seek("set", -1))
    h:close()
    h = assert(io.open(fifo, "r+"))
    fails("Illegal seek", 29, h:seek())
    h:close()
  end)
end)

describe("file:close and <close> #io", function()
  setup_teardown()

  it("closes, flushes what is buffered, and is closed by <close> in a task", function()
    local p = dir .. "/f"
    run(function()
      local f = assert(uring.open(p, "w"))
      f:write("buffered")
      assert.equal("", slurp(p))                       -- still in the buffer
      assert.is_true(f:close())
      assert.equal("uring.file (closed)", tostring(f))
      assert.equal("buffered", slurp(p))
      local kept
      do
        local g <close> = assert(uring.open(p, "a"))
        kept = g
        g:write("+more")
        assert.matches("^uring%.file %(fd %d+%)$", tostring(g))
      end
      assert.equal("uring.file (closed)", tostring(kept))
      assert.equal("buffered+more", slurp(p))
      -- an error unwinding a task's pcall closes it too
      local t = uring.spawn(function()
        local h <close> = assert(uring.open(p, "a"))
        kept = h
        h:write("!")
        error("boom")
      end)
      local ok, e = t:join()
      assert.is_false(ok)
      assert.matches("boom", e)
      assert.equal("uring.file (closed)", tostring(kept))
      assert.equal("buffered+more!", slurp(p))
    end)
  end)

  it("closes outside a task and when collected, writing what is buffered", function()
    local p, q = dir .. "/f", dir .. "/g"
    local f = run(function()
      local f = assert(uring.open(p, "w"))
      f:write("late")
      local g = assert(uring.open(q, "w"))
      g:write("collected")
      g = nil
      return f
    end)
    collectgarbage(); collectgarbage()
    assert.equal("collected", slurp(q))
    assert.is_true(f:close())                          -- no task: plain close
    assert.equal("late", slurp(p))
  end)

  it("raises when closed twice or given something else", function()
    run(function()
      local f = assert(uring.open(dir .. "/f", "w"))
      f:close()
      raises("attempt to use a closed file", function() return f:close() end)
      raises("bad argument #1 to 'close' (uring.file expected, got string)",
             function() return f.close("x") end)
    end)
  end)

  it("returns nil, msg, errno when the last flush fails, as io does", function()
    run(function()
      local f = assert(uring.open("/dev/full", "w"))
      assert.equal(f, f:write("abc"))                  -- buffered
      fails("No space left on device", 28, f:close())
      assert.equal("uring.file (closed)", tostring(f))
    end)
    local h = assert(io.open("/dev/full", "w"))
    h:write("abc")
    fails("No space left on device", 28, h:close())
  end)
end)

describe("file:pread and file:pwrite #io", function()
  setup_teardown()

  it("read and write at offsets without moving the stream", function()
    local p = dir .. "/f"
    spit(p, "0123456789")
    run(function()
      local f = assert(uring.open(p, "r+"))
      assert.equal("345", f:pread(3, 3))
      assert.equal("89", f:pread(10, 8))               -- short at EOF
      assert.is_nil(f:pread(1, 10))                     -- EOF
      assert.equal("", f:pread(0, 100))
      assert.equal(0, f:seek())                         -- stream not moved
      assert.equal(2, f:pwrite("AB", 4))
      assert.equal(0, f:pwrite("", 0))
      assert.equal("0123AB6789", f:read("a"))
      -- many tasks may share a file through pread
      local tasks = {}
      for i = 0, 9 do tasks[#tasks + 1] = uring.spawn(f.pread, f, 1, i) end
      for i, t in ipairs(tasks) do
        local ok, s = t:join()
        assert.is_true(ok)
        assert.equal(("0123AB6789"):sub(i, i), s)
      end
      f:close()
    end)
  end)

  it("writes a 3 MiB string, all of it, byte for byte", function()
    local p = dir .. "/big"
    local big = random_bytes(3 * 1024 * 1024)
    run(function()
      local f = assert(uring.open(p, "w+"))
      assert.equal(#big, f:pwrite(big, 5))
      assert.equal(big:sub(-100), f:pread(100, 5 + #big - 100))
      f:close()
    end)
    local got = slurp(p)
    assert.equal(5 + #big, #got)
    assert.equal(("\0"):rep(5), got:sub(1, 5))
    assert(got:sub(6) == big, "the 3 MiB string differs from what was written")
  end)

  it("raises on bad arguments", function()
    run(function()
      local f = assert(uring.open(dir .. "/f", "w+"))
      raises("bad argument #1 to 'pread' (count out of range)", function() return f:pread(-1, 0) end)
      raises("bad argument #2 to 'pread' (offset must be non-negative)", function() return f:pread(1, -1) end)
      raises("bad argument #2 to 'pread' (number expected, got no value)", function() return f:pread(1) end)
      raises("bad argument #1 to 'pwrite' (string expected, got table)", function() return f:pwrite({}, 0) end)
      raises("bad argument #2 to 'pwrite' (offset must be non-negative)", function() return f:pwrite("x", -1) end)
      f:close()
      raises("attempt to use a closed file", function() return f:pread(1, 0) end)
      raises("attempt to use a closed file", function() return f:pwrite("x", 0) end)
    end)
  end)

  it("returns nil, msg, errno on failure", function()
    local p = dir .. "/f"
    spit(p, "abc")
    run(function()
      local f = assert(uring.open(p, "w"))
      fails("Bad file descriptor", 9, f:pread(1, 0))
      f:close()
      f = assert(uring.open(p, "r"))
      -- a failed pwrite also says how many bytes did reach the file
      wfails("Bad file descriptor", 9, 0, f:pwrite("x", 0))
      f:close()
      f = assert(uring.open("/dev/full", "w"))
      wfails("No space left on device", 28, 0, f:pwrite("x", 0))
      f:close()
    end)
  end)
end)

describe("file:sync, file:flush, file:setvbuf #io", function()
  setup_teardown()

  it("sync flushes and fsyncs, with and without data_only", function()
    local p = dir .. "/f"
    run(function()
      local f = assert(uring.open(p, "w"))
      f:write("one")
      assert.is_true(f:sync())
      assert.equal("one", slurp(p))
      f:write("two")
      assert.is_true(f:sync(true))
      assert.equal("onetwo", slurp(p))
      f:close()
      raises("attempt to use a closed file", function() return f:sync() end)
    end)
  end)

  it("sync returns nil, msg, errno when fsync fails", function()
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    run(function()
      local q = assert(uring.open(fifo, "r+"))
      fails("Invalid argument", 22, q:sync())
      q:close()
    end)
  end)

  it("flush writes the buffer out and returns true, as io's", function()
    local p = dir .. "/f"
    run(function()
      local f = assert(uring.open(p, "w"))
      f:write("abc")
      assert.equal("", slurp(p))
      assert.is_true(f:flush())
      assert.equal("abc", slurp(p))
      assert.is_true(f:flush())                         -- nothing to do
      f:close()
      raises("attempt to use a closed file", function() return f:flush() end)
      f = assert(uring.open("/dev/full", "w"))
      f:write("x")
      fails("No space left on device", 28, f:flush())
      f:close()
    end)
    local h = assert(io.open(p, "a"))
    assert.is_true(h:flush())
    h:close()
  end)

  it("setvbuf chooses when writes reach the file", function()
    local p = dir .. "/f"
    run(function()
      local f = assert(uring.open(p, "w"))
      assert.is_true(f:setvbuf("no"))
      f:write("a")
      assert.equal("a", slurp(p))                       -- at once
      assert.is_true(f:setvbuf("line"))
      f:write("b")
      assert.equal("a", slurp(p))                       -- waits for a newline
      f:write("c\nd")
      assert.equal("abc\nd", slurp(p))                  -- the whole buffer goes
      assert.is_true(f:setvbuf("full", 1024))
      f:write("e\n")
      assert.equal("abc\nd", slurp(p))                  -- waits for flush
      f:close()
      assert.equal("abc\nde\n", slurp(p))
      local g = assert(uring.open(p))
      raises("bad argument #1 to 'setvbuf' (invalid option 'bogus')",
             function() return g:setvbuf("bogus") end)
      raises("bad argument #1 to 'setvbuf' (string expected, got no value)",
             function() return g:setvbuf() end)
      g:close()
      raises("attempt to use a closed file", function() return f:setvbuf("no") end)
    end)
  end)
end)

describe("file:stat and file:fd #io", function()
  setup_teardown()

  it("stat reports size, type and mode", function()
    local p, fifo = dir .. "/f", dir .. "/fifo"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    run(function()
      local f = assert(uring.open(p, "w", 420))         -- 0644
      f:write("12345")
      f:flush()
      local st = f:stat()
      assert.equal(5, st.size)
      assert.equal("file", st.type)
      assert.equal(420, st.mode)
      assert.equal(1, st.nlink)
      assert.is_number(st.mtime)
      f:close()
      raises("attempt to use a closed file", function() return f:stat() end)
      local q = assert(uring.open(fifo, "r+"))
      assert.equal("fifo", q:stat().type)
      q:close()
      local d = assert(uring.open(dir))
      assert.equal("directory", d:stat().type)
      d:close()
    end)
  end)

  it("fd is the open descriptor, and raises once closed", function()
    local p = dir .. "/f"
    run(function()
      local f = assert(uring.open(p, "w"))
      local fd = f:fd()
      assert.equal("integer", math.type(fd))
      assert(fd > 2)
      local rl = io.popen("readlink /proc/" .. PID .. "/fd/" .. fd)
      local link = rl:read("l")
      rl:close()
      assert.equal(p, link)
      f:close()
      raises("attempt to use a closed file", function() return f:fd() end)
    end)
  end)
end)

describe("uring.readfile and uring.writefile #io", function()
  setup_teardown()

  it("round-trip any bytes; writefile can append", function()
    local p = dir .. "/f"
    local data = random_bytes(300000)
    run(function()
      assert.is_true(uring.writefile(p, data))
      assert(uring.readfile(p) == data)
      assert.is_true(uring.writefile(p, "tail", "a"))
      assert.equal(#data + 4, #uring.readfile(p))
      assert.is_true(uring.writefile(p, ""))
      assert.equal("", uring.readfile(p))
    end)
  end)

  it("raise on bad arguments", function()
    run(function()
      raises("bad argument #1 to 'readfile' (string expected, got no value)", uring.readfile)
      raises("bad argument #1 to 'writefile' (string expected, got table)", uring.writefile, {}, "x")
      raises("bad argument #2 to 'writefile' (string expected, got number)", uring.writefile, dir .. "/f", 1)
      raises("bad argument #3 to 'writefile' (mode must be \"w\" or \"a\")",
             uring.writefile, dir .. "/f", "x", "r")
    end)
    raises("not inside a task", uring.readfile, dir .. "/f")
  end)

  it("return nil, msg, errno on failure", function()
    run(function()
      fails(dir .. "/missing: No such file or directory", 2, uring.readfile(dir .. "/missing"))
      fails(dir .. ": Is a directory", 21, uring.writefile(dir, "x"))
      fails("Is a directory", 21, uring.readfile(dir))
      fails("No space left on device", 28, uring.writefile("/dev/full", "x"))
    end)
  end)
end)

describe("uring.stat, unlink, rename, mkdir, rmdir #io", function()
  setup_teardown()

  it("work", function()
    local p = dir .. "/f"
    spit(p, "abc")
    run(function()
      local st = uring.stat(p)
      assert.equal(3, st.size)
      assert.equal("file", st.type)
      assert.equal("directory", uring.stat(dir).type)
      assert.is_true(uring.rename(p, dir .. "/g"))
      assert.is_nil(io.open(p))
      assert.equal("abc", slurp(dir .. "/g"))
      assert.is_true(uring.unlink(dir .. "/g"))
      assert.is_nil(io.open(dir .. "/g"))
      assert.is_true(uring.mkdir(dir .. "/sub", 448))   -- 0700
      st = uring.stat(dir .. "/sub")
      assert.equal("directory", st.type)
      assert.equal(448, st.mode)
      assert.is_true(uring.mkdir(dir .. "/sub2"))
      assert.is_true(uring.rmdir(dir .. "/sub"))
      assert.is_true(uring.rmdir(dir .. "/sub2"))
      assert.is_nil(uring.stat(dir .. "/sub"))
    end)
  end)

  it("raise on bad arguments", function()
    run(function()
      assert.matches("bad argument #1 to '[%w%.]*stat' %(string expected, got no value%)", errmsg(uring.stat))
      assert.matches("bad argument #1 to '[%w%.]*unlink' %(string expected, got table%)",
                     errmsg(uring.unlink, {}))
      assert.matches("bad argument #2 to '[%w%.]*rename' %(string expected, got no value%)",
                     errmsg(uring.rename, dir .. "/a"))
      assert.matches("bad argument #2 to '[%w%.]*mkdir' %(invalid permissions%)",
                     errmsg(uring.mkdir, dir .. "/a", 99999))
      assert.matches("bad argument #2 to '[%w%.]*mkdir' %(number expected, got string%)",
                     errmsg(uring.mkdir, dir .. "/a", "x"))
      assert.matches("bad argument #1 to '[%w%.]*rmdir' %(string expected, got boolean%)",
                     errmsg(uring.rmdir, true))
    end)
    for _, name in ipairs { "stat", "unlink", "mkdir", "rmdir" } do
      raises(name .. ": not inside a task (use uring.run)", uring[name], dir .. "/a")
    end
    raises("rename: not inside a task (use uring.run)", uring.rename, dir .. "/a", dir .. "/b")
  end)

  it("return nil, msg, errno on failure", function()
    local sub = dir .. "/sub"
    run(function()
      local m = dir .. "/missing"
      fails(m .. ": No such file or directory", 2, uring.stat(m))
      fails(m .. ": No such file or directory", 2, uring.unlink(m))
      fails(m .. ": No such file or directory", 2, uring.rename(m, dir .. "/x"))
      fails(m .. ": No such file or directory", 2, uring.rmdir(m))
      assert.is_true(uring.mkdir(sub))
      fails(sub .. ": File exists", 17, uring.mkdir(sub))
      fails(sub .. ": Is a directory", 21, uring.unlink(sub))
      assert.is_true(uring.writefile(sub .. "/f", "x"))
      fails(sub .. ": Directory not empty", 39, uring.rmdir(sub))
      fails(sub .. "/f: Not a directory", 20, uring.rmdir(sub .. "/f"))
    end)
  end)
end)

describe("uring.copyfile #io", function()
  setup_teardown()

  it("copies a 5 MiB file byte for byte and reports progress", function()
    local src, dst = dir .. "/src", dir .. "/dst"
    local data = random_bytes(5 * 1024 * 1024 + 12345)
    spit(src, data)
    assert(os.execute("chmod 640 '" .. src .. "'"))
    local calls = {}
    local n = run(function()
      return uring.copyfile(src, dst, function(done, total)
        calls[#calls + 1] = { done, total }
      end)
    end)
    assert.equal(#data, n)
    assert(slurp(dst) == data, "the copy differs from the source")
    assert(#calls >= 5, "progress called " .. #calls .. " times")
    local last = 0
    for _, c in ipairs(calls) do
      assert(c[1] > last, "done must increase")
      assert.equal(#data, c[2])
      last = c[1]
    end
    assert.equal(#data, calls[#calls][1])
    run(function() assert.equal(416, uring.stat(dst).mode) end)   -- 0640 kept
  end)

  it("copies a file longer than one chain of splices (9 MiB + 1), in order", function()
    local src, dst = dir .. "/src", dir .. "/dst"
    local data = random_bytes(9 * 1024 * 1024 + 1)
    spit(src, data)
    local calls = 0
    local n = run(function()
      return uring.copyfile(src, dst, function(done, total)
        calls = calls + 1
        assert.equal(math.min(calls * 1024 * 1024, #data), done)
        assert.equal(#data, total)
      end)
    end)
    assert.equal(#data, n)
    assert.equal(10, calls)
    assert(slurp(dst) == data, "the copy differs from the source")
  end)

  it("copies a file that grows after it was stat'ed: to its end", function()
    local src, dst = dir .. "/src", dir .. "/dst"
    local data = random_bytes(3 * 1024 * 1024 + 7)
    spit(src, data)
    local n = run(function()
      return uring.copyfile(src, dst, function(done)
        if done == 1024 * 1024 then
          local f = assert(io.open(src, "ab"))
          f:write("tail")
          f:close()
        end
      end)
    end)
    assert.equal(#data + 4, n)
    assert(slurp(dst) == data .. "tail", "the copy differs from the source")
  end)

  it("a copy cancelled mid-way unwinds, leaks no fd and frees the blocks it reserved", function()
    local src, dst = dir .. "/src", dir .. "/dst"
    local size = 64 * 1024 * 1024
    -- with progress, 16 MiB a call (csrc/copy.c): after the first, three
    spit(src, random_bytes(size))
    local before = fdcount()
    run(function()
      local t, state
      -- the first call's first callback queues the cancel: it runs on
      -- the next loop turn, once the copy waits on its second call's
      -- thread (callbacks do not yield); a thread quicker than that turn
      -- (valgrind) has ended the call, the task is ready: either way
      -- the copy stops there
      t = uring.spawn(uring.copyfile, src, dst, function(done)
        if done == 1024 * 1024 then
          uring.spawn(function()
            state = { t:status(), t:waiting_on() }
            t:cancel()
          end)
        end
      end)
      local ok, e = t:join()
      assert(state[1] == "ready" or (state[1] == "waiting" and state[2] == "copyfile"),
             table.concat(state, " "))
      assert.is_false(ok)
      assert.matches("canceled", e)
      assert.equal(0, uring.stats().inflight)
      local st = uring.stat(dst)
      assert(st.size >= 16 * 1024 * 1024 and st.size <= 32 * 1024 * 1024,
             "copied " .. st.size)
      -- on ext4 the file's blocks were allocated up front: given back
      assert(st.blocks * 512 <= st.size + 1024 * 1024,
             ("%d bytes allocated for %d"):format(st.blocks * 512, st.size))
    end)
    assert.equal(before, fdcount())
  end)

  -- without a progress callback one thread copies the whole file: the
  -- cancel reaches it between two 4 MiB steps, and the task waits for it
  it("a copy without progress cancelled while its thread copies: the thread is stopped first", function()
    local src, dst = dir .. "/src", dir .. "/dst"
    local size = 64 * 1024 * 1024
    spit(src, ("c"):rep(size))
    local before = fdcount()
    run(function()
      local t = uring.spawn(uring.copyfile, src, dst)
      while t:status() ~= "done" and t:waiting_on() ~= "copyfile" do uring.yield() end
      assert.equal("copyfile", t:waiting_on())
      t:cancel()
      local ok, e = t:join()
      assert.is_false(ok)
      assert.matches("canceled", e)
      assert.equal(0, uring.stats().inflight)
      -- nothing writes to dst any more (an abandoned thread would)
      local at = uring.stat(dst).size
      uring.sleep(0.02)
      assert.equal(at, uring.stat(dst).size)
    end)
    assert.equal(before, fdcount())
  end)

  it("lets other tasks run while it copies, and obeys uring.timeout", function()
    local src, dst = dir .. "/src", dir .. "/dst"
    local size = 64 * 1024 * 1024
    spit(src, ("t"):rep(size))
    run(function()
      local ticks = 0
      local t = uring.spawn(uring.copyfile, src, dst)
      -- a task that runs while the copy waits on its thread (looked at
      -- first in the same turn the copy started in: its end cannot have
      -- been reaped yet, however fast the copy or slow the machine)
      uring.yield()
      while t:status() ~= "done" do
        if t:waiting_on() == "copyfile" then ticks = ticks + 1 end
        uring.sleep(0.0005)
      end
      assert.same({ true, size }, { t:join() })
      assert(ticks >= 1, "no other task ran while the copy waited")
      fails("timeout", uring.ETIME, uring.timeout(0.0005, uring.copyfile, src, dst))
      assert.equal(0, uring.stats().inflight)
    end)
  end)

  -- one file system: copy_file_range (its thread's end is an eventfd
  -- READ); onto a tmpfs (EXDEV): linked SPLICE pairs, progress alike
  it("uses copy_file_range within a file system and splices across file systems", function()
    local src = dir .. "/src"
    local data = random_bytes(3 * 1024 * 1024 + 5)
    spit(src, data)
    local shm = assert(io.open("/dev/shm", "r"), "/dev/shm is needed (tmpfs)")
    shm:close()
    local other = ("/dev/shm/uring-copy-%d"):format(PID)
    local function ops (dst)
      local seen, calls = {}, 0
      local n = run(function()
        uring.trace(function(ev) if ev.event == "sqe" then seen[ev.op] = true end end)
        local n = uring.copyfile(src, dst, function() calls = calls + 1 end)
        uring.yield()                 -- the last events come a turn later
        uring.trace(false)
        return n
      end)
      assert.equal(#data, n)
      assert.equal(4, calls)
      assert(slurp(dst) == data, "the copy differs from the source")
      return seen
    end
    local same = ops(dir .. "/dst")
    assert.is_nil(same.splice)
    assert.is_true(same.read)
    local ok, across = pcall(ops, other)
    os.remove(other)
    assert(ok, across)
    assert.is_true(across.splice)
  end)

  it("copies an empty file and overwrites an existing destination", function()
    local src, dst = dir .. "/src", dir .. "/dst"
    spit(src, "")
    spit(dst, "old contents")
    assert.equal(0, run(uring.copyfile, src, dst))
    assert.equal("", slurp(dst))
  end)

  it("raises on bad arguments", function()
    run(function()
      raises("bad argument #3 to 'copyfile' (function expected, got number)",
             uring.copyfile, dir .. "/a", dir .. "/b", 1)
      raises("bad argument #1 to 'copyfile' (string expected, got no value)", uring.copyfile)
      raises("bad argument #2 to 'copyfile' (string expected, got table)",
             uring.copyfile, dir .. "/a", {})
    end)
    raises("not inside a task", uring.copyfile, dir .. "/a", dir .. "/b")
  end)

  it("returns nil, msg, errno on failure", function()
    local src = dir .. "/src"
    spit(src, "abc")
    run(function()
      fails(dir .. "/missing: No such file or directory", 2,
            uring.copyfile(dir .. "/missing", dir .. "/b"))
      fails(dir .. "/no/b: No such file or directory", 2, uring.copyfile(src, dir .. "/no/b"))
      fails("No space left on device", 28, uring.copyfile(src, "/dev/full"))
    end)
  end)
end)

describe("files shared by tasks #io", function()
  local fifo
  setup_teardown()
  before_each(function()
    fifo = dir .. "/fifo"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
  end)

  it("a task cancelled while reading a FIFO: the read is cancelled, <close> runs", function()
    run(function()
      local f = assert(uring.open(fifo, "r+"))        -- r+: never blocks on open
      local t = uring.spawn(function()
        local g <close> = f
        return g:read("l")
      end)
      uring.sleep(0.02)
      assert.equal("waiting", t:status())
      assert.equal("read", t:waiting_on())
      assert.equal(1, uring.stats().inflight)
      local t0 = uring.now()
      assert.is_true(t:cancel())
      local ok, e = t:join()
      assert(uring.now() - t0 < 1, "cancel took too long")
      assert.is_false(ok)
      assert.matches("canceled", e)
      assert.equal("canceled", t:status())
      assert.equal(0, uring.stats().inflight)
      assert.equal("uring.file (closed)", tostring(f))
    end)
  end)

  it("a read under uring.timeout gives nil, 'timeout', ETIME and loses nothing", function()
    run(function()
      local f = assert(uring.open(fifo, "r+"))
      local w = assert(io.open(fifo, "w"))
      w:setvbuf("no")
      local t0 = uring.now()
      local r = table.pack(uring.timeout(0.05, f.read, f, "l"))
      assert.same({ nil, "timeout", 62, n = 3 }, r)
      assert(uring.now() - t0 >= 0.04, "expired early")
      w:write("hel")                                  -- part of a line
      r = table.pack(uring.timeout(0.05, f.read, f, "l"))
      assert.same({ nil, "timeout", 62, n = 3 }, r)
      w:write("lo\nworld\n")
      assert.equal("hello", f:read("l"))              -- "hel" was kept
      assert.equal("world", f:read("l"))
      w:write(("x"):rep(100))
      r = table.pack(uring.timeout(0.05, f.read, f, 101))
      assert.same({ nil, "timeout", 62, n = 3 }, r)
      w:write("y")
      assert.equal(("x"):rep(100) .. "y", f:read(101))
      w:close()
      f:close()
    end)
  end)

  it("a second task using the same stream raises 'file is busy'", function()
    run(function()
      local f = assert(uring.open(fifo, "r+"))
      local reader = uring.spawn(f.read, f, "l")
      uring.sleep(0.01)
      raises("read: file is busy", function() return f:read("l") end)
      raises("write: file is busy", function() return f:write("x") end)
      raises("flush: file is busy", function() return f:flush() end)
      raises("seek: file is busy", function() return f:seek() end)
      raises("sync: file is busy", function() return f:sync() end)
      assert.equal("waiting", reader:status())
      local w = assert(io.open(fifo, "w"))
      w:write("line\n")
      w:close()
      assert.same({ true, "line" }, { reader:join() })
      f:close()
    end)
  end)

  it("a file closed by one task while another reads it: the reader gets a fail tuple", function()
    run(function()
      local f = assert(uring.open(fifo, "r+"))
      local reader = uring.spawn(function() return f:read("l") end)
      uring.sleep(0.01)
      assert.equal("waiting", reader:status())
      local t0 = uring.now()
      assert.is_true(f:close())
      local r = table.pack(reader:join())
      assert(uring.now() - t0 < 1, "the reader was not woken promptly")
      assert.same({ true, nil, "closed", 9, n = 4 }, r)
      assert.equal("uring.file (closed)", tostring(f))
      raises("attempt to use a closed file", function() return f:read() end)
    end)
  end)
end)

describe("file:pread(buf, n, offset [, pos]) #io", function()
  setup_teardown()

  it("reads into the buffer at pos, makes no string, and says how many bytes", function()
    local p = dir .. "/f"
    spit(p, "0123456789")
    run(function()
      local f = assert(uring.open(p, "r"))
      local b = uring.buffer(8):fill(46)                 -- "........"
      assert.equal(3, f:pread(b, 3, 3))
      assert.equal("345.....", b:tostring())
      assert.equal(2, f:pread(b, 4, 8, 5))               -- short at EOF
      assert.equal("345.89..", b:tostring())              -- the rest untouched
      assert.is_nil(f:pread(b, 1, 10))                    -- at EOF
      assert.is_nil(f:pread(b, 8, 1000))                  -- past EOF
      assert.equal(0, f:pread(b, 0, 0))
      assert.equal(0, f:pread(b, 0, 0, 8))                -- n = 0 at the last byte
      assert.equal(1, f:pread(b, 1, 9, 8))                -- the last byte
      assert.equal("345.89.9", b:tostring())
      assert.equal(0, b:pinned())
      assert.equal(0, f:seek())                           -- stream not moved
      -- many tasks, each with its own buffer, share the file
      local tasks = {}
      for i = 0, 9 do
        tasks[#tasks + 1] = uring.spawn(function()
          local mine = uring.buffer(1)
          assert.equal(1, f:pread(mine, 1, i))
          return mine:tostring()
        end)
      end
      for i, t in ipairs(tasks) do
        assert.same({ true, ("0123456789"):sub(i, i) }, { t:join() })
      end
      f:close()
    end)
  end)

  it("reads an O_DIRECT file into the aligned buffer", function()
    local p = dir .. "/d"
    local data = random_bytes(3 * 4096)
    spit(p, data)
    run(function()
      local f, err = uring.open(p, "r", { direct = true })
      assert(f, err)
      local b = uring.buffer(2 * 4096)
      assert.equal(4096, f:pread(b, 4096, 4096, 4097))
      assert.equal(data:sub(4097, 8192), b:tostring(4097, 8192))
      assert.equal(8192, f:pread(b, 8192, 0))
      assert(b:tostring() == data:sub(1, 8192), "direct read differs")
      fails("Invalid argument", 22, f:pread(b, 4096, 0, 2))   -- misaligned
      f:close()
    end)
  end)

  it("raises on bad arguments before anything is read", function()
    run(function()
      local f = assert(uring.open(dir .. "/f", "w+"))
      local b = uring.buffer(16)
      raises("bad argument #2 to 'pread' (17 bytes at position 1 overflow a buffer of 16 bytes)",
        function() return f:pread(b, 17, 0) end)
      raises("bad argument #2 to 'pread' (8 bytes at position 10 overflow a buffer of 16 bytes)",
        function() return f:pread(b, 8, 0, 10) end)
      raises("bad argument #4 to 'pread' (position out of range)", function() return f:pread(b, 1, 0, 0) end)
      raises("bad argument #4 to 'pread' (position out of range)", function() return f:pread(b, 1, 0, 17) end)
      raises("bad argument #4 to 'pread' (position out of range)", function() return f:pread(b, 1, 0, -17) end)
      raises("bad argument #2 to 'pread' (count out of range)", function() return f:pread(b, -1, 0) end)
      raises("bad argument #3 to 'pread' (offset must be non-negative)", function() return f:pread(b, 1, -1) end)
      raises("bad argument #2 to 'pread' (number expected, got no value)", function() return f:pread(b) end)
      raises("bad argument #1 to 'pread' (uring.buffer expected, got uring.file)", function() return f:pread(f, 1, 0) end)
      raises("bad argument #1 to 'pread' (uring.buffer expected, got FILE*)", function() return f:pread(io.stdout, 1, 0) end)
      assert.equal(0, b:pinned())
      f:close()
      raises("attempt to use a closed file", function() return f:pread(b, 1, 0) end)
    end)
    raises("pread: not inside a task", function()
      local f = io.open(dir .. "/f")
      f:close()
      return uring.run(function() return uring.open(dir .. "/f") end):pread(uring.buffer(1), 1, 0)
    end)
  end)

  it("returns nil, msg, errno on failure", function()
    run(function()
      local f = assert(uring.open(dir .. "/w", "w"))
      fails("Bad file descriptor", 9, f:pread(uring.buffer(4), 1, 0))
      f:close()
    end)
  end)

  it("pins the buffer while the read is in flight: collect, cancel, timeout", function()
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    run(function()
      local f = assert(uring.open(fifo, "r+"))
      -- the buffer's only references: the reader's stack and the request
      local reader = uring.spawn(function()
        local b = uring.buffer(64)
        local n = f:pread(b, 5, 0)
        return n, b:tostring(1, n)
      end)
      local probe = uring.buffer(8)
      local prober = uring.spawn(function() return f:pread(probe, 8, 0) end)
      uring.sleep(0.01)
      assert.equal(1, probe:pinned())
      for _ = 1, 3 do collectgarbage(); collectgarbage(); uring.yield() end
      -- cancelled mid-read: the kernel lets go before the task ends
      prober:cancel()
      local ok, e = prober:join()
      assert.is_false(ok); assert.matches("canceled", e)
      assert.equal(0, probe:pinned())
      local w = assert(io.open(fifo, "w"))
      w:write("hello")
      w:close()
      assert.same({ true, 5, "hello" }, { reader:join() })
      -- a uring.timeout scope expires mid-read: cancelled, the buffer let go
      local b2 = uring.buffer(4)
      local r2 = uring.spawn(function()
        return uring.timeout(0.02, function()
          return f:pread(b2, 4, 0)
        end)
      end)
      uring.sleep(0.005)
      assert.equal(1, b2:pinned())
      assert.same({ true, nil, "timeout", 62 }, { r2:join() })
      assert.equal(0, b2:pinned())
      f:close()
    end)
  end)
end)

describe("registered buffers: uring.configure{fixed_buffers} #io", function()
  setup_teardown()
  after_each(function() uring.configure { fixed_buffers = 0, fixed_buffer_size = 65536 } end)

  it("reads through READ_FIXED while a buffer is free, plain READ otherwise, same bytes", function()
    local p = dir .. "/f"
    local data = random_bytes(64 * 1024)
    spit(p, data)
    uring.configure { fixed_buffers = 4, fixed_buffer_size = 8192 }
    local fb = uring.features().fixed_buffers
    assert.same({ count = 4, wanted = 4, size = 8192, free = 4 }, fb)
    assert.equal(4, uring.stats().fixed_buffers)
    local before = uring.stats().fixed_reads
    local ops = {}
    uring.trace(function(ev) if ev.event == "sqe" then ops[#ops + 1] = ev.op end end)
    run(function()
      local f = assert(uring.open(p, "r"))
      assert.equal(data:sub(101, 8292), f:pread(8192, 100))     -- fits: fixed
      assert.equal(data:sub(1, 8193), f:pread(8193, 0))         -- too big: plain
      assert.is_nil(f:pread(10, #data))
      f:close()
    end)
    uring.trace(false)
    assert.same({ "openat", "read_fixed", "read", "read_fixed", "close" }, ops)
    assert.equal(before + 2, uring.stats().fixed_reads)
    -- 16 readers, 4 buffers: every read right, the rest go plain
    before = uring.stats().fixed_reads
    run(function()
      local f = assert(uring.open(p, "r"))
      local tasks = {}
      for i = 1, 16 do
        tasks[i] = uring.spawn(function()
          for j = 0, 15 do
            local off = ((i * 7 + j * 13) % 16) * 4096
            assert.equal(data:sub(off + 1, off + 4096), f:pread(4096, off))
          end
        end)
      end
      for i = 1, 16 do assert.is_true((tasks[i]:join())) end
      f:close()
    end)
    local fixed = uring.stats().fixed_reads - before
    assert(fixed >= 16 and fixed < 256, "fixed reads: " .. fixed)
    assert.equal(4, uring.features().fixed_buffers.free)      -- all given back
  end)

  it("reads O_DIRECT files through the registered buffers", function()
    local p = dir .. "/d"
    local data = random_bytes(4 * 4096)
    spit(p, data)
    uring.configure { fixed_buffers = 2, fixed_buffer_size = 4096 }
    local before = uring.stats().fixed_reads
    run(function()
      local f = assert(uring.open(p, "r", { direct = true }))
      for i = 3, 0, -1 do
        assert(f:pread(4096, i * 4096) == data:sub(i * 4096 + 1, (i + 1) * 4096))
      end
      fails("Invalid argument", 22, f:pread(100, 1))   -- misaligned: still EINVAL
      f:close()
    end)
    assert.equal(before + 5, uring.stats().fixed_reads)
  end)

  it("a fixed read cancelled in flight gives its buffer back", function()
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    uring.configure { fixed_buffers = 1, fixed_buffer_size = 4096 }
    run(function()
      local f = assert(uring.open(fifo, "r+"))
      local t = uring.spawn(f.pread, f, 10, 0)
      uring.sleep(0.01)
      assert.equal(0, uring.features().fixed_buffers.free)
      t:cancel()
      assert.is_false((t:join()))
      assert.equal(1, uring.features().fixed_buffers.free)
      local w = assert(io.open(fifo, "w"))
      w:write("abc")
      w:close()
      assert.equal("abc", f:pread(10, 0))
      f:close()
    end)
  end)

  it("raises on bad options", function()
    raises("(fixed_buffers must be in 0..16384)",
      uring.configure, { fixed_buffers = -1 })
    raises("(fixed_buffers must be in 0..16384)",
      uring.configure, { fixed_buffers = 16385 })
    raises("(fixed_buffers must be an integer, got string)",
      uring.configure, { fixed_buffers = "x" })
    raises("(fixed_buffer_size must be a multiple of 4096)",
      uring.configure, { fixed_buffer_size = 4097 })
    raises("(fixed_buffer_size must be in 4096..1073741824)",
      uring.configure, { fixed_buffer_size = 0 })
    raises("(fixed_buffer_size must be in 4096..1073741824)",
      uring.configure, { fixed_buffer_size = 1 << 31 })
    assert.matches("^bad argument #1 to '[%w.]*configure' %(fixed_buffers",
      errmsg(uring.configure, { fixed_buffers = -1 }))
    assert.equal(0, uring.stats().fixed_buffers)
  end)

  it("a later fixed_buffer_size applies at the next setup, not to the registered buffers", function()
    local p = dir .. "/f"
    local data = random_bytes(16384)
    spit(p, data)
    uring.configure { fixed_buffers = 2, fixed_buffer_size = 4096 }
    assert.equal(2, uring.features().fixed_buffers.count)
    run(function()
      local f = assert(uring.open(p, "r"))
      -- configure refuses while running; from a task it raises
      raises("configure: the loop is running", uring.configure, { fixed_buffer_size = 8192 })
      assert.equal(data:sub(1, 8192), f:pread(8192, 0))   -- too big: plain
      f:close()
    end)
    uring.configure { fixed_buffer_size = 8192 }          -- idle: set up anew
    local fb = uring.features().fixed_buffers
    assert.same({ 2, 8192, 2 }, { fb.count, fb.size, fb.free })
    local before = uring.stats().fixed_reads
    run(function()
      local f = assert(uring.open(p, "r"))
      assert.equal(data:sub(1, 8192), f:pread(8192, 0))   -- fits now
      f:close()
    end)
    assert.equal(before + 1, uring.stats().fixed_reads)
  end)

  it("degrades to plain reads, and says why, when RLIMIT_MEMLOCK refuses", function()
    local script = dir .. "/memlock.lua"
    spit(script, [[
      local uring = require "uring"
      -- 4 MiB locked; a small ring, whose own memory fits under the limit
      uring.configure { fixed_buffers = 64, entries = 64 }
      local fb = uring.features().fixed_buffers
      print("count", fb.count, "wanted", fb.wanted)
      print("error", fb.error)
      print(uring.run(function()
        local f = assert(uring.open("/etc/passwd"))
        local s = f:pread(10, 0)
        f:close()
        return #s, uring.stats().fixed_reads
      end))
    ]])
    -- as root, CAP_IPC_LOCK would lift the limit: drop it for the child
    local drop = helpers_is_root() and "setpriv --bounding-set=-ipc_lock " or ""
    local p = io.popen(drop .. "prlimit --memlock=65536 "
      .. ("env LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='%s;;' lua5.4 -W ")
           :format(os.getenv("URING_CPATH") or "./build/?.so")
      .. script .. " 2>&1")
    local out = p:read("a")
    assert(p:close(), out)
    assert.matches("count\t0\twanted\t64", out)
    assert.matches("error\tnot enough locked memory for 64 registered buffers of 65536 bytes "
      .. "%(4194304 bytes; RLIMIT_MEMLOCK soft 65536, hard 65536 bytes%); fix: ulimit %-l", out)
    assert.matches("\n10\t0\n", out)                      -- read, not fixed
    assert.matches("Lua warning: uring: fixed_buffers: not enough locked memory", out)
  end)
end)

-- regression #12 (found by the out-of-memory sweep, make oom, under
-- LeakSanitizer): a read that ran out of memory pushing its result left
-- the file "busy" for good, and its buffers were never freed
describe("regression #12: out of memory inside a file method", function()
  it("the file is usable after, keeps what it had read, and frees its buffers", function()
    local helpers = require "helpers"
    local hit = false
    for n = 1, 3 do
      local out, code = helpers.oom([[
        local uring = require "uring"
        local path = os.tmpname()
        local w = io.open(path, "w"); w:write("line one\nline two\n"); w:close()
        uring.run(function()
          local f = assert(uring.open(path))
          local ok, err = pcall(function() oom.arm(); return f:read("l") end)
          print(select(2, oom.disarm()), ok, err)
          print(pcall(f.read, f, "l"))     -- "read: file is busy ..."
          print(f:close())
        end)
        os.remove(path)]], n)
      assert.equal(0, code, out)
      if out:match("^true\tfalse\tnot enough memory\n") then
        hit = true
        -- the line whose string could not be made is still there
        assert.matches("\ntrue\tline one\ntrue\n$", out)
      else
        assert.matches("\ntrue\tline two\ntrue\n$", out)
      end
    end
    assert.is_true(hit)
  end)
end)
