-- ring:state(): the teaching ring's indices, read from the shared memory,
-- moving as the liburing model says they do.
local uring = require "uring"

describe("ring:state()", function()
  it("shows prep, submit and reap move sqe_tail, sq_tail/sq_head, cq_tail/cq_head", function()
    local r <close> = uring.ring { entries = 4 }
    local s = r:state()
    assert.equal(0, s.sq_head); assert.equal(0, s.sq_tail); assert.equal(0, s.sqe_tail)
    assert.equal(0, s.cq_head); assert.equal(0, s.cq_tail)
    assert.equal(4, s.sq_entries); assert.equal(3, s.sq_mask)
    assert.equal(s.cq_entries - 1, s.cq_mask)
    r:prep_nop(1); r:prep_nop(2)
    s = r:state()
    assert.equal(2, s.sqe_tail)              -- prepared ...
    assert.equal(0, s.sq_tail)               -- ... not yet published
    assert.equal(2, s.sq_ready)
    assert.equal(2, r:submit())
    s = r:state()
    assert.equal(2, s.sq_tail)               -- published
    assert.equal(2, s.sq_head)               -- and consumed by the kernel
    assert.equal(2, s.cq_tail)               -- two CQEs posted
    assert.equal(0, s.cq_head)
    assert.equal(2, s.cq_ready)
    r:wait_cqe()
    s = r:state()
    assert.equal(1, s.cq_head)               -- one taken
    assert.equal(1, s.cq_ready)
    r:wait_cqe()
    assert.equal(2, r:state().cq_head)
    assert.equal(0, r:state().overflow)
  end)

  it("shows a CQ overflow: more CQEs than the CQ holds wait in the kernel", function()
    local r <close> = uring.ring { entries = 4 }
    local cq = r:state().cq_entries
    local n = 0
    while n < cq + 4 do                      -- SQ of 4: submit in rounds
      for _ = 1, 4 do r:prep_nop(n); n = n + 1 end
      assert.equal(4, r:submit())
    end
    local s = r:state()
    assert.equal(cq, s.cq_ready)             -- the CQ is full
    assert.equal(cq, s.cq_tail - s.cq_head)
    -- the rest waits in the kernel's overflow list (IORING_SQ_CQ_OVERFLOW),
    -- or, on a kernel without one, was dropped and counted
    assert.is_true(s.sq_flags & 2 ~= 0 or s.overflow == 4,
      ("sq_flags %d overflow %d"):format(s.sq_flags, s.overflow))
    local got = 0
    while r:peek_cqe() or (r:inflight() > 0 and r:wait_cqe()) do got = got + 1 end
    assert.equal(cq + 4, got + r:state().overflow)
    assert.equal(0, r:state().sq_flags & 2)
  end)

  it("raises on a closed ring", function()
    local r = uring.ring { entries = 4 }
    r:close()
    assert.has_error(function() r:state() end, "attempt to use a closed ring")
  end)
end)
