#!/bin/sh
# The CLI's usage errors: every one is a single "musicgen: " line naming the
# option at fault (never argv[0]), and exits 2; -d is checked against the
# model's range whether too short or too long. A run with good options exits 0.
BUILD=${BUILD:-build}
CLI=$BUILD/musicgen
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0 failed=0
if ! "$BUILD/musicgen-mkmodel" --shape tiny --seed 1 -o "$TMP/model" > "$TMP/mk" 2>&1; then
    cat "$TMP/mk"; echo "test_cli: 0 passed, 1 failed, 0 skipped"; exit 1
fi
M=$TMP/model

expect() { # $1 = exit status, $2 = text the first line of stderr must hold, then the arguments
    want=$1 text=$2; shift 2
    "$CLI" "$@" > "$TMP/out" 2> "$TMP/err"; rc=$?
    first=$(head -n 1 "$TMP/err")
    if [ "$rc" -ne "$want" ]; then
        failed=$((failed + 1)); echo "FAIL exit $rc, not $want: musicgen $*"; sed 's/^/    | /' "$TMP/err"
    elif [ -n "$text" ] && [ "${first#musicgen: }" = "$first" ]; then
        failed=$((failed + 1)); echo "FAIL not prefixed 'musicgen: ': musicgen $*"; sed 's/^/    | /' "$TMP/err"
    elif ! printf '%s\n' "$first" | grep -qF -- "$text"; then
        failed=$((failed + 1)); echo "FAIL message lacks '$text': musicgen $*"; sed 's/^/    | /' "$TMP/err"
    else
        passed=$((passed + 1)); echo "ok   - exit $rc: musicgen $*"
    fi
}

RANGE="-d: must be at least 1 and at most 40.9 seconds"
expect 2 "$RANGE (got 0)"                     -m "$M" -p x -o "$TMP/a.wav" -d 0
expect 2 "$RANGE (got 1000)"                  -m "$M" -p x -o "$TMP/a.wav" -d 1000
expect 2 "$RANGE (got 0.5)"                   -m "$M" -p x -o "$TMP/a.wav" --duration 0.5
expect 2 "$RANGE (got 40.95)"                 -m "$M" -p x -o "$TMP/a.wav" -d 40.95
expect 2 "-d: must be a number (got 'ten')"   -m "$M" -p x -o "$TMP/a.wav" -d ten
expect 2 "-d: must be a number (got 'nan')"   -m "$M" -p x -o "$TMP/a.wav" -d nan
expect 2 "-t: must be at least 0.001 and at most 100 (got 0)" -m "$M" -p x -o "$TMP/a.wav" -t 0
expect 2 "--top-p: must be at least 1e-06 and at most 1 (got 2)" -m "$M" -p x -o "$TMP/a.wav" --top-p 2
expect 2 "missing -m MODEL_DIR"               -p x -o "$TMP/a.wav"
expect 2 "missing -p PROMPT"                  -m "$M" -o "$TMP/a.wav"
expect 2 "missing -o FILE"                    -m "$M" -p x
expect 2 "missing -m MODEL_DIR, -p PROMPT, -o FILE"
expect 2 "unknown option -x"                  -m "$M" -p x -o "$TMP/a.wav" -x
expect 2 "unknown option --bogus"             -m "$M" -p x -o "$TMP/a.wav" --bogus
expect 2 "-d needs a value"                   -m "$M" -p x -o "$TMP/a.wav" -d
expect 2 "--top-p needs a value"              -m "$M" -p x -o "$TMP/a.wav" --top-p
expect 2 "unexpected argument 'extra'"        -m "$M" -p x -o "$TMP/a.wav" extra
expect 2 "unknown audio format"               -m "$M" -p x -o "$TMP/a.wav" -f aiff
# not usage errors: a model folder that is not one, and a clip
expect 1 "config.json"                        -m "$TMP/none" -p x -o "$TMP/a.wav" -d 1
expect 0 ""                                   -m "$M" -p x -o "$TMP/a.wav" -d 1 -q -j 1
expect 0 ""                                   --help
if grep -q "^usage: musicgen -m MODEL_DIR" "$TMP/out"; then passed=$((passed + 1)); echo "ok   - --help on stdout"
else failed=$((failed + 1)); echo "FAIL --help printed no usage on stdout"; fi
if [ -s "$TMP/a.wav" ]; then passed=$((passed + 1)); echo "ok   - wrote a clip"
else failed=$((failed + 1)); echo "FAIL no clip written"; fi
echo "test_cli: $passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
