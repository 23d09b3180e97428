-- spec/walk_spec.lua: uring.walk over big directories (issue 14, must-show
-- 2): a directory comes to Lua in pieces of at most 256 entries, each
-- entry exactly once with its own stat, a directory entered twice
-- (through a link) is skipped in all its pieces, and the other tasks run
-- while a walk works: the walk yields between pieces, and the loop looks
-- for completions at least every millisecond even while tasks stay
-- runnable (a timer is not held back by a task that computes between
-- yields).  The speed against find and luv is bench/walk.lua's.
local uring = require "uring"
local helpers = require "helpers"

local sh, shq = helpers.sh, helpers.shq
local run = helpers.runner(20)

local dir
local fds
before_each(function()
  uring.run(function() end)
  fds = helpers.fds()
  dir = helpers.tmpdir()
end)
after_each(function()
  helpers.rmrf(dir)
  collectgarbage(); collectgarbage()
  local t0 = uring.now()   -- the pool's last jobs close their eventfd
  while helpers.fds() ~= fds and uring.now() - t0 < 5 do
    uring.run(function() uring.sleep(0.01) end)
  end
  assert.equal(0, uring.stats().inflight)
  assert.equal(0, uring.stats().tasks)
  assert.equal(fds, helpers.fds())
end)

-- n files in dir/sub, file i holding i % 97 bytes
local function big (sub, n)
  assert(sh(("mkdir -p %s"):format(shq(dir .. "/" .. sub))))
  for i = 1, n do
    local f = assert(io.open(("%s/%s/f%d"):format(dir, sub, i), "wb"))
    f:write(string.rep("x", i % 97))
    f:close()
  end
end

describe("uring.walk in pieces #io", function()
  it("lists each of 1,300 entries of one directory once, with its own stat", function()
    big("big", 1300)
    assert(sh(("cd %s && mkdir big/sub && printf 1234 > big/sub/g"):format(shq(dir))))
    local tables, sizes = {}, {}
    run(function()
      for p, k, st in uring.walk(dir, { stat = true }) do
        assert.is_nil(tables[p], "listed twice: " .. p)
        tables[p] = { k, st.size, st.type }
      end
      for p, _, size in uring.walk(dir, { stat = "size" }) do
        assert.is_nil(sizes[p], "listed twice: " .. p)
        sizes[p] = size
      end
    end)
    local n = 0
    for p in pairs(tables) do n = n + 1; assert(sizes[p], p) end
    assert.equal(1 + 1300 + 1 + 1, n)     -- big, its files, sub, g
    for i = 1, 1300 do
      local p = ("%s/big/f%d"):format(dir, i)
      assert.same({ "file", i % 97, "file" }, tables[p])
      assert.equal(i % 97, sizes[p])
    end
    assert.same({ "file", 4, "file" }, tables[dir .. "/big/sub/g"])
    assert.equal("directory", tables[dir .. "/big/sub"][1])
  end)

  it("skips every piece of a big directory reached a second time through a link", function()
    big("big", 600)
    assert(sh(("cd %s && ln -s big lnk"):format(shq(dir))))
    -- the two are read by two jobs at once, finishing in either order:
    -- walked a few times, so pieces of the two could interleave
    for _ = 1, 8 do
      local under = { big = 0, lnk = 0 }
      run(function()
        for p in uring.walk(dir, { follow = true }) do
          local top, rest = p:sub(#dir + 2):match("^([^/]+)/(.+)$")
          if rest then under[top] = under[top] + 1 end
        end
      end)
      -- one of the two names enters the directory, with all 600 entries;
      -- the other is a directory already entered: none of its pieces
      assert.equal(600, under.big + under.lnk)
      assert.is_true(under.big == 0 or under.lnk == 0)
    end
  end)

  it("gives whole paths below a directory whose path is near PATH_MAX", function()
    -- past 3,840 bytes a directory's path and a 255-byte name no longer
    -- fit the 4 KiB buffer on the C stack: a Lua buffer takes over
    local comp = string.rep("d", 200)
    local deep = dir
    while #deep < 3900 do deep = deep .. "/" .. comp end
    assert(sh("mkdir -p " .. shq(deep)))
    -- the long name's own path passes PATH_MAX: made, and statted by
    -- the walk, relative to its directory
    local name = string.rep("n", 255)
    assert(sh(("cd %s && printf abc > %s && : > short"):format(shq(deep), name)))
    local got, size = {}, nil
    run(function()
      for p, k, st in uring.walk(dir, { stat = "size" }) do
        got[p] = k
        if p == deep .. "/" .. name then size = st end
      end
    end)
    assert.equal("file", got[deep .. "/" .. name])
    assert.equal(3, size)
    assert.equal("file", got[deep .. "/short"])
    local n = 0
    for _ in pairs(got) do n = n + 1 end
    assert.equal(#deep:sub(#dir + 1):gsub("[^/]", "") + 2, n)   -- the dirs, 2 files
  end)

  it("lets another task run at least once every 256 entries", function()
    big("big", 1300)
    local turns, entries = 0, 0
    run(function()
      local stop = false
      local other = uring.spawn(function()
        while not stop do turns = turns + 1; uring.yield() end
      end)
      for _, _, st in uring.walk(dir, { stat = true }) do
        entries = entries + 1
        assert.is_table(st)
      end
      stop = true
      other:join()
    end)
    assert.equal(1301, entries)
    assert.is_true(turns >= 1301 // 256, ("%d turns for %d entries"):format(turns, entries))
  end)
end)

-- Not #io: the loop's turn policy on the default ring.  Under SQPOLL the
-- kernel's poller thread posts the timer's completion, and how late it
-- runs on a busy machine is the scheduler's, not the loop's.
describe("the loop while tasks stay runnable", function()
  it("fires a timer within a few ms though a task computes 3 ms between yields", function()
    -- looking for completions only every 16th busy turn, the sleeper
    -- waited 50-65 ms beyond each 5 ms sleep here; now ~6 ms (the step
    -- under way, and the spinner's next one, which runs first)
    local late = {}
    run(function()
      local stop = false
      local spinner = uring.spawn(function()
        while not stop do
          local t = uring.now()
          while uring.now() - t < 0.003 do end
          uring.yield()
        end
      end)
      for i = 1, 11 do
        local t = uring.now()
        uring.sleep(0.005)
        late[i] = uring.now() - t - 0.005
      end
      stop = true
      spinner:join()
    end)
    table.sort(late)
    assert.is_true(late[6] < 0.025, ("median lateness %.1f ms"):format(late[6] * 1000))
  end)
end)
