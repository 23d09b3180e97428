#!/bin/sh
# bench/files.sh: file I/O, lua-uring against luv, plain io, fio, cp and C.
#
#   sh bench/files.sh          5 alternating rounds on a 1 GiB file (~3 min)
#   sh bench/files.sh quick    (or BENCH_QUICK=1) one tiny round on an 8 MiB
#                              file: checks that it builds and runs; its
#                              numbers mean nothing
#   ROUNDS=5 SIZE_MB=2048 sh bench/files.sh      overrides
#   WORKLOADS=copy sh bench/files.sh   only the named workloads (any of
#                              "cache direct copy"; default all three); the
#                              ratios of the others are left out of files.tsv
#
# Workloads (contenders alternate within each round; medians of the rounds):
#   cache   random 4 KiB reads from the page-cached file, QD 1 and 32:
#           uring (bench/randread.lua: 1 or 32 tasks doing file:pread),
#           at QD 32 also uring-fixed (configure{fixed_buffers = 32}:
#           READ_FIXED into registered buffers) and uring-buf
#           (file:pread(buf, 4096, off) into a uring.buffer: no string),
#           luv (uv.fs_read, 1 or 32 requests in flight), io (plain Lua
#           seek+read, QD 1 only), fio io_uring (iodepth 1/32), fio psync
#           (QD 1), c (bench/randread.c, raw liburing: the ceiling)
#   direct  the same on the disk: uring (and at QD 32 uring-fixed and
#           uring-buf), fio and c with O_DIRECT; io and luv
#           cannot open O_DIRECT, so the file's page cache is dropped before
#           each of their runs (dd iflag=nocache: this file only)
#   copy    sequential copy of the file, source warm: uring.copyfile
#           (bench/copy.lua) against cp
# Prints each round, the medians (with min..max), and each ratio as the
# median of its per-round ratios (with their min..max); writes the ratios
# to $BENCH_RESULTS/files.tsv (label, ratio, target, note; higher ratio =
# better for lua-uring).
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
OUT=build/bench
mkdir -p "$OUT"

if [ "$1" = quick ] || { [ -n "$BENCH_QUICK" ] && [ "$BENCH_QUICK" != 0 ]; }; then
  ROUNDS=1 SIZE_MB=8 OPS=2000 LUV_OPS=1000 DOPS=500 FIO_SECS=0.2
  QUICK=1
  BENCH_RESULTS=${BENCH_RESULTS:-build/bench/results}
else
  ROUNDS=${ROUNDS:-5} SIZE_MB=${SIZE_MB:-1024}
  OPS=${OPS:-400000}        # page cache: ~0.3-1 s per fast contender
  LUV_OPS=${LUV_OPS:-100000}
  DOPS=${DOPS:-30000}       # disk: ~1-2 s at QD 1, less at QD 32
  FIO_SECS=${FIO_SECS:-1.5}
  QUICK=
  BENCH_RESULTS=${BENCH_RESULTS:-bench/results}
fi
mkdir -p "$BENCH_RESULTS"
WORKLOADS=${WORKLOADS:-cache direct copy}
for w in $WORKLOADS; do
  case $w in cache|direct|copy) ;;
  *) echo "bench: unknown workload $w (cache, direct, copy)" >&2; exit 1 ;;
  esac
done
# wants NAME: is workload NAME selected?
wants () { case " $WORKLOADS " in *" $1 "*) return 0 ;; esac; return 1; }

CFLAGS_URING=$(pkg-config --cflags liburing 2>/dev/null || true)
LIBS_URING=$(pkg-config --libs liburing 2>/dev/null || echo -luring)
$CC -O2 -Wall -Wextra $CFLAGS_URING -o "$OUT/randread" bench/randread.c $LIBS_URING

for tool in fio cp dd; do
  command -v $tool >/dev/null || { echo "bench: $tool not found (apt-get install $tool)" >&2; exit 1; }
done

