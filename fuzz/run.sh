#!/bin/sh
# Runs every libFuzzer target for FUZZ_SECONDS each on a working corpus seeded
# from fuzz/corpus/<target> (the committed seeds stay small), and prints one
# line per target: executions, corpus size, crashes. Exits non-zero when any
# target crashed; the reproducer is in $FUZZ_OUT/crashes/<target>/.
# Usage: fuzz/run.sh FUZZ_BUILD_DIR TARGET...
set -u
dir=$1; shift
secs=${FUZZ_SECONDS:-15}
out=${FUZZ_OUT:-$dir}
crashed=0
summary=$out/summary.txt
: > "$summary"
for t in "$@"; do
    name=$(basename "$t")
    seeds=fuzz/corpus/$name
    work=$out/corpus/$name
    crashes=$out/crashes/$name
    mkdir -p "$work" "$crashes"
    # -max_len: the largest seed or 64 KiB, whichever is bigger (spiece.model seeds are ~9 KB)
    LSAN_OPTIONS=suppressions=fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS} \
    "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$work" "$seeds" > "$out/$name.log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name.log" | tail -n 1)
    n_crash=$(ls "$crashes" | wc -l)
    n_corpus=$(ls "$work" | wc -l)
    line=$(printf '%-20s %10s execs in %ss, corpus %5s, crashes %s' "$name" "${execs:-?}" "$secs" "$n_corpus" "$n_crash")
    echo "$line" | tee -a "$summary"
    if [ $rc -ne 0 ] || [ "$n_crash" -ne 0 ]; then
        crashed=1
        grep -E 'ERROR|SUMMARY|runtime error|==[0-9]+==' "$out/$name.log" | head -n 20
    fi
done
[ $crashed -eq 0 ] || { echo "fuzz: a target crashed (reproducers under $out/crashes/)"; exit 1; }
echo "fuzz: no crashes"
