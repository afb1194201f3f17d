/* Continuation from a code prompt and long-form generation on a small random
 * model whose window is cut to 61 frames (64 positions): a clip of several
 * windows has the layout of audiocraft's windowed continuation (each window
 * is what a continuation of the previous window's last frames gives, and only
 * its new frames are appended), the exact frame and sample counts, a sampler
 * step that keeps counting across windows, and bad prompts and strides are
 * refused naming their field. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "test_util.h"
#include "model/encodec.h"
#include "runtime/duration.h"
#include "runtime/model_parts.h"
#include "runtime/model_info.h"
#include "runtime/gen_job_impl.h"
#include "runtime/musicgen.h"

#define K 4
#define POSITIONS 64
#define WINDOW (POSITIONS - K + 1) /* frames */
#define STRIDE 30                  /* frames: the default, half the window */
#define FPS 50.0

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

static mg_code run(mg_model *m, const mg_gen_params *p, const mg_gen_hooks *h, mg_gen_result *res,
                   mg_error *err)
{
    memset(err, 0, sizeof *err);
    return mg_generate_ids(m, ids, mask, 2, 5, p, h, res, err);
}

/* frames [from, from + n) of codes [2, K, frames] as a prompt [2, K, n] */
static int32_t *slice(const mg_gen_result *r, int from, int n)
{
    int32_t *out = malloc((size_t)2 * K * n * sizeof *out);
    if (out)
        for (int row = 0; row < 2 * K; row++)
            memcpy(out + (size_t)row * n, r->codes + (size_t)row * r->frames + from,
                   (size_t)n * sizeof *out);
    return out;
}

/* Whether frames [from, from + n) of a equal frames [0, n) of b, every row. */
static int same_frames(const mg_gen_result *a, int from, const mg_gen_result *b, int n)
{
    for (int row = 0; row < 2 * K; row++)
        if (memcmp(a->codes + (size_t)row * a->frames + from, b->codes + (size_t)row * b->frames,
                   (size_t)n * sizeof *a->codes) != 0)
            return 0;
    return 1;
}

typedef struct {
    int n, in_order;
} step_log;

static void log_step(void *ud, int step, const float *raw, int raw_rows, const float *scores,
                     const int32_t *tokens, int rows, int V)
{
    (void)raw, (void)raw_rows, (void)scores, (void)tokens, (void)rows, (void)V;
    step_log *l = ud;
    l->in_order &= step == l->n;
    l->n++;
}

/* 150 frames (3 s): windows [0, 61), [30, 91), [60, 121), [90, 150), each
 * prompted with the 31 frames it shares with the one before. Greedy, so
 * that a window run by hand (a continuation of those frames) must give the
 * same codes. */
