#!/bin/sh
# bench/http.sh: HTTP/1.1 hello world, lua-uring against luv, cqueues and a
# raw liburing C server, driven by wrk; plus lua-uring's own knobs.
#
#   sh bench/http.sh          3 alternating rounds, wrk -d3s (about 3.5 min)
#   sh bench/http.sh quick    (or BENCH_QUICK=1) one round, -d1s: checks that
#                             every case still builds and runs; its numbers
#                             mean little
#   ROUNDS=5 DURATION=5s WORKLOADS="c50 close50" sh bench/http.sh (overrides)
#   CONTENDERS="lua-uring mshot" sh bench/http.sh   only these, where a
#                             workload has them (a knob's A/B in more rounds)
#
# Workloads (wrk -t1, keep-alive unless said):
#   c50      50 connections: lua-uring luv cqueues c uring-head uring-http,
#            and the knobs: sqpoll (lua-uring with uring.configure{sqpoll = true},
#            through URING_TEST_SQPOLL=1), fixed (lua-uring with
#            configure{fixed_files = 1024}, through URING_TEST_FIXED_FILES:
#            slots installed and emptied by IORING_OP_FILES_UPDATE SQEs),
#            fixed-reg (the same, slots changed by io_uring_register system
#            calls: URING_TEST_FFILES_REGISTER=1), c-fixed (the C server
#            with registered files) and mshot (lua-uring with
#            configure{recv_multishot = true}, through
#            URING_TEST_RECV_MULTISHOT=1)
#   c500     500 connections: lua-uring luv cqueues c uring-head uring-http,
#            and the knob ring64 (lua-uring with configure{entries = 64},
#            through URING_TEST_RING=64: 500 connections' SQEs overflow it),
#            mshot
#   close50  connection churn: 50 connections, "Connection: close" on every
#            request (one TCP connection per request): fixed and fixed-reg
#            (what a slot's install and removal per connection cost: two
#            SQEs, or two system calls), lua-uring luv cqueues c, mshot
#   workers  examples/http_workers.lua (uring.workers) with 1 worker (w1:
#            on CPU 1, wrk on CPU 0, as every other case) and with 2 (w2:
#            the workers and wrk all float over both CPUs)
#   workers-cpu  the same with a CPU-bound handler (--spin $SPIN rounds of
#            a busy loop per request, ~40 us): the workers, not wrk, run
#            out of CPU, so the second core's gain shows (w1-spin, w2-spin)
#
# Contenders (the same protocol, answers byte for byte alike: checked
# first with bench/http_probe.lua; the workers example answers with its
# pid and is not probed):
#   lua-uring  bench/http_uring.lua    (hand-written over lua-uring's
#              sockets: the reference the other ratios are taken against)
#   luv        bench/http_luv.lua      (Debian's lua-luv under lua5.4)
#   cqueues    bench/http_cqueues.lua  (Debian's lua-cqueues)
#   c          bench/http_c.c          (raw liburing: the ceiling)
#   uring-head bench/http_uring.lua --head (the same server reading each
#              head with one sock:receive_head call: the C parser)
#   uring-http examples/http_hello.lua (the same server on uring.http;
#              issue 5 wants it within 10% of lua-uring)
#   nginx      bench/http_nginx.sh return: nginx's `return 200` (Debian
#              nginx-light), one process; an anchor, not probed (its
#              headers differ: Server, Date, Content-Type)
#   nginx-lua  bench/http_nginx.sh lua: the same through lua-nginx-module
#              (content_by_lua_block), OpenResty's engine
#
# Each run starts a fresh server on 127.0.0.1 port 0 pinned to CPU
# $SRV_CPU (1) and wrk pinned to CPU $WRK_CPU (0), waits for its
# "listening on 127.0.0.1:PORT" line(s), runs wrk, and stops the server
# (SIGTERM).  Contenders alternate within each round and workload
# (A B C D A B C D ...) so drift hits all alike.  wrk saturates its own
# core before a good server does, so besides req/s the bench reports
# requests per second of SERVER CPU: wrk's request count over the utime +
# stime (/proc/PID/stat, clock ticks) of the server and its children
# across the wrk run.  Prints each run, the medians, the ratios, and
# writes the ratios to $BENCH_RESULTS/http.tsv (bench/README.md).
# Latency: wrk --latency's p50 and p99 (microseconds), medians per case.
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
WRK=${WRK:-wrk}
OUT=build/bench
mkdir -p "$OUT"

