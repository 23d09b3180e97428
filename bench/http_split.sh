#!/bin/sh
# bench/http_split.sh: where a kept-alive request's server CPU goes, user
# against system (issue 17: at c500 uring.http's gap to C is all user
# time; bench/README.md, "issue 17: c500").
#
#   sh bench/http_split.sh            3 rounds, wrk -d3s, 500 connections
#   sh bench/http_split.sh quick      (or BENCH_QUICK=1) one round, -d1s
#   CONNS=50 ROUNDS=5 SERVERS="uring-http c lua-uring" sh bench/http_split.sh
#
# Each run starts a fresh server on CPU $SRV_CPU (1), warms it with wrk
# for a second, then drives it with `wrk -t1 -c$CONNS` on CPU $WRK_CPU (0)
# and reads, across that run, the server's user and system time
# (/proc/PID/stat, clock ticks) and its time on CPU (every thread's
# /proc/PID/task/*/schedstat, nanoseconds: finer than the ticks).  Prints
# microseconds per request of each, per run and as medians per server.
# The order of the servers turns by one each round, so no server always
# runs first after a pause.  The machine may be shared: read the
# per-round spread, not only the medians.
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
OUT=build/bench
mkdir -p "$OUT"
if [ "$1" = quick ] || { [ -n "$BENCH_QUICK" ] && [ "$BENCH_QUICK" != 0 ]; }; then
  ROUNDS=1 DURATION=1s WARM=0.5s
else
  ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-3s} WARM=1s
fi
CONNS=${CONNS:-500}
SERVERS=${SERVERS:-"uring-http c"}
SRV_CPU=${SRV_CPU:-1}
WRK_CPU=${WRK_CPU:-0}
[ "$(nproc)" -ge 2 ] || SRV_CPU=0 WRK_CPU=0
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for tool in wrk taskset; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "bench: $tool not found (apt-get install wrk util-linux)" >&2; exit 1; }
done
CFLAGS_URING=$(pkg-config --cflags liburing 2>/dev/null || true)
LIBS_URING=$(pkg-config --libs liburing 2>/dev/null || echo -luring)
$CC -O2 -Wall -Wextra $CFLAGS_URING -o "$OUT/http_c" bench/http_c.c $LIBS_URING

server_cmd () {
  case $1 in
    uring-http) echo "$LUA examples/http_hello.lua 0 --seconds 600" ;;
    lua-uring)  echo "$LUA bench/http_uring.lua 0 --seconds 600" ;;
    uring-head) echo "$LUA bench/http_uring.lua 0 --seconds 600 --head" ;;
    c)          echo "$OUT/http_c 0 --seconds 600" ;;
    *) echo "bench: unknown server $1" >&2; exit 1 ;;
  esac
}

. bench/lib.sh               # SRV_PID, cleanup, the traps

ticks () { sed 's/^.*) //' "/proc/$1/stat" | awk -v f="$2" '{ print $f }'; }
oncpu () { cat /proc/"$1"/task/*/schedstat | awk '{ t += $1 } END { printf "%.0f", t }'; }
HZ=$(getconf CLK_TCK)

RES=$OUT/http_split.txt
: > "$RES"
echo "wrk -t1 -c$CONNS -d$DURATION, $ROUNDS round(s): microseconds of server CPU per request"
set -- $SERVERS
k=$#
r=1
while [ "$r" -le "$ROUNDS" ]; do
  i=0
  while [ $i -lt $k ]; do
    j=$(( (i + r - 1) % k + 1 ))
    eval n=\${$j}
    log=$OUT/http_split_$n.log
    : > "$log"
    # shellcheck disable=SC2046
    taskset -c "$SRV_CPU" $(server_cmd "$n") > "$log" 2>&1 &
    SRV_PID=$!
    port= w=0
    until port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\).*$/\1/p' "$log" | head -1) && [ -n "$port" ]; do
      w=$((w + 1))
      [ $w -lt 200 ] && kill -0 "$SRV_PID" 2>/dev/null || { echo "bench: $n did not start:" >&2; cat "$log" >&2; exit 1; }
      sleep 0.05
    done
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$WARM" "http://127.0.0.1:$port/" > /dev/null 2>&1 < /dev/null || true
    u0=$(ticks "$SRV_PID" 12) s0=$(ticks "$SRV_PID" 13) c0=$(oncpu "$SRV_PID")
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/" \
      > "$OUT/http_split_wrk.txt" 2>&1 < /dev/null || true
    u1=$(ticks "$SRV_PID" 12) s1=$(ticks "$SRV_PID" 13) c1=$(oncpu "$SRV_PID")
    cleanup
    reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$OUT/http_split_wrk.txt")
    if [ -z "$reqs" ] || [ "$reqs" -eq 0 ]; then
      echo "bench: wrk failed against $n:" >&2; cat "$OUT/http_split_wrk.txt" >&2; exit 1
    fi
    awk -v n="$n" -v r="$r" -v q="$reqs" -v hz="$HZ" -v u="$((u1 - u0))" -v s="$((s1 - s0))" \
        -v c0="$c0" -v c1="$c1" 'BEGIN {
      printf "%s %d %d %.3f %.3f %.3f\n", n, r, q, u / hz * 1e6 / q, s / hz * 1e6 / q, (c1 - c0) / 1e3 / q
    }' >> "$RES"
    tail -1 "$RES" | awk '{ printf "round %d %-10s %7d requests  user %6.3f  system %6.3f  on CPU %6.3f us/request\n", $2, $1, $3, $4, $5, $6 }'
    i=$((i + 1))
  done
  r=$((r + 1))
done

echo "medians:"
for n in $SERVERS; do
  for col in 4 5 6; do
    awk -v n="$n" -v c="$col" '$1 == n { print $c }' "$RES" | sort -n |
      awk '{ v[NR] = $1 } END { printf "%s ", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
  done | awk -v n="$n" '{ printf "%-10s user %6.3f  system %6.3f  on CPU %6.3f us/request\n", n, $1, $2, $3 }'
done
