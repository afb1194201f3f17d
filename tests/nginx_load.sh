#!/bin/sh
# Back-pressure and timeouts in a running nginx: musicgen_queue answers 503
# with Retry-After, musicgen_timeout answers 504, and neither loses the
# running job. Usage: tests/nginx_load.sh MODULE.so MODEL_DIR
MODULE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MODEL=$(cd "$2" && pwd)
NGINX=${TEST_NGINX_BINARY:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx
PORT=${TEST_NGINX_LOAD_PORT:-1985}
TMP=$(mktemp -d)
passed=0 failed=0
mkdir -p "$TMP/logs"
cat > "$TMP/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 1;
error_log $TMP/logs/error.log info;
pid $TMP/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log $TMP/logs/access.log;
    client_body_temp_path $TMP/body;
    musicgen_model $MODEL;
    musicgen_batch 1;
    musicgen_queue 0;
    server {
        listen 127.0.0.1:$PORT;
        location /slow  { musicgen on; musicgen_max_duration 40; }
        location /short { musicgen on; musicgen_max_duration 40; musicgen_timeout 200ms; musicgen_stream off; }
        location /status { musicgen_status; }
    }
}
CONF
cleanup() { "$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -s stop 2>/dev/null; sleep 0.3; rm -rf "$TMP"; }
trap cleanup EXIT
check() { # $1 = description, rest = test
    d=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok   - $d"; else failed=$((failed + 1)); echo "FAIL - $d"; fi
}
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" || { echo "nginx did not start"; echo "0 passed, 1 failed"; exit 1; }
sleep 0.5
URL=http://127.0.0.1:$PORT

# one long job runs; with musicgen_queue 0 the next one is refused
curl -s -m 30 -o "$TMP/first.wav" -w '%{http_code}' "$URL/slow?prompt=long&duration=40&seed=1" > "$TMP/first.code" &
first=$!
sleep 0.4
curl -s -m 10 -D "$TMP/h2" -o "$TMP/b2" -w '%{http_code}' "$URL/slow?prompt=second&duration=1&seed=2" > "$TMP/second.code"
check "second job refused with 503" [ "$(cat "$TMP/second.code")" = 503 ]
check "503 carries Retry-After" grep -qi '^Retry-After: [0-9]' "$TMP/h2"
check "503 body is JSON" grep -q '"success":false' "$TMP/b2"
wait $first
check "the running job still completes (200)" [ "$(cat "$TMP/first.code")" = 200 ]
check "and returns 40 s of audio" [ "$(wc -c < "$TMP/first.wav")" -eq $((44 + 40 * 32000 * 2)) ]
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$URL/slow?prompt=again&duration=1&seed=3")
check "the queue frees its slot (200 again)" [ "$code" = 200 ]

# past musicgen_timeout: 504 (collected: a stream whose headers went out
# would end short instead), and the worker is free again afterwards
code=$(curl -s -m 30 -o "$TMP/b3" -w '%{http_code}' "$URL/short?prompt=long&duration=40&seed=4")
check "past musicgen_timeout: 504" [ "$code" = 504 ]
check "504 body is JSON" grep -q '"success":false' "$TMP/b3"
check "timeout logged" grep -q 'generation timed out' "$TMP/logs/error.log"
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$URL/short?prompt=quick&duration=1&seed=5")
check "a short job after the timeout works" [ "$code" = 200 ]
curl -s -m 5 "$URL/status" > "$TMP/status"
check "status counts the completed jobs" grep -q '"completed":3' "$TMP/status"
check "status counts the 503" grep -q '"rejected":1' "$TMP/status"
check "status counts the 504" grep -q '"timed_out":1' "$TMP/status"
check "status reports compute per audio second" grep -q '"compute_seconds_per_audio_second":[0-9]' "$TMP/status"
# the JSON's data URL decodes to a WAV of the requested length
curl -s -m 30 -X POST -H 'Content-Type: application/json' -d '{"prompt":"data url","duration":2,"seed":8}' \
    "$URL/slow" > "$TMP/json"
sed -n 's/.*"audioUrl":"data:audio\/wav;base64,\([^"]*\)".*/\1/p' "$TMP/json" | base64 -d > "$TMP/url.wav" 2>/dev/null
check "data URL decodes to a RIFF/WAVE file" sh -c "[ \"\$(head -c 4 '$TMP/url.wav')\" = RIFF ] && [ \"\$(dd if='$TMP/url.wav' bs=1 skip=8 count=4 2>/dev/null)\" = WAVE ]"
check "of exactly 2 s at 32 kHz, 16-bit mono" [ "$(wc -c < "$TMP/url.wav")" -eq $((44 + 2 * 32000 * 2)) ]
check "generation logged with the request id" grep -Eq 'musicgen: request [0-9a-f]{32}: 2.00 s of audio' "$TMP/logs/error.log"

# nginx -s reload while a job runs: the old worker finishes it, the new one serves
curl -s -m 60 -o "$TMP/reload.wav" -w '%{http_code}' "$URL/slow?prompt=reload&duration=40&seed=6" > "$TMP/reload.code" &
job=$!
sleep 0.4
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -s reload
wait $job
check "a job running across a reload still answers 200" [ "$(cat "$TMP/reload.code")" = 200 ]
check "with all its audio" [ "$(wc -c < "$TMP/reload.wav")" -eq $((44 + 40 * 32000 * 2)) ]
sleep 0.5
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$URL/slow?prompt=after&duration=1&seed=7")
check "the new worker serves after the reload" [ "$code" = 200 ]
check "no worker crashed" sh -c "! grep -q 'exited on signal' '$TMP/logs/error.log'"
grep -B5 'exited on signal' "$TMP/logs/error.log" | sed 's/^/    | /'
echo "nginx_load: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
