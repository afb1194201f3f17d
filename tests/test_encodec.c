/* EnCodec decoder against the Hugging Face goldens (golden_encodec: codebook
 * sum, every decoder layer, waveform, very short inputs, folded weights; the
 * batch-2 generate and pipeline waveforms), plus the error paths: codes out of
 * range, a missing tensor, a mis-shaped tensor, and the newer weight-norm
 * spelling. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cpu/cpu_impl.h"
#include "cpu/cpu_quant_impl.h"
#include "check.h"
#include "encodec_model.h"
#include "io/config.h"
#include "model/encodec.h"
#include "io/loader.h"
#include "io/safetensors.h"

static const char *MODELS[] = {"tiny-a", "tiny-proj"};

/* |a-b| <= 1e-4 * max(1, max|ref|) */
static int close_enough(const char *what, const float *got, const float *ref, int64_t n,
                        int verbose)
{
    double mx = 0, err = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = ref[i] < 0 ? -ref[i] : ref[i];
        double d = got[i] - ref[i];
        if (d < 0)
            d = -d;
        if (r > mx)
            mx = r;
        if (d > err || d != d)
            err = d != d ? 1e30 : d;
    }
    double tol = 1e-4 * (mx > 1 ? mx : 1);
    if (verbose)
        printf("  %-48s max err %.3g (max|ref| %.3g)\n", what, err, mx);
    CHECK(err <= tol, "%s: max error %g > %g", what, err, tol);
    return err <= tol;
}

/* Golden float tensor as a malloc'd host copy (NULL + failed check if absent). */
static float *golden_f32(const mg_safetensors *g, const char *name, int64_t *n)
{
    const mg_st_tensor *t = mg_st_find(g, name);
    CHECK(t != NULL, "golden tensor %s is missing", name);
    if (!t)
        return NULL;
    *n = mg_st_numel(t);
    float *f = malloc((size_t)*n * sizeof *f + 1);
    if (f)
        mg_st_to_f32(t, f);
    return f;
}

