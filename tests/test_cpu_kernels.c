/* CPU weight formats and linear() kernels against plain references, on
 * awkward sizes, for every kernel level this CPU has (the backend is forced
 * down to each in turn), plus thread-count independence. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "cpu/cpu_impl.h"
#include "cpu/cpu_quant_impl.h"
#include "io/safetensors.h"

static float rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static mg_backend *backend(int threads, mg_dtype dt)
{
    mg_backend *be = NULL;
    mg_error err = {0};
    if (mg_backend_cpu_create(&be, threads, dt, NULL, &err) != MG_OK)
        return NULL;
    return be;
}

/* A matrix weight as the loader makes it (host F32 in, backend format out). */
static mg_tensor *matrix(mg_backend *be, const float *host, int64_t rows, int64_t cols)
{
    mg_error err = {0};
    mg_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    *t = (mg_tensor){.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {rows, cols},
                     .nbytes = (size_t)(rows * cols) * sizeof(float)};
    if (be->ops->weight(be, t, host, MG_WEIGHT_MATRIX, &err) != MG_OK) {
        free(t);
        return NULL;
    }
    return t;
}

static void test_conversions(void)
{
    /* bf16: round to nearest even, NaN kept */
    /* 37 values: two whole vectors of the AVX-512 path and a ragged tail,
     * ties, subnormals, infinities and NaNs among them */
    float x[37] = {1.0f, 1.00390625f, 1.01171875f, -3.5e-3f, NAN, INFINITY, -INFINITY, -NAN,
                   1e-40f, -1e-45f, 3.0e38f, -1.0f};
    for (int i = 12; i < 37; i++)
        x[i] = (float)(i * 7919 % 1000) / 37.0f - 13.0f;
    x[30] = 1.0f + 3.0f / 256.0f;  /* exactly halfway, odd lower bf16: rounds up */
    uint16_t y[37];
    int ok = 1;
    for (int isa = MG_CPU_ISA_SCALAR; isa <= (int)mg_cpu_isa_detect(); isa++) {
        mg_bf16_row_from_f32((mg_cpu_isa)isa, x, y, 37);
        for (int i = 0; i < 37; i++)
            ok &= y[i] == mg_f32_to_bf16(x[i]) || (isnan(x[i]) && (y[i] & 0x7f80) == 0x7f80 && (y[i] & 0x7f));
    }
    CHECK(ok, "bf16 conversion matches the scalar reference at every kernel level (ties to even, NaN)");

    /* Q8ROW: per 64-block scale max|x|/127, quants rounded to nearest even
     * and stored + 128, scales after the quants; back within half a step;
     * copy_rows quantises the same */
    {
        enum { COLS = 192, B = MG_Q8ROW_BLOCK };
        float v[2][COLS], back[COLS];
        for (int i = 0; i < 2 * COLS; i++)
            v[i / COLS][i % COLS] = (float)((i * 7919) % 2001) / 300.0f - 3.3f;
        for (int i = B; i < 2 * B; i++)
            v[0][i] = 0; /* an all-zero block: scale 0 */
        v[0][0] = 127.0f; /* block scale 1: the next values are exact ties */
        v[0][5] = 2.5f;
        v[0][6] = -3.5f;
        size_t rb = mg_dtype_row_bytes(MG_DT_Q8ROW, COLS);
        CHECK(B == 64 && rb == COLS + COLS / B * 4 && mg_dtype_row_bytes(MG_DT_Q8ROW, 96) == 0,
              "Q8ROW row bytes (%zu), 0 for a ragged row", rb);
        char row[2][COLS + COLS / 16];
        int same = 1, close = 1;
        for (int isa = MG_CPU_ISA_SCALAR; isa <= (int)mg_cpu_isa_detect(); isa++) {
            mg_q8row_quantize((mg_cpu_isa)isa, v[0], COLS, row[0]);
            for (int b = 0; b < COLS / B; b++) {
                float amax = 0;
                for (int i = 0; i < B; i++)
                    amax = fmaxf(amax, fabsf(v[0][B * b + i]));
                float inv = amax > 0 ? 127.0f / amax : 0.0f;
                same &= mg_q8row_scales(row[0], COLS)[b] == amax / 127.0f;
                for (int i = 0; i < B; i++)
                    same &= (uint8_t)row[0][B * b + i] == (uint8_t)((int)rintf(v[0][B * b + i] * inv) + 128);
            }
        }
        mg_q8row_dequantize(row[0], COLS, 0, COLS, back);
        for (int i = 0; i < COLS; i++)
            close &= fabsf(back[i] - v[0][i]) <= 0.5f * mg_q8row_scales(row[0], COLS)[i / B] * 1.0001f;
        CHECK(same, "Q8ROW quants and scales are the scalar formula's at every kernel level");
        CHECK((uint8_t)row[0][5] == 130 && (uint8_t)row[0][6] == 124, "Q8ROW ties round to even (%d, %d)",
              (uint8_t)row[0][5], (uint8_t)row[0][6]);
        CHECK(close, "Q8ROW values come back within half a step");
        mg_backend *be = backend(1, MG_DT_F32);
        mg_tensor *dst = NULL;
        int64_t ne[2] = {3, COLS};
        mg_error err = {0};
        CHECK(be && mg_tensor_new(&dst, be, MG_DT_Q8ROW, 2, ne, &err) == MG_OK &&
                  dst->nbytes == 3 * rb, "a Q8ROW tensor of 3 rows");
        int64_t bad[2] = {3, 96};
        mg_tensor *ragged = NULL;
        CHECK(be && mg_tensor_new(&ragged, be, MG_DT_Q8ROW, 2, bad, &err) == MG_ERR_INVALID && !ragged,
              "a Q8ROW tensor of ragged rows is refused: %s", err.msg);
        if (dst) {
            mg_tensor src = {.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {2, COLS}, .data = v};
            be->ops->copy_rows(be, dst, 1, &src, 0, 2);
            mg_q8row_quantize(mg_cpu_backend_isa(be), v[1], COLS, row[1]);
            CHECK(!memcmp((char *)dst->data + rb, row, 2 * rb), "copy_rows quantises into Q8ROW rows");
            mg_tensor view = mg_tensor_rows_view(dst, 2, 1);
            CHECK(view.data == (char *)dst->data + 2 * rb && view.nbytes == rb, "a Q8ROW row view");
        }
        mg_tensor_free(dst);
        if (be)
            be->ops->destroy(be);
    }

    /* q8 and bf16 matrices of awkward shapes read back within their rounding */
    static const int64_t shapes[][2] = {{1, 1}, {3, 31}, {5, 33}, {7, 64}, {9, 130}, {4, 200}};
    mg_backend *be[2] = {backend(2, MG_DT_Q8), backend(2, MG_DT_BF16)};
    CHECK(be[0] && be[1], "backends");
    if (!be[0] || !be[1])
        return;
    uint64_t seed = 7;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t R = shapes[s][0], C = shapes[s][1];
        float *w = malloc((size_t)(R * C) * sizeof *w), *row = malloc((size_t)C * sizeof *row);
        for (int64_t i = 0; i < R * C; i++)
            w[i] = rnd(&seed) * (i % 7 == 0 ? 10.0f : 1.0f);
        if (R * C > 3)
            w[2] = 0; /* and an all-zero block somewhere */
        for (int f = 0; f < 2; f++) {
            mg_tensor *t = matrix(be[f], w, R, C);
            CHECK(t && t->dtype == (f ? MG_DT_BF16 : MG_DT_Q8), "converted %lldx%lld", (long long)R, (long long)C);
            if (!t)
                continue;
            double worst = 0;
            for (int64_t r = 0; r < R; r++) {
                mg_cpu_matrix_row(t, r, row, 0);
                for (int64_t c0 = 0; c0 < C; c0 += 32) {
                    float amax = 0;
                    for (int64_t c = c0; c < C && c < c0 + 32; c++)
                        amax = fmaxf(amax, fabsf(w[r * C + c]));
                    for (int64_t c = c0; c < C && c < c0 + 32; c++) {
                        /* q8: half a step of the block; bf16: 2^-9 relative */
                        double lim = f ? fabs(w[r * C + c]) / 256.0 : amax / 127.0 * 0.5 + 1e-7;
                        double e = fabs(row[c] - w[r * C + c]);
                        worst = e / (lim + 1e-30) > worst ? e / (lim + 1e-30) : worst;
                    }
                }
            }
            CHECK(worst <= 1.0001, "%s %lldx%lld round trip within its rounding (worst %.3g of the bound)",
                  f ? "bf16" : "q8", (long long)R, (long long)C, worst);
            /* embed over a compressed table accumulates the same rows */
            float *acc = calloc((size_t)C, sizeof *acc);
            mg_tensor y = {.be = be[f], .dtype = MG_DT_F32, .ndim = 2, .ne = {1, C}, .data = acc};
            int32_t id = (int32_t)(R - 1);
            be[f]->ops->embed(be[f], &y, t, &id, 1, 1);
            mg_cpu_matrix_row(t, R - 1, row, 0);
            CHECK(acc && !memcmp(acc, row, (size_t)C * sizeof *acc), "embed reads the dequantised row");
            free(acc);
            mg_tensor_free(t);
        }
        free(w);
        free(row);
    }
    be[0]->ops->destroy(be[0]);
    be[1]->ops->destroy(be[1]);
}

