#!/bin/sh
# mg-kernel-test's own harness on a machine without a GPU: MG_KTEST_SELF=1
# runs its checks with a second CPU backend in place of the CUDA one (f32
# mode, the decoder-like steps with F32 and BF16 caches), so the comparisons
# that judge the CUDA kernels where a GPU exists are known to pass on equal
# backends. Skipped in builds without the CUDA backend (no mg-kernel-test).
BUILD=${BUILD:-build}
if [ ! -x "$BUILD/mg-kernel-test" ]; then
    echo "SKIP no $BUILD/mg-kernel-test (built without nvcc or with CUDA=0)"
    echo "test_ktest_self: 0 passed, 0 failed, 1 skipped"
    exit 0
fi
MG_KTEST_SELF=1 "$BUILD/mg-kernel-test"
