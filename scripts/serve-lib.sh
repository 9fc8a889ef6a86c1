# Shared by scripts/browser-test.sh and scripts/loadtest.sh (source it, don't run it): start
# `resnet serve` on free ports and wait for its address lines, stop it, read its RSS.
#
#   serve_start LOG ARGS...   starts "$RESNET_BIN serve ARGS --port 0 --management-port 0",
#                             stdout+stderr to LOG; sets SERVE_PID, SERVE_URL (inference) and
#                             SERVE_MGMT_URL from the "inference http://..." and
#                             "management http://..." lines; fails (printing LOG) if the
#                             server exits or prints no address within SERVE_START_TIMEOUT s (180).
#   serve_stop                SIGTERM, up to 60 s for a graceful exit (then SIGKILL); returns
#                             the server's exit status.
#   serve_rss_kb              the server's VmRSS in KiB (from /proc/PID/status).

SERVE_PID=""
SERVE_URL=""
SERVE_MGMT_URL=""

serve_start() {
  local log=$1
  shift
  : >"$log" # exists before the first read below, whenever the server opens it
  "$RESNET_BIN" serve "$@" --port 0 --management-port 0 >"$log" 2>&1 &
  SERVE_PID=$!
  local waited=0 limit=${SERVE_START_TIMEOUT:-180}
  while :; do
    SERVE_URL=$(sed -n 's/^inference \(http:\/\/[^ ]*\).*/\1/p' "$log" | head -n 1)
    SERVE_MGMT_URL=$(sed -n 's/^management \(http:\/\/[^ ]*\).*/\1/p' "$log" | head -n 1)
    if [ -n "$SERVE_URL" ] && [ -n "$SERVE_MGMT_URL" ]; then
      return 0
    fi
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then
      echo "resnet serve exited before printing its addresses; its output:" >&2
      sed 's/^/  | /' "$log" >&2
      SERVE_PID=""
      return 1
    fi
    if [ "$waited" -ge $((limit * 10)) ]; then
      echo "resnet serve printed no address within ${limit} s; its output:" >&2
      sed 's/^/  | /' "$log" >&2
      serve_stop || true
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

serve_stop() {
  [ -n "$SERVE_PID" ] || return 0
  local pid=$SERVE_PID status=0 i
  SERVE_PID=""
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "resnet serve (pid $pid) still running 60 s after SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || status=$?
  return "$status"
}

serve_rss_kb() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$SERVE_PID/status"
}
