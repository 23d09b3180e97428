--- spec/fuzz/program.lua: one random lua-uring program, run in this process.
--
--   lua5.4 spec/fuzz/program.lua SEED DIR [--print]
--
-- SEED picks the program: the whole program (its tasks and every call with
-- its arguments) is generated from SEED before anything runs, so the same
-- seed gives the same call sequence; only the interleaving of completions
-- varies from run to run.  DIR is an empty scratch directory the program
-- may fill (its files, its Unix sockets).  --print lists the program
-- instead of running it.
--
-- A program is a main task and a few spawned tasks, each a list of steps:
-- API calls with right and wrong arguments (wrong types, out-of-range and
-- huge numbers, closed objects, objects of another kind), wrapped now and
-- then in uring.timeout; cancels and joins of tasks; references dropped
-- and collectgarbage() forced.  Every call is pcall'ed: a Lua error is an
-- answer, not a finding.  After a deadline the main task cancels what is
-- left and closes every object; then the program drops everything,
-- collects, and checks that no fd and no in-flight request is left.
--
-- Most programs also hold tracked objects (spec/fuzz/tracked.lua, issue
-- 11): closed by another task while an op on them is queued or in
-- flight, their numbers taken at once by new fds, and every byte they
-- write, send or read tagged with where it was meant to go; their own
-- task list (the last one) runs beside the first, and at the deadline
-- they are closed first and the oracle checks where every byte landed.
--
-- The last stdout line is "@@fuzz calls=N" on success, or "@@fuzz
-- FINDING ..." (exit status 3).  A crash or a sanitizer report shows as
-- the process's exit status; spec/fuzz/run.lua runs many of these.
--
-- Cutting a finding down (run it from inside DIR, as run.lua does):
--   URING_FUZZ_TRACE=1     each step on stderr before it runs, with its task
--   URING_FUZZ_STEPS=N     only the first N steps of every list
--   URING_FUZZ_SKIP=t:i,.. leave out step i of list t (from --print)
--   URING_FUZZ_VERBOSE=1   the error uring.run ended with, if any
-- (run.lua starts it inside DIR, with URING_CPATH and LUA_PATH absolute)
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path

local seed, dir = tonumber(arg[1]), arg[2]
-- objects whose every byte is followed (issue 11): spec/fuzz/tracked.lua
local tracked = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/tracked.lua")
local print_only = arg[3] == "--print"
if not seed or not dir then
  io.stderr:write("usage: lua5.4 spec/fuzz/program.lua SEED DIR [--print]\n")
  os.exit(2)
end

