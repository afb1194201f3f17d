#!/bin/sh
# Every fuzz target's committed corpus (seeds, and the reproducer of any crash
# a fuzzer found, saved there) replayed through the target without libFuzzer:
# a crash fixed once stays fixed. Built with the test build's flags (ASan and
# UBSan under SAN=1).
BUILD=${BUILD:-build}
GOLDEN=${GOLDEN:-../shared/golden}
[ -f "$GOLDEN/tiny-a/spiece.model" ] && export MG_FUZZ_SPIECE="$GOLDEN/tiny-a/spiece.model"
passed=0 failed=0
for t in "$BUILD"/replay_*; do
    name=fuzz_${t##*/replay_}
    if "$t" "fuzz/corpus/$name" > "$BUILD/$name.replay.log" 2>&1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name:"; tail -n 20 "$BUILD/$name.replay.log"
    fi
done
echo "fuzz_replay: $passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
