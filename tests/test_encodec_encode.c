/* EnCodec encoder against the Hugging Face goldens of
 * golden-next/tiny-proj-cont (golden_encodec_encode: every encoder layer,
 * the embeddings, the codes exactly, their decode; golden_continuation: the
 * prompt audio's codes), chunked encodes against one pass, codes in range
 * with compressed weights, and the errors: no encoder weights, no samples,
 * NaN and infinite samples, a bad batch. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io/safetensors.h"
#include "model/encodec_encode.h"
#include "runtime/model_parts.h"
#include "test_util.h"

/* |a-b| <= 1e-4 * max(1, max|ref|), the golden float tolerance */
static void check_close(const char *what, const float *got, const float *ref, int64_t n)
{
    double mx = 1, err = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (fabs(ref[i]) > mx)
            mx = fabs(ref[i]);
        if (!(d <= err))
            err = isnan(d) ? INFINITY : d;
    }
    CHECK(err <= 1e-4 * mx, "%s: max error %g > %g", what, err, 1e-4 * mx);
}

/* A golden tensor (a failed check when absent); *n its element count. */
static const mg_st_tensor *golden(const mg_safetensors *g, const char *name, int64_t *n)
{
    const mg_st_tensor *t = mg_st_find(g, name);
    CHECK(t != NULL, "golden tensor %s is missing", name);
    *n = t ? mg_st_numel(t) : 0;
    return t;
}

static float *golden_f32(const mg_safetensors *g, const char *name, int64_t *n)
{
    const mg_st_tensor *t = golden(g, name, n);
    float *f = t ? malloc((size_t)*n * sizeof *f + 1) : NULL;
    if (f)
        mg_st_to_f32(t, f);
    return f;
}

static int32_t *golden_i32(const mg_safetensors *g, const char *name, int64_t *n)
{
    const mg_st_tensor *t = golden(g, name, n);
    if (!t)
        return NULL;
    int64_t *w = malloc((size_t)*n * sizeof *w + 1);
    int32_t *c = malloc((size_t)*n * sizeof *c + 1);
    if (w && c && mg_st_to_i64(t, w, NULL) == MG_OK) {
        for (int64_t i = 0; i < *n; i++)
            c[i] = (int32_t)w[i];
    } else {
        free(c);
        c = NULL;
    }
    free(w);
    return c;
}

/* The model in dir with matrix weights in dtype ("f32", "bf16", "q8"), and its EnCodec. */
typedef struct {
    mg_model   *m;
    mg_encodec *ec;
    int         codebook_size;
} model;

static mg_code model_open(model *m, const char *dir, const char *dtype, mg_error *err)
{
    mg_model_options opt = {.n_threads = 2, .dtype = dtype};
    memset(m, 0, sizeof *m);
    mg_code rc = mg_model_load(&m->m, dir, &opt, err);
    if (rc == MG_OK) {
        m->ec = mg_model_encodec(m->m);
        m->codebook_size = mg_model_config(m->m)->ec_codebook_size;
    }
    return rc;
}

static void model_close(model *m)
{
    mg_model_free(m->m);
    memset(m, 0, sizeof *m);
}

typedef struct {
    const mg_safetensors *gold;
    const char           *prefix;
    int                   seen;
} trace_ctx;

static void on_trace(void *ud, const char *name, const float *data, int64_t n)
{
    trace_ctx *tc = ud;
    char full[160];
    int64_t rn = 0;
    snprintf(full, sizeof full, "%s.%s", tc->prefix, name);
    float *ref = golden_f32(tc->gold, full, &rn);
    tc->seen++;
    if (!ref)
        return;
    CHECK(rn == n, "%s: %lld values, golden has %lld", full, (long long)n, (long long)rn);
    if (rn == n)
        check_close(full, data, ref, n);
    free(ref);
}

/* Encodes <tag>.input_values with the trace (every layer, the embeddings),
 * then without it in chunks of 1, 2 and 5 frames: the codes equal the
 * golden's every time; their decode matches <tag>.reconstruction. */