------------------------------------------------------------- generation
-- The generator draws from its own xoshiro state (math.random after
-- math.randomseed(seed)); nothing at run time draws from it.
math.randomseed(seed)
local R = math.random
local function pick(t) return t[R(#t)] end
local function chance(p) return R() < p end

local NSLOT = 12

-- Values of the wrong kind or out of range; a few are built at run time
-- ("<table>", "<function>", ...), see resolve().
local WEIRD = {
  { "v", nil }, { "v", true }, { "v", false }, { "v", 0 }, { "v", -1 },
  { "v", 1 }, { "v", 2 }, { "v", 0x7fffffff }, { "v", 0x80000000 },
  { "v", 0xffffffff }, { "v", 1 << 32 }, { "v", 1 << 53 },
  { "v", math.maxinteger }, { "v", math.mininteger }, { "v", -2.0 ^ 63 },
  { "v", 1e308 }, { "v", -1e308 }, { "v", math.huge }, { "v", -math.huge },
  { "v", 0 / 0 }, { "v", 0.5 }, { "v", -0.5 }, { "v", 2 ^ 31 + 0.5 },
  { "v", "" }, { "v", "x" }, { "v", "l" }, { "v", "a" }, { "v", "*a" },
  { "v", "n" }, { "v", "rw" }, { "v", "4096" }, { "v", "-1" },
  -- "0x3e7" is a number string that names no open fd (999, as G.fd's raw
  -- pick): "0x10" did, and fdopen("0x10") wrote into a tracked socket
  { "v", "a\0b" }, { "v", "0x3e7" }, { "str", 70000 },
  { "mk", "table" }, { "mk", "list" }, { "mk", "function" }, { "mk", "thread" },
  { "mk", "stdout" }, { "mk", "uring" }, { "slot" }, { "slot" }, { "slot" },
}

-- wrong hosts that never reach a DNS server (a lookup of "x" waits out
-- the resolver's timeouts, its helper thread and sockets still open when
-- the program checks its fds)
local HOST_WEIRD = {
  { "v", nil }, { "v", 1 }, { "v", true }, { "mk", "table" }, { "v", "" },
  { "v", "[::1]" }, { "v", "::ffff:127.0.0.1" }, { "v", "127.0.0.1\0x" }, { "str", 70000 },
}

local function weird()
  local w = pick(WEIRD)
  if w[1] == "slot" then return { "slot", R(NSLOT) } end
  return w
end

local kinds = {}            -- slot -> the kind the generator last stored there

local function slot_of(kind)
  if chance(0.85) then
    local cands = {}
    for k = 1, NSLOT do if kinds[k] == kind then cands[#cands + 1] = k end end
    if #cands > 0 then return pick(cands) end
  end
  return R(NSLOT)
end

local FILES = { "f1", "f2", "f3", "d1", "d1/g", "nodir/x", "s1" }
local SMALL_SECS = { 0, 0.001, 0.002, 0.005, 0.01, 0.02 }

-- Right-kind argument generators, by name.
local G = {}
function G.secs() return { "v", pick(SMALL_SECS) } end
function G.n()
  return { "v", pick { 0, 1, 2, 7, 100, 4096, 65535, 65536, 65537, 200000, R(0, 5000) } }
end
function G.off() return { "v", pick { 0, 0, 1, 100, 4096, 65536, R(0, 300000) } } end
function G.path()
  local r = R(10)
  if r <= 7 then return { "path", pick(FILES) } end
  -- never a system path: the fuzzer runs as root and would unlink,
  -- rename, mkdir over or write to it (it once turned /dev/null into a
  -- directory); /proc/self/status refuses every change
  return { "v", pick { "/proc/self/status", "/nonexistent/x", "" } }
end
function G.mode() return { "v", pick { "r", "w", "a", "r+", "w+", "a+", "rb", "wb", "x", "rw" } } end
function G.data()
  local r = R(10)
  if r <= 6 then return { "str", R(0, 300) } end
  if r <= 9 then return { "str", R(0, 70000) } end
  return { "str", R(0, 300000) }
end
function G.line() return { "v", pick { "hello\n", "a\r\nb\n", "no newline", "\n\n\n", "" } } end
-- loopback only, and no fixed port a bind could take from the other specs
function G.host() return { "v", pick { "127.0.0.1", "127.0.0.1", "127.0.0.1", "localhost", "::1" } } end
function G.port(kind)
  if chance(0.8) then return { "port", slot_of(kind or "socket") } end
  return { "v", pick { 0, 65536, -1, 1.5 } }
end
function G.pattern()
  return pick { { "v", "*l" }, { "v", "l" }, { "v", "*a" }, { "v", "a" }, { "v", R(0, 100) },
    { "v", "L" }, { "v", "n" }, { "v", -1 }, { "v", 1.5 } }
end
function G.fmt() return pick { { "v", "l" }, { "v", "L" }, { "v", "n" }, { "v", "a" }, { "v", R(0, 70000) }, { "v", "*l" } } end
function G.bool() return { "v", pick { true, false } } end
function G.whence() return { "v", pick { "set", "cur", "end" } } end
function G.how() return { "v", pick { "both", "send", "receive", "x" } } end
function G.perm() return { "v", pick { 420, 384, 511, 0, 4095 } } end
function G.openopts()
  if chance(0.4) then return G.perm() end
  return { "tbl", { perm = G.perm(), sync = G.bool(), exclusive = G.bool(),
    direct = chance(0.2) and { "v", true } or { "v", nil } } }
end
function G.sig() return { "v", pick { "WINCH", "URG", "SIGWINCH", 28, "TERM", "USR2", 9, 0, 65 } } end
function G.killsig() return { "v", pick { "TERM", "KILL", "INT", "HUP", 0, 15, 9, "BOGUS" } } end
function G.cmd()
  return { "v", pick { "echo hi", "seq 1 2000", "sleep 0.02", "exit 3", "cat >/dev/null",
    "head -c 100000 /dev/zero", "kill -WINCH $PPID", "kill -URG $PPID", "true" } }
end
function G.execspec()
  local argv = pick {
    { "true" }, { "sh", "-c", "exit 2" }, { "cat" }, { "sleep", "0.01" },
    { "/nonexistent/prog" }, { "seq", "1", "500" }, { "sh", "-c", "kill -WINCH $PPID" },
  }
  local t = {}
  for i, a in ipairs(argv) do t[i] = { "v", a } end
  local io_ = { "inherit", "null", "pipe", "pipe", "bogus" }
  t.stdin = { "v", pick(io_) }
  t.stdout = chance(0.2) and { "slot", slot_of("file") } or { "v", pick(io_) }
  t.stderr = { "v", pick { "inherit", "null", "null" } }
  if chance(0.2) then t.env = { "tbl", { PATH = { "v", "/usr/bin:/bin" }, X = chance(0.5) and { "v", 1 } or { "v", "y" } } } end
  if chance(0.2) then t.cwd = chance(0.5) and { "v", dir } or { "v", "/nonexistent" } end
  if chance(0.05) then t[1] = nil end
  return { "tbl", t }
end
function G.fn() return { "fn", 0 } end        -- filled in by the caller
function G.ud() return { "v", pick { 0, 1, 2, 7, -1, math.maxinteger } } end
function G.byte() return { "v", pick { 0, 65, 255, 256, -1 } } end
function G.pos() return { "v", pick { 1, 1, 2, 100, 4096, -1, 0 } } end
function G.bufsize() return { "v", pick { 1, 16, 4096, 65536, 100000 } } end
function G.ringopts()
  return { "tbl", { entries = { "v", pick { 1, 2, 4, 8, 64, 0, 40000 } },
    single_issuer = G.bool(), coop_taskrun = G.bool(),
    sqpoll = chance(0.05) and { "v", true } or { "v", nil } } }
end
function G.fd()
  if chance(0.8) then return { "fd", R(NSLOT) } end
  return { "v", pick { 0, 1, 2, -1, 999, 0x7fffffff } }
end
function G.rfd()           -- ring fd argument: a plain fd or a fixed marker
  if chance(0.15) then return { "fixed", slot_of("ring"), R(0, 3) } end
  return G.fd()
end
function G.waitsecs()     -- ring:wait_cqe: never unbounded (no nil)
  return pick { { "v", 0.001 }, { "v", 0.01 }, { "v", 0 }, { "v", -1 }, { "v", "x" },
    { "v", 0 / 0 }, { "v", 1e12 }, { "mk", "table" } }
end
-- an open's CQE hands Lua a new fd: the program closes those it took
-- (they are its own, not the core's), so they are tagged
local OPEN_UD = 0x4f50454e
function G.openud() return { "v", OPEN_UD } end
-- prep_close closes whatever number it is given: only fds the program
-- owns (from its ring opens) or no fd at all, never one a core object
-- owns (closing that behind the object's back is the caller's bug)
function G.closefd() return pick { { "userfd" }, { "userfd" }, { "v", -1 }, { "v", 999 }, { "v", 0x7fffffff } } end
function G.swait() return { "v", pick { 0, -1, 1 << 40, "x" } } end
function G.buflist() return { "list", slot_of("buffer"), R(0, 3) } end
function G.fdlist() return { "fdlist", R(0, 4) } end
function G.opname() return { "v", pick { "nop", "read", "bogus", 0, 1, 255, -1 } } end
function G.msg() return { "v", pick { 0, 0, 0x40, 0x100, 0x4000 } } end   -- DONTWAIT, WAITALL, NOSIGNAL
function G.statx_mask() return { "v", pick { 0x7ff, 0xfff, 0, -1 } } end
function G.udpmax() return { "v", pick { 1, 100, 65536, 0, 65537 } } end
function G.optname() return { "v", pick { "nodelay", "keepalive", "bogus" } } end
function G.vbuf() return { "v", pick { "no", "line", "full", "x" } } end
function G.tracefn() return { "tracefn", R(4) } end
function G.progress() return { "progress", R(4) } end
function G.lsocks() return { "list", slot_of("lsock"), R(0, 3) } end
function G.url() return { "url", slot_of("socket") } end
function G.resolvehost() return { "v", pick { "localhost", "127.0.0.1", "::1", "", "1.2.3" } } end
-- (no nil inside a pick list: # of a list with holes is any border)
function G.qcap()
  if chance(0.3) then return { "v", nil } end
  return { "v", pick { 1, 2, 16, 0, -1, 1.5, math.huge } }
end
function G.permits()
  if chance(0.2) then return { "v", nil } end
  return { "v", pick { 1, 1, 2, 3, 0, -1, 100 } }
end
function G.item() return pick { { "v", 1 }, { "v", "x" }, { "v", false }, { "mk", "table" }, { "v", nil } } end
-- what uring.select waits on: a queue, an event or a task of a slot
function G.sel() return { "slot", slot_of(pick { "queue", "event", "task" }) } end

-- The API: name, self kind (nil for module functions), argument
-- generators, the kind stored from the first result, weight.
local API = {
  -- tasks and time
  { "sleep", nil, { "secs" }, nil, 4 },
  { "yield", nil, {}, nil, 3 },
  { "nop", nil, {}, nil, 3 },
  { "now", nil, {}, nil, 1 },
  { "current", nil, {}, "task", 1 },
  { "tasks", nil, {}, nil, 1 },
  { "stats", nil, {}, nil, 1 },
  { "features", nil, {}, nil, 0.3 },
  { "probe", nil, {}, nil, 0.2 },
  { "opname", nil, { "opname" }, nil, 0.5 },
  { "opcode", nil, { "opname" }, nil, 0.5 },
  { "configure", nil, { "ringopts" }, nil, 0.3 },
  { "run", nil, { "fn" }, nil, 0.2 },
  { "trace", nil, { "tracefn" }, nil, 0.3 },
  { "timeout", nil, { "secs", "fn" }, nil, 1 },
  { "spawn", nil, { "fn" }, "task", 3 },
  { "join", "task", {}, nil, 2 },
  { "cancel", "task", {}, nil, 2 },
  { "status", "task", {}, nil, 1 },
  { "id", "task", {}, nil, 0.5 },
  { "waiting_on", "task", {}, nil, 0.5 },
  -- tasks working together
  { "queue", nil, { "qcap" }, "queue", 1 },
  { "put", "queue", { "item" }, nil, 1.5 },
  { "get", "queue", {}, nil, 1.5 },
  { "try_get", "queue", {}, nil, 0.5 },
  { "close", "queue", {}, nil, 0.5 },
  { "closed", "queue", {}, nil, 0.2 },
  { "semaphore", nil, { "permits" }, "semaphore", 0.7 },
  { "acquire", "semaphore", { "permits" }, nil, 1 },
  { "release", "semaphore", { "permits" }, nil, 1 },
  { "with", "semaphore", { "fn" }, nil, 0.5 },
  { "available", "semaphore", {}, nil, 0.2 },
  { "event", nil, {}, "event", 0.7 },
  { "set", "event", {}, nil, 1 },
  { "clear", "event", {}, nil, 0.5 },
  { "wait", "event", {}, nil, 1 },
  { "is_set", "event", {}, nil, 0.2 },
  { "select", nil, { "sel", "sel", "sel" }, nil, 1 },
  { "group", nil, { "fn" }, nil, 0.5 },
  -- files
  { "open", nil, { "path", "mode", "openopts" }, "file", 5 },
  { "fdopen", nil, { "fd", "mode" }, "file", 0.5 },
  { "popen", nil, { "cmd", "mode" }, "file", 0.7 },
  { "read", "file", { "fmt", "fmt" }, nil, 3 },
  { "write", "file", { "data", "data" }, nil, 3 },
  { "lines", "file", { "fmt" }, nil, 0.5 },
  { "seek", "file", { "whence", "off" }, nil, 1 },
  { "setvbuf", "file", { "vbuf" }, nil, 0.5 },
  { "flush", "file", {}, nil, 1 },
  { "close", "file", {}, nil, 2 },
  { "pread", "file", { "n", "off" }, nil, 2 },
  { "pwrite", "file", { "data", "off" }, nil, 2 },
  { "sync", "file", { "bool" }, nil, 1 },
  { "stat", "file", {}, nil, 1 },
  { "fd", "file", {}, nil, 0.5 },
  { "readfile", nil, { "path" }, nil, 1 },
  { "writefile", nil, { "path", "data", "mode" }, nil, 1 },
  { "stat", nil, { "path" }, nil, 1 },
  { "unlink", nil, { "path" }, nil, 1 },
  { "rename", nil, { "path", "path" }, nil, 1 },
  { "mkdir", nil, { "path", "perm" }, nil, 1 },
  { "rmdir", nil, { "path" }, nil, 1 },
  { "copyfile", nil, { "path", "path", "progress" }, nil, 0.7 },
  -- sockets
  { "listen", nil, { "host", "port", }, "socket", 3 },
  { "listen_unix", nil, { "path" }, "socket", 0.7 },
  { "connect", nil, { "host", "port" }, "socket", 4 },
  { "connect_unix", nil, { "path" }, "socket", 0.7 },
  { "resolve", nil, { "resolvehost", "port" }, nil, 0.3 },
  { "accept", "socket", {}, "socket", 3 },
  { "send", "socket", { "data", "pos", "pos" }, nil, 3 },
  { "receive", "socket", { "pattern", "line" }, nil, 3 },
  { "recv", "socket", { "n" }, nil, 2 },
  { "read", "socket", { "fmt" }, nil, 1 },
  { "write", "socket", { "line", "data" }, nil, 1 },
  { "lines", "socket", { "fmt" }, nil, 0.3 },
  { "settimeout", "socket", { "secs" }, nil, 1 },
  { "shutdown", "socket", { "how" }, nil, 1 },
  { "close", "socket", {}, nil, 2 },
  { "getpeername", "socket", {}, nil, 0.5 },
  { "getsockname", "socket", {}, nil, 0.5 },
  { "setoption", "socket", { "optname", "bool" }, nil, 0.5 },
  { "fd", "socket", {}, nil, 0.3 },
  { "_fill", "socket", {}, nil, 0.3 },
  { "_take", "socket", { "n" }, nil, 0.3 },
  { "_take_line", "socket", { "bool", "bool" }, nil, 0.3 },
  { "_buffered", "socket", {}, nil, 0.3 },
  { "udp", nil, { "host", "port" }, "udp", 2 },
  { "sendto", "udp", { "data", "host", "port" }, nil, 2 },
  { "recvfrom", "udp", { "udpmax" }, nil, 2 },
  { "settimeout", "udp", { "secs" }, nil, 0.5 },
  { "getsockname", "udp", {}, nil, 0.3 },
  { "close", "udp", {}, nil, 1 },
  -- processes, signals, readiness
  { "exec", nil, { "execspec" }, "process", 0.7 },
  { "wait", "process", {}, nil, 0.7 },
  { "kill", "process", { "killsig" }, nil, 0.5 },
  { "signal", nil, { "sig" }, "signal", 0.4 },
  { "wait", "signal", {}, nil, 0.3 },
  { "close", "signal", {}, nil, 0.4 },
  { "poll", nil, { "fd", "mode" }, nil, 0.5 },
  -- buffers and the teaching ring
  { "buffer", nil, { "bufsize" }, "buffer", 1 },
  { "size", "buffer", {}, nil, 0.2 },
  { "tostring", "buffer", { "pos", "pos" }, nil, 0.3 },
  { "fill", "buffer", { "byte", "pos", "pos" }, nil, 0.3 },
  { "write", "buffer", { "data", "pos" }, nil, 0.3 },
  { "pinned", "buffer", {}, nil, 0.2 },
  { "ring", nil, { "ringopts" }, "ring", 0.7 },
  { "prep_nop", "ring", { "ud" }, nil, 1 },
  { "prep_read", "ring", { "rfd", "slot", "n", "off", "ud", "pos" }, nil, 1 },
  { "prep_write", "ring", { "rfd", "data", "n", "off", "ud", "pos" }, nil, 1 },
  { "prep_readv", "ring", { "rfd", "buflist", "off", "ud" }, nil, 0.5 },
  { "prep_writev", "ring", { "rfd", "buflist", "off", "ud" }, nil, 0.5 },
  { "prep_fsync", "ring", { "rfd", "bool", "ud" }, nil, 0.3 },
  { "prep_openat", "ring", { "fd", "path", "mode", "perm", "openud" }, nil, 0.5 },
  { "prep_close", "ring", { "closefd", "ud" }, nil, 0.3 },
  { "prep_statx", "ring", { "fd", "path", "n", "statx_mask", "ud" }, nil, 0.5 },
  { "prep_send", "ring", { "rfd", "data", "n", "msg", "ud" }, nil, 0.5 },
  { "prep_send_zc", "ring", { "rfd", "data", "n", "msg", "ud" }, nil, 0.3 },
  { "prep_recv", "ring", { "rfd", "slot", "n", "msg", "ud" }, nil, 0.5 },
  { "prep_poll_add", "ring", { "rfd", "n", "ud" }, nil, 0.3 },
  { "prep_timeout", "ring", { "secs", "n", "ud" }, nil, 0.7 },
  { "prep_link_timeout", "ring", { "secs", "ud" }, nil, 0.3 },
  { "prep_cancel", "ring", { "ud", "ud", "n" }, nil, 0.5 },
  { "prep_cancel_fd", "ring", { "fd", "ud", "n" }, nil, 0.3 },
  { "link", "ring", {}, nil, 0.5 },
  { "hardlink", "ring", {}, nil, 0.2 },
  { "drain", "ring", {}, nil, 0.2 },
  { "submit", "ring", {}, nil, 1.5 },
  { "submit_and_wait", "ring", { "swait" }, nil, 0.3 },
  { "wait_cqe", "ring", { "waitsecs" }, nil, 1 },
  { "peek_cqe", "ring", {}, nil, 1 },
  { "sq_space_left", "ring", {}, nil, 0.2 },
  { "cq_ready", "ring", {}, nil, 0.2 },
  { "inflight", "ring", {}, nil, 0.2 },
  { "register_buffers", "ring", { "buflist" }, nil, 0.3 },
  { "unregister_buffers", "ring", {}, nil, 0.2 },
  { "prep_read_fixed", "ring", { "rfd", "slot", "n", "off", "ud" }, nil, 0.3 },
  { "register_files", "ring", { "fdlist" }, nil, 0.3 },
  { "unregister_files", "ring", {}, nil, 0.2 },
  { "update_files", "ring", { "n", "fdlist" }, nil, 0.2 },
  { "fixed", "ring", { "n" }, "fixed", 0.2 },
  { "close", "ring", {}, nil, 0.5 },
  -- the LuaSocket layer (objects of its own; methods found by name)
  { "socket.tcp", nil, {}, "lsock", 0.5 },
  { "socket.udp", nil, {}, "lsock", 0.3 },
  { "socket.connect", nil, { "host", "port" }, "lsock", 0.5 },
  { "socket.bind", nil, { "host", "port" }, "lsock", 0.5 },
  { "socket.select", nil, { "lsocks", "lsocks", "secs" }, nil, 0.5 },
  { "socket.sleep", nil, { "secs" }, nil, 0.2 },
  { "socket.gettime", nil, {}, nil, 0.1 },
  { "socket.dns.toip", nil, { "resolvehost" }, nil, 0.2 },
  { "connect", "lsock", { "host", "port" }, nil, 0.4 },
  { "bind", "lsock", { "host", "port" }, nil, 0.3 },
  { "listen", "lsock", { "n" }, nil, 0.3 },
  { "accept", "lsock", {}, "lsock", 0.4 },
  { "send", "lsock", { "data" }, nil, 0.4 },
  { "receive", "lsock", { "pattern" }, nil, 0.4 },
  { "settimeout", "lsock", { "secs" }, nil, 0.3 },
  { "sendto", "lsock", { "data", "host", "port" }, nil, 0.2 },
  { "receivefrom", "lsock", { "udpmax" }, nil, 0.2 },
  { "setpeername", "lsock", { "host", "port" }, nil, 0.2 },
  { "shutdown", "lsock", { "how" }, nil, 0.2 },
  { "close", "lsock", {}, nil, 0.4 },
  -- HTTP client against whatever listens (or nothing)
  { "http.request", nil, { "url" }, nil, 0.3 },
}

-- steps that are not API calls
local EXTRA = {
  { "drop", 3 }, { "gc", 2 }, { "gcstep", 1 }, { "move", 1 },
}

-- Each program favours two or three areas (their calls weigh 6 times
-- more), so objects of one kind meet more often: closes under waiting
-- tasks, two tasks on one socket, drops while a ring holds buffers.
local FAMILY_OF = {
  open = "file", fdopen = "file", popen = "proc", readfile = "file", writefile = "file",
  stat = "file", unlink = "file", rename = "file", mkdir = "file", rmdir = "file",
  copyfile = "file", listen = "socket", listen_unix = "socket", connect = "socket",
  connect_unix = "socket", resolve = "socket", udp = "udp", exec = "proc", signal = "proc",
  poll = "proc", buffer = "ring", ring = "ring", spawn = "task", timeout = "task",
  sleep = "task", yield = "task", nop = "task", ["http.request"] = "socket",
  queue = "sync", semaphore = "sync", event = "sync", select = "sync", group = "sync",
}
local FAMILIES = { "file", "socket", "udp", "proc", "ring", "task", "lsock", "sync" }
local favoured = {}
for _ = 1, R(2, 3) do favoured[pick(FAMILIES)] = true end
for _, e in ipairs(API) do
  local fam = e[2] or FAMILY_OF[e[1]] or (e[1]:match("^socket%.") and "lsock")
  if fam == "socket" and e[2] == "socket" then fam = "socket" end
  if fam == "process" or fam == "signal" then fam = "proc" end
  if fam == "buffer" then fam = "ring" end
  if fam == "queue" or fam == "semaphore" or fam == "event" then fam = "sync" end
  if favoured[fam] then e[5] = e[5] * 6 end
end
local total_weight = 0
for _, e in ipairs(API) do total_weight = total_weight + e[5] end
for _, e in ipairs(EXTRA) do total_weight = total_weight + e[2] end

local tasks_n = R(1, 6)
local program = { seed = seed, tasks = {}, deadline = 0.15 + R() * 0.5 }
program.entries = pick { false, false, 1, 2, 4, 8, 64 }
program.sqpoll = chance(0.08)
program.fixed_files = chance(0.2) and pick { 1, 2, 8 }   -- registered socket slots
program.send_zc = chance(0.2) and pick { 1, 64, 4096 }   -- sends through SEND_ZC
program.gchook = chance(0.3) and pick { 50, 200, 1000 } or false
-- Most programs also hold tracked objects (spec/fuzz/tracked.lua): a
-- share of each task's steps act on them.  Those programs leave out the
-- ring calls that use a raw fd number at submit time (see RAW_FD_OPS).
program.tracked = chance(0.6)
local tgen, tnew = tracked.generator(R)
if program.tracked then
  program.tshare = 0.2 + R() * 0.4
  for _, e in ipairs(API) do
    if e[2] == "ring" and tracked.RAW_FD_OPS[e[1]] then
      total_weight = total_weight - e[5]
      e[5] = 0
    end
  end
end

local function gen_step(task_index)
  if program.tracked and R() < program.tshare then return tgen() end
  local w = R() * total_weight
  for _, e in ipairs(EXTRA) do
    w = w - e[2]
    if w < 0 then
      if e[1] == "drop" then return { "drop", R(NSLOT) } end
      if e[1] == "move" then return { "move", R(NSLOT), R(NSLOT) } end
      return { e[1] }
    end
  end
  local e
  for _, c in ipairs(API) do
    w = w - c[5]
    if w < 0 then e = c; break end
  end
  e = e or API[1]
  local name, kind, gens, out = e[1], e[2], e[3], e[4]
  local step = { "call", name, kind }
  if kind then step.self = chance(0.9) and { "slot", slot_of(kind) } or weird() end
  local args = {}
  for i, g in ipairs(gens) do
    local a
    if g == "fn" then
      -- a task body of this program (a later one, so bodies never recurse
      -- forever), or a small built-in one
      if task_index < tasks_n and chance(0.7) then a = { "fn", R(task_index + 1, tasks_n) }
      else a = { "builtin", R(6) } end
    elseif g == "slot" then a = { "slot", slot_of("buffer") }
    elseif g == "port" then a = G.port(kind == "udp" and "udp" or (name == "udp" and "udp" or "socket"))
    else a = G[g]() end
    if chance(0.08) then
      if g == "host" or g == "resolvehost" then a = pick(HOST_WEIRD)
      elseif g == "closefd" then a = pick { { "v", -5 }, { "v", 1.5 }, { "v", "x" } }
      else a = weird() end
    end
    args[i] = a
  end
  if chance(0.05) then args[#args + 1] = weird() end         -- one too many
  if chance(0.05) and #args > 0 then args[#args] = nil end   -- one too few
  step.args, step.nargs = args, #gens + 1
  if out then
    step.out = R(NSLOT)
    kinds[step.out] = out
  end
  if chance(0.12) then step.timeout = pick(SMALL_SECS) end   -- inside uring.timeout
  return step
end

for t = 1, tasks_n do
  local steps = {}
  for _ = 1, R(5, t == 1 and 120 or 60) do steps[#steps + 1] = gen_step(t) end
  program.tasks[t] = steps
end
if program.tracked then
  -- something to act on from the start, and a task of tracked steps
  -- only (the main task spawns it), which no random call blocks
  for i = 1, R(2, 4) do table.insert(program.tasks[1], i, tnew()) end
  local steps = {}
  for i = 1, R(2, 4) do steps[i] = tnew() end
  for _ = 1, R(10, 60) do steps[#steps + 1] = tgen() end
  program.tasks[tasks_n + 1] = steps
end

local function show(v)
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  for k, x in pairs(v) do
    parts[#parts + 1] = (type(k) == "number" and "" or (k .. "=")) .. show(x)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

if print_only then
  print(("seed %d deadline %.3f entries %s sqpoll %s gchook %s tracked %s"):format(seed,
    program.deadline, tostring(program.entries), tostring(program.sqpoll),
    tostring(program.gchook), program.tracked and ("%.2f"):format(program.tshare) or "no"))
  local fams = {}
  for f in pairs(favoured) do fams[#fams + 1] = f end
  table.sort(fams)
  print("favours " .. table.concat(fams, " "))
  for t, steps in ipairs(program.tasks) do
    print("task " .. t)
    for i, s in ipairs(steps) do print(("  %3d %s"):format(i, show(s))) end
  end
  os.exit(0)
end

---------------------------------------------------------------- running
local uring = require "uring"

local pid
do
  local f = assert(io.open("/proc/self/stat"))
  pid = f:read("n")
  f:close()
end

-- Open fds of this process.  Not through io.popen: its pipe's write end
-- may or may not be open yet while ls runs; system() leaves none behind.
local FDLIST = dir .. "/../" .. seed .. ".fds"
local function fd_list()
  os.execute("ls -l /proc/" .. pid .. "/fd > " .. FDLIST .. " 2>/dev/null")
  local out = {}
  local f = io.open(FDLIST)
  for l in f:lines() do
    local fd, target = l:match("(%d+) %-> (.*)$")
    if fd then out[#out + 1] = fd .. " -> " .. target end
  end
  f:close()
  os.remove(FDLIST)
  table.sort(out)
  return out
end

local slots = {}
local calls = 0
local main_task
local tracefile = os.getenv("URING_FUZZ_TRACE") and io.stderr

-- method tables by kind, from the registry (every object's metatable)
local reg = debug.getregistry()
local METHODS = {}
for _, k in ipairs { "file", "socket", "udp", "task", "buffer", "ring", "signal", "process",
                     "queue", "semaphore", "event" } do
  local mt = reg["uring." .. k]
  METHODS[k] = mt and mt.__index or {}
end

local user_fds = {}            -- fds an openat CQE handed to the program
local bigcache = {}
local function bigstring(n)
  if not bigcache[n] then
    local unit = "0123456789abcdefghijklmnopqrstuvwxyz\n"
    bigcache[n] = unit:rep(n // #unit + 1):sub(1, n)
  end
  return bigcache[n]
end

local run_task                                        -- forward

local BUILTIN = {
  function() end,
  function() uring.sleep(0.005) end,
  function() error("fuzz error", 0) end,
  function() error({ "table error" }) end,
  function() error() end,
  function() for _ = 1, 5 do uring.yield() end return 1, 2, 3 end,
}
local TRACEFNS = {
  true, false,
  function() end,
  function() error("trace fn fails") end,
}
local PROGRESS = {
  function() end,
  function() uring.sleep(0) end,
  function() error("progress fails") end,
  function() collectgarbage() end,
}

local function resolve(a)
  local tag = a[1]
  if tag == "v" then return a[2] end
  if tag == "str" then return bigstring(a[2]) end
  if tag == "path" then return dir .. "/" .. a[2] end
  if tag == "slot" then return slots[a[2]] end
  if tag == "mk" then
    local k = a[2]
    if k == "table" then return {} end
    if k == "list" then return { 1, "x", {} } end
    if k == "function" then return function() end end
    if k == "thread" then return coroutine.create(function() end) end
    if k == "stdout" then return io.stdout end
    return uring
  end
  if tag == "port" then
    local o = slots[a[2]]
    local ok, _, p = pcall(function() return o:getsockname() end)
    if ok and math.type(p) == "integer" then return p end
    return 1
  end
  if tag == "fd" then
    local o = slots[a[2]]
    local ok, fd = pcall(function() return o:fd() end)
    if ok and math.type(fd) == "integer" then return fd end
    return -1
  end
  if tag == "fixed" then
    local r = slots[a[2]]
    local ok, m = pcall(function() return r:fixed(a[3]) end)
    if ok then return m end
    return a[3]
  end
  if tag == "list" then
    local t = {}
    for i = 1, a[3] do t[i] = slots[(a[2] + i - 2) % NSLOT + 1] end
    return t
  end
  if tag == "fdlist" then
    local t = {}
    for i = 1, a[2] do t[i] = resolve({ "fd", (i * 5) % NSLOT + 1 }) end
    return t
  end
  if tag == "tbl" then
    local t = {}
    for k, v in pairs(a[2]) do t[k] = resolve(v) end
    return t
  end
  if tag == "userfd" then return user_fds[#user_fds] or 999 end
  if tag == "url" then return ("http://127.0.0.1:%d/x"):format(resolve({ "port", a[2] })) end
  if tag == "fn" then return function() return run_task(a[2]) end end
  if tag == "builtin" then return BUILTIN[a[2]] end
  if tag == "tracefn" then return TRACEFNS[a[2]] end
  if tag == "progress" then return PROGRESS[a[2]] end
  error("unknown argument tag " .. tostring(tag))
end

local function store(step, v)
  -- only objects are kept; the main task never lands in a slot (it must
  -- stay uncancelled to clean up at the deadline)
  local t = type(v)
  if (t == "userdata" or t == "table") and v ~= main_task then slots[step.out] = v end
end

local function exec_step(step)
  local op = step[1]
  if op == "drop" then slots[step[2]] = nil; return end
  if op == "move" then slots[step[2]] = slots[step[3]]; return end
  if op == "gc" then collectgarbage(); return end
  if op == "gcstep" then collectgarbage("step", 10); return end
  if op == "t" then
    if tracefile then
      local cur = uring.current()
      tracefile:write("@@step task ", cur and cur:id() or 0, " ", show(step), "\n")
      tracefile:flush()
    end
    calls = calls + 1
    tracked.guard(tracked.exec, step)
    return
  end
  local name, kind = step[2], step[3]
  local f
  if kind == "lsock" then f = function(o, ...) return o[name](o, ...) end
  elseif kind then f = METHODS[kind][name]
  else
    f = uring
    for part in name:gmatch("[^.]+") do f = type(f) == "table" and f[part] or nil end
  end
  if not f then return end
  local args = {}
  local n = #step.args
  if kind then
    args[1] = resolve(step.self)
    for i = 1, n do args[i + 1] = resolve(step.args[i]) end
    n = n + 1
  else
    for i = 1, n do args[i] = resolve(step.args[i]) end
  end
  if tracefile then
    local cur = uring.current()
    tracefile:write("@@step task ", cur and cur:id() or 0, " ", show(step), "\n")
    tracefile:flush()
  end
  calls = calls + 1
  local r
  if step.timeout then
    r = table.pack(pcall(uring.timeout, step.timeout, f, table.unpack(args, 1, n)))
  else
    r = table.pack(pcall(f, table.unpack(args, 1, n)))
  end
  if r[1] and step.out then store(step, r[2]) end
  if r[1] and (name == "wait_cqe" or name == "peek_cqe") and r[3] == OPEN_UD
      and math.type(r[2]) == "integer" and r[2] >= 0 then
    user_fds[#user_fds + 1] = r[2]
  end
  -- an iterator (lines) is called a few times
  if r[1] and type(r[2]) == "function" and name == "lines" then
    for _ = 1, 3 do
      calls = calls + 1
      if not pcall(r[2]) then break end
    end
  end
end

-- URING_FUZZ_STEPS=N runs only the first N steps of each list, and
-- URING_FUZZ_SKIP="t:i,..." leaves steps out: for cutting a finding down
local max_steps = tonumber(os.getenv("URING_FUZZ_STEPS") or "") or math.huge
local skip = {}
for t, i in (os.getenv("URING_FUZZ_SKIP") or ""):gmatch("(%d+):(%d+)") do
  skip[t .. ":" .. i] = true
end

function run_task(t)
  for i, step in ipairs(program.tasks[t]) do
    if i > max_steps then break end
    if not skip[t .. ":" .. i] then exec_step(step) end
  end
end

local function close_all()
  for k = 1, NSLOT do
    local o = slots[k]
    if type(o) == "table" then                      -- a process
      pcall(o.kill, o, "KILL")
      for _, k2 in ipairs { "stdin", "stdout", "stderr" } do
        pcall(function() o[k2]:close() end)
      end
    elseif o ~= nil then
      pcall(function() o:close() end)
    end
  end
end

local function finding(what)
  io.stdout:write("@@fuzz FINDING seed=", seed, " ", what, "\n")
  io.stdout:flush()
  os.exit(3)
end

local tracked_on = program.tracked
tracked.init(uring, dir, finding, tracefile)

-- warm-up: the loop's ring and the fds that live as long as the state
if program.entries then uring.configure { entries = program.entries } end
if program.sqpoll then uring.configure { sqpoll = true } end
if program.fixed_files then uring.configure { fixed_files = program.fixed_files } end
if program.send_zc then uring.configure { send_zc = program.send_zc } end
uring.run(function() uring.nop() end)
local fds0 = fd_list()

if program.gchook then
  debug.sethook(function() collectgarbage("step", 1) end, "", program.gchook)
end

local ok, err = pcall(uring.run, function()
  -- the main task only keeps time: the program's first list runs as a
  -- task like the others, so it can be cancelled wherever it waits
  main_task = uring.current()
  if tracked_on then
    tracked.guard(tracked.start)
    uring.spawn(run_task, tasks_n + 1)
  end
  uring.spawn(run_task, 1)
  local deadline = uring.now() + program.deadline
  while uring.now() < deadline do uring.sleep(0.01) end
  -- tracked objects first: close them all and let their sinks see the end
  if tracked_on then tracked.guard(tracked.finish) end
  -- the deadline: cancel what is left and close every object, until only
  -- the main task lives (tasks may spawn tasks while being cancelled)
  for _ = 1, 500 do
    local live = uring.tasks()
    if #live <= 1 then break end
    for _, t in ipairs(live) do if t ~= main_task then pcall(t.cancel, t) end end
    close_all()
    uring.sleep(0.005)
  end
  close_all()
end)
debug.sethook()
if not ok and os.getenv("URING_FUZZ_VERBOSE") then io.stderr:write("run: ", tostring(err), "\n") end

-- the fds the program itself received from ring opens are its to close
if #user_fds > 0 then
  local ring = assert(uring.ring { entries = 8 })
  for _, fd in ipairs(user_fds) do
    ring:prep_close(fd)
    ring:submit()
    ring:wait_cqe()
  end
  ring:close()
end

-- drop every reference, collect, and let the loop reap what collection
-- cancelled (a process collected unwaited is reaped by a detached request)
slots, program, bigcache = {}, nil, {}
main_task = nil
for _ = 1, 3 do collectgarbage() end
local t_end = uring.now() + 5
while true do
  local ok2 = pcall(uring.run, function() uring.sleep(0.01) end)
  collectgarbage()
  local s = uring.stats()
  if ok2 and s.inflight == 0 and s.tasks == 0 then break end
  if uring.now() > t_end then
    finding(("left in flight: inflight=%d tasks=%d"):format(s.inflight, s.tasks))
  end
end

-- where every tracked byte went (spec/fuzz/tracked.lua)
if tracked_on then tracked.check() end

-- fds: give children that hold nothing of ours a moment, then compare
local fds1 = fd_list()
if #fds1 ~= #fds0 then
  for _ = 1, 20 do
    pcall(uring.run, function() uring.sleep(0.02) end)
    collectgarbage()
    fds1 = fd_list()
    if #fds1 == #fds0 then break end
  end
end
if #fds1 ~= #fds0 then
  finding(("fd leak: %d before, %d after\nbefore:\n  %s\nafter:\n  %s"):format(#fds0, #fds1,
    table.concat(fds0, "\n  "), table.concat(fds1, "\n  ")))
end
local ts = tracked.stats
io.stdout:write(("@@fuzz calls=%d pid=%d tracked=%d tops=%d cq=%d reused=%d closed=%d "
  .. "cq_closed=%d cq_done=%d cq_failed=%d cq_raised=%d\n"):format(calls, pid, ts.objects,
  ts.ops, ts.cq, ts.reused, ts.closed, ts.cq_closed, ts.cq_done, ts.cq_failed, ts.cq_raised))
io.stdout:flush()
