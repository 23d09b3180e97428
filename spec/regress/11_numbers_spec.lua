-- spec/regress/11_numbers_spec.lua: issue 11, every value a Lua caller
-- can pass where the core takes a size, a count, an offset or a time:
-- NaN, the infinities, -0.0, a fraction, a negative number, numbers past
-- 2^53 and math.maxinteger/mininteger, and strings (one that converts,
-- one that does not).  Each either raises a clear "bad argument #N to
-- 'f'" or does what the docs say; none hangs (every call runs under a
-- deadline), none is undefined behaviour (run it under `make asan`).
--
-- Times have one rule and one message for every timer (csrc/err.c
-- ur_checkseconds): a number in [0, 1e12), "seconds must be a
-- non-negative number below 1e12".  settimeout keeps LuaSocket's meaning
-- (nil, a negative number or math.huge: no limit) and returns 1, as
-- LuaSocket's does, on a TCP and a UDP socket alike.
local uring = require "uring"
local helpers = require "helpers"

local run, badarg = helpers.runner(30), helpers.badarg
local ETIME = 62
local SECONDS = "seconds must be a non-negative number below 1e12"
local NOINT = "number has no integer representation"

-- The values, by name; a row below says which of them a parameter takes.
local V = {
  nan = 0 / 0, inf = math.huge, ninf = -math.huge, negzero = -0.0,
  frac = 0.001, neg = -1, big = 2^53, max = math.maxinteger,
  min = math.mininteger, str = "7", bad = "abc",
}
local ORDER = { "nan", "inf", "ninf", "negzero", "frac", "neg", "big", "max",
                "min", "str", "bad" }

-- Call fn(v) under a deadline.  `ok` is a function checking the results
-- of a value the parameter takes; a value it does not take must raise
-- "bad argument #n to 'fname'" (and `msg`, if given, for it).
local function check(row, fixtures)
  for _, name in ipairs(ORDER) do
    local v = V[name]
    if row.values and row.values[name] ~= nil then v = row.values[name] end
    local expect = row.takes[name]
    local where = ("%s(%s = %s)"):format(row.fname, row.what or "arg", name)
    local r = table.pack(uring.timeout(2, function()
      return pcall(row.call, fixtures, v)
    end))
    assert(not (r[1] == nil and r[2] == "timeout"), where .. ": hung")
    if expect then
      assert(r[1] == true, where .. ": raised " .. tostring(r[2]))
      if type(expect) == "function" then
        local ok, e = pcall(expect, table.unpack(r, 2, r.n))
        assert(ok, where .. ": " .. tostring(e))
      end
    else
      assert(r[1] == false, where .. ": did not raise")
      local e = tostring(r[2])
      assert(e:match(badarg(row.n, row.fname)), where .. ": " .. e)
      local want = row.msg and (row.msg[name] or row.msg.any)
      if want then
        assert(e:find(want, 1, true), ("%s: %q lacks %q"):format(where, e, want))
      end
    end
  end
end

local function is(x) return function(got) assert.equal(x, got) end end
local function returns() return function() end end
local function timed_out(a, b, c)
  assert.same({ nil, "timeout", ETIME }, { a, b, c })
end