/* Golden codes [.., B, K, T] (int64) as int32 [B, K, T]. */
static int32_t *golden_codes(const mg_safetensors *g, const char *name, int *batch, int *frames)
{
    const mg_st_tensor *t = mg_st_find(g, name);
    CHECK(t != NULL && t->ndim >= 3, "golden codes %s are missing", name);
    if (!t || t->ndim < 3)
        return NULL;
    int64_t n = mg_st_numel(t);
    int64_t *c64 = malloc((size_t)n * sizeof *c64);
    int32_t *c32 = malloc((size_t)n * sizeof *c32);
    mg_error err = {0};
    if (!c64 || !c32 || mg_st_to_i64(t, c64, &err) != MG_OK) {
        free(c64);
        free(c32);
        CHECK(0, "reading %s: %s", name, err.msg);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        c32[i] = (int32_t)c64[i];
    free(c64);
    *batch = (int)t->shape[t->ndim - 3];
    *frames = (int)t->shape[t->ndim - 1];
    return c32;
}

/* ---- trace observer: compares every intermediate tensor on the fly ---- */

typedef struct {
    const mg_safetensors *gold;
    int                   seen, verbose;
} trace_ctx;

static void on_trace(void *ud, const char *name, const float *data, int64_t n)
{
    trace_ctx *tc = ud;
    tc->seen++;
    int64_t rn = 0;
    float *ref = golden_f32(tc->gold, name, &rn);
    if (!ref)
        return;
    CHECK(rn == n, "%s: %lld values, golden has %lld", name, (long long)n, (long long)rn);
    if (rn == n)
        close_enough(name, data, ref, n, tc->verbose);
    free(ref);
}

static mg_code model_open(model *m, const char *dir, const char *weights, int threads,
                          mg_error *err)
{
    return model_open_dt(m, dir, weights, threads, MG_DT_F32, err);
}

/* Decodes golden codes `codes_name` and compares with `wave_name`. */
static void check_decode(model *m, const mg_safetensors *g, const char *codes_name,
                         const char *wave_name, trace_ctx *tc, float **keep, int verbose)
{
    int batch = 0, frames = 0;
    int32_t *codes = golden_codes(g, codes_name, &batch, &frames);
    if (!codes)
        return;
    int64_t n = (int64_t)batch * frames * m->cfg.hop;
    float *audio = malloc((size_t)n * sizeof *audio);
    mg_error err = {0};
    mg_code rc = audio ? mg_encodec_decode(m->ec, codes, batch, frames, audio,
                                           tc ? on_trace : NULL, tc, &err)
                       : MG_ERR_NOMEM;
    CHECK(rc == MG_OK, "decode %s: %s", codes_name, err.msg);
    int64_t rn = 0;
    float *ref = rc == MG_OK ? golden_f32(g, wave_name, &rn) : NULL;
    if (ref) {
        CHECK(rn == n, "%s: %lld samples, golden has %lld", wave_name, (long long)n, (long long)rn);
        if (rn == n)
            close_enough(wave_name, audio, ref, n, verbose);
    }
    free(ref);
    free(codes);
    if (keep && rc == MG_OK) {
        *keep = audio;
        return;
    }
    free(audio);
}

static void check_folded(model *m, const mg_safetensors *g, int verbose)
{
    const char *pre = "folded_weight.";
    int count = 0;
    for (size_t i = 0; i < g->n; i++) {
        const mg_st_tensor *t = &g->tensors[i];
        if (strncmp(t->name, pre, strlen(pre)) != 0)
            continue;
        count++;
        float *w = NULL;
        int64_t n = 0;
        mg_error err = {0};
        mg_code rc = mg_encodec_folded_weight(m->ec, t->name + strlen(pre), &w, &n, &err);
        CHECK(rc == MG_OK, "folded weight %s: %s", t->name, err.msg);
        if (rc != MG_OK)
            continue;
        int64_t rn = 0;
        float *ref = golden_f32(g, t->name, &rn);
        CHECK(rn == n, "%s: %lld values, golden has %lld", t->name, (long long)n, (long long)rn);
        if (ref && rn == n)
            close_enough(t->name, w, ref, n, verbose);
        free(ref);
        free(w);
    }
    int want = 2 + m->cfg.ec_n_ratios * (1 + 2 * m->cfg.ec_res_layers);
    CHECK(count == want, "%d folded weights in the golden file, the config has %d convs", count,
          want);
    mg_error err = {0};
    float *w = NULL;
    int64_t n = 0;
    CHECK(mg_encodec_folded_weight(m->ec, "decoder.layers.2.conv", &w, &n, &err) ==
              MG_ERR_NOT_FOUND && !w,
          "an ELU layer has no conv weight");
}

static void check_bad_codes(model *m)
{
    int K = m->cfg.num_codebooks, T = 8;
    int32_t *codes = calloc((size_t)(K * T), sizeof *codes);
    float *audio = malloc((size_t)(T * m->cfg.hop) * sizeof *audio);
    if (!codes || !audio) {
        CHECK(0, "out of memory");
        free(codes);
        free(audio);
        return;
    }
    int32_t bad[] = {m->cfg.ec_codebook_size, -1};
    for (int i = 0; i < 2; i++) {
        codes[(K - 1) * T + 5] = bad[i];
        mg_error err = {0};
        mg_code rc = mg_encodec_decode(m->ec, codes, 1, T, audio, NULL, NULL, &err);
        char want[64];
        snprintf(want, sizeof want, "codebook %d, frame 5", K - 1);
        CHECK(rc == MG_ERR_INVALID && strstr(err.msg, want),
              "code %d: got %s '%s', want MG_ERR_INVALID naming '%s'", bad[i], mg_code_name(rc),
              err.msg, want);
    }
    codes[(K - 1) * T + 5] = 0;
    mg_error err = {0};
    CHECK(mg_encodec_decode(m->ec, codes, 1, 0, audio, NULL, NULL, &err) == MG_ERR_INVALID,
          "zero frames must be rejected");
    free(codes);
    free(audio);
}

/* ---- broken / renamed copies of the audio_encoder part of a checkpoint ---- */

typedef struct {
    const char *drop;         /* tensor left out */
    const char *reshape;      /* tensor given shape new_shape (data cut or zero-filled) */
    int64_t     new_shape[3];
    int         new_ndim;
    int         rename_wn;    /* weight_g/_v -> parametrizations.weight.original0/1 */
} variant;

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int write_variant(const mg_safetensors *src, const char *path, const variant *v)
{
    json_t *hdr = json_object();
    json_object_set_new(hdr, "__metadata__", json_pack("{s:s}", "format", "pt"));
    size_t total = 0, cap = 0;
    uint8_t *data = NULL;
    int ok = 1;
    for (size_t i = 0; i < src->n && ok; i++) {
        const mg_st_tensor *t = &src->tensors[i];
        if (strncmp(t->name, "audio_encoder.", 14) != 0 || (v->drop && !strcmp(t->name, v->drop)))
            continue;
        int ndim = t->ndim;
        const int64_t *shape = t->shape;
        size_t nbytes = t->nbytes;
        if (v->reshape && !strcmp(t->name, v->reshape)) {
            ndim = v->new_ndim;
            shape = v->new_shape;
            nbytes = mg_dtype_size(t->dtype);
            for (int d = 0; d < ndim; d++)
                nbytes *= (size_t)shape[d];
        }
        char name[512];
        snprintf(name, sizeof name, "%s", t->name);
        if (v->rename_wn && ends_with(name, ".weight_g"))
            strcpy(name + strlen(name) - 9, ".parametrizations.weight.original0");
        else if (v->rename_wn && ends_with(name, ".weight_v"))
            strcpy(name + strlen(name) - 9, ".parametrizations.weight.original1");
        json_t *shp = json_array();
        for (int d = 0; d < ndim; d++)
            json_array_append_new(shp, json_integer(shape[d]));
        json_object_set_new(hdr, name, json_pack("{s:s,s:o,s:[I,I]}", "dtype",
                                                 mg_dtype_name(t->dtype), "shape", shp,
                                                 "data_offsets", (json_int_t)total,
                                                 (json_int_t)(total + nbytes)));
        if (total + nbytes > cap) {
            cap = (total + nbytes) * 2;
            uint8_t *p = realloc(data, cap);
            if (!p) {
                ok = 0;
                break;
            }
            data = p;
        }
        memset(data + total, 0, nbytes);
        memcpy(data + total, t->data, nbytes < t->nbytes ? nbytes : t->nbytes);
        total += nbytes;
    }
    char *text = ok ? json_dumps(hdr, JSON_COMPACT) : NULL;
    json_decref(hdr);
    FILE *f = text ? fopen(path, "wb") : NULL;
    if (f) {
        uint64_t len = strlen(text);
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (uint8_t)(len >> (8 * i));
        ok = fwrite(le, 1, 8, f) == 8 && fwrite(text, 1, len, f) == len &&
             (total == 0 || fwrite(data, 1, total, f) == total);
        ok = fclose(f) == 0 && ok;
    } else {
        ok = 0;
    }
    free(text);
    free(data);
    CHECK(ok, "cannot write %s", path);
    return ok;
}

static void check_variants(const char *dir, const mg_safetensors *gold)
{
    char src_path[1100], tmpdir[] = "/tmp/test_encodec_XXXXXX", path[1100];
    snprintf(src_path, sizeof src_path, "%s/model.safetensors", dir);
    mg_safetensors src;
    mg_error err = {0};
    if (mg_st_open(&src, src_path, &err) != MG_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    if (!mkdtemp(tmpdir)) {
        CHECK(0, "mkdtemp failed");
        mg_st_close(&src);
        return;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);

    /* a missing tensor: the error names it */
    const char *missing = "audio_encoder.decoder.layers.6.conv.weight_v";
    variant v1 = {.drop = missing};
    model m;
    if (write_variant(&src, path, &v1)) {
        mg_code rc = model_open(&m, dir, path, 1, &err);
        CHECK(rc == MG_ERR_NOT_FOUND && strstr(err.msg, missing),
              "missing tensor: got %s '%s'", mg_code_name(rc), err.msg);
        model_close(&m);
    }
    /* a mis-shaped tensor: the error names it */
    const char *bad = "audio_encoder.decoder.layers.1.lstm.weight_hh_l1";
    variant v2 = {.reshape = bad, .new_ndim = 2, .new_shape = {256, 32}};
    if (write_variant(&src, path, &v2)) {
        mg_code rc = model_open(&m, dir, path, 1, &err);
        CHECK(rc == MG_ERR_CORRUPT && strstr(err.msg, bad), "wrong shape: got %s '%s'",
              mg_code_name(rc), err.msg);
        model_close(&m);
    }
    const char *bad_cb = "audio_encoder.quantizer.layers.3.codebook.embed";
    variant v3 = {.reshape = bad_cb, .new_ndim = 2, .new_shape = {63, 16}};
    if (write_variant(&src, path, &v3)) {
        mg_code rc = model_open(&m, dir, path, 1, &err);
        CHECK(rc == MG_ERR_CORRUPT && strstr(err.msg, bad_cb), "wrong codebook shape: got %s '%s'",
              mg_code_name(rc), err.msg);
        model_close(&m);
    }
    /* the parametrizations.weight.original0/1 spelling decodes the same */
    variant v4 = {.rename_wn = 1};
    if (write_variant(&src, path, &v4)) {
        mg_code rc = model_open(&m, dir, path, 2, &err);
        CHECK(rc == MG_OK, "parametrizations spelling: %s", err.msg);
        if (rc == MG_OK)
            check_decode(&m, gold, "audio_codes", "waveform", NULL, NULL, 0);
        model_close(&m);
    }
    unlink(path);
    rmdir(tmpdir);
    mg_st_close(&src);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void time_decode(model *m, int threads)
{
    int K = m->cfg.num_codebooks, T = 250;
    int32_t *codes = malloc((size_t)(K * T) * sizeof *codes);
    float *audio = malloc((size_t)T * m->cfg.hop * sizeof *audio);
    if (!codes || !audio) {
        CHECK(0, "out of memory");
        free(codes);
        free(audio);
        return;
    }
    uint32_t s = 12345;
    for (int i = 0; i < K * T; i++) {
        s = s * 1664525u + 1013904223u;
        codes[i] = (int32_t)((s >> 8) % (uint32_t)m->cfg.ec_codebook_size);
    }
    mg_error err = {0};
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        mg_code rc = mg_encodec_decode(m->ec, codes, 1, T, audio, NULL, NULL, &err);
        double dt = now_s() - t0;
        CHECK(rc == MG_OK, "decode 250 frames: %s", err.msg);
        if (dt < best)
            best = dt;
    }
    printf("  timing: decode 250 frames (%d samples), %d thread(s): %.1f ms\n", T * m->cfg.hop,
           threads, best * 1e3);
    free(codes);
    free(audio);
}

/* A backend without the optional fused ops (conv1d_fused, pad_reflect_elu)
 * runs the ops one by one: the same bits. */
static void check_unfused(model *m)
{
    enum { B = 2, T = 37 };
    int K = m->cfg.num_codebooks;
    int64_t n = (int64_t)B * T * m->cfg.hop;
    int32_t *codes = malloc((size_t)(B * K * T) * sizeof *codes);
    float *fused = malloc((size_t)n * sizeof *fused), *plain = malloc((size_t)n * sizeof *plain);
    const mg_backend_ops *ops = m->be->ops;
    mg_backend_ops unfused = *ops;
    unfused.conv1d_fused = NULL;
    unfused.pad_reflect_elu = NULL;
    mg_error err = {0};
    if (!codes || !fused || !plain) {
        CHECK(0, "out of memory");
        goto out;
    }
    for (int i = 0; i < B * K * T; i++)
        codes[i] = (int32_t)((i * 37 + 11) % m->cfg.ec_codebook_size);
    /* at every kernel level of the CPU backend (its fused ops fall back to
     * the ops one by one below AVX-512) */
    for (int isa = MG_CPU_ISA_SCALAR; isa <= (int)mg_cpu_isa_detect(); isa++) {
        mg_cpu_backend_set_isa(m->be, (mg_cpu_isa)isa);
        CHECK(mg_encodec_decode(m->ec, codes, B, T, fused, NULL, NULL, &err) == MG_OK,
              "decode: %s", err.msg);
        m->be->ops = &unfused;
        CHECK(mg_encodec_decode(m->ec, codes, B, T, plain, NULL, NULL, &err) == MG_OK,
              "decode: %s", err.msg);
        m->be->ops = ops;
        CHECK(!memcmp(fused, plain, (size_t)n * sizeof *plain),
              "decode without the fused ops (%s): the same bits", mg_cpu_isa_name((mg_cpu_isa)isa));
    }
    mg_cpu_backend_set_isa(m->be, mg_cpu_isa_detect());
out:
    free(codes);
    free(fused);
    free(plain);
}

/* mg_encodec_decode in passes of 1 frame up to longer than the signal
 * (each layer's state carried between them) gives bit for bit the decode in
 * one pass, batch 2 (the stream itself: test_encodec_stream.c). */
static void check_chunking(model *m)
{
    enum { B = 2, T = 203 };
    int K = m->cfg.num_codebooks;
    int64_t n = (int64_t)B * T * m->cfg.hop;
    int32_t *codes = malloc((size_t)(B * K * T) * sizeof *codes);
    float *whole = malloc((size_t)n * sizeof *whole), *chunked = malloc((size_t)n * sizeof *chunked);
    if (!codes || !whole || !chunked) {
        CHECK(0, "out of memory");
        goto out;
    }
    uint32_t s = 777;
    for (int i = 0; i < B * K * T; i++) {
        s = s * 1664525u + 1013904223u;
        codes[i] = (int32_t)((s >> 8) % (uint32_t)m->cfg.ec_codebook_size);
    }
    mg_error err = {0};
    mg_encodec_set_chunk(m->ec, 0);
    CHECK(mg_encodec_decode(m->ec, codes, B, T, whole, NULL, NULL, &err) == MG_OK, "decode: %s",
          err.msg);
    static const int chunks[] = {1, 5, 64, 202, 500};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        mg_encodec_set_chunk(m->ec, chunks[i]);
        memset(chunked, 0xff, (size_t)n * sizeof *chunked);
        CHECK(mg_encodec_decode(m->ec, codes, B, T, chunked, NULL, NULL, &err) == MG_OK,
              "decode in chunks of %d: %s", chunks[i], err.msg);
        int64_t first = -1;
        for (int64_t k = 0; k < n && first < 0; k++)
            if (memcmp(&whole[k], &chunked[k], sizeof(float)))
                first = k;
        CHECK(first < 0, "chunks of %d frames: sample %lld differs (%.9g vs %.9g whole)", chunks[i],
              (long long)first, first >= 0 ? chunked[first] : 0.0, first >= 0 ? whole[first] : 0.0);
    }
    mg_encodec_set_chunk(m->ec, MG_ENCODEC_CHUNK_FRAMES);
out:
    free(codes);
    free(whole);
    free(chunked);
}

/* ---- the CPU ops against naive double-precision references ---- */

static float frand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) / 16777216.0 * 2 - 1);
}

