/* Continuation from audio (mg_gen_params.prompt_audio) on a tiny model whose
 * window is cut to 61 frames: the engine encodes the prompt (whole, or its
 * last whole frames that fit in a window's prompt, window - stride) and
 * continues it as it would a code prompt; the clip's codes begin with
 * EnCodec's codes of the kept audio, its audio with their decode; the result
 * says what was kept and cut; mg_gen_steps counts the same frames; bad
 * prompts are refused naming their field. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "test_util.h"
#include "model/encodec.h"
#include "model/encodec_encode.h"
#include "model/encodec_stream.h"
#include "runtime/model_parts.h"
#include "runtime/musicgen.h"
#include "tone.h"

#define K 4
#define POSITIONS 64
#define WINDOW (POSITIONS - K + 1) /* frames */
#define STRIDE 30                  /* frames: the default, half the window */

static const int32_t ids[2 * 5] = {100, 200, 300, 1, 0, 7, 8, 9, 10, 1};
static const uint8_t mask[2 * 5] = {1, 1, 1, 1, 0, 1, 1, 1, 1, 1};

static mg_gen_params greedy(const mg_model *m)
{
    mg_gen_params p;
    mg_gen_params_default(m, &p);
    p.sampling.do_sample = 0;
    p.sampling.guidance_scale = 3;
    return p;
}

static mg_code run(mg_model *m, const mg_gen_params *p, mg_gen_result *res, mg_error *err)
{
    memset(err, 0, sizeof *err);
    memset(res, 0, sizeof *res);
    return mg_generate_ids(m, ids, mask, 2, 5, p, NULL, res, err);
}

/* Two items of n samples: a tone and a louder lower one, plus a ramp so
 * that no two frames are alike. */
static float *two_tones(int64_t n, int rate)
{
    float *a = malloc((size_t)2 * n * sizeof *a);
    if (!a)
        return NULL;
    sine(a, (size_t)n, rate, 440, 0.3);
    sine(a + n, (size_t)n, rate, 220, 0.5);
    for (int64_t i = 0; i < 2 * n; i++)
        a[i] += (float)(i % n) / (float)n * 0.1f;
    return a;
}

/* EnCodec's codes [2, K, frames] of samples [first, first + len) of each
 * item of audio [2, n]. */
static int32_t *encode_part(mg_model *m, const float *audio, int64_t n, int64_t first, int64_t len,
                            int frames)
{
    int got = 0;
    float *part = malloc((size_t)2 * len * sizeof *part);
    int32_t *codes = malloc((size_t)2 * K * frames * sizeof *codes);
    mg_error err = {0};
    mg_code rc = part && codes ? MG_OK : MG_ERR_NOMEM;
    for (int b = 0; rc == MG_OK && b < 2; b++)
        memcpy(part + b * len, audio + b * n + first, (size_t)len * sizeof *part);
    if (rc == MG_OK)
        rc = mg_encodec_encode(mg_model_encodec(m), part, 2, len, codes, &got, NULL, NULL, &err);
    free(part);
    if (rc != MG_OK || got != frames) {
        CHECK(0, "encode %d frames: %s", frames, err.msg);
        free(codes);
        return NULL;
    }
    return codes;
}

/* Whether frames [0, n) of the result's codes are `codes` [2, K, n]. */
static int begins_with(const mg_gen_result *r, const int32_t *codes, int n)
{
    for (int row = 0; row < 2 * K; row++)
        if (memcmp(r->codes + (size_t)row * r->frames, codes + (size_t)row * n,
                   (size_t)n * sizeof *codes) != 0)
            return 0;
    return 1;
}

/* A prompt of 10.5 frames is kept whole, 11 frames as the encoder counts
 * them (the last padded), as Hugging Face keeps a prompt: the clip is what
 * those codes as a code prompt give, its audio begins with their decode,
 * and mg_gen_steps counts the clip's frames. */
