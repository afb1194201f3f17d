#!/bin/sh
# Public and internal headers. The rule: a header named *_impl.h is internal
# to the folder it lives in; every other header under src/ is the public API
# of its layer. So:
#   - front ends (the nginx module, tools/ with the CLI and the golden
#     checker, bench/) include no *_impl.h at all;
#   - a file of src/ or kernels/ includes only its own folder's *_impl.h.
# Tests (tests/, fuzz/) are white-box and may include anything.
cd "$(dirname "$0")/.." || exit 1
passed=0 failed=0

# The *_impl.h headers FILE includes, as written, one a line.
internal_includes() {
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*_impl\.h\)".*/\1/p' "$1"
}

# check FILE [FOLDER]: FILE includes no internal header but FOLDER's
# (written "layer/name_impl.h" under src/, or a bare name beside FILE).
check() {
    bad=
    for h in $(internal_includes "$1"); do
        if [ -n "$2" ]; then
            case "$h" in
            "${2#src/}"/*/*) ;;
            "${2#src/}"/*) [ "${2#src/}" != "$2" ] && continue ;;
            */*) ;;
            *) [ -f "$2/$h" ] && continue ;;
            esac
        fi
        bad="$bad $h"
    done
    if [ -z "$bad" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $1 includes internal header(s):$bad (headers named *_impl.h are internal to their folder)"
    fi
}

# The detector itself: it must see an internal include however it is spaced,
# and nothing else.
probe=$(mktemp) || exit 1
printf '#include "io/audio.h"\n  #  include "runtime/model_impl.h" /* x */\n#include <x_impl.h>\n' > "$probe"
if [ "$(internal_includes "$probe")" = "runtime/model_impl.h" ]; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL the detector missed or misread an internal include: '$(internal_includes "$probe")'"
fi
rm -f "$probe"

n_front=0
for f in ngx_http_musicgen_module.c src/nginx/*.[ch] tools/*.[ch] bench/*.[ch]; do
    [ -f "$f" ] || continue
    check "$f"
    n_front=$((n_front + 1))
done
# a glob gone wrong must not pass by checking nothing
if [ "$n_front" -ge 5 ]; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL only $n_front front-end files found"
fi
for f in src/*/*.[ch] kernels/*.c kernels/*.h kernels/*.cu; do
    [ -f "$f" ] || continue
    case "$f" in src/nginx/*) continue ;; esac
    check "$f" "$(dirname "$f")"
done
echo "public_headers: $passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