-- one row per parameter: its function, argument number as the message
-- gives it, the values it takes (and what they give), the messages
-- times: a numeric string converts, as for any number argument
local TIME = { frac = returns(), negzero = returns(), str = returns() }
local TIMESTR = { str = "0.001" }
local rows = {
  { fname = "sleep", n = 1, call = function(_, v) return uring.sleep(v) end,
    takes = TIME, values = TIMESTR, msg = { any = SECONDS, bad = "number expected, got string" } },
  { fname = "timeout", n = 1,
    call = function(_, v) return uring.timeout(v, function() return "done" end) end,
    takes = { frac = is("done"), negzero = is("done"), str = is("done") },
    values = TIMESTR,
    msg = { any = SECONDS, bad = "number expected, got string" } },
  { fname = "settimeout", what = "tcp", n = 1,
    call = function(fx, v) return fx.s:settimeout(v) end,
    takes = { inf = is(1), ninf = is(1), negzero = is(1), frac = is(1),
              neg = is(1), big = is(1), max = is(1), min = is(1), str = is(1) },
    msg = { nan = SECONDS, bad = "number expected, got string" } },
  { fname = "settimeout", what = "udp", n = 1,
    call = function(fx, v) return fx.u:settimeout(v) end,
    takes = { inf = is(1), ninf = is(1), negzero = is(1), frac = is(1),
              neg = is(1), big = is(1), max = is(1), min = is(1), str = is(1) },
    msg = { nan = SECONDS, bad = "number expected, got string" } },
  { fname = "buffer", n = 1, call = function(_, v) return uring.buffer(v) end,
    takes = { str = function(b) assert.equal(7, #b) end },
    msg = { nan = NOINT, frac = NOINT, negzero = "size must be in",
            neg = "size must be in", max = "size must be in" } },
  { fname = "tostring", what = "i", n = 1,
    call = function(fx, v) return fx.b:tostring(v, 2) end,
    takes = { negzero = is("\0\0"), neg = is(""), big = is(""), max = is(""),
              min = is("\0\0"), str = is("") }, msg = { nan = NOINT } },
  { fname = "write", what = "pos", n = 2,
    call = function(fx, v) return fx.b:write("x", v) end,
    takes = { neg = returns(), str = returns() },
    msg = { negzero = "position out of range", max = "position out of range",
            min = "position out of range", inf = NOINT } },
  { fname = "fill", what = "j", n = 3,
    call = function(fx, v) return fx.b:fill(0, 1, v) end,
    takes = { negzero = returns(), neg = returns(), big = returns(),
              max = returns(), min = returns(), str = returns() } },
  { fname = "pread", what = "n", n = 1,
    call = function(fx, v) return fx.f:pread(v, 0) end,
    takes = { negzero = is(""), str = is("hello w") },
    msg = { neg = "count out of range", max = "count out of range", nan = NOINT } },
  { fname = "pread", what = "offset", n = 2,
    call = function(fx, v) return fx.f:pread(4, v) end,
    takes = { negzero = is("hell"), str = is("orld"), big = is(nil),
              max = function(a, _, c) assert.same({ nil, 22 }, { a, c }) end },
    msg = { neg = "offset must be non-negative", min = "offset must be non-negative" } },
  { fname = "pwrite", what = "offset", n = 2,
    call = function(fx, v) return fx.g:pwrite("h", v) end,
    -- past the file system's largest file: EFBIG or EINVAL
    takes = { negzero = is(1), str = is(1),
              big = function(...) helpers.fails(nil, { 22, 27 }, ...) end,
              max = function(...) helpers.fails(nil, { 22, 27 }, ...) end },
    msg = { neg = "offset must be non-negative" } },
  { fname = "read", what = "n", n = 1,
    call = function(fx, v) fx.f:seek("set", 0); return fx.f:read(v) end,
    -- a string is a format, and "abc" is "a" as io reads it
    takes = { negzero = is(""), big = is("hello world"), max = is("hello world"),
              bad = is("hello world") },
    msg = { neg = "count must be non-negative", min = "count must be non-negative",
            str = "invalid format", nan = NOINT } },
  { fname = "seek", what = "offset", n = 2,
    call = function(fx, v) return fx.f:seek("cur", v) end,
    takes = { negzero = returns(), neg = returns(), big = returns(), max = returns(),
              min = returns(), str = returns() },
    msg = { frac = NOINT } },
  { fname = "receive", what = "n", n = 1,
    call = function(fx, v) return fx.s:receive(v) end,
    -- a count asks for exactly that many bytes: past what came, the
    -- socket's 0.01 s limit answers
    takes = { negzero = is(""), big = timed_out, max = timed_out },
    msg = { neg = "invalid count", nan = "invalid count", str = "invalid receive pattern" } },
  { fname = "recv", what = "max", n = 1,
    call = function(fx, v) return fx.s:recv(v) end,
    -- recv (lua/uring/net.lua) wants an integer proper: no 2^53 float,
    -- no "7"
    takes = { max = timed_out }, msg = { any = "positive integer expected" } },
  { fname = "receive_head", what = "max", n = 1,
    call = function(fx, v) return fx.s:receive_head(v) end,
    takes = { big = timed_out, max = timed_out, str = timed_out },
    msg = { negzero = "positive size expected", neg = "positive size expected", nan = NOINT } },
  { fname = "recvfrom", what = "max", n = 1,
    call = function(fx, v) return fx.u:recvfrom(v) end,
    takes = { str = timed_out },
    msg = { negzero = "max out of range", neg = "max out of range",
            big = "max out of range", max = "max out of range", nan = NOINT } },
}

describe("issue 11: sizes, counts, offsets and times", function()
  local dir
  before_each(function() dir = helpers.tmpdir() end)
  after_each(function() helpers.rmrf(dir) end)

  it("every parameter takes what the docs say and raises on the rest", helpers.clean(function()
    run(function()
      local fx = {}
      helpers.writeall(dir .. "/f", "hello world")
      fx.f = assert(uring.open(dir .. "/f", "r+"))
      fx.g = assert(uring.open(dir .. "/g", "w+"))
      fx.b = uring.buffer(16)
      local c, s = helpers.pair()
      fx.s = s
      fx.u = assert(uring.udp("127.0.0.1", 0))
      for _, row in ipairs(rows) do
        -- each row starts with a short limit on both sockets
        s:settimeout(0.01)
        fx.u:settimeout(0.01)
        check(row, fx)
      end
      fx.f:close(); fx.g:close(); fx.u:close(); c:close(); s:close()
    end)
  end))

  it("configure fields: integers in range, else a bad argument naming the field", function()
    for _, field in ipairs { "entries", "sq_thread_idle", "fixed_buffers",
                             "fixed_buffer_size", "fixed_files" } do
      for _, name in ipairs(ORDER) do
        local ok, e = pcall(uring.configure, { [field] = V[name] })
        -- -0.0 is 0: a count of none where none is allowed
        if ok then
          assert(name == "negzero" and field ~= "entries"
                 and field ~= "fixed_buffer_size", field .. " took " .. name)
        else
          assert.matches(badarg(1, "configure"), e)
          assert.matches(field, e)
        end
      end
    end
    uring.configure { fixed_buffers = 0, fixed_files = 0, sq_thread_idle = 1000,
                      entries = tonumber(os.getenv("URING_TEST_RING")) or 4096 }
  end)

  it("one message for every timer, the teaching ring's too", function()
    local msgs = {}
    local function msg(fn) return (select(2, pcall(fn)):match("%((.*)%)$")) end
    run(function()
      local c, s = helpers.pair()
      local u = assert(uring.udp("127.0.0.1", 0))
      local ring = uring.ring { entries = 4 }
      for _, v in ipairs { 0 / 0 } do
        msgs[#msgs + 1] = msg(function() uring.sleep(v) end)
        msgs[#msgs + 1] = msg(function() uring.timeout(v, print) end)
        msgs[#msgs + 1] = msg(function() s:settimeout(v) end)
        msgs[#msgs + 1] = msg(function() u:settimeout(v) end)
        msgs[#msgs + 1] = msg(function() ring:prep_timeout(v) end)
        msgs[#msgs + 1] = msg(function() ring:wait_cqe(v) end)
      end
      for _, v in ipairs { -1, 1e12, math.huge } do
        msgs[#msgs + 1] = msg(function() uring.sleep(v) end)
        msgs[#msgs + 1] = msg(function() uring.timeout(v, print) end)
        msgs[#msgs + 1] = msg(function() ring:prep_timeout(v) end)
      end
      ring:close(); u:close(); c:close(); s:close()
    end)
    for i, m in ipairs(msgs) do assert.equal(SECONDS, m, "message " .. i) end
  end)
end)
