#!/bin/sh
# The photo-to-music page (html/) end to end in headless Chromium, against
# nginx with the module and the demo model on loopback:
#   - tests/browser/analysis.test.mjs: the analysis functions under node;
#   - tests/browser/wave.test.mjs: WAV parsing (mono and stereo) under node;
#   - tests/browser/page.test.mjs: the page, driven by playwright-core, on two
#     nginx instances started here, both from conf/nginx.conf as shipped:
#     "main" with the demo model, and "broken" with a copy of it whose
#     spiece.model is garbage (it passes nginx -t, which checks config.json
#     and the safetensors header; the worker fails to load it, so every
#     request is a real 503 with Retry-After until the test puts the good
#     file back and reloads); with a third argument, a third instance
#     ("stereo") serves that stereo model, and the page plays a stereo clip.
# The main instance's /generate allows 45 s (conf/nginx.conf says 30) and a
# 22m body (for Extend's audio_prompt).
# Prints a SKIP line and exits 0 when node, Chromium or node_modules/playwright-core
# is missing (scripts/install-deps.sh and `npm ci` provide them).
# Usage: tests/browser/run.sh MODULE.so MODEL_DIR [STEREO_MODEL_DIR]
# Env: CHROMIUM (default /usr/bin/chromium), TEST_BROWSER_PORTS (first-last,
# default 3100-3199), KEEP=1 keeps the nginx prefixes.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODULE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MODEL=$(cd "$2" && pwd)
STEREO_MODEL=${3:+$(cd "$3" && pwd)}
NGINX=${TEST_NGINX_BINARY:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
OUT=$ROOT/build/browser

if ! command -v node >/dev/null 2>&1; then
    echo "SKIP browser tests: node is not installed (apt-get install nodejs npm, or sh scripts/install-deps.sh)"
    exit 0
fi
node "$ROOT/tests/browser/analysis.test.mjs" || exit 1
node "$ROOT/tests/browser/wave.test.mjs" || exit 1
if [ ! -x "$CHROMIUM" ]; then
    echo "SKIP browser tests: no Chromium at $CHROMIUM (apt-get install chromium, or set CHROMIUM=)"
    exit 0
fi
if [ ! -f "$ROOT/node_modules/playwright-core/package.json" ]; then
    echo "SKIP browser tests: node_modules/playwright-core is missing (run: npm ci --ignore-scripts)"
    exit 0
fi

# two free ports in the range
range=${TEST_BROWSER_PORTS:-3100-3199}
ports=$(node -e '
const net = require("net");
const [lo, hi] = process.argv[1].split("-").map(Number);
const found = [];
(async () => {
  for (let p = lo; p <= hi && found.length < 3; p++) {
    const ok = await new Promise((res) => {
      const s = net.createServer().once("error", () => res(false))
        .listen(p, "127.0.0.1", () => s.close(() => res(true)));
    });
    if (ok) found.push(p);
  }
  console.log(found.join(" "));
})();' "$range")
set -- $ports
if [ $# -lt 3 ]; then
    echo "browser: no three free ports in $range"; echo "browser: 0 passed, 1 failed"; exit 1
fi
MAIN_PORT=$1 BROKEN_PORT=$2 STEREO_PORT=$3
MAX_DURATION=45
if [ ! -f "$MODEL/spiece.model" ]; then
    echo "browser: $MODEL has no spiece.model to break"; echo "browser: 0 passed, 1 failed"; exit 1
fi

TMP=$(mktemp -d)
mkdir -p "$TMP/main/logs" "$TMP/broken/logs" "$TMP/broken/model" "$TMP/stereo/logs" "$OUT"
chmod 755 "$TMP" "$TMP/broken"
for f in "$MODEL"/*; do ln -s "$f" "$TMP/broken/model/$(basename "$f")"; done
rm -f "$TMP/broken/model/spiece.model"
printf 'this is not a sentencepiece model\n' > "$TMP/broken/model/spiece.model"
# /generate's maximum is raised past the page's default (30) and past the
# demo model's window, so the page must learn it from the server and a clip
# that long is generated window by window. The shipped body limit of the
# generate locations (24m) already lets Extend send a clip as audio_prompt.
fill() { # $1 = prefix, $2 = port, $3 = model
    sed -e "s#@MODULE@#$MODULE#" -e "s#@MODEL@#$3#" -e "s#@PREFIX@#$1#" -e "s#@HTML@#$ROOT/html#" \
        -e "s#127.0.0.1:8080#127.0.0.1:$2#" -e "s#musicgen_max_duration 30;#musicgen_max_duration $MAX_DURATION;#" \
        "$ROOT/conf/nginx.conf"
}
fill "$TMP/main" "$MAIN_PORT" "$MODEL" > "$TMP/main/nginx.conf"
fill "$TMP/broken" "$BROKEN_PORT" "$TMP/broken/model" > "$TMP/broken/nginx.conf"
[ -n "$STEREO_MODEL" ] && fill "$TMP/stereo" "$STEREO_PORT" "$STEREO_MODEL" > "$TMP/stereo/nginx.conf"

cleanup() {
    "$NGINX" -p "$TMP/main" -c "$TMP/main/nginx.conf" -s stop 2>/dev/null
    "$NGINX" -p "$TMP/broken" -c "$TMP/broken/nginx.conf" -s stop 2>/dev/null
    [ -n "$STEREO_MODEL" ] && "$NGINX" -p "$TMP/stereo" -c "$TMP/stereo/nginx.conf" -s stop 2>/dev/null
    sleep 0.3; [ -n "${KEEP:-}" ] && echo "browser: nginx prefixes kept in $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
if ! "$NGINX" -p "$TMP/main" -c "$TMP/main/nginx.conf" || ! "$NGINX" -p "$TMP/broken" -c "$TMP/broken/nginx.conf" ||
   { [ -n "$STEREO_MODEL" ] && ! "$NGINX" -p "$TMP/stereo" -c "$TMP/stereo/nginx.conf"; }; then
    echo "browser: nginx did not start"; echo "browser: 0 passed, 1 failed"; exit 1
fi
sleep 0.5

B="$NGINX -p $TMP/broken -c $TMP/broken/nginx.conf"
cd "$ROOT" && MAX_DURATION=$MAX_DURATION BASE_URL=http://127.0.0.1:$MAIN_PORT BROKEN_URL=http://127.0.0.1:$BROKEN_PORT OUT_DIR=$OUT \
    STEREO_URL=${STEREO_MODEL:+http://127.0.0.1:$STEREO_PORT} \
    CHROMIUM=$CHROMIUM BROKEN_FIX="cp $MODEL/spiece.model $TMP/broken/new.model && mv -f $TMP/broken/new.model $TMP/broken/model/spiece.model && $B -s reload" \
    BROKEN_STOP="$B -s stop" node tests/browser/page.test.mjs
rc=$?
if [ $rc -ne 0 ]; then
    echo "browser: nginx error logs (last lines):"
    tail -n 12 "$TMP/broken/logs/error.log" "$TMP/main/logs/error.log" 2>/dev/null | cut -c1-200 | sed 's/^/    | /'
fi
exit $rc