/* y = x·wᵀ + b in double from the weights as stored (dequantised); mag =
 * Σ|x·w| (float rounding scale), qerr = Σ|w|·max|x of the block|/254 (the
 * most that rounding x to int8 per 32-block can move the sum). */
static void reference(const mg_tensor *w, const float *x, const float *b, int64_t M, int64_t N,
                      int64_t K, double *y, double *mag, double *qerr)
{
    float *row = malloc((size_t)K * sizeof *row);
    for (int64_t n = 0; n < N; n++) {
        mg_cpu_matrix_row(w, n, row, 0);
        for (int64_t m = 0; m < M; m++) {
            double s = b[n], a = fabs(b[n]), q = 0;
            for (int64_t k = 0; k < K; k++) {
                float amax = 0;
                for (int64_t j = k / 32 * 32; j < K && j < k / 32 * 32 + 32; j++)
                    amax = fmaxf(amax, fabsf(x[m * K + j]));
                s += (double)x[m * K + k] * row[k];
                a += fabs((double)x[m * K + k] * row[k]);
                q += fabs(row[k]) * amax / 254.0;
            }
            y[m * N + n] = s;
            mag[m * N + n] = a;
            qerr[m * N + n] = q;
        }
    }
    free(row);
}

static void test_linear(void)
{
    static const mg_dtype dts[] = {MG_DT_F32, MG_DT_BF16, MG_DT_Q8};
    static const int64_t Ms[] = {1, 2, 3, 5, 17, 70}, Ns[] = {1, 5, 13}, Ks[] = {1, 7, 45, 130, 600}; /* 600: a full Q8 group and a ragged one */
    mg_cpu_isa top = mg_cpu_isa_detect();
    uint64_t seed = 11;
    for (size_t d = 0; d < 3; d++) {
        mg_backend *be2 = backend(2, dts[d]), *be1 = backend(1, dts[d]);
        CHECK(be1 && be2, "backends");
        if (!be1 || !be2)
            return;
        for (size_t mi = 0; mi < 6; mi++)
            for (size_t ni = 0; ni < 3; ni++)
                for (size_t ki = 0; ki < 5; ki++) {
                    int64_t M = Ms[mi], N = Ns[ni], K = Ks[ki];
                    float *w = malloc((size_t)(N * K) * sizeof *w), *x = malloc((size_t)(M * K) * sizeof *x);
                    float *b = malloc((size_t)N * sizeof *b), *y = malloc((size_t)(M * N) * sizeof *y);
                    float *y1 = malloc((size_t)(M * N) * sizeof *y1);
                    double *ref = malloc((size_t)(M * N) * sizeof *ref), *mag = malloc((size_t)(M * N) * sizeof *mag);
                    double *qerr = malloc((size_t)(M * N) * sizeof *qerr);
                    for (int64_t i = 0; i < N * K; i++)
                        w[i] = rnd(&seed);
                    for (int64_t i = 0; i < M * K; i++)
                        x[i] = rnd(&seed) * (i % 11 == 0 ? 8.0f : 1.0f);
                    for (int64_t i = 0; i < N; i++)
                        b[i] = rnd(&seed);
                    mg_tensor *wt = matrix(be2, w, N, K), *wt1 = matrix(be1, w, N, K);
                    mg_tensor xt = {.be = be2, .dtype = MG_DT_F32, .ndim = 2, .ne = {M, K}, .data = x};
                    mg_tensor bt = {.be = be2, .dtype = MG_DT_F32, .ndim = 1, .ne = {N}, .data = b};
                    mg_tensor yt = {.be = be2, .dtype = MG_DT_F32, .ndim = 2, .ne = {M, N}, .data = y};
                    mg_tensor yt1 = yt;
                    yt1.data = y1;
                    if (!wt || !wt1) {
                        CHECK(0, "weights");
                    } else {
                        reference(wt, x, b, M, N, K, ref, mag, qerr);
                        for (int isa = MG_CPU_ISA_SCALAR; isa <= (int)top; isa++) {
                            mg_cpu_backend_set_isa(be2, (mg_cpu_isa)isa);
                            mg_cpu_backend_set_isa(be1, (mg_cpu_isa)isa);
                            be2->ops->linear(be2, &yt, &xt, wt, &bt);
                            be1->ops->linear(be1, &yt1, &xt, wt1, &bt);
                            /* int8 activations (VNNI) add up to half a step of x per product */
                            int int8_x = dts[d] == MG_DT_Q8 && isa >= MG_CPU_ISA_AVX512_VNNI;
                            double worst = 0;
                            for (int64_t i = 0; i < M * N; i++) {
                                double lim = 1e-5 * mag[i] + 1e-6 + (int8_x ? 1.001 * qerr[i] : 0);
                                double e = fabs(y[i] - ref[i]) / lim;
                                worst = e > worst ? e : worst;
                            }
                            CHECK(worst <= 1, "%s %s M=%lld N=%lld K=%lld: within tolerance (%.3g)",
                                  mg_dtype_name(dts[d]), mg_cpu_isa_name((mg_cpu_isa)isa),
                                  (long long)M, (long long)N, (long long)K, worst);
                            CHECK(!memcmp(y, y1, (size_t)(M * N) * sizeof *y),
                                  "%s %s M=%lld N=%lld K=%lld: 1 and 2 threads agree bit for bit",
                                  mg_dtype_name(dts[d]), mg_cpu_isa_name((mg_cpu_isa)isa),
                                  (long long)M, (long long)N, (long long)K);
                            /* the scheduler batches requests: a row's output must not
                             * depend on the rows computed with it (tile, pass, M) */
                            int same = 1;
                            for (int64_t m = 0; m < M && M > 1; m++) {
                                float one[13];
                                mg_tensor x1 = {.be = be2, .dtype = MG_DT_F32, .ndim = 2,
                                                .ne = {1, K}, .data = x + m * K};
                                mg_tensor y1t = {.be = be2, .dtype = MG_DT_F32, .ndim = 2,
                                                 .ne = {1, N}, .data = one};
                                be2->ops->linear(be2, &y1t, &x1, wt, &bt);
                                same &= !memcmp(one, y + m * N, (size_t)N * sizeof *y);
                            }
                            CHECK(same, "%s %s M=%lld N=%lld K=%lld: every row alone equals its row in the batch bit for bit",
                                  mg_dtype_name(dts[d]), mg_cpu_isa_name((mg_cpu_isa)isa),
                                  (long long)M, (long long)N, (long long)K);
                        }
                    }
                    mg_tensor_free(wt);
                    mg_tensor_free(wt1);
                    free(w); free(x); free(b); free(y); free(y1); free(ref); free(mag); free(qerr);
                }
        be1->ops->destroy(be1);
        be2->ops->destroy(be2);
    }
}

