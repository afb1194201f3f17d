#!/bin/sh
# Installs the Debian 12 packages ngx-musicgen builds and tests with (as root):
# clang + libclang-rt for make fuzz, valgrind for make valgrind, wrk for make soak,
# debhelper (dh_nginx comes with nginx-dev) and lintian for make deb / test-deb.
# One line per phase; apt's own output goes to a log that is printed only
# when a phase fails.
set -e
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: run as root (sudo sh scripts/install-deps.sh)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES="build-essential pkg-config curl ca-certificates python3 python3-prometheus-client
    libjansson-dev libsndfile1-dev libpcre2-dev zlib1g-dev
    libflac-dev libmp3lame-dev libopus-dev libogg-dev libsoxr-dev
    nginx nginx-dev debhelper lintian
    libtest-base-perl libtest-longstring-perl liblist-moreutils-perl libtext-diff-perl
    libwww-perl libipc-run-perl python3-jsonschema
    chromium fonts-dejavu-core nodejs
    clang libclang-rt-14-dev valgrind wrk procps"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# run DESCRIPTION COMMAND...: the command's output in the log, shown on failure
run() {
    what=$1
    shift
    if ! "$@" >"$log" 2>&1; then
        echo "install-deps: $what failed:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

updated=
update_lists() {
    [ -n "$updated" ] && return 0
    echo "install-deps: updating the package lists (apt-get update)..."
    run "apt-get update" apt-get update -q
    updated=1
}

missing=
for p in $PACKAGES; do
    installed "$p" || missing="$missing $p"
done
total=$(echo "$PACKAGES" | wc -w)
if [ -z "$missing" ]; then
    echo "install-deps: all $total packages are already installed"
else
    update_lists
    n=$(echo "$missing" | wc -w)
    echo "install-deps: installing $n of $total packages (build tools, nginx-dev, test tools)... this takes a minute"
    # shellcheck disable=SC2086 # one word per package
    run "apt-get install" apt-get install -y -q --no-install-recommends $missing
fi
# the browser tests (make test-browser): npm installs playwright-core from
# package-lock.json. A nodejs from elsewhere (e.g. NodeSource) brings its own
# npm and conflicts with Debian's.
if ! command -v npm >/dev/null 2>&1; then
    update_lists
    echo "install-deps: installing npm (for the browser tests)..."
    run "apt-get install npm" apt-get install -y -q --no-install-recommends npm
fi
echo "install-deps: done"
