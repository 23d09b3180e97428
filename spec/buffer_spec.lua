-- uring.buffer: the mutable byte buffer the kernel reads into.
-- size, tostring (string.sub rules), fill, write, pinned, __len,
-- __tostring; the bad-argument messages; page alignment (O_DIRECT).
local core = require "uring.core"

describe("uring.buffer", function()
  it("is zero-filled and has the asked size", function()
    local b = core.buffer(4096)
    assert.equal(4096, b:size())
    assert.equal(4096, #b)
    assert.equal(("\0"):rep(4096), b:tostring())
    assert.equal("uring.buffer(4096)", tostring(b))
    assert.equal(0, b:pinned())
    assert.equal(1, core.buffer(1):size())
  end)

  it("raises on a bad size", function()
    local msg = "bad argument #1 to 'buffer' (size must be in 1..1073741824)"
    assert.has_error(function() core.buffer(0) end, msg)
    assert.has_error(function() core.buffer(-1) end, msg)
    assert.has_error(function() core.buffer((1 << 30) + 1) end, msg)
    assert.has_error(function() core.buffer() end,
      "bad argument #1 to 'buffer' (number expected, got no value)")
    assert.has_error(function() core.buffer("x") end,
      "bad argument #1 to 'buffer' (number expected, got string)")
    assert.has_error(function() core.buffer(1.5) end,
      "bad argument #1 to 'buffer' (number has no integer representation)")
  end)

  describe("buf:tostring", function()
    it("follows string.sub for every index pair", function()
      local b = core.buffer(8)
      b:write("abcdefgh")
      local s = "abcdefgh"
      for i = -10, 10 do
        for j = -10, 10 do
          assert.equal(s:sub(i, j), b:tostring(i, j), ("i=%d j=%d"):format(i, j))
        end
        assert.equal(s:sub(i), b:tostring(i))
      end
      assert.equal(s, b:tostring())
    end)

    it("raises on bad arguments", function()
      local b = core.buffer(8)
      assert.has_error(function() b:tostring("x") end,
        "bad argument #1 to 'tostring' (number expected, got string)")
      assert.has_error(function() b.tostring(nil) end,
        "bad argument #1 to 'tostring' (uring.buffer expected, got nil)")
      assert.has_error(function() b.tostring("abc") end,
        "bad argument #1 to 'tostring' (uring.buffer expected, got string)")
    end)
  end)

  describe("buf:fill", function()
    it("sets every byte, or a range, and returns the buffer", function()
      local b = core.buffer(6)
      assert.equal(b, b:fill(65))
      assert.equal("AAAAAA", b:tostring())
      b:fill(66, 2, 3)
      assert.equal("ABBAAA", b:tostring())
      b:fill(0, -2)
      assert.equal("ABBA\0\0", b:tostring())
    end)

    it("raises on a bad byte", function()
      local b = core.buffer(6)
      assert.has_error(function() b:fill(256) end,
        "bad argument #1 to 'fill' (byte must be in 0..255)")
      assert.has_error(function() b:fill(-1) end,
        "bad argument #1 to 'fill' (byte must be in 0..255)")
      assert.has_error(function() b:fill() end,
        "bad argument #1 to 'fill' (number expected, got no value)")
      assert.has_error(function() b.fill(nil, 1) end,
        "bad argument #1 to 'fill' (uring.buffer expected, got nil)")
    end)
  end)

  describe("buf:write", function()
    it("copies a string in at a 1-based position", function()
      local b = core.buffer(8)
      assert.equal(b, b:write("abc"))
      assert.equal("abc\0\0\0\0\0", b:tostring())
      b:write("XY", 4)
      assert.equal("abcXY\0\0\0", b:tostring())
      b:write("zz", -2)              -- negative: from the end
      assert.equal("abcXY\0zz", b:tostring())
      b:write("", 8)
      b:write("12345678", 1)
      assert.equal("12345678", b:tostring())
      b:write("a\0b", 2)             -- binary safe
      assert.equal("1a\0b5678", b:tostring())
    end)

    it("raises instead of overflowing", function()
      local b = core.buffer(8)
      assert.has_error(function() b:write("123456789") end,
        "bad argument #1 to 'write' (9 bytes at position 1 overflow a buffer of 8 bytes)")
      assert.has_error(function() b:write("ab", 8) end,
        "bad argument #1 to 'write' (2 bytes at position 8 overflow a buffer of 8 bytes)")
      assert.has_error(function() b:write("a", 9) end,
        "bad argument #2 to 'write' (position out of range)")
      assert.has_error(function() b:write("a", 0) end,
        "bad argument #2 to 'write' (position out of range)")
      assert.has_error(function() b:write("a", -9) end,
        "bad argument #2 to 'write' (position out of range)")
      assert.has_error(function() b:write({}) end,
        "bad argument #1 to 'write' (string expected, got table)")
      assert.equal(("\0"):rep(8), b:tostring())  -- nothing half-written
    end)
  end)

  it("has page-aligned data, usable for O_DIRECT", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(("0123456789abcdef"):rep(512))     -- 8 KiB
    f:close()
    local ring = core.ring{entries = 4}
    ring:prep_openat(nil, path, core.O_RDONLY | core.O_DIRECT, 0, 1)
    ring:submit()
    local fd = ring:wait_cqe()
    assert.is_true(fd >= 0)
    local b = core.buffer(8192)
    ring:prep_read(fd, b, 4096, 0, 2)          -- aligned start: works
    ring:prep_read(fd, b, 4096, 4096, 3, 4097) -- pos 4097 = data + 4096
    ring:submit()
    local got = {}
    for _ = 1, 2 do
      local res, ud = ring:wait_cqe()
      got[ud] = res
    end
    assert.same({ [2] = 4096, [3] = 4096 }, got)
    assert.equal(("0123456789abcdef"):rep(512), b:tostring())
    -- and an unaligned address is refused by the kernel (so the above
    -- really depended on the alignment)
    ring:prep_read(fd, b, 4096, 0, 4, 2)
    ring:submit()
    assert.equal(-22, (ring:wait_cqe()))
    ring:prep_close(fd, 5)
    ring:submit()
    assert.equal(0, (ring:wait_cqe()))
    ring:close()
    os.remove(path)
  end)

  it("counts the SQEs that pin it", function()
    local ring = core.ring{entries = 4}
    local b = core.buffer(16)
    ring:prep_read(-1, b, 16, 0, 1)
    ring:prep_read(-1, b, 16, 0, 2)
    assert.equal(2, b:pinned())
    ring:submit()
    ring:wait_cqe()
    assert.equal(1, b:pinned())
    ring:wait_cqe()
    assert.equal(0, b:pinned())
    ring:close()
  end)
end)
