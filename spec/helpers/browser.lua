--- helpers.browser: a page loaded in headless Chromium, from inside a task.
--
-- browser.start(url, png) starts chromium (--headless --no-sandbox) on
-- url; it runs scripts in virtual time, so it dumps the DOM and saves a
-- screenshot once no fetch is pending and the page's budget is spent: a
-- page fed by server-sent events is captured once it closes its stream
-- (the inspector's ?updates=N).  The
-- returned object's :finish(seconds) waits for chromium to exit (killing
-- it if it takes longer) and returns the DOM text.  Its environment is made
-- anew: under `make asan` the sanitizer preload must not reach it, and a
-- profile directory of its own lets several runs go side by side.
local uring = require "uring"

local M = {}

local function tmpdir()
  local p = io.popen("mktemp -d /tmp/uring-chromium.XXXXXX")
  local d = p:read("l")
  p:close()
  return d
end

function M.available()
  return os.execute("command -v chromium >/dev/null 2>&1") == true
end

function M.start(url, png, opts)
  opts = opts or {}
  local profile = tmpdir()
  os.remove(png)                        -- a new one says chromium got there
  -- the DOM goes to a file, not a pipe: chromium's helper processes
  -- inherit its stdout and may outlive it, and a pipe would then never
  -- say end of file
  local dom_path = profile .. "/dom.html"
  local out = assert(uring.open(dom_path, "w"))
  local argv = { "chromium", "--headless", "--no-sandbox", "--disable-gpu",
    "--no-first-run", "--disable-extensions", "--hide-scrollbars",
    "--user-data-dir=" .. profile,
    "--window-size=" .. (opts.size or "1200,900"),
    -- longer than the page takes to reach its ?updates=N: a budget that
    -- ran out while the stream was open left chromium waiting forever
    -- once the page closed it (half the runs of a 4 s page with 3000)
    "--virtual-time-budget=" .. (opts.budget_ms or 20000),
    "--screenshot=" .. png, "--dump-dom", url,
    stdout = out, stderr = "null",
    env = { PATH = os.getenv("PATH") or "/usr/bin:/bin", HOME = profile },
  }
  local proc, msg = uring.exec(argv)
  out:close()
  assert(proc, msg)
  local function slurp(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local d = f:read("a")
    f:close()
    return d
  end
  local b = {}
  -- Done when chromium exits, or once both files are whole: it has been
  -- seen to hang on its way out (about one run in five on this box) after
  -- writing them, and (more seldom) after the screenshot, before the DOM;
  -- then it is killed.  png_only: the screenshot is all that is wanted.
  function b.finish(_, seconds, png_only)
    local waiter = uring.spawn(function() return proc:wait() end)
    local deadline = uring.now() + (seconds or 60)
    local dom
    while uring.now() < deadline and waiter:status() ~= "done" do
      local d = slurp(dom_path)
      if (png_only or d:find("</html>%s*$")) and #slurp(png) > 0 then dom = d; break end
      uring.sleep(0.1)
    end
    if waiter:status() ~= "done" then
      proc:kill("KILL")
    end
    waiter:join()
    if not dom then
      local d = slurp(dom_path)
      if d:find("</html>%s*$") then dom = d end
    end
    os.execute("rm -rf '" .. profile .. "'")
    return dom
  end
  return b
end

return M
