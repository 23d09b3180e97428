#!/bin/sh
# bench/tls.sh: HTTPS, lua-uring (uring.http over uring.tls) against nginx
# with the same certificate, protocol and cipher, driven by wrk.
#
#   sh bench/tls.sh          3 alternating rounds, wrk -d3s (about 1 min)
#   sh bench/tls.sh quick    one round, -d1s (checks it runs; numbers mean little)
#   ROUNDS=5 DURATION=5s sh bench/tls.sh
#   sh bench/tls.sh bulk     also 256 MiB through a TLS echo, hashed on both
#                            ends (spec/tls_interop_spec.lua with
#                            URING_TLS_BULK_MIB=256)
#
# Workloads (wrk -t1 -c50 https://127.0.0.1:PORT/):
#   keepalive   requests on kept-alive TLS connections: record encryption
#               and the HTTP server
#   handshakes  "Connection: close" on every request: one full TLS 1.3
#               handshake per request (no session tickets on either side)
#
# Both servers: one process pinned to CPU $SRV_CPU (1), wrk on CPU
# $WRK_CPU (0); an EC P-256 certificate made here with openssl; TLS 1.3
# only, TLS_AES_128_GCM_SHA256, no tickets.  nginx (nginx-light) runs with
# master_process off, one worker, access_log off.  The metric is requests
# per second of SERVER CPU (utime + stime from /proc/PID/stat across the
# wrk run), since wrk and the server share the machine; contenders
# alternate within each round.  Writes the ratios of the medians to
# $BENCH_RESULTS/tls.tsv (label, ratio, target, note), as bench/http.sh.
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
WRK=${WRK:-wrk}
OUT=build/bench/tls
mkdir -p "$OUT"
BULK=
if [ "$1" = quick ] || { [ -n "$BENCH_QUICK" ] && [ "$BENCH_QUICK" != 0 ]; }; then
  ROUNDS=1 DURATION=1s
  BENCH_RESULTS=${BENCH_RESULTS:-build/bench/results}
else
  ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-3s}
  BENCH_RESULTS=${BENCH_RESULTS:-bench/results}
  [ "$1" = bulk ] && BULK=1
fi
SRV_CPU=${SRV_CPU:-1}
WRK_CPU=${WRK_CPU:-0}
[ "$(nproc)" -lt 2 ] && SRV_CPU=0 WRK_CPU=0
mkdir -p "$BENCH_RESULTS"
for tool in "$WRK" taskset nginx openssl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found" >&2; exit 1; }
done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null

free_port () {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

nginx_conf () {
  P=$(cd "$OUT" && pwd)
  mkdir -p "$P/nginx/logs"
  cat > "$P/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
error_log $P/nginx/logs/error.log; pid $P/nginx/logs/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $P/nginx; proxy_temp_path $P/nginx; fastcgi_temp_path $P/nginx;
  uwsgi_temp_path $P/nginx; scgi_temp_path $P/nginx;
  server {
    listen 127.0.0.1:$1 ssl backlog=4096;
    ssl_certificate $P/cert.pem; ssl_certificate_key $P/key.pem;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    ssl_session_tickets off; ssl_session_cache off;
    keepalive_requests 1000000;
    location / { default_type text/plain; return 200 "Hello, world!\n"; }
  }
}
CONF
}

. bench/lib.sh               # SRV_PID, cleanup, the traps

# start NAME: a fresh server on a free port; sets SRV_PID, PORT
start () {
  PORT=$(free_port)
  case $1 in
    uring) taskset -c "$SRV_CPU" $LUA bench/https_uring.lua "$PORT" "$OUT/cert.pem" "$OUT/key.pem" \
             > "$OUT/$1.log" 2>&1 & ;;
    nginx) nginx_conf "$PORT"
           taskset -c "$SRV_CPU" nginx -p "$OUT/nginx" -c "$(cd "$OUT" && pwd)/nginx/nginx.conf" \
             > "$OUT/$1.log" 2>&1 & ;;
  esac
  SRV_PID=$!
  i=0
  until curl -s -o /dev/null --cacert "$OUT/cert.pem" "https://127.0.0.1:$PORT/"; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$SRV_PID" 2>/dev/null; then
      echo "bench: $1 did not start:" >&2; cat "$OUT/$1.log" >&2; exit 1
    fi
    sleep 0.05
  done
}