static mg_tensor *upload(mg_backend *be, int64_t rows, int64_t cols, const float *h)
{
    mg_tensor *t = NULL;
    mg_error err = {0};
    if (mg_tensor_new2(&t, be, rows, cols, &err) != MG_OK ||
        (h && mg_tensor_upload_f32(t, h, &err) != MG_OK)) {
        CHECK(0, "tensor: %s", err.msg);
        mg_tensor_free(t);
        return NULL;
    }
    return t;
}

/* A [rows, cols] BF16 tensor from h as it is (NULL + failed check on error). */
static mg_tensor *upload_bf16(mg_backend *be, int64_t rows, int64_t cols, const uint16_t *h)
{
    mg_tensor *t = NULL;
    mg_error err = {0};
    int64_t ne[2] = {rows, cols};
    if (!h || mg_tensor_new(&t, be, MG_DT_BF16, 2, ne, &err) != MG_OK ||
        be->ops->upload(be, t, 0, h, (size_t)(rows * cols) * sizeof *h, &err) != MG_OK) {
        CHECK(0, "bf16 tensor: %s", err.msg);
        mg_tensor_free(t);
        return NULL;
    }
    return t;
}

static mg_tensor *upload3(mg_backend *be, int64_t a, int64_t b, int64_t c, const float *h)
{
    mg_tensor *t = NULL;
    mg_error err = {0};
    int64_t ne[3] = {a, b, c};
    if (mg_tensor_new(&t, be, MG_DT_F32, 3, ne, &err) != MG_OK ||
        mg_tensor_upload_f32(t, h, &err) != MG_OK) {
        CHECK(0, "tensor: %s", err.msg);
        mg_tensor_free(t);
        return NULL;
    }
    return t;
}

/* w [d0][d1][k] as the BF16-pair weight of caps.conv_bf16 (the input
 * channel, dim 1 of a conv and dim 0 of a transposed one, pairs up: channel
 * 2c in the low half of word c), after rounding w in place to BF16. */
