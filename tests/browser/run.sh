#!/bin/sh
# The photo-to-music page (html/) end to end in headless Chromium, against
# nginx with the module and the demo model on loopback:
#   - tests/browser/analysis.test.mjs: the analysis functions under node;
#   - tests/browser/page.test.mjs: the page, driven by playwright-core, on two
#     nginx instances started here: "main" (conf/nginx.conf as shipped) and
#     "busy" (the same file with musicgen_batch 1, musicgen_queue 0,
#     musicgen_max_duration 40 and a musicgen_status location, so that a
#     running job makes the next request a real 503).
# Prints a SKIP line and exits 0 when node, Chromium or node_modules/playwright-core
# is missing (scripts/install-deps.sh and `npm ci` provide them).
# Usage: tests/browser/run.sh MODULE.so MODEL_DIR
# Env: CHROMIUM (default /usr/bin/chromium), TEST_BROWSER_PORTS (first-last,
# default 3100-3199), KEEP=1 keeps the nginx prefixes.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODULE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MODEL=$(cd "$2" && pwd)
NGINX=${TEST_NGINX_BINARY:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
OUT=$ROOT/build/browser

if ! command -v node >/dev/null 2>&1; then
    echo "SKIP browser tests: node is not installed (apt-get install nodejs npm, or sh scripts/install-deps.sh)"
    exit 0
fi
node "$ROOT/tests/browser/analysis.test.mjs" || exit 1
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
  for (let p = lo; p <= hi && found.length < 2; p++) {
    const ok = await new Promise((res) => {
      const s = net.createServer().once("error", () => res(false))
        .listen(p, "127.0.0.1", () => s.close(() => res(true)));
    });
    if (ok) found.push(p);
  }
  console.log(found.join(" "));
})();' "$range")
set -- $ports
if [ $# -lt 2 ]; then
    echo "browser: no two free ports in $range"; echo "browser: 0 passed, 1 failed"; exit 1
fi
MAIN_PORT=$1 BUSY_PORT=$2

TMP=$(mktemp -d)
mkdir -p "$TMP/main/logs" "$TMP/busy/logs" "$OUT"
chmod 755 "$TMP"
fill() { # $1 = prefix, $2 = port
    sed -e "s#@MODULE@#$MODULE#" -e "s#@MODEL@#$MODEL#" -e "s#@PREFIX@#$1#" -e "s#@HTML@#$ROOT/html#" \
        -e "s#127.0.0.1:8080#127.0.0.1:$2#" "$ROOT/conf/nginx.conf"
}
fill "$TMP/main" "$MAIN_PORT" > "$TMP/main/nginx.conf"
fill "$TMP/busy" "$BUSY_PORT" | sed \
    -e '/^ *musicgen_model /a\    musicgen_batch 1; musicgen_queue 0; musicgen_threads 1;' \
    -e 's#musicgen_max_duration 30;#musicgen_max_duration 40;#' \
    -e '/location = \/generate {/i\        location = /status { musicgen_status; }' > "$TMP/busy/nginx.conf"
for want in 'musicgen_queue 0;' 'musicgen_max_duration 40;' 'musicgen_status;' "root $ROOT/html;"; do
    grep -q "$want" "$TMP/busy/nginx.conf" || {
        echo "browser: could not derive the busy config from conf/nginx.conf (no '$want')"
        echo "browser: 0 passed, 1 failed"; rm -rf "$TMP"; exit 1; }
done

cleanup() {
    "$NGINX" -p "$TMP/main" -c "$TMP/main/nginx.conf" -s stop 2>/dev/null
    "$NGINX" -p "$TMP/busy" -c "$TMP/busy/nginx.conf" -s stop 2>/dev/null
    sleep 0.3; [ -n "${KEEP:-}" ] && echo "browser: nginx prefixes kept in $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
if ! "$NGINX" -p "$TMP/main" -c "$TMP/main/nginx.conf" || ! "$NGINX" -p "$TMP/busy" -c "$TMP/busy/nginx.conf"; then
    echo "browser: nginx did not start"; echo "browser: 0 passed, 1 failed"; exit 1
fi
sleep 0.5

cd "$ROOT" && BASE_URL=http://127.0.0.1:$MAIN_PORT BUSY_URL=http://127.0.0.1:$BUSY_PORT OUT_DIR=$OUT \
    CHROMIUM=$CHROMIUM BUSY_STOP="$NGINX -p $TMP/busy -c $TMP/busy/nginx.conf -s stop" \
    node tests/browser/page.test.mjs
rc=$?
if [ $rc -ne 0 ]; then
    echo "browser: nginx error logs (last lines):"
    tail -n 20 "$TMP/main/logs/error.log" "$TMP/busy/logs/error.log" 2>/dev/null | sed 's/^/    | /'
fi
exit $rc
