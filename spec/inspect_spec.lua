-- uring.inspect: the live inspector.  The first part talks to it over
-- HTTP (also under the ring-setup matrix); the second loads its page in
-- headless Chromium and reads the figures back from the DOM.
local uring = require "uring"
local helpers = require "helpers"
local browser = require "helpers.browser"

-- A workload that holds still: n tasks each blocked reading its own pipe
-- (helpers.pipe: a FIFO), released by the returned function.
local function blocked_readers(n)
  local ws, tasks = {}, {}
  for i = 1, n do
    local r, w = helpers.pipe()
    ws[i] = w
    tasks[i] = uring.spawn(function()
      local s = r:read(1)
      r:close()
      return s
    end)
  end
  return tasks, function()
    for i = 1, n do ws[i]:write("x"); ws[i]:close() end
    for i = 1, n do assert(select(2, tasks[i]:join()) == "x") end
  end
end

local function get_state(insp)
  local res = assert(uring.http.request(insp:url() .. "state.json"))
  assert.equal(200, res.status)
  return res.body
end

describe("uring.inspect #io #net", function()
  after_each(function()
    uring.trace(false)
    assert.equal(0, uring.stats().inflight)
    assert.equal(0, uring.stats().tasks)
  end)

  it("serves a snapshot: the user's tasks and requests, not its own", helpers.clean(function()
    uring.run(function()
      local insp = assert(uring.inspect())
      assert.matches("^http://127%.0%.0%.1:%d+/$", insp:url())
      local tasks, release = blocked_readers(3)
      uring.sleep(0.05)
      local body = get_state(insp)
      -- three reads in flight, counted by op; the listener's accept and
      -- the connection's recv are the inspector's own
      assert.matches('"inflight_ops":{[^}]*"read":3', body)
      assert.not_matches('"accept"', body:match('"inflight_ops":(%b{})'))
      for _, t in ipairs(tasks) do
        assert.matches(('{"id":%d,"status":"waiting","waiting_on":"read"}'):format(t:id()), body, 1, true)
      end
      local entries = uring.stats().entries
      assert.matches(('"sq_entries":%d'):format(entries), body, 1, true)
      -- the kernel's view (fdinfo) of the same ring
      assert.matches('"SqMask":' .. (entries - 1), body, 1, true)
      release()
      insp:close()
    end)
  end))

  it("is not traced: the timeline holds the user's requests only", function()
    local seen = {}
    uring.run(function()
      uring.trace(function(e)
        -- a small send's CQE has no task (the task went on: sock:send's
        -- send-behind); its SQE was traced under the task that sent it
        if e.task and not (e.task == 0 and e.event == "cqe" and e.op == "send") then
          seen[e.task] = true
        end
      end)
      local insp = assert(uring.inspect(0))
      local me = uring.current():id()
      uring.nop()
      get_state(insp)                 -- a request the inspector answers
      insp:close()
      uring.sleep(0.2)
      uring.trace(false)
      -- only the main task's own requests (the nop, its http client
      -- connection and sleeps) were traced: none of the server's tasks
      for id in pairs(seen) do assert.equal(me, id) end
      assert.truthy(seen[me])
    end)
  end)

  it("ends by itself when the user's tasks have ended", function()
    local t0 = uring.now()
    local insp
    uring.run(function()
      insp = assert(uring.inspect(0))
      uring.sleep(0.05)
    end)
    -- a run with the inspector open still returns, and soon
    assert.is_true(uring.now() - t0 < 3)
    assert.equal(0, uring.stats().tasks)
    assert.is_true(insp:close())        -- closing again is harmless
  end)

  it("turns tracing on for its timeline and off again; leaves the user's on", function()
    uring.run(function()
      local insp = uring.inspect(0)
      assert.matches('"tracing":true', get_state(insp))
      -- its own listener's accept was made under its trace: not in it
      local events = get_state(insp):match('"events":(%b[])')
      assert.matches('"connect"', events)        -- the client's: ours
      assert.not_matches('"accept"', events)
      insp:close()
    end)
    -- it turned tracing on, so it turned it off: a user trace fn set now
    -- sees nothing from before
    local n = 0
    uring.trace(function() n = n + 1 end)
    uring.run(function()
      local insp = uring.inspect(0)
      insp:close()
      uring.nop()
    end)
    uring.run(function() uring.nop() end)
    assert.is_true(n > 0)
    uring.trace(false)
  end)

  it("raises on a bad port and outside a task", function()
    assert.matches(helpers.badarg(1, "inspect", "number expected, got string"),
      helpers.errmsg(uring.run, function() uring.inspect("x") end))
    assert.matches(helpers.badarg(1, "inspect", "port must be in 0..65535, got 70000"),
      helpers.errmsg(uring.run, function() uring.inspect(70000) end))
    assert.matches(helpers.badarg(1, "inspect", "number has no integer representation"),
      helpers.errmsg(uring.run, function() uring.inspect(1.5) end))
    assert.matches("not inside a task", helpers.errmsg(uring.inspect))
    uring.run(function()
      local insp = uring.inspect()
      assert.matches(helpers.badarg(1, "close", "uring.inspector expected, got nil"),
        helpers.errmsg(function() insp.close() end))
      insp:close()
    end)
  end)

  it("returns nil, msg, errno when the port is taken", function()
    uring.run(function()
      local a = assert(uring.inspect(0))
      helpers.fails("in use", 98, uring.inspect(a:port()))
      a:close()
    end)
  end)
