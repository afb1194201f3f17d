/* mg-kernel-test: every op of the CUDA backend against the CPU backend on
 * random inputs of awkward sizes (not multiples of 32, batch 1 and odd
 * batches), in f32 and bf16 weight modes. Without a usable GPU it prints one
 * skip line and exits 0. Output follows tests/check.h. */
#include <execinfo.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/check.h"
#include "../tools/backend_env.h"
#include "backend/backend.h"
#include "backend/layout.h"

typedef struct {
    mg_backend *cpu, *gpu;
    int         self;   /* MG_KTEST_SELF: CPU backends stand in for the GPU ones */
    mg_backend_options opt; /* every backend's (MG_CPU_ISA, MG_CUDA_*) */
    uint64_t    rng;
    /* host buffers handed to weight() must outlive the backends */
    void      **keep;
    int         n_keep, cap_keep;
} ctx;

static float frand(ctx *c)
{
    c->rng = c->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((c->rng >> 40) / 16777216.0) * 2.0f - 1.0f;
}

static float *rnd(ctx *c, int64_t n, float scale)
{
    float *p = malloc((size_t)n * sizeof *p + 4);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++)
        p[i] = frand(c) * scale;
    if (c->n_keep == c->cap_keep) {
        c->cap_keep = c->cap_keep ? 2 * c->cap_keep : 64;
        c->keep = realloc(c->keep, (size_t)c->cap_keep * sizeof *c->keep);
        if (!c->keep)
            exit(1);
    }
    c->keep[c->n_keep++] = p;
    return p;
}

static float bf16_round(float f) { return mg_bf16_to_f32(mg_f32_to_bf16(f)); }

static float *bf16_copy(ctx *c, const float *x, int64_t n)
{
    float *p = rnd(c, n, 0);
    for (int64_t i = 0; i < n; i++)
        p[i] = bf16_round(x[i]);
    return p;
}

/* A pair of tensors (CPU, GPU) with the same contents. */
typedef struct { mg_tensor *c, *g; } pair;

static pair mk(ctx *c, int ndim, const int64_t *ne, const float *host)
{
    pair p = {0};
    mg_error err = {0};
    if (mg_tensor_new(&p.c, c->cpu, MG_DT_F32, ndim, ne, &err) ||
        mg_tensor_new(&p.g, c->gpu, MG_DT_F32, ndim, ne, &err) ||
        (host && (mg_tensor_upload_f32(p.c, host, &err) || mg_tensor_upload_f32(p.g, host, &err)))) {
        fprintf(stderr, "tensor: %s\n", err.msg);
        exit(1);
    }
    return p;
}
static pair mk2(ctx *c, int64_t r, int64_t k, const float *host)
{
    return mk(c, 2, (const int64_t[]){r, k}, host);
}

/* A weight on both backends: the CPU one from cpu_host, the GPU one from host. */
static pair weight(ctx *c, int ndim, const int64_t *ne, const float *host, const float *cpu_host,
                   mg_weight_kind kind)
{
    pair p = {0};
    mg_error err = {0};
    mg_backend *be[2] = {c->cpu, c->gpu};
    mg_tensor **t[2] = {&p.c, &p.g};
    for (int i = 0; i < 2; i++) {
        mg_tensor *w = calloc(1, sizeof *w);
        if (!w)
            exit(1);
        w->be = be[i];
        w->dtype = MG_DT_F32;
        w->ndim = ndim;
        memcpy(w->ne, ne, (size_t)ndim * sizeof *ne);
        w->nbytes = (size_t)mg_tensor_numel(w) * 4;
        if (be[i]->ops->weight(be[i], w, i || !cpu_host ? host : cpu_host, kind, &err)) {
            fprintf(stderr, "weight: %s\n", err.msg);
            exit(1);
        }
        *t[i] = w;
    }
    return p;
}

static void drop(pair p)
{
    mg_tensor_free(p.c);
    mg_tensor_free(p.g);
}

/* max |gpu - cpu| <= tol * max(1, max |cpu|), -inf patterns equal. */
static void compare(ctx *c, pair p, double tol, const char *what)
{
    int64_t n = mg_tensor_numel(p.c);
    float *a = malloc((size_t)n * 4 + 4), *b = malloc((size_t)n * 4 + 4);
    mg_error err = {0};
    if (!a || !b)
        exit(1);
    mg_code rc = mg_tensor_download_f32(p.c, a, &err);
    if (rc == MG_OK)
        rc = c->gpu->ops->sync(c->gpu, &err);
    if (rc == MG_OK)
        rc = mg_tensor_download_f32(p.g, b, &err);
    CHECK(rc == MG_OK, "%s: %s", what, err.msg);
    if (rc == MG_OK) {
        double mx = 1, worst = 0;
        int64_t at = 0, inf_bad = 0;
        for (int64_t i = 0; i < n; i++) {
            if (isinf(a[i]) || isinf(b[i])) {
                inf_bad += !(isinf(a[i]) && isinf(b[i]) && (a[i] > 0) == (b[i] > 0));
                continue;
            }
            if (fabs(a[i]) > mx)
                mx = fabs(a[i]);
            double d = fabs((double)a[i] - b[i]);
            if (!(d <= worst)) {
                worst = isnan(d) ? INFINITY : d;
                at = i;
            }
        }
        int ok = inf_bad == 0 && worst <= tol * mx;
        CHECK(ok, "%s: max err %.3g at %lld (cpu %g gpu %g), tol %.3g, %lld -inf mismatches", what,
              worst, (long long)at, a[at], b[at], tol * mx, (long long)inf_bad);
        if (ok)
            printf("ok   %-44s max err %.3g (tol %.3g)\n", what, worst, tol * mx);
    }
    free(a);
    free(b);
}

static const double TOL = 1e-4;

static void test_linear(ctx *c, int M, int N, int K, int bias, int bf16)
{
    float *x = rnd(c, (int64_t)M * K, 1), *w = rnd(c, (int64_t)N * K, 0.2f), *b = rnd(c, N, 0.5f);
    /* the CPU gets the weights the GPU holds (bf16-rounded in bf16 mode; the
     * tensor-core path keeps activations to ~16 bits as hi + lo bf16 parts) */
    const float *wc = bf16 ? bf16_copy(c, w, (int64_t)N * K) : w;
    const float *xc = x;
    pair px = mk2(c, M, K, x), py = mk2(c, M, N, NULL);
    mg_tensor *xcpu = px.c;
    pair pxc = {0};
    if (xc != x) {
        pxc = mk2(c, M, K, xc);
        xcpu = pxc.c;
    }
    pair pw = weight(c, 2, (const int64_t[]){N, K}, w, wc, MG_WEIGHT_MATRIX);
    pair pb = mk(c, 1, (const int64_t[]){N}, b);
    c->cpu->ops->linear(c->cpu, py.c, xcpu, pw.c, bias ? pb.c : NULL);
    c->gpu->ops->linear(c->gpu, py.g, px.g, pw.g, bias ? pb.g : NULL);
    char what[96];
    snprintf(what, sizeof what, "linear %s M=%d N=%d K=%d%s", bf16 ? "bf16" : "f32", M, N, K,
             bias ? " +bias" : "");
    compare(c, py, TOL, what);
    drop(px); drop(py); drop(pw); drop(pb);
    if (pxc.c)
        drop(pxc);
}

static void test_embed(ctx *c, int bf16)
{
    int V = 37, d = 45, m = 7;
    float *tab = rnd(c, (int64_t)V * d, 1);
    const float *tc = bf16 ? bf16_copy(c, tab, (int64_t)V * d) : tab;
    int32_t ids[7] = {0, 36, 5, 5, 17, 2, 30};
    pair pt = weight(c, 2, (const int64_t[]){V, d}, tab, tc, MG_WEIGHT_MATRIX);
    pair py = mk2(c, m, d, rnd(c, (int64_t)m * d, 1));
    for (int acc = 0; acc < 2; acc++) {
        c->cpu->ops->embed(c->cpu, py.c, pt.c, ids, m, acc);
        c->gpu->ops->embed(c->gpu, py.g, pt.g, ids, m, acc);
    }
    compare(c, py, TOL, bf16 ? "embed bf16 (set, accumulate)" : "embed f32 (set, accumulate)");
    drop(pt); drop(py);
}

