#!/bin/sh
# bench/static_callgrind.sh: user-space instructions per static file
# request (examples/serve_dir.lua, uring.http.static), counted by
# callgrind: deterministic, unlike this VM's timings.
#
#   sh bench/static_callgrind.sh            f4k, runs of 4 s and 12 s
#   FILE=f1m LO=4 HI=12 sh bench/static_callgrind.sh
#
# The server runs under `valgrind --tool=callgrind` for LO and then HI
# seconds while `wrk -t1 -c50` asks for the file; it prints how many
# requests it served.  The count per request is (Ir(HI) - Ir(LO)) /
# (requests(HI) - requests(LO)), so start-up and shutdown cancel out.
set -e
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
FILE=${FILE:-f4k}
LO=${LO:-4} HI=${HI:-12}
OUT=build/bench
mkdir -p "$OUT"
command -v valgrind >/dev/null 2>&1 || { echo "bench: valgrind not found" >&2; exit 1; }
make -s all
T=$(mktemp -d /tmp/uring-static-cg.XXXXXX)
trap 'cp "$T"/cg.* "$OUT"/ 2>/dev/null; rm -rf "$T"' EXIT INT TERM
head -c 4096 /dev/urandom > "$T/f4k"
head -c 1048576 /dev/urandom > "$T/f1m"

# run S: "instructions requests" of one server run of S seconds
run () {
  log=$T/log.$1 cg=$T/cg.$1
  : > "$log"
  env -u LD_PRELOAD -u URING_CPATH valgrind --tool=callgrind --callgrind-out-file="$cg" \
    "$LUA" examples/serve_dir.lua 0 --dir "$T" --seconds "$1" > "$log" 2>&1 &
  pid=$!
  i=0
  until port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\).*$/\1/p' "$log" | head -1) && [ -n "$port" ]; do
    i=$((i + 1))
    [ $i -lt 600 ] && kill -0 $pid 2>/dev/null || { echo "bench: server did not start:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  env -u LD_PRELOAD wrk -t1 -c50 -d"$(($1 + 5))s" "http://127.0.0.1:$port/$FILE" > "$T/wrk.txt" 2>&1 &
  wrk=$!
  wait $pid || true
  kill $wrk 2>/dev/null || true
  wait $wrk 2>/dev/null || true
  echo "$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$cg") $(sed -n 's/^serve_dir: \([0-9]*\) requests.*/\1/p' "$log")"
}

a=$(run "$LO") b=$(run "$HI")
echo "$a $b" | awk -v f="$FILE" '$2 && $4 > $2 {
  printf "static %s: %.0f instructions per request (%d and %d requests)\n", f, ($3 - $1) / ($4 - $2), $2, $4 }
  !($2 && $4 > $2) { print "bench: no counts: " $0 > "/dev/stderr"; exit 1 }'
