/* The CUDA backend's BF16 convolutions as implicit matrix products
 * (kernels/conv_mma.h): the kernel's index map, run here as a plain loop,
 * against the CPU backend's conv1d / conv_transpose1d with the same BF16 pair
 * weights. Every output sample must be produced exactly once and equal the
 * CPU's up to F32 summation order. Needs no GPU: the map is the part of the
 * kernel this machine can check; mg-kernel-test checks the kernel itself
 * where a GPU is present. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/conv_mma.h"
#include "backend/backend.h"
#include "backend/layout.h"
#include "check.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / 16777216.0) * 2.0f - 1.0f;
}

static float bf16_round(float f) { return mg_bf16_to_f32(mg_f32_to_bf16(f)); }

/* One case: a conv1d (transposed = 0: w [c_out][c_in][k]) or a transposed
 * conv (w [c_in][c_out][k]); a = stride, b = dilation or trim_left. */
static void run_case(mg_backend *be, int transposed, int batch, int c_in, int c_out, int k,
                     int t_in, int stride, int b_arg)
{
    int t_y = transposed ? (t_in - 1) * stride + k - b_arg - (b_arg + 1) / 2
                         : (t_in - b_arg * (k - 1) - 1) / stride + 1;
    int64_t d0 = transposed ? c_in : c_out, d1 = transposed ? c_out : c_in;
    int64_t nx = (int64_t)batch * c_in * t_in, ny = (int64_t)batch * c_out * t_y, nw = d0 * d1 * k;
    float *x = malloc((size_t)nx * sizeof *x), *wf = malloc((size_t)nw * sizeof *wf);
    float *bias = malloc((size_t)c_out * sizeof *bias), *emu = calloc((size_t)ny, sizeof *emu);
    float *ref = malloc((size_t)ny * sizeof *ref);
    double *bound = calloc((size_t)ny, sizeof *bound);
    int *count = calloc((size_t)ny, sizeof *count);
    uint32_t *pairs = calloc((size_t)(nw / 2), sizeof *pairs);
    if (!x || !wf || !bias || !emu || !ref || !bound || !count || !pairs) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < nx; i++)
        x[i] = frand();
    for (int64_t i = 0; i < nw; i++)
        wf[i] = frand() * 0.3f;
    for (int i = 0; i < c_out; i++)
        bias[i] = frand();
    for (int64_t a = 0; a < d0; a++)
        for (int64_t bb = 0; bb < d1; bb++)
            for (int64_t j = 0; j < k; j++) {
                int half;
                int64_t wd = mg_conv_bf16_pair_word(a, bb, j, d1, k, transposed, &half);
                pairs[wd] |= (uint32_t)mg_f32_to_bf16(wf[(a * d1 + bb) * k + j]) << (16 * half);
            }

    /* the map, as conv_mma_kernel walks it (sums in double here) */
    mg_conv_mma_args a;
    memset(&a, 0, sizeof a);
    mg_conv_mma_shape(&a, transposed, batch, c_in, c_out, k, t_in, t_y, stride, b_arg);
    a.x = x;
    a.w = pairs;
    int phases = transposed ? stride : 1, K = c_in * a.taps;
    for (int ph = 0; ph < phases; ph++)
        for (int m = 0; m < a.rows; m++) {
            int b, pos;
            mg_conv_mma_row(&a, m, &b, &pos);
            int oy = mg_conv_mma_oy(&a, ph, pos);
            if (oy < 0)
                continue;
            for (int n = 0; n < c_out; n++) {
                double s = 0, abs_s = 0;
                for (int kk = 0; kk < K; kk++) {
                    uint32_t wb = mg_conv_mma_w(&a, ph, n, kk);
                    float wv;
                    memcpy(&wv, &wb, sizeof wv);
                    double p = (double)bf16_round(mg_conv_mma_x(&a, ph, b, pos, kk)) * wv;
                    s += p;
                    abs_s += fabs(p);
                }
                int64_t i = ((int64_t)b * c_out + n) * t_y + oy;
                emu[i] = (float)(s + bias[n]);
                bound[i] = abs_s + fabs(bias[n]);
                count[i]++;
            }
        }

    /* the CPU backend on the same BF16 pair weights */
    mg_error err = {0};
    mg_tensor *tx = NULL, *ty = NULL, *tw = NULL, *tb = NULL;
    mg_code rc = mg_tensor_new(&tx, be, MG_DT_F32, 2, (int64_t[]){(int64_t)batch * c_in, t_in}, &err);
    if (rc == MG_OK) rc = mg_tensor_new(&ty, be, MG_DT_F32, 2, (int64_t[]){(int64_t)batch * c_out, t_y}, &err);
    if (rc == MG_OK) rc = mg_tensor_new(&tw, be, MG_DT_BF16, 3, (int64_t[]){d0, d1, k}, &err);
    if (rc == MG_OK) rc = mg_tensor_new(&tb, be, MG_DT_F32, 1, (int64_t[]){c_out}, &err);
    if (rc == MG_OK) rc = mg_tensor_upload_f32(tx, x, &err);
    if (rc == MG_OK) rc = mg_tensor_upload_f32(tb, bias, &err);
    if (rc == MG_OK) rc = be->ops->upload(be, tw, 0, pairs, (size_t)(nw / 2) * sizeof *pairs, &err);
    if (rc == MG_OK) {
        if (transposed)
            be->ops->conv_transpose1d(be, ty, tx, tw, tb, batch, stride, b_arg);
        else
            be->ops->conv1d(be, ty, tx, tw, tb, batch, stride, b_arg);
        rc = mg_tensor_download_f32(ty, ref, &err);
    }
    char what[120];
    snprintf(what, sizeof what, "%s B=%d %d->%d k=%d T=%d s=%d %s=%d", transposed ? "convT" : "conv1d",
             batch, c_in, c_out, k, t_in, stride, transposed ? "trim" : "d", b_arg);
    CHECK(rc == MG_OK, "%s: %s", what, err.msg);
    int64_t missing = 0, twice = 0, bad = 0, first = -1;
    double worst = 0;
    for (int64_t i = 0; rc == MG_OK && i < ny; i++) {
        missing += count[i] == 0;
        twice += count[i] > 1;
        /* both sums round each of their K + 1 additions once in F32 (the
         * reference's in double): |error| <= (K + 1) 2^-24 Σ|terms| each */
        double tol = 2.0 * (K + 1) * ldexp(1.0, -24) * bound[i] + 1e-30;
        double d = fabs((double)emu[i] - ref[i]);
        if (!(d <= tol) && bad++ == 0)
            first = i;
        if (d / (bound[i] + 1e-30) > worst)
            worst = d / (bound[i] + 1e-30);
    }
    CHECK(rc != MG_OK || (missing == 0 && twice == 0), "%s: %lld outputs never produced, %lld twice",
          what, (long long)missing, (long long)twice);
    CHECK(rc != MG_OK || bad == 0, "%s: %lld outputs differ (first at %lld: map %g, cpu %g)", what,
          (long long)bad, (long long)first, first >= 0 ? emu[first] : 0, first >= 0 ? ref[first] : 0);
    if (rc == MG_OK && !missing && !twice && !bad)
        printf("ok   %-48s rows %d x %d phase(s), worst %.2g of the terms' size\n", what, a.rows,
               phases, worst);
    mg_tensor_free(tx);
    mg_tensor_free(ty);
    mg_tensor_free(tw);
    mg_tensor_free(tb);
    free(x); free(wf); free(bias); free(emu); free(ref); free(bound); free(count); free(pairs);
}