if [ "$1" = quick ] || { [ -n "$BENCH_QUICK" ] && [ "$BENCH_QUICK" != 0 ]; }; then
  ROUNDS=1 DURATION=1s QUICK=1
  BENCH_RESULTS=${BENCH_RESULTS:-build/bench/results}
else
  ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-3s} QUICK=
  BENCH_RESULTS=${BENCH_RESULTS:-bench/results}
fi
WORKLOADS=${WORKLOADS:-"c50 c500 close50 workers workers-cpu"}
SPIN=${SPIN:-5000}
SRV_CPU=${SRV_CPU:-1}
WRK_CPU=${WRK_CPU:-0}
ALL_CPUS=0-$(($(nproc) - 1))
if [ "$(nproc)" -lt 2 ]; then
  echo "bench: only one CPU: server and wrk share it" >&2
  SRV_CPU=0 WRK_CPU=0
fi
mkdir -p "$BENCH_RESULTS"

# 500 connections, both ends in this machine: raise the fd limit
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

for tool in "$WRK" taskset; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "bench: $tool not found (apt-get install wrk util-linux)" >&2; exit 1; }
done
"$LUA" -e 'require "luv"' 2>/dev/null || {
  echo "bench: luv does not load under $LUA (apt-get install lua-luv)" >&2; exit 1; }
"$LUA" -e 'require "cqueues"; require "cqueues.socket"' 2>/dev/null || {
  echo "bench: cqueues does not load under $LUA (apt-get install lua-cqueues)" >&2; exit 1; }

CFLAGS_URING=$(pkg-config --cflags liburing 2>/dev/null || true)
LIBS_URING=$(pkg-config --libs liburing 2>/dev/null || echo -luring)
$CC -O2 -Wall -Wextra $CFLAGS_URING -o "$OUT/http_c" bench/http_c.c $LIBS_URING

URING_SRV=bench/http_uring.lua
HTTP_SRV=examples/http_hello.lua

PROBED="lua-uring luv cqueues c uring-head uring-http c-fixed"
names_of () {
  case $1 in
    c50)     echo "lua-uring luv cqueues c uring-head uring-http nginx nginx-lua sqpoll fixed fixed-reg c-fixed mshot" ;;
    c500)    echo "lua-uring luv cqueues c uring-head uring-http nginx nginx-lua ring64 mshot" ;;
    close50) echo "lua-uring luv cqueues c uring-http nginx nginx-lua fixed fixed-reg mshot" ;;
    workers) echo "w1 w2" ;;
    workers-cpu) echo "w1-spin w2-spin" ;;
    *) echo "bench: unknown workload $1" >&2; exit 1 ;;
  esac
}
# the workload's contenders, only those in $CONTENDERS when it is set
names_in () {
  if [ -z "$CONTENDERS" ]; then names_of "$1"; return; fi
  for n in $(names_of "$1"); do
    case " $CONTENDERS " in *" $n "*) printf '%s ' "$n" ;; esac
  done
}
conns_of () { case $1 in c500) echo 500 ;; *) echo 50 ;; esac; }
server_cmd () {
  case $1 in
    lua-uring|sqpoll|ring64|fixed|fixed-reg|mshot) echo "$LUA $URING_SRV 0 --seconds 600" ;;
    uring-head) echo "$LUA $URING_SRV 0 --seconds 600 --head" ;;
    uring-http) echo "$LUA $HTTP_SRV 0 --seconds 600" ;;
    luv)       echo "$LUA bench/http_luv.lua 0 --seconds 600" ;;
    cqueues)   echo "$LUA bench/http_cqueues.lua 0 --seconds 600" ;;
    c)         echo "$OUT/http_c 0 --seconds 600" ;;
    c-fixed)   echo "$OUT/http_c 0 --seconds 600 --fixed" ;;
    nginx)     echo "sh bench/http_nginx.sh return --seconds 600" ;;
    nginx-lua) echo "sh bench/http_nginx.sh lua --seconds 600" ;;
    w1)        echo "$LUA examples/http_workers.lua 0 --workers 1 --seconds 600" ;;
    w2)        echo "$LUA examples/http_workers.lua 0 --workers 2 --seconds 600" ;;
    w1-spin)   echo "$LUA examples/http_workers.lua 0 --workers 1 --seconds 600 --spin $SPIN" ;;
    w2-spin)   echo "$LUA examples/http_workers.lua 0 --workers 2 --seconds 600 --spin $SPIN" ;;
  esac
}
# "listening on" lines to wait for; the CPUs of the server and of wrk
ready_of () { case $1 in w2|w2-spin) echo 2 ;; *) echo 1 ;; esac; }
srv_cpus () { case $1 in w2|w2-spin) echo "$ALL_CPUS" ;; *) echo "$SRV_CPU" ;; esac; }
wrk_cpus () { case $1 in w2|w2-spin) echo "$ALL_CPUS" ;; *) echo "$WRK_CPU" ;; esac; }

