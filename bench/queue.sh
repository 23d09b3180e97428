#!/bin/sh
# bench/queue.sh: a uring.queue hand-off against a uring.nop() round trip,
# cqueues condition variables and copas-style polling with uring.yield().
#
#   sh bench/queue.sh          5 alternating rounds (well under 60 s)
#   sh bench/queue.sh quick    (or BENCH_QUICK=1) one tiny round: checks that
#                              the bench still builds and runs; its numbers
#                              mean nothing
#
# Contenders (bench/queue.lua), run in alternation each round so drift
# hits all alike; "+100" is the same with 100 more tasks waiting meanwhile:
#   queue     uring.queue(1), a producer task and a consumer task
#   nop       one task doing uring.nop(): the ring's per-op round trip
#   poll      a one-slot box, both sides uring.yield() until it is ready
#   cqueues   a one-slot box, both sides on a cqueues.condition
# Prints each round, the medians (ns/item) and the ratios, and writes the
# ratios to $BENCH_RESULTS/queue.tsv (bench/README.md).
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
OUT=build/bench
mkdir -p "$OUT"

if [ "$1" = quick ] || { [ -n "$BENCH_QUICK" ] && [ "$BENCH_QUICK" != 0 ]; }; then
  ROUNDS=1 ITEMS=2000 IDLE_ITEMS=500
  BENCH_RESULTS=${BENCH_RESULTS:-build/bench/results}
else
  ROUNDS=${ROUNDS:-5} ITEMS=500000 IDLE_ITEMS=100000
  BENCH_RESULTS=${BENCH_RESULTS:-bench/results}
fi
mkdir -p "$BENCH_RESULTS"

# run one contender; print its ns/item figure
nsitem () {
  "$LUA" bench/queue.lua "$@" | sed -n 's/^[a-z]*: \([0-9.]*\) ns\/item.*/\1/p'
}

: > "$OUT/queue.txt"
echo "nproc $(nproc), kernel $(uname -r), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
echo "items per run: $ITEMS, with 100 idle tasks $IDLE_ITEMS; $ROUNDS round(s)"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  q=$(nsitem queue "$ITEMS")
  n=$(nsitem nop "$ITEMS")
  p=$(nsitem poll "$ITEMS")
  c=$(nsitem cqueues "$ITEMS")
  qi=$(nsitem queue "$IDLE_ITEMS" 100)
  pi=$(nsitem poll "$IDLE_ITEMS" 100)
  ci=$(nsitem cqueues "$IDLE_ITEMS" 100)
  for v in "$q" "$n" "$p" "$c" "$qi" "$pi" "$ci"; do
    [ -n "$v" ] || { echo "bench: a contender failed in round $r" >&2; exit 1; }
  done
  echo "round $r: queue $q  nop $n  poll $p  cqueues $c  |  +100 idle: queue $qi  poll $pi  cqueues $ci"
  echo "$q $n $p $c $qi $pi $ci" >> "$OUT/queue.txt"
  r=$((r + 1))
done

awk -v rounds="$ROUNDS" -v tsv="$BENCH_RESULTS/queue.tsv" '
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
  { for (c = 1; c <= 7; c++) v[NR, c] = $c }
  END {
    q = median(1); n = median(2); p = median(3); c = median(4)
    qi = median(5); pi = median(6); ci = median(7)
    printf "median ns/item: queue %.1f  nop %.1f  poll %.1f  cqueues %.1f  |  +100 idle: queue %.1f  poll %.1f  cqueues %.1f\n", q, n, p, c, qi, pi, ci
    printf "ratio queue/nop: %.2f (target <= 2)\n", q / n
    printf "ratio queue/cqueues: %.2f\n", q / c
    printf "ratio queue/poll: %.2f;  with 100 idle tasks: %.2f\n", q / p, qi / pi
    printf "ratio queue/cqueues with 100 idle tasks: %.2f\n", qi / ci
    # for bench/report.lua: higher is better, so their time over ours
    printf "queue: uring.nop() / queue hand-off\t%.3f\t0.5\tqueue %.1f ns/item, nop %.1f ns (target: a hand-off at most 2x a nop, ratio >= 0.5); %d round(s)\n", n / q, q, n, rounds > tsv
    printf "queue: cqueues condition / uring.queue\t%.3f\t\tcqueues %.1f ns/item, queue %.1f\n", c / q, c, q >> tsv
    printf "queue: uring.yield polling / uring.queue\t%.3f\t\tpoll %.1f ns/item; two tasks only: every yield finds work\n", p / q, p >> tsv
    printf "queue: uring.yield polling / uring.queue, 100 idle tasks\t%.3f\t\tpoll %.1f ns/item, queue %.1f; idle pollers are resumed every turn\n", pi / qi, pi, qi >> tsv
    printf "queue: cqueues condition / uring.queue, 100 idle tasks\t%.3f\t\tcqueues %.1f ns/item, queue %.1f\n", ci / qi, ci, qi >> tsv
  }' "$OUT/queue.txt"
echo "ratios written to $BENCH_RESULTS/queue.tsv"
