--- uring.tls: TLS contexts.  The TLS itself is C (csrc/tls.c): a TLS
-- socket is a uring.socket whose bytes OpenSSL encrypts in memory while
-- the ring moves them; sock:starttls, connect{tls =} and listen{tls =}
-- make one.  This file only gives the context constructor its place.
local uring = require "uring"
-- required before uring: init.lua has loaded this file meanwhile
if package.loaded[...] then return package.loaded[...] end
local core = require "uring.core"

local M = {}

--- uring.tls.context{mode = "server" | "client", cert =, key =, ca =,
--   verify =, alpn =, sni =, min_version =, max_version =, ciphers =,
--   ciphersuites =, tickets =} -> context | nil, msg, errno
M.context = core._tls_context

return M