/* linear_many: every output is bitwise what linear() gives for its matrix
 * alone, for each format and ISA, with odd row counts, several matrices in
 * one region, more than MG_CPU_LINEAR_MANY matrices, and M past one pass. */
static void test_linear_many(void)
{
    enum { K = 100, NW = 6 };
    static const int64_t rows[NW] = {37, 64, 5, 1, 130, 12};
    static const int64_t ms[] = {1, 3, 70};
    static const mg_dtype dts[] = {MG_DT_F32, MG_DT_BF16, MG_DT_Q8};
    mg_cpu_isa top = mg_cpu_isa_detect();
    uint64_t seed = 11;
    /* one host buffer per matrix: F32 weights are used in place */
    float *host = malloc(sizeof(float) * NW * 130 * K), *x = malloc(sizeof(float) * 70 * K);
    for (int i = 0; i < 70 * K; i++)
        x[i] = rnd(&seed);
    for (size_t d = 0; d < 3; d++) {
        mg_backend *be = backend(3, dts[d]);
        mg_tensor *w[NW] = {0}, *y[NW] = {0}, *ref = NULL;
        mg_error err = {0};
        int ok = be != NULL;
        for (int i = 0; ok && i < NW; i++) {
            float *hi = host + (size_t)i * 130 * K;
            for (int j = 0; j < rows[i] * K; j++)
                hi[j] = rnd(&seed);
            ok = (w[i] = matrix(be, hi, rows[i], K)) != NULL &&
                 mg_tensor_new2(&y[i], be, 70, rows[i], &err) == MG_OK;
        }
        ok = ok && mg_tensor_new2(&ref, be, 70, 130, &err) == MG_OK;
        CHECK(ok, "linear_many setup (%s)", mg_dtype_name(dts[d]));
        for (int isa = MG_CPU_ISA_SCALAR; ok && isa <= (int)top; isa++) {
            mg_cpu_backend_set_isa(be, (mg_cpu_isa)isa);
            for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
                mg_tensor xt = {.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {ms[mi], K}, .data = x};
                mg_tensor yv[NW], *yp[NW];
                for (int i = 0; i < NW; i++) {
                    yv[i] = mg_tensor_rows_view(y[i], 0, ms[mi]);
                    yp[i] = &yv[i];
                }
                mg_linear_many(be, NW, yp, &xt, (const mg_tensor *const *)w);
                int same = 1;
                for (int i = 0; i < NW; i++) {
                    mg_tensor rv = {.be = be, .dtype = MG_DT_F32, .ndim = 2,
                                    .ne = {ms[mi], rows[i]}, .data = ref->data};
                    be->ops->linear(be, &rv, &xt, w[i], NULL);
                    same &= !memcmp(rv.data, yv[i].data, sizeof(float) * ms[mi] * rows[i]);
                }
                CHECK(same, "linear_many %s %s M=%lld: each output equals linear() alone",
                      mg_dtype_name(dts[d]), mg_cpu_isa_name((mg_cpu_isa)isa), (long long)ms[mi]);
            }
        }
        for (int i = 0; i < NW; i++) {
            mg_tensor_free(w[i]);
            mg_tensor_free(y[i]);
        }
        mg_tensor_free(ref);
        if (be)
            be->ops->destroy(be);
    }
    free(host);
    free(x);
}

