#!/bin/sh
# The stock nginx binary with the ASan/UBSan runtimes preloaded, so that it can
# dlopen a module built with SAN=1 (the ASan runtime must come first in the
# initial library list). `make test-nginx SAN=1` sets MG_SAN_PRELOAD and
# passes this script as TEST_NGINX_BINARY.
NGINX=${MG_SAN_NGINX:-nginx}
command -v "$NGINX" >/dev/null 2>&1 || NGINX=/usr/sbin/nginx
LD_PRELOAD="$MG_SAN_PRELOAD${LD_PRELOAD:+ $LD_PRELOAD}" exec "$NGINX" "$@"
