--- spec/fuzz/tracked.lua: objects whose every byte the fuzzer follows.
--
-- Issue 11: an fd belongs to the kernel until the last CQE of every
-- request that names it (DESIGN.md, principle 3).  The random calls of
-- program.lua cannot tell where bytes went (every write sends the same
-- text), so a program may also hold "tracked" objects, in slots of their
-- own, and steps that act on them:
--
--   new    make one: a TCP or Unix connection to a sink, a UDP socket, a
--          file to write (stream or pwrite regions) or read, either end
--          of uring.pipe(), a popen or exec pipe, a listener, a signal,
--          a uring.fdopen dup of another tracked object, an io.open file
--   op     an op on one (send, write, pwrite, sendto, recv, receive,
--          read, recvfrom, accept, a dial to a listener, a signal wait)
--   cq     close while an op is queued: the op runs in a new task, and
--          this task closes the object in the same loop turn (before any
--          submit), or once the op is in flight; then opens new fds at
--          once (dups of a live object, pipes, io.open, uring.open,
--          connects, ...) so that a number freed too early is taken
--   close, reuse, drop   close one, open fds to reuse numbers, drop one
--          for the collector
--
-- Every byte is tagged with where it was meant to go: an op's data is a
-- unit "<letter><object>.<op>;" repeated, a reader's stream is lines
-- "i<object>.<n>:", a UDP datagram "u<object>.<n>;".  The oracle:
--   * readers: every read returns the next bytes of its own stream
--     (checked as they come: a stolen or foreign byte shows at once)
--   * writers: what reached the sink (the peer of a connection, the
--     drained end of a pipe, a file, what cat wrote for popen/exec) is
--     exactly each op's reported bytes, in op order: success = all of
--     it, a failed send or pwrite = its 4th value, a cancelled op = some
--     prefix; nothing of another object, nothing twice
--   * a UDP datagram arrives from its own socket's port, at most once,
--     and never when sendto said it failed; a listener accepts only
--     connections dialled to it; a signal wait returns its signal
--   * an op ended by a close says nil, "closed", EBADF (or an error the
--     world explains: EPIPE, ECONNRESET, its own timeout), never
--     ECANCELED or a raw EBADF; each op ended exactly once
--   * an io.open file opened only to take a number stays empty
-- program.lua still checks inflight == 0 and the fd count at the end.
local M = {}

---------------------------------------------------------------- generation
-- Everything a step needs is drawn here, from the generator's R, before
-- anything runs (object and op numbers are given at run time).

local NT = 8                                  -- tracked slots

local KINDS = {
  { "tcp", 3 }, { "unix", 2 }, { "udp", 2 }, { "file_w", 2 }, { "file_p", 1.5 },
  { "file_r", 1.5 }, { "pipe_w", 2.5 }, { "pipe_r", 2 }, { "popen_w", 0.5 },
  { "popen_r", 0.5 }, { "exec_w", 0.4 }, { "exec_r", 0.4 }, { "listener", 1.5 },
  { "signal", 1 }, { "dup", 1.5 }, { "ioopen", 0.5 },
}
-- what "open fds to reuse numbers" opens: the cheap ones (dup, pipe,
-- io.open) take the number in the same turn as the close
local REUSE = {
  { "dup", 4 }, { "pipe_w", 1.5 }, { "pipe_r", 1 }, { "ioopen", 1 }, { "file_w", 1 },
  { "file_p", 0.5 }, { "file_r", 0.5 }, { "tcp", 1 }, { "unix", 0.5 }, { "udp", 1 },
  { "listener", 0.7 }, { "signal", 0.5 },
}
local STEPS = { { "new", 3 }, { "op", 7 }, { "cq", 5 }, { "close", 1 }, { "reuse", 1 }, { "drop", 0.4 } }
local OUTLEN = { 1, 16, 100, 1000, 4000, 20000, 70000, 200000 }
local INLEN = { 0, 100, 3000, 20000, 100000 }
local TIMEOUTS = { 0, 0.001, 0.005, 0.02 }

