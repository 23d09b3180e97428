-- spec/regress/11_nul_spec.lua: issue 11, paths and names with a NUL.
-- A Lua string may hold a NUL; the kernel and libc read C strings and
-- stop there, so unlink("keep\0.tmp") deleted "keep".  Every function
-- that hands a string to the kernel or libc as a C string (a path, a host,
-- a command, a mode, a signal or op name) now refuses it with one message,
-- "bad argument #N to 'f' (<what> contains a NUL byte)" (csrc/err.c
-- ur_checkcstr), before anything happens.  This walks every such
-- function and checks that the file the cut string names was not touched.
local uring = require "uring"
local helpers = require "helpers"

local run, badarg, errmsg = helpers.runner(10), helpers.badarg, helpers.errmsg
local exists = helpers.exists

-- fn(...) raises "bad argument #n to 'fname' (what contains a NUL byte)"
-- (methods are called in a closure, so Lua names them and counts self out)
local function refuses(n, fname, what, fn, ...)
  local e = errmsg(fn, ...)
  assert.matches(badarg(n, fname, what .. " contains a NUL byte"), e)
end

describe("issue 11: a NUL in a path or name", function()
  local dir
  before_each(function()
    dir = helpers.tmpdir()
    helpers.writeall(dir .. "/keep", "kept")
    assert(os.execute("mkdir '" .. dir .. "/keep.d'"))
  end)
  after_each(function()
    helpers.rmrf(dir)
    helpers.settled()
  end)

  it("file-system functions refuse it and touch nothing", helpers.clean(function()
    run(function()
      local keep, kd = dir .. "/keep", dir .. "/keep.d"
      refuses(1, "unlink", "path", uring.unlink, keep .. "\0.tmp")
      refuses(1, "rmdir", "path", uring.rmdir, kd .. "\0x")
      refuses(1, "mkdir", "path", uring.mkdir, dir .. "/new\0x")
      refuses(1, "rename", "path", uring.rename, keep .. "\0x", dir .. "/moved")
      refuses(2, "rename", "path", uring.rename, keep, dir .. "/moved\0x")
      refuses(1, "stat", "path", uring.stat, keep .. "\0x")
      refuses(1, "open", "path", uring.open, dir .. "/made\0x", "w")
      refuses(2, "open", "mode", uring.open, keep, "r\0+")
      refuses(2, "fdopen", "mode", uring.fdopen, 0, "r\0w")
      refuses(1, "readfile", "path", uring.readfile, keep .. "\0x")
      refuses(1, "writefile", "path", uring.writefile, dir .. "/w\0x", "data")
      refuses(1, "copyfile", "path", uring.copyfile, keep .. "\0x", dir .. "/c")
      refuses(2, "copyfile", "path", uring.copyfile, keep, dir .. "/c\0x")
      refuses(1, "listen_unix", "path", uring.listen_unix, dir .. "/s\0x")
      refuses(1, "connect_unix", "path", uring.connect_unix, dir .. "/s\0x")
    end)
    assert.equal("kept", helpers.readall(dir .. "/keep"))
    assert.is_true(exists(dir .. "/keep.d"))
    for _, name in ipairs { "new", "moved", "made", "w", "c", "s" } do
      assert.is_false(exists(dir .. "/" .. name), name)
    end
  end))

  it("names for the network refuse it", helpers.clean(function()
    run(function()
      refuses(1, "connect", "host", uring.connect, "127.0.0.1\0evil", 1)
      refuses(1, "listen", "host", uring.listen, "127.0.0.1\0x", 0)
      refuses(1, "resolve", "host", uring.resolve, "localhost\0.evil")
      refuses(1, "udp", "host", uring.udp, "127.0.0.1\0x", 0)
      local u <close> = assert(uring.udp("127.0.0.1", 0))
      refuses(2, "sendto", "host", function() return u:sendto("x", "127.0.0.1\0x", 9) end)
    end)
  end))

  it("processes, signals and op names refuse it", helpers.clean(function()
    run(function()
      local t = dir .. "/t"
      refuses(1, "exec", "argv[1]", uring.exec, { "tou\0ch", t })
      refuses(1, "exec", "argv[2]", uring.exec, { "touch", t .. "\0x" })
      refuses(1, "exec", "cwd", uring.exec, { "true", cwd = dir .. "\0/x" })
      refuses(1, "exec", "env name", uring.exec, { "true", env = { ["A\0B"] = "x" } })
      refuses(1, "exec", "env value", uring.exec, { "true", env = { A = "x\0y" } })
      refuses(1, "popen", "command", uring.popen, "touch " .. t .. "\0; exit 3")
      refuses(2, "popen", "mode", uring.popen, "true", "r\0w")
      refuses(1, "signal", "signal name", uring.signal, "USR1\0x")
      refuses(2, "poll", "events", uring.poll, 0, "r\0w")
      refuses(1, "opcode", "name", uring.opcode, "nop\0x")
      local p = uring.exec { "sleep", "5" }
      refuses(1, "kill", "signal name", function() return p:kill("KILL\0x") end)
      assert(p:kill("KILL"))
      p:wait()
    end)
    assert.is_false(exists(dir .. "/t"))
  end))

  it("the teaching ring refuses it with the same message", function()
    local ring = uring.ring { entries = 8 }
    local keep = dir .. "/keep"
    refuses(2, "prep_openat", "path", function() return ring:prep_openat(nil, keep .. "\0x") end)
    refuses(3, "prep_openat", "mode", function() return ring:prep_openat(nil, keep, "r\0") end)
    refuses(2, "prep_unlinkat", "path", function() return ring:prep_unlinkat(nil, keep .. "\0x") end)
    refuses(2, "prep_setxattr", "name", function() return ring:prep_setxattr(keep, "user.x\0y", "v") end)
    ring:close()
    assert.equal("kept", helpers.readall(dir .. "/keep"))
  end)
end)
