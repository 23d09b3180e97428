-- spec/fs_spec.lua: the file system functions of issue 14 (part 1):
-- uring.dir and uring.walk, lstat, chmod, chown, utime, truncate,
-- symlink, link, readlink, realpath, access, tmpfile, mkdtemp, and
-- file:truncate, file:allocate, file:lock / file:unlock.  For each: it
-- works; bad arguments raise; the OS failure is the fail tuple; nothing
-- is left in flight and no descriptor leaks.  The shell is the referee
-- for the big tree: spec/fs_diff_spec.lua.
local uring = require "uring"
local helpers = require "helpers"

local E = uring.errno
local raises, fails, badarg = helpers.raises, helpers.fails, helpers.badarg
local sh, shq, spit = helpers.sh, helpers.shq, helpers.writeall
local run = helpers.runner(20)

local dir
local function fresh ()
  dir = helpers.tmpdir()
end

-- fds come back once the helper pool's jobs of a cancelled call have
-- finished (they close their set's eventfd): give them a moment
local function settle (before)
  local t0 = uring.now()
  while helpers.fds() ~= before and uring.now() - t0 < 5 do
    uring.run(function() uring.sleep(0.01) end)
  end
end

local fds
before_each(function()
  uring.run(function() end)
  fds = helpers.fds()
  fresh()
end)
after_each(function()
  helpers.rmrf(dir)
  collectgarbage(); collectgarbage()
  settle(fds)
  assert.equal(0, uring.stats().inflight)
  assert.equal(0, uring.stats().tasks)
  assert.equal(fds, helpers.fds())
end)

-- a small tree with every kind the shell can make
local function kinds_tree ()
  assert(sh(("cd %s && mkdir d && : > f && mkfifo p && ln -s f l && ln -s nowhere dangling"
    .. " && ln -s loop loop && printf 12345 > d/five"):format(shq(dir))))
end

local function collect (iter, ...)
  local out = {}
  for a, b in iter, ... do out[a] = b end
  return out
end

describe("uring.dir #io", function()
  it("lists every name with its kind from the entry, without . and ..", function()
    kinds_tree()
    local got = run(function() return collect(assert(uring.dir(dir))) end)
    assert.same({ d = "directory", f = "file", p = "fifo", l = "link",
      dangling = "link", loop = "link" }, got)
  end)

  it("reads a big directory in batches: every one of 1,500 long names", function()
    -- 1,500 entries of ~224 bytes: three getdents64 calls of 128 KiB
    local long = string.rep("n", 200)
    for i = 1, 1500 do assert(io.open(dir .. "/" .. long .. i, "w")):close() end
    local got = run(function() return collect(assert(uring.dir(dir))) end)
    local n = 0
    for name, kind in pairs(got) do
      n = n + 1
      assert.equal("file", kind)
      assert.truthy(name:match("^" .. long .. "%d+$"))
    end
    assert.equal(1500, n)
  end)

  it("returns the fail tuple for a missing path, a file, an empty path", function()
    spit(dir .. "/f", "x")
    run(function()
      fails("No such file", E.ENOENT, uring.dir(dir .. "/missing"))
      fails("Not a directory", E.ENOTDIR, uring.dir(dir .. "/f"))
      fails(nil, E.ENOENT, uring.dir(""))
      fails(nil, E.ENAMETOOLONG, uring.dir(string.rep("a", 5000)))
    end)
  end)

  it("raises on a bad path and outside a task", function()
    run(function()
      assert.matches(badarg(1, "dir", "string expected, got no value"),
        helpers.errmsg(uring.dir))
      assert.matches(badarg(1, "dir", "path contains a NUL byte"),
        helpers.errmsg(uring.dir, "a\0b"))
    end)
    raises("not inside a task", uring.dir, dir)
  end)
end)

describe("uring.walk #io", function()
  it("walks breadth-first below root with kinds and, asked, stats", function()
    assert(sh(("cd %s && mkdir -p a/b/c && printf abc > a/f && printf 1234567 > a/b/c/g && ln -s a lnk")
      :format(shq(dir))))
    local got, depth = {}, {}
    run(function()
      for p, k, st in uring.walk(dir, { stat = true }) do
        got[p:sub(#dir + 2)] = { k, st.size, st.type }
        depth[#depth + 1] = select(2, p:gsub("/", ""))
      end
    end)
    assert.same({ "directory", "directory" }, { got.a[1], got.a[3] })
    assert.same({ "file", 3, "file" }, got["a/f"])
    assert.same({ "file", 7, "file" }, got["a/b/c/g"])
    assert.same({ "link", 1, "link" }, got.lnk)     -- not followed: lstat's
    assert.equal("directory", got["a/b"][1])
    for i = 2, #depth do assert(depth[i] >= depth[i - 1], "not breadth-first") end
  end)

  it("gives the size alone with stat = \"size\"", function()
    assert(sh(("cd %s && mkdir a && printf abc > a/f && printf 12345 > g && ln -s a/f l")
      :format(shq(dir))))
    local got = run(function()
      local t = {}
      for p, _, size in uring.walk(dir, { stat = "size" }) do t[p:sub(#dir + 2)] = size end
      return t
    end)
    assert.equal(3, got["a/f"])
    assert.equal(5, got.g)
    assert.equal(3, got.l)          -- the link's own size: "a/f"
    assert.equal("number", math.type(got.a) and "number")
    run(function()
      assert.matches(badarg(2, "walk", 'stat must be true or "size"'),
        helpers.errmsg(uring.walk, dir, { stat = "mtime" }))
    end)
  end)

  it("follows links when asked, ends link cycles, keeps dead links as links", function()
    assert(sh(("cd %s && mkdir -p a/b && : > a/b/f && ln -s .. a/b/up && ln -s nowhere dead"
      .. " && ln -s self self && ln -s a toa"):format(shq(dir))))
    local got, n = {}, 0
    run(function()
      for p, k in uring.walk(dir, { follow = true, parallel = 1 }) do
        n = n + 1
        assert(n < 1000, "the walk loops")
        got[p:sub(#dir + 2)] = k
      end
    end)
    assert.equal("link", got.dead)
    assert.equal("link", got.self)
    assert.equal("directory", got.toa)
    -- a and toa are one directory: entered once, through whichever came
    -- first; a/b/up leads back to it and is not entered again
    local via = got["a/b"] and "a" or "toa"
    assert.is_nil(got[(via == "a" and "toa" or "a") .. "/b"])
    assert.equal("directory", got[via .. "/b/up"])
    assert.equal("file", got[via .. "/b/f"])
    assert.is_nil(got[via .. "/b/up/b"])
  end)

  it("leaves out what the filter refuses, and everything below it", function()
    assert(sh(("cd %s && mkdir -p skip/deep keep && : > skip/deep/x && : > keep/y && : > z.txt")
      :format(shq(dir))))
    local got = run(function()
      return collect(uring.walk(dir, { filter = function(p, k)
        return not p:match("/skip$")
      end }))
    end)
    assert.same({ [dir .. "/keep"] = "directory", [dir .. "/keep/y"] = "file",
      [dir .. "/z.txt"] = "file" }, got)
  end)

  it("reports a directory deleted during the walk and goes on", function()
    assert(sh(("cd %s && mkdir -p x gone/sub other && : > other/o"):format(shq(dir))))
    local errs, seen = {}, {}
    run(function()
      for p, k, msg, en in uring.walk(dir, { parallel = 1 }) do
        -- the root's entries come before any of its directories is
        -- read: "gone" is listed, then deleted, then read
        if next(seen) == nil then helpers.rmrf(dir .. "/gone") end
        seen[p] = k
        if k == "error" then errs[#errs + 1] = { p, msg, en } end
      end
    end)
    assert.equal(1, #errs)
    assert.equal(dir .. "/gone", errs[1][1])
    assert.matches("No such file", errs[1][2])
    assert.equal(E.ENOENT, errs[1][3])
    assert.equal("file", seen[dir .. "/other/o"])
  end)

  it("reports a missing root as one error entry", function()
    local got = run(function()
      local t = {}
      for p, k, msg, en in uring.walk(dir .. "/none") do t[#t + 1] = { p, k, msg, en } end
      return t
    end)
    assert.equal(1, #got)
    assert.same({ dir .. "/none", "error" }, { got[1][1], got[1][2] })
    assert.equal(E.ENOENT, got[1][4])
  end)

  it("stops reading when the loop is left early, and when its task is cancelled", function()
    assert(sh(("cd %s && for i in 1 2 3 4 5 6 7 8; do mkdir -p d$i/e && : > d$i/e/f; done")
      :format(shq(dir))))
    run(function()
      for _ in uring.walk(dir) do break end
      -- cancelled in the loop's body, and while a directory is being read
      -- (a walk of this small tree may end between two looks at its
      -- status, its reads done by the helper threads while the loop
      -- turned: then it is walked again until one is caught waiting)
      for _, body in ipairs { function() uring.sleep(10) end, function() end } do
        local caught = false
        for _ = 1, 200 do
          local t = uring.spawn(function()
            for _ in uring.walk(dir) do body() end
          end)
          repeat uring.yield() until t:status() ~= "ready"
          if t:status() == "waiting" then
            t:cancel()
            local ok, err = t:join()
            assert.is_false(ok)
            assert.matches("canceled", err)
            caught = true
            break
          end
          assert.is_true(t:join())
        end
        assert.is_true(caught, "never caught the walk waiting")
      end
    end)
  end)

  it("raises on bad arguments", function()
    run(function()
      assert.matches(badarg(1, "walk", "string expected, got no value"), helpers.errmsg(uring.walk, nil))
      assert.matches(badarg(1, "walk", "path contains a NUL byte"),
        helpers.errmsg(uring.walk, "a\0"))
      assert.matches(badarg(2, "walk", "table expected, got number"),
        helpers.errmsg(uring.walk, dir, 5))
      assert.matches(badarg(2, "walk", "filter must be a function, got number"),
        helpers.errmsg(uring.walk, dir, { filter = 1 }))
      assert.matches(badarg(2, "walk", "parallel must be a positive integer"),
        helpers.errmsg(uring.walk, dir, { parallel = 0 }))
    end)
    raises("not inside a task", uring.walk, dir)
  end)
end)

describe("metadata #io", function()
  it("lstat sees the link, stat where it leads", function()
    kinds_tree()
    run(function()
      local l = assert(uring.lstat(dir .. "/l"))
      assert.equal("link", l.type)
      assert.equal(1, l.size)             -- the target's name: "f"
      assert.equal("file", assert(uring.stat(dir .. "/l")).type)
      assert.equal("link", assert(uring.lstat(dir .. "/dangling")).type)
      fails("No such file", E.ENOENT, uring.stat(dir .. "/dangling"))
      fails("Too many levels", E.ELOOP, uring.stat(dir .. "/loop"))
      fails("No such file", E.ENOENT, uring.lstat(dir .. "/none"))
      fails(nil, E.ENOENT, uring.lstat(""))
      fails(nil, E.ENAMETOOLONG, uring.lstat(string.rep("a", 5000)))
      assert.matches(badarg(1, "lstat", "path contains a NUL byte"),
        helpers.errmsg(uring.lstat, "a\0"))
    end)
  end)

  it("chmod, chown, utime change what stat says", function()
    local p = dir .. "/f"
    spit(p, "x")
    run(function()
      assert.is_true(uring.chmod(p, 416))               -- 0640
      assert.equal(416, uring.stat(p).mode)
      assert.is_true(uring.chmod(p, 3565))              -- 06755: setuid, setgid
      assert.equal(3565, uring.stat(p).mode)
      assert.is_true(uring.chown(p, 12, nil))
      local st = uring.stat(p)
      assert.same({ 12, 0 }, { st.uid, st.gid })
      assert.is_true(uring.chown(p, -1, 34))
      st = uring.stat(p)
      assert.same({ 12, 34 }, { st.uid, st.gid })
      assert.is_true(uring.utime(p, 1000.25, 2000.5))
      st = uring.stat(p)
      assert.near(1000.25, st.atime, 1e-6)
      assert.near(2000.5, st.mtime, 1e-6)
      local before = os.time()
      assert.is_true(uring.utime(p))                    -- now
      assert(uring.stat(p).mtime >= before - 1)
      for _, f in ipairs { "chmod", "chown", "utime" } do
        fails("No such file", E.ENOENT, uring[f](dir .. "/none", 420))
        fails(nil, E.ENAMETOOLONG, uring[f](string.rep("a", 5000), 420))
      end
      assert.matches(badarg(2, "chmod", "invalid permissions"), helpers.errmsg(uring.chmod, p, -1))
      assert.matches(badarg(2, "chmod", "invalid permissions"), helpers.errmsg(uring.chmod, p, 8192))
      assert.matches(badarg(2, "chmod"), helpers.errmsg(uring.chmod, p))
      assert.matches(badarg(2, "chown", "invalid id"), helpers.errmsg(uring.chown, p, -2))
      assert.matches(badarg(3, "chown", "number expected, got string"), helpers.errmsg(uring.chown, p, 1, "x"))
      assert.matches(badarg(2, "utime", "time must be a finite number of seconds"),
        helpers.errmsg(uring.utime, p, 0 / 0))
      assert.matches(badarg(3, "utime", "time must be a finite number of seconds"),
        helpers.errmsg(uring.utime, p, 1, math.huge))
      assert.matches(badarg(1, "chmod", "path contains a NUL byte"),
        helpers.errmsg(uring.chmod, "a\0", 420))
    end)
    raises("not inside a task", uring.chmod, p, 420)
  end)

  it("truncate by path and by file; negative sizes raise", function()
    local p = dir .. "/f"
    spit(p, "hello world")
    run(function()
      assert.is_true(uring.truncate(p, 5))
      assert.equal("hello", helpers.readall(p))
      assert.is_true(uring.truncate(p, 8))
      assert.equal("hello\0\0\0", helpers.readall(p))
      fails("No such file", E.ENOENT, uring.truncate(dir .. "/none", 1))
      fails("Is a directory", E.EISDIR, uring.truncate(dir, 1))
      assert.matches(badarg(2, "truncate", "size must be non-negative"),
        helpers.errmsg(uring.truncate, p, -1))
      local f = assert(uring.open(p, "r+"))
      assert.equal("hel", f:read(3))
      f:write("XY")                           -- buffered: goes out first
      assert.is_true(f:truncate(4))
      assert.equal("helX", helpers.readall(p))
      assert.equal(5, f:seek("cur"))
      assert.is_nil(f:read(1))                -- read-ahead was forgotten
      assert.matches(badarg(1, "truncate", "size must be non-negative"),
        helpers.errmsg(function() return f:truncate(-5) end))
      local r = assert(uring.open(p, "r"))
      fails("Invalid argument", E.EINVAL, r:truncate(0))   -- not open for writing
      r:close()
      f:close()
      raises("attempt to use a closed file", f.truncate, f, 0)
    end)
  end)

  it("allocate reserves blocks, with or without growing the file", function()
    local p = dir .. "/f"
    run(function()
      local f = assert(uring.open(p, "w"))
      assert.is_true(f:allocate(0, 65536, true))
      assert.equal(0, f:stat().size)
      assert(f:stat().blocks * 512 >= 65536)
      assert.is_true(f:allocate(0, 10000))
      assert.equal(10000, f:stat().size)
      assert.matches(badarg(1, "allocate", "offset must be non-negative"),
        helpers.errmsg(function() return f:allocate(-1, 10) end))
      assert.matches(badarg(2, "allocate", "length must be positive"),
        helpers.errmsg(function() return f:allocate(0, 0) end))
      f:close()
      local r = assert(uring.open(p, "r"))
      fails("Bad file descriptor", E.EBADF, r:allocate(0, 10))
      r:close()
      raises("attempt to use a closed file", r.allocate, r, 0, 10)
    end)
  end)

  it("symlink, link, readlink, realpath, access", function()
    local p = dir .. "/f"
    spit(p, "x")
    run(function()
      assert.is_true(uring.symlink("f", dir .. "/l"))
      assert.equal("f", uring.readlink(dir .. "/l"))
      assert.is_true(uring.symlink(string.rep("t", 3000), dir .. "/long"))
      assert.equal(string.rep("t", 3000), uring.readlink(dir .. "/long"))
      assert.is_true(uring.link(p, dir .. "/h"))
      assert.equal(2, uring.stat(p).nlink)
      local real = helpers.sh("realpath " .. shq(p)):gsub("\n$", "")
      assert.equal(real, uring.realpath(dir .. "/l"))
      assert.is_true(uring.mkdir(dir .. "/d"))
      assert.equal(real, uring.realpath(dir .. "/./d/../l"))
      fails("File exists", E.EEXIST, uring.symlink("f", dir .. "/l"))
      fails("^" .. dir:gsub("%p", "%%%0") .. "/l: File exists", E.EEXIST,
        uring.symlink("anything", dir .. "/l"))    -- named after the new path
      fails("File exists", E.EEXIST, uring.link(p, dir .. "/h"))
      fails("No such file", E.ENOENT, uring.link(dir .. "/none", dir .. "/h2"))
      fails("Invalid argument", E.EINVAL, uring.readlink(p))
      fails("No such file", E.ENOENT, uring.realpath(dir .. "/none"))
      assert.is_true(uring.symlink("loop", dir .. "/loop"))
      fails("Too many levels", E.ELOOP, uring.realpath(dir .. "/loop"))
      assert.equal("loop", uring.readlink(dir .. "/loop"))
      fails(nil, E.ENOENT, uring.readlink(""))
      fails(nil, E.ENAMETOOLONG, uring.realpath(string.rep("a", 5000)))
      fails(nil, E.ENAMETOOLONG, uring.symlink("x", string.rep("a", 5000)))
      assert.is_true(uring.access(p))
      assert.is_true(uring.access(p, "rw"))
      assert.is_true(uring.access(p, "f"))
      fails("No such file", E.ENOENT, uring.access(dir .. "/none"))
      fails("Permission denied", E.EACCES, uring.access(p, "x"))   -- even root
      assert.matches(badarg(2, "access", "invalid mode"), helpers.errmsg(uring.access, p, "q"))
      assert.matches(badarg(2, "access", "invalid mode"), helpers.errmsg(uring.access, p, ""))
      assert.matches(badarg(2, "symlink", "path contains a NUL byte"),
        helpers.errmsg(uring.symlink, "x", "a\0"))
      assert.matches(badarg(1, "readlink"), helpers.errmsg(uring.readlink))
    end)
  end)

  it("tmpfile and mkdtemp make new private names", function()
    run(function()
      local f, p = assert(uring.tmpfile(dir))
      local g, q = assert(uring.tmpfile(dir))
      assert.not_equal(p, q)
      assert.equal(384, uring.stat(p).mode)     -- 0600
      f:write("data")
      f:seek("set")
      assert.equal("data", f:read("a"))
      f:close(); g:close()
      local d = assert(uring.mkdtemp(dir .. "/t-"))
      assert.truthy(d:match("/t%-%w+$"))
      assert.equal(448, uring.stat(d).mode)     -- 0700
      assert.not_equal(d, uring.mkdtemp(dir .. "/t-"))
      local deflt = assert(uring.mkdtemp())
      assert.equal("directory", uring.stat(deflt).type)
      assert.is_true(uring.rmdir(deflt))
      fails("No such file", E.ENOENT, uring.tmpfile(dir .. "/none"))
      fails("No such file", E.ENOENT, uring.mkdtemp(dir .. "/none/x"))
      assert.matches(badarg(1, "tmpfile", "path contains a NUL byte"),
        helpers.errmsg(uring.tmpfile, "a\0"))
      assert.matches(badarg(1, "mkdtemp", "string expected, got table"), helpers.errmsg(uring.mkdtemp, {}))
    end)
  end)

  it("features().fs says which way each function goes", function()
    local fs = uring.features().fs
    assert.equal("ring", fs.lstat)
    assert.equal("ring", fs.symlink)
    assert.equal("thread", fs.dir)
    assert.equal("thread", fs.chmod)
    assert.equal("poll", fs.lock)
    local want = uring.features().ops.ftruncate and "ring" or "thread"
    assert.equal(want, fs["file:truncate"])
  end)
end)

describe("file:lock #io", function()
  it("excludes another open of the file until unlocked; shared locks share", function()
    local p = dir .. "/lock"
    spit(p, "")
    run(function()
      local a, b = assert(uring.open(p, "r")), assert(uring.open(p, "r"))
      assert.is_true(a:lock())
      fails("Resource temporarily unavailable", E.EWOULDBLOCK, b:lock("exclusive", false))
      fails(nil, E.EWOULDBLOCK, b:lock("shared", false))
      local got
      local waiter = uring.spawn(function()
        got = b:lock()
        return uring.now()
      end)
      uring.sleep(0.03)
      assert.is_nil(got)                          -- still waiting, loop free
      local released = uring.now()
      assert.is_true(a:unlock())
      local _, at = waiter:join()
      assert.is_true(got)
      assert(at >= released)
      assert.is_true(b:unlock())
      assert.is_true(a:lock("shared"))
      assert.is_true(b:lock("shared", false))
      a:close(); b:close()
    end)
  end)

  it("a contended wait ends on cancel and on a timeout", function()
    local p = dir .. "/lock"
    spit(p, "")
    run(function()
      local a, b = assert(uring.open(p, "r")), assert(uring.open(p, "r"))
      assert.is_true(a:lock())
      fails("timeout", E.ETIME, uring.timeout(0.02, b.lock, b))
      local t = uring.spawn(b.lock, b)
      uring.sleep(0.01)
      t:cancel()
      local ok, err = t:join()
      assert.is_false(ok)
      assert.matches("canceled", err)
      assert.is_true(a:unlock())
      assert.is_true(b:lock(nil, false))         -- the cancelled wait took nothing
      assert.matches(badarg(1, "lock", "invalid mode 'both'"), helpers.errmsg(function() return a:lock("both") end))
      a:close(); b:close()
    end)
    local f = run(function()
      local f = assert(uring.open(p, "r"))
      f:close()
      return f
    end)
    raises("attempt to use a closed file", f.lock, f)
    raises("attempt to use a closed file", f.unlock, f)
  end)
end)

describe("on a kernel without the ops #io", function()
  it("file:truncate takes the helper pool; symlink, link, allocate name the missing op", function()
    local out, status = helpers.faulty([=[
      local uring = require "uring"
      local helpers = require "helpers"
      uring.run(function() end)
      local fds0 = helpers.fds()
      local dir = helpers.tmpdir()
      local function check(op, since, a, b, c)
        local want = ("IORING_OP_%s not supported by this kernel (%s+)"):format(op:upper(), since)
        assert(a == nil and type(b) == "string" and b:sub(-#want) == want
          and c == uring.errno.EOPNOTSUPP, op .. ": " .. tostring(b))
      end
      assert(uring.features().fs["file:truncate"] == "thread")
      uring.run(function()
        helpers.writeall(dir .. "/f", "hello world")
        local f = assert(uring.open(dir .. "/f", "r+"))
        assert(f:truncate(5) == true)
        assert(helpers.readall(dir .. "/f") == "hello")
        check("fallocate", "5.6", f:allocate(0, 100))
        f:close()
        local r = assert(uring.open(dir .. "/f", "r"))
        local ok, msg, en = r:truncate(0)     -- the thread's failure: the same tuple
        assert(ok == nil and en == uring.errno.EINVAL, tostring(msg))
        r:close()
        check("symlinkat", "5.15", uring.symlink("f", dir .. "/l"))
        check("linkat", "5.15", uring.link(dir .. "/f", dir .. "/h"))
      end)
      helpers.rmrf(dir)
      collectgarbage(); collectgarbage()
      assert(uring.stats().inflight == 0)
      assert(helpers.fds() == fds0, "fds leaked")
      print("ok")
    ]=], "URING_FAULT_MASK_OPS=ftruncate,fallocate,symlinkat,linkat")
    assert(status == 0 and out:match("ok\n$"), out)
  end)
end)