static void test_window_layout(mg_model *m)
{
    mg_gen_params p = greedy(m);
    p.duration = 3.0f;
    mg_gen_result lf, w;
    mg_error err;
    step_log log = {.in_order = 1};
    mg_gen_hooks h = {.on_step = log_step, .ud = &log};
    if (run(m, &p, &h, &lf, &err) != MG_OK) {
        CHECK(0, "3 s on a %d-frame window: %s", WINDOW, err.msg);
        return;
    }
    const mg_config *c = mg_model_config(m);
    /* steps: the first window's frames + K - 1, then each window's new frames
     * + K - 1 (STRIDE, STRIDE, then the 29 left after frame 121) */
    int want_steps = (WINDOW + K - 1) + 2 * (STRIDE + K - 1) + (150 - 121 + K - 1);
    CHECK(lf.frames == 150 && lf.n_samples == (size_t)150 * c->hop && lf.steps == want_steps,
          "3 s: %d frames (150), %zu samples, %d steps (%d)", lf.frames, lf.n_samples, lf.steps,
          want_steps);
    CHECK(log.n == want_steps && log.in_order,
          "the step counter runs on across windows: %d steps seen, in order %d", log.n,
          log.in_order);
    int finite = 1;
    for (size_t i = 0; i < 2 * lf.n_samples; i++)
        finite &= isfinite(lf.audio[i]);
    CHECK(finite, "long-form audio is finite");
    /* EnCodec followed the windows as one stream: the audio is one decode of
     * all the clip's codes, bit for bit */
    float *one = malloc(2 * lf.n_samples * sizeof *one);
    CHECK(one && mg_encodec_decode(mg_model_encodec(m), lf.codes, 2, lf.frames, one, NULL, NULL,
                                   &err) == MG_OK &&
              memcmp(one, lf.audio, 2 * lf.n_samples * sizeof *one) == 0,
          "long-form audio == one EnCodec decode of the clip's codes");
    free(one);

    /* window 0: an ordinary generation of the window's length */
    mg_gen_params p0 = greedy(m);
    p0.duration = (float)(WINDOW / FPS);
    if (run(m, &p0, NULL, &w, &err) == MG_OK) {
        CHECK(w.frames == WINDOW && same_frames(&lf, 0, &w, WINDOW),
              "window 0 == a generation of %d frames", WINDOW);
        mg_gen_result_free(&w);
    } else {
        CHECK(0, "window 0 by hand: %s", err.msg);
    }
    /* window n: the continuation of window n-1's last WINDOW - STRIDE frames */
    for (int n = 1; n < 4; n++) {
        int start = n * STRIDE, prompt = (n - 1) * STRIDE + WINDOW - start;
        int end = start + WINDOW < 150 ? start + WINDOW : 150;
        int32_t *codes = slice(&lf, start, prompt);
        mg_gen_params pn = greedy(m);
        pn.prompt_codes = codes;
        pn.prompt_frames = prompt;
        pn.prompt_batch = 2;
        pn.duration = (float)((end - start) / FPS);
        if (codes && run(m, &pn, NULL, &w, &err) == MG_OK) {
            CHECK(w.frames == end - start && same_frames(&lf, start, &w, end - start),
                  "window %d (frames %d..%d) == the continuation of frames %d..%d", n, start,
                  end, start, start + prompt);
            mg_gen_result_free(&w);
        } else {
            CHECK(0, "window %d by hand: %s", n, err.msg);
        }
        free(codes);
    }
    mg_gen_result_free(&lf);
}

/* Sampling: the same seed gives the same clip; a window's draws are not the
 * first window's again (its continuation run alone, whose step counter
 * starts at 0, draws otherwise). */
static void test_sampled(mg_model *m)
{
    mg_gen_params p = greedy(m);
    p.sampling.do_sample = 1;
    p.sampling.top_k = 0;
    p.sampling.temperature = 3; /* a flat distribution: draws decide */
    p.seed = 11;
    p.duration = 2.46f; /* 123 frames: windows [0, 61), [30, 91), [60, 123) */
    mg_gen_result a, b, w;
    mg_error err;
    if (run(m, &p, NULL, &a, &err) != MG_OK) {
        CHECK(0, "sampled long-form: %s", err.msg);
        return;
    }
    CHECK(a.frames == 123 && a.n_samples == (size_t)123 * mg_model_config(m)->hop,
          "2.46 s: %d frames (123)", a.frames);
    if (run(m, &p, NULL, &b, &err) == MG_OK) {
        CHECK(a.frames == b.frames && same_frames(&a, 0, &b, a.frames),
              "the same seed gives the same long-form clip");
        mg_gen_result_free(&b);
    } else {
        CHECK(0, "sampled long-form again: %s", err.msg);
    }
    int32_t *codes = slice(&a, STRIDE, WINDOW - STRIDE);
    mg_gen_params p1 = p;
    p1.prompt_codes = codes;
    p1.prompt_frames = WINDOW - STRIDE;
    p1.duration = (float)(WINDOW / FPS);
    if (codes && run(m, &p1, NULL, &w, &err) == MG_OK) {
        int differ = 0;
        for (int row = 0; row < 2 * K; row++)
            differ += memcmp(a.codes + (size_t)row * a.frames + WINDOW,
                             w.codes + (size_t)row * w.frames + WINDOW - STRIDE,
                             STRIDE * sizeof *a.codes) != 0;
        CHECK(differ > 0, "window 1 draws past the first window's steps");
        mg_gen_result_free(&w);
    } else {
        CHECK(0, "window 1 alone: %s", err.msg);
    }
    free(codes);
    mg_gen_result_free(&a);
}

