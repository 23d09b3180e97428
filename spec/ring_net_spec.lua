-- uring.ring, the rest of the teaching ring: sockets made, bound, accepted
-- and connected by SQEs (outside uring.run), multishot accept, multishot
-- receive into a provided buffer ring, cqe_seen, the ASYNC and
-- CQE_SKIP_SUCCESS flags, register_eventfd and register_restrictions.
-- Real sockets on 127.0.0.1, port 0; a descriptor count around every test.
local core = require "uring.core"
local helpers = require "helpers"

local EACCES, ECANCELED, ENOBUFS, EBADF = 13, 125, 105, 9
local F_MORE, F_BUFFER = core.IORING_CQE_F_MORE, core.IORING_CQE_F_BUFFER

describe("uring.ring sockets, buffer rings, flags, eventfd, restrictions #io #net", function()
  local fds, ring

  setup(function()
    require("uring").run(function() end)  -- the loop's ring, made once
  end)

  before_each(function()
    stash = {}
    collectgarbage()
    fds = helpers.fd_count()
    ring = assert(core.ring{entries = 4})
  end)

  after_each(function()
    ring:close()
    collectgarbage()
    assert.equal(fds, helpers.fd_count())
  end)

  -- CQEs that came while waiting for another one, by user_data.
  local stash = {}

  -- The next CQE with this user_data: from the stash, or wait for it.
  local function take(ud)
    while not (stash[ud] and stash[ud][1]) do
      local c = table.pack(ring:wait_cqe(5))
      assert.is_number(c[1], tostring(c[2]))
      stash[c[2]] = stash[c[2]] or {}
      table.insert(stash[c[2]], c)
    end
    local c = table.remove(stash[ud], 1)
    return table.unpack(c, 1, c.n)
  end

  -- Prep one SQE (its user_data 900 + a count), submit it, return its CQE.
  local serial = 900
  local function one(method, ...)
    serial = serial + 1
    local args = table.pack(...)
    args[args.n + 1] = serial
    ring[method](ring, table.unpack(args, 1, args.n + 1))
    assert.equal(1, ring:submit())
    return take(serial)
  end

  -- Wait for n CQEs: {user_data = {res, flags, extra...}} and the order.
  local function reap(n, r)
    local got, order = {}, {}
    for _ = 1, n do
      local c = table.pack((r or ring):wait_cqe(5))
      assert.is_number(c[1], tostring(c[2]))
      got[c[2]] = { c[1], c[3], c[4], c[5] }
      order[#order + 1] = c[2]
    end
    return got, order
  end

  local function close(fd)
    assert.equal(0, (one("prep_close", fd)))
  end

  -- A listening TCP socket on 127.0.0.1, made by SQEs alone.
  local function listener()
    local fd = one("prep_socket", core.AF_INET, core.SOCK_STREAM | core.SOCK_CLOEXEC, 0)
    assert.is_true(fd >= 0, "socket: " .. fd)
    assert.equal(0, (one("prep_bind", fd, "127.0.0.1", 0)))
    assert.equal(0, (one("prep_listen", fd, 16)))
    local host, port = ring:getsockname(fd)
    assert.equal("127.0.0.1", host)
    assert.is_true(port > 0)
    return fd, port
  end

  local function connect(port)
    local fd = one("prep_socket", core.AF_INET, core.SOCK_STREAM | core.SOCK_CLOEXEC, 0)
    assert.is_true(fd >= 0)
    assert.equal(0, (one("prep_connect", fd, "127.0.0.1", port)))
    return fd
  end

  describe("prep_socket, prep_bind, prep_listen, prep_accept, prep_connect", function()
    it("make a TCP connection and carry bytes both ways, outside uring.run", function()
      local lfd, port = listener()
      ring:prep_accept(lfd, 1, core.SOCK_CLOEXEC)
      assert.equal(1, ring:submit())
      assert.is_nil(ring:peek_cqe())            -- nobody connected yet
      local cfd = connect(port)
      local sfd = take(1)
      assert.is_true(sfd >= 0, "accept: " .. sfd)
      local buf = core.buffer(64)
      ring:prep_send(cfd, "ping", nil, 0, 2)
      ring:prep_recv(sfd, buf, 64, 0, 3)
      ring:submit()
      local got = reap(2)
      assert.same({ 4, 4 }, { got[2][1], got[3][1] })
      assert.equal("ping", buf:tostring(1, 4))
      ring:prep_send(sfd, "pong!", nil, 0, 4)
      ring:prep_recv(cfd, buf, 64, 0, 5)
      ring:submit()
      got = reap(2)
      assert.equal(5, got[5][1])
      assert.equal("pong!", buf:tostring(1, 5))
      close(sfd); close(cfd); close(lfd)
    end)

    it("report the kernel's refusal as a negative res", function()
      -- connect to a port nobody listens on: -ECONNREFUSED (111)
      local lfd, port = listener()
      close(lfd)
      local fd = one("prep_socket", core.AF_INET, core.SOCK_STREAM, 0)
      assert.equal(-111, (one("prep_connect", fd, "127.0.0.1", port)))
      assert.equal(-EBADF, (one("prep_accept", 1000000)))
      close(fd)
    end)

    it("refuse bad arguments before taking an SQE", function()
      assert.error_matches(function() ring:prep_socket("x", 1) end,
        "bad argument #1 to 'prep_socket'")
      assert.error_matches(function() ring:prep_socket(2) end,
        "bad argument #2 to 'prep_socket'")
      assert.error_matches(function() ring:prep_connect(3, "localhost", 80) end,
        "bad argument #2 to 'prep_connect' %('localhost' is not a numeric")
      assert.error_matches(function() ring:prep_bind(3, "127.0.0.1", 70000) end,
        "bad argument #3 to 'prep_bind' %(port must be in 0..65535%)")
      assert.error_matches(function() ring:prep_accept(-1) end,
        "bad argument #1 to 'prep_accept' %(fd must be")
      assert.error_matches(function() ring:prep_accept(3, 0, 1) end,
        "bad argument #3 to 'prep_accept' %(flags must be SOCK_CLOEXEC")
      assert.error_matches(function() ring:prep_listen(3, -1) end,
        "bad argument #2 to 'prep_listen' %(backlog")
      assert.error_matches(function() ring:getsockname("x") end,
        "bad argument #1 to 'getsockname'")
      assert.equal(0, ring:sq_ready())
      assert.equal(0, ring:inflight())
    end)
  end)

  describe("prep_multishot_accept", function()
    it("posts one CQE with F_MORE per connection until cancelled", function()
      local lfd, port = listener()
      ring:prep_multishot_accept(lfd, 7)
      ring:submit()
      local clients, accepted = {}, {}
      for i = 1, 3 do
        clients[i] = connect(port)
        local res, ud, flags = take(7)
        assert.equal(7, ud)
        assert.is_true(res >= 0)
        assert.equal(F_MORE, flags & F_MORE)
        accepted[i] = res
      end
      assert.equal(1, ring:inflight())          -- still armed: one request
      ring:prep_cancel(7, 8)
      ring:submit()
      local got = reap(2)
      assert.equal(-ECANCELED, got[7][1])
      assert.equal(0, got[7][2] & F_MORE)      -- its last CQE
      assert.equal(0, ring:inflight())
      for i = 1, 3 do close(clients[i]); close(accepted[i]) end
      close(lfd)
    end)

    it("leaves no fd behind when the ring closes before Lua reaps them", function()
      local lfd, port = listener()
      ring:prep_multishot_accept(lfd, 7)
      ring:submit()
      -- the clients connect through another ring, so the accepted fds
      -- stay in this ring's CQ, never seen by Lua
      local cl <close> = assert(core.ring{entries = 4})
      local clients = {}
      for i = 1, 2 do
        cl:prep_socket(core.AF_INET, core.SOCK_STREAM | core.SOCK_CLOEXEC, 0)
        cl:submit()
        clients[i] = cl:wait_cqe(5)
        cl:prep_connect(clients[i], "127.0.0.1", port)
        cl:submit()
        assert.equal(0, (cl:wait_cqe(5)))
      end
      local deadline = os.time() + 5
      while ring:cq_ready() < 2 and os.time() <= deadline do
        cl:prep_timeout(0.005)
        cl:submit_and_wait(1)
        cl:wait_cqe()
      end
      assert.equal(2, ring:cq_ready())
      -- two rings, the listener, 2 clients, 2 accepted
      assert.equal(fds + 7, helpers.fd_count())
      ring:close()   -- cancels the accept and closes the two unseen fds
      assert.equal(fds + 4, helpers.fd_count())
      ring = assert(core.ring{entries = 4})
      close(clients[1]); close(clients[2]); close(lfd)
    end)
  end)

  describe("setup_buf_ring, prep_recv_multishot, return_buf", function()
    it("receives into kernel-picked buffers, ENOBUFS when none is left, re-arms", function()
      local lfd, port = listener()
      ring:prep_accept(lfd, 1)
      ring:submit()
      local cfd = connect(port)
      local sfd = take(1)
      assert.is_true(ring:setup_buf_ring(3, 2, 8))
      ring:prep_recv_multishot(sfd, 3, 0, 10)
      ring:submit()
      ring:prep_send(cfd, "0123456789abcdefghij", nil, 0, 11)
      ring:submit()
      -- 20 bytes, two buffers of 8: 8 + 8, then no buffer: -ENOBUFS, the end
      local recvs = {}
      while #recvs < 3 do
        local c = table.pack(ring:wait_cqe(5))
        if c[2] == 11 then assert.equal(20, c[1])
        else assert.equal(10, c[2]); recvs[#recvs + 1] = c end
      end
      local data, bids = {}, {}
      for i = 1, 3 do
        local res, _, flags, bytes, bid = table.unpack(recvs[i], 1, 5)
        if i < 3 then
          assert.equal(8, res)
          assert.equal(F_BUFFER, flags & F_BUFFER)
          assert.equal(F_MORE, flags & F_MORE)
          assert.equal(bid, flags >> core.IORING_CQE_BUFFER_SHIFT)
          data[i], bids[i] = bytes, bid
        else
          assert.equal(-ENOBUFS, res)
          assert.equal(0, flags & F_MORE)
        end
      end
      assert.equal("01234567", data[1])
      assert.equal("89abcdef", data[2])
      assert.are_not.equal(bids[1], bids[2])
      assert.equal(0, ring:inflight())
      -- a buffer is given back once; then re-arm and get the rest
      ring:return_buf(3, bids[1])
      assert.error_matches(function() ring:return_buf(3, bids[1]) end,
        "bad argument #2 to 'return_buf' %(buffer %d+ is not out")
      ring:return_buf(3, bids[2])
      ring:prep_recv_multishot(sfd, 3, 0, 12)
      ring:submit()
      local res, ud, flags, bytes, bid = ring:wait_cqe(5)
      assert.same({ 4, 12, "ghij" }, { res, ud, bytes })
      assert.equal(F_MORE, flags & F_MORE)
      ring:return_buf(3, bid)
      close(cfd)                               -- EOF: res 0 ends it
      res, ud, flags = ring:wait_cqe(5)
      assert.same({ 0, 12, 0 }, { res, ud, flags & F_MORE })
      assert.equal(0, ring:inflight())
      close(sfd); close(lfd)
    end)

    it("refuses bad groups and ids", function()
      assert.error_matches(function() ring:setup_buf_ring(16, 2, 8) end,
        "bad argument #1 to 'setup_buf_ring' %(buffer group must be in 0..15%)")
      assert.error_matches(function() ring:setup_buf_ring(0, 3, 8) end,
        "bad argument #2 to 'setup_buf_ring' %(nbufs must be a power of two")
      assert.error_matches(function() ring:setup_buf_ring(0, 2, 0) end,
        "bad argument #3 to 'setup_buf_ring' %(size must be in")
      assert.error_matches(function() ring:setup_buf_ring(0, 32768, 1 << 20) end,
        "at most 64 MiB")
      assert.error_matches(function() ring:prep_recv_multishot(3, 1) end,
        "bad argument #2 to 'prep_recv_multishot' %(buffer group 1 is not set up")
      assert.is_true(ring:setup_buf_ring(1, 4, 16))
      assert.error_matches(function() ring:setup_buf_ring(1, 4, 16) end,
        "buffer group 1 is set up already")
      assert.error_matches(function() ring:return_buf(1, 4) end,
        "bad argument #2 to 'return_buf' %(buffer id out of range%)")
      assert.error_matches(function() ring:return_buf(1, 0) end, "is not out")
      assert.equal(0, ring:sq_ready())
    end)

    it("keeps the buffers until the receive in flight is back at close", function()
      local lfd, port = listener()
      ring:prep_accept(lfd, 1)
      ring:submit()
      local cfd = connect(port)
      local sfd = take(1)
      ring:setup_buf_ring(0, 4, 64)
      ring:prep_recv_multishot(sfd, 0, 0, 2)
      ring:submit()
      local other = assert(core.ring{entries = 4})
      other:prep_close(sfd); other:prep_close(cfd); other:prep_close(lfd)
      other:submit_and_wait(3)
      other:close()
      ring:close()      -- cancels the receive, then frees the group (valgrind)
      ring = nil
      collectgarbage()
      ring = assert(core.ring{entries = 4})
    end)
  end)

  describe("wait_cqe/peek_cqe with keep, and cqe_seen", function()
    it("hands a CQE over without consuming it until cqe_seen", function()
      ring:prep_nop(1)
      ring:prep_nop(2)
      ring:submit()
      local head = ring:state().cq_head
      assert.same({ 0, 1, 0 }, { ring:wait_cqe(nil, true) })
      assert.equal(head, ring:state().cq_head)  -- not consumed
      assert.equal(2, ring:cq_ready())
      assert.same({ 0, 1, 0 }, { ring:peek_cqe(true) })  -- the same one
      assert.equal(2, ring:inflight())
      ring:cqe_seen()
      assert.equal(head + 1, ring:state().cq_head)
      assert.equal(1, ring:inflight())          -- its request released
      assert.error_matches(function() ring:cqe_seen() end, "no CQE is kept")
      assert.same({ 0, 2, 0 }, { ring:wait_cqe() })  -- plain: consumed
      assert.equal(head + 2, ring:state().cq_head)
      assert.equal(0, ring:inflight())
    end)
  end)

  describe("ring:fdinfo", function()
    it("is the kernel's account of the same indices ring:state() reads", function()
      ring:prep_nop(1); ring:prep_nop(2)
      ring:submit()
      ring:wait_cqe()
      local t, s = ring:fdinfo(), ring:state()
      assert.equal(s.sq_tail, tonumber(t:match("\nSqTail:%s*(%d+)")))
      assert.equal(s.sq_head, tonumber(t:match("\nSqHead:%s*(%d+)")))
      assert.equal(s.cq_head, tonumber(t:match("\nCqHead:%s*(%d+)")))
      assert.equal(s.cq_tail, tonumber(t:match("\nCqTail:%s*(%d+)")))
      assert.equal(1, s.cq_tail - s.cq_head)
      ring:wait_cqe()
      ring:close()
      assert.error_matches(function() ring:fdinfo() end, "closed ring")
    end)
  end)

  describe("ring:async and ring:skip_success", function()
    it("async runs the SQE in an io-wq worker and completes the same", function()
      local buf = core.buffer(16)
      local fd = one("prep_openat", nil, "/proc/self/stat", core.O_RDONLY | core.O_CLOEXEC, 0)
      ring:prep_read(fd, buf, 16, 0, 5)
      ring:async()
      ring:submit()
      local res, ud = ring:wait_cqe(5)
      assert.same({ 16, 5 }, { res, ud })
      assert.truthy(buf:tostring(1, 16):match("^%d+ %("))
      close(fd)
      assert.error_matches(function() ring:async() end, "async: no prepared SQE")
    end)

    it("skip_success posts no CQE for a success; its successor's CQE ends both", function()
      ring:prep_nop(1); ring:link(); ring:skip_success()
      ring:prep_nop(2); ring:link(); ring:skip_success()
      ring:prep_nop(3)
      assert.equal(3, ring:submit())
      assert.same({ 0, 3, 0 }, { ring:wait_cqe(5) })
      assert.equal(0, ring:cq_ready())
      assert.equal(0, ring:inflight())          -- all three released
      assert.error_matches(function() ring:submit_and_wait(1) end,
        "cannot wait for 1 CQEs")
    end)

    it("a failing skip_success SQE posts its CQE; the rest of its chain ends silently", function()
      -- the kernel cancels the SQEs linked after it without posting their
      -- CQEs (its CQE stands for the chain); the ring releases them all
      local buf = core.buffer(8)
      ring:prep_read(1000000, buf, 8, 0, 1); ring:link(); ring:skip_success()
      ring:prep_nop(2); ring:link()
      ring:prep_nop(3)
      ring:submit()
      assert.same({ -EBADF, 1, 0 }, { ring:wait_cqe(5) })
      assert.equal(0, ring:inflight())
      ring:prep_nop(4)                          -- nothing else came first
      ring:submit()
      assert.same({ 0, 4, 0 }, { ring:wait_cqe(5) })
      -- in the middle: the one before succeeded silently, the one after
      -- is cancelled silently
      ring:prep_nop(11); ring:link(); ring:skip_success()
      ring:prep_read(1000000, buf, 8, 0, 12); ring:link(); ring:skip_success()
      ring:prep_nop(13)
      ring:submit()
      assert.same({ -EBADF, 12, 0 }, { ring:wait_cqe(5) })
      assert.equal(0, ring:inflight())
      -- without skip_success on the failing one, the rest get -ECANCELED
      ring:prep_nop(21); ring:link(); ring:skip_success()
      ring:prep_read(1000000, buf, 8, 0, 22); ring:link()
      ring:prep_nop(23)
      ring:submit()
      local got = reap(2)
      assert.equal(-EBADF, got[22][1])
      assert.equal(-ECANCELED, got[23][1])
      assert.equal(0, ring:inflight())
    end)

    it("submit refuses a skip_success SQE with no linked successor", function()
      ring:prep_nop(1); ring:skip_success()
      assert.error_matches(function() ring:submit() end,
        "submit: an SQE marked skip_success has no linked SQE after it")
      ring:link()
      assert.error_matches(function() ring:submit() end, "no linked SQE")
      ring:prep_nop(2)
      assert.equal(2, ring:submit())
      assert.same({ 0, 2, 0 }, { ring:wait_cqe(5) })
      assert.equal(0, ring:inflight())
    end)
  end)

  describe("register_eventfd", function()
    it("the eventfd becomes readable when the ring posts a CQE", function()
      local efd = assert(ring:register_eventfd())
      assert.error_matches(function() ring:register_eventfd() end,
        "has its eventfd")
      -- a second ring reads the eventfd: nothing until the first ring posts
      local watcher <close> = assert(core.ring{entries = 4})
      local buf = core.buffer(8)
      watcher:prep_read(efd, buf, 8, 0, 1)
      watcher:submit()
      assert.is_nil(watcher:wait_cqe(0.05))    -- times out: no CQE posted yet
      ring:prep_nop(9)
      ring:submit()
      local res = watcher:wait_cqe(5)
      assert.equal(8, res)
      assert.equal(1, string.unpack("<I8", buf:tostring(1, 8)))
      assert.same({ 0, 9, 0 }, { ring:wait_cqe() })
      assert.is_true(ring:unregister_eventfd())
      local ok, msg = ring:unregister_eventfd()  -- none left: ENXIO
      assert.is_nil(ok)
      assert.matches("unregister_eventfd", msg)
    end)
  end)

  describe("register_restrictions", function()
    it("sandboxes a disabled ring: allowed ops run, others get -EACCES", function()
      local r <close> = assert(core.ring{entries = 4, disabled = true})
      r:prep_nop(1)
      local ok, msg, err = r:submit()           -- not enabled yet
      assert.is_nil(ok)
      assert.equal(77, err)                    -- EBADFD
      assert.matches("submit", msg)
      assert.is_true(r:register_restrictions{ops = {"nop", "async_cancel"},
                                             sqe_flags = {"link"}})
      assert.is_true(r:enable_rings())
      local buf = core.buffer(8)
      r:prep_read(0, buf, 8, 0, 2)
      r:submit()
      local got = reap(2, r)
      assert.equal(0, got[1][1])
      assert.equal(-EACCES, got[2][1])
      r:prep_nop(3); r:async()                 -- a flag not allowed
      r:submit()
      assert.equal(-EACCES, (r:wait_cqe(5)))
      local ok2, _, err2 = r:register_buffers{ buf }
      assert.is_nil(ok2)
      assert.equal(EACCES, err2)
      -- once enabled, no more restrictions
      local ok3 = r:register_restrictions{ops = {"nop"}}
      assert.is_nil(ok3)
    end)

    it("refuses bad names and unknown keys", function()
      local r <close> = assert(core.ring{entries = 4, disabled = true})
      assert.error_matches(function() r:register_restrictions{ops = {"nope"}} end,
        "bad argument #1 to 'register_restrictions' %(ops%[1%]: unknown name 'nope'%)")
      assert.error_matches(function() r:register_restrictions{opz = {"nop"}} end,
        "unknown key 'opz'")
      assert.error_matches(function() r:register_restrictions{sqe_flags = {1}} end,
        "unknown name 'number'")
      assert.error_matches(function() r:register_restrictions{} end,
        "no restriction given")
      assert.error_matches(function() r:register_restrictions(1) end,
        "bad argument #1 to 'register_restrictions' %(table expected")
      assert.error_matches(function() core.ring{disabled = 1} end,
        "option 'disabled' must be a boolean")
    end)
  end)
end)
