#!/bin/sh
# bench/run.sh: uring.nop() through the loop against raw liburing NOPs.
#
#   sh bench/run.sh          5 alternating rounds (well under 60 s)
#   sh bench/run.sh quick    (or BENCH_QUICK=1) one tiny round: checks that
#                            the bench still builds and runs; its numbers
#                            mean nothing
#
# Contenders, run in alternation each round so drift hits all alike:
#   c-batched   bench/nop.c: fill a 256-entry SQ, one submit_and_wait, reap
#   c-single    bench/nop.c: one NOP, wait for it, repeat
#   lua-tasks   bench/nop.lua: 256 tasks each calling uring.nop() in a loop
#   lua-single  bench/nop.lua: one task calling uring.nop() in a loop
# Prints each round, the medians (ns/op) and the ratios, and writes the
# ratios to $BENCH_RESULTS/nop.tsv (bench/README.md).
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
OUT=build/bench
mkdir -p "$OUT"

if [ "$1" = quick ] || { [ -n "$BENCH_QUICK" ] && [ "$BENCH_QUICK" != 0 ]; }; then
  ROUNDS=1 BATCH_OPS=5000 SINGLE_OPS=2000
  BENCH_RESULTS=${BENCH_RESULTS:-build/bench/results}
else
  ROUNDS=${ROUNDS:-5} BATCH_OPS=2000000 SINGLE_OPS=500000
  BENCH_RESULTS=${BENCH_RESULTS:-bench/results}
fi
mkdir -p "$BENCH_RESULTS"

CFLAGS_URING=$(pkg-config --cflags liburing 2>/dev/null || true)
LIBS_URING=$(pkg-config --libs liburing 2>/dev/null || echo -luring)
$CC -O2 -Wall -Wextra $CFLAGS_URING -o "$OUT/nop" bench/nop.c $LIBS_URING

# run one contender; print its ns/op figure
nsop () {
  "$@" | sed -n 's/^[a-z-]*: \([0-9.]*\) ns\/op.*/\1/p'
}

: > "$OUT/results.txt"
echo "nproc $(nproc), kernel $(uname -r), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
echo "ops per run: batched $BATCH_OPS, one-at-a-time $SINGLE_OPS; $ROUNDS round(s)"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  cb=$(nsop "$OUT/nop" batched "$BATCH_OPS" 256)
  cs=$(nsop "$OUT/nop" single "$SINGLE_OPS" 256)
  lt=$(nsop "$LUA" bench/nop.lua tasks "$BATCH_OPS" 256)
  ls=$(nsop "$LUA" bench/nop.lua single "$SINGLE_OPS")
  for v in "$cb" "$cs" "$lt" "$ls"; do
    [ -n "$v" ] || { echo "bench: a contender failed in round $r" >&2; exit 1; }
  done
  echo "round $r: c-batched $cb  c-single $cs  lua-tasks $lt  lua-single $ls"
  echo "$cb $cs $lt $ls" >> "$OUT/results.txt"
  r=$((r + 1))
done

awk -v rounds="$ROUNDS" -v tsv="$BENCH_RESULTS/nop.tsv" '
  function median(col,   n, i, j, t, a) {
    n = 0
    for (i = 1; i <= NR; i++) a[++n] = v[i, col]
    for (i = 2; i <= n; i++) {             # insertion sort
      t = a[i]
      for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
      a[j + 1] = t
    }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { for (c = 1; c <= 4; c++) v[NR, c] = $c }
  END {
    cb = median(1); cs = median(2); lt = median(3); ls = median(4)
    printf "median ns/op: c-batched %.1f  c-single %.1f  lua-tasks %.1f  lua-single %.1f\n", cb, cs, lt, ls
    printf "ratio lua-tasks/c-batched: %.2f (target <= 5)\n", lt / cb
    printf "ratio lua-tasks/c-single: %.2f (target < 1)\n", lt / cs
    printf "ratio lua-single/c-single: %.2f\n", ls / cs
    # for bench/report.lua: higher is better, so C time over ours
    printf "nop: C batched / uring.nop() in tasks\t%.3f\t0.2\tper-op cost: lua-tasks %.1f ns, c-batched %.1f ns (target: at most 5x, ratio >= 0.2); %d round(s)\n", cb / lt, lt, cb, rounds > tsv
    printf "nop: C one-at-a-time / uring.nop() in tasks\t%.3f\t\tc-single %.1f ns; one NOP per io_uring_enter against 256 tasks batched by the loop\n", cs / lt, cs > tsv
  }' "$OUT/results.txt"
echo "ratios written to $BENCH_RESULTS/nop.tsv"