end)

-- Chromium runs once (not under the ring matrix): its start-up is seconds.
describe("uring.inspect in headless Chromium", function()
  it("shows the live figures, consistent with uring.stats(), and a screenshot", function()
    assert(browser.available(), "chromium is not installed (make deps-test installs it)")
    os.execute("mkdir -p build")
    local png = "build/inspect.png"
    os.remove(png)
    local dom, before, after, readers, entries
    uring.run(function()
      local insp = assert(uring.inspect(0))
      local release
      -- batches of 64 nops from 64 tasks until the page has seen some
      local ticking = true
      local ticker = uring.spawn(function()
        while ticking do
          local t = {}
          for j = 1, 64 do t[j] = uring.spawn(uring.nop) end
          for j = 1, 64 do t[j]:join() end
          uring.sleep(0.05)
        end
      end)
      -- the page stops listening after 6 snapshots (?updates=6): then
      -- nothing is pending and chromium, in virtual time, dumps the DOM.
      -- (Waiting for the server to go instead hung chromium one run in
      -- five.)  It has hung at start-up too, seldom: one more try if it
      -- never asked for the page.
      local page, deadline
      for _ = 1, 2 do
        page = browser.start(insp:url() .. "?updates=6", png)
        deadline = uring.now() + 120              -- a loaded box: generous
        local asked = uring.now() + 45
        while insp.updates < 2 and uring.now() < deadline do
          if insp.server.connections == 0 and uring.now() > asked then break end
          uring.sleep(0.05)
        end
        if insp.server.connections > 0 then break end
        page:finish(0)
      end
      local took = ("%d updates, %d connections"):format(insp.updates, insp.server.connections)
      ticking = false
      ticker:join()
      -- then four reads that stay in flight: bars on the page's timeline
      -- (from their SQEs to now) whenever its last snapshot comes
      readers, release = blocked_readers(4)
      before = uring.stats()
      dom = page:finish(math.max(1, deadline - uring.now()))
      if not dom then dom = false; io.stderr:write("inspect_spec: chromium: ", took, "\n") end
      after = uring.stats()
      insp:close()
      entries = after.entries
      release()
    end)
    assert.truthy(dom, "chromium did not finish in time")
    helpers.writeall("build/inspect.dom.html", dom)   -- to read when it fails
    local function num(id)
      local v = dom:match('id="' .. id:gsub("%p", "%%%0") .. '"[^>]*>([^<]*)<')
      assert(v, "no element #" .. id .. " in the DOM")
      return tonumber(v) or v
    end
    assert.equal("paused", num("status"))
    assert.equal(6, num("updates"))
    -- counters: a snapshot taken between the two stats() readings
    for _, k in ipairs { "enters", "sqes", "cqes", "waits" } do
      local v = num("stat-" .. k)
      assert.is_true(v >= before[k] and v <= after[k],
        ("%s: the page shows %s, stats() went from %d to %d"):format(k, v, before[k], after[k]))
    end
    assert.equal(tostring(entries), tostring(num("ring-entries")):match("^(%d+) /"))
    -- the mapped ring and the kernel's fdinfo agree
    assert.equal(num("ring-sq_head"), num("kernel-SqHead"))
    assert.equal(num("ring-cq_tail"), num("kernel-CqTail"))
    assert.equal(0, num("ring-overflow"))
    -- the four readers, each waiting on its read
    for _, t in ipairs(readers) do
      local row = ('<tr data-key="%d"><td class="n">%d</td><td>waiting</td><td>read</td></tr>')
        :format(t:id(), t:id())
      assert(dom:find(row, 1, true), "no row " .. row)
    end
    local ops = '<tr data-key="read"><td>read</td><td class="n">4</td></tr>'
    assert(dom:find(ops, 1, true), "no row " .. ops)
    assert.is_number(num("rate-enters"))
    -- the timeline: a bar per request, as many as it says
    local bars = select(2, dom:gsub('<rect class="req"', ""))
    assert.is_true(bars >= 4, bars .. " bars")           -- the reads in flight at least
    assert.equal(bars, num("timeline-bars"))
    assert.is_true(select(2, dom:gsub('<line class="enter"', "")) > 0)
    assert.truthy(helpers.exists(png), "no screenshot")
    assert.is_true(#helpers.readall(png) > 10000)
  end)
end)
