#!/bin/sh
# make bench: builds a random model with the real musicgen-small shapes once
# (cached in $BUILD/bench-model-small) and prints the engine's figures.
set -e
BUILD=${BUILD:-build}
MODEL=${MG_BENCH_MODEL:-$BUILD/bench-model-small}
if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "bench: writing a random musicgen-small-shaped model to $MODEL (once)"
    "$BUILD/musicgen-mkmodel" --shape small --seed 1 -o "$MODEL"
fi
"$BUILD/bench_engine" "$MODEL" "${MG_BENCH_SECONDS:-10}" "${MG_BENCH_THREADS:-0}"