cpu_ticks () { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
HZ=$(getconf CLK_TCK)

echo "nproc $(nproc), kernel $(uname -r); servers on CPU $SRV_CPU, wrk -t1 -c50 -d$DURATION on CPU $WRK_CPU; $ROUNDS round(s)"
: > "$OUT/results.txt"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for w in keepalive handshakes; do
    line="round $r $w:"
    for n in uring nginx; do
      start "$n"
      t0=$(cpu_ticks "$SRV_PID")
      if [ "$w" = handshakes ]; then
        taskset -c "$WRK_CPU" "$WRK" -t1 -c50 -d"$DURATION" -H "Connection: close" \
          "https://127.0.0.1:$PORT/" > "$OUT/wrk.txt" 2>&1 < /dev/null || true
      else
        taskset -c "$WRK_CPU" "$WRK" -t1 -c50 -d"$DURATION" \
          "https://127.0.0.1:$PORT/" > "$OUT/wrk.txt" 2>&1 < /dev/null || true
      fi
      t1=$(cpu_ticks "$SRV_PID")
      cleanup
      reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$OUT/wrk.txt")
      rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$OUT/wrk.txt")
      if [ -z "$reqs" ]; then echo "bench: wrk failed against $n:" >&2; cat "$OUT/wrk.txt" >&2; exit 1; fi
      errs=$(sed -n 's/^ *Socket errors: *//p; s/^ *Non-2xx or 3xx responses: *\([0-9]*\)/non2xx \1/p' "$OUT/wrk.txt" | tr '\n' ' ')
      [ -z "$errs" ] || echo "  ($n $w: wrk reported $errs)"
      per=$(awk -v q="$reqs" -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { s = (b - a) / hz; printf "%.0f", (s > 0 ? q / s : 0) }')
      echo "$w $n $per $r" >> "$OUT/results.txt"
      line="$line  $n $(printf '%.0f' "$rps") req/s $per/server-cpu-s"
    done
    echo "$line"
  done
  r=$((r + 1))
done

awk -v tsv="$BENCH_RESULTS/tls.tsv" -v rounds="$ROUNDS" '
  function median(n, a,   i, j, t) {
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { v[$1, $2, ++k[$1, $2]] = $3 }
  END {
    printf "" > tsv
    split("keepalive handshakes", ws, " ")
    for (i = 1; i <= 2; i++) {
      w = ws[i]; nu = k[w, "uring"]; nn = k[w, "nginx"]
      for (j = 1; j <= nu; j++) u[j] = v[w, "uring", j]
      for (j = 1; j <= nn; j++) g[j] = v[w, "nginx", j]
      mu = median(nu, u); mn = median(nn, g)
      what = (w == "keepalive") ? "HTTPS keep-alive requests" : "TLS 1.3 handshakes (Connection: close)"
      printf "%s per server-CPU-second: uring.http/nginx %.2f (medians %d vs %d, %d round(s))\n", what, mu / mn, mu, mn, rounds
      printf "tls %s: uring.http/nginx\t%.3f\t0.8\t%s per server-CPU-s; medians %d vs %d; %d round(s), wrk -t1 -c50\n", w, mu / mn, what, mu, mn, rounds >> tsv
    }
  }' "$OUT/results.txt"

if [ -n "$BULK" ]; then
  echo "bulk: 256 MiB through a lua-uring TLS echo, hashed by the python3 ssl client on both ends"
  URING_TLS_BULK_MIB=256 $LUA /usr/bin/busted --filter "MiB through" spec/tls_interop_spec.lua
fi
