/* mg-golden DIR: runs the engine on exactly the inputs recorded in a golden
 * folder and compares every tensor its manifest lists (or, for the tokenizer
 * folder, every prompt's ids). Prints one line per tensor and the tally last.
 * With --fidelity: how far bf16 and q8 weights move the golden greedy runs. */
#include "golden.h"
#include "backend_env.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void golden_report(golden_tally *t, int ok, const char *name, const char *fmt, ...)
{
    printf("%-4s %-52s ", ok ? "ok" : "FAIL", name);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (ok)
        t->passed++;
    else
        t->failed++;
}

void golden_skip(golden_tally *t, const char *name, const char *why)
{
    printf("skip %-52s %s\n", name, why);
    t->skipped++;
}

double golden_float_tolerance(const float *ref, size_t n, double rel)
{
    double mx = 1.0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref[i]) && fabs(ref[i]) > mx)
            mx = fabs(ref[i]);
    return rel * mx;
}

int main(int argc, char **argv)
{
    int fidelity = argc == 3 && !strcmp(argv[1], "--fidelity");
    if (argc != 2 && !fidelity) {
        fprintf(stderr, "usage: mg-golden DIR   (a golden model folder or the tokenizer folder)\n"
                        "       mg-golden --fidelity DIR   (bf16 and q8 against f32)\n");
        return 2;
    }
    golden_tally t = {0};
    t.device = getenv("MG_DEVICE");
    t.dtype = getenv("MG_DTYPE");
    mg_backend_options_from_env(&t.backend);
    /* on CUDA the default matrix format is bf16 */
    t.bf16 = t.dtype ? strcmp(t.dtype, "bf16") == 0
                     : t.device && strncmp(t.device, "cuda", 4) == 0;
    if (t.device)
        printf("device %s, matrix weights %s\n", t.device, t.bf16 ? "bf16" : "f32");
    if (fidelity) {
        golden_fidelity(argv[2], &t);
        printf("%d passed, %d failed, %d skipped\n", t.passed, t.failed, t.skipped);
        return t.failed ? 1 : 0;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/t5_tokenizer_goldens.json", argv[1]);
    if (access(path, R_OK) == 0)
        golden_check_tokenizer(argv[1], &t);
    else
        golden_check_model(argv[1], &t);
    if (t.info)
        printf("%d informational bf16 generation lines (codes may diverge after a near-tie)\n", t.info);
    printf("%d passed, %d failed, %d skipped\n", t.passed, t.failed, t.skipped);
    return t.failed || (t.passed == 0) ? 1 : 0;
}