static void test_elementwise(ctx *c)
{
    int R = 7, C = 45;
    float scale[7] = {1, 0, -2, 0.5f, 3, 1, -1};
    pair a = mk2(c, R, C, rnd(c, R * C, 3)), b = mk2(c, R, C, rnd(c, R * C, 3));
    c->cpu->ops->add(c->cpu, a.c, b.c);
    c->gpu->ops->add(c->gpu, a.g, b.g);
    compare(c, a, TOL, "add");
    c->cpu->ops->scale_rows(c->cpu, a.c, scale);
    c->gpu->ops->scale_rows(c->gpu, a.g, scale);
    compare(c, a, TOL, "scale_rows");
    struct { void (*fc)(mg_backend *, mg_tensor *); void (*fg)(mg_backend *, mg_tensor *); const char *n; } acts[] = {
        {c->cpu->ops->relu, c->gpu->ops->relu, "relu"},
        {c->cpu->ops->gelu, c->gpu->ops->gelu, "gelu"},
        {c->cpu->ops->elu, c->gpu->ops->elu, "elu"},
    };
    for (int i = 0; i < 3; i++) {
        pair t = mk2(c, R, C, rnd(c, R * C, 4));
        acts[i].fc(c->cpu, t.c);
        acts[i].fg(c->gpu, t.g);
        compare(c, t, TOL, acts[i].n);
        drop(t);
    }
    pair s = mk2(c, 9, 77, rnd(c, 9 * 77, 1)), d = mk2(c, 13, 77, rnd(c, 13 * 77, 1));
    c->cpu->ops->copy_rows(c->cpu, d.c, 3, s.c, 2, 5);
    c->gpu->ops->copy_rows(c->gpu, d.g, 3, s.g, 2, 5);
    compare(c, d, TOL, "copy_rows");
    {   /* a scatter into two tensors, rows out of order */
        pair e = mk2(c, 11, 77, rnd(c, 11 * 77, 1));
        int64_t dr[4] = {10, 0, 3, 5}, sr[4] = {8, 1, 0, 4};
        mg_tensor *dc[4] = {d.c, e.c, d.c, e.c}, *dg[4] = {d.g, e.g, d.g, e.g};
        mg_copy_rows_scatter(c->cpu, dc, dr, s.c, sr, 4);
        mg_copy_rows_scatter(c->gpu, dg, dr, s.g, sr, 4);
        compare(c, d, TOL, "copy_rows_scatter (1 of 2)");
        compare(c, e, TOL, "copy_rows_scatter (2 of 2)");
        drop(e);
    }
    drop(a); drop(b); drop(s); drop(d);
}

static void test_norms(ctx *c, int rows, int d, int in_place)
{
    pair x = mk2(c, rows, d, rnd(c, (int64_t)rows * d, 2)), y = mk2(c, rows, d, NULL);
    pair w = mk(c, 1, (const int64_t[]){d}, rnd(c, d, 1)), b = mk(c, 1, (const int64_t[]){d}, rnd(c, d, 1));
    pair *out = in_place ? &x : &y;
    char what[80];
    c->cpu->ops->rms_norm(c->cpu, out->c, x.c, w.c, 1e-6f);
    c->gpu->ops->rms_norm(c->gpu, out->g, x.g, w.g, 1e-6f);
    snprintf(what, sizeof what, "rms_norm %dx%d%s", rows, d, in_place ? " in place" : "");
    compare(c, *out, TOL, what);
    c->cpu->ops->layer_norm(c->cpu, out->c, x.c, w.c, b.c, 1e-5f);
    c->gpu->ops->layer_norm(c->gpu, out->g, x.g, w.g, b.g, 1e-5f);
    snprintf(what, sizeof what, "layer_norm %dx%d%s", rows, d, in_place ? " in place" : "");
    compare(c, *out, TOL, what);
    drop(x); drop(y); drop(w); drop(b);
}

/* n_seq sequences with their own key counts inside one K/V buffer. */
/* dst (BF16, both backends) = src (F32) rounded by each backend's
 * copy_rows, each checked bit for bit against the host's round-to-nearest-
 * even of that backend's own F32 source. */
static void bf16_rows_from(ctx *c, pair dst, pair src, const char *what)
{
    int64_t rows = mg_tensor_rows(src.c), cols = mg_tensor_cols(src.c), n = rows * cols;
    c->cpu->ops->copy_rows(c->cpu, dst.c, 0, src.c, 0, rows);
    c->gpu->ops->copy_rows(c->gpu, dst.g, 0, src.g, 0, rows);
    uint16_t *hc = malloc((size_t)n * 2 + 2), *hg = malloc((size_t)n * 2 + 2);
    float *fc = malloc((size_t)n * 4 + 4), *fg = malloc((size_t)n * 4 + 4);
    mg_error err = {0};
    if (!hc || !hg || !fc || !fg)
        exit(1);
    mg_code rc = c->cpu->ops->download(c->cpu, dst.c, 0, hc, (size_t)n * 2, &err);
    if (rc == MG_OK)
        rc = c->gpu->ops->download(c->gpu, dst.g, 0, hg, (size_t)n * 2, &err);
    if (rc == MG_OK)
        rc = mg_tensor_download_f32(src.c, fc, &err);
    if (rc == MG_OK)
        rc = mg_tensor_download_f32(src.g, fg, &err);
    CHECK(rc == MG_OK, "%s: %s", what, err.msg);
    int64_t bad = 0;
    for (int64_t i = 0; rc == MG_OK && i < n; i++)
        bad += (hg[i] != mg_f32_to_bf16(fg[i])) + (hc[i] != mg_f32_to_bf16(fc[i]));
    CHECK(rc != MG_OK || bad == 0, "%s: %lld of %lld BF16 values are not the F32 rows rounded to "
          "nearest even", what, (long long)bad, (long long)n);
    if (rc == MG_OK && bad == 0)
        printf("ok   %-44s %lld values rounded as the host rounds\n", what, (long long)n);
    free(hc);
    free(hg);
    free(fc);
    free(fg);
}

static pair bf16_pair(ctx *c, int64_t rows, int64_t cols)
{
    pair p = {0};
    mg_error err = {0};
    const int64_t ne[2] = {rows, cols};
    if (mg_tensor_new(&p.c, c->cpu, MG_DT_BF16, 2, ne, &err) ||
        mg_tensor_new(&p.g, c->gpu, MG_DT_BF16, 2, ne, &err)) {
        fprintf(stderr, "tensor: %s\n", err.msg);
        exit(1);
    }
    return p;
}

