-- spec/run.lua: run the busted suite and end with the one summary line
-- CI reads: "tests: N passed, N failed".  Exit status 1 on any failure.
local busted = arg[1] or "lua5.4 /usr/bin/busted"
local cpath = os.getenv("URING_CPATH")
local cmd = busted .. " -o TAP" .. (cpath and (" --cpath='" .. cpath .. "'") or "")
  .. (arg[2] and (" " .. arg[2]) or "") .. " 2>&1"
local passed, failed = 0, 0
local p = assert(io.popen(cmd))
for line in p:lines() do
  io.write(line, "\n")
  io.flush()
  if line:match("^ok %d+") then passed = passed + 1
  elseif line:match("^not ok %d+") then failed = failed + 1 end
end
local ok, _, code = p:close()
if not ok and failed == 0 then
  failed = 1
  io.write("# the runner exited with status ", tostring(code), "\n")
end
io.write(("tests: %d passed, %d failed\n"):format(passed, failed))
os.exit(failed == 0 and passed > 0 and 0 or 1)
