-- spec/io_diff_spec.lua: differential test of uring files against Lua's io.
--
-- Thousands of random operation sequences (read with random formats, write,
-- seek, lines, flush) run both through io.open and through uring.open, on
-- two files with the same initial contents.  Every result is compared
-- (values and their types; a fail tuple by message and errno), and so are
-- the two files' final bytes.  A mismatch is shrunk to a minimal sequence
-- before it is reported.
--
-- C stdio leaves a read right after a write (and a write right after a
-- read) on one stream undefined without a flush or seek in between; the
-- runner inserts a seek("cur", 0) at every such switch, in both.
--
-- IODIFF_SEED and IODIFF_N override the seed and the number of sequences.
-- Under valgrind (URING_VALGRIND=1, `make valgrind`) 800 sequences: every
-- outcome still shows up many times, and memcheck makes each one some 40
-- times slower, so 2500 would not fit the run's 60 s bound.
local uring = require "uring"

local SEED = tonumber(os.getenv("IODIFF_SEED")) or 1234
local NSEQ = tonumber(os.getenv("IODIFF_N"))
  or (os.getenv("URING_VALGRIND") == "1" and 800 or 2500)

local random = math.random

-- --- generation: everything is drawn before anything runs ---

local numerals = {
  "0x1F", "-3.5e2", ".5", "5.", "  42", "\n\t 7", "1e", "1e+", "0x", "0x.8p1",
  "+", "-", "- 1", "0x1p4", "1.5E+3", "00012", "0", "-0", "0.0e-0", "12abc",
  "3..4", ".", "e5", "0X1A", "0xG", "1e400", "-1e-400", "9223372036854775807",
  "9223372036854775808", "-9223372036854775808", "0x7fffffffffffffff",
  "0xffffffffffffffffff", "1.7976931348623157e308", "nan", "inf", "0b101",
  "1,5", "\v\f\r 8", "+.e1", "0x.p1", "0xp1", "1p4", "0x1e", "0x1E+2",
}


-- Random bytes come from two pools drawn once (per-byte math.random for
-- every file would dominate the run time): slices at random offsets.
local POOL = 1 << 18
local pools = {}

