#!/bin/sh
# The CLI's usage errors: every one is a single "musicgen: " line naming the
# option at fault (never argv[0]), and exits 2; -d is checked against the
# range whether too short or too long (up to MG_MAX_DURATION: past the
# model's window is long-form), --extend-stride against the window. A file
# --continue cannot read or decode exits 1 naming the option. Good runs exit
# 0 with the file the options ask for: its length the whole clip's (a
# continuation's prompt included, a long-form clip's every window), float WAV
# at --level off.
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

RANGE="-d: must be at least 1 and at most 3600 seconds"
expect 2 "$RANGE (got 0)"                     -m "$M" -p x -o "$TMP/a.wav" -d 0
expect 2 "$RANGE (got 4000)"                  -m "$M" -p x -o "$TMP/a.wav" -d 4000
expect 2 "$RANGE (got 0.5)"                   -m "$M" -p x -o "$TMP/a.wav" --duration 0.5
expect 2 "$RANGE (got 3600.01)"               -m "$M" -p x -o "$TMP/a.wav" -d 3600.01
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
STRIDE="--extend-stride: must be more than 0 and less than 30 seconds (the model's window)"
expect 2 "$STRIDE (got 0)"                    -m "$M" -p x -o "$TMP/a.wav" --extend-stride 0
expect 2 "$STRIDE (got 30)"                   -m "$M" -p x -o "$TMP/a.wav" --extend-stride 30
expect 2 "--extend-stride: must be a number (got 'x')" -m "$M" -p x -o "$TMP/a.wav" --extend-stride x
expect 2 "--level: unknown output level \"loud\"" -m "$M" -p x -o "$TMP/a.wav" --level loud
expect 2 "--continue needs a value"           -m "$M" -p x -o "$TMP/a.wav" --continue
# not usage errors: a model folder that is not one, files --continue cannot use
expect 1 "config.json"                        -m "$TMP/none" -p x -o "$TMP/a.wav" -d 1
expect 1 "--continue: $TMP/none.wav: No such file" -m "$M" -p x -o "$TMP/a.wav" --continue "$TMP/none.wav"
echo "no audio here" > "$TMP/text.wav"
: > "$TMP/empty.wav"
expect 1 "--continue: not an audio file"      -m "$M" -p x -o "$TMP/a.wav" --continue "$TMP/text.wav"
expect 1 "--continue: "                       -m "$M" -p x -o "$TMP/a.wav" --continue "$TMP/empty.wav"
expect 0 ""                                   -m "$M" -p x -o "$TMP/a.wav" -d 1 -q -j 1

size_is() { # $1 = file, $2 = bytes, $3 = what
    got=$(wc -c < "$1")
    if [ "$got" -eq "$2" ]; then passed=$((passed + 1)); echo "ok   - $3: $got bytes"
    else failed=$((failed + 1)); echo "FAIL $3: $got bytes, not $2"; fi
}
size_is "$TMP/a.wav" $((44 + 32000 * 2)) "1 s of 16-bit WAV"
# continuing the 1 s clip: 2 s in all, the prompt's second included
expect 0 ""                                   -m "$M" -p x -o "$TMP/c.wav" -d 2 -q -j 1 --continue "$TMP/a.wav"
size_is "$TMP/c.wav" $((44 + 64000 * 2)) "a continuation of 1 s to 2 s"
expect 2 "-d: 1 s is not longer than the 1.00 s kept of --continue's audio" \
                                              -m "$M" -p x -o "$TMP/c.wav" -d 1 -q --continue "$TMP/a.wav"
# long-form past the 30 s window, and level off: float WAV (58-byte header, 4 bytes a sample)
expect 0 ""                                   -m "$M" -p x -o "$TMP/l.wav" -d 45 -q -j 2 --extend-stride 25 --level off
size_is "$TMP/l.wav" $((58 + 45 * 32000 * 4)) "45 s long-form float WAV"
expect 0 ""                                   -m "$M" -p x -o "$TMP/k.wav" -d 1 -q -j 1 --level clip
size_is "$TMP/k.wav" $((44 + 32000 * 2)) "1 s at --level clip"
expect 0 ""                                   --help
if grep -q "^usage: musicgen -m MODEL_DIR" "$TMP/out"; then passed=$((passed + 1)); echo "ok   - --help on stdout"
else failed=$((failed + 1)); echo "FAIL --help printed no usage on stdout"; fi
if [ -s "$TMP/a.wav" ]; then passed=$((passed + 1)); echo "ok   - wrote a clip"
else failed=$((failed + 1)); echo "FAIL no clip written"; fi
echo "test_cli: $passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