local function weighted(R, t)
  local total = 0
  for _, x in ipairs(t) do total = total + x[2] end
  local w = R() * total
  for _, x in ipairs(t) do
    w = w - x[2]
    if w < 0 then return x[1] end
  end
  return t[#t][1]
end

-- Returns gen(): one tracked step, and newkind(): a "new" step.
function M.generator(R)
  local function pick(t) return t[R(#t)] end
  local function newstep(kind)
    return { "t", "new", R(NT), kind or weighted(R, KINDS), pick(INLEN), R(1000) }
  end
  local function reusers()
    local t = {}
    for i = 1, R(1, 4) do t[i] = { R(NT), weighted(R, REUSE), pick(INLEN), R(1000) } end
    return t
  end
  local function gen()
    local s = weighted(R, STEPS)
    if s == "new" then return newstep() end
    if s == "op" then
      local st = { "t", "op", R(NT), R(1000), pick(OUTLEN) }
      if R() < 0.1 then st.timeout = pick(TIMEOUTS) end
      return st
    end
    if s == "cq" then
      -- mode 1: closed in the turn the op was prepared in; 2: after one
      -- more turn (submitted); 3: after a short sleep (in flight)
      return { "t", "cq", R(NT), R(1000), pick(OUTLEN), pick { 1, 1, 2, 3 }, reusers() }
    end
    if s == "reuse" then return { "t", "reuse", reusers() } end
    return { "t", s, R(NT) }
  end
  return gen, newstep
end

-- Ring calls that name a raw fd number and use it later (at submit): if
-- the object behind it closed meanwhile, they read, write or close
-- whatever took the number -- the caller's bug by the teaching API's
-- contract, and a false finding here.  Programs with tracked objects
-- leave them out.
M.RAW_FD_OPS = {
  prep_read = true, prep_write = true, prep_readv = true, prep_writev = true,
  prep_send = true, prep_send_zc = true, prep_recv = true, prep_close = true,
  prep_read_fixed = true, prep_cancel_fd = true,
}

------------------------------------------------------------------- running

local uring, TDIR, finding_, trace
local E
local pack, unpack = table.pack, table.unpack

local T = {
  slots = {}, all = {}, byid = {}, conns = {}, allops = {}, dialers = {},
  sinktasks = {}, sinkobjs = {}, nextid = 0, closing = false, on = false,
  stats = { objects = 0, ops = 0, cq = 0, reused = 0, closed = 0, cq_closed = 0, cq_done = 0,
    cq_failed = 0, cq_raised = 0, cq_none = 0 },
}
M.stats = T.stats

function M.init(u, dir, finding, tracefile)
  uring, finding_, trace = u, finding, tracefile
  TDIR = dir .. "/T"
  E = uring.errno
end

------------------------------------------------------------ tags, streams

local function outunit(o, k) return string.char(65 + (k - 1) % 26) .. o .. "." .. k .. ";" end
local function outdata(o, k, n)
  local u = outunit(o, k)
  return u:rep(n // #u + 1):sub(1, n)
end

local function instream(e)
  if not e.instr then
    local parts, len, n = {}, 0, 0
    while len < e.inN do
      n = n + 1
      local l = ("i%d.%d:%s\n"):format(e.id, n, ("-"):rep(n % 37))
      parts[n] = l
      len = len + #l
    end
    e.instr = table.concat(parts):sub(1, e.inN)
  end
  return e.instr
end

local function dgram(o, n) return ("u%d.%d;"):format(o, n) .. ("="):rep((n * 37) % 300) end

local function snippet(s, n)
  s = s or ""
  local cut = #s > (n or 48)
  s = s:sub(1, n or 48):gsub("[%c\128-\255]", function(c)
    if c == "\n" then return "\\n" end
    return ("\\%d"):format(c:byte())
  end)
  return '"' .. s .. '"' .. (cut and "..." or "")
end

-- Whose bytes are these?  Names the first tag found in s.
local function whose(s)
  s = s or ""
  local how = {
    { "([A-Z])(%d+)%.(%d+);", "written by object %s op %s" },
    { "i(%d+)%.(%d+):", "of the stream object %s reads (line %s)" },
    { "u(%d+)%.(%d+);", "of a datagram for object %s (%s)" },
    { "H(%d+)\n", "of object %s's hello" },
    { "C(%d+)%.(%d+)\n", "of a dial to listener %s (%s)" },
  }
  local best, at
  for _, h in ipairs(how) do
    local i, _, a, b, c = s:find(h[1])
    if i and (not at or i < at) then
      at = i
      if c then best = h[2]:format(b, c) else best = h[2]:format(a, b) end
      local o = T.byid[tonumber(c and b or a)]
      if o then best = best .. " (" .. o.kind .. ")" end
    end
  end
  if best then return (" -- bytes %s, at +%d"):format(best, at - 1) end
  if s:find("^[%w\n]") then return " -- untagged bytes" end
  return ""
end

local function describe(e)
  local parts = {}
  for i, rec in ipairs(e.ops) do
    if i > 40 then parts[#parts + 1] = "..."; break end
    parts[#parts + 1] = ("%d:%d->%s"):format(rec.k, rec.len,
      rec.exact and tostring(rec.exact) or "?")
  end
  return ("object %d (%s%s%s): ops %s"):format(e.id, e.kind,
    e.closed and ", closed" or "", e.dropped and ", dropped" or "",
    table.concat(parts, " "))
end

local function finding(what) finding_("tracked: " .. what) end

-- A task body of ours: a cancel (the deadline, a random task:cancel) is
-- an answer; any other error is the fuzzer's own bug, shown on stderr.
local function guard(fn, ...)
  local ok, err = xpcall(fn, debug.traceback, ...)
  if not ok and not tostring(err):find("^canceled") and not tostring(err):find("timeout") then
    io.stderr:write("@@tracked error: ", tostring(err), "\n")
  end
end
M.guard = guard

------------------------------------------------------------------ entries

local function newentry(kind)
  T.nextid = T.nextid + 1
  local e = { id = T.nextid, kind = kind, ops = {}, inpos = 0, inN = 0, pend = 0 }
  T.byid[e.id] = e
  return e
end

local function obj_of(e) return e.obj or (e.weak and e.weak[1]) end

local close_entry
local function commit(e, ts)
  T.all[#T.all + 1] = e
  T.slots[ts] = e
  T.stats.objects = T.stats.objects + 1
  if T.closing then close_entry(e) end    -- made while finish() closed the rest
end

-- The live entry in slot ts, or the next live one.
local function live(ts, pred)
  for i = 0, NT - 1 do
    local e = T.slots[(ts + i - 1) % NT + 1]
    if e and not e.closed and e.obj and (not pred or pred(e)) then return e end
  end
end

local PROC = { popen_w = true, popen_r = true }

function close_entry(e)
  if e.closed then return end
  if trace then trace:write("@@tracked close ", e.id, " ", e.kind, "\n") end
  e.closed = true
  local o = obj_of(e)
  if o == nil then return end
  -- popen's close waits for the child, which ends when every copy of
  -- its pipe is closed (a dup may still hold one): then its output file
  -- is complete
  local r = pack(pcall(o.close, o))
  if PROC[e.kind] and r[1] and (r[2] == true or r[3] == "exit" or r[3] == "signal") then
    e.exited = true
  end
  if trace then
    trace:write("@@tracked closed ", e.id, ": ", tostring(r[1]), " ", tostring(r[2]), " ",
      tostring(r[3]), "\n")
  end
  -- close() marks the object closed at once, whatever else happens
  -- (DESIGN.md, principle 3): a close that raised must not leave it open
  if e.kind ~= "ioopen" then
    local ok, fd = pcall(function() return o:fd() end)
    if ok and math.type(fd) == "integer" then
      finding(("object %d (%s): close() %s %s and left it open (fd %d)"):format(e.id, e.kind,
        r[1] and "returned" or "raised", tostring(r[2]), fd))
    end
  end
end

------------------------------------------------------------------- sinks

-- A task on the far side of tracked objects; what names it in a trace.
T.sinkwhat = {}
local function spawn_sink(what, fn, ...)
  local t = uring.spawn(guard, fn, ...)
  T.sinktasks[#T.sinktasks + 1] = t
  T.sinkwhat[#T.sinktasks] = what
  return t
end

-- A sink connection: everything the tracked end sends, after its hello
-- line "H<id>\n" says whose it is; then the inbound stream goes back.
local function sink_conn(c, family)
  local conn = { chunks = {}, family = family, head = "" }
  T.conns[#T.conns + 1] = conn
  T.sinkobjs[#T.sinkobjs + 1] = c
  while true do
    local ok, d, msg = pcall(c.recv, c, 65536)
    if not ok then conn.err = tostring(d); break end
    if not d then
      conn.eof = msg == "closed"
      conn.err = msg
      break
    end
    if conn.owner == nil and not conn.bad then
      conn.head = conn.head .. d
      local id, rest = conn.head:match("^H(%d+)\n(.*)$")
      if id then
        id = tonumber(id)
        local e = T.byid[id]
        conn.owner = id
        conn.chunks[1] = rest
        if e == nil or e.conn then
          conn.bad = ("a second connection says it is object %d's"):format(id)
        else
          e.conn = conn
          if e.inN > 0 then
            spawn_sink("inbound " .. id, function() pcall(c.send, c, instream(e)) end)
          end
        end
      elseif not conn.head:match("^H%d*$") then
        conn.bad = "bytes before any hello: " .. snippet(conn.head) .. whose(conn.head)
      end
    elseif not conn.bad then
      conn.chunks[#conn.chunks + 1] = d
    end
  end
  conn.done = true
  pcall(c.close, c)
end

local function acceptor(l, family)
  while true do
    local ok, c = pcall(l.accept, l)
    if not ok or not c then return end
    spawn_sink("sink " .. family, sink_conn, c, family)
  end
end

-- The UDP sink: a datagram must come from its sender's port, whole, once.
local function udp_sink(u)
  while true do
    local ok, d, _, port = pcall(u.recvfrom, u)
    if not ok or not d then return end
    local o, k = d:match("^[A-Z](%d+)%.(%d+);")
    local e = T.byid[tonumber(o)]
    local rec = e and e.ops[tonumber(k)]
    if not rec or d ~= outdata(e.id, rec.k, rec.len) then
      finding("the UDP sink got a datagram no sendto sent: " .. snippet(d) .. whose(d))
    end
    if port ~= e.port then
      finding(("a datagram of object %d op %d came from port %s, not its own %s (another socket sent it)")
        :format(e.id, rec.k, tostring(port), tostring(e.port)))
    end
    rec.arrived = (rec.arrived or 0) + 1
  end
end

local function drainer(e, r)
  local parts = {}
  while true do
    local ok, s, msg = pcall(r.read, r, 65536)
    if not ok or s == nil then
      e.sinkdone = ok and msg == nil              -- EOF, not a failure
      break
    end
    parts[#parts + 1] = s
  end
  e.sink = table.concat(parts)
  pcall(r.close, r)
end

local function feeder(e, w)
  local ok, a = pcall(w.write, w, instream(e))
  e.fed = ok and a == w
  pcall(w.close, w)
end

function M.start()
  assert(uring.mkdir(TDIR))
  T.tcp = assert(uring.listen("127.0.0.1", 0))
  T.tcpport = select(2, T.tcp:getsockname())
  T.unixpath = TDIR .. "/sink.sock"
  T.unix = assert(uring.listen_unix(T.unixpath))
  T.udpsink = assert(uring.udp("127.0.0.1", 0))
  T.udpport = select(2, T.udpsink:getsockname())
  T.udpfeed = assert(uring.udp("127.0.0.1", 0))
  -- these end when finish() closes their sockets, after the others
  T.permanent = {
    uring.spawn(guard, acceptor, T.tcp, "tcp"), uring.spawn(guard, acceptor, T.unix, "unix"),
    uring.spawn(guard, udp_sink, T.udpsink),
  }
  T.on = true
end

------------------------------------------------------------------ making

local SIGS = { { "WINCH", 28 }, { 23, 23 } }      -- both ignored by default

local function inpath(e)
  local p = TDIR .. "/in" .. e.id
  local f = assert(io.open(p, "w"))
  f:write(instream(e))
  f:close()
  return p
end

local MAKE = {}
local function stream_sock(e, s)
  if not s then return nil end
  local hello = ("H%d\n"):format(e.id)
  if s:send(hello) ~= #hello then pcall(s.close, s); return nil end
  if e.r % 5 == 0 then s:settimeout(e.r % 2 == 0 and 0.05 or 0.3) end
  e.timeouts = e.r % 5 == 0
  return s
end
function MAKE.tcp(e) return stream_sock(e, uring.connect("127.0.0.1", T.tcpport)) end
function MAKE.unix(e) return stream_sock(e, uring.connect_unix(T.unixpath)) end
function MAKE.udp(e)
  local u = uring.udp("127.0.0.1", 0)
  if not u then return nil end
  e.port = select(2, u:getsockname())
  e.inN = e.inN > 0 and 1 + e.r % 6 or 0         -- datagrams, not bytes
  if e.r % 7 == 0 then u:settimeout(0.05); e.timeouts = true end
  if e.inN > 0 then
    spawn_sink("udp feed " .. e.id, function()
      for n = 1, e.inN do
        local ok, sent = pcall(T.udpfeed.sendto, T.udpfeed, dgram(e.id, n), "127.0.0.1", e.port)
        if not ok or not sent then e.feedbroken = true; return end
      end
    end)
  end
  return u
end
function MAKE.file_w(e)
  local f = uring.open(TDIR .. "/t" .. e.id, "w")
  if f then f:setvbuf("no") end    -- a write's success means the kernel has it
  e.path = TDIR .. "/t" .. e.id
  return f
end
function MAKE.file_p(e)
  e.path = TDIR .. "/t" .. e.id
  return uring.open(e.path, "w")
end
function MAKE.file_r(e)
  if e.inN == 0 then e.inN = 100 end
  e.fed = true
  return uring.open(inpath(e), "r")
end
function MAKE.pipe_w(e)
  local r, w = uring.pipe()
  if not r then return nil end
  T.sinkobjs[#T.sinkobjs + 1] = r
  w:setvbuf("no")
  spawn_sink("drainer " .. e.id, drainer, e, r)
  return w
end
function MAKE.pipe_r(e)
  local r, w = uring.pipe()
  if not r then return nil end
  T.sinkobjs[#T.sinkobjs + 1] = w
  spawn_sink("feeder " .. e.id, feeder, e, w)
  return r
end
function MAKE.popen_w(e)
  e.path = TDIR .. "/t" .. e.id
  local f = uring.popen("exec cat > '" .. e.path .. "'", "w")
  if f then f:setvbuf("no") end
  return f
end
function MAKE.popen_r(e)
  if e.inN == 0 then e.inN = 100 end
  e.fed = true
  return uring.popen("exec cat '" .. inpath(e) .. "'", "r")
end
function MAKE.exec_w(e)
  e.path = TDIR .. "/t" .. e.id
  local p = uring.exec { "sh", "-c", "exec cat > '" .. e.path .. "'", stdin = "pipe",
    stdout = "null", stderr = "null" }
  if not p then return nil end
  e.proc = p
  p.stdin:setvbuf("no")
  return p.stdin
end
function MAKE.exec_r(e)
  if e.inN == 0 then e.inN = 100 end
  e.fed = true
  local p = uring.exec { "cat", inpath(e), stdin = "null", stdout = "pipe", stderr = "null" }
  if not p then return nil end
  e.proc = p
  return p.stdout
end
function MAKE.listener(e)
  local l = uring.listen("127.0.0.1", 0)
  if l then e.port = select(2, l:getsockname()) end
  return l
end
function MAKE.signal(e)
  local s = SIGS[e.r % #SIGS + 1]
  e.signo = s[2]
  return uring.signal(s[1])
end
-- a dup of a live object (one of the closed one's kind, when there is):
-- uring.fdopen dups to the lowest free number
function MAKE.dup(e)
  local v = (e.like and live(e.r % NT + 1, function(x) return x.kind == e.like end))
    or live(e.r % NT + 1, function(x) return x.kind ~= "ioopen" end)
  if not v then return nil end
  e.victim = v.id
  return uring.fdopen(v.obj:fd(), e.r % 2 == 0 and "r" or "w")
end
function MAKE.ioopen(e)
  e.path = TDIR .. "/x" .. e.id
  return io.open(e.path, "w")
end

-- Make a tracked object; nil if that failed (it is then forgotten: a
-- half-made object is closed by the collector).
local function make(kind, inN, r, like)
  local e = newentry(kind)
  e.inN, e.r, e.like = inN, r, like
  local ok, obj = pcall(MAKE[kind], e)
  if not ok or not obj or type(obj) == "string" then
    e.failed = true
    if trace then trace:write("@@tracked make ", kind, " failed: ", tostring(obj), "\n") end
    return nil
  end
  e.obj = obj
  if trace then
    local ok, fd = pcall(function() return obj:fd() end)
    trace:write("@@tracked make ", e.id, " ", kind, " fd ", tostring(ok and fd), "\n")
  end
  return e
end

------------------------------------------------------------------ ops

local WORLD                                   -- errors a peer explains
local function checkfail(e, rec, msg, en)
  WORLD = WORLD or { [E.EPIPE] = true, [E.ECONNRESET] = true }
  rec.result = ("nil, %s, %s"):format(tostring(msg), tostring(en))
  if msg == "closed" and e.closed then T.stats.closed = T.stats.closed + 1 end
  if en == E.ECANCELED or (en == E.EBADF and msg ~= "closed") then
    finding(("%s: op %s ended with %s: a cancelled op says nil, \"closed\", EBADF")
      :format(describe(e), tostring(rec.k or rec.what), rec.result))
  end
  if msg == "closed" and en ~= nil and en ~= E.EBADF and math.type(en) == "integer" then
    finding(("%s: op %s ended with %s: \"closed\" goes with EBADF")
      :format(describe(e), tostring(rec.k or rec.what), rec.result))
  end
  if e.closed and not (msg == "closed" and (en == E.EBADF or en == nil or type(en) == "string"))
      and not WORLD[en] and msg ~= "timeout" then
    finding(("%s: op %s was closed under and ended with %s, not nil, \"closed\", EBADF")
      :format(describe(e), tostring(rec.k or rec.what), rec.result))
  end
end

local function call(rec, f, ...)
  if T.box then T.box.rec, T.box = rec, nil end      -- a cq step's op
  T.allops[#T.allops + 1] = rec
  T.stats.ops = T.stats.ops + 1
  rec.ended = 0
  local r
  if rec.timeout then r = pack(pcall(uring.timeout, rec.timeout, f, ...))
  else r = pack(pcall(f, ...)) end
  rec.ended = rec.ended + 1
  return r
end

-- An error raised by a method that never started (the object was closed
-- or busy) did nothing; any other raise (a cancel) may have done part.
local function never_started(err)
  err = tostring(err)
  return err:find("busy", 1, true) or err:find("attempt to use a closed", 1, true)
    or err:find("listening", 1, true)
end

local function out_op(e, len, tmo)
  local o = e.obj
  local k = #e.ops + 1
  local rec = { k = k, len = len, timeout = tmo }
  e.ops[k] = rec
  local data = outdata(e.id, k, len)
  local r
  if e.kind == "file_p" then
    rec.base = e.pend
    e.pend = e.pend + len
    r = call(rec, o.pwrite, o, data, rec.base)
  elseif e.kind == "tcp" or e.kind == "unix" then r = call(rec, o.send, o, data)
  elseif e.kind == "udp" then
    -- a datagram is whole or nothing: long enough to name its sender
    rec.len = math.max(#outunit(e.id, k), math.min(len, 1400 + len % 7))
    data = outdata(e.id, k, rec.len)
    r = call(rec, o.sendto, o, data, "127.0.0.1", T.udpport)
  else r = call(rec, o.write, o, data) end
  if not r[1] then
    rec.result = "raised " .. tostring(r[2])
    if never_started(r[2]) then rec.exact = 0 end
    -- a sendto that raised sent nothing (udp.c reports what went out)
    if e.kind == "udp" and not rec.timeout then rec.exact = 0 end
    return
  end
  local v = r[2]
  if v ~= nil then
    rec.result = tostring(v)
    if math.type(v) == "integer" then
      if v ~= rec.len then
        finding(("%s: op %d returned %d for %d bytes"):format(describe(e), k, v, rec.len))
      end
    elseif v ~= o then
      finding(("%s: op %d returned %s"):format(describe(e), k, tostring(v)))
    end
    rec.exact = rec.len
    return
  end
  local msg, en, n = r[3], r[4], r[5]
  checkfail(e, rec, msg, en)
  if rec.timeout and msg == "timeout" and n == nil then return end     -- the scope's
  if e.kind == "udp" then rec.exact = 0; return end
  if e.kind == "file_p" or e.kind == "tcp" or e.kind == "unix" then
    if math.type(n) ~= "integer" or n < 0 or n >= rec.len then
      finding(("%s: op %d of %d bytes failed (%s) with count %s: a failed send or pwrite says how many bytes went out")
        :format(describe(e), k, rec.len, rec.result, tostring(n)))
    end
    rec.exact = n
  end
  -- a failed file:write does not say how much went out: some prefix
end

-- the next bytes of e's inbound stream, or a finding
local function consume(e, rec, s, line)
  local stream = instream(e)
  local want = stream:sub(e.inpos + 1, e.inpos + #s)
  if s ~= want then
    finding(("%s: %s read %d bytes at offset %d of its stream that are not the next ones: got %s, want %s%s")
      :format(describe(e), rec.what, #s, e.inpos, snippet(s), snippet(want), whose(s)))
  end
  e.inpos = e.inpos + #s
  if line then
    if stream:sub(e.inpos + 1, e.inpos + 1) == "\n" then e.inpos = e.inpos + 1
    elseif e.inpos < #stream then
      finding(("%s: %s returned a line that stops before its newline at %d")
        :format(describe(e), rec.what, e.inpos))
    end
  end
end

local READN = { 1, 7, 100, 4096, 70000 }

local function in_op(e, r1, tmo)
  local o = e.obj
  local rec = { timeout = tmo }
  local kind = e.kind
  local r
  if kind == "tcp" or kind == "unix" then
    local w, n = r1 % 3, READN[r1 % #READN + 1]
    if w == 0 then
      rec.what = "recv(" .. n .. ")"
      r = call(rec, o.recv, o, n)
    elseif w == 1 then
      rec.what = "receive(" .. n .. ")"
      r = call(rec, o.receive, o, n)
    else
      rec.what = "receive(\"*l\")"
      r = call(rec, o.receive, o, "*l")
    end
    if not r[1] then rec.result = "raised " .. tostring(r[2]); return end
    if type(r[2]) == "string" then return consume(e, rec, r[2], w == 2) end
    -- nil, "closed", partial at EOF (the partial is taken)
    if type(r[4]) == "string" then consume(e, rec, r[4], false) end
    return checkfail(e, rec, r[3], r[4])
  elseif kind == "udp" then
    rec.what = "recvfrom"
    r = call(rec, o.recvfrom, o)
    if not r[1] then rec.result = "raised " .. tostring(r[2]); return end
    if type(r[2]) == "string" then
      local d = r[2]
      local want = dgram(e.id, e.inpos + 1)
      if d ~= want then
        local a, b = d:match("^u(%d+)%.(%d+);")
        -- datagrams lost by a broken feed may leave gaps
        if not (e.feedbroken and tonumber(a) == e.id and tonumber(b) > e.inpos) then
          finding(("%s: recvfrom got %s, want %s%s"):format(describe(e), snippet(d),
            snippet(want), whose(d)))
        end
        e.inpos = tonumber(b) or e.inpos
      else
        e.inpos = e.inpos + 1
      end
      return
    end
    return checkfail(e, rec, r[3], r[4])
  else                                            -- a file, pipe or process pipe
    local w = r1 % 3
    local fmt = w == 0 and READN[r1 % #READN + 1] or (w == 1 and "l" or "L")
    rec.what = "read(" .. tostring(fmt) .. ")"
    r = call(rec, o.read, o, fmt)
    if not r[1] then rec.result = "raised " .. tostring(r[2]); return end
    if type(r[2]) == "string" then return consume(e, rec, r[2], fmt == "l") end
    if r[3] == nil then                          -- EOF
      if e.fed and e.inpos ~= e.inN and not e.closed then
        finding(("%s: %s met EOF at %d of its %d bytes"):format(describe(e), rec.what,
          e.inpos, e.inN))
      end
      return
    end
    return checkfail(e, rec, r[3], r[4])
  end
end

local function accept_op(e, tmo)
  local o = e.obj
  local rec = { what = "accept", timeout = tmo }
  local r = call(rec, o.accept, o)
  if not r[1] then rec.result = "raised " .. tostring(r[2]); return end
  local c = r[2]
  if not c then return checkfail(e, rec, r[3], r[4]) end
  local ok, line = pcall(uring.timeout, 1, c.receive, c, "*l")
  pcall(c.close, c)
  local id = ok and type(line) == "string" and tonumber(line:match("^C(%d+)%."))
  if id and id ~= e.id then
    local other = T.byid[id]
    -- a closed listener's port taken by this one is no bug
    if not (other and other.port == e.port) then
      finding(("%s: accepted a connection dialled to listener %d (port %s), not to it (port %s)")
        :format(describe(e), id, tostring(other and other.port), tostring(e.port)))
    end
  end
end

local function dial(e)
  if e.closed or not e.port then return end
  e.dials = (e.dials or 0) + 1
  local ok, c = pcall(uring.connect, "127.0.0.1", e.port)
  if ok and c then
    T.dialers[#T.dialers + 1] = c
    pcall(c.send, c, ("C%d.%d\n"):format(e.id, e.dials))
  end
end

local function wait_op(e, tmo)
  local o = e.obj
  local rec = { what = "wait", timeout = tmo }
  local r = call(rec, o.wait, o)
  if not r[1] then rec.result = "raised " .. tostring(r[2]); return end
  if r[2] ~= nil then
    if r[2] ~= e.signo then
      finding(("%s: wait returned %s, want %d"):format(describe(e), tostring(r[2]), e.signo))
    end
    return
  end
  return checkfail(e, rec, r[3], r[4])
end

local WRITERS = { file_w = true, file_p = true, pipe_w = true, popen_w = true, exec_w = true }
local READERS = { file_r = true, pipe_r = true, popen_r = true, exec_r = true }

-- queued: the op of a cq step, which the close ends.  Any other op that
-- waits for the world (a receive, an accept, a signal) gives up after a
-- while, so that its task goes on (a timeout loses no bytes: what came
-- stays buffered).
local function do_op(e, r1, len, tmo, queued)
  T.box = queued                               -- call() takes it before any yield
  if not e.obj then return end                 -- dropped meanwhile
  local k = e.kind
  local wt = tmo or (not queued and 0.05 or nil)
  if WRITERS[k] then return out_op(e, len, tmo) end
  if READERS[k] then return in_op(e, r1, wt) end
  if k == "tcp" or k == "unix" or k == "udp" then
    if r1 % 2 == 0 then return out_op(e, len, tmo) end
    return in_op(e, r1 // 2, wt)
  end
  if k == "listener" then
    if r1 % 2 == 0 then return accept_op(e, wt) end
    return dial(e)
  end
  if k == "signal" then return wait_op(e, wt) end
  -- dups and io.open files only hold a number
end

-------------------------------------------------------------- reuse, cq

-- A new listener must get the connection dialled to it: the accept a
-- closed listener had armed must not take it.
local function check_listener(e)
  local ok, c = pcall(uring.connect, "127.0.0.1", e.port)
  if not ok or not c then return end
  pcall(c.send, c, ("C%d.0\n"):format(e.id))
  local ok2, s = pcall(uring.timeout, 5, e.obj.accept, e.obj)
  if ok2 and s then
    local ok3, line = pcall(uring.timeout, 2, s.receive, s, "*l")
    if ok3 and line ~= ("C%d.0"):format(e.id) then
      finding(("new listener %d accepted %s, not the connection dialled to it%s")
        :format(e.id, snippet(line), whose(line or "")))
    end
    pcall(s.close, s)
  elseif ok2 and not e.closed then
    finding(("new listener %d (port %d) lost the connection dialled to it")
      :format(e.id, e.port))
  end
  pcall(c.close, c)
end

local SYNC = { dup = true, pipe_w = true, pipe_r = true, ioopen = true, signal = true }

-- Open fds right away: the cheap ones first (they take the lowest free
-- numbers in this very turn), then the ones that wait for the ring.
local function reuse(list, num, like)
  local made = {}
  for pass = 1, 2 do
    for _, x in ipairs(list) do
      local ts, kind, inN, r = x[1], x[2], x[3], x[4]
      if (SYNC[kind] ~= nil) == (pass == 1) and not T.closing then
        local e = make(kind, inN, r, like)
        if e then
          made[#made + 1] = { e, ts }
          local ok, fd = pcall(function() return e.obj:fd() end)
          if ok and fd == num then T.stats.reused = T.stats.reused + 1 end
        end
      end
    end
  end
  for _, m in ipairs(made) do
    if m[1].kind == "listener" then check_listener(m[1]) end
    commit(m[1], m[2])
  end
end

local function cq(step)
  -- an object with ops (a dup or an io.open file has none: closing one
  -- is a plain close step)
  local e = live(step[3], function(x) return x.kind ~= "ioopen" and x.kind ~= "dup" end)
  if not e then return end
  T.stats.cq = T.stats.cq + 1
  local box = {}
  local t = uring.spawn(guard, do_op, e, step[4], step[5], nil, box)
  uring.yield()                 -- t runs first: its SQE is prepared, not submitted
  if step[6] == 2 then uring.yield() end              -- submitted
  if step[6] == 3 then uring.sleep(0.002) end         -- in flight
  local num = select(2, pcall(function() return e.obj:fd() end))
  close_entry(e)
  reuse(step[7], num, e.kind)
  local t0 = uring.now()
  while true do
    local st = t:status()
    if st ~= "ready" and st ~= "waiting" and st ~= "running" then break end
    if uring.now() - t0 > 10 then
      finding(("%s: an op queued at close has not ended after 10 s (task %s)")
        :format(describe(e), st))
    end
    uring.sleep(0.001)
  end
  local rec = box.rec
  local how = not rec and "none" or (rec.result or ""):find("^nil, closed") and "closed"
    or (rec.result or ""):find("^nil") and "failed" or (rec.result or ""):find("^raised") and "raised"
    or "done"
  T.stats["cq_" .. how] = (T.stats["cq_" .. how] or 0) + 1
end

function M.exec(step)
  if not T.on or T.closing then return end
  local what = step[2]
  if what == "new" then
    local e = make(step[4], step[5], step[6])
    if e then commit(e, step[3]) end
  elseif what == "op" then
    local e = live(step[3])
    if e then do_op(e, step[4], step[5], step.timeout) end
  elseif what == "cq" then cq(step)
  elseif what == "close" then
    local e = live(step[3])
    if e then close_entry(e) end
  elseif what == "reuse" then reuse(step[3])
  elseif what == "drop" then
    -- the collector closes it (its ops hold it while they run)
    local e = T.slots[step[3]]
    if e and e.obj then
      e.weak = setmetatable({ e.obj }, { __mode = "v" })
      e.obj, e.dropped = nil, true
      T.slots[step[3]] = nil
      collectgarbage()
    end
  end
end

------------------------------------------------------------------ the end

local function wait_tasks(list, secs)
  local t0 = uring.now()
  while uring.now() - t0 < secs do
    local busy = false
    for _, t in ipairs(list) do
      local st = t:status()
      if st == "ready" or st == "waiting" or st == "running" then busy = true; break end
    end
    if not busy then return true end
    uring.sleep(0.005)
  end
  return false
end

-- At the deadline, in the main task: close every tracked object, let the
-- children and the sinks finish, then close the sinks.
function M.finish()
  if not T.on then return end
  T.closing = true
  if trace then trace:write("@@tracked finish: closing ", #T.all, "\n") end
  -- popen's close waits for its child: the dups of its pipe go first
  for _, e in ipairs(T.all) do if not PROC[e.kind] then close_entry(e) end end
  for _, e in ipairs(T.all) do close_entry(e) end
  if trace then trace:write("@@tracked finish: closed\n") end
  for _, c in ipairs(T.dialers) do pcall(c.close, c) end
  collectgarbage()
  for _, e in ipairs(T.all) do
    if e.proc then
      local r = pack(pcall(uring.timeout, 5, e.proc.wait, e.proc))
      if r[1] and (r[2] == true or r[3] == "exit" or r[3] == "signal") then e.exited = true end
    end
  end
  if trace then trace:write("@@tracked finish: sinks\n") end
  T.sinks_ended = wait_tasks(T.sinktasks, 5)
  if trace then
    trace:write("@@tracked finish: sinks ended ", tostring(T.sinks_ended), "\n")
    for i, t in ipairs(T.sinktasks) do
      local st = t:status()
      if st == "ready" or st == "waiting" or st == "running" then
        trace:write("@@tracked   sink ", i, " ", T.sinkwhat[i], " ", st, "\n")
      end
    end
  end
  for _, o in ipairs { T.tcp, T.unix } do pcall(o.close, o) end
  uring.sleep(0.02)              -- datagrams on their way
  for _, o in ipairs { T.udpsink, T.udpfeed } do pcall(o.close, o) end
  wait_tasks(T.permanent, 2)
  for _, o in ipairs(T.sinkobjs) do pcall(o.close, o) end
  os.remove(T.unixpath)
end

local function readall(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- length of the common prefix of s[pos..] and d
local function lcp(s, pos, d)
  local n, max = 0, math.min(#s - pos + 1, #d)
  local step = 4096
  while n < max do
    local m = math.min(step, max - n)
    if s:sub(pos + n, pos + n + m - 1) == d:sub(n + 1, n + m) then n = n + m
    elseif step > 1 then step = step // 8 > 0 and step // 8 or 1
    else return n end
  end
  return n
end

-- S is exactly each op's delivered bytes, in op order (complete), or a
-- prefix of that (the sink did not see everything).
local function stream_ok(e, S, complete)
  local ops, memo = e.ops, {}
  local function m(i, pos)
    local key = i .. ":" .. pos
    if memo[key] ~= nil then return memo[key] end
    local res
    if pos > #S then
      res = true
      if complete then
        for j = i, #ops do
          if ops[j].exact and ops[j].exact > 0 then res = false; break end
        end
      end
    elseif i > #ops then res = false
    else
      local rec = ops[i]
      local d = outdata(e.id, rec.k, rec.len)
      if rec.exact then
        local n, avail = rec.exact, #S - pos + 1
        if n == 0 then res = m(i + 1, pos)
        elseif n <= avail and S:sub(pos, pos + n - 1) == d:sub(1, n) then res = m(i + 1, pos + n)
        else res = not complete and n > avail and S:sub(pos) == d:sub(1, avail) end
      else
        local l = lcp(S, pos, d)
        res = false
        for n = l, math.max(0, l - 24), -1 do
          if m(i + 1, pos + n) then res = true; break end
        end
      end
    end
    memo[key] = res
    return res
  end
  if m(1, 1) then return true end
  -- where it goes wrong, greedily
  local pos = 1
  for _, rec in ipairs(ops) do
    local d = outdata(e.id, rec.k, rec.len)
    local l = lcp(S, pos, d)
    if rec.exact and l < rec.exact and pos + l <= #S then
      return false, ("op %d (%s) delivered %d of the %d bytes it reported; from sink byte %d: %s%s")
        :format(rec.k, rec.result or "?", l, rec.exact, pos - 1, snippet(S:sub(pos)),
        whose(S:sub(pos)))
    end
    pos = pos + (rec.exact or l)
  end
  if pos <= #S then
    return false, ("%d bytes past what its ops reported, at %d: %s%s"):format(#S - pos + 1,
      pos - 1, snippet(S:sub(pos)), whose(S:sub(pos)))
  end
  return false, ("the sink got %d bytes, fewer than its ops reported"):format(#S)
end

local function check_regions(e, S)
  for _, rec in ipairs(e.ops) do
    local seg = S:sub(rec.base + 1, rec.base + rec.len)
    local d = outdata(e.id, rec.k, rec.len)
    local n = rec.exact or lcp(seg, 1, d)
    if #seg < n or seg:sub(1, n) ~= d:sub(1, n) then
      finding(("%s: pwrite %d (%s) reported %d bytes at %d, the file has %s%s"):format(
        describe(e), rec.k, rec.result or "?", n, rec.base, snippet(seg), whose(seg)))
    end
    local rest = seg:sub(n + 1)
    if rest:find("[^%z]") then
      finding(("%s: past pwrite %d's %d bytes at %d the file has %s%s"):format(describe(e),
        rec.k, n, rec.base, snippet(rest), whose(rest)))
    end
  end
  if #S > e.pend then
    finding(("%s: the file has %d bytes, its pwrites reach %d: %s%s"):format(describe(e), #S,
      e.pend, snippet(S:sub(e.pend + 1)), whose(S:sub(e.pend + 1))))
  end
end

-- After the run (every request reaped, every child gone): the oracle.
function M.check()
  if not T.on then return end
  for _, c in ipairs(T.conns) do
    if c.bad then finding(("a %s sink connection: %s"):format(c.family, c.bad)) end
  end
  for _, e in ipairs(T.all) do
    local k = e.kind
    local S, complete
    if k == "tcp" or k == "unix" then
      local c = e.conn
      S = c and table.concat(c.chunks) or ""
      -- a TCP close with unread inbound bytes is a reset, which may drop
      -- what was sent but not yet acknowledged
      complete = c ~= nil and c.eof and not (k == "tcp" and e.inN > 0)
    elseif k == "pipe_w" then S, complete = e.sink or "", e.sinkdone
    elseif k == "file_w" or k == "file_p" then S, complete = readall(e.path), true
    elseif k == "popen_w" or k == "exec_w" then S, complete = readall(e.path), e.exited
    elseif k == "ioopen" then
      S = readall(e.path)
      if #S > 0 then
        finding(("object %d, an io.open file that was never written, has %d bytes: %s%s")
          :format(e.id, #S, snippet(S), whose(S)))
      end
    elseif k == "udp" then
      for _, rec in ipairs(e.ops) do
        local a = rec.arrived or 0
        if a > 1 then
          finding(("%s: datagram %d arrived %d times"):format(describe(e), rec.k, a))
        elseif a == 1 and rec.exact == 0 then
          finding(("%s: sendto %d said %s, but its datagram arrived"):format(describe(e), rec.k,
            rec.result or "?"))
        elseif a == 0 and rec.exact == rec.len and T.sinks_ended then
          finding(("%s: sendto %d said it sent %d bytes; nothing arrived"):format(describe(e),
            rec.k, rec.len))
        end
      end
    end
    if S and k == "file_p" then check_regions(e, S)
    elseif S and k ~= "ioopen" then
      local ok, why = stream_ok(e, S, complete)
      if not ok then
        finding(("%s: %s (sink %s, %d bytes)"):format(describe(e), why,
          complete and "complete" or "partial", #S))
      end
    end
  end
  for _, rec in ipairs(T.allops) do
    if rec.ended ~= 1 then
      finding(("an op (%s) ended %d times"):format(tostring(rec.k or rec.what), rec.ended))
    end
  end
end

return M