typedef struct {
    mg_model     *m;
    mg_gen_params p;
    mg_gen_result res;
    mg_code       rc;
    mg_error      err;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    j->rc = run(j->m, &j->p, NULL, &j->res, &j->err);
    return NULL;
}

/* A long-form generation beside others in the batch (its window changes
 * happen between their steps) gives the codes it gives alone. */
static void test_beside_others(mg_model *m)
{
    job jobs[3] = {{.m = m}, {.m = m}, {.m = m}};
    for (int i = 0; i < 3; i++) {
        jobs[i].p = greedy(m);
        jobs[i].p.sampling.do_sample = 1;
        jobs[i].p.seed = 5 + (uint64_t)i;
    }
    jobs[0].p.duration = 3.0f;
    jobs[1].p.duration = 0.5f;
    jobs[2].p.duration = 2.0f;
    mg_gen_result alone;
    mg_error err;
    if (run(m, &jobs[0].p, NULL, &alone, &err) != MG_OK) {
        CHECK(0, "alone: %s", err.msg);
        return;
    }
    pthread_t th[3];
    int started[3];
    for (int i = 0; i < 3; i++)
        started[i] = pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0;
    for (int i = 0; i < 3; i++)
        if (started[i])
            pthread_join(th[i], NULL);
    CHECK(started[0] && jobs[0].rc == MG_OK && jobs[0].res.frames == alone.frames &&
              same_frames(&jobs[0].res, 0, &alone, alone.frames),
          "long-form beside other generations == alone: %s", jobs[0].err.msg);
    CHECK(started[2] && jobs[2].rc == MG_OK && jobs[2].res.frames == 100, "its neighbour: %s",
          jobs[2].err.msg);
    for (int i = 0; i < 3; i++)
        if (started[i] && jobs[i].rc == MG_OK)
            mg_gen_result_free(&jobs[i].res);
    mg_gen_result_free(&alone);
}

/* A continuation holds its prompt first, then the new frames; with a long
 * clip the prompt is the first window's. */
static void test_prompt_first(mg_model *m)
{
    int32_t prompt[2 * K * 20];
    for (int i = 0; i < 2 * K * 20; i++)
        prompt[i] = (i * 7 + 3) % 64;
    mg_gen_params p = greedy(m);
    p.prompt_codes = prompt;
    p.prompt_frames = 20;
    for (int pass = 0; pass < 2; pass++) {
        /* 1 s in one window, then 2.2 s: windows [0, 61) after the prompt, [30, 91), [60, 110) */
        p.duration = pass ? 2.2f : 1.0f;
        int want = pass ? 110 : 50;
        mg_gen_result r;
        mg_error err;
        if (run(m, &p, NULL, &r, &err) != MG_OK) {
            CHECK(0, "continuation of 20 frames to %d: %s", want, err.msg);
            continue;
        }
        int first = r.frames == want;
        for (int row = 0; first && row < 2 * K; row++)
            first = memcmp(r.codes + (size_t)row * r.frames, prompt + row * 20,
                           20 * sizeof *prompt) == 0;
        CHECK(first, "%d frames (%d), the prompt's 20 first", r.frames, want);
        mg_gen_result_free(&r);
    }
    /* max_new_tokens: that many steps after the prompt, as Hugging Face */
    p.max_new_tokens = 20;
    mg_gen_result r;
    mg_error err;
    if (run(m, &p, NULL, &r, &err) == MG_OK) {
        CHECK(r.frames == 20 + 20 + 1 - K && r.total == 1 + 20 + 20 && r.steps == 20,
              "max_new_tokens 20 after 20 frames: %d frames, %d columns", r.frames, r.total);
        mg_gen_result_free(&r);
    } else {
        CHECK(0, "max_new_tokens after a prompt: %s", err.msg);
    }
}

/* Whether frames [from, from + n) of r equal codes [2, K, n]. */
static int frames_equal(const mg_gen_result *r, int from, const int32_t *codes, int n)
{
    for (int row = 0; row < 2 * K; row++)
        if (memcmp(r->codes + (size_t)row * r->frames + from, codes + (size_t)row * n,
                   (size_t)n * sizeof *codes) != 0)
            return 0;
    return 1;
}

