--- uring.file: the io-shaped parts that are compositions of core calls:
-- file:lines, and whole-file helpers (readfile, writefile, copyfile).
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

local pack, unpack, select, type = table.pack, table.unpack, select, type
local argerror, typeerror = check.argerror, check.typeerror
local methods = core.file_methods
local closed = methods._closed
local copy_range, copy_trim = core._copy_range, core._copy_trim
local splice_pipe, splice = core._splice_pipe, core._splice
local E = core.errno

local M = {}

-- self of a file method written here: an open uring.file
local function checkfile (f, name, level)
  level = (level or 1) + 1
  if not check.is(f, methods) then typeerror(1, name, "uring.file", f, level) end
  if closed(f) then check.error("attempt to use a closed file", level) end
  return f
end

-- a format of file:read, checked as the C read checks it: nil when it
-- is one, else what is wrong with it
local function badformat (v)
  if type(v) == "number" then
    if math.tointeger(v) == nil then return "number has no integer representation" end
  elseif type(v) == "string" then
    local p = v:gsub("^%*", "", 1):sub(1, 1)
    if p ~= "n" and p ~= "l" and p ~= "L" and p ~= "a" then return "invalid format" end
  else
    return "string expected, got " .. check.typename(v)
  end
end

--- file:lines(...) -> iterator over file:read(...) (default "l").
-- As io's: a read error is raised; the file is not closed at the end; a
-- bad format is raised by the iterator, as 'for iterator' argument #i+1.
function methods:lines(...)
  checkfile(self, "lines")
  local n = select("#", ...)
  -- as liolib: at most 250 formats (argument 252 counts self)
  if n > 250 then argerror(252, "lines", "too many arguments") end
  local fmts = pack(...)
  if n == 0 then fmts = { "l", n = 1 } end
  local badarg, badmsg
  for i = 1, n do
    badmsg = badformat(fmts[i])
    if badmsg then badarg = i + 1; break end
  end
  local f = self
  return function()
    -- as io's iterator: no position for a closed file
    if closed(f) then error("file is already closed", 0) end
    if badarg then argerror(badarg, "for iterator", badmsg) end
    check.intask("lines")
    local r = pack(f:read(unpack(fmts, 1, fmts.n)))
    if r[1] then return unpack(r, 1, r.n) end
    -- as io's: a read error is raised (without a position, as io's C
    -- iterator does); EOF ends the loop with no values at all
    if r.n > 1 then error(tostring(r[2]), 0) end
  end
end

-- paths are checked here so errors name the helper, not uring.open; a
-- NUL is refused as the core refuses it (csrc/err.c ur_checkpath)
local function checkpath (fname, n, v)
  if type(v) ~= "string" and type(v) ~= "number" then
    typeerror(n, fname, "string", v, 2, v == nil and "no value" or nil)
  end
  if type(v) == "string" and v:find("\0", 1, true) then
    argerror(n, fname, "path contains a NUL byte", 2)
  end
end

--- uring.readfile(path) -> string | fail
function M.readfile(path)
  checkpath("readfile", 1, path)
  check.intask("readfile")
  local f, msg, en = uring.open(path, "rb")
  if not f then return nil, msg, en end
  local s, rmsg, ren = f:read("a")
  f:close()
  if not s then return nil, rmsg, ren end
  return s
end

--- uring.writefile(path, s [, mode]) -> true | fail
function M.writefile(path, s, mode)
  checkpath("writefile", 1, path)
  if type(s) ~= "string" then typeerror(2, "writefile", "string", s) end
  if mode == nil then mode = "wb"
  elseif type(mode) ~= "string" then typeerror(3, "writefile", "string", mode)
  elseif not mode:match("^[wa]%+?b?$") then
    argerror(3, "writefile", 'mode must be "w" or "a"')
  end
  check.intask("writefile")
  local f, msg, en = uring.open(path, mode)
  if not f then return nil, msg, en end
  local ok, wmsg, wen = f:write(s)
  local cok, cmsg, cen = f:close()
  if not ok then return nil, wmsg, wen end
  if not cok then return nil, cmsg, cen end
  return true
end

local CHUNK = 1 << 20

-- on_progress(done, total) once per CHUNK between done and upto
local function report (on_progress, done, upto, total)
  while done < upto do
    done = math.min(done + CHUNK, upto)
    on_progress(done, total)
  end
