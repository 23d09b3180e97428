-- When io_uring cannot be set up (a seccomp profile, the sysctl, an old
-- kernel) the error names the cause and the fix.  The suite blocks
-- io_uring_setup in a child with seccomp (spec/helpers/noring.c) and never
-- touches the system-wide kernel.io_uring_disabled.
local helpers = require "helpers"

local noring = "./build/noring"

local function child(errname, code)
  return helpers.sh(noring .. " " .. errname .. " " .. helpers.lua_cmd()
    .. " -e '" .. code .. "'")
end

describe("io_uring unavailable", function()
  it("EPERM from a seccomp policy: uring.run raises a message with the fix", function()
    local out, status = child("EPERM", [[
      local uring = require "uring"
      local ok, err = pcall(uring.run, function() end)
      print(ok, err)]])
    assert.equal(0, status, out)
    assert.matches("^false", out)
    assert.matches("io_uring_setup", out)
    assert.matches("seccomp or container policy", out)
    assert.matches("fix:", out)
  end)

  it("ENOSYS: features() reports it instead of raising", function()
    local out, status = child("ENOSYS", [[
      local uring = require "uring"
      local f = uring.features()
      print(f.available, f.kernel, f.reason)]])
    assert.equal(0, status, out)
    assert.matches("^false", out)
    assert.matches("not available", out)
    assert.matches("seccomp filter answers ENOSYS", out)
  end)

  it("the teaching ring returns the fail triple", function()
    local out, status = child("EPERM", [[
      local uring = require "uring"
      local r, msg, en = uring.ring { entries = 4 }
      print(r, en, msg)]])
    assert.equal(0, status, out)
    assert.matches("^nil\t1\t", out)
  end)

  it("the sysctl is read to explain EPERM", function()
    local f = io.open("/proc/sys/kernel/io_uring_disabled")
    if f then
      local v = f:read("n"); f:close()
      -- this machine must allow io_uring for the rest of the suite
      assert.equal(0, v)
    end
  end)
end)
