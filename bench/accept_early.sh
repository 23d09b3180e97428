#!/bin/sh
# bench/accept_early.sh: the RECV queued at accept (issue 17, csrc/net.c
# early_recv) against a checkout without it, on connection churn (wrk -H
# "Connection: close": every request is a new connection) and keep-alive.
# It is opt-in per listener (uring.listen's opts.first_recv): uring.http
# turns it on, the hand-written server's plain listener does not, so its
# rows are a control (the noise between two builds doing the same work).
#
#   BASE=/path/to/older/checkout sh bench/accept_early.sh [quick]
#
# BASE is a built checkout (make all) of the commit before the change,
# e.g.  git archive 14f181e | tar -x -C /tmp/base && make -C /tmp/base all
# Each round runs both trees' servers (uring-http: examples/http_hello.lua,
# lua-uring: bench/http_uring.lua) in alternation, one at a time, on CPU
# $SRV_CPU with wrk -t1 -c50 on CPU $WRK_CPU, perf counting the server's
# io_uring_enter calls (exact) and /proc its CPU time; prints each row and
# then medians with the per-round range of requests per second.  Timings
# on a shared VM are noisy: read the enter counts first, the rates as
# ratios of medians.  Needs perf with the right to trace syscalls.
set -e
cd "$(dirname "$0")/.."
NEW=$(pwd)
[ -n "$BASE" ] && [ -d "$BASE/build" ] || {
  echo "bench: BASE must name a built checkout without the change" >&2; exit 1; }
LUA=${LUA:-lua5.4}
WRK=${WRK:-wrk}
OUT=$NEW/build/bench
mkdir -p "$OUT"
if [ "$1" = quick ]; then ROUNDS=1 DURATION=1s
else ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-3s}; fi
SRV_CPU=${SRV_CPU:-1}
WRK_CPU=${WRK_CPU:-0}
[ "$(nproc)" -lt 2 ] && SRV_CPU=0 WRK_CPU=0
EVENTS=syscalls:sys_enter_io_uring_enter
for tool in "$WRK" perf taskset; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found" >&2; exit 1; }
done
perf stat -e "$EVENTS" -x, -o /dev/null true 2>/dev/null || {
  echo "bench: perf cannot count syscall tracepoints here (root or perf_event_paranoid)" >&2; exit 1; }

. bench/lib.sh

# start_server TREE SERVER
start_server () {
  log="$OUT/ae_$2.log"
  : > "$log"
  case $2 in
    uring-http) script=examples/http_hello.lua ;;
    lua-uring) script=bench/http_uring.lua ;;
  esac
  (cd "$1" && exec taskset -c "$SRV_CPU" "$LUA" "$script" 0 --seconds 600) > "$log" 2>&1 &
  SRV_PID=$!
  PORT= i=0
  while [ $i -lt 200 ] && [ -z "$PORT" ]; do
    PORT=$(sed -n 's/^.*127\.0\.0\.1:\([0-9][0-9]*\).*$/\1/p' "$log" | head -1)
    [ -z "$PORT" ] && sleep 0.05
    i=$((i + 1))
  done
  [ -n "$PORT" ] || { echo "bench: $2 in $1 did not start" >&2; cat "$log" >&2; exit 1; }
}

cpu_ticks () { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
HZ=$(getconf CLK_TCK)

# one TREE-NAME TREE SERVER WORKLOAD ROUND
one () {
  start_server "$2" "$3"
  perf stat -e "$EVENTS" -x, -o "$OUT/ae_perf.txt" -p "$SRV_PID" &
  perf_pid=$!
  sleep 0.2                  # perf attached before the first request
  t0=$(cpu_ticks "$SRV_PID")
  if [ "$4" = close ]; then
    taskset -c "$WRK_CPU" "$WRK" -t1 -c50 -d"$DURATION" -H "Connection: close" "http://127.0.0.1:$PORT/" > "$OUT/ae_wrk.txt"
  else
    taskset -c "$WRK_CPU" "$WRK" -t1 -c50 -d"$DURATION" "http://127.0.0.1:$PORT/" > "$OUT/ae_wrk.txt"
  fi
  t1=$(cpu_ticks "$SRV_PID")
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  cleanup
  reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in.*/\1/p' "$OUT/ae_wrk.txt")
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$OUT/ae_wrk.txt")
  enter=$(awk -F, '/io_uring_enter/ { print $1 }' "$OUT/ae_perf.txt")
  awk -v n="$1" -v s="$3" -v w="$4" -v r="$5" -v q="$reqs" -v e="$enter" -v p="$rps" \
      -v t=$((t1 - t0)) -v hz="$HZ" 'BEGIN {
    printf "round %d %s %s %s: %d requests, enter/req %.3f, %d req/s, %d req/server-cpu-s\n",
      r, w, s, n, q, e / q, p, (t > 0 ? q * hz / t : 0) }' | tee -a "$OUT/ae_rows.txt"
}

echo "nproc $(nproc), kernel $(uname -r); new $NEW, base $BASE; wrk -t1 -c50 -d$DURATION"
: > "$OUT/ae_rows.txt"
r=1
while [ $r -le "$ROUNDS" ]; do
  for w in close keepalive; do
    for s in uring-http lua-uring; do
      one base "$BASE" "$s" "$w" "$r"
      one early "$NEW" "$s" "$w" "$r"
    done
  done
  r=$((r + 1))
done
awk '{ k = $3 " " $4 " " $5; sub(":", "", k); c[k]++
       E[k, c[k]] = $9 + 0; R[k, c[k]] = $10 + 0; P[k, c[k]] = $12 + 0 }
  function med(A, k, n,   i, j, t, a) {
    for (i = 1; i <= n; i++) a[i] = A[k, i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  function lo(A, k, n,   i, m) { m = A[k, 1]; for (i = 2; i <= n; i++) if (A[k, i] < m) m = A[k, i]; return m }
  function hi(A, k, n,   i, m) { m = A[k, 1]; for (i = 2; i <= n; i++) if (A[k, i] > m) m = A[k, i]; return m }
  END {
    split("close keepalive", W, " "); split("uring-http lua-uring", S, " "); split("base early", N, " ")
    for (i = 1; i <= 2; i++) for (j = 1; j <= 2; j++) for (m = 1; m <= 2; m++) {
      k = W[i] " " S[j] " " N[m]; if (!(k in c)) continue
      printf "median %s: enter/req %.3f, %d req/s (rounds %d-%d), %d req/server-cpu-s\n",
        k, med(E, k, c[k]), med(R, k, c[k]), lo(R, k, c[k]), hi(R, k, c[k]), med(P, k, c[k])
    }
  }' "$OUT/ae_rows.txt"