/* kv_bf16: keys and values in BF16 caches (copy_rows rounds them in) */
static void test_attention(ctx *c, int n_seq, int qps, int heads, int dh, int causal, int masks,
                           int bias, const int *n_keys, int kv_bf16)
{
    int hd = heads * dh, cap = 0, max_keys = 0;
    for (int s = 0; s < n_seq; s++) {
        cap += n_keys[s] + 3;
        if (n_keys[s] > max_keys)
            max_keys = n_keys[s];
    }
    pair k = mk2(c, cap, hd, rnd(c, (int64_t)cap * hd, 1)), v = mk2(c, cap, hd, rnd(c, (int64_t)cap * hd, 1));
    pair q = mk2(c, n_seq * qps, hd, rnd(c, (int64_t)n_seq * qps * hd, 1)), o = mk2(c, n_seq * qps, hd, NULL);
    pair pb = {0};
    if (kv_bf16) {
        pair kb = bf16_pair(c, cap, hd), vb = bf16_pair(c, cap, hd);
        bf16_rows_from(c, kb, k, "copy_rows F32 -> BF16 keys");
        bf16_rows_from(c, vb, v, "copy_rows F32 -> BF16 values");
        drop(k);
        drop(v);
        k = kb;
        v = vb;
    }
    /* T5 shares one bias table, so every sequence has max_keys keys then */
    if (bias)
        pb = mk(c, 3, (const int64_t[]){heads, qps, max_keys}, rnd(c, (int64_t)heads * qps * max_keys, 2));
    uint8_t *mask = malloc((size_t)n_seq * max_keys + 1);
    mg_attn_seq sc[8], sg[8];
    int64_t row0 = 0;
    for (int s = 0; s < n_seq; s++) {
        for (int j = 0; j < n_keys[s]; j++)
            mask[s * max_keys + j] = s == 1 ? 0 : (j * 7 + s) % 5 != 0; /* seq 1 fully masked */
        sc[s] = (mg_attn_seq){.k = k.c, .v = v.c, .k_row0 = row0, .n_keys = n_keys[s],
                              .key_mask = masks ? mask + s * max_keys : NULL,
                              .q_pos = causal ? n_keys[s] - qps : 0};
        sg[s] = sc[s];
        sg[s].k = k.g;
        sg[s].v = v.g;
        row0 += n_keys[s] + 3;
    }
    mg_attn_params p = {.heads = heads, .head_dim = dh, .scale = 1.0f / sqrtf((float)dh),
                        .causal = causal};
    p.pos_bias = bias ? pb.c : NULL;
    c->cpu->ops->attention(c->cpu, o.c, q.c, n_seq, qps, sc, &p);
    p.pos_bias = bias ? pb.g : NULL;
    c->gpu->ops->attention(c->gpu, o.g, q.g, n_seq, qps, sg, &p);
    char what[120];
    snprintf(what, sizeof what, "attention%s seqs=%d q=%d h=%d dh=%d keys<=%d%s%s%s",
             kv_bf16 ? " bf16-kv" : "", n_seq, qps, heads, dh, max_keys, causal ? " causal" : "",
             masks ? " masks" : "", bias ? " bias" : "");
    compare(c, o, TOL, what);
    free(mask);
    drop(k); drop(v); drop(q); drop(o);
    if (bias)
        drop(pb);
}

/* A conv weight [d0][d1][k] on both backends: F32, or BF16 in the pair
 * layout of caps.conv_bf16 (the input channel pairs up: dim 1 of a conv,
 * dim 0 of a transposed one), which both then run with BF16-rounded inputs. */
static pair conv_weight(ctx *c, int64_t d0, int64_t d1, int64_t k, int transposed, int bf16)
{
    const float *w = rnd(c, d0 * d1 * k, 0.3f);
    if (!bf16)
        return weight(c, 3, (const int64_t[]){d0, d1, k}, w, NULL, MG_WEIGHT_PLAIN);
    uint32_t *words = calloc((size_t)(d0 * d1 * k / 2), sizeof *words);
    if (!words)
        exit(1);
    for (int64_t a = 0; a < d0; a++)
        for (int64_t b = 0; b < d1; b++)
            for (int64_t j = 0; j < k; j++) {
                int half;
                int64_t wd = mg_conv_bf16_pair_word(a, b, j, d1, k, transposed, &half);
                words[wd] |= (uint32_t)mg_f32_to_bf16(w[(a * d1 + b) * k + j]) << (16 * half);
            }
    pair p = {0};
    mg_error err = {0};
    const int64_t ne[3] = {d0, d1, k};
    size_t bytes = (size_t)(d0 * d1 * k / 2) * sizeof *words;
    if (mg_tensor_new(&p.c, c->cpu, MG_DT_BF16, 3, ne, &err) ||
        mg_tensor_new(&p.g, c->gpu, MG_DT_BF16, 3, ne, &err) ||
        c->cpu->ops->upload(c->cpu, p.c, 0, words, bytes, &err) ||
        c->gpu->ops->upload(c->gpu, p.g, 0, words, bytes, &err)) {
        fprintf(stderr, "conv weight: %s\n", err.msg);
        exit(1);
    }
    free(words);
    return p;
}

static void test_conv(ctx *c, int batch, int c_in, int c_out, int K, int t_in, int stride, int dil,
                      int bf16)
{
    int t_out = (t_in - dil * (K - 1) - 1) / stride + 1;
    pair x = mk2(c, (int64_t)batch * c_in, t_in, rnd(c, (int64_t)batch * c_in * t_in, 1));
    pair y = mk2(c, (int64_t)batch * c_out, t_out, NULL);
    pair w = conv_weight(c, c_out, c_in, K, 0, bf16);
    pair b = mk(c, 1, (const int64_t[]){c_out}, rnd(c, c_out, 1));
    c->cpu->ops->conv1d(c->cpu, y.c, x.c, w.c, b.c, batch, stride, dil);
    c->gpu->ops->conv1d(c->gpu, y.g, x.g, w.g, b.g, batch, stride, dil);
    char what[100];
    snprintf(what, sizeof what, "conv1d%s B=%d %d->%d k=%d T=%d s=%d d=%d", bf16 ? " bf16" : "",
             batch, c_in, c_out, K, t_in, stride, dil);
    compare(c, y, TOL, what);
    drop(x); drop(y); drop(w); drop(b);
}

static void test_convt(ctx *c, int batch, int c_in, int c_out, int K, int t_in, int stride, int trim,
                       int bf16)
{
    int full = (t_in - 1) * stride + K, t_y = full - trim - (trim + 1) / 2;
    pair x = mk2(c, (int64_t)batch * c_in, t_in, rnd(c, (int64_t)batch * c_in * t_in, 1));
    pair y = mk2(c, (int64_t)batch * c_out, t_y, NULL);
    pair w = conv_weight(c, c_in, c_out, K, 1, bf16);
    pair b = mk(c, 1, (const int64_t[]){c_out}, rnd(c, c_out, 1));
    c->cpu->ops->conv_transpose1d(c->cpu, y.c, x.c, w.c, b.c, batch, stride, trim);
    c->gpu->ops->conv_transpose1d(c->gpu, y.g, x.g, w.g, b.g, batch, stride, trim);
    char what[100];
    snprintf(what, sizeof what, "conv_transpose1d%s B=%d %d->%d k=%d T=%d s=%d trim=%d",
             bf16 ? " bf16" : "", batch, c_in, c_out, K, t_in, stride, trim);
    compare(c, y, TOL, what);
    drop(x); drop(y); drop(w); drop(b);
}

static void test_pad_transpose(ctx *c)
{
    int cases[][3] = {{3, 3, 3}, {20, 2, 5}, {1, 3, 3}, {9, 0, 4}};
    for (int i = 0; i < 4; i++) {
        int T = cases[i][0], l = cases[i][1], r = cases[i][2];
        pair x = mk2(c, 5, T, rnd(c, 5 * T, 1)), y = mk2(c, 5, T + l + r, NULL);
        c->cpu->ops->pad_reflect(c->cpu, y.c, x.c, l, r);
        c->gpu->ops->pad_reflect(c->gpu, y.g, x.g, l, r);
        char what[64];
        snprintf(what, sizeof what, "pad_reflect T=%d left=%d right=%d", T, l, r);
        compare(c, y, TOL, what);
        drop(x); drop(y);
    }
    for (int batch = 1; batch <= 3; batch += 2) {
        int C = 37, R = 45;
        pair x = mk2(c, (int64_t)batch * C, R, rnd(c, (int64_t)batch * C * R, 1));
        pair y = mk2(c, (int64_t)batch * R, C, NULL);
        c->cpu->ops->transpose(c->cpu, y.c, x.c, batch);
        c->gpu->ops->transpose(c->gpu, y.g, x.g, batch);
        compare(c, y, TOL, batch == 1 ? "transpose B=1 37x45" : "transpose B=3 37x45");
        drop(x); drop(y);
    }
}

