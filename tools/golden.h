/* mg-golden: shared reporting for the golden checkers (one line per tensor,
 * "N passed, N failed" last). */
#ifndef MG_GOLDEN_H
#define MG_GOLDEN_H
#include <stddef.h>
#include "backend/options.h"

typedef struct {
    int passed, failed, skipped;
    /* MG_DEVICE / MG_DTYPE pick the backend; bf16 matrix weights get their own
     * tolerance, and generated codes (which diverge after the first flipped
     * near-tie) are reported as agreement figures instead of pass/fail. */
    const char *device, *dtype;
    int         bf16;
    mg_backend_options backend; /* MG_CPU_ISA, MG_CUDA_* (backend_env.h) */
    int         info;   /* informational lines (bf16 generation parity) */
} golden_tally;

/* Prints "ok   NAME  detail" or "FAIL NAME  detail" and counts it. */
void golden_report(golden_tally *t, int ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void golden_skip(golden_tally *t, const char *name, const char *why);

/* The tolerance for float comparisons: |a-b| <= rel * max(1, max|ref|) with
 * rel = GOLDEN_REL_F32 for f32 weights, GOLDEN_REL_BF16 for bf16 ones. */
#define GOLDEN_REL_F32 1e-4
/* bf16 keeps 8 significant bits: each weight carries up to 2^-9 (0.2 %)
 * relative rounding error, which through a few layers and norms leaves errors
 * of the order of 0.1-0.5 % of a tensor's scale; 1 % leaves headroom without
 * hiding a real bug (which shows as errors of the tensor's own scale). */
#define GOLDEN_REL_BF16 1e-2
double golden_float_tolerance(const float *ref, size_t n, double rel);

/* Checkers for each kind of golden folder; each adds to the tally. */
void golden_check_tokenizer(const char *dir, golden_tally *t);
void golden_check_model(const char *dir, golden_tally *t);
/* bf16 and q8 against f32 on the greedy runs (--fidelity): prints, never fails. */
void golden_fidelity(const char *dir, golden_tally *t);
#endif
