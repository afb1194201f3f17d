#!/bin/sh
# The Debian package as a sysadmin meets it: lintian on the .deb (no
# errors), `apt-get install ./libnginx-mod-http-musicgen_*.deb` into the
# machine's stock nginx (apt resolves its dependencies), `nginx -t` on the
# stock configuration (which now loads the module), a generation and the
# page through the package's example site (with a model made by the
# installed musicgen-mkmodel), then `apt-get purge` and nginx still passes
# -t and starts. Usage: tests/deb_install.sh DIR (where `make deb` left the
# .deb). Installing needs root: as any other user the test says SKIP.
#
# The nginx it starts runs from its own configuration (its logs, pid and
# temporary files in a temporary folder) on 127.0.0.1:$TEST_DEB_PORT
# (1979), never the system service; it keeps the stock prefix, against
# which the package's snippet names modules/ngx_http_musicgen_module.so.
# The package is purged on every way out.
DIR=${1:?usage: tests/deb_install.sh DIR_WITH_THE_DEB}
PKG=libnginx-mod-http-musicgen
PORT=${TEST_DEB_PORT:-1979}
URL=http://127.0.0.1:$PORT
NGINX=/usr/sbin/nginx
passed=0 failed=0

if [ "$(id -u)" != 0 ]; then
    echo "SKIP deb install: apt-get install of the package needs root (CI runs as root); the package was built"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
