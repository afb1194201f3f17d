/* mg-golden: shared reporting for the golden checkers (one line per tensor,
 * "N passed, N failed" last). */
#ifndef MG_GOLDEN_H
#define MG_GOLDEN_H
#include <stddef.h>

typedef struct {
    int passed, failed, skipped;
} golden_tally;

/* Prints "ok   NAME  detail" or "FAIL NAME  detail" and counts it. */
void golden_report(golden_tally *t, int ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void golden_skip(golden_tally *t, const char *name, const char *why);

/* The one tolerance for float comparisons: |a-b| <= 1e-4 * max(1, max|ref|). */
double golden_float_tolerance(const float *ref, size_t n);

/* Checkers for each kind of golden folder; each adds to the tally. */
void golden_check_tokenizer(const char *dir, golden_tally *t);
void golden_check_model(const char *dir, golden_tally *t);
/* bf16 and q8 against f32 on the greedy runs (--fidelity): prints, never fails. */
void golden_fidelity(const char *dir, golden_tally *t);
#endif
