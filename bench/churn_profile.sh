#!/bin/sh
# bench/churn_profile.sh: what one churned connection costs a server in the
# kernel: system calls, io_uring_enter calls and SQEs by opcode, per
# connection (issue 17, "churn, the kernel side" in bench/README.md).
#
#   sh bench/churn_profile.sh [server ...]     (default: uring-http c)
#   SECONDS_RUN=3 CONNS=50 sh bench/churn_profile.sh uring-http
#   PERF_REPORT=1 sh bench/churn_profile.sh uring-http c
#                  also where the CPU time goes: a second run under perf
#                  record (cpu-clock), us per connection by symbol, and
#                  the symbols that differ most between the first server
#                  and the last
#   CPU_ROUNDS=5 SECONDS_RUN=3 sh bench/churn_profile.sh uring-http c
#                  instead: user and system time per connection, untraced,
#                  the servers in alternation, medians of the rounds
#   BASE_CPATH='/other/build/?.so' sh bench/churn_profile.sh uring-http-base uring-http
#                  uring-http-base: examples/http_hello.lua on another build
#                  of the core (a before), side by side with this one
#
# Servers as bench/http.sh names them: uring-http (examples/http_hello.lua),
# lua-uring (bench/http_uring.lua), c (bench/http_c.c).  Each runs pinned
# to CPU $SRV_CPU (1) while `wrk -t1 -c$CONNS -H "Connection: close"` on CPU
# $WRK_CPU (0) makes one TCP connection per request; perf records the
# server's tracepoints meanwhile: raw_syscalls:sys_enter (named from
# asm/unistd_64.h), io_uring:io_uring_submit_req (opcode),
# io_uring:io_uring_poll_arm (a request that found nothing to do and waits
# on the socket's wait queue), io_uring:io_uring_queue_async_work (a
# request punted to an io-wq worker thread) and sched:sched_switch (the
# server going to sleep).  Counts are divided by wrk's request count: under
# churn, one connection per request.  Needs root (or perf_event_paranoid
# <= -1) for tracepoints; the machine's noise does not change the counts
# much, but how CQEs fall into batches (enters per connection) does.
set -e
set -f                       # no globbing: BASE_CPATH holds a '?'
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
OUT=build/bench
SECONDS_RUN=${SECONDS_RUN:-2}
CONNS=${CONNS:-50}
SRV_CPU=${SRV_CPU:-1}
WRK_CPU=${WRK_CPU:-0}
mkdir -p "$OUT"
for tool in perf wrk taskset; do
  command -v $tool >/dev/null 2>&1 || { echo "churn_profile: $tool not found" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || true
$CC -O2 -g -Wall -Wextra $(pkg-config --cflags liburing 2>/dev/null) \
  -o "$OUT/http_c" bench/http_c.c $(pkg-config --libs liburing 2>/dev/null || echo -luring)
UNISTD=$(echo '#include <asm/unistd.h>' | $CC -E -H - 2>&1 >/dev/null | sed -n 's/^\.* //p' | grep unistd_64 | head -1)

server_cmd () {
  case $1 in
    uring-http) echo "$LUA examples/http_hello.lua 0 --seconds 120" ;;
    lua-uring)  echo "$LUA bench/http_uring.lua 0 --seconds 120" ;;
    c)          echo "$OUT/http_c 0 --seconds 120" ;;
    uring-http-base)            # uring-http on the core in $BASE_CPATH
      echo "env URING_CPATH=${BASE_CPATH:?uring-http-base needs BASE_CPATH} $LUA examples/http_hello.lua 0 --seconds 120" ;;
    *) echo "churn_profile: unknown server $1 (uring-http lua-uring c uring-http-base)" >&2; exit 2 ;;
  esac
}

. bench/lib.sh               # SRV_PID, cleanup, the traps

# utime and stime of a process so far, in clock ticks
HZ=$(getconf CLK_TCK)
ticks () { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }

