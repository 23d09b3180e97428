--- uring.proc: the part of uring.popen that is a composition of core calls.
-- uring.popen (C) returns a uring.file over the parent's pipe end and
-- links the file to its child in core._popen_links (weak keys).  Here
-- file:close() and the file's __close learn to wait for that child and
-- return what io.popen's close returns: true | nil, "exit" | "signal", code.
return function(uring, core)
  local links = core._popen_links
  local methods = core.file_methods
  local wait, reap, current = core._wait, core._reap, core.current
  local isyieldable = coroutine.isyieldable

  -- In a task: wait through the ring.  Outside uring.run: block, as
  -- io.popen's close does.  While a task unwinds (it cannot yield): take
  -- the status if it is there; else the collector reaps the child later.
  local function finish(h)
    if current() and isyieldable() then return wait(h) end
    return reap(h, current() == nil)
  end

  local close = methods.close   -- the C close; named so errors say 'close'
  local mt = debug.getregistry()["uring.file"]
  methods.close = function(f, ...)
    local h = links[f]
    if h == nil then
      -- misuse raises here, at level 2, so the message names the
      -- caller's line and not this wrapper's (the C close would)
      if getmetatable(f) ~= mt then
        local m = getmetatable(f)
        error(("bad argument #1 to 'close' (uring.file expected, got %s)"):format(
          type(m) == "table" and type(m.__name) == "string" and m.__name
          or type(f)), 2)
      end
      if tostring(f) == "uring.file (closed)" then
        error("attempt to use a closed file", 2)
      end
      return close(f, ...)
    end
    local ok, msg, en = close(f)
    links[f] = nil
    local r1, r2, r3 = finish(h)
    if r2 == nil and not ok then return ok, msg, en end
    return r1, r2, r3
  end

  -- `local f <close> = uring.popen(...)` waits as io.popen's does
  local closemm = mt.__close
  mt.__close = function(f, e)
    if links[f] ~= nil and tostring(f) ~= "uring.file (closed)" then
      methods.close(f)
      return
    end
    return closemm(f, e)
  end
end
