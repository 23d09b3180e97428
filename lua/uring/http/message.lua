--- uring.http.message: what the HTTP server and client share: status
-- texts, header tables, MIME types, %-escapes, and reading lines and
-- chunked bodies from a uring socket's buffer.
local check = require "uring.check"
local core = require "uring.core"

local byte, format, gsub, lower, match = string.byte, string.format,
  string.gsub, string.lower, string.match
local concat, tonumber, type, rawget = table.concat, tonumber, type, rawget
local methods = core.socket_methods
local take_line, buffered, fill = methods._take_line, methods._buffered, methods._fill

local M = {}

M.REASONS = {
  [100] = "Continue", [101] = "Switching Protocols",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout",
  [409] = "Conflict", [411] = "Length Required", [413] = "Content Too Large",
  [414] = "URI Too Long", [415] = "Unsupported Media Type",
  [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
}
local REASONS = M.REASONS

-- "HTTP/1.1 200 OK\r\n", built once per status code
M.STATUS_LINE = setmetatable({}, { __index = function(t, code)
  local s = format("HTTP/1.1 %d %s\r\n", code, REASONS[code] or "Status")
  t[code] = s
  return s
end })

-- headers tables: keys are lower case; any case finds them
M.HEADERS_MT = { __index = function(t, k)
  if type(t) ~= "table" then check.typeerror(1, "__index", "table", t) end
  if type(k) == "string" then return rawget(t, lower(k)) end
end }

M.MIME = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  txt = "text/plain; charset=utf-8", css = "text/css; charset=utf-8",
  js = "text/javascript; charset=utf-8", mjs = "text/javascript; charset=utf-8",
  json = "application/json", xml = "application/xml", csv = "text/csv",
  md = "text/markdown; charset=utf-8", lua = "text/plain; charset=utf-8",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  svg = "image/svg+xml", ico = "image/x-icon", webp = "image/webp",
  wasm = "application/wasm", pdf = "application/pdf", zip = "application/zip",
  gz = "application/gzip", tar = "application/x-tar", mp4 = "video/mp4",
  mp3 = "audio/mpeg", woff = "font/woff", woff2 = "font/woff2",
}

local function hexchar(h) return string.char(tonumber(h, 16)) end
local function hexcode(c) return format("%%%02X", byte(c)) end

--- uring.http.unescape(s) -> s with %XX decoded (and "+" kept)
function M.unescape(s)
  s = check.string(1, "unescape", s)
  return (gsub(s, "%%(%x%x)", hexchar))
end

--- uring.http.escape(s) -> s with every byte but unreserved ones %XX-encoded
function M.escape(s)
  s = check.string(1, "escape", s)
  return (gsub(s, "[^%w%-%._~/]", hexcode))
end

-- Reading from a uring socket: sentinels for a line past its limit and
-- for a malformed chunked body
local TOO_BIG, BAD = {}, {}
M.TOO_BIG, M.BAD = TOO_BIG, BAD

-- a line of at most `max` bytes; nil at EOF/close; TOO_BIG
local function readline(sock, max)
  while true do
    local line = take_line(sock, false, true)
    if line then return line end
    if buffered(sock) > max then return TOO_BIG end
    local ok = fill(sock)
    if not ok then return nil end
  end
end
M.readline = readline

-- the body of a chunked message, decoded (trailers are read and dropped)
function M.read_chunked(sock, max, maxline)
  local parts, total = {}, 0
  while true do
    local line = readline(sock, maxline)
    if line == nil then return nil end
    if line == TOO_BIG then return BAD end
    -- (16 or more hex digits wrap around to a negative integer)
    local size = tonumber(match(line, "^%s*(%x+)"), 16)
    if not size or size < 0 then return BAD end
    if size == 0 then break end
    total = total + size
    if total > max then return TOO_BIG end
    local data = sock:receive(size)
    if not data then return nil end
    parts[#parts + 1] = data
    local crlf = readline(sock, maxline)
    if crlf ~= "" then return crlf == nil and nil or BAD end
  end
  while true do                 -- trailer section, up to the blank line
    local line = readline(sock, maxline)
    if line == nil then return nil end
    if line == TOO_BIG then return BAD end
    if line == "" then break end
  end
  return concat(parts)
end

return M
