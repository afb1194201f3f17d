#!/bin/sh
# Runs every test binary given as arguments, then the golden checker on every
# golden set and on each folder of GOLDEN_NEXT_SETS (golden sets of features
# that are being built, picked one by one), and prints the overall tally last.
GOLDEN=${GOLDEN:-../shared/golden}
GOLDEN_NEXT_SETS=${GOLDEN_NEXT_SETS-../shared/golden-next/tiny-proj-cont ../shared/golden-next/tiny-proj-sharded ../shared/golden-next/tiny-stereo}
BUILD=${BUILD:-build}
export GOLDEN
passed=0 failed=0 skipped=0
tally() { # $1 = output file, $2 = exit status
    set -- "$1" "$2" $(grep -E '[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1 |
        awk '{ for (i = 2; i <= NF; i++) { w = $i; sub(/,$/, "", w); c[w] = $(i - 1) }
               printf "%d %d %d", c["passed"], c["failed"], c["skipped"] }')
    p=${3:-0} f=${4:-0} s=${5:-0}
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    # a crash or a non-zero exit without a counted failure still fails the run
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); echo "FAIL exit status $2"; fi
}
out=$(mktemp)
for t in "$@"; do
    echo "== $t"
    "$t" > "$out" 2>&1; rc=$?
    grep -E '^(FAIL|SKIP)|passed, ' "$out"
    tally "$out" $rc
done
if ! ls "$GOLDEN"/*/manifest.json >/dev/null 2>&1; then
    echo "SKIP no golden model folders in $GOLDEN (set GOLDEN=DIR): golden checks not run"
    skipped=$((skipped + 1))
fi
for d in $GOLDEN_NEXT_SETS; do
    [ -f "$d/manifest.json" ] && continue
    echo "SKIP no golden set in $d (set GOLDEN_NEXT_SETS=DIRS): its checks not run"
    skipped=$((skipped + 1))
done
for d in "$GOLDEN"/*/ $GOLDEN_NEXT_SETS; do
    [ -f "$d/manifest.json" ] || [ -f "$d/t5_tokenizer_goldens.json" ] || continue
    echo "== golden $d"
    "$BUILD/mg-golden" "$d" > "$out" 2>&1; rc=$?
    grep -Ev '^ok ' "$out"
    tally "$out" $rc
done
rm -f "$out"
echo "all: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