/* A job stepped by hand (the backend held, as the scheduler holds it): after
 * its start and every step, the frames it calls final are those of the
 * finished clip, never fewer than before, and all of them at the end;
 * across window changes too. A window with a prompt takes its first tokens
 * from its prefill (`prefills` of them), not from a step. */
static void test_final_frames(mg_model *m, const mg_gen_params *p, int prefills, const char *what)
{
    mg_gen_result ref, res = {0};
    mg_error err;
    if (run(m, p, NULL, &ref, &err) != MG_OK) {
        CHECK(0, "%s: %s", what, err.msg);
        return;
    }
    mg_gen_hooks codes_only = {.skip_audio = 1};
    mg_gen_job j = {.ids = ids, .mask = mask, .batch = 2, .len = 5, .p = p, .hooks = &codes_only,
                    .res = &res, .err = &err};
    int32_t *codes = malloc((size_t)2 * K * ref.frames * sizeof *codes);
    mg_dec_batch wb = {0};
    pthread_mutex_lock(&m->run);
    mg_code rc = codes ? mg_gen_job_start(m, &j) : MG_ERR_NOMEM;
    int last = 0, ok = 1, checks = 0;
    while (rc == MG_OK) {
        int final = mg_gen_job_final_frames(&j, K), half = final / 2;
        ok &= final >= last && final <= ref.frames;
        mg_gen_job_copy_frames(&j, K, 1, 0, final, codes);
        ok &= frames_equal(&ref, 0, codes, final);
        mg_gen_job_copy_frames(&j, K, 1, half, final - half, codes);
        ok &= frames_equal(&ref, half, codes, final - half);
        last = final;
        checks++;
        if (j.t >= j.steps)
            break;
        mg_dec_state *st = &j.st;
        const int32_t *step_ids = j.step_ids;
        mg_tensor *logits = j.logits;
        rc = mg_decoder_step(&m->parts.dec, &wb, &st, 1, &step_ids, &logits, &err);
        if (rc == MG_OK)
            rc = mg_gen_job_after_step(m, &j, 0);
    }
    int needs_audio = 0;
    if (rc == MG_OK)
        rc = mg_gen_job_codes(m, &j, &needs_audio);
    mg_gen_job_release(m, &j);
    mg_dec_batch_free(&wb);
    pthread_mutex_unlock(&m->run);
    CHECK(rc == MG_OK && ok && last == ref.frames && checks == ref.steps + 1 - prefills &&
              res.frames == ref.frames && frames_equal(&ref, 0, res.codes, ref.frames),
          "%s: final frames after each of %d steps (%d checked, last %d of %d, in order %d): %s",
          what, ref.steps, checks, last, ref.frames, ok, err.msg);
    mg_gen_result_free(&res);
    mg_gen_result_free(&ref);
    free(codes);
}

static void expect_invalid(mg_model *m, const mg_gen_params *p, const char *field,
                           const char *what)
{
    mg_gen_result r;
    mg_error err;
    mg_code rc = run(m, p, NULL, &r, &err);
    CHECK(rc == MG_ERR_INVALID && strcmp(err.field, field) == 0,
          "%s: rc %d, field '%s' (want '%s'): %s", what, rc, err.field, field, err.msg);
    if (rc == MG_OK)
        mg_gen_result_free(&r);
}