static void test_short_prompt(mg_model *m)
{
    const mg_config *c = mg_model_config(m);
    int hop = c->hop;
    int64_t n = 10 * hop + hop / 2;
    float *audio = two_tones(n, c->sample_rate);
    int32_t *want = audio ? encode_part(m, audio, n, 0, n, 11) : NULL;
    if (!want) {
        CHECK(0, "test signal");
        free(audio);
        return;
    }
    mg_gen_params p = greedy(m);
    p.duration = 1.0f; /* 50 frames, the prompt's 11 included */
    p.prompt_audio = audio;
    p.prompt_samples = n;
    mg_gen_result r, from_codes;
    mg_error err;
    mg_code rc = run(m, &p, &r, &err);
    CHECK(rc == MG_OK, "audio prompt: %s", err.msg);
    if (rc == MG_OK) {
        CHECK(r.frames == 50 && r.n_samples == (size_t)50 * hop, "%d frames, %zu samples",
              r.frames, r.n_samples);
        CHECK(r.prompt_frames == 11 && r.prompt_trimmed_frames == 0,
              "kept %d frames, cut %d (11 and 0: the whole prompt)", r.prompt_frames,
              r.prompt_trimmed_frames);
        CHECK(begins_with(&r, want, 11), "the clip's codes begin with the prompt's codes");
        int steps = 0, frames = 0;
        rc = mg_gen_steps(m, &p, &steps, &frames, &err);
        CHECK(rc == MG_OK && frames == 50 && steps == r.steps,
              "mg_gen_steps: %d frames, %d steps (%d)", frames, steps, r.steps);
        /* the same as continuing the codes */
        mg_gen_params q = greedy(m);
        q.duration = 1.0f;
        q.prompt_codes = want;
        q.prompt_frames = 11;
        rc = run(m, &q, &from_codes, &err);
        CHECK(rc == MG_OK && from_codes.frames == r.frames &&
                  memcmp(from_codes.codes, r.codes, (size_t)2 * K * r.frames * sizeof *r.codes) == 0 &&
                  memcmp(from_codes.audio, r.audio, 2 * r.n_samples * sizeof *r.audio) == 0,
              "the same codes and audio as from the encoded codes: %s", err.msg);
        mg_gen_result_free(&from_codes);
        /* the audio begins with the prompt's decode, up to EnCodec's look-ahead */
        int keep = 11 - mg_encodec_lookahead_frames(mg_model_encodec(m));
        float *dec = malloc((size_t)2 * 11 * hop * sizeof *dec);
        rc = dec ? mg_encodec_decode(mg_model_encodec(m), want, 2, 11, dec, NULL, NULL, &err)
                 : MG_ERR_NOMEM;
        CHECK(rc == MG_OK && keep > 0, "decode the prompt (look-ahead leaves %d frames): %s", keep,
              err.msg);
        for (int b = 0; rc == MG_OK && keep > 0 && b < 2; b++)
            CHECK(memcmp(dec + (size_t)b * 11 * hop, r.audio + b * r.n_samples,
                         (size_t)keep * hop * sizeof *dec) == 0,
                  "item %d: the audio's first %d frames are the prompt's decode", b, keep);
        free(dec);
        mg_gen_result_free(&r);
    }
    free(want);
    free(audio);
}

/* A prompt longer than window - stride keeps that many whole frames, its
 * last; the cut counts the part frame; duration counts the kept frames; a
 * shorter stride keeps more. */
