--- bench/copy.lua: uring.copyfile(SRC, DST), for bench/files.sh.
--
--   lua5.4 bench/copy.lua SRC DST
--
-- Copies and exits; files.sh times the whole process, as it times cp.
-- Run from the repo root; URING_CPATH overrides the C module path.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

if not arg[1] or not arg[2] then
  io.stderr:write("usage: lua5.4 bench/copy.lua SRC DST\n")
  os.exit(2)
end
uring.run(function()
  assert(uring.copyfile(arg[1], arg[2]))
end)
