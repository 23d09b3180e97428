--- uring.net: the Lua shape of sockets.  The C core (net.c) receives into
-- the socket's buffer and takes lines and counts out of it; here those
-- primitives become LuaSocket's receive patterns and io-style views.
local concat = table.concat

return function(uring, core)
  local methods = core.socket_methods
  local sockmt = debug.getregistry()["uring.socket"]

  -- These methods are plain Lua: check self as the C ones do, so
  -- sock.read(other) raises a bad argument, not "attempt to call a nil
  -- value (method '_take_line')", and a closed socket raises at the
  -- caller's line, not inside this file.
  local function checkself(self, name)
    local mt = getmetatable(self)
    if mt ~= sockmt then
      local got = type(mt) == "table" and type(mt.__name) == "string"
        and mt.__name or type(self)
      error(("bad argument #1 to '%s' (uring.socket expected, got %s)")
        :format(name, got), 3)
    end
    if self:_closed() then error("attempt to use a closed socket", 3) end
  end

  -- Wait until `want` is satisfied by the buffer; fill() as needed.
  -- Returns true when satisfied, false at EOF, or nil, msg, errno.
  local function fill_until(self, satisfied)
    while not satisfied() do
      local ok, msg, en = self:_fill()
      if ok == nil then return nil, msg, en end
      if ok == false then return false end
    end
    return true
  end

  -- sock:receive([pattern [, prefix]]) is C (net.c): the hot path of
  -- every line protocol takes its line with no Lua frame around it.

  --- sock:recv([max]) -> string | nil, "closed" | fail
  -- Whatever has arrived (at most max bytes), waiting only if nothing has.
  function methods:recv(max)
    checkself(self, "recv")
    if max ~= nil and (math.type(max) ~= "integer" or max <= 0) then
      error("bad argument #1 to 'recv' (positive integer expected)", 2)
    end
    if (self:_buffered()) == 0 then
      local ok, msg, en = self:_fill()
      if ok == nil then return nil, msg, en end
      if ok == false then return nil, "closed" end
    end
    return self:_take(max or -1)
  end

  --- sock:read(...) -- io-style formats "l", "L", "a", n; nil at EOF
  function methods:read(...)
    checkself(self, "read")
    local n = select("#", ...)
    local fmts = n == 0 and { "l" } or { ... }
    local out = {}
    for i = 1, math.max(n, 1) do
      local f = fmts[i]
      local v, msg, en
      if type(f) == "number" then
        local ok
        ok, msg, en = fill_until(self, function() return (self:_buffered()) >= f end)
        if ok == nil then return nil, msg, en end
        v = self:_take(f)
        if v == "" and f > 0 then v = nil end
      elseif type(f) == "string" and f:gsub("^%*", ""):match("^[lL]") then
        local keep = f:gsub("^%*", ""):sub(1, 1) == "L"
        while true do
          v = self:_take_line(keep, false)
          if v then break end
          local ok
          ok, msg, en = self:_fill()
          if ok == nil then return nil, msg, en end
          if ok == false then
            v = self:_take()
            if v == "" then v = nil end
            break
          end
        end
      elseif type(f) == "string" and f:gsub("^%*", ""):match("^a") then
        while true do
          local ok
          ok, msg, en = self:_fill()
          if ok == nil then return nil, msg, en end
          if ok == false then break end
        end
        v = self:_take()
      else
        error("bad argument #" .. i .. " to 'read' (invalid format)", 2)
      end
      out[i] = v
      if v == nil then return table.unpack(out, 1, i) end
    end
    return table.unpack(out, 1, math.max(n, 1))
  end

  --- sock:write(...) -> sock | fail  (strings and numbers, as file:write)
  function methods:write(...)
    checkself(self, "write")
    local n = select("#", ...)
    local parts = { ... }
    for i = 1, n do
      local v = parts[i]
      if type(v) == "number" then parts[i] = tostring(v)
      elseif type(v) ~= "string" then
        error("bad argument #" .. i .. " to 'write' (string expected, got "
          .. type(v) .. ")", 2)
      end
    end
    local ok, msg, en = self:send(n == 1 and parts[1] or concat(parts, "", 1, n))
    if not ok then return nil, msg, en end
    return self
  end

  --- sock:lines([fmt]) -> iterator over sock:read(fmt or "l")
  function methods:lines(fmt)
    checkself(self, "lines")
    fmt = fmt or "l"
    return function()
      local v, msg = self:read(fmt)
      if v == nil and msg and msg ~= "closed" then error(msg, 2) end
      return v
    end
  end
end
