-- spec/regress/12_modes_spec.lua: issue 12, the failure modes no spec
-- reached.  One describe per mode, in the issue's order:
--
--   1. a multishot accept ended by CQ overflow is armed again
--   2. io_uring_enter fails with EAGAIN or EBUSY after the SQEs were pushed
--   3. the provided-buffer group runs dry under a burst
--   4. the main task returns while 1,000 receives are in flight
--   5. ops missing from the probe, setup flags refused with EINVAL
--
-- Where this kernel produces the mode on request (a 4-entry ring whose
-- 8-entry CQ a storm overflows, a burst bigger than the buffer group) the
-- spec does just that, in this process.  Where it does not (EAGAIN from
-- io_uring_enter, an older kernel's missing ops and flags, a consumer that
-- keeps buffers) the spec runs a child on the test build's core
-- (helpers.faulty: build-asan, ASan+UBSan, with the hooks of
-- spec/helpers/faults.c that only a -DUR_FAULTS build compiles) and reads
-- what it printed.  Receives are one SQE each (IORING_OP_RECV with a
-- provided buffer), not multishot, unless configure{recv_multishot} (the
-- #net matrix pass; spec/recv_multishot_spec.lua has its own modes).
local uring = require "uring"
local helpers = require "helpers"

local run = helpers.runner(30)
local E = uring.errno
local EAGAIN, EBUSY, ENOBUFS, EOPNOTSUPP = E.EAGAIN, E.EBUSY, E.ENOBUFS, E.EOPNOTSUPP

-- LuaSocket's C module itself (uring.install_socket may stand in for
-- "socket"): blocking calls that keep the loop from reaping meanwhile
local luasocket = package.loadlib(package.searchpath("socket.core", package.cpath),
  "luaopen_socket_core")()

-- a child on the test build must end with status 0 and print "ok"
local function child_ok(out, status)
  assert(status == 0 and (out:match("\nok\n?$") or out:match("^ok\n?$")),
    "the child failed (status " .. tostring(status) .. "):\n" .. out)
  return out
end

