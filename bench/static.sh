#!/bin/sh
# bench/static.sh: static file serving, uring.http.static (sock:sendfile:
# a READ linked to a SEND up to 64 KiB, sendfile(2) beyond) against
# nginx-light with `sendfile on`, both serving the same directory, driven
# by wrk with keep-alive.
#
#   sh bench/static.sh          3 alternating rounds, wrk -d3s (about 1 min)
#   sh bench/static.sh quick    one round, -d1s: checks that it runs
#                               (results in build/bench/results)
#   ROUNDS=5 DURATION=5s CONNS=50 sh bench/static.sh
#
# Files: 4 KiB and 1 MiB of random bytes in a temp dir.  Servers:
#   uring  examples/serve_dir.lua --dir DIR (uring.http.static)
#   nginx  /usr/sbin/nginx, one process (master_process off), its own
#          temp prefix and config (access_log off, sendfile on), on a free
#          port found first
# Each run starts a fresh server pinned to CPU $SRV_CPU (1), wrk -t1 on
# CPU $WRK_CPU (0); contenders alternate within each round and size.  The
# measure is requests per second of SERVER CPU: wrk's request count over
# the server's utime + stime across the run (/proc/PID/stat: every thread,
# io-wq workers included), as bench/http.sh does.  Every response is
# checked first: the same bytes from both servers, whole and a range.
# The ratios go to $BENCH_RESULTS/static.tsv (bench/README.md).
set -e
cd "$(dirname "$0")/.."
# a sanitizer preload (make asan) is for our Lua server alone: curl, dd,
# cmp, wrk and nginx are not built for it
SRV_PRELOAD=${LD_PRELOAD:-}
unset LD_PRELOAD
LUA=${LUA:-lua5.4}
WRK=${WRK:-wrk}
NGINX=${NGINX:-/usr/sbin/nginx}
OUT=build/bench
mkdir -p "$OUT"
if [ "$1" = quick ] || { [ -n "$BENCH_QUICK" ] && [ "$BENCH_QUICK" != 0 ]; }; then
  ROUNDS=1 DURATION=1s
  BENCH_RESULTS=${BENCH_RESULTS:-build/bench/results}
else
  ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-3s}
  BENCH_RESULTS=${BENCH_RESULTS:-bench/results}
fi
mkdir -p "$BENCH_RESULTS"
CONNS=${CONNS:-50}
SRV_CPU=${SRV_CPU:-1}
WRK_CPU=${WRK_CPU:-0}
[ "$(nproc)" -ge 2 ] || SRV_CPU=0 WRK_CPU=0
for tool in "$WRK" "$NGINX" taskset curl; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "bench: $tool not found (apt-get install wrk nginx-light util-linux curl)" >&2; exit 1; }
done
make -s all

T=$(mktemp -d /tmp/uring-static-bench.XXXXXX)
DIR=$T/www
mkdir -p "$DIR" "$T/nginx"
head -c 4096 /dev/urandom > "$DIR/f4k"
head -c 1048576 /dev/urandom > "$DIR/f1m"

. bench/lib.sh               # SRV_PID, cleanup; the traps also remove $T:
trap 'cleanup; rm -rf "$T"' EXIT
trap 'cleanup; rm -rf "$T"; exit 130' INT TERM

free_port () {
  LD_PRELOAD=$SRV_PRELOAD "$LUA" -e 'package.cpath = (os.getenv("URING_CPATH") or "./build/?.so") .. ";" .. package.cpath
    package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
    local uring = require "uring"
    uring.run(function()
      local s = assert(uring.listen("127.0.0.1", 0))
      local _, p = s:getsockname(); s:close(); print(p)
    end)'
}

# start NAME: a fresh server; sets SRV_PID and PORT
start () {
  log=$T/$1.log
  : > "$log"
  if [ "$1" = nginx ]; then
    PORT=$(free_port)
    cat > "$T/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000000;
  default_type application/octet-stream;
  client_body_temp_path $T/nginx/body;
  proxy_temp_path $T/nginx/proxy;
  fastcgi_temp_path $T/nginx/fastcgi;
  uwsgi_temp_path $T/nginx/uwsgi;
  scgi_temp_path $T/nginx/scgi;
  server { listen 127.0.0.1:$PORT; root $DIR; }
}
CONF
    taskset -c "$SRV_CPU" "$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" > "$log" 2>&1 &
    SRV_PID=$!
    i=0
    until curl -s -o /dev/null "http://127.0.0.1:$PORT/f4k"; do
      i=$((i + 1)); [ $i -lt 100 ] || { echo "bench: nginx did not start" >&2; cat "$log" "$T/nginx/error.log" >&2; exit 1; }
      sleep 0.05
    done
  else
    LD_PRELOAD=$SRV_PRELOAD taskset -c "$SRV_CPU" $LUA examples/serve_dir.lua 0 --dir "$DIR" --seconds 600 > "$log" 2>&1 &
    SRV_PID=$!
    PORT=
    i=0
    while [ -z "$PORT" ]; do
      PORT=$(sed -n '1s/^listening on 127\.0\.0\.1:\([0-9][0-9]*\).*$/\1/p' "$log")
      i=$((i + 1)); [ $i -lt 100 ] || { echo "bench: uring did not start" >&2; cat "$log" >&2; exit 1; }
      [ -n "$PORT" ] || sleep 0.05
    done
  fi
}

