--- helpers.browser: a page loaded in headless Chromium, from inside a task.
--
-- browser.start(url, png) starts chromium (--headless --no-sandbox) on
-- url; it runs scripts in virtual time, so it dumps the DOM and saves a
-- screenshot once the page's budget is spent and no fetch is pending: a
-- page fed by server-sent events is captured when its stream ends.  The
-- returned object's :finish(seconds) waits for that (killing chromium if
-- it takes longer) and returns the DOM text.  Its environment is made
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
  local argv = { "chromium", "--headless", "--no-sandbox", "--disable-gpu",
    "--no-first-run", "--disable-extensions", "--hide-scrollbars",
    "--user-data-dir=" .. profile,
    "--window-size=" .. (opts.size or "1200,900"),
    "--virtual-time-budget=" .. (opts.budget_ms or 3000),
    "--screenshot=" .. png, "--dump-dom", url,
    stdout = "pipe", stderr = "null",
    env = { PATH = os.getenv("PATH") or "/usr/bin:/bin", HOME = profile },
  }
  local proc = assert(uring.exec(argv))
  local reader = uring.spawn(function()
    local dom = proc.stdout:read("a")
    proc.stdout:close()
    return dom
  end)
  local b = {}
  function b.finish(_, seconds)
    local ok, dom = uring.timeout(seconds or 60, function()
      local _, d = reader:join()
      proc:wait()
      return true, d
    end)
    if not ok then
      proc:kill("KILL")
      proc:wait()
      reader:join()
    end
    os.execute("rm -rf '" .. profile .. "'")
    return ok and dom or nil
  end
  return b
end

return M
