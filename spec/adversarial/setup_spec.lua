-- spec/adversarial/setup_spec.lua: io_uring blocked by seccomp, in a child
-- (spec/helpers/noring.c; no root needed, the system-wide
-- kernel.io_uring_disabled is never touched).  spec/setup_spec.lua checks
-- the message of uring.run under EPERM, features() under ENOSYS and the
-- teaching ring's triple under EPERM; here: the other halves (run under
-- ENOSYS, features under EPERM, spawn and every entry point, both
-- errnos), that a failed setup leaks no fd and is retried, and that the
-- rest of the process keeps working.
local adv = require "helpers"

local noring = adv.build_dir() .. "/noring"

-- run `code` in a child lua5.4 with io_uring_setup answering errname
local function blocked(errname, code)
  local f = io.open(noring)
  assert(f, noring .. " is missing: run make")
  f:close()
  return adv.child(code, noring .. " " .. errname .. " ")
end

-- the child's own fd listing, as a count (written to a file by a shell:
-- a popen pipe of the child's own would be counted once or twice)
local fdcount = [[
  local function fds()
    local st = io.open("/proc/self/stat")
    local pid = st:read("n")
    st:close()
    local tmp = os.tmpname()
    os.execute("ls /proc/" .. pid .. "/fd > " .. tmp)
    local n = 0
    for _ in io.lines(tmp) do n = n + 1 end
    os.remove(tmp)
    return n
  end
]]

describe("adversarial setup: io_uring_setup blocked by seccomp", function()
  for _, case in ipairs {
    { "EPERM", 1, "seccomp or container policy" },
    { "ENOSYS", 38, "not available" },
  } do
    local errname, errno, cause = case[1], case[2], case[3]

    it(errname .. ": every entry point raises or fails naming the cause and the fix", function()
      local out, status = blocked(errname, ([[
        local uring = require "uring"
        local function show(name, ok, err) print(name, ok, err) end
        show("run", pcall(uring.run, function() end))
        show("spawn", pcall(uring.spawn, function() end))
        local f = uring.features()
        print("features", f.available, f.reason)
        local r, msg, en = uring.ring { entries = 4 }
        print("ring", r, en, msg)
        print("probe", uring.probe())
        -- io_uring is refused, the rest of Lua is not
        local h = assert(io.open("/proc/self/status")); h:close()
        print("io ok")
      ]]))
      assert.equal(0, status, out)
      assert.matches("run\tfalse\t[^\n]*io_uring_setup%(%d+ entries%): [^\n]*" .. cause, out)
      assert.matches("run\tfalse\t[^\n]*fix:", out)
      assert.matches("spawn\tfalse\t[^\n]*" .. cause, out)
      assert.matches("features\tfalse\t[^\n]*" .. cause .. "[^\n]*fix:", out)
      assert.matches("ring\tnil\t" .. errno .. "\t[^\n]*io_uring_setup", out)
      assert.matches("probe\tnil\tprobe: Function not implemented\t38", out)
      assert.matches("io ok", out)
    end)

    it(errname .. ": failed setups leak no fd and are retried, not cached", function()
      local out, status = blocked(errname, fdcount .. [[
        local uring = require "uring"
        pcall(uring.run, function() end)   -- a first round: lazy loads
        collectgarbage(); collectgarbage()
        local before = fds()
        local raised = 1
        for i = 2, 50 do
          if not pcall(uring.run, function() end) then raised = raised + 1 end
          uring.features()
          uring.ring { entries = 8 }
        end
        collectgarbage(); collectgarbage()
        print("raised", raised, "fds", before, fds())
      ]])
      assert.equal(0, status, out)
      local raised, a, b = out:match("raised\t(%d+)\tfds\t(%d+)\t(%d+)")
      assert.equal("50", raised, out)
      -- no growth (a descriptor the child inherited may close meanwhile)
      assert.is_true(tonumber(b) <= tonumber(a), "fds leaked: " .. out)
    end)
  end

  it("the sysctl is only read, never written", function()
    local f = io.open("/proc/sys/kernel/io_uring_disabled")
    if f then
      local v = f:read("n"); f:close()
      assert.equal(0, v)   -- the rest of the suite needs io_uring
    end
    -- the blocked child saw the same value: the filter, not the sysctl
    local out = blocked("EPERM", [[
      print(io.open("/proc/sys/kernel/io_uring_disabled"):read("n"))
      print(require "uring".features().reason)
    ]])
    assert.matches("^0\n", out)
    assert.not_matches("disabled system%-wide", out)
  end)
end)
