#!/bin/sh
# Load soak: wrk (tests/soak.lua) against the module on loopback with the tiny
# model, at several times the concurrency the queue admits, mixing valid
# generations, invalid requests and preflights. Fails unless every status is
# 200, 204 (preflight), 400, 429 or a deliberate 503 (full queue, Retry-After),
# no socket errors, the worker's RSS stays flat (end vs start after a warm-up)
# and no worker exited on a signal. Prints the figures; writes them to
# $SOAK_OUT (key=value) for the README's table.
# Usage: tests/soak.sh MODULE.so MODEL_DIR   (SOAK_SECONDS, SOAK_PORT, SOAK_OUT)
MODULE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MODEL=$(cd "$2" && pwd)
NGINX=${TEST_NGINX_BINARY:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx
command -v wrk >/dev/null 2>&1 || { echo "soak: wrk not found (apt-get install wrk)"; exit 1; }
SECONDS_RUN=${SOAK_SECONDS:-60}
PORT=${SOAK_PORT:-1988}
OUT=${SOAK_OUT:-/dev/null}
BATCH=2 QUEUE=4
CONNS=$((4 * (BATCH + QUEUE)))   # four times what the queue admits
ROOT=$(pwd)
TMP=$(mktemp -d)
chmod 755 "$TMP"   # workers run as nobody when the master is root
mkdir -p "$TMP/logs"
cat > "$TMP/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 1;
error_log $TMP/logs/error.log notice;
pid $TMP/logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMP/body;
    client_max_body_size 16k;
    musicgen_model $MODEL;
    musicgen_batch $BATCH;
    musicgen_queue $QUEUE;
    musicgen_threads 1;
    server {
        listen 127.0.0.1:$PORT;
        location /generate {
            musicgen on;
            musicgen_max_duration 2;
            musicgen_default_duration 1;
            musicgen_cors_origins https://app.example;
        }
        location /status { musicgen_status; allow 127.0.0.1; deny all; }
    }
}
CONF
cleanup() { "$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -s stop 2>/dev/null; sleep 0.5; rm -rf "$TMP"; }
trap cleanup EXIT
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" || { echo "soak: nginx did not start"; exit 1; }
sleep 0.5
URL=http://127.0.0.1:$PORT
worker_rss_kb() { # the worker's resident set, in KiB
    w=$(pgrep -P "$(cat "$TMP/logs/nginx.pid")" | head -n 1)
    awk '/^VmRSS:/ { print $2 }' "/proc/$w/status"
}
# warm-up: the allocator's arenas and the engine's scratch reach their size
wrk -t 2 -c "$CONNS" -d 5s --timeout 30s -s "$ROOT/tests/soak.lua" "$URL" > "$TMP/warmup" 2>&1
rss0=$(worker_rss_kb)
wrk -t 2 -c "$CONNS" -d "${SECONDS_RUN}s" --timeout 30s -s "$ROOT/tests/soak.lua" "$URL" > "$TMP/run" 2>&1
rss1=$(worker_rss_kb)
status=$(curl -s -m 5 "$URL/status")
val() { sed -n "s/^$1=//p" "$TMP/run" | head -n 1; }
fail=0
problem() { echo "soak: FAIL $*"; fail=1; }
requests=$(val requests)
[ -n "$requests" ] || { cat "$TMP/run"; problem "wrk printed no summary"; }
statuses=$(sed -n 's/^status_\([0-9]*\)=\([0-9]*\)/\1:\2/p' "$TMP/run" | sort | tr '\n' ' ')
for s in $(sed -n 's/^status_\([0-9]*\)=.*/\1/p' "$TMP/run"); do
    case $s in 200|204|400|429|503) ;; *) problem "status $s ($(val "status_$s") responses)";; esac
done
[ "$(val bad_503)" = 0 ] || problem "$(val bad_503) 503s that were not the full queue's"
[ "${requests:-0}" -gt 0 ] && [ "$(val status_200)" -gt 0 ] 2>/dev/null || problem "no generation succeeded"
for e in connect read write timeout; do
    [ "$(val errors_$e)" = 0 ] || problem "$(val errors_$e) socket $e errors"
done
# flat: at most 10 % + 8 MiB above the warmed-up size
limit=$((rss0 + rss0 / 10 + 8192))
[ "$rss1" -le "$limit" ] || problem "worker RSS grew from $rss0 to $rss1 KiB (limit $limit)"
if grep -q 'exited on signal' "$TMP/logs/error.log"; then
    problem "a worker crashed:"; grep -B3 'exited on signal' "$TMP/logs/error.log"
fi
if grep -Eq '\[(alert|crit|emerg)\]' "$TMP/logs/error.log"; then
    problem "alerts in error.log:"; grep -E '\[(alert|crit|emerg)\]' "$TMP/logs/error.log" | head -n 5
fi
cat <<REPORT | tee "$OUT"
soak_seconds=$SECONDS_RUN
connections=$CONNS
batch=$BATCH
queue=$QUEUE
requests=$requests
statuses=$statuses
p50_ms=$(val p50_ms)
p99_ms=$(val p99_ms)
max_ms=$(val max_ms)
rss_start_kb=$rss0
rss_end_kb=$rss1
worker_status=$status
REPORT
[ $fail -eq 0 ] && echo "soak: ok" || echo "soak: FAILED"
exit $fail
