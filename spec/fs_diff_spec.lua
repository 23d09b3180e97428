-- spec/fs_diff_spec.lua: uring.walk, uring.dir, lstat, readlink and
-- realpath against the shell's own answers (find, stat -c, readlink,
-- ls -la) on one generated tree of about 10,000 entries: files of many
-- sizes and modes, directories three deep, symbolic links (to files, to
-- directories, dangling, to themselves, to an ancestor, in pairs), fifos
-- and permission traps.
--
-- We run as root, and root reads every directory whatever its mode: the
-- traps (mode 000 and root-only 0700 directories) are therefore walked a
-- second time by `nobody` (setpriv, no setuid involved), where find and
-- uring.walk must both refuse the same directories and list the rest.
local uring = require "uring"
local helpers = require "helpers"

local shq = helpers.shq
local run = helpers.runner(60)

local KIND = { f = "file", d = "directory", l = "link", p = "fifo", s = "socket",
  c = "char device", b = "block device" }

local root, base

-- every line of a command's output, split at tabs
local function rows (cmd)
  local out, err, code = helpers.exec(cmd)
  local t = {}
  for line in out:gmatch("[^\n]+") do
    local r = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do r[#r + 1] = field end
    t[#t + 1] = r
  end
  return t, err, code
end

local function sh_ok (script)
  local out, code, ok = helpers.sh(script)
  assert(ok, ("script failed (%s): %s"):format(tostring(code), out))
end

-- The tree.  Entries: 200 directories, 9,500 files, 170 links, 60 fifos,
-- 50 files and 15 directories as permission traps: 9,995 below root.
local function make_tree ()
  local dirs = {}
  for i = 0, 49 do
    local d = ("d%02d"):format(i)
    dirs[#dirs + 1] = d
    for j = 0, 2 do dirs[#dirs + 1] = d .. "/s" .. j end
  end
  sh_ok(("cd %s && mkdir %s"):format(shq(root), table.concat(dirs, " ")))
  -- files: sizes 0..299, spread over every directory
  local modes = { [0] = {}, {}, {}, {} }
  for i = 1, 9500 do
    local p = ("%s/f%d.%s"):format(dirs[i % #dirs + 1], i, ({ "txt", "lua", "c", "md" })[i % 4 + 1])
    local f = assert(io.open(root .. "/" .. p, "wb"))
    f:write(string.rep("x", i % 300))
    f:close()
    if i % 10 == 0 then table.insert(modes[(i // 10) % 4], p) end
  end
  local script = { "set -e", "cd " .. shq(root) }
  local function add (fmt, ...) script[#script + 1] = fmt:format(...) end
  -- modes beyond the umask's 644
  add("chmod 600 %s", table.concat(modes[0], " "))
  add("chmod 755 %s", table.concat(modes[1], " "))
  add("chmod 4755 %s", table.concat(modes[2], " "))
  add("chmod 444 %s", table.concat(modes[3], " "))
  for i = 0, 49 do
    local d = ("d%02d"):format(i)
    -- links: to a file, to a directory, dangling, to itself, to an
    -- ancestor (a cycle when followed), and a pair pointing at each other
    -- dirs[i * 4 + 1] is d, and file k lives in dirs[k % 200 + 1]
    local fi = i == 0 and 200 or i * 4
    add("ln -s f%d.%s %s/tofile", fi, ({ "txt", "lua", "c", "md" })[fi % 4 + 1], d)
    add("ln -s s0 %s/todir", d)
    add("ln -s ../nowhere%d %s/dangling", i, d)
    if i < 20 then add("ln -s self %s/self", d) end
    if i < 20 then add("ln -s .. %s/s1/up", d) end
    if i < 10 then add("ln -s b %s/s2/a && ln -s a %s/s2/b", d, d) end
  end
  for i = 0, 59 do add("mkfifo %s/s0/fifo%d", ("d%02d"):format(i % 50), i) end
  -- traps: unreadable directories (with something inside) and files
  for i = 0, 14 do
    add("mkdir trap%d && : > trap%d/hidden && chmod %s trap%d", i, i, i < 10 and "000" or "700", i)
  end
  for i = 0, 49 do add(": > d%02d/s1/locked%d && chmod 000 d%02d/s1/locked%d", i, i, i, i) end
  add("chmod 755 .")
  local path = base .. "/make.sh"
  helpers.writeall(path, table.concat(script, "\n") .. "\n")
  sh_ok("sh " .. shq(path))
end

describe("uring.walk against the shell #io", function()
  setup(function()
    base = helpers.tmpdir()
    root = base .. "/tree"
    assert(os.execute("mkdir " .. shq(root) .. " && chmod 755 " .. shq(base)))
    make_tree()
  end)
  teardown(function()
    helpers.rmrf(base)
  end)

  it("lists the same 10,000 names, kinds, sizes and modes as find", function()
    local want, n = {}, 0
    for _, r in ipairs(rows(("find %s -mindepth 1 -printf '%%P\\t%%y\\t%%s\\t%%m\\n'"):format(shq(root)))) do
      want[r[1]] = { KIND[r[2]], tonumber(r[3]), tonumber(r[4], 8) }
      n = n + 1
    end
    assert(n >= 9990, "the tree has " .. n .. " entries")
    local got, m = {}, 0
    run(function()
      for p, kind, st in uring.walk(root, { stat = true }) do
        assert(kind ~= "error", p)
        got[p:sub(#root + 2)] = { kind, st.size, st.mode }
        m = m + 1
      end
    end)
    assert.equal(n, m)
    assert.same(want, got)
  end)

  it("gives each kind from the entry alone as find's %y, without stat", function()
    local want = {}
    for _, r in ipairs(rows(("find %s -mindepth 1 -printf '%%P\\t%%y\\n'"):format(shq(root)))) do
      want[r[1]] = KIND[r[2]]
    end
    local got = {}
    run(function()
      for p, kind in uring.walk(root, { parallel = 2 }) do got[p:sub(#root + 2)] = kind end
    end)
    assert.same(want, got)
  end)

  it("follows links to what find's %Y says they lead to, and never loops", function()
    local want, total = {}, 0
    for _, r in ipairs(rows(("find %s -mindepth 1 -printf '%%P\\t%%Y\\n'"):format(shq(root)))) do
      total = total + 1
      -- L: a loop, N: leads nowhere; both stay links when followed
      want[r[1]] = (r[2] == "L" or r[2] == "N") and "link" or KIND[r[2]]
    end
    local got, n = {}, 0
    run(function()
      for p, kind in uring.walk(root, { follow = true }) do
        n = n + 1
        assert(n < 50000, "the walk loops")
        got[p:sub(#root + 2)] = kind
      end
    end)
    local compared = 0
    for p, kind in pairs(got) do
      if want[p] then
        compared = compared + 1
        assert(want[p] == kind, ("%s: find says %s, walk %s"):format(p, want[p], kind))
      end
    end
    -- a directory is entered once however many links lead to it: every
    -- entry shows up once, under its own path or one through a link
    -- (s0 through todir, dNN through s1/up: whichever was met first)
    assert.equal(total, n)
    assert(compared > total / 2, "compared only " .. compared)
  end)

  it("lstat agrees with stat -c on type, size, mode, links, owner and inode", function()
    local F = { ["regular file"] = "file", ["regular empty file"] = "file",
      directory = "directory", ["symbolic link"] = "link", fifo = "fifo" }
    -- every fifth file, and every entry that is not a plain file
    local paths = {}
    for i, r in ipairs(rows(("find %s -mindepth 1 -printf '%%P\\n'"):format(shq(root)))) do
      if i % 5 == 0 or not r[1]:match("/f%d+%.%a+$") then paths[#paths + 1] = r[1] end
    end
    local list = base .. "/paths"
    helpers.writeall(list, table.concat(paths, "\n") .. "\n")
    local want = rows(("cd %s && tr '\\n' '\\0' < %s | xargs -0 stat -c '%%n\t%%F\t%%s\t%%a\t%%h\t%%u\t%%g\t%%i'")
      :format(shq(root), shq(list)))
    assert.equal(#paths, #want)
    run(function()
      for _, r in ipairs(want) do
        local st = assert(uring.lstat(root .. "/" .. r[1]))
        assert.same({ r[1], F[r[2]], tonumber(r[3]), tonumber(r[4], 8), tonumber(r[5]),
          tonumber(r[6]), tonumber(r[7]), tonumber(r[8]) },
          { r[1], st.type, st.size, st.mode, st.nlink, st.uid, st.gid, st.ino })
      end
    end)
  end)

  it("readlink and realpath agree with readlink and readlink -e / -f", function()
    local links = {}
    for _, r in ipairs(rows(("find %s -type l -printf '%%p\\t%%l\\n'"):format(shq(root)))) do
      links[#links + 1] = r
    end
    assert(#links >= 170, #links .. " links")
    local real = {}
    for _, l in ipairs(links) do
      local e = helpers.exec("readlink -e " .. shq(l[1])):gsub("\n$", "")
      local f = helpers.exec("readlink -f " .. shq(l[1])):gsub("\n$", "")
      real[#real + 1] = { e, f }
    end
    run(function()
      for i, l in ipairs(links) do
        assert.equal(l[2], uring.readlink(l[1]))
        local rp, msg, en = uring.realpath(l[1])
        local e, f = real[i][1], real[i][2]
        if e ~= "" then
          assert.equal(e, rp)
          assert.equal(f, rp)
        else
          -- readlink -f resolves a path whose last part is missing;
          -- realpath(3), like readlink -e, fails
          assert(rp == nil and (en == uring.errno.ENOENT or en == uring.errno.ELOOP),
            l[1] .. ": " .. tostring(rp) .. " " .. tostring(msg))
        end
      end
    end)
  end)

  it("dir lists what ls -la lists, with the same kinds and link targets", function()
    local KL = { d = "directory", ["-"] = "file", l = "link", p = "fifo" }
    for _, d in ipairs { "d00", "d00/s0", "d00/s1", "d07/s2", "trap3" } do
      local want = {}
      local out = helpers.exec(("ls -la --time-style=+T %s"):format(shq(root .. "/" .. d)))
      for line in out:gmatch("[^\n]+") do
        local perms, name, target = line:match("^(%S+)%s+%d+%s+%S+%s+%S+%s+%d+%s+T%s+(%S+)(.*)$")
        if perms and name ~= "." and name ~= ".." then
          want[name] = { KL[perms:sub(1, 1)], target:match("^ %-> (.*)$") }
        end
      end
      local got = run(function()
        local t = {}
        for name, kind in assert(uring.dir(root .. "/" .. d)) do
          t[name] = { kind, kind == "link" and uring.readlink(root .. "/" .. d .. "/" .. name) or nil }
        end
        return t
      end)
      assert.same(want, got)
    end
  end)

  it("as nobody: refuses the same directories as find, per entry, and goes on", function()
    -- root is made nobody (setpriv: no setuid program involved); anyone
    -- else walks as themselves, and only the mode-000 traps refuse them
    local root_user = helpers.is_root()
    local asnobody = root_user and "setpriv --reuid=nobody --regid=nogroup --clear-groups " or ""
    local out, err = helpers.exec("LC_ALL=C " .. asnobody .. ("find %s -mindepth 1 -printf '%%P\\n'"):format(shq(root)))
    local want_names, want_errs = {}, {}
    for line in out:gmatch("[^\n]+") do want_names[line] = true end
    for p in err:gmatch("find: '([^\n]+)': Permission denied") do
      want_errs[p:sub(#root + 2)] = true
    end
    -- the module, where nobody can read it (the checkout may be private)
    local mod = base .. "/mod"
    local so = helpers.build_dir() .. "/uring/core.so"
    assert(os.execute(("mkdir -p %s/uring && cp -r lua/uring/. %s/uring/ && cp %s %s/uring/core.so && chmod -R a+rX %s")
      :format(shq(mod), shq(mod), shq(so), shq(mod), shq(mod))))
    local script = base .. "/walk.lua"
    helpers.writeall(script, ([[
      local uring = require "uring"
      uring.run(function()
        for p, kind, msg, en in uring.walk(%q) do
          if kind == "error" then print("E", p, en) else print("N", p) end
        end
      end)
    ]]):format(root))
    local wout, werr, code = helpers.exec(("%senv LUA_PATH='%s/?.lua;%s/?/init.lua;;' LUA_CPATH='%s/?.so;;' lua5.4 %s")
      :format(asnobody, mod, mod, mod, shq(script)))
    assert(code == 0, werr)
    local got_names, got_errs = {}, {}
    for tag, p, en in wout:gmatch("(%u)\t([^\t\n]+)\t?(%d*)") do
      p = p:sub(#root + 2)
      if tag == "N" then got_names[p] = true
      else
        assert.equal(tostring(uring.errno.EACCES), en)
        got_errs[p] = true
      end
    end
    local ntraps = 0
    for _ in pairs(got_errs) do ntraps = ntraps + 1 end
    assert.equal(root_user and 15 or 10, ntraps)
    assert.same(want_errs, got_errs)
    assert.same(want_names, got_names)
  end)
end)
