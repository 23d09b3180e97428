#!/bin/sh
# bench/sendzc.sh: large HTTP responses with and without SEND_ZC: what
# uring.configure{send_zc} buys per server CPU second (issue 17), and so
# which default it gets.
#
#   sh bench/sendzc.sh          3 rounds, wrk -d3s, sizes 64 KiB 256 KiB 1 MiB
#   sh bench/sendzc.sh quick    (or BENCH_QUICK=1) one round, -d1s, 1 MiB
#                               only: checks that it runs; its numbers mean little
#   ROUNDS=5 DURATION=5s SIZES="65536 1048576" CONNS=8 sh bench/sendzc.sh
#
# The server is bench/sendzc_server.lua: keep-alive, every answer one
# sock:send of head and body (SIZE bytes), with --zc off (plain SEND: the
# kernel copies the string into socket buffers) or --zc SIZE (SEND_ZC:
# the kernel is lent the string's pages, and the core keeps it pinned
# until the notification).  wrk -t1 -c$CONNS drives it over 127.0.0.1.
# Server on CPU $SRV_CPU (1), wrk on CPU $WRK_CPU (0); off and on take
# turns within each round and size, the order swapped every other round,
# so drift hits both alike.  The figure is requests per second of SERVER
# CPU: wrk's request count over the server's utime + stime
# (/proc/PID/stat) across the run; req/s is printed too.  The server
# reports how many of its SEND_ZCs the kernel copied anyway (on loopback:
# all of them, as the receiving socket must own its bytes).  Prints each
# run, the medians and the on/off ratios, and writes the ratios to
# $BENCH_RESULTS/sendzc.tsv (bench/README.md, bench/report.lua).
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
WRK=${WRK:-wrk}
OUT=build/bench
mkdir -p "$OUT"

if [ "$1" = quick ] || { [ -n "$BENCH_QUICK" ] && [ "$BENCH_QUICK" != 0 ]; }; then
  ROUNDS=1 DURATION=1s SIZES=${SIZES:-1048576}
  BENCH_RESULTS=${BENCH_RESULTS:-build/bench/results}
else
  ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-3s} SIZES=${SIZES:-"65536 262144 1048576"}
  BENCH_RESULTS=${BENCH_RESULTS:-bench/results}
fi
CONNS=${CONNS:-8}
SRV_CPU=${SRV_CPU:-1}
WRK_CPU=${WRK_CPU:-0}
if [ "$(nproc)" -lt 2 ]; then
  echo "bench: only one CPU: server and wrk share it" >&2
  SRV_CPU=0 WRK_CPU=0
fi
mkdir -p "$BENCH_RESULTS"
for tool in "$WRK" taskset; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "bench: $tool not found (apt-get install wrk util-linux)" >&2; exit 1; }
done
"$LUA" -e 'package.cpath = "./build/?.so;" .. package.cpath
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  os.exit(require("uring").features().ops.send_zc and 0 or 1)' || {
  echo "bench: this kernel has no IORING_OP_SEND_ZC (6.0+)" >&2; exit 1; }

. bench/lib.sh               # SRV_PID, cleanup, the traps