static void test_lstm(ctx *c, int batch, int T, int H)
{
    pair x = mk2(c, (int64_t)batch * T, H, rnd(c, (int64_t)batch * T * H, 1));
    pair h = mk2(c, (int64_t)batch * T, H, NULL);
    float s = 1.0f / sqrtf((float)H);
    pair wi = weight(c, 2, (const int64_t[]){4 * H, H}, rnd(c, 4 * H * H, s), NULL, MG_WEIGHT_PLAIN);
    pair wh = weight(c, 2, (const int64_t[]){4 * H, H}, rnd(c, 4 * H * H, s), NULL, MG_WEIGHT_PLAIN);
    pair bi = mk(c, 1, (const int64_t[]){4 * H}, rnd(c, 4 * H, 0.2f));
    pair bh = mk(c, 1, (const int64_t[]){4 * H}, rnd(c, 4 * H, 0.2f));
    c->cpu->ops->lstm(c->cpu, h.c, x.c, wi.c, wh.c, bi.c, bh.c, batch);
    c->gpu->ops->lstm(c->gpu, h.g, x.g, wi.g, wh.g, bi.g, bh.g, batch);
    char what[64];
    snprintf(what, sizeof what, "lstm B=%d T=%d H=%d", batch, T, H);
    compare(c, h, TOL, what);
    drop(x); drop(h); drop(wi); drop(wh); drop(bi); drop(bh);
}

/* An LSTM item's outputs must not depend on its batch mates (generations
 * that end together share one EnCodec batch): batch B over T steps against
 * each item alone on the same backend, bit for bit. B*T crosses the
 * linear's row count where its kernel changes (LIN_MAX_ROWS, matvec.cu). */
static void test_lstm_batch_independence(ctx *c, int B, int T, int H)
{
    mg_backend *g = c->gpu;
    float s = 1.0f / sqrtf((float)H);
    const float *xs = rnd(c, (int64_t)B * T * H, 1);
    pair wi = weight(c, 2, (const int64_t[]){4 * H, H}, rnd(c, 4 * H * H, s), NULL, MG_WEIGHT_PLAIN);
    pair wh = weight(c, 2, (const int64_t[]){4 * H, H}, rnd(c, 4 * H * H, s), NULL, MG_WEIGHT_PLAIN);
    pair bi = mk(c, 1, (const int64_t[]){4 * H}, rnd(c, 4 * H, 0.2f));
    pair bh = mk(c, 1, (const int64_t[]){4 * H}, rnd(c, 4 * H, 0.2f));
    pair x = mk2(c, (int64_t)B * T, H, xs), h = mk2(c, (int64_t)B * T, H, NULL);
    float *all = malloc((size_t)B * T * H * 4), *one = malloc((size_t)T * H * 4);
    mg_error err = {0};
    if (!all || !one)
        exit(1);
    g->ops->lstm(g, h.g, x.g, wi.g, wh.g, bi.g, bh.g, B);
    mg_code rc = mg_tensor_download_f32(h.g, all, &err);
    int64_t diff = 0;
    for (int b = 0; rc == MG_OK && b < B; b++) {
        pair x1 = mk2(c, T, H, xs + (int64_t)b * T * H), h1 = mk2(c, T, H, NULL);
        g->ops->lstm(g, h1.g, x1.g, wi.g, wh.g, bi.g, bh.g, 1);
        rc = mg_tensor_download_f32(h1.g, one, &err);
        if (rc == MG_OK)
            diff += memcmp(one, all + (int64_t)b * T * H, (size_t)T * H * 4) != 0;
        drop(x1);
        drop(h1);
    }
    char what[100];
    snprintf(what, sizeof what, "lstm batch independence B=%d T=%d H=%d", B, T, H);
    CHECK(rc == MG_OK && diff == 0, "%s: %s%lld items differ from their solo run", what,
          rc == MG_OK ? "" : err.msg, (long long)diff);
    if (rc == MG_OK && diff == 0)
        printf("ok   %-44s every item as alone, bit for bit\n", what);
    free(all);
    free(one);
    drop(wi); drop(wh); drop(bi); drop(bh); drop(x); drop(h);
}

static void test_select(ctx *c, int rows, int V, mg_sampling s, const char *name)
{
    int lr = s.guidance_scale > 1 ? 2 * rows : rows;
    float *lg = rnd(c, (int64_t)lr * V, 4);
    if (V > 10) /* exact ties: the first index must win on both */
        for (int r = 0; r < lr; r++)
            lg[(int64_t)r * V + 3] = lg[(int64_t)r * V + 9] = 9.0f;
    pair l = mk2(c, lr, V, lg);
    float *sc_c = malloc((size_t)rows * V * 4), *sc_g = malloc((size_t)rows * V * 4);
    int32_t tc[64], tg[64];
    mg_error err = {0};
    int same_tok = 1, bad_inf = 0;
    double worst = 0;
    for (uint64_t step = 0; step < 4; step++) {
        mg_code a = c->cpu->ops->select_tokens(c->cpu, l.c, rows, V, &s, 42, step, sc_c, tc, &err);
        mg_code b = c->gpu->ops->select_tokens(c->gpu, l.g, rows, V, &s, 42, step, sc_g, tg, &err);
        CHECK(a == MG_OK && b == MG_OK, "select_tokens %s: %s", name, err.msg);
        if (a || b)
            break;
        for (int r = 0; r < rows; r++)
            same_tok &= tc[r] == tg[r];
        for (int64_t i = 0; i < (int64_t)rows * V; i++) {
            if (isinf(sc_c[i]) || isinf(sc_g[i])) {
                bad_inf += !(isinf(sc_c[i]) && isinf(sc_g[i]));
                continue;
            }
            double d = fabs((double)sc_c[i] - sc_g[i]);
            if (d > worst)
                worst = d;
        }
    }
    /* without scores the GPU must still pick the same tokens */
    mg_code b = c->gpu->ops->select_tokens(c->gpu, l.g, rows, V, &s, 42, 3, NULL, tg, &err);
    CHECK(b == MG_OK, "select_tokens %s without scores: %s", name, err.msg);
    for (int r = 0; b == MG_OK && r < rows; r++)
        same_tok &= tc[r] == tg[r];
    char what[120];
    snprintf(what, sizeof what, "select_tokens %s rows=%d V=%d", name, rows, V);
    CHECK(same_tok && !bad_inf && worst == 0, "%s: tokens %s, %d -inf mismatches, scores differ by %g",
          what, same_tok ? "equal" : "DIFFER", bad_inf, worst);
    if (same_tok && !bad_inf && worst == 0)
        printf("ok   %-44s tokens and scores identical over 4 steps\n", what);
    free(sc_c);
    free(sc_g);
    drop(l);
}

/* select_tokens_many (one wait for several generations) against each call
 * made alone on the CPU: the same tokens, whatever the mix of row counts,
 * guidance, sampling settings, seeds and steps. */
