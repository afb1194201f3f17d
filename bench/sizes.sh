#!/bin/sh
# The larger checkpoints at their real shapes (part of make bench; alone:
# make bench-sizes). For each shape of $MG_BENCH_SIZES (default: medium
# large) it writes a random model with bf16 weights (half the disk of f32;
# q8 and bf16 are converted from it) to $BUILD/bench-model-SHAPE, then per
# weight format ($MG_BENCH_SIZE_FORMATS, default q8 bf16), each in its own
# process:
#   1. bench_engine --load-cache: converts and writes the weights cache, then
#      maps it (the load times a first and a later worker start see);
#   2. bench_engine with that cache mapped, as a server with
#      musicgen_weights_cache runs: decode step (batch 1 with guidance,
#      median of $MG_BENCH_SIZE_STEPS steps), decoder weight MB per step, the
#      streaming read bandwidth, peak RSS and its private and file-backed
#      (shared between workers) parts.
# A format whose weights would not fit in MemAvailable, or a model that
# would not fit on the disk, is skipped and says so. The model and caches
# are deleted afterwards (MG_BENCH_KEEP_SIZES=1 keeps the models). Last, a
# table: the bandwidth bound of a step is its weight bytes over the measured
# read bandwidth; the target for medium q8 is a step within 1.3x of it.
set -e
BUILD=${BUILD:-build}
THREADS=${MG_BENCH_THREADS:-0}
STEPS=${MG_BENCH_SIZE_STEPS:-100}
SIZES=${MG_BENCH_SIZES:-medium large}
FORMATS=${MG_BENCH_SIZE_FORMATS:-q8 bf16}

# MB of a key in one of bench_engine's JSON files (empty when absent)
val() { sed -n "s/.*\"$1\": *\([-0-9.e+]*\).*/\1/p" "$2" | head -n 1; }
avail_mb() { awk '/^MemAvailable:/ { printf "%d", $2 / 1024 }' /proc/meminfo; }
disk_mb() { df -Pm "$1" | awk 'NR == 2 { print $4 }'; }

rows=""
for shape in $SIZES; do
    model="$BUILD/bench-model-$shape" cache="$BUILD/bench-cache-$shape"
    if [ ! -f "$model/model.safetensors" ]; then
        # bf16 bytes: ~4.0 GB medium, ~6.8 GB large
        need=$(case $shape in medium) echo 4200 ;; large) echo 7000 ;; *) echo 3000 ;; esac)
        if [ "$(disk_mb "$BUILD")" -lt $((need * 2 + 2000)) ]; then
            echo "== $shape: skipped, $((need * 2 + 2000)) MB of disk needed (model and cache), $(disk_mb "$BUILD") MB free"
            continue
        fi
        echo "== $shape: writing a random model of its real shape to $model (bf16)"
        "$BUILD/musicgen-mkmodel" --shape "$shape" --seed 1 --dtype bf16 -o "$model"
    fi
    file_mb=$(( $(stat -c %s "$model/model.safetensors") / 1048576 ))
    for dt in $FORMATS; do
        # converted weights: q8 about half the bf16 file, bf16 the file;
        # the first load holds them while writing the cache, plus scratch
        w=$file_mb
        [ "$dt" = q8 ] && w=$((file_mb / 2))
        if [ "$(avail_mb)" -lt $((w + 1500)) ]; then
            echo "== $shape $dt: skipped, ~$((w + 1500)) MB of memory needed, $(avail_mb) MB available"
            continue
        fi
        rm -rf "$cache" && mkdir -p "$cache"
        echo "== $shape $dt: load, converting and writing the weights cache, then mapping it"
        "$BUILD/bench_engine" "$model" --dtype $dt --threads "$THREADS" --load-cache "$cache" \
            --json "$BUILD/bench-load-$shape-$dt.json"
        echo "== $shape $dt: decode with the cache mapped"
        "$BUILD/bench_engine" "$model" --dtype $dt --threads "$THREADS" --steps "$STEPS" \
            --weights-cache "$cache" --json "$BUILD/bench-$shape-$dt.json"
        rm -rf "$cache"
        rows="$rows $shape:$dt"
    done
    [ "${MG_BENCH_KEEP_SIZES:-0}" = 1 ] || rm -rf "$model"
done

echo
echo "| shape | format | weights per step | step (batch 1, guidance) | read bandwidth | bound | step / bound | peak RSS (private + files) | load convert / cached |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in $rows; do
    shape=${r%%:*} dt=${r#*:}
    j="$BUILD/bench-$shape-$dt.json" l="$BUILD/bench-load-$shape-$dt.json"
    mb=$(val "decode_weight_mb_$dt" "$j") ms=$(val "decode_ms_$dt" "$j") bw=$(val read_bandwidth_gbs "$j")
    awk -v s="$shape" -v d="$dt" -v mb="$mb" -v ms="$ms" -v bw="$bw" -v rss="$(val "peak_rss_mb_$dt" "$j")" \
        -v pr="$(val "rss_private_mb_$dt" "$j")" -v fi="$(val "rss_file_mb_$dt" "$j")" \
        -v lc="$(val "load_first_ms_$dt" "$l")" -v ll="$(val "load_cached_ms_$dt" "$l")" 'BEGIN {
        bound = mb / bw  # MB / (GB/s) = ms
        printf "| %s | %s | %.0f MB | %.1f ms | %.1f GB/s | %.1f ms | %.2fx | %.0f MB (%.0f + %.0f) | %.1f / %.1f s |\n",
               s, d, mb, ms, bw, bound, ms / bound, rss, pr, fi, lc / 1e3, ll / 1e3 }'
done