static void check_tag(model *m, const mg_safetensors *g, const char *tag)
{
    char name[128];
    int64_t n = 0, nc = 0, nr = 0;
    snprintf(name, sizeof name, "%s.input_values", tag);
    float *audio = golden_f32(g, name, &n);
    snprintf(name, sizeof name, "%s.audio_codes", tag);
    int32_t *want = golden_i32(g, name, &nc);
    snprintf(name, sizeof name, "%s.reconstruction", tag);
    float *recon = golden_f32(g, name, &nr);
    int64_t T = mg_encodec_encode_frames(m->ec, n);
    int32_t *codes = calloc((size_t)(4 * T + 1), sizeof *codes);
    float *dec = calloc((size_t)(T * 640 + 1), sizeof *dec);
    if (!audio || !want || !recon || !codes || !dec)
        goto done;
    CHECK(nc == 4 * T && nr == T * 640, "%s: %lld frames for %lld samples", tag, (long long)T,
          (long long)n);
    trace_ctx tc = {g, tag, 0};
    mg_error err = {0};
    int frames = 0;
    mg_code rc = mg_encodec_encode(m->ec, audio, 1, n, codes, &frames, on_trace, &tc, &err);
    CHECK(rc == MG_OK, "%s: encode: %s", tag, err.msg);
    CHECK(tc.seen == 17, "%s: the trace saw %d tensors, 17 expected", tag, tc.seen);
    CHECK(frames == T && nc == 4 * T && !memcmp(codes, want, (size_t)nc * sizeof *codes),
          "%s: codes differ from the golden's", tag);
    rc = mg_encodec_decode(m->ec, codes, 1, frames, dec, NULL, NULL, &err);
    CHECK(rc == MG_OK, "%s: decode: %s", tag, err.msg);
    if (rc == MG_OK && nr == T * 640)
        check_close(name, dec, recon, nr);
    static const int chunks[] = {1, 2, 5};
    for (int i = 0; i < 3; i++) {
        mg_encodec_set_encode_chunk(m->ec, chunks[i]);
        memset(codes, 0xff, (size_t)nc * sizeof *codes);
        rc = mg_encodec_encode(m->ec, audio, 1, n, codes, &frames, NULL, NULL, &err);
        CHECK(rc == MG_OK && !memcmp(codes, want, (size_t)nc * sizeof *codes),
              "%s in chunks of %d frames: %s", tag, chunks[i],
              rc == MG_OK ? "codes differ from the golden's" : err.msg);
    }
    mg_encodec_set_encode_chunk(m->ec, MG_ENCODEC_ENCODE_CHUNK_FRAMES);
done:
    free(audio);
    free(want);
    free(recon);
    free(codes);
    free(dec);
}

/* golden_continuation's prompt_audio [2, 1, 5320] -> prompt_audio_codes
 * [B*K, 9], the batch in one call. */