static void test_isa_names(void)
{
    CHECK(mg_cpu_isa_parse("avx2") == MG_CPU_ISA_AVX2 && mg_cpu_isa_parse("nope") == -1,
          "MG_CPU_ISA names parse");
    mg_backend *be = backend(1, MG_DT_F32);
    if (be) {
        mg_cpu_backend_set_isa(be, MG_CPU_ISA_AVX512_VNNI);
        CHECK(mg_cpu_backend_isa(be) <= mg_cpu_isa_detect(), "a forced level is capped at the CPU's");
        be->ops->destroy(be);
    }
}

/* Attention (head_dim 64 like MusicGen, 8 like the tiny models; 3 heads,
 * 8 or 12 heads for the row-wise kernel's head groups, and the decoders of
 * musicgen-small, -medium and -large: 16, 24 and 32 heads, 24 filling one
 * and a half 16-lane groups of scores) with F32 and BF16
 * keys/values on every ISA level against a double reference, with position
 * bias, a key mask and causality; 1 and 3 threads agree bit for bit, also
 * when one query row is split over threads by head groups. */
static void test_attention(void)
{
    enum { S = 2, QN = 3, NK = 37 };
    static const int shapes[][2] = {{3, 8}, {3, 64}, {8, 64}, {12, 32}, {16, 64}, {24, 64}, {32, 64}};
    mg_cpu_isa top = mg_cpu_isa_detect();
    uint64_t seed = 5;
    mg_backend *be3 = backend(3, MG_DT_F32), *be1 = backend(1, MG_DT_F32);
    CHECK(be1 && be3, "backends");
    if (!be1 || !be3)
        return;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int kv_fmt = 0; kv_fmt < 3; kv_fmt++) { /* F32, BF16, Q8ROW */
        int H = shapes[si][0], D = shapes[si][1], hd = H * D, kv_bf16 = kv_fmt == 1;
        const char *fmt_name = kv_fmt == 2 ? "q8row" : kv_bf16 ? "bf16" : "f32";
        size_t q8rb = mg_dtype_row_bytes(MG_DT_Q8ROW, hd);
        if (kv_fmt == 2 && q8rb == 0)
            continue; /* Q8ROW rows are whole 64-blocks */
        float *q = malloc(sizeof(float) * S * QN * hd), *kv = malloc(sizeof(float) * 2 * S * NK * hd);
        uint16_t *kvh = malloc(sizeof(uint16_t) * 2 * S * NK * hd);
        char *kv8 = malloc(q8rb * 2 * S * NK + 1);
        float *bias = malloc(sizeof(float) * H * QN * NK), *o3 = malloc(sizeof(float) * S * QN * hd);
        float *o1 = malloc(sizeof(float) * S * QN * hd);
        double *refs = malloc(sizeof(double) * 2 * S * QN * hd), *sc = malloc(sizeof(double) * NK);
        /* the VNNI kernel quantises the query per head as the cache rows are:
         * its reference sees those values */
        float *qdq = malloc(sizeof(float) * S * QN * hd);
        char *qrow = malloc(q8rb + 1);
        uint8_t mask[NK];
        for (int i = 0; i < S * QN * hd; i++)
            q[i] = rnd(&seed);
        for (int r = 0; r < S * QN; r++) {
            if (q8rb) {
                mg_q8row_quantize(top, q + r * hd, hd, qrow);
                mg_q8row_dequantize(qrow, hd, 0, hd, qdq + r * hd);
            }
        }
        for (int i = 0; i < 2 * S * NK * hd; i++) {
            kv[i] = rnd(&seed);
            kvh[i] = mg_f32_to_bf16(kv[i]);
            if (kv_bf16) /* the reference sees what the kernels see */
                kv[i] = mg_bf16_to_f32(kvh[i]);
        }
        if (kv_fmt == 2)
            for (int r = 0; r < 2 * S * NK; r++) {
                mg_q8row_quantize(top, kv + r * hd, hd, kv8 + r * q8rb);
                mg_q8row_dequantize(kv8 + r * q8rb, hd, 0, hd, kv + r * hd);
            }
        for (int i = 0; i < H * QN * NK; i++)
            bias[i] = rnd(&seed);
        for (int j = 0; j < NK; j++)
            mask[j] = j % 7 != 3;
        mg_tensor kt = {.be = be3, .dtype = MG_DT_F32, .ndim = 2, .ne = {S * NK, hd}, .data = kv};
        mg_tensor vt = kt;
        vt.data = kv + S * NK * hd;
        if (kv_bf16) {
            kt.dtype = vt.dtype = MG_DT_BF16;
            kt.data = kvh;
            vt.data = kvh + S * NK * hd;
        }
        if (kv_fmt == 2) {
            kt.dtype = vt.dtype = MG_DT_Q8ROW;
            kt.data = kv8;
            vt.data = kv8 + q8rb * S * NK;
        }
        mg_tensor bt = {.be = be3, .dtype = MG_DT_F32, .ndim = 3, .ne = {H, QN, NK}, .data = bias};
        mg_tensor qt = {.be = be3, .dtype = MG_DT_F32, .ndim = 2, .ne = {S * QN, hd}, .data = q};
        mg_tensor ot3 = {.be = be3, .dtype = MG_DT_F32, .ndim = 2, .ne = {S * QN, hd}, .data = o3};
        mg_tensor ot1 = ot3;
        ot1.data = o1;
        mg_attn_seq seqs[S] = {{&kt, &vt, 0, NK, mask, NK - QN}, {&kt, &vt, NK, NK - 5, NULL, 10}};
        mg_attn_params p = {.heads = H, .head_dim = D, .scale = 1.0f / sqrtf((float)D),
                            .causal = 1, .pos_bias = NULL};
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            p.pos_bias = with_bias ? &bt : NULL;
            /* softmax over the visible keys in double: refs[0] with the query,
             * refs[1] with the quantised query */
            for (int qq = 0; qq < (kv_fmt == 2 ? 2 : 1); qq++)
            for (int s = 0; s < S; s++)
                for (int h = 0; h < H; h++)
                    for (int i = 0; i < QN; i++) {
                        const float *qi = (qq ? qdq : q) + (s * QN + i) * hd + h * D;
                        double *ref = refs + (size_t)qq * S * QN * hd;
                        int nk = seqs[s].n_keys;
                        double mx = -INFINITY, sum = 0;
                        for (int j = 0; j < nk; j++) {
                            const float *kr = kv + (seqs[s].k_row0 + j) * hd + h * D;
                            double d = 0;
                            for (int e = 0; e < D; e++)
                                d += (double)qi[e] * kr[e];
                            d = d * p.scale + (with_bias ? bias[(h * QN + i) * nk + j] : 0);
                            int vis = (!seqs[s].key_mask || seqs[s].key_mask[j]) &&
                                      j <= seqs[s].q_pos + i;
                            sc[j] = vis ? d : -INFINITY;
                            mx = sc[j] > mx ? sc[j] : mx;
                        }
                        for (int j = 0; j < nk; j++)
                            sum += sc[j] = exp(sc[j] - mx);
                        for (int e = 0; e < D; e++) {
                            double a = 0;
                            for (int j = 0; j < nk; j++)
                                a += sc[j] / sum * kv[S * NK * hd + (seqs[s].k_row0 + j) * hd + h * D + e];
                            ref[(s * QN + i) * hd + h * D + e] = a;
                        }
                    }
            for (int isa = MG_CPU_ISA_SCALAR; isa <= (int)top; isa++) {
                mg_cpu_backend_set_isa(be3, (mg_cpu_isa)isa);
                mg_cpu_backend_set_isa(be1, (mg_cpu_isa)isa);
                be3->ops->attention(be3, &ot3, &qt, S, QN, seqs, &p);
                be1->ops->attention(be1, &ot1, &qt, S, QN, seqs, &p);
                int quantised_q = kv_fmt == 2 && isa >= MG_CPU_ISA_AVX512_VNNI && D == MG_Q8ROW_BLOCK &&
                                  H % 4 == 0;
                const double *ref = refs + (quantised_q ? (size_t)S * QN * hd : 0);
                double worst = 0;
                for (int i = 0; i < S * QN * hd; i++)
                    worst = fmax(worst, fabs(o3[i] - ref[i]));
                CHECK(worst < 2e-6, "attention %d heads x %d, %s K/V, %s, bias %d: max err %.3g", H,
                      D, fmt_name, mg_cpu_isa_name((mg_cpu_isa)isa), with_bias, worst);
                int same = !memcmp(o1, o3, sizeof(float) * S * QN * hd);
                /* one query row alone: 3 threads split its heads (a task's
                 * heads start past 0: bias and scales indexed per head) */
                mg_attn_seq one = seqs[0];
                one.q_pos = NK - 1;
                mg_tensor q1 = mg_tensor_rows_view(&qt, 0, 1), r3 = mg_tensor_rows_view(&ot3, 0, 1);
                mg_tensor r1 = mg_tensor_rows_view(&ot1, 0, 1);
                mg_tensor b1 = bt;
                b1.ne[1] = 1;
                mg_attn_params p1 = p;
                p1.pos_bias = with_bias ? &b1 : NULL;
                be3->ops->attention(be3, &r3, &q1, 1, 1, &one, &p1);
                be1->ops->attention(be1, &r1, &q1, 1, 1, &one, &p1);
                same = same && !memcmp(o1, o3, sizeof(float) * hd);
                CHECK(same, "attention %d heads x %d, %s K/V, %s, bias %d: 1 and 3 threads agree bit for bit",
                      H, D, fmt_name, mg_cpu_isa_name((mg_cpu_isa)isa), with_bias);
                /* no keys: zeros */
                one.n_keys = 0;
                for (int e = 0; e < hd; e++)
                    o3[e] = 1.0f;
                p1.pos_bias = NULL;
                be3->ops->attention(be3, &r3, &q1, 1, 1, &one, &p1);
                int zeros = 1;
                for (int e = 0; e < hd; e++)
                    zeros &= o3[e] == 0.0f;
                CHECK(zeros, "attention %d heads x %d, %s K/V, %s: no keys give zeros", H, D, fmt_name,
                      mg_cpu_isa_name((mg_cpu_isa)isa));
            }
        }
        free(q); free(kv); free(kvh); free(kv8); free(bias); free(o3); free(o1); free(refs); free(sc);
        free(qdq); free(qrow);
    }
    be1->ops->destroy(be1);
    be3->ops->destroy(be3);
}

