-- bench/wrk_distinct.lua: a wrk script giving every request a path of its
-- own, so no two request heads are alike: what a memo of the last head
-- costs when it never hits (DISTINCT=1 sh bench/http_callgrind.sh).
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/" .. n)
end
