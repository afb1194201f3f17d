#!/bin/sh
# Runs every test binary given as arguments, then the golden checker on every
# golden set, and prints the overall tally last.
GOLDEN=${GOLDEN:-../shared/golden}
BUILD=${BUILD:-build}
export GOLDEN
passed=0 failed=0 skipped=0
tally() { # $1 = output file, $2 = exit status
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
    p=$(echo "$line" | sed -n 's/.* \{0,1\}\([0-9][0-9]*\) passed.*/\1/p')
    f=$(echo "$line" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p')
    s=$(echo "$line" | sed -n 's/.* \([0-9][0-9]*\) skipped.*/\1/p')
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
    if [ "$2" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
}
out=$(mktemp)
for t in "$@"; do
    echo "== $t"
    "$t" > "$out" 2>&1; rc=$?
    grep -E '^(FAIL|SKIP)|passed, ' "$out"
    tally "$out" $rc
done
for d in "$GOLDEN"/*/; do
    [ -f "$d/manifest.json" ] || [ -f "$d/t5_tokenizer_goldens.json" ] || continue
    echo "== golden $d"
    "$BUILD/mg-golden" "$d" > "$out" 2>&1; rc=$?
    grep -Ev '^ok ' "$out"
    tally "$out" $rc
done
rm -f "$out"
echo "all: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
