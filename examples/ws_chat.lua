--- examples/ws_chat.lua: a chat page for the browser, served by uring.http,
-- its messages over WebSocket.
--
--   lua5.4 examples/ws_chat.lua [port] [--seconds S]
--
-- GET / is the page (open it in two tabs: /?name=ann and /?name=bob);
-- its script connects to /chat with `new WebSocket(...)`, and every
-- message a tab sends reaches every tab through the server.  One task per
-- connection receives (the handler itself, after req:upgrade()); sending
-- to the others happens from that task, and the ws's own lock keeps two
-- senders' frames apart when two tabs talk at once.
-- First line: "ws_chat: listening on http://127.0.0.1:PORT/"; after S
-- seconds (default 30) the server closes (each tab gets close code 1001,
-- "going away") and the script prints what it relayed.
local cp = os.getenv("URING_CPATH") or "./build/?.so"
package.cpath = cp .. ";" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uring = require "uring"
local http = uring.http

local port, seconds = 0, 30
do
  local i = 1
  while i <= #arg do
    if arg[i] == "--seconds" then seconds = assert(tonumber(arg[i + 1]), "--seconds S"); i = i + 2
    else port = assert(math.tointeger(tonumber(arg[i])), "usage: ws_chat.lua [port] [--seconds S]"); i = i + 1 end
  end
end

local PAGE = [[<!doctype html>
<html><head><meta charset="utf-8"><title>uring chat</title>
<style>
 body { font: 16px sans-serif; margin: 2em; background: #f4f4f0 }
 #log { list-style: none; padding: 0; min-height: 8em; background: #fff;
        border: 1px solid #ccc; padding: .5em }
 #log li.me { color: #06c } #state { color: #888 }
</style></head>
<body>
<h1>uring chat <span id="state">connecting</span></h1>
<ul id="log"></ul>
<form id="form"><input id="text" size="40" autocomplete="off"> <button>send</button></form>
<script>
const name = new URLSearchParams(location.search).get("name") || "anon";
const ws = new WebSocket("ws://" + location.host + "/chat");
const log = document.getElementById("log");
function add(text, mine) {
  const li = document.createElement("li");
  li.textContent = text;
  if (mine) li.className = "me";
  log.appendChild(li);
}
window.chatReady = false;
ws.onopen = () => { window.chatReady = true; document.getElementById("state").textContent = "as " + name; };
ws.onmessage = (e) => add(e.data, e.data.startsWith(name + ": "));
ws.onclose = (e) => { document.getElementById("state").textContent = "closed (" + e.code + ")"; };
window.send = (text) => ws.send(name + ": " + text);
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const t = document.getElementById("text");
  if (t.value) { window.send(t.value); t.value = ""; }
};
</script>
</body></html>
]]

local clients = {}             -- ws -> true: everyone in the room
local relayed, joined = 0, 0

local function broadcast(msg)
  for ws in pairs(clients) do
    ws:send(msg, "text")          -- a gone tab returns nil, "closed": skipped
  end
end

local function chat(req)
  local ws, err = req:upgrade{ max_message = 64 * 1024 }
  if not ws then print("ws_chat: refused: " .. err); return end
  clients[ws] = true
  joined = joined + 1
  while true do
    local msg, kind = ws:receive()
    if not msg then break end
    if kind == "text" then
      relayed = relayed + 1
      broadcast(msg)
    end
  end
  clients[ws] = nil
end

uring.run(function()
  local srv = assert(http.server{ port = port, routes = {
    { "GET", "^/$", function(_, res)
      res:header("Content-Type", "text/html; charset=utf-8")
      return 200, PAGE
    end },
    { "GET", "^/chat$", chat },
  } })
  print(("ws_chat: listening on http://127.0.0.1:%d/"):format(srv:port()))
  io.stdout:flush()
  uring.spawn(function()
    uring.sleep(seconds)
    for ws in pairs(clients) do ws:close(1001, "going away") end
    srv:close()
  end)
  srv:serve()
  print(("ws_chat: %d clients, %d messages relayed"):format(joined, relayed))
end)
