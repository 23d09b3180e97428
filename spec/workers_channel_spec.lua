-- spec/workers_channel_spec.lua: the channel between uring.workers
-- (csrc/msg_ring.c): strings and sockets between real forked workers,
-- each with its own ring, doorbells rung with IORING_OP_MSG_RING.
--
-- Each test runs uring.workers in a child lua5.4 (bounded by `timeout`);
-- the workers print what they saw, and the test reads it back.
local helpers = require "helpers"

local PRELUDE = [[
local uring = require "uring"
io.stdout:setvbuf("line")
local function say(...) io.write(table.concat({...}, " "), "\n") end
local function fds()          -- this process's open fds, by /proc
  local n = 0
  for _ in uring.dir("/proc/self/fd") do n = n + 1 end
  return n
end
]]

-- Under make valgrind the child and its workers run under valgrind too
-- (it follows forks; a worker's error or leak makes it exit 99, which
-- fails its uring.workers): the channel's code runs in the workers.
local VALGRIND = helpers.under_valgrind() and ("valgrind -q --trace-children=yes "
  .. "--error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect "
  .. "--show-leak-kinds=definite,indirect ") or nil

-- run the chunk (which calls uring.workers) in a child: output, status
local function workers(code)
  return helpers.child(PRELUDE .. code, VALGRIND)
end

local function expect(out, status, lines)
  assert(status == 0, "child failed:\n" .. out)
  for _, l in ipairs(lines) do
    assert(out:find(l, 1, true), ("missing %q in:\n%s"):format(l, out))
  end
end

