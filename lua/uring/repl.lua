--- uring.repl: a Lua prompt whose event loop keeps running between lines.
--
-- The prompt itself is a task: it waits for standard input through the
-- ring (a read of fd 0, or, on a terminal, uring.poll and GNU readline's
-- callback interface), so tasks spawned at the prompt -- a server, a
-- counter -- keep running while the user types.  Each entered chunk runs
-- as a task of its own, so yielding calls (uring.sleep, f:read,
-- sock:receive) work straight at the prompt.  Ctrl-C interrupts the Lua
-- that is running (even `while true do end`: uring.run's SIGINT handler
-- raises "interrupted" in it) or, when no Lua runs, cancels the chunk
-- that waits; background tasks keep running either way.  End of input
-- cancels every task and returns.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local check = require "uring.check"
-- Ctrl-C that found no Lua running; false when the run does not own
-- SIGINT (the script blocks it): then a uring.signal reads it
local sigint_wait = require("uring.core").sigint_wait

local repl = {}

local HELP = [[
Enter Lua statements or expressions (=expr works too); each runs as a task.
  :tasks          live tasks: id, status, what each waits on
  :stats          uring.stats()
  :features       uring.features(): kernel, setup flags, supported ops
  :trace on|off   print one line per SQE and CQE
  :cancel N       cancel task N
  :help           this text
Ctrl-C cancels the running chunk; Ctrl-D (end of input) exits.]]

local function isatty(fd)
  return os.execute("test -t " .. fd) == true
end

-- Print values as the standalone lua prompt does.
local function print_values(t, i, j)
  if j < i then return end
  local out = {}
  for k = i, j do out[#out + 1] = tostring(t[k]) end
  io.write(table.concat(out, "\t"), "\n")
  io.flush()
end

-- Compile a chunk as lua.c does: first as an expression, then as
-- statements.  Returns fn, or nil, msg, incomplete.
local function compile(src)
  if src:sub(1, 1) == "=" then src = "return " .. src:sub(2) end
  local fn = load("return " .. src, "=stdin", "t")
  if fn then return fn end
  local err
  fn, err = load(src, "=stdin", "t")
  if fn then return fn end
  return nil, err, err:match("<eof>$") ~= nil
end

local function list_tasks(hidden)
  local rows = {}
  for _, t in ipairs(uring.tasks()) do
    if not hidden[t] then
      rows[#rows + 1] = ("%4d  %-8s %s"):format(t:id(), t:status(), t:waiting_on() or "")
    end
  end
  table.sort(rows)
  io.write(#rows == 0 and "no tasks\n" or ("  id  status   waiting on\n" .. table.concat(rows, "\n") .. "\n"))
end

local function command(line, hidden)
  local cmd, rest = line:match("^:(%a+)%s*(.-)%s*$")
  if cmd == "help" then io.write(HELP, "\n")
  elseif cmd == "tasks" then list_tasks(hidden)
  elseif cmd == "stats" then
    local s, keys = uring.stats(), {}
    for k in pairs(s) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do io.write(("%-18s %s\n"):format(k, tostring(s[k]))) end
  elseif cmd == "features" then
    local f = uring.features()
    local function keys(t)
      local out = {}
      for k in pairs(t or {}) do out[#out + 1] = k end
      table.sort(out)
      return table.concat(out, " ")
    end
    io.write("kernel   ", tostring(f.kernel), "\n")
    io.write("entries  ", tostring(f.entries), " (CQ ", tostring(f.cq_entries), ")\n")
    io.write("flags    ", keys(f.flags), "\n")
    io.write("ops      ", keys(f.ops), "\n")
  elseif cmd == "trace" then
    uring.trace(rest == "on")
    io.write("trace ", rest == "on" and "on" or "off", "\n")
  elseif cmd == "cancel" then
    local id = tonumber(rest)
    for _, t in ipairs(uring.tasks()) do
      if t:id() == id and not hidden[t] then
        t:cancel()
        io.write("canceled task ", id, "\n")
        return
      end
    end
    io.write("no task ", tostring(rest), "\n")
  else
    io.write("unknown command :", tostring(cmd), " (try :help)\n")
  end
  io.flush()
end

-- A line source: readline on a terminal, the ring's read of fd 0 otherwise.
local function line_reader(tty)
  local ok, rl = false, nil
  if tty then ok, rl = pcall(require, "uring.readline") end
  if ok then
    return function(prompt)
      rl.install(prompt)
      while true do
        uring.poll(0, "r")
        local line = rl.read_char()
        if line ~= nil then
          if line and line:match("%S") then rl.add_history(line) end
          return line or nil
        end
      end
    end, rl
  end
  local input = assert(uring.fdopen(0, "r"))
  return function(prompt)
    if tty then io.write(prompt); io.flush() end
    local line = input:read("l")
    return line
  end, nil
end

--- repl.main(argv): run the prompt until end of input; returns 0.
function repl.main()
  if uring.current() then
    check.error("main: the prompt runs its own loop: call it outside uring.run")
  end
  local tty = isatty(0)
  _G.uring = uring          -- as the prompt's own global, like lua -l uring
  uring.run(function()
    local self = uring.current()
    local read_line, rl = line_reader(tty)
    local current            -- the chunk task running now, if any
    local sigint
    local watcher = uring.spawn(function()
      while true do
        if not sigint and not sigint_wait() then sigint = uring.signal("INT") end
        if sigint then sigint:wait() end
        if current and current:status() ~= "done" then current:cancel()
        elseif rl then rl.interrupt()
        else io.write("\n"); io.flush() end
      end
    end)
 local hidden = { [self] = true, [watcher] = true }   -- the REPL's own
    if tty then io.write("lua-uring ", uring.version, " -- ", _VERSION, "; :help for commands\n") end
    local buffer
    while true do
      local line = read_line(buffer and ">> " or "> ")
      if line == nil then break end
      if not buffer and line:match("^:") then
        command(line, hidden)
      elseif buffer or line:match("%S") then
        local src = buffer and (buffer .. "\n" .. line) or line
        local fn, err, incomplete = compile(src)
        if not fn and incomplete then
          buffer = src
        else
          buffer = nil
          if not fn then
            io.write(err, "\n")
          else
            current = uring.spawn(function()
              return xpcall(fn, function(e)
                if e == "canceled" or e == "interrupted" then return "canceled" end
                return debug.traceback(tostring(e), 2)
              end)
            end)
            local r = table.pack(current:join())
            current = nil
            if not r[1] or (r[2] == false and r[3] == "canceled") then
              io.write("interrupted\n")
            elseif r[2] == false then
              io.write(tostring(r[3]), "\n")
            else
              print_values(r, 3, r.n)
            end
          end
          io.flush()
        end
      end
    end
    if tty then io.write("\n") end
    if rl then rl.remove() end
    -- end of input: end every task, the servers started at the prompt too
    watcher:cancel()
    for _, t in ipairs(uring.tasks()) do
      if t ~= self then t:cancel() end
    end
    if sigint then sigint:close() end
  end)
  return 0
end

return repl
