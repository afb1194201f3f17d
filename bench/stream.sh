#!/bin/sh
# Streamed audio through nginx on loopback: a private nginx with the module
# serves the musicgen-small-shaped model with q8 weights (one worker, batch 1,
# all cores), and bench_stream times, from the client, the first audio and
# the playback margin of 30 s streams and of a 120 s long-form stream, and
# the long-form overhead. Figures only.
# Usage: bench/stream.sh MODULE.so MODEL_DIR (BUILD: where bench_stream is and
# $BUILD/bench-stream.json goes)
set -e
BUILD=${BUILD:-build}
if [ ! -f "$2/model.safetensors" ]; then
    echo "bench: writing a random musicgen-small-shaped model to $2 (once)"
    "$BUILD/musicgen-mkmodel" --shape small --seed 1 -o "$2"
fi
MODULE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MODEL=$(cd "$2" && pwd)
NGINX=${TEST_NGINX_BINARY:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx
PORT=${MG_BENCH_PORT:-1990}
SECONDS_SHORT=${MG_BENCH_STREAM_SECONDS:-30}
SECONDS_LONG=${MG_BENCH_LONG_SECONDS:-120}
TMP=$(mktemp -d)
mkdir -p "$TMP/logs"
cat > "$TMP/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 1;
error_log $TMP/logs/error.log info;
pid $TMP/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $TMP/body;
    musicgen_model $MODEL;
    musicgen_dtype q8;
    musicgen_device cpu;
    musicgen_threads ${MG_BENCH_THREADS:-0};
    musicgen_batch 1;
    server {
        listen 127.0.0.1:$PORT;
        location /generate {
            musicgen on;
            musicgen_stream on;
            musicgen_max_duration $SECONDS_LONG;
            musicgen_timeout 3600s;
        }
    }
}
CONF
cleanup() { "$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -s stop 2>/dev/null || true; sleep 0.3; rm -rf "$TMP"; }
trap cleanup EXIT
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" || { cat "$TMP/logs/error.log"; exit 1; }
echo "== streamed audio through nginx (127.0.0.1:$PORT, q8, $(nproc) cores): uptime:$(uptime)"
"$BUILD/bench_stream" --port "$PORT" --runs "${MG_BENCH_STREAM_RUNS:-5}" --seconds "$SECONDS_SHORT" \
    --long "$SECONDS_LONG" --json "$BUILD/bench-stream.json" ||
    { grep -E 'emerg|alert|crit|error' "$TMP/logs/error.log" | tail -5; exit 1; }
