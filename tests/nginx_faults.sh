#!/bin/sh
# Faults in a running nginx: clients that go away before, during and after a
# generation; reload and quit with a job running; a model that is corrupt,
# missing or replaced on disk; an allocation that fails inside a job. Each
# ends in the documented status (499 logged, 200, 503, 500) with the job's
# slot freed and no worker crash. (musicgen_timeout's 504 and the full
# queue's 503 are in nginx_load.sh and t/003-load.t.)
# Usage: tests/nginx_faults.sh MODULE.so MODEL_DIR MKMODEL [FAULT_LIB.so]
MODULE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MODEL=$(cd "$2" && pwd)
MKMODEL=$3
FAULT_LIB=${4:+$(cd "$(dirname "$4")" && pwd)/$(basename "$4")}
NGINX=${TEST_NGINX_BINARY:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx
PORT=${TEST_NGINX_FAULTS_PORT:-1989}
URL=http://127.0.0.1:$PORT
LONG=40                               # seconds of audio: a job that runs a few seconds
LONG_BYTES=$((44 + LONG * 32000 * 2))
TMP=$(mktemp -d)
chmod 755 "$TMP"   # workers run as nobody when the master is root
passed=0 failed=0 skipped=0
PREFIX=

check() { # $1 = description, rest = test
    d=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok   - $d"; else failed=$((failed + 1)); echo "FAIL - $d"; fi
}

# start NAME MODEL_DIR [http lines]: one nginx (master + 1 worker) on $PORT
start() {
    PREFIX=$TMP/$1
    mkdir -p "$PREFIX/logs"
    cat > "$PREFIX/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 1;
error_log $PREFIX/logs/error.log info;
pid $PREFIX/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $PREFIX/body;
    musicgen_model $2;
    musicgen_batch 1;
    musicgen_queue 1;
    musicgen_threads 1;
    $3
    server {
        listen 127.0.0.1:$PORT;
        location /generate { musicgen on; musicgen_max_duration $LONG; }
        location /status { musicgen_status; }
    }
}
CONF
    "$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" || { echo "FAIL - nginx did not start ($1)"; failed=$((failed + 1)); return 1; }
    for _ in 1 2 3 4 5 6 7 8 9 10; do curl -s -m 1 -o /dev/null "$URL/status" && break; sleep 0.2; done
}
master_pid() { cat "$PREFIX/logs/nginx.pid" 2>/dev/null; }
worker_pid() { pgrep -P "$(master_pid)" | head -n 1; }
stop() {
    m=$(master_pid)
    "$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -s stop 2>/dev/null
    for _ in $(seq 1 50); do [ -n "$m" ] && kill -0 "$m" 2>/dev/null || break; sleep 0.1; done
}
no_crash() { ! grep -q 'exited on signal' "$PREFIX/logs/error.log"; }
status() { curl -s -m 5 "$URL/status"; }
idle() { # the worker has no job running or waiting (polls up to 5 s)
    for _ in $(seq 1 50); do
        status | grep -q '"running":0,"queue_depth":0' && return 0
        sleep 0.1
    done
    return 1
}
wait_running() { # until the worker decodes a job (up to 10 s)
    for _ in $(seq 1 100); do status | grep -q '"running":1' && return 0; sleep 0.1; done
    return 1
}
code() { curl -s -m 60 -o "${2:-/dev/null}" -w '%{http_code}' "$URL$1"; }
gone() { # pid $1 exits within 10 s
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    return 1
}
# raw HTTP on loopback: send $1 (printf format), read $2 bytes (0: none), close
raw() {
    python3 - "$PORT" "$1" "$2" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
want = int(sys.argv[3])
got = b""
while len(got) < want:
    b = s.recv(want - len(got))
    if not b:
        break
    got += b
s.close()
print(got[:12].decode("latin-1"))
PY
}
cleanup() { [ -n "$PREFIX" ] && stop; [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"; }
trap cleanup EXIT

# --- clients that go away -------------------------------------------------
start disconnect "$MODEL" || exit 1
raw 'POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt": "cut' 0 > /dev/null
sleep 0.3
check "before: a body cut short starts no job" sh -c "curl -s -m 5 '$URL/status' | grep -q '\"running\":0,\"queue_depth\":0,\"totals\":{\"completed\":0,\"failed\":0'"
curl -s -m 0.5 -o /dev/null "$URL/generate?prompt=during&duration=$LONG&seed=1"
check "during: the worker logs the cancel" sh -c "sleep 0.5; grep -q 'client closed the connection, cancelling' '$PREFIX/logs/error.log'"
check "during: the job's slot is freed" idle
check "during: a cancelled job is neither completed nor failed" sh -c "curl -s -m 5 '$URL/status' | grep -q '\"completed\":0,\"failed\":0'"
curl -s -m 60 -o "$TMP/a.wav" -w '%{http_code}' "$URL/generate?prompt=first&duration=$LONG&seed=2" > "$TMP/a.code" &
a=$!
wait_running
curl -s -m 0.5 -o /dev/null "$URL/generate?prompt=queued&duration=$LONG&seed=3"
wait $a
check "queued: the running job still answers 200" [ "$(cat "$TMP/a.code")" = 200 ]
check "queued: the waiting job that lost its client never runs to the end" idle
check "queued: only the first job completed" sh -c "curl -s -m 5 '$URL/status' | grep -q '\"completed\":1,\"failed\":0'"
got=$(raw "GET /generate?prompt=after&duration=$LONG&seed=4 HTTP/1.1\r\nHost: x\r\n\r\n" 12)
check "after: the response had started ($got)" [ "$got" = "HTTP/1.1 200" ]
check "after: the worker is idle again" idle
check "after: and serves the next job" [ "$(code "/generate?prompt=next&duration=1&seed=5")" = 200 ]
check "no worker crashed (disconnects)" no_crash
stop

# --- reload and quit with a job running ------------------------------------
start reload "$MODEL" || exit 1
old=$(worker_pid)
curl -s -m 60 -o "$TMP/r.wav" -w '%{http_code}' "$URL/generate?prompt=reload&duration=$LONG&seed=6" > "$TMP/r.code" &
job=$!
wait_running
"$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -s reload 2>/dev/null
wait $job
check "reload: the running job answers 200" [ "$(cat "$TMP/r.code")" = 200 ]
check "reload: with all its audio" [ "$(wc -c < "$TMP/r.wav")" -eq $LONG_BYTES ]
check "reload: the old worker exits once its job is answered" gone "$old"
check "reload: the new worker serves" [ "$(code "/generate?prompt=new&duration=1&seed=7")" = 200 ]
master=$(master_pid)
curl -s -m 60 -o "$TMP/q.wav" -w '%{http_code}' "$URL/generate?prompt=quit&duration=$LONG&seed=8" > "$TMP/q.code" &
job=$!
wait_running
"$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -s quit 2>/dev/null
wait $job
check "quit: the running job answers 200" [ "$(cat "$TMP/q.code")" = 200 ]
check "quit: with all its audio" [ "$(wc -c < "$TMP/q.wav")" -eq $LONG_BYTES ]
check "quit: nginx exits afterwards" gone "$master"
check "no worker crashed (reload, quit)" no_crash

# --- broken models ---------------------------------------------------------
mkdir -p "$TMP/m-spiece" && cp "$MODEL"/* "$TMP/m-spiece/" && head -c 3000 /dev/urandom > "$TMP/m-spiece/spiece.model"
start bad-spiece "$TMP/m-spiece" || exit 1
code "/generate?prompt=x&duration=1" "$TMP/b1" > "$TMP/b1.code"
check "corrupt spiece.model: 503" [ "$(cat "$TMP/b1.code")" = 503 ]
check "corrupt spiece.model: the body names no path" sh -c "grep -q '\"success\":false' '$TMP/b1' && ! grep -q '/' '$TMP/b1'"
check "corrupt spiece.model: the log says why" grep -q 'musicgen: loading .*spiece.model' "$PREFIX/logs/error.log"
# fixed and reloaded: a connection the old worker accepted before the reload
# is still its own; it answers 503 with Retry-After: 1 and closes, so the
# client's retry reaches the new worker
python3 - "$PORT" "$TMP/early" "cp '$MODEL/spiece.model' '$TMP/m-spiece/.s.tmp' && mv '$TMP/m-spiece/.s.tmp' '$TMP/m-spiece/spiece.model' && $NGINX -p '$PREFIX' -c '$PREFIX/nginx.conf' -s reload" <<'PY'
import socket, subprocess, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)  # opened ahead of use
time.sleep(0.2)
subprocess.run(sys.argv[3], shell=True, check=True, stderr=subprocess.DEVNULL)
time.sleep(1)
body = b'{"prompt":"x","duration":1}'
s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n" % len(body) + body)
got = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
open(sys.argv[2], "wb").write(got)
PY
check "fixed + reload, a connection from before it: 503" grep -q '^HTTP/1.1 503' "$TMP/early"
check "  with Retry-After: 1, and closed" sh -c "grep -qi '^Retry-After: 1.\$' '$TMP/early' && grep -qi '^Connection: close' '$TMP/early'"
check "  saying the worker is shutting down" grep -q 'this worker is shutting down' "$TMP/early"
check "fixed + reload, a new connection: 200" [ "$(code "/generate?prompt=x&duration=1")" = 200 ]
check "no worker crashed (corrupt spiece.model)" no_crash
stop
mkdir -p "$TMP/m-tensor" && cp "$MODEL"/* "$TMP/m-tensor/"
# a sound header that lacks one tensor the model needs (its name changed, same length)
python3 - "$TMP/m-tensor/model.safetensors" <<'PY'
import struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = b[8:8 + n]
i = h.find(b"decoder.")
h[i:i + 8] = b"xecoder."
b[8:8 + n] = h
open(p, "wb").write(bytes(b))
PY
start bad-tensor "$TMP/m-tensor" || exit 1
check "a missing tensor: 503" [ "$(code "/generate?prompt=x&duration=1")" = 503 ]
check "a missing tensor: the log names it" grep -q 'musicgen: loading .*decoder\.' "$PREFIX/logs/error.log"
check "no worker crashed (missing tensor)" no_crash
stop

mkdir -p "$TMP/m-live" && cp "$MODEL"/* "$TMP/m-live/"
start live "$TMP/m-live" || exit 1
code "/generate?prompt=ref&duration=1&seed=9" "$TMP/ref.wav" > /dev/null
mv "$TMP/m-live" "$TMP/m-away"
w=$(worker_pid)
kill -TERM "$w"; gone "$w"
sleep 0.5
check "model folder gone when a worker starts: 503" [ "$(code "/generate?prompt=x&duration=1")" = 503 ]
check "the master respawned the worker" [ -n "$(worker_pid)" ]
mv "$TMP/m-away" "$TMP/m-live"
# a truncated model: a reload refuses the new configuration, the workers carry on
"$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -s reload 2>/dev/null
sleep 1
head -c 100000 "$TMP/m-live/model.safetensors" > "$TMP/m-live/model.safetensors.new"
mv "$TMP/m-live/model.safetensors" "$TMP/m-live/model.safetensors.good"
mv "$TMP/m-live/model.safetensors.new" "$TMP/m-live/model.safetensors"
"$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -s reload > "$TMP/reload.err" 2>&1
check "truncated model: nginx -s reload fails naming the file" grep -q 'musicgen_model: .*model.safetensors' "$TMP/reload.err"
kill -HUP "$(master_pid)"
sleep 1
check "truncated model, SIGHUP: the master logs the file" grep -q 'emerg.*musicgen_model: .*model.safetensors' "$PREFIX/logs/error.log"
code "/generate?prompt=ref&duration=1&seed=9" "$TMP/ref1.wav" > "$TMP/ref1.code"
check "truncated model, SIGHUP: the workers still serve the model they mapped (200)" [ "$(cat "$TMP/ref1.code")" = 200 ]
check "truncated model, SIGHUP: the same bytes" cmp -s "$TMP/ref.wav" "$TMP/ref1.wav"
mv "$TMP/m-live/model.safetensors.good" "$TMP/m-live/model.safetensors"
"$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -s reload 2>/dev/null
sleep 1
code "/generate?prompt=ref&duration=1&seed=9" "$TMP/ref2.wav" > "$TMP/ref2.code"
check "after the model is back and a reload: 200" [ "$(cat "$TMP/ref2.code")" = 200 ]
check "and the same bytes" cmp -s "$TMP/ref.wav" "$TMP/ref2.wav"

# the supported swap: write the new file beside the old one, rename it over,
# reload. Running workers keep the old mapping (their inode lives on).
"$MKMODEL" --shape tiny --seed 2 -o "$TMP/m-new" > /dev/null
curl -s -m 60 -o "$TMP/s.wav" -w '%{http_code}' "$URL/generate?prompt=swap&duration=$LONG&seed=10" > "$TMP/s.code" &
job=$!
wait_running
cp "$TMP/m-new/model.safetensors" "$TMP/m-live/model.safetensors.tmp"
mv "$TMP/m-live/model.safetensors.tmp" "$TMP/m-live/model.safetensors"
wait $job
check "swap by rename: the running job answers 200" [ "$(cat "$TMP/s.code")" = 200 ]
check "swap by rename: with all its audio" [ "$(wc -c < "$TMP/s.wav")" -eq $LONG_BYTES ]
code "/generate?prompt=ref&duration=1&seed=9" "$TMP/ref3.wav" > /dev/null
check "swap by rename: the worker still serves the model it loaded" cmp -s "$TMP/ref.wav" "$TMP/ref3.wav"
"$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -s reload 2>/dev/null
sleep 1
code "/generate?prompt=ref&duration=1&seed=9" "$TMP/ref4.wav" > "$TMP/ref4.code"
check "swap by rename + reload: the new model serves" sh -c "[ \"\$(cat '$TMP/ref4.code')\" = 200 ] && ! cmp -s '$TMP/ref.wav' '$TMP/ref4.wav'"
check "no worker crashed (model faults)" no_crash
stop

# --- an allocation fails inside a job --------------------------------------
if [ -z "$FAULT_LIB" ] || [ -n "${MG_SAN_PRELOAD:-}" ]; then
    skipped=$((skipped + 1))
    echo "SKIP allocation failure: no fault library${MG_SAN_PRELOAD:+ (not with the ASan runtime: tests/test_fault_alloc covers it there)}"
else
    n500=0
    for nth in 1 30 120; do
        LD_PRELOAD=$FAULT_LIB MG_FAULT_MALLOC_NTH=$nth start "fault-$nth" "$MODEL" || continue
        c=$(code "/generate?prompt=fault&duration=1&seed=11" "$TMP/f.json")
        [ "$c" = 500 ] && n500=$((n500 + 1))
        check "allocation $nth of a job fails: 500 or, where it has a fallback, 200 (got $c)" [ "$c" = 500 -o "$c" = 200 ]
        [ "$c" = 500 ] && check "  the 500 body is JSON without a path" sh -c "grep -q 'generation failed' '$TMP/f.json' && ! grep -q '/' '$TMP/f.json'"
        check "  the worker survives and serves the next job" [ "$(code "/generate?prompt=next&duration=1&seed=12")" = 200 ]
        check "  and is idle" idle
        check "  no worker crashed" no_crash
        stop
    done
    check "at least one injected failure ended in a 500" [ $n500 -gt 0 ]
fi
echo "nginx_faults: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