cpu_ticks () {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
HZ=$(getconf CLK_TCK)

# the same bytes from both, whole and in a range
for n in uring nginx; do
  start $n
  for f in f4k f1m; do
    curl -s "http://127.0.0.1:$PORT/$f" | cmp -s - "$DIR/$f" || { echo "bench: $n serves $f wrong" >&2; exit 1; }
    curl -s -r 100-4000 "http://127.0.0.1:$PORT/$f" > "$T/range.$n"
    dd if="$DIR/$f" bs=1 skip=100 count=3901 2>/dev/null | cmp -s - "$T/range.$n" || {
      echo "bench: $n serves a range of $f wrong" >&2; exit 1; }
  done
  cleanup
done
echo "nproc $(nproc), kernel $(uname -r); $(nginx -v 2>&1)"
echo "check: both serve f4k and f1m byte for byte, and bytes 100-4000 of each"
echo "wrk -t1 -c$CONNS -d$DURATION keep-alive; server on CPU $SRV_CPU, wrk on CPU $WRK_CPU; $ROUNDS round(s)"

RES=$T/results
: > "$RES"
r=1
while [ $r -le "$ROUNDS" ]; do
  for f in f4k f1m; do
    line="round $r $f:"
    for n in uring nginx; do
      start $n
      t0=$(cpu_ticks "$SRV_PID")
      taskset -c "$WRK_CPU" "$WRK" -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$PORT/$f" > "$T/wrk.txt" 2>&1 < /dev/null || true
      t1=$(cpu_ticks "$SRV_PID")
      cleanup
      rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$T/wrk.txt")
      reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$T/wrk.txt")
      errs=$(sed -n 's/^ *Socket errors: *//p; s/^ *Non-2xx or 3xx responses: *\([0-9]*\)/non2xx \1/p' "$T/wrk.txt" | tr '\n' ' ')
      [ -n "$rps" ] && [ -n "$reqs" ] || { echo "bench: wrk failed against $n" >&2; cat "$T/wrk.txt" >&2; exit 1; }
      [ -z "$errs" ] || echo "  ($n $f: wrk reported $errs)"
      cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
      per=$(awk -v q="$reqs" -v s="$cpu" 'BEGIN { printf "%.0f", (s > 0 ? q / s : 0) }')
      echo "$f $n $rps $per $r" >> "$RES"
      line="$line  $n $(printf '%.0f' "$rps") req/s ${cpu}s cpu $per/cpu-s"
    done
    echo "$line"
  done
  r=$((r + 1))
done

awk -v rounds="$ROUNDS" -v tsv="$BENCH_RESULTS/static.tsv" -v conns="$CONNS" '
  function median(n, a,   i, j, t) {
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function med(f, n, m,   k, a, i) { k = 0; for (i = 1; i <= rounds; i++) if ((f, n, m, i) in v) a[++k] = v[f, n, m, i]; return median(k, a) }
  { v[$1, $2, "rps", $5] = $3; v[$1, $2, "per", $5] = $4 }
  END {
    split("f4k f1m", F, " "); split("0.9 0.8", G, " "); split("4 KiB,1 MiB", S, ",")
    printf "" > tsv
    for (i = 1; i <= 2; i++) {
      f = F[i]
      u = med(f, "uring", "per"); g = med(f, "nginx", "per")
      printf "median %s: uring %.0f req/s %.0f req/cpu-s, nginx %.0f req/s %.0f req/cpu-s; ratio uring/nginx per server-cpu-s %.2f (target >= %s)\n",
        f, med(f, "uring", "rps"), u, med(f, "nginx", "rps"), g, (g > 0 ? u / g : 0), G[i]
      printf "static %s: uring.http.static/nginx\t%.3f\t%s\tkeep-alive, %d conns, requests per server-CPU-second against nginx-light sendfile on; medians %.0f vs %.0f; %d round(s)\n",
        S[i], (g > 0 ? u / g : 0), G[i], conns, u, g, rounds > tsv
    }
  }' "$RES"