static void test_select_many(ctx *c, int V)
{
    enum { N = 5 };
    const int rows[N] = {4, 1, 7, 4, 3};
    const mg_sampling samp[N] = {
        {.do_sample = 1, .temperature = 1, .top_k = 250, .top_p = 1, .guidance_scale = 3},
        {.do_sample = 0, .temperature = 1, .top_p = 1, .guidance_scale = 1},
        {.do_sample = 1, .temperature = 0.7f, .top_k = 13, .top_p = 1, .guidance_scale = 3},
        {.do_sample = 1, .temperature = 1.3f, .top_k = 0, .top_p = 0.8f, .guidance_scale = 1},
        {.do_sample = 1, .temperature = 1, .top_k = 250, .top_p = 0.95f, .guidance_scale = 3}};
    pair l[N];
    int32_t want[N][8], got[N][8];
    mg_select_call calls[N];
    mg_error err = {0};
    int same = 1;
    mg_code rc = MG_OK;
    for (int i = 0; i < N; i++) {
        int lr = samp[i].guidance_scale > 1 ? 2 * rows[i] : rows[i];
        l[i] = mk2(c, lr, V, rnd(c, (int64_t)lr * V, 4));
        calls[i] = (mg_select_call){.logits = l[i].g, .rows = rows[i], .s = &samp[i],
                                    .seed = 7 + (uint64_t)i, .step = 11 * (uint64_t)i, .tokens = got[i]};
        if (rc == MG_OK)
            rc = c->cpu->ops->select_tokens(c->cpu, l[i].c, rows[i], V, &samp[i], 7 + (uint64_t)i,
                                            11 * (uint64_t)i, NULL, want[i], &err);
    }
    if (rc == MG_OK)
        rc = mg_select_tokens_many(c->gpu, N, calls, V, &err);
    CHECK(rc == MG_OK, "select_tokens_many: %s", err.msg);
    for (int i = 0; rc == MG_OK && i < N; i++)
        for (int r = 0; r < rows[i]; r++)
            same &= want[i][r] == got[i][r];
    char what[100];
    snprintf(what, sizeof what, "select_tokens_many %d calls V=%d%s", N, V,
             c->gpu->ops->select_tokens_many ? "" : " (fallback loop)");
    /* (main() opts the CUDA backend into the one-wait path: MG_CUDA_SELECT_MANY) */
    CHECK(rc != MG_OK || same, "%s: tokens differ from the calls made one by one", what);
    if (rc == MG_OK && same)
        printf("ok   %-44s tokens as the calls made alone\n", what);
    for (int i = 0; i < N; i++)
        drop(l[i]);
}

/* ---- rows must not depend on their batch mates: a row computed alone, in
 * a batch of M, and at another place in a bigger batch gives the same bits. */
static void test_batch_independence(ctx *c, int N, int K, int bf16)
{
    enum { M = 37, BIG = 128, AT = 50 };
    float *x = rnd(c, (int64_t)BIG * K, 1), *w = rnd(c, (int64_t)N * K, 0.2f), *b = rnd(c, N, 0.5f);
    pair pw = weight(c, 2, (const int64_t[]){N, K}, w, NULL, MG_WEIGHT_MATRIX);
    pair pb = mk(c, 1, (const int64_t[]){N}, b);
    pair px = mk2(c, BIG, K, x), py = mk2(c, BIG, N, NULL), py1 = mk2(c, M, N, NULL);
    pair p16 = mk2(c, 16, N, NULL), p20 = mk2(c, 20, N, NULL);
    mg_backend *g = c->gpu;
    float *big = malloc((size_t)BIG * N * 4), *few = malloc((size_t)M * N * 4), *one = malloc((size_t)N * 4);
    float *sixteen = malloc((size_t)16 * N * 4), *twenty = malloc((size_t)20 * N * 4);
    mg_error err = {0};
    /* rows AT.. of the big batch hold the same activations as rows 0.. of the small one */
    mg_tensor xs = mg_tensor_rows_view(px.g, AT, M);
    g->ops->linear(g, py1.g, &xs, pw.g, pb.g);
    g->ops->linear(g, py.g, px.g, pw.g, pb.g);
    mg_tensor x16 = mg_tensor_rows_view(px.g, AT, 16);
    g->ops->linear(g, p16.g, &x16, pw.g, pb.g);
    mg_tensor x20 = mg_tensor_rows_view(px.g, AT, 20);
    g->ops->linear(g, p20.g, &x20, pw.g, pb.g);
    int ok = mg_tensor_download_f32(py.g, big, &err) == MG_OK &&
             mg_tensor_download_f32(py1.g, few, &err) == MG_OK &&
             mg_tensor_download_f32(p16.g, sixteen, &err) == MG_OK &&
             mg_tensor_download_f32(p20.g, twenty, &err) == MG_OK;
    int64_t diff = 0;
    for (int r = 0; ok && r < M; r++) {
        mg_tensor xr = mg_tensor_rows_view(px.g, AT + r, 1), yr = mg_tensor_rows_view(py1.g, 0, 1);
        g->ops->linear(g, &yr, &xr, pw.g, pb.g);
        ok = mg_tensor_download_f32(&yr, one, &err) == MG_OK;
        for (int n = 0; ok && n < N; n++) {
            diff += memcmp(&one[n], &few[(int64_t)r * N + n], 4) != 0;
            diff += memcmp(&one[n], &big[(int64_t)(AT + r) * N + n], 4) != 0;
            if (r < 16)
                diff += memcmp(&one[n], &sixteen[(int64_t)r * N + n], 4) != 0;
            if (r < 20)
                diff += memcmp(&one[n], &twenty[(int64_t)r * N + n], 4) != 0;
        }
    }
    char what[120];
    snprintf(what, sizeof what, "batch independence %s N=%d K=%d (M 1/16/20/%d/%d)", bf16 ? "bf16" : "f32",
             N, K, M, BIG);
    CHECK(ok && diff == 0, "%s: %s, %lld values differ in their bits", what, ok ? "" : err.msg,
          (long long)diff);
    if (ok && diff == 0)
        printf("ok   %s\n", what);
    free(big); free(few); free(one); free(sixteen); free(twenty);
    drop(pw); drop(pb); drop(px); drop(py); drop(py1); drop(p16); drop(p20);
}

/* ---- a decoder-shaped step sequence, several steps in a row: embeds, layer
 * norm, q/k/v, KV-cache appends, attention, residual adds, gelu MLP and
 * per-codebook heads scattered into one logits tensor. The CUDA backend
 * fuses most of it and replays it from a graph from the second step on; a
 * second CUDA backend with fusion and graphs off (MG_CUDA_FUSE=0,
 * MG_CUDA_GRAPHS=0) must agree with it bit for bit, and both with the CPU. */
typedef struct {
    mg_tensor *e0, *e1, *pos, *lw, *lb, *q, *k, *v, *o, *f1, *f2, *hd[3];
    mg_tensor *x, *h, *tq, *tk, *tv, *a, *f, *hl, *kc, *vc, *logits;
} step_net;

static mg_tensor *st_w(mg_backend *be, int64_t r, int64_t k, const float *host, mg_weight_kind kind)
{
    mg_tensor *w = calloc(1, sizeof *w);
    mg_error err = {0};
    w->be = be;
    w->dtype = MG_DT_F32;
    w->ndim = r ? 2 : 1;
    w->ne[0] = r ? r : k;
    w->ne[1] = k;
    w->nbytes = (size_t)(r ? r : 1) * k * 4;
    if (be->ops->weight(be, w, host, kind, &err)) {
        fprintf(stderr, "weight: %s\n", err.msg);
        exit(1);
    }
    return w;
}

static mg_tensor *st_t(mg_backend *be, int64_t r, int64_t k)
{
    mg_tensor *t = NULL;
    mg_error err = {0};
    if (mg_tensor_new2(&t, be, r, k, &err)) {
        fprintf(stderr, "tensor: %s\n", err.msg);
        exit(1);
    }
    return t;
}

enum { ST_S = 3, ST_V = 50, ST_CAP = 8, ST_HEADS = 2, ST_K = 3 };