/* GELU and ELU (vectorised polynomials on AVX-512) against libm in double,
 * on every ISA level and both sides of every branch. */
static void test_activations(void)
{
    enum { N = 40000 };
    mg_cpu_isa top = mg_cpu_isa_detect();
    mg_backend *be = backend(2, MG_DT_F32);
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    CHECK(be && x && y, "backend and buffers");
    if (!be || !x || !y) {
        free(x);
        free(y);
        if (be)
            be->ops->destroy(be);
        return;
    }
    for (int i = 0; i < N; i++)
        x[i] = (float)(i - N / 2) / (N / 2) * (i % 3 ? 12.0f : 0.01f) + (i == 7 ? -200.0f : 0.0f);
    for (int isa = MG_CPU_ISA_SCALAR; isa <= (int)top; isa++) {
        mg_cpu_backend_set_isa(be, (mg_cpu_isa)isa);
        for (int op = 0; op < 2; op++) {
            memcpy(y, x, sizeof(float) * N);
            mg_tensor t = {.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {1, N}, .data = y};
            if (op)
                be->ops->elu(be, &t);
            else
                be->ops->gelu(be, &t);
            double worst = 0;
            for (int i = 0; i < N; i++) {
                double v = x[i];
                double ref = op ? (v > 0 ? v : expm1(v)) : 0.5 * v * (1 + erf(v / sqrt(2.0)));
                double e = fabs(y[i] - ref) / (fabs(ref) * 4e-7 + 3e-7);
                worst = e > worst ? e : worst;
            }
            CHECK(worst <= 1, "%s %s within 4e-7 relative + 3e-7 absolute of libm (%.3g)",
                  op ? "elu" : "gelu", mg_cpu_isa_name((mg_cpu_isa)isa), worst);
        }
    }
    free(x);
    free(y);
    be->ops->destroy(be);
}

