--- examples/crawl.lua: a crawler as one uring.group, at most K requests
-- at a time.
--
--   lua5.4 examples/crawl.lua [--pages N] [--concurrency K]
--
-- The script serves a small site itself (uring.http, on 127.0.0.1 port
-- 0): pages /page/1 .. /page/N (default 60), each linking to three
-- others, and every tenth page also to a page that does not exist.  The
-- server answers each request after 5 ms, as a slower one would.
--
-- The idea: structured concurrency.  The crawl is one uring.group: each
-- page fetched spawns a child per link not seen yet, and the group
-- returns only when the last child has ended -- no counting of
-- outstanding fetches by hand.  A fetch that raised would cancel the
-- rest and be raised here with its traceback.  A semaphore of K permits
-- (default 4) bounds how many requests are out at once, however many
-- children are waiting for their turn: the server counts the most it
-- ever saw at once, and that never exceeds K.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"

local USAGE = "usage: lua5.4 examples/crawl.lua [--pages N] [--concurrency K]\n"
local function usage(msg)
  io.stderr:write("crawl: ", msg, "\n", USAGE)
  os.exit(2)
end

local npages, limit = 60, 4
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--pages" or a == "--concurrency" then
      local v = math.tointeger(tonumber(arg[i + 1]))
      if not v or v < 1 then usage(a .. " needs a positive integer") end
      if a == "--pages" then npages = v else limit = v end
      i = i + 2
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      os.exit(0)
    else
      usage("unexpected argument '" .. a .. "'")
    end
  end
end

-- the site: page k links to three others (and every tenth to a dead end)
local function links_of(k)
  local l = { (k * 2 - 1) % npages + 1, (k * 3) % npages + 1, (k + 7) % npages + 1 }
  if k % 10 == 0 then l[#l + 1] = npages + k end   -- no such page: 404
  return l
end

local now_serving, most_at_once = 0, 0
local function handler(req, res)
  local k = math.tointeger(tonumber(req.path:match("^/page/(%d+)$")))
  if not k or k < 1 or k > npages then return 404, "no such page\n" end
  now_serving = now_serving + 1
  if now_serving > most_at_once then most_at_once = now_serving end
  uring.sleep(0.005)                   -- a slower server
  now_serving = now_serving - 1
  local body = { "<html><body><h1>page ", k, "</h1>\n" }
  for _, j in ipairs(links_of(k)) do
    body[#body + 1] = ('<a href="/page/%d">page %d</a>\n'):format(j, j)
  end
  body[#body + 1] = "</body></html>\n"
  res:header("Content-Type", "text/html")
  res:finish(table.concat(body))
end

local fetched, missing, bytes = 0, 0, 0
local t0 = uring.now()
uring.run(function()
  local srv = assert(uring.http.server { host = "127.0.0.1", port = 0, handler = handler })
  local serving = uring.spawn(srv.serve, srv)
  local base = ("http://127.0.0.1:%d"):format(srv:port())
  local permits = uring.semaphore(limit)
  local seen = {}

  uring.group(function(g)
    local function crawl(path)
      -- wait for a permit: at most `limit` requests are out at once
      local res = assert(permits:with(uring.http.request, base .. path))
      if res.status == 404 then missing = missing + 1; return end
      assert(res.status == 200, "unexpected status " .. res.status)
      fetched, bytes = fetched + 1, bytes + #res.body
      for link in res.body:gmatch('href="(/page/%d+)"') do
        if not seen[link] then
          seen[link] = true
          g:spawn(crawl, link)
        end
      end
    end
    seen["/page/1"] = true
    g:spawn(crawl, "/page/1")
  end)                                 -- returns when every fetch has ended

  srv:close()
  serving:join()
end)

print(("crawl: %d pages fetched (%d bytes), %d dead links, in %.3f s"):format(
  fetched, bytes, missing, uring.now() - t0))
print(("crawl: at most %d requests at once (semaphore of %d)"):format(most_at_once, limit))