static mg_tensor *upload_pairs(mg_backend *be, int64_t d0, int64_t d1, int64_t k, float *w,
                               int transposed)
{
    int64_t n = d0 * d1 * k;
    uint32_t *p = calloc((size_t)(n / 2), sizeof *p);
    mg_tensor *t = NULL;
    mg_error err = {0};
    for (int64_t a = 0; p && a < d0; a++)
        for (int64_t b = 0; b < d1; b++)
            for (int64_t j = 0; j < k; j++) {
                int64_t i = (a * d1 + b) * k + j;
                uint16_t h = mg_f32_to_bf16(w[i]);
                w[i] = mg_bf16_to_f32(h);
                int64_t word = transposed ? ((a / 2) * d1 + b) * k + j : (a * (d1 / 2) + b / 2) * k + j;
                p[word] |= (uint32_t)h << (transposed ? a % 2 * 16 : b % 2 * 16);
            }
    if (!p || mg_tensor_new(&t, be, MG_DT_BF16, 3, (int64_t[]){d0, d1, k}, &err) != MG_OK ||
        be->ops->upload(be, t, 0, p, (size_t)(n / 2) * sizeof *p, &err) != MG_OK) {
        CHECK(0, "BF16 pair tensor: %s", p ? err.msg : "out of memory");
        mg_tensor_free(t);
        t = NULL;
    }
    free(p);
    return t;
}

static void round_bf16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = mg_bf16_to_f32(mg_f32_to_bf16(x[i]));
}

/* Downloads t and compares it with ref (n values). */
static void expect(const char *what, const mg_tensor *t, const float *ref, int64_t n)
{
    float *got = malloc((size_t)n * sizeof *got);
    mg_error err = {0};
    if (!got || !t || mg_tensor_download_f32(t, got, &err) != MG_OK) {
        CHECK(0, "%s: download failed %s", what, err.msg);
        free(got);
        return;
    }
    close_enough(what, got, ref, n, 0);
    free(got);
}

static float *rand_buf(int64_t n, uint32_t *s)
{
    float *f = malloc((size_t)n * sizeof *f + 1);
    for (int64_t i = 0; f && i < n; i++)
        f[i] = frand(s);
    return f;
}

/* bf16: BF16-pair weights (ci even); the reference then takes x and w
 * rounded to BF16, the sums exact, so what is left is F32 summation. */
static void check_conv_op_dt(mg_backend *be, int B, int ci, int co, int k, int stride, int dil,
                             int t_in, int bf16)
{
    uint32_t s = (uint32_t)(B * 131 + ci * 17 + co * 7 + k * 3 + stride + dil * 5 + t_in);
    int t_out = (t_in - dil * (k - 1) - 1) / stride + 1;
    float *x = rand_buf((int64_t)B * ci * t_in, &s), *w = rand_buf((int64_t)co * ci * k, &s);
    float *bias = rand_buf(co, &s), *ref = malloc((size_t)B * co * t_out * sizeof *ref);
    mg_tensor *tw = bf16 ? upload_pairs(be, co, ci, k, w, 0) : upload3(be, co, ci, k, w);
    mg_tensor *tx = upload(be, (int64_t)B * ci, t_in, x);
    if (bf16)
        round_bf16(x, (int64_t)B * ci * t_in);
    for (int b = 0; b < B; b++)
        for (int o = 0; o < co; o++)
            for (int t = 0; t < t_out; t++) {
                double a = bias[o];
                for (int c = 0; c < ci; c++)
                    for (int j = 0; j < k; j++)
                        a += (double)w[(o * ci + c) * k + j] *
                             x[(b * ci + c) * t_in + t * stride + j * dil];
                ref[(b * co + o) * t_out + t] = (float)a;
            }
    mg_tensor *tb = upload(be, 1, co, bias), *ty = upload(be, (int64_t)B * co, t_out, NULL);
    if (tx && tw && tb && ty) {
        mg_tensor bv = mg_tensor_reshape2(tb, 1, co);
        bv.ndim = 1;
        bv.ne[0] = co;
        be->ops->conv1d(be, ty, tx, tw, &bv, B, stride, dil);
        char what[128];
        snprintf(what, sizeof what, "conv1d%s B%d %d->%d k%d s%d d%d T%d (%d threads, %s)",
                 bf16 ? " BF16" : "", B, ci, co, k, stride, dil, t_in, be->n_threads,
                 mg_cpu_isa_name(mg_cpu_backend_isa(be)));
        expect(what, ty, ref, (int64_t)B * co * t_out);
    }
    mg_tensor_free(tx);
    mg_tensor_free(tw);
    mg_tensor_free(tb);
    mg_tensor_free(ty);
    free(x);
    free(w);
    free(bias);
    free(ref);
}

static void check_conv_op(mg_backend *be, int B, int ci, int co, int k, int stride, int dil,
                          int t_in)
{
    check_conv_op_dt(be, B, ci, co, k, stride, dil, t_in, 0);
}

static void check_convt_op_dt(mg_backend *be, int B, int ci, int co, int k, int stride,
                              int trim_left, int t_in, int t_y, int bf16)
{
    uint32_t s = (uint32_t)(B * 31 + ci * 7 + co * 3 + k + stride * 11 + t_in);
    int full = (t_in - 1) * stride + k;
    float *x = rand_buf((int64_t)B * ci * t_in, &s), *w = rand_buf((int64_t)ci * co * k, &s);
    float *bias = rand_buf(co, &s), *ref = malloc((size_t)B * co * t_y * sizeof *ref);
    mg_tensor *tw = bf16 ? upload_pairs(be, ci, co, k, w, 1) : upload3(be, ci, co, k, w);
    mg_tensor *tx = upload(be, (int64_t)B * ci, t_in, x);
    if (bf16)
        round_bf16(x, (int64_t)B * ci * t_in);
    double *yf = calloc((size_t)full, sizeof *yf);
    for (int b = 0; b < B; b++)
        for (int o = 0; o < co; o++) {
            for (int f = 0; f < full; f++)
                yf[f] = bias[o];
            for (int c = 0; c < ci; c++)
                for (int t = 0; t < t_in; t++)
                    for (int j = 0; j < k; j++)
                        yf[t * stride + j] += (double)w[(c * co + o) * k + j] * x[(b * ci + c) * t_in + t];
            for (int t = 0; t < t_y; t++)
                ref[(b * co + o) * t_y + t] = (float)yf[t + trim_left];
        }
    mg_tensor *tb = upload(be, 1, co, bias), *ty = upload(be, (int64_t)B * co, t_y, NULL);
    if (tx && tw && tb && ty) {
        mg_tensor bv = mg_tensor_reshape2(tb, 1, co);
        bv.ndim = 1;
        bv.ne[0] = co;
        be->ops->conv_transpose1d(be, ty, tx, tw, &bv, B, stride, trim_left);
        char what[128];
        snprintf(what, sizeof what,
                 "conv_transpose1d%s B%d %d->%d k%d s%d trim %d T%d (%d threads, %s)",
                 bf16 ? " BF16" : "", B, ci, co, k, stride, trim_left, t_in, be->n_threads,
                 mg_cpu_isa_name(mg_cpu_backend_isa(be)));
        expect(what, ty, ref, (int64_t)B * co * t_y);
    }
    mg_tensor_free(tx);
    mg_tensor_free(tw);
    mg_tensor_free(tb);
    mg_tensor_free(ty);
    free(x);
    free(w);
    free(bias);
    free(ref);
    free(yf);
}

