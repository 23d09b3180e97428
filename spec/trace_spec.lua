-- uring.trace and uring.stats: one event per SQE prepared and per CQE
-- reaped, delivered from the loop's own frame.
local uring = require "uring"
local helpers = require "helpers"

describe("uring.trace", function()
  after_each(function()
    uring.trace(false)
    assert.equal(0, uring.stats().inflight)
  end)

  it("reports the SQE and the CQE of a nop and a read, with task and result", function()
    local ev = {}
    local path = os.tmpname()
    local f = io.open(path, "w"); f:write("0123456789"); f:close()
    uring.trace(function(e) ev[#ev + 1] = e end)
    local tid = uring.run(function()
      uring.nop()
      local file = assert(uring.open(path))
      assert.equal("0123", file:pread(4, 0))
      file:close()
      return uring.current():id()
    end)
    uring.trace(false)
    os.remove(path)
    local by = {}
    for _, e in ipairs(ev) do by[e.event .. ":" .. e.op] = e end
    assert.truthy(by["sqe:nop"]); assert.truthy(by["cqe:nop"])
    assert.equal(0, by["cqe:nop"].res)
    assert.equal(tid, by["sqe:nop"].task)
    assert.equal(by["sqe:nop"].user_data, by["cqe:nop"].user_data)
    assert.is_number(by["cqe:nop"].elapsed)
    assert.is_false(by["cqe:nop"].more)
    assert.truthy(by["sqe:openat"]); assert.truthy(by["cqe:openat"])
    assert.equal(4, by["sqe:read"].len)
    assert.equal(4, by["cqe:read"].res)
    assert.truthy(by["cqe:close"])
  end)

  it("shows file:sync() after buffered writes as a linked write+fsync", function()
    local ev = {}
    local path = os.tmpname()
    uring.trace(function(e) ev[#ev + 1] = e end)
    uring.run(function()
      local f = assert(uring.open(path, "w"))
      f:write(string.rep("x", 1000))
      assert.is_true(f:sync())
      f:close()
    end)
    uring.trace(false)
    local got = {}
    for _, e in ipairs(ev) do
      if e.op == "write" or e.op == "fsync" then got[#got + 1] = e.event .. ":" .. e.op .. (e.res and ("=" .. e.res) or "") end
    end
    -- both SQEs prepared before either completes: one chain, one submit
    assert.same({ "sqe:write", "sqe:fsync", "cqe:write=1000", "cqe:fsync=0" }, got)
    local f = io.open(path); assert.equal(1000, #f:read("a")); f:close()
    os.remove(path)
  end)

  it("shows a cancelled sleep as -ECANCELED", function()
    local ev = {}
    uring.trace(function(e) ev[#ev + 1] = e end)
    uring.run(function()
      local t = uring.spawn(uring.sleep, 30)
      uring.yield()
      t:cancel()
      t:join()
    end)
    uring.trace(false)
    local found
    for _, e in ipairs(ev) do
      if e.event == "cqe" and e.op == "timeout" then found = e end
    end
    assert.truthy(found)
    assert.equal(-125, found.res)
    assert.equal(125, found.errno)
  end)

  it("shows the multishot accept's CQEs with more = true", function()
    local ev = {}
    uring.trace(function(e) ev[#ev + 1] = e end)
    uring.run(function()
      local srv = assert(uring.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local c = assert(uring.connect("127.0.0.1", port))
      local a = assert(srv:accept())
      a:close(); c:close(); srv:close()
    end)
    uring.trace(false)
    local more
    for _, e in ipairs(ev) do
      if e.event == "cqe" and e.op == "accept" and e.res >= 0 then more = e.more end
    end
    assert.is_true(more)
  end)

  it("prints compact lines with trace(true)", function()
    local out, code = helpers.sh(helpers.lua_cmd() .. [[ -e '
      local uring = require "uring"
      uring.trace(true)
      uring.run(uring.nop)' ]])
    assert.equal(0, code, out)
    assert.matches("%[uring%] sqe nop", out)
    assert.matches("%[uring%] cqe nop .*res=0", out)
  end)

  it("turns itself off when the trace function fails", function()
    local n = 0
    uring.trace(function() n = n + 1; error("oops") end)
    uring.run(function() uring.nop(); uring.nop(); uring.nop() end)
    assert.equal(1, n)
  end)

  it("raises on a bad argument", function()
    assert.has_error(function() uring.trace(42) end)
    assert.has_error(function() uring.trace("x") end)
  end)
end)
