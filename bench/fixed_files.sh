#!/bin/sh
# bench/fixed_files.sh: what configure{fixed_files} costs per request in
# system calls, counted by perf's syscall tracepoints (exact, unlike this
# VM's timings).  The hand-written server (bench/http_uring.lua) on CPU
# $SRV_CPU, wrk -t1 -c50 on CPU $WRK_CPU, keep-alive and "Connection:
# close" (one connection per request), three ways, alternating:
#   off    no registered files
#   sqe    fixed_files = 1024, slots installed and emptied by
#          IORING_OP_FILES_UPDATE SQEs (the default way)
#   reg    the same with io_uring_register system calls
#          (URING_TEST_FFILES_REGISTER=1)
# Prints io_uring_enter and io_uring_register calls per request and
# requests per server-CPU-second, per round and as medians.
#
#   sh bench/fixed_files.sh            3 rounds, wrk -d3s
#   ROUNDS=5 DURATION=5s sh bench/fixed_files.sh
#   sh bench/fixed_files.sh quick      1 round, -d1s (does it run?)
# Needs perf (linux-perf) and the right to trace (root, or
# kernel.perf_event_paranoid <= 1 and tracefs readable).
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
WRK=${WRK:-wrk}
OUT=build/bench
mkdir -p "$OUT"
if [ "$1" = quick ]; then ROUNDS=1 DURATION=1s
else ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-3s}; fi
SRV_CPU=${SRV_CPU:-1}
WRK_CPU=${WRK_CPU:-0}
[ "$(nproc)" -lt 2 ] && SRV_CPU=0 WRK_CPU=0
EVENTS=syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_io_uring_register
for tool in "$WRK" perf taskset; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found" >&2; exit 1; }
done
perf stat -e "$EVENTS" -x, -o /dev/null true 2>/dev/null || {
  echo "bench: perf cannot count syscall tracepoints here (root or perf_event_paranoid)" >&2; exit 1; }

. bench/lib.sh

start_server () {
  log="$OUT/ff_$1.log"
  : > "$log"
  ffiles= ffreg=
  case $1 in sqe) ffiles=1024 ;; reg) ffiles=1024 ffreg=1 ;; esac
  URING_TEST_FIXED_FILES=$ffiles URING_TEST_FFILES_REGISTER=$ffreg \
    taskset -c "$SRV_CPU" "$LUA" bench/http_uring.lua 0 --seconds 600 > "$log" 2>&1 &
  SRV_PID=$!
  PORT= i=0
  while [ $i -lt 200 ] && [ -z "$PORT" ]; do
    PORT=$(sed -n '1s/^listening on 127\.0\.0\.1:\([0-9][0-9]*\).*$/\1/p' "$log")
    [ -z "$PORT" ] && sleep 0.05
    i=$((i + 1))
  done
  [ -n "$PORT" ] || { echo "bench: the $1 server did not start" >&2; cat "$log" >&2; exit 1; }
}

cpu_ticks () { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
HZ=$(getconf CLK_TCK)

# one NAME WORKLOAD ROUND: a fresh server, perf attached across the wrk run
one () {
  start_server "$1"
  hdr=
  [ "$2" = close ] && hdr='Connection: close'
  perf stat -e "$EVENTS" -x, -o "$OUT/ff_perf.txt" -p "$SRV_PID" &
  perf_pid=$!
  sleep 0.2                  # perf attached before the first request
  t0=$(cpu_ticks "$SRV_PID")
  if [ -n "$hdr" ]; then
    taskset -c "$WRK_CPU" "$WRK" -t1 -c50 -d"$DURATION" -H "$hdr" "http://127.0.0.1:$PORT/" > "$OUT/ff_wrk.txt"
  else
    taskset -c "$WRK_CPU" "$WRK" -t1 -c50 -d"$DURATION" "http://127.0.0.1:$PORT/" > "$OUT/ff_wrk.txt"
  fi
  t1=$(cpu_ticks "$SRV_PID")
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  cleanup
  reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in.*/\1/p' "$OUT/ff_wrk.txt")
  enter=$(awk -F, '/io_uring_enter/ { print $1 }' "$OUT/ff_perf.txt")
  reg=$(awk -F, '/io_uring_register/ { print $1 }' "$OUT/ff_perf.txt")
  awk -v n="$1" -v w="$2" -v r="$3" -v q="$reqs" -v e="$enter" -v g="$reg" \
      -v t=$((t1 - t0)) -v hz="$HZ" 'BEGIN {
    printf "round %d %s %s: %d requests, enter/req %.3f, register/req %.3f, %d req/server-cpu-s\n",
      r, w, n, q, e / q, g / q, (t > 0 ? q * hz / t : 0) }' | tee -a "$OUT/ff_rows.txt"
}

echo "nproc $(nproc), kernel $(uname -r); server bench/http_uring.lua on CPU $SRV_CPU, wrk -t1 -c50 -d$DURATION on CPU $WRK_CPU"
: > "$OUT/ff_rows.txt"
r=1
while [ $r -le "$ROUNDS" ]; do
  for w in keepalive close; do
    for n in off sqe reg; do one "$n" "$w" "$r"; done
  done
  r=$((r + 1))
done
# medians per case (and the per-round range of req/server-cpu-s)
awk '{ k = $3 " " $4; sub(":", "", k); c[k]++
       E[k, c[k]] = $8 + 0; G[k, c[k]] = $10 + 0; P[k, c[k]] = $11 + 0 }
  function med(A, k, n,   i, j, t, a) {
    for (i = 1; i <= n; i++) a[i] = A[k, i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  function lo(A, k, n,   i, m) { m = A[k, 1]; for (i = 2; i <= n; i++) if (A[k, i] < m) m = A[k, i]; return m }
  function hi(A, k, n,   i, m) { m = A[k, 1]; for (i = 2; i <= n; i++) if (A[k, i] > m) m = A[k, i]; return m }
  END {
    split("keepalive close", W, " "); split("off sqe reg", N, " ")
    for (i = 1; i <= 2; i++) for (j = 1; j <= 3; j++) {
      k = W[i] " " N[j]; if (!(k in c)) continue
      printf "median %s: enter/req %.3f, register/req %.3f, %d req/server-cpu-s (rounds %d-%d)\n",
        k, med(E, k, c[k]), med(G, k, c[k]), med(P, k, c[k]), lo(P, k, c[k]), hi(P, k, c[k])
    }
  }' "$OUT/ff_rows.txt"
