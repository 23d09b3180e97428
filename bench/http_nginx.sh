#!/bin/sh
# bench/http_nginx.sh: nginx as an anchor for bench/http.sh, answering
# "Hello, world!\n" with a Content-Length like the other contenders.
#
#   sh bench/http_nginx.sh return|lua [--seconds N]
#
#   return  nginx's own `return 200` (no scripting at all)
#   lua     lua-nginx-module (OpenResty's engine, Debian's
#           libnginx-mod-http-lua): content_by_lua_block
#
# One process (master_process off, one worker) so its CPU time is one
# pid's; a fresh prefix under build/bench; a free port picked first (nginx
# cannot listen on port 0).  Prints "listening on 127.0.0.1:PORT" once the
# port answers, like the Lua servers, and stops after N seconds (600) or
# on SIGTERM.  nginx is this shell's child, so bench/http.sh counts its CPU.
set -e
cd "$(dirname "$0")/.."
mode=$1 secs=600
[ "$2" = --seconds ] && secs=$3
command -v nginx >/dev/null 2>&1 || {
  echo "bench: nginx not found (apt-get install nginx-light libnginx-mod-http-lua)" >&2; exit 1; }
# "http_" in its path: spec/bench_spec.lua looks for leftover servers by it
dir=$(pwd)/build/bench/http_nginx-$mode-$$
mkdir -p "$dir"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
case $mode in
  return)
    modules=
    handler='return 200 "Hello, world!\n";' ;;
  lua)
    modules="load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"
    handler='content_by_lua_block {
      ngx.header["Content-Length"] = 14
      ngx.print("Hello, world!\n")
    }' ;;
  *) echo "usage: sh bench/http_nginx.sh return|lua [--seconds N]" >&2; exit 2 ;;
esac
cat > "$dir/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log error;
$modules
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; default_type text/plain;
  server { listen 127.0.0.1:$port; location / { $handler } }
}
EOF
nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
ngx=$!
slp=
trap 'kill $ngx $slp 2>/dev/null; wait $ngx 2>/dev/null; rm -rf "$dir"; exit 0' TERM INT EXIT
i=0
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 100 ] || { echo "bench: nginx did not start:" >&2; cat "$dir/error.log" >&2; exit 1; }
  kill -0 $ngx 2>/dev/null || { cat "$dir/error.log" >&2; exit 1; }
  sleep 0.05
done
echo "listening on 127.0.0.1:$port"
sleep "$secs" &
slp=$!
wait $slp