local function rbytes (n, alphabet)
  local key = alphabet or ""
  local pool = pools[key]
  if not pool then
    local t = {}
    for i = 1, POOL do
      if alphabet then
        local k = random(#alphabet)
        t[i] = alphabet:sub(k, k)
      else
        t[i] = string.char(random(0, 255))
      end
    end
    pool = table.concat(t)
    pools[key] = pool
  end
  if n > POOL then return rbytes(POOL, alphabet) .. rbytes(n - POOL, alphabet) end
  local at = random(1, POOL - n + 1)
  return pool:sub(at, at + n - 1)
end

local TEXT = "abc xyz\n\n 0123456789.-+eExX\t\r"

local function rdigits_fast (n) return rbytes(n, "0123456789") end

-- a piece of file content: numerals, lines, random bytes, long lines
local function piece ()
  local k = random(10)
  if k <= 3 then return numerals[random(#numerals)] .. (random(2) == 1 and " " or "\n")
  elseif k == 4 then        -- long numerals: the 200-character limit
    local n = random(190, 210)
    return (random(2) == 1 and "-" or "") .. rdigits_fast(n) .. (random(2) == 1 and "\n" or " ")
  elseif k == 5 then return rbytes(random(0, 40))
  elseif k == 6 then return rbytes(random(0, 300), TEXT)
  elseif k == 7 then return string.rep("x", random(0, 100)) .. "\n"
  elseif k == 8 then return tostring(random(-100000, 100000)) .. " "
  elseif k == 9 then return ("%.17g"):format((random() - 0.5) * 10 ^ random(-5, 20)) .. "\n"
  else return "\n" end
end

local PIECES
local function piece_pool (n)
  if not PIECES then
    local t = {}
    for i = 1, 6000 do t[i] = piece() end
    PIECES = table.concat(t)
  end
  local at = random(1, #PIECES - n + 1)
  return PIECES:sub(at, at + n - 1)
end

local function gen_content ()
  local k = random(20)
  if k == 1 then return "" end
  local t, size = {}, 0
  local target = k <= 15 and random(1, 600) or random(60000, 140000)
  if k == 20 then            -- one very long line
    return rbytes(random(65000, 140000), "abcdefgh 123") .. (random(2) == 1 and "\n" or "")
  end
  while size < target do
    local p = piece()
    if target - size > 5000 then     -- big files: slices of many pieces
      p = p .. piece_pool(random(1000, 20000))
    end
    t[#t + 1] = p
    size = size + #p
  end
  local s = table.concat(t)
  if k >= 16 and random(2) == 1 then
    -- a long numeral straddling the 64 KiB fill boundary
    local at = 65536 - random(0, 210)
    local num = "  -" .. rdigits_fast(random(150, 198)) .. ".5e3\n"
    s = s:sub(1, at) .. num .. s:sub(at + 1)
  end
  return s
end

local FORMATS = { "n", "l", "L", "a", "*l", "*n", "*a", "*L" }

local function gen_format ()
  local k = random(10)
  if k <= 5 then return FORMATS[random(#FORMATS)] end
  if k <= 8 then return random(0, 20) end
  if k == 9 then return random(0, 300) end
  return random(2) == 1 and random(0, 70000) or random(60000, 70000)
end

local function gen_formats ()
  local t = {}
  for i = 1, random(1, 3) do t[i] = gen_format() end
  return t
end

local FLOATS = { 0.5, -0.0, 1e100, -3.25, 1 / 3, 1e-300, math.huge, -math.huge, 2^53, 0.1 }

local function gen_value ()
  local k = random(8)
  if k <= 4 then return rbytes(random(0, 50), TEXT) end
  if k == 5 then
    local ints = { 0, -1, math.maxinteger, math.mininteger, random(-1000, 1000) }
    return ints[random(#ints)]
  end
  if k == 6 then return FLOATS[random(#FLOATS)] end
  if k == 7 then return numerals[random(#numerals)] end
  return rbytes(random(60000, 140000), TEXT)    -- bigger than the write buffer
end

local function gen_op (size)
  local k = random(21)
  if k <= 8 then return { "read", gen_formats() } end
  if k <= 12 then
    local v = {}
    for i = 1, random(1, 3) do v[i] = gen_value() end
    if #v > 1 and random(4) == 1 then v[#v] = nil end
    return { "write", v }
  end
  if k <= 17 then
    local whences = { "set", "cur", "end" }
    local w = whences[random(3)]
    local off
    local j = random(10)
    if j <= 4 then off = random(0, size + 50)
    elseif j <= 6 then off = random(-size - 20, 20)
    elseif j <= 8 then off = random(-20, 20)
    elseif j == 9 then off = nil
    else off = random(size, size + 100000) end
    if w == "cur" and j == 9 and random(2) == 1 then w = nil end
    return { "seek", w, off }
  end
  if k <= 19 then
    local fmts = random(3) == 1 and {} or gen_formats()
    return { "lines", fmts, random(1, 5) }
  end
  if k == 20 then return { "flush" } end
  -- another writer appends to the file: a read at EOF must see it
  return { "grow", rbytes(random(1, 300), TEXT) }
end

local MODES = { "r", "r+", "w", "w+", "a", "a+", "rb", "r+b" }

local function gen_sequence ()
  local seq = { mode = MODES[random(#MODES)], init = gen_content(), ops = {} }
  for i = 1, random(1, 25) do seq.ops[i] = gen_op(#seq.init) end
  return seq
end

-- --- running one sequence on one stream kind ---

local function show (v)
  local t = type(v)
  if t == "string" then
    if #v > 60 then
      return ("string(%d)%q..%q"):format(#v, v:sub(1, 20), v:sub(-20))
    end
    return ("%q"):format(v)
  elseif t == "number" then
    if math.type(v) == "integer" then return "int:" .. v end
    return "float:" .. ("%.17g"):format(v)
  elseif t == "userdata" then
    return "FILE"          -- write returns the file itself, in both
  end
  return t .. ":" .. tostring(v)
end

-- one result tuple as a comparable string
local function tuple (path, ok, ...)
  local n = select("#", ...)
  local parts = {}
  if not ok then
    local msg = tostring((...)):gsub("^[^\n]-:%d+: ", "")
    return "ERROR " .. msg
  end
  for i = 1, n do
    local v = select(i, ...)
    if type(v) == "string" and path then v = v:gsub(path, "PATH", 1, true) end
    parts[i] = show(v)
  end
  return "(" .. table.concat(parts, ", ") .. ")"
end

local function describe_op (op)
  if op[1] == "read" or op[1] == "lines" then
    local f = {}
    for i, x in ipairs(op[2]) do f[i] = show(x) end
    return op[1] .. "(" .. table.concat(f, ",") .. ")" .. (op[3] and (" x" .. op[3]) or "")
  elseif op[1] == "write" then
    local f = {}
    for i, x in ipairs(op[2]) do f[i] = show(x) end
    return "write(" .. table.concat(f, ",") .. ")"
  elseif op[1] == "seek" then
    return ("seek(%s, %s)"):format(tostring(op[2]), tostring(op[3]))
  end
  return op[1]
end

-- What the reference (io) runs exercised: the spec asserts each of these
-- happened often enough for the comparison to mean something.
local tally = setmetatable({}, { __index = function() return 0 end })

local function count (key) tally[key] = tally[key] + 1 end

local function classify (op, ok, ...)
  local kind = op[1]
  local n, r1 = select("#", ...), (...)
  if not ok then count(kind .. " raised") return end
  if kind == "read" then
    for i, fmt in ipairs(op[2]) do
      if i > n then break end
      local v = select(i, ...)
      local fs = type(fmt) == "number" and (fmt == 0 and "0" or "count")
        or fmt:gsub("^%*", "")
      if v == nil then
        if i == 1 and n == 3 then count("read " .. fs .. " errno " .. tostring(select(3, ...)))
        else count("read " .. fs .. " nil") end
        break
      end
      count("read " .. fs .. " " .. (math.type(v) or type(v)))
      if fs == "n" and type(v) == "number" and i < #op[2] then count("read n then more") end
      if fs == "count" and type(v) == "string" and #v >= 65536 then count("read count >= 64K") end
    end
  elseif kind == "write" then
    if r1 == nil then count("write errno " .. tostring(select(3, ...)))
    else
      count("write ok")
      for _, v in ipairs(op[2]) do
        if type(v) == "string" and #v >= 65536 then count("write >= 64K") end
        if math.type(v) == "float" then count("write float") end
        if math.type(v) == "integer" then count("write integer") end
      end
    end
  elseif kind == "seek" then
    count(r1 == nil and ("seek errno " .. tostring(select(3, ...))) or ("seek " .. tostring(op[2])))
  elseif kind == "lines" then
    count(n == 0 and "lines end" or "lines value")
  end
end

-- Run seq.ops on file f; return the list of "op => result" strings.
-- tally_it: count what happened (the io run only).
local function run_ops (f, ops, path, tally_it)
  local log = {}
  local state = "none"       -- last direction: "read", "write" or "none"
  local cur_op
  local function rec (what, ...)
    log[#log + 1] = what .. " => " .. tuple(path, ...)
    if tally_it and cur_op then classify(cur_op, ...) end
  end
  local function switch (to)
    if state ~= "none" and state ~= to then
      local ok, r = pcall(f.seek, f, "cur", 0)
      local saved = cur_op
      cur_op = nil
      rec("[seek(cur,0)]", ok, r)
      cur_op = saved
      state = "none"
    end
    state = to
  end
  for _, op in ipairs(ops) do
    local kind = op[1]
    cur_op = op
    if kind == "read" then
      switch("read")
      rec(describe_op(op), pcall(f.read, f, table.unpack(op[2])))
    elseif kind == "write" then
      switch("write")
      rec(describe_op(op), pcall(f.write, f, table.unpack(op[2])))
    elseif kind == "seek" then
      local r = table.pack(pcall(f.seek, f, op[2], op[3]))
      rec(describe_op(op), table.unpack(r, 1, r.n))
      if r[1] and r[2] then state = "none" end
    elseif kind == "lines" then
      switch("read")
      local ok, it = pcall(f.lines, f, table.unpack(op[2]))
      if not ok then rec(describe_op(op), ok, it)
      else
        for i = 1, op[3] do
          rec(describe_op(op) .. " #" .. i, pcall(it))
        end
      end
    elseif kind == "flush" then
      rec("flush", pcall(f.flush, f))
      if state == "write" then state = "none" end
    elseif kind == "grow" then
      -- flush first: what else is in the file must not depend on when
      -- each stream's (differently sized) write buffer fills up
      rec("grow: flush", pcall(f.flush, f))
      if state == "write" then state = "none" end
      local h = assert(io.open(path, "ab"))
      h:write(op[2])
      h:close()
    end
  end
  return log
end

local function write_raw (path, s)
  local h = assert(io.open(path, "wb"))
  assert(h:write(s))
  assert(h:close())
end

local function read_raw (path)
  local h = assert(io.open(path, "rb"))
  local s = h:read("a")
  h:close()
  return s
end

-- Run one sequence both ways (inside a task); nil if they agree, else
-- a description of the first difference.
local function compare (seq, iopath, urpath)
  write_raw(iopath, seq.init)
  write_raw(urpath, seq.init)
  local fi, emi, eni = io.open(iopath, seq.mode)
  local fu, emu, enu = uring.open(urpath, seq.mode)
  if not fi or not fu then
    local a = tuple(iopath, true, fi and "FILE" or fi, emi, eni)
    local b = tuple(urpath, true, fu and "FILE" or fu, emu, enu)
    if a ~= b then return "open: io " .. a .. " uring " .. b end
    if fi then fi:close() end
    if fu then fu:close() end
    return nil
  end
  local li = run_ops(fi, seq.ops, iopath, not seq.shrinking)
  local lu = run_ops(fu, seq.ops, urpath)
  local ci = tuple(nil, pcall(fi.close, fi))
  local cu = tuple(nil, pcall(fu.close, fu))
  li[#li + 1] = "close => " .. ci
  lu[#lu + 1] = "close => " .. cu
  for i = 1, math.max(#li, #lu) do
    if li[i] ~= lu[i] then
      return ("step %d:\n    io:    %s\n    uring: %s"):format(
        i, tostring(li[i]), tostring(lu[i]))
    end
  end
  local bi, bu = read_raw(iopath), read_raw(urpath)
  if bi ~= bu then
    local at = 1
    while bi:sub(at, at) == bu:sub(at, at) do at = at + 1 end
    return ("final contents differ: io %d bytes, uring %d bytes, first difference at byte %d"
      .. " (io %q, uring %q)"):format(#bi, #bu, at, bi:sub(at, at + 10), bu:sub(at, at + 10))
  end
  return nil
end

-- Shrink a failing sequence: drop ops while it still fails, then cut
-- chunks of the initial contents (halves, quarters, ... single bytes).
-- Bounded: at most `budget` reruns.
local function shrink (seq, iopath, urpath, budget)
  budget = budget or 3000
  local cur = { mode = seq.mode, init = seq.init, ops = { table.unpack(seq.ops) } }
  local function fails (try)
    if budget <= 0 then return false end
    budget = budget - 1
    return compare(try, iopath, urpath) ~= nil
  end
  local changed = true
  while changed and budget > 0 do
    changed = false
    for i = #cur.ops, 1, -1 do
      local ops = { table.unpack(cur.ops) }
      table.remove(ops, i)
      local try = { mode = cur.mode, init = cur.init, ops = ops, shrinking = true }
      if fails(try) then cur = try; changed = true end
    end
    local chunk = #cur.init
    while chunk >= 1 do
      local from = 1
      while from <= #cur.init do
        local init = cur.init:sub(1, from - 1) .. cur.init:sub(from + chunk)
        local try = { mode = cur.mode, init = init, ops = cur.ops, shrinking = true }
        if fails(try) then cur = try; changed = true
        else from = from + chunk end
      end
      chunk = chunk // 2
    end
  end
  return cur
end

local function render (seq)
  local lines = { ("mode %q, initial contents (%d bytes) %s"):format(
    seq.mode, #seq.init, show(seq.init)) }
  for i, op in ipairs(seq.ops) do lines[#lines + 1] = ("  %d. %s"):format(i, describe_op(op)) end
  return table.concat(lines, "\n")
end

describe("uring files against io (differential) #io", function()
  local base, iopath, urpath

  before_each(function()
    base = os.tmpname()
    iopath, urpath = base .. ".io", base .. ".ur"
  end)

  after_each(function()
    os.remove(iopath); os.remove(urpath); os.remove(base)
    assert.equal(0, uring.stats().inflight)
  end)

  it(("agrees on %d random operation sequences"):format(NSEQ), function()
    print(("\nio_diff: seed %d, %d sequences"):format(SEED, NSEQ))
    math.randomseed(SEED)
    local seqs = {}
    for i = 1, NSEQ do seqs[i] = gen_sequence() end
    local t0 = os.time()
    local clock0 = os.clock()
    local failures, nops = {}, 0
    local t_start = uring.run(function()
      local t = uring.now()
      for i, seq in ipairs(seqs) do
        nops = nops + #seq.ops
        local diff = compare(seq, iopath, urpath)
        if diff then
          local small = shrink(seq, iopath, urpath)
          failures[#failures + 1] = ("sequence %d (seed %d):\n%s\n  %s"):format(
            i, SEED, render(small), compare(small, iopath, urpath) or diff)
          if #failures >= 5 then break end
        end
      end
      return uring.now() - t
    end)
    print(("io_diff: %d sequences, %d ops, %.2f s (%.2f s CPU)"):format(
      NSEQ, nops, t_start, os.clock() - clock0))
    local keys = {}
    for k in pairs(tally) do keys[#keys + 1] = k end
    table.sort(keys)
    local shown = {}
    for _, k in ipairs(keys) do shown[#shown + 1] = ("%s=%d"):format(k, tally[k]) end
    print("io_diff: outcomes (io side): " .. table.concat(shown, ", "))
    assert(os.time() - t0 < 60, "the differential run took too long")
    assert(#failures == 0, "\n" .. table.concat(failures, "\n\n"))
    -- the run covered what it claims to (counts from the io side)
    local need = {
      "read n float", "read n integer", "read n nil", "read n then more",
      "read l string", "read l nil", "read L string", "read a string",
      "read 0 string", "read 0 nil", "read count string", "read count nil",
      "read count >= 64K", "read l errno 9", "write errno 9", "write ok",
      "write >= 64K", "write float", "write integer", "seek errno 22",
      "seek set", "seek cur", "seek end", "lines value", "lines end",
      "lines raised",
    }
    for _, k in ipairs(need) do
      assert(tally[k] >= 5, ("outcome %q happened only %d times"):format(k, tally[k]))
    end
  end)
end)