static void test_trimmed(mg_model *m, float extend_stride, int kept)
{
    const mg_config *c = mg_model_config(m);
    int hop = c->hop;
    int64_t n = 40 * hop + 100; /* 41 frames as the encoder counts them */
    float *audio = two_tones(n, c->sample_rate);
    int64_t len = (int64_t)kept * hop;
    int32_t *want = audio ? encode_part(m, audio, n, n - len, len, kept) : NULL;
    if (!want) {
        CHECK(0, "test signal");
        free(audio);
        return;
    }
    mg_prompt_audio_fit fit;
    mg_error err = {0};
    mg_code rc = mg_gen_prompt_audio_fit(m, n, extend_stride, &fit, &err);
    CHECK(rc == MG_OK && fit.frames == kept && fit.trimmed_frames == 41 - kept &&
              fit.samples == (int64_t)kept * hop && fit.first_sample == n - fit.samples,
          "stride %g: fit keeps %d frames from sample %lld, cuts %d: %s", extend_stride,
          fit.frames, (long long)fit.first_sample, fit.trimmed_frames, err.msg);
    mg_gen_params p = greedy(m);
    p.duration = 1.6f; /* 80 frames: two windows */
    p.extend_stride = extend_stride;
    p.prompt_audio = audio;
    p.prompt_samples = n;
    mg_gen_result r;
    rc = run(m, &p, &r, &err);
    CHECK(rc == MG_OK, "stride %g: %s", extend_stride, err.msg);
    if (rc == MG_OK) {
        CHECK(r.frames == 80 && r.prompt_frames == kept && r.prompt_trimmed_frames == 41 - kept,
              "stride %g: %d frames, kept %d, cut %d", extend_stride, r.frames, r.prompt_frames,
              r.prompt_trimmed_frames);
        CHECK(begins_with(&r, want, kept), "stride %g: the codes begin with the last %d frames'",
              extend_stride, kept);
        mg_gen_result_free(&r);
    }
    /* duration not past the kept prompt */
    p.duration = (float)kept / 50.0f;
    rc = run(m, &p, &r, &err);
    CHECK(rc == MG_ERR_INVALID && strcmp(err.field, "duration") == 0,
          "duration of the kept prompt refused naming duration: %s", err.msg);
    free(want);
    free(audio);
}

static void expect_invalid(mg_model *m, const mg_gen_params *p, const char *field,
                           const char *what)
{
    mg_gen_result r;
    mg_error err;
    mg_code rc = run(m, p, &r, &err);
    CHECK(rc == MG_ERR_INVALID && strcmp(err.field, field) == 0, "%s: refused naming %s (%d, %s: %s)",
          what, field, rc, err.field, err.msg);
    if (rc == MG_OK)
        mg_gen_result_free(&r);
}

static void test_refusals(mg_model *m)
{
    const mg_config *c = mg_model_config(m);
    int64_t n = 12 * c->hop;
    float *audio = two_tones(n, c->sample_rate);
    if (!audio) {
        CHECK(0, "test signal");
        return;
    }
    int32_t codes[2 * K * 2] = {0};
    mg_gen_params p = greedy(m);
    p.duration = 0.5f;
    p.prompt_audio = audio;
    p.prompt_samples = c->hop - 1;
    expect_invalid(m, &p, "prompt_audio", "less than a frame");
    p.prompt_samples = 0;
    expect_invalid(m, &p, "prompt_audio", "no samples");
    p.prompt_samples = n;
    p.prompt_codes = codes;
    p.prompt_frames = 2;
    expect_invalid(m, &p, "prompt_audio", "with prompt_codes");
    p.prompt_codes = NULL;
    p.prompt_frames = 0;
    p.prompt_batch = 1;
    expect_invalid(m, &p, "prompt_audio", "one item for a batch of two");
    p.prompt_batch = 0;
    p.duration = 0.24f;
    expect_invalid(m, &p, "duration", "duration short of the 12-frame prompt");
    p.duration = 0.5f;
    p.extend_stride = 5.0f;
    expect_invalid(m, &p, "extend_stride", "stride past the window");
    p.extend_stride = 0;
    audio[n + 7] = NAN;
    expect_invalid(m, &p, "prompt_audio", "a NaN sample");
    free(audio);
}

int main(int argc, char **argv)
{
    char dir[64], mdir[80];
    CHECK(tu_windowed_model(argc > 0 ? argv[0] : NULL, POSITIONS, 5, dir, sizeof dir, mdir,
                            sizeof mdir) == 0,
          "musicgen-mkmodel --shape tiny --positions %d into %s", POSITIONS, dir);
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 2, .max_batch = 4};
    if (mg_model_load(&m, mdir, &opt, &err) != MG_OK) {
        CHECK(0, "load: %s", err.msg);
    } else {
        test_short_prompt(m);
        test_trimmed(m, 0, WINDOW - STRIDE);
        test_trimmed(m, 0.8f, WINDOW - 40);
        test_refusals(m);
        mg_model_free(m);
    }
    CHECK(tu_remove_dir(dir) == 0, "remove %s", dir);
    return check_summary("test_continue");
}
