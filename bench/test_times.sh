#!/bin/bash
# bench/test_times.sh: where `make test`'s time goes.  Runs each spec file
# on its own in each pass spec/run.lua runs it in (the first pass; the
# #io files under the three ring setups; the #net files with registered
# files, with the matrix's STRESS counts), then the fuzzer and the OOM
# sample, one after the other, and prints a line per file and pass:
#
#   pass  file  wall-s  cpu-s  tests  failed
#
# then the totals per pass, largest first.  Wall times depend on the
# machine's load (compare shares, and cpu-s, which is steadier); the
# passes and counts here must follow spec/run.lua's.
#
#   bash bench/test_times.sh [OUT.tsv]     (default build/test_times.tsv)
set -u
cd "$(dirname "$0")/.."
out=${1:-build/test_times.tsv}
mkdir -p "$(dirname "$out")"
: >"$out"
tmp=$(mktemp -d /tmp/uring-times.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
STRESS="URING_CLOSE_ROUNDS=2500 IODIFF_N=800 URING_INTEGRITY_MIB=64"

# the spec files whose describe or it titles carry the busted tag #$1
tagged() {
  grep -lE "[a-z_]+\(\s*\"[^\"]*#$1([^a-zA-Z0-9_]|\")" $(find spec -name '*_spec.lua' | sort)
}

# pass  label  env  command...: one timed row
row() {
  local pass=$1 label=$2 env=$3; shift 3
  /usr/bin/time -f "%e %U %S" -o "$tmp/time" env $env "$@" >"$tmp/out" 2>&1
  local ok bad
  ok=$(grep -c '^ok ' "$tmp/out"); bad=$(grep -c '^not ok' "$tmp/out")
  read -r wall user sys <"$tmp/time"
  printf '%s\t%s\t%s\t%.2f\t%s\t%s\n' "$pass" "$label" "$wall" \
    "$(awk "BEGIN {print $user + $sys}")" "$ok" "$bad" | tee -a "$out"
}

B="lua5.4 /usr/bin/busted -o TAP"
for f in $(find spec -name '*_spec.lua' | sort); do row first "$f" "" $B "$f"; done
for setup in URING_TEST_RING=4 URING_TEST_SQPOLL=1 "URING_TEST_SQPOLL=1 URING_TEST_RING=4"; do
  for f in $(tagged io); do row "${setup// /+}" "$f" "$setup $STRESS" $B --tags=io "$f"; done
done
for f in $(tagged net); do row fixed "$f" "URING_TEST_FIXED_FILES=8 $STRESS" $B --tags=net "$f"; done
row fuzz spec/fuzz/run.lua "" lua5.4 spec/fuzz/run.lua --seconds 30 --cpath 'build-asan/?.so'
row oom spec/oom/run.lua "" lua5.4 spec/oom/run.lua --sample 100

echo "# totals per pass: wall-s cpu-s tests"
awk -F'\t' '{w[$1] += $3; c[$1] += $4; n[$1] += $5}
  END {for (p in w) printf "%-40s %8.1f %8.1f %6d\n", p, w[p], c[p], n[p]}' "$out" | sort -k2 -rn
