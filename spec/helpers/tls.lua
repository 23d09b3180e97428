-- spec/helpers/tls: certificates for the TLS specs, made with `openssl`
-- into a temp dir once per process (EC P-256 keys: fast to make).
--
--   certs() -> dir, with (each NAME.pem and NAME.key):
--     ca       the test CA                 ca2    another CA (wrong CA)
--     srv      localhost, 127.0.0.1, by ca other  other.test, by ca (SNI)
--     exp      localhost, by ca, expired   self   localhost, self-signed
--     cli      a client certificate "client", by ca
--   cleanup()  removes the dir (the specs' teardown)
--   peer(argv) argv for uring.exec: no sanitizer preload, a time bound
local helpers = require "helpers"
local M = {}

local dir

local function run(cmd)
  local out, code, ok = helpers.sh("cd " .. helpers.shq(dir) .. " && " .. cmd)
  assert(ok, "openssl failed (" .. tostring(code) .. "): " .. cmd .. "\n" .. out)
end

local KEY = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

-- a CSR for name with these subjectAltNames, signed by ca; or, with
-- dates, through `openssl ca` (the only way 3.0 sets both dates)
local function issue(name, cn, san, ca, dates)
  run(("openssl req %s -keyout %s.key -out %s.csr -subj /CN=%s -addext %s 2>/dev/null")
    :format(KEY, name, name, cn, helpers.shq("subjectAltName=" .. san)))
  if dates then
    run(("openssl ca -batch -config ca.cnf -notext -startdate %s -enddate %s "
      .. "-in %s.csr -out %s.pem 2>/dev/null"):format(dates[1], dates[2], name, name))
  else
    run(("openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial "
      .. "-days 2 -copy_extensions copy -out %s.pem 2>/dev/null"):format(name, ca, ca, name))
  end
end

function M.certs()
  if dir then return dir end
  dir = helpers.tmpdir()
  for _, ca in ipairs { "ca", "ca2" } do
    run(("openssl req -x509 %s -keyout %s.key -out %s.pem -days 2 -subj /CN=test-%s "
      .. "2>/dev/null"):format(KEY, ca, ca, ca))
  end
  issue("srv", "localhost", "DNS:localhost,IP:127.0.0.1", "ca")
  issue("other", "other.test", "DNS:other.test", "ca")
  issue("cli", "client", "DNS:client", "ca")
  helpers.writeall(dir .. "/ca.cnf", table.concat({
    "[ca]", "default_ca = d", "[d]", "database = index.txt", "serial = serial",
    "new_certs_dir = .", "default_md = sha256", "policy = p", "copy_extensions = copy",
    "certificate = ca.pem", "private_key = ca.key", "[p]", "commonName = supplied", "" }, "\n"))
  helpers.writeall(dir .. "/index.txt", "")
  helpers.writeall(dir .. "/serial", "1000\n")
  issue("exp", "localhost", "DNS:localhost,IP:127.0.0.1", "ca",
    { "20200101000000Z", "20200201000000Z" })
  run(("openssl req -x509 %s -keyout self.key -out self.pem -days 2 -subj /CN=localhost "
    .. "-addext subjectAltName=DNS:localhost 2>/dev/null"):format(KEY))
  return dir
end

--- argv for uring.exec, run as a peer: without the sanitizers' preload
-- (make asan sets it for lua5.4, not for curl or python) and bounded by
-- timeout(1), so a stuck peer cannot outlive its test
function M.peer(argv)
  local out = { "env", "-u", "LD_PRELOAD", "timeout", "20" }
  for i, v in ipairs(argv) do out[5 + i] = v end
  for k, v in pairs(argv) do
    if type(k) == "string" then out[k] = v end
  end
  return out
end

function M.cleanup()
  if dir then helpers.rmrf(dir) end
  dir = nil
end

return M
