#!/bin/sh
# Installs the Debian 12 packages ngx-musicgen builds and tests with (as root):
# clang + libclang-rt for make fuzz, valgrind for make valgrind, wrk for make soak.
set -e
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: run as root (sudo sh scripts/install-deps.sh)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    build-essential pkg-config curl ca-certificates python3 \
    libjansson-dev libsndfile1-dev libpcre2-dev zlib1g-dev \
    nginx nginx-dev \
    libtest-base-perl libtest-longstring-perl liblist-moreutils-perl libtext-diff-perl \
    libwww-perl libipc-run-perl \
    chromium fonts-dejavu-core nodejs \
    clang libclang-rt-14-dev valgrind wrk procps >/dev/null
# the browser tests (make test-browser): npm installs playwright-core from
# package-lock.json. A nodejs from elsewhere (e.g. NodeSource) brings its own
# npm and conflicts with Debian's.
command -v npm >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends npm >/dev/null
echo "install-deps: done"