# the data file: real bytes (a sparse file would read holes, not the disk);
# kept between runs in build/bench (not in git)
DATA=$OUT/files-${SIZE_MB}M.dat
COPY=$OUT/files.copy
want=$((SIZE_MB * 1048576))
if [ ! -f "$DATA" ] || [ "$(stat -c %s "$DATA")" != "$want" ]; then
  echo "making $DATA ($SIZE_MB MiB of random bytes)"
  head -c "$want" /dev/urandom > "$DATA.tmp"
  sync "$DATA.tmp"           # its writeback would slow the first rounds
  mv "$DATA.tmp" "$DATA"
fi
avail=$(df -Pk "$OUT" | awk 'NR == 2 { print $4 }')
if [ "$avail" -lt $((SIZE_MB * 1024 + 65536)) ]; then
  echo "bench: not enough room in $OUT for the copy of $SIZE_MB MiB" >&2; exit 1
fi
rm -f "$COPY"
trap 'rm -f "$COPY"' EXIT

warm () { cat "$DATA" > /dev/null; }
cold () { dd if="$DATA" iflag=nocache count=0 status=none; }

# fio_iops ENGINE QD DIRECT: fio's read IOPS (terse field 8), time based
fio_iops () {
  fio --name=randread --filename="$DATA" --rw=randread --bs=4k \
    --ioengine="$1" --iodepth="$2" --direct="$3" --invalidate=0 \
    --runtime="$FIO_SECS" --time_based --output-format=terse \
    --terse-version=3 2>/dev/null | awk -F';' '{ print $8 }'
}
# iops CMD...: the X of a contender's "NAME: X iops" line
iops () { "$@" | sed -n 's/^[a-z0-9-]*: \([0-9.]*\) iops.*/\1/p'; }
# secs CMD...: wall seconds of a command
secs () {
  t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
# record NAME VALUE: keep one measurement; say it on this round's line
record () {
  [ -n "$2" ] || { echo "bench: $1 failed in round $r" >&2; exit 1; }
  echo "$1 $2" >> "$OUT/files_results.txt"
  line="$line $1 $2"
}

echo "nproc $(nproc), kernel $(uname -r), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
echo "file $DATA: $SIZE_MB MiB on $(df -PT "$OUT" | awk 'NR == 2 { print $2 " " $1 }'); $ROUNDS round(s)"
echo "ops per run: cache $OPS (luv $LUV_OPS), disk $DOPS; fio ${FIO_SECS}s per run"
: > "$OUT/files_results.txt"
R="$LUA bench/randread.lua"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  if wants cache; then
  warm
  line="round $r cache iops:"
  for qd in 1 32; do
    record "uring-qd$qd" "$(iops $R uring "$DATA" $qd "$OPS")"
    if [ $qd = 32 ]; then
      record "uring-fixed-qd32" "$(iops $R uring-fixed "$DATA" 32 "$OPS")"
      record "uring-buf-qd32" "$(iops $R uring-buf "$DATA" 32 "$OPS")"
    fi
    record "luv-qd$qd" "$(iops $R luv "$DATA" $qd "$LUV_OPS")"
    if [ $qd = 1 ]; then record "io-qd1" "$(iops $R io "$DATA" 1 "$OPS")"; fi
    record "fio-uring-qd$qd" "$(fio_iops io_uring $qd 0)"
    if [ $qd = 1 ]; then record "fio-psync-qd1" "$(fio_iops psync 1 0)"; fi
    record "c-qd$qd" "$(iops "$OUT/randread" "$DATA" $qd "$OPS")"
  done
  echo "$line"
  fi
  if wants direct; then
  line="round $r disk iops:"
  for qd in 1 32; do
    record "d-uring-qd$qd" "$(iops $R uring "$DATA" $qd "$DOPS" direct)"
    if [ $qd = 32 ]; then
      record "d-uring-fixed-qd32" "$(iops $R uring-fixed "$DATA" 32 "$DOPS" direct)"
      record "d-uring-buf-qd32" "$(iops $R uring-buf "$DATA" 32 "$DOPS" direct)"
    fi
    record "d-fio-uring-qd$qd" "$(fio_iops io_uring $qd 1)"
    if [ $qd = 1 ]; then record "d-fio-psync-qd1" "$(fio_iops psync 1 1)"; fi
    record "d-c-qd$qd" "$(iops "$OUT/randread" "$DATA" $qd "$DOPS" direct)"
    cold
    if [ $qd = 1 ]; then record "cold-io-qd1" "$(iops $R io "$DATA" 1 "$DOPS")"
    else record "cold-luv-qd32" "$(iops $R luv "$DATA" 32 "$DOPS")"; fi
  done
  echo "$line"
  fi
  if wants copy; then
  warm
  # the first copy of a run pays for fresh memory (measured on the shared
  # VM: 1.2-2 s instead of 0.2 s, whoever copies first): an untimed one
  if [ "$r" = 1 ]; then rm -f "$COPY"; cp "$DATA" "$COPY"; fi
  line="round $r copy secs:"
  for _ in 1 2; do           # twice each: a 1 GiB copy is short and noisy
    rm -f "$COPY"; record cp "$(secs cp "$DATA" "$COPY")"
    rm -f "$COPY"; record uring-copyfile "$(secs $LUA bench/copy.lua "$DATA" "$COPY")"
    cmp -s "$DATA" "$COPY" || { echo "bench: the copy differs" >&2; exit 1; }
  done
  echo "$line"
  fi
  r=$((r + 1))
done
rm -f "$COPY"

# medians per contender; each ratio is the median of its per-round ratios
# (the two contenders ran back to back, so a slow spell of the shared
# machine hits both), with the spread of those ratios
awk -v tsv="$BENCH_RESULTS/files.tsv" -v quick="$QUICK" '
  function sort(a, n,   i, j, t) {      # insertion sort of a[1..n]
    for (i = 2; i <= n; i++) {
      t = a[i]
      for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
      a[j + 1] = t
    }
  }
  function med(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  # ratio LABEL A B TARGET NOTE: median over runs i of A[i]/B[i]
  function ratio(label, a, b, target, note,   i, n, x, r) {
    n = cnt[a] < cnt[b] ? cnt[a] : cnt[b]
    if (n == 0) return          # a workload left out by WORKLOADS
    for (i = 1; i <= n; i++) r[i] = val[a, i] / val[b, i]
    sort(r, n)
    x = med(r, n)
    printf "ratio %s: %.2f (%.2f..%.2f)%s\n", label, x, r[1], r[n],
      target == "" ? "" : " target >= " target
    printf "%s\t%.2f\t%s\t%s\n", label, x, target, note > tsv
  }
  { if (!($1 in cnt)) order[++nk] = $1; val[$1, ++cnt[$1]] = $2 }
  END {
    for (i = 1; i <= nk; i++) {
      k = order[i]
      for (j = 1; j <= cnt[k]; j++) a[j] = val[k, j]
      sort(a, cnt[k])
      printf "median %-16s %12.3f  (%s..%s, %d runs)\n", k, med(a, cnt[k]), a[1], a[cnt[k]], cnt[k]
    }
    printf "" > tsv
    ratio("randread-cache-qd32 vs fio", "uring-qd32", "fio-uring-qd32", "0.8", "page cache, 32 tasks vs fio io_uring iodepth 32")
    ratio("randread-cache-qd32 vs luv", "uring-qd32", "luv-qd32", "3", "page cache, 32 tasks vs luv fs_read, 32 in flight")
    ratio("randread-cache-qd32 vs c", "uring-qd32", "c-qd32", "", "page cache, vs raw liburing QD 32")
    ratio("randread-cache-qd32 fixed/plain", "uring-fixed-qd32", "uring-qd32", "", "knob: configure{fixed_buffers = 32} (READ_FIXED), page cache, 32 tasks")
    ratio("randread-cache-qd32 buf/plain", "uring-buf-qd32", "uring-qd32", "", "file:pread(buf, 4096, off) into a uring.buffer (no string per read) vs pread(4096, off), page cache")
    ratio("randread-cache-qd32 buf vs fio", "uring-buf-qd32", "fio-uring-qd32", "0.8", "page cache, 32 tasks reading into uring.buffers vs fio io_uring iodepth 32")
    ratio("randread-cache-qd32 buf vs luv", "uring-buf-qd32", "luv-qd32", "3", "page cache, 32 tasks reading into uring.buffers vs luv fs_read, 32 in flight")
    ratio("randread-cache-qd32 buf vs c", "uring-buf-qd32", "c-qd32", "", "page cache, 32 tasks reading into uring.buffers vs raw liburing QD 32")
    ratio("randread-cache-qd1 vs fio", "uring-qd1", "fio-uring-qd1", "", "page cache, 1 task vs fio io_uring iodepth 1")
    ratio("randread-cache-qd1 vs io", "uring-qd1", "io-qd1", "", "page cache, 1 task vs blocking Lua io seek+read")
    ratio("randread-cache-qd1 vs psync", "uring-qd1", "fio-psync-qd1", "", "page cache, 1 task vs fio psync (blocking pread)")
    ratio("randread-cache-qd1 vs luv", "uring-qd1", "luv-qd1", "", "page cache, 1 task vs luv fs_read, 1 in flight")
    ratio("randread-disk-qd32 vs fio", "d-uring-qd32", "d-fio-uring-qd32", "0.85", "O_DIRECT, 32 tasks vs fio io_uring iodepth 32")
    ratio("randread-disk-qd32 vs io", "d-uring-qd32", "cold-io-qd1", "4", "O_DIRECT 32 tasks vs blocking Lua io after dropping the file cache")
    ratio("randread-disk-qd32 vs luv", "d-uring-qd32", "cold-luv-qd32", "", "O_DIRECT 32 tasks vs luv 32 in flight after dropping the file cache")
    ratio("randread-disk-qd32 vs c", "d-uring-qd32", "d-c-qd32", "", "O_DIRECT, vs raw liburing QD 32")
    ratio("randread-disk-qd32 fixed/plain", "d-uring-fixed-qd32", "d-uring-qd32", "", "knob: configure{fixed_buffers = 32} (READ_FIXED), O_DIRECT, 32 tasks")
    ratio("randread-disk-qd32 buf/plain", "d-uring-buf-qd32", "d-uring-qd32", "", "file:pread(buf, 4096, off) into a uring.buffer vs pread(4096, off), O_DIRECT")
    ratio("randread-disk-qd32 fixed vs fio", "d-uring-fixed-qd32", "d-fio-uring-qd32", "0.85", "O_DIRECT, 32 tasks with fixed_buffers vs fio io_uring iodepth 32")
    ratio("randread-disk-qd32 buf vs fio", "d-uring-buf-qd32", "d-fio-uring-qd32", "0.85", "O_DIRECT, 32 tasks reading into uring.buffers vs fio io_uring iodepth 32")
    ratio("randread-disk-qd32 buf vs c", "d-uring-buf-qd32", "d-c-qd32", "", "O_DIRECT, 32 tasks reading into uring.buffers vs raw liburing QD 32")
    ratio("randread-disk-qd1 vs fio", "d-uring-qd1", "d-fio-uring-qd1", "", "O_DIRECT, 1 task vs fio io_uring iodepth 1")
    ratio("randread-disk-qd1 vs psync", "d-uring-qd1", "d-fio-psync-qd1", "", "O_DIRECT, 1 task vs fio psync")
    ratio("copy vs cp", "cp", "uring-copyfile", "1", "seconds of cp / seconds of uring.copyfile, source cached")
    close(tsv)
    if (quick) print "(quick run: the figures mean nothing)"
  }' "$OUT/files_results.txt"
echo "wrote $BENCH_RESULTS/files.tsv"
