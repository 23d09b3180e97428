-- uring.trace and uring.stats: one event per SQE prepared and per CQE
-- reaped, delivered from the loop's own frame.
local uring = require "uring"
local helpers = require "helpers"

describe("uring.trace", function()
  after_each(function()
    uring.trace(false)
    assert.equal(0, uring.stats().inflight)
  end)

  it("reports the SQE and the CQE of a nop and a read, with task and result", function()
    local ev = {}
    local path = os.tmpname()
    local f = io.open(path, "w"); f:write("0123456789"); f:close()
    uring.trace(function(e) ev[#ev + 1] = e end)
    local tid = uring.run(function()
      uring.nop()
      local file = assert(uring.open(path))
      assert.equal("0123", file:pread(4, 0))
      file:close()
      return uring.current():id()
    end)
    uring.trace(false)
    os.remove(path)
    local by = {}
    for _, e in ipairs(ev) do by[e.event .. ":" .. e.op] = e end
    assert.truthy(by["sqe:nop"]); assert.truthy(by["cqe:nop"])
    assert.equal(0, by["cqe:nop"].res)
    assert.equal(tid, by["sqe:nop"].task)
    assert.equal(by["sqe:nop"].user_data, by["cqe:nop"].user_data)
    assert.is_number(by["cqe:nop"].elapsed)
    assert.is_false(by["cqe:nop"].more)
    assert.truthy(by["sqe:openat"]); assert.truthy(by["cqe:openat"])
    assert.equal(4, by["sqe:read"].len)
    assert.equal(4, by["cqe:read"].res)
    assert.truthy(by["cqe:close"])
  end)

  it("shows file:sync() after buffered writes as a linked write+fsync", function()
    local ev = {}
    local path = os.tmpname()
    uring.trace(function(e) ev[#ev + 1] = e end)
    uring.run(function()
      local f = assert(uring.open(path, "w"))
      f:write(string.rep("x", 1000))
      assert.is_true(f:sync())
      f:close()
    end)
    uring.trace(false)
    local got = {}
    for _, e in ipairs(ev) do
      if e.op == "write" or e.op == "fsync" then got[#got + 1] = e.event .. ":" .. e.op .. (e.res and ("=" .. e.res) or "") end
    end
    -- both SQEs prepared before either completes: one chain, one submit
    assert.same({ "sqe:write", "sqe:fsync", "cqe:write=1000", "cqe:fsync=0" }, got)
    local f = io.open(path); assert.equal(1000, #f:read("a")); f:close()
    os.remove(path)
  end)

  it("shows a cancelled sleep as -ECANCELED", function()
    local ev = {}
    uring.trace(function(e) ev[#ev + 1] = e end)
    uring.run(function()
      local t = uring.spawn(uring.sleep, 30)
      uring.yield()
      t:cancel()
      t:join()
    end)
    uring.trace(false)
    local found
    for _, e in ipairs(ev) do
      if e.event == "cqe" and e.op == "timeout" then found = e end
    end
    assert.truthy(found)
    assert.equal(-125, found.res)
    assert.equal(125, found.errno)
  end)

  it("shows the multishot accept's CQEs with more = true", function()
    local ev = {}
    uring.trace(function(e) ev[#ev + 1] = e end)
    uring.run(function()
      local srv = assert(uring.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local c = assert(uring.connect("127.0.0.1", port))
      local a = assert(srv:accept())
      a:close(); c:close(); srv:close()
    end)
    uring.trace(false)
    local more
    for _, e in ipairs(ev) do
      if e.event == "cqe" and e.op == "accept" and e.res >= 0 then more = e.more end
    end
    assert.is_true(more)
  end)

  it("prints compact lines with trace(true)", function()
    local out, code = helpers.sh(helpers.lua_cmd() .. [[ -e '
      local uring = require "uring"
      uring.trace(true)
      uring.run(uring.nop)' ]])
    assert.equal(0, code, out)
    assert.matches("%[uring%] sqe nop", out)
    assert.matches("%[uring%] cqe nop .*res=0", out)
  end)

  it("turns itself off when the trace function fails", function()
    local n = 0
    uring.trace(function() n = n + 1; error("oops") end)
    uring.run(function() uring.nop(); uring.nop(); uring.nop() end)
    assert.equal(1, n)
  end)

  it("raises on a bad argument", function()
    assert.has_error(function() uring.trace(42) end)
    assert.has_error(function() uring.trace("x") end)
  end)
end)

describe("uring.trace: time and enters", function()
  after_each(function()
    uring.trace(false)
    assert.equal(0, uring.stats().inflight)
  end)

  it("stamps every event with uring.now(), in the order things happened", function()
    local ev = {}
    local t0 = uring.now()
    uring.trace(function(e) ev[#ev + 1] = e end)
    uring.run(function() uring.nop(); uring.sleep(0.01); uring.nop() end)
    uring.trace(false)
    local t1 = uring.now()
    assert.is_true(#ev >= 6)
    local prev = t0
    for _, e in ipairs(ev) do
      assert.is_number(e.time)
      assert.is_true(e.time >= prev and e.time <= t1, e.event .. " " .. e.op)
      prev = e.time
    end
    local sqe, cqe
    for _, e in ipairs(ev) do
      if e.op == "timeout" then
        if e.event == "sqe" then sqe = e else cqe = e end
      end
    end
    assert.is_true(cqe.time - sqe.time >= 0.009)       -- the sleep, between them
    assert.near(cqe.elapsed, cqe.time - sqe.time, 1e-9)
  end)

  it("reports each io_uring_enter: what it was given, submitted and left ready", function()
    local ev = {}
    local s0 = uring.stats()
    uring.trace(function(e) ev[#ev + 1] = e end)
    uring.run(function()
      local ts = {}
      for i = 1, 8 do ts[i] = uring.spawn(uring.nop) end
      for i = 1, 8 do ts[i]:join() end
    end)
    uring.trace(false)
    local s1 = uring.stats()
    local enters, batch = {}, nil
    for i, e in ipairs(ev) do
      if e.event == "enter" then
        enters[#enters + 1] = e
        assert.equal("enter", e.op)
        assert.is_true(e.submitted <= e.to_submit)
        -- the enter that took the 8 NOPs: all 8 SQEs before it, all 8
        -- CQEs after it
        if e.submitted >= 8 and not batch then batch = i end
      end
    end
    -- one event per syscall, but for the untraced ones of the run's
    -- SIGINT poll (armed and cancelled around the run)
    assert.is_true(#enters >= 2 and #enters <= s1.enters - s0.enters)
    assert.truthy(batch, "no enter submitted the 8 NOPs at once")
    local before, after = 0, 0
    for i, e in ipairs(ev) do
      if e.op == "nop" and e.event == "sqe" and i < batch then before = before + 1 end
      if e.op == "nop" and e.event == "cqe" and i > batch then after = after + 1 end
    end
    assert.equal(8, before)
    assert.equal(8, after)
    assert.equal(1, ev[batch].min_complete)           -- the loop waited for one
    assert.is_true(ev[batch].ready >= 1)
  end)

  it("prints enter lines with trace(true)", function()
    local out, code = helpers.sh(helpers.lua_cmd() .. [[ -e '
      local uring = require "uring"
      uring.trace(true)
      uring.run(uring.nop)' ]])
    assert.equal(0, code, out)
    assert.matches("%[uring%] sqe nop .* @%d+%.%d+\n", out)
    assert.matches("%[uring%] enter +to_submit=%d+ min_complete=1 submitted=%d+ ready=%d+ @%d+%.%d+\n", out)
  end)
end)

describe("uring.trace_export", function()
  -- parse the file with python3's json module, and print what the checks
  -- need: one line per event, "ph name tid ts dur args"
  local function load_trace(path)
    local out, code = helpers.sh("python3 -c " .. helpers.shq([[
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d["traceEvents"], list)
for e in d["traceEvents"]:
    a = e.get("args", {})
    print(e["ph"], e["name"].replace(" ", "_"), e.get("tid", "-"), e.get("ts", "-"),
          e.get("dur", "-"), a.get("submitted", a.get("res", a.get("name", "-"))))
]]) .. " " .. path)
    assert.equal(0, code, out)
    local evs = {}
    for ph, name, tid, ts, dur, x in out:gmatch("(%S+) (%S+) (%S+) (%S+) (%S+) ([^\n]+)\n") do
      evs[#evs + 1] = { ph = ph, name = name, tid = tonumber(tid), ts = tonumber(ts),
        dur = tonumber(dur), x = x }
    end
    return evs
  end

  after_each(function() uring.trace(false) end)

  it("writes a Perfetto trace: task tracks, request slices, enters as instants", function()
    local dir = helpers.tmpdir()
    helpers.writeall(dir .. "/f", string.rep("x", 4096))
    uring.trace(function() end)
    uring.run(function()
      local f <close> = assert(uring.open(dir .. "/f"))
      local ts = {}
      for i = 1, 16 do ts[i] = uring.spawn(function() return f:pread(100, i * 100) end) end
      for i = 1, 16 do assert.equal(string.rep("x", 100), select(2, ts[i]:join())) end
    end)
    uring.trace(false)
    local n = uring.trace_export(dir .. "/trace.json")
    local evs = load_trace(dir .. "/trace.json")
    helpers.rmrf(dir)
    assert.is_true(n > 32)
    local reads, enters, names = {}, {}, {}
    for _, e in ipairs(evs) do
      if e.ph == "X" and e.name == "read" then reads[#reads + 1] = e end
      if e.ph == "i" and e.name == "io_uring_enter" then enters[#enters + 1] = e end
      if e.ph == "M" and e.name == "thread_name" then names[e.tid] = e.x end
    end
    assert.equal(16, #reads)
    local tids = {}
    for _, r in ipairs(reads) do
      assert.equal("100", r.x)                        -- res: the bytes read
      assert.is_true(r.dur >= 0)
      assert.equal("task_" .. r.tid, (names[r.tid]:gsub(" ", "_")))
      tids[r.tid] = true
    end
    local ntids = 0
    for _ in pairs(tids) do ntids = ntids + 1 end
    assert.equal(16, ntids)                           -- one track per task
    -- the batch: an enter that submitted the 16 reads lies inside every slice
    local batch
    for _, e in ipairs(enters) do if tonumber(e.x) >= 16 then batch = e end end
    assert.truthy(batch, "no enter submitted the 16 reads at once")
    for _, r in ipairs(reads) do
      assert.is_true(r.ts <= batch.ts and batch.ts <= r.ts + r.dur + 0.001)
    end
  end)

  it("keeps the log after tracing stops and starts a new one when it starts", function()
    local path = os.tmpname()
    uring.trace(function() end)
    uring.run(function() uring.nop(); uring.nop() end)
    uring.trace(false)
    uring.run(uring.nop)                              -- not traced
    local n = uring.trace_export(path)
    uring.trace(function() end)
    uring.run(uring.nop)
    uring.trace(false)
    local m = uring.trace_export(path)
    local evs = load_trace(path)
    os.remove(path)
    local nops = 0
    for _, e in ipairs(evs) do if e.name == "nop" then nops = nops + 1 end end
    assert.is_true(n >= 4 and m < n, ("%d then %d"):format(n, m))
    assert.equal(1, nops)
  end)

  it("returns nil, msg, errno for a path it cannot write, and raises on a bad one", function()
    local ok, msg, en = uring.trace_export("/nonexistent/dir/trace.json")
    assert.is_nil(ok)
    assert.matches("/nonexistent/dir/trace.json: No such file or directory", msg, 1, true)
    assert.equal(uring.errno.ENOENT, en)
    assert.has_error(function() uring.trace_export({}) end,
      "bad argument #1 to 'trace_export' (string expected, got table)")
    assert.has_error(function() uring.trace_export() end,
      "bad argument #1 to 'trace_export' (string expected, got no value)")
  end)
end)

describe("uring.trace: the teaching ring", function()
  after_each(function() uring.trace(false) end)

  it("traces its SQEs, enters and CQEs, delivered before each call returns", function()
    local r <close> = uring.ring { entries = 4 }
    local ev = {}
    uring.trace(function(e) ev[#ev + 1] = e end)
    r:prep_nop(7); r:prep_nop(8)
    assert.equal(0, #ev)                       -- prepared: the kernel knows nothing yet
    assert.equal(2, r:submit())
    assert.equal(3, #ev)                       -- no uring.run: delivered at once
    assert.same({ "sqe", "sqe", "enter" }, { ev[1].event, ev[2].event, ev[3].event })
    local ring = ev[1].ring
    assert.is_true(math.type(ring) == "integer" and ring > 0)
    assert.equal(7, ev[1].user_data); assert.equal(8, ev[2].user_data)   -- the user's
    assert.equal("nop", ev[1].op)
    assert.equal(2, ev[3].to_submit); assert.equal(2, ev[3].submitted)
    assert.equal(0, ev[3].min_complete); assert.equal(ring, ev[3].ring)
    r:wait_cqe(); r:wait_cqe()
    assert.equal(5, #ev)                       -- the CQ held both: no enter to wait
    assert.equal("cqe", ev[4].event); assert.equal(7, ev[4].user_data)
    assert.equal(0, ev[4].res); assert.equal(ring, ev[4].ring)
    assert.is_true(ev[4].elapsed >= 0 and ev[4].time >= ev[1].time)
    r:prep_timeout(0.01, 0, 9)
    r:submit()
    r:wait_cqe()                                -- an empty CQ: it waits in an enter
    local waits = 0
    for i = 6, #ev do
      if ev[i].event == "enter" and ev[i].min_complete == 1 then waits = waits + 1 end
    end
    assert.equal(1, waits)
    assert.equal(-62, ev[#ev].res)             -- the timeout's CQE: -ETIME
  end)

  it("exports a ring's requests on a track of its own", function()
    local path = os.tmpname()
    local r <close> = uring.ring { entries = 4 }
    uring.trace(function() end)
    for i = 1, 3 do r:prep_nop(i) end
    r:submit_and_wait(3)
    for _ = 1, 3 do r:wait_cqe() end
    uring.trace(false)
    assert.equal(7, uring.trace_export(path))  -- 3 SQEs, 1 enter, 3 CQEs
    local json = helpers.readall(path)
    os.remove(path)
    local fd = assert(json:match('"name":"ring %(fd (%d+)%)"'), json)
    local tid = 1000000 + tonumber(fd)
    local slices = 0
    for t in json:gmatch('"name":"nop","cat":"request","ph":"X","pid":1,"tid":(%d+)') do
      assert.equal(tid, tonumber(t))
      slices = slices + 1
    end
    assert.equal(3, slices)
    assert.matches('"name":"io_uring_enter","ph":"i","s":"t","pid":1,"tid":' .. tid, json)
  end)
end)