static void step_build(step_net *n, mg_backend *be, int H, int F, float **hw, int kv_bf16)
{
    n->e0 = st_w(be, ST_V, H, hw[0], MG_WEIGHT_MATRIX);
    n->e1 = st_w(be, ST_V, H, hw[1], MG_WEIGHT_MATRIX);
    n->pos = st_w(be, ST_CAP, H, hw[2], MG_WEIGHT_PLAIN);
    n->lw = st_w(be, 0, H, hw[3], MG_WEIGHT_PLAIN);
    n->lb = st_w(be, 0, H, hw[4], MG_WEIGHT_PLAIN);
    n->q = st_w(be, H, H, hw[5], MG_WEIGHT_MATRIX);
    n->k = st_w(be, H, H, hw[6], MG_WEIGHT_MATRIX);
    n->v = st_w(be, H, H, hw[7], MG_WEIGHT_MATRIX);
    n->o = st_w(be, H, H, hw[8], MG_WEIGHT_MATRIX);
    n->f1 = st_w(be, F, H, hw[9], MG_WEIGHT_MATRIX);
    n->f2 = st_w(be, H, F, hw[10], MG_WEIGHT_MATRIX);
    for (int k = 0; k < ST_K; k++)
        n->hd[k] = st_w(be, ST_V, H, hw[11 + k], MG_WEIGHT_MATRIX);
    n->x = st_t(be, ST_S, H);
    n->h = st_t(be, ST_S, H);
    n->tq = st_t(be, ST_S, H);
    n->tk = st_t(be, ST_S, H);
    n->tv = st_t(be, ST_S, H);
    n->a = st_t(be, ST_S, H);
    n->f = st_t(be, ST_S, F);
    n->hl = st_t(be, ST_S, ST_V);
    n->kc = st_t(be, ST_S * ST_CAP, H);
    n->vc = st_t(be, ST_S * ST_CAP, H);
    if (kv_bf16) { /* the caches of bf16 models with kv_bf16 */
        mg_tensor_free(n->kc);
        mg_tensor_free(n->vc);
        mg_error err = {0};
        const int64_t ne[2] = {ST_S * ST_CAP, H};
        if (mg_tensor_new(&n->kc, be, MG_DT_BF16, 2, ne, &err) ||
            mg_tensor_new(&n->vc, be, MG_DT_BF16, 2, ne, &err)) {
            fprintf(stderr, "tensor: %s\n", err.msg);
            exit(1);
        }
    }
    n->logits = st_t(be, ST_S * ST_K, ST_V);
}

static void step_free(step_net *n)
{
    mg_tensor *all[] = {n->e0, n->e1, n->pos, n->lw, n->lb, n->q, n->k, n->v, n->o, n->f1, n->f2,
                        n->hd[0], n->hd[1], n->hd[2], n->x, n->h, n->tq, n->tk, n->tv, n->a, n->f,
                        n->hl, n->kc, n->vc, n->logits};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        mg_tensor_free(all[i]);
}

/* One step at position `past`; downloads x and logits. */
static int step_run(step_net *n, mg_backend *be, int H, int past, float *x_out, float *lg_out)
{
    const mg_backend_ops *op = be->ops;
    int32_t ids[ST_S], pos[ST_S];
    for (int s = 0; s < ST_S; s++) {
        ids[s] = (past * 7 + s * 13) % ST_V;
        pos[s] = past;
    }
    op->embed(be, n->x, n->e0, ids, ST_S, 0);
    for (int s = 0; s < ST_S; s++)
        ids[s] = (ids[s] + 5) % ST_V;
    op->embed(be, n->x, n->e1, ids, ST_S, 1);
    op->embed(be, n->x, n->pos, pos, ST_S, 1);
    op->layer_norm(be, n->h, n->x, n->lw, n->lb, 1e-5f);
    op->linear(be, n->tq, n->h, n->q, NULL);
    op->linear(be, n->tk, n->h, n->k, NULL);
    op->linear(be, n->tv, n->h, n->v, NULL);
    mg_copy_row_blocks(be, n->kc, past, ST_CAP, n->tk, 0, 1, 1, ST_S);
    /* V goes through the per-row scatter (as the batched decoder does), K strided */
    mg_tensor *vdst[ST_S];
    int64_t vrow[ST_S], srow[ST_S];
    for (int s = 0; s < ST_S; s++) {
        vdst[s] = n->vc;
        vrow[s] = (int64_t)s * ST_CAP + past;
        srow[s] = s;
    }
    mg_copy_rows_scatter(be, vdst, vrow, n->tv, srow, ST_S);
    mg_attn_seq seqs[ST_S];
    for (int s = 0; s < ST_S; s++)
        seqs[s] = (mg_attn_seq){.k = n->kc, .v = n->vc, .k_row0 = (int64_t)s * ST_CAP,
                                .n_keys = past + 1, .q_pos = past};
    mg_attn_params p = {.heads = ST_HEADS, .head_dim = H / ST_HEADS,
                        .scale = 1.0f / sqrtf((float)(H / ST_HEADS)), .causal = 1};
    op->attention(be, n->a, n->tq, ST_S, 1, seqs, &p);
    op->linear(be, n->h, n->a, n->o, NULL);
    op->add(be, n->x, n->h);
    op->layer_norm(be, n->h, n->x, n->lw, n->lb, 1e-5f);
    op->linear(be, n->f, n->h, n->f1, NULL);
    op->gelu(be, n->f);
    op->linear(be, n->h, n->f, n->f2, NULL);
    op->add(be, n->x, n->h);
    for (int k = 0; k < ST_K; k++) {
        op->linear(be, n->hl, n->x, n->hd[k], NULL);
        if (k % 2) {
            mg_tensor *ldst[ST_S];
            int64_t lrow[ST_S];
            for (int s = 0; s < ST_S; s++) {
                ldst[s] = n->logits;
                lrow[s] = (int64_t)s * ST_K + k;
            }
            mg_copy_rows_scatter(be, ldst, lrow, n->hl, srow, ST_S);
        } else {
            mg_copy_row_blocks(be, n->logits, k, ST_K, n->hl, 0, 1, 1, ST_S);
        }
    }
    mg_error err = {0};
    if (op->sync(be, &err) || mg_tensor_download_f32(n->x, x_out, &err) ||
        mg_tensor_download_f32(n->logits, lg_out, &err)) {
        printf("FAIL step: %s\n", err.msg);
        return 0;
    }
    return 1;
}

static double max_rel(const float *a, const float *b, int64_t n)
{
    double mx = 1, worst = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(a[i]) > mx)
            mx = fabs(a[i]);
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= worst))
            worst = isnan(d) ? INFINITY : d;
    }
    return worst / mx;
}

/* kv_bf16: BF16 attention caches (the K append strided, the V append a
 * scatter, each right after the linear it copies from, whose F32 epilogue
 * must not take them) */
static void test_steps(ctx *c, int H, int F, int bf16, int dev, int kv_bf16)
{
    float *hw[14];
    int64_t sizes[14] = {ST_V * H, ST_V * H, ST_CAP * H, H, H, H * H, H * H, H * H, H * H,
                         (int64_t)F * H, (int64_t)H * F, ST_V * H, ST_V * H, ST_V * H};
    float *cw[14];
    for (int i = 0; i < 14; i++) {
        hw[i] = rnd(c, sizes[i], i == 3 ? 0.3f : 0.2f);
        if (i == 3)
            for (int64_t j = 0; j < sizes[i]; j++)
                hw[i][j] += 1.0f;
        /* the CPU gets the matrices the GPU holds */
        cw[i] = bf16 && i != 2 && i != 3 && i != 4 ? bf16_copy(c, hw[i], sizes[i]) : hw[i];
    }
    mg_backend_options plain_opt = c->opt;
    plain_opt.cuda_fusion = 0;
    plain_opt.cuda_graphs = 0;
    mg_backend *plain = NULL;
    mg_error err = {0};
    mg_code rc = c->self ? mg_backend_cpu_create(&plain, 1, MG_DT_F32, &plain_opt, &err)
                         : mg_backend_cuda_create(&plain, dev, bf16 ? MG_DT_BF16 : MG_DT_F32,
                                                  &plain_opt, &err);
    CHECK(rc == MG_OK, "cuda backend without fusion: %s", err.msg);
    if (rc != MG_OK)
        return;
    step_net nc, ng, np;
    step_build(&nc, c->cpu, H, F, cw, kv_bf16);
    step_build(&ng, c->gpu, H, F, hw, kv_bf16);
    step_build(&np, plain, H, F, hw, kv_bf16);
    int64_t nx = (int64_t)ST_S * H, nl = (int64_t)ST_S * ST_K * ST_V;
    float *xc = malloc(nx * 4), *xg = malloc(nx * 4), *xp = malloc(nx * 4);
    float *lc = malloc(nl * 4), *lg = malloc(nl * 4), *lp = malloc(nl * 4);
    double tol = bf16 ? 1e-3 : TOL, worst = 0;
    int64_t bits = 0;
    int ok = 1;
    for (int past = 0; ok && past < 6; past++) {
        ok = step_run(&nc, c->cpu, H, past, xc, lc) && step_run(&ng, c->gpu, H, past, xg, lg) &&
             step_run(&np, plain, H, past, xp, lp);
        if (!ok)
            break;
        double e1 = max_rel(xc, xg, nx), e2 = max_rel(lc, lg, nl);
        worst = fmax(worst, fmax(e1, e2));
        bits += memcmp(xg, xp, nx * 4) != 0;
        bits += memcmp(lg, lp, nl * 4) != 0;
    }
    char what[120];
    snprintf(what, sizeof what, "6 decoder-like steps %s%s H=%d F=%d vs CPU", bf16 ? "bf16" : "f32",
             kv_bf16 ? " bf16-kv" : "", H, F);
    CHECK(ok && worst <= tol, "%s: rel err %.3g > %.3g", what, worst, tol);
    if (ok && worst <= tol)
        printf("ok   %-44s max err %.3g (tol %.3g)\n", what, worst, tol);
    CHECK(ok && bits == 0, "%s: fused+graph and plain CUDA runs differ in %lld steps", what, (long long)bits);
    if (ok && bits == 0)
        printf("ok   fused + graph replay == plain launches, bit for bit\n");
    step_free(&nc);
    step_free(&ng);
    step_free(&np);
    plain->ops->destroy(plain);
    free(xc); free(xg); free(xp); free(lc); free(lg); free(lp);
}

