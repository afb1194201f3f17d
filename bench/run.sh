#!/bin/sh
# make bench: builds a random model with the real musicgen-small shapes once
# (cached in $BUILD/bench-model-small), measures it with each weight format in
# its own process (peak RSS is per process), and prints the table;
# $BUILD/bench.json gets every figure; then the fidelity of bf16 and q8
# against f32 on every golden model ($BUILD/bench-fidelity.txt); what a
# 60 s audio_prompt costs the event loop; the medium and large shapes
# (bench/sizes.sh); last, the streamed audio through nginx with the module
# at $MODULE (bench/stream.sh).
set -e
BUILD=${BUILD:-build}
MODEL=${MG_BENCH_MODEL:-$BUILD/bench-model-small}
THREADS=${MG_BENCH_THREADS:-0}
if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "bench: writing a random musicgen-small-shaped model to $MODEL (once)"
    "$BUILD/musicgen-mkmodel" --shape small --seed 1 -o "$MODEL"
fi
for dt in f32 bf16 q8; do
    secs=0
    [ "$dt" = q8 ] && secs=${MG_BENCH_SECONDS:-10}
    echo "== $dt"
    "$BUILD/bench_engine" "$MODEL" --dtype $dt --seconds "$secs" --threads "$THREADS" \
        --json "$BUILD/bench-$dt.json"
done
for dt in q8 bf16; do
    echo "== $dt load with the converted-weights cache in $BUILD"
    "$BUILD/bench_engine" "$MODEL" --dtype $dt --threads "$THREADS" --load-cache "$BUILD" \
        --json "$BUILD/bench-load-$dt.json"
done
# The decode step early, midway and late in a 30 s window (the late steps'
# self-attention reads ~150 MB of 8-bit caches beside the weights).
echo "== q8 decode step by position"
"$BUILD/bench_late_steps" "$MODEL" --dtype q8 --threads "$THREADS"
echo "== 4 concurrent requests (continuous batching)"
"$BUILD/bench_batch" "$MODEL" --dtype q8 --requests 4 --seconds "${MG_BENCH_SECONDS:-10}" \
    --threads "$THREADS" --json "$BUILD/bench-batch.json"
"$BUILD/bench_engine" --table "$BUILD/bench.json" "$BUILD/bench-f32.json" "$BUILD/bench-bf16.json" \
    "$BUILD/bench-q8.json" "$BUILD/bench-batch.json" "$BUILD/bench-load-q8.json" "$BUILD/bench-load-bf16.json"
# musicgen-stereo-small's shapes (8 interleaved codebooks, EnCodec once per
# channel) with q8 weights: decode ms per step with guidance, EnCodec ms per
# second of stereo audio ($BUILD/bench-stereo-q8.json).
STEREO=${MG_BENCH_STEREO_MODEL:-$BUILD/bench-model-stereo-small}
if [ ! -f "$STEREO/model.safetensors" ]; then
    echo "bench: writing a random musicgen-stereo-small-shaped model to $STEREO (once)"
    "$BUILD/musicgen-mkmodel" --shape small --stereo --seed 1 -o "$STEREO"
fi
echo "== stereo small, q8"
"$BUILD/bench_engine" "$STEREO" --dtype q8 --seconds 0 --threads "$THREADS" \
    --json "$BUILD/bench-stereo-q8.json"
# Fidelity on the musicgen-small-shaped model (teacher-forced logits of bf16,
# q8 with its 8-bit attention caches and q8 with BF16 caches against f32).
echo "== fidelity against f32 on $MODEL"
"$BUILD/bench_fidelity" "$MODEL" --threads "$THREADS" --json "$BUILD/bench-fidelity-small.json"
# Fidelity of bf16 and q8 against f32 on every golden model (greedy runs with
# guidance; informational, the golden checker keeps f32 exact).
GOLDEN=${GOLDEN:-../shared/golden}
found=0
rm -f "$BUILD/bench-fidelity.txt.new"
for g in "$GOLDEN"/*/; do
    [ -f "$g/model.safetensors" ] && [ -f "$g/golden_generate.safetensors" ] || continue
    found=1
    echo "== fidelity against f32: $g"
    "$BUILD/mg-golden" --fidelity "$g" | grep '^fidelity' | tee -a "$BUILD/bench-fidelity.txt.new"
done
if [ "$found" = 1 ]; then
    mv "$BUILD/bench-fidelity.txt.new" "$BUILD/bench-fidelity.txt"
    echo "wrote $BUILD/bench-fidelity.txt"
else
    echo "== fidelity: no golden models under $GOLDEN (set GOLDEN=DIR)"
fi
echo "== the larger checkpoints' shapes (medium, large): q8 and bf16"
BUILD="$BUILD" sh bench/sizes.sh
echo "== resampler: libsoxr against the polyphase one it replaced"
"$BUILD/bench_resample"
# What a 60 s audio_prompt costs the nginx event loop that parses it.
echo "== audio_prompt decode (runs on the nginx event loop)"
"$BUILD/bench_audio_prompt"
echo "== streamed audio and long-form through nginx"
sh bench/stream.sh "${MODULE:-$BUILD/nginx/objs/ngx_http_musicgen_module.so}" "$MODEL"