# start_server SIZE off|on: PORT and SRV_PID set
start_server () {
  log="$OUT/sendzc_server.log"
  : > "$log"
  zc=off
  [ "$2" = on ] && zc=$1
  taskset -c "$SRV_CPU" "$LUA" bench/sendzc_server.lua 0 --size "$1" --zc "$zc" \
    --seconds 600 > "$log" 2>&1 &
  SRV_PID=$!
  PORT=
  i=0
  while [ $i -lt 200 ]; do
    PORT=$(sed -n '1s/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$log")
    [ -n "$PORT" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.05
    i=$((i + 1))
  done
  if [ -z "$PORT" ]; then
    echo "bench: the server did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
}

cpu_ticks () {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
HZ=$(getconf CLK_TCK)

echo "nproc $(nproc), kernel $(uname -r), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
echo "bench/sendzc_server.lua on CPU $SRV_CPU, wrk -t1 -c$CONNS -d$DURATION on CPU $WRK_CPU; sizes $SIZES; $ROUNDS round(s)"

: > "$OUT/sendzc_results.txt"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  order="off on"
  [ $((r % 2)) -eq 0 ] && order="on off"
  for size in $SIZES; do
    line="round $r size $size:"
    for mode in $order; do
      start_server "$size" "$mode"
      t0=$(cpu_ticks "$SRV_PID")
      taskset -c "$WRK_CPU" "$WRK" -t1 -c"$CONNS" -d"$DURATION" \
        "http://127.0.0.1:$PORT/" > "$OUT/sendzc_wrk.txt" 2>&1 < /dev/null || true
      t1=$(cpu_ticks "$SRV_PID")
      cleanup                 # SIGTERM: the server prints what it sent
      rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$OUT/sendzc_wrk.txt")
      reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$OUT/sendzc_wrk.txt")
      if [ -z "$rps" ] || [ -z "$reqs" ]; then
        echo "bench: wrk failed (size $size, send_zc $mode):" >&2
        cat "$OUT/sendzc_wrk.txt" >&2
        exit 1
      fi
      errs=$(sed -n 's/^ *Socket errors: *//p; s/^ *Non-2xx or 3xx responses: *\([0-9]*\)/non2xx \1/p' "$OUT/sendzc_wrk.txt" | tr '\n' ' ')
      [ -z "$errs" ] || echo "  (size $size send_zc $mode: wrk reported $errs)"
      sent=$(sed -n 's/^served \([0-9]*\) send_zc \([0-9]*\) copied \([0-9]*\)$/\2 \3/p' "$log")
      zcs=${sent% *} copied=${sent#* }
      if [ -z "$sent" ] || { [ "$mode" = on ] && [ "$zcs" -eq 0 ]; } || { [ "$mode" = off ] && [ "$zcs" -ne 0 ]; }; then
        echo "bench: the server (size $size, send_zc $mode) sent the wrong way: $(cat "$log")" >&2
        exit 1
      fi
      cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
      per=$(awk -v q="$reqs" -v s="$cpu" 'BEGIN { printf "%.0f", (s > 0 ? q / s : 0) }')
      echo "$size $mode $rps $cpu $per $r $zcs $copied" >> "$OUT/sendzc_results.txt"
      line="$line  $mode $(printf '%.0f' "$rps") req/s ${cpu}s cpu $per/cpu-s"
      [ "$mode" = on ] && line="$line (zc $zcs, copied $copied)"
    done
    echo "$line"
  done
  r=$((r + 1))
done

awk -v sizes="$SIZES" -v rounds="$ROUNDS" -v conns="$CONNS" -v tsv="$BENCH_RESULTS/sendzc.tsv" '
  function median(n, a,   i, j, t) {
    for (i = 2; i <= n; i++) {
      t = a[i]
      for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
      a[j + 1] = t
    }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function med(s, m, f,   k, a, i) {
    k = 0
    for (i = 1; i <= rounds; i++) if ((s, m, f, i) in v) a[++k] = v[s, m, f, i]
    return k ? median(k, a) : 0
  }
  { v[$1, $2, "rps", $6] = $3; v[$1, $2, "per", $6] = $5
    if ($2 == "on") { zc[$1] += $7; cp[$1] += $8 } }
  END {
    printf "" > tsv
    n = split(sizes, S, " ")
    for (i = 1; i <= n; i++) {
      s = S[i]
      lo = ""; hi = ""
      for (r = 1; r <= rounds; r++) {
        if (!((s, "off", "per", r) in v) || v[s, "off", "per", r] <= 0) continue
        q = v[s, "on", "per", r] / v[s, "off", "per", r]
        if (lo == "" || q < lo) lo = q
        if (hi == "" || q > hi) hi = q
      }
      x = med(s, "on", "per"); y = med(s, "off", "per")
      xr = med(s, "on", "rps"); yr = med(s, "off", "rps")
      label = (s % 1048576 == 0) ? (s / 1048576 " MiB") : (s / 1024 " KiB")
      printf "median %s: off %.0f req/s %.0f req/server-cpu-s, on %.0f req/s %.0f req/server-cpu-s (SEND_ZCs the kernel copied: %d of %d)\n",
        label, yr, y, xr, x, cp[s], zc[s]
      printf "ratio send_zc on/off %s: %.2f req/server-cpu-s, rounds %.2f-%.2f; %.2f req/s\n",
        label, (y > 0 ? x / y : 0), lo, hi, (yr > 0 ? xr / yr : 0)
      printf "knob send_zc %s: on/off\t%.3f\t\tconfigure{send_zc}, %s responses, keep-alive %d conns, loopback (the kernel copied %d of %d); medians %.0f vs %.0f req/server-cpu-s; %d round(s), per-round %.2f-%.2f\n",
        label, (y > 0 ? x / y : 0), label, conns, cp[s], zc[s], x, y, rounds, lo, hi > tsv
    }
  }' "$OUT/sendzc_results.txt"
echo "ratios written to $BENCH_RESULTS/sendzc.tsv"