/* ---- errors: an allocation the GPU cannot satisfy fails cleanly, a
 * recorded op failure surfaces from sync() once, the backend keeps working,
 * and after a kernel fault (a context-killing error) a new backend can be
 * created and computes correctly. */
static void test_errors(ctx *c, int dev)
{
    mg_error err = {0};
    mg_tensor *huge = NULL;
    mg_code rc = mg_tensor_new2(&huge, c->gpu, (int64_t)1 << 22, (int64_t)1 << 22, &err); /* 64 TB */
    CHECK(rc != MG_OK, "a 64 TB allocation succeeded");
    if (rc != MG_OK)
        printf("ok   64 TB allocation fails: %s\n", err.msg);
    else
        mg_tensor_free(huge);
    /* head_dim too large for the attention kernel: recorded, reported by sync */
    int dh = 20000;
    pair q = mk2(c, 1, dh, rnd(c, dh, 1)), kv = mk2(c, 1, dh, rnd(c, dh, 1)), o = mk2(c, 1, dh, NULL);
    mg_attn_seq seq = {.k = kv.g, .v = kv.g, .n_keys = 1};
    mg_attn_params p = {.heads = 1, .head_dim = dh, .scale = 1};
    c->gpu->ops->attention(c->gpu, o.g, q.g, 1, 1, &seq, &p);
    rc = c->gpu->ops->sync(c->gpu, &err);
    CHECK(rc != MG_OK, "an unsupported attention did not fail");
    if (rc != MG_OK)
        printf("ok   recorded op failure from sync: %s\n", err.msg);
    rc = c->gpu->ops->sync(c->gpu, &err);
    CHECK(rc == MG_OK, "the failure was reported twice: %s", err.msg);
    drop(q); drop(kv); drop(o);
    test_linear(c, 3, 100, 64, 1, 1); /* still computes (this backend holds bf16 weights) */
    if (getenv("MG_KTEST_NO_FAULT")) {
        SKIP("kernel fault test (MG_KTEST_NO_FAULT)");
        return;
    }
    /* A kernel fault kills the process's CUDA context (and, under MPS or an
     * exclusive compute mode, may keep this process from making a new one),
     * so it is provoked in a child process (this program, re-executed). */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "MG_KTEST_FAULT_CHILD=1 /proc/%d/exe %d 2>&1", (int)getpid(), dev);
    FILE *pp = popen(cmd, "r");
    int reported = 0, recreated = -1;
    char line[600];
    while (pp && fgets(line, sizeof line, pp)) {
        printf("     child: %s", line);
        reported |= strncmp(line, "fault reported:", 15) == 0;
        if (strncmp(line, "re-create:", 10) == 0)
            recreated = strstr(line, "re-create: ok") != NULL;
    }
    int st = pp ? pclose(pp) : -1;
    CHECK(reported && st == 0, "the kernel fault was not reported by sync() (child status %d)", st);
    if (reported && st == 0)
        printf("ok   kernel fault reported by sync(), the process survived it%s\n",
               recreated == 1 ? " and re-created its backend" :
               " (its own re-create failed: that process must be replaced)");
    /* the GPU stays usable for everyone else: a fresh backend here computes */
    c->gpu->ops->destroy(c->gpu);
    c->gpu = NULL;
    rc = mg_backend_cuda_create(&c->gpu, dev, MG_DT_F32, &c->opt, &err);
    CHECK(rc == MG_OK, "creating a backend after the child's fault: %s", err.msg);
    if (rc == MG_OK)
        test_linear(c, 5, 257, 128, 1, 0);
}

/* The child of test_errors: fault, report, try to re-create in process. */
static int fault_child(int dev)
{
    mg_backend *g = NULL;
    mg_error err = {0};
    mg_backend_options opt;
    mg_backend_options_from_env(&opt);
    if (mg_backend_cuda_create(&g, dev, MG_DT_F32, &opt, &err)) {
        printf("create: %s\n", err.msg);
        return 1;
    }
    mg_tensor *a = NULL;
    if (mg_tensor_new2(&a, g, 4, 1000, &err)) {
        printf("alloc: %s\n", err.msg);
        return 1;
    }
    mg_tensor bogus = *a;
    bogus.data = (void *)(uintptr_t)0x1000;
    bogus.owns = 0;
    g->ops->add(g, &bogus, a);
    mg_code rc = g->ops->sync(g, &err);
    if (rc == MG_OK) {
        printf("no error from sync\n");
        return 1;
    }
    printf("fault reported: %s\n", err.msg);
    a->data = NULL; /* gone with the context */
    mg_tensor_free(a);
    g->ops->destroy(g);
    rc = mg_backend_cuda_create(&g, dev, MG_DT_F32, &opt, &err);
    if (rc == MG_OK) {
        mg_tensor *t = NULL;
        float one[3] = {1, 2, 3}, back[3] = {0};
        rc = mg_tensor_new2(&t, g, 1, 3, &err);
        if (rc == MG_OK)
            rc = mg_tensor_upload_f32(t, one, &err);
        if (rc == MG_OK)
            g->ops->add(g, t, t);
        if (rc == MG_OK)
            rc = mg_tensor_download_f32(t, back, &err);
        printf("re-create: %s\n", rc == MG_OK && back[2] == 6 ? "ok, computes" : err.msg);
        mg_tensor_free(t);
        g->ops->destroy(g);
    } else {
        printf("re-create: failed: %s\n", err.msg);
    }
    return 0;
}