# start NAME: the server pinned, warmed up (its first connections grow
# pools and tables); sets SRV_PID and port
start () {
  log=$OUT/churn_$1.log
  : > "$log"
  # shellcheck disable=SC2046
  taskset -c "$SRV_CPU" $(server_cmd "$1") > "$log" 2>&1 &
  SRV_PID=$!
  port= i=0
  until port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\).*$/\1/p' "$log" | head -1) && [ -n "$port" ]; do
    i=$((i + 1))
    [ $i -lt 200 ] && kill -0 $SRV_PID 2>/dev/null || { echo "churn_profile: $1 did not start" >&2; cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d1s -H "Connection: close" "http://127.0.0.1:$port/" > /dev/null 2>&1
}

# wrk's request count from its output file
wrk_reqs () { sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$1"; }

profile () {
  data=$OUT/churn_$1.data
  start "$1"
  perf record -q -o "$data" -e raw_syscalls:sys_enter -e io_uring:io_uring_submit_req \
    -e io_uring:io_uring_poll_arm -e io_uring:io_uring_queue_async_work \
    -e sched:sched_switch -p $SRV_PID -- sleep "$((SECONDS_RUN + 1))" 2> "$OUT/churn_perf.err" &
  perf_pid=$!
  sleep 0.3                  # perf attached before the first request
  taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${SECONDS_RUN}s" -H "Connection: close" \
    "http://127.0.0.1:$port/" > "$OUT/churn_wrk.txt" 2>&1
  wait $perf_pid || true
  cleanup
  reqs=$(wrk_reqs "$OUT/churn_wrk.txt")
  [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { echo "churn_profile: wrk failed against $1" >&2; cat "$OUT/churn_wrk.txt" >&2; exit 1; }
  echo "== $1: $reqs connections (one request each) in ${SECONDS_RUN}s, per connection:"
  perf script -i "$data" -F event,trace 2>/dev/null | awk -v n="$reqs" -v unistd="$UNISTD" '
    BEGIN {
      while ((getline l < unistd) > 0)
        if (split(l, f, " ") == 3 && f[1] == "#define" && f[2] ~ /^__NR_/)
          name[f[3]] = substr(f[2], 6)
    }
    /sys_enter:/ { for (i = 1; i <= NF; i++) if ($i == "NR") { s = name[$(i + 1)]; if (s == "") s = "nr " $(i + 1); sys[s]++; nsys++ }; next }
    /io_uring_submit_req:/ { for (i = 1; i <= NF; i++) if ($i == "opcode") { o = $(i + 1); sub(/,$/, "", o); op[o]++; nop++ }; next }
    /io_uring_poll_arm:/ { other["poll armed (request waits on the socket)"]++; next }
    /io_uring_queue_async_work:/ { other["punted to io-wq (a worker thread)"]++; next }
    /sched_switch:/ { other["context switches (the server sleeps)"]++; next }
    function table(title, a, total,   k, keys, m, i, j, t) {
      m = 0
      for (k in a) keys[++m] = k
      for (i = 2; i <= m; i++) { t = keys[i]; for (j = i - 1; j >= 1 && a[keys[j]] < a[t]; j--) keys[j + 1] = keys[j]; keys[j + 1] = t }
      printf "  %s: %.3f\n", title, total / n
      for (i = 1; i <= m; i++) if (a[keys[i]] / n >= 0.0005) printf "    %-44s %.3f\n", keys[i], a[keys[i]] / n
    }
    END {
      table("system calls", sys, nsys)
      table("SQEs", op, nop)
      for (k in other) printf "  %-46s %.3f\n", k, other[k] / n
    }'
}

cycles () {                  # PERF_REPORT: cycles by kernel/user symbol
  data=$OUT/churn_$1.cycles
  start "$1"
  perf record -q -g -o "$data" -p $SRV_PID -- sleep "$((SECONDS_RUN + 1))" 2> "$OUT/churn_perf.err" &
  perf_pid=$!
  sleep 0.3
  taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${SECONDS_RUN}s" -H "Connection: close" \
    "http://127.0.0.1:$port/" > "$OUT/churn_wrk.txt" 2>&1
  wait $perf_pid || true
  cleanup
  reqs=$(wrk_reqs "$OUT/churn_wrk.txt")
  # server CPU time per connection (cpu-clock periods are nanoseconds), by
  # symbol; [k] marks the kernel's
  perf report -i "$data" --no-children --sort sym -g none --stdio -F period,sym 2>/dev/null |
    awk -v n="$reqs" '$1 ~ /^[0-9]+$/ { p = $1; $1 = ""; sub(/^ /, ""); printf "%.3f\t%s\n", p / n / 1000, $0 }' |
    sort -rn > "$OUT/churn_$1.syms"
  echo "== $1: server CPU per connection (perf record, cpu-clock; $reqs connections)"
  awk -F '\t' '{ if ($2 ~ /^\[k\]/) k += $1; else u += $1 }
    END { printf "  kernel %.1f us, user %.1f us, total %.1f us\n", k, u, k + u }' "$OUT/churn_$1.syms"
}

# the symbols' us per connection side by side, the biggest differences first
compare () {
  awk -F '\t' -v names="$*" '
    BEGIN { nn = split(names, N, " ") }
    FNR == 1 { f++ }
    { v[$2, f] += $1; seen[$2] = 1 }
    END {
      printf "  %-40s", "us per connection"; for (i = 1; i <= nn; i++) printf " %10s", N[i]; printf " %10s\n", "difference"
      for (s in seen) { d[s] = v[s, 1] - v[s, nn]; if (d[s] < 0) a[s] = -d[s]; else a[s] = d[s] }
      for (k = 0; k < 30; k++) {
        best = ""; for (s in seen) if (!(s in done) && (best == "" || a[s] > a[best])) best = s
        if (best == "" || a[best] < 0.1) break
        done[best] = 1
        printf "  %-40s", substr(best, 1, 40); for (i = 1; i <= nn; i++) printf " %10.2f", v[best, i]; printf " %+10.2f\n", d[best]
      }
    }' $(for s in "$@"; do echo "$OUT/churn_$s.syms"; done)
}

# CPU_ROUNDS=N: user and system time per connection, untraced, from
# /proc/PID/stat across each wrk run; the servers alternate, N rounds,
# then the medians (the machine's noise: compare in alternation only)
cpu_rounds () {
  : > "$OUT/churn_cpu.txt"
  r=1
  while [ $r -le "$CPU_ROUNDS" ]; do
    for s in "$@"; do
      start "$s"
      t0=$(ticks $SRV_PID)
      taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${SECONDS_RUN}s" -H "Connection: close" \
        "http://127.0.0.1:$port/" > "$OUT/churn_wrk.txt" 2>&1
      t1=$(ticks $SRV_PID)
      cleanup
      echo "$s $r $t0 $t1 $(wrk_reqs "$OUT/churn_wrk.txt")" >> "$OUT/churn_cpu.txt"
    done
    r=$((r + 1))
  done
  echo "== server CPU per connection, untraced (/proc/PID/stat), $CPU_ROUNDS round(s) in alternation:"
  awk -v hz="$HZ" -v names="$*" '
    function median(n, a,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { k = ++n[$1]; u[$1, k] = ($5 - $3) / hz / $7 * 1e6; s[$1, k] = ($6 - $4) / hz / $7 * 1e6
      t[$1, k] = u[$1, k] + s[$1, k]; line[$1] = line[$1] sprintf(" %.1f", t[$1, k]) }
    END {
      m = split(names, N, " ")
      for (i = 1; i <= m; i++) {
        x = N[i]; c = n[x]
        for (k = 1; k <= c; k++) { a[k] = u[x, k]; b[k] = s[x, k]; d[k] = t[x, k] }
        printf "  %-12s user %5.1f us  system %5.1f us  total %5.1f us  (medians; totals by round:%s)\n",
          x, median(c, a), median(c, b), median(c, d), line[x]
      }
    }' "$OUT/churn_cpu.txt"
}

set -- ${*:-uring-http c}
if [ -n "$CPU_ROUNDS" ]; then
  cpu_rounds "$@"
  exit 0
fi
for s in "$@"; do
  profile "$s"
  [ -z "$PERF_REPORT" ] || cycles "$s"
done
if [ -n "$PERF_REPORT" ] && [ $# -ge 2 ]; then
  echo "== where the CPU time differs (first server minus last), per connection:"
  compare "$@"
fi
