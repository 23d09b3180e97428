-- uring.ring: the teaching API (liburing's model, memory-safe).
-- For each call: it works on real files, bad arguments raise the right
-- message, an OS failure comes back as a negative res (raw -errno, as
-- liburing gives it); then the memory-safety cases (GC of pinned buffers,
-- close and collect with SQEs in flight) and a descriptor leak check
-- around every test.
local core = require "uring.core"
local helpers = require "helpers"

local ETIME, ECANCELED, ENOENT, EBADF, EEXIST, EINVAL, ENODATA, ENXIO =
  62, 125, 2, 9, 17, 22, 61, 6

local slurp, spit, exists = helpers.readall, helpers.writeall, helpers.exists

-- Some bytes that are not all the same: a read at the wrong offset shows.
local function pattern(n)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 7 + (i >> 8)) % 256) end
  return table.concat(t)
end

describe("uring.ring #io", function()
  local fds, dir, ring

  -- Wait for n CQEs; return them by user_data, and the order they came in.
  local function reap(n, r)
    r = r or ring
    local got, order = {}, {}
    for _ = 1, n do
      local res, ud, flags, extra = r:wait_cqe()
      assert.is_number(res)
      got[ud] = res
      got[-ud - 1000] = extra          -- statx tables, out of the way
      order[#order + 1] = ud
      assert.is_number(flags)
    end
    return got, order
  end

  -- Prep one SQE, submit it, return its CQE.
  local function one(method, ...)
    ring[method](ring, ...)
    assert.equal(1, ring:submit())
    return ring:wait_cqe()
  end

  local function open(path, flags, mode)
    local fd = one("prep_openat", nil, path, flags, mode, 100)
    assert.is_true(fd >= 0, "openat " .. path .. ": " .. fd)
    return fd
  end

  local function close(fd)
    assert.equal(0, (one("prep_close", fd, 101)))
  end

  -- A FIFO opened O_RDWR: one fd that is both ends of a pipe.
  local function fifo(name)
    local p = dir .. "/" .. name
    assert(os.execute("mkfifo '" .. p .. "'"))
    return open(p, core.O_RDWR | core.O_CLOEXEC)
  end

  -- the task loop's ring (uring.stat, uring.features and the socket pairs
  -- use it) is made once and lives on: make it before any fd count
  setup(function()
    local uring = require "uring"
    uring.run(function() end)
  end)

  before_each(function()
    collectgarbage()
    fds = helpers.fd_count()
    dir = helpers.tmpdir()
    ring = assert(core.ring{entries = 8})
  end)

  after_each(function()
    ring:close()
    helpers.rmrf(dir)
    collectgarbage()
    assert.equal(fds, helpers.fd_count())
  end)

  describe("uring.ring{...}", function()
    it("sets up a plain ring with a CQ twice the SQ", function()
      assert.equal("uring.ring(8 entries)", tostring(ring))
      assert.same({ CQSIZE = true }, ring:flags())
      assert.equal(8, ring:sq_space_left())
      local r = assert(core.ring())
      assert.equal(8, r:sq_space_left())
      assert.is_true(r:close())
    end)

    it("names its setup flags as uring.features() does", function()
      local uring = require "uring"
      local ff = uring.features().flags
      assert.is_true(ff.CQSIZE)
      for k in pairs(ring:flags()) do assert.matches("^[%u_%d]+$", k) end
      local r = assert(core.ring{flags = { "SINGLE_ISSUER", "DEFER_TASKRUN",
                                           "COOP_TASKRUN", "SUBMIT_ALL" }})
      local rf = r:flags()
      r:close()
      for _, k in ipairs { "SINGLE_ISSUER", "DEFER_TASKRUN", "COOP_TASKRUN",
                           "SUBMIT_ALL", "CQSIZE" } do
        assert.is_true(rf[k], k)
        if ff[k] ~= nil then assert.equal(ff[k], rf[k], k) end
      end
    end)

    it("takes opt-in setup flags", function()
      local r = assert(core.ring{entries = 4, sqpoll = true, sq_thread_idle = 10})
      assert.is_true(r:flags().SQPOLL)
      r:prep_nop(1)
      r:submit()
      assert.same({ 0, 1, 0 }, { r:wait_cqe() })
      r:close()
      r = assert(core.ring{single_issuer = true, defer_taskrun = true,
                           flags = { "SUBMIT_ALL" }})
      local f = r:flags()
      assert.is_true(f.SINGLE_ISSUER and f.DEFER_TASKRUN and f.SUBMIT_ALL)
      r:prep_nop(2)
      r:submit()
      assert.same({ 0, 2, 0 }, { r:wait_cqe() })
      r:close()
    end)

    it("returns nil, msg, errno when the kernel refuses the setup", function()
      -- DEFER_TASKRUN without SINGLE_ISSUER is invalid
      local r, msg, en = core.ring{defer_taskrun = true}
      assert.is_nil(r)
      assert.matches("^io_uring_setup%(8 entries%): ", msg)
      assert.equal(EINVAL, en)
    end)

    it("raises on bad options", function()
      assert.has_error(function() core.ring("x") end,
        "bad argument #1 to 'ring' (table expected, got string)")
      assert.has_error(function() core.ring{entries = 0} end,
        "bad argument #1 to 'ring' (entries must be in 1..32768)")
      assert.has_error(function() core.ring{entries = "8"} end,
        "bad argument #1 to 'ring' (option 'entries' must be an integer)")
      assert.has_error(function() core.ring{sqpoll = 1} end,
        "bad argument #1 to 'ring' (option 'sqpoll' must be a boolean)")
      assert.has_error(function() core.ring{entires = 8} end,
        "bad argument #1 to 'ring' (unknown option 'entires')")
      assert.has_error(function() core.ring{flags = { "SQE128" }} end,
        "bad argument #1 to 'ring' (flag 'SQE128' is unknown or not supported here)")
      -- one vocabulary: uring.features().flags's names, not lower case
      assert.has_error(function() core.ring{flags = { "submit_all" }} end,
        "bad argument #1 to 'ring' (flag 'submit_all' is unknown or not supported here)")
      assert.has_error(function() core.ring{flags = { 7 }} end,
        "bad argument #1 to 'ring' (flag 'number' is unknown or not supported here)")
      assert.has_error(function() core.ring{cq_entries = 2} end,
        "bad argument #1 to 'ring' (cq_entries must be in 8..65536)")
    end)
  end)

  describe("ring:probe() and uring.probe()", function()
    it("name the ops the kernel supports", function()
      for _, p in ipairs { ring:probe(), core.probe() } do
        assert.is_true(p.nop)
        assert.is_true(p.read)
        assert.is_true(p.openat)
        assert.is_true(p.timeout)
        assert.is_nil(p.no_such_op)
      end
      assert.equal("read", core.opname(22))
      assert.equal("waitid", core.opname(50))
      assert.equal(51, core.opcode("futex_wait"))
      assert.equal(49, core.opcode("read_multishot"))
      assert.is_nil(core.opcode("bogus"))
      assert.is_nil(core.opname(255))
    end)
  end)

  describe("ring:prep_nop", function()
    it("round-trips any 64-bit user_data", function()
      for _, ud in ipairs { 0, 1, -1, math.maxinteger, math.mininteger } do
        assert.same({ 0, ud, 0 }, { one("prep_nop", ud) })
      end
      ring:prep_nop()                       -- omitted user_data is 0
      ring:submit()
      assert.same({ 0, 0, 0 }, { ring:wait_cqe() })
    end)

    it("keeps SQEs that share a user_data apart", function()
      for _ = 1, 3 do ring:prep_nop(7) end
      assert.equal(3, ring:inflight())
      assert.equal(3, ring:submit())
      for _ = 1, 3 do assert.same({ 0, 7, 0 }, { ring:wait_cqe() }) end
      assert.equal(0, ring:inflight())
    end)

    it("raises on bad arguments", function()
      assert.has_error(function() ring.prep_nop(nil) end,
        "bad argument #1 to 'prep_nop' (uring.ring expected, got nil)")
      assert.has_error(function() ring:prep_nop("x") end,
        "bad argument #1 to 'prep_nop' (number expected, got string)")
      assert.has_error(function() ring:prep_nop(1.5) end,
        "bad argument #1 to 'prep_nop' (number has no integer representation)")
    end)

    it("raises on a full SQ without losing a slot", function()
      local r = core.ring{entries = 2}
      r:prep_nop(1)
      r:prep_nop(2)
      assert.equal(0, r:sq_space_left())
      assert.has_error(function() r:prep_nop(3) end,
        "prep_nop: submission queue full (call ring:submit())")
      assert.has_error(function() r:prep_read(0, core.buffer(1), 1, 0, 3) end,
        "prep_read: submission queue full (call ring:submit())")
      assert.equal(2, r:inflight())
      assert.equal(2, r:submit())
      reap(2, r)
      assert.equal(0, r:inflight())
      r:close()
    end)
  end)

  describe("ring:prep_read and ring:prep_write", function()
    it("write a string and read it back byte for byte", function()
      local path = dir .. "/rw"
      local fd = open(path, "w+")
      local data = pattern(65536)
      assert.same({ 65536, 1, 0 }, { one("prep_write", fd, data, nil, 0, 1) })
      -- nbytes and pos pick a slice of the string: bytes 11..20 at offset 5
      assert.equal(10, (one("prep_write", fd, "0123456789abcdefghijklmnopqrstuvwxyz", 10, 5, 2, 11)))
      local expect = data:sub(1, 5) .. ("abcdefghij") .. data:sub(16)
      assert.equal(expect, slurp(path))
      local b = core.buffer(65536)
      assert.equal(65536, (one("prep_read", fd, b, 65536, 0, 3)))
      assert.equal(expect, b:tostring())
      -- into the middle of a buffer, from the middle of the file
      b:fill(0)
      assert.equal(100, (one("prep_read", fd, b, 100, 1000, 4, 501)))
      assert.equal(("\0"):rep(500) .. expect:sub(1001, 1100) .. ("\0"):rep(100),
                   b:tostring(1, 700))
      -- a write from a uring.buffer
      local wb = core.buffer(4)
      wb:write("WXYZ")
      assert.equal(4, (one("prep_write", fd, wb, 4, 0, 5)))
      assert.equal("WXYZ", slurp(path):sub(1, 4))
      -- offset -1: the file position (O_APPEND makes it the end)
      close(fd)
      fd = open(path, "a")
      assert.equal(3, (one("prep_write", fd, "END", 3, -1, 6)))
      assert.equal("END", slurp(path):sub(-3))
      close(fd)
    end)

    it("return a negative res for an OS failure", function()
      assert.same({ -EBADF, 9, 0 }, { one("prep_read", 12345, core.buffer(8), 8, 0, 9) })
      assert.same({ -EBADF, 9, 0 }, { one("prep_write", -1, "x", 1, 0, 9) })
    end)

    it("raise on bad arguments, before anything is prepared", function()
      local b = core.buffer(8)
      assert.has_error(function() ring.prep_read(nil) end,
        "bad argument #1 to 'prep_read' (uring.ring expected, got nil)")
      assert.has_error(function() ring:prep_read("x", b, 8, 0) end,
        "bad argument #1 to 'prep_read' (fd or ring:fixed(slot) expected, got string)")
      assert.has_error(function() ring:prep_read(0, "strings are immutable", 8, 0) end,
        "bad argument #2 to 'prep_read' (uring.buffer expected, got string)")
      assert.has_error(function() ring:prep_read(0, b, 9, 0) end,
        "bad argument #3 to 'prep_read' (9 bytes at position 1 overflow a buffer of 8 bytes)")
      assert.has_error(function() ring:prep_read(0, b, 4, 0, 1, 6) end,
        "bad argument #3 to 'prep_read' (4 bytes at position 6 overflow a buffer of 8 bytes)")
      assert.has_error(function() ring:prep_read(0, b, 1, 0, 1, 10) end,
        "bad argument #6 to 'prep_read' (position out of range)")
      assert.has_error(function() ring:prep_read(0, b, -1, 0) end,
        "bad argument #3 to 'prep_read' (nbytes must be >= 0)")
      assert.has_error(function() ring:prep_read(0, b, 8, -2) end,
        "bad argument #4 to 'prep_read' (offset must be >= 0 (or -1))")
      assert.has_error(function() ring:prep_read(0, b, 8, 0, "ud") end,
        "bad argument #5 to 'prep_read' (number expected, got string)")
      assert.has_error(function() ring:prep_write(0, "short", 10, 0) end,
        "bad argument #3 to 'prep_write' (10 bytes at position 1 overflow a string of 5 bytes)")
      assert.has_error(function() ring:prep_write(0, {}, 1, 0) end,
        "bad argument #2 to 'prep_write' (uring.buffer or string expected, got table)")
      assert.equal(0, ring:inflight())
      assert.equal(0, ring:sq_ready())
      assert.equal(0, b:pinned())
    end)
  end)

  describe("ring:prep_readv and ring:prep_writev", function()
    it("gather and scatter", function()
      local path = dir .. "/v"
      local fd = open(path, "w+")
      local wb = core.buffer(5)
      wb:write("world")
      assert.equal(11, (one("prep_writev", fd, { "hello ", wb }, 0, 1)))
      assert.equal("hello world", slurp(path))
      local b1, b2 = core.buffer(5), core.buffer(6)
      assert.equal(11, (one("prep_readv", fd, { b1, b2 }, 0, 2)))
      assert.equal("hello", b1:tostring())
      assert.equal(" world", b2:tostring())
      assert.equal(0, b1:pinned() + b2:pinned() + wb:pinned())
      close(fd)
    end)

    it("return a negative res for an OS failure", function()
      assert.equal(-EBADF, (one("prep_readv", -1, { core.buffer(1) }, 0, 1)))
    end)

    it("raise on bad arguments", function()
      assert.has_error(function() ring:prep_readv(0, { "x" }, 0) end,
        "bad argument #2 to 'prep_readv' (item 1 is a string, not a uring.buffer)")
      assert.has_error(function() ring:prep_writev(0, { "x", 1 }, 0) end,
        "bad argument #2 to 'prep_writev' (item 2 is a number, not a uring.buffer or string)")
      assert.has_error(function() ring:prep_readv(0, {}, 0) end,
        "bad argument #2 to 'prep_readv' (table must hold 1..1024 buffers)")
      assert.has_error(function() ring:prep_readv(0, core.buffer(1), 0) end,
        "bad argument #2 to 'prep_readv' (table expected, got uring.buffer)")
    end)
  end)

  describe("fixed buffers", function()
    it("register, read_fixed, write_fixed, unregister", function()
      local path = dir .. "/fixed"
      local fd = open(path, "w+")
      local a, b = core.buffer(4096), core.buffer(4096)
      assert.is_true(ring:register_buffers{ a, b })
      local text = "fixed buffers: the kernel pinned their pages once"
      a:write(text)
      assert.equal(4096, (one("prep_write_fixed", fd, a, 4096, 0, 1)))
      assert.equal(#text, (one("prep_read_fixed", fd, b, #text, 0, 2)))
      assert.equal(text, b:tostring(1, #text))
      assert.is_true(ring:unregister_buffers())
      local ok, msg, en = ring:unregister_buffers()
      assert.is_nil(ok)
      assert.matches("^unregister_buffers: ", msg)
      assert.equal(ENXIO, en)
      close(fd)
    end)

    it("raise on bad arguments", function()
      local a = core.buffer(16)
      assert.has_error(function() ring:prep_read_fixed(0, a, 16, 0) end,
        "bad argument #2 to 'prep_read_fixed' (buffer is not registered (use ring:register_buffers))")
      assert.has_error(function() ring:register_buffers{ a, "x" } end,
        "bad argument #1 to 'register_buffers' (item 2 is a string, not a uring.buffer)")
      assert.has_error(function() ring:register_buffers{} end,
        "bad argument #1 to 'register_buffers' (table must hold 1..16384 buffers)")
      assert.is_true(ring:register_buffers{ a })
      assert.has_error(function() ring:prep_write_fixed(0, a, 17, 0) end,
        "bad argument #3 to 'prep_write_fixed' (17 bytes at position 1 overflow a buffer of 16 bytes)")
      assert.has_error(function() ring:prep_write_fixed(0, "s", 1, 0) end,
        "bad argument #2 to 'prep_write_fixed' (uring.buffer expected, got string)")
    end)
  end)

  describe("fixed files", function()
    it("register, use slots in read/write/readv/writev/fsync/poll_add, update, unregister", function()
      local path = dir .. "/ffile"
      local fd = open(path, "w+")
      local p = fifo("ffifo")
      assert.is_true(ring:register_files{ fd, -1 })    -- slot 1 sparse
      local f0 = ring:fixed(0)
      assert.equal("uring.fixed_file(0)", tostring(f0))
      local text = "written through registered file slot 0"
      assert.equal(#text, (one("prep_write", f0, text, nil, 0, 1)))
      local b = core.buffer(64)
      assert.equal(#text, (one("prep_read", f0, b, 64, 0, 2)))
      assert.equal(text, b:tostring(1, #text))
      assert.equal(6, (one("prep_writev", f0, { "ab", "cd", "ef" }, 100, 3)))
      local v1, v2 = core.buffer(3), core.buffer(3)
      assert.equal(6, (one("prep_readv", f0, { v1, v2 }, 100, 4)))
      assert.equal("abcdef", v1:tostring() .. v2:tostring())
      assert.equal(0, (one("prep_fsync", f0, true, 5)))
      -- fixed file and fixed buffer together
      local fb = core.buffer(4096)
      assert.is_true(ring:register_buffers{ fb })
      assert.equal(#text, (one("prep_read_fixed", f0, fb, #text, 0, 6)))
      assert.equal(text, fb:tostring(1, #text))
      assert.equal(4096, (one("prep_write_fixed", f0, fb, 4096, 4096, 7)))
      assert.is_true(ring:unregister_buffers())
      -- the empty slot: the op fails in the kernel, with -EBADF
      assert.equal(-EBADF, (one("prep_read", ring:fixed(1), b, 1, 0, 8)))
      -- fill it with the fifo; poll through the slot
      assert.equal(1, ring:update_files(1, { p }))
      assert.equal(1, (one("prep_write", p, "x", 1, -1, 9)))
      local res = one("prep_poll_add", ring:fixed(1), core.POLLIN, 10)
      assert.is_true(res & core.POLLIN ~= 0)
      -- the kernel holds its own reference: closing the fd keeps the slot
      close(fd)
      assert.equal(#text, (one("prep_read", f0, b, #text, 0, 11)))
      assert.is_true(ring:unregister_files())
      assert.has_error(function() ring:prep_read(f0, b, 1, 0) end,
        "bad argument #1 to 'prep_read' (no files are registered (use ring:register_files))")
      close(p)
    end)

    it("return the fail triple when the kernel refuses", function()
      local function fails(en, pat, ok, msg, errno)
        assert.is_nil(ok)
        assert.matches(pat, msg)
        assert.equal(en, errno)
      end
      fails(EBADF, "^register_files: ", ring:register_files{ 1000000 })
      fails(ENXIO, "^unregister_files: ", ring:unregister_files())
      fails(ENXIO, "^update_files: ", ring:update_files(0, { 1 }))
      assert.is_true(ring:register_files{ -1, -1 })
      fails(16, "^register_files: ", ring:register_files{ -1 })   -- EBUSY
      fails(EINVAL, "^update_files: ", ring:update_files(2, { -1 }))
      fails(EBADF, "^update_files: ", ring:update_files(0, { 1000000 }))
      assert.is_true(ring:unregister_files())
    end)

    it("raise on bad arguments", function()
      assert.has_error(function() ring:fixed(0) end,
        "bad argument #1 to 'fixed' (no files are registered (use ring:register_files))")
      assert.has_error(function() ring:register_files{} end,
        "bad argument #1 to 'register_files' (table must hold 1..1048576 fds)")
      assert.has_error(function() ring:register_files(3) end,
        "bad argument #1 to 'register_files' (table expected, got number)")
      assert.has_error(function() ring:register_files{ 0, "x" } end,
        "bad argument #1 to 'register_files' (item 2 must be an fd (0..2147483647) or -1 for an empty slot, got string)")
      assert.has_error(function() ring:register_files{ -2 } end,
        "bad argument #1 to 'register_files' (item 1 must be an fd (0..2147483647) or -1 for an empty slot, got -2)")
      assert.has_error(function() ring:register_files{ 1.5 } end,
        "bad argument #1 to 'register_files' (item 1 must be an fd (0..2147483647) or -1 for an empty slot, got number)")
      assert.has_error(function() ring:update_files(-1, { 0 }) end,
        "bad argument #1 to 'update_files' (offset must be in 0..4294967295)")
      assert.has_error(function() ring:update_files(0, "x") end,
        "bad argument #2 to 'update_files' (table expected, got string)")
      assert.is_true(ring:register_files{ -1, -1 })
      assert.has_error(function() ring:fixed(2) end,
        "bad argument #1 to 'fixed' (file slot 2 out of range (0..1 registered))")
      assert.has_error(function() ring:fixed(-1) end,
        "bad argument #1 to 'fixed' (file slot -1 out of range (0..1 registered))")
      assert.has_error(function() ring:fixed("a") end,
        "bad argument #1 to 'fixed' (number expected, got string)")
      assert.has_error(function() ring:prep_read("3", core.buffer(1), 1, 0) end,
        "bad argument #1 to 'prep_read' (fd or ring:fixed(slot) expected, got string)")
      -- a marker is checked again at prep: the registration may have shrunk
      local f1 = ring:fixed(1)
      assert.is_true(ring:unregister_files())
      assert.is_true(ring:register_files{ -1 })
      assert.has_error(function() ring:prep_send(f1, "x") end,
        "bad argument #1 to 'prep_send' (file slot 1 out of range (0..0 registered))")
      -- ops that do not take a fixed file say so
      assert.has_error(function() ring:prep_close(ring:fixed(0)) end,
        "bad argument #1 to 'prep_close' (number expected, got uring.fixed_file)")
      assert.equal(0, ring:sq_ready())            -- nothing half-prepared
      assert.equal(0, ring:inflight())
    end)
  end)

  describe("sockets: prep_send, prep_recv, prep_send_zc", function()
    local uring = require "uring"
    local F_MORE, F_NOTIF = core.IORING_CQE_F_MORE, core.IORING_CQE_F_NOTIF
    local ENOTSOCK = 88

    -- the task loop's ring is made once and lives on: make it before the
    -- fd counts of the tests are taken
    setup(function() uring.run(function() end) end)

    -- Two connected loopback TCP sockets (made with the task loop); the
    -- teaching ring then drives them by fd.  Closed when the test ends.
    local function pair()
      local a, b, srv = uring.run(function()
        local srv = assert(uring.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        local t = uring.spawn(function() return srv:accept() end)
        local c = assert(uring.connect("127.0.0.1", port))
        local _, s = assert(t:join())
        return c, s, srv
      end)
      finally(function()
        uring.run(function() a:close(); b:close(); srv:close() end)
      end)
      return a:fd(), b:fd()
    end

    it("send a string and a buffer, recv into a buffer at a position", function()
      local a, b = pair()
      local s = "hello, ring"
      assert.equal(5, (one("prep_send", a, s, 5, 0, 1, 5)))   -- "o, ri"
      local out = core.buffer(16)
      out:fill(46)
      assert.equal(5, (one("prep_recv", b, out, 5, core.MSG_WAITALL, 2, 3)))
      assert.equal("..o, ri.", out:tostring(1, 8))
      out:write("buffered")
      assert.equal(8, (one("prep_send", b, out, 8, 0, 3)))
      local back = core.buffer(8)
      assert.equal(8, (one("prep_recv", a, back, nil, 0, 4)))
      assert.equal("buffered", back:tostring())
      -- MSG_DONTWAIT on an empty socket: -EAGAIN, not a hang
      assert.equal(-11, (one("prep_recv", a, back, nil, core.MSG_DONTWAIT, 5)))
    end)

    it("send_zc of 1 MiB: a result CQE with F_MORE, then F_NOTIF; pinned until then", function()
      local a, b = pair()
      local N = 1 << 20
      local data = pattern(65521):rep(17):sub(1, N)
      local buf = core.buffer(N)
      buf:write(data)
      local into = core.buffer(N)
      ring:prep_send_zc(a, buf, N, 0, 1)
      assert.equal(1, buf:pinned())
      ring:prep_recv(b, into, N, core.MSG_WAITALL, 2)
      assert.equal(2, ring:submit())
      local seen = {}
      while ring:inflight() > 0 do
        local res, ud, flags = ring:wait_cqe()
        if ud == 2 then
          assert.equal(N, res)
          seen.recv = true
        elseif flags & F_NOTIF ~= 0 then
          assert.is_true(seen.result, "the notification came first")
          assert.equal(0, flags & F_MORE)
          assert.equal(0, res)
          assert.equal(1, ud)
          assert.equal(0, buf:pinned())         -- released on the notif
          seen.notif = true
        else
          assert.equal(1, ud)
          assert.equal(N, res)
          assert.is_true(flags & F_MORE ~= 0)
          assert.equal(1, buf:pinned())         -- still the kernel's
          assert.equal(1, ring:inflight() - (seen.recv and 0 or 1))
          seen.result = true
        end
      end
      assert.same({ result = true, notif = true, recv = true }, seen)
      assert.equal(0, buf:pinned())
      assert.is_true(into:tostring() == data, "the data arrived intact")
    end)

    it("submit_and_wait counts both CQEs of a send_zc", function()
      local a, b = pair()
      ring:prep_send_zc(a, "zero copy", nil, 0, 7)
      assert.equal(1, ring:submit_and_wait(2))
      local r1, u1, f1 = ring:wait_cqe()
      local r2, u2, f2 = ring:wait_cqe()
      assert.same({ 9, 7, F_MORE }, { r1, u1, f1 & (F_MORE | F_NOTIF) })
      assert.same({ 0, 7, F_NOTIF }, { r2, u2, f2 & (F_MORE | F_NOTIF) })
      assert.has_error(function() ring:submit_and_wait(1) end,
        "bad argument #1 to 'submit_and_wait' (cannot wait for 1 CQEs: 0 SQE(s) in flight)")
      local got = core.buffer(9)
      assert.equal(9, (one("prep_recv", b, got, 9, core.MSG_WAITALL, 8)))
      assert.equal("zero copy", got:tostring())
    end)

    it("send, recv and send_zc take a registered file", function()
      local a, b = pair()
      assert.is_true(ring:register_files{ a, b })
      ring:prep_send_zc(ring:fixed(0), "fixed and zero-copy", nil, 0, 1)
      ring:submit()
      local got = reap(2)
      assert.equal(0, got[1])                    -- the notification, last
      assert.equal(0, ring:inflight())
      local into = core.buffer(19)
      assert.equal(19, (one("prep_recv", ring:fixed(1), into, nil, core.MSG_WAITALL, 2)))
      assert.equal("fixed and zero-copy", into:tostring())
      assert.equal(4, (one("prep_send", ring:fixed(1), "back", nil, 0, 3)))
      assert.equal(4, (one("prep_recv", a, into, 4, core.MSG_WAITALL, 4)))
      assert.equal("back", into:tostring(1, 4))
    end)

    it("return a negative res for an OS failure (send_zc still notifies)", function()
      local path = dir .. "/notsock"
      local fd = open(path, "w+")
      assert.equal(-ENOTSOCK, (one("prep_send", fd, "x", nil, 0, 1)))
      assert.equal(-ENOTSOCK, (one("prep_recv", fd, core.buffer(1), nil, 0, 2)))
      ring:prep_send_zc(1000000, "x", nil, 0, 3)
      ring:submit()
      local r1, _, f1 = ring:wait_cqe()
      assert.equal(-EBADF, r1)
      assert.is_true(f1 & F_MORE ~= 0)
      local r2, _, f2 = ring:wait_cqe()
      assert.equal(0, r2)
      assert.is_true(f2 & F_NOTIF ~= 0)
      ring:prep_send_zc(fd, "x", nil, 0, 4)
      ring:submit()
      assert.same({ [4] = 0 }, reap(2))          -- -ENOTSOCK, then the notif
      assert.equal(0, ring:inflight())
      close(fd)
    end)

    it("raise on bad arguments", function()
      assert.has_error(function() ring:prep_recv(0, "s", 1, 0) end,
        "bad argument #2 to 'prep_recv' (uring.buffer expected, got string)")
      assert.has_error(function() ring:prep_send_zc(0, 12) end,
        "bad argument #2 to 'prep_send_zc' (uring.buffer or string expected, got number)")
      assert.has_error(function() ring:prep_send(0, "abc", 4) end,
        "bad argument #3 to 'prep_send' (4 bytes at position 1 overflow a string of 3 bytes)")
      assert.has_error(function() ring:prep_recv(0, core.buffer(4), 2, 0, 0, 4) end,
        "bad argument #3 to 'prep_recv' (2 bytes at position 4 overflow a buffer of 4 bytes)")
      assert.has_error(function() ring:prep_send_zc(0, "abc", nil, -1) end,
        "bad argument #4 to 'prep_send_zc' (flags must be in 0..2147483647)")
      assert.has_error(function() ring:prep_send(0, "abc", nil, "x") end,
        "bad argument #4 to 'prep_send' (number expected, got string)")
      assert.has_error(function() ring:prep_send({}, "abc") end,
        "bad argument #1 to 'prep_send' (fd or ring:fixed(slot) expected, got table)")
      assert.equal(0, ring:inflight())
    end)

    it("keep a dropped buffer and string alive until the notification", function()
      local a, b = pair()
      local N = 1 << 20
      local weak = setmetatable({}, { __mode = "v" })
      local data = pattern(4093):rep(257):sub(1, N)
      do
        local buf = core.buffer(N)
        buf:write(data)
        weak[1] = buf
        ring:prep_send_zc(a, buf, nil, 0, 1)
        -- a string built here, referenced only by the SQE
        ring:prep_send_zc(a, ("tail:%d"):format(12345) .. ("!"):rep(100), nil, 0, 2)
      end
      collectgarbage("collect")
      collectgarbage("collect")
      for i = 1, 100 do local _, _ = core.buffer(4096), ("%d"):format(i) .. "x" end
      assert.is_not_nil(weak[1])
      ring:submit()
      -- take the result CQEs only (F_MORE); the notifications stay due
      local results, notified = 0, {}
      local function check()
        collectgarbage("collect")
        collectgarbage("collect")
        if not notified[1] then               -- the kernel may still read it
          assert.is_not_nil(weak[1])
          assert.equal(1, weak[1]:pinned())
        end
      end
      while results < 2 do
        local res, ud, flags = ring:wait_cqe()
        if flags & F_MORE ~= 0 then
          results = results + 1
          assert.equal(ud == 1 and N or 110, res)
        else
          notified[ud] = true
        end
        check()
      end
      local into = core.buffer(N + 110)
      ring:prep_recv(b, into, nil, core.MSG_WAITALL, 3)
      ring:submit()
      while ring:inflight() > 0 do
        local _, ud, flags = ring:wait_cqe()
        if flags & F_NOTIF ~= 0 then notified[ud] = true end
        check()
      end
      assert.is_true(notified[1] and notified[2])
      assert.equal(data .. "tail:12345" .. ("!"):rep(100), into:tostring())
      collectgarbage("collect")
      collectgarbage("collect")
      assert.is_nil(weak[1])                    -- let go after the notif
    end)

    it("close with a send_zc in flight gives the pin back", function()
      local a = pair()
      local r = assert(core.ring{entries = 4})
      local buf = core.buffer(65536)
      r:prep_send_zc(a, buf, nil, 0, 1)
      r:submit()
      assert.equal(1, buf:pinned())
      r:close()
      assert.equal(0, buf:pinned())
    end)
  end)

  describe("ring:link", function()
    it("chains a write and an fsync, completed in order, one submit", function()
      local path = dir .. "/linked"
      local fd = open(path, "w")
      ring:prep_write(fd, "durable", nil, 0, 1)
      ring:link()
      ring:prep_fsync(fd, false, 2)
      assert.equal(2, ring:submit())
      local got, order = reap(2)
      assert.same({ 1, 2 }, order)
      assert.equal(7, got[1])
      assert.equal(0, got[2])
      assert.equal("durable", slurp(path))
      close(fd)
    end)

    it("cancels the rest of the chain when a link fails; hardlink does not", function()
      ring:prep_write(-1, "x", 1, 0, 1)
      ring:link()
      ring:prep_nop(2)
      ring:submit()
      local got = reap(2)
      assert.equal(-EBADF, got[1])
      assert.equal(-ECANCELED, got[2])
      ring:prep_write(-1, "x", 1, 0, 3)
      ring:hardlink()
      ring:prep_nop(4)
      ring:submit()
      got = reap(2)
      assert.equal(-EBADF, got[3])
      assert.equal(0, got[4])
    end)

    it("drain waits for everything before it", function()
      ring:prep_timeout(0.01, 0, 1)
      ring:prep_nop(2)
      ring:drain()
      ring:submit()
      local _, order = reap(2)
      assert.same({ 1, 2 }, order)
    end)

    it("raises with no prepared SQE", function()
      assert.has_error(function() ring:link() end,
        "link: no prepared SQE (prep one first; link before submit)")
      ring:prep_nop(1)
      ring:submit()
      assert.has_error(function() ring:drain() end,
        "drain: no prepared SQE (prep one first; drain before submit)")
      reap(1)
    end)
  end)

  describe("ring:prep_fsync, prep_sync_file_range, prep_fallocate, prep_fadvise", function()
    it("work", function()
      local path = dir .. "/sync"
      local fd = open(path, "w+")
      assert.equal(0, (one("prep_fsync", fd, true, 1)))
      assert.equal(0, (one("prep_fsync", fd, nil, 2)))
      assert.equal(0, (one("prep_fallocate", fd, 0, 0, 8192, 3)))
      local res, _, _, st = one("prep_statx", fd, "", core.AT_EMPTY_PATH, nil, 4)
      assert.equal(0, res)
      assert.equal(8192, st.size)
      assert.equal(0, (one("prep_sync_file_range", fd, 0, 0, core.SYNC_FILE_RANGE_WRITE, 5)))
      assert.equal(0, (one("prep_fadvise", fd, 0, 8192, "sequential", 6)))
      assert.equal(0, (one("prep_fadvise", fd, 0, 0, 4, 7)))   -- POSIX_FADV_DONTNEED
      close(fd)
    end)

    it("return a negative res for an OS failure", function()
      assert.equal(-EBADF, (one("prep_fsync", -1, false, 1)))
      assert.equal(-EBADF, (one("prep_fallocate", -1, 0, 0, 1, 2)))
    end)

    it("raise on bad arguments", function()
      assert.has_error(function() ring:prep_fsync(0, 1) end,
        "bad argument #2 to 'prep_fsync' (boolean expected, got number)")
      assert.has_error(function() ring:prep_fallocate(0, 0, -1, 1) end,
        "bad argument #3 to 'prep_fallocate' (offset must be >= 0)")
      assert.has_error(function() ring:prep_fadvise(0, 0, 0, "fast") end,
        "bad argument #4 to 'prep_fadvise' (invalid option 'fast')")
      assert.has_error(function() ring:prep_sync_file_range(0, -1, 0, 0) end,
        "bad argument #2 to 'prep_sync_file_range' (len must be in 0..4294967295)")
    end)
  end)

  describe("ring:prep_openat, prep_openat2, prep_close, prep_statx", function()
    it("open, stat and close real files", function()
      local path = dir .. "/f"
      local fd = open(path, "w", tonumber("640", 8))
      assert.is_true(exists(path))
      local res, ud, _, st = one("prep_statx", nil, path, 0, nil, 5)
      assert.equal(0, res); assert.equal(5, ud)
      assert.equal("file", st.type)
      assert.equal(0, st.size)
      assert.equal(tonumber("640", 8), st.mode)
      assert.is_number(st.mtime)
      close(fd)
      fd = one("prep_openat2", nil, path, { flags = "r" }, 6)
      assert.is_true(fd >= 0)
      close(fd)
      fd = one("prep_openat2", nil, dir .. "/g", { flags = core.O_CREAT | core.O_WRONLY,
                                                   mode = tonumber("600", 8) }, 7)
      assert.is_true(fd >= 0)
      close(fd)
      local _, _, _, st2 = one("prep_statx", nil, dir .. "/g", 0, nil, 8)
      assert.equal(tonumber("600", 8), st2.mode)
      local _, _, _, st3 = one("prep_statx", nil, dir, 0, nil, 9)
      assert.equal("directory", st3.type)
    end)

    it("prep_statx returns uring.stat's table, in its vocabulary", function()
      local uring = require "uring"
      local p = dir .. "/fifo"
      assert(os.execute("mkfifo '" .. p .. "'"))
      local res, _, _, st = one("prep_statx", nil, p, 0, nil, 1)
      assert.equal(0, res)
      assert.equal("fifo", st.type)
      local st2 = uring.run(function() return assert(uring.stat(p)) end)
      local k1, k2 = {}, {}
      for k in pairs(st) do k1[#k1 + 1] = k end
      for k in pairs(st2) do k2[#k2 + 1] = k end
      table.sort(k1); table.sort(k2)
      assert.same(k2, k1)
      for _, k in ipairs { "size", "mode", "type", "ino", "dev", "uid", "gid",
                           "nlink", "mtime" } do
        assert.equal(st2[k], st[k], k)
      end
    end)

    it("return a negative res for an OS failure", function()
      assert.same({ -ENOENT, 1, 0 }, { one("prep_openat", nil, dir .. "/missing", "r", 0, 1) })
      assert.equal(-ENOENT, (one("prep_openat2", nil, dir .. "/missing", { flags = "r" }, 2)))
      local res, ud, flags, st = one("prep_statx", nil, dir .. "/missing", 0, nil, 3)
      assert.same({ -ENOENT, 3, 0 }, { res, ud, flags })
      assert.is_nil(st)
      assert.equal(-EBADF, (one("prep_close", 99999, 4)))
      spit(dir .. "/x", "")
      assert.equal(-EEXIST, (one("prep_openat", nil, dir .. "/x",
        core.O_CREAT | core.O_EXCL | core.O_WRONLY, 420, 5)))
    end)

    it("raise on bad arguments", function()
      assert.has_error(function() ring:prep_openat(nil, "/tmp/x", "rw") end,
        "bad argument #3 to 'prep_openat' (invalid mode 'rw')")
      assert.has_error(function() ring:prep_openat(nil, "/tmp/x\0y", "r") end,
        "bad argument #2 to 'prep_openat' (path contains a NUL byte)")
      assert.has_error(function() ring:prep_openat("x", "/tmp/x") end,
        "bad argument #1 to 'prep_openat' (number expected, got string)")
      assert.has_error(function() ring:prep_openat(nil, nil) end,
        "bad argument #2 to 'prep_openat' (string expected, got nil)")
      assert.has_error(function() ring:prep_openat2(nil, "/tmp/x") end,
        "bad argument #3 to 'prep_openat2' (table expected, got no value)")
      assert.has_error(function() ring:prep_close("x") end,
        "bad argument #1 to 'prep_close' (number expected, got string)")
      assert.has_error(function() ring:prep_statx(nil, {}) end,
        "bad argument #2 to 'prep_statx' (string expected, got table)")
    end)
  end)

  describe("ring:prep_unlinkat, renameat, mkdirat, symlinkat, linkat", function()
    it("change the file system", function()
      local a, b = dir .. "/a", dir .. "/b"
      spit(a, "content")
      assert.equal(0, (one("prep_renameat", nil, a, nil, b, 0, 1)))
      assert.is_false(exists(a)); assert.equal("content", slurp(b))
      assert.equal(0, (one("prep_linkat", nil, b, nil, a, 0, 2)))
      local _, _, _, st = one("prep_statx", nil, a, 0, nil, 3)
      assert.equal(2, st.nlink)
      assert.equal(0, (one("prep_symlinkat", "b", nil, dir .. "/s", 4)))
      local _, _, _, lst = one("prep_statx", nil, dir .. "/s", core.AT_SYMLINK_NOFOLLOW, nil, 5)
      assert.equal("link", lst.type)
      assert.equal("content", slurp(dir .. "/s"))
      assert.equal(0, (one("prep_mkdirat", nil, dir .. "/d", nil, 6)))
      local _, _, _, dst = one("prep_statx", nil, dir .. "/d", 0, nil, 7)
      assert.equal("directory", dst.type)
      assert.equal(0, (one("prep_unlinkat", nil, dir .. "/d", core.AT_REMOVEDIR, 8)))
      for _, p in ipairs { a, b, dir .. "/s" } do
        assert.equal(0, (one("prep_unlinkat", nil, p, 0, 9)))
        assert.is_false(exists(p))
      end
    end)

    it("return a negative res for an OS failure", function()
      local m = dir .. "/missing"
      assert.equal(-ENOENT, (one("prep_unlinkat", nil, m, 0, 1)))
      assert.equal(-ENOENT, (one("prep_renameat", nil, m, nil, dir .. "/n", 0, 2)))
      assert.equal(-ENOENT, (one("prep_linkat", nil, m, nil, dir .. "/n", 0, 3)))
      assert.equal(-EEXIST, (one("prep_mkdirat", nil, dir, nil, 4)))
      assert.equal(-EEXIST, (one("prep_symlinkat", "x", nil, dir, 5)))
    end)

    it("raise on bad arguments", function()
      assert.has_error(function() ring:prep_unlinkat(nil, 1 == 1) end,
        "bad argument #2 to 'prep_unlinkat' (string expected, got boolean)")
      assert.has_error(function() ring:prep_renameat(nil, "a", nil) end,
        "bad argument #4 to 'prep_renameat' (string expected, got no value)")
      assert.has_error(function() ring:prep_mkdirat(nil, "d", -1) end,
        "bad argument #3 to 'prep_mkdirat' (mode must be in 0..4294967295)")
      assert.has_error(function() ring:prep_symlinkat("t", nil, "l\0") end,
        "bad argument #3 to 'prep_symlinkat' (path contains a NUL byte)")
      assert.has_error(function() ring:prep_linkat(nil, "a", "x", "b") end,
        "bad argument #3 to 'prep_linkat' (number expected, got string)")
    end)
  end)

  describe("ring:prep_splice and ring:prep_tee", function()
    it("move bytes through pipes without user space", function()
      local path = dir .. "/src"
      spit(path, "spliced bytes")
      local src = open(path, "r")
      local p1, p2 = fifo("p1"), fifo("p2")
      assert.equal(13, (one("prep_splice", src, 0, p1, -1, 13, 0, 1)))
      assert.equal(13, (one("prep_tee", p1, p2, 13, 0, 2)))
      local b1, b2 = core.buffer(13), core.buffer(13)
      assert.equal(13, (one("prep_read", p1, b1, 13, -1, 3)))
      assert.equal(13, (one("prep_read", p2, b2, 13, -1, 4)))
      assert.equal("spliced bytes", b1:tostring())
      assert.equal("spliced bytes", b2:tostring())
      close(src); close(p1); close(p2)
    end)

    it("return a negative res for an OS failure", function()
      assert.equal(-EBADF, (one("prep_splice", -1, -1, -1, -1, 1, 0, 1)))
      assert.equal(-EBADF, (one("prep_tee", -1, -1, 1, 0, 2)))
    end)

    it("raise on bad arguments", function()
      assert.has_error(function() ring:prep_splice(0, 0, 1, 0) end,
        "bad argument #5 to 'prep_splice' (number expected, got no value)")
      assert.has_error(function() ring:prep_splice(0, -2, 1, 0, 1) end,
        "bad argument #2 to 'prep_splice' (offset must be >= 0 (or -1))")
      assert.has_error(function() ring:prep_tee(0, 1) end,
        "bad argument #3 to 'prep_tee' (number expected, got no value)")
    end)
  end)

  describe("xattrs", function()
    it("set and get, by path and by fd", function()
      local path = dir .. "/x"
      spit(path, "")
      local res = one("prep_setxattr", path, "user.lua", "uring", 0, 1)
      if res == -95 then                     -- EOPNOTSUPP: counted as a skip
        pending("the file system of " .. dir .. " has no user xattrs (EOPNOTSUPP)")
      end
      assert.equal(0, res)
      local b = core.buffer(64)
      assert.equal(5, (one("prep_getxattr", path, "user.lua", b, 2)))
      assert.equal("uring", b:tostring(1, 5))
      local fd = open(path, "r+")
      assert.equal(0, (one("prep_fsetxattr", fd, "user.lua", "ring", core.XATTR_REPLACE, 3)))
      assert.equal(4, (one("prep_fgetxattr", fd, "user.lua", b, 4)))
      assert.equal("ring", b:tostring(1, 4))
      assert.equal(-ENODATA, (one("prep_fgetxattr", fd, "user.none", b, 5)))
      close(fd)
    end)

    it("raise on bad arguments", function()
      assert.has_error(function() ring:prep_getxattr("/tmp", "user.x", "s") end,
        "bad argument #3 to 'prep_getxattr' (uring.buffer expected, got string)")
      assert.has_error(function() ring:prep_setxattr("/tmp", "user.x\0", "v") end,
        "bad argument #2 to 'prep_setxattr' (name contains a NUL byte)")
    end)
  end)

  describe("ring:prep_poll_add, prep_poll_remove, prep_link_timeout, prep_cancel_fd", function()
    it("poll reports a readable pipe", function()
      local p = fifo("poll")
      assert.equal(1, (one("prep_write", p, "x", 1, -1, 1)))
      local res = one("prep_poll_add", p, core.POLLIN, 2)
      assert.is_true(res & core.POLLIN ~= 0)
      close(p)
    end)

    it("a link_timeout cuts a poll that never fires", function()
      local p = fifo("lt")
      local t0 = core.now()
      ring:prep_poll_add(p, core.POLLIN, 1)
      ring:link()
      ring:prep_link_timeout(0.02, 2)
      assert.equal(2, ring:submit())
      local got = reap(2)
      assert.equal(-ECANCELED, got[1])
      assert.equal(-ETIME, got[2])
      assert.is_true(core.now() - t0 < 1)
      close(p)
    end)

    it("poll_remove and cancel_fd end a pending poll", function()
      local p = fifo("rm")
      ring:prep_poll_add(p, core.POLLIN, 1)
      ring:submit()
      ring:prep_poll_remove(1, 2)
      ring:submit()
      local got = reap(2)
      assert.same({ [1] = -ECANCELED, [2] = 0 }, got)
      ring:prep_poll_add(p, core.POLLIN, 3)
      ring:submit()
      ring:prep_cancel_fd(p, 4)
      ring:submit()
      got = reap(2)
      assert.same({ [3] = -ECANCELED, [4] = 0 }, got)
      assert.equal(-ENOENT, (one("prep_poll_remove", 3, 5)))
      close(p)
    end)

    it("raise on bad arguments", function()
      assert.has_error(function() ring:prep_poll_add(0) end,
        "bad argument #2 to 'prep_poll_add' (number expected, got no value)")
      assert.has_error(function() ring:prep_poll_remove() end,
        "bad argument #1 to 'prep_poll_remove' (number expected, got no value)")
      assert.has_error(function() ring:prep_link_timeout(-1) end,
        "bad argument #1 to 'prep_link_timeout' (seconds must be a non-negative number below 1e12)")
      assert.has_error(function() ring:prep_cancel_fd("x") end,
        "bad argument #1 to 'prep_cancel_fd' (number expected, got string)")
    end)
  end)

  describe("ring:prep_timeout and friends", function()
    it("a timeout fires with -ETIME", function()
      local t0 = core.now()
      assert.same({ -ETIME, 1, 0 }, { one("prep_timeout", 0.01, 0, 1) })
      local dt = core.now() - t0
      assert.is_true(dt >= 0.009 and dt < 1, dt)
    end)

    it("a timeout with a count completes with 0 after that many CQEs", function()
      ring:prep_timeout(10, 1, 1)
      ring:prep_nop(2)
      ring:submit()
      local got = reap(2)
      assert.same({ [1] = 0, [2] = 0 }, got)
    end)

    it("cancel ends a pending timeout with -ECANCELED; the cancel's own CQE is 0", function()
      ring:prep_timeout(10, 0, 1)
      ring:submit()
      ring:prep_cancel(1, 2)
      ring:submit()
      assert.same({ [1] = -ECANCELED, [2] = 0 }, (reap(2)))
      -- CANCEL_ANY | CANCEL_ALL: every request, counted in res
      ring:prep_timeout(10, 0, 3)
      ring:prep_timeout(10, 0, 4)
      ring:submit()
      ring:prep_cancel(0, 5, core.IORING_ASYNC_CANCEL_ANY | core.IORING_ASYNC_CANCEL_ALL)
      ring:submit()
      assert.same({ [3] = -ECANCELED, [4] = -ECANCELED, [5] = 2 }, (reap(3)))
    end)

    it("timeout_remove and timeout_update", function()
      ring:prep_timeout(10, 0, 1)
      ring:submit()
      ring:prep_timeout_remove(1, 2)
      ring:submit()
      assert.same({ [1] = -ECANCELED, [2] = 0 }, (reap(2)))
      local t0 = core.now()
      ring:prep_timeout(10, 0, 3)
      ring:submit()
      ring:prep_timeout_update(3, 0.01, 4)
      ring:submit()
      assert.same({ [3] = -ETIME, [4] = 0 }, (reap(2)))
      assert.is_true(core.now() - t0 < 1)
    end)

    it("return a negative res for a missing target", function()
      assert.same({ -ENOENT, 1, 0 }, { one("prep_cancel", 424242, 1) })
      assert.same({ -ENOENT, 2, 0 }, { one("prep_timeout_remove", 424242, 2) })
      assert.same({ -ENOENT, 3, 0 }, { one("prep_timeout_update", 424242, 1, 3) })
    end)

    it("raise on bad arguments", function()
      assert.has_error(function() ring:prep_timeout() end,
        "bad argument #1 to 'prep_timeout' (number expected, got no value)")
      assert.has_error(function() ring:prep_timeout(-0.5) end,
        "bad argument #1 to 'prep_timeout' (seconds must be a non-negative number below 1e12)")
      assert.has_error(function() ring:prep_timeout(0 / 0) end,
        "bad argument #1 to 'prep_timeout' (seconds must be a non-negative number below 1e12)")
      assert.has_error(function() ring:prep_timeout(1, -1) end,
        "bad argument #2 to 'prep_timeout' (count must be in 0..4294967295)")
      assert.has_error(function() ring:prep_cancel() end,
        "bad argument #1 to 'prep_cancel' (number expected, got no value)")
      assert.has_error(function() ring:prep_timeout_update(1) end,
        "bad argument #2 to 'prep_timeout_update' (number expected, got no value)")
    end)
  end)

  describe("submit, wait and the queue counters", function()
    it("count what is prepared, submitted and completed", function()
      assert.same({ 8, 0, 0, 0 },
        { ring:sq_space_left(), ring:sq_ready(), ring:cq_ready(), ring:inflight() })
      ring:prep_nop(1)
      ring:prep_nop(2)
      assert.same({ 6, 2, 0, 2 },
        { ring:sq_space_left(), ring:sq_ready(), ring:cq_ready(), ring:inflight() })
      assert.equal(2, ring:submit_and_wait(2))
      assert.same({ 8, 0, 2, 2 },
        { ring:sq_space_left(), ring:sq_ready(), ring:cq_ready(), ring:inflight() })
      assert.same({ 0, 1, 0 }, { ring:peek_cqe() })
      assert.same({ 0, 2, 0 }, { ring:peek_cqe() })
      assert.is_nil(ring:peek_cqe())
      assert.equal(0, ring:inflight())
      assert.equal(0, ring:submit())
    end)

    it("wait_cqe with a timeout returns the fail triple", function()
      ring:prep_timeout(10, 0, 1)
      ring:submit()
      local ok, msg, en = ring:wait_cqe(0.01)
      assert.is_nil(ok)
      assert.equal("wait_cqe: Timer expired", msg)
      assert.equal(ETIME, en)
    end)

    it("raise rather than wait forever", function()
      assert.has_error(function() ring:wait_cqe() end,
        "wait_cqe: no submitted SQE is in flight, so no CQE can come (call ring:submit())")
      ring:prep_nop(1)          -- prepared is not submitted
      assert.has_error(function() ring:wait_cqe() end,
        "wait_cqe: no submitted SQE is in flight, so no CQE can come (call ring:submit())")
      assert.has_error(function() ring:submit_and_wait(2) end,
        "bad argument #1 to 'submit_and_wait' (cannot wait for 2 CQEs: 1 SQE(s) in flight)")
      assert.equal(1, ring:submit_and_wait(1))
      reap(1)
      assert.has_error(function() ring:wait_cqe(-1) end,
        "bad argument #1 to 'wait_cqe' (seconds must be a non-negative number below 1e12)")
    end)
  end)

  describe("ring:close", function()
    it("is idempotent and every other method then raises", function()
      local r = core.ring()
      assert.is_true(r:close())
      assert.is_true(r:close())
      assert.equal("uring.ring (closed)", tostring(r))
      for _, m in ipairs { "prep_nop", "prep_read", "prep_write", "prep_timeout",
                           "prep_cancel", "link", "submit", "submit_and_wait",
                           "wait_cqe", "peek_cqe", "sq_space_left", "sq_ready",
                           "cq_ready", "inflight", "probe", "flags",
                           "register_buffers", "unregister_buffers" } do
        assert.has_error(function() r[m](r) end, "attempt to use a closed ring")
      end
    end)

    it("works as a to-be-closed variable", function()
      local seen
      do
        local r <close> = core.ring()
        seen = r
        r:prep_timeout(10, 0, 1)
        r:submit()
      end
      assert.equal("uring.ring (closed)", tostring(seen))
    end)

    it("returns promptly with a 10-second timeout and a poll pending", function()
      local p = fifo("cl")
      local r = core.ring{entries = 4}
      r:prep_timeout(10, 0, 1)
      r:prep_poll_add(p, core.POLLIN, 2)
      local b = core.buffer(16)
      r:prep_read(p, b, 16, -1, 3)     -- pending read into a pinned buffer
      assert.equal(3, r:submit())
      assert.equal(1, b:pinned())
      local t0 = core.now()
      assert.is_true(r:close())
      assert.is_true(core.now() - t0 < 1)
      assert.equal(0, b:pinned())       -- anchors released: the kernel is done
      close(p)
    end)

    it("turns prepared-but-unsubmitted SQEs into NOPs", function()
      local path = dir .. "/nop"
      local fd = open(path, "w")
      local r = core.ring()
      local b = core.buffer(4)
      b:write("oops")
      r:prep_write(fd, b, 4, 0, 1)
      r:link()
      r:prep_timeout(10, 0, 2)
      assert.equal(1, b:pinned())
      r:close()
      assert.equal(0, b:pinned())
      assert.equal("", slurp(path))     -- the write never happened
      close(fd)
    end)
  end)

  -- The teaching ring's failure cases, each under several ring setups (as
  -- liburing's tests run under several): whatever state the ring is left
  -- in, wait_cqe must not block forever, and close must return at once
  -- with every request back from the kernel (tostring says so), every
  -- anchor let go and every fd closed (after_each counts them).
  describe("failure cases", function()
    local BAD_TIMEOUT_FLAG = 0x8000     -- unknown to the kernel: prep fails
    local SETUPS = {
      { name = "default", opts = { entries = 8 } },
      { name = "DEFER_TASKRUN", opts = { entries = 8, single_issuer = true,
                                         defer_taskrun = true } },
      { name = "SQPOLL", opts = { entries = 8, sqpoll = true,
                                  sq_thread_idle = 10 } },
    }

    -- each setup the kernel accepts (SQPOLL may be refused)
    local function setups(fn)
      for _, s in ipairs(SETUPS) do
        local r = core.ring(s.opts)
        if r then fn(r, s.name) end
      end
    end

    -- close: at once, nothing left in the kernel, anchors 1..n let go
    local function closes_clean(r, weak, n, what)
      local t0 = core.now()
      assert.is_true(r:close())
      local dt = core.now() - t0
      assert.is_true(dt < 1, what .. ": close took " .. dt .. " s")
      assert.equal("uring.ring (closed)", tostring(r), what)
      collectgarbage(); collectgarbage()
      for i = 1, n do assert.is_nil(weak[i], what .. ": anchor " .. i .. " kept") end
    end

    it("wait_cqe raises rather than blocks after a submit the kernel cut short", function()
      local p = fifo("cut")
      for _, opts in ipairs { { entries = 8 },
                              { entries = 8, single_issuer = true, defer_taskrun = true } } do
        local r = assert(core.ring(opts))
        local b = core.buffer(8)
        r:prep_timeout(1, 0, 1, BAD_TIMEOUT_FLAG)
        r:prep_nop(2)
        r:prep_read(p, b, 8, -1, 3)
        assert.equal(1, r:submit())             -- it stopped at the failed one
        assert.equal(2, r:sq_ready())           -- and left the rest in the SQ
        assert.same({ -EINVAL, 1, 0 }, { r:wait_cqe() })
        local msg = "wait_cqe: the kernel stopped submitting at an SQE that failed " ..
                    "and left 2 SQE(s) in the SQ, so no CQE can come (call " ..
                    "ring:submit() to submit them)"
        assert.has_error(function() r:wait_cqe() end, msg)
        assert.has_error(function() r:wait_cqe(10) end, msg)   -- at once, too
        assert.equal(2, r:inflight())           -- the nop and the read
        assert.equal(2, r:submit())             -- submitted again: consumed
        assert.same({ 0, 2, 0 }, { r:wait_cqe() })
        assert.equal(1, r:inflight())           -- the read waits on the pipe
        assert.equal(1, b:pinned())
        r:close()
        assert.equal("uring.ring (closed)", tostring(r))
        assert.equal(0, b:pinned())
      end
      close(p)
    end)

    it("SUBMIT_ALL and SQPOLL go on past an SQE that fails in prep", function()
      for _, opts in ipairs { { entries = 8, submit_all = true },
                              { entries = 8, sqpoll = true, sq_thread_idle = 10 } } do
        local r = core.ring(opts)
        if r then
          r:prep_timeout(1, 0, 1, BAD_TIMEOUT_FLAG)
          r:prep_nop(2)
          assert.equal(2, r:submit())
          local got = reap(2, r)
          assert.same({ [1] = -EINVAL, [2] = 0 }, got)
          assert.equal(0, r:sq_ready())
          r:close()
        end
      end
    end)

    it("close after a submit the kernel cut short starts nothing and leaks nothing", function()
      local p, q = fifo("cut2"), fifo("cut3")
      setups(function(r, what)
        local weak = setmetatable({}, { __mode = "v" })
        do
          local b = core.buffer(8)
          weak[1] = b
          r:prep_timeout(1, 0, 1, BAD_TIMEOUT_FLAG)
          r:prep_write(q, ("never written"):sub(1, 5), nil, -1, 2)
          r:prep_read(p, b, 8, -1, 3)
        end
        assert.is_true(r:submit() >= 1, what)
        closes_clean(r, weak, 1, what)          -- its CQEs never taken
        -- the write it left in the SQE never ran (a pipe write would have
        -- completed at once); an SQPOLL thread went on and ran it
        assert.equal(2, (one("prep_write", q, "ok", nil, -1, 4)))
        local b = core.buffer(16)
        local n = one("prep_read", q, b, 16, -1, 5)
        assert.equal(what == "SQPOLL" and "neverok" or "ok", b:tostring(1, n), what)
      end)
      close(p)
      close(q)
    end)

    it("close gets back requests held behind an IOSQE_IO_DRAIN barrier", function()
      local p = fifo("drain")
      setups(function(r, what)
        local weak = setmetatable({}, { __mode = "v" })
        do
          local b1, b2 = core.buffer(8), core.buffer(8)
          weak[1], weak[2] = b1, b2
          r:prep_read(p, b1, 8, -1, 1)          -- never completes on its own
          r:prep_nop(2)
          r:drain()                             -- waits for the read
          r:prep_read(p, b2, 8, -1, 3)          -- and this for the nop
          assert.equal(3, r:submit(), what)
          assert.same({ nil, "wait_cqe: Timer expired", ETIME },
                      { r:wait_cqe(0.02) }, what)
          assert.same({ 1, 1, 3 }, { b1:pinned(), b2:pinned(), r:inflight() }, what)
        end
        closes_clean(r, weak, 2, what)
      end)
      setups(function(r, what)                  -- a timer before the barrier
        local weak = setmetatable({}, { __mode = "v" })
        do
          local b = core.buffer(8)
          weak[1] = b
          r:prep_timeout(30, 0, 1)
          r:prep_nop(2)
          r:drain()
          r:prep_read(p, b, 8, -1, 3)
          assert.equal(3, r:submit(), what)
        end
        closes_clean(r, weak, 1, what)
      end)
      close(p)
    end)

    it("a ring collected with requests behind a drain barrier gets them back", function()
      local p = fifo("draingc")
      local weak = setmetatable({}, { __mode = "v" })
      do
        local r = core.ring{entries = 8}
        local b = core.buffer(8)
        r:prep_read(p, b, 8, -1, 1)
        r:prep_nop(2)
        r:drain()
        r:submit()
        weak[1], weak[2] = r, b
      end
      local t0 = core.now()
      collectgarbage(); collectgarbage(); collectgarbage()
      assert.is_true(core.now() - t0 < 1)
      assert.is_nil(weak[1])
      assert.is_nil(weak[2])
      close(p)
    end)

    for _, op in ipairs { "splice", "tee" } do
      it("close gets back a " .. op .. " blocked on an empty pipe", function()
        local p, q = fifo(op .. "1"), fifo(op .. "2")
        setups(function(r, what)
          if op == "splice" then r:prep_splice(p, nil, q, nil, 16, 0, 1)
          else r:prep_tee(p, q, 16, 0, 1) end
          assert.equal(1, r:submit(), what)
          -- blocked in the kernel (an io-wq worker): no CQE comes
          assert.same({ nil, "wait_cqe: Timer expired", ETIME },
                      { r:wait_cqe(0.05) }, what)
          closes_clean(r, {}, 0, what)
        end)
        -- the cancelled requests took nothing: what is written now stays
        assert.equal(5, (one("prep_write", p, "hello", nil, -1, 5)))
        local b = core.buffer(8)
        assert.equal(5, (one("prep_read", p, b, 8, -1, 6)))
        assert.equal("hello", b:tostring(1, 5))
        close(p)
        close(q)
      end)
    end
  end)

  describe("memory safety", function()
    it("keeps a buffer alive from prep to CQE with no other reference", function()
      local path = dir .. "/gc"
      local data = pattern(4096)
      spit(path, data)
      local fd = open(path, "r")
      local weak = setmetatable({}, { __mode = "v" })
      do
        local b = core.buffer(4096)
        weak[1] = b
        ring:prep_read(fd, b, 4096, 0, 1)
      end
      collectgarbage("collect")
      collectgarbage("collect")
      for _ = 1, 200 do local _ = core.buffer(4096) end   -- reuse freed memory
      collectgarbage("collect")
      assert.is_not_nil(weak[1])        -- the ring anchors it
      assert.equal(1, ring:submit_and_wait(1))
      assert.same({ 4096, 1, 0 }, { ring:wait_cqe() })
      assert.equal(data, weak[1]:tostring())
      assert.equal(0, weak[1]:pinned())
      collectgarbage("collect")
      collectgarbage("collect")
      assert.is_nil(weak[1])            -- and lets it go after the CQE
      close(fd)
    end)

    it("keeps a buffer and a string alive while the kernel holds them", function()
      local p = fifo("gc")
      local weak = setmetatable({}, { __mode = "v" })
      do
        local b = core.buffer(32)
        weak[1] = b
        ring:prep_read(p, b, 11, -1, 1)  -- pends: the pipe is empty
      end
      ring:submit()
      collectgarbage("collect")
      collectgarbage("collect")
      do
        local s = ("late data") .. ("!"):rep(2)
        ring:prep_write(p, s, nil, -1, 2)
      end
      collectgarbage("collect")
      ring:submit()
      local got = reap(2)
      assert.same({ [1] = 11, [2] = 11 }, got)
      assert.equal("late data!!", weak[1]:tostring(1, 11))
      close(p)
    end)

    it("a ring collected with SQEs in flight cancels and reaps them", function()
      local p = fifo("gcr")
      local weak = setmetatable({}, { __mode = "v" })
      do
        local r = core.ring{entries = 4}
        local b = core.buffer(8)
        r:prep_timeout(10, 0, 1)
        r:prep_read(p, b, 8, -1, 2)
        r:submit()
        r:prep_nop(3)                   -- prepared, never submitted
        weak[1], weak[2] = r, b
      end
      local t0 = core.now()
      collectgarbage("collect")
      collectgarbage("collect")
      collectgarbage("collect")
      assert.is_true(core.now() - t0 < 1)
      assert.is_nil(weak[1])
      assert.is_nil(weak[2])
      close(p)
    end)

    it("survives many SQEs with shared and distinct user_data", function()
      local path = dir .. "/many"
      local fd = open(path, "w+")
      local bufs = {}
      for round = 1, 20 do
        for i = 1, 8 do
          local b = core.buffer(64)
          b:fill(round)
          bufs[i] = b
          ring:prep_write(fd, b, 64, (i - 1) * 64, i % 3)
        end
        ring:submit()
        bufs = {}
        collectgarbage("step")
        local got = 0
        for _ = 1, 8 do
          local res = ring:wait_cqe()
          assert.equal(64, res)
          got = got + 1
        end
        assert.equal(8, got)
      end
      assert.equal((string.char(20)):rep(512), slurp(path))
      assert.equal(0, ring:inflight())
      close(fd)
    end)
  end)
end)