/* A crash prints its stack (addresses resolve with addr2line on this binary). */
static void on_crash(int sig)
{
    void *frames[64];
    int n = backtrace(frames, 64);
    static const char msg[] = "mg-kernel-test: crashed; stack:\n";
    (void)!write(2, msg, sizeof msg - 1);
    backtrace_symbols_fd(frames, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv)
{
    ctx c = {.rng = 0x1234567};
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGFPE, on_crash);
    mg_error err = {0};
    int dev = argc > 1 ? atoi(argv[1]) : 0;
    if (getenv("MG_KTEST_FAULT_CHILD"))
        return fault_child(dev);
    /* the opt-in norm absorption is checked too (the decoder-like steps
     * compare it bit for bit with a backend that fuses nothing) */
    setenv("MG_CUDA_FUSE_NORM", "1", 0);
    /* and the opt-in joint token selection (its one-wait path) */
    setenv("MG_CUDA_SELECT_MANY", "1", 0);
    mg_backend_options_from_env(&c.opt);
    char name[256] = "";
    /* MG_KTEST_SELF=1 runs the harness with a second CPU backend in place of
     * the GPU (f32 only), to check the test itself on a machine without one */
    int self = getenv("MG_KTEST_SELF") && atoi(getenv("MG_KTEST_SELF"));
    c.self = self;
    if (!self && mg_cuda_probe(dev, name, sizeof name, NULL, &err) != MG_OK) {
        SKIP("mg-kernel-test: no usable GPU (%s)", err.msg);
        return check_summary("mg-kernel-test");
    }
    printf("device %d: %s\n", dev, name);
    if (mg_backend_cpu_create(&c.cpu, 0, MG_DT_F32, &c.opt, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (int mode = 0; mode < (self ? 1 : 2); mode++) {
        int bf16 = mode == 1;
        if (self ? mg_backend_cpu_create(&c.gpu, 3, MG_DT_F32, &c.opt, &err)
                 : mg_backend_cuda_create(&c.gpu, dev, bf16 ? MG_DT_BF16 : MG_DT_F32, &c.opt,
                                          &err)) {
            CHECK(0, "cuda backend: %s", err.msg);
            break;
        }
        int lin[][3] = {{1, 77, 45}, {2, 130, 67}, {3, 33, 96}, {5, 257, 128}, {16, 70, 50},
                        {17, 70, 50}, {67, 129, 200}, {1, 1024, 1024}, {2, 2048, 1024},
                        {8, 1000, 4096}, {40, 1024, 768}, {128, 1024, 1024}};
        for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++)
            test_linear(&c, lin[i][0], lin[i][1], lin[i][2], i % 2 == 0, bf16);
        test_embed(&c, bf16);
        if (!self) {
            test_batch_independence(&c, 300, 1024, bf16);
            test_batch_independence(&c, 77, 200, bf16);
            test_steps(&c, 96, 160, bf16, dev, 0);
            test_steps(&c, 72, 200, bf16, dev, 0);
            if (bf16)
                test_steps(&c, 96, 160, bf16, dev, 1);
        } else {
            test_steps(&c, 96, 160, 0, dev, 0);
            test_steps(&c, 96, 160, 0, dev, 1);
        }
        if (!bf16) {
            test_elementwise(&c);
            test_norms(&c, 5, 77, 0);
            test_norms(&c, 3, 1024, 1);
            int k1[] = {5}, k3[] = {20, 20, 20}, k4[] = {300, 77, 700, 1}, k5[] = {1500, 1500};
            test_attention(&c, 1, 1, 3, 24, 1, 0, 0, k1, 0);
            test_attention(&c, 3, 5, 3, 8, 0, 1, 1, k3, 0);
            test_attention(&c, 3, 20, 4, 64, 0, 1, 1, k3, 0);
            test_attention(&c, 4, 1, 5, 40, 1, 0, 0, k4, 0);
            test_attention(&c, 4, 1, 3, 24, 0, 1, 0, k4, 0);
            test_attention(&c, 2, 1, 16, 64, 1, 0, 0, k5, 0);
            test_attention(&c, 2, 3, 2, 200, 1, 0, 0, k4, 0);
            /* BF16 caches (kv_bf16): vector and scalar loads, split key chunks */
            test_attention(&c, 2, 1, 16, 64, 1, 0, 0, k5, 1);
            test_attention(&c, 4, 1, 5, 40, 1, 0, 0, k4, 1);
            test_attention(&c, 3, 5, 3, 6, 0, 1, 0, k3, 1);
            test_attention(&c, 2, 3, 2, 200, 1, 0, 0, k4, 1);
            test_conv(&c, 1, 5, 35, 7, 100, 1, 1, 0);
            test_conv(&c, 3, 37, 19, 3, 77, 1, 3, 0);
            test_conv(&c, 2, 6, 9, 4, 50, 2, 1, 0);
            test_conv(&c, 1, 130, 70, 1, 333, 1, 1, 0);
            test_convt(&c, 1, 6, 35, 16, 13, 8, 4, 0);
            test_convt(&c, 3, 37, 17, 4, 29, 2, 1, 0);
            test_convt(&c, 2, 9, 5, 10, 7, 5, 3, 0);
            /* BF16 pair weights (caps.conv_bf16): the tensor-core products
             * for c_out >= 16 (several row, channel and reduction tiles, odd
             * batches, strides, dilations, every transposed-conv phase), the
             * direct kernels below; the CPU runs the same rounded values */
            test_conv(&c, 1, 6, 35, 7, 100, 1, 1, 1);
            test_conv(&c, 3, 38, 19, 3, 77, 1, 3, 1);
            test_conv(&c, 2, 6, 17, 4, 50, 2, 1, 1);
            test_conv(&c, 1, 130, 70, 1, 333, 1, 1, 1);
            test_conv(&c, 3, 64, 32, 3, 1000, 1, 9, 1);
            test_conv(&c, 2, 128, 1024, 7, 45, 1, 1, 1);
            test_conv(&c, 2, 6, 9, 4, 50, 2, 1, 1);
            test_conv(&c, 1, 64, 1, 7, 500, 1, 1, 1);
            test_convt(&c, 1, 6, 35, 16, 13, 8, 4, 1);
            test_convt(&c, 3, 38, 17, 4, 29, 2, 1, 1);
            test_convt(&c, 2, 10, 20, 10, 7, 5, 3, 1);
            test_convt(&c, 3, 128, 64, 8, 150, 4, 2, 1);
            test_convt(&c, 2, 1024, 512, 16, 20, 8, 8, 1);
            test_convt(&c, 2, 8, 16, 3, 11, 2, 0, 1);
            test_convt(&c, 2, 10, 5, 10, 7, 5, 3, 1);
            test_pad_transpose(&c);
            test_lstm(&c, 1, 11, 37);
            test_lstm(&c, 3, 7, 64);
            test_lstm(&c, 9, 5, 40);
            test_lstm_batch_independence(&c, 3, 90, 40);
            test_lstm_batch_independence(&c, 5, 300, 64);
            mg_sampling greedy = {.do_sample = 0, .temperature = 1, .top_p = 1, .guidance_scale = 1};
            mg_sampling cfg = greedy;
            cfg.guidance_scale = 3;
            mg_sampling samp = {.do_sample = 1, .temperature = 1, .top_k = 0, .top_p = 1, .guidance_scale = 3};
            mg_sampling topk = {.do_sample = 1, .temperature = 0.7f, .top_k = 13, .top_p = 1, .guidance_scale = 3};
            mg_sampling topp = {.do_sample = 1, .temperature = 1.3f, .top_k = 0, .top_p = 0.8f, .guidance_scale = 1};
            mg_sampling both = {.do_sample = 1, .temperature = 1, .top_k = 250, .top_p = 0.95f, .guidance_scale = 3};
            test_select(&c, 5, 77, greedy, "greedy");
            test_select(&c, 3, 77, cfg, "greedy cfg3");
            test_select(&c, 7, 77, samp, "sample cfg3");
            test_select(&c, 1, 2048, topk, "sample t0.7 top_k13 cfg3");
            test_select(&c, 5, 2048, topp, "sample t1.3 top_p0.8");
            test_select(&c, 9, 2048, both, "sample top_k250 top_p0.95 cfg3");
            test_select_many(&c, 2048);
            test_select_many(&c, 77);
        }
        if (bf16 && !self)
            test_errors(&c, dev);
        if (c.gpu)
            c.gpu->ops->destroy(c.gpu);
        c.gpu = NULL;
    }
    c.cpu->ops->destroy(c.cpu);
    for (int i = 0; i < c.n_keep; i++)
        free(c.keep[i]);
    free(c.keep);
    return check_summary("mg-kernel-test");
}
