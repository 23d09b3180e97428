# bench/lib.sh: sourced by the bench scripts (after they cd to the top):
# the one server they run at a time, stopped however the script ends.
SRV_PID=
cleanup () {
  if [ -n "$SRV_PID" ]; then
    kill "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