int main(void)
{
    mg_backend *be = NULL;
    mg_error err = {0};
    if (mg_backend_cpu_create(&be, 2, MG_DT_F32, NULL, &err) != MG_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* awkward sizes, strides, dilations, batches; EnCodec's shapes (k = 2s
     * transposed convs with their trims, dilated k=3 residual convs, 1x1) */
    run_case(be, 0, 1, 6, 35, 7, 100, 1, 1);
    run_case(be, 0, 3, 38, 19, 3, 77, 1, 3);
    run_case(be, 0, 2, 6, 17, 4, 50, 2, 1);
    run_case(be, 0, 1, 130, 70, 1, 333, 1, 1);
    run_case(be, 0, 2, 64, 32, 3, 300, 1, 9);
    run_case(be, 0, 3, 32, 64, 1, 129, 1, 1);
    run_case(be, 0, 1, 64, 1, 7, 90, 1, 1);
    run_case(be, 1, 1, 6, 35, 16, 13, 8, 4);
    run_case(be, 1, 3, 38, 17, 4, 29, 2, 1);
    run_case(be, 1, 2, 10, 20, 10, 7, 5, 3);
    run_case(be, 1, 2, 128, 64, 8, 40, 4, 2);
    run_case(be, 1, 1, 64, 32, 16, 9, 8, 8);
    run_case(be, 1, 2, 8, 16, 3, 11, 2, 0); /* kernel not a multiple of the stride */
    be->ops->destroy(be);
    return check_summary("test_conv_mma");
}
