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
--
-- A task spawned at the prompt that fails with nobody joining it is
-- printed at once (the core's failure watch), not raised at Ctrl-D.
-- The REPL's own tasks are left out of :trace.  On a terminal, output
-- of background tasks through print and io.write is drawn above the
-- half-typed line, which is then redrawn.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"
local check = require "uring.check"

-- private core functions, taken before init.lua removes them
local failwatch, failures, untraced = core._failwatch, core._failures, core._untraced
-- Ctrl-C that found no Lua running; false when the run does not own
-- SIGINT (the script blocks it): then a uring.signal reads it
local sigint_wait = core._sigint_wait
local untraced_of = core._untraced_of     -- the inspector's tasks: not listed

local repl = {}

local HELP = [[
Enter Lua statements or expressions (=expr works too); each runs as a task.
  :tasks          live tasks: id, status, what each waits on
  :stats          uring.stats()
  :features       uring.features(): kernel, setup flags, supported ops
  :trace on|off   print one line per SQE and CQE of your tasks
  :cancel N       cancel task N
  :inspect [port] a live view in the browser (uring.inspect); :inspect off
  :help           this text
Tab completes names (uring.<Tab>, obj:<Tab>); history is kept in ~/.uring_history.
Ctrl-C cancels the running chunk; Ctrl-D (end of input) exits.]]

local USAGE = [==[
usage: %s [options] [script [args]]
Like lua5.4, with the uring module loaded as the global `uring` and
everything run as tasks of one uring.run (yielding calls work anywhere).
Available options are:
  -e stat   execute string 'stat'
  -i        enter interactive mode after executing 'script' or -e
  -l mod    require library 'mod' into global 'mod'
  -v        show version information
  -E        ignore environment variables (accepted; LUA_INIT is not read)
  -W        turn warnings on
  -h, --help  show this text
  --        stop handling options
  -         stop handling options and execute stdin
With no script and no -e, the prompt reads standard input.
]==]

local function isatty(fd)
  return os.execute("test -t " .. fd) == true
end

-- Where output goes: around each write to the terminal, readline's
-- half-typed line is cleared and then redrawn (rl: the readline module
-- while a prompt is up, else nil).
local rl_active
local raw_write = io.write
local trace_printer

local function out(...)
  local rl = rl_active
  local n = select("#", ...)
  if n > 0 and rl then
    -- io.write's argument check, before the line is hidden: it comes back
    for i = 1, n do
      local v = select(i, ...)
      local t = type(v)
      if t ~= "string" and t ~= "number" then check.typeerror(i, "write", "string", v, 2) end
    end
  end
  if n > 0 and rl and rl.hide() then
    raw_write(...)
    -- the prompt is redrawn on a line of its own
    if tostring((select(n, ...))):sub(-1) ~= "\n" then raw_write("\n") end
    io.stdout:flush()
    rl.show()
  else
    raw_write(...)
  end
end

-- the prompt's print and io.write: they go through out()
local function repl_print(...)
  local n, parts = select("#", ...), {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  out(table.concat(parts, "\t"), "\n")
end

local function repl_write(...)
  if rl_active then
    out(...)
    return io.stdout
  end
  return raw_write(...)
end

-- :trace on: the events of the user's tasks, as uring.trace(true) prints
-- them, on stderr (drawn above the half-typed line).  The prompt's own
-- requests are not traced (core._untraced), but every keystroke still
-- makes an io_uring_enter; an enter is shown only when it carries the
-- user's work: it submits traced SQEs, or traced CQEs follow it.
local function trace_line(e)
  if e.event == "enter" then
    return ("[uring] enter      to_submit=%d min_complete=%d submitted=%d ready=%d @%.6f\n")
      :format(e.to_submit, e.min_complete, e.submitted, e.ready, e.time)
  elseif e.event == "cqe" then
    return ("[uring] cqe %-10s task=%d ud=0x%x res=%d%s %.1fus @%.6f\n"):format(e.op,
      e.task, e.user_data, e.res, e.more and " more" or "", e.elapsed * 1e6, e.time)
  end
  return ("[uring] sqe %-10s task=%d ud=0x%x fd=%d len=%d @%.6f\n")
    :format(e.op, e.task, e.user_data, e.fd, e.len, e.time)
end

function trace_printer()
  local sqes, held = 0, nil     -- traced SQEs since the last enter; an enter not shown yet
  local function put(line)
    local rl = rl_active
    local hid = rl and rl.hide()
    io.stderr:write(line)
    io.stderr:flush()
    if hid then rl.show() end
  end
  return function(e)
    if e.event == "enter" then
      held = nil
      if sqes > 0 then put(trace_line(e)) else held = e end
      sqes = 0
      return
    end
    if e.event == "sqe" then sqes = sqes + 1 end
    if e.event == "cqe" and held then put(trace_line(held)) end
    held = nil
    put(trace_line(e))
  end
end

-- A traceback without the REPL's own frames: the user's frames end where
-- the REPL's xpcall (or the task's C entry) begins.
local function clean_traceback(tb)
  local lines = {}
  for l in tostring(tb):gmatch("[^\n]+") do
    if l:find("in function 'xpcall'", 1, true) then break end
    if not l:find("uring/repl.lua", 1, true) then lines[#lines + 1] = l end
  end
  return table.concat(lines, "\n")
end

-- Print values as the standalone lua prompt does.
local function print_values(t, i, j)
  if j < i then return end
  local parts = {}
  for k = i, j do parts[#parts + 1] = tostring(t[k]) end
  out(table.concat(parts, "\t"), "\n")
  io.stdout:flush()
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
    if not hidden[t] and untraced_of(t) ~= 2 then
      rows[#rows + 1] = ("%4d  %-8s %s"):format(t:id(), t:status(), t:waiting_on() or "")
    end
  end
  table.sort(rows)
  out(#rows == 0 and "no tasks\n" or ("  id  status   waiting on\n" .. table.concat(rows, "\n") .. "\n"))
end

-- :inspect [port] starts the inspector (one at a time), :inspect off
-- stops it; it also ends with the prompt
local inspector
local function inspect_command(rest)
  if rest == "off" then
    if inspector then inspector:close(); inspector = nil; out("inspector closed\n")
    else out("no inspector\n") end
    return
  end
  if inspector and not inspector._stopping then
    out("inspector already at ", inspector:url(), "\n")
    return
  end
  local port = math.tointeger(tonumber(rest))
  if rest ~= "" and not (port and port >= 0 and port <= 65535) then
    out("usage: :inspect [port] (0..65535), or :inspect off\n")
    return
  end
  local insp, msg = uring.inspect(port)
  if not insp then out("inspect: ", tostring(msg), "\n"); return end
  inspector = insp
  out("inspector at ", insp:url(), "\n")
end

local function command(line, hidden)
  local cmd, rest = line:match("^:(%a+)%s*(.-)%s*$")
  if cmd == "help" then out(HELP, "\n")
  elseif cmd == "tasks" then list_tasks(hidden)
  elseif cmd == "stats" then
    local s, keys = uring.stats(), {}
    for k in pairs(s) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do out(("%-18s %s\n"):format(k, tostring(s[k]))) end
  elseif cmd == "features" then
    local f = uring.features()
    local function keys(t)
      local r = {}
      for k in pairs(t or {}) do r[#r + 1] = k end
      table.sort(r)
      return table.concat(r, " ")
    end
    out("kernel   ", tostring(f.kernel), "\n")
    out("entries  ", tostring(f.entries), " (CQ ", tostring(f.cq_entries), ")\n")
    out("flags    ", keys(f.flags), "\n")
    out("ops      ", keys(f.ops), "\n")
  elseif cmd == "trace" then
    uring.trace(rest == "on" and trace_printer() or false)
    out("trace ", rest == "on" and "on" or "off", "\n")
  elseif cmd == "inspect" then
    inspect_command(rest)
  elseif cmd == "cancel" then
    local id = tonumber(rest)
    for _, t in ipairs(uring.tasks()) do
      if t:id() == id and not hidden[t] then
        t:cancel()
        out("canceled task ", id, "\n")
        return
      end
    end
    out("no task ", tostring(rest), "\n")
  else
    out("unknown command :", tostring(cmd), " (try :help)\n")
  end
  io.stdout:flush()
end

-- Tab completion: the names reachable from a value: a table's keys and,
-- through metatables whose __index is a table, its methods (a uring.file,
-- a socket).  No __index function is called: completing runs no user code.
local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false",
  "for", "function", "goto", "if", "in", "local", "nil", "not", "or",
  "repeat", "return", "then", "true", "until", "while" }

local function field(v, name)
  for _ = 1, 16 do
    local r = type(v) == "table" and rawget(v, name) or nil
    if r ~= nil then return r end
    local mt = debug.getmetatable(v)
    local index = mt and rawget(mt, "__index")
    if type(index) ~= "table" then return nil end
    v = index
  end
end

local function names(v, methods_only, into)
  for _ = 1, 16 do
    if type(v) == "table" then
      for k, x in next, v do
        if type(k) == "string" and k:match("^[%a_][%w_]*$")
            and (not methods_only or type(x) == "function") then
          into[k] = true
        end
      end
    end
    local mt = debug.getmetatable(v)
    local index = mt and rawget(mt, "__index")
    if type(index) ~= "table" then return into end
    v = index
  end
  return into
end

function repl.complete(word)
  if type(word) ~= "string" then check.typeerror(1, "complete", "string", word) end
  local path, sep, partial = word:match("^(.-)([.:]?)([%w_]*)$")
  if not path then return {} end
  local found = {}
  if sep == "" then
    if path ~= "" then return {} end
    names(_G, false, found)
    for _, k in ipairs(KEYWORDS) do found[k] = true end
  else
    local v = _G
    for name, dot in (path .. "."):gmatch("([^.:]*)(.)") do
      if dot ~= "." or not name:match("^[%a_][%w_]*$") then return {} end
      v = field(v, name)
      if v == nil then return {} end
    end
    names(v, sep == ":", found)
  end
  local r = {}
  for k in pairs(found) do
    if k:sub(1, #partial) == partial then r[#r + 1] = path .. sep .. k end
  end
  table.sort(r)
  return r
end

local function history_path()
  local home = os.getenv("HOME")
  if home and home ~= "" then return home .. "/.uring_history" end
end

-- A line source: readline on a terminal, the ring's read of fd 0 otherwise.
local function line_reader(tty)
  local ok, rl = false, nil
  if tty then ok, rl = pcall(require, "uring.readline") end
  if ok then
    local hist = history_path()
    if hist then rl.read_history(hist) end
    rl.set_completer(repl.complete)
    return function(prompt)
      rl.install(prompt)
      rl_active = rl
      while true do
        if not rl.pending() then uring.poll(0, "r") end
        local line = rl.read_char()
        if line ~= nil then
          rl_active = nil
          if line and line:match("%S") then
            rl.add_history(line)
            if hist then rl.append_history(hist) end
          end
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

-- The prompt, inside the run: returns at end of input, having ended every
-- task but its caller's.
local function prompt(tty, banner)
  local self = uring.current()
  untraced()
  local read_line, rl = line_reader(tty)
  local current            -- the chunk task running now, if any
  local sigint
  local watcher = uring.spawn(function()
    untraced()
    while true do
      if not sigint and not sigint_wait() then sigint = uring.signal("INT") end
      if sigint then sigint:wait() end
      if current and current:status() ~= "done" then current:cancel()
      elseif rl then rl.interrupt()
      else io.write("\n"); io.flush() end
    end
  end)
  -- tasks spawned at the prompt that fail unjoined: printed as they fail
  failwatch(true)
  local reporter = uring.spawn(function()
    untraced()
    while true do
      for _, f in ipairs(failures()) do
        out(("task %d failed: %s\n"):format(f.task:id(), clean_traceback(f.traceback)))
        io.stdout:flush()
      end
    end
  end)
  local hidden = { [self] = true, [watcher] = true, [reporter] = true }
  local saved_print, saved_write = _G.print, io.write
  _G.print, io.write = repl_print, repl_write
  if banner then out(banner) end
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
          out(err, "\n")
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
            out("interrupted\n")
          elseif r[2] == false then
            out(clean_traceback(r[3]), "\n")
          else
            print_values(r, 3, r.n)
          end
        end
        io.stdout:flush()
      end
    end
  end
  if tty then io.write("\n") end
  if rl then rl.remove() end
  _G.print, io.write = saved_print, saved_write
  -- end of input: end every task, the servers started at the prompt too
  failwatch(false)
  for _, t in ipairs(uring.tasks()) do
    if t ~= self then t:cancel() end
  end
  if sigint then sigint:close() end
end

-- Options as lua.c reads them: returns {actions}, script index, flags;
-- or nil, message for a usage error.
local function parse(argv)
  local o = { actions = {}, interactive = false, version = false }
  local i = 1
  while argv[i] ~= nil do
    local a = argv[i]
    if a == "--" then i = i + 1; break
    elseif a == "-" then break
    elseif a == "-h" or a == "--help" then o.help = true
    elseif a == "-i" then o.interactive = true; o.version = true
    elseif a == "-v" then o.version = true
    elseif a == "-W" then o.warn = true
    elseif a == "-E" then                         -- LUA_INIT is never read here
    elseif a == "-e" or a == "-l" then
      local v = argv[i + 1]
      if v == nil then return nil, ("'%s' needs argument"):format(a) end
      o.actions[#o.actions + 1] = { a, v }
      i = i + 1
    elseif a:match("^%-e.") or a:match("^%-l.") then
      o.actions[#o.actions + 1] = { a:sub(1, 2), a:sub(3) }
    elseif a:sub(1, 1) == "-" then
      return nil, ("unrecognized option '%s'"):format(a)
    else break end
    i = i + 1
  end
  o.script = argv[i] ~= nil and i or nil
  return o
end

-- The global `arg` as lua.c builds it: the script at 0, its arguments
-- after, the interpreter and options at negative indices.
local function script_arg(argv, script)
  local a = {}
  local lo = 0
  while argv[lo - 1] ~= nil do lo = lo - 1 end
  local base = script or (#argv + 1)
  for k = lo, #argv do a[k - base] = argv[k] end
  return a
end

local function fail(progname, msg)
  io.stderr:write(progname, ": ", clean_traceback(msg), "\n")
  io.stderr:flush()
end

--- repl.main(argv) -> exit status: the command line of bin/uring-repl,
-- as lua5.4's (argv: its global `arg`).
function repl.main(argv)
  argv = argv or {}
  if uring.current() then
    check.error("main: the prompt runs its own loop: call it outside uring.run")
  end
  local progname = (argv[0] or "uring-repl"):match("[^/]*$")
  local o, usage_err = parse(argv)
  if not o or o.help then
    local f = o and io.stdout or io.stderr
    if usage_err then f:write(progname, ": ", usage_err, "\n") end
    f:write(USAGE:format(progname))
    return o and 0 or 1
  end
  local banner = ("lua-uring %s -- %s; :help for commands\n"):format(uring.version, _VERSION)
  if o.version then io.write(banner) end
  if o.warn then warn("@on") end
  _G.uring = uring          -- as the prompt's own global, like lua -l uring
  local interactive = o.interactive or (not o.script and #o.actions == 0 and not o.version)
  local tty = isatty(0)
  local ok, err = pcall(uring.run, function()
    local handler = function(e)
      if e == "canceled" or e == "interrupted" then return "canceled" end
      return debug.traceback(tostring(e), 2)
    end
    for _, act in ipairs(o.actions) do
      local fn, cerr
      if act[1] == "-e" then
        fn, cerr = load(act[2], "=(command line)", "t")
        if not fn then error(cerr, 0) end
        local r = table.pack(xpcall(fn, handler))
        if not r[1] then error(r[2], 0) end
      else
        local name, mod = act[2]:match("^([^=]+)=(.+)$")
        if not name then name, mod = act[2], act[2] end
        _G[name] = require(mod)
      end
    end
    if o.script then
      local path = argv[o.script]
      _G.arg = script_arg(argv, o.script)
      local fn, cerr = loadfile(path ~= "-" and path or nil, "t")
      if not fn then error(cerr, 0) end
      local r = table.pack(xpcall(fn, handler, table.unpack(argv, o.script + 1, #argv)))
      if not r[1] then error(r[2], 0) end
    end
    if interactive then
      prompt(tty, tty and not o.version and banner or nil)
    end
  end)
  if not ok then
    if err == "interrupted" then return 130 end
    fail(progname, err)
    return 1
  end
  return 0
end

return repl
