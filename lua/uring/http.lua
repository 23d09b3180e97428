--- uring.http: a small HTTP/1.1 server and client over uring sockets, for
-- prototyping servers from a script or the REPL.  This file is the public
-- table; each concern has a file of its own in lua/uring/http/:
--   message.lua  status texts, header tables, MIME types, escapes, and
--                reading lines and chunked bodies (server and client)
--   router.lua   routes by method and Lua pattern
--   server.lua   the server: requests, responses, a task per connection
--   static.lua   a handler serving files
--   client.lua   requests, and clients that keep connections
--   websocket.lua  RFC 6455: req:upgrade() and uring.http.websocket(url)
require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local message = require "uring.http.message"
local router = require "uring.http.router"
local server = require "uring.http.server"
local static = require "uring.http.static"
local client = require "uring.http.client"
local websocket = require "uring.http.websocket"

local M = {}

M.REASONS = message.REASONS
M.HEADERS_MT = message.HEADERS_MT
M.MIME = message.MIME
M.escape = message.escape
M.unescape = message.unescape

M.router = router.router

M.server = server.server
M.Server = server.Server
M.Request = server.Request
M.Response = server.Response
M.static = static.static

M.request = client.request
M.client = client.client
M.Client = client.Client
M.parse_url = client.parse_url

M.websocket = websocket.websocket
M.WebSocket = websocket.WebSocket

return M