describe("regression #12: failure modes #io #net", function()
  describe("1. a multishot accept ended by CQ overflow", function()
    it("is armed again, and the server serves every connection of the storm", helpers.clean(function()
      helpers.with_ring(4, function() run(function()
        local N = 200
        local srv, port = helpers.listen()
        local handlers = {}
        local server = uring.spawn(function()
          for i = 1, N do
            local c = assert(srv:accept())
            handlers[i] = uring.spawn(function()
              local line = assert(c:receive())
              assert(c:send(line .. "\n"))
              c:close()
            end)
          end
        end)
        uring.yield()                   -- the server waits in accept
        local ends, arms = 0, 0
        uring.trace(function(e)
          if e.op == "accept" and e.event == "sqe" then arms = arms + 1 end
          if e.op == "accept" and e.event == "cqe" and not e.more then ends = ends + 1 end
        end)
        local s0 = uring.stats()
        -- the storm: this task connects N times with blocking calls and
        -- never yields, so the loop reaps nothing meanwhile; the kernel
        -- posts an accept CQE per connection into the 8-entry CQ, and when
        -- one does not fit it ends the multishot (its last CQE, without
        -- IORING_CQE_F_MORE, goes to the overflow list)
        local cs = {}
        for i = 1, N do
          cs[i] = assert(luasocket.tcp())
          assert(cs[i]:connect("127.0.0.1", port))
          assert(cs[i]:send("hello " .. i .. "\n"))
        end
        assert(server:join())
        for i = 1, N do assert(handlers[i]:join()) end
        -- every handler has sent its echo: these reads do not block
        for i = 1, N do
          assert.equal("hello " .. i, cs[i]:receive("*l"))
          cs[i]:close()
        end
        uring.nop()                     -- the last trace events
        uring.trace(false)
        local s1 = uring.stats()
        assert.is_true(s1.overflow_flushes > s0.overflow_flushes, "the CQ never overflowed")
        assert.is_true(ends >= 1, "no accept multishot was ended by the overflow")
        -- each end is followed by a new arm when an accept still waits; the
        -- first arm came before the trace, and the storm's last end may
        -- find no accept waiting (the server has its N): so arms + 1
        assert.is_true(arms + 1 >= ends, ("ended %d times, armed %d times"):format(ends, arms))
        srv:close()
      end) end)
    end))
  end)

  describe("2. io_uring_enter fails with EAGAIN or EBUSY after the SQEs were pushed", function()
    -- the child (build-asan): every second (EAGAIN) or third (EBUSY)
    -- submit fails after pushing its SQEs, as io_uring_enter does when
    -- the kernel is short of memory or its CQ is backed up (tokio#8255);
    -- meanwhile pinned sends, linked timeouts, timers, pooled reads and an
    -- accept storm run on a 4-entry ring, with the collector running.
    -- ASan would abort the child on a request freed before its CQE.
    local CHILD = [[
      local uring = require "uring"
      local core = require "uring.core"
      local helpers = require "helpers"
      local ERR, PERIOD = os.getenv("FAULT"), tonumber(os.getenv("PERIOD"))
      uring.configure { entries = 4 }
      local dir = helpers.tmpdir()
      local srv_outside
      uring.run(function() uring.nop() end)
      local fds0 = helpers.fds()
      require("uring.faults").enter(1000000, ERR, PERIOD)
      local done = uring.run(function()
        local done, ts = 0, {}
        for i = 1, 30 do                -- pinned sends, half with settimeout
          ts[#ts + 1] = uring.spawn(function()
            local c, s = helpers.pair()
            if i % 2 == 0 then c:settimeout(5); s:settimeout(5) end
            local msg = string.char(64 + i % 26):rep(40000) .. i
            local sender = uring.spawn(c.send, c, msg)
            msg = nil
            collectgarbage()
            local got = assert(s:receive(40000 + #tostring(i)))
            assert(got == string.char(64 + i % 26):rep(40000) .. i, "pair " .. i)
            assert(select(2, sender:join()) == #got)
            c:close(); s:close()
            done = done + 1
          end)
        end
        for _ = 1, 30 do                -- timespecs that live in requests
          ts[#ts + 1] = uring.spawn(function() uring.sleep(0.01); done = done + 1 end)
        end
        ts[#ts + 1] = uring.spawn(function()   -- preads into pooled buffers
          local data = helpers.random_bytes(256 * 1024)
          assert(uring.writefile(dir .. "/f", data))
          local f = assert(uring.open(dir .. "/f"))
          for k = 0, 3 do
            assert(f:pread(65536, k * 65536) == data:sub(k * 65536 + 1, (k + 1) * 65536))
          end
          f:close()
          done = done + 1
        end)
        ts[#ts + 1] = uring.spawn(function()   -- a multishot accept storm
          local srv, port = helpers.listen()
          local cs, ss = {}, {}
          local conn = uring.spawn(function()
            for i = 1, 60 do cs[i] = assert(uring.connect("127.0.0.1", port)) end
          end)
          for i = 1, 60 do ss[i] = assert(srv:accept()) end
          conn:join()
          for i = 1, 60 do assert(cs[i]:send("k" .. i .. "\n")) end
          for i = 1, 60 do
            assert(ss[i]:receive() == "k" .. i)
            ss[i]:close(); cs[i]:close()
          end
          srv_outside = srv             -- closed below, outside the run
          done = done + 1
        end)
        local gc = uring.spawn(function()
          for _ = 1, 200 do collectgarbage(); uring.yield() end
        end)
        for _, t in ipairs(ts) do assert(t:join()) end
        gc:cancel()
        return done
      end)
      assert(done == 62, done)
      -- a close outside uring.run waits for what it cancelled (the
      -- listener's accept) through the same failing submits
      srv_outside:close()
      local hits = require("uring.faults").enter()
      print("injected", hits)
      assert(hits > 0)
      -- the teaching ring mirrors liburing: its submit fails, and the
      -- SQEs that enter pushed are submitted by the next one
      local r = assert(uring.ring { entries = 4 })
      for i = 1, 4 do r:prep_nop(i) end
      require("uring.faults").enter(1, ERR)
      local n, msg, en = r:submit()
      print("ring", tostring(n), msg, en)
      require("uring.faults").enter()
      assert(r:submit() == 4, "the pushed SQEs were lost")
      for _ = 1, 4 do assert(r:wait_cqe()) end
      r:close()
      collectgarbage(); collectgarbage()
      helpers.rmrf(dir)
      print("inflight", uring.stats().inflight)
      assert(uring.stats().inflight == 0)
      assert(helpers.fds() == fds0, "fds leaked")
      print("ok")
    ]]

    for _, case in ipairs { { "EAGAIN", 2, EAGAIN }, { "EBUSY", 3, EBUSY } } do
      local name, period, en = case[1], case[2], case[3]
      it(name .. ": every request stays owned until its CQE, nothing is lost, the loop recovers", function()
        local out = child_ok(helpers.faulty(CHILD, ("FAULT=%s PERIOD=%d"):format(name, period)))
        assert.is_true(tonumber(out:match("injected\t(%d+)")) > 10, out)
        -- the teaching ring's submit returned the fail tuple
        assert.truthy(out:find("ring\tnil\tsubmit: [^\n]*\t" .. en .. "\n"), out)
      end)
    end
  end)

  describe("3. a burst exhausts the provided-buffer group", function()
    -- a socket's stream: LEN bytes that say whose they are and where they
    -- belong, so a byte lost, doubled or out of order shows
    local LEN = 40000
    local function stream(i)
      local parts = {}
      for k = 1, LEN // 20 do parts[k] = ("%05d:%013d|"):format(i, k) end
      return table.concat(parts)
    end

    it("ENOBUFS while unreaped CQEs hold the buffers: the group grows, every stream arrives whole and in order", helpers.clean(function()
      -- all N receives reach the kernel in one submit with data waiting,
      -- so each takes a buffer at once, and the CQEs holding the first 256
      -- are not reaped before the rest ask: a ring big enough for that,
      -- whatever URING_TEST_RING says
      helpers.with_ring(1024, function() run(function()
        local N = 400
        local srv, port = helpers.listen()
        local cs, ss = {}, {}
        for i = 1, N do
          cs[i] = assert(uring.connect("127.0.0.1", port))
          ss[i] = assert(srv:accept())
        end
        srv:close()
        for i = 1, N do assert(cs[i]:send(stream(i))) end
        uring.sleep(0.05)
        local enobufs = 0
        uring.trace(function(e)
          if e.event == "cqe" and e.op == "recv" and e.errno == ENOBUFS then enobufs = enobufs + 1 end
        end)
        local rs = {}
        for i = 1, N do rs[i] = uring.spawn(function() return ss[i]:receive(LEN) end) end
        for i = 1, N do
          local ok, got = rs[i]:join()
          assert.is_true(ok, got)
          assert(got == stream(i), "socket " .. i .. ": bytes lost or out of order")
        end
        uring.nop()
        uring.trace(false)
        assert.is_true(enobufs > 0, "the group never ran dry: the burst did not burst")
        for i = 1, N do cs[i]:close(); ss[i]:close() end
      end) end)
    end))

    it("a consumer holds every buffer of a group at its cap: receives bring their own, nothing spins, nothing is lost", function()
      -- the child (build-asan): the group may hold 16 buffers, and every
      -- buffer the core gives back is kept, as by a consumer that does
      -- not let go (require("uring.faults").bufring); without a way out each receive
      -- would be answered ENOBUFS as fast as the loop could ask, until the
      -- watchdog
      local out = child_ok(helpers.faulty([=[
        local uring = require "uring"
        local core = require "uring.core"
        local helpers = require "helpers"
        local N, LEN = 60, 40000
        local F_BUFFER = 1            -- IORING_CQE_F_BUFFER: a provided buffer
        local function stream(i)
          local parts = {}
          for k = 1, LEN // 20 do parts[k] = ("%05d:%013d|"):format(i, k) end
          return table.concat(parts)
        end
        uring.configure { entries = 256 }
        require("uring.faults").bufring { max = 16, hold = true }
        local enobufs, recvs, provided = 0, 0, 0
        helpers.runner(10)(function()
          local srv, port = helpers.listen()
          local cs, ss = {}, {}
          for i = 1, N do
            cs[i] = assert(uring.connect("127.0.0.1", port))
            ss[i] = assert(srv:accept())
          end
          srv:close()
          for i = 1, N do assert(cs[i]:send(stream(i))) end
          uring.sleep(0.05)
          uring.trace(function(e)
            if e.event == "cqe" and e.op == "recv" then
              recvs = recvs + 1
              if e.errno == uring.errno.ENOBUFS then enobufs = enobufs + 1 end
              if e.flags & F_BUFFER ~= 0 then provided = provided + 1 end
            end
          end)
          local rs = {}
          for i = 1, N do rs[i] = uring.spawn(function() return ss[i]:receive(LEN) end) end
          for i = 1, N do
            local ok, got = rs[i]:join()
            assert(ok and got == stream(i), "socket " .. i .. ": bytes lost or out of order")
          end
          uring.nop()
          uring.trace(false)
          print("recvs", recvs, "enobufs", enobufs, "provided", provided,
                "held", require("uring.faults").bufring {})
          assert(provided == 16 and enobufs > 0)
          -- at most one ENOBUFS per receive that then brought its own buffer
          assert(enobufs <= recvs - enobufs, "receives were answered ENOBUFS again and again")
          for i = 1, N do cs[i]:close(); ss[i]:close() end
          -- the consumer lets go: a fresh socket's receive takes a
          -- provided buffer again
          require("uring.faults").bufring { hold = false }
          provided = 0
          uring.trace(function(e)
            if e.event == "cqe" and e.op == "recv" and e.flags & F_BUFFER ~= 0 then provided = provided + 1 end
          end)
          local c, s = helpers.pair()
          assert(c:send("again\n"))
          assert(s:receive() == "again")
          uring.nop()
          uring.trace(false)
          assert(provided == 1, "the group did not serve again")
          c:close(); s:close()
        end)
        assert(uring.stats().inflight == 0)
        print("ok")
      ]=]))
      assert.truthy(out:match("enobufs\t%d+"), out)
    end)
  end)

  describe("4. the main task returns while 1,000 receives are in flight", function()
    -- uring.run's contract (DESIGN.md): it returns when every task ended,
    -- with the main task's results; if the main task fails, the others
    -- are cancelled and its error is raised.  Both, with 1,000 receives
    -- in the kernel when the main task ends.
    local N = 1000
    -- the drain must take under a second (five under valgrind, where
    -- everything runs some 20 times slower: 1.3 s there)
    local LIMIT = helpers.under_valgrind() and 5 or 1

    -- N connected pairs; a receiver task per server side, each waiting in
    -- the kernel when this returns.  Each receiver closes its socket
    -- (<close>: also when cancelled) and counts a "bye <i>" line.
    local function receivers(clients, got)
      local srv, port = helpers.listen()
      local ss = {}
      for i = 1, N do
        clients[i] = assert(uring.connect("127.0.0.1", port))
        ss[i] = assert(srv:accept())
      end
      srv:close()
      local ts = {}
      for i = 1, N do
        ts[i] = uring.spawn(function()
          local s <close> = ss[i]
          if s:receive() == "bye " .. i then got.n = got.n + 1 end
        end)
      end
      uring.yield()                     -- each receive is in the kernel
      for i = 1, N do assert.equal("waiting", ts[i]:status()) end
      assert.is_true(uring.stats().inflight >= N)
    end

    it("returns: run waits for them, serves them after the main task, drains within 1 s", helpers.clean(function()
      local clients, got = {}, { n = 0 }
      local returned_at, fed_after_return
      local a, b = run(function()
        receivers(clients, got)
        -- starts on the next turn, after the main task has returned
        uring.spawn(function()
          fed_after_return = returned_at ~= nil
          for i = 1, N do
            assert(clients[i]:send("bye " .. i .. "\n"))
            clients[i]:close()
          end
        end)
        returned_at = uring.now()
        return "main", "results"
      end)
      local drained = uring.now() - returned_at
      assert.same({ "main", "results" }, { a, b })
      assert.is_true(fed_after_return, "the feeder ran before the main task returned")
      assert.equal(N, got.n)
      assert.equal(0, uring.stats().inflight)
      assert.equal(0, uring.stats().tasks)
      assert.is_true(drained < LIMIT, ("drained in %.2f s"):format(drained))
    end))

    it("fails: the 1,000 are cancelled, their sockets close, the error is raised within 1 s", helpers.clean(function()
      local clients, got = {}, { n = 0 }
      local failed_at
      local ok, err = pcall(run, function()
        receivers(clients, got)
        failed_at = uring.now()
        error("main gives up", 0)
      end)
      local drained = uring.now() - failed_at
      assert.is_false(ok)
      assert.matches("^main gives up", err)
      assert.equal(0, got.n)
      assert.equal(0, uring.stats().inflight)
      assert.equal(0, uring.stats().tasks)
      assert.is_true(drained < LIMIT, ("drained in %.2f s"):format(drained))
      -- the receivers' <close> closed the server sides: each client reads EOF
      run(function()
        for i = 1, N do
          assert.same({ nil, "closed", "" }, { clients[i]:receive() })
          clients[i]:close()
        end
      end)
    end))
  end)

  describe("5. an older kernel: setup flags refused, ops missing from the probe", function()
    -- children on the test build: URING_FAULT_SETUP_EINVAL makes
    -- io_uring_setup refuse flags as a kernel older than them does;
    -- URING_FAULT_MASK_OPS takes ops out of the probe, and the real kernel
    -- answers an SQE of one with the EINVAL it gives an op it does not
    -- know.  helpers.posix().setenv changes them between ring setups.

    it("the setup ladder drops one rung at a time; features().flags shows what stuck", function()
      local out = child_ok(helpers.faulty([=[
        local uring = require "uring"
        local helpers = require "helpers"
        local px = helpers.posix()
        local sqpoll = (os.getenv("URING_TEST_SQPOLL") or "0") ~= "0"
        -- loop.c's ladder (ur_setup_ring), in features().flags' words
        local RUNGS = {
          { "SUBMIT_ALL", "COOP_TASKRUN", "SINGLE_ISSUER", "DEFER_TASKRUN" },
          { "SUBMIT_ALL", "COOP_TASKRUN", "SINGLE_ISSUER" },
          { "SUBMIT_ALL", "COOP_TASKRUN" },
          { "SUBMIT_ALL" },
          {},
        }
        local function flags()
          local t = {}
          for k in pairs(uring.features().flags) do
            if k ~= "CQSIZE" and k ~= "CLAMP" and k ~= "SQPOLL" then t[#t + 1] = k end
          end
          table.sort(t)
          return table.concat(t, " ")
        end
        -- the first rung none of whose flags is refused
        local function expect(refused)
          local no = {}
          for _, f in ipairs(refused) do no[f] = true end
          for _, rung in ipairs(RUNGS) do
            local t, ok = {}, true
            for _, f in ipairs(rung) do
              -- the kernel refuses SQPOLL with either: its rungs go without
              if not (sqpoll and (f == "DEFER_TASKRUN" or f == "COOP_TASKRUN")) then
                t[#t + 1] = f
                ok = ok and not no[f]
              end
            end
            if ok then
              table.sort(t)
              return table.concat(t, " ")
            end
          end
        end
        uring.run(function() end)
        local fds0 = helpers.fds()
        for _, refused in ipairs {
          {}, { "DEFER_TASKRUN" }, { "DEFER_TASKRUN", "SINGLE_ISSUER" },
          { "COOP_TASKRUN" }, { "SUBMIT_ALL" }, { "SINGLE_ISSUER", "SUBMIT_ALL" },
          not sqpoll and { "SQPOLL" } or nil,   -- not asked for: no matter
        } do
          px.setenv("URING_FAULT_SETUP_EINVAL", table.concat(refused, ","))
          uring.configure { entries = 8 }       -- the idle ring goes; set up anew
          local got, want = flags(), expect(refused)
          print(("refused {%s}: %s"):format(table.concat(refused, ","), got))
          assert(got == want, ("refused {%s}: flags %q, expected %q"):format(
            table.concat(refused, ","), got, want))
          assert(uring.run(function() return uring.nop() end))   -- and it serves
        end
        -- refused on every rung: no ring, and the error says what happened
        for _, refused in ipairs { "CQSIZE", sqpoll and "SQPOLL" or nil } do
          px.setenv("URING_FAULT_SETUP_EINVAL", refused)
          uring.configure { entries = 8 }
          local f = uring.features()
          print(("refused {%s}: available %s, %s"):format(refused, f.available, f.reason))
          assert(f.available == false and f.reason:match("^Invalid argument %(kernel "))
          local ok, err = pcall(uring.run, function() end)
          assert(not ok and err:match("^io_uring_setup%(8 entries%): Invalid argument %(kernel "), err)
        end
        px.setenv("URING_FAULT_SETUP_EINVAL", nil)
        uring.configure { entries = 8 }
        assert(uring.run(function() return uring.nop() end))
        assert(helpers.fds() == fds0, "a refused setup left an fd")
        print("ok")
      ]=]))
      assert.truthy(out:find("refused {DEFER_TASKRUN,SINGLE_ISSUER}: COOP_TASKRUN SUBMIT_ALL", 1, true)
        or out:find("refused {DEFER_TASKRUN,SINGLE_ISSUER}: SUBMIT_ALL", 1, true), out)
    end)

    it("without the ops the loop stands on (cancel, timers) no ring is set up, and the error names the op", function()
      child_ok(helpers.faulty([=[
        local uring = require "uring"
        local helpers = require "helpers"
        local px = helpers.posix()
        uring.run(function() end)
        local fds0 = helpers.fds()
        for _, c in ipairs { { "async_cancel", "5.5" }, { "timeout", "5.4" },
                             { "link_timeout", "5.5" } } do
          local op, since = c[1], c[2]
          px.setenv("URING_FAULT_MASK_OPS", op)
          uring.configure { entries = 8 }
          local f = uring.features()
          local want = ("IORING_OP_%s not supported by this kernel (%s+)"):format(op:upper(), since)
          print(op, f.available, f.reason)
          assert(f.available == false and f.reason:find(want .. ", and lua-uring needs it", 1, true),
            tostring(f.reason))
          local ok, err = pcall(uring.run, function() end)
          assert(not ok and err:find("io_uring_setup(8 entries): " .. want, 1, true), err)
        end
        px.setenv("URING_FAULT_MASK_OPS", nil)
        uring.configure { entries = 8 }
        assert(uring.run(function() return uring.nop() end))
        assert(helpers.fds() == fds0, "a refused setup left an fd")
        print("ok")
      ]=]))
    end)

    it("without SOCKET, WAITID or CLOSE the core makes do: socket(2), a pidfd poll, close(2)", function()
      child_ok(helpers.faulty([=[
        local uring = require "uring"
        local helpers = require "helpers"
        uring.run(function() end)
        local fds0 = helpers.fds()
        local f = uring.features()
        for _, op in ipairs { "socket", "waitid", "close" } do
          assert(f.ops[op] == nil and uring.probe()[op] == nil, op .. " is still in the probe")
        end
        assert(f.ops.recv and uring.probe().recv)
        local sqes = {}
        uring.trace(function(e) if e.event == "sqe" then sqes[e.op] = (sqes[e.op] or 0) + 1 end end)
        local dir = helpers.tmpdir()
        uring.run(function()
          local srv, port = helpers.listen()      -- TCP
          local c = assert(uring.connect("127.0.0.1", port))
          local s = assert(srv:accept())
          assert(c:send("over tcp\n"))
          assert(s:receive() == "over tcp")
          assert(c:close() and s:close() and srv:close())
          local a = assert(uring.udp("127.0.0.1", 0))   -- UDP
          local b = assert(uring.udp())
          assert(b:sendto("over udp", a:getsockname()))
          assert(a:recvfrom() == "over udp")
          a:close(); b:close()
          local fh = assert(uring.open(dir .. "/f", "w"))   -- a file
          assert(fh:write("on disk"))
          assert(fh:close())
          assert(uring.readfile(dir .. "/f") == "on disk")
          local p = assert(uring.exec { "sh", "-c", "exit 7" })   -- a process
          local ok, how, code = p:wait()
          assert(ok == nil and how == "exit" and code == 7)
        end)
        uring.trace(false)
        helpers.rmrf(dir)
        for _, op in ipairs { "socket", "waitid", "close" } do
          assert(sqes[op] == nil, "IORING_OP_" .. op:upper() .. " was asked for")
        end
        assert((sqes.poll_add or 0) >= 1, "no pidfd poll")
        collectgarbage(); collectgarbage()
        assert(uring.stats().inflight == 0)
        assert(helpers.fds() == fds0, "fds leaked")
        print("ok")
      ]=], "URING_FAULT_MASK_OPS=socket,waitid,close"))
    end)

    -- each call and the op it stands on: the fail tuple names the op and
    -- the kernel that brought it, errno EOPNOTSUPP
    local PER_OP = [=[
      local uring = require "uring"
      local helpers = require "helpers"
      uring.run(function() end)
      local fds0 = helpers.fds()
      local dir = helpers.tmpdir()
      local function check(op, since, a, b, c)
        local want = ("IORING_OP_%s not supported by this kernel (%s+)"):format(op:upper(), since)
        print(op, a, b, c)
        assert(a == nil and type(b) == "string" and b:sub(-#want) == want
          and c == uring.errno.EOPNOTSUPP,
          op .. ": " .. tostring(b))
      end
      uring.run(function()
        if os.getenv("URING_FAULT_MASK_OPS"):match("mkdirat") then
          helpers.writeall(dir .. "/f", "data")
          check("mkdirat", "5.15", uring.mkdir(dir .. "/d"))
          check("statx", "5.6", uring.stat(dir .. "/f"))
          check("unlinkat", "5.11", uring.unlink(dir .. "/f"))
          check("renameat", "5.11", uring.rename(dir .. "/f", dir .. "/g"))
          local f = assert(uring.open(dir .. "/f", "r+"))
          check("read", "5.6", f:read("a"))
          assert(f:write("more"))
          check("write", "5.6", f:flush())
          check("fsync", "5.1", f:sync())
          assert(f:close())
          local c, s = helpers.pair()
          check("send", "5.6", c:send("x\n"))
          check("recv", "5.6", s:receive())
          check("shutdown", "5.11", c:shutdown())
          c:close(); s:close()
          local a = assert(uring.udp("127.0.0.1", 0))
          check("sendmsg", "5.3", a:sendto("x", a:getsockname()))
          check("recvmsg", "5.3", a:recvfrom())
          a:close()
        else
          check("openat", "5.6", uring.open(dir .. "/nothing", "w"))
          local srv, port = helpers.listen()
          check("connect", "5.5", uring.connect("127.0.0.1", port))
          check("accept", "5.5", srv:accept())
          srv:close()
          check("poll_add", "5.1", uring.poll(0, "r"))
          -- nor a poll of run's SIGINT signalfd: run leaves SIGINT to end
          -- the process, as in a plain script, rather than block it unread
          local blocked = tonumber(helpers.readall("/proc/self/status"):match("SigBlk:%s*(%x+)"), 16)
          assert(blocked & 2 == 0, "SIGINT is blocked and nothing reads it")
        end
      end)
      helpers.rmrf(dir)
      collectgarbage(); collectgarbage()
      assert(uring.stats().inflight == 0)
      assert(helpers.fds() == fds0, "fds leaked")
      print("ok")
    ]=]

    it("files, sockets, UDP: each call whose op is missing fails naming it", function()
      local out = child_ok(helpers.faulty(PER_OP, "URING_FAULT_MASK_OPS="
        .. "mkdirat,statx,unlinkat,renameat,read,write,fsync,send,recv,shutdown,sendmsg,recvmsg"))
      assert.truthy(out:find("IORING_OP_MKDIRAT not supported by this kernel (5.15+)\t" .. EOPNOTSUPP, 1, true), out)
    end)

    it("open, connect, accept, poll: the same; and uring.run leaves SIGINT alone without a poll", function()
      local out = child_ok(helpers.faulty(PER_OP, "URING_FAULT_MASK_OPS=openat,connect,accept,poll_add"))
      assert.truthy(out:find("accept: IORING_OP_ACCEPT not supported by this kernel (5.5+)", 1, true), out)
    end)
  end)
end)