/* The LSTM's recurrent step gives the same bits at every kernel level, for
 * F32 and for BF16 recurrent weights (the vector kernels run several rows
 * and batch items at once, the portable loop one dot at a time). With
 * w_ih = 0 the input projection is exactly the bias at every level, so the
 * outputs depend on the recurrent sums and the cell alone. */
static mg_tensor *lstm_tensor(mg_backend *be, mg_dtype dt, int64_t rows, int64_t cols,
                              const void *host, size_t bytes)
{
    mg_tensor *t = NULL;
    mg_error err = {0};
    int64_t ne[2] = {rows, cols};
    if (mg_tensor_new(&t, be, dt, 2, ne, &err) != MG_OK ||
        be->ops->upload(be, t, 0, host, bytes, &err) != MG_OK) {
        mg_tensor_free(t);
        return NULL;
    }
    return t;
}

static void test_lstm_levels(void)
{
    static const int shapes[][3] = {{1, 6, 48}, {2, 5, 80}, {3, 4, 37}, {5, 3, 64}, {4, 4, 16}};
    mg_backend *be = backend(2, MG_DT_F32);
    if (!be) {
        CHECK(0, "backend");
        return;
    }
    mg_cpu_isa top = mg_cpu_backend_isa(be);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int B = shapes[si][0], T = shapes[si][1], H = shapes[si][2], I = 7;
        uint64_t seed = 17 + si;
        float *x = malloc((size_t)B * T * I * sizeof *x), *wih = calloc((size_t)4 * H * I, sizeof *wih);
        float *whh = malloc((size_t)4 * H * H * sizeof *whh), *bias = malloc((size_t)4 * H * sizeof *bias);
        uint16_t *whh16 = malloc((size_t)4 * H * H * sizeof *whh16);
        float *first = malloc((size_t)B * T * H * sizeof *first), *out = malloc((size_t)B * T * H * sizeof *out);
        if (!x || !wih || !whh || !bias || !whh16 || !first || !out) {
            CHECK(0, "out of memory");
            goto next;
        }
        for (int i = 0; i < B * T * I; i++)
            x[i] = rnd(&seed);
        for (int i = 0; i < 4 * H * H; i++) {
            whh[i] = rnd(&seed) * 0.5f;
            whh16[i - i % H + mg_bf16_pair_index(i % H, H)] = mg_f32_to_bf16(whh[i]);
        }
        for (int i = 0; i < 4 * H; i++)
            bias[i] = rnd(&seed) * 0.5f;
        for (int bf16 = 0; bf16 <= 1; bf16++) {
            mg_tensor *tx = lstm_tensor(be, MG_DT_F32, (int64_t)B * T, I, x, (size_t)B * T * I * 4);
            mg_tensor *twi = lstm_tensor(be, MG_DT_F32, 4 * H, I, wih, (size_t)4 * H * I * 4);
            mg_tensor *twh = bf16 ? lstm_tensor(be, MG_DT_BF16, 4 * H, H, whh16, (size_t)4 * H * H * 2)
                                  : lstm_tensor(be, MG_DT_F32, 4 * H, H, whh, (size_t)4 * H * H * 4);
            mg_tensor *tb = lstm_tensor(be, MG_DT_F32, 1, 4 * H, bias, (size_t)4 * H * 4);
            mg_tensor *th = lstm_tensor(be, MG_DT_F32, (int64_t)B * T, H, out, 0);
            if (!tx || !twi || !twh || !tb || !th) {
                CHECK(0, "lstm tensors");
            } else {
                mg_tensor b1 = mg_tensor_reshape2(tb, 1, 4 * H);
                b1.ndim = 1;
                b1.ne[0] = 4 * H;
                int same = 1;
                for (int isa = MG_CPU_ISA_SCALAR; isa <= (int)top; isa++) {
                    mg_error err = {0};
                    mg_cpu_backend_set_isa(be, (mg_cpu_isa)isa);
                    be->ops->lstm(be, th, tx, twi, twh, &b1, &b1, B);
                    mg_tensor_download_f32(th, isa == MG_CPU_ISA_SCALAR ? first : out, &err);
                    if (isa > MG_CPU_ISA_SCALAR)
                        same &= !memcmp(first, out, (size_t)B * T * H * sizeof *out);
                }
                mg_cpu_backend_set_isa(be, top);
                CHECK(same, "lstm B%d T%d H%d %s w_hh: the same bits at every kernel level", B, T,
                      H, bf16 ? "BF16" : "F32");
            }
            mg_tensor_free(tx);
            mg_tensor_free(twi);
            mg_tensor_free(twh);
            mg_tensor_free(tb);
            mg_tensor_free(th);
        }
    next:
        free(x);
        free(wih);
        free(whh);
        free(bias);
        free(whh16);
        free(first);
        free(out);
    }
    be->ops->destroy(be);
}