static void test_refusals(mg_model *m)
{
    int32_t prompt[2 * K * WINDOW];
    for (int i = 0; i < 2 * K * WINDOW; i++)
        prompt[i] = i % 64;
    mg_gen_params p = greedy(m);
    p.duration = 3.0f;
    float strides[] = {-1, NAN, INFINITY, (float)(WINDOW / FPS), 10, 0.001f};
    for (size_t i = 0; i < sizeof strides / sizeof strides[0]; i++) {
        p.extend_stride = strides[i];
        char what[64];
        snprintf(what, sizeof what, "extend_stride %g", strides[i]);
        expect_invalid(m, &p, "extend_stride", what);
    }
    p.extend_stride = 1.0f; /* 50 of 61 frames: accepted */
    mg_gen_result r;
    mg_error err;
    if (run(m, &p, NULL, &r, &err) == MG_OK) {
        CHECK(r.frames == 150, "extend_stride 1 s: %d frames", r.frames);
        mg_gen_result_free(&r);
    } else {
        CHECK(0, "extend_stride 1 s: %s", err.msg);
    }
    p.extend_stride = 0;
    p.prompt_codes = prompt;
    p.prompt_frames = 10;
    prompt[2 * K * 10 - 1] = 64; /* the pad id: not a code */
    expect_invalid(m, &p, "prompt_codes", "a code past the codebook");
    prompt[2 * K * 10 - 1] = -1;
    expect_invalid(m, &p, "prompt_codes", "a negative code");
    prompt[2 * K * 10 - 1] = 0;
    p.prompt_batch = 1;
    expect_invalid(m, &p, "prompt_codes", "a prompt of 1 item for a batch of 2");
    p.prompt_batch = 0;
    p.prompt_frames = WINDOW;
    expect_invalid(m, &p, "prompt_codes", "a prompt that fills the window");
    p.prompt_frames = 0;
    expect_invalid(m, &p, "prompt_codes", "codes without frames");
    p.prompt_codes = NULL;
    p.prompt_frames = 5;
    expect_invalid(m, &p, "prompt_codes", "frames without codes");
    p.prompt_codes = prompt;
    p.prompt_frames = 50;
    p.duration = 1.0f;
    expect_invalid(m, &p, "duration", "a duration no longer than the prompt");
    p.prompt_frames = 10;
    p.duration = (float)(MG_MAX_DURATION + 1);
    expect_invalid(m, &p, "duration", "past the engine's cap");
    p.max_new_tokens = POSITIONS - 10 + 1;
    mg_gen_result r2;
    CHECK(run(m, &p, NULL, &r2, &err) == MG_ERR_INVALID && strstr(err.msg, "max_new_tokens"),
          "max_new_tokens past the window after a prompt: %s", err.msg);
}

int main(int argc, char **argv)
{
    /* a tiny model with a window of 64 positions */
    char dir[64], mdir[80];
    CHECK(tu_windowed_model(argc > 0 ? argv[0] : NULL, POSITIONS, 3, dir, sizeof dir, mdir,
                            sizeof mdir) == 0,
          "musicgen-mkmodel --shape tiny --positions %d into %s", POSITIONS, dir);
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 2, .max_batch = 4};
    if (mg_model_load(&m, mdir, &opt, &err) != MG_OK) {
        CHECK(0, "load: %s", err.msg);
    } else {
        mg_model_info info;
        mg_model_info_of(m, &info);
        CHECK(info.max_frames == WINDOW && info.frame_rate == FPS, "window %d frames at %g Hz",
              info.max_frames, info.frame_rate);
        test_window_layout(m);
        test_sampled(m);
        test_beside_others(m);
        test_prompt_first(m);
        test_refusals(m);
        mg_gen_params p = greedy(m);
        p.duration = 3.0f;
        test_final_frames(m, &p, 3, "final frames of 4 windows");
        int32_t prompt[2 * K * 20];
        for (int i = 0; i < 2 * K * 20; i++)
            prompt[i] = (i * 5 + 1) % 64;
        p.prompt_codes = prompt;
        p.prompt_frames = 20;
        p.duration = 2.2f;
        test_final_frames(m, &p, 3, "final frames of a continuation in 3 windows");
        mg_model_free(m);
    }
    /* q8 weights (BF16 attention caches here): the prefill fills the caches
     * the steps then read, in their format */
    mg_model_options q8 = {.n_threads = 2, .dtype = "q8"};
    if (mg_model_load(&m, mdir, &q8, &err) != MG_OK) {
        CHECK(0, "load q8: %s", err.msg);
    } else {
        test_window_layout(m);
        mg_model_free(m);
    }
    CHECK(tu_remove_dir(dir) == 0, "remove %s", dir);
    return check_summary("test_longform");
}