. bench/lib.sh               # SRV_PID, cleanup, the traps

# start_server NAME: a fresh server; sets SRV_PID, PORT
start_server () {
  log="$OUT/http_$1.log"
  : > "$log"                 # (truncated here: the & below is asynchronous)
  sqpoll=0 entries= ffiles= ffreg= mshot=0
  [ "$1" = sqpoll ] && sqpoll=1
  [ "$1" = ring64 ] && entries=64
  [ "$1" = fixed ] && ffiles=1024
  [ "$1" = fixed-reg ] && ffiles=1024 ffreg=1
  [ "$1" = mshot ] && mshot=1
  # shellcheck disable=SC2046
  URING_TEST_SQPOLL=$sqpoll URING_TEST_RING=$entries URING_TEST_FIXED_FILES=$ffiles URING_TEST_FFILES_REGISTER=$ffreg URING_TEST_RECV_MULTISHOT=$mshot taskset -c "$(srv_cpus "$1")" $(server_cmd "$1") > "$log" 2>&1 &
  SRV_PID=$!                 # taskset execs the server: the same pid
  echo "$SRV_PID" >> "$OUT/http_pids.txt"
  PORT=
  want=$(ready_of "$1")
  i=0
  while [ $i -lt 200 ]; do
    if [ "$(grep -c '^listening on 127\.0\.0\.1:[0-9]' "$log")" -ge "$want" ]; then
      PORT=$(sed -n '1s/^listening on 127\.0\.0\.1:\([0-9][0-9]*\).*$/\1/p' "$log")
      break
    fi
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.05
    i=$((i + 1))
  done
  if [ -z "$PORT" ]; then
    echo "bench: $1 did not start ($(server_cmd "$1")):" >&2
    cat "$log" >&2
    exit 1
  fi
  # workers too (spec/bench_spec.lua checks every pid listed is gone)
  cat /proc/"$SRV_PID"/task/*/children 2>/dev/null | tr ' ' '\n' | sed '/^$/d' >> "$OUT/http_pids.txt"
}

# CPU of the server and its children so far, in clock ticks (utime +
# stime of every thread, SQPOLL's kernel thread included)
cpu_ticks () {
  for p in $1 $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null
  done | awk '{ t += $12 + $13 } END { print t + 0 }'
}
HZ=$(getconf CLK_TCK)
: > "$OUT/http_pids.txt"     # every server started (spec/bench_spec.lua checks they are gone)

echo "nproc $(nproc), kernel $(uname -r), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
echo "lua-uring: $URING_SRV (hand-written), uring-http: $HTTP_SRV; server on CPU $SRV_CPU, wrk -t1 on CPU $WRK_CPU (w2: both on CPUs $ALL_CPUS)"

# the same protocol: every server answers the pipelined probe alike
ref=
for n in $PROBED; do
  start_server "$n"
  "$LUA" bench/http_probe.lua "$PORT" > "$OUT/http_probe_$n.txt" || {
    echo "bench: $n failed the probe" >&2; exit 1; }
  cleanup
  if [ -z "$ref" ]; then ref=$n
  elif ! cmp -s "$OUT/http_probe_$ref.txt" "$OUT/http_probe_$n.txt"; then
    echo "bench: $n answers the probe differently from $ref" >&2
    diff "$OUT/http_probe_$ref.txt" "$OUT/http_probe_$n.txt" >&2 || true
    exit 1
  fi
done
echo "probe: all four answer a pipelined GET/HEAD/POST/HTTP-1.0/close batch byte for byte alike (and uring-head, uring-http, c-fixed too)"
echo "wrk -t1 -d$DURATION, workloads: $WORKLOADS; $ROUNDS round(s)"

: > "$OUT/http_results.txt"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for w in $WORKLOADS; do
    line="round $r $w:"
    c=$(conns_of "$w")
    for n in $(names_in "$w"); do
      start_server "$n"
      t0=$(cpu_ticks "$SRV_PID")
      if [ "$w" = close50 ]; then
        taskset -c "$(wrk_cpus "$n")" "$WRK" -t1 -c"$c" -d"$DURATION" --latency -H "Connection: close" \
          "http://127.0.0.1:$PORT/" > "$OUT/http_wrk.txt" 2>&1 < /dev/null || true
      else
        taskset -c "$(wrk_cpus "$n")" "$WRK" -t1 -c"$c" -d"$DURATION" --latency \
          "http://127.0.0.1:$PORT/" > "$OUT/http_wrk.txt" 2>&1 < /dev/null || true
      fi
      t1=$(cpu_ticks "$SRV_PID")
      cleanup
      rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$OUT/http_wrk.txt")
      reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$OUT/http_wrk.txt")
      errs=$(sed -n 's/^ *Socket errors: *//p; s/^ *Non-2xx or 3xx responses: *\([0-9]*\)/non2xx \1/p' "$OUT/http_wrk.txt" | tr '\n' ' ')
      if [ -z "$rps" ] || [ -z "$reqs" ]; then
        echo "bench: wrk failed against $n ($w):" >&2
        cat "$OUT/http_wrk.txt" >&2
        exit 1
      fi
      [ -z "$errs" ] || echo "  ($n $w: wrk reported $errs)"
      cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
      per=$(awk -v q="$reqs" -v s="$cpu" 'BEGIN { printf "%.0f", (s > 0 ? q / s : 0) }')
      # wrk --latency: "50%  123.45us" (us, ms or s) -> microseconds
      lat () { awk -v q="$1" '$1 == q { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
        print v * (u == "ms" ? 1000 : u == "s" ? 1000000 : 1); exit }' "$OUT/http_wrk.txt"; }
      p50=$(lat 50%) p99=$(lat 99%)
      echo "$w $n $rps $cpu $per $r ${p50:-0} ${p99:-0}" >> "$OUT/http_results.txt"
      line="$line  $n $(printf '%.0f' "$rps") req/s ${cpu}s cpu $per/cpu-s"
    done
    echo "$line"
  done
  r=$((r + 1))
done

# Medians per (workload, contender); then the ratios, each as the ratio of
# the medians with the spread of the per-round ratios, printed and written
# to http.tsv (label, ratio, target, note).  metric: per = requests per
# server-CPU-second, rps = requests per second.
awk -v workloads="$WORKLOADS" -v spin="$SPIN" -v rounds="$ROUNDS" -v tsv="$BENCH_RESULTS/http.tsv" '
  function median(n, a,   i, j, t) {
    for (i = 2; i <= n; i++) {             # insertion sort
      t = a[i]
      for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
      a[j + 1] = t
    }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function med(w, n, m,   k, a, i) {
    k = 0
    for (i = 1; i <= rounds; i++) if ((w, n, m, i) in v) a[++k] = v[w, n, m, i]
    return k ? median(k, a) : 0
  }
  # ratio a/b of metric m in workload w; prints and writes one line
  function ratio(w, a, b, m, target, label, what,   x, y, i, lo, hi, rr, mt, note) {
    if (!((w, a, m, 1) in v) || !((w, b, m, 1) in v)) return
    x = med(w, a, m); y = med(w, b, m)
    lo = ""; hi = ""
    for (i = 1; i <= rounds; i++) {
      if (!((w, a, m, i) in v) || v[w, b, m, i] <= 0) continue
      rr = v[w, a, m, i] / v[w, b, m, i]
      if (lo == "" || rr < lo) lo = rr
      if (hi == "" || rr > hi) hi = rr
    }
    mt = (m == "per") ? "req/server-cpu-s" : (m == "p99") ? "us p99" : "req/s"
    printf "ratio %s/%s %s: %.2f %s%s, rounds %.2f-%.2f\n", a, b, w, (y > 0 ? x / y : 0),
      mt, (target != "" ? " (target >= " target ")" : ""), lo, hi
    note = sprintf("%s; medians %.0f vs %.0f %s; %d round(s), per-round %.2f-%.2f",
      what, x, y, mt, rounds, lo, hi)
    printf "%s\t%.3f\t%s\t%s\n", label, (y > 0 ? x / y : 0), target, note > tsv
  }
  { v[$1, $2, "rps", $6] = $3; v[$1, $2, "per", $6] = $5; seen[$1, $2] = 1
    v[$1, $2, "p50", $6] = $7; v[$1, $2, "p99", $6] = $8 }
  END {
    printf "" > tsv
    nw = split(workloads, W, " ")
    nn = split("lua-uring luv cqueues c uring-head uring-http nginx nginx-lua sqpoll fixed fixed-reg c-fixed ring64 mshot w1 w2 w1-spin w2-spin", N, " ")
    for (i = 1; i <= nw; i++) {
      w = W[i]
      line1 = sprintf("median %s req/s:", w); line2 = sprintf("median %s req/server-cpu-s:", w)
      for (j = 1; j <= nn; j++) if ((w, N[j]) in seen) {
        line1 = line1 sprintf("  %s %.0f", N[j], med(w, N[j], "rps"))
        line2 = line2 sprintf("  %s %.0f", N[j], med(w, N[j], "per"))
      }
      print line1; print line2
      line1 = sprintf("median %s latency p50/p99 us:", w)
      for (j = 1; j <= nn; j++) if ((w, N[j]) in seen)
        line1 = line1 sprintf("  %s %.0f/%.0f", N[j], med(w, N[j], "p50"), med(w, N[j], "p99"))
      print line1
    }
    for (i = 1; i <= nw; i++) {
      w = W[i]
      what = (w == "close50") ? "churn (Connection: close), 50 conns" : "keep-alive, " substr(w, 2) " conns"
      tl = (w == "close50") ? "" : "x"
      ratio(w, "lua-uring", "luv", "per", tl ? "1.3" : "", "http " w ": lua-uring/luv", what)
      ratio(w, "lua-uring", "cqueues", "per", tl ? "1.7" : "", "http " w ": lua-uring/cqueues", what)
      ratio(w, "lua-uring", "c", "per", tl ? "0.9" : "", "http " w ": lua-uring/c", what)
      ratio(w, "uring-head", "c", "per", "", "http " w ": receive_head server/c", "bench/http_uring.lua --head (heads parsed in C by sock:receive_head); " what)
      ratio(w, "uring-http", "lua-uring", "per", tl ? "0.9" : "", "http " w ": uring.http/hand-written", what)
      ratio(w, "uring-http", "c", "per", tl ? "0.95" : "0.9", "http " w ": uring.http/c", what)
      ratio(w, "uring-http", "nginx", "per", "1.1", "http " w ": uring.http/nginx", "nginx return 200, one process; " what)
      ratio(w, "uring-http", "nginx-lua", "per", "1.3", "http " w ": uring.http/nginx+lua", "nginx + lua-nginx-module content_by_lua_block, one process; " what)
      # p99 latency: c over uring.http, so higher is better like every ratio here
      ratio(w, "c", "uring-http", "p99", tl ? "0.83" : "", "http " w ": p99 latency c/uring.http", "p99 from wrk --latency (1/1.2 = 0.83: uring.http within 1.2x of C); " what)
      ratio(w, "sqpoll", "lua-uring", "per", "", "knob " w ": sqpoll on/off", "SQPOLL, server and its poller on one CPU; " what)
      ratio(w, "ring64", "lua-uring", "per", "", "knob " w ": 64-entry ring/4096", "uring.configure{entries = 64}; " what)
      ratio(w, "fixed", "lua-uring", "per", "", "knob " w ": fixed_files on/off", "uring.configure{fixed_files = 1024}: sockets in registered slots, installed by SQEs; " what)
      ratio(w, "fixed-reg", "lua-uring", "per", "", "knob " w ": fixed_files by syscalls/off", "fixed_files = 1024 with slots changed by io_uring_register calls (URING_TEST_FFILES_REGISTER=1); " what)
      ratio(w, "c-fixed", "c", "per", "", "knob " w ": C fixed files on/off", "registered files in the C server; " what)
      ratio(w, "mshot", "lua-uring", "per", "", "knob " w ": recv_multishot on/off", "uring.configure{recv_multishot = true}: one multishot RECV kept armed per connection; " what)
      ratio(w, "w2", "w1", "rps", "", "workers: 2/1 req/s", "uring.workers throughput, keep-alive 50 conns; w2 shares both CPUs with wrk")
      ratio(w, "w2", "w1", "per", "", "workers: 2/1 per CPU", "uring.workers efficiency, keep-alive 50 conns")
      ratio(w, "w2-spin", "w1-spin", "rps", "", "workers, CPU-bound handler: 2/1 req/s", "uring.workers throughput, keep-alive 50 conns, --spin " spin " per request; w2 shares both CPUs with wrk")
    }
  }' "$OUT/http_results.txt"
echo "ratios written to $BENCH_RESULTS/http.tsv"