describe("uring.workers channel #io #net", function()
  it("ping-pong between two workers", function()
    local out, status = workers [[
      local ok = uring.workers(2, function(i, pid, ch)
        assert(ch.id == i and ch.n == 2)
        if i == 1 then
          for k = 1, 200 do
            assert(ch:send(2, "ping " .. k))
            local from, msg = ch:receive()
            assert(from == 2 and msg == "pong " .. k, tostring(msg))
          end
          say("pingpong ok")
        else
          for _ = 1, 200 do
            local from, msg = ch:receive()
            assert(ch:send(from, (msg:gsub("ping", "pong"))))
          end
        end
      end)
      say("all", tostring(ok))
    ]]
    expect(out, status, { "pingpong ok", "all true" })
  end)

  it("fan-in: 3 workers send 1,000 messages each to one; none lost, each sender's order kept", function()
    local out, status = workers [[
      local ok = uring.workers(4, function(i, pid, ch)
        if i == 1 then
          local next, got = { 0, 1, 1, 1 }, 0
          while got < 3000 do
            local from, msg = ch:receive()
            local k = tonumber(msg:match("^(%d+):"))
            assert(k == next[from], ("from %d: %s, expected %d"):format(from, msg, next[from]))
            assert(msg == k .. ":" .. ("x"):rep(k % 50))
            next[from] = k + 1
            got = got + 1
          end
          say("fanin", got, next[2], next[3], next[4])
        else
          local full = 0
          for k = 1, 1000 do
            while true do
              local sent, err, en = ch:send(1, k .. ":" .. ("x"):rep(k % 50))
              if sent then break end
              assert(en == 11, err)          -- EAGAIN: mailbox full
              full = full + 1
              uring.sleep(0.001)
            end
            if k % 100 == 0 then uring.yield() end
          end
        end
      end)
      say("all", tostring(ok))
    ]]
    expect(out, status, { "fanin 3000 1001 1001 1001", "all true" })
  end)

  it("a string over 64 KiB raises; 64 KiB exactly goes; bad targets and kinds raise", function()
    local out, status = workers [[
      local ok = uring.workers(2, function(i, pid, ch)
        if i ~= 1 then return end
        local big = ("z"):rep(65536)
        assert(ch:send(1, big))                 -- itself
        local from, msg = ch:receive()
        assert(from == 1 and msg == big)
        local function err(...)
          local a = table.pack(...)
          local ok, e = pcall(function() return ch:send(table.unpack(a, 1, a.n)) end)
          assert(not ok)
          return e
        end
        say(err(2, big .. "z"))
        say(err(0, "x"))
        say(err(3, "x"))
        say(err(2, {}))
        say(err(2, nil))
        local srv = uring.listen("127.0.0.1", 0)
        say(err(2, srv))
        local _, port = srv:getsockname()
        local a = assert(uring.connect("127.0.0.1", port))
        local b = assert(srv:accept())
        local reader = uring.spawn(function() return b:receive("*l") end)
        uring.yield()                           -- it waits in b:receive
        say(err(2, b))
        assert(a:send("done\n"))
        assert(reader:join())
        a:close()
        say(err(2, a))
        b:close()
        srv:close()
        ch:close()
        say(select(2, pcall(ch.receive, ch)))
      end)
      say("all", tostring(ok))
    ]]
    expect(out, status, {
      "bad argument #2 to 'send' (string longer than 65536 bytes (the mailbox's bound))",
      "bad argument #1 to 'send' (worker id in 1..2 expected)",
      "bad argument #2 to 'send' (string or uring.socket expected, got table)",
      "bad argument #2 to 'send' (string or uring.socket expected, got nil)",
      "bad argument #2 to 'send' (a listening socket cannot move)",
      "bad argument #2 to 'send' (socket is busy in another task)",
      "bad argument #2 to 'send' (socket is closed)",
      "attempt to use a closed channel",
      "all true" })
    assert.equal(2, select(2, out:gsub("worker id in 1..2 expected", "")))
  end)

  it("moves an accepted connection from worker 1 to worker 2, which answers the client", function()
    local out, status = workers [[
      local ok = uring.workers(3, function(i, pid, ch)
        if i == 1 then                          -- accepts, reads a line, hands over
          local srv <close> = assert(uring.listen("127.0.0.1", 0))
          local _, port = srv:getsockname()
          assert(ch:send(3, tostring(port)))
          local c = assert(srv:accept())
          assert(c:receive("*l") == "hello")    -- "world\n" stays buffered
          assert(ch:send(2, c))
          say("moved", tostring(c))
          local ok, e = pcall(c.send, c, "x")
          say("sender's copy:", e)
        elseif i == 2 then                      -- answers on the moved socket
          local from, c = ch:receive()
          assert(from == 1, tostring(from))
          local line = assert(c:receive("*l"))
          assert(c:send(("worker 2 (pid %d) got %s\n"):format(pid, line)))
          c:close()
        else                                    -- the client
          local _, port = ch:receive()
          local c <close> = assert(uring.connect("127.0.0.1", tonumber(port)))
          assert(c:send("hello\nworld\n"))
          say("client:", assert(c:receive("*l")))
          assert(c:receive("*a") == "")         -- worker 2 closed it
        end
      end)
      say("all", tostring(ok))
    ]]
    expect(out, status, { "moved uring.socket (closed)", "sender's copy:",
                          "client: worker 2 (pid ", "got world", "all true" })
    assert.matches("sender's copy:[^\n]*closed", out)
  end)

  it("a send to a worker that stopped fails with EPIPE, whether it ended or died", function()
    local out, status = workers [[
      local ok = uring.workers(3, function(i, pid, ch)
        if i == 2 then return end               -- ends: its channel closes
        if i == 3 then os.exit(0) end           -- dies: no close; the parent marks it
        for _, j in ipairs{2, 3} do
          local deadline = uring.now() + 5
          while true do
            local sent, err, en = ch:send(j, "anyone?")
            if not sent then say("to " .. j .. ":", err, en) break end
            assert(uring.now() < deadline, "still sending to " .. j)
            uring.sleep(0.02)
          end
        end
      end)
      say("all", tostring(ok))
    ]]
    expect(out, status, { "to 2: send: worker 2 has stopped 32",
                          "to 3: send: worker 3 has stopped 32", "all true" })
  end)

  it("leaks no fd: received sockets and ring copies go, and close gives back the channel's own", function()
    local out, status = workers [[
      local me = io.open("/proc/self/stat"):read("a"):match("^%d+")
      -- the parent's sockets (the channel's fds are; popen's own pipe
      -- comes and goes while it lists), without the loop's help
      local function parent_fds()
        local p = io.popen("cd /proc/" .. me .. "/fd && for f in *; do readlink $f; done")
        local n = select(2, p:read("a"):gsub("socket:", ""))
        p:close()
        return n
      end
      local parent_before = parent_fds()
      local ok = uring.workers(3, function(i, pid, ch)
        fds()                                   -- warm up uring.dir's own
        uring.sleep(0.1)                        -- its directory's close lands
        local before = fds()
        local srv <close> = assert(uring.listen("127.0.0.1", 0))
        local _, port = srv:getsockname()
        local peer = i % 3 + 1
        assert(ch:send(peer, tostring(port)))
        local _, theirs = ch:receive()
        -- connect to the next worker's listener, pass both ends around
        local c = assert(uring.connect("127.0.0.1", tonumber(theirs)))
        local a = assert(srv:accept())
        assert(ch:send(peer, c))
        assert(ch:send(peer, a))
        for _ = 1, 2 do
          local _, s = ch:receive()
          assert(s:close())
        end
        for k = 1, 50 do assert(ch:send(peer, "m" .. k)) end
        for _ = 1, 50 do assert(ch:receive()) end
        srv:close()
        ch:close()
        uring.sleep(0.1)                        -- a close in flight lands
        say("worker", i, "fds", before - fds())
      end)
      say("parent sockets", parent_fds() - parent_before)
      say("all", tostring(ok))
    ]]
    -- what is left to give back is the channel's own: one send end per
    -- worker and the worker's receive end
    expect(out, status, { "worker 1 fds 4\n", "worker 2 fds 4\n", "worker 3 fds 4\n",
                          "parent sockets 0\n", "all true" })
  end)

  it("a receive waiting when another task closes the channel returns nil, 'closed'", function()
    local out, status = workers [[
      local ok = uring.workers(1, function(i, pid, ch)
        local t = uring.spawn(function() return ch:receive() end)
        uring.sleep(0.05)
        ch:close()
        local _, got, why = t:join()
        say("receive:", tostring(got), tostring(why))
        ch:close()                              -- twice is fine
      end)
      say("all", tostring(ok))
    ]]
    expect(out, status, { "receive: nil closed", "all true" })
  end)

  it("a kernel without MSG_RING: send and receive fail clearly (test build)", function()
    local out, status = helpers.faulty([=[
      local uring = require "uring"
      local ok = uring.workers(1, function(i, pid, ch)
        print("send", select(2, ch:send(1, "x")))
        print("receive", select(2, ch:receive()))
      end)
      print("all", ok)
    ]=], "URING_FAULT_MASK_OPS=msg_ring")
    assert(status == 0, out)
    assert.matches("send\tsend: IORING_OP_MSG_RING not supported by this kernel[^\n]*\t95", out)
    assert.matches("receive\treceive: IORING_OP_MSG_RING not supported by this kernel[^\n]*\t95", out)
    assert.matches("all\ttrue", out)
  end)
end)
