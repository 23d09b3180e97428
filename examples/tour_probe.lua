--- examples/tour_probe.lua: tour steps 9 and 10 — asking the kernel what it supports.
--
--   lua5.4 examples/tour_probe.lua
--
-- io_uring grows with every kernel release: new opcodes (IORING_OP_*), new
-- setup flags, new features.  A program should ask instead of guessing
-- from the version number: io_uring_get_probe (IORING_REGISTER_PROBE)
-- lists the opcodes this kernel supports, and io_uring_setup reports
-- feature bits and refuses flags it does not know.
--
-- uring.probe() returns {opname = true, ...}; uring.features() adds the
-- kernel release, the setup flags the task loop's ring got, and its sizes.
-- It prints all of it, then the ops that the tour mentions — including
-- send_zc (zero-copy send, tour step 9), which the kernel supports but
-- lua-uring's API does not use yet.
-- Exits non-zero unless io_uring is available, the probe lists nop and
-- read, and features().ops agrees with probe().
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local f = uring.features()
if not f.available then
  print("io_uring is not available: " .. tostring(f.reason))
  os.exit(1)
end
local probe = assert(uring.probe())

local function keys(t)
  local out = {}
  for k, v in pairs(t) do if v then out[#out + 1] = k end end
  table.sort(out, function(a, b)
    local na, nb = uring.opcode(a), uring.opcode(b)
    if na and nb and na ~= nb then return na < nb end
    return a < b
  end)
  return out
end

print(("kernel %s; loop ring: %d SQ / %d CQ entries"):format(f.kernel, f.entries, f.cq_entries))
local flags = {}
for k in pairs(f.flags) do flags[#flags + 1] = k end
table.sort(flags)
print("setup flags in use: " .. table.concat(flags, " "))

local ops = keys(probe)
print(("\n%d opcodes supported (IORING_OP_*, by number):"):format(#ops))
local line = ""
for _, op in ipairs(ops) do
  local item = ("%d:%s"):format(uring.opcode(op) or -1, op)
  if #line + #item + 1 > 76 then print("  " .. line); line = "" end
  line = line == "" and item or (line .. " " .. item)
end
if line ~= "" then print("  " .. line) end

print("\nops the tour talks about:")
local tour = {
  { "nop", "step 1" }, { "read", "steps 3, 12" }, { "poll_add", "step 3" },
  { "link_timeout", "step 4" }, { "async_cancel", "step 5" },
  { "read_fixed", "step 7" }, { "accept", "step 8 (multishot)" },
  { "recv", "step 8: picks its buffer from a buffer ring (IOSQE_BUFFER_SELECT)" },
  { "send_zc", "step 9: zero-copy send" },
  { "sendmsg_zc", "step 9" }, { "read_multishot", "newer: multishot read" },
}
for _, t in ipairs(tour) do
  print(("  %-16s %-5s %s"):format(t[1], probe[t[1]] and "yes" or "no", t[2]))
end
-- step 8's buffer ring is set up by a register call
-- (IORING_REGISTER_PBUF_RING, Linux 5.19), not an opcode: the probe cannot
-- see it.  IORING_OP_PROVIDE_BUFFERS is the older way, one SQE per batch of
-- buffers, which lua-uring does not use.
print("  (step 8's buffer ring is registered with IORING_REGISTER_PBUF_RING, not an op:"
  .. " the probe lists only opcodes; provide_buffers is the older, SQE-based way)")
print(("\nuring.probe().send_zc = %s  (IORING_OP_SEND_ZC: the kernel has it; " ..
  "the teaching ring has ring:prep_send_zc, see tour_zerocopy.lua)"):format(tostring(probe.send_zc)))

local agree = true
for op in pairs(probe) do if not f.ops[op] then agree = false end end
for op in pairs(f.ops) do if not probe[op] then agree = false end end
local ok = probe.nop and probe.read and agree and #ops > 0
print(ok and ("ok: %d ops probed"):format(#ops) or "unexpected result")
os.exit(ok and 0 or 1, true)