static void check_convt_op(mg_backend *be, int B, int ci, int co, int k, int stride, int trim_left,
                           int t_in, int t_y)
{
    check_convt_op_dt(be, B, ci, co, k, stride, trim_left, t_in, t_y, 0);
}

/* HF _pad1d(mode="reflect") spelled out: zero-extend short rows, mirror
 * without repeating the edge, drop the extension again. */
static void check_pad_op(mg_backend *be, int rows, int t, int left, int right)
{
    uint32_t s = (uint32_t)(rows * 7 + t * 13 + left * 3 + right);
    int max_pad = left > right ? left : right, extra = t <= max_pad ? max_pad - t + 1 : 0;
    int te = t + extra, ty = t + left + right;
    float *x = rand_buf((int64_t)rows * t, &s), *ref = malloc((size_t)rows * ty * sizeof *ref);
    float *full = malloc((size_t)(te + left + right) * sizeof *full);
    for (int r = 0; r < rows; r++) {
        for (int i = 0; i < te; i++)
            full[left + i] = i < t ? x[r * t + i] : 0.0f;
        for (int i = 0; i < left; i++)
            full[left - 1 - i] = full[left + 1 + i];
        for (int i = 0; i < right; i++)
            full[left + te + i] = full[left + te - 2 - i];
        memcpy(ref + r * ty, full, (size_t)ty * sizeof *ref);
    }
    mg_tensor *tx = upload(be, rows, t, x), *tyy = upload(be, rows, ty, NULL);
    if (tx && tyy) {
        be->ops->pad_reflect(be, tyy, tx, left, right);
        char what[96];
        snprintf(what, sizeof what, "pad_reflect T%d left %d right %d", t, left, right);
        expect(what, tyy, ref, (int64_t)rows * ty);
    }
    mg_tensor_free(tx);
    mg_tensor_free(tyy);
    free(x);
    free(ref);
    free(full);
}

static void check_transpose_op(mg_backend *be, int B, int C, int R)
{
    uint32_t s = (uint32_t)(B + C * 3 + R * 5);
    float *x = rand_buf((int64_t)B * C * R, &s), *ref = malloc((size_t)B * C * R * sizeof *ref);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int r = 0; r < R; r++)
                ref[(b * R + r) * C + c] = x[(b * C + c) * R + r];
    mg_tensor *tx = upload(be, (int64_t)B * C, R, x), *ty = upload(be, (int64_t)B * R, C, NULL);
    if (tx && ty) {
        be->ops->transpose(be, ty, tx, B);
        expect("transpose", ty, ref, (int64_t)B * C * R);
    }
    mg_tensor_free(tx);
    mg_tensor_free(ty);
    free(x);
    free(ref);
}

/* 1 if tensors a and b hold the same n floats bit for bit. */
static int same_bits(const mg_tensor *a, const mg_tensor *b, int64_t n)
{
    float *ha = malloc((size_t)n * sizeof *ha + 1), *hb = malloc((size_t)n * sizeof *hb + 1);
    mg_error err = {0};
    int same = ha && hb && mg_tensor_download_f32(a, ha, &err) == MG_OK &&
               mg_tensor_download_f32(b, hb, &err) == MG_OK &&
               !memcmp(ha, hb, (size_t)n * sizeof *ha);
    free(ha);
    free(hb);
    return same;
}

/* The fused ops against the ops they replace, bit for bit: conv1d with a
 * residual (separate and in place) and/or an ELU epilogue, and padding
 * with the ELU. Inputs straddle 0 so the ELU's negative branch runs. */
static void check_fused_ops(mg_backend *be, int B, int ci, int co, int k, int dil, int t_out,
                            int bf16)
{
    if (!be->ops->conv1d_fused || !be->ops->pad_reflect_elu)
        return;
    uint32_t s = (uint32_t)(B * 7 + ci * 5 + co * 3 + k + dil * 11 + t_out);
    int t_in = t_out + (k - 1) * dil;
    int64_t ny = (int64_t)B * co * t_out;
    float *x = rand_buf((int64_t)B * ci * t_in, &s), *w = rand_buf((int64_t)co * ci * k, &s);
    float *bias = rand_buf(co, &s), *res = rand_buf(ny, &s);
    mg_tensor *tx = upload(be, (int64_t)B * ci, t_in, x);
    mg_tensor *tw = bf16 ? upload_pairs(be, co, ci, k, w, 0) : upload3(be, co, ci, k, w);
    mg_tensor *tb = upload(be, 1, co, bias), *tr = upload(be, (int64_t)B * co, t_out, res);
    mg_tensor *ref = upload(be, (int64_t)B * co, t_out, NULL);
    mg_tensor *got = upload(be, (int64_t)B * co, t_out, res);
    if (tx && tw && tb && tr && ref && got) {
        mg_tensor bv = mg_tensor_reshape2(tb, 1, co);
        bv.ndim = 1;
        bv.ne[0] = co;
        for (int mode = 1; mode < 8; mode++) {
            int with_res = mode & 1, elu = mode >> 1 & 1, in_place = mode >> 2 & 1;
            if (in_place && !with_res)
                continue;
            mg_error err = {0};
            mg_tensor_upload_f32(got, res, &err);
            be->ops->conv1d(be, ref, tx, tw, &bv, B, 1, dil);
            if (with_res)
                be->ops->add(be, ref, tr);
            if (elu)
                be->ops->elu(be, ref);
            if (in_place)
                be->ops->conv1d_fused(be, got, tx, tw, &bv, B, dil, got, elu);
            else
                be->ops->conv1d_fused(be, got, tx, tw, &bv, B, dil, with_res ? tr : NULL, elu);
            CHECK(same_bits(ref, got, ny),
                  "conv1d_fused%s B%d %d->%d k%d d%d T%d residual %d%s elu %d: as the ops one by one",
                  bf16 ? " BF16" : "", B, ci, co, k, dil, t_out, with_res,
                  in_place ? " (in place)" : "", elu);
        }
        /* padding with the ELU, as pad_reflect then elu */
        int left = (k - 1) * dil - (k - 1) * dil / 2, right = (k - 1) * dil / 2;
        mg_tensor *p1 = upload(be, (int64_t)B * co, t_out + left + right, NULL);
        mg_tensor *p2 = upload(be, (int64_t)B * co, t_out + left + right, NULL);
        if (p1 && p2) {
            be->ops->pad_reflect(be, p1, tr, left, right);
            be->ops->elu(be, p1);
            be->ops->pad_reflect_elu(be, p2, tr, left, right);
            CHECK(same_bits(p1, p2, (int64_t)B * co * (t_out + left + right)),
                  "pad_reflect_elu T%d left %d right %d: as pad_reflect then elu", t_out, left,
                  right);
        }
        mg_tensor_free(p1);
        mg_tensor_free(p2);
    }
    mg_tensor_free(tx);
    mg_tensor_free(tw);
    mg_tensor_free(tb);
    mg_tensor_free(tr);
    mg_tensor_free(ref);
    mg_tensor_free(got);
    free(x);
    free(w);
    free(bias);
    free(res);
}

static double sigm(double v) { return 1 / (1 + exp(-v)); }