end

-- What cp does: copy_file_range, on a helper thread (csrc/copy.c).
-- One call copies to the end of src, or 16 MiB when progress is to be
-- reported; with progress, a last call after the callbacks finds the
-- end again (a callback may have added to src).  Returns bytes, or
-- fail, or false when copy_file_range cannot serve these files (not
-- one file system, not regular files) or no thread could be made,
-- before anything was copied.
local RANGE_UNSUPPORTED = { [E.EXDEV] = true, [E.EINVAL] = true,
  [E.ENOSYS] = true, [E.EOPNOTSUPP] = true }
local PROGRESS_CALL = 16 << 20
local function range_copy (inf, outf, total, on_progress)
  local ifd, ofd = inf:fd(), outf:fd()
  local max = on_progress and PROGRESS_CALL or math.maxinteger
  local done = 0
  -- however this ends short of total (a fail, a raise: cancel, timeout,
  -- a failing callback), dst's blocks past its end go back
  local _ <close> = setmetatable({}, { __close = function()
    if done < total then copy_trim(ofd) end
  end })
  while true do
    local n, eof, eno = copy_range(ifd, ofd, done, total, max)
    if n == false then return false end
    if not n then
      if done == 0 and RANGE_UNSUPPORTED[eno] then return false end
      return nil, eof, eno
    end
    local upto = done + n
    if on_progress then report(on_progress, done, upto, total) end
    done = upto
    if eof and (n == 0 or not on_progress) then return done end
  end
end

-- The kernel copies: SPLICE src -> pipe -> dst, a chain of up to 16
-- 1 MiB pairs per call (csrc/copy.c), no user-space buffer.  Progress is
-- still reported per 1 MiB.  Returns bytes, or fail, or false when
-- splice cannot serve these files (a device or file system without
-- splice support says EINVAL before anything was copied).
local function splice_copy (inf, outf, total, on_progress)
  local pipe <close> = splice_pipe()
  if not pipe then return false end
  local done = 0
  while true do
    local n, err, eno = splice(pipe, inf, outf, done, math.max(total - done, CHUNK))
    if not n then
      if done == 0 and eno == E.EINVAL then return false end
      return nil, err, eno
    end
    if n == 0 then return done end
    local upto = done + n
    if on_progress then report(on_progress, done, upto, total) end
    done = upto
  end
end

-- Through user space: 1 MiB reads and writes, the next read in flight
-- while the last chunk is written.
local function rw_copy (inf, outf, total, on_progress)
  local done = 0
  local chunk, err, eno = inf:pread(CHUNK, 0)
  while chunk do
    local nextread = uring.spawn(inf.pread, inf, CHUNK, done + #chunk)
    local n, werr, weno = outf:pwrite(chunk, done)
    if not n then
      nextread:join()
      return nil, werr, weno
    end
    done = done + n
    if on_progress then on_progress(done, total) end
    local ok, c, e2, en2 = nextread:join()
    if not ok then error(c, 0) end
    chunk, err, eno = c, e2, en2
  end
  if err then return nil, err, eno end
  return done
end

--- uring.copyfile(src, dst [, on_progress(done, total)]) -> bytes | fail
-- copy_file_range where the files allow it, else spliced in the kernel,
-- else read and written.
function M.copyfile(src, dst, on_progress)
  checkpath("copyfile", 1, src)
  checkpath("copyfile", 2, dst)
  if on_progress ~= nil and not check.callable(on_progress) then
    typeerror(3, "copyfile", "function", on_progress)
  end
  check.intask("copyfile")
  local inf, msg, en = uring.open(src, "rb")
  if not inf then return nil, msg, en end
  local st = inf:stat()
  local outf
  outf, msg, en = uring.open(dst, "wb", st and st.mode or nil)
  if not outf then inf:close(); return nil, msg, en end
  local total = st and st.size or 0
  local done, err, eno = range_copy(inf, outf, total, on_progress)
  if done == false then
    done, err, eno = splice_copy(inf, outf, total, on_progress)
  end
  if done == false then
    done, err, eno = rw_copy(inf, outf, total, on_progress)
  end
  inf:close()
  local cok, cmsg, cen = outf:close()
  if not done then return nil, err, eno end
  if not cok then return nil, cmsg, cen end
  return done
end

return M
