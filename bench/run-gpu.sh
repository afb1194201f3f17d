#!/bin/sh
# make bench-gpu: the musicgen-small-shaped random model (written once, as for
# make bench) on the CUDA backend, bf16 weights. MG_BENCH_ABLATE=1 adds decode
# step times with the backend's graph replay, fusion or wide batched tiles
# switched off (MG_CUDA_GRAPHS=0, MG_CUDA_FUSE=0, MG_CUDA_WIDE=0) and in f32.
set -e
BUILD=${BUILD:-build}
MODEL=${MG_BENCH_MODEL:-$BUILD/bench-model-small}
if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "bench-gpu: writing a random musicgen-small-shaped model to $MODEL (once)"
    "$BUILD/musicgen-mkmodel" --shape small --seed 1 -o "$MODEL"
fi
"$BUILD/bench_gpu" "$MODEL"
# the opt-in BF16 paths (not yet run on a GPU: backend/options.h): BF16
# EnCodec convolutions on the tensor cores and BF16 self-attention caches
echo "-- MG_CUDA_CONV_BF16=1 MG_CUDA_KV_BF16=1 MG_CUDA_SELECT_MANY=1"
MG_CUDA_CONV_BF16=1 MG_CUDA_KV_BF16=1 MG_CUDA_SELECT_MANY=1 "$BUILD/bench_gpu" "$MODEL" |
    grep -E '^(decode_step|generate)'
# 64 concurrent single-request generations through the scheduler (as the
# module runs them), one round, without and with the opt-in joint selection
if [ "${MG_BENCH_BIG_BATCH:-64}" != 0 ]; then
    for knobs in MG_CUDA_SELECT_MANY=0 "MG_CUDA_SELECT_MANY=1 MG_CUDA_CONV_BF16=1 MG_CUDA_KV_BF16=1"; do
        echo "-- 64 concurrent requests, $knobs"
        env $knobs "$BUILD/bench_batch" "$MODEL" --dtype bf16 --device cuda --requests 64 \
            --seconds "${MG_BENCH_SECONDS:-30}" --rounds 1
    done
fi
if [ "${MG_BENCH_ABLATE:-0}" != 0 ]; then
    for knobs in MG_CUDA_GRAPHS=0 "MG_CUDA_GRAPHS=0 MG_CUDA_FUSE=0" MG_CUDA_WIDE=0 MG_DTYPE=f32; do
        echo "-- $knobs"
        env $knobs MG_BENCH_SECONDS=1 MG_BENCH_BIG_BATCH=0 "$BUILD/bench_gpu" "$MODEL" | grep decode_step
    done
fi