/* lstm_state over pieces of 1, 2 and then the rest of the steps, the state
 * carried from one to the next, gives bit for bit one lstm() call over all
 * of them (whole: its output), and its state out is the last h and c. */
static void check_lstm_pieces(mg_backend *be, const mg_tensor *whole, const float *x,
                              const mg_tensor *wi, const mg_tensor *wh, const mg_tensor *bi,
                              const mg_tensor *bh, int B, int T, int I, int H, const char *what)
{
    if (!be->ops->lstm_state || T < 4)
        return;
    float *all = malloc((size_t)B * T * H * sizeof *all), *xp = malloc((size_t)B * T * I * sizeof *xp);
    float *hp = malloc((size_t)B * T * H * sizeof *hp), *st = malloc((size_t)2 * B * H * sizeof *st);
    mg_tensor *state = upload(be, 2 * (int64_t)B, H, NULL);
    mg_error err = {0};
    int same = all && xp && hp && st && state && mg_tensor_download_f32(whole, all, &err) == MG_OK;
    for (int t0 = 0, n = 1; same && t0 < T; t0 += n, n = t0 == 1 ? 2 : T - t0) {
        for (int b = 0; b < B; b++)
            memcpy(xp + (int64_t)b * n * I, x + ((int64_t)b * T + t0) * I, (size_t)n * I * sizeof *xp);
        mg_tensor *tx = upload(be, (int64_t)B * n, I, xp), *th = upload(be, (int64_t)B * n, H, NULL);
        if (tx && th) {
            be->ops->lstm_state(be, th, tx, wi, wh, bi, bh, B, t0 ? state : NULL, state);
            same = mg_tensor_download_f32(th, hp, &err) == MG_OK;
            for (int b = 0; same && b < B; b++)
                same = !memcmp(hp + (int64_t)b * n * H, all + ((int64_t)b * T + t0) * H,
                               (size_t)n * H * sizeof *hp);
        }
        same &= tx && th;
        mg_tensor_free(tx);
        mg_tensor_free(th);
    }
    if (same && mg_tensor_download_f32(state, st, &err) == MG_OK)
        for (int b = 0; same && b < B; b++)
            same = !memcmp(st + (int64_t)b * H, all + ((int64_t)b * T + T - 1) * H, (size_t)H * sizeof *st);
    CHECK(same, "%s: in pieces of 1, 2 and the rest with the state carried, the bits of one call", what);
    mg_tensor_free(state);
    free(all);
    free(xp);
    free(hp);
    free(st);
}

/* mode: 0 = F32 weights, 1 = W_hh in BF16 (caps.lstm_bf16's interleaved rows),
 * 2 = W_ih in BF16 as well (a 1x1 conv's pair layout: row-major; I even), as a bf16 model's
 * EnCodec loads them; 3 = W_hh a Q8 matrix (caps.lstm_q8; be stores matrix
 * weights as Q8) and W_ih BF16, as a
 * q8 model's. The reference takes the rounded weights, and with a BF16 W_ih
 * the inputs rounded too (the BF16 conv rounds them); with a Q8 W_hh on a
 * VNNI CPU h_{t-1} rounded as linear() rounds it, to 8 bits per 32 values
 * (scale max|h|/127, nearest even): what is left is F32 summation. */
static void check_lstm_op(mg_backend *be, int B, int T, int I, int H, int mode)
{
    mg_backend_caps caps;
    mg_backend_get_caps(be, &caps);
    if ((mode && !caps.lstm_bf16) || (mode >= 2 && I % 2) || (mode == 3 && !caps.lstm_q8))
        return;
    uint32_t s = (uint32_t)(B * 3 + T * 5 + I * 7 + H);
    float *x = rand_buf((int64_t)B * T * I, &s), *wih = rand_buf(4 * H * I, &s);
    float *whh = rand_buf(4 * H * H, &s), *bih = rand_buf(4 * H, &s), *bhh = rand_buf(4 * H, &s);
    uint16_t *whh16 = malloc((size_t)4 * H * H * sizeof *whh16);
    uint16_t *wih16 = malloc((size_t)4 * H * I * sizeof *wih16);
    float *xr = malloc((size_t)B * T * I * sizeof *xr);   /* x as the projection sees it */
    mg_tensor *twq = NULL;
    if (mode == 3 && whh) {
        /* the Q8 matrix as the loader makes it; the reference reads it back */
        mg_error e = {0};
        twq = calloc(1, sizeof *twq);
        if (twq) {
            *twq = (mg_tensor){.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {4 * H, H},
                               .nbytes = (size_t)4 * H * H * sizeof(float)};
            if (be->ops->weight(be, twq, whh, MG_WEIGHT_MATRIX, &e) != MG_OK || twq->dtype != MG_DT_Q8) {
                CHECK(0, "q8 w_hh: %s", e.msg);
                free(twq);
                twq = NULL;
            }
        }
        for (int r = 0; twq && r < 4 * H; r++)
            mg_cpu_matrix_row(twq, r, whh + (int64_t)r * H, 0);
    }
    for (int i = 0; mode && mode < 3 && whh16 && whh && i < 4 * H * H; i++) {
        uint16_t v = mg_f32_to_bf16(whh[i]);
        whh16[i - i % H + mg_bf16_pair_index(i % H, H)] = v;
        whh[i] = mg_bf16_to_f32(v);
    }
    for (int i = 0; mode >= 2 && wih16 && wih && i < 4 * H * I; i++) {
        wih16[i] = mg_f32_to_bf16(wih[i]);
        wih[i] = mg_bf16_to_f32(wih16[i]);
    }
    for (int64_t i = 0; xr && x && i < (int64_t)B * T * I; i++)
        xr[i] = mode >= 2 ? mg_bf16_to_f32(mg_f32_to_bf16(x[i])) : x[i];
    float *ref = malloc((size_t)B * T * H * sizeof *ref);
    double *h = calloc((size_t)H, sizeof *h), *c = calloc((size_t)H, sizeof *c);
    double *g = calloc((size_t)4 * H, sizeof *g), *hq = calloc((size_t)H, sizeof *hq);
    int q8x = mode == 3 && mg_cpu_isa_detect() >= MG_CPU_ISA_AVX512_VNNI;
    for (int b = 0; b < B; b++) {
        memset(h, 0, (size_t)H * sizeof *h);
        memset(c, 0, (size_t)H * sizeof *c);
        for (int t = 0; t < T; t++) {
            const float *xt = xr + ((int64_t)b * T + t) * I;
            for (int j0 = 0; j0 < H; j0 += 32) {
                float amax = 0;
                for (int j = j0; j < H && j < j0 + 32; j++)
                    amax = fmaxf(amax, fabsf((float)h[j]));
                float inv = amax > 0 ? 127.0f / amax : 0.0f, sc = amax / 127.0f;
                for (int j = j0; j < H && j < j0 + 32; j++)
                    hq[j] = q8x ? (double)nearbyintf((float)h[j] * inv) * sc : h[j];
            }
            for (int n = 0; n < 4 * H; n++) {
                double a = (double)bih[n] + bhh[n];
                for (int i = 0; i < I; i++)
                    a += (double)wih[n * I + i] * xt[i];
                for (int j = 0; j < H; j++)
                    a += (double)whh[n * H + j] * hq[j];
                g[n] = a;
            }
            for (int j = 0; j < H; j++) {
                c[j] = sigm(g[H + j]) * c[j] + sigm(g[j]) * tanh(g[2 * H + j]);
                h[j] = sigm(g[3 * H + j]) * tanh(c[j]);
                ref[((int64_t)b * T + t) * H + j] = (float)h[j];
            }
        }
    }
    mg_tensor *tx = upload(be, (int64_t)B * T, I, x), *tbi = upload(be, 1, 4 * H, bih);
    mg_tensor *twi = mode >= 2 ? upload_bf16(be, 4 * H, I, wih16) : upload(be, 4 * H, I, wih);
    mg_tensor *twh = mode == 3 ? twq : mode ? upload_bf16(be, 4 * H, H, whh16) : upload(be, 4 * H, H, whh);
    mg_tensor *tbh = upload(be, 1, 4 * H, bhh), *th = upload(be, (int64_t)B * T, H, NULL);
    if (tx && twi && twh && tbi && tbh && th) {
        be->ops->lstm(be, th, tx, twi, twh, tbi, tbh, B);
        char what[96];
        snprintf(what, sizeof what, "lstm B%d T%d I%d H%d%s (%d threads)", B, T, I, H,
                 mode == 3 ? " q8 w_hh, bf16 w_ih" : mode == 2 ? " bf16 w_hh, w_ih"
                 : mode ? " bf16 w_hh" : "", be->n_threads);
        expect(what, th, ref, (int64_t)B * T * H);
        check_lstm_pieces(be, th, x, twi, twh, tbi, tbh, B, T, I, H, what);
    }
    mg_tensor_free(tx);
    mg_tensor_free(twi);
    mg_tensor_free(twh);
    mg_tensor_free(tbi);
    mg_tensor_free(tbh);
    mg_tensor_free(th);
    free(x);
    free(wih);
    free(whh);
    free(whh16);
    free(wih16);
    free(xr);
    free(bih);
    free(bhh);
    free(ref);
    free(h);
    free(c);
    free(g);
    free(hq);
}