check() { # $1 = description, rest = test
    d=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok   - $d"; return 0; fi
    failed=$((failed + 1)); echo "FAIL - $d"; return 1
}
finish() {
    echo "deb install: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
# stop on a failure the later steps depend on
need() { # same as check
    check "$@" || finish
}

set -- "$DIR"/${PKG}_*.deb
need "make deb left one $PKG .deb in $DIR" [ $# -eq 1 -a -f "$1" ]
DEB=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
if dpkg-query -W -f='${Status}' $PKG 2>/dev/null | grep -q 'ok installed'; then
    echo "FAIL - $PKG is installed already: this test installs and purges it (apt-get purge $PKG first)"
    failed=$((failed + 1))
    finish
fi

TMP=$(mktemp -d)
chmod 755 "$TMP"  # the workers run as nobody and read the model and the site
APT_LOG=$TMP/apt.log
# nginx's temporary folders in $TMP too, away from the system service's
TEMP_PATHS=$(for t in client_body proxy fastcgi uwsgi scgi; do echo "    ${t}_temp_path $TMP/$t;"; done)
installed=
cleanup() {
    [ -f "$TMP/logs/nginx.pid" ] && "$NGINX" -c "$TMP/nginx.conf" -s stop 2>/dev/null && sleep 0.5
    [ -n "$installed" ] && apt-get purge -y -q $PKG > /dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# apt waits for another apt or dpkg run on this machine instead of failing
APT="apt-get -y -q -o DPkg::Lock::Timeout=300"

# lintian: no errors (accepted tags, with their reasons:
# debian/libnginx-mod-http-musicgen.lintian-overrides)
if command -v lintian > /dev/null 2>&1; then
    lintian --fail-on error "$DEB" > "$TMP/lintian" 2>&1
    check "lintian: no errors" [ $? -eq 0 ]
    grep -v 'running with root privileges' "$TMP/lintian" | sed 's/^/    lintian: /'
else
    check "lintian is installed (sh scripts/install-deps.sh)" false
fi

# the control data: an nginx-abi dependency that the installed nginx provides
depends=$(dpkg-deb -f "$DEB" Depends)
abi=$(echo "$depends" | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p')
check "Depends names an nginx-abi-* package ($abi)" [ -n "$abi" ]
check "the installed nginx provides $abi" sh -c "dpkg-query -W -f='\${Provides}' nginx | tr ',' '\n' | grep -qx \" *$abi\""
check "the description says the build is CPU-only" sh -c "dpkg-deb -f '$DEB' Description | grep -q 'for the CPU only'"

$APT install "$DEB" > "$APT_LOG" 2>&1
rc=$?
[ $rc -eq 0 ] && installed=1
[ $rc -eq 0 ] || sed 's/^/    apt: /' "$APT_LOG" | tail -n 20
need "apt-get install $DEB" [ $rc -eq 0 ]

SO=/usr/lib/nginx/modules/ngx_http_musicgen_module.so
SNIPPET=/usr/share/nginx/modules-available/mod-http-musicgen.conf
LINK=/etc/nginx/modules-enabled/50-mod-http-musicgen.conf
DOC=/usr/share/doc/$PKG
check "the module is in $SO" [ -f $SO ]
check "$SNIPPET loads it" grep -qx 'load_module modules/ngx_http_musicgen_module.so;' $SNIPPET
check "$LINK enables it" [ "$(readlink $LINK)" = $SNIPPET ]
for tool in musicgen musicgen-mkmodel musicgen-fetch-model; do
    check "/usr/bin/$tool and its man page" sh -c "[ -x /usr/bin/$tool ] && [ -f /usr/share/man/man1/$tool.1.gz ]"
done
check "the page is in /usr/share/ngx-musicgen/html" [ -f /usr/share/ngx-musicgen/html/index.html ]
check "the example site is in $DOC/examples" [ -f $DOC/examples/musicgen-site.conf ]
check "the README is in $DOC" [ -f $DOC/README.md.gz ]
"$NGINX" -t -q > "$TMP/nginx-t" 2>&1
rc=$?
sed 's/^/    nginx -t: /' "$TMP/nginx-t"
check "nginx -t on the stock configuration, module loaded" [ $rc -eq 0 ]
/usr/bin/musicgen --help > "$TMP/help" 2>&1
check "the installed musicgen runs (--help)" grep -q '^usage: musicgen' "$TMP/help"

# a model from the installed tool, then nginx with the stock module snippets
# and the package's example site (its model path and port swapped for ours)
/usr/bin/musicgen-mkmodel --shape tiny --seed 1 -o "$TMP/model" > "$TMP/mkmodel.log" 2>&1
need "musicgen-mkmodel writes a tiny model" [ -f "$TMP/model/model.safetensors" ]
mkdir -p "$TMP/logs"
sed -e "s#^musicgen_model .*#musicgen_model $TMP/model;#" -e "s#listen 8080;#listen 127.0.0.1:$PORT;#" \
    -e '/listen \[::\]:8080;/d' $DOC/examples/musicgen-site.conf > "$TMP/site.conf"
cat > "$TMP/nginx.conf" <<CONF
include /etc/nginx/modules-enabled/*.conf;
worker_processes 1;
error_log $TMP/logs/error.log info;
pid $TMP/logs/nginx.pid;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    access_log $TMP/logs/access.log;
$TEMP_PATHS
    include $TMP/site.conf;
}
CONF
"$NGINX" -c "$TMP/nginx.conf" > "$TMP/start.log" 2>&1
rc=$?
[ $rc -eq 0 ] || cat "$TMP/start.log" "$TMP/logs/error.log" 2>/dev/null | sed 's/^/    nginx: /'
need "nginx starts with the example site" [ $rc -eq 0 ]
sleep 0.5
code=$(curl -s -m 60 -D "$TMP/gen.h" -o "$TMP/clip.wav" -w '%{http_code}' "$URL/generate?prompt=calm+piano&duration=1&seed=7")
check "a generation through the installed module (200)" [ "$code" = 200 ]
check "returns a WAV file" [ "$(head -c 4 "$TMP/clip.wav")" = RIFF ]
check "of 1 s at 32 kHz, 16-bit mono" [ "$(cat "$TMP/clip.wav" | wc -c)" -eq $((44 + 32000 * 2)) ]
code=$(curl -s -m 10 -o "$TMP/index.html" -w '%{http_code}' "$URL/")
check "the installed page is served at / (200)" [ "$code" = 200 ]
check "and is the photo-to-music page" cmp -s "$TMP/index.html" /usr/share/ngx-musicgen/html/index.html
ctype=$(curl -s -m 10 -o /dev/null -w '%{content_type}' "$URL/app.js")
check "its script comes as JavaScript ($ctype)" sh -c "echo '$ctype' | grep -q javascript"
"$NGINX" -c "$TMP/nginx.conf" -s stop 2>/dev/null
sleep 0.5
rm -f "$TMP/logs/nginx.pid"

$APT purge $PKG > "$APT_LOG" 2>&1
rc=$?
[ $rc -eq 0 ] && installed=
[ $rc -eq 0 ] || sed 's/^/    apt: /' "$APT_LOG" | tail -n 20
need "apt-get purge $PKG" [ $rc -eq 0 ]
check "the module is gone" [ ! -e $SO ]
check "so is its modules-enabled link" sh -c "[ ! -e $LINK ] && [ ! -L $LINK ] && [ ! -L $LINK.removed ]"
"$NGINX" -t -q > "$TMP/nginx-t" 2>&1
rc=$?
sed 's/^/    nginx -t: /' "$TMP/nginx-t"
check "nginx -t on the stock configuration after the purge" [ $rc -eq 0 ]
# the same enabled-modules include with a plain site: nginx starts and answers
cat > "$TMP/nginx.conf" <<CONF
include /etc/nginx/modules-enabled/*.conf;
worker_processes 1;
error_log $TMP/logs/error.log info;
pid $TMP/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log $TMP/logs/access.log;
$TEMP_PATHS
    server { listen 127.0.0.1:$PORT; location / { return 200 "up\n"; } }
}
CONF
"$NGINX" -c "$TMP/nginx.conf" > "$TMP/start.log" 2>&1
check "nginx starts after the purge" [ $? -eq 0 ]
sleep 0.3
check "and answers" [ "$(curl -s -m 5 "$URL/")" = up ]
"$NGINX" -c "$TMP/nginx.conf" -s stop 2>/dev/null
check "and stops" [ $? -eq 0 ]
sleep 0.3
rm -f "$TMP/logs/nginx.pid"
finish
