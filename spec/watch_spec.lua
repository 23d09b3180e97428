-- spec/watch_spec.lua: uring.watch, inotify read through the ring, on
-- real directories under /tmp.  Each test ends with nothing in flight and
-- no descriptor left open (the inotify fd included).
local uring = require "uring"
local helpers = require "helpers"

local ENOENT, ENOSPC, EBADF = 2, 28, 9
local run = helpers.runner(20)
local badarg, errmsg = helpers.badarg, helpers.errmsg

-- Read events until pred(ev) is true for one; returns that event and the
-- list of every event read, in order.
local function read_until(w, pred)
  local seen = {}
  while true do
    local ev, msg = w:read()
    assert(ev, "watch ended: " .. tostring(msg))
    seen[#seen + 1] = ev
    if pred(ev) then return ev, seen end
  end
end

local function is(event, name)
  return function(ev) return ev.event == event and ev.name == name end
end

describe("uring.watch #io", function()
  local dir
  helpers.leak_check(before_each, after_each)
  before_each(function() dir = helpers.tmpdir() end)
  after_each(function() helpers.rmrf(dir) end)

  it("reports create, modify, attrib and delete by name", function()
    run(function()
      local w <close> = assert(uring.watch(dir))
      assert.matches("^uring%.watch %(fd %d+%)$", tostring(w))
      assert.is_true(w:fd() >= 0)
      helpers.writeall(dir .. "/a.txt", "one")
      local ev = read_until(w, is("create", "a.txt"))
      assert.equal(dir .. "/a.txt", ev.path)
      assert.is_false(ev.dir)
      assert.is_nil(ev.cookie)
      read_until(w, is("modify", "a.txt"))
      os.execute("chmod 600 " .. dir .. "/a.txt")
      read_until(w, is("attrib", "a.txt"))
      os.remove(dir .. "/a.txt")
      read_until(w, is("delete", "a.txt"))
      assert(uring.mkdir(dir .. "/d"))
      ev = read_until(w, is("create", "d"))
      assert.is_true(ev.dir)
    end)
  end)

  it("pairs a rename's move_from and move_to by cookie", function()
    run(function()
      local w <close> = assert(uring.watch(dir, { "move_from", "move_to" }))
      helpers.writeall(dir .. "/old", "x")
      helpers.writeall(dir .. "/other", "y")
      assert(uring.rename(dir .. "/old", dir .. "/new"))
      assert(uring.rename(dir .. "/other", dir .. "/other2"))
      local a = w:read()
      local b = w:read()
      local c = w:read()
      local d = w:read()
      -- only what was asked for: no create or modify came first
      assert.same({ "move_from", "move_to", "move_from", "move_to" },
        { a.event, b.event, c.event, d.event })
      assert.same({ "old", "new", "other", "other2" }, { a.name, b.name, c.name, d.name })
      assert.is_true(math.type(a.cookie) == "integer" and a.cookie ~= 0)
      assert.equal(a.cookie, b.cookie)
      assert.equal(c.cookie, d.cookie)
      assert.are_not.equal(a.cookie, c.cookie)
    end)
  end)

  it("recursive: watches a new subdirectory and reports what it already holds", function()
    run(function()
      assert(uring.mkdir(dir .. "/old"))
      local w <close> = assert(uring.watch(dir, "create,modify,delete", { recursive = true }))
      -- an existing subdirectory is watched from the start
      helpers.writeall(dir .. "/old/f", "1")
      read_until(w, is("create", "old/f"))
      -- a new tree made in one go: its contents were there before its
      -- watch; they are reported as created, deepest last
      os.execute("mkdir -p " .. dir .. "/new/deep && echo hi > " .. dir .. "/new/deep/g")
      read_until(w, is("create", "new"))
      read_until(w, is("create", "new/deep/g"))
      -- and from now on it is watched
      helpers.writeall(dir .. "/new/deep/h", "2")
      local ev = read_until(w, is("create", "new/deep/h"))
      assert.equal(dir .. "/new/deep/h", ev.path)
      os.remove(dir .. "/new/deep/h")
      read_until(w, is("delete", "new/deep/h"))
    end)
  end)

  it("recursive: a subdirectory moved in is watched under its new name", function()
    run(function()
      local outside = helpers.tmpdir()
      assert(uring.mkdir(outside .. "/m"))
      local w <close> = assert(uring.watch(dir, nil, { recursive = true }))
      assert(uring.rename(outside .. "/m", dir .. "/m"))
      read_until(w, is("move_to", "m"))
      helpers.writeall(dir .. "/m/x", "1")
      read_until(w, is("create", "m/x"))
      helpers.rmrf(outside)
    end)
  end)

  it("reports a queue overflow as an event, then goes on", function()
    run(function()
      local w <close> = assert(uring.watch(dir, "move_from,move_to"))
      local max = tonumber(helpers.readall("/proc/sys/fs/inotify/max_queued_events"):match("%d+"))
      helpers.writeall(dir .. "/a", "x")
      -- nobody reads meanwhile: two events per rename overflow the queue
      for i = 1, max // 2 + 100 do
        if i % 2 == 1 then os.rename(dir .. "/a", dir .. "/b")
        else os.rename(dir .. "/b", dir .. "/a") end
      end
      local n = 0
      local ev = read_until(w, function(e) n = n + 1; return e.event == "overflow" end)
      assert.is_nil(ev.name)
      assert.is_true(n >= max)   -- what was queued came first, none lost
      helpers.writeall(dir .. "/after", "z")
      assert(uring.rename(dir .. "/after", dir .. "/after2"))
      read_until(w, is("move_to", "after2"))
    end)
  end)

  it("takes 10,000 events from another task with none lost", function()
    -- 5,000 renames back and forth: two events each, none coalesced (the
    -- names alternate), and cheap to make (creating 10,000 files costs
    -- seconds on a journalled disk)
    local N = 10000
    local got, pairs_ok, overflows = run(function()
      local w <close> = assert(uring.watch(dir, "move_from,move_to"))
      helpers.writeall(dir .. "/a", "x")
      local maker = uring.spawn(function()
        for i = 1, N // 2 do
          if i % 2 == 1 then os.rename(dir .. "/a", dir .. "/b")
          else os.rename(dir .. "/b", dir .. "/a") end
          if i % 100 == 0 then uring.yield() end   -- let the reader run
        end
      end)
      local count, matched, over, from = 0, 0, 0, nil
      while count < N do
        local ev = assert(w:read())
        if ev.event == "overflow" then over = over + 1; break end
        count = count + 1
        if ev.event == "move_from" then from = ev
        elseif from and from.cookie == ev.cookie and from.name ~= ev.name then
          matched = matched + 1
        end
      end
      assert(maker:join())
      return count, matched, over
    end)
    assert.equal(0, overflows)
    assert.equal(N, got)
    assert.equal(N // 2, pairs_ok)
  end)

  it("reports the watched directory's removal, then nil, \"closed\"", function()
    run(function()
      local sub = dir .. "/gone"
      assert(uring.mkdir(sub))
      local w <close> = assert(uring.watch(sub))
      helpers.writeall(sub .. "/f", "x")
      helpers.rmrf(sub)
      local ev, seen = read_until(w, function(e) return e.event == "delete_self" end)
      assert.is_nil(ev.name)
      assert.equal(sub, ev.path)
      assert.equal("delete", seen[#seen - 1].event)
      local a, msg, en = w:read()
      assert.is_nil(a)
      assert.equal("closed", msg)
      assert.equal(EBADF, en)
    end)
  end)

  it("watches a single file", function()
    run(function()
      local path = dir .. "/one"
      helpers.writeall(path, "a")
      local w <close> = assert(uring.watch(path, "modify"))
      helpers.writeall(path, "bb")
      local ev = w:read()
      assert.equal("modify", ev.event)
      assert.is_nil(ev.name)
      assert.equal(path, ev.path)
    end)
  end)

  it("wakes a reader with nil, \"closed\" when another task closes it", function()
    run(function()
      local w = assert(uring.watch(dir))
      local reader = uring.spawn(function() return w:read() end)
      uring.sleep(0.02)
      assert.equal("waiting", reader:status())
      w:close()
      local ok, a, msg, en = reader:join()
      assert.is_true(ok)
      assert.is_nil(a)
      assert.equal("closed", msg)
      assert.equal(EBADF, en)
      assert.matches("closed", tostring(w))
      assert.equal(true, w:close())   -- again: a no-op
      assert.matches("attempt to use a closed watch", errmsg(w.read, w))
    end)
  end)

  it("is read under uring.timeout without losing later events", function()
    run(function()
      local w <close> = assert(uring.watch(dir, "create"))
      assert.same({ nil, "timeout", 62 }, { uring.timeout(0.02, w.read, w) })
      helpers.writeall(dir .. "/late", "x")
      assert.equal("late", w:read().name)
    end)
  end)

  it("returns nil, msg, errno for a missing path", function()
    run(function()
      local w, msg, en = uring.watch(dir .. "/nope")
      assert.is_nil(w)
      assert.matches("No such file", msg)
      assert.equal(ENOENT, en)
    end)
  end)

  it("raises on bad arguments", function()
    assert.matches(badarg(1, "watch", "string expected, got nil"), errmsg(uring.watch))
    assert.matches(badarg(1, "watch", "path is empty"), errmsg(uring.watch, ""))
    assert.matches(badarg(1, "watch", "path contains a NUL byte"), errmsg(uring.watch, "a\0b"))
    assert.matches(badarg(2, "watch", "unknown event 'bogus'"), errmsg(uring.watch, dir, "create,bogus"))
    assert.matches(badarg(2, "watch", "string or table expected, got number"), errmsg(uring.watch, dir, 5))
    assert.matches(badarg(3, "watch", "table expected, got string"), errmsg(uring.watch, dir, nil, "r"))
    local w = assert(uring.watch(dir))
    assert.matches("not inside a task", errmsg(w.read, w))
    w:close()
  end)

  it("returns the fail tuple when max_user_watches is reached", function()
    if not helpers.have("unshare") or os.execute("unshare -Ur true 2>/dev/null") ~= true then
      pending("no user namespaces here: the per-namespace watch limit cannot be lowered")
      return
    end
    os.execute("mkdir " .. dir .. "/s1 " .. dir .. "/s2 " .. dir .. "/s3")
    -- a user namespace of its own, whose inotify watch limit is 2: the
    -- root and its three subdirectories need 4
    local out, code = helpers.child(([[
      local f = assert(io.open("/proc/sys/user/max_inotify_watches", "w"))
      f:write("2\n"); f:close()
      local uring = require "uring"
      uring.run(function()
        local w, msg, en = uring.watch(%q, nil, { recursive = true })
        print(w, msg, en)
        local one = assert(uring.watch(%q))   -- one watch still fits
        one:close()
      end)
    ]]):format(dir, dir), "unshare -Ur ")
    assert.equal(0, code, out)
    assert.matches("^nil\t.*inotify watch limit reached %(fs%.inotify%.max_user_watches%)\t" .. ENOSPC, out)
  end)
end)