static void check_ops(void)
{
    for (int threads = 1; threads <= 3; threads += 2) {
        mg_backend *be = NULL;
        mg_error err = {0};
        /* matrix weights stored as Q8: the LSTM's Q8 w_hh (the other ops
         * take their weights uploaded, in the format each check names) */
        if (mg_backend_cpu_create(&be, threads, MG_DT_Q8, NULL, &err) != MG_OK) {
            CHECK(0, "backend: %s", err.msg);
            continue;
        }
        /* ragged channel blocks and tails, dilation, stride, batch */
        check_conv_op(be, 1, 3, 5, 3, 1, 1, 300);
        check_conv_op(be, 2, 37, 6, 3, 1, 4, 203);
        check_conv_op(be, 2, 8, 1, 7, 1, 1, 16);
        check_conv_op(be, 1, 5, 9, 4, 2, 1, 77);
        check_conv_op(be, 3, 70, 8, 1, 1, 1, 129);
        check_conv_op(be, 1, 3, 4, 7, 1, 9, 100); /* span wider than the edge window */
        /* EnCodec's shapes (k = 2·stride, trim = stride) and odd ones */
        check_convt_op(be, 1, 8, 4, 8, 4, 2, 50, 200);
        check_convt_op(be, 2, 40, 6, 10, 5, 3, 33, 165);
        check_convt_op(be, 1, 3, 5, 7, 3, 0, 20, 64);
        check_convt_op(be, 1, 4, 2, 2, 3, 1, 9, 24);   /* k < stride: some phases are bias only */
        check_convt_op(be, 2, 33, 3, 16, 8, 4, 1, 8);  /* a single input frame */
        check_convt_op(be, 1, 3, 2, 100, 2, 49, 40, 80); /* more taps than the edge window */
        /* every all-phases block shape, ragged channel blocks, odd batch */
        check_convt_op(be, 3, 9, 5, 4, 2, 1, 37, 74);
        check_convt_op(be, 1, 6, 7, 12, 6, 3, 21, 126);
        check_convt_op(be, 3, 5, 3, 9, 4, 0, 70, 283);  /* 3 taps per phase, untrimmed tail */
        check_convt_op(be, 2, 17, 9, 10, 5, 5, 2, 10);
        for (int t = 1; t <= 8; t++)
            check_pad_op(be, 3, t, 3, 3);
        check_pad_op(be, 2, 2, 1, 0);
        check_pad_op(be, 2, 1, 0, 2);
        check_pad_op(be, 2, 10, 2, 1);
        check_pad_op(be, 2, 10, 0, 0);
        check_transpose_op(be, 2, 37, 45);
        check_transpose_op(be, 1, 1, 70);
        /* every kernel level: the AVX-512 epilogue and the ops-one-by-one
         * fallback (in place too) */
        for (int isa = MG_CPU_ISA_SCALAR; isa <= (int)mg_cpu_isa_detect(); isa++) {
            mg_cpu_backend_set_isa(be, (mg_cpu_isa)isa);
            check_fused_ops(be, 1, 16, 8, 3, 1, 100, 0);
            check_fused_ops(be, 3, 5, 11, 3, 3, 37, 0);  /* ragged channel blocks and tail, odd batch */
            check_fused_ops(be, 2, 7, 13, 1, 1, 200, 0);
            check_fused_ops(be, 1, 3, 1, 7, 1, 5, 0);    /* one output channel, shorter than a vector */
            /* BF16-pair weights: the vdpbf16ps kernels where the CPU has
             * them (caps.conv_bf16), else the F32 path on rounded values */
            check_fused_ops(be, 1, 16, 8, 3, 1, 100, 1);
            check_fused_ops(be, 3, 6, 11, 3, 3, 37, 1);
            check_fused_ops(be, 2, 2, 13, 1, 1, 200, 1);
            check_conv_op_dt(be, 1, 4, 5, 3, 1, 1, 300, 1);
            check_conv_op_dt(be, 2, 38, 6, 3, 1, 4, 203, 1);
            check_conv_op_dt(be, 3, 70, 9, 1, 1, 1, 129, 1);
            check_conv_op_dt(be, 2, 8, 1, 7, 1, 1, 16, 1);
            check_convt_op_dt(be, 1, 8, 4, 8, 4, 2, 50, 200, 1);
            check_convt_op_dt(be, 2, 40, 6, 10, 5, 3, 33, 165, 1);
            check_convt_op_dt(be, 3, 10, 5, 4, 2, 1, 37, 74, 1);
            check_convt_op_dt(be, 1, 6, 7, 12, 6, 3, 21, 126, 1);
            check_convt_op_dt(be, 2, 18, 9, 16, 8, 4, 2, 10, 1);
            check_convt_op_dt(be, 1, 4, 2, 7, 3, 0, 20, 64, 1);  /* 3 taps: the padded-copy path */
            check_convt_op_dt(be, 1, 4, 2, 100, 2, 49, 40, 80, 1);
        }
        mg_backend_caps caps;
        mg_backend_get_caps(be, &caps);
        printf("  BF16 convolution kernels on this CPU: %s\n",
               caps.conv_bf16 ? "yes" : "no (F32 path checked only)");
        mg_cpu_backend_set_isa(be, mg_cpu_isa_detect());
        for (int mode = 0; mode <= 3; mode++) {
            check_lstm_op(be, 1, 9, 20, 16, mode);
            check_lstm_op(be, 2, 5, 12, 33, mode);
            /* every batch blocking of the recurrent step: 1..4 items at once,
             * 5 in two blocks; odd unit counts and widths off the 16-lane grid */
            check_lstm_op(be, 3, 4, 7, 21, mode);
            check_lstm_op(be, 4, 3, 16, 48, mode);
            check_lstm_op(be, 5, 3, 9, 17, mode);
            check_lstm_op(be, 1, 6, 5, 35, mode);
            check_lstm_op(be, 2, 3, 8, 80, mode); /* BF16: 2 interleaved chunks + 16 */
        }
        be->ops->destroy(be);
    }
}