/* Layer norm, RMS norm and the scatter copy into Q8ROW caches split their
 * rows across threads once there are enough: the same bits as one thread,
 * every row written, on awkward sizes (Q8ROW rows are whole 64-blocks). */
static void test_rows_on_threads(void)
{
    static const int64_t shapes[][2] = {{9, 1000}, {9, 960}, {2, 64}, {8, 1024}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t R = shapes[si][0], D = shapes[si][1];
        mg_backend *be[2] = {backend(1, MG_DT_F32), backend(3, MG_DT_F32)};
        float *x = malloc(sizeof(float) * (size_t)(R * D)), *g = malloc(sizeof(float) * (size_t)D),
              *b = malloc(sizeof(float) * (size_t)D);
        float *y[2][2] = {{0}};
        void *q[2] = {0};
        int q8 = D % MG_Q8ROW_BLOCK == 0;
        size_t rb = q8 ? mg_dtype_row_bytes(MG_DT_Q8ROW, D) : 1;
        for (int t = 0; t < 2; t++) {
            y[t][0] = malloc(sizeof(float) * (size_t)(R * D));
            y[t][1] = malloc(sizeof(float) * (size_t)(R * D));
            q[t] = calloc((size_t)(2 * R), rb);
        }
        int ok = be[0] && be[1] && x && g && b && y[0][0] && y[0][1] && y[1][0] && y[1][1] && q[0] && q[1];
        CHECK(ok, "backends and buffers");
        if (ok) {
            uint64_t seed = 11 + (uint64_t)si;
            for (int64_t i = 0; i < R * D; i++)
                x[i] = rnd(&seed) * (1 + (float)(i % 7));
            for (int64_t i = 0; i < D; i++) {
                g[i] = rnd(&seed);
                b[i] = rnd(&seed);
            }
            for (int t = 0; t < 2; t++) {
                mg_tensor tx = {.be = be[t], .dtype = MG_DT_F32, .ndim = 2, .ne = {R, D}, .data = x};
                mg_tensor ty0 = tx, ty1 = tx, tg = {.be = be[t], .dtype = MG_DT_F32, .ndim = 1,
                                                    .ne = {D}, .data = g};
                mg_tensor tb = tg;
                tb.data = b;
                ty0.data = y[t][0];
                ty1.data = y[t][1];
                memset(y[t][0], 0xff, sizeof(float) * (size_t)(R * D)); /* NaN until written */
                memset(y[t][1], 0xff, sizeof(float) * (size_t)(R * D));
                be[t]->ops->layer_norm(be[t], &ty0, &tx, &tg, &tb, 1e-5f);
                be[t]->ops->rms_norm(be[t], &ty1, &tx, &tg, 1e-6f);
                /* row i of x to row 2i + 1 of one cache (odd rows), reversed order */
                mg_tensor cache = {.be = be[t], .dtype = MG_DT_Q8ROW, .ndim = 2, .ne = {2 * R, D},
                                   .data = q[t]};
                mg_tensor *dst[16];
                int64_t dst_rows[16], src_rows[16];
                for (int64_t i = 0; i < R; i++) {
                    dst[i] = &cache;
                    dst_rows[i] = 2 * (R - 1 - i) + 1;
                    src_rows[i] = R - 1 - i;
                }
                if (q8)
                    be[t]->ops->copy_rows_scatter(be[t], dst, dst_rows, &tx, src_rows, (int)R);
            }
            int finite = 1;
            for (int64_t i = 0; i < R * D; i++)
                finite &= isfinite(y[0][0][i]) && isfinite(y[0][1][i]);
            CHECK(finite, "norms %lldx%lld: every row written", (long long)R, (long long)D);
            CHECK(!memcmp(y[0][0], y[1][0], sizeof(float) * (size_t)(R * D)),
                  "layer_norm %lldx%lld: the same bits on 1 and 3 threads", (long long)R, (long long)D);
            CHECK(!memcmp(y[0][1], y[1][1], sizeof(float) * (size_t)(R * D)),
                  "rms_norm %lldx%lld: the same bits on 1 and 3 threads", (long long)R, (long long)D);
            int same_q = 1;
            unsigned char *row = malloc(rb);
            for (int64_t i = 0; q8 && row && i < R; i++) {
                mg_q8row_quantize(mg_cpu_isa_detect(), x + i * D, D, row);
                same_q &= !memcmp((char *)q[1] + (2 * i + 1) * rb, row, rb);
                same_q &= !memcmp((char *)q[0] + (2 * i + 1) * rb, row, rb);
            }
            free(row);
            if (q8)
                CHECK(same_q, "copy_rows_scatter %lldx%lld into Q8ROW: each row quantised to its place "
                  "on 1 and 3 threads", (long long)R, (long long)D);
        }
        for (int t = 0; t < 2; t++) {
            free(y[t][0]);
            free(y[t][1]);
            free(q[t]);
            if (be[t])
                be[t]->ops->destroy(be[t]);
        }
        free(x);
        free(g);
        free(b);
    }
}

