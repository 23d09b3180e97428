#!/bin/sh
# bench/ws.sh: WebSocket echo messages per second of SERVER CPU, uring.http
# (bench/ws_uring.lua: req:upgrade, ws:receive, ws:send) against
# python3-websockets (bench/ws_python.py, asyncio, no compression), both
# driven by the same load (bench/ws_load.lua: CONNS connections on the
# uring client, DEPTH messages each in flight, every echo checked).
#
#   sh bench/ws.sh           5 alternating rounds of 4 s per workload (~2 min)
#   sh bench/ws.sh quick     (or BENCH_QUICK=1) one round of 1 s: checks that
#                            it runs; its numbers mean little
#   ROUNDS=5 DURATION=5 sh bench/ws.sh
#
# Workloads: small (64-byte messages, 10 connections, 8 in flight each)
# and 4k (4 KiB messages, the same).  The server runs on CPU $SRV_CPU
# (1), the load on CPU $LOAD_CPU (0); the server's CPU is the utime +
# stime of its threads (/proc/PID/stat) across the load's run.  The
# contenders alternate (uring python uring python ...); prints each run,
# the medians and the ratio (the median of each round's uring/python),
# and writes them to $BENCH_RESULTS/ws.tsv (target: 3x, issue 15).
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
PY=${PY:-/usr/bin/python3}
OUT=build/bench
mkdir -p "$OUT"
if [ "$1" = quick ] || { [ -n "$BENCH_QUICK" ] && [ "$BENCH_QUICK" != 0 ]; }; then
  ROUNDS=1 DURATION=1
  BENCH_RESULTS=${BENCH_RESULTS:-build/bench/results}
else
  ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-4}
  BENCH_RESULTS=${BENCH_RESULTS:-bench/results}
fi
SRV_CPU=${SRV_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
[ "$(nproc)" -lt 2 ] && SRV_CPU=0 LOAD_CPU=0
mkdir -p "$BENCH_RESULTS"
HZ=$(getconf CLK_TCK)

"$PY" -c 'import websockets' 2>/dev/null || {
  echo "bench: $PY lacks websockets (apt-get install python3-websockets)" >&2; exit 1; }

. bench/lib.sh               # SRV_PID, cleanup, the traps

start_server () {
  log="$OUT/ws_$1.log"
  : > "$log"
  case $1 in
    uring)  taskset -c "$SRV_CPU" "$LUA" bench/ws_uring.lua 0 > "$log" 2>&1 & ;;
    python) taskset -c "$SRV_CPU" "$PY" bench/ws_python.py 0 > "$log" 2>&1 & ;;
  esac
  SRV_PID=$!
  PORT=
  i=0
  while [ $i -lt 200 ] && [ -z "$PORT" ]; do
    PORT=$(sed -n '1s/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$log")
    [ -n "$PORT" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.05
    i=$((i + 1))
  done
  [ -n "$PORT" ] || { echo "bench: $1 did not start:" >&2; cat "$log" >&2; exit 1; }
}

cpu_ticks () {
  for t in /proc/"$1"/task/*/stat; do sed 's/^.*) //' "$t" 2>/dev/null; done |
    awk '{ t += $12 + $13 } END { print t + 0 }'
}

median () { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "nproc $(nproc), kernel $(uname -r); server on CPU $SRV_CPU, load on CPU $LOAD_CPU; $ROUNDS round(s) of ${DURATION}s"
: > "$OUT/ws_runs.txt"
for w in small 4k; do
  case $w in small) size=64 ;; 4k) size=4096 ;; esac
  r=1
  while [ $r -le "$ROUNDS" ]; do
    line="round $r $w:"
    for n in uring python; do
      start_server $n
      t0=$(cpu_ticks "$SRV_PID")
      msgs=$(taskset -c "$LOAD_CPU" "$LUA" bench/ws_load.lua "$PORT" 10 8 $size "$DURATION" |
        sed -n 's/^messages //p')
      t1=$(cpu_ticks "$SRV_PID")
      cleanup
      [ -n "$msgs" ] || { echo "bench: the load against $n failed" >&2; exit 1; }
      ticks=$((t1 - t0)); [ "$ticks" -gt 0 ] || ticks=1
      rate=$(awk -v m="$msgs" -v t="$ticks" -v hz="$HZ" 'BEGIN { printf "%d", m / (t / hz) }')
      echo "$w $n $rate" >> "$OUT/ws_runs.txt"
      line="$line  $n $rate msg/server-cpu-s ($msgs msgs, $ticks ticks)"
    done
    echo "$line"
    r=$((r + 1))
  done
done

: > "$BENCH_RESULTS/ws.tsv"
for w in small 4k; do
  u=$(awk -v w=$w '$1 == w && $2 == "uring" { print $3 }' "$OUT/ws_runs.txt" | median)
  p=$(awk -v w=$w '$1 == w && $2 == "python" { print $3 }' "$OUT/ws_runs.txt" | median)
  # each round's pair ran back to back: its ratio is the least touched by
  # what else the machine did meanwhile; the ratio reported is their median
  rounds=$(awk -v w=$w '$1 == w { v[$2] = $3; if ($2 == "python") printf "%.3f\n", v["uring"] / $3 }' "$OUT/ws_runs.txt")
  ratio=$(echo "$rounds" | median)
  lo=$(echo "$rounds" | sort -n | head -1); hi=$(echo "$rounds" | sort -n | tail -1)
  case $w in small) what="64-byte" ;; 4k) what="4 KiB" ;; esac
  echo "median $w: uring $u, python $p msg/server-cpu-s; ratio uring/python: $ratio (per round $lo-$hi)"
  printf 'ws echo %s: uring.http/python3-websockets\t%s\t3\t%s messages, 10 conns x 8 in flight; medians %s vs %s msg/server-cpu-s; %s round(s), per-round %s-%s\n' \
    "$w" "$ratio" "$what" "$u" "$p" "$ROUNDS" "$lo" "$hi" >> "$BENCH_RESULTS/ws.tsv"
done
