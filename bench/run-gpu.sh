#!/bin/sh
# make bench-gpu: the musicgen-small-shaped random model (written once, as for
# make bench) on the CUDA backend: bf16 weights, then f32 step times.
set -e
BUILD=${BUILD:-build}
MODEL=${MG_BENCH_MODEL:-$BUILD/bench-model-small}
if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "bench-gpu: writing a random musicgen-small-shaped model to $MODEL (once)"
    "$BUILD/musicgen-mkmodel" --shape small --seed 1 -o "$MODEL"
fi
"$BUILD/bench_gpu" "$MODEL"