/* Many queries per sequence (a prefill) against the same queries one call
 * each (the decode step's kernel): bit for bit, on 1 and 3 threads, with
 * causal masking past each query, key masks (including a query whose
 * visible keys are all masked), position biases, head counts of the
 * family's models and query counts that leave a partial tile. */
static void test_attention_prefill(void)
{
    enum { S = 2, QN = 23, NK = 61 };
    static const int heads[] = {8, 16, 24};
    mg_backend *be3 = backend(3, MG_DT_F32), *be1 = backend(1, MG_DT_F32);
    CHECK(be1 && be3, "backends");
    if (!be1 || !be3)
        return;
    uint64_t seed = 11;
    for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++)
    for (int kv_fmt = 0; kv_fmt < 2; kv_fmt++) { /* Q8ROW, F32 */
        const int H = heads[hi], D = 64, hd = H * D;
        const size_t rb = kv_fmt == 0 ? mg_dtype_row_bytes(MG_DT_Q8ROW, hd) : sizeof(float) * hd;
        float *q = malloc(sizeof(float) * S * QN * hd), *x = malloc(sizeof(float) * hd);
        char *kv = malloc(rb * 2 * S * NK);
        float *bias = malloc(sizeof(float) * H * QN * NK);
        float *all = malloc(sizeof(float) * S * QN * hd), *one = malloc(sizeof(float) * hd);
        float *b1 = malloc(sizeof(float) * H * NK);
        CHECK(q && x && kv && bias && all && one && b1, "allocations");
        if (!q || !x || !kv || !bias || !all || !one || !b1)
            return;
        for (int i = 0; i < S * QN * hd; i++)
            q[i] = rnd(&seed);
        for (int r = 0; r < 2 * S * NK; r++) {
            for (int e = 0; e < hd; e++)
                x[e] = rnd(&seed);
            if (kv_fmt == 0)
                mg_q8row_quantize(mg_cpu_isa_detect(), x, hd, kv + r * rb);
            else
                memcpy(kv + r * rb, x, rb);
        }
        for (int i = 0; i < H * QN * NK; i++)
            bias[i] = rnd(&seed);
        uint8_t mask[NK];
        for (int j = 0; j < NK; j++) /* keys 0-4 masked: queries 0-4 of sequence 0 see none */
            mask[j] = j >= 5 && j % 7 != 3;
        mg_dtype dt = kv_fmt == 0 ? MG_DT_Q8ROW : MG_DT_F32;
        mg_tensor kt = {.be = be3, .dtype = dt, .ndim = 2, .ne = {S * NK, hd}, .data = kv};
        mg_tensor vt = kt;
        vt.data = kv + rb * S * NK;
        mg_tensor bt = {.be = be3, .dtype = MG_DT_F32, .ndim = 3, .ne = {H, QN, NK}, .data = bias};
        mg_tensor qt = {.be = be3, .dtype = MG_DT_F32, .ndim = 2, .ne = {S * QN, hd}, .data = q};
        mg_tensor ot = {.be = be3, .dtype = MG_DT_F32, .ndim = 2, .ne = {S * QN, hd}, .data = all};
        mg_tensor o1 = {.be = be3, .dtype = MG_DT_F32, .ndim = 2, .ne = {1, hd}, .data = one};
        mg_tensor bt1 = {.be = be3, .dtype = MG_DT_F32, .ndim = 3, .ne = {H, 1, NK}, .data = b1};
        mg_attn_seq seqs[S] = {{&kt, &vt, 0, NK, mask, 0}, {&kt, &vt, NK, NK - 4, NULL, NK - 4 - QN}};
        for (int variant = 0; variant < 3; variant++) { /* causal, causal + bias, neither */
            mg_attn_params p = {.heads = H, .head_dim = D, .scale = 0.125f, .causal = variant < 2,
                                .pos_bias = variant == 1 ? &bt : NULL};
            for (int threads = 0; threads < 2; threads++) {
                mg_backend *be = threads ? be3 : be1;
                be->ops->attention(be, &ot, &qt, S, QN, seqs, &p);
                int same = 1;
                for (int s = 0; s < S; s++)
                    for (int i = 0; i < QN; i++) {
                        mg_attn_seq sq = seqs[s];
                        sq.q_pos += i;
                        /* the bias is [heads, queries, this sequence's keys] */
                        for (int h = 0; h < H; h++)
                            memcpy(b1 + h * sq.n_keys, bias + (h * QN + i) * sq.n_keys,
                                   sizeof(float) * sq.n_keys);
                        bt1.ne[2] = sq.n_keys;
                        mg_attn_params p1 = p;
                        p1.pos_bias = variant == 1 ? &bt1 : NULL;
                        mg_tensor q1 = mg_tensor_rows_view(&qt, s * QN + i, 1);
                        be->ops->attention(be, &o1, &q1, 1, 1, &sq, &p1);
                        same &= !memcmp(one, all + (s * QN + i) * hd, sizeof(float) * hd);
                    }
                CHECK(same, "attention, %d queries at once == one at a time: %d heads, %s K/V, %s, %d thread(s)",
                      QN, H, kv_fmt == 0 ? "q8row" : "f32",
                      variant == 0 ? "causal" : variant == 1 ? "causal + bias" : "not causal", threads ? 3 : 1);
            }
        }
        free(q); free(x); free(kv); free(bias); free(all); free(one); free(b1);
    }
    be1->ops->destroy(be1);
    be3->ops->destroy(be3);
}

int main(void)
{
    test_isa_names();
    test_conversions();
    test_linear();
    test_linear_many();
    test_attention();
    test_attention_prefill();
    test_activations();
    test_lstm_levels();
    test_rows_on_threads();
    return check_summary("test_cpu_kernels");
}
