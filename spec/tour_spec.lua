-- spec/tour_spec.lua: every example of the guided tour (docs/tour.md)
-- runs, exits 0 and prints the line that carries the figure it teaches.
-- Each runs as a reader would, from the repo root:
--   timeout 60 lua5.4 examples/tour_x.lua
-- URING_CPATH, when set (the ASan build), reaches the examples through the
-- environment.  Step 2 (batching) is examples/batch.lua, run by
-- examples_spec.lua.
local helpers = require "helpers"
local LUA = os.getenv("LUA") or "lua5.4"

local function run(script)
  local out, err, code = helpers.exec(("timeout 60 %s examples/%s"):format(LUA, script))
  assert(code == 0, ("%s: exit status %s\nstdout:\n%s\nstderr:\n%s")
    :format(script, tostring(code), out, err))
  return out
end

local function expect(out, pattern)
  local c = { out:match(pattern) }
  assert(#c > 0, ("no line matching %q in:\n%s"):format(pattern, out))
  return table.unpack(c)
end

describe("tour", function()
  it("1. tour_sq_cq: 5 SQEs, one submit, 5 CQEs", function()
    local out = run("tour_sq_cq.lua")
    expect(out, "after 5 prep_nop:  sq_ready = 5  cq_ready = 0")
    expect(out, "submit%(%) %-> 5:     sq_ready = 0  cq_ready = 5   %(1 io_uring_enter%)")
    expect(out, "after 5 wait_cqe:  cq_ready = 0   %(0 io_uring_enter")
    -- the SQ bounds what is prepared, not what is in flight; the CQ overflows
    expect(out, "nothing reaped: submitted 24; CQ %(16 entries%) holds 16; reaped 24")
    expect(out, "ok: 5 SQEs went in with one submit and 5 CQEs came back")
  end)

  it("3. tour_completion: poll says ready at once, the read completes later", function()
    local out = run("tour_completion.lua")
    local poll, read = expect(out,
      "ok: readiness said yes in ([%d.]+) ms; the completion came when the data did, ([%d.]+) ms")
    assert(tonumber(poll) < tonumber(read))
  end)

  it("4. tour_link_timeout: the empty read is cut with -ECANCELED / -ETIME", function()
    local out = run("tour_link_timeout.lua")
    local ms = tonumber(expect(out, "ok: the empty read was cut after ([%d.]+) ms"))
    assert(ms >= 90 and ms < 600, ms)
    expect(out, "read returned \"hello\\n\"")
  end)

  it("5. tour_cancel: a 10 s sleep cancelled, CQE -125, in < 1 s", function()
    local out = run("tour_cancel.lua")
    expect(out, "cqe timeout  task=%d+ res=%-125")
    -- the cancel's own CQE, and a cancel that finds nothing: -ENOENT
    expect(out, "timeout %(ud 1%) res = %-125; its cancel %(ud 2%) res = 0; a second cancel %(ud 3%) res = %-2\n")
    local ms = tonumber(expect(out, "ok: the 10 s sleep ended with %-ECANCELED after ([%d.]+) ms"))
    assert(ms < 1000, ms)
  end)

  it("6. tour_sqpoll: zero io_uring_enter during the SQPOLL burst", function()
    local out = run("tour_sqpoll.lua")
    if out:match("SQPOLL is not allowed here") or out:match("strace not found") then
      return   -- nothing to count on this machine; the script said so
    end
    assert.equal(0, tonumber(expect(out, "enters during burst: (%d+)")))
    assert(tonumber(expect(out, "\nplain%s+(%d+)")) > 0)
  end)

  it("7. tour_fixed: fixed and plain reads, fixed file and fd, timed, all correct", function()
    local out = run("tour_fixed.lua")
    expect(out, "buffered %(warm cache%)%s+%d+%s+[%d.]+%s+[%d.]+%s+[%d.]+")
    expect(out, "register_files{fd} took [%d.]+ us, once\n%s+reads%s+fd us%s+fixed file us"
      .. "%s+fixed/fd\nbuffered %(warm cache%)%s+%d+%s+[%d.]+%s+[%d.]+%s+[%d.]+")
    expect(out, "unregistered file slot refused by ring:fixed: true")
    expect(out, "reads with a wrong result: 0")
    expect(out, "ok: every fixed and plain read returned its block")
  end)

  it("8. tour_multishot: one accept SQE, 100 CQEs with more", function()
    local out = run("tour_multishot.lua")
    local sqes, cqes, more = expect(out, "accept: (%d+) SQE, (%d+) CQEs %((%d+) with more = true%)")
    assert.equal(1, tonumber(sqes))
    assert(tonumber(cqes) >= 100 and tonumber(more) >= 100)
  end)

  it("9. tour_zerocopy: send and send_zc timed; a result and a notification per send_zc", function()
    local out = run("tour_zerocopy.lua")
    if out:match("this kernel has no IORING_OP_SEND_ZC") then
      pending("this kernel has no IORING_OP_SEND_ZC")   -- counted as a skip
    end
    expect(out, "64 KiB%s+%d+%s+%d+%s+%d+%s+[%d.]+")
    expect(out, "1 MiB%s+%d+%s+%d+%s+%d+%s+[%d.]+")
    local n, more, notif = expect(out,
      "1 MiB : (%d+) send_zc SQEs %-> (%d+) results with F_MORE %+ (%d+) notifications with F_NOTIF")
    assert(n == more and n == notif, out)
    expect(out, "messages with a wrong result: 0")
    expect(out, "ok: every message arrived intact; every send_zc gave a result and a notification")
  end)

  it("9-10. tour_probe: the op list, send_zc probed", function()
    local out = run("tour_probe.lua")
    expect(out, "uring.probe%(%).send_zc = %a+")
    -- step 8's receives use a registered buffer ring, not PROVIDE_BUFFERS SQEs
    expect(out, "recv +yes +step 8: picks its buffer from a buffer ring")
    assert.is_nil(out:find("provide_buffers  ", 1, true))
    assert(tonumber(expect(out, "ok: (%d+) ops probed")) > 0)
  end)

  it("11. tour_security: the seccomp message, with the fix", function()
    local out = run("tour_security.lua")
    expect(out, "io_uring_setup is blocked by a seccomp or container policy")
    expect(out, "ok: blocked by seccomp, lua%-uring named the cause and the fix")
  end)

  it("12. tour_drill: ring, blocking loop and threads, cold and warm", function()
    local out = run("tour_drill.lua")
    expect(out, "warm  uring: 1000 tasks%s+[%d.]+%s+[%d.]+")
    expect(out, "warm  threads: 8 x pread %(C%)%s+[%d.]+%s+[%d.]+")
    -- several samples per row: medians, with the range of the rounds
    expect(out, "medians of 3 cold and 5 warm rounds")
    expect(out, "warm  blocking pread loop%s+[%d.]+%s+[%d.]+%s+[%d.]+  %[[%d.]+%-[%d.]+%]")
    expect(out, "ok: every read returned its block")
  end)

  it("13. tour_internals: who writes which index, fdinfo agreeing", function()
    local out = run("tour_internals.lua")
    expect(out, "3 x prep_nop %(private sqe_tail%)%s+0%s+0%s+3%s+0%s+0")
    expect(out, "wait_cqe%(keep%): read, not consumed%s+3%s+3%s+3%s+0%s+3")
    expect(out, "cqe_seen %(we: cq_head%)%s+3%s+3%s+3%s+1%s+3")
    expect(out, "next SQE goes in SQ slot 33 & 3 = 1")
    expect(out, "ok: we wrote sq_tail and cq_head, the kernel sq_head and cq_tail; fdinfo agreed at every step")
  end)

  it("14. tour_lifecycle: inline, poll-armed, io-wq, task_work", function()
    local out = run("tour_lifecycle.lua")
    expect(out, "CQEs ready when submit returned: 16 of 16")
    expect(out, "0 CQE after submit, 1 armed in fdinfo's PollList, 0 io%-wq threads; after the send: recv res = 5")
    local before, after = expect(out, "io%-wq threads (%d+) before, (%d+) after")
    assert(tonumber(before) == 0 and tonumber(after) >= 1, out)
    expect(out, "plain ring true, DEFER_TASKRUN ring false")
    if not out:match("perf cannot read") then
      -- the kernel's own counts: inline used neither a poll nor io-wq
      local arm, async = expect(out, "\ninline%s+%d+%s+(%d+)%s+(%d+)")
      assert(arm == "0" and async == "0", out)
    end
    expect(out, "ok: inline in submit, armed on a poll queue, handed to io%-wq, finished by task_work")
  end)

  it("15. tour_overflow: 64 in flight on a 4-entry SQ, 57 on the overflow list, none lost", function()
    local out = run("tour_overflow.lua")
    expect(out, "SQ of 4 entries: 64 requests in flight, SQ space left 4")
    expect(out, "CQ holds 8 of 8, fdinfo's CqOverflowList holds 57, sq_flags = %d+ %(CQ_OVERFLOW set%), overflow %(dropped%) = 0")
    expect(out, "reaped 66 CQEs: 64 timeouts %-ECANCELED, the cancel's res = 64")
    expect(out, "ok: a 4%-entry SQ fed 64 requests")
  end)

  it("16. tour_eventfd: asleep while idle, woken by the CQE", function()
    local out = run("tour_eventfd.lua")
    local ms = tonumber(expect(out, "a 100 ms timeout woke it after ([%d.]+) ms"))
    assert(ms >= 90 and ms < 5000, ms)
    expect(out, "3 inline NOPs left the watcher asleep: true; an async%(%) read woke it: true")
    expect(out, "ok: the eventfd slept while the ring was idle")
  end)

  it("17. tour_bufring: 4 buffers then -ENOBUFS, re-armed, recycled", function()
    local out = run("tour_bufring.lua")
    expect(out, "4 CQEs with data %(buffers [%d,]+%), then res = %-105")
    expect(out, "16384 bytes, intact: true")
    expect(out, "32 messages, 1 recv SQE still armed %(F_MORE on every CQE: true%)")
    expect(out, "ok: the kernel picked buffers, ran out with %-ENOBUFS")
  end)

  it("18. tour_restrictions: allowed ops run, the rest get EACCES", function()
    local out = run("tour_restrictions.lua")
    expect(out, "openat %(a new file%)%s+ok%s+%-13")
    expect(out, "read the fd it was given%s+ok%s+ok")
    expect(out, "ok: the sandboxed ring did what its allow%-list says")
  end)
end)
