#!/bin/sh
# Two nginx instances on loopback: a generation node (conf/nginx.conf) and the
# edge (conf/edge.conf). A second identical seeded GET is a cache HIT that
# never reaches the node, and a range of it is a 206 from the cache; unseeded
# GETs are not cached; a streamed (chunked) clip is cached as it passes;
# limit_req answers 429.
# Usage: tests/nginx_edge.sh MODULE.so MODEL_DIR
MODULE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MODEL=$(cd "$2" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NGINX=${TEST_NGINX_BINARY:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx
NODE_PORT=${TEST_NGINX_NODE_PORT:-1986} EDGE_PORT=${TEST_NGINX_EDGE_PORT:-1987}
TMP=$(mktemp -d)
passed=0 failed=0
mkdir -p "$TMP/node/logs" "$TMP/edge/logs" "$TMP/edge/cache"
# when run as root, nginx workers are an unprivileged user: let them write the cache
chmod 755 "$TMP" && chmod 777 "$TMP/edge" "$TMP/edge/cache"
sed -e "s#@MODULE@#$MODULE#" -e "s#@MODEL@#$MODEL#" -e "s#@PREFIX@#$TMP/node#" -e "s#@HTML@#$ROOT/html#" \
    -e "s#127.0.0.1:8080#127.0.0.1:$NODE_PORT#" "$ROOT/conf/nginx.conf" > "$TMP/node/nginx.conf"
sed -e "s#@PREFIX@#$TMP/edge#" -e "s#@NODE@#127.0.0.1:$NODE_PORT#" -e "s#@LISTEN@#127.0.0.1:$EDGE_PORT#" \
    -e "s#@RATE@#2r/s#" -e "s#@BURST@#5#" "$ROOT/conf/edge.conf" > "$TMP/edge/nginx.conf"
cleanup() {
    "$NGINX" -p "$TMP/edge" -c "$TMP/edge/nginx.conf" -s stop 2>/dev/null
    "$NGINX" -p "$TMP/node" -c "$TMP/node/nginx.conf" -s stop 2>/dev/null
    sleep 0.3; [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
check() { d=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok   - $d"; else failed=$((failed + 1)); echo "FAIL - $d"; fi; }
"$NGINX" -p "$TMP/node" -c "$TMP/node/nginx.conf" && "$NGINX" -p "$TMP/edge" -c "$TMP/edge/nginx.conf" ||
    { echo "nginx did not start"; echo "0 passed, 1 failed"; exit 1; }
sleep 0.5
EDGE=http://127.0.0.1:$EDGE_PORT
node_hits() { n=$(grep -c 'GET /generate?prompt=edge' "$TMP/node/logs/access.log" 2>/dev/null); echo "${n:-0}"; }

curl -s -m 30 -D "$TMP/h1" -o "$TMP/a1.wav" "$EDGE/generate?prompt=edge+test&duration=1&seed=42"
check "first GET through the edge is a MISS" grep -qi '^X-Cache-Status: MISS' "$TMP/h1"
check "and returns audio" grep -qi '^Content-Type: audio/wav' "$TMP/h1"
curl -s -m 30 -D "$TMP/h2" -o "$TMP/a2.wav" "$EDGE/generate?prompt=edge+test&duration=1&seed=42"
check "second identical GET is a HIT" grep -qi '^X-Cache-Status: HIT' "$TMP/h2"
check "with the same bytes" cmp -s "$TMP/a1.wav" "$TMP/a2.wav"
check "the node saw the URL only once" [ "$(node_hits)" -eq 1 ]
# a browser's <audio> asks for ranges (Safari plays only from 206 answers)
curl -s -m 30 -D "$TMP/h5" -o "$TMP/range.bin" -H 'Range: bytes=0-43' \
    "$EDGE/generate?prompt=edge+test&duration=1&seed=42"
check "a range of the cached clip is a 206 from the cache" sh -c \
    "grep -q '^HTTP/1.1 206' '$TMP/h5' && grep -qi '^X-Cache-Status: HIT' '$TMP/h5'"
check "with Content-Range and exactly the WAV header" sh -c \
    "grep -qi '^Content-Range: bytes 0-43/64044' '$TMP/h5' && [ \$(wc -c < '$TMP/range.bin') -eq 44 ] \
     && head -c 44 '$TMP/a1.wav' | cmp -s - '$TMP/range.bin'"
check "the node still saw the URL only once" [ "$(node_hits)" -eq 1 ]
curl -s -m 30 -D "$TMP/h3" -o /dev/null "$EDGE/generate?prompt=edge+nocache&duration=1"
curl -s -m 30 -D "$TMP/h4" -o /dev/null "$EDGE/generate?prompt=edge+nocache&duration=1"
check "unseeded GETs are never cached" sh -c "! grep -qi '^X-Cache-Status: HIT' '$TMP/h4'"
check "the node saw both unseeded GETs" [ "$(node_hits)" -eq 3 ]
# a chunked stream (FLAC) is cached as it passes: the HIT has its bytes
# (after the limit_req bucket refills: 2 r/s, burst 5)
sleep 3
curl -s -m 30 -D "$TMP/h6" -o "$TMP/s1.flac" "$EDGE/generate?prompt=cached+stream&duration=2&seed=42&format=flac"
curl -s -m 30 -D "$TMP/h7" -o "$TMP/s2.flac" "$EDGE/generate?prompt=cached+stream&duration=2&seed=42&format=flac"
check "a streamed FLAC passes the edge (MISS), then is a HIT with the same bytes" sh -c \
    "grep -qi '^X-Cache-Status: MISS' '$TMP/h6' && grep -qi '^X-Cache-Status: HIT' '$TMP/h7' \
     && [ -s '$TMP/s1.flac' ] && cmp -s '$TMP/s1.flac' '$TMP/s2.flac'"
check "with its strong ETag" grep -Eqi '^ETag: "mg-[0-9a-f]{16}"' "$TMP/h7"
check "the node streamed it once" [ "$(grep -c 'GET /generate?prompt=cached+stream' "$TMP/node/logs/access.log")" -eq 1 ]
codes=""
for i in 1 2 3 4 5 6 7 8 9 10; do
    code=$(curl -s -m 10 -D "$TMP/lh" -o "$TMP/lb" -w '%{http_code}' "$EDGE/generate?prompt=edge+test&duration=1&seed=42")
    codes="$codes $code"
    [ "$code" = 429 ] && cp "$TMP/lh" "$TMP/limited.h" && cp "$TMP/lb" "$TMP/limited.json"
done
check "limit_req answers 429 past the burst (got:$codes)" sh -c "echo '$codes' | grep -q 429"
check "in the API's JSON error shape, with Retry-After" sh -c \
    "grep -qi '^Content-Type: application/json' '$TMP/limited.h' && grep -qi '^Retry-After: 1' '$TMP/limited.h' \
     && grep -qx '{\"success\":false,\"error\":\"too many requests, retry later\"}' '$TMP/limited.json'"
echo "nginx_edge: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
