--- uring.file: the io-shaped parts that are compositions of core calls:
-- file:lines, and whole-file helpers (readfile, writefile, copyfile).
local pack, unpack = table.pack, table.unpack

return function(uring, core)
  local methods = core.file_methods

  --- file:lines(...) -> iterator over file:read(...) (default "l").
  -- As io's: a read error is raised; the file is not closed at the end.
  function methods:lines(...)
    local n = select("#", ...)
    if n > 250 then error("bad argument #251 to 'lines' (too many arguments)", 2) end
    local fmts = pack(...)
    if n == 0 then fmts = { "l", n = 1 } end
    local f = self
    if tostring(f) == "uring.file (closed)" then
      error("attempt to use a closed file", 2)
    end
    return function()
      if tostring(f) == "uring.file (closed)" then
        error("file is already closed", 0)
      end
      local r = pack(f:read(unpack(fmts, 1, fmts.n)))
      if r[1] then return unpack(r, 1, r.n) end
      -- as io's: a read error is raised (without a position, as io's C
      -- iterator does); EOF ends the loop with no values at all
      if r.n > 1 then error(tostring(r[2]), 0) end
    end
  end

  -- paths are checked here so errors name the helper, not uring.open;
  -- a NUL is refused as the core refuses it (csrc/err.c ur_checkpath)
  local function checkpath (fname, n, v)
    if type(v) ~= "string" and type(v) ~= "number" then
      error(("bad argument #%d to '%s' (string expected, got %s)"):format(
        n, fname, v == nil and "no value" or type(v)), 3)
    end
    if type(v) == "string" and v:find("\0", 1, true) then
      error(("bad argument #%d to '%s' (path contains a NUL byte)"):format(
        n, fname), 3)
    end
  end

  --- uring.readfile(path) -> string | fail
  function uring.readfile(path)
    checkpath("readfile", 1, path)
    local f, msg, en = uring.open(path, "rb")
    if not f then return nil, msg, en end
    local s, rmsg, ren = f:read("a")
    f:close()
    if not s then return nil, rmsg, ren end
    return s
  end

  --- uring.writefile(path, s [, mode]) -> true | fail
  function uring.writefile(path, s, mode)
    checkpath("writefile", 1, path)
    if type(s) ~= "string" then
      error("bad argument #2 to 'writefile' (string expected, got " .. type(s) .. ")", 2)
    end
    mode = mode or "wb"
    if mode:sub(1, 1) ~= "w" and mode:sub(1, 1) ~= "a" then
      error("bad argument #3 to 'writefile' (mode must be \"w\" or \"a\")", 2)
    end
    local f, msg, en = uring.open(path, mode)
    if not f then return nil, msg, en end
    local ok, wmsg, wen = f:write(s)
    local cok, cmsg, cen = f:close()
    if not ok then return nil, wmsg, wen end
    if not cok then return nil, cmsg, cen end
    return true
  end

  local CHUNK = 1 << 20
  local EINVAL = 22

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
  local RANGE_UNSUPPORTED = { [18] = true, [22] = true, [38] = true, [95] = true }
  local PROGRESS_CALL = 16 << 20
  local function range_copy (inf, outf, total, on_progress)
    local ifd, ofd = inf:fd(), outf:fd()
    local max = on_progress and PROGRESS_CALL or math.maxinteger
    local done = 0
    -- however this ends short of total (a fail, a raise: cancel, timeout,
    -- a failing callback), dst's blocks past its end go back
    local _ <close> = setmetatable({}, { __close = function()
      if done < total then core._copy_trim(ofd) end
    end })
    while true do
      local n, eof, eno = core._copy_range(ifd, ofd, done, total, max)
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
  -- 1 MiB pairs per call (csrc/fs.c), no user-space buffer.  Progress is
  -- still reported per 1 MiB.  Returns bytes, or fail, or false when
  -- splice cannot serve these files (a device or file system without
  -- splice support says EINVAL before anything was copied).
  local function splice_copy (inf, outf, total, on_progress)
    local pipe <close> = core._splice_pipe()
    if not pipe then return false end
    local done = 0
    while true do
      local n, err, eno = core._splice(pipe, inf, outf, done,
                                       math.max(total - done, CHUNK))
      if not n then
        if done == 0 and eno == EINVAL then return false end
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
  function uring.copyfile(src, dst, on_progress)
    checkpath("copyfile", 1, src)
    checkpath("copyfile", 2, dst)
    if on_progress ~= nil and type(on_progress) ~= "function" then
      error("bad argument #3 to 'copyfile' (function expected, got "
        .. type(on_progress) .. ")", 2)
    end
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
end