static void check_prompt_audio(model *m, const char *dir)
{
    char path[4200];
    mg_safetensors g;
    mg_error err = {0};
    snprintf(path, sizeof path, "%.4000s/golden_continuation.safetensors", dir);
    if (mg_st_open(&g, path, &err) != MG_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int64_t n = 0, nc = 0;
    float *audio = golden_f32(&g, "prompt_audio", &n);
    int32_t *want = golden_i32(&g, "prompt_audio_codes", &nc);
    int32_t *codes = calloc((size_t)nc + 1, sizeof *codes);
    int frames = 0;
    if (audio && want && codes) {
        mg_code rc = mg_encodec_encode(m->ec, audio, 2, n / 2, codes, &frames, NULL, NULL, &err);
        CHECK(rc == MG_OK && frames * 8 == nc && !memcmp(codes, want, (size_t)nc * sizeof *codes),
              "prompt_audio_codes: %s", rc == MG_OK ? "differ from the golden's" : err.msg);
    }
    free(audio);
    free(want);
    free(codes);
    mg_st_close(&g);
}

/* Keeps a copy of the embeddings a trace shows, and counts the tensors. */
typedef struct {
    float  *emb;
    int64_t n;
    int     seen;
} capture;

static void on_capture(void *ud, const char *name, const float *data, int64_t n)
{
    capture *c = ud;
    c->seen++;
    if (strcmp(name, "embeddings") != 0)
        return;
    free(c->emb);
    c->emb = malloc((size_t)n * sizeof *c->emb);
    c->n = c->emb ? n : 0;
    if (c->emb)
        memcpy(c->emb, data, (size_t)n * sizeof *c->emb);
}

static float frand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

/* A longer noisy signal: chunked == one pass (codes), and codes in range
 * with f32, bf16 and q8 weights; lengths down to one sample. */
static void check_lengths_and_formats(const char *dir)
{
    const int64_t n = 40 * 640 + 123;
    float *audio = malloc((size_t)(2 * n) * sizeof *audio);
    int32_t *one = malloc((size_t)(2 * 4 * 41) * sizeof *one);
    int32_t *chunked = malloc((size_t)(2 * 4 * 41) * sizeof *chunked);
    uint32_t seed = 7;
    if (!audio || !one || !chunked)
        goto done;
    for (int64_t i = 0; i < 2 * n; i++)
        audio[i] = 0.5f * frand(&seed) + 0.3f * sinf((float)i * 0.01f);
    static const char *dts[] = {"f32", "bf16", "q8"};
    for (int d = 0; d < 3; d++) {
        model m;
        mg_error err = {0};
        if (model_open(&m, dir, dts[d], &err) != MG_OK) {
            CHECK(0, "load (%s): %s", dts[d], err.msg);
            model_close(&m);
            continue;
        }
        int frames = 0, frames2 = 0;
        capture whole = {0}, parts = {0};
        mg_encodec_set_encode_chunk(m.ec, 0);
        mg_code rc = mg_encodec_encode(m.ec, audio, 2, n, one, &frames, on_capture, &whole, &err);
        CHECK(rc == MG_OK && frames == 41, "%s: %s, %d frames", dts[d], err.msg,
              frames);
        int in_range = 1;
        for (int i = 0; i < 2 * 4 * 41; i++)
            in_range &= one[i] >= 0 && one[i] < m.codebook_size;
        CHECK(in_range, "%s: codes outside [0, %d)", dts[d], m.codebook_size);
        mg_encodec_set_encode_chunk(m.ec, 3);
        rc = mg_encodec_encode(m.ec, audio, 2, n, chunked, &frames2, on_capture, &parts, &err);
        CHECK(rc == MG_OK && frames2 == 41 &&
                  !memcmp(one, chunked, (size_t)(2 * 4 * 41) * sizeof *one),
              "%s: codes in chunks of 3 frames differ from one pass", dts[d]);
        /* the stack's layers only in one pass; the embeddings bit for bit */
        CHECK(whole.seen == 17 && parts.seen == 4, "%s: traced %d and %d tensors",
              dts[d], whole.seen, parts.seen);
        CHECK(whole.n == 2 * 41 * mg_model_config(m.m)->ec_hidden && parts.n == whole.n &&
                  !memcmp(whole.emb, parts.emb, (size_t)whole.n * sizeof *whole.emb),
              "%s: embeddings in chunks of 3 frames differ from one pass", dts[d]);
        free(whole.emb);
        free(parts.emb);
        /* item 1 alone gives item 1's codes of the batch */
        rc = mg_encodec_encode(m.ec, audio + n, 1, n, chunked, &frames2, NULL, NULL, &err);
        CHECK(rc == MG_OK && !memcmp(one + 4 * 41, chunked, (size_t)(4 * 41) * sizeof *one),
              "%s: item 1 alone differs from item 1 of the batch", dts[d]);
        static const int64_t shorts[] = {1, 2, 7, 639, 640, 641};
        for (int i = 0; i < 6; i++) {
            rc = mg_encodec_encode(m.ec, audio, 1, shorts[i], chunked, &frames2, NULL, NULL, &err);
            CHECK(rc == MG_OK && frames2 == (shorts[i] + 639) / 640 &&
                      frames2 == mg_encodec_encode_frames(m.ec, shorts[i]),
                  "%lld samples: %s, %d frames", (long long)shorts[i], err.msg, frames2);
        }
        model_close(&m);
    }
done:
    free(audio);
    free(one);
    free(chunked);
}

static void check_bad_input(model *m)
{
    float audio[1000] = {0};
    int32_t codes[4 * 2 * 2];
    int frames = 0;
    mg_error err = {0};
    mg_code rc = mg_encodec_encode(m->ec, audio, 1, 0, codes, &frames, NULL, NULL, &err);
    CHECK(rc == MG_ERR_INVALID && !strcmp(err.field, "n_samples"), "0 samples: %s '%s'",
          mg_code_name(rc), err.msg);
    rc = mg_encodec_encode(m->ec, audio, 0, 100, codes, &frames, NULL, NULL, &err);
    CHECK(rc == MG_ERR_INVALID && !strcmp(err.field, "batch"), "batch 0: %s '%s'",
          mg_code_name(rc), err.msg);
    audio[777] = NAN;
    rc = mg_encodec_encode(m->ec, audio, 1, 1000, codes, &frames, NULL, NULL, &err);
    CHECK(rc == MG_ERR_INVALID && strstr(err.msg, "sample 777") && strstr(err.msg, "NaN"),
          "NaN sample: %s '%s'", mg_code_name(rc), err.msg);
    audio[777] = 0;
    audio[999] = -INFINITY;
    rc = mg_encodec_encode(m->ec, audio, 2, 500, codes, &frames, NULL, NULL, &err);
    CHECK(rc == MG_ERR_INVALID && strstr(err.msg, "sample 499 of item 1") &&
              strstr(err.msg, "infinite"),
          "infinite sample: %s '%s'", mg_code_name(rc), err.msg);
    audio[999] = 0;
    /* the model still encodes after the refusals */
    rc = mg_encodec_encode(m->ec, audio, 2, 500, codes, &frames, NULL, NULL, &err);
    CHECK(rc == MG_OK && frames == 1, "after the errors: %s", err.msg);
}

static int drop_encoder(tu_tensor *t, void *ud)
{
    (void)ud;
    return strncmp(t->name, "audio_encoder.encoder.", 22) != 0;
}

/* A checkpoint without the encoder loads; encoding then says why it cannot. */
static void check_no_encoder(const char *dir)
{
    char src[4200], tmp[64], dst[4200];
    if (tu_model_dir(tmp, sizeof tmp, dir) != 0) {
        CHECK(0, "making a model folder");
        return;
    }
    snprintf(src, sizeof src, "%.4000s/model.safetensors", dir);
    snprintf(dst, sizeof dst, "%s/model.safetensors", tmp);
    CHECK(tu_rewrite(src, dst, drop_encoder, NULL) == 0, "rewriting the model");
    model m;
    mg_error err = {0};
    mg_code rc = model_open(&m, tmp, "f32", &err);
    CHECK(rc == MG_OK, "a model without encoder weights fails to load: %s", err.msg);
    if (rc == MG_OK) {
        float audio[640] = {0};
        int32_t codes[4];
        int frames = 0;
        rc = mg_encodec_encode(m.ec, audio, 1, 640, codes, &frames, NULL, NULL, &err);
        CHECK(rc == MG_ERR_UNSUPPORTED && strstr(err.msg, "no EnCodec encoder weights"),
              "encode without encoder weights: %s '%s'", mg_code_name(rc), err.msg);
        CHECK(mg_encodec_encode_frames(m.ec, 641) == 2, "frames without encoder weights");
    }
    model_close(&m);
    tu_rm_dir(tmp);
}

int main(void)
{
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/../golden-next/tiny-proj-cont", check_golden_dir());
    snprintf(path, sizeof path, "%s/golden_encodec_encode.safetensors", dir);
    mg_safetensors g;
    mg_error err = {0};
    if (access(path, R_OK) != 0) {
        SKIP("no %s: the encoder goldens are not here", path);
        return check_summary("test_encodec_encode");
    }
    model m;
    if (mg_st_open(&g, path, &err) != MG_OK || model_open(&m, dir, "f32", &err) != MG_OK) {
        CHECK(0, "%s", err.msg);
        return check_summary("test_encodec_encode");
    }
    check_tag(&m, &g, "hop12");
    check_tag(&m, &g, "odd7001");
    check_prompt_audio(&m, dir);
    check_bad_input(&m);
    model_close(&m);
    mg_st_close(&g);
    check_lengths_and_formats(dir);
    check_no_encoder(dir);
    return check_summary("test_encodec_encode");
}
