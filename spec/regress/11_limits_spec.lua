-- spec/regress/11_limits_spec.lua: issue 11, offsets near the integer
-- limits.  file:seek added the offset to the current position or the
-- size in signed 64-bit arithmetic: seek("cur", math.maxinteger) was
-- signed overflow (undefined behaviour; UBSan stopped the process).  Now
-- a position that cannot be represented is nil, "Invalid argument", 22,
-- as C's fseek says, and the file keeps its position.  pread/pwrite
-- offsets and counts at the limits give a bad argument or a fail tuple,
-- never a wrapped offset.  Run it under `make asan` (UBSan) to see the
-- overflows are gone, not merely unobserved.
local uring = require "uring"
local helpers = require "helpers"

local run, badarg, errmsg = helpers.runner(10), helpers.badarg, helpers.errmsg
local EINVAL, EFBIG = 22, 27
local MAX, MIN = math.maxinteger, math.mininteger

-- a fail tuple with one of errnos, or nil alone (EOF)
local function fail_or_eof(errnos, a, b, c)
  assert.is_nil(a)
  if b == nil then return end
  helpers.fails(nil, errnos, a, b, c)
end

describe("issue 11: offsets near the integer limits", function()
  local dir, path
  before_each(function()
    dir = helpers.tmpdir()
    path = dir .. "/f"
    helpers.writeall(path, "hello world")
  end)
  after_each(function() helpers.rmrf(dir) end)

  it("file:seek: an unrepresentable position is EINVAL and changes nothing", helpers.clean(function()
    run(function()
      local f <close> = assert(uring.open(path, "r+"))
      assert.equal(5, f:seek("set", 5))
      for _, c in ipairs {
        { "set", MAX }, { "set", MIN }, { "set", -1 },
        { "cur", MAX }, { "cur", MAX - 4 }, { "cur", MAX - 5 }, { "cur", MIN },
        { "cur", MIN + 1 }, { "cur", -6 },
        { "end", MAX }, { "end", MAX - 10 }, { "end", MIN }, { "end", -12 },
      } do
        local w, off = c[1], c[2]
        helpers.fails("Invalid argument", EINVAL, f:seek(w, off))
        assert.equal(5, f:seek(), ("seek(%q, %d) moved the file"):format(w, off))
      end
      assert.equal(" world", f:read("a"))
      -- with writes buffered the same answer, after the flush
      assert.equal(0, f:seek("set"))
      f:write("J")
      helpers.fails("Invalid argument", EINVAL, f:seek("cur", MAX))
      assert.equal(1, f:seek())
      assert.equal(11, f:seek("end"))
    end)
    assert.equal("Jello world", helpers.readall(path))
  end))

  it("file:pread and file:pwrite at the limits: a fail tuple or EOF", helpers.clean(function()
    run(function()
      local f <close> = assert(uring.open(path, "r+"))
      local b = uring.buffer(16)
      for _, off in ipairs { MAX, MAX - 3, 2^53, 1 << 62 } do
        fail_or_eof({ EINVAL }, f:pread(4, off))
        fail_or_eof({ EINVAL }, f:pread(b, 4, off))
        helpers.fails(nil, { EINVAL, EFBIG }, f:pwrite("xyz", off))
        assert.equal("", f:pread(0, off))
        assert.equal(0, f:pwrite("", off))
      end
      assert.equal("hello world", f:pread(100, 0))   -- untouched
    end)
  end))

  it("counts and offsets out of range are bad arguments", function()
    run(function()
      local f <close> = assert(uring.open(path, "r+"))
      local b = uring.buffer(16)
      for _, n in ipairs { -1, MIN, MAX, (1 << 31) } do
        assert.matches(badarg(1, "pread", "count out of range"),
          errmsg(function() return f:pread(n, 0) end))
        assert.matches(badarg(2, "pread", "count out of range"),
          errmsg(function() return f:pread(b, n, 0) end))
      end
      for _, off in ipairs { -1, MIN } do
        assert.matches(badarg(2, "pread", "offset must be non-negative"),
          errmsg(function() return f:pread(1, off) end))
        assert.matches(badarg(3, "pread", "offset must be non-negative"),
          errmsg(function() return f:pread(b, 1, off) end))
        assert.matches(badarg(2, "pwrite", "offset must be non-negative"),
          errmsg(function() return f:pwrite("x", off) end))
      end
      for _, pos in ipairs { 0, -1, MIN, MAX, 17 } do
        assert.matches(badarg(4, "pread", "position out of range"),
          errmsg(function() return f:pread(b, 1, 0, pos) end))
      end
      -- a count io would take as (size_t)-1 is a mistake here
      for _, n in ipairs { -1, MIN } do
        assert.matches(badarg(1, "read", "count must be non-negative"),
          errmsg(function() return f:read(n) end))
      end
      assert.equal("hello world", f:read(MAX))
      assert.is_nil(f:read(MAX))
    end)
  end)
end)
