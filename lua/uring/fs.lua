--- uring.fs: directories, walks, temporary files and locks: the parts of
-- the file system API that are compositions of core calls (the reading
-- itself is csrc/dir.c's, on the helper pool; metadata is csrc/fsmeta.c).
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

local type = type
local argerror, typeerror = check.argerror, check.typeerror
local methods = core.file_methods
local closed = methods._closed
local jobset, scan, scan_wait = core._jobset, core._scan, core._scan_wait
local scan_take = core._scan_take
local jobset_close = core._jobset_close
local ftruncate, flock, randname = core._ftruncate, core._flock, core._randname
local open, mkdir, sleep, yield = core.open, core.mkdir, core.sleep, core.yield
local E = core.errno

local M = {}

-- the flags of core._scan
local STAT, FOLLOW, FULL, SIZE = 1, 2, 4, 8

local function checkpath (name, n, v)
  v = check.string(n, name, v, 2, true)
  if v:find("\0", 1, true) then argerror(n, name, "path contains a NUL byte", 2) end
  return v
end

--- uring.dir(path) -> iterator: name, kind | nil, msg, errno
-- The whole directory is read first, in big getdents64 batches on a
-- helper thread; each kind comes from the directory entry itself ("file",
-- "directory", "link", "fifo", ...), without a stat.  "." and ".." are
-- left out; the order is the directory's own.
function M.dir(path)
  checkpath("dir", 1, path)
  check.intask("dir")
  local set, msg, en = jobset()
  if not set then return nil, msg, en end
  scan(set, path, 0)
  local ok
  ok, msg, en = scan_wait(set)
  local r = ok and scan_take(set)
  jobset_close(set)
  if not ok then return nil, msg, en end
  if r.err then return nil, r.err, r.errno end
  local names, kinds, i = r.paths, r.kinds, 0
  return function()
    i = i + 1
    local name = names[i]
    if name then return name, kinds[i] end
  end
end

--- uring.walk(root [, opts]) -> iterator: path, kind [, stat]
-- Breadth-first below root (root itself is not listed), reading up to
-- opts.parallel (4) jobs at once on the helper pool, each a share of
-- the directories waiting (at most 4).
--   opts.follow: enter symbolic links to directories (a link that leads
--     nowhere stays a "link"); a directory already entered is never
--     entered again, so link cycles end.
--   opts.filter(path, kind): false leaves the entry out and, for a
--     directory, everything below it.
--   opts.stat: a third value, the entry's stat table (uring.lstat's, or
--     uring.stat's when followed), statted on the helper thread in the
--     same batch; false if the entry vanished meanwhile.  opts.stat =
--     "size": the size alone, an integer (no table per entry: for sums).
-- A directory that cannot be read (no permission, deleted meanwhile)
-- yields path, "error", msg, errno, and the walk goes on.
function M.walk(root, opts)
  checkpath("walk", 1, root)
  opts = check.opttable(2, "walk", opts)
  local follow, filter, want = opts.follow, opts.filter, opts.stat
  if filter ~= nil and not check.callable(filter) then
    argerror(2, "walk", "filter must be a function, got " .. check.typename(filter))
  end
  if want ~= nil and want ~= true and want ~= false and want ~= "size" then
    argerror(2, "walk", "stat must be true or \"size\"")
  end
  local parallel = opts.parallel or 4
  if math.type(parallel) ~= "integer" or parallel < 1 then
    argerror(2, "walk", "parallel must be a positive integer")
  end
  check.intask("walk")
  local flags = FULL | (follow and FOLLOW or 0) | (want and STAT or 0)
    | (want == "size" and SIZE or 0)
  local set, msg, en = jobset()
  if not set then
    return function()
      if set == nil then set = false; return root, "error", msg, en end
    end
  end
  local queue, qhead, qtail = { root }, 1, 1
  local inflight = 0              -- jobs not yet all taken
  local seen = {}                 -- dev -> {ino = true}: entered already
  -- the piece being yielded: its entries, kinds, stats, count, next one
  local paths, kinds, stats, n, ci = nil, nil, nil, 0, 1
  local skip                      -- the pieces come from a directory entered before
  local budget = 256              -- entries until the next uring.yield
  local function entered (r)
    local inos = seen[r.dev]
    if not inos then inos = {}; seen[r.dev] = inos end
    if inos[r.ino] then return true end
    inos[r.ino] = true
    return false
  end
  -- keep up to `parallel` jobs reading, each a fair share of the queue
  -- (at most 4 directories: one trip between threads for a few small
  -- directories, yet a job soon done, so the loop takes it and queues
  -- the next while the others read: bench/walk.lua, 4 x 4 against 2 x
  -- 16, ~0.8x the wall time at the same CPU time)
  local function top_up ()
    while inflight < parallel and qhead <= qtail do
      local per = (qtail - qhead + 1) // (parallel - inflight)
      if per > 4 then per = 4 end
      if per <= 1 then
        scan(set, queue[qhead], flags)
        queue[qhead] = nil
        qhead = qhead + 1
      else
        scan(set, table.move(queue, qhead, qhead + per - 1, 1, {}), flags)
        for i = qhead, qhead + per - 1 do queue[i] = nil end
        qhead = qhead + per
      end
      inflight = inflight + 1
    end
  end
  return function()
    while true do
      while ci <= n do
        local i = ci
        ci = i + 1
        -- a job may bring thousands of entries: let the other tasks
        -- run now and then, as if each entry were an op of its own
        budget = budget - 1
        if budget == 0 then budget = 256; yield() end
        local p, k = paths[i], kinds[i]
        if filter == nil or filter(p, k) ~= false then
          if k == "directory" then
            qtail = qtail + 1
            queue[qtail] = p
          end
          if stats then return p, k, stats[i] end
          return p, k
        end
      end
      top_up()
      -- a directory comes in pieces of at most 256 entries: its tables
      -- are made between yields too
      local r, last = scan_take(set, 256)
      if r then
        if last then inflight = inflight - 1 end
        if r.first then
          if r.err then return r.path, "error", r.err, r.errno end
          skip = entered(r)
        end
        if not skip then
          paths, kinds, stats, n, ci = r.paths, r.kinds, r.stats, r.n, 1
        end
      elseif inflight == 0 then
        jobset_close(set)       -- its eventfd goes now, not at the GC
        return nil
      else
        local ok, m = scan_wait(set)
        if not ok then error("walk: " .. tostring(m), 0) end
      end
    end
  end, nil, nil, set    -- to-be-closed: a loop left early stops the reads
end

local function tmpdir ()
  local d = os.getenv("TMPDIR")
  if d == nil or d == "" then d = "/tmp" end
  return d
end

--- uring.tmpfile([dir]) -> file, path | nil, msg, errno
-- A new file, "w+", mode 0600, under a name nobody else has (O_EXCL,
-- retried on a clash), in dir or $TMPDIR or /tmp.  Removing it is yours.
function M.tmpfile(dir)
  if dir ~= nil then checkpath("tmpfile", 1, dir) end
  check.intask("tmpfile")
  dir = dir or tmpdir()
  local f, msg, en
  for _ = 1, 100 do
    local name, m, e = randname(12)
    if not name then return nil, m, e end
    local path = dir .. "/lua-uring-" .. name
    f, msg, en = open(path, "w+", { perm = 384, exclusive = true })   -- 0600
    if f then return f, path end
    if en ~= E.EEXIST then return nil, msg, en end
  end
  return nil, msg, en
end

--- uring.mkdtemp([prefix]) -> path | nil, msg, errno
-- A new directory, mode 0700, named prefix followed by random letters;
-- prefix defaults to "$TMPDIR/lua-uring-" (or /tmp).
function M.mkdtemp(prefix)
  if prefix ~= nil then checkpath("mkdtemp", 1, prefix) end
  check.intask("mkdtemp")
  prefix = prefix or (tmpdir() .. "/lua-uring-")
  local ok, msg, en
  for _ = 1, 100 do
    local name, m, e = randname(10)
    if not name then return nil, m, e end
    local path = prefix .. name
    ok, msg, en = mkdir(path, 448)   -- 0700
    if ok then return path end
    if en ~= E.EEXIST then return nil, msg, en end
  end
  return nil, msg, en
end

local function checkfile (f, name)
  if not check.is(f, methods) then typeerror(1, name, "uring.file", f, 2) end
  if closed(f) then check.error("attempt to use a closed file", 2) end
end

--- file:truncate(size) -> true | nil, msg, errno
-- Buffered writes go out first and read-ahead is forgotten, so the file
-- object and the file agree; then IORING_OP_FTRUNCATE (or a helper
-- thread on kernels before 6.9).
function methods:truncate(size)
  checkfile(self, "truncate")
  size = check.integer(2, "truncate", size)
  if size < 0 then argerror(2, "truncate", "size must be non-negative") end
  check.intask("truncate")
  local ok, msg, en = self:flush()
  if not ok then return nil, msg, en end
  local pos = self:seek("cur")
  if pos then self:seek("set", pos) end   -- drops what was read ahead
  return ftruncate(self, size)
end

local LOCKS = { exclusive = "ex", shared = "sh" }

--- file:lock([mode [, wait]]) -> true | nil, msg, errno
-- flock(2): mode "exclusive" (the default) or "shared".  While another
-- holder has it, the task waits (other tasks run), retrying after 1 ms,
-- then twice as long each time up to 50 ms; wait = false returns the
-- EWOULDBLOCK failure at once instead.  Cancelling the task or an expired
-- uring.timeout ends the wait.
function methods:lock(mode, wait)
  checkfile(self, "lock")
  local how = LOCKS[mode == nil and "exclusive" or mode]
  if how == nil then
    argerror(2, "lock", "invalid mode '" .. tostring(mode) .. "'")
  end
  check.intask("lock")
  local delay = 0.001
  while true do
    local ok, msg, en = flock(self, how)
    if ok then return true end
    if en ~= E.EWOULDBLOCK or wait == false then return nil, msg, en end
    sleep(delay)
    if closed(self) then check.error("attempt to use a closed file") end
    delay = delay < 0.025 and delay * 2 or 0.05
  end
end

--- file:unlock() -> true | nil, msg, errno
function methods:unlock()
  checkfile(self, "unlock")
  return flock(self, "un")
end

return M
