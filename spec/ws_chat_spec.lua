-- spec/ws_chat_spec.lua: examples/ws_chat.lua with a real browser.
-- Headless Chromium (as root: --no-sandbox) opens the chat page in two
-- tabs; each tab's own WebSocket talks to the example's server.  The spec
-- drives the browser through the DevTools protocol, which is itself
-- WebSocket: uring.http.websocket is the client there, Chromium's server
-- the peer.  Ann's tab sends, Bob's DOM shows it, Bob answers, Ann's DOM
-- shows it; a screenshot of Bob's tab goes to build/ws_chat.png.
-- Chromium's start-up is waited for (up to 60 s), never assumed.
local uring = require "uring"
local helpers = require "helpers"
local http = uring.http

local run = helpers.runner(120)
local LUA = os.getenv("LUA") or "lua5.4"

-- JSON for the few shapes DevTools needs: flat strings, numbers, booleans
-- and nested tables with string keys
local function json(v)
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif t == "number" or t == "boolean" then return tostring(v)
  end
  local parts = {}
  for k, x in pairs(v) do parts[#parts + 1] = json(k) .. ":" .. json(x) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function unbase64(s)
  local out, bits, n = {}, 0, 0
  for c in s:gmatch("[%w+/]") do
    bits = bits << 6 | (B64:find(c, 1, true) - 1)
    n = n + 6
    if n >= 8 then
      n = n - 8
      out[#out + 1] = string.char(bits >> n & 0xff)
    end
  end
  return table.concat(out)
end

-- a DevTools session over one WebSocket: call(method, params [, session])
-- -> the raw JSON of the answer (events on the way are skipped)
local function devtools(url)
  local ws = assert(http.websocket(url, { max_message = 64 << 20 }))
  local id = 0
  local function call(method, params, session)
    id = id + 1
    local msg = { id = id, method = method, params = params or {} }
    msg.sessionId = session
    assert(ws:send(json(msg)))
    while true do
      local answer = assert(ws:receive())
      if answer:match('^{"id":(%d+)') == tostring(id) then
        assert(not answer:find('^{"id":%d+,"error"'), answer)
        return answer
      end
    end
  end
  return call, ws
end

-- a page's JavaScript value (a string or a boolean) by Runtime.evaluate
local function eval(call, session, expr)
  local a = call("Runtime.evaluate", { expression = expr, returnByValue = true }, session)
  local s = a:match('"value":"(.-)"}')
  if s then return s end
  return a:match('"value":(%a+)') == "true"
end

-- poll fn() until it returns a true value, for at most secs
local function eventually(what, secs, fn)
  local t0 = uring.now()
  while true do
    local v = fn()
    if v then return v end
    if uring.now() - t0 > secs then error("gave up waiting for " .. what, 2) end
    uring.sleep(0.05)
  end
end

describe("examples/ws_chat.lua in headless Chromium #io #net", function()
  helpers.leak_check(before_each, after_each)

  it("two tabs exchange messages through the server; the DOM shows them", function()
    local profile = helpers.tmpdir()
    local ok, err = pcall(run, function()
      local chat = assert(uring.exec{ LUA, "examples/ws_chat.lua", "0", "--seconds", "100",
        stdout = "pipe" })
      local port = assert(chat.stdout:read("l")):match(":(%d+)/$")
      local browser = assert(uring.exec{ "env", "-u", "LD_PRELOAD", "chromium",
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--remote-debugging-port=0", "--user-data-dir=" .. profile,
        "--window-size=800,600", "about:blank", stdout = "null", stderr = "null" })
      local finish = function()
        browser:kill("KILL"); browser:wait()
        chat:kill("TERM"); chat.stdout:close(); chat:wait()
      end
      local ok2, err2 = pcall(function()
        -- Chromium writes its DevTools port and path once it is up
        local active = eventually("Chromium's DevTools port", 60, function()
          local s = helpers.readall(profile .. "/DevToolsActivePort")
          return s and s:match("^%d+\n/devtools/browser/%S+") and s
        end)
        local dport, path = active:match("^(%d+)\n(%S+)")
        local call, cdp = devtools("ws://127.0.0.1:" .. dport .. path)
        local sessions = {}
        for _, name in ipairs { "ann", "bob" } do
          local t = call("Target.createTarget",
            { url = "http://127.0.0.1:" .. port .. "/?name=" .. name })
          local target = assert(t:match('"targetId":"(%w+)"'))
          local a = call("Target.attachToTarget", { targetId = target, flatten = true })
          sessions[name] = assert(a:match('"sessionId":"(%w+)"'))
        end
        for name, s in pairs(sessions) do
          eventually(name .. "'s WebSocket open", 30, function()
            return eval(call, s, "window.chatReady === true") == true
          end)
        end
        local function dom(name)
          return eval(call, sessions[name],
            "Array.from(document.querySelectorAll('#log li')).map(li => li.textContent).join('|')")
        end
        eval(call, sessions.ann, "send('hello from ann'), 'sent'")
        eventually("bob to see ann", 20, function() return dom("bob") == "ann: hello from ann" end)
        eval(call, sessions.bob, "send('hi ann, bob here'), 'sent'")
        eventually("ann to see bob", 20, function()
          return dom("ann") == "ann: hello from ann|bob: hi ann, bob here"
        end)
        assert.equal("ann: hello from ann|bob: hi ann, bob here", dom("bob"))
        -- the whole page as Chromium holds it, and a picture of it
        local html = eval(call, sessions.bob, "document.documentElement.outerHTML")
        assert.matches("<li>ann: hello from ann</li>", html, 1, true)
        assert.matches('<li class=\\"me\\">bob: hi ann, bob here</li>', html, 1, true)
        local shot = call("Page.captureScreenshot", { format = "png" }, sessions.bob)
        local png = unbase64(assert(shot:match('"data":"([^"]+)"')))
        assert.equal("\137PNG\r\n\26\n", png:sub(1, 8))
        os.execute("mkdir -p build")
        helpers.writeall("build/ws_chat.png", png)
        call("Browser.close")
        cdp:close()
      end)
      finish()
      assert(ok2, err2)
      -- the example ran on the whole time and relayed both messages
    end)
    helpers.rmrf(profile)
    assert(ok, err)
    local f = assert(io.open("build/ws_chat.png", "rb"))
    assert.is_true(#f:read("a") > 1000)
    f:close()
  end)
end)