/* The reduced-precision EnCodec of a bf16 model (BF16 recurrent weights and,
 * with AVX512-BF16, BF16 convolutions and LSTM input weights) and of a q8
 * model (the same, with W_hh a Q8 matrix; src/model/encodec.c): the SNR of its
 * audio against the F32 model's, printed, and at least 40 dB. */
static void check_reduced_fidelity(const char *dir, mg_dtype dt)
{
    enum { B = 2, T = 150 };
    model mf, mb;
    mg_error err = {0};
    float *ref = NULL, *got = NULL;
    int32_t *codes = NULL;
    if (model_open_dt(&mf, dir, "model.safetensors", 2, MG_DT_F32, &err) != MG_OK ||
        model_open_dt(&mb, dir, "model.safetensors", 2, dt, &err) != MG_OK) {
        CHECK(0, "open %s: %s", dir, err.msg);
        goto out;
    }
    int K = mf.cfg.num_codebooks;
    int64_t n = (int64_t)B * T * mf.cfg.hop;
    codes = malloc((size_t)(B * K * T) * sizeof *codes);
    ref = malloc((size_t)n * sizeof *ref);
    got = malloc((size_t)n * sizeof *got);
    if (!codes || !ref || !got) {
        CHECK(0, "out of memory");
        goto out;
    }
    uint32_t s = 99;
    for (int i = 0; i < B * K * T; i++) {
        s = s * 1664525u + 1013904223u;
        codes[i] = (int32_t)((s >> 8) % (uint32_t)mf.cfg.ec_codebook_size);
    }
    if (mg_encodec_decode(mf.ec, codes, B, T, ref, NULL, NULL, &err) != MG_OK ||
        mg_encodec_decode(mb.ec, codes, B, T, got, NULL, NULL, &err) != MG_OK) {
        CHECK(0, "decode: %s", err.msg);
        goto out;
    }
    double sig = 0, noise = 0;
    for (int64_t i = 0; i < n; i++) {
        sig += (double)ref[i] * ref[i];
        noise += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
    }
    double snr = noise > 0 ? 10 * log10(sig / noise) : 999;
    mg_backend_caps caps;
    mg_backend_get_caps(mb.be, &caps);
    int convs = caps.conv_bf16;
    printf("  %s model's EnCodec (%s recurrent weights%s): SNR %.1f dB against F32\n",
           mg_dtype_name(dt), dt == MG_DT_Q8 ? "Q8" : "BF16",
           convs ? ", BF16 convolutions" : "", snr);
    CHECK(snr >= 40, "%s EnCodec: SNR %.1f dB against F32 (want >= 40)", mg_dtype_name(dt), snr);
out:
    free(codes);
    free(ref);
    free(got);
    model_close(&mf);
    model_close(&mb);
}

static void check_model(const char *golden_dir, const char *name)
{
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/%s", golden_dir, name);
    snprintf(path, sizeof path, "%s/golden_encodec.safetensors", dir);
    if (access(path, R_OK) != 0) {
        SKIP("%s: no golden data at %s", name, path);
        return;
    }
    printf("%s\n", name);
    mg_safetensors gold, gen, pipe;
    mg_error err = {0};
    if (mg_st_open(&gold, path, &err) != MG_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    snprintf(path, sizeof path, "%s/golden_generate.safetensors", dir);
    int have_gen = mg_st_open(&gen, path, &err) == MG_OK;
    snprintf(path, sizeof path, "%s/golden_pipeline.safetensors", dir);
    int have_pipe = mg_st_open(&pipe, path, &err) == MG_OK;

    float *wave1 = NULL;
    for (int threads = 1; threads <= 2; threads++) {
        model m;
        mg_code rc = model_open(&m, dir, "model.safetensors", threads, &err);
        CHECK(rc == MG_OK, "%s: load: %s", name, err.msg);
        if (rc != MG_OK) {
            model_close(&m);
            continue;
        }
        int verbose = threads == 1;
        trace_ctx tc = {.gold = &gold, .verbose = verbose};
        float *wave = NULL;
        check_decode(&m, &gold, "audio_codes", "waveform", &tc, &wave, verbose);
        CHECK(tc.seen == 17, "trace saw %d tensors, want 17", tc.seen);
        if (wave) {
            int64_t rn = 0;
            float *ref = golden_f32(&gold, "decode_audio_values", &rn);
            if (ref && rn == 15 * m.cfg.hop)
                close_enough("decode_audio_values", wave, ref, rn, verbose);
            free(ref);
            /* results must not depend on the thread count */
            if (!wave1)
                wave1 = wave;
            else {
                CHECK(!memcmp(wave1, wave, (size_t)rn * sizeof *wave),
                      "1- and 2-thread waveforms differ");
                free(wave);
            }
        }
        for (int t = 1; t <= 4; t++) {
            char cn[64], wn[64];
            snprintf(cn, sizeof cn, "short_T%d.audio_codes", t);
            snprintf(wn, sizeof wn, "short_T%d.waveform", t);
            check_decode(&m, &gold, cn, wn, NULL, NULL, verbose);
        }
        check_folded(&m, &gold, verbose);
        /* batch 2 and a longer sequence, from generate() and the pipeline */
        if (have_gen) {
            check_decode(&m, &gen, "cfg3.audio_codes", "cfg3.audio_values", NULL, NULL, verbose);
            check_decode(&m, &gen, "cfg1.audio_codes", "cfg1.audio_values", NULL, NULL, verbose);
        }
        if (have_pipe)
            check_decode(&m, &pipe, "greedy_cfg3_50.audio_codes", "greedy_cfg3_50.audio_values",
                         NULL, NULL, verbose);
        check_bad_codes(&m);
        check_chunking(&m);
        check_unfused(&m);
        if (threads == 1) {
            check_reduced_fidelity(dir, MG_DT_BF16);
            check_reduced_fidelity(dir, MG_DT_Q8);
        }
        time_decode(&m, threads);
        model_close(&m);
    }
    free(wave1);
    check_variants(dir, &gold);
    if (have_gen)
        mg_st_close(&gen);
    if (have_pipe)
        mg_st_close(&pipe);
    mg_st_close(&gold);
}

int main(void)
{
    check_ops();
    const char *g = check_golden_dir();
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++)
        check_model(g, MODELS[i]);
    return check_summary("test_encodec");
}
